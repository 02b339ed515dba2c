//! `ember chat`: an interactive conversation, as mlx_lm.chat. Each line of stdin is a user
//! turn; `q` (or the end of input) quits and `r` starts over. The KV cache is kept across
//! turns, so each turn runs only its new tokens.

use crate::args::{ContextArgs, ModelArgs, SamplingArgs};
use clap::Args;
use ember_lm::conversation::Conversation;
use ember_lm::load;
use std::io::{BufRead, IsTerminal, Write};

#[derive(Args)]
pub struct ChatArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Maximum number of tokens to generate per reply.
    #[arg(long, short = 'm', default_value_t = 256)]
    max_tokens: usize,
    #[command(flatten)]
    sampling: SamplingArgs,
    #[command(flatten)]
    context: ContextArgs,
}

pub fn chat(args: ChatArgs) -> Result<(), Box<dyn std::error::Error>> {
    let path = args.model.path()?;
    let m = load(&path)?;
    let config = args.sampling.config(args.max_tokens);
    let mut conversation =
        Conversation::new(&m, args.context.system_prompt.as_deref(), args.context.max_kv_size)?;
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        eprintln!("Chatting with {}: enter `q` to quit, `r` to start over.", path.display());
    }
    let mut out = std::io::stdout().lock();
    let mut lines = std::io::stdin().lock().lines();
    loop {
        if interactive {
            write!(out, ">> ")?;
            out.flush()?;
        }
        let Some(line) = lines.next() else { break };
        let line = line?;
        match line.trim() {
            "q" => break,
            "r" => {
                conversation.reset();
                continue;
            }
            "" => continue,
            _ => {}
        }
        let reply = match conversation.reply(&line, &config) {
            Ok(reply) => reply,
            Err(e) => {
                eprintln!("error: {e} (the turn was dropped; `r` starts over)");
                continue;
            }
        };
        for r in reply {
            match r {
                Ok(r) => {
                    out.write_all(r.text.as_bytes())?;
                    out.flush()?;
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    break;
                }
            }
        }
        writeln!(out)?;
    }
    Ok(())
}
