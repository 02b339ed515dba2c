//! GGUF reading (llama.cpp's model format, versions 2 and 3) over a memory map.
//!
//! Layout: magic `GGUF`, version (u32), tensor count and metadata count (u64), the typed
//! metadata key-values, the tensor infos (name, dims in ggml order with the fastest-varying
//! first, ggml type, offset), then the tensor data from the first multiple of
//! `general.alignment` (default 32) after the infos. Shapes here are row-major (NumPy order:
//! ggml dims reversed). Plain-typed tensors load as arrays sharing the mapped file; quantized
//! ones are reachable as raw blocks, and Q8_0/Q4_0/Q4_1/Q4_K/Q6_K dequantize to f32.

use super::{byte_len, map_file, mapped_array};
use crate::array::{new_output, Array};
use crate::dtype::Dtype;
use crate::{Error, Result};
use memmap2::Mmap;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use ember_cpu::ggml::GgmlType;

/// Nesting deeper than this is refused (real files nest arrays at most once).
const MAX_ARRAY_DEPTH: usize = 8;
/// ggml tensors have at most four dimensions.
const MAX_DIMS: usize = 4;
const DEFAULT_ALIGNMENT: usize = 32;

/// A metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum GgufValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(GgufArray),
    U64(u64),
    I64(i64),
    F64(f64),
}

/// A metadata array: elements of one type, stored compactly.
#[derive(Clone, Debug, PartialEq)]
pub enum GgufArray {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    F32(Vec<f32>),
    Bool(Vec<bool>),
    String(Vec<String>),
    Array(Vec<GgufArray>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F64(Vec<f64>),
}

impl GgufValue {
    /// An integer value of any width, if it is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            GgufValue::U8(v) => Some(v as u64),
            GgufValue::U16(v) => Some(v as u64),
            GgufValue::U32(v) => Some(v as u64),
            GgufValue::U64(v) => Some(v),
            _ => self.as_i64().and_then(|v| u64::try_from(v).ok()),
        }
    }

    /// An integer value of any width that fits an i64.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            GgufValue::I8(v) => Some(v as i64),
            GgufValue::I16(v) => Some(v as i64),
            GgufValue::I32(v) => Some(v as i64),
            GgufValue::I64(v) => Some(v),
            GgufValue::U8(_) | GgufValue::U16(_) | GgufValue::U32(_) | GgufValue::U64(_) => {
                self.as_u64().and_then(|v| i64::try_from(v).ok())
            }
            _ => None,
        }
    }

    /// Any numeric value as f64.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            GgufValue::F32(v) => Some(v as f64),
            GgufValue::F64(v) => Some(v),
            _ => self.as_i64().map(|v| v as f64).or_else(|| self.as_u64().map(|v| v as f64)),
        }
    }

    /// A bool value.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            GgufValue::Bool(v) => Some(v),
            _ => None,
        }
    }

    /// A string value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// An array value.
    pub fn as_array(&self) -> Option<&GgufArray> {
        match self {
            GgufValue::Array(a) => Some(a),
            _ => None,
        }
    }
}

impl GgufArray {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            GgufArray::U8(v) => v.len(),
            GgufArray::I8(v) => v.len(),
            GgufArray::U16(v) => v.len(),
            GgufArray::I16(v) => v.len(),
            GgufArray::U32(v) => v.len(),
            GgufArray::I32(v) => v.len(),
            GgufArray::F32(v) => v.len(),
            GgufArray::Bool(v) => v.len(),
            GgufArray::String(v) => v.len(),
            GgufArray::Array(v) => v.len(),
            GgufArray::U64(v) => v.len(),
            GgufArray::I64(v) => v.len(),
            GgufArray::F64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The strings of a string array (tokenizer vocabularies, merges).
    pub fn as_strings(&self) -> Option<&[String]> {
        match self {
            GgufArray::String(v) => Some(v),
            _ => None,
        }
    }
}

/// Where one tensor lives and what it holds.
#[derive(Clone, Debug, PartialEq)]
pub struct GgufTensorInfo {
    pub name: String,
    pub ggml_type: GgmlType,
    /// Row-major shape: ggml's dims reversed, so the last axis is the block-quantized one.
    pub shape: Vec<usize>,
    /// Start of the data, relative to the data section.
    pub offset: usize,
    /// Bytes of data.
    pub nbytes: usize,
}

