//! Shapeless replay of the ops that carry a target shape (`reshape`, `broadcast_to`): their
//! shape was fixed when the function was traced, so replaying them on inputs of another
//! shape re-derives it from how the traced op related its input and output shapes.
//!
//! A reshape is read as groups of axes: kept axes (the same extent on both sides), removed
//! or inserted size-1 axes, merged axes (several input axes become one) and split axes. On a
//! new input, kept axes follow the input's extent and merged axes its product, which covers
//! `flatten`, `ravel`, `expand_dims`, `squeeze` and reshapes such as MLX's shapeless test
//! `x.reshape(x.shape[0] * x.shape[1], -1)`. A split (or other many-to-many group) cannot be
//! re-derived, as the trace does not say which of its extents was meant to vary: it
//! replays only while its input axes keep their traced extents, and fails clearly otherwise.
//! `broadcast_to` keeps the axes it did not broadcast (they follow the input) and the
//! traced extents of the others, as MLX's broadcast does on a shapeless replay.

use crate::ops::layout::LayoutOp;
use crate::{bail, Result};

/// How one group of input axes maps onto output axes in a traced reshape.
#[derive(Debug, PartialEq, Eq)]
enum Group {
    /// One axis of the same extent on both sides.
    Keep,
    /// A size-1 input axis that the reshape drops.
    Remove,
    /// A size-1 output axis that the reshape inserts.
    Insert,
    /// `n` input axes become one output axis.
    Merge(usize),
    /// `n` input axes become `m` output axes in another way.
    Split(usize, usize),
}

/// `op` (applied when traced to an input of shape `traced_in`, giving `traced_out`) with its
/// target shape re-derived for an input of shape `input`.
pub(super) fn rederive(
    op: &LayoutOp,
    traced_in: &[usize],
    traced_out: &[usize],
    input: &[usize],
) -> Result<LayoutOp> {
    Ok(match op {
        LayoutOp::Reshape(_) => LayoutOp::Reshape(reshape(traced_in, traced_out, input)?),
        LayoutOp::Broadcast(_) => LayoutOp::Broadcast(broadcast(traced_in, traced_out, input)?),
        op => op.clone(),
    })
}

/// The groups of a reshape from `from` to `to`, or `None` when either holds a zero extent
/// (every grouping then fits).
fn groups(from: &[usize], to: &[usize]) -> Option<Vec<Group>> {
    if from.contains(&0) || to.contains(&0) {
        return None;
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < from.len() || j < to.len() {
        let (a, b) = (from.get(i).copied(), to.get(j).copied());
        if a.is_some() && a == b {
            out.push(Group::Keep);
            (i, j) = (i + 1, j + 1);
        } else if a == Some(1) {
            out.push(Group::Remove);
            i += 1;
        } else if b == Some(1) {
            out.push(Group::Insert);
            j += 1;
        } else {
            // Grow the side with the smaller product until both match (equal element counts
            // make this end with both products equal).
            let (i0, j0) = (i, j);
            let (mut p, mut q) = (from[i], to[j]);
            (i, j) = (i + 1, j + 1);
            while p != q {
                if p < q {
                    p *= from[i];
                    i += 1;
                } else {
                    q *= to[j];
                    j += 1;
                }
            }
            out.push(if j - j0 == 1 { Group::Merge(i - i0) } else { Group::Split(i - i0, j - j0) });
        }
    }
    Some(out)
}

fn reshape(traced_in: &[usize], traced_out: &[usize], input: &[usize]) -> Result<Vec<usize>> {
    let fail = || {
        Err(crate::Error::op(
            "compile",
            format!(
                "a reshape traced from {traced_in:?} to {traced_out:?} cannot be replayed on an \
                 input of shape {input:?}: shapeless compile re-derives reshapes that keep, \
                 merge, insert or remove axes, and splits only of unchanged axes"
            ),
        ))
    };
    let Some(groups) = groups(traced_in, traced_out) else {
        return if input == traced_in { Ok(traced_out.to_vec()) } else { fail() };
    };
    if input.len() != traced_in.len() {
        return fail();
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::with_capacity(traced_out.len());
    for g in groups {
        match g {
            Group::Keep => {
                out.push(input[i]);
                (i, j) = (i + 1, j + 1);
            }
            Group::Remove if input[i] == 1 => i += 1,
            Group::Remove => return fail(),
            Group::Insert => {
                out.push(1);
                j += 1;
            }
            Group::Merge(n) => {
                out.push(input[i..i + n].iter().product());
                (i, j) = (i + n, j + 1);
            }
            Group::Split(n, m) if input[i..i + n] == traced_in[i..i + n] => {
                out.extend_from_slice(&traced_out[j..j + m]);
                (i, j) = (i + n, j + m);
            }
            Group::Split(..) => return fail(),
        }
    }
    Ok(out)
}

fn broadcast(traced_in: &[usize], traced_out: &[usize], input: &[usize]) -> Result<Vec<usize>> {
    if input.len() != traced_in.len() {
        bail!("compile", "broadcast_to traced on rank {} replayed on {:?}", traced_in.len(), input);
    }
    let lead = traced_out.len() - traced_in.len();
    let mut out = traced_out[..lead].to_vec();
    for ((&t_in, &t_out), &n) in traced_in.iter().zip(&traced_out[lead..]).zip(input) {
        // Axes the traced op did not broadcast follow the input.
        out.push(if t_in == t_out { n } else { t_out });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reshapes_split_into_groups() {
        use Group::*;
        assert_eq!(groups(&[2, 3, 4], &[6, 4]), Some(vec![Merge(2), Keep]));
        assert_eq!(
            groups(&[1, 3, 4], &[3, 1, 4, 1]),
            Some(vec![Remove, Keep, Insert, Keep, Insert])
        );
        assert_eq!(groups(&[12], &[3, 4]), Some(vec![Split(1, 2)]));
        assert_eq!(groups(&[4, 6], &[3, 8]), Some(vec![Split(2, 2)]));
        assert_eq!(groups(&[0, 3], &[3, 0]), None);
    }
}
