//! Key/value caches for autoregressive decoding, as mlx-lm's `KVCache` and
//! `RotatingKVCache`.
//!
//! Keys and values live in preallocated (B, heads, capacity, dim) arrays written with
//! `slice_update`: the cache drops its handle before the write is evaluated, so the update
//! happens in place and a decode step costs only the new token's bytes. Capacity grows in
//! steps of 256 positions. With a maximum size, the cache keeps the first `KEEP` positions
//! (attention sinks) and overwrites the oldest of the rest, so memory stays bounded.
//!
//! Keys and values are kept in the dtype the model asks for: float16, as llama.cpp keeps them
//! by default, halves the cache, and attention reads float16 rows as they are.

use crate::error::{Error, Result};
use ember_core::ops::{self, Slice};
use ember_core::{Array, Dtype};

/// Positions the capacity grows by.
const STEP: usize = 256;
/// Positions a bounded cache never evicts (the first tokens, as mlx-lm keeps 4).
const KEEP: usize = 4;

/// The cached keys and values of one attention layer.
pub struct KvCache {
    keys: Option<Array>,
    values: Option<Array>,
    /// Tokens seen so far (the position of the next one).
    offset: usize,
    /// Positions written in the arrays (`offset`, or less once a bounded cache is full).
    len: usize,
    /// Capacity to allocate on first use, when known (prompt + tokens to generate).
    reserve: usize,
    max_size: Option<usize>,
    /// In a full bounded cache, the slot holding the oldest evictable position.
    next_slot: usize,
    /// What keys and values are kept in.
    dtype: Dtype,
}

/// Positions `range` of axis 2.
fn positions(x: &Array, start: usize, stop: usize) -> Result<Array> {
    Ok(ops::slice_axis(x, 2, Slice::range(start as isize, stop as isize))?)
}

/// `old` (its first `len` positions) extended with zeros to `capacity` positions shaped like
/// `like`.
fn grow(old: Option<Array>, len: usize, like: &Array, capacity: usize) -> Result<Array> {
    let s = like.shape();
    let zeros = |n: usize| ops::zeros(&[s[0], s[1], n, s[3]], like.dtype());
    Ok(match old {
        None => zeros(capacity)?,
        Some(old) => ops::concatenate(&[&positions(&old, 0, len)?, &zeros(capacity - len)?], 2)?,
    })
}

impl KvCache {
    /// An empty cache keeping keys and values in `dtype`; `max_size` bounds how many positions
    /// it keeps.
    pub fn new(max_size: Option<usize>, dtype: Dtype) -> KvCache {
        KvCache {
            keys: None,
            values: None,
            offset: 0,
            len: 0,
            reserve: 0,
            max_size,
            next_slot: 0,
            dtype,
        }
    }

    /// Allocates room for `positions` at the first update (no growth steps later).
    pub fn reserve(&mut self, positions: usize) {
        self.reserve = positions;
    }

    /// Tokens seen so far: the RoPE offset of the next token.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Keeps only the first `n` positions (a later update writes over the rest), as mlx-lm's
    /// `trim_prompt_cache`. Returns false, changing nothing, when positions have been evicted
    /// from a bounded cache (its slots no longer follow token order) or `n` exceeds the
    /// positions seen.
    pub fn trim_to(&mut self, n: usize) -> bool {
        if self.offset != self.len || n > self.len {
            return false;
        }
        self.offset = n;
        self.len = n;
        true
    }

    /// Appends `k` and `v` (B, heads, L, dim) and returns every cached key and value
    /// (including these) for attention.
    pub fn update_and_fetch(&mut self, k: &Array, v: &Array) -> Result<(Array, Array)> {
        if k.ndim() != 4 || v.ndim() != 4 || k.shape()[2] != v.shape()[2] {
            return Err(Error::Generate(format!(
                "cache update needs keys and values (B, H, L, D) of one length, got {:?} and {:?}",
                k.shape(),
                v.shape()
            )));
        }
        let (k, v) = (&k.astype(self.dtype)?, &v.astype(self.dtype)?);
        let l = k.shape()[2];
        let fits = self.max_size.is_none_or(|m| self.len + l <= m);
        let out = if fits {
            self.append(k, v)?
        } else if l == 1 && self.len == self.max_size.unwrap_or(0) {
            self.overwrite_oldest(k, v)?
        } else {
            self.append_and_trim(k, v)?
        };
        self.offset += l;
        Ok(out)
    }

