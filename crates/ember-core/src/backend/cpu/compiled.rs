//! Fused programs on the CPU: lowers an `Op::Compiled` program onto the interpreter of
//! `ember_cpu::fused` (half-precision results get explicit rounding instructions, casts
//! between float types of one class become roundings or nothing) and runs it over the
//! inputs broadcast to the output shape.

use super::layout::broadcast;
use crate::array::{alloc_output, typed_mut, ReadyArray};
use crate::buffer::Buffer;
use crate::dtype::Dtype;
use crate::op::{Op, OutSpec};
use crate::transforms::compile::{binary_fn, unary_fn, FusedProgram};
use crate::{bail, Result};
use ember_cpu::fused::{self, Func1, Input, Instr, Output, Program};

/// Computes the outputs of `program` (all of the broadcast shape of the inputs).
pub fn eval(
    program: &FusedProgram,
    inputs: &[ReadyArray],
    outputs: &[OutSpec],
) -> Result<Vec<ReadyArray>> {
    let shape = outputs.first().map(|o| o.0.clone()).unwrap_or_default();
    let lowered = lower(program)?;
    let views: Vec<ReadyArray> = inputs.iter().map(|x| broadcast(x, &shape)).collect();
    let ins = views.iter().map(input).collect::<Result<Vec<_>>>()?;
    let n: usize = shape.iter().product();
    let mut buffers =
        outputs.iter().map(|(_, d)| alloc_output(*d, n)).collect::<Result<Vec<Buffer>>>()?;
    {
        let mut outs = buffers
            .iter_mut()
            .zip(outputs)
            .map(|(b, (_, d))| output(b, *d, n))
            .collect::<Result<Vec<_>>>()?;
        if program.computes_in_f64() {
            fused::run::<f64>(&lowered, &ins, &mut outs, &shape);
        } else {
            fused::run::<f32>(&lowered, &ins, &mut outs, &shape);
        }
    }
    Ok(buffers
        .into_iter()
        .zip(outputs)
        .map(|(b, (s, d))| ReadyArray::contiguous(b, s.clone(), *d))
        .collect())
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

fn output(buffer: &mut Buffer, dtype: Dtype, n: usize) -> Result<Output<'_>> {
    Ok(match dtype {
        Dtype::Float32 => Output::F32(&mut typed_mut(buffer)[..n]),
        Dtype::Float64 => Output::F64(&mut typed_mut(buffer)[..n]),
        Dtype::Float16 => Output::F16(&mut typed_mut(buffer)[..n]),
        Dtype::Bfloat16 => Output::Bf16(&mut typed_mut(buffer)[..n]),
        Dtype::Bool => Output::Bool(&mut typed_mut(buffer)[..n]),
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
