//! The KV cache: positions are written in place in order, and a bounded cache keeps the first
//! four positions and the most recent ones; float32 keys and values are kept as float16 (the
//! positions used here are exact in it).

use ember_core::{ops, Array, Dtype};
use ember_lm::cache::KvCache;

/// Keys (1, 1, L, 1) whose values are their positions `start..start + l`.
fn positions(start: usize, l: usize) -> Array {
    let v: Vec<f32> = (start..start + l).map(|p| p as f32).collect();
    Array::from_slice(&v, &[1, 1, l, 1]).unwrap()
}

fn fetched(cache: &mut KvCache, start: usize, l: usize) -> Vec<f32> {
    let k = positions(start, l);
    let (keys, values) = cache.update_and_fetch(&k, &ops::negative(&k).unwrap()).unwrap();
    assert_eq!((keys.dtype(), values.dtype()), (Dtype::Float16, Dtype::Float16), "kept as f16");
    let (kv, vv) = (keys.to_vec::<f32>().unwrap(), values.to_vec::<f32>().unwrap());
    assert_eq!(kv.iter().map(|x| -x).collect::<Vec<_>>(), vv, "values follow keys");
    kv
}

#[test]
fn unbounded_cache_returns_every_position_in_order() {
    let mut c = KvCache::new(None, Dtype::Float16);
    assert_eq!(fetched(&mut c, 0, 3), vec![0.0, 1.0, 2.0]);
    for p in 3..300 {
        let all = fetched(&mut c, p, 1);
        assert_eq!(all.len(), p + 1);
        assert_eq!(all[p], p as f32);
    }
    assert_eq!(c.offset(), 300);
}

#[test]
fn bounded_cache_keeps_the_first_four_and_the_latest() {
    let m = 10;
    let mut c = KvCache::new(Some(m), Dtype::Float16);
    fetched(&mut c, 0, 6);
    for p in 6..25 {
        let mut got = fetched(&mut c, p, 1);
        got.sort_by(f32::total_cmp);
        let kept = (p + 1).min(m);
        let mut want: Vec<f32> = (0..4).map(|x| x as f32).collect();
        want.extend((p + 1 - (kept - 4)..=p).map(|x| x as f32));
        assert_eq!(got, want, "after position {p}");
    }
    // Several tokens overflowing a full cache: attention sees everything in time order...
    let got = fetched(&mut c, 25, 3);
    let mut want: Vec<f32> = (0..4).map(|x| x as f32).collect();
    want.extend((19..28).map(|x| x as f32));
    assert_eq!(got, want);
    // ...and the cache then holds the first four and the latest six.
    let mut got = fetched(&mut c, 28, 1);
    got.sort_by(f32::total_cmp);
    let mut want: Vec<f32> = (0..4).map(|x| x as f32).collect();
    want.extend((23..29).map(|x| x as f32));
    assert_eq!(got, want);
    assert_eq!(c.offset(), 29);
}

#[test]
fn trimming_rewinds_until_positions_are_evicted() {
    let mut c = KvCache::new(None, Dtype::Float16);
    fetched(&mut c, 0, 5);
    assert!(c.trim_to(2) && c.offset() == 2);
    // The next positions overwrite the trimmed ones.
    assert_eq!(fetched(&mut c, 10, 2), vec![0.0, 1.0, 10.0, 11.0]);
    assert!(!c.trim_to(5), "cannot trim forwards");
    assert_eq!(c.offset(), 4);
    // A bounded cache can rewind while it holds every position, not once it has evicted.
    let mut b = KvCache::new(Some(8), Dtype::Float16);
    fetched(&mut b, 0, 8);
    assert!(b.trim_to(6));
    assert_eq!(fetched(&mut b, 20, 2).len(), 8);
    fetched(&mut b, 22, 1);
    assert!(!b.trim_to(3) && b.offset() == 9);
}
