//! `ember convert` (ember_lm::convert) on the tiny Hugging Face fixtures: the converted
//! directory loads and gives the source's logits exactly unquantized, closely with 8 bits,
//! and mostly the same top token with 4 (most positions); its layout is mlx-lm's; bad input is refused.

mod common;

use common::{fixture_path, logits};
use ember_core::io::load_safetensors;
use ember_core::Dtype;
use ember_lm::convert::convert;
use ember_lm::hf_weights::Quantization;
use ember_lm::load;
use ember_lm::sample::argmax;
use serde_json::Value;
use std::path::{Path, PathBuf};

const DIRS: [&str; 3] = ["hf/tiny_llama", "hf/tiny_llama_untied", "hf/tiny_qwen2"];

/// A fresh path in the temporary directory (not created).
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ember-convert-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The token ids hf_dir.json holds for `dir`.
fn ids(dir: &str) -> Vec<u32> {
    let text = std::fs::read_to_string(fixture_path("hf_dir.json")).unwrap();
    let j: Value = serde_json::from_str(&text).unwrap();
    let m = j["models"].as_array().unwrap().iter().find(|m| m["dir"] == dir).unwrap();
    m["ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

/// Converts `dir` into a scratch directory; returns it and the progress lines.
fn converted(dir: &str, tag: &str, q: Option<Quantization>) -> (PathBuf, Vec<String>) {
    let out = scratch(&format!("{}-{tag}", dir.replace('/', "_")));
    let mut lines = Vec::new();
    convert(&fixture_path(dir), &out, q, &mut |l| lines.push(l.to_string())).unwrap();
    (out, lines)
}

#[test]
fn unquantized_conversion_keeps_the_logits() {
    for dir in DIRS {
        let (out, lines) = converted(dir, "plain", None);
        assert!(lines.iter().any(|l| l.contains("wrote")), "{lines:?}");
        let ids = ids(dir);
        let want = logits(&load(&fixture_path(dir)).unwrap().model, &ids);
        let m = load(&out).unwrap();
        assert_eq!(logits(&m.model, &ids), want, "{dir}");
        // The tokenizer and chat template came along.
        assert!(m.tokenizer.encode("Hello world", true).unwrap().len() > 1);
        std::fs::remove_dir_all(&out).unwrap();
    }
}

#[test]
fn quantized_conversion_is_close_to_the_source() {
    for dir in DIRS {
        let ids = ids(dir);
        let want = logits(&load(&fixture_path(dir)).unwrap().model, &ids);
        for (bits, group) in [(8, 32), (4, 64)] {
            let q = Quantization { group_size: group, bits };
            let (out, lines) = converted(dir, &format!("q{bits}"), Some(q));
            assert!(lines.iter().any(|l| l.contains(&format!("{bits}-bit"))), "{lines:?}");
            check_layout(&out, q);
            let got = logits(&load(&out).unwrap().model, &ids);
            let same = got.iter().zip(&want).filter(|(g, w)| argmax(g) == argmax(w)).count();
            if bits == 8 {
                // Every logit within 5% of the row's largest, and the same top token wherever
                // the source's leads the runner-up by more than twice that.
                for (p, (g, w)) in got.iter().zip(&want).enumerate() {
                    let tol = 0.05 * w.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                    for (a, b) in g.iter().zip(w) {
                        assert!((a - b).abs() <= tol, "{dir} 8-bit: {a} vs {b}");
                    }
                    let top = w[argmax(w)];
                    let second = w.iter().copied().filter(|&v| v != top).fold(f32::MIN, f32::max);
                    assert!(
                        argmax(g) == argmax(w) || top - second <= 2.0 * tol,
                        "{dir} 8-bit: top token differs at {p}"
                    );
                }
                assert!(
                    same * 10 >= ids.len() * 9,
                    "{dir} 8-bit: top-1 agrees at {same}/{}",
                    ids.len()
                );
            } else {
                let err = got
                    .iter()
                    .zip(&want)
                    .map(|(g, w)| {
                        let spread = w.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                        g.iter().zip(w).fold(0.0f32, |m, (a, b)| m.max((a - b).abs() / spread))
                    })
                    .fold(0.0f32, f32::max);
                // 4 bits moves these random models' logits by up to ~30% of their spread
                // (the untied one, with its small logit gaps, keeps 20 of 31 top tokens).
                assert!(err <= 0.4, "{dir} 4-bit: logits move by {err} of their spread");
                assert!(
                    same * 10 >= ids.len() * 6,
                    "{dir} 4-bit: top-1 agrees at {same}/{}",
                    ids.len()
                );
            }
            std::fs::remove_dir_all(&out).unwrap();
        }
    }
}

/// mlx-lm's layout: config.json's `quantization`, each matrix as uint32 codes with scales
/// and biases, norms left dense.
fn check_layout(out: &Path, q: Quantization) {
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["quantization"]["group_size"], q.group_size);
    assert_eq!(config["quantization"]["bits"], q.bits);
    let (tensors, meta) = load_safetensors(out.join("model.safetensors")).unwrap();
    assert_eq!(meta.get("format").map(String::as_str), Some("mlx"));
    let codes = &tensors["model.layers.0.mlp.down_proj.weight"];
    assert_eq!(codes.dtype(), Dtype::Uint32);
    let scales = &tensors["model.layers.0.mlp.down_proj.scales"];
    let rows = codes.shape()[0];
    assert_eq!(scales.shape(), [rows, codes.shape()[1] * 32 / q.bits / q.group_size]);
    assert!(tensors.contains_key("model.layers.0.mlp.down_proj.biases"));
    assert!(tensors.contains_key("model.embed_tokens.scales"));
    assert_ne!(tensors["model.norm.weight"].dtype(), Dtype::Uint32);
    assert!(!tensors.contains_key("model.norm.scales"));
}

#[test]
fn bad_input_is_refused() {
    let src = fixture_path("hf/tiny_llama");
    let err = |src: &Path, out: &Path, q: Option<Quantization>| {
        convert(src, out, q, &mut |_| {}).expect_err("conversion should fail").to_string()
    };
    let out = scratch("bad");
    let q = |group_size, bits| Some(Quantization { group_size, bits });
    assert!(err(&src, &out, q(64, 3)).contains("--q-bits 3"));
    assert!(err(&src, &out, q(48, 4)).contains("--q-group-size 48"));
    let e = err(&fixture_path("tiny_llama.gguf"), &out, None);
    assert!(e.contains("GGUF"), "{e}");
    // An output directory holding files is never overwritten.
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "mine").unwrap();
    assert!(err(&src, &out, None).contains("not empty"));
    assert_eq!(std::fs::read_to_string(out.join("keep.txt")).unwrap(), "mine");
    std::fs::remove_dir_all(&out).unwrap();
    // A quantized model is not quantized again.
    let (done, _) = converted("hf/tiny_llama", "twice", q(64, 4));
    assert!(err(&done, &scratch("again"), q(64, 4)).contains("already quantized"));
    // Its config must say how it is quantized.
    let config = done.join("config.json");
    let mut json: Value = serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    json.as_object_mut().unwrap().remove("quantization");
    json.as_object_mut().unwrap().remove("quantization_config");
    std::fs::write(&config, json.to_string()).unwrap();
    let e = load(&done).err().expect("should fail").to_string();
    assert!(e.contains("no `quantization`"), "{e}");
    std::fs::remove_dir_all(&done).unwrap();
}
