//! Tokenizers built from llama.cpp's own vocab test files (tests/fixtures/vocab, written by
//! scripts/fixtures/vocab.py; see the README there): every input encodes to exactly the ids
//! llama.cpp's tokenizer gives (as its tests/test-tokenizer-0.cpp reads them: no BOS), and
//! decodes back to itself. Streaming detokenisation of the SentencePiece vocabulary never
//! emits a broken character.

mod common;

use common::fixture_path;
use ember_core::io::gguf::GgufFile;
use ember_lm::Tokenizer;

/// Inputs whose ids differ from llama.cpp's: (vocabulary, input, why). Each must still
/// differ, so an entry is dropped once it is fixed.
const KNOWN_EXCEPTIONS: &[(&str, &str, &str)] = &[];

fn vocab_path(name: &str) -> std::path::PathBuf {
    fixture_path(&format!("vocab/ggml-vocab-{name}.gguf"))
}

fn tokenizer(name: &str) -> Tokenizer {
    let path = vocab_path(name);
    Tokenizer::from_gguf(&GgufFile::open(&path).unwrap(), &path).unwrap()
}

/// The (input, ids) pairs of a vocabulary, split as test-tokenizer-0.cpp splits them.
fn cases(name: &str) -> Vec<(String, Vec<u32>)> {
    let path = vocab_path(name);
    let read = |ext: &str| std::fs::read_to_string(path.with_extension(ext)).unwrap();
    let inputs = read("gguf.inp");
    let mut inputs: Vec<&str> = inputs.split("\n__ggml_vocab_test__\n").collect();
    if inputs.last() == Some(&"") {
        inputs.pop();
    }
    let outputs = read("gguf.out");
    let outputs: Vec<&str> = outputs.lines().collect();
    assert_eq!(inputs.len(), outputs.len(), "{name}: inputs and outputs");
    assert!(inputs.len() > 30, "{name}: {} inputs", inputs.len());
    let ids = |line: &str| line.split_whitespace().map(|i| i.parse().unwrap()).collect();
    inputs.into_iter().zip(outputs).map(|(i, o)| (i.to_string(), ids(o))).collect()
}

fn check(name: &str) {
    let tok = tokenizer(name);
    let mut wrong = Vec::new();
    for (text, want) in cases(name) {
        let got = tok.encode(&text, false).unwrap();
        match KNOWN_EXCEPTIONS.iter().find(|(v, t, _)| *v == name && *t == text) {
            Some((_, _, why)) => {
                assert_ne!(got, want, "{name}: {text:?} matches now ({why}): drop the exception")
            }
            None if got != want => wrong.push(format!("{text:?}\n  got  {got:?}\n  want {want:?}")),
            None => assert_eq!(tok.decode(&got, false).unwrap(), text, "{name}: round trip"),
        }
    }
    assert!(wrong.is_empty(), "{name}: {} inputs differ:\n{}", wrong.len(), wrong.join("\n"));
}

#[test]
fn llama_spm() {
    check("llama-spm");
}

#[test]
fn phi_3() {
    check("phi-3");
}

#[test]
fn gpt_2() {
    check("gpt-2");
}

#[test]
fn starcoder() {
    check("starcoder");
}

#[test]
fn llama_bpe() {
    check("llama-bpe");
}

#[test]
fn qwen2() {
    check("qwen2");
}

#[test]
fn qwen35() {
    check("qwen35");
}

#[test]
fn falcon() {
    check("falcon");
}

#[test]
fn deepseek_coder() {
    check("deepseek-coder");
}

#[test]
fn deepseek_llm() {
    check("deepseek-llm");
}

#[test]
fn spm_metadata_bos_and_specials() {
    let tok = tokenizer("llama-spm");
    assert_eq!(tok.bos_id(), Some(1));
    assert_eq!(tok.eos_ids(), &[2]);
    // add_bos_token is true in the file.
    assert_eq!(tok.encode("Hello", true).unwrap(), [1, 15043]);
    // Text after a special token gets the space prefix again, as in llama.cpp.
    assert_eq!(tok.encode("<s>Hello</s>", false).unwrap(), [1, 15043, 2]);
    assert_eq!(tok.decode(&[1, 15043, 2], true).unwrap(), "Hello");
}

#[test]
fn spm_streaming_pieces_are_whole_characters_and_add_up() {
    let tok = tokenizer("llama-spm");
    // 🦙 and the Khmer letters have no piece of their own: they are spelled in byte tokens.
    let texts = ["naïve café 東京 🦙🦙 ស្ម emoji 🙂👍🏽 ©", "  leading spaces\n\tand 🦙", "🦙"];
    for text in texts {
        let ids = tok.encode(text, false).unwrap();
        let mut stream = tok.stream();
        let mut pieces: Vec<String> = ids.iter().map(|&id| stream.push(id).unwrap()).collect();
        pieces.push(stream.finish().unwrap());
        assert!(pieces.iter().all(|p| !p.contains('\u{FFFD}')), "{pieces:?}");
        assert!(pieces.iter().any(|p| p.is_empty()), "bytes were held: {pieces:?}");
        assert_eq!(pieces.concat(), text);
    }
}

#[test]
fn an_unknown_pre_tokenizer_is_an_error_naming_it() {
    let path = fixture_path("vocab/unsupported-pre.gguf");
    let err = Tokenizer::from_gguf(&GgufFile::open(&path).unwrap(), &path).err().unwrap();
    let msg = err.to_string();
    assert!(msg.contains("tokenizer.ggml.pre `kimi-k2`"), "{msg}");
}

#[test]
fn spm_streaming_outlives_a_stray_byte() {
    let tok = tokenizer("llama-spm");
    let mut ids = tok.encode("🦙", false).unwrap();
    // The llama's last byte again: a continuation byte with no character to continue.
    ids.push(*ids.last().unwrap());
    ids.extend(tok.encode("the", false).unwrap());
    let mut stream = tok.stream();
    let mut pieces: Vec<String> = ids.iter().map(|&id| stream.push(id).unwrap()).collect();
    pieces.push(stream.finish().unwrap());
    // The whole byte run decodes to U+FFFDs at once; the stream keeps the llama it emitted
    // and spells only the stray byte as one.
    assert_eq!(tok.decode(&ids, true).unwrap(), "\u{FFFD}".repeat(5) + " the");
    assert_eq!(pieces.concat(), "🦙\u{FFFD} the", "{pieces:?}");
}
