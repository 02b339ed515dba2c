//! `ember convert`: a Hugging Face model directory rewritten in MLX's layout, optionally
//! quantized with MLX's affine scheme, with mlx_lm.convert's flags; one progress line per
//! tensor on stderr.

use clap::Args;
use ember_lm::hf_weights::Quantization;
use std::path::PathBuf;

#[derive(Args)]
pub struct ConvertArgs {
    /// The Hugging Face model directory to convert.
    #[arg(long)]
    model: PathBuf,
    /// Where to write the converted model (a new or empty directory).
    #[arg(long = "out", visible_alias = "mlx-path")]
    out: PathBuf,
    /// Quantize the linear and embedding matrices.
    #[arg(long, short = 'q')]
    quantize: bool,
    /// Bits per quantized weight (2, 4 or 8).
    #[arg(long, default_value_t = 4)]
    q_bits: usize,
    /// Weights sharing one scale and bias (32, 64 or 128).
    #[arg(long, default_value_t = 64)]
    q_group_size: usize,
}

pub fn convert(args: ConvertArgs) -> Result<(), Box<dyn std::error::Error>> {
    let quantization =
        args.quantize.then_some(Quantization { group_size: args.q_group_size, bits: args.q_bits });
    ember_lm::convert::convert(&args.model, &args.out, quantization, &mut |line| {
        eprintln!("{line}")
    })?;
    Ok(())
}
