//! Correctness of the Llama-style decoder (architectures llama and qwen2): cached decoding
//! equals the full pass (as mlx-lm's tests check), logits and greedy tokens match NumPy
//! references computed from the same GGUF files (scripts/fixtures/lm.py), and bad input gives
//! clear errors.

mod common;

use common::{fixture_path, tiny_models, tiny_qwen2, Reference};
use ember_core::ops::random;
use ember_core::{Array, Dtype};
use ember_lm::cache::KvCache;
use ember_lm::generate::{Finish, GenerateConfig};
use ember_lm::weights::ArrayWeights;
use ember_lm::{load, stream_generate, Llama, LlamaConfig};
use std::collections::HashMap;

fn tiny_config() -> LlamaConfig {
    LlamaConfig {
        hidden_size: 64,
        num_layers: 2,
        intermediate_size: 96,
        num_heads: 4,
        num_kv_heads: 2,
        head_dim: 16,
        vocab_size: 50,
        rms_norm_eps: 1e-5,
        rope_theta: 10000.0,
        rope_dims: 16,
        rope_traditional: false,
        rope_scale: 1.0,
        context_length: 128,
        tie_word_embeddings: true,
        attention_bias: false,
        kv_cache_dtype: Dtype::Float32,
    }
}

/// A Llama with random float32 weights, built in memory.
fn random_llama(config: LlamaConfig, seed: u64) -> Llama {
    let key = random::key(seed);
    let keys = random::split(&key, 64).unwrap();
    let mut n = 0;
    let mut arrays = HashMap::new();
    let mut add = |name: String, shape: &[usize], scale: f32, shift: f32| {
        let k = ember_core::ops::take(&keys, &Array::scalar(n), Some(0)).unwrap();
        n += 1;
        let (loc, sd) = (Array::scalar(shift), Array::scalar(scale));
        let a = random::normal(shape, Dtype::Float32, Some(&loc), Some(&sd), Some(&k)).unwrap();
        arrays.insert(name, a);
    };
    let c = &config;
    let (h, q, kv) = (c.hidden_size, c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim);
    add("model.embed_tokens.weight".into(), &[c.vocab_size, h], 1.0, 0.0);
    add("model.norm.weight".into(), &[h], 0.1, 1.0);
    if !c.tie_word_embeddings {
        add("lm_head.weight".into(), &[c.vocab_size, h], (h as f32).powf(-0.5), 0.0);
    }
    for i in 0..c.num_layers {
        let p = format!("model.layers.{i}");
        let s = (h as f32).powf(-0.5);
        add(format!("{p}.input_layernorm.weight"), &[h], 0.1, 1.0);
        add(format!("{p}.post_attention_layernorm.weight"), &[h], 0.1, 1.0);
        add(format!("{p}.self_attn.q_proj.weight"), &[q, h], s, 0.0);
        add(format!("{p}.self_attn.k_proj.weight"), &[kv, h], s, 0.0);
        add(format!("{p}.self_attn.v_proj.weight"), &[kv, h], s, 0.0);
        if c.attention_bias {
            add(format!("{p}.self_attn.q_proj.bias"), &[q], 0.5, 0.0);
            add(format!("{p}.self_attn.k_proj.bias"), &[kv], 0.5, 0.0);
            add(format!("{p}.self_attn.v_proj.bias"), &[kv], 0.5, 0.0);
        }
        add(format!("{p}.self_attn.o_proj.weight"), &[h, q], s, 0.0);
        add(format!("{p}.mlp.gate_proj.weight"), &[c.intermediate_size, h], s, 0.0);
        add(format!("{p}.mlp.up_proj.weight"), &[c.intermediate_size, h], s, 0.0);
        add(format!("{p}.mlp.down_proj.weight"), &[h, c.intermediate_size], s, 0.0);
    }
    let weights = ArrayWeights::new("random", arrays);
    Llama::new(config, &weights, None).unwrap()
}

fn logits_rows(model: &Llama, ids: &[i32], cache: &mut [KvCache]) -> Vec<Vec<f32>> {
    let x = Array::from_slice(ids, &[1, ids.len()]).unwrap();
    let v = model.config().vocab_size;
    let out = model.forward(&x, cache).unwrap().to_vec::<f32>().unwrap();
    out.chunks(v).map(|r| r.to_vec()).collect()
}

fn assert_rows_close(a: &[Vec<f32>], b: &[Vec<f32>], tol: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: rows");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        for (j, (p, q)) in x.iter().zip(y).enumerate() {
            assert!((p - q).abs() <= tol * (1.0 + q.abs()), "{what} [{i}, {j}]: {p} vs {q}");
        }
    }
}

/// One cache per layer keeping keys and values in `dtype`.
fn caches(model: &Llama, max_kv: Option<usize>, dtype: Dtype) -> Vec<KvCache> {
    (0..model.config().num_layers).map(|_| KvCache::new(max_kv, dtype)).collect()
}

