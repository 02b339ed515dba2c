//! Random ops on the CPU: Threefry bits from a key, and the argmax and argsort-shuffle steps
//! of the samplers, over contiguous copies of their inputs.

use super::layout::to_contiguous;
use crate::array::{new_output, ReadyArray};
use crate::op::OutSpec;
use crate::ops::random::RandomOp;
use crate::{dispatch, Result};
use ember_cpu::random::{argmax_axis, argsort_bits, fill_words};
use ember_cpu::strided::map1;

pub fn eval(op: &RandomOp, inputs: &[ReadyArray], _outputs: &[OutSpec]) -> Result<Vec<ReadyArray>> {
    let out = match op {
        RandomOp::Bits { shape, width } => bits(&inputs[0], shape, *width)?,
        RandomOp::Argmax { axis } => argmax(&inputs[0], *axis)?,
        RandomOp::Permute { axis } => permute(&inputs[0], &inputs[1], *axis)?,
    };
    Ok(vec![out])
}

fn bits(key: &ReadyArray, shape: &[usize], width: usize) -> Result<ReadyArray> {
    let mut words = vec![0u32; key.size()];
    map1(&mut words, key.view::<u32>(), |v| v);
    let keys: Vec<[u32; 2]> = words.chunks_exact(2).map(|k| [k[0], k[1]]).collect();
    match width {
        4 => new_output::<u32>(shape, |out| {
            per_key(&keys, out, fill_words);
            Ok(())
        }),
        2 => new_output::<u16>(shape, |out| {
            per_key(&keys, out, |k, o| narrow_words(k, o, |w, i| (w >> (16 * (i % 2))) as u16));
            Ok(())
        }),
        _ => new_output::<u8>(shape, |out| {
            per_key(&keys, out, |k, o| narrow_words(k, o, |w, i| (w >> (8 * (i % 4))) as u8));
            Ok(())
        }),
    }
}

/// Fills `out` in equal blocks, one per key (a batch of keys from vmap; usually one key).
fn per_key<T>(keys: &[[u32; 2]], out: &mut [T], fill: impl Fn([u32; 2], &mut [T])) {
    let block = out.len() / keys.len().max(1);
    if block > 0 {
        for (k, o) in keys.iter().zip(out.chunks_mut(block)) {
            fill(*k, o);
        }
    }
}

/// Fills elements narrower than a word from the little-endian bytes of the key's words, as
/// MLX lays them out.
fn narrow_words<T>(key: [u32; 2], out: &mut [T], part: fn(u32, usize) -> T) {
    let per_word = 4 / std::mem::size_of::<T>();
    let mut words = vec![0u32; out.len().div_ceil(per_word)];
    fill_words(key, &mut words);
    for (i, o) in out.iter_mut().enumerate() {
        *o = part(words[i / per_word], i);
    }
}

/// Sizes of the axes before, at and after `axis`.
fn split_at_axis(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    (shape[..axis].iter().product(), shape[axis], shape[axis + 1..].iter().product())
}

fn argmax(x: &ReadyArray, axis: usize) -> Result<ReadyArray> {
    let x = to_contiguous(x)?;
    let (_, n, inner) = split_at_axis(&x.shape, axis);
    let mut shape = x.shape.clone();
    shape.remove(axis);
    dispatch!(x.dtype, T => new_output::<u32>(&shape, |out| {
        argmax_axis(&x.elements::<T>()[x.offset..x.offset + x.size()], n, inner, out);
        Ok(())
    }))
}

fn permute(order: &ReadyArray, x: &ReadyArray, axis: usize) -> Result<ReadyArray> {
    let order = to_contiguous(order)?;
    let perm = argsort_bits(&order.elements::<u32>()[order.offset..order.offset + order.size()]);
    let x = to_contiguous(x)?;
    let (outer, n, inner) = split_at_axis(&x.shape, axis);
    dispatch!(x.dtype, T => new_output::<T>(&x.shape, |out| {
        let src = &x.elements::<T>()[x.offset..x.offset + x.size()];
        for o in 0..outer {
            for (i, &p) in perm.iter().enumerate() {
                let from = (o * n + p as usize) * inner;
                out[(o * n + i) * inner..][..inner].copy_from_slice(&src[from..from + inner]);
            }
        }
        Ok(())
    }))
}
