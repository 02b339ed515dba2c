//! Checks of both bf16 paths against an f64 product of the (bf16) inputs. `matmul_bf16*` run
//! whichever path this CPU takes (the AVX512-BF16 kernel where present); `widened` is checked
//! directly so the portable path is covered everywhere.

use super::*;

/// Deterministic values in [-1, 1), exactly representable in bf16.
fn values(len: usize, seed: u64) -> Vec<bf16> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            bf16::from_f32((s >> 40) as f32 / (1u64 << 23) as f32 - 1.0)
        })
        .collect()
}

/// How an operand is laid out in memory.
#[derive(Clone, Copy, Debug)]
enum Layout {
    RowMajor,
    ColMajor,
    /// Row-major inside a wider buffer with every other column skipped and rows flipped.
    Strided,
}

/// An operand with logical values `v` (rows x cols, row-major) stored per `layout`.
struct Stored {
    data: Vec<bf16>,
    offset: usize,
    rs: isize,
    cs: isize,
}

impl Stored {
    fn new(v: &[bf16], rows: usize, cols: usize, layout: Layout) -> Self {
        let mut data = vec![bf16::from_f32(f32::NAN); rows * cols * 2 + 3];
        let (offset, rs, cs) = match layout {
            Layout::RowMajor => (0, cols as isize, 1),
            Layout::ColMajor => (0, 1, rows as isize),
            Layout::Strided => (3 + (rows - 1) * cols * 2, -2 * cols as isize, 2),
        };
        for i in 0..rows {
            for j in 0..cols {
                data[(offset as isize + i as isize * rs + j as isize * cs) as usize] =
                    v[i * cols + j];
            }
        }
        Stored { data, offset, rs, cs }
    }

    fn view(&self) -> MatRef<'_, bf16> {
        MatRef { data: &self.data, offset: self.offset, row_stride: self.rs, col_stride: self.cs }
    }
}

/// f64 product of the inputs and, per element, the sum of |a_ik * b_kj| (error scale).
fn reference(a: &[bf16], b: &[bf16], m: usize, n: usize, k: usize) -> (Vec<f64>, Vec<f64>) {
    let mut exact = vec![0f64; m * n];
    let mut scale = vec![0f64; m * n];
    for i in 0..m {
        for p in 0..k {
            let x = a[i * k + p].to_f64();
            for j in 0..n {
                let y = b[p * n + j].to_f64();
                exact[i * n + j] += x * y;
                scale[i * n + j] += (x * y).abs();
            }
        }
    }
    (exact, scale)
}

/// Which entry point a check runs.
#[derive(Clone, Copy)]
enum Path {
    Public,
    Widened,
}

fn run(path: Path, out: Out, a: MatRef<bf16>, b: MatRef<bf16>, m: usize, n: usize, k: usize) {
    match (path, out) {
        (Path::Public, Out::F32(o)) => matmul_bf16_f32(o, a, b, m, n, k),
        (Path::Public, Out::Bf16(o)) => matmul_bf16(o, a, b, m, n, k),
        (Path::Widened, out) => widened(out, a, b, m, n, k),
    }
}

/// Runs one shape with the given layouts, both output types, and compares with f64.
fn check(path: Path, m: usize, n: usize, k: usize, la: Layout, lb: Layout) {
    let (av, bv) = (values(m * k, (m * 31 + k) as u64), values(k * n, (k * 17 + n) as u64));
    let (sa, sb) = (Stored::new(&av, m, k, la), Stored::new(&bv, k, n, lb));
    let (exact, scale) = reference(&av, &bv, m, n, k);
    // f32 accumulation: at most ~k roundings of partial sums bounded by `scale`.
    let acc_err = |i: usize| scale[i] * (2 * k + 4) as f64 * f64::powi(2.0, -24);
    let ctx = format!("m={m} n={n} k={k} a={la:?} b={lb:?}");

    let mut o32 = vec![f32::NAN; m * n];
    run(path, Out::F32(&mut o32), sa.view(), sb.view(), m, n, k);
    for (i, &got) in o32.iter().enumerate() {
        let err = (got as f64 - exact[i]).abs();
        assert!(err <= acc_err(i), "f32 out[{i}] = {got}, want {} ({ctx})", exact[i]);
    }
    let mut o16 = vec![bf16::NAN; m * n];
    run(path, Out::Bf16(&mut o16), sa.view(), sb.view(), m, n, k);
    for (i, &got) in o16.iter().enumerate() {
        // Plus one rounding to bf16 (8 significant bits).
        let bound = acc_err(i) * 1.01 + exact[i].abs() * f64::powi(2.0, -8);
        let err = (got.to_f64() - exact[i]).abs();
        assert!(err <= bound, "bf16 out[{i}] = {got}, want {} ({ctx})", exact[i]);
    }
}

const LAYOUTS: [Layout; 3] = [Layout::RowMajor, Layout::ColMajor, Layout::Strided];

fn every_edge_size(path: Path) {
    use Layout::{ColMajor as C, RowMajor as R, Strided as S};
    // With both m and n past the skinny limit (64) products are packed; skinny ones read the
    // big operand in place unless it has no unit stride (S), which forces packing too.
    for s in 1..=67 {
        check(path, s, 97, 45, R, R);
        check(path, s, 37, 45, R, S);
        check(path, 93, s, 51, R, R);
        check(path, 29, s, 51, R, S);
        check(path, 71, 83, s, R, R);
        check(path, 3, 83, s, R, C);
    }
}

#[test]
fn every_edge_size_in_each_dim() {
    every_edge_size(Path::Public);
}

#[test]
fn widened_every_edge_size_in_each_dim() {
    every_edge_size(Path::Widened);
}

