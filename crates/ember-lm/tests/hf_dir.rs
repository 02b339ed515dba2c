//! Hugging Face model directories: the directories transformers wrote from the tiny GGUF
//! fixtures (scripts/fixtures/hf_dir.py; float32, bfloat16, and float16 in shards) give the
//! logits of transformers' own float32 forward pass and of the same model loaded from its
//! GGUF, their tokenizers and chat templates agree with the GGUF's, config.json is read as
//! transformers writes it (both RoPE layouts), and bad directories give clear errors.

mod common;

use common::{fixture_path, logits};
use ember_core::io::{load_safetensors, save_safetensors};
use ember_core::{Array, Dtype};
use ember_lm::hf::config_from_json;
use ember_lm::sample::argmax;
use ember_lm::{load, Message};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// One directory of hf_dir.json.
struct DirCase {
    dir: PathBuf,
    gguf: Option<PathBuf>,
    dtype: String,
    /// transformers' token ids of the fixture's text.
    ids: Vec<u32>,
    /// transformers' float32 logits of `ids`, every position.
    logits: Vec<Vec<f32>>,
    /// For a GGUF not kept as a fixture: lm.py's NumPy logits of its first positions.
    gguf_logits: Vec<Vec<f32>>,
}

fn rows(v: &Value) -> Vec<Vec<f32>> {
    let Some(rows) = v.as_array() else { return vec![] };
    rows.iter()
        .map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect())
        .collect()
}

fn fixture() -> (String, Vec<DirCase>) {
    let text = std::fs::read_to_string(fixture_path("hf_dir.json")).unwrap();
    let j: Value = serde_json::from_str(&text).unwrap();
    let cases = j["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| DirCase {
            dir: fixture_path(m["dir"].as_str().unwrap()),
            gguf: m["gguf"].as_str().map(fixture_path),
            dtype: m["dtype"].as_str().unwrap().to_string(),
            ids: m["ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect(),
            logits: rows(&m["logits"]),
            gguf_logits: rows(&m["gguf_prompt_logits"]),
        })
        .collect();
    (j["text"].as_str().unwrap().to_string(), cases)
}

/// Best minus second-best value of a row.
fn gap(row: &[f32]) -> f32 {
    let top = row[argmax(row)];
    top - row.iter().copied().filter(|&v| v != top).fold(f32::MIN, f32::max)
}

/// Checks `got` against `want` (rows of logits): every value within `share` of the largest
/// |logit| of its row, and the same top token wherever the reference's best token leads by
/// more than twice that error. Returns how many positions picked the same top token.
fn compare(got: &[Vec<f32>], want: &[Vec<f32>], share: f32, what: &str) -> usize {
    assert_eq!(got.len(), want.len(), "{what}: positions");
    let mut same_top = 0;
    for (p, (g, w)) in got.iter().zip(want).enumerate() {
        let tol = share * w.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        for (i, (a, b)) in g.iter().zip(w).enumerate() {
            assert!(
                (a - b).abs() <= tol,
                "{what}: position {p}, token {i}: {a} vs {b} (tol {tol})"
            );
        }
        if argmax(g) == argmax(w) {
            same_top += 1;
        } else {
            assert!(gap(w) <= 2.0 * tol, "{what}: position {p}: top token differs");
        }
    }
    same_top
}

/// Logit error allowed against float32 math, as a share of the largest |logit|: ember runs
/// half-precision checkpoints in their precision (inputs of each product rounded to it).
fn share(dtype: &str) -> f32 {
    match dtype {
        "torch.float32" => 2e-5,
        "torch.float16" => 2e-3,
        "torch.bfloat16" => 1.5e-2,
        other => panic!("unexpected dtype {other}"),
    }
}

#[test]
fn directories_match_transformers_logits() {
    let (_, cases) = fixture();
    assert_eq!(cases.len(), 3);
    for c in &cases {
        let m = load(&c.dir).unwrap();
        let got = logits(&m.model, &c.ids);
        let same = compare(&got, &c.logits, share(&c.dtype), &c.dir.display().to_string());
        assert!(
            same + 1 >= c.ids.len(),
            "{}: top token differs at {} positions",
            c.dir.display(),
            c.ids.len() - same
        );
    }
}

