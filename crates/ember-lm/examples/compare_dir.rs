//! Compares a model loaded from a GGUF file with the Hugging Face directory transformers wrote
//! from it (scripts/fixtures/hf_dir.py --smollm2 DIR): the logits of every position of a
//! fixed text, as the largest absolute difference and top-1 agreement.
//!
//! Run: cargo run --release -p ember-lm --example compare_dir -- MODEL.gguf DIR [TEXT]

use ember_core::Array;
use ember_lm::{load, Llama, Message};
use std::path::Path;

const TEXT: &str =
    "The capital of France is Paris. It is known for the Eiffel Tower, museums such \
as the Louvre, and its cafés. In 2024 the city hosted the Summer Olympics, which drew about \
fifteen million visitors.";

fn logits(model: &Llama, ids: &[u32]) -> Result<Vec<Vec<f32>>, Box<dyn std::error::Error>> {
    let ids: Vec<i32> = ids.iter().map(|&t| t as i32).collect();
    let x = Array::from_slice(&ids, &[1, ids.len()])?;
    let out = model.forward(&x, &mut model.make_cache(None))?.to_vec::<f32>()?;
    Ok(out.chunks(model.config().vocab_size).map(|r| r.to_vec()).collect())
}

fn argmax(row: &[f32]) -> usize {
    (0..row.len()).fold(0, |best, i| if row[i] > row[best] { i } else { best })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [gguf, dir, rest @ ..] = args.as_slice() else {
        return Err("usage: compare_dir MODEL.gguf DIR [TEXT]".into());
    };
    let text = rest.first().map_or(TEXT, |t| t.as_str());
    let (g, d) = (load(Path::new(gguf))?, load(Path::new(dir))?);
    let ids = g.tokenizer.encode(text, true)?;
    println!(
        "tokens: {} (the directory's tokenizer agrees: {})",
        ids.len(),
        d.tokenizer.encode(text, true)? == ids
    );
    let messages = [Message::new("user", "What is the capital of France?")];
    println!(
        "chat template tokens agree: {}",
        g.template_tokens(&messages, true)? == d.template_tokens(&messages, true)?
    );
    let (lg, ld) = (logits(&g.model, &ids)?, logits(&d.model, &ids)?);
    let mut max_diff = 0.0f32;
    let mut max_logit = 0.0f32;
    let mut same_top = 0;
    for (a, b) in lg.iter().zip(&ld) {
        for (x, y) in a.iter().zip(b) {
            max_diff = max_diff.max((x - y).abs());
            max_logit = max_logit.max(x.abs());
        }
        same_top += usize::from(argmax(a) == argmax(b));
    }
    println!("max |logit difference|: {max_diff:.4} (largest |logit| {max_logit:.2})");
    println!("top-1 agreement: {same_top}/{} positions", ids.len());
    Ok(())
}