fn all_layouts(path: Path) {
    for la in LAYOUTS {
        for lb in LAYOUTS {
            for (m, n, k) in [(1, 1, 1), (5, 3, 7), (17, 33, 64), (30, 50, 9), (1, 70, 33)] {
                check(path, m, n, k, la, lb);
            }
        }
    }
}

#[test]
fn transposed_and_strided_operands() {
    all_layouts(Path::Public);
}

#[test]
fn widened_transposed_and_strided_operands() {
    all_layouts(Path::Widened);
}

#[test]
fn gemv_shapes() {
    for la in LAYOUTS {
        for lb in LAYOUTS {
            // Skinny shapes (few rows or few columns, several row groups, split across
            // threads) and the first shapes past them.
            for (m, n, k) in [
                (1, 300, 257),
                (300, 1, 257),
                (1, 1, 1000),
                (2, 129, 64),
                (7, 150, 77),
                (12, 400, 301),
                (130, 16, 33),
                (16, 70, 9),
                (64, 70, 300),
                (65, 70, 9),
                (130, 64, 40),
                (130, 65, 40),
            ] {
                check(Path::Public, m, n, k, la, lb);
            }
        }
    }
}

#[test]
fn several_k_blocks_and_odd_k() {
    use Layout::{ColMajor as C, RowMajor as R};
    // Around and beyond one k block (2048; partial sums then go through the f32 tile), with
    // odd tails.
    for k in [255, 256, 257, 513, 2047, 2048, 2049, 4097] {
        check(Path::Public, 20, 40, k, R, R);
        check(Path::Public, 15, 33, k, C, C);
    }
}

#[test]
fn large_blocked_and_parallel_products() {
    use Layout::{ColMajor as C, RowMajor as R};
    // Wide (split by columns across threads), tall (split by rows, several row blocks, A
    // packed at once), several k blocks, and A too big to pack at once (rows x k > 2^21 per
    // thread) with several row blocks.
    check(Path::Public, 40, 1100, 300, R, R);
    check(Path::Public, 400, 70, 300, R, C);
    check(Path::Public, 150, 140, 2500, C, R);
    check(Path::Public, 300, 70, 15000, R, R);
}

#[test]
fn row_blocks_on_other_pool_sizes() {
    use Layout::{ColMajor as C, RowMajor as R};
    // Split by rows into 2 or 3 blocks of whole tiles, the last one short, with one k block
    // or several.
    for threads in [2, 3] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
        pool.install(|| {
            check(Path::Public, 400, 70, 300, R, C);
            check(Path::Public, 150, 140, 2500, C, R);
        });
    }
}

#[test]
fn empty_dims() {
    let a = values(12, 1);
    let mut out = vec![bf16::NAN; 12];
    matmul_bf16(&mut out, MatRef::dense(&a, 0), MatRef::dense(&a, 4), 3, 4, 0);
    assert!(out.iter().all(|x| *x == bf16::ZERO));
    let mut o32 = vec![f32::NAN; 12];
    matmul_bf16_f32(&mut o32, MatRef::dense(&a, 0), MatRef::dense(&a, 4), 3, 4, 0);
    assert!(o32.iter().all(|x| *x == 0.0));
    // No rows: nothing written.
    matmul_bf16_f32(&mut o32, MatRef::dense(&a, 4), MatRef::dense(&a, 4), 0, 4, 3);
    assert!(o32.iter().all(|x| *x == 0.0));
}

#[test]
fn nan_and_inf_propagate() {
    let (m, n, k) = (3, 40, 20);
    let mut a = vec![bf16::ONE; m * k];
    let b = vec![bf16::ONE; k * n];
    a[k + 5] = bf16::NAN; // row 1
    a[2 * k] = bf16::INFINITY; // row 2
    let mut out = vec![bf16::ZERO; m * n];
    matmul_bf16(&mut out, MatRef::dense(&a, k), MatRef::dense(&b, n), m, n, k);
    assert!(out[..n].iter().all(|x| x.to_f32() == k as f32));
    assert!(out[n..2 * n].iter().all(|x| x.is_nan()));
    assert!(out[2 * n..].iter().all(|x| x.to_f32() == f32::INFINITY));
}

#[test]
#[should_panic(expected = "output too small")]
fn short_output_is_refused() {
    let a = values(6, 2);
    let mut out = vec![bf16::ZERO; 3];
    matmul_bf16(&mut out, MatRef::dense(&a, 3), MatRef::dense(&a, 2), 2, 2, 3);
}

#[test]
fn long_k_narrows_column_blocks_exactly() {
    // k so long that packed B blocks get narrower than the columns of a thread, over several
    // k blocks. Small integer entries keep every partial sum exact in f32.
    let (m, n, k) = (66, 200, 66_000);
    // Entries 0, 1 or 2 from a hash of the flat index (no column pattern repeats).
    let small = |x: usize| {
        bf16::from_f32(((x as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 62) as f32 % 3.0)
    };
    let a: Vec<bf16> = (0..m * k).map(small).collect();
    let b: Vec<bf16> = (0..k * n).map(|x| small(x + m * k)).collect();
    let (exact, _) = reference(&a, &b, m, n, k);
    let (va, vb) = (MatRef::dense(&a, k), MatRef::dense(&b, n));
    let mut o32 = vec![f32::NAN; m * n];
    matmul_bf16_f32(&mut o32, va, vb, m, n, k);
    assert!(o32.iter().zip(&exact).all(|(&g, &e)| g as f64 == e));
    let mut o16 = vec![bf16::NAN; m * n];
    matmul_bf16(&mut o16, va, vb, m, n, k);
    assert!(o16.iter().zip(&exact).all(|(&g, &e)| g == bf16::from_f64(e)));
}
