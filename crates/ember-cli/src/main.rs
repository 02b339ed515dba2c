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
    let result = match cli.command {
        Command::Generate(args) => generate::generate(args),
        Command::Chat(args) => chat::chat(args),
        Command::Convert(args) => convert::convert(args),
        Command::Bench(args) => bench::bench(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
