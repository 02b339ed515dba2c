//! Sorting kernels along one axis: sort, stable argsort, partition and argpartition, in
//! NumPy's order (NaNs after every number). Elements are sorted through integer keys of the
//! same order ([`SortKey`]): short lines by comparison, longer ones by a stable radix sort.
//! NaNs have no key and are set aside, then placed last in their original order. Lines are
//! spread over threads.

use crate::index::{for_each_chunk_with, unravel_offset};
use crate::scalar::Scalar;
use crate::strided::{map1, View};
use half::{bf16, f16};

/// Lines at least this long are radix sorted; shorter ones sort faster by comparison.
const RADIX_MIN: usize = 512;

/// An integer key that `radix` maps to an unsigned integer of `BYTES` bytes, same order.
pub trait RadixKey: Ord + Copy + Send + Sync {
    const BYTES: usize;
    fn radix(self) -> u64;
}

macro_rules! radix_key {
    ($($t:ty => $u:ty),*) => {$(
        impl RadixKey for $t {
            const BYTES: usize = std::mem::size_of::<$t>();
            /// Unsigned types as they are; signed ones with the sign bit flipped.
            #[inline]
            fn radix(self) -> u64 {
                let flip = if <$t>::MIN == 0 as $t { 0 } else { 1 << (<$u>::BITS - 1) };
                ((self as $u) ^ flip) as u64
            }
        }
    )*};
}
radix_key!(u8 => u8, u16 => u16, u32 => u32, u64 => u64, i8 => u8, i16 => u16, i32 => u32,
    i64 => u64);

impl RadixKey for bool {
    const BYTES: usize = 1;
    #[inline]
    fn radix(self) -> u64 {
        self as u64
    }
}

/// An element type sorted through an integer key with the same order (NaNs excepted).
pub trait SortKey: Scalar {
    type Key: RadixKey;
    /// An exact key: `from_key` inverts it (so `-0.0` sorts just below `0.0`).
    fn key(self) -> Self::Key;
    fn from_key(key: Self::Key) -> Self;
    /// The key that only orders: equal values (`-0.0` and `0.0`) get equal keys.
    fn order_key(self) -> Self::Key {
        self.key()
    }
}

macro_rules! identity_key {
    ($($t:ty),*) => {$(
        impl SortKey for $t {
            type Key = $t;
            #[inline]
            fn key(self) -> $t {
                self
            }
            #[inline]
            fn from_key(key: $t) -> $t {
                key
            }
        }
    )*};
}
identity_key!(bool, u8, u16, u32, u64, i8, i16, i32, i64);

macro_rules! float_key {
    ($($t:ty => $i:ty, $u:ty);*) => {$(
        impl SortKey for $t {
            type Key = $i;
            /// The IEEE bits as a signed integer with the magnitude bits of negatives flipped,
            /// so integer order is float order. The map is its own inverse.
            #[inline]
            fn key(self) -> $i {
                let b = self.to_bits() as $i;
                b ^ ((((b >> (<$i>::BITS - 1)) as $u) >> 1) as $i)
            }
            #[inline]
            fn from_key(key: $i) -> $t {
                <$t>::from_bits((key ^ ((((key >> (<$i>::BITS - 1)) as $u) >> 1) as $i)) as $u)
            }
            #[inline]
            fn order_key(self) -> $i {
                if self == Self::zero() { 0 } else { self.key() }
            }
        }
    )*};
}
float_key!(f32 => i32, u32; f64 => i64, u64; f16 => i16, u16; bf16 => i16, u16);

/// One line of a view along the sorted axis.
#[derive(Clone, Copy)]
struct Line<'a, T> {
    data: &'a [T],
    offset: isize,
    stride: isize,
    len: usize,
}

impl<T: Copy> Line<'_, T> {
    /// Calls `f(position, value)` for each element in order.
    #[inline]
    fn for_each(&self, mut f: impl FnMut(u32, T)) {
        if self.stride == 1 {
            let s = &self.data[self.offset as usize..self.offset as usize + self.len];
            s.iter().enumerate().for_each(|(i, &v)| f(i as u32, v));
        } else {
            for i in 0..self.len {
                f(i as u32, self.data[(self.offset + i as isize * self.stride) as usize]);
            }
        }
    }
}

