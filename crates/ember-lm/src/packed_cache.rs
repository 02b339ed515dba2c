//! Packed weights kept on disk. Packing a model's quantized matrices for the VNNI kernels
//! makes a fresh copy of them at every load, and fresh memory is what a VM is slowest to give:
//! while the host backs the pages, faulting them in costs about 2 ms per 2 MiB (Q4_1
//! SmolLM2-135M loaded in 0.05 s right after another load, 0.11-0.16 s after a pause). So the
//! packed bytes are written once into ember's cache, and later loads map that file from the
//! page cache, as they map the model file itself.
//!
//! An entry is the packed bytes followed by a trailer naming what they were made from: the
//! model file's size and modification time, a digest of the placement (every matrix's name,
//! type, size, offset and layout, and the packing's version) and the byte count. An entry
//! whose trailer differs is rewritten, never trusted; entries are written under a temporary
//! name and renamed, so that no reader sees half of one.

use crate::weights::read_at;
use ember_core::io::map_bytes;
use ember_core::Array;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::UNIX_EPOCH;

const MAGIC: &[u8; 8] = b"EMBPACK1";
/// Entries this process has begun to write (names their temporary files).
static WRITERS: AtomicUsize = AtomicUsize::new(0);
/// Magic, then five little-endian u64: model size, modification seconds and nanoseconds,
/// placement digest, packed byte count.
pub(crate) const TRAILER_LEN: usize = 8 + 5 * 8;

/// One model's entry in the cache directory.
pub(crate) struct PackedCache {
    file: PathBuf,
    trailer: [u8; TRAILER_LEN],
    len: usize,
}

impl PackedCache {
    /// The entry in `dir` for the `len` packed bytes of `model` placed as `placement` (a
    /// digest, see [`Digest`]); `None` when the model file's metadata cannot be read.
    pub(crate) fn new(dir: &Path, model: &Path, placement: u64, len: usize) -> Option<PackedCache> {
        let model = std::fs::canonicalize(model).ok()?;
        let meta = std::fs::metadata(&model).ok()?;
        let modified = meta.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
        let mut trailer = [0u8; TRAILER_LEN];
        trailer[..8].copy_from_slice(MAGIC);
        let fields =
            [meta.len(), modified.as_secs(), modified.subsec_nanos().into(), placement, len as u64];
        for (slot, v) in trailer[8..].chunks_exact_mut(8).zip(fields) {
            slot.copy_from_slice(&v.to_le_bytes());
        }
        let mut name = Digest::default();
        name.add(model.as_os_str().as_encoded_bytes());
        Some(PackedCache { file: dir.join(format!("{:016x}.packed", name.0)), trailer, len })
    }

    /// The packed bytes, mapped, when the entry exists and was made from this model file and
    /// placement.
    pub(crate) fn load(&self) -> Option<Array> {
        let file = File::open(&self.file).ok()?;
        if file.metadata().ok()?.len() != (self.len + TRAILER_LEN) as u64 {
            return None;
        }
        let mut trailer = [0u8; TRAILER_LEN];
        read_at(&file, &mut trailer, self.len).ok()?;
        if trailer != self.trailer {
            return None;
        }
        map_bytes(&self.file, self.len).ok()
    }

    /// Writes `packed` (its `len` bytes, evaluated) as the entry.
    pub(crate) fn store(&self, packed: &Array) -> std::io::Result<()> {
        let ready = packed.ready().map_err(std::io::Error::other)?;
        let bytes = ready.buffer.bytes().get(..self.len).ok_or_else(|| {
            std::io::Error::other(format!(
                "{} packed bytes, expected {}",
                ready.buffer.len(),
                self.len
            ))
        })?;
        if let Some(dir) = self.file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        // A name of this writer's own: loads in other threads may be writing the same entry.
        let writer = WRITERS.fetch_add(1, Ordering::Relaxed);
        let temporary = self.file.with_extension(format!("{}-{writer}.tmp", std::process::id()));
        let written = (|| {
            let mut out = File::create(&temporary)?;
            out.write_all(bytes)?;
            out.write_all(&self.trailer)?;
            // On disk before it is renamed: a crash must not leave a whole-looking entry.
            out.sync_all()?;
            std::fs::rename(&temporary, &self.file)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&temporary);
        }
        written
    }
}

/// FNV-1a (64-bit): a digest that stays the same across builds and platforms, unlike std's
/// hashers.
#[derive(Clone, Copy)]
pub(crate) struct Digest(pub(crate) u64);

impl Default for Digest {
    fn default() -> Digest {
        Digest(0xcbf2_9ce4_8422_2325)
    }
}

impl Digest {
    pub(crate) fn add(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Digest;

    #[test]
    fn digest_is_fnv1a() {
        // The FNV-1a test vectors for "" and "a".
        assert_eq!(Digest::default().0, 0xcbf2_9ce4_8422_2325);
        let mut d = Digest::default();
        d.add(b"a");
        assert_eq!(d.0, 0xaf63_dc4c_8601_ec8c);
    }
}
