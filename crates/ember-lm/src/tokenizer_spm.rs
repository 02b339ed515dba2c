//! SentencePiece-style vocabularies from GGUF (`tokenizer.ggml.model = "llama"`: Llama 2,
//! TinyLlama, Mistral, Phi-3) as a `tokenizers` BPE, encoding as llama.cpp's SPM tokenizer.
//!
//! llama.cpp joins the adjacent pair whose concatenation is the best-scored vocabulary piece
//! until no pair is a piece, then spells leftover characters as `<0xXX>` byte tokens. That is
//! a BPE whose merges are every split of every normal piece into two pieces, ranked by the
//! piece's score (Hugging Face's LlamaTokenizerFast is built the same way). Spaces become `▁`
//! and, with `tokenizer.ggml.add_space_prefix` (default on), each run of text between special
//! tokens gets a leading `▁`; decoding undoes both.

use crate::error::Result;
use crate::tokenizer::{GgufVocab, TOKEN_NORMAL, TOKEN_UNKNOWN};
use ember_core::io::gguf::GgufArray;
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::prepend::Prepend;
use tokenizers::normalizers::replace::Replace;
use tokenizers::normalizers::{NormalizerWrapper, Sequence as NormalizerSequence};
use tokenizers::DecoderWrapper;

/// SentencePiece's stand-in for a space.
const SPACE: &str = "\u{2581}";

/// The tokenizer a SentencePiece-style GGUF vocabulary describes (special tokens are added
/// by the caller), and whether BOS is added when the file does not say (it is, as in
/// llama.cpp).
pub(crate) fn build(v: &GgufVocab) -> Result<(tokenizers::Tokenizer, bool)> {
    let scores = match v.file.get("tokenizer.ggml.scores").and_then(|s| s.as_array()) {
        Some(GgufArray::F32(s)) if s.len() == v.tokens.len() => s,
        _ => {
            return Err(v.error(format!(
                "metadata `tokenizer.ggml.scores` is missing or not {} f32 scores",
                v.tokens.len()
            )))
        }
    };
    let vocab = v.vocab();
    // A symbol is a single character or a normal piece earlier merges built.
    let mergeable = |s: &str| {
        vocab
            .get(s)
            .is_some_and(|&id| s.chars().nth(1).is_none() || v.types[id as usize] == TOKEN_NORMAL)
    };
    let mut ranked: Vec<(f32, usize, &str, &str)> = Vec::new();
    for (id, piece) in v.tokens.iter().enumerate() {
        if v.types[id] != TOKEN_NORMAL || vocab.get(piece.as_str()) != Some(&(id as u32)) {
            continue;
        }
        for (at, _) in piece.char_indices().skip(1) {
            let (left, right) = piece.split_at(at);
            if mergeable(left) && mergeable(right) {
                ranked.push((scores[id], id, left, right));
            }
        }
    }
    // Best score first; llama.cpp breaks ties by position, which equal ranks cannot express,
    // so ties (rare: scores are distinct in SentencePiece models) go by id.
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let merges = ranked.into_iter().map(|(_, _, l, r)| (l.to_string(), r.to_string())).collect();
    let mut builder = BPE::builder().vocab_and_merges(vocab, merges).byte_fallback(true);
    if let Some(unk) = v.types.iter().position(|&t| t == TOKEN_UNKNOWN) {
        builder = builder.unk_token(v.tokens[unk].clone()).fuse_unk(true);
    }
    let bpe = builder.build().map_err(|e| v.error(format!("tokenizer: {e}")))?;
    let add_space_prefix = v
        .file
        .get("tokenizer.ggml.add_space_prefix")
        .map(|b| {
            b.as_bool().ok_or_else(|| {
                v.error(format!("metadata `tokenizer.ggml.add_space_prefix` is {b:?}, not a bool"))
            })
        })
        .transpose()?
        .unwrap_or(true);
    let escape = |from: &str, to: &str| -> Result<Replace> {
        Replace::new(from, to).map_err(|e| v.error(format!("tokenizer: {e}")))
    };
    let mut normalizers: Vec<NormalizerWrapper> = vec![escape(" ", SPACE)?.into()];
    let mut decoders: Vec<DecoderWrapper> =
        vec![escape(SPACE, " ")?.into(), ByteFallback::new().into(), Fuse::new().into()];
    if add_space_prefix {
        normalizers.insert(0, Prepend::new(SPACE.into()).into());
        decoders.push(Strip::new(' ', 1, 0).into());
    }
    let mut tokenizer = tokenizers::Tokenizer::new(bpe);
    tokenizer
        .with_normalizer(Some(NormalizerSequence::new(normalizers)))
        .map_err(|e| v.error(format!("tokenizer: {e}")))?;
    tokenizer.with_decoder(Some(DecoderSequence::new(decoders)));
    Ok((tokenizer, true))
}
