//! Fusion: connected regions of elementwise nodes with one output shape become one
//! `Op::Compiled` node whose program runs the region in a single pass over memory.
//!
//! Nodes are visited in topological order; a fusable node joins the region of one of its
//! inputs when the shapes and numeric classes agree and joining cannot create a cycle (no
//! other input of the node depends on that region through a node outside it). The
//! contracted graph is then ordered again, since a region runs where its last member was.

use super::graph::{Graph, Node, Value};
use super::program::{fusable, Class, FusedInstr, FusedProgram};
use crate::op::Op;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

struct Region {
    class: Class,
    shape: Vec<usize>,
    members: Vec<usize>,
}

/// The graph with its elementwise regions fused.
pub(super) fn fuse(graph: Graph) -> Graph {
    let (regions, region_of) = find_regions(&graph);
    // Units of the contracted graph: multi-member regions and single nodes.
    let mut unit_of = vec![usize::MAX; graph.nodes.len()];
    let mut units: Vec<Vec<usize>> = Vec::new();
    for k in 0..graph.nodes.len() {
        if unit_of[k] != usize::MAX {
            continue;
        }
        let members = match region_of[k] {
            Some(r) if regions[r].members.len() > 1 => regions[r].members.clone(),
            _ => vec![k],
        };
        for &m in &members {
            unit_of[m] = units.len();
        }
        units.push(members);
    }
    let order = unit_order(&graph, &units, &unit_of);
    let mut used_outside = vec![false; graph.nodes.len()];
    for (k, node) in graph.nodes.iter().enumerate() {
        for v in &node.inputs {
            if let Value::Node(p, _) = *v {
                used_outside[p] |= unit_of[p] != unit_of[k];
            }
        }
    }
    for v in &graph.outputs {
        if let Value::Node(p, _) = *v {
            used_outside[p] = true;
        }
    }
    let mut map: HashMap<Value, Value> = HashMap::new();
    let mut nodes: Vec<Node> = Vec::new();
    for u in order {
        let members = &units[u];
        let rename = |v: &Value, map: &HashMap<Value, Value>| map.get(v).copied().unwrap_or(*v);
        if let [k] = members[..] {
            let node = &graph.nodes[k];
            let inputs = node.inputs.iter().map(|v| rename(v, &map)).collect();
            for i in 0..node.specs.len() {
                map.insert(Value::Node(k, i), Value::Node(nodes.len(), i));
            }
            nodes.push(Node { op: node.op.clone(), inputs, specs: node.specs.clone() });
            continue;
        }
        let (program, inputs, exported) = program_of(&graph, members, &used_outside);
        let specs = exported.iter().map(|&k| graph.nodes[k].specs[0].clone()).collect();
        for (j, &k) in exported.iter().enumerate() {
            map.insert(Value::Node(k, 0), Value::Node(nodes.len(), j));
        }
        let inputs = inputs.iter().map(|v| rename(v, &map)).collect();
        nodes.push(Node { op: Op::Compiled(Arc::new(program)), inputs, specs });
    }
    let outputs = graph.outputs.iter().map(|v| map.get(v).copied().unwrap_or(*v)).collect();
    Graph { inputs: graph.inputs, consts: graph.consts, nodes, outputs }
}

/// Assigns fusable nodes to regions (see the module doc).
fn find_regions(graph: &Graph) -> (Vec<Region>, Vec<Option<usize>>) {
    let mut regions: Vec<Region> = Vec::new();
    let mut region_of: Vec<Option<usize>> = vec![None; graph.nodes.len()];
    // The regions each node depends on, through any path.
    let mut depends: Vec<BTreeSet<usize>> = Vec::with_capacity(graph.nodes.len());
    for (k, node) in graph.nodes.iter().enumerate() {
        let mut deps = BTreeSet::new();
        for v in &node.inputs {
            if let Value::Node(p, _) = *v {
                deps.extend(depends[p].iter().copied());
            }
        }
        let dtypes: Vec<_> = node.inputs.iter().map(|&v| graph.spec(v).1).collect();
        let class = match node.specs.as_slice() {
            [(_, out)] => fusable(&node.op, &dtypes, *out),
            _ => None,
        };
        if let Some(class) = class {
            let shape = &node.specs[0].0;
            // The input regions this node may join, merged into one when that is acyclic.
            let mut chosen: Vec<usize> = Vec::new();
            let mut joined = class;
            for v in &node.inputs {
                let Value::Node(p, _) = *v else { continue };
                let Some(r) = region_of[p] else { continue };
                let Some(c) = regions[r].class.join(joined) else { continue };
                if chosen.contains(&r) || regions[r].shape != *shape {
                    continue;
                }
                chosen.push(r);
                if acyclic(graph, &regions, &region_of, &depends, &chosen, node) {
                    joined = c;
                } else {
                    chosen.pop();
                }
            }
            let r = match chosen.split_first() {
                Some((&r, rest)) => {
                    for &other in rest {
                        merge(&mut regions, &mut region_of, &mut depends, &mut deps, r, other);
                    }
                    regions[r].class = joined;
                    regions[r].members.push(k);
                    r
                }
                None => {
                    regions.push(Region { class, shape: shape.clone(), members: vec![k] });
                    regions.len() - 1
                }
            };
            region_of[k] = Some(r);
            deps.insert(r);
        }
        depends.push(deps);
    }
    (regions, region_of)
}

