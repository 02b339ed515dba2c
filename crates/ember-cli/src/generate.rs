//! `ember generate`: one prompt, the reply streamed to stdout and the speed figures to
//! stderr, as mlx_lm.generate.

use crate::args::{unescape, ContextArgs, ModelArgs, SamplingArgs};
use clap::Args;
use ember_lm::generate::{Finish, GenerateConfig};
use ember_lm::{load, stream_generate};
use std::io::{Read, Write};
use std::time::Instant;

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

/// Peak resident memory of this process in bytes (Linux's VmHWM), if known.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

pub fn generate(args: GenerateArgs) -> Result<(), Box<dyn std::error::Error>> {
    let prompt = if args.prompt == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        text
    } else {
        unescape(&args.prompt)
    };
    let path = args.model.path()?;
    let start = Instant::now();
    let m = load(&path)?;
    let load_time = start.elapsed().as_secs_f64();
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
    eprintln!("Load: {load_time:.3} s ({})", path.display());
    eprintln!("Prompt: {} tokens, {:.3} tokens-per-sec", r.prompt_tokens, r.prompt_tps);
    eprintln!(
        "Generation: {} tokens, {:.3} tokens-per-sec (stopped at {stop})",
        r.generation_tokens, r.generation_tps
    );
    eprintln!("Time to first token: {:.3} s", r.time_to_first_token);
    let gb = |b: u64| b as f64 / 1e9;
    match peak_rss() {
        Some(rss) => eprintln!(
            "Peak memory: {:.3} GB (resident), {:.3} GB (arrays)",
            gb(rss),
            gb(ember_core::get_peak_memory() as u64)
        ),
        None => {
            eprintln!("Peak memory: {:.3} GB (arrays)", gb(ember_core::get_peak_memory() as u64))
        }
    }
    Ok(())
}