    /// Writes at positions `len..len + l`, growing the arrays when needed.
    fn append(&mut self, k: &Array, v: &Array) -> Result<(Array, Array)> {
        let l = k.shape()[2];
        let needed = self.len + l;
        let capacity = self.keys.as_ref().map_or(0, |a| a.shape()[2]);
        if needed > capacity {
            let mut grown = needed.next_multiple_of(STEP).max(self.reserve);
            if let Some(m) = self.max_size {
                grown = grown.min(m);
            }
            self.keys = Some(grow(self.keys.take(), self.len, k, grown)?);
            self.values = Some(grow(self.values.take(), self.len, v, grown)?);
        }
        self.write(k, v, self.len)?;
        self.len = needed;
        if self.max_size == Some(self.len) {
            self.next_slot = KEEP.min(self.len);
        }
        Ok((positions(self.keys()?, 0, self.len)?, positions(self.values()?, 0, self.len)?))
    }

    /// Writes `k`, `v` at position `at`, in place once evaluated (the old handles are
    /// dropped here so the arrays can be donated to the update).
    fn write(&mut self, k: &Array, v: &Array, at: usize) -> Result<()> {
        let region =
            [Slice::FULL, Slice::FULL, Slice::range(at as isize, (at + k.shape()[2]) as isize)];
        let keys = self.keys.take().ok_or_else(|| Error::Generate("cache not allocated".into()))?;
        self.keys = Some(ops::slice_update(&keys, k, &region)?);
        let values =
            self.values.take().ok_or_else(|| Error::Generate("cache not allocated".into()))?;
        self.values = Some(ops::slice_update(&values, v, &region)?);
        Ok(())
    }

    fn keys(&self) -> Result<&Array> {
        self.keys.as_ref().ok_or_else(|| Error::Generate("cache not allocated".into()))
    }

    fn values(&self) -> Result<&Array> {
        self.values.as_ref().ok_or_else(|| Error::Generate("cache not allocated".into()))
    }

    /// A full bounded cache, one new token: it replaces the oldest evictable position. The
    /// order of cached positions does not matter to a single query.
    fn overwrite_oldest(&mut self, k: &Array, v: &Array) -> Result<(Array, Array)> {
        let m = self.len;
        self.write(k, v, self.next_slot)?;
        self.next_slot = if self.next_slot + 1 >= m { KEEP.min(m - 1) } else { self.next_slot + 1 };
        Ok((self.keys()?.clone(), self.values()?.clone()))
    }

    /// The cached positions in time order (kept prefix, then oldest to newest).
    fn in_order(&self, x: &Array) -> Result<Array> {
        let full = self.max_size == Some(self.len) && self.next_slot > KEEP.min(self.len);
        if !full {
            return positions(x, 0, self.len);
        }
        let parts = [
            positions(x, 0, KEEP)?,
            positions(x, self.next_slot, self.len)?,
            positions(x, KEEP, self.next_slot)?,
        ];
        Ok(ops::concatenate(&[&parts[0], &parts[1], &parts[2]], 2)?)
    }

    /// Several new tokens that overflow a bounded cache: attention sees every cached position
    /// plus the new ones (in time order, so a causal mask stays right); the cache then keeps
    /// the first `KEEP` and the most recent positions.
    fn append_and_trim(&mut self, k: &Array, v: &Array) -> Result<(Array, Array)> {
        let m = self.max_size.unwrap_or(usize::MAX);
        let (keys, values) = match (&self.keys, &self.values) {
            (Some(ck), Some(cv)) => (
                ops::concatenate(&[&self.in_order(ck)?, k], 2)?,
                ops::concatenate(&[&self.in_order(cv)?, v], 2)?,
            ),
            _ => (k.clone(), v.clone()),
        };
        let total = keys.shape()[2];
        let keep = KEEP.min(m);
        let trim = |x: &Array| -> Result<Array> {
            Ok(ops::concatenate(
                &[&positions(x, 0, keep)?, &positions(x, total - (m - keep), total)?],
                2,
            )?)
        };
        self.keys = Some(ops::contiguous(&trim(&keys)?)?);
        self.values = Some(ops::contiguous(&trim(&values)?)?);
        self.len = m;
        self.next_slot = keep.min(m - 1);
        Ok((keys, values))
    }
}
