//! Reductions and arg-reductions over strided views.
//!
//! A reduction folds the reduced axes of a view into one output element per position of the
//! kept axes; the output is contiguous in the kept axes' order. Loops follow the input's memory
//! order: when the smallest input stride is on a reduced axis each output folds contiguous runs
//! ("rows", several independent accumulators so the loop vectorises); when it is on a kept axis
//! a tile of outputs is accumulated input row by input row ("columns"). Large work is split over
//! rayon: across outputs when there are many, inside each output otherwise. Partial results are
//! always combined in an order fixed by the shape, so float results do not depend on timing.

use crate::scalar::Scalar;
use crate::strided::{Rows, View, PARALLEL_THRESHOLD};
use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};
use rayon::prelude::*;

/// An element type reductions and scans know how to widen and accumulate.
pub trait ReduceElem: Scalar {
    /// The type comparisons and accumulations run in: f32 for f16/bf16, else `Self`.
    type Wide: MinMax;
    /// The accumulator of sums and products: 32 bits for bool and small ints (as MLX).
    type Sum: Scalar;
    /// The element type of a sum or product (MLX: the accumulator, except half types stay).
    type SumOut: Scalar;
    /// Whether widening a whole slice at once is much faster than element by element
    /// (`half`'s slice conversion uses F16C, its per-element one does not).
    const BULK_WIDEN: bool = false;
    fn wide(self) -> Self::Wide;
    fn narrow(w: Self::Wide) -> Self;
    /// Widens `src` into `dst` (same length).
    fn wide_slice(src: &[Self], dst: &mut [Self::Wide]) {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = s.wide();
        }
    }
    fn to_sum(w: Self::Wide) -> Self::Sum;
    fn sum_out(s: Self::Sum) -> Self::SumOut;
}

macro_rules! plain_elem {
    ($($t:ty => $s:ty),*) => {$(
        impl ReduceElem for $t {
            type Wide = $t;
            type Sum = $s;
            type SumOut = $s;
            #[inline(always)]
            fn wide(self) -> $t { self }
            #[inline(always)]
            fn narrow(w: $t) -> $t { w }
            #[inline(always)]
            fn to_sum(w: $t) -> $s { w as $s }
            #[inline(always)]
            fn sum_out(s: $s) -> $s { s }
        }
    )*};
}
plain_elem!(bool => i32, i8 => i32, i16 => i32, i32 => i32, i64 => i64, u8 => u32, u16 => u32,
    u32 => u32, u64 => u64, f32 => f32, f64 => f64);

macro_rules! half_elem {
    ($($t:ty),*) => {$(
        impl ReduceElem for $t {
            type Wide = f32;
            type Sum = f32;
            type SumOut = $t;
            const BULK_WIDEN: bool = true;
            #[inline(always)]
            fn wide(self) -> f32 { self.to_f32() }
            #[inline(always)]
            fn narrow(w: f32) -> $t { <$t>::from_f32(w) }
            fn wide_slice(src: &[$t], dst: &mut [f32]) { src.convert_to_f32_slice(dst) }
            #[inline(always)]
            fn to_sum(w: f32) -> f32 { w }
            #[inline(always)]
            fn sum_out(s: f32) -> $t { <$t>::from_f32(s) }
        }
    )*};
}
half_elem!(f16, bf16);

/// A fold of elements of `T` (seen widened) into an accumulator, and its result.
pub trait Reducer<T: ReduceElem>: Copy + Send + Sync {
    type Acc: Copy + Send + Sync;
    type Out: Copy + Send + Sync;
    /// The identity: the result of reducing nothing.
    fn init(self) -> Self::Acc;
    fn step(self, acc: Self::Acc, x: T::Wide) -> Self::Acc;
    /// Combines two partial results (the earlier one first).
    fn merge(self, a: Self::Acc, b: Self::Acc) -> Self::Acc;
    fn finish(self, acc: Self::Acc) -> Self::Out;
}

/// Sum, accumulated in `T::Sum`.
#[derive(Clone, Copy, Debug)]
pub struct Sum;
/// Product, accumulated in `T::Sum`.
#[derive(Clone, Copy, Debug)]
pub struct Prod;
/// Maximum; NaN wins (as MLX).
#[derive(Clone, Copy, Debug)]
pub struct Max;
/// Minimum; NaN wins.
#[derive(Clone, Copy, Debug)]
pub struct Min;
/// Whether every element is non-zero.
#[derive(Clone, Copy, Debug)]
pub struct All;
/// Whether any element is non-zero.
#[derive(Clone, Copy, Debug)]
pub struct Any;

