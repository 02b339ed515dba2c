//! Tokenizers built from GGUF metadata with the `tokenizers` crate (or given whole, from a
//! Hugging Face tokenizer.json: [`crate::hf`]), and streaming detokenisation.
//!
//! GGUF's gpt2-style vocabularies (`tokenizer.ggml.model = "gpt2"`) become a byte-level BPE
//! with the pre-tokenizer named by `tokenizer.ggml.pre` (llama.cpp keeps the same table of
//! names to split rules); control and user-defined tokens are special tokens matched before
//! splitting, so chat-template markers encode to their ids.

use crate::error::{Error, Result};
use ember_core::io::gguf::GgufFile;
use std::path::Path;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, SplitDelimiterBehavior};

/// GPT-2's split rule (also what `ByteLevel(use_regex=True)` applies).
const GPT2_SPLIT: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
/// Llama 3's split rule.
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen 2's split rule: as Llama 3's but single digits.
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// GGUF token types (llama.cpp's `llama_token_type`).
const TOKEN_CONTROL: i64 = 3;
const TOKEN_USER_DEFINED: i64 = 4;

/// The pre-tokenizer for a `tokenizer.ggml.pre` name, and whether whole words found in the
/// vocabulary skip the merges (Llama 3's `ignore_merges`).
fn pre_tokenizer(pre: &str) -> Option<(PreTokenizerWrapper, bool)> {
    let split = |pattern: &str| -> PreTokenizerWrapper {
        Split::new(SplitPattern::Regex(pattern.into()), SplitDelimiterBehavior::Isolated, false)
            .expect("the built-in split patterns compile")
            .into()
    };
    let bytes = || ByteLevel::new(false, false, false).into();
    let seq = |parts: Vec<PreTokenizerWrapper>| PreTokenizerWrapper::Sequence(Sequence::new(parts));
    Some(match pre {
        // Each digit alone, then GPT-2's rule (Hugging Face: Digits + ByteLevel).
        "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva" => {
            (seq(vec![Digits::new(true).into(), ByteLevel::new(false, true, true).into()]), false)
        }
        "default" | "gpt-2" | "gpt2" | "mpt" | "olmo" | "jais" => {
            (seq(vec![split(GPT2_SPLIT), bytes()]), false)
        }
        "llama-bpe" | "llama3" | "falcon3" | "pixtral" => {
            (seq(vec![split(LLAMA3_SPLIT), bytes()]), true)
        }
        "qwen2" | "stablelm2" | "deepseek-r1-qwen" => {
            (seq(vec![split(QWEN2_SPLIT), bytes()]), false)
        }
        _ => return None,
    })
}

/// A tokenizer with the special ids generation needs.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    bos: Option<u32>,
    add_bos: bool,
    eos: Vec<u32>,
}

fn tk_err(e: impl std::fmt::Display) -> Error {
    Error::Tokenizer(e.to_string())
}

impl Tokenizer {
    /// A tokenizer over `inner` (a Hugging Face tokenizer.json, say): `bos` is prepended by
    /// [`Tokenizer::encode`] when `add_bos`, and any of `eos` ends generation.
    pub fn new(
        inner: tokenizers::Tokenizer,
        bos: Option<u32>,
        add_bos: bool,
        eos: Vec<u32>,
    ) -> Tokenizer {
        Tokenizer { inner, bos, add_bos, eos }
    }

