//! The graph of a traced function, as compile keeps it: nodes over the function's inputs
//! and captured constants, simplified (constant folding, constant merging, no-op removal,
//! common-subexpression elimination, dead-node removal) and replayed lazily on new inputs.

use super::shapeless;
use crate::array::{Array, OpNode};
use crate::dtype::Dtype;
use crate::op::{Op, OutSpec};
use crate::ops::layout::LayoutOp;
use crate::Result;
use std::collections::HashMap;
use std::sync::Arc;

/// Where a node input comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Value {
    Input(usize),
    Const(usize),
    /// Output `.1` of node `.0`.
    Node(usize, usize),
}

pub(super) struct Node {
    pub(super) op: Op,
    pub(super) inputs: Vec<Value>,
    pub(super) specs: Vec<OutSpec>,
}

/// A captured function: nodes in topological order.
pub(super) struct Graph {
    pub(super) inputs: Vec<OutSpec>,
    pub(super) consts: Vec<Array>,
    pub(super) nodes: Vec<Node>,
    pub(super) outputs: Vec<Value>,
}

impl Graph {
    /// The graph of the ops recorded while a function ran on `inputs` (fresh nodes) and
    /// returned `outputs`. Ops that do not depend on the inputs are constant folding's
    /// business: their results are captured as constants and computed once, here.
    pub(super) fn capture(
        inputs: &[Array],
        outputs: &[Array],
        ops: &[Arc<OpNode>],
    ) -> Result<Graph> {
        let mut values: HashMap<usize, Value> =
            inputs.iter().enumerate().map(|(i, x)| (x.id(), Value::Input(i))).collect();
        let mut consts: Vec<Array> = Vec::new();
        let mut const_ids: HashMap<usize, usize> = HashMap::new();
        let mut value_of = |x: &Array, values: &HashMap<usize, Value>| {
            values.get(&x.id()).copied().unwrap_or_else(|| {
                let next = consts.len();
                let c = *const_ids.entry(x.id()).or_insert(next);
                if c == next {
                    consts.push(x.clone());
                }
                Value::Const(c)
            })
        };
        let mut nodes = Vec::new();
        for op in ops {
            // Ops on constants only (and the fresh input copies, made from the caller's
            // arrays) are not part of the graph.
            if !op.inputs.iter().any(|x| values.contains_key(&x.id())) {
                continue;
            }
            let node_inputs = op.inputs.iter().map(|x| value_of(x, &values)).collect();
            for i in 0..op.specs.len() {
                values.insert(op.output_id(i), Value::Node(nodes.len(), i));
            }
            nodes.push(Node { op: op.op.clone(), inputs: node_inputs, specs: op.specs.clone() });
        }
        let outputs = outputs.iter().map(|y| value_of(y, &values)).collect();
        let refs: Vec<&Array> = consts.iter().collect();
        crate::eval::eval(&refs)?;
        let inputs = inputs.iter().map(|x| (x.shape().to_vec(), x.dtype())).collect();
        Ok(Graph { inputs, consts, nodes, outputs })
    }

    /// The shape and dtype of a value.
    pub(super) fn spec(&self, v: Value) -> OutSpec {
        match v {
            Value::Input(i) => self.inputs[i].clone(),
            Value::Const(c) => (self.consts[c].shape().to_vec(), self.consts[c].dtype()),
            Value::Node(k, i) => self.nodes[k].specs[i].clone(),
        }
    }

    /// Merges equal one-element constants, removes no-op nodes, merges nodes applying the
    /// same op to the same inputs, and drops nodes no output needs.
    pub(super) fn simplify(&mut self) -> Result<()> {
        let const_map = self.merge_constants()?;
        let mut map: HashMap<Value, Value> = HashMap::new();
        let mut seen: HashMap<(Op, Vec<Value>), usize> = HashMap::new();
        let old = std::mem::take(&mut self.nodes);
        let remap = |v: Value, map: &HashMap<Value, Value>| match v {
            Value::Const(c) => Value::Const(const_map[c]),
            v => map.get(&v).copied().unwrap_or(v),
        };
        for (k, node) in old.into_iter().enumerate() {
            let inputs: Vec<Value> = node.inputs.iter().map(|&v| remap(v, &map)).collect();
            if let Some(&input) = inputs.first() {
                if self.is_noop(&node, input) {
                    map.insert(Value::Node(k, 0), input);
                    continue;
                }
            }
            let key = (node.op.clone(), inputs.clone());
            let target = *seen.entry(key).or_insert(self.nodes.len());
            if target == self.nodes.len() {
                self.nodes.push(Node { inputs, ..node });
            }
            for i in 0..self.nodes[target].specs.len() {
                map.insert(Value::Node(k, i), Value::Node(target, i));
            }
        }
        self.outputs = self.outputs.iter().map(|&v| remap(v, &map)).collect();
        self.remove_dead();
        Ok(())
    }

