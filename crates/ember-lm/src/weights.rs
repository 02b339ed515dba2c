//! Where a model's tensors come from. Architecture files ask for tensors by their Hugging Face
//! names (`model.layers.0.self_attn.q_proj.weight`); a [`WeightSource`] maps those to its own
//! storage and builds the right layer for how each tensor is stored (dense or GGML blocks).

use crate::error::{Error, Result};
use crate::packed_cache::{Digest, PackedCache};
use ember_core::array::new_output;
use ember_core::io::gguf::{GgmlType, GgufFile, GgufTensorInfo};
use ember_core::ops::quantized::{pack_ggml_groups, packed_is_fast, GgmlLayout, PACK_LANES};
use ember_core::ops::{self, Slice};
use ember_core::{Array, Dtype};
use ember_nn::{
    Embed, Embedding, Linear, Module, QuantizedEmbedding, QuantizedLinear, QuantizedWeight,
};
use rayon::prelude::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A model's tensors, by Hugging Face name.
pub trait WeightSource {
    /// What the weights were loaded from, for error messages.
    fn origin(&self) -> &Path;
    fn contains(&self, name: &str) -> bool;
    /// The logical row-major shape of a tensor.
    fn shape(&self, name: &str) -> Result<Vec<usize>>;
    /// A dense float tensor (norm weights, biases), as float32.
    fn array(&self, name: &str) -> Result<Array>;
    /// A matrix `name` (out, in) as a layer computing `x @ W^T`.
    fn linear(&self, name: &str) -> Result<Box<dyn Module>>;
    /// An embedding table `name` (entries, dims).
    fn embedding(&self, name: &str) -> Result<Box<dyn Embed>>;

    /// The matrices `names` (one input size) as one layer whose output concatenates theirs,
    /// when the storage holds them so without a copy; `None` otherwise.
    fn fused_linear(&self, _names: &[String]) -> Result<Option<Box<dyn Module>>> {
        Ok(None)
    }

    /// Checks that `name` exists with `expected` shape.
    fn expect_shape(&self, name: &str, expected: &[usize]) -> Result<()> {
        let shape = self.shape(name)?;
        if shape != expected {
            return Err(Error::model(
                self.origin(),
                format!("tensor `{name}` has shape {shape:?}, the config implies {expected:?}"),
            ));
        }
        Ok(())
    }
}

/// Dense arrays in memory, by Hugging Face name (tests, and later safetensors directories).
pub struct ArrayWeights {
    origin: PathBuf,
    arrays: HashMap<String, Array>,
}

impl ArrayWeights {
    pub fn new(origin: impl Into<PathBuf>, arrays: HashMap<String, Array>) -> ArrayWeights {
        ArrayWeights { origin: origin.into(), arrays }
    }

    fn get(&self, name: &str) -> Result<&Array> {
        self.arrays
            .get(name)
            .ok_or_else(|| Error::model(&self.origin, format!("no tensor `{name}`")))
    }
}

impl WeightSource for ArrayWeights {
    fn origin(&self) -> &Path {
        &self.origin
    }

    fn contains(&self, name: &str) -> bool {
        self.arrays.contains_key(name)
    }

    fn shape(&self, name: &str) -> Result<Vec<usize>> {
        Ok(self.get(name)?.shape().to_vec())
    }

    fn array(&self, name: &str) -> Result<Array> {
        Ok(self.get(name)?.astype(Dtype::Float32)?)
    }

    fn linear(&self, name: &str) -> Result<Box<dyn Module>> {
        Ok(Box::new(Linear::new(self.get(name)?.clone(), None)?))
    }

    fn embedding(&self, name: &str) -> Result<Box<dyn Embed>> {
        Ok(Box::new(Embedding::new(self.get(name)?.clone())?))
    }
}

