//! Non-temporal (streaming) stores: writing an output much larger than the caches without
//! first reading each of its cache lines (a plain store fetches the line it writes), which
//! saves a third of the memory traffic of a one-pass elementwise kernel.

/// Outputs of at least this many bytes in all are streamed: about the last-level cache, so
/// smaller results stay cached for the op that reads them next.
pub const STREAM_BYTES: usize = 16 << 20;

/// Copies `src` into `dst` (of equal length) with streaming stores where the CPU has them:
/// each 64-byte line by one 512-bit store when `WIDE`, else by four 128-bit ones.
/// Call [`fence`] before another thread may read `dst`.
///
/// # Safety
/// With `WIDE`, the CPU must support AVX-512F (best called from code compiled for it, where
/// the store inlines).
#[inline(always)]
pub unsafe fn copy<T: Copy, const WIDE: bool>(dst: &mut [T], src: &[T]) {
    assert_eq!(dst.len(), src.len(), "stream copy lengths");
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{__m128i, __m512i, _mm_loadu_si128, _mm_stream_si128};
        use std::arch::x86_64::{_mm512_loadu_si512, _mm512_stream_si512};
        // Plain copies up to the first cache-line aligned element and after the last full
        // line; each line is written by consecutive stores, so it leaves whole.
        let head = dst.as_ptr().align_offset(64).min(dst.len());
        let (dst_head, dst_body) = dst.split_at_mut(head);
        let (src_head, src_body) = src.split_at(head);
        dst_head.copy_from_slice(src_head);
        let lines = std::mem::size_of_val(dst_body) / 64;
        let body = lines * 64 / std::mem::size_of::<T>().max(1);
        let d = dst_body.as_mut_ptr() as *mut __m128i;
        let s = src_body.as_ptr() as *const __m128i;
        for b in (0..lines * 4).step_by(4) {
            // SAFETY: blocks `b..b + 4 <= lines * 4` lie inside both bodies (`lines * 64`
            // bytes each); `d` is 64-byte aligned (the head was split off at
            // `align_offset(64)`), so line `b / 4` is 64-byte aligned as
            // `_mm512_stream_si512` requires (and each block 16-byte aligned for
            // `_mm_stream_si128`); the unaligned loads take any address. AVX-512F is there
            // when `WIDE` (the caller's contract), SSE2 is part of x86_64. `dst` is borrowed
            // mutably, so nothing else reads it.
            unsafe {
                if WIDE {
                    let line = _mm512_loadu_si512(s.add(b) as *const __m512i);
                    _mm512_stream_si512(d.add(b) as *mut __m512i, line);
                } else {
                    for b in b..b + 4 {
                        _mm_stream_si128(d.add(b), _mm_loadu_si128(s.add(b)));
                    }
                }
            }
        }
        dst_body[body..].copy_from_slice(&src_body[body..]);
    }
    #[cfg(not(target_arch = "x86_64"))]
    dst.copy_from_slice(src);
}

/// Orders this thread's streaming stores before its later stores (such as the one that tells
/// another thread the work is done).
#[inline(always)]
pub fn fence() {
    // SAFETY: SSE is part of x86_64; a fence has no other precondition.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        std::arch::x86_64::_mm_sfence()
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `copy` with 128-bit stores, and with 512-bit ones where the CPU has AVX-512F.
    fn copies_every_alignment_and_length_with<const WIDE: bool>() {
        // SAFETY: the 128-bit stores need only SSE2; the caller checks AVX-512F for `WIDE`.
        let copy = |d: &mut [f32], s: &[f32]| unsafe { copy::<f32, WIDE>(d, s) };
        let src: Vec<f32> = (0..200).map(|i| i as f32 * 1.5 - 7.0).collect();
        for start in 0..5 {
            for len in [0, 1, 3, 4, 5, 17, 64, 150, 180] {
                let mut dst = vec![0f32; 200];
                copy(&mut dst[start..start + len], &src[..len]);
                fence();
                assert_eq!(&dst[start..start + len], &src[..len], "start {start} len {len}");
                assert!(dst[..start].iter().chain(&dst[start + len..]).all(|&v| v == 0.0));
            }
        }
        let wide: Vec<f64> = (0..33).map(|i| i as f64).collect();
        let mut out = vec![0f64; 33];
        // SAFETY: as above.
        unsafe { super::copy::<f64, WIDE>(&mut out[1..], &wide[1..]) };
        fence();
        assert_eq!(out[1..], wide[1..]);
    }

    #[test]
    fn copies_every_alignment_and_length() {
        copies_every_alignment_and_length_with::<false>();
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            copies_every_alignment_and_length_with::<true>();
        }
    }
}
