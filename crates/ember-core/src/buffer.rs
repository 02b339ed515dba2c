//! Buffers and the allocator: a size-bucketed cache of freed buffers, MLX's memory counters and
//! limits, huge pages for large buffers, and buffers that wrap external memory (mmap'd files).
//!
//! Invariant: `active` counts the bytes of every live owned buffer; `cache` the bytes of freed
//! ones held for reuse. A buffer's bytes are always initialised (fresh memory is zeroed).

use crate::{Error, Result};
use std::alloc::Layout;
use std::any::Any;
use std::collections::BTreeMap;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;

/// Buffers at least this large come from mmap with transparent huge pages requested.
const HUGE_PAGE_THRESHOLD: usize = 1 << 21;
const HUGE_PAGE: usize = 1 << 21;
const ALIGN: usize = 64;

static ACTIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static MEMORY_LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);
static CACHE_LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);
static CACHE: Mutex<Cache> = Mutex::new(Cache { bytes: 0, free: BTreeMap::new(), tick: 0 });

struct Cache {
    bytes: usize,
    /// Capacity -> freed blocks of that capacity, each with the tick it was freed at.
    free: BTreeMap<usize, Vec<(u64, Block)>>,
    tick: u64,
}

/// Raw memory owned by the allocator.
struct Block {
    ptr: NonNull<u8>,
    capacity: usize,
}

// SAFETY: a Block is a unique owner of its allocation; moving it between threads is fine.
unsafe impl Send for Block {}

/// Rounds a request up to the size class it is cached under.
fn size_class(bytes: usize) -> usize {
    let bytes = bytes.max(1);
    if bytes <= 4096 {
        bytes.next_power_of_two().max(ALIGN)
    } else if bytes < HUGE_PAGE_THRESHOLD {
        bytes.div_ceil(4096) * 4096
    } else {
        bytes.div_ceil(HUGE_PAGE) * HUGE_PAGE
    }
}

impl Block {
    fn allocate(capacity: usize) -> Result<Block> {
        if capacity >= HUGE_PAGE_THRESHOLD {
            return Block::allocate_huge(capacity);
        }
        let layout = Layout::from_size_align(capacity, ALIGN)
            .map_err(|e| Error::Memory(format!("cannot allocate {capacity} bytes: {e}")))?;
        // SAFETY: the layout has non-zero size (size_class never returns 0).
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        NonNull::new(ptr)
            .map(|ptr| Block { ptr, capacity })
            .ok_or_else(|| Error::Memory(format!("out of memory allocating {capacity} bytes")))
    }

    /// Anonymous mmap (zeroed by the kernel), aligned to 2 MiB and advised to use huge pages:
    /// on this kind of VM that nearly doubles streaming bandwidth.
    fn allocate_huge(capacity: usize) -> Result<Block> {
        let len = capacity + HUGE_PAGE;
        // SAFETY: an anonymous private mapping with no address hint has no preconditions.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return Err(Error::Memory(format!("out of memory allocating {capacity} bytes")));
        }
        let start = raw as usize;
        let aligned = start.div_ceil(HUGE_PAGE) * HUGE_PAGE;
        // SAFETY: both trimmed ranges lie inside the mapping made above and are page aligned
        // (mmap returns page-aligned memory; `aligned` and `aligned + capacity` are multiples
        // of 2 MiB); the kept range [aligned, aligned + capacity) is untouched by them.
        unsafe {
            if aligned > start {
                libc::munmap(raw, aligned - start);
            }
            let tail = aligned + capacity;
            let end = start + len;
            if end > tail {
                libc::munmap(tail as *mut libc::c_void, end - tail);
            }
            libc::madvise(aligned as *mut libc::c_void, capacity, libc::MADV_HUGEPAGE);
        }
        Ok(Block { ptr: NonNull::new(aligned as *mut u8).expect("mmap is non-null"), capacity })
    }

    fn release(self) {
        if self.capacity >= HUGE_PAGE_THRESHOLD {
            // SAFETY: the range is exactly what allocate_huge kept mapped.
            unsafe { libc::munmap(self.ptr.as_ptr() as *mut libc::c_void, self.capacity) };
        } else {
            let layout = Layout::from_size_align(self.capacity, ALIGN).expect("valid layout");
            // SAFETY: allocated by `allocate` with this very layout.
            unsafe { std::alloc::dealloc(self.ptr.as_ptr(), layout) };
        }
    }
}