/// The tensors of a GGUF file, named as llama.cpp's converter names them.
///
/// Decoding streams every quantized matrix once per token, and over a file's 4 KiB pages the
/// TLB misses of that walk cost about as much as the reads. So matrices are read where the file
/// is mapped in 2 MiB pages ([`GgufFile::map_in_huge_pages`]), and otherwise copied at load
/// into one buffer from ember's allocator, which backs large buffers with huge pages. Copies
/// are read with `pread`, so the file's pages are not mapped into the process for them (no
/// double count in its resident memory). F16 matrices count as quantized (their kernel reads
/// f16); other dense tensors (norms, F32 and BF16 matrices) stay views of the file.
///
/// The matrices a layer applies to one input (q/k/v, gate/up) make one fused product
/// ([`WeightSource::fused_linear`]): copies are placed one after another, and matrices read
/// in place are one view where the file has them so (llama.cpp's files do for gate/up), else
/// one product over the separate views (q/k/v). Where the CPU has AVX-512 VNNI the quantized
/// matrices are packed for its kernels, which makes them copies; for models with 16 MiB or
/// more of those, the copies are written once into ember's cache (`packed/` in
/// [`cache_dir`](crate::default_model::cache_dir)) and later loads map them from there
/// (see `packed_cache.rs`).
pub struct GgufWeights<'a> {
    file: &'a GgufFile,
    path: &'a Path,
    /// The copied matrices.
    arena: Option<Array>,
    /// The file's tensor data, when matrices are read from it in place.
    file_data: Option<Array>,
    placed: HashMap<String, Placed>,
}

/// Where a quantized tensor's bytes are, and in which layout.
#[derive(Clone, Copy, PartialEq, Debug)]
struct Placed {
    /// In the file's tensor data rather than the arena.
    in_file: bool,
    /// Byte offset in the arena or the file's tensor data.
    at: usize,
    layout: GgmlLayout,
}

/// When the loader reads matrices from the file mapping instead of copying them.
#[derive(Clone, Copy, PartialEq, Debug)]
pub(crate) enum InPlace {
    /// When the file is mapped in huge pages (see [`GgufWeights`]).
    WhenHugePages,
    /// Always where the layout allows (tests: the same model either way).
    #[cfg(test)]
    Always,
    #[cfg(test)]
    Never,
}

/// llama.cpp's names of the matrices that share an input, fused in this order.
const FUSED: [&[&str]; 2] = [&["attn_q", "attn_k", "attn_v"], &["ffn_gate", "ffn_up"]];

/// The names of the tensors fused with `name` (including it), or just `name`.
fn fusion_group(name: &str) -> Vec<String> {
    let Some((layer, rest)) = name.strip_prefix("blk.").and_then(|r| r.split_once('.')) else {
        return vec![name.to_string()];
    };
    let Some((short, param)) = rest.split_once('.') else { return vec![name.to_string()] };
    match FUSED.iter().find(|g| g.contains(&short)) {
        Some(g) => g.iter().map(|s| format!("blk.{layer}.{s}.{param}")).collect(),
        None => vec![name.to_string()],
    }
}

/// Tensor starts in the arena are rounded up to this (a cache line).
const ARENA_ALIGN: usize = 64;
/// Bytes a loading task reads at a time (rounded to whole packed groups).
const READ_PIECE: usize = 1 << 18;

/// Copies `len` bytes at `offset` of the file into `out`.
#[cfg(unix)]
pub(crate) fn read_at(file: &std::fs::File, out: &mut [u8], offset: usize) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, out, offset as u64)
}

#[cfg(not(unix))]
pub(crate) fn read_at(file: &std::fs::File, out: &mut [u8], offset: usize) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = file;
    f.seek(SeekFrom::Start(offset as u64))?;
    f.read_exact(out)
}

