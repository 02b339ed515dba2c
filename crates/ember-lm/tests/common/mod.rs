//! Shared test helpers: fixture paths and the references written by scripts/fixtures/lm.py.
#![allow(dead_code)]

use ember_core::Array;
use ember_lm::Llama;
use std::path::PathBuf;

/// The model's logits at every position of `ids` (one row per position), from a fresh cache.
pub fn logits(model: &Llama, ids: &[u32]) -> Vec<Vec<f32>> {
    let ids: Vec<i32> = ids.iter().map(|&t| t as i32).collect();
    let x = Array::from_slice(&ids, &[1, ids.len()]).unwrap();
    let out = model.forward(&x, &mut model.make_cache(None)).unwrap().to_vec::<f32>().unwrap();
    out.chunks(model.config().vocab_size).map(|r| r.to_vec()).collect()
}

pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join("fixtures").join(name)
}

fn json(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(fixture_path(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

/// One step of the reference's greedy continuation.
pub struct GreedyStep {
    pub id: u32,
    /// Best minus second-best logit.
    pub gap: f32,
    /// Largest |logit| of the step.
    pub spread: f32,
}

fn greedy(v: &serde_json::Value) -> Vec<GreedyStep> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| GreedyStep {
            id: s["id"].as_u64().unwrap() as u32,
            gap: s["gap"].as_f64().unwrap() as f32,
            spread: s["spread"].as_f64().unwrap() as f32,
        })
        .collect()
}

/// A tokenizer case: a string and its reference ids.
pub struct TokenCase {
    pub text: String,
    pub ids: Vec<u32>,
}

/// The reference figures of one model file.
pub struct Reference {
    pub name: String,
    pub file: String,
    /// Absolute path when the file is not a fixture (the cached default model).
    pub abs_path: Option<PathBuf>,
    pub prompt: Vec<u32>,
    /// Full logits rows (tiny models) for every prompt position.
    pub logits: Vec<Vec<f32>>,
    /// Top (id, logit) pairs at the last position (default model).
    pub top: Vec<(usize, f32)>,
    pub greedy: Vec<GreedyStep>,
    pub tokenizer: Vec<TokenCase>,
    /// Logit error allowed, as a share of the largest logit's magnitude (see tests/llama.rs).
    pub logit_share: f32,
}

impl Reference {
    pub fn path(&self) -> PathBuf {
        self.abs_path.clone().unwrap_or_else(|| fixture_path(&self.file))
    }

    /// (position, [(token id, logit)]) to check.
    pub fn expected_rows(&self) -> Vec<(usize, Vec<(usize, f32)>)> {
        if self.logits.is_empty() {
            return vec![(self.prompt.len() - 1, self.top.clone())];
        }
        self.logits
            .iter()
            .enumerate()
            .map(|(p, row)| (p, row.iter().copied().enumerate().collect()))
            .collect()
    }
}

fn token_cases(v: &serde_json::Value) -> Vec<TokenCase> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|c| TokenCase { text: c["text"].as_str().unwrap().to_string(), ids: ids(&c["ids"]) })
        .collect()
}

/// The two tiny Llama GGUF files and their references.
pub fn tiny_models() -> Vec<Reference> {
    references("tiny_llama.json")
}

/// The tiny Qwen2 GGUF file and its reference.
pub fn tiny_qwen2() -> Reference {
    references("tiny_qwen2.json").remove(0)
}

/// The tiny models of a reference file written by scripts/fixtures/lm.py.
fn references(name: &str) -> Vec<Reference> {
    let j = json(name);
    j["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| Reference {
            name: m["file"].as_str().unwrap().to_string(),
            file: m["file"].as_str().unwrap().to_string(),
            abs_path: None,
            prompt: ids(&m["prompt"]),
            logits: m["logits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect())
                .collect(),
            top: vec![],
            greedy: greedy(&m["greedy"]),
            tokenizer: token_cases(&m["tokenizer"]),
            logit_share: 0.03,
        })
        .collect()
}

/// The default model's reference (the model is fetched into ember's cache if missing).
pub fn smollm2() -> Reference {
    let path = ember_lm::default_model::default_model(&mut |m| eprintln!("{m}")).unwrap();
    let j = json("smollm2.json");
    let top = ids(&j["top_ids"])
        .into_iter()
        .zip(j["top_logits"].as_array().unwrap())
        .map(|(i, v)| (i as usize, v.as_f64().unwrap() as f32))
        .collect();
    Reference {
        name: "SmolLM2-135M-Instruct Q4_1".into(),
        file: String::new(),
        abs_path: Some(path),
        prompt: ids(&j["prompt"]),
        logits: vec![],
        top,
        greedy: greedy(&j["greedy"]),
        tokenizer: token_cases(&j["tokenizer"]),
        // Outlier activation channels make its 8-bit activation rounding coarse.
        logit_share: 0.06,
    }
}
