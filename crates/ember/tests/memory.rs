//! The allocator's counters and limits. One test function: the counters are process-wide, so
//! this file runs alone in its own test binary.
use ember::prelude::*;

#[test]
fn counters_cache_and_limits() {
    let mib = 1 << 20;
    ember::clear_cache();
    let base = ember::get_active_memory();

    // Active memory follows live arrays; peak remembers the high-water mark.
    let a = ops::zeros(&[4 * mib / 4], Dtype::Float32).unwrap(); // 4 MiB
    a.eval().unwrap();
    assert!(ember::get_active_memory() >= base + 4 * mib);
    assert!(ember::get_peak_memory() >= base + 4 * mib);
    drop(a);
    assert!(ember::get_active_memory() < base + 4 * mib);

    // Freed buffers wait in the cache and are handed out again.
    assert!(ember::get_cache_memory() >= 4 * mib);
    let b = ops::ones(&[mib], Dtype::Float32).unwrap();
    b.eval().unwrap();
    assert!(ember::get_cache_memory() < 4 * mib, "the cached block was reused");
    drop(b);
    ember::clear_cache();
    assert_eq!(ember::get_cache_memory(), 0);

    // reset_peak_memory brings the peak down to what is live now.
    ember::reset_peak_memory();
    assert_eq!(ember::get_peak_memory(), ember::get_active_memory());

    // A cache limit of zero disables caching.
    let old_cache = ember::set_cache_limit(0);
    drop(ops::ones(&[mib], Dtype::Float32).unwrap().ready().unwrap());
    assert_eq!(ember::get_cache_memory(), 0);
    ember::set_cache_limit(old_cache);

    // Passing the memory limit is an error from eval, not an abort; nothing is lost.
    let old = ember::set_memory_limit(ember::get_active_memory() + 2 * mib);
    let big = ops::ones(&[8 * mib], Dtype::Float32).unwrap();
    let err = big.eval().unwrap_err().to_string();
    assert!(err.starts_with("[eval]") && err.contains("memory limit"), "{err}");
    ember::set_memory_limit(old);
    // After raising the limit the same array evaluates.
    assert_eq!(big.to_vec::<f32>().unwrap()[8 * mib - 1], 1.0);
}