/// llama.cpp's tensor name for a Hugging Face one (Llama-family layouts).
fn gguf_name(hf: &str) -> Option<String> {
    let fixed = match hf {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.norm.weight" => Some("output_norm.weight"),
        "lm_head.weight" => Some("output.weight"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some(f.to_string());
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, part) = rest.split_once('.')?;
    let (module, param) = part.rsplit_once('.')?;
    let short = match module {
        "input_layernorm" => "attn_norm",
        "post_attention_layernorm" => "ffn_norm",
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        _ => return None,
    };
    Some(format!("blk.{layer}.{short}.{param}"))
}

/// How a tensor is stored, as far as the layers care.
enum Storage {
    Dense,
    Blocks(GgmlType),
}

/// The file's quantized matrices in file order, each with its layout, each fusion group whole
/// (in fusion order) where its first member is met.
fn matrix_groups(file: &GgufFile) -> Vec<Vec<(&GgufTensorInfo, GgmlLayout)>> {
    // Matrices the quantized kernels compute (F16 ones included: read as f16).
    let quantized =
        |i: &&GgufTensorInfo| ops::quantized::supports(i.ggml_type) && i.shape.len() == 2;
    let infos: HashMap<&str, &GgufTensorInfo> =
        file.tensor_infos().iter().filter(quantized).map(|i| (i.name.as_str(), i)).collect();
    let layout = |info: &GgufTensorInfo| {
        let rows = info.shape.first().copied().unwrap_or(1);
        let packed = packed_is_fast()
            && ops::quantized::valid_layout(info.ggml_type, GgmlLayout::Packed, rows);
        if packed {
            GgmlLayout::Packed
        } else {
            GgmlLayout::Rows
        }
    };
    let mut seen = std::collections::HashSet::new();
    let mut groups = Vec::new();
    for info in file.tensor_infos().iter().filter(quantized) {
        if seen.contains(info.name.as_str()) {
            continue;
        }
        let members: Vec<&GgufTensorInfo> = fusion_group(&info.name)
            .iter()
            .map(|n| infos.get(n.as_str()).copied())
            .collect::<Option<_>>()
            .unwrap_or_else(|| vec![info]);
        seen.extend(members.iter().map(|m| m.name.as_str()));
        groups.push(members.into_iter().map(|m| (m, layout(m))).collect());
    }
    groups
}

/// Packed copies are kept on disk ([`PackedCache`]) for models with at least this many bytes
/// of packed matrices; smaller ones (tests' among them) are packed at each load.
const PACKED_CACHE_FROM: usize = 16 << 20;
/// Part of every placement digest: changes whenever the packed layout does.
const PACKING_VERSION: u32 = 1;

/// Where to keep packed copies of `file`'s matrices: ember's cache, when they are large
/// enough (see [`PACKED_CACHE_FROM`]).
fn packed_cache_dir(file: &GgufFile) -> Option<PathBuf> {
    let packed: usize = matrix_groups(file)
        .iter()
        .flatten()
        .filter(|(_, layout)| *layout == GgmlLayout::Packed)
        .map(|(info, _)| info.nbytes)
        .sum();
    let dir = (packed >= PACKED_CACHE_FROM).then(crate::default_model::cache_dir)?;
    Some(dir.ok()?.join("packed"))
}

/// A digest of where and how the copies `order` are placed, and of the packing itself.
fn placement(order: &[&GgufTensorInfo], placed: &HashMap<String, Placed>) -> u64 {
    let mut digest = Digest::default();
    digest.add(&PACKING_VERSION.to_le_bytes());
    digest.add(&(PACK_LANES as u64).to_le_bytes());
    for info in order {
        let Placed { at, layout, .. } = placed[&info.name];
        digest.add(info.name.as_bytes());
        digest.add(format!("{:?} {layout:?}", info.ggml_type).as_bytes());
        digest.add(&(info.nbytes as u64).to_le_bytes());
        digest.add(&(at as u64).to_le_bytes());
    }
    digest.0
}

/// Reads the tensors `order` (by arena offset) into `out` at their places, packing those
/// placed packed. Pieces of about [`READ_PIECE`] bytes are read in parallel; a packed piece
/// (whole groups of rows) is read into a buffer that stays in cache and packed from it, so
/// the arena is written once.
fn read_arena(
    file: &GgufFile,
    path: &Path,
    order: &[&GgufTensorInfo],
    placed: &HashMap<String, Placed>,
    out: &mut [u8],
) -> ember_core::Result<()> {
    let handle = std::fs::File::open(path)
        .map_err(|e| ember_core::Error::file(path, format!("cannot open: {e}")))?;
    let rows = |info: &GgufTensorInfo| info.shape.first().copied().unwrap_or(1).max(1);
    let mut pieces = Vec::new();
    let (mut rest, mut pos) = (out, 0);
    for &info in order {
        let Placed { at, layout, .. } = placed[&info.name];
        let (_, tail) = std::mem::take(&mut rest).split_at_mut(at - pos);
        let (mut bytes, tail) = tail.split_at_mut(info.nbytes);
        (rest, pos) = (tail, at + info.nbytes);
        let piece = match layout {
            GgmlLayout::Packed => {
                let group = PACK_LANES * info.nbytes / rows(info);
                (READ_PIECE / group).max(1) * group
            }
            GgmlLayout::Rows => READ_PIECE,
        };
        let mut offset = 0;
        while !bytes.is_empty() {
            let n = piece.min(bytes.len());
            let (head, tail) = std::mem::take(&mut bytes).split_at_mut(n);
            pieces.push((info, layout, offset, head));
            (bytes, offset) = (tail, offset + n);
        }
    }
    pieces.into_par_iter().try_for_each_init(Vec::new, |buf, (info, layout, offset, dst)| {
        let at = file.data_offset() + info.offset + offset;
        let read = match layout {
            GgmlLayout::Rows => read_at(&handle, dst, at),
            GgmlLayout::Packed => {
                buf.resize(dst.len(), 0);
                read_at(&handle, buf, at)
                    .map(|()| pack_ggml_groups(info.ggml_type, buf, dst, info.nbytes / rows(info)))
            }
        };
        read.map_err(|e| ember_core::Error::file(path, format!("tensor `{}`: {e}", info.name)))
    })
}

impl<'a> GgufWeights<'a> {
    /// Reads the quantized tensors of `file` (opened from `path`) in place or into memory.
    pub fn new(file: &'a GgufFile, path: &'a Path) -> Result<GgufWeights<'a>> {
        Self::placing(file, path, InPlace::WhenHugePages, packed_cache_dir(file).as_deref())
    }

    /// Places the matrices (`in_place` says when they may be read from the file) and reads
    /// the copies, from an entry in `packed_cache` (a directory) when it has one for them,
    /// else from the file, then storing them there.
    pub(crate) fn placing(
        file: &'a GgufFile,
        path: &'a Path,
        in_place: InPlace,
        packed_cache: Option<&Path>,
    ) -> Result<GgufWeights<'a>> {
        let groups = matrix_groups(file);
        let matrices = groups.iter().flatten();
        let all_bytes: usize = matrices.clone().map(|(info, _)| info.nbytes).sum();
        let readable: usize = matrices
            .filter(|(_, layout)| *layout == GgmlLayout::Rows)
            .map(|(info, _)| info.nbytes)
            .sum();
        // Mapping in huge pages may re-read the file: only worth it for most of the weights.
        let from_file = match in_place {
            InPlace::WhenHugePages => 2 * readable >= all_bytes && file.map_in_huge_pages(),
            #[cfg(test)]
            InPlace::Always => true,
            #[cfg(test)]
            InPlace::Never => false,
        };
        // Copies of a group follow one another, so that they fuse as one view; matrices read
        // in place fuse as parts (`fused_linear`).
        let mut order: Vec<&GgufTensorInfo> = Vec::new();
        let mut placed = HashMap::new();
        let mut total = 0usize;
        for group in &groups {
            total = total.next_multiple_of(ARENA_ALIGN);
            for &(member, layout) in group {
                let in_file = from_file && layout == GgmlLayout::Rows;
                let at = if in_file { member.offset } else { total };
                placed.insert(member.name.clone(), Placed { in_file, at, layout });
                if !in_file {
                    order.push(member);
                    total += member.nbytes;
                }
            }
        }
        let file_data = if from_file { Some(file.data_bytes()?) } else { None };
        let arena = if total == 0 {
            None
        } else {
            let cache = packed_cache
                .and_then(|dir| PackedCache::new(dir, path, placement(&order, &placed), total));
            match cache.as_ref().and_then(PackedCache::load) {
                Some(arena) => Some(arena),
                None => {
                    let arena = new_output::<u8>(&[total], |out| {
                        read_arena(file, path, &order, &placed, out)
                    })?;
                    let arena = Array::from_ready(arena);
                    if let Some(cache) = &cache {
                        // A cache that cannot be written (read-only, full) costs only the
                        // next load's time.
                        let _ = cache.store(&arena);
                    }
                    Some(arena)
                }
            }
        };
        Ok(GgufWeights { file, path, arena, file_data, placed })
    }

    /// The bytes a placed tensor's offset indexes.
    fn source(&self, placed: &Placed) -> Option<&Array> {
        if placed.in_file {
            self.file_data.as_ref()
        } else {
            self.arena.as_ref()
        }
    }

    fn name(&self, hf: &str) -> Result<String> {
        gguf_name(hf)
            .ok_or_else(|| Error::model(self.path, format!("no GGUF name for tensor `{hf}`")))
    }

    fn storage(&self, name: &str) -> Result<Storage> {
        let ty = self.file.tensor_data(name)?.ggml_type;
        match ty {
            GgmlType::F32 | GgmlType::BF16 => Ok(Storage::Dense),
            t if ops::quantized::supports(t) => Ok(Storage::Blocks(t)),
            t => Err(Error::model(
                self.path,
                format!(
                    "tensor `{name}` is {}, which ember cannot compute yet (supported: F32, F16, \
                     BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K)",
                    t.name()
                ),
            )),
        }
    }

    fn blocks(&self, name: &str, ty: GgmlType) -> Result<QuantizedWeight> {
        let t = self.file.tensor_data(name)?;
        let placed = self.placed.get(name);
        let (Some(bytes), Some(&Placed { at, layout, .. }), [rows, cols]) =
            (placed.and_then(|p| self.source(p)), placed, t.shape)
        else {
            return Err(Error::model(
                self.path,
                format!("tensor `{name}` must be a 2-d quantized matrix, has shape {:?}", t.shape),
            ));
        };
        let row_bytes = cols / ty.block_size() * ty.type_size();
        Ok(QuantizedWeight::new(placed_blocks(bytes, at, *rows, row_bytes)?, ty, layout)?)
    }

    fn shape_of(&self, name: &str) -> Result<Vec<usize>> {
        Ok(self.file.tensor_data(name)?.shape.to_vec())
    }
}

