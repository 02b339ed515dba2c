//! Random sampling with explicit keys, as `mlx.core.random`: a key is a uint32 array of shape
//! `(2,)`; `bits` hashes it with Threefry-2x32 into random words (the only generator
//! primitive), and every distribution is composed from those bits with ordinary ops. Without
//! a key, each call splits a global key (`seed` resets it), so results are reproducible
//! per seed and thread-safe.

use super::creation::arange;
use super::elementwise::{
    add, astype, bitwise_or, divide, erf, erfinv, left_shift, less, less_equal, log, maximum,
    minimum, multiply, negative, remainder, subtract, where_,
};
use super::layout::{expand_dims, reshape_to, slice_axis, Slice};
use super::{broadcast_shapes, normalize_axis};
use crate::array::Array;
use crate::dtype::Dtype;
use crate::op::{Op, OutSpec, Primitive};
use crate::{bail, Result};
use ember_cpu::random::fill_words;
use std::sync::Mutex;

/// Primitives for random bits from explicit keys.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RandomOp {
    /// Random elements of `width` bytes (1, 2 or 4: uint8/16/32) from a key (the input). A
    /// batch of keys `(..., 2)` (vmap over keys) fills `shape`, which starts with the batch
    /// dims, one block per key.
    Bits { shape: Vec<usize>, width: usize },
    /// The uint32 index of the largest value along `axis`: `categorical`'s choice among
    /// Gumbel-perturbed logits (first maximum wins, NaN counts as largest).
    Argmax { axis: usize },
    /// Input 1 reordered along `axis` by the stable argsort of input 0 (uint32 bits of length
    /// `shape[axis]`): `permutation`'s shuffle.
    Permute { axis: usize },
}

impl Primitive for RandomOp {
    fn name(&self) -> &'static str {
        match self {
            RandomOp::Bits { .. } => "bits",
            RandomOp::Argmax { .. } => "categorical",
            RandomOp::Permute { .. } => "permutation",
        }
    }

    fn infer(&self, inputs: &[&Array]) -> Result<Vec<OutSpec>> {
        match self {
            RandomOp::Bits { shape, width } => {
                check_keys(inputs[0], shape)?;
                let dtype = match width {
                    1 => Dtype::Uint8,
                    2 => Dtype::Uint16,
                    4 => Dtype::Uint32,
                    w => bail!("bits", "bit width must be 1, 2 or 4 bytes, got {}", w),
                };
                if shape.iter().try_fold(*width, |n, &d| n.checked_mul(d)).is_none() {
                    bail!("bits", "shape {:?} is too large", shape);
                }
                Ok(vec![(shape.clone(), dtype)])
            }
            RandomOp::Argmax { axis } => {
                let x = inputs[0];
                if *axis >= x.ndim() || x.shape()[*axis] == 0 {
                    bail!(
                        "categorical",
                        "cannot choose along axis {} of shape {:?}",
                        axis,
                        x.shape()
                    );
                }
                let mut shape = x.shape().to_vec();
                shape.remove(*axis);
                Ok(vec![(shape, Dtype::Uint32)])
            }
            RandomOp::Permute { axis } => {
                let (bits, x) = (inputs[0], inputs[1]);
                if *axis >= x.ndim()
                    || bits.shape() != [x.shape()[*axis]]
                    || bits.dtype() != Dtype::Uint32
                {
                    bail!(
                        "permutation",
                        "{} bits of shape {:?} cannot order axis {} of shape {:?}",
                        bits.dtype(),
                        bits.shape(),
                        axis,
                        x.shape()
                    );
                }
                Ok(vec![(x.shape().to_vec(), x.dtype())])
            }
        }
    }
}

fn check_key(key: &Array) -> Result<()> {
    if key.dtype() != Dtype::Uint32 || key.shape() != [2] {
        bail!(
            "bits",
            "a key must be a uint32 array of shape (2,), got {} of shape {:?}",
            key.dtype(),
            key.shape()
        );
    }
    Ok(())
}

/// `bits`' input: one key, or a batch of keys (from vmap) whose batch dims lead `shape`.
fn check_keys(keys: &Array, shape: &[usize]) -> Result<()> {
    let batch = &keys.shape()[..keys.ndim().saturating_sub(1)];
    if keys.dtype() != Dtype::Uint32 || keys.shape().last() != Some(&2) || !shape.starts_with(batch)
    {
        bail!(
            "bits",
            "keys must be a uint32 array of shape (..., 2) whose batch dims start {:?}, got {} \
             of shape {:?}",
            shape,
            keys.dtype(),
            keys.shape()
        );
    }
    Ok(())
}

