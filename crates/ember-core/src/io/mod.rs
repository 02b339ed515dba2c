//! Array I/O: safetensors (memory-mapped, zero-copy), NumPy `.npy`/`.npz`, and GGUF reading.
//!
//! Loaders never trust a file: every length, offset and count is checked, with overflow-checked
//! arithmetic, against the file's size before anything is allocated or read, and every problem
//! is an `Error::File` naming the file and the field. Loaded arrays are ready (no graph);
//! mapped ones keep the file mapping alive while any array uses it. Element data is
//! little-endian, as these formats store it on every platform ember targets.

pub mod gguf;
mod huge_pages;
mod npy;
mod safetensors;

pub use self::npy::{load_npy, load_npz, save_npy, save_npz, save_npz_compressed};
pub use self::safetensors::{load_safetensors, save_safetensors};

use crate::array::{Array, ReadyArray};
use crate::backend::cpu::layout::to_contiguous;
use crate::buffer::Buffer;
use crate::dtype::Dtype;
use crate::{Error, Result};
use memmap2::Mmap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::Arc;

/// A read-only memory map of the whole file at `path`.
fn map_file(path: &Path) -> Result<Arc<Mmap>> {
    let file =
        std::fs::File::open(path).map_err(|e| Error::file(path, format!("cannot open: {e}")))?;
    // SAFETY: the map is read-only. Like every mmap-based loader we rely on the file not
    // being truncated or rewritten in place while mapped (the public loaders document this;
    // ember's own savers write a new file and rename it over the old one).
    let map =
        unsafe { Mmap::map(&file) }.map_err(|e| Error::file(path, format!("cannot map: {e}")))?;
    Ok(Arc::new(map))
}

/// The first `len` bytes of the file at `path`, as a uint8 array sharing a read-only map of
/// it, in 2 MiB pages where the system allows (as [`gguf::GgufFile::map_in_huge_pages`]).
/// The file must not be rewritten in place while mapped (write a new one and rename it).
pub fn map_bytes(path: &Path, len: usize) -> Result<Array> {
    let map = map_file(path)?;
    let Some(bytes) = map.get(..len) else {
        return Err(Error::file(path, format!("{} bytes, expected at least {len}", map.len())));
    };
    huge_pages::map_in_huge_pages(&map, 0, path);
    mapped_array(&map, bytes, vec![len], Dtype::Uint8)
}

/// An array of `dtype` and `shape` over `bytes`, a range of `map`. It shares the mapped memory
/// when `bytes` is aligned for `dtype` and is a copy otherwise.
fn mapped_array(map: &Arc<Mmap>, bytes: &[u8], shape: Vec<usize>, dtype: Dtype) -> Result<Array> {
    debug_assert!(map.as_ptr_range().start <= bytes.as_ptr());
    debug_assert!(bytes.as_ptr_range().end <= map.as_ptr_range().end);
    let buffer = if (bytes.as_ptr() as usize).is_multiple_of(dtype.size()) {
        let ptr = NonNull::new(bytes.as_ptr() as *mut u8).expect("slice pointers are non-null");
        // SAFETY: `bytes` lies inside `map`, which stays mapped (read-only) for as long as the
        // buffer holds its Arc as owner; external buffers are never written through.
        unsafe { Buffer::from_external(ptr, bytes.len(), Box::new(map.clone())) }
    } else {
        copied(bytes)?
    };
    Ok(Array::from_ready(ReadyArray::contiguous(buffer, shape, dtype)))
}

/// The bytes of an array of `shape` and `dtype`, or `None` when its extents overflow (even an
/// empty array's strides must fit in `isize`).
fn byte_len(shape: &[usize], dtype: Dtype) -> Option<usize> {
    let extent = shape.iter().try_fold(dtype.size(), |acc, &d| acc.checked_mul(d.max(1)))?;
    (extent <= isize::MAX as usize).then(|| shape.iter().product::<usize>() * dtype.size())
}

/// A new (aligned) buffer holding a copy of `bytes`.
fn copied(bytes: &[u8]) -> Result<Buffer> {
    let mut buffer = Buffer::alloc(bytes.len())?;
    buffer.bytes_mut().copy_from_slice(bytes);
    Ok(buffer)
}

/// The index of the first byte of a bool array that is neither 0 nor 1.
fn invalid_bool(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b > 1)
}

/// `x` computed, as a contiguous array (copied if it was a strided view).
fn contiguous_data(x: &Array) -> Result<ReadyArray> {
    to_contiguous(&x.ready()?)
}

/// The element bytes of a contiguous array.
fn data_bytes(x: &ReadyArray) -> &[u8] {
    let size = x.dtype.size();
    &x.buffer.bytes()[x.offset * size..][..x.size() * size]
}

/// `path` with `.ext` appended unless it already ends with it (MLX's savers do this).
fn with_extension(path: &Path, ext: &str) -> PathBuf {
    if path.extension().is_some_and(|e| e == ext) {
        return path.to_path_buf();
    }
    let mut s = OsString::from(path.as_os_str());
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

/// Rejects repeated names among arrays to be saved.
fn check_unique_names(path: &Path, names: impl Iterator<Item = impl AsRef<str>>) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for name in names {
        if !seen.insert(name.as_ref().to_string()) {
            return Err(Error::file(
                path,
                format!("array name `{}` is given twice", name.as_ref()),
            ));
        }
    }
    Ok(())
}
