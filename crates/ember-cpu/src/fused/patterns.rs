//! Known chains of elementwise instructions that one step computes in registers.
//!
//! A step per instruction stores every intermediate to an L1 tile and loads it back; for a
//! long chain around a transcendental (an activation) those passes cost as much as the math.
//! Each pattern here is replaced by one step that performs the same operations in the same
//! order, so its results are bit-identical to the steps it replaces.

use super::{Compute, Func1, Func2, Op, Source};

/// A planned instruction: the op and its operand values.
type Planned<F> = (Op<F>, [usize; 3]);
/// A planned instruction's slot (`None` once folded away).
type Slot<F> = Option<Planned<F>>;

/// Replaces each `(h x) * (s + tanh(c * (x + k * x^3)))` (operands of `+` and `*` in either
/// order, `h, s, c, k` scalars, every intermediate used once) by one [`Op::GeluTanh`] step:
/// MLX's `nn.gelu_approx` is this with `h = 0.5`, `s = 1`, `c = sqrt(2 / pi)`, `k = 0.044715`.
pub(super) fn fold_gelu_tanh<F: Compute>(
    ops: &mut [Slot<F>],
    source: &[Source<F>],
    uses: &[usize],
    n_in: usize,
) {
    for y in 0..ops.len() {
        let Some((Op::Binary(Func2::Mul), [p, q, _])) = ops[y] else { continue };
        let chain = Chain { ops: &*ops, source, uses, n_in };
        if let Some((found, x, consts)) = chain.gelu(p, q).or_else(|| chain.gelu(q, p)) {
            for j in found {
                ops[j] = None;
            }
            ops[y] = Some((Op::GeluTanh(consts), [x, x, x]));
        }
    }
}

/// Read-only access to the planned instructions while matching.
struct Chain<'a, F> {
    ops: &'a [Slot<F>],
    source: &'a [Source<F>],
    uses: &'a [usize],
    n_in: usize,
}

