//! The architectures ember runs, by GGUF `general.architecture` or Hugging Face class name,
//! and what sets each apart.
//! They share one decoder ([`crate::llama`]); an [`Arch`] only says where its settings live
//! and which features it uses, so a new Llama-like family is a few lines here.

/// A supported model family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// Llama 2/3, SmolLM/SmolLM2, TinyLlama, Mistral.
    Llama,
    /// Qwen2 and Qwen2.5 (mlx-lm's `models/qwen2.py`).
    Qwen2,
}

impl Arch {
    /// Every supported architecture, in the order error messages list them.
    pub const ALL: [Arch; 2] = [Arch::Llama, Arch::Qwen2];

    /// The architecture a GGUF `general.architecture` value names, if supported.
    pub fn from_name(name: &str) -> Option<Arch> {
        Arch::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The GGUF name, also the prefix of its metadata keys (`qwen2.block_count`).
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
        }
    }

    /// The supported names, comma-separated (for error messages).
    pub fn supported() -> String {
        Arch::ALL.map(Arch::name).join(", ")
    }

    /// The transformers class of the architecture (config.json's `architectures`).
    pub fn hf_class(self) -> &'static str {
        match self {
            Arch::Llama => "LlamaForCausalLM",
            Arch::Qwen2 => "Qwen2ForCausalLM",
        }
    }

    /// The architecture a transformers class name names, if supported.
    pub fn from_hf_class(class: &str) -> Option<Arch> {
        Arch::ALL.into_iter().find(|a| a.hf_class() == class)
    }

    /// Whether RoPE rotates adjacent pairs (2i, 2i+1) rather than (i, i + d/2) in a GGUF
    /// file. llama.cpp's converter permutes the rows of Llama's Q and K so that its "normal"
    /// RoPE rotates adjacent pairs; Qwen2's are stored as trained, for the NeoX-style rotation
    /// of halves. Hugging Face checkpoints store both as trained (halves).
    pub fn rope_traditional(self) -> bool {
        match self {
            Arch::Llama => true,
            Arch::Qwen2 => false,
        }
    }

    /// Whether the query, key and value projections add a bias (Qwen2's do).
    pub fn attention_bias(self) -> bool {
        match self {
            Arch::Llama => false,
            Arch::Qwen2 => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Arch;

    #[test]
    fn names_round_trip_and_features_differ() {
        for a in Arch::ALL {
            assert_eq!(Arch::from_name(a.name()), Some(a));
            assert_eq!(Arch::from_hf_class(a.hf_class()), Some(a));
        }
        assert_eq!(Arch::from_name("gemma"), None);
        assert_eq!(Arch::from_hf_class("GemmaForCausalLM"), None);
        assert_eq!(Arch::supported(), "llama, qwen2");
        assert!(Arch::Llama.rope_traditional() && !Arch::Llama.attention_bias());
        assert!(!Arch::Qwen2.rope_traditional() && Arch::Qwen2.attention_bias());
    }
}