/// The global key used when no key is given; `None` until first use or `seed`.
static GLOBAL_KEY: Mutex<Option<[u32; 2]>> = Mutex::new(None);

fn key_words(seed: u64) -> [u32; 2] {
    [(seed >> 32) as u32, seed as u32]
}

/// A PRNG key from a seed: uint32 `[seed >> 32, seed & 0xffffffff]`.
pub fn key(seed: u64) -> Array {
    Array::from_slice(&key_words(seed), &[2]).expect("two words fit shape (2,)")
}

/// Resets the global key to `key(seed)`.
pub fn seed(seed: u64) {
    *GLOBAL_KEY.lock().unwrap_or_else(|e| e.into_inner()) = Some(key_words(seed));
}

/// Splits the global key (seeded from the clock on first use): keeps one half, returns the other.
fn next_key() -> Array {
    let mut global = GLOBAL_KEY.lock().unwrap_or_else(|e| e.into_inner());
    let current = global.get_or_insert_with(|| {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        key_words(ms)
    });
    // `split(key, 2)` computed directly: four words, the first pair kept, the second handed out.
    let mut w = [0u32; 4];
    fill_words(*current, &mut w);
    *current = [w[0], w[1]];
    Array::from_slice(&w[2..], &[2]).expect("two words fit shape (2,)")
}

fn key_or_next(key: Option<&Array>) -> Array {
    key.cloned().unwrap_or_else(next_key)
}

/// Random bits of `shape`: uint32, uint16 or uint8 for `width` 4, 2 or 1 bytes.
pub fn bits(shape: &[usize], width: usize, key: Option<&Array>) -> Result<Array> {
    let key = key_or_next(key);
    check_key(&key)?;
    let op = RandomOp::Bits { shape: shape.to_vec(), width };
    Array::from_op(Op::Random(op), vec![key])
}

/// `num` new keys from `key`, as a `(num, 2)` uint32 array.
pub fn split(key: &Array, num: usize) -> Result<Array> {
    bits(&[num, 2], 4, Some(key))
}

/// Two new keys from `key` (the rows of `split(key, 2)`).
pub fn split_pair(key: &Array) -> Result<(Array, Array)> {
    let keys = split(key, 2)?;
    let row = |i: isize| reshape_to(&slice_axis(&keys, 0, Slice::range(i, i + 1))?, &[2]);
    Ok((row(0)?, row(1)?))
}

/// The largest value below one in `dtype`, as float32 (uniform samples lie in `[low, high)`).
fn below_one(dtype: Dtype) -> Result<f32> {
    Ok(match dtype {
        Dtype::Float32 => f32::from_bits(1f32.to_bits() - 1),
        Dtype::Float16 => half::f16::from_bits(half::f16::ONE.to_bits() - 1).to_f32(),
        Dtype::Bfloat16 => half::bf16::from_bits(half::bf16::ONE.to_bits() - 1).to_f32(),
        d => bail!("uniform", "cannot generate uniform numbers of type {}", d),
    })
}

/// Uniform samples in `[low, high)` of `shape` (`low` and `high` broadcast to it).
pub fn uniform(
    low: &Array,
    high: &Array,
    shape: &[usize],
    dtype: Dtype,
    key: Option<&Array>,
) -> Result<Array> {
    if !dtype.is_float() {
        bail!(
            "uniform",
            "can only generate uniform numbers of a floating point type, got {}",
            dtype
        );
    }
    let upper = below_one(dtype)?;
    let lo = astype(low, dtype)?;
    let range = subtract(&astype(high, dtype)?, &lo)?;
    if broadcast_shapes("uniform", shape, range.shape())? != shape {
        bail!(
            "uniform",
            "cannot generate values of shape {:?} from bounds of shape {:?}",
            shape,
            range.shape()
        );
    }
    let u = divide(&bits(shape, 4, key)?, &Array::scalar(u32::MAX as f32))?;
    let u = astype(&minimum(&u, &Array::scalar(upper))?, dtype)?;
    add(&multiply(&range, &u)?, &lo)
}