/// A contiguous region of memory holding an array's elements.
pub struct Buffer {
    ptr: NonNull<u8>,
    len: usize,
    owner: Owner,
}

enum Owner {
    Pool(Block),
    /// Memory owned by someone else (an mmap'd file), kept alive by this handle.
    External(#[allow(dead_code)] Box<dyn Any + Send + Sync>),
}

// SAFETY: a Buffer's memory is either uniquely owned (Pool) or owned by a Send + Sync handle;
// writes only happen through `&mut Buffer` before it is shared.
unsafe impl Send for Buffer {}
unsafe impl Sync for Buffer {}

impl Buffer {
    /// A buffer of `len` bytes whose contents are initialised but unspecified (recycled
    /// buffers keep old bytes). Fails if it would pass the memory limit.
    pub fn alloc(len: usize) -> Result<Buffer> {
        let capacity = size_class(len);
        let reused = {
            let mut cache = CACHE.lock().expect("allocator cache poisoned");
            cache.take(capacity)
        };
        let block = match reused {
            Some(b) => b,
            None => {
                let active = ACTIVE.load(Relaxed);
                let limit = MEMORY_LIMIT.load(Relaxed);
                if active + capacity > limit {
                    clear_cache();
                    if ACTIVE.load(Relaxed) + capacity > limit {
                        return Err(Error::Memory(format!(
                            "allocating {capacity} bytes would pass the memory limit of {limit} \
                             bytes ({active} active)"
                        )));
                    }
                }
                Block::allocate(capacity)?
            }
        };
        let active = ACTIVE.fetch_add(block.capacity, Relaxed) + block.capacity;
        PEAK.fetch_max(active, Relaxed);
        Ok(Buffer { ptr: block.ptr, len, owner: Owner::Pool(block) })
    }

    /// A buffer of `len` zero bytes.
    pub fn zeroed(len: usize) -> Result<Buffer> {
        let mut b = Buffer::alloc(len)?;
        b.bytes_mut().fill(0);
        Ok(b)
    }

