//! The repetition penalty, as mlx-lm's `make_repetition_penalty` (what
//! `make_logits_processors(repetition_penalty, repetition_context_size)` adds): the logits of
//! the tokens among the latest of prompt and output are pushed towards less likely.

use crate::error::{Error, Result};

/// Penalises the tokens seen among the last `context_size`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RepetitionPenalty {
    /// A seen token's logit is divided by this when positive and multiplied by it when
    /// negative, once however often the token occurs (1: no effect; 0: off, as in mlx-lm).
    pub penalty: f32,
    /// How many of the latest tokens count.
    pub context_size: usize,
}

impl RepetitionPenalty {
    /// mlx-lm's default `repetition_context_size`.
    pub const DEFAULT_CONTEXT_SIZE: usize = 20;

    /// A penalty over mlx-lm's default window of 20 tokens.
    pub fn new(penalty: f32) -> RepetitionPenalty {
        RepetitionPenalty { penalty, context_size: Self::DEFAULT_CONTEXT_SIZE }
    }

    /// Rejects penalties mlx-lm rejects (negative) and ones that are not numbers.
    pub fn validate(&self) -> Result<()> {
        if !(self.penalty.is_finite() && self.penalty >= 0.0) {
            return Err(Error::Generate(format!(
                "repetition_penalty must be a non-negative number, got {}",
                self.penalty
            )));
        }
        Ok(())
    }

    /// Penalises, in `logits`, the tokens among the last `context_size` of `tokens` (the
    /// prompt then the output so far). Ids outside the vocabulary are ignored.
    pub fn apply(&self, tokens: &[u32], logits: &mut [f32]) {
        if self.penalty == 0.0 {
            return;
        }
        let mut seen = tokens[tokens.len().saturating_sub(self.context_size)..].to_vec();
        seen.sort_unstable();
        seen.dedup();
        for &t in &seen {
            if let Some(l) = logits.get_mut(t as usize) {
                *l = if *l < 0.0 { *l * self.penalty } else { *l / self.penalty };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn penalised(penalty: f32, context_size: usize, tokens: &[u32]) -> Vec<f32> {
        let mut logits = vec![2.0, -1.0, 0.5, 3.0, 0.0];
        RepetitionPenalty { penalty, context_size }.apply(tokens, &mut logits);
        logits
    }

    #[test]
    fn seen_tokens_are_divided_when_positive_and_multiplied_when_negative() {
        // Token 1 occurs twice but is penalised once; 2 and 3 were not seen; 0 stays 0.
        assert_eq!(penalised(2.0, 20, &[0, 1, 1, 4]), [1.0, -2.0, 0.5, 3.0, 0.0]);
        // A penalty below 1 favours repeats instead.
        assert_eq!(penalised(0.5, 20, &[3, 1]), [2.0, -0.5, 0.5, 6.0, 0.0]);
        // 0 is off (mlx-lm adds no processor); unknown ids are skipped.
        assert_eq!(penalised(0.0, 20, &[0, 1]), [2.0, -1.0, 0.5, 3.0, 0.0]);
        assert_eq!(penalised(2.0, 20, &[99]), [2.0, -1.0, 0.5, 3.0, 0.0]);
    }

    #[test]
    fn only_the_last_context_size_tokens_count() {
        // Window of 2 over [0, 3, 1, 2]: tokens 1 and 2.
        assert_eq!(penalised(4.0, 2, &[0, 3, 1, 2]), [2.0, -4.0, 0.125, 3.0, 0.0]);
        assert_eq!(penalised(4.0, 0, &[0, 3, 1, 2]), [2.0, -1.0, 0.5, 3.0, 0.0]);
        assert_eq!(penalised(4.0, 2, &[]), [2.0, -1.0, 0.5, 3.0, 0.0]);
    }

    #[test]
    fn negative_or_nan_penalties_are_rejected() {
        for p in [-1.0, f32::NAN, f32::INFINITY] {
            let err = RepetitionPenalty::new(p).validate().unwrap_err().to_string();
            assert!(err.contains("repetition_penalty must be a non-negative number"), "{err}");
        }
        assert!(RepetitionPenalty::new(1.3).validate().is_ok());
    }
}
