//! NumPy `.npy` (one array) and `.npz` (a zip of `.npy` members, stored or deflated).
//!
//! A `.npy` file is `\x93NUMPY`, a version, a header length, a Python dict literal
//! `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }` padded to 64 bytes, then the
//! raw elements. Fortran-ordered data loads as a column-major view; big-endian and structured
//! dtypes are refused. bfloat16 is written and read as `<V2`, as MLX does. Headers are
//! written byte for byte as `np.save` writes them.

use super::{
    byte_len, check_unique_names, contiguous_data, data_bytes, invalid_bool, with_extension,
};
use crate::array::{contiguous_strides, Array, ReadyArray};
use crate::buffer::Buffer;
use crate::dtype::Dtype;
use crate::{Error, Result};
use std::collections::HashMap;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::sync::Arc;
use zip::write::SimpleFileOptions;
use zip::CompressionMethod;

const MAGIC: &[u8; 6] = b"\x93NUMPY";
/// Headers are small dicts; anything larger is not a NumPy header.
const MAX_HEADER: usize = 1 << 20;
/// Deflate cannot expand data more than 1032:1; a member claiming more is corrupt.
const MAX_DEFLATE_RATIO: u64 = 1032;

fn descr(dtype: Dtype) -> &'static str {
    match dtype {
        Dtype::Bool => "|b1",
        Dtype::Uint8 => "|u1",
        Dtype::Uint16 => "<u2",
        Dtype::Uint32 => "<u4",
        Dtype::Uint64 => "<u8",
        Dtype::Int8 => "|i1",
        Dtype::Int16 => "<i2",
        Dtype::Int32 => "<i4",
        Dtype::Int64 => "<i8",
        Dtype::Float16 => "<f2",
        Dtype::Bfloat16 => "<V2",
        Dtype::Float32 => "<f4",
        Dtype::Float64 => "<f8",
    }
}

fn parse_descr(d: &str) -> std::result::Result<Dtype, String> {
    let code = match d.as_bytes().first() {
        Some(b'<' | b'|' | b'=') => &d[1..],
        Some(b'>') if !matches!(&d[1..], "b1" | "u1" | "i1") => {
            return Err(format!("descr '{d}': big-endian data is not supported"))
        }
        Some(b'>') => &d[1..],
        _ => d,
    };
    Dtype::ALL
        .into_iter()
        .find(|&t| descr(t)[1..] == *code)
        .ok_or_else(|| format!("descr '{d}': dtype is not supported"))
}

/// What the header dict says.
struct Header {
    dtype: Dtype,
    fortran_order: bool,
    shape: Vec<usize>,
}

/// A cursor over the header dict literal.
struct Literal<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Literal<'_> {
    fn skip_space(&mut self) {
        while self.s.get(self.pos).is_some_and(|c| c.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    /// Consumes `c` (after spaces) if it comes next.
    fn eat(&mut self, c: u8) -> bool {
        self.skip_space();
        let found = self.s.get(self.pos) == Some(&c);
        self.pos += found as usize;
        found
    }

    fn expect(&mut self, c: u8) -> std::result::Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!("header: expected '{}' at byte {}", c as char, self.pos))
        }
    }

    fn string(&mut self) -> std::result::Result<String, String> {
        self.skip_space();
        let quote = match self.s.get(self.pos) {
            Some(&q @ (b'\'' | b'"')) => q,
            _ => return Err(format!("header: expected a string at byte {}", self.pos)),
        };
        let start = self.pos + 1;
        let len = self.s[start..]
            .iter()
            .position(|&c| c == quote)
            .ok_or_else(|| "header: unterminated string".to_string())?;
        self.pos = start + len + 1;
        Ok(String::from_utf8_lossy(&self.s[start..start + len]).into_owned())
    }

    fn word(&mut self) -> &[u8] {
        self.skip_space();
        let start = self.pos;
        while self.s.get(self.pos).is_some_and(|c| c.is_ascii_alphanumeric()) {
            self.pos += 1;
        }
        &self.s[start..self.pos]
    }

    fn boolean(&mut self) -> std::result::Result<bool, String> {
        match self.word() {
            b"True" => Ok(true),
            b"False" => Ok(false),
            w => Err(format!(
                "header: fortran_order must be True or False, got {:?}",
                String::from_utf8_lossy(w)
            )),
        }
    }

    /// A tuple of non-negative integers, as Python writes a shape (`()`, `(3,)`, `(2, 3)`).
    fn shape(&mut self) -> std::result::Result<Vec<usize>, String> {
        self.expect(b'(')?;
        let mut dims = vec![];
        while !self.eat(b')') {
            let w = self.word();
            let digits = w.strip_suffix(b"L").unwrap_or(w); // Python 2 longs
            let dim = std::str::from_utf8(digits)
                .ok()
                .filter(|d| !d.is_empty() && d.bytes().all(|c| c.is_ascii_digit()))
                .and_then(|d| d.parse::<usize>().ok())
                .ok_or_else(|| {
                    format!(
                        "header: shape entry {:?} is not a dimension",
                        String::from_utf8_lossy(w)
                    )
                })?;
            dims.push(dim);
            if !self.eat(b',') {
                self.expect(b')')?;
                break;
            }
        }
        Ok(dims)
    }
}

