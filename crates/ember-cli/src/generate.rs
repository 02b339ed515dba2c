//! `ember generate`: one prompt, the reply streamed to stdout and the speed figures to
//! stderr, as mlx_lm.generate.

use crate::args::{unescape, ContextArgs, ModelArgs, SamplingArgs};
use crate::report;
use clap::Args;
use ember_lm::generate::{Finish, GenerateConfig};
use ember_lm::stream_generate;
use std::io::{Read, Write};

#[derive(Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The message for the model; `-` reads it from stdin.
    #[arg(long, short = 'p', default_value = "hello")]
    prompt: String,
    /// Maximum number of tokens to generate.
    #[arg(long, short = 'm', default_value_t = 100)]
    max_tokens: usize,
    #[command(flatten)]
    sampling: SamplingArgs,
    #[command(flatten)]
    context: ContextArgs,
    /// Pass the prompt to the model as it is, without the chat template.
    #[arg(long)]
    ignore_chat_template: bool,
    /// Generate exactly --max-tokens, past end-of-sequence tokens (for benchmarks).
    #[arg(long)]
    ignore_eos: bool,
}

pub fn generate(args: GenerateArgs) -> Result<(), Box<dyn std::error::Error>> {
    let prompt = if args.prompt == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        text
    } else {
        unescape(&args.prompt)
    };
    let (m, load_time) = args.model.load_timed()?;
    let tokens = m.prompt_tokens(
        &prompt,
        args.context.system_prompt.as_deref(),
        !args.ignore_chat_template,
    )?;
    let config = GenerateConfig {
        max_kv_size: args.context.max_kv_size,
        ignore_eos: args.ignore_eos,
        ..args.sampling.config(args.max_tokens)
    };
    let mut out = std::io::stdout().lock();
    let mut last = None;
    for r in stream_generate(&m.model, &m.tokenizer, &tokens, &config)? {
        let r = r?;
        out.write_all(r.text.as_bytes())?;
        out.flush()?;
        last = Some(r);
    }
    writeln!(out)?;
    let Some(r) = last else { return Ok(()) };
    let stop = match r.finish {
        Some(Finish::Stop) if m.tokenizer.eos_ids().contains(&r.token) => "end of sequence",
        Some(Finish::Stop) => "a stop string",
        _ => "max tokens",
    };
    eprintln!("==========");
    eprintln!("{}", report::load(load_time, &m.path));
    eprintln!("Prompt: {} tokens, {:.3} tokens-per-sec", r.prompt_tokens, r.prompt_tps);
    eprintln!(
        "Generation: {} tokens, {:.3} tokens-per-sec (stopped at {stop})",
        r.generation_tokens, r.generation_tps
    );
    eprintln!("Time to first token: {:.3} s", r.time_to_first_token);
    eprintln!("{}", report::peak_memory());
    Ok(())
}
