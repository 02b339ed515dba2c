//! Scans (cumulative sum, product, max, min) along one axis of a contiguous array.
//!
//! The array is seen as `(outer, n, inner)` with the scanned axis in the middle. With
//! `inner == 1` each row is scanned on its own; otherwise a row of `inner` running values
//! advances along the axis, so the inner loop is unit-stride. Running values live in the
//! element's wide type (f32 for half types); outer blocks are split over rayon.

use crate::reduce::ReduceElem;
use crate::strided::PARALLEL_THRESHOLD;
use rayon::prelude::*;

/// Where a scan starts and in which direction it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScanOrder {
    /// From the last element to the first.
    pub reverse: bool,
    /// Whether element `i` of the result includes element `i` of the input.
    pub inclusive: bool,
}

/// Scans `x`, laid out `(outer, n, inner)` row-major, along the middle axis into `out` (same
/// layout), starting from `init` and combining with `op`.
pub fn scan<T, F>(
    out: &mut [T],
    x: &[T],
    n: usize,
    inner: usize,
    order: ScanOrder,
    init: T::Wide,
    op: F,
) where
    T: ReduceElem,
    F: Fn(T::Wide, T::Wide) -> T::Wide + Sync + Copy,
{
    let block = n * inner;
    if block == 0 || out.is_empty() {
        return;
    }
    let at = move |k: usize| if order.reverse { n - 1 - k } else { k };
    // One block; `acc` is scratch of `inner` running values (reset here).
    let run = |acc: &mut Vec<T::Wide>, (o, xb): (&mut [T], &[T])| {
        if inner == 1 {
            let mut a = init;
            for k in 0..n {
                let i = at(k);
                if order.inclusive {
                    a = op(a, xb[i].wide());
                    o[i] = T::narrow(a);
                } else {
                    o[i] = T::narrow(a);
                    a = op(a, xb[i].wide());
                }
            }
            return;
        }
        acc.clear();
        acc.resize(inner, init);
        for k in 0..n {
            let i = at(k);
            let (orow, xrow) = (&mut o[i * inner..][..inner], &xb[i * inner..][..inner]);
            for ((a, o), &v) in acc.iter_mut().zip(orow).zip(xrow) {
                if order.inclusive {
                    *a = op(*a, v.wide());
                    *o = T::narrow(*a);
                } else {
                    *o = T::narrow(*a);
                    *a = op(*a, v.wide());
                }
            }
        }
    };
    let out = &mut out[..x.len()];
    if out.len() >= PARALLEL_THRESHOLD && out.len() > block {
        let per = (PARALLEL_THRESHOLD / 4).div_ceil(block).max(1);
        out.par_chunks_mut(block)
            .zip(x.par_chunks(block))
            .with_min_len(per)
            .for_each_init(Vec::new, run);
    } else {
        let mut acc = Vec::new();
        out.chunks_mut(block).zip(x.chunks(block)).for_each(|b| run(&mut acc, b));
    }
}