/// A tensor's raw bytes inside the mapped file (for quantized types, whole blocks).
#[derive(Clone, Copy, Debug)]
pub struct GgufTensor<'a> {
    pub name: &'a str,
    pub ggml_type: GgmlType,
    pub shape: &'a [usize],
    pub bytes: &'a [u8],
}

/// An open GGUF file: parsed metadata and tensor infos over a memory map of the file.
pub struct GgufFile {
    path: PathBuf,
    map: Arc<Mmap>,
    version: u32,
    metadata: Vec<(String, GgufValue)>,
    keys: HashMap<String, usize>,
    tensors: Vec<GgufTensorInfo>,
    names: HashMap<String, usize>,
    alignment: usize,
    data_offset: usize,
}

/// A bounds-checked little-endian cursor; errors name the field being read.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

type Parse<T> = std::result::Result<T, String>;

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &str) -> Parse<&'a [u8]> {
        if n > self.remaining() {
            return Err(format!(
                "{what}: needs {n} bytes at offset {}, the file ends at {}",
                self.pos,
                self.bytes.len()
            ));
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Parse<[u8; N]> {
        Ok(self.take(N, what)?.try_into().expect("took N bytes"))
    }

    fn u32(&mut self, what: &str) -> Parse<u32> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &str) -> Parse<u64> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// A count whose items each take at least `min_bytes`, checked against what remains.
    fn count(&mut self, min_bytes: usize, what: &str) -> Parse<usize> {
        let n = self.u64(what)?;
        if n > (self.remaining() / min_bytes.max(1)) as u64 {
            return Err(format!(
                "{what}: {n} entries cannot fit in the {} bytes left",
                self.remaining()
            ));
        }
        Ok(n as usize)
    }

    fn string(&mut self, what: &str) -> Parse<String> {
        let len = self.u64(what)?;
        if len > self.remaining() as u64 {
            return Err(format!("{what}: string of {len} bytes runs past the end of the file"));
        }
        let bytes = self.take(len as usize, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| format!("{what}: string is not UTF-8"))
    }
}

/// Bytes one element of value type `ty` takes at least (for count checks).
fn min_size(ty: u32) -> Option<usize> {
    Some(match ty {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        8 | 10..=12 => 8,
        9 => 12,
        _ => return None,
    })
}

macro_rules! numbers {
    ($c:expr, $n:expr, $t:ty, $what:expr) => {{
        const SIZE: usize = std::mem::size_of::<$t>();
        let bytes = $c.take($n * SIZE, $what)?;
        bytes
            .chunks_exact(SIZE)
            .map(|b| <$t>::from_le_bytes(b.try_into().expect("sized")))
            .collect()
    }};
}

fn read_bool(byte: u8, what: &str) -> Parse<bool> {
    match byte {
        0 | 1 => Ok(byte == 1),
        b => Err(format!("{what}: bool is {b}, not 0 or 1")),
    }
}

fn read_value(c: &mut Cursor, ty: u32, depth: usize, what: &str) -> Parse<GgufValue> {
    Ok(match ty {
        0 => GgufValue::U8(c.array::<1>(what)?[0]),
        1 => GgufValue::I8(c.array::<1>(what)?[0] as i8),
        2 => GgufValue::U16(u16::from_le_bytes(c.array(what)?)),
        3 => GgufValue::I16(i16::from_le_bytes(c.array(what)?)),
        4 => GgufValue::U32(c.u32(what)?),
        5 => GgufValue::I32(i32::from_le_bytes(c.array(what)?)),
        6 => GgufValue::F32(f32::from_le_bytes(c.array(what)?)),
        7 => GgufValue::Bool(read_bool(c.array::<1>(what)?[0], what)?),
        8 => GgufValue::String(c.string(what)?),
        9 => GgufValue::Array(read_array(c, depth + 1, what)?),
        10 => GgufValue::U64(c.u64(what)?),
        11 => GgufValue::I64(i64::from_le_bytes(c.array(what)?)),
        12 => GgufValue::F64(f64::from_le_bytes(c.array(what)?)),
        t => return Err(format!("{what}: unknown value type {t}")),
    })
}