/// Rows `rows` x `row_bytes` of `bytes` (the arena or the file's data) from byte `at`, as a
/// uint8 matrix of blocks.
fn placed_blocks(bytes: &Array, at: usize, rows: usize, row_bytes: usize) -> Result<Array> {
    let end = at + rows * row_bytes;
    let range = ops::slice(bytes, &[Slice::range(at as isize, end as isize)])?;
    let blocks = ops::reshape_to(&range, &[rows, row_bytes])?;
    blocks.eval()?;
    Ok(blocks)
}

impl WeightSource for GgufWeights<'_> {
    fn origin(&self) -> &Path {
        self.path
    }

    fn contains(&self, name: &str) -> bool {
        gguf_name(name).is_some_and(|n| self.file.tensor_data(&n).is_ok())
    }

    fn shape(&self, name: &str) -> Result<Vec<usize>> {
        self.shape_of(&self.name(name)?)
    }

    /// A copy, not a view of the file: these are norms and biases, and views would keep the
    /// file's pages around them resident after load (see `GgufFile::release_resident_pages`).
    fn array(&self, name: &str) -> Result<Array> {
        let a = self.file.dequantize(&self.name(name)?)?;
        Ok(Array::from_vec(a.to_vec::<f32>()?, a.shape())?)
    }

    fn linear(&self, name: &str) -> Result<Box<dyn Module>> {
        let n = self.name(name)?;
        Ok(match self.storage(&n)? {
            Storage::Dense => Box::new(Linear::new(self.file.tensor(&n)?, None)?),
            Storage::Blocks(ty) => Box::new(QuantizedLinear::new(self.blocks(&n, ty)?, None)?),
        })
    }

    fn embedding(&self, name: &str) -> Result<Box<dyn Embed>> {
        let n = self.name(name)?;
        Ok(match self.storage(&n)? {
            Storage::Dense => Box::new(Embedding::new(self.file.tensor(&n)?)?),
            Storage::Blocks(ty) => Box::new(QuantizedEmbedding::new(self.blocks(&n, ty)?)),
        })
    }

    fn fused_linear(&self, names: &[String]) -> Result<Option<Box<dyn Module>>> {
        let mut parts = Vec::with_capacity(names.len());
        for hf in names {
            let n = self.name(hf)?;
            let t = self.file.tensor_data(&n)?;
            match (self.placed.get(&n), t.shape) {
                (Some(&placed), [rows, cols]) => {
                    parts.push((placed, t.ggml_type, *rows, *cols, t.bytes.len()))
                }
                _ => return Ok(None),
            }
        }
        let Some(&(first, ty, _, cols, _)) = parts.first() else { return Ok(None) };
        if parts.iter().any(|&(p, t, _, c, _)| p.layout != first.layout || t != ty || c != cols) {
            return Ok(None);
        }
        let row_bytes = cols / ty.block_size() * ty.type_size();
        let back_to_back =
            parts.windows(2).all(|w| w[1].0 == Placed { at: w[0].0.at + w[0].4, ..w[0].0 });
        let weight = if back_to_back {
            let rows: usize = parts.iter().map(|p| p.2).sum();
            let Some(bytes) = self.source(&first) else { return Ok(None) };
            QuantizedWeight::new(
                placed_blocks(bytes, first.at, rows, row_bytes)?,
                ty,
                first.layout,
            )?
        } else {
            // Held apart (llama.cpp's files keep q, k and v so): one product over the parts.
            let mut views = Vec::with_capacity(parts.len());
            for (placed, _, rows, _, _) in &parts {
                let Some(bytes) = self.source(placed) else { return Ok(None) };
                views.push(placed_blocks(bytes, placed.at, *rows, row_bytes)?);
            }
            QuantizedWeight::stacked(views, ty, first.layout)?
        };
        Ok(Some(Box::new(QuantizedLinear::new(weight, None)?)))
    }
}

