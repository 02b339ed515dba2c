//! Trees of arrays (arrays, lists, string-keyed maps), so that a model's nested parameters
//! pass through a transform as one argument. Names of leaves are dotted paths, as MLX's
//! `tree_flatten` writes them: `layers.0.weight`.

use crate::array::Array;
use crate::{bail, Result};
use std::collections::BTreeMap;

/// A tree whose leaves are arrays.
#[derive(Clone, Debug)]
pub enum Tree {
    Array(Array),
    List(Vec<Tree>),
    Dict(BTreeMap<String, Tree>),
}

impl From<Array> for Tree {
    fn from(a: Array) -> Tree {
        Tree::Array(a)
    }
}

impl From<&Array> for Tree {
    fn from(a: &Array) -> Tree {
        Tree::Array(a.clone())
    }
}

impl From<Vec<Array>> for Tree {
    fn from(v: Vec<Array>) -> Tree {
        Tree::List(v.into_iter().map(Tree::Array).collect())
    }
}

impl Tree {
    /// The array of a leaf, or an error naming what the tree is instead.
    pub fn as_array(&self) -> Result<&Array> {
        match self {
            Tree::Array(a) => Ok(a),
            Tree::List(v) => bail!("tree", "expected an array, got a list of {}", v.len()),
            Tree::Dict(_) => bail!("tree", "expected an array, got a dict"),
        }
    }

    /// The leaves in order (lists by index, dicts by key).
    pub fn leaves(&self) -> Vec<Array> {
        self.flatten().into_iter().map(|(_, a)| a).collect()
    }

    /// `(dotted name, leaf)` pairs in order, as MLX's `tree_flatten`.
    pub fn flatten(&self) -> Vec<(String, Array)> {
        let mut out = Vec::new();
        let mut stack = vec![(String::new(), self)];
        while let Some((prefix, tree)) = stack.pop() {
            let join =
                |k: &str| if prefix.is_empty() { k.to_string() } else { format!("{prefix}.{k}") };
            match tree {
                Tree::Array(a) => out.push((prefix, a.clone())),
                Tree::List(v) => {
                    stack.extend(v.iter().enumerate().rev().map(|(i, t)| (join(&i.to_string()), t)))
                }
                Tree::Dict(m) => stack.extend(m.iter().rev().map(|(k, t)| (join(k), t))),
            }
        }
        out
    }

    /// Rebuilds a tree from `(dotted name, leaf)` pairs, as MLX's `tree_unflatten`: a level
    /// whose keys are all integers becomes a list (its indices must be 0..n).
    pub fn unflatten(pairs: &[(String, Array)]) -> Result<Tree> {
        if let [(name, a)] = pairs {
            if name.is_empty() {
                return Ok(Tree::Array(a.clone()));
            }
        }
        let mut groups: BTreeMap<String, Vec<(String, Array)>> = BTreeMap::new();
        for (name, a) in pairs {
            if name.is_empty() {
                bail!("tree_unflatten", "an empty name next to other leaves");
            }
            let (head, rest) = name.split_once('.').unwrap_or((name, ""));
            groups.entry(head.to_string()).or_default().push((rest.to_string(), a.clone()));
        }
        let mut children = BTreeMap::new();
        for (k, v) in groups {
            children.insert(k, Tree::unflatten(&v)?);
        }
        let indices: Option<Vec<usize>> = children.keys().map(|k| k.parse().ok()).collect();
        match indices {
            Some(mut idx) => {
                idx.sort_unstable();
                if idx.iter().enumerate().any(|(i, &k)| i != k) {
                    bail!("tree_unflatten", "list indices {:?} are not 0..{}", idx, idx.len());
                }
                let mut by_index: Vec<(usize, Tree)> =
                    children.into_iter().map(|(k, t)| (k.parse().unwrap_or(0), t)).collect();
                by_index.sort_by_key(|(i, _)| *i);
                Ok(Tree::List(by_index.into_iter().map(|(_, t)| t).collect()))
            }
            None => Ok(Tree::Dict(children)),
        }
    }

    /// The same structure with each leaf replaced by `f(leaf)`, as MLX's `tree_map`.
    pub fn map(&self, mut f: impl FnMut(&Array) -> Result<Array>) -> Result<Tree> {
        let leaves = self.leaves().iter().map(&mut f).collect::<Result<Vec<_>>>()?;
        self.with_leaves(leaves)
    }

    /// The same structure with `f` applied to the leaves of `self` and `other` pairwise (an
    /// optimizer's update of parameters with their gradients).
    pub fn zip_map(
        &self,
        other: &Tree,
        mut f: impl FnMut(&Array, &Array) -> Result<Array>,
    ) -> Result<Tree> {
        let (a, b) = (self.flatten(), other.flatten());
        if a.len() != b.len() || a.iter().zip(&b).any(|((x, _), (y, _))| x != y) {
            bail!("tree_map", "trees differ in structure ({} and {} leaves)", a.len(), b.len());
        }
        let leaves =
            a.iter().zip(&b).map(|((_, x), (_, y))| f(x, y)).collect::<Result<Vec<_>>>()?;
        self.with_leaves(leaves)
    }

    /// The same structure with the given leaves, in `leaves()` order.
    pub fn with_leaves(&self, leaves: Vec<Array>) -> Result<Tree> {
        let names = self.flatten();
        if names.len() != leaves.len() {
            bail!("tree", "{} leaves given for a tree of {}", leaves.len(), names.len());
        }
        let mut it = leaves.into_iter();
        Ok(self.rebuild(&mut it))
    }

    fn rebuild(&self, it: &mut impl Iterator<Item = Array>) -> Tree {
        match self {
            Tree::Array(a) => Tree::Array(it.next().unwrap_or_else(|| a.clone())),
            Tree::List(v) => Tree::List(v.iter().map(|t| t.rebuild(it)).collect()),
            Tree::Dict(m) => {
                Tree::Dict(m.iter().map(|(k, t)| (k.clone(), t.rebuild(it))).collect())
            }
        }
    }
}