impl<T: ReduceElem> Reducer<T> for Sum {
    type Acc = T::Sum;
    type Out = T::SumOut;
    fn init(self) -> T::Sum {
        T::Sum::zero()
    }
    #[inline(always)]
    fn step(self, acc: T::Sum, x: T::Wide) -> T::Sum {
        acc.add(T::to_sum(x))
    }
    #[inline(always)]
    fn merge(self, a: T::Sum, b: T::Sum) -> T::Sum {
        a.add(b)
    }
    fn finish(self, acc: T::Sum) -> T::SumOut {
        T::sum_out(acc)
    }
}

impl<T: ReduceElem> Reducer<T> for Prod {
    type Acc = T::Sum;
    type Out = T::SumOut;
    fn init(self) -> T::Sum {
        T::Sum::one()
    }
    #[inline(always)]
    fn step(self, acc: T::Sum, x: T::Wide) -> T::Sum {
        acc.mul(T::to_sum(x))
    }
    #[inline(always)]
    fn merge(self, a: T::Sum, b: T::Sum) -> T::Sum {
        a.mul(b)
    }
    fn finish(self, acc: T::Sum) -> T::SumOut {
        T::sum_out(acc)
    }
}

/// Maximum and minimum that ignore NaN (`f32::max`): the vectoriser keeps them as single
/// instructions, where a compare-and-select on a value just loaded from memory tends to become
/// a (slow) masked store.
pub trait MinMax: Scalar {
    fn max_num(self, o: Self) -> Self;
    fn min_num(self, o: Self) -> Self;
}

macro_rules! min_max {
    ($($t:ty),*) => {$(
        impl MinMax for $t {
            #[inline(always)]
            fn max_num(self, o: Self) -> Self { self.max(o) }
            #[inline(always)]
            fn min_num(self, o: Self) -> Self { self.min(o) }
        }
    )*};
}
min_max!(bool, i8, i16, i32, i64, u8, u16, u32, u64, f32, f64);

/// `extreme(a, b)` unless either is NaN, then NaN (`a + b`), so a NaN anywhere wins.
#[inline(always)]
fn nan_or<W: MinMax>(a: W, b: W, extreme: fn(W, W) -> W) -> W {
    if a.is_nan() | b.is_nan() {
        a.add(b)
    } else {
        extreme(a, b)
    }
}

impl<T: ReduceElem> Reducer<T> for Max {
    type Acc = T::Wide;
    type Out = T;
    fn init(self) -> T::Wide {
        T::Wide::lowest()
    }
    #[inline(always)]
    fn step(self, acc: T::Wide, x: T::Wide) -> T::Wide {
        nan_or(acc, x, <T::Wide as MinMax>::max_num)
    }
    #[inline(always)]
    fn merge(self, a: T::Wide, b: T::Wide) -> T::Wide {
        nan_or(a, b, <T::Wide as MinMax>::max_num)
    }
    fn finish(self, acc: T::Wide) -> T {
        T::narrow(acc)
    }
}

impl<T: ReduceElem> Reducer<T> for Min {
    type Acc = T::Wide;
    type Out = T;
    fn init(self) -> T::Wide {
        T::Wide::highest()
    }
    #[inline(always)]
    fn step(self, acc: T::Wide, x: T::Wide) -> T::Wide {
        nan_or(acc, x, <T::Wide as MinMax>::min_num)
    }
    #[inline(always)]
    fn merge(self, a: T::Wide, b: T::Wide) -> T::Wide {
        nan_or(a, b, <T::Wide as MinMax>::min_num)
    }
    fn finish(self, acc: T::Wide) -> T {
        T::narrow(acc)
    }
}

impl<T: ReduceElem> Reducer<T> for All {
    type Acc = bool;
    type Out = bool;
    fn init(self) -> bool {
        true
    }
    #[inline(always)]
    fn step(self, acc: bool, x: T::Wide) -> bool {
        acc & (x != T::Wide::zero())
    }
    #[inline(always)]
    fn merge(self, a: bool, b: bool) -> bool {
        a & b
    }
    fn finish(self, acc: bool) -> bool {
        acc
    }
}

impl<T: ReduceElem> Reducer<T> for Any {
    type Acc = bool;
    type Out = bool;
    fn init(self) -> bool {
        false
    }
    #[inline(always)]
    fn step(self, acc: bool, x: T::Wide) -> bool {
        acc | (x != T::Wide::zero())
    }
    #[inline(always)]
    fn merge(self, a: bool, b: bool) -> bool {
        a | b
    }
    fn finish(self, acc: bool) -> bool {
        acc
    }
}