    /// A canonical index for each constant: constants holding one value (scalars and
    /// broadcast scalars) with the same shape, dtype and bytes share one.
    fn merge_constants(&self) -> Result<Vec<usize>> {
        let mut by_value: HashMap<(Vec<usize>, Dtype, Vec<u8>), usize> = HashMap::new();
        self.consts
            .iter()
            .enumerate()
            .map(|(c, x)| {
                let data = x.ready()?;
                let uniform = data.shape.iter().zip(&data.strides).all(|(&n, &s)| n <= 1 || s == 0);
                if !uniform || data.size() == 0 {
                    return Ok(c);
                }
                let size = data.dtype.size();
                let bytes = data.buffer.bytes()[data.offset * size..][..size].to_vec();
                Ok(*by_value.entry((x.shape().to_vec(), x.dtype(), bytes)).or_insert(c))
            })
            .collect()
    }

    /// True when `node` returns its first input unchanged.
    fn is_noop(&self, node: &Node, input: Value) -> bool {
        let (shape, dtype) = self.spec(input);
        let same = node.specs.len() == 1 && node.specs[0] == (shape.clone(), dtype);
        same && match &node.op {
            Op::AsType(_) => true,
            Op::Layout(LayoutOp::Reshape(_) | LayoutOp::Broadcast(_)) => true,
            Op::Layout(LayoutOp::Transpose(perm)) => perm.iter().enumerate().all(|(i, &p)| i == p),
            _ => false,
        }
    }

    /// Drops the nodes and constants that no output depends on, renumbering the rest.
    fn remove_dead(&mut self) {
        let mut live = vec![false; self.nodes.len()];
        let mut const_live = vec![false; self.consts.len()];
        let mut mark = |v: Value, live: &mut Vec<bool>| match v {
            Value::Node(k, _) => live[k] = true,
            Value::Const(c) => const_live[c] = true,
            Value::Input(_) => {}
        };
        for &v in &self.outputs {
            mark(v, &mut live);
        }
        for k in (0..self.nodes.len()).rev() {
            if live[k] {
                for &v in &self.nodes[k].inputs {
                    mark(v, &mut live);
                }
            }
        }
        let node_index: Vec<usize> = renumber(&live);
        let const_index: Vec<usize> = renumber(&const_live);
        let rename = |v: Value| match v {
            Value::Node(k, i) => Value::Node(node_index[k], i),
            Value::Const(c) => Value::Const(const_index[c]),
            v => v,
        };
        let nodes = std::mem::take(&mut self.nodes);
        self.nodes = nodes
            .into_iter()
            .zip(&live)
            .filter(|(_, &l)| l)
            .map(|(n, _)| Node { inputs: n.inputs.iter().map(|&v| rename(v)).collect(), ..n })
            .collect();
        let consts = std::mem::take(&mut self.consts);
        self.consts =
            consts.into_iter().zip(&const_live).filter(|(_, &l)| l).map(|(c, _)| c).collect();
        self.outputs = self.outputs.iter().map(|&v| rename(v)).collect();
    }

    /// Records the graph's ops on `args` (lazily) and returns its outputs.
    pub(super) fn replay(&self, args: &[Array]) -> Result<Vec<Array>> {
        let mut outs: Vec<Vec<Array>> = Vec::with_capacity(self.nodes.len());
        let get = |v: Value, outs: &[Vec<Array>]| match v {
            Value::Input(i) => args[i].clone(),
            Value::Const(c) => self.consts[c].clone(),
            Value::Node(k, i) => outs[k][i].clone(),
        };
        for node in &self.nodes {
            let inputs: Vec<Array> = node.inputs.iter().map(|&v| get(v, &outs)).collect();
            // A shapeless replay on a new shape re-derives the shapes that ops carry.
            let op = match (&node.op, inputs.first()) {
                (Op::Layout(l), Some(x)) if x.shape() != self.spec(node.inputs[0]).0 => {
                    let traced = self.spec(node.inputs[0]).0;
                    Op::Layout(shapeless::rederive(l, &traced, &node.specs[0].0, x.shape())?)
                }
                (op, _) => op.clone(),
            };
            outs.push(Array::from_op_multi(op, inputs)?);
        }
        Ok(self.outputs.iter().map(|&v| get(v, &outs)).collect())
    }
}

/// New indices of the kept entries (`usize::MAX` for dropped ones).
fn renumber(keep: &[bool]) -> Vec<usize> {
    let mut next = 0;
    keep.iter()
        .map(|&k| {
            if k {
                next += 1;
                next - 1
            } else {
                usize::MAX
            }
        })
        .collect()
}