#[test]
fn directories_match_their_gguf() {
    let (_, cases) = fixture();
    for c in &cases {
        let dir = load(&c.dir).unwrap();
        let what = c.dir.display().to_string();
        // The GGUF's quantized products round activations to 8 bits (see tests/llama.rs).
        let share = share(&c.dtype) + 0.02;
        match &c.gguf {
            Some(gguf) => {
                let g = load(gguf).unwrap();
                let want = logits(&g.model, &c.ids);
                let same = compare(&logits(&dir.model, &c.ids), &want, share, &what);
                assert!(
                    same + 1 >= c.ids.len(),
                    "{what}: top token differs at {} positions",
                    c.ids.len() - same
                );
            }
            None => {
                let n = c.gguf_logits.len();
                assert!(n > 8, "{what}: NumPy reference of the GGUF");
                let got = logits(&dir.model, &c.ids[..n]);
                let same = compare(&got, &c.gguf_logits, share, &what);
                assert!(same + 1 >= n, "{what}: top token differs at {} positions", n - same);
            }
        }
    }
}

#[test]
fn tokenizer_and_chat_template_match_the_gguf() {
    let (text, cases) = fixture();
    for c in &cases {
        let dir = load(&c.dir).unwrap();
        let what = c.dir.display().to_string();
        assert_eq!(dir.tokenizer.encode(&text, true).unwrap(), c.ids, "{what}");
        assert_eq!(dir.tokenizer.decode(&c.ids, false).unwrap(), text, "{what}");
        // lm.py's models: <|im_start|> is BOS (never added), <|im_end|> ends a turn.
        assert_eq!(dir.tokenizer.bos_id(), Some(1), "{what}");
        assert_eq!(dir.tokenizer.eos_ids(), [2], "{what}");
        let messages = [Message::new("system", "Be brief."), Message::new("user", "Hi 42")];
        let tokens = dir.template_tokens(&messages, true).unwrap();
        if let Some(gguf) = &c.gguf {
            let g = load(gguf).unwrap();
            assert_eq!(tokens, g.template_tokens(&messages, true).unwrap(), "{what}");
        }
        let rendered = dir.tokenizer.decode(&tokens, false).unwrap();
        assert_eq!(
            rendered,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi 42<|im_end|>\n\
             <|im_start|>assistant\n",
            "{what}"
        );
    }
}

/// A config.json as transformers 5 writes it for a small Llama.
fn llama_config() -> serde_json::Map<String, Value> {
    let v = json!({
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 100,
        "max_position_embeddings": 256, "rms_norm_eps": 1e-5, "tie_word_embeddings": true,
        "dtype": "bfloat16", "hidden_act": "silu",
        "rope_parameters": {"rope_theta": 500000.0, "rope_type": "default"}
    });
    v.as_object().unwrap().clone()
}

fn with(
    mut base: serde_json::Map<String, Value>,
    changes: Value,
) -> serde_json::Map<String, Value> {
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            base.remove(k);
        } else {
            base.insert(k.clone(), v.clone());
        }
    }
    base
}