/// Independent accumulators per contiguous run, updated by a plain loop the vectoriser turns into
/// a few wide registers (hiding add latency).
const LANES: usize = 64;
/// A contiguous run is folded in blocks whose lane results are combined before the next block,
/// so a float sum's rounding error grows with the number of blocks, not the run length.
const BLOCK: usize = 4096;
/// Half-precision runs are widened through a stack buffer of this many elements.
const WIDEN_BUF: usize = 2048;
/// Outputs an arg-reduction column kernel advances together: small enough for its values and
/// indices to stay in L1, and to give threads several tiles of a single row.
const ARG_TILE: usize = 1024;
/// Outputs accumulated together in the column kernels.
const TILE: usize = 4096;
/// Input rows the column kernels fold per pass over their accumulators: fewer loads and stores
/// of the accumulators, and no store that only sometimes changes a value (which the vectoriser
/// turns into a slow masked store).
const ROWS: usize = 4;

/// Folds `xs` (already widened by `f`) with `LANES` accumulators combined pairwise.
#[inline(always)]
fn fold_lanes<E: Copy, T: ReduceElem, R: Reducer<T>>(
    xs: &[E],
    f: impl Fn(E) -> T::Wide,
    r: R,
) -> R::Acc {
    let mut lanes = [r.init(); LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, &x) in lanes.iter_mut().zip(c) {
            *a = r.step(*a, f(x));
        }
    }
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        let (lo, hi) = lanes.split_at_mut(width);
        for (a, &b) in lo.iter_mut().zip(&*hi) {
            *a = r.merge(*a, b);
        }
    }
    let mut acc = lanes[0];
    for &x in chunks.remainder() {
        acc = r.step(acc, f(x));
    }
    acc
}

/// The body of a function that runs one of the hot loops below compiled for AVX2 when the CPU
/// has it: the generic loops then vectorise eight floats wide and selects become blends (SSE2
/// code is the fallback, so one binary runs everywhere).
macro_rules! with_avx2 {
    ($body:ident::<$($t:tt),*>($($arg:expr),*)) => {{
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: `avx2::$body` is `$body` compiled for AVX2, which the CPU supports
                // (checked just above).
                return unsafe { avx2::$body::<$($t),*>($($arg),*) };
            }
        }
        $body::<$($t),*>($($arg),*)
    }};
}

/// AVX2 builds of the hot loops: the same code, inlined into functions compiled for AVX2.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{Extreme, ReduceElem, Reducer};

    #[target_feature(enable = "avx2")]
    pub(super) fn fold_contiguous_body<T: ReduceElem, R: Reducer<T>>(xs: &[T], r: R) -> R::Acc {
        super::fold_contiguous_body(xs, r)
    }

    #[target_feature(enable = "avx2")]
    pub(super) fn accumulate_body<T: ReduceElem, R: Reducer<T>, const K: usize>(
        acc: &mut [R::Acc],
        rows: [&[T]; K],
        buf: &mut [T::Wide],
        r: R,
    ) {
        super::accumulate_body(acc, rows, buf, r)
    }

    #[target_feature(enable = "avx2")]
    pub(super) fn arg_fold_body<T: ReduceElem, E: Extreme>(xs: &[T], e: E) -> (T::Wide, usize) {
        super::arg_fold_body(xs, e)
    }

    #[target_feature(enable = "avx2")]
    pub(super) fn arg_accumulate_body<T: ReduceElem, E: Extreme, const K: usize>(
        best: &mut [T::Wide],
        idx: &mut [i32],
        rows: [&[T]; K],
        i0: i32,
        e: E,
    ) {
        super::arg_accumulate_body(best, idx, rows, i0, e)
    }
}

/// Folds a contiguous run.
fn fold_contiguous<T: ReduceElem, R: Reducer<T>>(xs: &[T], r: R) -> R::Acc {
    with_avx2!(fold_contiguous_body::<T, R>(xs, r))
}

