//! Mapping a file's page cache in 2 MiB pages, so that weights can be read in place.
//!
//! Matrices read from a file mapped in 4 KiB pages miss the TLB every few rows (token
//! generation was ~20% slower that way); copied into anonymous huge pages they cost a copy and
//! fresh memory on every load, which a VM's host backs lazily (0.06-0.36 s for 266 MB here).
//! Linux caches ext4 files (6.16+) and xfs files in large folios, and maps a 2 MiB folio of a
//! file with one page-table entry when the mapping is aligned to it, as large file mappings are.
//! Whether the cache holds 2 MiB folios depends on how the file was first read: read through a
//! mapping advised `MADV_HUGEPAGE`, it does. So when it does not, the file's cached pages are
//! dropped once and read back that way; this and later loads then map it in huge pages.

use memmap2::Mmap;
use std::path::Path;

const HUGE_PAGE: usize = 1 << 21;

/// Whether `map[start..]` is mapped in 2 MiB pages (after converting the file's page cache to
/// 2 MiB folios if it was not and the filesystem supports them).
#[cfg(target_os = "linux")]
pub(crate) fn map_in_huge_pages(map: &Mmap, start: usize, path: &Path) -> bool {
    let Some(range) = map.get(start..) else { return false };
    let whole = whole_huge_pages(range);
    if whole == 0 || !transparent_huge_pages_enabled() {
        return false;
    }
    if map.advise(memmap2::Advice::HugePage).is_err() {
        return false;
    }
    touch_huge_pages(range);
    if covers(map, whole) {
        return true;
    }
    if !page_cache_takes_huge_folios(path) {
        return false;
    }
    // SAFETY: the map is read-only and shared with the file, so its pages hold no changes to
    // lose: later reads fault the same bytes back in from the page cache or the file.
    if unsafe { map.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) }.is_err() {
        return false;
    }
    drop_cached_pages(path);
    touch_huge_pages(range);
    covers(map, whole)
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn map_in_huge_pages(_map: &Mmap, _start: usize, _path: &Path) -> bool {
    false
}

/// How many aligned 2 MiB pages lie wholly inside `bytes`.
fn whole_huge_pages(bytes: &[u8]) -> usize {
    let start = bytes.as_ptr() as usize;
    let first = start.next_multiple_of(HUGE_PAGE);
    (start + bytes.len()).saturating_sub(first) / HUGE_PAGE
}

/// Reads one byte in every 2 MiB of `bytes`: enough to fault in a huge page (or, through
/// fault-around, a few small ones), and to start huge readahead of uncached ones.
fn touch_huge_pages(bytes: &[u8]) {
    let skip = (bytes.as_ptr() as usize).next_multiple_of(HUGE_PAGE) - bytes.as_ptr() as usize;
    for i in (skip..bytes.len()).step_by(HUGE_PAGE) {
        std::hint::black_box(bytes[i]);
    }
}

/// Whether at least 90% of `whole` huge pages of `map` are mapped as such.
#[cfg(target_os = "linux")]
fn covers(map: &Mmap, whole: usize) -> bool {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else { return false };
    let mapped = pmd_mapped_kib(&smaps, map.as_ptr() as usize).unwrap_or(0) * 1024;
    mapped * 10 >= whole * HUGE_PAGE * 9
}

/// The `FilePmdMapped` kibibytes of the mapping starting at `start` in an smaps listing.
fn pmd_mapped_kib(smaps: &str, start: usize) -> Option<usize> {
    let header = format!("{start:x}-");
    // A mapping's range line is followed by `Field: value` lines, up to the next range line.
    let is_range = |l: &&str| l.split_whitespace().next().is_some_and(|t| t.contains('-'));
    let mut fields = smaps.lines().skip_while(|l| !l.starts_with(&header)).skip(1);
    let value = fields
        .by_ref()
        .take_while(|l| !is_range(l))
        .find_map(|l| l.strip_prefix("FilePmdMapped:"))?;
    value.trim().trim_end_matches("kB").trim().parse().ok()
}

/// Whether transparent huge pages are not turned off (`never`).
#[cfg(target_os = "linux")]
fn transparent_huge_pages_enabled() -> bool {
    std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
        .is_ok_and(|s| !s.contains("[never]"))
}