/// Runs `f(scratch, line, out_line)` for every line of `src` along `axis`, where `out` is
/// contiguous with `src`'s shape and `out_line` is that line's place in it. `init` makes the
/// scratch state of each task.
fn for_each_line<T, U, S, I, F>(out: &mut [U], src: View<'_, T>, axis: usize, init: I, f: F)
where
    T: Copy + Send + Sync,
    U: Copy + Send + Sync + Default,
    I: Fn() -> S + Sync,
    F: Fn(&mut S, Line<'_, T>, &mut [U]) + Sync,
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
        for_each_chunk_with(buf, n, &init, |s, r, o| {
            let offset = src.offset as isize + unravel_offset(r, &rest_shape, &rest_strides);
            f(s, Line { data: src.data, offset, stride, len: n }, o)
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

/// The elements of one line being ordered, and room for the radix sort to work.
struct Scratch<E> {
    items: Vec<E>,
    tmp: Vec<E>,
    /// Digit counts of each key byte (a 2-byte key uses the first two rows).
    counts: Box<[[u32; 256]; 8]>,
}

impl<E> Scratch<E> {
    fn new() -> Self {
        Scratch { items: Vec::new(), tmp: Vec::new(), counts: Box::new([[0; 256]; 8]) }
    }
}

/// Sorts `s.items` (stably, by `key` alone, when radix sorting), or with `kth` partitions them
/// around position `kth` when it lies inside them.
fn order<E: Ord + Copy, K: RadixKey>(
    s: &mut Scratch<E>,
    kth: Option<usize>,
    key: impl Fn(&E) -> K,
) {
    let n = s.items.len();
    match kth {
        None if (RADIX_MIN..u32::MAX as usize).contains(&n) => radix_sort(s, key),
        None => s.items.sort_unstable(),
        Some(k) if k < n => {
            s.items.select_nth_unstable(k);
        }
        Some(_) => {} // kth falls among the NaNs placed after the items
    }
}

/// A stable least-significant-digit radix sort of `s.items` (fewer than `u32::MAX`) by `key`,
/// a byte per pass; passes where every key has the same digit are skipped.
fn radix_sort<E: Copy, K: RadixKey>(s: &mut Scratch<E>, key: impl Fn(&E) -> K) {
    let (v, tmp, counts) = (&mut s.items, &mut s.tmp, &mut s.counts[..K::BYTES]);
    let n = v.len();
    counts.iter_mut().for_each(|c| c.fill(0));
    for e in v.iter() {
        let k = key(e).radix();
        for (b, c) in counts.iter_mut().enumerate() {
            c[(k >> (8 * b)) as usize & 255] += 1;
        }
    }
    tmp.resize(n, v[0]); // contents are overwritten by each pass
    for (b, c) in counts.iter().enumerate() {
        if c.contains(&(n as u32)) {
            continue;
        }
        let mut pos = [0u32; 256];
        let mut sum = 0;
        for (p, &c) in pos.iter_mut().zip(c) {
            *p = sum;
            sum += c;
        }
        for e in v.iter() {
            let d = (key(e).radix() >> (8 * b)) as usize & 255;
            tmp[pos[d] as usize] = *e;
            pos[d] += 1;
        }
        std::mem::swap(v, tmp);
    }
}

/// Writes the sorted (or partitioned) values of `line` to `out`, NaNs last.
fn order_values<T: SortKey>(
    keys: &mut Scratch<T::Key>,
    line: Line<'_, T>,
    out: &mut [T],
    kth: Option<usize>,
) {
    keys.items.clear();
    line.for_each(|_, v| {
        if !v.is_nan() {
            keys.items.push(v.key());
        }
    });
    order(keys, kth, |&k| k);
    out.iter_mut().zip(&keys.items).for_each(|(o, &k)| *o = T::from_key(k));
    if keys.items.len() == out.len() {
        return;
    }
    let mut nans = out[keys.items.len()..].iter_mut();
    line.for_each(|_, v| {
        if v.is_nan() {
            *nans.next().expect("one place per NaN") = v;
        }
    });
}

/// Writes the positions that sort (or partition) `line` to `out`: ties in position order,
/// NaNs last in position order.
fn order_indices<T: SortKey>(
    pairs: &mut Scratch<(T::Key, u32)>,
    line: Line<'_, T>,
    out: &mut [u32],
    kth: Option<usize>,
) {
    pairs.items.clear();
    line.for_each(|i, v| {
        if !v.is_nan() {
            pairs.items.push((v.order_key(), i));
        }
    });
    // Pairs start in position order and compare by key, then position: both the unstable
    // comparison sort and the radix sort by key give a stable result.
    order(pairs, kth, |&(k, _)| k);
    out.iter_mut().zip(&pairs.items).for_each(|(o, &(_, i))| *o = i);
    if pairs.items.len() == out.len() {
        return;
    }
    let mut nans = out[pairs.items.len()..].iter_mut();
    line.for_each(|i, v| {
        if v.is_nan() {
            *nans.next().expect("one place per NaN") = i;
        }
    });
}

/// Sorts every line of `src` along `axis` into `out` (contiguous, `src`'s shape).
pub fn sort<T: SortKey>(out: &mut [T], src: View<'_, T>, axis: usize) {
    for_each_line(out, src, axis, Scratch::new, |k, line, o| order_values(k, line, o, None));
}

/// The indices that sort every line of `src` along `axis`; equal elements keep their order.
/// Lines must be shorter than `u32::MAX`.
pub fn argsort<T: SortKey>(out: &mut [u32], src: View<'_, T>, axis: usize) {
    for_each_line(out, src, axis, Scratch::new, |p, line, o| order_indices(p, line, o, None));
}

/// Partitions every line of `src` along `axis`: element `kth` is where sorting would put it,
/// those before it are not greater and those after not smaller.
pub fn partition<T: SortKey>(out: &mut [T], src: View<'_, T>, axis: usize, kth: usize) {
    for_each_line(out, src, axis, Scratch::new, |k, line, o| order_values(k, line, o, Some(kth)));
}

/// The indices that partition every line of `src` along `axis` (see [`partition`]).
pub fn argpartition<T: SortKey>(out: &mut [u32], src: View<'_, T>, axis: usize, kth: usize) {
    for_each_line(out, src, axis, Scratch::new, |p, line, o| order_indices(p, line, o, Some(kth)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strided::PARALLEL_THRESHOLD;

    #[test]
    fn float_keys_keep_the_order_and_invert() {
        let v = [f32::NEG_INFINITY, -2.5, -1e-30, -0.0, 0.0, 1e-30, 3.0, f32::INFINITY];
        let keys: Vec<i32> = v.iter().map(|x| x.key()).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        assert!(v.iter().all(|&x| f32::from_key(x.key()).to_bits() == x.to_bits()));
        assert_eq!((-0.0f32).order_key(), 0.0f32.order_key());
        let h = [f16::from_f32(-3.0), f16::from_f32(-0.5), f16::from_f32(2.0)];
        assert!(h[0].key() < h[1].key() && h[1].key() < h[2].key());
        let r: Vec<u64> = [i16::MIN, -1, 0, 1, i16::MAX].iter().map(|k| k.radix()).collect();
        assert!(r.windows(2).all(|w| w[0] < w[1]) && r[4] < 1 << 16);
    }

    #[test]
    fn nans_sort_last_in_position_order() {
        let x = [3.0f32, f32::NAN, -1.0, 2.0, -f32::NAN];
        let mut out = [0f32; 5];
        sort(&mut out, View::new(&x, &[5], &[1], 0), 0);
        assert_eq!(&out[..3], &[-1.0, 2.0, 3.0]);
        assert!(out[3].is_nan() && out[4].is_nan());
        let mut idx = [0u32; 5];
        argsort(&mut idx, View::new(&x, &[5], &[1], 0), 0);
        assert_eq!(idx, [2, 3, 0, 1, 4]);
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
    fn partition_with_kth_among_the_nans() {
        let x = [f64::NAN, 1.0, f64::NAN, 0.0];
        let mut out = [0f64; 4];
        partition(&mut out, View::new(&x, &[4], &[1], 0), 0, 3);
        assert_eq!(out[0] + out[1], 1.0);
        assert!(out[2].is_nan() && out[3].is_nan());
    }

    #[test]
    fn radix_sorted_floats_match_a_comparison_sort() {
        // Negatives, ties, signed zeros and NaNs in a line long enough for the radix sort.
        let x: Vec<f32> = (0..1000)
            .map(|i| match i % 97 {
                0 => f32::NAN,
                1 => -0.0,
                2 => 0.0,
                _ => ((i * 37) % 201) as f32 / 4.0 - 25.0,
            })
            .collect();
        let nan_last = |a: &f32, b: &f32| a.partial_cmp(b).unwrap_or(a.is_nan().cmp(&b.is_nan()));
        let mut want = x.clone();
        want.sort_by(nan_last);
        let mut out = vec![0f32; x.len()];
        sort(&mut out, View::new(&x, &[x.len()], &[1], 0), 0);
        assert!(out.iter().zip(&want).all(|(a, b)| a == b || (a.is_nan() && b.is_nan())));
        let mut want_idx: Vec<u32> = (0..x.len() as u32).collect();
        want_idx.sort_by(|&a, &b| nan_last(&x[a as usize], &x[b as usize])); // stable
        let mut idx = vec![0u32; x.len()];
        argsort(&mut idx, View::new(&x, &[x.len()], &[1], 0), 0);
        assert_eq!(idx, want_idx);
    }

    #[test]
    fn long_lines_radix_sort_stably() {
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
