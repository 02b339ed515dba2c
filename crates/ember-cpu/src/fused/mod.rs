//! The fused-program interpreter: runs a small register program of elementwise instructions
//! over L1-sized tiles of the output, so a chain of elementwise ops reads its inputs and writes
//! its outputs once instead of once per op.
//!
//! A [`Program`] is in SSA form: values `0..inputs` are the inputs, instruction `i` defines
//! value `inputs + i`. Every value is computed in one type `F` (f32 for f32/f16/bf16/bool
//! data, f64 for f64): bools are 0 and 1, and half results are rounded by explicit
//! [`Func1::ToF16`]/[`Func1::ToBf16`] instructions, so results match op-by-op evaluation.
//! At run time each input is classified once: uniform (a scalar operand), contiguous in `F`
//! (read in place), or anything else (gathered and converted into a register per tile; an
//! input whose donated buffer an output overwrites is read this way too, before the tile is
//! written). An output of type `F` is written by its step directly, or, when the outputs are
//! too large to stay cached, copied from its register with streaming stores.
//! Registers are assigned by liveness, an instruction's register never aliases its operands,
//! and each instruction is one tight loop over the tile that LLVM vectorises (compiled for
//! AVX-512 or AVX2+FMA when the CPU has them). Tiles run in parallel above `PARALLEL_THRESHOLD`.
//! Known chains around a transcendental (GELU's tanh form, see `patterns`) are one step each,
//! computed in registers with the same roundings.

use crate::scalar::num_like::FloatMath;
use crate::scalar::{cast, Float, Scalar};
use crate::stream;
use crate::strided::{Rows, View, PARALLEL_THRESHOLD};
use crate::vmath;
use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};
use rayon::prelude::*;

mod patterns;

/// Elementwise functions of one value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Func1 {
    Abs,
    Neg,
    Sign,
    Square,
    Exp,
    Expm1,
    Log,
    Log1p,
    Log2,
    Log10,
    Sqrt,
    Rsqrt,
    Recip,
    Sin,
    Cos,
    Tan,
    Asin,
    Acos,
    Atan,
    Sinh,
    Cosh,
    Tanh,
    Asinh,
    Acosh,
    Atanh,
    Sigmoid,
    Erf,
    Erfinv,
    Floor,
    Ceil,
    RoundEven,
    /// Predicates and bool conversions give 1 or 0.
    IsNan,
    IsInf,
    IsFinite,
    IsPosInf,
    IsNegInf,
    Not,
    ToBool,
    /// Rounds to the precision of a half type (the value stays in `F`).
    ToF16,
    ToBf16,
    /// The value unchanged.
    Copy,
}

/// Elementwise functions of two values (comparisons and logic give 1 or 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Func2 {
    Add,
    Sub,
    Mul,
    Div,
    FloorDiv,
    Rem,
    Pow,
    Max,
    Min,
    Atan2,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
}

/// One instruction; operands are value indices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Instr {
    Unary(Func1, usize),
    Binary(Func2, usize, usize),
    /// `c != 0 ? a : b` for operands `(c, a, b)`.
    Select(usize, usize, usize),
}

/// An elementwise program over `inputs` values, returning the values in `outputs` (which
/// name instruction results, not inputs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    pub inputs: usize,
    pub instrs: Vec<Instr>,
    pub outputs: Vec<usize>,
}