/// Whether the regions `set` together with `node` form one acyclic unit: no input of a
/// member (or of `node`) from outside the set depends on a region of the set.
fn acyclic(
    graph: &Graph,
    regions: &[Region],
    region_of: &[Option<usize>],
    depends: &[BTreeSet<usize>],
    set: &[usize],
    node: &Node,
) -> bool {
    let members = set.iter().flat_map(|&r| regions[r].members.iter().map(|&m| &graph.nodes[m]));
    members.chain([node]).all(|n| {
        n.inputs.iter().all(|v| match *v {
            Value::Node(p, _) => {
                region_of[p].is_some_and(|r| set.contains(&r))
                    || set.iter().all(|r| !depends[p].contains(r))
            }
            _ => true,
        })
    })
}

/// Moves the members of region `from` into region `into`, updating every reference.
fn merge(
    regions: &mut [Region],
    region_of: &mut [Option<usize>],
    depends: &mut [BTreeSet<usize>],
    deps: &mut BTreeSet<usize>,
    into: usize,
    from: usize,
) {
    let moved = std::mem::take(&mut regions[from].members);
    regions[into].members.extend(moved);
    regions[into].members.sort_unstable();
    for r in region_of.iter_mut().filter(|r| **r == Some(from)) {
        *r = Some(into);
    }
    for d in depends.iter_mut().chain([deps]) {
        if d.remove(&from) {
            d.insert(into);
        }
    }
}

/// The units in an order where every unit comes after those it reads (depth first, in the
/// original order otherwise).
fn unit_order(graph: &Graph, units: &[Vec<usize>], unit_of: &[usize]) -> Vec<usize> {
    let mut state = vec![0u8; units.len()]; // 0 new, 1 expanded, 2 emitted
    let mut order = Vec::with_capacity(units.len());
    for start in 0..units.len() {
        let mut stack = vec![start];
        while let Some(&u) = stack.last() {
            if state[u] == 2 {
                stack.pop();
                continue;
            }
            if state[u] == 1 {
                state[u] = 2;
                order.push(u);
                stack.pop();
                continue;
            }
            state[u] = 1;
            for &k in &units[u] {
                for v in &graph.nodes[k].inputs {
                    if let Value::Node(p, _) = *v {
                        let q = unit_of[p];
                        if q != u && state[q] == 0 {
                            stack.push(q);
                        }
                    }
                }
            }
        }
    }
    order
}

/// The program of a region, the region's external inputs, and the members it exports.
fn program_of(
    graph: &Graph,
    members: &[usize],
    used_outside: &[bool],
) -> (FusedProgram, Vec<Value>, Vec<usize>) {
    let mut inputs: Vec<Value> = Vec::new();
    let mut index: HashMap<Value, usize> = HashMap::new();
    for &k in members {
        for v in &graph.nodes[k].inputs {
            let internal = matches!(*v, Value::Node(p, _) if members.contains(&p));
            if !internal && !index.contains_key(v) {
                index.insert(*v, inputs.len());
                inputs.push(*v);
            }
        }
    }
    let n_in = inputs.len();
    let mut instrs = Vec::with_capacity(members.len());
    for (i, &k) in members.iter().enumerate() {
        let node = &graph.nodes[k];
        let args = node.inputs.iter().map(|v| index[v]).collect();
        instrs.push(FusedInstr { op: node.op.clone(), args, dtype: node.specs[0].1 });
        index.insert(Value::Node(k, 0), n_in + i);
    }
    let exported: Vec<usize> = members.iter().copied().filter(|&k| used_outside[k]).collect();
    let program = FusedProgram {
        inputs: inputs.iter().map(|&v| graph.spec(v).1).collect(),
        instrs,
        outputs: exported.iter().map(|&k| index[&Value::Node(k, 0)]).collect(),
    };
    (program, inputs, exported)
}
