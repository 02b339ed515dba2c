//! GGML block ops against the `gguf` package's NumPy reference (scripts/fixtures/quantized.py):
//! dequantization exactly, and `quantized_matmul_ggml` against dequantize-then-matmul within
//! the error of its 8-bit activations, in the row layout and (for whole groups of eight rows)
//! the packed one; bad arguments are errors naming the op.

mod common;

use common::{args, assert_matches, expected, fixture};
use ember::io::gguf::GgmlType;
use ember::ops::quantized::{pack_ggml_in_place, GgmlLayout};
use ember::prelude::*;

fn ggml_type(name: &str) -> GgmlType {
    [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1]
        .into_iter()
        .find(|t| t.name() == name)
        .unwrap_or_else(|| panic!("type {name}"))
}

#[test]
fn dequantize_matches_gguf_reference() {
    for (name, case) in fixture("quantized").iter().filter(|(n, _)| n.starts_with("dequantize")) {
        let ty = ggml_type(case["type"].as_str().unwrap());
        let w = &args(case)[0];
        let got = ops::dequantize_ggml(w, ty).unwrap();
        // Exact up to the JSON round trip of float32 values.
        assert_matches(name, &got, &expected(case), 1e-7, 0.0);
        // Gathering rows first expands only those rows.
        let rows = ops::take(w, &Array::from_slice(&[1i32, 0], &[2]).unwrap(), Some(0)).unwrap();
        let two = ops::dequantize_ggml(&rows, ty).unwrap().to_vec::<f32>().unwrap();
        let all = got.to_vec::<f32>().unwrap();
        let k = got.shape()[1];
        assert_eq!(&two[..k], &all[k..2 * k], "{name}: row 1");
        assert_eq!(&two[k..], &all[..k], "{name}: row 0");
        // Row lookups (negative ids count from the end, as `take`), in both layouts.
        let ids = Array::from_slice(&[1i64, 0, -1], &[3]).unwrap();
        let n = w.shape()[0];
        let mut layouts = vec![(GgmlLayout::Rows, w.clone())];
        if n.is_multiple_of(8) {
            layouts.push((GgmlLayout::Packed, packed(w, ty)));
        }
        for (layout, wl) in layouts {
            let got = ops::dequantize_rows_ggml(&wl, &ids, ty, layout).unwrap();
            assert_eq!(got.shape(), [3, k]);
            let got = got.to_vec::<f32>().unwrap();
            assert_eq!(&got[..k], &all[k..2 * k], "{name} {layout:?}: row 1");
            assert_eq!(&got[k..2 * k], &all[..k], "{name} {layout:?}: row 0");
            assert_eq!(&got[2 * k..], &all[(n - 1) * k..], "{name} {layout:?}: row -1");
        }
    }
}

/// `w`'s blocks in the packed layout.
fn packed(w: &Array, ty: GgmlType) -> Array {
    let mut bytes = w.to_vec::<u8>().unwrap();
    assert!(pack_ggml_in_place(ty, &mut bytes, w.shape()[0]));
    Array::from_slice(&bytes, w.shape()).unwrap()
}

#[test]
fn quantized_matmul_matches_dequantized_product() {
    for (name, case) in fixture("quantized").iter().filter(|(n, _)| n.starts_with("matmul")) {
        let ty = ggml_type(case["type"].as_str().unwrap());
        let a = args(case);
        let (x, w) = (&a[0], &a[1]);
        let got = ops::quantized_matmul_ggml(x, w, ty).unwrap();
        // Activations are rounded to 8 bits per block of 32: the error of each product term
        // is at most |w| * max|x| / 254; bound it by the row sums of |x| times max |w|.
        let k = x.shape()[x.ndim() - 1] as f64;
        let wmax = ops::dequantize_ggml(w, ty)
            .unwrap()
            .to_vec::<f32>()
            .unwrap()
            .iter()
            .fold(0f32, |m, v| m.max(v.abs()));
        let xmax = x.to_vec::<f32>().unwrap().iter().fold(0f32, |m, v| m.max(v.abs()));
        let atol = k * wmax as f64 * xmax as f64 / 254.0 + 1e-4;
        assert_matches(name, &got, &expected(case), 1e-5, atol);
        if w.shape()[0] % 8 == 0 {
            let wp = packed(w, ty);
            let got = ops::quantized_matmul_ggml_layout(x, &wp, ty, GgmlLayout::Packed).unwrap();
            assert_matches(&format!("{name} packed"), &got, &expected(case), 1e-5, atol);
        }
    }
}