#[inline(always)]
fn fold_contiguous_body<T: ReduceElem, R: Reducer<T>>(xs: &[T], r: R) -> R::Acc {
    let mut acc = r.init();
    // Short runs are not worth filling a widening buffer for.
    if T::BULK_WIDEN && xs.len() >= 4 * LANES {
        let mut buf = [T::Wide::zero(); WIDEN_BUF];
        for chunk in xs.chunks(WIDEN_BUF) {
            let b = &mut buf[..chunk.len()];
            T::wide_slice(chunk, b);
            for block in b.chunks(BLOCK) {
                acc = r.merge(acc, fold_lanes::<T::Wide, T, R>(block, |w| w, r));
            }
        }
    } else {
        for block in xs.chunks(BLOCK) {
            acc = r.merge(acc, fold_lanes::<T, T, R>(block, T::wide, r));
        }
    }
    acc
}

/// Folds `K` input rows, in order, into a row of accumulators (`buf`: scratch for widening, as
/// long as the rows when `T::BULK_WIDEN`).
fn accumulate<T: ReduceElem, R: Reducer<T>, const K: usize>(
    acc: &mut [R::Acc],
    rows: [&[T]; K],
    buf: &mut [T::Wide],
    r: R,
) {
    with_avx2!(accumulate_body::<T, R, K>(acc, rows, buf, r))
}

#[inline(always)]
fn accumulate_body<T: ReduceElem, R: Reducer<T>, const K: usize>(
    acc: &mut [R::Acc],
    rows: [&[T]; K],
    buf: &mut [T::Wide],
    r: R,
) {
    if T::BULK_WIDEN {
        for row in rows {
            T::wide_slice(row, buf);
            acc.iter_mut().zip(&*buf).for_each(|(a, &v)| *a = r.step(*a, v));
        }
        return;
    }
    let rows = rows.map(|row| &row[..acc.len()]);
    for (c, a) in acc.iter_mut().enumerate() {
        let mut v = *a;
        for row in &rows {
            v = r.step(v, row[c].wide());
        }
        *a = v;
    }
}

/// Folds `len` elements starting at `start`, `stride` apart.
fn fold_run<T: ReduceElem, R: Reducer<T>>(
    data: &[T],
    start: isize,
    len: usize,
    stride: isize,
    r: R,
) -> R::Acc {
    if stride == 1 {
        return fold_contiguous(&data[start as usize..start as usize + len], r);
    }
    let mut acc = r.init();
    for i in 0..len {
        acc = r.step(acc, data[(start + i as isize * stride) as usize].wide());
    }
    acc
}

/// Element offset of flat position `i` of the space `rows` describes.
#[inline]
fn flat_offset<const N: usize>(rows: &Rows<N>, i: usize) -> [isize; N] {
    let n = rows.inner_len;
    let mut off = rows.offsets(i / n);
    for (o, s) in off.iter_mut().zip(rows.inner_strides) {
        *o += (i % n) as isize * s;
    }
    off
}

/// The reduced axes as an iteration space, outermost (largest stride) first.
struct Reduced {
    rows: Rows<1>,
    len: usize,
}

impl Reduced {
    /// Visits flat positions `start..end` a run at a time: `f(run_offset, first, count)` covers
    /// `count` elements from `run_offset + first * stride`.
    #[inline]
    fn for_runs(&self, start: usize, end: usize, mut f: impl FnMut(isize, usize, usize)) {
        let n = self.rows.inner_len;
        let mut i = start;
        while i < end {
            let (run, j) = (i / n, i % n);
            let len = (n - j).min(end - i);
            let [o] = self.rows.offsets(run);
            f(o, j, len);
            i += len;
        }
    }

    fn stride(&self) -> isize {
        self.rows.inner_strides[0]
    }

    /// Split points for reducing inside one output: about 64 pieces, none tiny.
    fn pieces(&self, width: usize) -> Vec<(usize, usize)> {
        let per = (self.len.div_ceil(64)).max((PARALLEL_THRESHOLD / 4).div_ceil(width));
        (0..self.len).step_by(per.max(1)).map(|s| (s, (s + per).min(self.len))).collect()
    }
}

/// How a reduction shares its work between threads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Split {
    /// Small work: the calling thread does it all.
    Serial,
    /// Many independent output units: units in parallel.
    Across,
    /// Few units: each unit's reduced range in parallel pieces.
    Inside,
}

impl Split {
    fn choose(units: usize, work: usize) -> Split {
        if work < PARALLEL_THRESHOLD {
            Split::Serial
        } else if units >= 2 * rayon::current_num_threads() {
            Split::Across
        } else {
            Split::Inside
        }
    }
}

