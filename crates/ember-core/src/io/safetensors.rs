//! safetensors: an 8-byte little-endian header length, a JSON header (dtype, shape and data
//! offsets per tensor, plus string metadata), then the tensors' bytes. Loading maps the file
//! and wraps each tensor's bytes without copying (copying only a tensor misaligned for its
//! dtype); saving writes through the `safetensors` crate (to a new file renamed into place).

use super::{
    byte_len, check_unique_names, contiguous_data, data_bytes, invalid_bool, map_file,
    mapped_array, with_extension,
};
use crate::array::Array;
use crate::dtype::Dtype;
use crate::{Error, Result};
use ::safetensors::tensor::Metadata;
use ::safetensors::{Dtype as StDtype, View};
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

/// The largest header accepted, as the safetensors crate's own limit.
const MAX_HEADER: u64 = 100_000_000;

fn to_dtype(d: StDtype) -> Option<Dtype> {
    Some(match d {
        StDtype::BOOL => Dtype::Bool,
        StDtype::U8 => Dtype::Uint8,
        StDtype::U16 => Dtype::Uint16,
        StDtype::U32 => Dtype::Uint32,
        StDtype::U64 => Dtype::Uint64,
        StDtype::I8 => Dtype::Int8,
        StDtype::I16 => Dtype::Int16,
        StDtype::I32 => Dtype::Int32,
        StDtype::I64 => Dtype::Int64,
        StDtype::F16 => Dtype::Float16,
        StDtype::BF16 => Dtype::Bfloat16,
        StDtype::F32 => Dtype::Float32,
        StDtype::F64 => Dtype::Float64,
        _ => return None,
    })
}

fn from_dtype(d: Dtype) -> StDtype {
    match d {
        Dtype::Bool => StDtype::BOOL,
        Dtype::Uint8 => StDtype::U8,
        Dtype::Uint16 => StDtype::U16,
        Dtype::Uint32 => StDtype::U32,
        Dtype::Uint64 => StDtype::U64,
        Dtype::Int8 => StDtype::I8,
        Dtype::Int16 => StDtype::I16,
        Dtype::Int32 => StDtype::I32,
        Dtype::Int64 => StDtype::I64,
        Dtype::Float16 => StDtype::F16,
        Dtype::Bfloat16 => StDtype::BF16,
        Dtype::Float32 => StDtype::F32,
        Dtype::Float64 => StDtype::F64,
    }
}

/// Loads every tensor of a safetensors file, and its `__metadata__` strings (empty when
/// absent).
///
/// The file is memory-mapped and arrays share its pages (zero copy): it must not be modified
/// while arrays loaded from it are alive.
pub fn load_safetensors(
    path: impl AsRef<Path>,
) -> Result<(HashMap<String, Array>, HashMap<String, String>)> {
    let path = path.as_ref();
    let bad = |msg: String| Error::file(path, msg);
    let map = map_file(path)?;
    let file_len = map.len() as u64;
    let Some(len_bytes) = map.get(..8) else {
        return Err(bad(format!("header length: file has {file_len} bytes, fewer than 8")));
    };
    let header_len = u64::from_le_bytes(len_bytes.try_into().expect("8 bytes"));
    if header_len > MAX_HEADER || header_len > file_len - 8 {
        return Err(bad(format!(
            "header length {header_len} runs past the end of the file ({file_len} bytes)"
        )));
    }
    let data_start = 8 + header_len as usize;
    let header = std::str::from_utf8(&map[8..data_start])
        .map_err(|e| bad(format!("header is not UTF-8: {e}")))?;
    // The crate's Metadata checks that offsets are contiguous and match each shape and dtype,
    // with checked arithmetic; the end of the data is checked against the file here.
    let meta: Metadata = serde_json::from_str(header).map_err(|e| bad(format!("header: {e}")))?;
    let data = &map[data_start..];
    if meta.data_len() != data.len() {
        return Err(bad(format!(
            "header describes {} bytes of tensor data, file holds {}",
            meta.data_len(),
            data.len()
        )));
    }
    let mut arrays = HashMap::new();
    for (name, info) in meta.tensors() {
        let dtype = to_dtype(info.dtype).ok_or_else(|| {
            bad(format!("tensor `{name}`: dtype {:?} is not supported", info.dtype))
        })?;
        if byte_len(&info.shape, dtype).is_none() {
            return Err(bad(format!("tensor `{name}`: shape {:?} is too large", info.shape)));
        }
        let (start, end) = info.data_offsets;
        let bytes = &data[start..end];
        if dtype == Dtype::Bool {
            if let Some(i) = invalid_bool(bytes) {
                return Err(bad(format!(
                    "tensor `{name}`: bool element {i} is {}, not 0 or 1",
                    bytes[i]
                )));
            }
        }
        let array = mapped_array(&map, bytes, info.shape.clone(), dtype)?;
        arrays.insert(name, array);
    }
    let metadata = meta.metadata().clone().unwrap_or_default();
    Ok((arrays, metadata.into_iter().collect()))
}

/// One tensor's bytes for the writer.
struct TensorBytes<'a> {
    dtype: StDtype,
    shape: &'a [usize],
    data: &'a [u8],
}

impl View for TensorBytes<'_> {
    fn dtype(&self) -> StDtype {
        self.dtype
    }

    fn shape(&self) -> &[usize] {
        self.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(self.data)
    }

    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// Evaluates `arrays` and saves them, with optional string `metadata`, as a safetensors file.
/// `.safetensors` is appended to `path` unless it already ends with it, as MLX does.
pub fn save_safetensors(
    path: impl AsRef<Path>,
    arrays: &[(&str, &Array)],
    metadata: Option<&HashMap<String, String>>,
) -> Result<()> {
    let path = with_extension(path.as_ref(), "safetensors");
    check_unique_names(&path, arrays.iter().map(|(n, _)| n))?;
    let handles: Vec<&Array> = arrays.iter().map(|(_, a)| *a).collect();
    crate::eval(&handles)?;
    let data = handles.iter().map(|a| contiguous_data(a)).collect::<Result<Vec<_>>>()?;
    let views = arrays.iter().zip(&data).map(|((name, _), d)| {
        (*name, TensorBytes { dtype: from_dtype(d.dtype), shape: &d.shape, data: data_bytes(d) })
    });
    let metadata = metadata.map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
    ::safetensors::serialize_to_file(views, metadata, &path)
        .map_err(|e| Error::file(&path, format!("cannot write: {e}")))
}
