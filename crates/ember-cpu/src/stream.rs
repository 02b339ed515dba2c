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
    // SAFETY: forwarded from this function's contract.
    unsafe { map::<T, WIDE>(dst, src, |x| x) }
}

/// `dst[i] = f(src[i])` (equal lengths, elements of 4 or 8 bytes), each whole 64-byte line of
/// `dst` computed into a line of registers and written by streaming stores as in [`copy`]:
/// a one-pass kernel's result leaves without a round trip through the cache.
///
/// # Safety
/// As for [`copy`].
#[inline(always)]
pub unsafe fn map<T: Copy, const WIDE: bool>(dst: &mut [T], src: &[T], f: impl Fn(T) -> T) {
    assert_eq!(dst.len(), src.len(), "stream map lengths");
    // SAFETY: forwarded from this function's contract.
    unsafe {
        match std::mem::size_of::<T>() {
            4 => map_lines::<T, 16, WIDE>(dst, src, f),
            8 => map_lines::<T, 8, WIDE>(dst, src, f),
            size => panic!("stream map of {size}-byte elements"),
        }
    }
}

/// [`map`] for `L` elements per 64-byte line. Same contract.
#[inline(always)]
unsafe fn map_lines<T: Copy, const L: usize, const WIDE: bool>(
    dst: &mut [T],
    src: &[T],
    f: impl Fn(T) -> T,
) {
    let plain = |d: &mut [T], s: &[T]| d.iter_mut().zip(s).for_each(|(d, &s)| *d = f(s));
    #[cfg(target_arch = "x86_64")]
    {
        // Plain stores up to the first cache-line aligned element and after the last full
        // line; each line is written by consecutive stores, so it leaves whole.
        let head = dst.as_ptr().align_offset(64).min(dst.len());
        let (dst_head, dst_body) = dst.split_at_mut(head);
        let (src_head, src_body) = src.split_at(head);
        plain(dst_head, src_head);
        let body = dst_body.len() / L * L;
        for (d, s) in dst_body[..body].chunks_exact_mut(L).zip(src_body.chunks_exact(L)) {
            // A value, not a buffer, so the line stays in registers.
            let line: [T; L] = std::array::from_fn(|j| f(s[j]));
            // SAFETY: `d` is one whole 64-byte line, aligned (the head was split off at
            // `align_offset(64)`); AVX-512F is there when `WIDE` (the caller's contract).
            // `dst` is borrowed mutably, so nothing else reads it.
            unsafe { store_line::<T, L, WIDE>(d.as_mut_ptr() as *mut u8, line) };
        }
        plain(&mut dst_body[body..], &src_body[body..]);
    }
    #[cfg(not(target_arch = "x86_64"))]
    plain(dst, src);
}

/// Streams `line` (64 bytes) to the 64-byte aligned line `dst`.
///
/// # Safety
/// `dst` is 64-byte aligned with 64 writable bytes; `L` values of `T` are 64 bytes; with
/// `WIDE` the CPU supports AVX-512F.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn store_line<T: Copy, const L: usize, const WIDE: bool>(dst: *mut u8, line: [T; L]) {
    use std::arch::x86_64::{__m128i, __m512i, _mm512_stream_si512, _mm_stream_si128};
    // SAFETY: the caller's contract: `line` is 64 bytes, read as one 512-bit or four 128-bit
    // values (any bits are valid for them); the aligned line is 16-byte aligned for each
    // 128-bit streaming store; SSE2 is part of x86_64.
    unsafe {
        if WIDE {
            _mm512_stream_si512(dst as *mut __m512i, std::mem::transmute_copy(&line));
        } else {
            let parts: [__m128i; 4] = std::mem::transmute_copy(&line);
            for (b, part) in parts.into_iter().enumerate() {
                _mm_stream_si128((dst as *mut __m128i).add(b), part);
            }
        }
    }
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