/// Prefill a prefix, then one token at a time: every position's logits equal the full pass
/// (both with caches in `dtype`).
fn check_cached_equals_full(
    model: &Llama,
    ids: &[i32],
    max_kv: Option<usize>,
    dtype: Dtype,
    tol: f32,
) {
    let full = logits_rows(model, ids, &mut caches(model, None, dtype));
    for split in [1, 3] {
        let mut cache = caches(model, max_kv, dtype);
        let mut rows = logits_rows(model, &ids[..split], &mut cache);
        for &t in &ids[split..] {
            rows.extend(logits_rows(model, &[t], &mut cache));
        }
        assert_eq!(cache[0].offset(), ids.len());
        assert_rows_close(
            &rows,
            &full,
            tol,
            &format!("split {split}, max_kv {max_kv:?}, {dtype} cache"),
        );
    }
}

#[test]
fn cached_decoding_equals_full_sequence() {
    let ids = [3, 17, 42, 8, 8, 0, 49, 23, 5, 11];
    for traditional in [false, true] {
        let model = random_llama(LlamaConfig { rope_traditional: traditional, ..tiny_config() }, 5);
        check_cached_equals_full(&model, &ids, None, Dtype::Float32, 1e-4);
        // A bounded cache that never fills behaves the same.
        check_cached_equals_full(&model, &ids, Some(16), Dtype::Float32, 1e-4);
        // A float16 cache: keys the prefill and a decode step sum in other orders may round to
        // neighbouring float16 values (a step of 2^-11 of their size).
        check_cached_equals_full(&model, &ids, None, Dtype::Float16, 1e-3);
    }
    let untied = random_llama(LlamaConfig { tie_word_embeddings: false, ..tiny_config() }, 9);
    check_cached_equals_full(&untied, &ids, None, Dtype::Float32, 1e-4);
    let biased = random_llama(LlamaConfig { attention_bias: true, ..tiny_config() }, 13);
    check_cached_equals_full(&biased, &ids, None, Dtype::Float32, 1e-4);
    // A cache whose capacity grows (in steps of 256) while decoding.
    let long: Vec<i32> = (0..300).map(|i| i * 7 % 50).collect();
    let model = random_llama(tiny_config(), 11);
    let full = logits_rows(&model, &long, &mut model.make_cache(None));
    let mut cache = model.make_cache(None);
    let mut rows = logits_rows(&model, &long[..250], &mut cache);
    for &t in &long[250..] {
        rows.extend(logits_rows(&model, &[t], &mut cache));
    }
    assert_rows_close(&rows[240..], &full[240..], 1e-3, "growth past 256 positions");
}

#[test]
fn quantized_gguf_cached_decoding_equals_full_sequence() {
    for m in tiny_models().into_iter().chain([tiny_qwen2()]) {
        let loaded = load(&fixture_path(&m.file)).unwrap();
        let ids: Vec<i32> = m.prompt.iter().map(|&t| t as i32).collect();
        // Float32 caches: with the files' own float16 ones, a key the prefill and a decode step
        // sum in other orders can round to neighbouring float16 values, and the 8-bit
        // activations downstream turn that into logit changes of ~10% (the reference tests
        // check these files with their float16 caches).
        assert_eq!(loaded.model.config().kv_cache_dtype, Dtype::Float16);
        check_cached_equals_full(&loaded.model, &ids, None, Dtype::Float32, 1e-4);
    }
}

#[test]
fn tiny_gguf_logits_and_greedy_tokens_match_numpy() {
    for m in tiny_models() {
        check_reference(&m);
    }
    check_reference(&common::smollm2());
}

/// Activations are quantized to 8 bits per block of 32 for the quantized products (as
/// llama.cpp does), so logits agree to a few percent (`r.logit_share`) of their largest
/// magnitude, not to float precision; a wrong RoPE, mask or head grouping is off by the whole
/// spread. SmolLM2's activations have outlier channels hundreds of times the rest: in their
/// blocks the 8-bit step is coarse, and a last-bit change upstream (another summation order,
/// as between the packed and row weight layouts, which agree to 1e-7 per product) can flip a
/// rounding and move its logits by up to ~5% of the spread.
fn logit_tolerance(r: &Reference, spread: f32) -> f32 {
    r.logit_share * spread + 0.02
}

