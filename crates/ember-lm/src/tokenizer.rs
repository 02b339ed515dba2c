//! Tokenizers built from GGUF metadata with the `tokenizers` crate (or given whole, from a
//! Hugging Face tokenizer.json: [`crate::hf`]), and streaming detokenisation.
//!
//! `tokenizer.ggml.model` picks the vocabulary style: gpt2-style byte-level BPE
//! (tokenizer_bpe.rs) or llama-style SentencePiece (tokenizer_spm.rs). Both
//! share what this module reads: token texts and types, the special ids and the BOS flag.
//! Control, user-defined and unknown tokens are special tokens matched before splitting, so
//! chat-template markers encode to their ids.

use crate::error::{Error, Result};
use ember_core::io::gguf::{GgufArray, GgufFile};
use std::path::Path;
use tokenizers::models::bpe::Vocab;
use tokenizers::AddedToken;

/// GGUF token types (llama.cpp's `llama_token_type`).
pub(crate) const TOKEN_NORMAL: i32 = 1;
pub(crate) const TOKEN_UNKNOWN: i32 = 2;
const TOKEN_CONTROL: i32 = 3;
const TOKEN_USER_DEFINED: i32 = 4;

/// The `tokenizer.ggml.*` metadata both vocabulary styles start from.
pub(crate) struct GgufVocab<'a> {
    pub file: &'a GgufFile,
    path: &'a Path,
    pub tokens: &'a [String],
    /// One type per token (all normal when the file has none, as llama.cpp assumes).
    pub types: Vec<i32>,
}

impl<'a> GgufVocab<'a> {
    fn new(file: &'a GgufFile, path: &'a Path) -> Result<GgufVocab<'a>> {
        let mut v = GgufVocab { file, path, tokens: &[], types: Vec::new() };
        v.tokens = v.strings("tokenizer.ggml.tokens")?;
        v.types = match file.get("tokenizer.ggml.token_type").map(|t| t.as_array()) {
            None => vec![TOKEN_NORMAL; v.tokens.len()],
            Some(Some(GgufArray::I32(t))) if t.len() == v.tokens.len() => t.clone(),
            Some(_) => {
                return Err(v.error(format!(
                    "metadata `tokenizer.ggml.token_type` is not {} i32 types",
                    v.tokens.len()
                )))
            }
        };
        Ok(v)
    }

    /// A list-of-strings metadata value.
    pub fn strings(&self, key: &str) -> Result<&'a [String]> {
        self.file.get(key).and_then(|v| v.as_array()).and_then(|a| a.as_strings()).ok_or_else(
            || self.error(format!("metadata `{key}` is missing or not a list of strings")),
        )
    }

    /// An error about this file.
    pub fn error(&self, msg: String) -> Error {
        Error::model(self.path, msg)
    }

    /// Token text to id (a text listed twice maps to its last id, as in llama.cpp).
    pub fn vocab(&self) -> Vocab {
        self.tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect()
    }

    /// Tokens matched whole before the model splits text.
    fn specials(&self) -> Vec<AddedToken> {
        let special = [TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_USER_DEFINED];
        (self.tokens.iter().zip(&self.types))
            .filter(|(_, t)| special.contains(t))
            .map(|(s, _)| AddedToken::from(s.clone(), true))
            .collect()
    }
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
        let v = GgufVocab::new(file, path)?;
        let model = file.get("tokenizer.ggml.model").and_then(|v| v.as_str()).unwrap_or("");
        let (mut inner, default_add_bos) = match model {
            "gpt2" => crate::tokenizer_bpe::build(&v)?,
            "llama" => crate::tokenizer_spm::build(&v)?,
            _ => {
                return Err(v.error(format!(
                    "tokenizer.ggml.model `{model}` is not supported (gpt2-style BPE and \
                     llama-style SentencePiece are)"
                )))
            }
        };
        inner.add_special_tokens(v.specials()).map_err(tk_err)?;
        let id = |key: &str| -> Result<Option<u32>> {
            match file.get(key) {
                None => Ok(None),
                Some(val) => val
                    .as_u64()
                    .and_then(|val| u32::try_from(val).ok())
                    .filter(|&val| (val as usize) < v.tokens.len())
                    .map(Some)
                    .ok_or_else(|| v.error(format!("metadata `{key}` is {val:?}, not a token id"))),
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
        let add_bos = file
            .get("tokenizer.ggml.add_bos_token")
            .and_then(|v| v.as_bool())
            .unwrap_or(default_add_bos);
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
        StreamDecoder { tokenizer: self, ids: Vec::new(), context: 0, context_text: String::new() }
    }
}

/// Turns tokens into text as they arrive, never splitting a UTF-8 character: text ending in
/// an incomplete character (U+FFFD after lossy decoding) is held until the next token.
///
/// Each step decodes a few context tokens before the new ones and emits what the new ones
/// add: decoders treat a sequence's start specially (SentencePiece drops its leading space),
/// and byte-fallback decoders turn a whole run of byte tokens into U+FFFD when any character
/// in it is incomplete, so the context is the shortest suffix that decodes cleanly (all the
/// byte tokens of its last character).
pub struct StreamDecoder<'a> {
    tokenizer: &'a Tokenizer,
    /// Context tokens, then the tokens not emitted yet.
    ids: Vec<u32>,
    /// How many of `ids` are context.
    context: usize,
    /// The text of the context tokens.
    context_text: String,
}

/// Held tokens after which text is emitted even if it ends in U+FFFD (a UTF-8 character
/// spans at most four tokens, so such text holds a real replacement character).
const MAX_HELD: usize = 8;

/// Most tokens kept as context (one character's byte tokens).
const MAX_CONTEXT: usize = 4;

impl StreamDecoder<'_> {
    /// Adds a token; returns the text that became complete (often empty).
    pub fn push(&mut self, id: u32) -> Result<String> {
        self.ids.push(id);
        let text = self.tokenizer.decode(&self.ids, true)?;
        if text.ends_with('\u{FFFD}') && self.ids.len() - self.context < MAX_HELD {
            return Ok(String::new());
        }
        let piece = self.new_text(text)?;
        let n = self.ids.len();
        let mut keep = (1, self.tokenizer.decode(&self.ids[n - 1..], true)?);
        for k in 2..=n.min(MAX_CONTEXT) {
            if !keep.1.contains('\u{FFFD}') {
                break;
            }
            let text = self.tokenizer.decode(&self.ids[n - k..], true)?;
            if !text.contains('\u{FFFD}') {
                keep = (k, text);
            }
        }
        self.ids.drain(..n - keep.0);
        (self.context, self.context_text) = keep;
        Ok(piece)
    }

    /// What `text`, the decoding of all of `ids`, adds to the context's text.
    fn new_text(&self, text: String) -> Result<String> {
        match text.strip_prefix(self.context_text.as_str()) {
            Some(piece) => Ok(piece.to_string()),
            // New byte tokens made the context's run invalid UTF-8 and changed its text.
            None => self.tokenizer.decode(&self.ids[self.context..], true),
        }
    }

    /// Text still held (an incomplete character at the end of generation), lossily decoded.
    pub fn finish(&mut self) -> Result<String> {
        let text = self.tokenizer.decode(&self.ids, true)?;
        let piece = self.new_text(text)?;
        self.ids.clear();
        self.context = 0;
        self.context_text.clear();
        Ok(piece)
    }
}
