//! GGML tensor types: their ids, block sizes and byte sizes (as GGUF files store them), the
//! block layouts of the simple quantizations, and dequantization of those blocks to f32.
//!
//! A quantized row of `n` values is `n / block_size` consecutive blocks. Block fields that
//! hold an f16 are kept as little-endian bytes so that every block has alignment 1 and can be
//! viewed in place at any file offset.

use bytemuck::{Pod, Zeroable};
use half::f16;
use rayon::prelude::*;

use crate::strided::PARALLEL_THRESHOLD;

macro_rules! ggml_types {
    ($($name:ident = $id:literal, $label:literal, $block:literal, $bytes:literal;)*) => {
        /// A GGML tensor type, with the id GGUF stores for it.
        #[allow(non_camel_case_types)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum GgmlType { $($name = $id),* }

        impl GgmlType {
            /// The type with GGUF id `id`, if ggml defines one.
            pub fn from_id(id: u32) -> Option<GgmlType> {
                match id { $($id => Some(GgmlType::$name),)* _ => None }
            }

            /// ggml's name for the type (`Q4_K`, `F16`, ...).
            pub fn name(self) -> &'static str {
                match self { $(GgmlType::$name => $label),* }
            }

            /// Values per block (1 for plain types).
            pub fn block_size(self) -> usize {
                match self { $(GgmlType::$name => $block),* }
            }

            /// Bytes per block.
            pub fn type_size(self) -> usize {
                match self { $(GgmlType::$name => $bytes),* }
            }
        }
    };
}

ggml_types! {
    F32 = 0, "F32", 1, 4;
    F16 = 1, "F16", 1, 2;
    Q4_0 = 2, "Q4_0", 32, 18;
    Q4_1 = 3, "Q4_1", 32, 20;
    Q5_0 = 6, "Q5_0", 32, 22;
    Q5_1 = 7, "Q5_1", 32, 24;
    Q8_0 = 8, "Q8_0", 32, 34;
    Q8_1 = 9, "Q8_1", 32, 36;
    Q2_K = 10, "Q2_K", 256, 84;
    Q3_K = 11, "Q3_K", 256, 110;
    Q4_K = 12, "Q4_K", 256, 144;
    Q5_K = 13, "Q5_K", 256, 176;
    Q6_K = 14, "Q6_K", 256, 210;
    Q8_K = 15, "Q8_K", 256, 292;
    IQ2_XXS = 16, "IQ2_XXS", 256, 66;
    IQ2_XS = 17, "IQ2_XS", 256, 74;
    IQ3_XXS = 18, "IQ3_XXS", 256, 98;
    IQ1_S = 19, "IQ1_S", 256, 50;
    IQ4_NL = 20, "IQ4_NL", 32, 18;
    IQ3_S = 21, "IQ3_S", 256, 110;
    IQ2_S = 22, "IQ2_S", 256, 82;
    IQ4_XS = 23, "IQ4_XS", 256, 136;
    I8 = 24, "I8", 1, 1;
    I16 = 25, "I16", 1, 2;
    I32 = 26, "I32", 1, 4;
    I64 = 27, "I64", 1, 8;
    F64 = 28, "F64", 1, 8;
    IQ1_M = 29, "IQ1_M", 256, 56;
    BF16 = 30, "BF16", 1, 2;
    TQ1_0 = 34, "TQ1_0", 256, 54;
    TQ2_0 = 35, "TQ2_0", 256, 66;
    MXFP4 = 39, "MXFP4", 32, 17;
    NVFP4 = 40, "NVFP4", 64, 36;
    Q1_0 = 41, "Q1_0", 128, 18;
}

impl GgmlType {
    /// True for block-quantized types (block size above 1).
    pub fn is_quantized(self) -> bool {
        self.block_size() > 1
    }
}

/// `Q8_0`: 32 values `d * qs[i]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ8_0 {
    /// Scale, f16 little-endian.
    pub d: [u8; 2],
    pub qs: [i8; 32],
}