impl<F: Compute> Chain<'_, F> {
    /// `(h x) * (s + tanh(...))` with `hx` and `v` the product's operands: the instructions
    /// folded, `x`, and `[h, s, c, k]`.
    fn gelu(&self, hx: usize, v: usize) -> Option<([usize; 7], usize, [F; 4])> {
        let (i_hx, h, x) = self.with_scalar(hx, Func2::Mul)?;
        let (i_v, s, t) = self.with_scalar(v, Func2::Add)?;
        let (i_t, (Op::Unary(Func1::Tanh), [u, ..])) = self.single_use(t)? else { return None };
        let (i_u, c, b) = self.with_scalar(u, Func2::Mul)?;
        let (i_b, (Op::Binary(Func2::Add), [b0, b1, _])) = self.single_use(b)? else {
            return None;
        };
        let a = match (b0 == x, b1 == x) {
            (true, _) => b1,
            (_, true) => b0,
            _ => return None,
        };
        let (i_a, k, cube) = self.with_scalar(a, Func2::Mul)?;
        let (i_cube, (Op::Binary(Func2::Pow), [base, e, _])) = self.single_use(cube)? else {
            return None;
        };
        let three = F::one() + F::one() + F::one();
        if base != x || !matches!(self.source[e], Source::Scalar(v) if v == three) {
            return None;
        }
        Some(([i_hx, i_v, i_t, i_u, i_b, i_a, i_cube], x, [h, s, c, k]))
    }

    /// The slot and planned op defining value `v`, when `v` is an instruction result read
    /// by exactly one operand.
    fn single_use(&self, v: usize) -> Option<(usize, Planned<F>)> {
        let j = v.checked_sub(self.n_in).filter(|_| self.uses[v] == 1)?;
        Some((j, self.ops[j]?))
    }

    /// `v = op(scalar, w)` or `op(w, scalar)` (used once): its slot, the scalar and `w`.
    fn with_scalar(&self, v: usize, op: Func2) -> Option<(usize, F, usize)> {
        let (j, (Op::Binary(f), [a, b, _])) = self.single_use(v)? else { return None };
        if f != op {
            return None;
        }
        match (self.source[a], self.source[b]) {
            (Source::Scalar(s), _) => Some((j, s, b)),
            (_, Source::Scalar(s)) => Some((j, s, a)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::available_simd;
    use super::super::{run_on, Dst, Input, Instr, Output, Plan, Program, Step, Streaming};
    use super::*;
    use crate::stream;
    use crate::strided::View;

    /// MLX's `nn.gelu_approx` as ops: `0.5 * x * (1 + tanh(c * (x + 0.044715 * x**3)))`;
    /// with `tanh_out` the tanh is an output too, which keeps it from being folded.
    fn gelu_program(tanh_out: bool) -> Program {
        Program {
            inputs: 6, // x, then the scalars 3, 0.044715, c, 1, 0.5
            instrs: vec![
                Instr::Binary(Func2::Pow, 0, 1),   // 6: x^3
                Instr::Binary(Func2::Mul, 2, 6),   // 7
                Instr::Binary(Func2::Add, 0, 7),   // 8
                Instr::Binary(Func2::Mul, 3, 8),   // 9
                Instr::Unary(Func1::Tanh, 9),      // 10
                Instr::Binary(Func2::Add, 4, 10),  // 11
                Instr::Binary(Func2::Mul, 5, 0),   // 12
                Instr::Binary(Func2::Mul, 12, 11), // 13
            ],
            outputs: if tanh_out { vec![13, 10] } else { vec![13] },
        }
    }

    /// Runs GELU over `n` values folded into one step and as separate steps (its tanh kept as
    /// an output too), on every instruction set, and compares the bits; the folded output
    /// starts one element into its buffer, so streamed lines start mid-line.
    fn folded_gelu_matches_separate_steps(n: usize, streamed: bool) {
        let mut x: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin() * 6.0).collect();
        x[..6].copy_from_slice(&[0.0, -0.0, 20.0, -20.0, f32::INFINITY, f32::NAN]);
        let consts = [3.0f32, 0.044715, (2.0f32 / std::f32::consts::PI).sqrt(), 1.0, 0.5];
        let shape = [n];
        let mut inputs = vec![Input::F32(View::new(&x, &shape, &[1], 0))];
        for c in &consts {
            inputs.push(Input::F32(View::new(std::slice::from_ref(c), &shape, &[0], 0)));
        }
        let (folded, kept) = (gelu_program(false), gelu_program(true));
        let streaming = if streamed { Streaming::Steps } else { Streaming::Off };
        let plan = Plan::<f32>::new(&folded, &inputs, &[true], streaming);
        let dst = if streamed { Dst::Stream(0) } else { Dst::Out(0) };
        assert!(matches!(plan.steps[..], [Step { dst: d, .. }] if d == dst), "{:?}", plan.steps);
        assert!(Plan::<f32>::new(&kept, &inputs, &[true, true], streaming).steps.len() > 2);
        for simd in available_simd() {
            let mut buf = vec![0f32; n + 1];
            let y = &mut buf[1..];
            run_on::<f32>(simd, &folded, &inputs, &mut [Output::F32(y)], &shape);
            let y = &buf[1..];
            let (mut want, mut t) = (vec![0f32; n], vec![0f32; n]);
            let outs = &mut [Output::F32(&mut want), Output::F32(&mut t)];
            run_on::<f32>(simd, &kept, &inputs, outs, &shape);
            for i in 0..n {
                assert_eq!(y[i].to_bits(), want[i].to_bits(), "{simd:?} x={}", x[i]);
            }
            for (&v, &g) in x.iter().zip(y).skip(6).step_by(89) {
                let v = v as f64;
                let c = (2.0 / std::f64::consts::PI).sqrt();
                let exact = 0.5 * v * (1.0 + (c * (v + 0.044715 * v * v * v)).tanh());
                assert!((g as f64 - exact).abs() <= 1e-6 * (1.0 + exact.abs()), "{v}: {g}");
            }
            assert_eq!((y[0], y[4]), (0.0, f32::INFINITY));
            assert!(y[5].is_nan());
        }
    }

    #[test]
    fn gelu_tanh_chain_is_one_step_with_the_same_bits_as_separate_steps() {
        folded_gelu_matches_separate_steps(150_001, false); // parallel, a ragged last tile
    }

    #[test]
    fn large_gelu_outputs_stream_straight_from_registers_with_the_same_bits() {
        folded_gelu_matches_separate_steps(stream::STREAM_BYTES / 4 + 37, true);
    }

    #[test]
    fn chains_that_differ_from_gelu_are_not_folded() {
        let x = [0.5f32, -1.5, 2.0];
        let other = [1.0f32, 2.0, -3.0];
        let shape = [3];
        // The cube as a square, then `0.5 *` applied to another array than the cube's.
        let mut square = gelu_program(false);
        square.instrs[0] = Instr::Binary(Func2::Mul, 0, 0);
        let mut elsewhere = gelu_program(false);
        elsewhere.inputs = 7;
        elsewhere.instrs = gelu_program(false).instrs.iter().map(|&ins| shift(ins)).collect();
        elsewhere.instrs[6] = Instr::Binary(Func2::Mul, 5, 6);
        elsewhere.outputs = vec![14];
        let consts = [3.0f32, 0.044715, 0.8, 1.0, 0.5];
        for (p, hx, cube) in [(square, x, false), (elsewhere, other, true)] {
            let mut inputs = vec![Input::F32(View::new(&x, &shape, &[1], 0))];
            for c in &consts {
                inputs.push(Input::F32(View::new(std::slice::from_ref(c), &shape, &[0], 0)));
            }
            inputs.push(Input::F32(View::new(&other, &shape, &[1], 0)));
            inputs.truncate(p.inputs);
            let plan = Plan::<f32>::new(&p, &inputs, &[true], Streaming::Off);
            assert!(
                !plan.steps.iter().any(|s| matches!(s.op, Op::GeluTanh(_))),
                "{:?}",
                plan.steps
            );
            let mut y = [0f32; 3];
            run_on::<f32>(available_simd()[0], &p, &inputs, &mut [Output::F32(&mut y)], &shape);
            for i in 0..3 {
                let power = if cube { x[i] * x[i] * x[i] } else { x[i] * x[i] };
                let want = 0.5 * hx[i] * (1.0 + (0.8 * (x[i] + 0.044715 * power)).tanh());
                assert!((y[i] - want).abs() < 1e-6, "{i}: {} vs {want}", y[i]);
            }
        }
    }

    /// `ins` with its operands from value 6 on moved up by one (for an input added there).
    fn shift(ins: Instr) -> Instr {
        let s = |v: usize| if v >= 6 { v + 1 } else { v };
        match ins {
            Instr::Unary(f, a) => Instr::Unary(f, s(a)),
            Instr::Binary(f, a, b) => Instr::Binary(f, s(a), s(b)),
            Instr::Select(c, a, b) => Instr::Select(s(c), s(a), s(b)),
        }
    }
}
