//! vmap against the loop it replaces: for each function, mapping over a batch axis must equal
//! applying the function to each batch element and stacking the results.

use ember::prelude::*;
use ember::transforms::vmap;

type F = fn(&[Array]) -> Result<Vec<Array>>;

fn random(shape: &[usize], seed: u64) -> Array {
    ember::ops::random::normal(shape, Dtype::Float64, None, None, Some(&ember::ops::random::key(seed))).unwrap()
}

fn element(x: &Array, axis: usize, b: usize) -> Array {
    let one = ops::slice_axis(x, axis as isize, Slice::range(b as isize, b as isize + 1)).unwrap();
    ops::squeeze(&one, Some(&[axis as isize])).unwrap()
}

/// Checks `vmap(f)` on `args` batched on `in_axes` against a loop, outputs stacked on `out_axis`.
fn check(name: &str, f: F, args: &[Array], in_axes: &[Option<isize>], out_axis: isize) {
    let mapped = vmap(f, in_axes, &[Some(out_axis)])(args).unwrap_or_else(|e| panic!("{name}: {e}"));
    let axis = |x: &Array, a: isize| if a < 0 { (a + x.ndim() as isize) as usize } else { a as usize };
    let size = args.iter().zip(in_axes).find_map(|(x, a)| a.map(|a| x.shape()[axis(x, a)])).unwrap();
    let looped: Vec<Array> = (0..size)
        .map(|b| {
            let one: Vec<Array> = args
                .iter()
                .zip(in_axes)
                .map(|(x, a)| a.map_or_else(|| x.clone(), |a| element(x, axis(x, a), b)))
                .collect();
            f(&one).unwrap().remove(0)
        })
        .collect();
    let refs: Vec<&Array> = looped.iter().collect();
    let expected = ops::stack(&refs, out_axis).unwrap();
    assert_eq!(mapped[0].shape(), expected.shape(), "{name}");
    let (got, want) = (mapped[0].to_vec::<f64>().unwrap(), expected.to_vec::<f64>().unwrap());
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-12 * (1.0 + w.abs()), "{name}: {got:?} vs {want:?}");
    }
}

