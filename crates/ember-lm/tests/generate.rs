//! Generation features on the tiny fixture models (scripts/fixtures/lm.py) with their real
//! tokenizers: stop strings spanning several tokens, the repetition penalty against the
//! logits penalised by hand, and multi-turn chat reusing the KV cache.

mod common;

use common::fixture_path;
use ember_core::Array;
use ember_lm::conversation::Conversation;
use ember_lm::generate::{Finish, GenerateConfig, Response};
use ember_lm::penalty::RepetitionPenalty;
use ember_lm::sample::argmax;
use ember_lm::{load, stream_generate, LoadedModel, Message};

fn generate(m: &LoadedModel, prompt: &[u32], config: &GenerateConfig) -> Vec<Response> {
    stream_generate(&m.model, &m.tokenizer, prompt, config).unwrap().map(|r| r.unwrap()).collect()
}

fn text(responses: &[Response]) -> String {
    responses.iter().map(|r| r.text.as_str()).collect()
}

#[test]
fn stop_strings_spanning_tokens_end_generation_unprinted() {
    let m = load(&fixture_path("tiny_llama_untied.gguf")).unwrap();
    let prompt = m.prompt_tokens("Hello world", None, true).unwrap();
    let config = GenerateConfig { max_tokens: 12, ignore_eos: true, ..Default::default() };
    let free = generate(&m, &prompt, &config);
    let full = text(&free);
    // A stop string made of the text of tokens 3 to 5.
    let stop = text(&free[3..6]);
    assert!(free[3..6].iter().filter(|r| !r.text.is_empty()).count() >= 2, "{free:?}");
    let want = &full[..full.find(&stop).unwrap()];
    let stopped =
        generate(&m, &prompt, &GenerateConfig { stop: vec![stop.clone()], ..config.clone() });
    assert_eq!(text(&stopped), want, "stop string {stop:?} in {full:?}");
    let last = stopped.last().unwrap();
    assert_eq!(last.finish, Some(Finish::Stop));
    assert!(stopped.len() <= 6, "generation went on after the stop string");
    // A stop string that never appears changes nothing.
    let config = GenerateConfig { stop: vec!["never there \u{1F600}".into()], ..config };
    let unstopped = generate(&m, &prompt, &config);
    assert_eq!(text(&unstopped), full);
    assert_eq!(unstopped.last().unwrap().finish, Some(Finish::Length));
}

#[test]
fn repetition_penalty_changes_the_logits_of_recent_tokens() {
    // The tied model repeats the prompt's last token (a newline) when unpenalised.
    let m = load(&fixture_path("tiny_llama.gguf")).unwrap();
    let prompt = m.prompt_tokens("Hello world, hello there", None, true).unwrap();
    let ids: Vec<i32> = prompt.iter().map(|&t| t as i32).collect();
    let x = Array::from_slice(&ids, &[1, ids.len()]).unwrap();
    let logits = m.model.forward_last(&x, &mut m.model.make_cache(None)).unwrap();
    let logits = logits.to_vec::<f32>().unwrap();
    let greedy = argmax(&logits) as u32;
    assert!(prompt.contains(&greedy), "the greedy token {greedy} is not a repeat");
    // By hand: each distinct token of the last 20 of the prompt, penalised once.
    let penalty = 50.0f32;
    let mut by_hand = logits.clone();
    let mut window: Vec<u32> = prompt[prompt.len().saturating_sub(20)..].to_vec();
    window.sort_unstable();
    window.dedup();
    for t in window {
        let l = &mut by_hand[t as usize];
        *l = if *l < 0.0 { *l * penalty } else { *l / penalty };
    }
    let want = argmax(&by_hand) as u32;
    assert_ne!(want, greedy);
    let config = GenerateConfig {
        max_tokens: 3,
        repetition_penalty: Some(RepetitionPenalty::new(penalty)),
        ..Default::default()
    };
    let out = generate(&m, &prompt, &config);
    assert_eq!(out[0].token, want);
    // Every later choice avoids the tokens just generated too.
    assert!(out[1].token != out[0].token && out[2].token != out[1].token, "{out:?}");
    let bad = GenerateConfig { repetition_penalty: Some(RepetitionPenalty::new(-1.0)), ..config };
    let err = stream_generate(&m.model, &m.tokenizer, &prompt, &bad).err().unwrap().to_string();
    assert!(err.contains("repetition_penalty must be a non-negative number"), "{err}");
}

#[test]
fn chat_turns_reuse_the_cache_and_match_a_fresh_generation() {
    let m = load(&fixture_path("tiny_llama_untied.gguf")).unwrap();
    let config = GenerateConfig { max_tokens: 5, ignore_eos: true, ..Default::default() };
    let mut chat = Conversation::new(&m, Some("S"), None).unwrap();
    let first: Vec<Response> =
        chat.reply("Hello world", &config).unwrap().map(|r| r.unwrap()).collect();
    let turn1 = [Message::new("system", "S"), Message::new("user", "Hello world")];
    let prompt1 = m.template_tokens(&turn1, true).unwrap();
    assert_eq!(first[0].prompt_tokens, prompt1.len());
    assert_eq!(first.iter().map(|r| r.token).collect::<Vec<_>>(), {
        generate(&m, &prompt1, &config).iter().map(|r| r.token).collect::<Vec<_>>()
    });
    // The cache holds the prompt and every reply token but the last (never run).
    let mut cached = prompt1.clone();
    cached.extend(first[..first.len() - 1].iter().map(|r| r.token));
    assert_eq!(chat.cached_tokens(), &cached[..]);
    assert_eq!(chat.messages().len(), 3);
    assert_eq!(chat.messages()[2], Message::new("assistant", &text(&first)));

    let second: Vec<Response> = chat.reply("42", &config).unwrap().map(|r| r.unwrap()).collect();
    let prompt2 = m.template_tokens(&chat.messages()[..4], true).unwrap();
    // Only the tokens past the cached prefix were run, and the reply is the same as from
    // scratch over the whole conversation.
    let common = cached.iter().zip(&prompt2).take_while(|(a, b)| a == b).count();
    assert!(common > prompt1.len(), "the first turn's tokens are reused");
    assert_eq!(second[0].prompt_tokens, prompt2.len() - common);
    let fresh = generate(&m, &prompt2, &config);
    assert_eq!(
        second.iter().map(|r| r.token).collect::<Vec<_>>(),
        fresh.iter().map(|r| r.token).collect::<Vec<_>>()
    );

    // A turn that overflows the context (64) is refused and leaves the conversation as it was.
    let long = "the quick brown fox jumps over the lazy dog ".repeat(4);
    let err = chat.reply(&long, &config).err().unwrap().to_string();
    assert!(err.contains("context is 64") && err.contains("already in the cache"), "{err}");
    assert_eq!(chat.messages().len(), 5);
    // Reset keeps the system message and starts from an empty cache.
    chat.reset();
    assert_eq!(chat.messages(), &[Message::new("system", "S")]);
    let again: Vec<Response> =
        chat.reply("Hello world", &config).unwrap().map(|r| r.unwrap()).collect();
    assert_eq!(again[0].prompt_tokens, prompt1.len());
    assert_eq!(text(&again), text(&first));
}
