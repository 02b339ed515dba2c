//! Compares a model loaded from a GGUF file with the Hugging Face directory transformers wrote
//! from it (`scripts/fixtures/hf_dir.py --smollm2 DIR`): the logits of every position of a
//! fixed text, as the largest absolute difference and top-1 agreement, for ember's GGUF
//! against ember's directory, and each against transformers' float32 logits of the text when
//! the directory holds them (`transformers_logits.npy`).
//!
//! Run: cargo run --release -p ember-lm --example compare_dir -- MODEL.gguf DIR

use ember_core::io::load_npy;
use ember_core::{Array, Dtype};
use ember_lm::{load, Llama, Message};
use std::path::Path;

/// The text hf_dir.py's COMPARE_TEXT also runs through transformers.
const TEXT: &str =
    "The capital of France is Paris. It is known for the Eiffel Tower, museums such \
as the Louvre, and its cafés. In 2024 the city hosted the Summer Olympics, which drew about \
fifteen million visitors.";

type Rows = Vec<Vec<f32>>;

fn logits(model: &Llama, ids: &[u32]) -> Result<Rows, Box<dyn std::error::Error>> {
    let ids: Vec<i32> = ids.iter().map(|&t| t as i32).collect();
    let x = Array::from_slice(&ids, &[1, ids.len()])?;
    let out = model.forward(&x, &mut model.make_cache(None))?.to_vec::<f32>()?;
    Ok(out.chunks(model.config().vocab_size).map(|r| r.to_vec()).collect())
}

fn argmax(row: &[f32]) -> usize {
    (0..row.len()).fold(0, |best, i| if row[i] > row[best] { i } else { best })
}

/// Prints the largest |a - b| and top-1 agreement of two sets of logit rows.
fn report(what: &str, a: &Rows, b: &Rows) {
    let mut max_diff = 0.0f32;
    let mut max_logit = 0.0f32;
    let mut same_top = 0;
    for (x, y) in a.iter().zip(b) {
        for (p, q) in x.iter().zip(y) {
            max_diff = max_diff.max((p - q).abs());
            max_logit = max_logit.max(q.abs());
        }
        same_top += usize::from(argmax(x) == argmax(y));
    }
    println!(
        "{what}: max |logit difference| {max_diff:.4} (largest |logit| {max_logit:.2}), \
         top-1 agreement {same_top}/{} positions",
        a.len()
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [gguf, dir] = args.as_slice() else {
        return Err("usage: compare_dir MODEL.gguf DIR".into());
    };
    let (g, d) = (load(Path::new(gguf))?, load(Path::new(dir))?);
    let ids = g.tokenizer.encode(TEXT, true)?;
    let same_ids = d.tokenizer.encode(TEXT, true)? == ids;
    println!("tokens: {} (the directory's tokenizer agrees: {same_ids})", ids.len());
    let messages = [Message::new("user", "What is the capital of France?")];
    let same = g.template_tokens(&messages, true)? == d.template_tokens(&messages, true)?;
    println!("chat template tokens agree: {same}");
    let (lg, ld) = (logits(&g.model, &ids)?, logits(&d.model, &ids)?);
    report("ember GGUF vs ember directory", &lg, &ld);
    let reference = Path::new(dir).join("transformers_logits.npy");
    if reference.is_file() {
        let t = load_npy(&reference)?.astype(Dtype::Float32)?.to_vec::<f32>()?;
        let t: Rows = t.chunks(d.model.config().vocab_size).map(|r| r.to_vec()).collect();
        report("ember directory vs transformers", &ld, &t);
        report("ember GGUF vs transformers", &lg, &t);
    }
    Ok(())
}