/// Normal samples with mean `loc` (default 0) and standard deviation `scale` (default 1).
pub fn normal(
    shape: &[usize],
    dtype: Dtype,
    loc: Option<&Array>,
    scale: Option<&Array>,
    key: Option<&Array>,
) -> Result<Array> {
    if !dtype.is_float() {
        bail!("normal", "can only generate normal numbers of a floating point type, got {}", dtype);
    }
    // sqrt(2) * erfinv(u) for u uniform in (-1, 1) is standard normal.
    let low = Array::scalar(f32::from_bits((-1f32).to_bits() - 1));
    let u = uniform(&low, &Array::scalar(1f32), shape, Dtype::Float32, key)?;
    let mut factor = astype(&Array::scalar(std::f64::consts::SQRT_2), dtype)?;
    if let Some(s) = scale {
        factor = multiply(&factor, &astype(s, dtype)?)?;
    }
    let samples = multiply(&factor, &astype(&erfinv(&u)?, dtype)?)?;
    match loc {
        Some(l) => add(&astype(l, dtype)?, &samples),
        None => Ok(samples),
    }
}

/// Integers uniform in `[low, high)` of `shape` (`low >= high` gives `low`). Bits reduced
/// modulo the range in uint64, with two 32-bit draws per element for 64-bit dtypes.
pub fn randint(
    low: &Array,
    high: &Array,
    shape: &[usize],
    dtype: Dtype,
    key: Option<&Array>,
) -> Result<Array> {
    if dtype.is_float() {
        bail!("randint", "randint only accepts integer dtypes and bool, got {}", dtype);
    }
    let lo = astype(low, Dtype::Int64)?;
    let range = subtract(&astype(high, Dtype::Int64)?, &lo)?;
    if broadcast_shapes("randint", shape, range.shape())? != shape {
        bail!(
            "randint",
            "cannot generate values of shape {:?} from bounds of shape {:?}",
            shape,
            range.shape()
        );
    }
    // Emptiness is decided in the output's domain; the wrapped int64 width read as uint64 is
    // the true width even for intervals wider than int64 can hold.
    let cmp =
        if dtype.kind() == crate::dtype::Kind::Unsigned { Dtype::Uint64 } else { Dtype::Int64 };
    let empty = less_equal(&astype(high, cmp)?, &astype(low, cmp)?)?;
    let width = where_(&empty, &Array::scalar(1u64), &astype(&range, Dtype::Uint64)?)?;
    let raw = if matches!(dtype, Dtype::Int64 | Dtype::Uint64) {
        let (k1, k2) = match key {
            Some(k) => {
                let (a, b) = split_pair(k)?;
                (Some(a), Some(b))
            }
            None => (None, None),
        };
        let lo_bits = astype(&bits(shape, 4, k1.as_ref())?, Dtype::Uint64)?;
        let hi_bits = astype(&bits(shape, 4, k2.as_ref())?, Dtype::Uint64)?;
        bitwise_or(&left_shift(&hi_bits, &Array::scalar(32u64))?, &lo_bits)?
    } else {
        astype(&bits(shape, 4, key)?, Dtype::Uint64)?
    };
    let offset = remainder(&raw, &width)?;
    astype(&add(&astype(&lo, Dtype::Uint64)?, &offset)?, dtype)
}

/// Booleans that are true with probability `p` (a float array), of `shape` (default
/// `p`'s shape).
pub fn bernoulli(p: &Array, shape: Option<&[usize]>, key: Option<&Array>) -> Result<Array> {
    if !p.dtype().is_float() {
        bail!("bernoulli", "probability `p` must be a float type, got {}", p.dtype());
    }
    let shape = shape.unwrap_or(p.shape());
    if broadcast_shapes("bernoulli", shape, p.shape())? != shape {
        bail!("bernoulli", "shape of `p` {:?} is incompatible with shape {:?}", p.shape(), shape);
    }
    // p scaled to [0, the float just above u32::MAX]: p >= 1 is always true, p <= 0 never.
    let upper = Array::scalar(f32::from_bits((u32::MAX as f32).to_bits() + 1));
    less(&bits(shape, 4, key)?, &multiply(p, &upper)?)
}