#[test]
fn vmap_equals_a_loop_for_every_op_family() {
    let cases: Vec<(&str, F, Vec<Vec<usize>>)> = vec![
        ("sin", |x| Ok(vec![ops::sin(&x[0])?]), vec![vec![3, 4]]),
        ("add broadcast", |x| Ok(vec![ops::add(&x[0], &x[1])?]), vec![vec![3, 4], vec![4]]),
        ("where", |x| {
            let c = ops::greater(&x[0], &x[1])?;
            Ok(vec![ops::where_(&c, &x[0], &x[1])?])
        }, vec![vec![2, 3], vec![2, 3]]),
        ("reshape", |x| Ok(vec![ops::reshape(&x[0], &[6])?]), vec![vec![2, 3]]),
        ("transpose", |x| Ok(vec![ops::transpose(&x[0], &[1, 0])?]), vec![vec![2, 3]]),
        ("broadcast_to", |x| Ok(vec![ops::broadcast_to(&x[0], &[2, 3])?]), vec![vec![3]]),
        ("slice", |x| Ok(vec![ops::slice(&x[0], &[Slice::new(Some(1), None, 2)])?]), vec![vec![5, 2]]),
        ("sum axis", |x| Ok(vec![ops::sum(&x[0], Some(&[1]), false)?]), vec![vec![2, 3]]),
        ("max all", |x| Ok(vec![ops::max(&x[0], None, true)?]), vec![vec![2, 3]]),
        ("argmax", |x| Ok(vec![ops::argmax(&x[0], Some(0), false)?.astype(Dtype::Float64)?]), vec![vec![4, 2]]),
        ("cumsum", |x| Ok(vec![ops::cumsum(&x[0], Some(-1), false, true)?]), vec![vec![2, 3]]),
        ("matmul", |x| Ok(vec![ops::matmul(&x[0], &x[1])?]), vec![vec![2, 3], vec![3, 4]]),
        ("matvec", |x| Ok(vec![ops::matmul(&x[0], &x[1])?]), vec![vec![2, 3], vec![3]]),
        ("softmax", |x| Ok(vec![ops::softmax(&x[0], Some(&[-1]), false)?]), vec![vec![2, 5]]),
        ("sort", |x| Ok(vec![ops::sort(&x[0], Some(0))?]), vec![vec![4, 2]]),
        ("concatenate", |x| Ok(vec![ops::concatenate(&[&x[0], &x[1]], 0)?]), vec![vec![2], vec![3]]),
        ("argsort", |x| Ok(vec![ops::argsort(&x[0], Some(-1))?.astype(Dtype::Float64)?]), vec![vec![2, 4]]),
        ("partition", |x| Ok(vec![ops::partition(&x[0], 1, Some(0))?]), vec![vec![4, 2]]),
        ("rms_norm", |x| Ok(vec![ops::fast::rms_norm(&x[0], Some(&x[1]), 1e-5)?]), vec![vec![2, 4], vec![4]]),
        ("layer_norm", |x| Ok(vec![ops::fast::layer_norm(&x[0], Some(&x[1]), None, 1e-5)?]), vec![vec![2, 4], vec![4]]),
        ("rope", |x| Ok(vec![ops::fast::rope(&x[0], 4, false, Some(10000.0), 1.0, 3, None)?]), vec![vec![2, 3, 4]]),
        ("sdpa", |x| {
            let mask = ops::fast::AttentionMask::Causal;
            Ok(vec![ops::fast::scaled_dot_product_attention(&x[0], &x[1], &x[2], 0.5, mask)?])
        }, vec![vec![1, 2, 3, 4], vec![1, 1, 3, 4], vec![1, 1, 3, 4]]),
        ("conv2d", |x| Ok(vec![ops::conv2d(&x[0], &x[1], (1, 1), (1, 0), (1, 1), 1)?]), vec![vec![1, 4, 3, 2], vec![3, 2, 2, 2]]),
        ("take batched indices", |x| {
            let idx = ops::argsort(&x[1], Some(0))?;
            Ok(vec![ops::take(&x[0], &idx, Some(0))?])
        }, vec![vec![3], vec![3]]),
        ("take", |x| {
            let idx = Array::from_slice(&[2u32, 0, 1, 2], &[4])?;
            Ok(vec![ops::take(&x[0], &idx, Some(0))?])
        }, vec![vec![3, 2]]),
    ];
    for (name, f, shapes) in cases {
        let batch = 3;
        let n = shapes.len();
        // Every input batched on axis 0, then the first batched on its last axis and the
        // others unbatched, with the outputs stacked on axis 0 and on the last axis.
        let front: Vec<Array> = shapes
            .iter()
            .enumerate()
            .map(|(i, s)| random(&[&[batch][..], s].concat(), i as u64))
            .collect();
        check(name, f, &front, &vec![Some(0); n], 0);
        let mut mixed = vec![random(&[&shapes[0][..], &[batch]].concat(), 7)];
        mixed.extend(shapes[1..].iter().enumerate().map(|(i, s)| random(s, 10 + i as u64)));
        let mut axes = vec![Some(-1)];
        axes.extend(std::iter::repeat_n(None, n - 1));
        check(name, f, &mixed, &axes, -1);
    }
}

#[test]
fn nested_vmap_maps_two_axes() {
    let inner = vmap(|x: &[Array]| Ok(vec![ops::sum(&ops::square(&x[0])?, None, false)?]), &[Some(0)], &[Some(0)]);
    let outer = vmap(move |x: &[Array]| inner(x), &[Some(1)], &[Some(0)]);
    let x = random(&[2, 3, 4], 1);
    let got = outer(&[x.clone()]).unwrap().remove(0);
    // got[j][i] = sum_k x[i][j][k]^2
    let expected = ops::transpose(&ops::sum(&ops::square(&x).unwrap(), Some(&[2]), false).unwrap(), &[1, 0]).unwrap();
    assert_eq!(got.shape(), &[3, 2]);
    let (g, e) = (got.to_vec::<f64>().unwrap(), expected.to_vec::<f64>().unwrap());
    assert!(g.iter().zip(&e).all(|(a, b)| (a - b).abs() < 1e-12), "{g:?} vs {e:?}");
}

#[test]
fn vmap_rejects_mismatched_batches_and_axes() {
    let f = vmap(|x: &[Array]| Ok(vec![ops::add(&x[0], &x[1])?]), &[Some(0), Some(0)], &[Some(0)]);
    let err = f(&[random(&[2, 3], 1), random(&[3, 3], 2)]).unwrap_err().to_string();
    assert!(err.contains("batch axis"), "{err}");
    let g = vmap(|x: &[Array]| Ok(vec![x[0].clone()]), &[Some(2)], &[Some(0)]);
    let err = g(&[random(&[2], 1)]).unwrap_err().to_string();
    assert!(err.contains("out of bounds"), "{err}");
    let h = vmap(|x: &[Array]| Ok(vec![x[0].clone()]), &[None], &[Some(0)]);
    assert!(h(&[random(&[2], 1)]).unwrap_err().to_string().contains("at least one"));
}