fn parse_header(text: &[u8]) -> std::result::Result<Header, String> {
    let mut lit = Literal { s: text, pos: 0 };
    let (mut dtype, mut fortran_order, mut shape) = (None, None, None);
    lit.expect(b'{')?;
    while !lit.eat(b'}') {
        let key = lit.string()?;
        lit.expect(b':')?;
        match key.as_str() {
            "descr" => {
                lit.skip_space();
                if lit.s.get(lit.pos) == Some(&b'[') {
                    return Err("descr: structured dtypes are not supported".into());
                }
                dtype = Some(parse_descr(&lit.string()?)?);
            }
            "fortran_order" => fortran_order = Some(lit.boolean()?),
            "shape" => shape = Some(lit.shape()?),
            other => return Err(format!("header: unexpected key '{other}'")),
        }
        if !lit.eat(b',') {
            lit.expect(b'}')?;
            break;
        }
    }
    match (dtype, fortran_order, shape) {
        (Some(dtype), Some(fortran_order), Some(shape)) => {
            Ok(Header { dtype, fortran_order, shape })
        }
        _ => Err("header: needs 'descr', 'fortran_order' and 'shape'".into()),
    }
}

/// Reads one `.npy` stream of at most `len` bytes. Errors start with `what` (empty, or the
/// npz member).
fn read_npy(r: &mut impl Read, len: u64, path: &Path, what: &str) -> Result<Array> {
    let bad = |msg: String| Error::file(path, format!("{what}{msg}"));
    let io = |field: &str, e: std::io::Error| bad(format!("{field}: {e}"));
    let mut prefix = [0u8; 8];
    if len < 10 {
        return Err(bad(format!("file has {len} bytes, too few for a .npy header")));
    }
    r.read_exact(&mut prefix).map_err(|e| io("magic", e))?;
    if &prefix[..6] != MAGIC {
        return Err(bad("magic: not a .npy file".into()));
    }
    let header_len = match prefix[6] {
        1 => {
            let mut b = [0u8; 2];
            r.read_exact(&mut b).map_err(|e| io("header length", e))?;
            u16::from_le_bytes(b) as usize
        }
        2 | 3 => {
            let mut b = [0u8; 4];
            r.read_exact(&mut b).map_err(|e| io("header length", e))?;
            u32::from_le_bytes(b) as usize
        }
        v => return Err(bad(format!("version {v}.{} is not supported", prefix[7]))),
    };
    let prefix_len = if prefix[6] == 1 { 10 } else { 12 };
    let available = len.saturating_sub(prefix_len);
    if header_len > MAX_HEADER || header_len as u64 > available {
        return Err(bad(format!("header length {header_len} runs past the end ({len} bytes)")));
    }
    let mut text = vec![0u8; header_len];
    r.read_exact(&mut text).map_err(|e| io("header", e))?;
    let header = parse_header(&text).map_err(bad)?;
    let available = available - header_len as u64;
    let nbytes = byte_len(&header.shape, header.dtype)
        .filter(|&n| n as u64 <= available)
        .ok_or_else(|| {
            bad(format!(
                "shape {:?} of {} needs more than the {available} bytes of data present",
                header.shape, header.dtype
            ))
        })?;
    let mut buffer = Buffer::alloc(nbytes)?;
    r.read_exact(buffer.bytes_mut()).map_err(|e| io("data", e))?;
    if header.dtype == Dtype::Bool {
        if let Some(i) = invalid_bool(buffer.bytes()) {
            return Err(bad(format!(
                "data: bool element {i} is {}, not 0 or 1",
                buffer.bytes()[i]
            )));
        }
    }
    let strides = if header.fortran_order {
        // Column-major data is the transpose of a row-major array: view it as such.
        let mut acc = 1isize;
        header
            .shape
            .iter()
            .map(|&n| {
                let stride = acc;
                acc *= n.max(1) as isize;
                stride
            })
            .collect()
    } else {
        contiguous_strides(&header.shape)
    };
    Ok(Array::from_ready(ReadyArray {
        buffer: Arc::new(buffer),
        shape: header.shape,
        strides,
        offset: 0,
        dtype: header.dtype,
    }))
}

/// The `.npy` prefix and header for `x`, padded exactly as `np.save` pads it.
fn npy_header(x: &ReadyArray) -> Vec<u8> {
    let dims: Vec<String> = x.shape.iter().map(|d| d.to_string()).collect();
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut dict =
        format!("{{'descr': '{}', 'fortran_order': False, 'shape': {shape}, }}", descr(x.dtype));
    // NumPy leaves room for the first dimension to grow to 21 digits.
    if let Some(first) = dims.first() {
        dict.push_str(&" ".repeat(21usize.saturating_sub(first.len())));
    }
    let v1 = dict.len() + 1 + 10 < 1 << 16;
    let prefix_len = if v1 { 10 } else { 12 };
    let pad = (64 - (prefix_len + dict.len() + 1) % 64) % 64;
    dict.push_str(&" ".repeat(pad));
    dict.push('\n');
    let mut out = MAGIC.to_vec();
    if v1 {
        out.extend([1, 0]);
        out.extend((dict.len() as u16).to_le_bytes());
    } else {
        out.extend([2, 0]);
        out.extend((dict.len() as u32).to_le_bytes());
    }
    out.extend(dict.as_bytes());
    out
}