#[cfg(test)]
mod tests {
    use super::{fusion_group, gguf_name, GgufWeights, InPlace, WeightSource};
    use crate::{Llama, LlamaConfig};
    use ember_core::io::gguf::GgufFile;
    use ember_core::Array;
    use std::path::{Path, PathBuf};

    #[test]
    fn matrices_read_in_place_compute_what_their_copies_do() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny_llama.gguf");
        let file = GgufFile::open(&path).unwrap();
        let config = LlamaConfig::from_gguf(&file, &path).unwrap();
        let logits = |in_place: InPlace| {
            let weights = GgufWeights::placing(&file, &path, in_place, None).unwrap();
            let in_file = weights.placed.values().filter(|p| p.in_file).count();
            let model = Llama::new(config.clone(), &weights, None).unwrap();
            let ids = Array::from_slice(&[1i32, 5, 9, 200, 3], &[1, 5]).unwrap();
            let out = model.forward(&ids, &mut model.make_cache(None)).unwrap();
            (in_file, out.to_vec::<f32>().unwrap())
        };
        let (in_file, read_in_place) = logits(InPlace::Always);
        // Rows-layout matrices at least (the embedding, whose 339 rows cannot be packed).
        assert!(in_file > 0);
        let (copied, from_copies) = logits(InPlace::Never);
        assert_eq!(copied, 0);
        assert_eq!(read_in_place, from_copies);
    }

    #[test]
    fn matrices_apart_fuse_into_one_product_of_their_rows() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny_llama.gguf");
        let file = GgufFile::open(&path).unwrap();
        // Both Q4_1 with 64 values per row, apart in the file and in the copies.
        let names =
            ["self_attn.q_proj", "mlp.gate_proj"].map(|m| format!("model.layers.0.{m}.weight"));
        let key = ember_core::ops::random::key(0);
        let x = ember_core::ops::random::normal(
            &[2, 64],
            ember_core::Dtype::Float32,
            None,
            None,
            Some(&key),
        )
        .unwrap();
        for in_place in [InPlace::Always, InPlace::Never] {
            let weights = GgufWeights::placing(&file, &path, in_place, None).unwrap();
            let fused = weights.fused_linear(&names).unwrap().expect("one type and width");
            let apart: Vec<Array> =
                names.iter().map(|n| weights.linear(n).unwrap().forward(&x).unwrap()).collect();
            let want = ember_core::ops::concatenate(&apart.iter().collect::<Vec<_>>(), -1).unwrap();
            let got = fused.forward(&x).unwrap();
            assert_eq!(got.shape(), &[2, 192]);
            assert_eq!(got.to_vec::<f32>().unwrap(), want.to_vec::<f32>().unwrap(), "{in_place:?}");
        }
    }

    /// A scratch directory `name` holding a copy of tiny_llama (whose time stamp a test may
    /// change), emptied first.
    fn scratch_model(name: &str) -> (PathBuf, PathBuf) {
        let dir = std::env::temp_dir().join(format!("ember-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tiny_llama.gguf");
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny_llama.gguf");
        std::fs::copy(fixture, &path).unwrap();
        (dir, path)
    }

    /// The logits of the model at `path` for a fixed prompt, its copies kept in `cache`.
    fn logits_with_cache(path: &Path, cache: Option<&Path>) -> Vec<f32> {
        let file = GgufFile::open(path).unwrap();
        let config = LlamaConfig::from_gguf(&file, path).unwrap();
        let weights = GgufWeights::placing(&file, path, InPlace::Never, cache).unwrap();
        let model = Llama::new(config, &weights, None).unwrap();
        let ids = Array::from_slice(&[1i32, 5, 9, 200, 3], &[1, 5]).unwrap();
        model.forward(&ids, &mut model.make_cache(None)).unwrap().to_vec::<f32>().unwrap()
    }

    /// Copies kept in a cache directory are what later loads compute with, and an entry made
    /// from anything but this model file and placement is rewritten.
    #[test]
    fn copies_kept_on_disk_are_mapped_by_later_loads() {
        let (dir, path) = scratch_model("packed");
        let cache = dir.join("packed");
        let logits = |cache: Option<&Path>| logits_with_cache(&path, cache);
        let want = logits(None);
        assert!(!cache.exists());
        assert_eq!(logits(Some(&cache)), want);
        let entries: Vec<_> =
            std::fs::read_dir(&cache).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(entries.len(), 1, "{entries:?}");
        let entry = &entries[0];
        let stored = std::fs::read(entry).unwrap();
        assert_eq!(logits(Some(&cache)), want);

        // The entry's bytes are what the next load computes with: zeroed, they change the
        // logits.
        let data = stored.len() - crate::packed_cache::TRAILER_LEN;
        let mut zeroed = stored.clone();
        zeroed[..data].fill(0);
        std::fs::write(entry, &zeroed).unwrap();
        assert_ne!(logits(Some(&cache)), want);

        // A truncated entry is rewritten.
        std::fs::write(entry, &stored[..data / 2]).unwrap();
        assert_eq!(logits(Some(&cache)), want);
        assert_eq!(std::fs::read(entry).unwrap(), stored);

        // So is one made before the model file changed: the same bytes, another trailer.
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(60);
        std::fs::File::options().write(true).open(&path).unwrap().set_modified(later).unwrap();
        assert_eq!(logits(Some(&cache)), want);
        let rewritten = std::fs::read(entry).unwrap();
        assert_eq!(rewritten[..data], stored[..data]);
        assert_ne!(rewritten[data..], stored[data..]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Loads at once in several threads, with no entry yet, each write theirs whole: one
    /// entry is left, with the bytes a single load writes, and no temporary file.
    #[test]
    fn loads_at_once_leave_one_whole_entry() {
        let (dir, path) = scratch_model("packed-at-once");
        let (alone, together) = (dir.join("alone"), dir.join("together"));
        let want = logits_with_cache(&path, Some(&alone));
        std::thread::scope(|s| {
            let loads: Vec<_> =
                (0..4).map(|_| s.spawn(|| logits_with_cache(&path, Some(&together)))).collect();
            loads.into_iter().for_each(|l| assert_eq!(l.join().unwrap(), want));
        });
        let files = |d: &Path| -> Vec<PathBuf> {
            std::fs::read_dir(d).unwrap().map(|e| e.unwrap().path()).collect()
        };
        let (one, all) = (files(&alone), files(&together));
        assert_eq!(all.len(), 1, "{all:?}");
        assert_eq!(all[0].file_name(), one[0].file_name());
        assert_eq!(std::fs::read(&all[0]).unwrap(), std::fs::read(&one[0]).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn projections_of_one_input_are_fused_in_order() {
        assert_eq!(
            fusion_group("blk.7.attn_k.weight"),
            ["blk.7.attn_q.weight", "blk.7.attn_k.weight", "blk.7.attn_v.weight"]
        );
        assert_eq!(
            fusion_group("blk.0.ffn_gate.weight"),
            ["blk.0.ffn_gate.weight", "blk.0.ffn_up.weight"]
        );
        assert_eq!(fusion_group("blk.0.ffn_down.weight"), ["blk.0.ffn_down.weight"]);
        assert_eq!(fusion_group("token_embd.weight"), ["token_embd.weight"]);
    }

    #[test]
    fn hugging_face_names_map_to_llama_cpp_names() {
        let cases = [
            ("model.embed_tokens.weight", "token_embd.weight"),
            ("lm_head.weight", "output.weight"),
            ("model.layers.3.self_attn.o_proj.weight", "blk.3.attn_output.weight"),
            ("model.layers.12.self_attn.q_proj.bias", "blk.12.attn_q.bias"),
            ("model.layers.0.mlp.down_proj.weight", "blk.0.ffn_down.weight"),
            ("model.layers.0.post_attention_layernorm.weight", "blk.0.ffn_norm.weight"),
        ];
        for (hf, gguf) in cases {
            assert_eq!(gguf_name(hf).as_deref(), Some(gguf), "{hf}");
        }
        assert_eq!(gguf_name("model.layers.0.mystery.weight"), None);
    }
}