/// Normal samples truncated to `[lower, upper]`, of `shape` (default: the bounds' broadcast
/// shape), by inverting the normal CDF on a uniform draw between the bounds' CDF values.
pub fn truncated_normal(
    lower: &Array,
    upper: &Array,
    shape: Option<&[usize]>,
    dtype: Dtype,
    key: Option<&Array>,
) -> Result<Array> {
    if !dtype.is_float() {
        bail!("truncated_normal", "only floating point dtypes are supported, got {}", dtype);
    }
    let shape = match shape {
        Some(s) => s.to_vec(),
        None => broadcast_shapes("truncated_normal", lower.shape(), upper.shape())?,
    };
    let sqrt2 = astype(&Array::scalar(std::f64::consts::SQRT_2), dtype)?;
    let (lo, hi) = (astype(lower, dtype)?, astype(upper, dtype)?);
    let a = erf(&divide(&lo, &sqrt2)?)?;
    let b = erf(&divide(&hi, &sqrt2)?)?;
    let u = uniform(&a, &b, &shape, dtype, key)?;
    let out = multiply(&sqrt2, &erfinv(&u)?)?;
    maximum(&minimum(&hi, &out)?, &lo)
}

/// Samples of the standard Gumbel distribution: `-log(-log(u))` for uniform `u`.
pub fn gumbel(shape: &[usize], dtype: Dtype, key: Option<&Array>) -> Result<Array> {
    let (zero, one) = (astype(&Array::scalar(0f32), dtype)?, astype(&Array::scalar(1f32), dtype)?);
    negative(&log(&negative(&log(&uniform(&zero, &one, shape, dtype, key)?)?)?)?)
}

/// Category indices (uint32) drawn from unnormalised log-probabilities `logits` along
/// `axis`: one per position of the other axes, or `num_samples` of them in a new last axis.
pub fn categorical(
    logits: &Array,
    axis: isize,
    num_samples: Option<usize>,
    key: Option<&Array>,
) -> Result<Array> {
    let axis = normalize_axis("categorical", axis, logits.ndim())?;
    match num_samples {
        Some(n) => {
            let logits = expand_dims(logits, &[-1])?;
            let mut shape = logits.shape().to_vec();
            shape.remove(axis);
            *shape.last_mut().expect("at least the added axis") = n;
            sample_categories(&logits, axis, shape, key)
        }
        None => {
            let mut shape = logits.shape().to_vec();
            shape.remove(axis);
            sample_categories(logits, axis, shape, key)
        }
    }
}

/// `categorical` with an explicit output `shape`, which must broadcast with `logits` less
/// `axis`.
pub fn categorical_shape(
    logits: &Array,
    axis: isize,
    shape: &[usize],
    key: Option<&Array>,
) -> Result<Array> {
    let axis = normalize_axis("categorical", axis, logits.ndim())?;
    let mut reduced = logits.shape().to_vec();
    reduced.remove(axis);
    if shape.len() < reduced.len() || broadcast_shapes("categorical", shape, &reduced)? != shape {
        bail!(
            "categorical",
            "shape {:?} does not broadcast with logits shape {:?} less axis {}",
            shape,
            logits.shape(),
            axis
        );
    }
    sample_categories(logits, axis, shape.to_vec(), key)
}

/// The Gumbel-max trick: argmax over `axis` of logits plus Gumbel noise.
fn sample_categories(
    logits: &Array,
    axis: usize,
    shape: Vec<usize>,
    key: Option<&Array>,
) -> Result<Array> {
    let offset = axis + shape.len() + 1 - logits.ndim();
    let mut noise_shape = shape;
    noise_shape.insert(offset, logits.shape()[axis]);
    let scores = add(&gumbel(&noise_shape, Dtype::Float32, key)?, logits)?;
    Array::from_op(Op::Random(RandomOp::Argmax { axis: offset }), vec![scores])
}

/// A random permutation of `0..n` (uint32).
pub fn permutation(n: usize, key: Option<&Array>) -> Result<Array> {
    let order = bits(&[n], 4, key)?;
    let range = arange(0.0, n as f64, 1.0, Dtype::Uint32)?;
    Array::from_op(Op::Random(RandomOp::Permute { axis: 0 }), vec![order, range])
}

/// `x` with its entries along `axis` randomly shuffled.
pub fn permutation_of(x: &Array, axis: isize, key: Option<&Array>) -> Result<Array> {
    let axis = normalize_axis("permutation", axis, x.ndim())?;
    let order = bits(&[x.shape()[axis]], 4, key)?;
    Array::from_op(Op::Random(RandomOp::Permute { axis }), vec![order, x.clone()])
}