fn write_npy(w: &mut impl Write, x: &ReadyArray) -> std::io::Result<()> {
    w.write_all(&npy_header(x))?;
    w.write_all(data_bytes(x))
}

/// Loads a `.npy` file.
pub fn load_npy(path: impl AsRef<Path>) -> Result<Array> {
    let path = path.as_ref();
    let file =
        std::fs::File::open(path).map_err(|e| Error::file(path, format!("cannot open: {e}")))?;
    let len = file.metadata()?.len();
    read_npy(&mut BufReader::new(file), len, path, "")
}

/// Evaluates `x` and saves it as a `.npy` file (`.npy` is appended to `path` unless present).
pub fn save_npy(path: impl AsRef<Path>, x: &Array) -> Result<()> {
    let path = with_extension(path.as_ref(), "npy");
    let data = contiguous_data(x)?;
    let write = || -> std::io::Result<()> {
        let mut w = BufWriter::new(std::fs::File::create(&path)?);
        write_npy(&mut w, &data)?;
        w.flush()
    };
    write().map_err(|e| Error::file(&path, format!("cannot write: {e}")))
}

/// Loads every array of a `.npz` archive (stored or deflated members), keyed by member name
/// without `.npy`.
pub fn load_npz(path: impl AsRef<Path>) -> Result<HashMap<String, Array>> {
    let path = path.as_ref();
    let bad = |msg: String| Error::file(path, msg);
    let file = std::fs::File::open(path).map_err(|e| bad(format!("cannot open: {e}")))?;
    let file_len = file.metadata()?.len();
    let mut archive = zip::ZipArchive::new(BufReader::new(file))
        .map_err(|e| bad(format!("not a readable zip archive: {e}")))?;
    let mut arrays = HashMap::new();
    for i in 0..archive.len() {
        let mut member = archive.by_index(i).map_err(|e| bad(format!("member #{i}: {e}")))?;
        let name = member.name().map_err(|e| bad(format!("member #{i} name: {e}")))?.to_string();
        let Some(key) = name.strip_suffix(".npy") else {
            return Err(bad(format!("member `{name}` is not a .npy file")));
        };
        let (size, packed) = (member.size(), member.compressed_size());
        let limit = match member.compression() {
            CompressionMethod::Stored => packed,
            _ => packed.saturating_mul(MAX_DEFLATE_RATIO).saturating_add(64),
        };
        if packed > file_len || size > limit {
            return Err(bad(format!(
                "member `{name}`: {size} bytes cannot come from {packed} stored bytes"
            )));
        }
        let array = read_npy(&mut member, size, path, &format!("member `{name}`: "))?;
        if arrays.insert(key.to_string(), array).is_some() {
            return Err(bad(format!("member `{name}` appears twice")));
        }
    }
    Ok(arrays)
}

fn write_npz(path: &Path, arrays: &[(&str, &Array)], method: CompressionMethod) -> Result<()> {
    let path = with_extension(path, "npz");
    check_unique_names(&path, arrays.iter().map(|(n, _)| n))?;
    let handles: Vec<&Array> = arrays.iter().map(|(_, a)| *a).collect();
    crate::eval(&handles)?;
    let data = handles.iter().map(|a| contiguous_data(a)).collect::<Result<Vec<_>>>()?;
    let write = || -> zip::result::ZipResult<()> {
        let mut zip = zip::ZipWriter::new(BufWriter::new(std::fs::File::create(&path)?));
        for ((name, _), d) in arrays.iter().zip(&data) {
            let large = data_bytes(d).len() as u64 >= u32::MAX as u64;
            let options = SimpleFileOptions::default().compression_method(method).large_file(large);
            zip.start_file(format!("{name}.npy"), options)?;
            write_npy(&mut zip, d)?;
        }
        zip.finish()?.flush()?;
        Ok(())
    };
    write().map_err(|e| Error::file(&path, format!("cannot write: {e}")))
}

/// Evaluates `arrays` and saves them as an uncompressed `.npz` archive (as `np.savez`).
pub fn save_npz(path: impl AsRef<Path>, arrays: &[(&str, &Array)]) -> Result<()> {
    write_npz(path.as_ref(), arrays, CompressionMethod::Stored)
}

/// Evaluates `arrays` and saves them as a deflated `.npz` archive (as `np.savez_compressed`).
pub fn save_npz_compressed(path: impl AsRef<Path>, arrays: &[(&str, &Array)]) -> Result<()> {
    write_npz(path.as_ref(), arrays, CompressionMethod::Deflated)
}