/// Reduces the axes of `x` flagged in `reduced`. `out` holds one element per position of the
/// kept axes, row-major (size-1 axes may be flagged either way).
pub fn reduce<T: ReduceElem, R: Reducer<T>>(
    out: &mut [R::Out],
    x: View<'_, T>,
    reduced: &[bool],
    r: R,
) {
    let (mut kept, mut red) = (Vec::new(), Vec::new());
    for ((&n, &s), &is_red) in x.shape.iter().zip(x.strides).zip(reduced) {
        match (n, is_red) {
            (1, _) => {}
            (_, true) => red.push((n, s)),
            (_, false) => kept.push((n, s)),
        }
    }
    if out.is_empty() {
        return;
    }
    if red.iter().any(|&(n, _)| n == 0) {
        out.fill(r.finish(r.init()));
        return;
    }
    // Runs then follow memory order; reordering the reduced axes only reassociates the fold.
    red.sort_by_key(|&(_, s)| std::cmp::Reverse(s.unsigned_abs()));
    let (shape, strides): (Vec<usize>, Vec<isize>) = red.iter().copied().unzip();
    let rows = Rows::new(&shape, [&strides], [0]);
    let red = Reduced { len: rows.count() * rows.inner_len, rows };
    let min_red = strides.iter().map(|s| s.unsigned_abs()).min().unwrap_or(usize::MAX);
    let inner_kept = kept
        .iter()
        .enumerate()
        .filter(|(_, &(_, s))| s.unsigned_abs() < min_red)
        .min_by_key(|(i, &(_, s))| (s.unsigned_abs(), usize::MAX - i))
        .map(|(i, _)| i);
    match inner_kept {
        Some(i) => reduce_columns(out, x, &kept, i, &red, r),
        None => reduce_rows(out, x, &kept, &red, r),
    }
}

/// Each output folds its runs; outputs are independent.
fn reduce_rows<T: ReduceElem, R: Reducer<T>>(
    out: &mut [R::Out],
    x: View<'_, T>,
    kept: &[(usize, isize)],
    red: &Reduced,
    r: R,
) {
    let (shape, strides): (Vec<usize>, Vec<isize>) = kept.iter().copied().unzip();
    let outs = Rows::new(&shape, [&strides], [x.offset]);
    let stride = red.stride();
    let fold = |base: isize, s: usize, e: usize| {
        let mut acc = r.init();
        red.for_runs(s, e, |o, j, len| {
            let start = base + o + j as isize * stride;
            acc = r.merge(acc, fold_run(x.data, start, len, stride, r));
        });
        acc
    };
    // Fills outputs `k0..k0 + chunk.len()`, stepping the base offset without divisions.
    let fill = |k0: usize, chunk: &mut [R::Out]| {
        let n = outs.inner_len;
        let [st] = outs.inner_strides;
        let (mut row, mut j) = (k0 / n, k0 % n);
        let [mut ro] = outs.offsets(row);
        for o in chunk {
            *o = r.finish(fold(ro + j as isize * st, 0, red.len));
            j += 1;
            if j == n {
                (row, j) = (row + 1, 0);
                [ro] = outs.offsets(row);
            }
        }
    };
    match Split::choose(out.len(), out.len() * red.len) {
        Split::Serial => fill(0, out),
        Split::Across => {
            let per = (PARALLEL_THRESHOLD / 4).div_ceil(red.len).max(1);
            out.par_chunks_mut(per).enumerate().for_each(|(t, c)| fill(t * per, c));
        }
        Split::Inside => {
            for (k, o) in out.iter_mut().enumerate() {
                let [base] = flat_offset(&outs, k);
                let partials: Vec<R::Acc> =
                    red.pieces(1).into_par_iter().map(|(s, e)| fold(base, s, e)).collect();
                *o = r.finish(partials.into_iter().fold(r.init(), |a, b| r.merge(a, b)));
            }
        }
    }
}