/// `Q4_0`: 32 values `d * (q - 8)`; byte `j` holds value `j` in its low nibble and value
/// `j + 16` in its high nibble.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ4_0 {
    /// Scale, f16 little-endian.
    pub d: [u8; 2],
    pub qs: [u8; 16],
}

/// `Q4_1`: 32 values `d * q + m`, nibbles laid out as in `Q4_0`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ4_1 {
    /// Scale, f16 little-endian.
    pub d: [u8; 2],
    /// Minimum, f16 little-endian.
    pub m: [u8; 2],
    pub qs: [u8; 16],
}

const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == 34);
const _: () = assert!(std::mem::size_of::<BlockQ4_0>() == 18);
const _: () = assert!(std::mem::size_of::<BlockQ4_1>() == 20);

fn half(b: [u8; 2]) -> f32 {
    f16::from_le_bytes(b).to_f32()
}

/// Applies `f(block, 32 outputs)` to every block, in parallel for large tensors.
fn per_block<B: Pod + Sync>(bytes: &[u8], out: &mut [f32], f: impl Fn(&B, &mut [f32]) + Sync) {
    let blocks: &[B] = bytemuck::cast_slice(bytes);
    if out.len() >= PARALLEL_THRESHOLD {
        out.par_chunks_mut(32).zip(blocks).for_each(|(o, b)| f(b, o));
    } else {
        out.chunks_mut(32).zip(blocks).for_each(|(o, b)| f(b, o));
    }
}

/// Writes the f32 values of `bytes` (whole blocks of `ty`) into `out`, or returns `false`
/// when `ty` has no dequantization here (or the sizes disagree).
pub fn dequantize(ty: GgmlType, bytes: &[u8], out: &mut [f32]) -> bool {
    let blocks = out.len() / ty.block_size();
    if !out.len().is_multiple_of(ty.block_size()) || bytes.len() != blocks * ty.type_size() {
        return false;
    }
    match ty {
        GgmlType::Q8_0 => per_block(bytes, out, |b: &BlockQ8_0, o| {
            let d = half(b.d);
            o.iter_mut().zip(b.qs).for_each(|(o, q)| *o = d * q as f32);
        }),
        GgmlType::Q4_0 => per_block(bytes, out, |b: &BlockQ4_0, o| {
            let d = half(b.d);
            for (j, &q) in b.qs.iter().enumerate() {
                o[j] = d * ((q & 0xF) as i32 - 8) as f32;
                o[j + 16] = d * ((q >> 4) as i32 - 8) as f32;
            }
        }),
        GgmlType::Q4_1 => per_block(bytes, out, |b: &BlockQ4_1, o| {
            let (d, m) = (half(b.d), half(b.m));
            for (j, &q) in b.qs.iter().enumerate() {
                o[j] = d * (q & 0xF) as f32 + m;
                o[j + 16] = d * (q >> 4) as f32 + m;
            }
        }),
        _ => return false,
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_unknown_ids_are_none() {
        for id in 0..64 {
            if let Some(t) = GgmlType::from_id(id) {
                assert_eq!(t as u32, id);
            }
        }
        assert_eq!(GgmlType::from_id(4), None); // Q4_2, removed from ggml
        assert_eq!(GgmlType::from_id(12), Some(GgmlType::Q4_K));
    }

    #[test]
    fn q4_0_block_by_hand() {
        // d = 0.5 (f16 0x3800); byte 0 = 0x9F: value 0 = (15 - 8) * 0.5, value 16 = (9 - 8) * 0.5.
        let mut block = [0u8; 18];
        block[..2].copy_from_slice(&0x3800u16.to_le_bytes());
        block[2] = 0x9F;
        let mut out = [0f32; 32];
        assert!(dequantize(GgmlType::Q4_0, &block, &mut out));
        assert_eq!((out[0], out[16], out[1]), (3.5, 0.5, -4.0));
    }

    #[test]
    fn mismatched_sizes_are_refused() {
        let mut out = [0f32; 32];
        assert!(!dequantize(GgmlType::Q8_0, &[0u8; 33], &mut out));
        assert!(!dequantize(GgmlType::Q4_K, &[0u8; 144], &mut [0f32; 256]));
    }
}
