//! Fused programs on the CPU: lowers an `Op::Compiled` program onto the interpreter of
//! `ember_cpu::fused` (half-precision results get explicit rounding instructions, casts
//! between float types of one class become roundings or nothing) and runs it over the
//! inputs broadcast to the output shape, writing over donated inputs where it can.

use super::layout::broadcast;
use crate::array::{alloc_output, ReadyArray};
use crate::dtype::Dtype;
use crate::op::{Op, OutSpec};
use crate::transforms::compile::{binary_fn, unary_fn, FusedProgram};
use crate::{bail, Result};
use ember_cpu::fused::{self, Func1, Input, Instr, Output, Program};

/// Computes the outputs of `program` (all of the broadcast shape of the inputs). An output
/// overwrites a donated input of its dtype and shape when there is one, as elementwise ops
/// do, instead of allocating.
pub fn eval(
    program: &FusedProgram,
    inputs: &mut [ReadyArray],
    outputs: &[OutSpec],
) -> Result<Vec<ReadyArray>> {
    let shape = outputs.first().map(|o| o.0.clone()).unwrap_or_default();
    let lowered = lower(program)?;
    let donors = donors(inputs, outputs);
    let donor_of = |i: usize| donors.iter().position(|&d| d == Some(i));
    // A donated input is read through the output that overwrites it.
    let views: Vec<Option<ReadyArray>> = (0..inputs.len())
        .map(|i| donor_of(i).is_none().then(|| broadcast(&inputs[i], &shape)))
        .collect();
    let ins = views
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Some(v) => input(v),
            None => Ok(Input::Output(donor_of(i).expect("a donated input"))),
        })
        .collect::<Result<Vec<_>>>()?;
    let n: usize = shape.iter().product();
    let mut fresh = outputs
        .iter()
        .zip(&donors)
        .map(|((s, d), donor)| match donor {
            Some(_) => Ok(None),
            None => Ok(Some(ReadyArray::contiguous(alloc_output(*d, n)?, s.clone(), *d))),
        })
        .collect::<Result<Vec<Option<ReadyArray>>>>()?;
    {
        let mut donated: Vec<Option<&mut ReadyArray>> = inputs.iter_mut().map(Some).collect();
        let mut outs = Vec::with_capacity(outputs.len());
        for (f, donor) in fresh.iter_mut().zip(&donors) {
            let target = match (f, donor) {
                (Some(f), _) => f,
                (None, Some(i)) => donated[*i].take().expect("one output per donor"),
                (None, None) => unreachable!("an output without a donor is allocated"),
            };
            outs.push(output(target, &shape)?.expect("a fresh or donatable output"));
        }
        if program.computes_in_f64() {
            fused::run::<f64>(&lowered, &ins, &mut outs, &shape);
        } else {
            fused::run::<f32>(&lowered, &ins, &mut outs, &shape);
        }
    }
    Ok(fresh
        .into_iter()
        .zip(&donors)
        .map(|(f, donor)| f.unwrap_or_else(|| inputs[donor.expect("donated")].clone()))
        .collect())
}

/// For each output, the input it may overwrite: one of its dtype and shape that no one else
/// holds (each input given to one output at most).
fn donors(inputs: &mut [ReadyArray], outputs: &[OutSpec]) -> Vec<Option<usize>> {
    let mut taken = vec![false; inputs.len()];
    outputs
        .iter()
        .map(|(shape, dtype)| {
            let i = (0..inputs.len()).find(|&i| {
                !taken[i]
                    && inputs[i].dtype == *dtype
                    && matches!(output(&mut inputs[i], shape), Ok(Some(_)))
            })?;
            taken[i] = true;
            Some(i)
        })
        .collect()
}

fn input(x: &ReadyArray) -> Result<Input<'_>> {
    Ok(match x.dtype {
        Dtype::Float32 => Input::F32(x.view()),
        Dtype::Float64 => Input::F64(x.view()),
        Dtype::Float16 => Input::F16(x.view()),
        Dtype::Bfloat16 => Input::Bf16(x.view()),
        Dtype::Bool => Input::Bool(x.view()),
        d => bail!("compiled", "fused programs do not take {} inputs", d),
    })
}

/// `x`'s elements as an output of `shape`, when no one else holds them.
fn output<'a>(x: &'a mut ReadyArray, shape: &[usize]) -> Result<Option<Output<'a>>> {
    Ok(match x.dtype {
        Dtype::Float32 => x.donatable(shape).map(Output::F32),
        Dtype::Float64 => x.donatable(shape).map(Output::F64),
        Dtype::Float16 => x.donatable(shape).map(Output::F16),
        Dtype::Bfloat16 => x.donatable(shape).map(Output::Bf16),
        Dtype::Bool => x.donatable(shape).map(Output::Bool),
        d => bail!("compiled", "fused programs do not produce {} outputs", d),
    })
}

/// The rounding that makes an f32 value a value of `dtype`, if it needs one.
fn rounding(dtype: Dtype) -> Option<Func1> {
    match dtype {
        Dtype::Float16 => Some(Func1::ToF16),
        Dtype::Bfloat16 => Some(Func1::ToBf16),
        _ => None,
    }
}

/// The interpreter program of a fused program.
fn lower(p: &FusedProgram) -> Result<Program> {
    let n_in = p.inputs.len();
    // The interpreter value holding each program value.
    let mut value: Vec<usize> = (0..n_in).collect();
    let mut instrs: Vec<Instr> = Vec::new();
    for ins in &p.instrs {
        let args: Vec<usize> = ins.args.iter().map(|&a| value[a]).collect();
        let from = p.dtype(ins.args[0]);
        let lowered = match &ins.op {
            Op::Unary(u) => unary_fn(*u).map(|f| Instr::Unary(f, args[0])),
            Op::Binary(b) => binary_fn(*b).map(|f| Instr::Binary(f, args[0], args[1])),
            Op::Select => Some(Instr::Select(args[0], args[1], args[2])),
            Op::AsType(to) if *to == Dtype::Bool && from != Dtype::Bool => {
                Some(Instr::Unary(Func1::ToBool, args[0]))
            }
            // Bools are 0 and 1 in every float type and widening is exact: the value is
            // reused (copied when it is an input, as outputs must be instruction results).
            Op::AsType(to) if from == Dtype::Bool || rounding(*to).is_none() => {
                if args[0] >= n_in {
                    value.push(args[0]);
                    continue;
                }
                Some(Instr::Unary(Func1::Copy, args[0]))
            }
            Op::AsType(to) => rounding(*to).map(|f| Instr::Unary(f, args[0])),
            op => bail!("compiled", "{} cannot be fused", op.name()),
        };
        let Some(lowered) = lowered else { bail!("compiled", "{} cannot be fused", ins.op.name()) };
        instrs.push(lowered);
        let rounded =
            matches!(ins.op, Op::Unary(_) | Op::Binary(_)).then(|| rounding(ins.dtype)).flatten();
        if let Some(f) = rounded {
            instrs.push(Instr::Unary(f, n_in + instrs.len() - 1));
        }
        value.push(n_in + instrs.len() - 1);
    }
    let outputs = p.outputs.iter().map(|&v| value[v]).collect();
    Ok(Program { inputs: n_in, instrs, outputs })
}