/// Accumulates tiles of outputs along kept axis `inner` (the input's smallest stride), one
/// reduced position at a time.
fn reduce_columns<T: ReduceElem, R: Reducer<T>>(
    out: &mut [R::Out],
    x: View<'_, T>,
    kept: &[(usize, isize)],
    inner: usize,
    red: &Reduced,
    r: R,
) {
    let (n_in, xs_in) = kept[inner];
    // Output strides of the kept axes (row-major over them).
    let mut os = vec![0isize; kept.len()];
    let mut acc_stride = 1isize;
    for (o, &(n, _)) in os.iter_mut().zip(kept).rev() {
        *o = acc_stride;
        acc_stride *= n as isize;
    }
    let os_in = os[inner];
    let (mut shape, mut xs, mut ost) = (vec![], vec![], vec![]);
    for (i, (&(n, s), &o)) in kept.iter().zip(&os).enumerate() {
        if i != inner {
            shape.push(n);
            xs.push(s);
            ost.push(o);
        }
    }
    let outer = Rows::new(&shape, [&xs, &ost], [x.offset, 0]);
    let stride = red.stride();
    // Partial results of outputs `c0..c0 + w` of outer position `base` over reduced `s..e`.
    let fold = |base: isize, w: usize, s: usize, e: usize| -> Vec<R::Acc> {
        let mut acc = vec![r.init(); w];
        let mut buf = vec![T::Wide::zero(); if T::BULK_WIDEN && xs_in == 1 { w } else { 0 }];
        red.for_runs(s, e, |o, j, len| {
            let row = |jj: usize| {
                let off = (base + o + jj as isize * stride) as usize;
                &x.data[off..off + w]
            };
            let mut jj = j;
            while xs_in == 1 && jj + ROWS <= j + len {
                accumulate::<T, R, ROWS>(
                    &mut acc,
                    std::array::from_fn(|k| row(jj + k)),
                    &mut buf,
                    r,
                );
                jj += ROWS;
            }
            for jj in jj..j + len {
                if xs_in == 1 {
                    accumulate::<T, R, 1>(&mut acc, [row(jj)], &mut buf, r);
                } else {
                    let off = base + o + jj as isize * stride;
                    for (c, a) in acc.iter_mut().enumerate() {
                        *a = r.step(*a, x.data[(off + c as isize * xs_in) as usize].wide());
                    }
                }
            }
        });
        acc
    };
    let tile = n_in.min(TILE);
    let units = (outer.count() * outer.inner_len) * n_in.div_ceil(tile);
    let split = Split::choose(units, out.len() * red.len);
    let fill_tile = |q: usize, c0: usize, seg: &mut [R::Out]| {
        let [xb, _] = flat_offset(&outer, q);
        let base = xb + c0 as isize * xs_in;
        let w = seg.len();
        let acc = if split == Split::Inside {
            let partials: Vec<Vec<R::Acc>> =
                red.pieces(w).into_par_iter().map(|(s, e)| fold(base, w, s, e)).collect();
            let mut parts = partials.into_iter();
            let mut acc = parts.next().expect("at least one piece");
            for p in parts {
                acc.iter_mut().zip(p).for_each(|(a, b)| *a = r.merge(*a, b));
            }
            acc
        } else {
            fold(base, w, 0, red.len)
        };
        seg.iter_mut().zip(acc).for_each(|(o, a)| *o = r.finish(a));
    };
    // Results land in `dst` ordered (outer position, inner index); that is `out` itself when
    // the inner axis is the last kept one, else a buffer scattered into `out` afterwards.
    let mut scratch = Vec::new();
    let dst: &mut [R::Out] = if os_in == 1 {
        out
    } else {
        scratch.resize(out.len(), r.finish(r.init()));
        &mut scratch
    };
    if split == Split::Across {
        dst.par_chunks_mut(n_in).enumerate().for_each(|(q, row)| {
            row.par_chunks_mut(tile).enumerate().for_each(|(t, seg)| fill_tile(q, t * tile, seg))
        });
    } else {
        for (q, row) in dst.chunks_mut(n_in).enumerate() {
            for (t, seg) in row.chunks_mut(tile).enumerate() {
                fill_tile(q, t * tile, seg);
            }
        }
    }
    if os_in != 1 {
        for (q, row) in scratch.chunks(n_in).enumerate() {
            let [_, ob] = flat_offset(&outer, q);
            for (c, &v) in row.iter().enumerate() {
                out[(ob + c as isize * os_in) as usize] = v;
            }
        }
    }
}

/// Which extreme an arg-reduction looks for.
pub trait Extreme: Copy + Send + Sync {
    /// Whether `a` beats `b`: strictly more extreme, or the first NaN (NumPy's rule).
    fn beats<W: MinMax>(self, a: W, b: W) -> bool;
    /// The better of the two values (NaN if either is).
    fn pick<W: MinMax>(self, a: W, b: W) -> W;
}

/// argmax.
#[derive(Clone, Copy, Debug)]
pub struct Largest;
/// argmin.
#[derive(Clone, Copy, Debug)]
pub struct Smallest;