fn check_reference(r: &Reference) {
    let loaded = load(&r.path()).unwrap();
    let ids: Vec<i32> = r.prompt.iter().map(|&t| t as i32).collect();
    let rows = logits_rows(&loaded.model, &ids, &mut loaded.model.make_cache(None));
    for (pos, want) in r.expected_rows() {
        let got = &rows[pos];
        let tol = logit_tolerance(r, want.iter().fold(0f32, |m, &(_, v)| m.max(v.abs())));
        for &(id, v) in &want {
            assert!((got[id] - v).abs() <= tol, "{} pos {pos} id {id}: {} vs {v}", r.name, got[id]);
        }
    }
    // Greedy tokens must agree for as long as the reference's choice is clearer than the
    // logit error; after a near tie either choice is right and the texts may part.
    let config = GenerateConfig { max_tokens: r.greedy.len(), ..Default::default() };
    let tokens: Vec<u32> = stream_generate(&loaded.model, &loaded.tokenizer, &r.prompt, &config)
        .unwrap()
        .map(|x| x.unwrap().token)
        .collect();
    let clear = r.greedy.iter().take_while(|s| s.gap > 2.0 * logit_tolerance(r, s.spread)).count();
    let eos = loaded.tokenizer.eos_ids();
    let stop = r.greedy.iter().position(|s| eos.contains(&s.id)).map_or(usize::MAX, |i| i + 1);
    let n = clear.min(stop);
    let want: Vec<u32> = r.greedy[..n].iter().map(|s| s.id).collect();
    assert_eq!(&tokens[..n], &want[..], "{} greedy continuation ({n} clear steps)", r.name);
    // Teacher-forced over the reference's continuation: every clear step must pick the same.
    let forced: Vec<i32> =
        ids.iter().copied().chain(r.greedy.iter().map(|s| s.id as i32)).collect();
    let rows =
        logits_rows(&loaded.model, &forced[..forced.len() - 1], &mut loaded.model.make_cache(None));
    let mut checked = 0;
    for (i, step) in r.greedy.iter().enumerate() {
        if step.gap > 2.0 * logit_tolerance(r, step.spread) {
            let got = ember_lm::sample::argmax(&rows[ids.len() - 1 + i]) as u32;
            assert_eq!(got, step.id, "{} teacher-forced step {i}", r.name);
            checked += 1;
        }
    }
    assert!(checked * 2 >= r.greedy.len(), "{}: too few clear steps ({checked})", r.name);
    eprintln!(
        "{}: greedy prefix of {n}, {checked} of {} forced steps matched",
        r.name,
        r.greedy.len()
    );
}

/// Qwen2: Q/K/V biases (layer 0's projections fused, layer 1's separate) and NeoX RoPE.
#[test]
fn tiny_qwen2_logits_and_greedy_tokens_match_numpy() {
    let r = tiny_qwen2();
    let config = load(&r.path()).unwrap().model.config().clone();
    assert!(config.attention_bias && !config.rope_traditional);
    assert_eq!(config.rms_norm_eps, 1e-6);
    check_reference(&r);
}

#[test]
fn generation_stops_at_max_tokens_and_reports_figures() {
    let m = &tiny_models()[1];
    let loaded = load(&fixture_path(&m.file)).unwrap();
    let config = GenerateConfig { max_tokens: 5, max_kv_size: Some(8), ..Default::default() };
    let out: Vec<_> = stream_generate(&loaded.model, &loaded.tokenizer, &m.prompt, &config)
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    let last = out.last().unwrap();
    assert!(out.len() <= 5 && last.finish.is_some());
    if out.len() == 5 {
        assert_eq!(last.finish, Some(Finish::Length));
    }
    assert_eq!(last.prompt_tokens, m.prompt.len());
    assert!(last.prompt_tps > 0.0 && last.time_to_first_token > 0.0);
}

#[test]
fn bad_input_gives_clear_errors() {
    let missing = load(std::path::Path::new("/nonexistent/model.gguf")).err().unwrap().to_string();
    assert!(missing.contains("/nonexistent/model.gguf"), "{missing}");

    let dir = std::env::temp_dir().join(format!("ember-lm-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bytes = std::fs::read(fixture_path("tiny_llama.gguf")).unwrap();
    let truncated = dir.join("truncated.gguf");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let err = load(&truncated).err().unwrap().to_string();
    assert!(err.contains("truncated.gguf") && err.contains("past the end"), "{err}");

    // The same file claiming another architecture (every `llama` renamed `llamb`).
    let mut other = bytes.clone();
    for i in 0..other.len().saturating_sub(5) {
        if &other[i..i + 5] == b"llama" {
            other[i + 4] = b'b';
        }
    }
    let renamed = dir.join("other_arch.gguf");
    std::fs::write(&renamed, &other).unwrap();
    let err = load(&renamed).err().unwrap().to_string();
    assert!(err.contains("architecture `llamb` is not supported"), "{err}");
    assert!(err.contains("(supported: llama, qwen2)"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();

    let loaded = load(&fixture_path("tiny_llama.gguf")).unwrap();
    let long = vec![5u32; 64];
    let config = GenerateConfig { max_tokens: 4, ..Default::default() };
    let err = stream_generate(&loaded.model, &loaded.tokenizer, &long, &config)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("64 tokens") && err.contains("context is 64"), "{err}");
    let err =
        stream_generate(&loaded.model, &loaded.tokenizer, &[], &config).err().unwrap().to_string();
    assert!(err.contains("no tokens"), "{err}");
}
