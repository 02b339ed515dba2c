//! Greedy generation on the default model (SmolLM2-135M-Instruct Q4_1) against llama.cpp's on
//! the same file: the prompts' token ids and 64 greedy tokens for three raw-text prompts
//! (fixtures/llama_cpp_greedy.json, written by scripts/fixtures/llama_cpp.py).

mod common;

use common::fixture_path;
use ember_core::Array;
use ember_lm::generate::GenerateConfig;
use ember_lm::{load, stream_generate, LoadedModel};

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

/// The logits rows after each of `tokens`.
fn logits_rows(m: &LoadedModel, tokens: &[u32]) -> Vec<Vec<f32>> {
    let t: Vec<i32> = tokens.iter().map(|&t| t as i32).collect();
    let x = Array::from_slice(&t, &[1, t.len()]).unwrap();
    let logits = m.model.forward(&x, &mut m.model.make_cache(None)).unwrap();
    let v = m.model.config().vocab_size;
    logits.to_vec::<f32>().unwrap().chunks(v).map(|r| r.to_vec()).collect()
}

#[test]
fn greedy_tokens_match_llama_cpp() {
    let path = ember_lm::default_model::default_model(&mut |m| eprintln!("{m}")).unwrap();
    let m = load(&path).unwrap();
    let text = std::fs::read_to_string(fixture_path("llama_cpp_greedy.json")).unwrap();
    let fixture: serde_json::Value = serde_json::from_str(&text).unwrap();
    let max_tokens = fixture["max_tokens"].as_u64().unwrap() as usize;
    let eos = m.tokenizer.eos_ids().to_vec();
    let (mut agree, mut total) = (0, 0);
    for case in fixture["cases"].as_array().unwrap() {
        let prompt_text = case["prompt"].as_str().unwrap();
        let prompt = m.prompt_tokens(prompt_text, None, false).unwrap();
        assert_eq!(prompt, ids(&case["prompt_ids"]), "prompt ids of {prompt_text:?}");
        let want = ids(&case["ids"]);
        let config = GenerateConfig { max_tokens, ..Default::default() };
        let got: Vec<u32> = stream_generate(&m.model, &m.tokenizer, &prompt, &config)
            .unwrap()
            .map(|r| r.unwrap().token)
            .collect();
        let stopped = got.last().is_some_and(|t| eos.contains(t));
        let got = &got[..got.len() - stopped as usize];
        if got == want {
            assert_eq!(stopped, case["stopped"].as_bool().unwrap(), "{prompt_text:?}: stop");
        }
        // Teacher-forced along llama.cpp's tokens, each of ember's choices must be the same
        // or, where the two programs' activations (rounded to 8 bits differently) tip a near
        // tie the other way, within a few percent of the logit spread of it. A wrong model
        // is off by the whole spread.
        let forced: Vec<u32> = prompt.iter().chain(&want).copied().collect();
        let rows = logits_rows(&m, &forced[..forced.len() - 1]);
        let mut same = 0;
        for (i, &theirs) in want.iter().enumerate() {
            let row = &rows[prompt.len() - 1 + i];
            let ours = ember_lm::sample::argmax(row);
            let spread = row.iter().fold(0f32, |s, v| s.max(v.abs()));
            let gap = row[ours] - row[theirs as usize];
            assert!(
                gap <= 0.06 * spread,
                "{prompt_text:?} token {i}: ember picks {ours} by {gap} logits over \
                 llama.cpp's {theirs} (spread {spread})"
            );
            same += (ours == theirs as usize) as usize;
        }
        let prefix = got.iter().zip(&want).take_while(|(a, b)| a == b).count();
        eprintln!(
            "{prompt_text:?}: free-running, the first {prefix} of {} tokens agree; \
             teacher-forced, {same}",
            want.len()
        );
        agree += same;
        total += want.len();
    }
    // Near ties are rare: nearly every forced step must pick llama.cpp's token.
    assert!(agree * 10 >= total * 9, "only {agree} of {total} tokens agree with llama.cpp");
}