impl Extreme for Largest {
    #[inline(always)]
    fn beats<W: MinMax>(self, a: W, b: W) -> bool {
        // Non-short-circuit operators keep this branch-free, so loops over it vectorise.
        (a > b) | (a.is_nan() & !b.is_nan())
    }
    #[inline(always)]
    fn pick<W: MinMax>(self, a: W, b: W) -> W {
        nan_or(a, b, W::max_num)
    }
}

impl Extreme for Smallest {
    #[inline(always)]
    fn beats<W: MinMax>(self, a: W, b: W) -> bool {
        (a < b) | (a.is_nan() & !b.is_nan())
    }
    #[inline(always)]
    fn pick<W: MinMax>(self, a: W, b: W) -> W {
        nan_or(a, b, W::min_num)
    }
}

/// For each position of the axes other than `axis`, the index along `axis` of its first most
/// extreme element. `out` is row-major over the other axes; `axis` must not be empty.
pub fn arg_reduce<T: ReduceElem, E: Extreme>(out: &mut [u32], x: View<'_, T>, axis: usize, e: E) {
    let (n, sa) = (x.shape[axis], x.strides[axis]);
    let (mut shape, mut strides) = (x.shape.to_vec(), x.strides.to_vec());
    shape.remove(axis);
    strides.remove(axis);
    let outs = Rows::new(&shape, [&strides], [x.offset]);
    let (kn, [ks]) = (outs.inner_len, outs.inner_strides);
    let at = |o: isize| x.data[o as usize].wide();
    // The best (value, index) among indices `s..e` of the axis from `base`.
    let best_in = |base: isize, s: usize, end: usize| {
        if sa == 1 {
            let (best, i) = arg_fold(&x.data[(base as usize + s)..(base as usize + end)], e);
            return (best, s + i);
        }
        let (mut best, mut bi) = (at(base + s as isize * sa), s);
        for i in s + 1..end {
            let v = at(base + i as isize * sa);
            if e.beats(v, best) {
                (best, bi) = (v, i);
            }
        }
        (best, bi)
    };
    if out.is_empty() || n == 0 {
        return;
    }
    if kn > 1 && ks.unsigned_abs() < sa.unsigned_abs() {
        // Columns: a tile of neighbouring outputs advances along the axis together.
        let fill_tile = |q: usize, c0: usize, seg: &mut [u32]| {
            let [ro] = outs.offsets(q);
            let base = ro + c0 as isize * ks;
            let mut best: Vec<T::Wide> =
                (0..seg.len()).map(|c| at(base + c as isize * ks)).collect();
            let mut idx = vec![0i32; seg.len()];
            let w = seg.len();
            let row = |i: usize| {
                let off = (base + i as isize * sa) as usize;
                &x.data[off..off + w]
            };
            let mut first = 1;
            while ks == 1 && first + ROWS <= n {
                let rows = std::array::from_fn(|k| row(first + k));
                arg_accumulate::<T, E, ROWS>(&mut best, &mut idx, rows, first as i32, e);
                first += ROWS;
            }
            for i in first..n {
                if ks == 1 {
                    arg_accumulate::<T, E, 1>(&mut best, &mut idx, [row(i)], i as i32, e);
                    continue;
                }
                let off = base + i as isize * sa;
                for (c, (b, o)) in best.iter_mut().zip(idx.iter_mut()).enumerate() {
                    let v = at(off + c as isize * ks);
                    if e.beats(v, *b) {
                        (*b, *o) = (v, i as i32);
                    }
                }
            }
            seg.iter_mut().zip(idx).for_each(|(o, i)| *o = i as u32);
        };
        if out.len() * n >= PARALLEL_THRESHOLD {
            out.par_chunks_mut(kn).enumerate().for_each(|(q, row)| {
                row.par_chunks_mut(ARG_TILE)
                    .enumerate()
                    .for_each(|(t, s)| fill_tile(q, t * ARG_TILE, s))
            });
        } else {
            for (q, row) in out.chunks_mut(kn).enumerate() {
                for (t, seg) in row.chunks_mut(ARG_TILE).enumerate() {
                    fill_tile(q, t * ARG_TILE, seg);
                }
            }
        }
        return;
    }
    let fill = |k0: usize, chunk: &mut [u32]| {
        for (k, o) in chunk.iter_mut().enumerate() {
            let [base] = flat_offset(&outs, k0 + k);
            *o = best_in(base, 0, n).1 as u32;
        }
    };
    match Split::choose(out.len(), out.len() * n) {
        Split::Serial => fill(0, out),
        Split::Across => {
            let per = (PARALLEL_THRESHOLD / 4).div_ceil(n).max(1);
            out.par_chunks_mut(per).enumerate().for_each(|(t, c)| fill(t * per, c));
        }
        Split::Inside => {
            let per = n.div_ceil(64).max(PARALLEL_THRESHOLD / 4);
            for (k, o) in out.iter_mut().enumerate() {
                let [base] = flat_offset(&outs, k);
                let pieces: Vec<(T::Wide, usize)> = (0..n)
                    .step_by(per)
                    .collect::<Vec<_>>()
                    .into_par_iter()
                    .map(|s| best_in(base, s, (s + per).min(n)))
                    .collect();
                // In index order, a later piece wins only by beating the best so far.
                let mut it = pieces.into_iter();
                let first = it.next().expect("the axis is not empty");
                let (_, bi) = it.fold(first, |a, b| if e.beats(b.0, a.0) { b } else { a });
                *o = bi as u32;
            }
        }
    }
}