fn read_array(c: &mut Cursor, depth: usize, what: &str) -> Parse<GgufArray> {
    if depth > MAX_ARRAY_DEPTH {
        return Err(format!("{what}: arrays nested deeper than {MAX_ARRAY_DEPTH}"));
    }
    let ty = c.u32(what)?;
    let min = min_size(ty).ok_or_else(|| format!("{what}: unknown array element type {ty}"))?;
    let n = c.count(min, what)?;
    Ok(match ty {
        0 => GgufArray::U8(c.take(n, what)?.to_vec()),
        1 => GgufArray::I8(c.take(n, what)?.iter().map(|&b| b as i8).collect()),
        2 => GgufArray::U16(numbers!(c, n, u16, what)),
        3 => GgufArray::I16(numbers!(c, n, i16, what)),
        4 => GgufArray::U32(numbers!(c, n, u32, what)),
        5 => GgufArray::I32(numbers!(c, n, i32, what)),
        6 => GgufArray::F32(numbers!(c, n, f32, what)),
        7 => GgufArray::Bool(
            c.take(n, what)?.iter().map(|&b| read_bool(b, what)).collect::<Parse<_>>()?,
        ),
        8 => GgufArray::String((0..n).map(|_| c.string(what)).collect::<Parse<_>>()?),
        9 => {
            GgufArray::Array((0..n).map(|_| read_array(c, depth + 1, what)).collect::<Parse<_>>()?)
        }
        10 => GgufArray::U64(numbers!(c, n, u64, what)),
        11 => GgufArray::I64(numbers!(c, n, i64, what)),
        _ => GgufArray::F64(numbers!(c, n, f64, what)),
    })
}

fn read_tensor_info(c: &mut Cursor, index: usize) -> Parse<(GgufTensorInfo, u64)> {
    let what = format!("tensor info #{index}");
    let name = c.string(&format!("{what} name"))?;
    let what = format!("tensor `{name}`");
    let n_dims = c.u32(&format!("{what} dimension count"))? as usize;
    if n_dims > MAX_DIMS {
        return Err(format!("{what}: {n_dims} dimensions, ggml allows at most {MAX_DIMS}"));
    }
    let mut shape = Vec::with_capacity(n_dims);
    for _ in 0..n_dims {
        let d = c.u64(&format!("{what} dimensions"))?;
        shape.push(usize::try_from(d).map_err(|_| format!("{what}: dimension {d} is too large"))?);
    }
    let id = c.u32(&format!("{what} type"))?;
    let ggml_type =
        GgmlType::from_id(id).ok_or_else(|| format!("{what}: unknown ggml type {id}"))?;
    let offset = c.u64(&format!("{what} offset"))?;
    if ggml_type.is_quantized() && shape.is_empty() {
        return Err(format!("{what}: a {} tensor needs at least one dimension", ggml_type.name()));
    }
    // ggml's ne[0] (the row) is first in the file and must hold whole blocks.
    if shape.first().is_some_and(|&row| row % ggml_type.block_size() != 0) {
        return Err(format!(
            "{what}: row of {} values is not a multiple of the {} block size {}",
            shape[0],
            ggml_type.name(),
            ggml_type.block_size()
        ));
    }
    shape.reverse();
    // Bytes = blocks * block bytes; counted like a uint8 array of `blocks * type_size`
    // elements so that the extents are overflow-checked.
    let mut blocks: Vec<usize> = shape.clone();
    if let Some(last) = blocks.last_mut() {
        *last /= ggml_type.block_size();
    }
    let nbytes = blocks
        .iter()
        .try_fold(ggml_type.type_size(), |acc, &d| acc.checked_mul(d))
        .filter(|_| byte_len(&shape, Dtype::Uint8).is_some())
        .ok_or_else(|| format!("{what}: shape {shape:?} is too large"))?;
    let info = GgufTensorInfo { name, ggml_type, shape, offset: 0, nbytes };
    Ok((info, offset))
}

