//! Sorting kernels along one axis: sort, stable argsort, partition and argpartition, in
//! NumPy's order (NaNs after every number). Each line along the axis is handled on its own;
//! lines are spread over threads, and a single long line is sorted in parallel.

use crate::index::{for_each_chunk, unravel_offset};
use crate::scalar::Scalar;
use crate::strided::{map1, View, PARALLEL_THRESHOLD};
use rayon::slice::ParallelSliceMut;
use std::cmp::Ordering;

/// NumPy's sort order: the usual order, with NaNs last (and equal to each other).
#[inline]
pub fn nan_last_cmp<T: Scalar>(a: T, b: T) -> Ordering {
    match a.partial_cmp(&b) {
        Some(o) => o,
        // Only a NaN is unordered: it sorts after the number, or equal to another NaN.
        None => a.is_nan().cmp(&b.is_nan()),
    }
}

/// One line of a view along the sorted axis.
#[derive(Clone, Copy)]
struct Line<'a, T> {
    data: &'a [T],
    offset: isize,
    stride: isize,
    len: usize,
}

impl<T: Copy> Line<'_, T> {
    /// The line as a slice when its elements are adjacent.
    fn as_slice(&self) -> Option<&[T]> {
        (self.stride == 1 || self.len <= 1)
            .then(|| &self.data[self.offset as usize..self.offset as usize + self.len])
    }

    #[inline]
    fn get(&self, i: u32) -> T {
        self.data[(self.offset + i as isize * self.stride) as usize]
    }

    fn copy_to(&self, out: &mut [T]) {
        match self.as_slice() {
            Some(s) => out.copy_from_slice(s),
            None => out.iter_mut().enumerate().for_each(|(i, o)| *o = self.get(i as u32)),
        }
    }
}

/// Runs `f(line, out_line)` for every line of `src` along `axis`, where `out` is contiguous
/// with `src`'s shape and `out_line` is that line's place in it.
fn for_each_line<T, U, F>(out: &mut [U], src: View<'_, T>, axis: usize, f: F)
where
    T: Copy + Send + Sync,
    U: Copy + Send + Sync + Default,
    F: Fn(Line<'_, T>, &mut [U]) + Sync,
{
    let n = src.shape[axis];
    if n == 0 || out.is_empty() {
        return;
    }
    let mut rest_shape = src.shape.to_vec();
    rest_shape.remove(axis);
    let mut rest_strides = src.strides.to_vec();
    let stride = rest_strides.remove(axis);
    let fill = |buf: &mut [U]| {
        for_each_chunk(buf, n, |r, o| {
            let offset = src.offset as isize + unravel_offset(r, &rest_shape, &rest_strides);
            f(Line { data: src.data, offset, stride, len: n }, o)
        })
    };
    if src.shape[axis + 1..].iter().product::<usize>() == 1 {
        return fill(out); // lines are contiguous in `out`
    }
    // Compute the lines contiguously (shape rest + [n]), then transpose them into place.
    let mut tmp = vec![U::default(); out.len()];
    fill(&mut tmp);
    let mut strides = vec![0isize; src.shape.len()];
    let mut acc = n as isize;
    for d in (0..src.shape.len()).rev().filter(|&d| d != axis) {
        strides[d] = acc;
        acc *= src.shape[d] as isize;
    }
    strides[axis] = 1;
    map1(out, View::new(&tmp, src.shape, &strides, 0), |x| x);
}

/// Writes `0, 1, ..., len - 1`.
fn iota(out: &mut [u32]) {
    out.iter_mut().enumerate().for_each(|(i, o)| *o = i as u32);
}

/// Sorts `v` by `cmp`, in parallel when it is long.
fn sort_by<U: Send, C: Fn(&U, &U) -> Ordering + Sync>(v: &mut [U], cmp: C) {
    if v.len() >= PARALLEL_THRESHOLD {
        v.par_sort_unstable_by(cmp);
    } else {
        v.sort_unstable_by(cmp);
    }
}

/// Sorts every line of `src` along `axis` into `out` (contiguous, `src`'s shape).
pub fn sort<T: Scalar>(out: &mut [T], src: View<'_, T>, axis: usize) {
    for_each_line(out, src, axis, |line, o| {
        line.copy_to(o);
        sort_by(o, |a, b| nan_last_cmp(*a, *b));
    });
}

/// The indices that sort every line of `src` along `axis`; equal elements keep their order.
/// Lines must be shorter than `u32::MAX`.
pub fn argsort<T: Scalar>(out: &mut [u32], src: View<'_, T>, axis: usize) {
    fn by<T: Scalar>(o: &mut [u32], get: impl Fn(u32) -> T + Sync) {
        iota(o);
        // Ties broken by position: a stable result from the faster unstable sort.
        sort_by(o, |&a, &b| nan_last_cmp(get(a), get(b)).then(a.cmp(&b)));
    }
    for_each_line(out, src, axis, |line, o| match line.as_slice() {
        Some(s) => by(o, |i| s[i as usize]),
        None => by(o, |i| line.get(i)),
    });
}

/// Partitions every line of `src` along `axis`: element `kth` is where sorting would put it,
/// those before it are not greater and those after not smaller.
pub fn partition<T: Scalar>(out: &mut [T], src: View<'_, T>, axis: usize, kth: usize) {
    for_each_line(out, src, axis, |line, o| {
        line.copy_to(o);
        o.select_nth_unstable_by(kth, |a, b| nan_last_cmp(*a, *b));
    });
}

/// The indices that partition every line of `src` along `axis` (see [`partition`]).
pub fn argpartition<T: Scalar>(out: &mut [u32], src: View<'_, T>, axis: usize, kth: usize) {
    for_each_line(out, src, axis, |line, o| {
        iota(o);
        o.select_nth_unstable_by(kth, |&a, &b| nan_last_cmp(line.get(a), line.get(b)));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nans_sort_last() {
        let x = [3.0f32, f32::NAN, -1.0, 2.0];
        let mut out = [0f32; 4];
        sort(&mut out, View::new(&x, &[4], &[1], 0), 0);
        assert_eq!(&out[..3], &[-1.0, 2.0, 3.0]);
        assert!(out[3].is_nan());
    }

    #[test]
    fn argsort_along_first_axis_is_stable() {
        // 3 x 2, sorted down the columns.
        let x = [2, 1, 1, 1, 2, 0];
        let mut out = [0u32; 6];
        argsort(&mut out, View::new(&x, &[3, 2], &[2, 1], 0), 0);
        assert_eq!(out, [1, 2, 0, 0, 2, 1]);
    }

    #[test]
    fn long_line_sorts_in_parallel() {
        let n = PARALLEL_THRESHOLD * 2;
        let x: Vec<i64> = (0..n as i64).map(|i| (i * 7919) % 10007).collect();
        let mut out = vec![0i64; n];
        sort(&mut out, View::new(&x, &[n], &[1], 0), 0);
        assert!(out.windows(2).all(|w| w[0] <= w[1]));
        let mut idx = vec![0u32; n];
        argsort(&mut idx, View::new(&x, &[n], &[1], 0), 0);
        assert!(idx.windows(2).all(|w| (x[w[0] as usize], w[0]) < (x[w[1] as usize], w[1])));
    }
}
