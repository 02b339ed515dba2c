//! The figures `generate` and `bench llm` print after a run, worded alike: the load time and
//! the peak memory.

use std::path::Path;

/// Peak resident memory of this process in bytes (Linux's VmHWM), if known.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// `Load: ...`: seconds spent loading the model at `path`.
pub fn load(seconds: f64, path: &Path) -> String {
    format!("Load: {seconds:.3} s ({})", path.display())
}

/// `Peak memory: ...`: the process's resident peak where the OS reports it, and the peak of
/// the arrays' allocator.
pub fn peak_memory() -> String {
    let gb = |b: u64| b as f64 / 1e9;
    let arrays = gb(ember_core::get_peak_memory() as u64);
    match peak_rss() {
        Some(rss) => format!("Peak memory: {:.3} GB (resident), {arrays:.3} GB (arrays)", gb(rss)),
        None => format!("Peak memory: {arrays:.3} GB (arrays)"),
    }
}
