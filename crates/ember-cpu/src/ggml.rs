//! GGML tensor types: their ids, block sizes and byte sizes (as GGUF files store them), the
//! block layouts of the quantizations ember computes with (Q8_0, Q4_0, Q4_1 and the K-quants
//! Q4_K, Q6_K, laid out as llama.cpp's `ggml-common.h`), and dequantization of those blocks
//! to f32.
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

/// `Q4_K`: 256 values in eight sub-blocks of 32, value `i` of sub-block `j` being
/// `d * sc[j] * q - dmin * m[j]` with 6-bit `sc`, `m` packed in `scales` ([`scale_min_k4`]).
/// Sub-blocks `2c` and `2c + 1` are the low and high nibbles of `qs[32c..32c + 32]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ4K {
    /// Scale of the sub-block scales, f16 little-endian.
    pub d: [u8; 2],
    /// Scale of the sub-block minimums, f16 little-endian.
    pub dmin: [u8; 2],
    pub scales: [u8; 12],
    pub qs: [u8; 128],
}

/// `Q6_K`: 256 values `d * scales[i / 16] * (q - 32)` with 6-bit codes `q`. In each half of
/// 128 values (`ql` 64 bytes, `qh` 32 bytes), value `32t + l` has low bits from nibble
/// `t / 2` of `ql[l + 32 (t % 2)]` and high bits `2t..2t + 2` of `qh[l]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ6K {
    pub ql: [u8; 128],
    pub qh: [u8; 64],
    pub scales: [i8; 16],
    /// Scale, f16 little-endian.
    pub d: [u8; 2],
}

const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == 34);
const _: () = assert!(std::mem::size_of::<BlockQ4K>() == 144);
const _: () = assert!(std::mem::size_of::<BlockQ6K>() == 210);
const _: () = assert!(std::mem::size_of::<BlockQ4_0>() == 18);
const _: () = assert!(std::mem::size_of::<BlockQ4_1>() == 20);

pub(crate) fn half(b: [u8; 2]) -> f32 {
    f16::from_le_bytes(b).to_f32()
}

/// The 6-bit scale and minimum of sub-block `j` (0..8) of a Q4_K block: `j < 4` in the low
/// six bits of bytes `j` and `j + 4`; `j >= 4` in the nibbles of byte `j + 4`, with their top
/// two bits in the high bits of bytes `j - 4` and `j` (llama.cpp's `get_scale_min_k4`).
pub fn scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// The 6-bit code of value `i` (0..256) of a Q6_K block (unsigned, 0..64).
pub fn q6k_code(b: &BlockQ6K, i: usize) -> u8 {
    let (h, v) = (i / 128, i % 128);
    let (t, l) = (v / 32, v % 32);
    let low = b.ql[64 * h + l + 32 * (t % 2)] >> (4 * (t / 2)) & 0xF;
    low | ((b.qh[32 * h + l] >> (2 * t)) & 3) << 4
}

/// Applies `f(block, block_size outputs)` to every block, in parallel for large tensors.
fn per_block<B: Pod + Sync>(
    bytes: &[u8],
    out: &mut [f32],
    size: usize,
    f: impl Fn(&B, &mut [f32]) + Sync,
) {
    let blocks: &[B] = bytemuck::cast_slice(bytes);
    if out.len() >= PARALLEL_THRESHOLD {
        out.par_chunks_mut(size).zip(blocks).for_each(|(o, b)| f(b, o));
    } else {
        out.chunks_mut(size).zip(blocks).for_each(|(o, b)| f(b, o));
    }
}

/// Writes the f32 values of `bytes` (whole blocks of `ty`) into `out`, or returns `false`
/// when `ty` has no dequantization here (or the sizes disagree).
pub fn dequantize(ty: GgmlType, bytes: &[u8], out: &mut [f32]) -> bool {
    let blocks = out.len() / ty.block_size();
    if !out.len().is_multiple_of(ty.block_size()) || bytes.len() != blocks * ty.type_size() {
        return false;
    }
    let size = ty.block_size();
    match ty {
        GgmlType::Q8_0 => per_block(bytes, out, size, |b: &BlockQ8_0, o| {
            let d = half(b.d);
            o.iter_mut().zip(b.qs).for_each(|(o, q)| *o = d * q as f32);
        }),
        GgmlType::Q4_0 => per_block(bytes, out, size, |b: &BlockQ4_0, o| {
            let d = half(b.d);
            for (j, &q) in b.qs.iter().enumerate() {
                o[j] = d * ((q & 0xF) as i32 - 8) as f32;
                o[j + 16] = d * ((q >> 4) as i32 - 8) as f32;
            }
        }),
        GgmlType::Q4_1 => per_block(bytes, out, size, |b: &BlockQ4_1, o| {
            let (d, m) = (half(b.d), half(b.m));
            for (j, &q) in b.qs.iter().enumerate() {
                o[j] = d * (q & 0xF) as f32 + m;
                o[j + 16] = d * (q >> 4) as f32 + m;
            }
        }),
        GgmlType::Q4_K => per_block(bytes, out, size, |b: &BlockQ4K, o| {
            let (d, dmin) = (half(b.d), half(b.dmin));
            for (j, o) in o.chunks_exact_mut(32).enumerate() {
                let (sc, m) = scale_min_k4(j, &b.scales);
                let (ds, ms) = (d * sc as f32, dmin * m as f32);
                let qs = &b.qs[32 * (j / 2)..][..32];
                let shift = 4 * (j % 2);
                o.iter_mut().zip(qs).for_each(|(o, q)| *o = ds * (q >> shift & 0xF) as f32 - ms);
            }
        }),
        GgmlType::Q6_K => per_block(bytes, out, size, |b: &BlockQ6K, o| {
            let d = half(b.d);
            for (i, o) in o.iter_mut().enumerate() {
                let q = q6k_code(b, i) as i32 - 32;
                *o = d * b.scales[i / 16] as f32 * q as f32;
            }
        }),
        GgmlType::F16 => bytes
            .chunks_exact(2)
            .zip(out.iter_mut())
            .for_each(|(b, o)| *o = half::f16::from_le_bytes([b[0], b[1]]).to_f32()),
        _ => return false,
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_rows_dequantize_to_their_values() {
        let values = [1.0f32, -2.5, 0.0, 65504.0, 6.0e-8];
        let bytes: Vec<u8> =
            values.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect();
        let mut out = [f32::NAN; 5];
        assert!(dequantize(GgmlType::F16, &bytes, &mut out));
        assert_eq!(out, values.map(|v| half::f16::from_f32(v).to_f32()));
        assert!(!dequantize(GgmlType::F16, &bytes[..9], &mut out), "odd byte count");
    }

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
        assert!(!dequantize(GgmlType::Q5_K, &[0u8; 176], &mut [0f32; 256]));
    }
}