#[test]
fn config_json_fields_and_rope_layouts() {
    let path = Path::new("dir/config.json");
    let c = config_from_json(&llama_config(), path).unwrap().config;
    assert_eq!((c.hidden_size, c.num_layers, c.intermediate_size), (64, 2, 128));
    assert_eq!((c.num_heads, c.num_kv_heads, c.head_dim, c.rope_dims), (4, 2, 16, 16));
    assert_eq!((c.vocab_size, c.context_length), (100, 256));
    assert_eq!((c.rms_norm_eps, c.rope_theta, c.rope_scale), (1e-5, 500000.0, 1.0));
    // transformers keeps Llama's Q/K rows as trained: RoPE rotates halves.
    assert!(c.tie_word_embeddings && !c.rope_traditional && !c.attention_bias);

    // transformers 4: rope_theta and rope_scaling at the top level; absent fields default as
    // in transformers (kv heads = heads, untied, eps 1e-6).
    let old = with(
        llama_config(),
        json!({"rope_parameters": null, "rope_theta": 10000.0,
               "rope_scaling": {"type": "linear", "factor": 4.0},
               "num_key_value_heads": null, "tie_word_embeddings": null, "rms_norm_eps": null,
               "dtype": null, "torch_dtype": "float16", "head_dim": 32}),
    );
    let c = config_from_json(&old, path).unwrap().config;
    assert_eq!((c.rope_theta, c.rope_scale, c.num_kv_heads, c.head_dim), (10000.0, 0.25, 4, 32));
    assert!(!c.tie_word_embeddings && c.rms_norm_eps == 1e-6);
    let linear = with(
        llama_config(),
        json!({"rope_parameters": {"rope_theta": 1e4, "rope_type": "linear", "factor": 2.0}}),
    );
    assert_eq!(config_from_json(&linear, path).unwrap().config.rope_scale, 0.5);

    let qwen = with(
        llama_config(),
        json!({"architectures": ["Qwen2ForCausalLM"], "use_sliding_window": false}),
    );
    let c = config_from_json(&qwen, path).unwrap().config;
    assert!(c.attention_bias && !c.rope_traditional);

    let err = |changes: Value| {
        config_from_json(&with(llama_config(), changes), path).err().unwrap().to_string()
    };
    let e = err(json!({"architectures": ["GemmaForCausalLM"]}));
    assert!(
        e.contains("dir/config.json") && e.contains("`GemmaForCausalLM` is not supported"),
        "{e}"
    );
    assert!(e.contains("LlamaForCausalLM, Qwen2ForCausalLM"), "{e}");
    let e =
        err(json!({"rope_parameters": {"rope_theta": 1e4, "rope_type": "yarn", "factor": 4.0}}));
    assert!(
        e.contains("RoPE type `yarn` is not supported") && e.contains("rope_parameters"),
        "{e}"
    );
    let e = err(json!({"rope_scaling": {"rope_type": "llama3", "factor": 8.0}}));
    assert!(e.contains("`rope_scaling.low_freq_factor` must be a positive number"), "{e}");
    let e = err(json!({"hidden_size": null}));
    assert!(e.contains("missing `hidden_size`"), "{e}");
    let e = err(json!({"num_hidden_layers": "two"}));
    assert!(e.contains("`num_hidden_layers` is \"two\", not a count"), "{e}");
    let e = err(json!({"dtype": "float8_e4m3fn"}));
    assert!(e.contains("dtype `float8_e4m3fn` is not supported"), "{e}");
    let e = err(json!({"hidden_act": "gelu"}));
    assert!(e.contains("`hidden_act` `gelu`"), "{e}");
    let e = err(json!({"quantization_config": {"quant_method": "gptq"}}));
    assert!(e.contains("quantization_config"), "{e}");
    let e = err(json!({"num_key_value_heads": 3}));
    assert!(e.contains("not a multiple of 3"), "{e}");
}

#[test]
fn llama3_rope_scaling_matches_transformers() {
    let j: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture_path("hf_dir.json")).unwrap())
            .unwrap();
    let r = &j["llama3_rope"];
    let dir = scratch_copy("llama3");
    let config_path = dir.join("config.json");
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["rope_parameters"] = r["rope_parameters"].clone();
    std::fs::write(&config_path, config.to_string()).unwrap();

    // transformers' inverse frequencies: ours are their reciprocals (wavelengths).
    let hf = config_from_json(config.as_object().unwrap(), &config_path).unwrap();
    let wavelengths = hf.rope_freqs.unwrap();
    let inv_freq = r["inv_freq"].as_array().unwrap();
    assert_eq!(wavelengths.len(), inv_freq.len());
    for (w, f) in wavelengths.iter().zip(inv_freq) {
        let want = 1.0 / f.as_f64().unwrap() as f32;
        assert!((w - want).abs() <= 1e-5 * want, "wavelength {w} vs {want}");
    }

    let (_, cases) = fixture();
    let m = load(&dir).unwrap();
    let got = logits(&m.model, &cases[0].ids);
    let same = compare(&got, &rows(&r["logits"]), share("torch.float32"), "llama3 RoPE");
    assert_eq!(same, cases[0].ids.len());
    // The scaling matters here: the unscaled directory's logits differ.
    assert!(got != logits(&load(&cases[0].dir).unwrap().model, &cases[0].ids));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A copy of the tiny float32 directory in a fresh temporary directory.