#[test]
fn bad_arguments_are_errors() {
    let w = Array::from_slice(&[0u8; 2 * 20], &[2, 20]).unwrap();
    let x = Array::from_slice(&[0f32; 32], &[1, 32]).unwrap();
    assert!(ops::quantized_matmul_ggml(&x, &w, GgmlType::Q4_1).is_ok());
    let err = |r: Result<Array>| r.err().unwrap().to_string();
    let e = err(ops::quantized_matmul_ggml(&x, &w, GgmlType::Q4_K));
    assert!(e.starts_with("[quantized_matmul]") && e.contains("Q4_K"), "{e}");
    let e = err(ops::quantized_matmul_ggml(&x, &w, GgmlType::Q8_0));
    assert!(e.contains("not whole Q8_0 blocks"), "{e}");
    let x64 = Array::from_slice(&[0f32; 64], &[1, 64]).unwrap();
    let e = err(ops::quantized_matmul_ggml(&x64, &w, GgmlType::Q4_1));
    assert!(e.contains("32 values per row"), "{e}");
    let wf = Array::from_slice(&[0f32; 40], &[2, 20]).unwrap();
    let e = err(ops::quantized_matmul_ggml(&x, &wf, GgmlType::Q4_1));
    assert!(e.contains("uint8"), "{e}");
    let e = err(ops::dequantize_ggml(&w, GgmlType::BF16));
    assert!(e.starts_with("[dequantize]"), "{e}");
    // Two rows cannot be packed in groups of eight.
    let e = err(ops::quantized_matmul_ggml_layout(&x, &w, GgmlType::Q4_1, GgmlLayout::Packed));
    assert!(e.starts_with("[quantized_matmul]") && e.contains("Packed layout"), "{e}");
    let ids = Array::from_slice(&[0.5f32], &[1]).unwrap();
    let e = err(ops::dequantize_rows_ggml(&w, &ids, GgmlType::Q4_1, GgmlLayout::Rows));
    assert!(e.starts_with("[dequantize_rows]") && e.contains("integer"), "{e}");
    let ids = Array::from_slice(&[2i32], &[1]).unwrap();
    let rows = ops::dequantize_rows_ggml(&w, &ids, GgmlType::Q4_1, GgmlLayout::Rows).unwrap();
    let e = rows.eval().err().unwrap().to_string();
    assert!(e.starts_with("[dequantize_rows]") && e.contains("out of range"), "{e}");
}

/// Standard normal float32 values of `shape`, from `seed`.
fn randn(shape: &[usize], seed: u64) -> Array {
    ops::random::normal(shape, Dtype::Float32, None, None, Some(&ops::random::key(seed))).unwrap()
}

#[test]
fn product_over_parts_is_the_product_over_their_stack() {
    use ember::transforms::{jvp, vjp, vmap};
    let ty = GgmlType::Q8_0;
    let parts: Vec<Array> = [16, 8, 24]
        .iter()
        .map(|&r| ops::quantize_ggml(&randn(&[r, 64], r as u64), ty).unwrap())
        .collect();
    let refs: Vec<&Array> = parts.iter().collect();
    let stacked = ops::concatenate(&refs, 0).unwrap();
    let x = randn(&[3, 64], 1);
    let f = |a: &[Array]| {
        Ok(vec![ops::quantized_matmul_ggml_parts(&a[0], &parts, ty, GgmlLayout::Rows)?])
    };
    let whole = ops::quantized_matmul_ggml(&x, &stacked, ty).unwrap();
    assert_eq!(whole.shape(), &[3, 48]);
    let same = |what: &str, a: &Array, b: &Array| {
        assert_eq!(a.shape(), b.shape(), "{what}");
        assert_eq!(a.to_vec::<f32>().unwrap(), b.to_vec::<f32>().unwrap(), "{what}");
    };
    same("product", &f(std::slice::from_ref(&x)).unwrap()[0], &whole);
    // Packed parts, each a whole number of eight-row groups.
    let packed_parts: Vec<Array> = parts.iter().map(|w| packed(w, ty)).collect();
    let got = ops::quantized_matmul_ggml_parts(&x, &packed_parts, ty, GgmlLayout::Packed).unwrap();
    let packed_whole =
        ops::quantized_matmul_ggml_layout(&x, &packed(&stacked, ty), ty, GgmlLayout::Packed);
    same("packed product", &got, &packed_whole.unwrap());
    // The transforms see the stacked matrix.
    let g = |a: &[Array]| Ok(vec![ops::quantized_matmul_ggml(&a[0], &stacked, ty)?]);
    let c = randn(&[3, 48], 2);
    same(
        "vjp",
        &vjp(f, std::slice::from_ref(&x), std::slice::from_ref(&c)).unwrap().1[0],
        &vjp(g, std::slice::from_ref(&x), &[c]).unwrap().1[0],
    );
    let t = randn(&[3, 64], 3);
    same(
        "jvp",
        &jvp(f, std::slice::from_ref(&x), std::slice::from_ref(&t)).unwrap().1[0],
        &jvp(g, std::slice::from_ref(&x), &[t]).unwrap().1[0],
    );
    let batch = randn(&[2, 3, 64], 4);
    let mapped = vmap(f, &[Some(0)], &[Some(0)])(std::slice::from_ref(&batch)).unwrap();
    same("vmap", &mapped[0], &ops::quantized_matmul_ggml(&batch, &stacked, ty).unwrap());
    // Parts must agree with x and with each other.
    let err = |r: Result<Array>| r.err().unwrap().to_string();
    let e = err(ops::quantized_matmul_ggml_parts(&x, &[], ty, GgmlLayout::Rows));
    assert!(e.starts_with("[quantized_matmul]") && e.contains("at least one"), "{e}");
    let wide = ops::quantize_ggml(&randn(&[8, 96], 5), ty).unwrap();
    let e =
        err(ops::quantized_matmul_ggml_parts(&x, &[parts[0].clone(), wide], ty, GgmlLayout::Rows));
    assert!(e.contains("64 values per row") || e.contains("96 values per row"), "{e}");
}