/// A program input: a typed view over the loop shape (broadcast inputs have zero strides).
#[derive(Clone, Copy)]
pub enum Input<'a> {
    F32(View<'a, f32>),
    F64(View<'a, f64>),
    F16(View<'a, f16>),
    Bf16(View<'a, bf16>),
    Bool(View<'a, bool>),
    /// The current contents of output `k`: an input whose (donated) buffer that output
    /// overwrites. Each tile reads it before the tile is written.
    Output(usize),
}

/// `$body` with `$v` bound to the view of a view input, else `$other`.
macro_rules! with_view {
    ($x:expr, $v:ident => $body:expr, $other:expr) => {
        match $x {
            Input::F32($v) => $body,
            Input::F64($v) => $body,
            Input::F16($v) => $body,
            Input::Bf16($v) => $body,
            Input::Bool($v) => $body,
            Input::Output(_) => $other,
        }
    };
}

/// A program output: a contiguous slice over the loop shape.
pub enum Output<'a> {
    F32(&'a mut [f32]),
    F64(&'a mut [f64]),
    F16(&'a mut [f16]),
    Bf16(&'a mut [bf16]),
    Bool(&'a mut [bool]),
}

/// The compute types of fused programs.
pub trait Compute:
    Float
    + FloatMath
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
    + std::ops::Neg<Output = Self>
{
    /// The input's elements as one slice of `Self`, when it is contiguous and of this type.
    fn direct<'a>(input: &Input<'a>) -> Option<&'a [Self]>;
    /// The output's elements as `Self`, when it is of this type (written without a copy).
    fn native<'b>(out: &'b mut Output<'_>) -> Option<&'b mut [Self]>;
    /// Writes `src` into `out[start..]`, converting to the output's type.
    fn store(src: &[Self], out: &mut Output<'_>, start: usize);
    /// Rounds every value of `src` to half precision, into `dst`.
    fn round_half(dst: &mut [Self], src: &[Self], bf: bool);
    fn exp_v<const FMA: bool>(self) -> Self;
    fn tanh_v<const FMA: bool>(self) -> Self;
    fn sigmoid_v<const FMA: bool>(self) -> Self;
    fn log_v<const FMA: bool>(self) -> Self;
    fn erf_v<const FMA: bool>(self) -> Self;
}

impl Compute for f32 {
    fn direct<'a>(input: &Input<'a>) -> Option<&'a [f32]> {
        match input {
            Input::F32(v) => v.contiguous(),
            _ => None,
        }
    }
    fn native<'b>(out: &'b mut Output<'_>) -> Option<&'b mut [f32]> {
        match out {
            Output::F32(o) => Some(o),
            _ => None,
        }
    }
    fn store(src: &[f32], out: &mut Output<'_>, start: usize) {
        let n = src.len();
        match out {
            Output::F32(o) => o[start..start + n].copy_from_slice(src),
            Output::F16(o) => o[start..start + n].convert_from_f32_slice(src),
            Output::Bf16(o) => o[start..start + n].convert_from_f32_slice(src),
            Output::F64(o) => {
                o[start..start + n].iter_mut().zip(src).for_each(|(o, &s)| *o = s as f64)
            }
            Output::Bool(o) => {
                o[start..start + n].iter_mut().zip(src).for_each(|(o, &s)| *o = s != 0.0)
            }
        }
    }
    fn round_half(dst: &mut [f32], src: &[f32], bf: bool) {
        const CHUNK: usize = 256;
        for (d, s) in dst.chunks_mut(CHUNK).zip(src.chunks(CHUNK)) {
            if bf {
                let mut tmp = [bf16::ZERO; CHUNK];
                tmp[..s.len()].convert_from_f32_slice(s);
                tmp[..s.len()].convert_to_f32_slice(d);
            } else {
                let mut tmp = [f16::ZERO; CHUNK];
                tmp[..s.len()].convert_from_f32_slice(s);
                tmp[..s.len()].convert_to_f32_slice(d);
            }
        }
    }
    #[inline(always)]
    fn exp_v<const FMA: bool>(self) -> f32 {
        vmath::exp::<FMA>(self)
    }
    #[inline(always)]
    fn tanh_v<const FMA: bool>(self) -> f32 {
        vmath::tanh::<FMA>(self)
    }
    #[inline(always)]
    fn sigmoid_v<const FMA: bool>(self) -> f32 {
        vmath::sigmoid::<FMA>(self)
    }
    #[inline(always)]
    fn log_v<const FMA: bool>(self) -> f32 {
        vmath::log::<FMA>(self)
    }
    #[inline(always)]
    fn erf_v<const FMA: bool>(self) -> f32 {
        vmath::erf::<FMA>(self)
    }
}

impl Compute for f64 {
    fn direct<'a>(input: &Input<'a>) -> Option<&'a [f64]> {
        match input {
            Input::F64(v) => v.contiguous(),
            _ => None,
        }
    }
    fn native<'b>(out: &'b mut Output<'_>) -> Option<&'b mut [f64]> {
        match out {
            Output::F64(o) => Some(o),
            _ => None,
        }
    }
    fn store(src: &[f64], out: &mut Output<'_>, start: usize) {
        let n = src.len();
        match out {
            Output::F64(o) => o[start..start + n].copy_from_slice(src),
            Output::F32(o) => {
                o[start..start + n].iter_mut().zip(src).for_each(|(o, &s)| *o = s as f32)
            }
            Output::F16(o) => {
                o[start..start + n].iter_mut().zip(src).for_each(|(o, &s)| *o = f16::from_f64(s))
            }
            Output::Bf16(o) => {
                o[start..start + n].iter_mut().zip(src).for_each(|(o, &s)| *o = bf16::from_f64(s))
            }
            Output::Bool(o) => {
                o[start..start + n].iter_mut().zip(src).for_each(|(o, &s)| *o = s != 0.0)
            }
        }
    }
    fn round_half(dst: &mut [f64], src: &[f64], bf: bool) {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = if bf { bf16::from_f64(s).to_f64() } else { f16::from_f64(s).to_f64() };
        }
    }
    fn exp_v<const FMA: bool>(self) -> f64 {
        self.exp()
    }
    fn tanh_v<const FMA: bool>(self) -> f64 {
        self.tanh()
    }
    fn sigmoid_v<const FMA: bool>(self) -> f64 {
        1.0 / (1.0 + (-self).exp())
    }
    fn log_v<const FMA: bool>(self) -> f64 {
        self.ln()
    }
    fn erf_v<const FMA: bool>(self) -> f64 {
        FloatMath::erf(self)
    }
}

/// The value of an input whose elements are all one element (a scalar operand).
fn uniform<F: Scalar>(input: &Input<'_>) -> Option<F> {
    with_view!(input, v => v.is_uniform().then(|| cast(v.data[v.offset])), None)
}

/// Bytes per register (one tile of values): the few registers a program uses stay in L1.
const TILE_BYTES: usize = 4096;
/// Tiles per parallel task.
const TILES_PER_TASK: usize = 16;

/// Where an operand's values come from during one tile.
#[derive(Clone, Copy, Debug)]
enum Arg<F> {
    Reg(usize),
    /// Input `i` read in place.
    Direct(usize),
    Scalar(F),
}

/// A planned instruction: the op after peephole fusion, its register and operands.
#[derive(Clone, Copy, Debug)]
enum Op<F> {
    Unary(Func1),
    Binary(Func2),
    Select,
    /// `a * b + c`, rounded after the multiply as separate ops would be.
    MulAdd,
    /// `a * b * c`, rounded after the first multiply.
    MulMul,
    /// `(h a) (s + tanh(c (a + k a^3)))` for `[h, s, c, k]`: the tanh form of GELU, see
    /// [`patterns::fold_gelu_tanh`].
    GeluTanh([F; 4]),
}

/// `y * mul`, `y + add` or `y * mul + add` applied to a step's result `y`: later steps that
/// only scaled or shifted it by a scalar, folded in. Each op rounds as the separate step did.
#[derive(Clone, Copy, Debug)]
enum Affine<F> {
    Mul(F),
    Add(F),
    MulAdd(F, F),
}

/// Where a step writes its tile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dst {
    Reg(usize),
    /// Straight into output `k` (of the compute type, and read by no later step).
    Out(usize),
    /// Into output `k` likewise, by streaming stores straight from registers.
    Stream(usize),
}

#[derive(Clone, Copy, Debug)]
struct Step<F> {
    op: Op<F>,
    dst: Dst,
    args: [Arg<F>; 3],
    post: Option<Affine<F>>,
}

/// The program bound to one run's inputs and outputs: which inputs are gathered into which
/// register, the steps, and the register each output is stored from (none when a step
/// writes it directly).
struct Plan<F> {
    gathers: Vec<(usize, usize)>,
    steps: Vec<Step<F>>,
    outputs: Vec<Option<usize>>,
    registers: usize,
}

/// How a run's outputs leave: in place, or (too large to stay cached) by streaming stores
/// copied from their register tiles, and also, on AVX-512, by the steps that can write them
/// straight from registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Streaming {
    Off,
    Copied,
    Steps,
}

/// How value `v` is read, before register allocation.
#[derive(Clone, Copy)]
enum Source<F> {
    Scalar(F),
    Direct(usize),
    Gather(usize),
    Computed,
}

impl<F: Compute> Plan<F> {
    /// `native[k]` says whether output `k` is of type `F`.
    fn new(
        program: &Program,
        inputs: &[Input<'_>],
        native: &[bool],
        streaming: Streaming,
    ) -> Plan<F> {
        let n_in = program.inputs;
        let n_values = n_in + program.instrs.len();
        let mut source: Vec<Source<F>> = inputs
            .iter()
            .enumerate()
            .map(|(i, x)| {
                if let Some(v) = uniform(x) {
                    Source::Scalar(v)
                } else if F::direct(x).is_some() {
                    Source::Direct(i)
                } else {
                    Source::Gather(i)
                }
            })
            .collect();
        source.resize(n_values, Source::Computed);
        // Uses of each value, to find multiplies consumed only by one add.
        let mut uses = vec![0usize; n_values];
        for ins in &program.instrs {
            for a in operands(ins) {
                uses[a] += 1;
            }
        }
        for &o in &program.outputs {
            uses[o] += 1;
        }
        let mut ops: Vec<Option<(Op<F>, [usize; 3])>> = program
            .instrs
            .iter()
            .map(|ins| {
                Some(match *ins {
                    Instr::Unary(f, a) => (Op::Unary(f), [a, a, a]),
                    Instr::Binary(f, a, b) => (Op::Binary(f), [a, b, b]),
                    Instr::Select(c, a, b) => (Op::Select, [c, a, b]),
                })
            })
            .collect();
        patterns::fold_gelu_tanh(&mut ops, &source, &uses, n_in);
        // Peepholes on an operand that is the single use of an earlier result: a multiply
        // feeding an add or a multiply becomes one three-operand step; a scalar scale or
        // shift of any result becomes that result's step's epilogue, `(mul, add)`.
        let mut post: Vec<(Option<F>, Option<F>)> = vec![(None, None); ops.len()];
        for i in 0..ops.len() {
            let Some((op, [a, b, _])) = ops[i] else { continue };
            for (m, other) in [(a, b), (b, a)] {
                let Some(j) = m.checked_sub(n_in).filter(|_| uses[m] == 1) else { continue };
                let Some((inner, [x, y, _])) = ops[j] else { continue };
                let plain = matches!(post[j], (None, None));
                let fused = match (op, inner) {
                    (Op::Binary(Func2::Add), Op::Binary(Func2::Mul)) if plain => Op::MulAdd,
                    (Op::Binary(Func2::Mul), Op::Binary(Func2::Mul)) if plain => Op::MulMul,
                    _ => {
                        let Source::Scalar(c) = source[other] else { continue };
                        let one = F::one();
                        post[i] = match (op, post[j]) {
                            (Op::Binary(Func2::Mul), (None, None)) => (Some(c), None),
                            (Op::Binary(Func2::Add), (s, None)) => (s, Some(c)),
                            (Op::Binary(Func2::Sub), (s, None)) if m == a => (s, Some(-c)),
                            (Op::Binary(Func2::Sub), (None, None)) => (Some(-one), Some(c)),
                            _ => continue,
                        };
                        ops[i] = ops[j];
                        ops[j] = None;
                        break;
                    }
                };
                ops[i] = Some((fused, [x, y, other]));
                ops[j] = None;
                break;
            }
        }
        // Last step reading each value (outputs are read after the last step).
        let mut last = vec![0usize; n_values];
        for (i, op) in ops.iter().enumerate() {
            if let Some((_, args)) = op {
                args.iter().for_each(|&a| last[a] = i);
            }
        }
        for &o in &program.outputs {
            last[o] = usize::MAX;
        }
        let mut reg_of = vec![usize::MAX; n_values];
        let mut free: Vec<usize> = Vec::new();
        let mut registers = 0;
        let mut alloc = |free: &mut Vec<usize>| {
            free.pop().unwrap_or_else(|| {
                registers += 1;
                registers - 1
            })
        };
        let mut gathers = Vec::new();
        for (v, s) in source.iter().enumerate().take(n_in) {
            if let Source::Gather(i) = s {
                reg_of[v] = alloc(&mut free);
                gathers.push((*i, reg_of[v]));
            }
        }
        let arg = |v: usize, reg_of: &[usize]| match source[v] {
            Source::Scalar(x) => Arg::Scalar(x),
            Source::Direct(i) => Arg::Direct(i),
            _ => Arg::Reg(reg_of[v]),
        };
        // Values only read as one output of type `F`: their step writes that output (when
        // streaming, only a one-operand pattern step, whose result is still in registers).
        let mut out_of = vec![None; n_values];
        for (k, &o) in program.outputs.iter().enumerate() {
            if native[k] && uses[o] == 1 {
                out_of[o] = Some(k);
            }
        }
        let mut steps = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            let Some((op, args)) = *op else { continue };
            let post = match post[i] {
                (None, None) => None,
                (Some(mul), None) => Some(Affine::Mul(mul)),
                (None, Some(add)) => Some(Affine::Add(add)),
                (Some(mul), Some(add)) => Some(Affine::MulAdd(mul, add)),
            };
            let v = n_in + i;
            let streams = streaming == Streaming::Steps
                && matches!(op, Op::GeluTanh(_))
                && post.is_none()
                && !matches!(source[args[0]], Source::Scalar(_));
            let dst = match out_of[v] {
                Some(k) if streaming == Streaming::Off => Dst::Out(k),
                Some(k) if streams => Dst::Stream(k),
                _ => {
                    out_of[v] = None;
                    reg_of[v] = alloc(&mut free);
                    Dst::Reg(reg_of[v])
                }
            };
            steps.push(Step { op, dst, args: args.map(|a| arg(a, &reg_of)), post });
            let mut dead: Vec<usize> = args.to_vec();
            dead.sort_unstable();
            dead.dedup();
            for a in dead {
                if last[a] == i && reg_of[a] != usize::MAX {
                    free.push(reg_of[a]);
                }
            }
            if uses[v] == 0 {
                free.push(reg_of[v]); // computed but unused
            }
        }
        let outputs = program
            .outputs
            .iter()
            .map(|&o| {
                assert!(o >= n_in, "a fused program's outputs must be instruction results");
                out_of[o].is_none().then_some(reg_of[o])
            })
            .collect();
        Plan { gathers, steps, outputs, registers }
    }
}

fn operands(ins: &Instr) -> Vec<usize> {
    match *ins {
        Instr::Unary(_, a) => vec![a],
        Instr::Binary(_, a, b) => vec![a, b],
        Instr::Select(c, a, b) => vec![c, a, b],
    }
}

/// Runs `program` over `len` elements (the row-major loop shape `shape` of every input and
/// output view). Panics if the operand counts do not match the program or an
/// [`Input::Output`] names no output (caller bugs).
pub fn run<F: Compute>(
    program: &Program,
    inputs: &[Input<'_>],
    outputs: &mut [Output<'_>],
    shape: &[usize],
) {
    run_on::<F>(Simd::detect(), program, inputs, outputs, shape)
}

/// [`run`] with loops compiled for `simd` (which the CPU must support).
fn run_on<F: Compute>(
    simd: Simd,
    program: &Program,
    inputs: &[Input<'_>],
    outputs: &mut [Output<'_>],
    shape: &[usize],
) {
    assert_eq!(inputs.len(), program.inputs, "fused program input count");
    assert_eq!(outputs.len(), program.outputs.len(), "fused program output count");
    let len: usize = shape.iter().product();
    if len == 0 {
        return;
    }
    for x in inputs {
        if let Input::Output(k) = x {
            assert!(*k < outputs.len(), "fused program input reads a missing output");
        }
    }
    // Large outputs are streamed (from a register, or by the step computing them); others of
    // type `F` are written in place.
    let stream = outputs.iter().map(out_bytes).sum::<usize>() >= stream::STREAM_BYTES;
    let native: Vec<bool> = outputs.iter_mut().map(|o| F::native(o).is_some()).collect();
    let streaming = match (stream, simd) {
        (false, _) => Streaming::Off,
        #[cfg(target_arch = "x86_64")]
        (true, Simd::Avx512) => Streaming::Steps,
        (true, _) => Streaming::Copied,
    };
    let plan = Plan::<F>::new(program, inputs, &native, streaming);
    let rows: Vec<Option<Rows<1>>> = inputs.iter().map(rows_of).collect();
    let direct: Vec<Option<&[F]>> = inputs.iter().map(F::direct).collect();
    let ctx = Ctx { plan: &plan, inputs, rows: &rows, direct: &direct, stream };
    let tile = (TILE_BYTES / std::mem::size_of::<F>()).max(64);
    let task = tile * TILES_PER_TASK;
    let work = |start: usize, outs: &mut [Output<'_>]| {
        let n = outs.first().map_or(0, out_len);
        match simd {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the CPU supports AVX-512F/VL, AVX2 and FMA (`run_on`'s contract, from
            // `detect`), all that `run_range_avx512` requires; its body is safe code.
            Simd::Avx512 => unsafe { run_range_avx512(&ctx, start, n, tile, outs) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the CPU supports AVX2 and FMA (`run_on`'s contract, from `detect`),
            // all that `run_range_avx2` requires; its body is safe code.
            Simd::Avx2 => unsafe { run_range_avx2(&ctx, start, n, tile, outs) },
            Simd::Portable => run_range::<F, false, false>(&ctx, start, n, tile, outs),
        }
    };
    if len >= PARALLEL_THRESHOLD {
        let mut per_output: Vec<_> =
            outputs.iter_mut().map(|o| chunks(o, task).into_iter()).collect();
        let tasks: Vec<Vec<Output<'_>>> = (0..len.div_ceil(task))
            .map(|_| per_output.iter_mut().flat_map(|c| c.next()).collect())
            .collect();
        tasks.into_par_iter().enumerate().for_each(|(t, mut outs)| work(t * task, &mut outs));
    } else {
        let mut outs: Vec<Output<'_>> = outputs.iter_mut().map(reborrow).collect();
        work(0, &mut outs);
    }
}

fn out_len(o: &Output<'_>) -> usize {
    match o {
        Output::F32(s) => s.len(),
        Output::F64(s) => s.len(),
        Output::F16(s) => s.len(),
        Output::Bf16(s) => s.len(),
        Output::Bool(s) => s.len(),
    }
}

fn out_bytes(o: &Output<'_>) -> usize {
    match o {
        Output::F32(s) => std::mem::size_of_val(*s),
        Output::F64(s) => std::mem::size_of_val(*s),
        Output::F16(s) => std::mem::size_of_val(*s),
        Output::Bf16(s) => std::mem::size_of_val(*s),
        Output::Bool(s) => std::mem::size_of_val(*s),
    }
}

fn reborrow<'b>(o: &'b mut Output<'_>) -> Output<'b> {
    match o {
        Output::F32(s) => Output::F32(s),
        Output::F64(s) => Output::F64(s),
        Output::F16(s) => Output::F16(s),
        Output::Bf16(s) => Output::Bf16(s),
        Output::Bool(s) => Output::Bool(s),
    }
}

/// An output split into consecutive pieces of `n` elements.
fn chunks<'b>(o: &'b mut Output<'_>, n: usize) -> Vec<Output<'b>> {
    match o {
        Output::F32(s) => s.chunks_mut(n).map(Output::F32).collect(),
        Output::F64(s) => s.chunks_mut(n).map(Output::F64).collect(),
        Output::F16(s) => s.chunks_mut(n).map(Output::F16).collect(),
        Output::Bf16(s) => s.chunks_mut(n).map(Output::Bf16).collect(),
        Output::Bool(s) => s.chunks_mut(n).map(Output::Bool).collect(),
    }
}

fn rows_of(x: &Input<'_>) -> Option<Rows<1>> {
    with_view!(x, v => Some(Rows::new(v.shape, [v.strides], [v.offset])), None)
}

/// What every tile of one run shares.
struct Ctx<'p, 'a, F> {
    plan: &'p Plan<F>,
    inputs: &'p [Input<'a>],
    rows: &'p [Option<Rows<1>>],
    direct: &'p [Option<&'a [F]>],
    /// Whether outputs of type `F` are written with streaming stores.
    stream: bool,
}

/// The instruction sets the interpreter's loops are compiled for.
#[derive(Clone, Copy, Debug)]
enum Simd {
    #[cfg(target_arch = "x86_64")]
    Avx512,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    Portable,
}

impl Simd {
    /// The widest set this CPU runs.
    fn detect() -> Simd {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx2") && has!("fma") {
                // 32 vector registers hold a polynomial's constants; 512-bit vectors halve
                // the instructions (Zen 4 runs them as two halves, at the same FLOP rate).
                if has!("avx512f") && has!("avx512vl") {
                    return Simd::Avx512;
                }
                return Simd::Avx2;
            }
        }
        Simd::Portable
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
unsafe fn run_range_avx512<F: Compute>(
    ctx: &Ctx<'_, '_, F>,
    start: usize,
    n: usize,
    tile: usize,
    outs: &mut [Output<'_>],
) {
    run_range::<F, true, true>(ctx, start, n, tile, outs)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn run_range_avx2<F: Compute>(
    ctx: &Ctx<'_, '_, F>,
    start: usize,
    n: usize,
    tile: usize,
    outs: &mut [Output<'_>],
) {
    run_range::<F, true, false>(ctx, start, n, tile, outs)
}

/// Runs elements `start..start + n` (the outputs hold exactly those), tile by tile; `WIDE`
/// (only for code compiled for AVX-512F) streams outputs with 512-bit stores.
#[inline(always)]
fn run_range<F: Compute, const FMA: bool, const WIDE: bool>(
    ctx: &Ctx<'_, '_, F>,
    start: usize,
    n: usize,
    tile: usize,
    outs: &mut [Output<'_>],
) {
    let mut regs: Vec<Vec<F>> = vec![vec![F::zero(); tile]; ctx.plan.registers];
    let mut t0 = 0;
    while t0 < n {
        let len = tile.min(n - t0);
        let first = start + t0;
        for &(i, r) in &ctx.plan.gathers {
            let dst = &mut regs[r][..len];
            match (&ctx.inputs[i], &ctx.rows[i]) {
                (Input::Output(k), _) => load(&outs[*k], t0, dst),
                (x, Some(rows)) => gather(x, rows, first, dst),
                (_, None) => unreachable!("every view input has rows"),
            }
        }
        for step in &ctx.plan.steps {
            match step.dst {
                Dst::Reg(r) => {
                    let mut dst = std::mem::take(&mut regs[r]);
                    run_step::<F, FMA>(ctx, step, &regs, first, &mut dst[..len]);
                    regs[r] = dst;
                }
                Dst::Out(k) => {
                    let out = F::native(&mut outs[k]).expect("planned for a native output");
                    run_step::<F, FMA>(ctx, step, &regs, first, &mut out[t0..t0 + len]);
                }
                Dst::Stream(k) => {
                    let out = F::native(&mut outs[k]).expect("planned for a native output");
                    let Op::GeluTanh(consts) = step.op else { unreachable!("planned to stream") };
                    let src = operand(ctx, step.args[0], &regs, first, len);
                    let Src::Slice(x) = src else { unreachable!("planned with a slice operand") };
                    assert!(WIDE, "streamed steps are planned for AVX-512 only");
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: `WIDE` only where the CPU has AVX-512F (`run_range_avx512`).
                    unsafe {
                        stream_gelu_avx512(consts, &mut out[t0..t0 + len], x)
                    }
                }
            }
        }
        for (out, r) in outs.iter_mut().zip(&ctx.plan.outputs) {
            let Some(r) = *r else { continue };
            let src = &regs[r][..len];
            match F::native(out) {
                // SAFETY: `WIDE` only where the CPU has AVX-512F (`run_range_avx512`).
                Some(o) if ctx.stream => unsafe {
                    stream::copy::<F, WIDE>(&mut o[t0..t0 + len], src)
                },
                _ => F::store(src, out, t0),
            }
        }
        t0 += len;
    }
    if ctx.stream {
        stream::fence();
    }
}

/// One step over the tile of elements `first..first + dst.len()`.
#[inline(always)]
fn run_step<F: Compute, const FMA: bool>(
    ctx: &Ctx<'_, '_, F>,
    step: &Step<F>,
    regs: &[Vec<F>],
    first: usize,
    dst: &mut [F],
) {
    let len = dst.len();
    let src = |k: usize| operand(ctx, step.args[k], regs, first, len);
    let (a, b, c) = (src(0), src(1), src(2));
    match step.post {
        None => exec::<F, FMA>(step.op, dst, a, b, c, |y| y),
        Some(Affine::Mul(m)) => exec::<F, FMA>(step.op, dst, a, b, c, |y| y * m),
        Some(Affine::Add(t)) => exec::<F, FMA>(step.op, dst, a, b, c, |y| y + t),
        Some(Affine::MulAdd(m, t)) => exec::<F, FMA>(step.op, dst, a, b, c, |y| y * m + t),
    }
}

/// An operand's values over the tile of `len` elements from `first`.
#[inline(always)]
fn operand<'r, F: Compute>(
    ctx: &Ctx<'_, 'r, F>,
    arg: Arg<F>,
    regs: &'r [Vec<F>],
    first: usize,
    len: usize,
) -> Src<'r, F> {
    match arg {
        Arg::Reg(r) => Src::Slice(&regs[r][..len]),
        Arg::Direct(i) => Src::Slice(&ctx.direct[i].unwrap_or_default()[first..first + len]),
        Arg::Scalar(v) => Src::Scalar(v),
    }
}

/// Elements `start..start + dst.len()` of an output's current contents, converted into `dst`.
fn load<F: Scalar>(out: &Output<'_>, start: usize, dst: &mut [F]) {
    fn typed<T: Scalar, F: Scalar>(src: &[T], dst: &mut [F]) {
        dst.iter_mut().zip(src).for_each(|(d, &s)| *d = cast(s));
    }
    let end = start + dst.len();
    match out {
        Output::F32(o) => typed(&o[start..end], dst),
        Output::F64(o) => typed(&o[start..end], dst),
        Output::F16(o) => typed(&o[start..end], dst),
        Output::Bf16(o) => typed(&o[start..end], dst),
        Output::Bool(o) => typed(&o[start..end], dst),
    }
}

/// Elements `first..first + dst.len()` of a strided input, converted into `dst`.
fn gather<F: Compute>(x: &Input<'_>, rows: &Rows<1>, first: usize, dst: &mut [F]) {
    fn typed<T: Scalar, F: Scalar>(data: &[T], rows: &Rows<1>, first: usize, dst: &mut [F]) {
        let inner = rows.inner_len;
        let [stride] = rows.inner_strides;
        let (mut row, mut col) = (first / inner, first % inner);
        let mut done = 0;
        while done < dst.len() {
            let take = (inner - col).min(dst.len() - done);
            let [base] = rows.offsets(row);
            let base = base + col as isize * stride;
            let out = &mut dst[done..done + take];
            if stride == 1 {
                let src = &data[base as usize..base as usize + take];
                out.iter_mut().zip(src).for_each(|(o, &s)| *o = cast(s));
            } else {
                for (k, o) in out.iter_mut().enumerate() {
                    *o = cast(data[(base + k as isize * stride) as usize]);
                }
            }
            done += take;
            row += 1;
            col = 0;
        }
    }
    with_view!(x, v => typed(v.data, rows, first, dst), unreachable!("not a view input"))
}

/// An operand during one tile.
#[derive(Clone, Copy)]
enum Src<'a, F> {
    Slice(&'a [F]),
    Scalar(F),
}

#[inline(always)]
fn map1<F: Copy>(d: &mut [F], a: Src<'_, F>, p: impl Fn(F) -> F, f: impl Fn(F) -> F) {
    let f = |x| p(f(x));
    match a {
        Src::Slice(x) => d.iter_mut().zip(x).for_each(|(d, &x)| *d = f(x)),
        Src::Scalar(v) => d.fill(f(v)),
    }
}

#[inline(always)]
fn map2<F: Copy>(
    d: &mut [F],
    a: Src<'_, F>,
    b: Src<'_, F>,
    p: impl Fn(F) -> F,
    f: impl Fn(F, F) -> F,
) {
    let f = |x, y| p(f(x, y));
    match (a, b) {
        (Src::Slice(x), Src::Slice(y)) => {
            d.iter_mut().zip(x).zip(y).for_each(|((d, &x), &y)| *d = f(x, y))
        }
        (Src::Slice(x), Src::Scalar(v)) => d.iter_mut().zip(x).for_each(|(d, &x)| *d = f(x, v)),
        (Src::Scalar(v), Src::Slice(y)) => d.iter_mut().zip(y).for_each(|(d, &y)| *d = f(v, y)),
        (Src::Scalar(u), Src::Scalar(v)) => d.fill(f(u, v)),
    }
}

#[inline(always)]
fn map3<F: Copy>(
    d: &mut [F],
    a: Src<'_, F>,
    b: Src<'_, F>,
    c: Src<'_, F>,
    p: impl Fn(F) -> F,
    f: impl Fn(F, F, F) -> F,
) {
    let f = |x, y, z| p(f(x, y, z));
    use Src::{Scalar as V, Slice as S};
    match (a, b, c) {
        (S(x), S(y), S(z)) => {
            d.iter_mut().zip(x).zip(y).zip(z).for_each(|(((d, &x), &y), &z)| *d = f(x, y, z))
        }
        (S(x), V(v), S(z)) => d.iter_mut().zip(x).zip(z).for_each(|((d, &x), &z)| *d = f(x, v, z)),
        (S(x), S(y), V(w)) => d.iter_mut().zip(x).zip(y).for_each(|((d, &x), &y)| *d = f(x, y, w)),
        (S(x), V(v), V(w)) => d.iter_mut().zip(x).for_each(|(d, &x)| *d = f(x, v, w)),
        (V(u), S(y), S(z)) => d.iter_mut().zip(y).zip(z).for_each(|((d, &y), &z)| *d = f(u, y, z)),
        (a, b, c) => {
            let at = |s: Src<'_, F>, i: usize| match s {
                S(x) => x[i],
                V(v) => v,
            };
            for (i, d) in d.iter_mut().enumerate() {
                *d = f(at(a, i), at(b, i), at(c, i));
            }
        }
    }
}

#[inline(always)]
fn flag<F: Scalar>(b: bool) -> F {
    if b {
        F::one()
    } else {
        F::zero()
    }
}

/// One instruction over one tile, each result passed through `p` (its epilogue).
#[inline(always)]
fn exec<F: Compute, const FMA: bool>(
    op: Op<F>,
    d: &mut [F],
    a: Src<'_, F>,
    b: Src<'_, F>,
    c: Src<'_, F>,
    p: impl Fn(F) -> F + Copy,
) {
    match op {
        Op::Unary(f) => unary::<F, FMA>(f, d, a, p),
        Op::Binary(f) => binary(f, d, a, b, p),
        Op::Select => map3(d, a, b, c, p, |c, x, y| if c != F::zero() { x } else { y }),
        Op::MulAdd => map3(d, a, b, c, p, |x, y, z| x * y + z),
        Op::MulMul => map3(d, a, b, c, p, |x, y, z| x * y * z),
        Op::GeluTanh(consts) => map1(d, a, p, |x| gelu_tanh::<F, FMA>(consts, x)),
    }
}

/// A streamed GELU step over one tile: a small function of its own, where each output line
/// stays in registers up to its streaming store (inlined into the interpreter's loop, the line
/// went through the stack and the stores stalled).
///
/// # Safety
/// The CPU supports AVX-512F/VL, AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
#[inline(never)]
unsafe fn stream_gelu_avx512<F: Compute>(consts: [F; 4], dst: &mut [F], x: &[F]) {
    // SAFETY: the CPU has AVX-512F (this function's contract).
    unsafe { stream::map::<F, true>(dst, x, |x| gelu_tanh::<F, true>(consts, x)) }
}

/// `(h x) (s + tanh(c (x + k x^3)))` for `[h, s, c, k]`, rounded op by op ([`Op::GeluTanh`]).
#[inline(always)]
fn gelu_tanh<F: Compute, const FMA: bool>([h, s, c, k]: [F; 4], x: F) -> F {
    let t = (c * (x + k * (x * x * x))).tanh_v::<FMA>();
    h * x * (s + t)
}

#[inline(always)]
fn unary<F: Compute, const FMA: bool>(f: Func1, d: &mut [F], a: Src<'_, F>, p: impl Fn(F) -> F) {
    use Func1::*;
    let one = F::one();
    match f {
        Abs => map1(d, a, &p, |x| x.abs()),
        Neg => map1(d, a, &p, |x| -x),
        Sign => map1(d, a, &p, Scalar::sign),
        Square => map1(d, a, &p, |x| x * x),
        Exp => map1(d, a, &p, F::exp_v::<FMA>),
        Expm1 => map1(d, a, &p, FloatMath::exp_m1),
        Log => map1(d, a, &p, F::log_v::<FMA>),
        Log1p => map1(d, a, &p, FloatMath::ln_1p),
        Log2 => map1(d, a, &p, FloatMath::log2),
        Log10 => map1(d, a, &p, FloatMath::log10),
        Sqrt => map1(d, a, &p, |x| x.sqrt()),
        Rsqrt => map1(d, a, &p, |x| one / x.sqrt()),
        Recip => map1(d, a, &p, |x| one / x),
        Sin => map1(d, a, &p, FloatMath::sin),
        Cos => map1(d, a, &p, FloatMath::cos),
        Tan => map1(d, a, &p, FloatMath::tan),
        Asin => map1(d, a, &p, FloatMath::asin),
        Acos => map1(d, a, &p, FloatMath::acos),
        Atan => map1(d, a, &p, FloatMath::atan),
        Sinh => map1(d, a, &p, FloatMath::sinh),
        Cosh => map1(d, a, &p, FloatMath::cosh),
        Tanh => map1(d, a, &p, F::tanh_v::<FMA>),
        Asinh => map1(d, a, &p, FloatMath::asinh),
        Acosh => map1(d, a, &p, FloatMath::acosh),
        Atanh => map1(d, a, &p, FloatMath::atanh),
        Sigmoid => map1(d, a, &p, F::sigmoid_v::<FMA>),
        Erf => map1(d, a, &p, F::erf_v::<FMA>),
        Erfinv => map1(d, a, &p, FloatMath::erfinv),
        Floor => map1(d, a, &p, FloatMath::floor),
        Ceil => map1(d, a, &p, FloatMath::ceil),
        RoundEven => map1(d, a, &p, FloatMath::round_ties_even),
        IsNan => map1(d, a, &p, |x| flag(x.is_nan())),
        IsInf => map1(d, a, &p, |x| flag(x.is_infinite())),
        IsFinite => map1(d, a, &p, |x| flag(x.is_finite())),
        IsPosInf => map1(d, a, &p, |x| flag(x == F::highest())),
        IsNegInf => map1(d, a, &p, |x| flag(x == F::lowest())),
        Not => map1(d, a, &p, |x| flag(x == F::zero())),
        ToBool => map1(d, a, &p, |x| flag(x != F::zero())),
        Copy => map1(d, a, &p, |x| x),
        ToF16 | ToBf16 => {
            match a {
                Src::Slice(x) => F::round_half(d, x, f == ToBf16),
                Src::Scalar(v) => {
                    d.fill(v);
                    let copy = d.to_vec();
                    F::round_half(d, &copy, f == ToBf16);
                }
            }
            d.iter_mut().for_each(|y| *y = p(*y));
        }
    }
}

#[inline(always)]
fn binary<F: Compute>(f: Func2, d: &mut [F], a: Src<'_, F>, b: Src<'_, F>, p: impl Fn(F) -> F) {
    use Func2::*;
    let zero = F::zero();
    match f {
        Add => map2(d, a, b, &p, |x, y| x + y),
        Sub => map2(d, a, b, &p, |x, y| x - y),
        Mul => map2(d, a, b, &p, |x, y| x * y),
        Div => map2(d, a, b, &p, |x, y| x / y),
        FloorDiv => map2(d, a, b, &p, Scalar::floor_div),
        Rem => map2(d, a, b, &p, Scalar::rem),
        // Small integer exponents as products: as fast as the multiplies they stand for.
        Pow => match b {
            Src::Scalar(e) if e == F::one() + F::one() => map1(d, a, &p, |x| x * x),
            Src::Scalar(e) if e == F::one() + F::one() + F::one() => map1(d, a, &p, |x| x * x * x),
            _ => map2(d, a, b, &p, Scalar::pow),
        },
        Max => map2(d, a, b, &p, Scalar::max_nan),
        Min => map2(d, a, b, &p, Scalar::min_nan),
        Atan2 => map2(d, a, b, &p, FloatMath::atan2),
        Eq => map2(d, a, b, &p, |x, y| flag(x == y)),
        Ne => map2(d, a, b, &p, |x, y| flag(x != y)),
        Lt => map2(d, a, b, &p, |x, y| flag(x < y)),
        Le => map2(d, a, b, &p, |x, y| flag(x <= y)),
        Gt => map2(d, a, b, &p, |x, y| flag(x > y)),
        Ge => map2(d, a, b, &p, |x, y| flag(x >= y)),
        And => map2(d, a, b, &p, |x, y| flag(x != zero && y != zero)),
        Or => map2(d, a, b, &p, |x, y| flag(x != zero || y != zero)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view<'a, T: Copy>(data: &'a [T], shape: &'a [usize], strides: &'a [isize]) -> View<'a, T> {
        View::new(data, shape, strides, 0)
    }

    #[test]
    fn gelu_like_chain_matches_scalar_code_over_many_tiles() {
        // y = 0.5 * x * (1 + tanh(0.79 * (x + 0.044 * x^3))), and x^3 as a second output.
        let n = 150_001; // parallel, with a ragged last tile
        let x: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin() * 4.0).collect();
        let consts = [0.5f32, 1.0, 0.79, 0.044, 3.0];
        let p = Program {
            inputs: 6,
            instrs: vec![
                Instr::Binary(Func2::Pow, 0, 5),   // 6: x^3
                Instr::Binary(Func2::Mul, 4, 6),   // 7
                Instr::Binary(Func2::Add, 0, 7),   // 8 (a multiply-add)
                Instr::Binary(Func2::Mul, 3, 8),   // 9
                Instr::Unary(Func1::Tanh, 9),      // 10
                Instr::Binary(Func2::Add, 2, 10),  // 11
                Instr::Binary(Func2::Mul, 1, 0),   // 12
                Instr::Binary(Func2::Mul, 12, 11), // 13
            ],
            outputs: vec![13, 6],
        };
        let shape = [n];
        let zero = [0isize];
        let mut inputs = vec![Input::F32(View::new(&x, &shape, &[1], 0))];
        for c in &consts {
            inputs.push(Input::F32(View::new(std::slice::from_ref(c), &shape, &zero, 0)));
        }
        // Every instruction set this CPU runs (the unsafe entry points of each).
        for simd in available_simd() {
            let (mut y, mut cube) = (vec![0f32; n], vec![0f32; n]);
            let outs = &mut [Output::F32(&mut y), Output::F32(&mut cube)];
            run_on::<f32>(simd, &p, &inputs, outs, &shape);
            for i in (0..n).step_by(97) {
                let v = x[i] as f64;
                let want = 0.5 * v * (1.0 + (0.79 * (v + 0.044 * v * v * v)).tanh());
                assert!(
                    (y[i] as f64 - want).abs() < 2e-6 * (1.0 + want.abs()),
                    "{simd:?} {i}: {} vs {want}",
                    y[i]
                );
                assert_eq!(cube[i], x[i] * x[i] * x[i]);
            }
        }
    }

    #[test]
    fn scalar_scales_and_shifts_fold_into_steps_without_changing_a_bit() {
        let consts = [2.0f32, 0.7, 0.25, 0.5, 3.0, 1.0];
        let p = Program {
            inputs: 7,
            instrs: vec![
                Instr::Binary(Func2::Mul, 0, 0),   // 7
                Instr::Binary(Func2::Add, 7, 0),   // 8: x * x + x
                Instr::Binary(Func2::Sub, 1, 8),   // 9: 2 - that, its epilogue
                Instr::Unary(Func1::Abs, 0),       // 10
                Instr::Unary(Func1::Sqrt, 10),     // 11
                Instr::Binary(Func2::Mul, 11, 2),  // 12
                Instr::Binary(Func2::Sub, 12, 3),  // 13: sqrt |x| * 0.7 - 0.25
                Instr::Binary(Func2::Mul, 0, 4),   // 14
                Instr::Binary(Func2::Mul, 14, 13), // 15: x * 0.5 * 13 in one step
                Instr::Binary(Func2::Mul, 0, 5),   // 16
                Instr::Unary(Func1::ToF16, 16),    // 17
                Instr::Binary(Func2::Add, 17, 6),  // 18: a rounding's epilogue
                Instr::Unary(Func1::ToF16, 18),    // 19
                Instr::Unary(Func1::Neg, 0),       // 20: an output, so not folded
                Instr::Binary(Func2::Sub, 20, 6),  // 21
            ],
            outputs: vec![9, 13, 15, 19, 20, 21],
        };
        let want = |x: f32| {
            let r = |v: f32| f16::from_f32(v).to_f32();
            let t = x.abs().sqrt() * 0.7 - 0.25;
            [2.0 - (x * x + x), t, x * 0.5 * t, r(r(x * 3.0) + 1.0), -x, -x - 1.0]
        };
        for n in [1000, 150_001] {
            let x: Vec<f32> = (0..n)
                .map(|i| match i % 5 {
                    0 => 0.0,
                    1 => -0.0,
                    _ => (i as f32 * 0.37).sin() * 4.0,
                })
                .collect();
            let shape = [n];
            let mut inputs = vec![Input::F32(View::new(&x, &shape, &[1], 0))];
            for c in &consts {
                inputs.push(Input::F32(View::new(std::slice::from_ref(c), &shape, &[0], 0)));
            }
            let plan = Plan::<f32>::new(&p, &inputs, &[true; 6], Streaming::Off);
            assert_eq!(plan.steps.len(), 9, "{:?}", plan.steps);
            for simd in available_simd() {
                let mut ys = vec![vec![0f32; n]; 6];
                let mut outs: Vec<Output<'_>> = ys.iter_mut().map(|y| Output::F32(y)).collect();
                run_on::<f32>(simd, &p, &inputs, &mut outs, &shape);
                for (i, &v) in x.iter().enumerate() {
                    for (k, w) in want(v).into_iter().enumerate() {
                        let got = ys[k][i];
                        assert_eq!(got.to_bits(), w.to_bits(), "{simd:?} {n} out {k} x={v}");
                    }
                }
            }
        }
    }

    pub(super) fn available_simd() -> Vec<Simd> {
        let mut all = vec![Simd::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx2") && has!("fma") {
                all.push(Simd::Avx2);
            }
            if matches!(Simd::detect(), Simd::Avx512) {
                all.push(Simd::Avx512);
            }
        }
        all
    }

    #[test]
    fn strided_broadcast_and_half_inputs_gather_per_tile() {
        // out[i, j] = col[i] (bf16, broadcast) + t[j, i] (transposed f32), as f16, plus a
        // bool mask out > 0 through a select.
        let (r, c) = (3usize, 2000usize);
        let col: Vec<bf16> = (0..r).map(|i| bf16::from_f32(i as f32 + 0.5)).collect();
        let t: Vec<f32> = (0..r * c).map(|k| k as f32 * 0.25 - 100.0).collect();
        let shape = [r, c];
        let p = Program {
            inputs: 2,
            instrs: vec![
                Instr::Binary(Func2::Add, 0, 1),
                Instr::Unary(Func1::ToF16, 2),
                Instr::Binary(Func2::Gt, 3, 3),
                Instr::Unary(Func1::Not, 4),
                Instr::Select(5, 3, 0),
            ],
            outputs: vec![3, 4, 6],
        };
        let col_strides = [1isize, 0];
        let t_strides = [1isize, r as isize];
        let inputs = [
            Input::Bf16(View::new(&col, &shape, &col_strides, 0)),
            Input::F32(View::new(&t, &shape, &t_strides, 0)),
        ];
        let mut out = vec![f16::ZERO; r * c];
        let mut mask = vec![false; r * c];
        let mut sel = vec![0f32; r * c];
        run::<f32>(
            &p,
            &inputs,
            &mut [Output::F16(&mut out), Output::Bool(&mut mask), Output::F32(&mut sel)],
            &shape,
        );
        for i in 0..r {
            for j in 0..c {
                let want = f16::from_f32(col[i].to_f32() + t[j * r + i]);
                assert_eq!(out[i * c + j], want);
                assert!(!mask[i * c + j]); // x > x is never true
                assert_eq!(sel[i * c + j], want.to_f32());
            }
        }
    }

    #[test]
    fn f64_programs_and_scalar_only_outputs() {
        let x = [1.0f64, 4.0, 9.0];
        let two = [2.0f64];
        let shape = [3usize];
        let p = Program {
            inputs: 2,
            instrs: vec![
                Instr::Unary(Func1::Sqrt, 0),
                Instr::Binary(Func2::Pow, 2, 1),
                Instr::Binary(Func2::Lt, 0, 1),
            ],
            outputs: vec![3, 4],
        };
        let inputs = [Input::F64(view(&x, &[3], &[1])), Input::F64(view(&two, &[3], &[0]))];
        let (mut y, mut lt) = (vec![0.0; 3], vec![true; 3]);
        run::<f64>(&p, &inputs, &mut [Output::F64(&mut y), Output::Bool(&mut lt)], &shape);
        assert_eq!(y, x);
        assert_eq!(lt, [true, false, false]);
    }
}