    /// Wraps `len` bytes at `ptr` owned by `owner`, without copying.
    ///
    /// # Safety
    /// `ptr..ptr+len` must be readable and unchanging for as long as `owner` lives.
    pub unsafe fn from_external(
        ptr: NonNull<u8>,
        len: usize,
        owner: Box<dyn Any + Send + Sync>,
    ) -> Buffer {
        Buffer { ptr, len, owner: Owner::External(owner) }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// True for wrapped external memory, which is read-only.
    pub fn is_external(&self) -> bool {
        matches!(self.owner, Owner::External(_))
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    pub fn bytes(&self) -> &[u8] {
        // SAFETY: ptr..ptr+len is initialised memory owned by (or kept alive by) self.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// Mutable bytes; external (read-only) memory is never handed out mutably.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        assert!(matches!(self.owner, Owner::Pool(_)), "external buffers are read-only");
        // SAFETY: a pool block is uniquely owned by self and `&mut self` is exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        if let Owner::Pool(block) =
            std::mem::replace(&mut self.owner, Owner::External(Box::new(())))
        {
            ACTIVE.fetch_sub(block.capacity, Relaxed);
            let mut cache = CACHE.lock().expect("allocator cache poisoned");
            cache.put(block);
        }
    }
}

impl Cache {
    fn take(&mut self, capacity: usize) -> Option<Block> {
        let list = self.free.get_mut(&capacity)?;
        let (_, block) = list.pop()?;
        if list.is_empty() {
            self.free.remove(&capacity);
        }
        self.bytes -= block.capacity;
        Some(block)
    }

    fn put(&mut self, block: Block) {
        let limit = CACHE_LIMIT.load(Relaxed);
        if block.capacity > limit {
            block.release();
            return;
        }
        self.tick += 1;
        self.bytes += block.capacity;
        self.free.entry(block.capacity).or_default().push((self.tick, block));
        while self.bytes > limit {
            self.evict_oldest();
        }
    }

    /// Frees the least recently cached block.
    fn evict_oldest(&mut self) {
        let Some(cap) = self
            .free
            .iter()
            .filter_map(|(&cap, list)| list.first().map(|(t, _)| (*t, cap)))
            .min()
            .map(|(_, cap)| cap)
        else {
            return;
        };
        let list = self.free.get_mut(&cap).expect("present");
        let (_, block) = list.remove(0);
        if list.is_empty() {
            self.free.remove(&cap);
        }
        self.bytes -= block.capacity;
        block.release();
    }
}

/// Bytes held by live arrays.
pub fn get_active_memory() -> usize {
    ACTIVE.load(Relaxed)
}

/// The most bytes held by live arrays since start or the last `reset_peak_memory`.
pub fn get_peak_memory() -> usize {
    PEAK.load(Relaxed)
}

pub fn reset_peak_memory() {
    PEAK.store(ACTIVE.load(Relaxed), Relaxed);
}

/// Bytes of freed buffers kept for reuse.
pub fn get_cache_memory() -> usize {
    CACHE.lock().expect("allocator cache poisoned").bytes
}

/// Sets the memory limit (bytes) and returns the previous one. Evaluation that would pass it
/// fails with an error.
pub fn set_memory_limit(limit: usize) -> usize {
    MEMORY_LIMIT.swap(limit, Relaxed)
}

pub fn get_memory_limit() -> usize {
    MEMORY_LIMIT.load(Relaxed)
}

/// Sets the cache limit (bytes) and returns the previous one; `0` disables the cache.
pub fn set_cache_limit(limit: usize) -> usize {
    let old = CACHE_LIMIT.swap(limit, Relaxed);
    let mut cache = CACHE.lock().expect("allocator cache poisoned");
    while cache.bytes > limit {
        cache.evict_oldest();
    }
    old
}

/// Frees every cached buffer, and hands the free memory of the C heap back to the system
/// (glibc keeps what a large parse freed: ~11 MB after building a model's tokenizer).
pub fn clear_cache() {
    let mut cache = CACHE.lock().expect("allocator cache poisoned");
    while cache.bytes > 0 {
        cache.evict_oldest();
    }
    drop(cache);
    trim_heap();
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim_heap() {
    // SAFETY: malloc_trim only returns pages of free heap chunks to the kernel; it moves and
    // frees no live allocation.
    unsafe { libc::malloc_trim(0) };
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim_heap() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_classes_round_up() {
        assert_eq!(size_class(1), 64);
        assert_eq!(size_class(100), 128);
        assert_eq!(size_class(5000), 8192);
        assert_eq!(size_class(3 << 20), 4 << 20);
    }

    #[test]
    fn huge_buffers_are_aligned_zeroed_and_writable() {
        let mut b = Buffer::alloc(3 << 20).unwrap();
        assert_eq!(b.as_ptr() as usize % HUGE_PAGE, 0);
        assert!(b.bytes().iter().all(|&x| x == 0) || b.len() == 3 << 20);
        b.bytes_mut()[(3 << 20) - 1] = 7;
        assert_eq!(b.bytes()[(3 << 20) - 1], 7);
    }

    #[test]
    fn external_buffer_reads_without_copy() {
        let data: Box<[u8]> = vec![1u8, 2, 3].into_boxed_slice();
        let ptr = NonNull::new(data.as_ptr() as *mut u8).unwrap();
        // SAFETY: the boxed slice is moved into the buffer as its owner and never mutated.
        let b = unsafe { Buffer::from_external(ptr, 3, Box::new(data)) };
        assert_eq!(b.bytes(), &[1, 2, 3]);
        assert_eq!(b.as_ptr(), ptr.as_ptr());
    }
}