fn scratch_copy(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ember-hf-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(fixture_path("hf/tiny_llama")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    dir
}

fn load_err(dir: &Path) -> String {
    load(dir).err().expect("loading should fail").to_string()
}

/// Rewrites `dir/model.safetensors` with `edit` applied to its tensors.
fn rewrite_weights(dir: &Path, edit: impl FnOnce(&mut Vec<(String, Array)>)) {
    let file = dir.join("model.safetensors");
    let (arrays, _) = load_safetensors(&file).unwrap();
    let mut arrays: Vec<(String, Array)> = arrays.into_iter().collect();
    for (_, a) in &mut arrays {
        // Copies, so that the mapped file can be replaced.
        *a = a.astype(Dtype::Float64).unwrap().astype(a.dtype()).unwrap();
        a.eval().unwrap();
    }
    edit(&mut arrays);
    let refs: Vec<(&str, &Array)> = arrays.iter().map(|(n, a)| (n.as_str(), a)).collect();
    save_safetensors(&file, &refs, None).unwrap();
}

#[test]
fn bad_directories_give_clear_errors() {
    let dir = scratch_copy("errors");
    load(&dir).unwrap();

    let norm = "model.layers.1.post_attention_layernorm.weight";
    rewrite_weights(&dir, |a| a.retain(|(n, _)| n != norm));
    let e = load_err(&dir);
    assert!(e.contains("model.safetensors") && e.contains(&format!("no tensor `{norm}`")), "{e}");

    rewrite_weights(&dir, |a| {
        a.push((norm.into(), Array::from_slice(&[1.0f32; 32], &[32]).unwrap()))
    });
    let e = load_err(&dir);
    assert!(e.contains(&format!("tensor `{norm}` has shape [32], the config implies [64]")), "{e}");

    rewrite_weights(&dir, |a| {
        a.retain(|(n, _)| n != norm);
        a.push((norm.into(), Array::from_slice(&[1i32; 64], &[64]).unwrap()));
    });
    let e = load_err(&dir);
    assert!(e.contains(&format!("tensor `{norm}` is Int32")) && e.contains("bfloat16"), "{e}");

    let file = dir.join("model.safetensors");
    let bytes = std::fs::read(fixture_path("hf/tiny_llama/model.safetensors")).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() - 100]).unwrap();
    let e = load_err(&dir);
    assert!(e.contains("model.safetensors") && e.contains("bytes of tensor data"), "{e}");
    std::fs::write(&file, &bytes[..4]).unwrap();
    let e = load_err(&dir);
    assert!(e.contains("model.safetensors") && e.contains("fewer than 8"), "{e}");
    std::fs::remove_file(&file).unwrap();
    let e = load_err(&dir);
    assert!(e.contains("no weights") && e.contains("model.safetensors.index.json"), "{e}");
    std::fs::write(&file, &bytes).unwrap();

    // A shard index naming a shard that lacks a tensor it lists.
    let index = dir.join("model.safetensors.index.json");
    std::fs::write(&index, r#"{"weight_map": {"model.norm.weight": "model.safetensors", "lm_head.weight": "model.safetensors"}}"#).unwrap();
    let e = load_err(&dir);
    assert!(
        e.contains("index.json")
            && e.contains("`lm_head.weight` is not in shard `model.safetensors`"),
        "{e}"
    );
    std::fs::remove_file(&index).unwrap();

    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    let e = load_err(&dir);
    assert!(e.contains("tokenizer.json") && e.contains("missing"), "{e}");

    std::fs::write(dir.join("config.json"), "{\"architectures\": [").unwrap();
    let e = load_err(&dir);
    assert!(e.contains("config.json") && e.contains("not valid JSON"), "{e}");
    std::fs::remove_file(dir.join("config.json")).unwrap();
    let e = load_err(&dir);
    assert!(e.contains("config.json") && e.contains("missing"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
