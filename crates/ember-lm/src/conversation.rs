//! Multi-turn chat over one KV cache (`ember chat`, as mlx_lm.chat). Each turn templates the
//! whole conversation and runs only the tokens beyond what the cache already holds: the
//! cache is rewound to where the new tokens part from the cached ones (a re-tokenised reply
//! may differ from the sampled tokens, and templates may rewrite earlier turns).

use crate::cache::KvCache;
use crate::chat::Message;
use crate::error::Result;
use crate::generate::{check_max_kv_size, stream_generate_with_cache, GenerateConfig};
use crate::generate::{Generation, Response};
use crate::LoadedModel;

/// What a turn runs through the model: the cache keeps its first `keep` positions and
/// `tokens` follow them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prefill<'t> {
    pub keep: usize,
    pub tokens: &'t [u32],
}

/// The tokens to prefill for a turn whose templated conversation is `conversation` when the
/// cache holds `cached`: everything after their common prefix, and at least the last token
/// (whose logits start the reply).
pub fn prefill<'t>(cached: &[u32], conversation: &'t [u32]) -> Prefill<'t> {
    let common = cached.iter().zip(conversation).take_while(|(a, b)| a == b).count();
    let keep = common.min(conversation.len().saturating_sub(1));
    Prefill { keep, tokens: &conversation[keep..] }
}

/// A conversation with a model: its messages and the cache of their tokens.
pub struct Conversation<'m> {
    model: &'m LoadedModel,
    /// The system message (if any), then the user and assistant turns.
    messages: Vec<Message>,
    cache: Vec<KvCache>,
    /// The tokens whose keys and values `cache` holds, in order.
    cached: Vec<u32>,
    max_kv_size: Option<usize>,
}

impl<'m> Conversation<'m> {
    /// A new conversation, opened by `system` when given; `max_kv_size` bounds the cache.
    pub fn new(
        model: &'m LoadedModel,
        system: Option<&str>,
        max_kv_size: Option<usize>,
    ) -> Result<Conversation<'m>> {
        check_max_kv_size(max_kv_size)?;
        Ok(Conversation {
            model,
            messages: system.map(|s| Message::new("system", s)).into_iter().collect(),
            cache: model.model.make_cache(max_kv_size),
            cached: Vec::new(),
            max_kv_size,
        })
    }

    /// The messages so far (the system message first, when there is one).
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// The tokens the cache holds.
    pub fn cached_tokens(&self) -> &[u32] {
        &self.cached
    }

    /// Forgets the turns (keeping the system message) and empties the cache.
    pub fn reset(&mut self) {
        self.messages.retain(|m| m.role == "system");
        self.clear_cache();
    }

    fn clear_cache(&mut self) {
        self.cache = self.model.model.make_cache(self.max_kv_size);
        self.cached.clear();
    }

    /// Starts the assistant's reply to `user`. The turn is recorded when the reply finishes;
    /// an error (a conversation longer than the context) leaves the conversation as it was.
    pub fn reply(&mut self, user: &str, config: &GenerateConfig) -> Result<Reply<'_>> {
        let mut messages = self.messages.clone();
        messages.push(Message::new("user", user));
        let tokens = self.model.template_tokens(&messages, true)?;
        // A reply that failed part-way leaves the cache out of step with `cached`.
        if self.cache.first().map_or(0, KvCache::offset) != self.cached.len() {
            self.clear_cache();
        }
        let mut p = prefill(&self.cached, &tokens);
        if p.keep < self.cached.len() {
            // Every layer's cache is in the same state: all trim or none does (and if not,
            // they are all replaced).
            let mut trimmed = true;
            for c in &mut self.cache {
                trimmed &= c.trim_to(p.keep);
            }
            if !trimmed {
                self.clear_cache();
                p = prefill(&[], &tokens);
            }
            self.cached.truncate(p.keep);
        }
        let Conversation { model, messages, cache, cached, .. } = self;
        let generation =
            stream_generate_with_cache(&model.model, &model.tokenizer, p.tokens, cache, config)?;
        Ok(Reply { generation, messages, cached, user: user.into(), tokens, text: String::new() })
    }
}

/// The assistant's reply in progress: an iterator of [`Response`]s that records the turn
/// in its conversation when it finishes.
pub struct Reply<'a> {
    generation: Generation<'a>,
    messages: &'a mut Vec<Message>,
    cached: &'a mut Vec<u32>,
    user: String,
    /// The conversation's tokens, then the reply's.
    tokens: Vec<u32>,
    text: String,
}

impl Iterator for Reply<'_> {
    type Item = Result<Response>;

    fn next(&mut self) -> Option<Result<Response>> {
        let r = self.generation.next()?;
        match &r {
            Ok(response) => {
                self.tokens.push(response.token);
                self.text.push_str(&response.text);
                let offset = self.generation.cache_offset();
                self.cached.extend_from_slice(&self.tokens[self.cached.len()..offset]);
                if response.finish.is_some() {
                    self.messages.push(Message::new("user", &self.user));
                    self.messages.push(Message::new("assistant", &self.text));
                }
            }
            // The step may have stopped part-way through the layers: the next turn starts
            // from an empty cache.
            Err(_) => self.cached.clear(),
        }
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefill_runs_what_follows_the_common_prefix() {
        // The cache holds the first turn and the reply but its last token.
        let cached = [1, 2, 3, 10, 11];
        let next = [1, 2, 3, 10, 11, 12, 4, 5, 6];
        assert_eq!(prefill(&cached, &next), Prefill { keep: 5, tokens: &[12, 4, 5, 6] });
        // The re-tokenised reply parts from the sampled tokens at index 3.
        let retokenised = [1, 2, 3, 9, 4, 5];
        assert_eq!(prefill(&cached, &retokenised), Prefill { keep: 3, tokens: &[9, 4, 5] });
        // An empty cache runs everything; an identical conversation still runs its last token.
        assert_eq!(prefill(&[], &next[..3]), Prefill { keep: 0, tokens: &[1, 2, 3] });
        assert_eq!(prefill(&cached, &cached), Prefill { keep: 4, tokens: &[11] });
        assert_eq!(prefill(&cached, &[]), Prefill { keep: 0, tokens: &[] });
    }
}