/// The first most extreme element of a contiguous, non-empty run and its index.
fn arg_fold<T: ReduceElem, E: Extreme>(xs: &[T], e: E) -> (T::Wide, usize) {
    with_avx2!(arg_fold_body::<T, E>(xs, e))
}

#[inline(always)]
fn arg_fold_body<T: ReduceElem, E: Extreme>(xs: &[T], e: E) -> (T::Wide, usize) {
    // Each lane keeps the first best of the elements it sees. Updates are written as a pick
    // and a max of indices (later indices are larger), never as a select of the old value,
    // which the vectoriser would turn into a slow masked store. Between lanes, equal values
    // go to the lower index.
    let first = xs[0].wide();
    let (mut best, mut idx) = ([first; LANES], [0i32; LANES]);
    let mut chunks = xs.chunks_exact(LANES);
    for (k, c) in (&mut chunks).enumerate() {
        let base = (k * LANES) as i32;
        arg_step(&mut best, &mut idx, c, |j| base + j as i32, e);
    }
    let mut res = (first, 0usize);
    for (&v, &i) in best.iter().zip(&idx) {
        let i = i as u32;
        if e.beats(v, res.0) || (!e.beats(res.0, v) && (i as usize) < res.1) {
            res = (v, i as usize);
        }
    }
    let tail = xs.len() - chunks.remainder().len();
    for (i, &x) in chunks.remainder().iter().enumerate() {
        if e.beats(x.wide(), res.0) {
            res = (x.wide(), tail + i);
        }
    }
    res
}

/// Advances running bests (`idx`: their indices, which `index(j)` never decreases) by `src`.
/// Indices are i32 so that `max(o, 0)` is not provably `o`: the store then stays
/// unconditional instead of becoming a slow masked one.
#[inline(always)]
fn arg_step<T: ReduceElem, E: Extreme>(
    best: &mut [T::Wide],
    idx: &mut [i32],
    src: &[T],
    index: impl Fn(usize) -> i32,
    e: E,
) {
    for (j, ((b, o), &x)) in best.iter_mut().zip(idx.iter_mut()).zip(src).enumerate() {
        let v = x.wide();
        let beats = e.beats(v, *b) as i32;
        *o = (*o).max(beats * index(j));
        *b = e.pick(*b, v);
    }
}

/// Advances a row of running bests (`idx`: their indices) by the `K` input rows `rows`, the
/// first of index `i0`.
fn arg_accumulate<T: ReduceElem, E: Extreme, const K: usize>(
    best: &mut [T::Wide],
    idx: &mut [i32],
    rows: [&[T]; K],
    i0: i32,
    e: E,
) {
    with_avx2!(arg_accumulate_body::<T, E, K>(best, idx, rows, i0, e))
}

#[inline(always)]
fn arg_accumulate_body<T: ReduceElem, E: Extreme, const K: usize>(
    best: &mut [T::Wide],
    idx: &mut [i32],
    rows: [&[T]; K],
    i0: i32,
    e: E,
) {
    let rows = rows.map(|row| &row[..best.len()]);
    for (c, (b, o)) in best.iter_mut().zip(idx.iter_mut()).enumerate() {
        let (mut bv, mut bi) = (*b, *o);
        for (k, row) in rows.iter().enumerate() {
            let v = row[c].wide();
            bi = bi.max(e.beats(v, bv) as i32 * (i0 + k as i32));
            bv = e.pick(bv, v);
        }
        (*b, *o) = (bv, bi);
    }
}
