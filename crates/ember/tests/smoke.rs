use ember::prelude::*;

#[test]
fn add_broadcasts_and_prints() {
    let a = Array::from_slice(&[1i32, 2, 3, 4, 5, 6], &[2, 3]).unwrap();
    let b = Array::from_slice(&[10i32, 20, 30], &[3]).unwrap();
    let c = ops::add(&a, &b).unwrap();
    assert!(!c.is_evaluated());
    assert_eq!(c.to_vec::<i32>().unwrap(), vec![11, 22, 33, 14, 25, 36]);
    assert_eq!(
        format!("{c}"),
        "array([[11, 22, 33],\n       [14, 25, 36]], shape=(2, 3), dtype=int32)"
    );
}