/// Whether the filesystem holding `path` caches files in large folios: xfs, or ext4 from Linux
/// 6.16. Elsewhere dropping the cache would only cost a re-read on every load.
#[cfg(target_os = "linux")]
fn page_cache_takes_huge_folios(path: &Path) -> bool {
    const EXT4: i64 = 0xEF53;
    const XFS: i64 = 0x5846_5342;
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    match filesystem_type(path) {
        Some(XFS) => true,
        Some(EXT4) => kernel_at_least(&release, (6, 16)),
        _ => false,
    }
}

/// `f_type` of the filesystem holding `path`.
#[cfg(target_os = "linux")]
fn filesystem_type(path: &Path) -> Option<i64> {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(path).ok()?;
    let mut stat = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: the descriptor is open for the call and `stat` is a valid place for one statfs,
    // which fstatfs fills in full when it returns 0.
    let stat = unsafe {
        (libc::fstatfs(file.as_raw_fd(), stat.as_mut_ptr()) == 0).then(|| stat.assume_init())
    }?;
    #[allow(clippy::unnecessary_cast)] // f_type's width differs between targets
    Some(stat.f_type as i64)
}

/// Whether a kernel release string such as `6.18.44-generic` is at least `(major, minor)`.
fn kernel_at_least(release: &str, version: (u32, u32)) -> bool {
    let mut parts = release.split(|c: char| !c.is_ascii_digit()).map(|p| p.parse::<u32>());
    match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => (major, minor) >= version,
        _ => false,
    }
}

/// Asks the kernel to drop `path`'s clean cached pages (pages other processes map stay).
#[cfg(target_os = "linux")]
fn drop_cached_pages(path: &Path) {
    use std::os::fd::AsRawFd;
    if let Ok(file) = std::fs::File::open(path) {
        // SAFETY: the descriptor is open for the call; the advice only affects caching.
        unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
7f25d9e00000-7f25ea200000 r--s 00000000 fe:00 1234   /models/a.gguf
Size:             266240 kB
Rss:              266180 kB
FilePmdMapped:    258048 kB
VmFlags: rd sh mr mw me ms hg
7f25ea200000-7f25ea400000 r--s 00000000 fe:00 99     /models/b.gguf
Size:               2048 kB
FilePmdMapped:         0 kB
";

    #[test]
    fn smaps_listing_gives_the_mapping_s_huge_page_bytes() {
        assert_eq!(pmd_mapped_kib(SMAPS, 0x7f25d9e00000), Some(258048));
        assert_eq!(pmd_mapped_kib(SMAPS, 0x7f25ea200000), Some(0));
        assert_eq!(pmd_mapped_kib(SMAPS, 0x7f25ea400000), None);
        // A mapping without the field does not borrow the next one's.
        let without = "7f00-7f10 r--s\nRss: 4 kB\n7f10-7f20 r--s\nFilePmdMapped: 2048 kB\n";
        assert_eq!(pmd_mapped_kib(without, 0x7f00), None);
    }

    #[test]
    fn kernel_releases_compare_by_major_then_minor() {
        assert!(kernel_at_least("6.18.44-fc-v657", (6, 16)));
        assert!(kernel_at_least("7.0.1", (6, 16)));
        assert!(!kernel_at_least("6.9.12", (6, 16)));
        assert!(!kernel_at_least("5.15.0-91-generic", (6, 16)));
        assert!(!kernel_at_least("", (6, 16)));
    }

    #[test]
    fn only_aligned_2_mib_pages_inside_the_range_count() {
        let bytes = vec![0u8; 5 * HUGE_PAGE];
        let start = (bytes.as_ptr() as usize).next_multiple_of(HUGE_PAGE) - bytes.as_ptr() as usize;
        assert_eq!(whole_huge_pages(&bytes[start..start + 2 * HUGE_PAGE]), 2);
        assert_eq!(whole_huge_pages(&bytes[start + 1..start + 2 * HUGE_PAGE]), 1);
        assert_eq!(whole_huge_pages(&bytes[start + 1..start + HUGE_PAGE + 1]), 0);
        touch_huge_pages(&bytes[start + 1..]);
    }
}