impl GgufFile {
    /// Opens and parses a GGUF file (version 2 or 3). The file is memory-mapped: it must not
    /// be modified while the `GgufFile` or arrays loaded from it are alive.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile> {
        let path = path.as_ref();
        let map = map_file(path)?;
        Self::parse(path, map).map_err(|msg| Error::file(path, msg))
    }

    fn parse(path: &Path, map: Arc<Mmap>) -> Parse<GgufFile> {
        let mut c = Cursor { bytes: &map, pos: 0 };
        if c.take(4, "magic")? != b"GGUF" {
            return Err("magic: not a GGUF file".into());
        }
        let version = c.u32("version")?;
        if !(2..=3).contains(&version) {
            let hint = if (2..=3).contains(&version.swap_bytes()) {
                " (big-endian files are not supported)"
            } else {
                ""
            };
            return Err(format!("version {version} is not supported, only 2 and 3{hint}"));
        }
        let tensor_count = c.u64("tensor count")?;
        // Each metadata entry takes at least a key length, a type and one byte.
        let kv_count = c.count(13, "metadata count")?;
        if tensor_count > (c.remaining() / 24) as u64 {
            return Err(format!("tensor count: {tensor_count} tensors cannot fit in the file"));
        }
        let mut metadata = Vec::with_capacity(kv_count);
        let mut keys = HashMap::with_capacity(kv_count);
        for i in 0..kv_count {
            let key = c.string(&format!("metadata key #{i}"))?;
            let what = format!("metadata `{key}`");
            let ty = c.u32(&format!("{what} type"))?;
            let value = read_value(&mut c, ty, 0, &what)?;
            if keys.insert(key.clone(), metadata.len()).is_some() {
                return Err(format!("{what}: key appears twice"));
            }
            metadata.push((key, value));
        }
        let alignment = match keys.get("general.alignment").map(|&i| &metadata[i].1) {
            None => DEFAULT_ALIGNMENT,
            Some(GgufValue::U32(a)) if a.is_power_of_two() => *a as usize,
            Some(v) => {
                return Err(format!(
                    "metadata `general.alignment`: {v:?} is not a power of two u32"
                ))
            }
        };
        let mut tensors = Vec::with_capacity(tensor_count as usize);
        let mut offsets = Vec::with_capacity(tensor_count as usize);
        let mut names = HashMap::with_capacity(tensor_count as usize);
        for i in 0..tensor_count as usize {
            let (info, offset) = read_tensor_info(&mut c, i)?;
            if names.insert(info.name.clone(), i).is_some() {
                return Err(format!("tensor `{}`: name appears twice", info.name));
            }
            tensors.push(info);
            offsets.push(offset);
        }
        let data_offset = c.pos.div_ceil(alignment) * alignment;
        let file_len = map.len();
        for (info, offset) in tensors.iter_mut().zip(offsets) {
            if offset % alignment as u64 != 0 {
                return Err(format!(
                    "tensor `{}`: offset {offset} is not a multiple of the alignment {alignment}",
                    info.name
                ));
            }
            let end = usize::try_from(offset)
                .ok()
                .and_then(|o| o.checked_add(data_offset)?.checked_add(info.nbytes));
            if end.is_none_or(|e| e > file_len) {
                let (name, n) = (&info.name, info.nbytes);
                return Err(format!(
                    "tensor `{name}`: {n} bytes at data offset {offset} run past the end of the \
                     file ({file_len} bytes)"
                ));
            }
            info.offset = offset as usize;
        }
        Ok(GgufFile {
            path: path.to_path_buf(),
            map,
            version,
            metadata,
            keys,
            tensors,
            names,
            alignment,
            data_offset,
        })
    }

    /// Drops the file's pages from this process's resident memory. Model loaders call it once
    /// the model is built: parsing copied the metadata and small tensors are copies, so only
    /// views of the file (large tensors, matrices read in place) still use the map, and they
    /// fault their pages back in as they are read.
    pub fn release_resident_pages(&self) {
        #[cfg(unix)]
        // SAFETY: the map is read-only and shared with the file, so its pages hold no changes
        // to lose: a later read faults the same bytes back in from the page cache or the file.
        let _ = unsafe { self.map.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) };
    }

    /// Whether the tensor data is mapped in 2 MiB pages, so that matrices read in place cost
    /// no more TLB misses than copies in huge pages would. Where the page cache holds the file
    /// in small pages and the filesystem can cache it in 2 MiB ones (ext4 on Linux 6.16+, xfs),
    /// it drops the file's cached pages and reads them back that way, once for later loads too.
    pub fn map_in_huge_pages(&self) -> bool {
        super::huge_pages::map_in_huge_pages(&self.map, self.data_offset, &self.path)
    }

    /// The tensor data section as a uint8 array sharing the mapped file; tensor offsets
    /// ([`GgufTensorInfo::offset`]) index it.
    pub fn data_bytes(&self) -> Result<Array> {
        // A file without tensors may end before its (aligned) data offset.
        let bytes = &self.map[self.data_offset.min(self.map.len())..];
        mapped_array(&self.map, bytes, vec![bytes.len()], Dtype::Uint8)
    }

    /// The format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The alignment of tensor data (`general.alignment`, default 32).
    pub fn alignment(&self) -> usize {
        self.alignment
    }

    /// Where the data section starts in the file.
    pub fn data_offset(&self) -> usize {
        self.data_offset
    }

    /// Every metadata key-value, in file order.
    pub fn metadata(&self) -> &[(String, GgufValue)] {
        &self.metadata
    }

    /// The metadata value of `key`.
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.keys.get(key).map(|&i| &self.metadata[i].1)
    }

    /// Every tensor's info, in file order.
    pub fn tensor_infos(&self) -> &[GgufTensorInfo] {
        &self.tensors
    }

    fn info(&self, name: &str) -> Result<&GgufTensorInfo> {
        self.names
            .get(name)
            .map(|&i| &self.tensors[i])
            .ok_or_else(|| Error::file(&self.path, format!("no tensor `{name}`")))
    }

    /// A tensor's raw bytes (whole blocks for quantized types), type and shape.
    pub fn tensor_data(&self, name: &str) -> Result<GgufTensor<'_>> {
        let info = self.info(name)?;
        let start = self.data_offset + info.offset;
        Ok(GgufTensor {
            name: &info.name,
            ggml_type: info.ggml_type,
            shape: &info.shape,
            bytes: &self.map[start..start + info.nbytes],
        })
    }

    /// A plain-typed tensor (F32, F16, BF16, F64, I8..I64) as an array sharing the mapped
    /// file (copied only if misaligned). Quantized tensors are an error: see `raw` and
    /// `dequantize`.
    pub fn tensor(&self, name: &str) -> Result<Array> {
        let t = self.tensor_data(name)?;
        let dtype = match t.ggml_type {
            GgmlType::F32 => Dtype::Float32,
            GgmlType::F16 => Dtype::Float16,
            GgmlType::BF16 => Dtype::Bfloat16,
            GgmlType::F64 => Dtype::Float64,
            GgmlType::I8 => Dtype::Int8,
            GgmlType::I16 => Dtype::Int16,
            GgmlType::I32 => Dtype::Int32,
            GgmlType::I64 => Dtype::Int64,
            q => {
                return Err(Error::file(
                    &self.path,
                    format!(
                        "tensor `{name}` is {} (quantized): use raw() or dequantize()",
                        q.name()
                    ),
                ))
            }
        };
        mapped_array(&self.map, t.bytes, t.shape.to_vec(), dtype)
    }

    /// A tensor's raw bytes as a uint8 array sharing the mapped file, of shape
    /// `[..leading dims, bytes per row]`.
    pub fn raw(&self, name: &str) -> Result<Array> {
        let t = self.tensor_data(name)?;
        let mut shape = t.shape.to_vec();
        match shape.last_mut() {
            Some(row) => *row = *row / t.ggml_type.block_size() * t.ggml_type.type_size(),
            None => shape.push(t.bytes.len()),
        }
        mapped_array(&self.map, t.bytes, shape, Dtype::Uint8)
    }

    /// A tensor as float32: plain float types are converted, Q8_0, Q4_0, Q4_1, Q4_K and Q6_K
    /// blocks dequantized; other quantizations are an error for now.
    pub fn dequantize(&self, name: &str) -> Result<Array> {
        let t = self.tensor_data(name)?;
        if !t.ggml_type.is_quantized() {
            return self.tensor(name)?.astype(Dtype::Float32);
        }
        let out = new_output::<f32>(t.shape, |out| {
            if ember_cpu::ggml::dequantize(t.ggml_type, t.bytes, out) {
                Ok(())
            } else {
                Err(Error::file(
                    &self.path,
                    format!(
                        "tensor `{name}`: dequantizing {} is not supported yet (Q8_0, Q4_0, \
                         Q4_1, Q4_K, Q6_K are)",
                        t.ggml_type.name()
                    ),
                ))
            }
        })?;
        Ok(Array::from_ready(out))
    }
}
