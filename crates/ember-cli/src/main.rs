//! `ember`: the command line. `ember generate` runs a language model on a prompt with
//! mlx_lm.generate's flags, streaming the text to stdout and the speed figures to stderr;
//! `ember chat` holds a conversation as mlx_lm.chat does; `ember convert` rewrites a model
//! directory in MLX's layout, optionally quantized, as mlx_lm.convert; `ember bench llm`
//! times prompt processing and generation on a random prompt, as mlx_lm.benchmark. Without
//! `--model` they use the default model (fetched once; see `ember_lm::default_model`).

mod args;
mod bench;
mod chat;
mod convert;
mod generate;
mod report;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "ember", version, about = "ember: MLX-style arrays and LLM inference in Rust")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate text from a prompt (as mlx_lm.generate).
    Generate(generate::GenerateArgs),
    /// Chat with a model, one stdin line per turn (as mlx_lm.chat).
    Chat(chat::ChatArgs),
    /// Convert a Hugging Face model directory to MLX's layout, optionally quantized (as
    /// mlx_lm.convert).
    Convert(convert::ConvertArgs),
    /// Benchmarks (`ember bench llm`: a model's speed, as mlx_lm.benchmark).
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The command runs on a worker of rayon's pool, so that evaluations (and any parallel loop
    // outside one) start inside the pool. From outside, each hands its work to the pool and
    // parks this thread until it is done, two thread wake-ups every time, which on this VM
    // cost ~10% of decoding speed (F16 123-127 against 134-143 tok/s, Q4_1 196-216 against
    // 227-236).
    // Workers get a main thread's stack (8 MiB, not rayon's 2 MiB) for the command. Building
    // the global pool fails only if it exists already, which it cannot before this line.
    let _ = rayon::ThreadPoolBuilder::new().stack_size(8 << 20).build_global();
    let result = rayon::scope(|_| run(cli.command).map_err(|e| e.to_string()));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        Command::Generate(args) => generate::generate(args),
        Command::Chat(args) => chat::chat(args),
        Command::Convert(args) => convert::convert(args),
        Command::Bench(args) => bench::bench(args),
    }
}