    /// Builds the tokenizer a GGUF file describes in its `tokenizer.ggml.*` metadata.
    pub fn from_gguf(file: &GgufFile, path: &Path) -> Result<Tokenizer> {
        let strings = |key: &str| -> Result<&[String]> {
            file.get(key).and_then(|v| v.as_array()).and_then(|a| a.as_strings()).ok_or_else(|| {
                Error::model(path, format!("metadata `{key}` is missing or not a list of strings"))
            })
        };
        let model = file.get("tokenizer.ggml.model").and_then(|v| v.as_str()).unwrap_or("");
        if model != "gpt2" {
            return Err(Error::model(
                path,
                format!(
                    "tokenizer.ggml.model `{model}` is not supported yet (only gpt2-style BPE)"
                ),
            ));
        }
        let pre = file.get("tokenizer.ggml.pre").and_then(|v| v.as_str()).unwrap_or("default");
        let (pre_tok, ignore_merges) = pre_tokenizer(pre).ok_or_else(|| {
            Error::model(path, format!("tokenizer.ggml.pre `{pre}` is not a known pre-tokenizer"))
        })?;
        let tokens = strings("tokenizer.ggml.tokens")?;
        let merges = strings("tokenizer.ggml.merges")?
            .iter()
            .map(|m| {
                m.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string())).ok_or_else(|| {
                    Error::model(path, format!("tokenizer.ggml.merges: `{m}` is not two tokens"))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let vocab: Vocab = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .ignore_merges(ignore_merges)
            .build()
            .map_err(|e| Error::model(path, format!("tokenizer: {e}")))?;
        let mut inner = tokenizers::Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(pre_tok));
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        let types: Vec<i64> = match file.get("tokenizer.ggml.token_type").and_then(|v| v.as_array())
        {
            Some(ember_core::io::gguf::GgufArray::I32(t)) => t.iter().map(|&t| t as i64).collect(),
            _ => vec![],
        };
        let specials: Vec<AddedToken> = tokens
            .iter()
            .zip(&types)
            .filter(|(_, &t)| t == TOKEN_CONTROL || t == TOKEN_USER_DEFINED)
            .map(|(s, _)| AddedToken::from(s.clone(), true))
            .collect();
        inner.add_special_tokens(specials).map_err(tk_err)?;
        let id = |key: &str| -> Result<Option<u32>> {
            match file.get(key) {
                None => Ok(None),
                Some(v) => v
                    .as_u64()
                    .and_then(|v| u32::try_from(v).ok())
                    .filter(|&v| (v as usize) < tokens.len())
                    .map(Some)
                    .ok_or_else(|| {
                        Error::model(path, format!("metadata `{key}` is {v:?}, not a token id"))
                    }),
            }
        };
        let eos: Vec<u32> = [
            "tokenizer.ggml.eos_token_id",
            "tokenizer.ggml.eot_token_id",
            "tokenizer.ggml.eom_token_id",
        ]
        .into_iter()
        .map(id)
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect();
        let add_bos =
            file.get("tokenizer.ggml.add_bos_token").and_then(|v| v.as_bool()).unwrap_or(false);
        Ok(Tokenizer { inner, bos: id("tokenizer.ggml.bos_token_id")?, add_bos, eos })
    }

    /// Token ids of `text`; special-token markers in it map to their ids. With `add_bos`,
    /// the BOS token is prepended when the model wants one and the text lacks it.
    pub fn encode(&self, text: &str, add_bos: bool) -> Result<Vec<u32>> {
        let ids = self.inner.encode(text, false).map_err(tk_err)?.get_ids().to_vec();
        match self.bos {
            Some(bos) if add_bos && self.add_bos && ids.first() != Some(&bos) => {
                Ok(std::iter::once(bos).chain(ids).collect())
            }
            _ => Ok(ids),
        }
    }

    /// The text of `ids`; special tokens are left out when `skip_special`.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.inner.decode(ids, skip_special).map_err(tk_err)
    }

    /// Ids that end generation.
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos
    }

    /// The text of one token (special tokens included), if the id exists.
    pub fn token_text(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    /// A decoder for tokens arriving one at a time.
    pub fn stream(&self) -> StreamDecoder<'_> {
        StreamDecoder { tokenizer: self, ids: Vec::new(), emitted: 0 }
    }
}

/// Turns tokens into text as they arrive, never splitting a UTF-8 character: text ending in
/// an incomplete character (U+FFFD after lossy decoding) is held until the next token.
pub struct StreamDecoder<'a> {
    tokenizer: &'a Tokenizer,
    /// Tokens since the last piece, after one token of context.
    ids: Vec<u32>,
    /// Bytes of `decode(ids)` already emitted (the context token's text).
    emitted: usize,
}

/// Held tokens after which text is emitted even if it ends in U+FFFD (a UTF-8 character
/// spans at most four byte tokens, so such text is a real replacement character).
const MAX_HELD: usize = 5;

impl StreamDecoder<'_> {
    /// Adds a token; returns the text that became complete (often empty).
    pub fn push(&mut self, id: u32) -> Result<String> {
        self.ids.push(id);
        let text = self.tokenizer.decode(&self.ids, true)?;
        let held = text.ends_with('\u{FFFD}') && self.ids.len() <= MAX_HELD;
        let Some(piece) = text.get(self.emitted..).filter(|_| !held) else {
            return Ok(String::new());
        };
        let piece = piece.to_string();
        // Keep the last token as context: decoders may treat a sequence's start specially.
        self.ids.drain(..self.ids.len() - 1);
        self.emitted = self.tokenizer.decode(&self.ids, true)?.len();
        Ok(piece)
    }

    /// Text still held (an incomplete character at the end of generation), lossily decoded.
    pub fn finish(&mut self) -> Result<String> {
        let text = self.tokenizer.decode(&self.ids, true)?;
        let piece = text.get(self.emitted..).unwrap_or_default().to_string();
        self.ids.clear();
        self.emitted = 0;
        Ok(piece)
    }
}
