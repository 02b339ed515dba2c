//! Array I/O: files written by NumPy, safetensors and gguf (scripts/fixtures/io.py) load
//! exactly; every dtype round-trips; safetensors and GGUF loads share the mapped file; and
//! hostile files (crafted, truncated, mutated) are errors naming the file, never panics.
mod common;

use common::dtype_from_name;
use ember::io::gguf::{GgmlType, GgufArray, GgufFile, GgufValue};
use ember::io::{self};
use ember::prelude::*;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn fixture_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/io").join(name)
}

/// A scratch directory for one test, removed when dropped; on tmpfs when there is one (the
/// damage test writes thousands of small files).
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> TempDir {
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() };
        let dir = base.join(format!("ember-io-{}-{test}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn cases(prefix: &str) -> Vec<(String, Value)> {
    let all = common::fixture("io");
    let out: Vec<_> = all.into_iter().filter(|(k, _)| k.starts_with(prefix)).collect();
    assert!(!out.is_empty(), "no fixture cases start with {prefix}");
    out
}

/// Asserts `got` has the case's shape, dtype and exact values (integers compared as
/// integers, floats through f64).
fn assert_case(what: &str, got: &Array, case: &Value) {
    let want = &case["expected"];
    let dtype = dtype_from_name(case.get("dtype").unwrap_or(&want["dtype"]).as_str().unwrap());
    let shape: Vec<usize> =
        want["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
    assert_eq!(got.shape(), &shape[..], "{what}: shape");
    assert_eq!(got.dtype(), dtype, "{what}: dtype");
    let data = want["data"].as_array().unwrap();
    match dtype {
        Dtype::Bool => {
            let w: Vec<bool> = data.iter().map(|v| v.as_bool().unwrap()).collect();
            assert_eq!(got.to_vec::<bool>().unwrap(), w, "{what}");
        }
        Dtype::Uint64 => {
            let w: Vec<u64> = data.iter().map(|v| v.as_u64().unwrap()).collect();
            assert_eq!(got.to_vec::<u64>().unwrap(), w, "{what}");
        }
        d if d.is_integer() => {
            let w: Vec<i64> = data.iter().map(|v| v.as_i64().unwrap()).collect();
            assert_eq!(got.to_vec::<i64>().unwrap(), w, "{what}");
        }
        _ => {
            let g = got.to_vec::<f64>().unwrap();
            for (i, (g, w)) in g.iter().zip(data).enumerate() {
                let w = w.as_f64().unwrap();
                // The decimal JSON round trip of f64 may be off by an ulp.
                assert!((g - w).abs() <= 1e-15 * w.abs(), "{what}[{i}]: {g} vs {w}");
            }
            assert_eq!(g.len(), data.len());
        }
    }
}

/// Asserts a file error that names the file and contains `needle`.
#[track_caller]
fn assert_file_error<T: std::fmt::Debug>(r: Result<T>, path: &Path, needle: &str) {
    match r {
        Err(Error::File { path: p, msg }) => {
            assert_eq!(p, path.display().to_string());
            assert!(msg.contains(needle), "message {msg:?} lacks {needle:?}");
        }
        other => panic!("expected a file error containing {needle:?}, got {other:?}"),
    }
}

// ---------------------------------------------------------------- fixtures from the writers

#[test]
fn npy_files_written_by_numpy_load_exactly() {
    for (name, case) in cases("npy_") {
        let got = io::load_npy(fixture_file(case["file"].as_str().unwrap())).unwrap();
        assert_case(&name, &got, &case);
    }
}

#[test]
fn fortran_order_loads_as_a_column_major_view() {
    let x = io::load_npy(fixture_file("fortran.npy")).unwrap();
    let data = x.ready().unwrap();
    // (3, 4, 2) stored column-major: the first axis is the fastest-varying.
    assert_eq!(data.strides, vec![1, 3, 12]);
}

#[test]
fn npz_archives_stored_and_deflated_load_exactly() {
    let mut loaded: HashMap<String, HashMap<String, Array>> = HashMap::new();
    for (name, case) in cases("npz_") {
        let file = case["file"].as_str().unwrap().to_string();
        let members = loaded
            .entry(file.clone())
            .or_insert_with(|| io::load_npz(fixture_file(&file)).unwrap());
        assert_eq!(members.len(), 4, "{file}");
        assert_case(&name, &members[case["key"].as_str().unwrap()], &case);
    }
    assert_eq!(loaded.len(), 2);
}

#[test]
fn safetensors_written_by_the_package_load_all_dtypes_and_metadata() {
    let (arrays, metadata) = io::load_safetensors(fixture_file("all.safetensors")).unwrap();
    assert_eq!(arrays.len(), 13);
    for (name, case) in cases("st_") {
        match case.get("metadata") {
            Some(m) => {
                let want: HashMap<String, String> = serde_json::from_value(m.clone()).unwrap();
                assert_eq!(metadata, want);
            }
            None => assert_case(&name, &arrays[case["key"].as_str().unwrap()], &case),
        }
    }
}

/// Checks a GGUF value against the fixture's description of it.
fn assert_gguf_value(key: &str, got: &GgufValue, want: &Value) {
    let value = &want["value"];
    let ok = match (want["type"].as_str().unwrap(), got) {
        ("UINT8", GgufValue::U8(_))
        | ("UINT16", GgufValue::U16(_))
        | ("UINT32", GgufValue::U32(_))
        | ("UINT64", GgufValue::U64(_)) => got.as_u64() == value.as_u64(),
        ("INT8", GgufValue::I8(_))
        | ("INT16", GgufValue::I16(_))
        | ("INT32", GgufValue::I32(_))
        | ("INT64", GgufValue::I64(_)) => got.as_i64() == value.as_i64(),
        ("FLOAT32", GgufValue::F32(_)) | ("FLOAT64", GgufValue::F64(_)) => {
            got.as_f64() == value.as_f64()
        }
        ("BOOL", GgufValue::Bool(b)) => Some(*b) == value.as_bool(),
        ("STRING", GgufValue::String(s)) => Some(s.as_str()) == value.as_str(),
        ("ARRAY", GgufValue::Array(a)) => gguf_array_json(a) == *value,
        _ => false,
    };
    assert!(ok, "{key}: {got:?} vs {want}");
}

fn gguf_array_json(a: &GgufArray) -> Value {
    let v = |x: Vec<Value>| Value::Array(x);
    match a {
        GgufArray::String(s) => v(s.iter().map(|s| Value::from(s.as_str())).collect()),
        GgufArray::F32(x) => v(x.iter().map(|&f| Value::from(f as f64)).collect()),
        GgufArray::I32(x) => v(x.iter().map(|&i| Value::from(i)).collect()),
        GgufArray::U64(x) => v(x.iter().map(|&i| Value::from(i)).collect()),
        GgufArray::Array(x) => v(x.iter().map(gguf_array_json).collect()),
        other => panic!("unexpected array {other:?}"),
    }
}

#[test]
fn gguf_written_by_llama_cpp_writer_parses_metadata() {
    let f = GgufFile::open(fixture_file("model.gguf")).unwrap();
    assert_eq!(f.version(), 3);
    assert_eq!(f.alignment(), 32);
    assert_eq!(f.data_offset() % 32, 0);
    assert_eq!(f.get("general.architecture").and_then(|v| v.as_str()), Some("llama"));
    let (_, case) = cases("gguf_metadata").remove(0);
    let entries = case["metadata"].as_object().unwrap();
    for (key, want) in entries {
        assert_gguf_value(key, f.get(key).unwrap_or_else(|| panic!("missing {key}")), want);
    }
    // general.architecture plus the entries above, in file order.
    assert_eq!(f.metadata().len(), entries.len() + 1);
    assert_eq!(f.metadata()[0].0, "general.architecture");
    let tokens = f.get("tokenizer.ggml.tokens").unwrap().as_array().unwrap();
    assert_eq!(tokens.as_strings().unwrap()[5], "🙂");
}

#[test]
fn gguf_tensors_load_plain_and_dequantize_quants() {
    let f = GgufFile::open(fixture_file("model.gguf")).unwrap();
    for (name, case) in cases("gguf_") {
        let Some(key) = case.get("key").and_then(|k| k.as_str()) else { continue };
        if case.get("ggml_type").is_some() {
            // Raw blocks: bytes, type and element shape as written.
            let t = f.tensor_data(key).unwrap();
            assert_eq!(t.ggml_type.name(), case["ggml_type"].as_str().unwrap(), "{name}");
            let shape: Vec<usize> = serde_json::from_value(case["shape"].clone()).unwrap();
            assert_eq!(t.shape, &shape[..], "{name}");
            assert_case(&name, &f.raw(key).unwrap(), &case);
            continue;
        }
        if case["file"] != "model.gguf" {
            continue;
        }
        let got =
            if key.starts_with('q') { f.dequantize(key).unwrap() } else { f.tensor(key).unwrap() };
        assert_case(&name, &got, &case);
    }
    assert!(f.tensor("q8_0").unwrap_err().to_string().contains("quantized"));
    // K-quant tensors dequantize as the block op does (checked against gguf in kquants.rs).
    for (key, ty) in [("q4_k", GgmlType::Q4_K), ("q6_k", GgmlType::Q6_K)] {
        assert_eq!(f.tensor_data(key).unwrap().ggml_type, ty);
        let got = f.dequantize(key).unwrap();
        assert_eq!(got.shape(), [2, 256]);
        let want = ops::dequantize_ggml(&f.raw(key).unwrap(), ty).unwrap();
        let (got, want) = (got.to_vec::<f32>().unwrap(), want.to_vec::<f32>().unwrap());
        assert!(got.iter().zip(&want).all(|(a, b)| a == b || a.is_nan() && b.is_nan()), "{key}");
    }
    assert!(f.tensor("missing").unwrap_err().to_string().contains("no tensor `missing`"));
    // Dequantizing a plain tensor converts it.
    let f16 = f.dequantize("f16").unwrap();
    assert_eq!(f16.dtype(), Dtype::Float32);
    assert_eq!(f16.to_vec::<f32>().unwrap(), f.tensor("f16").unwrap().to_vec::<f32>().unwrap());
}

#[test]
fn gguf_custom_alignment_places_data_on_its_multiple() {
    let f = GgufFile::open(fixture_file("aligned64.gguf")).unwrap();
    assert_eq!(f.alignment(), 64);
    assert_eq!(f.data_offset() % 64, 0);
    assert!(f.tensor_infos().iter().all(|t| t.offset % 64 == 0));
    let (_, case) = cases("gguf_aligned_a").remove(0);
    assert_case("aligned a", &f.tensor("a").unwrap(), &case);
}

// ---------------------------------------------------------------- round trips

/// Arrays of every dtype with awkward shapes, values that use the full range.
fn every_dtype() -> Vec<(String, Array)> {
    let values: Vec<f64> = (0..24).map(|i| (i as f64 - 11.5) * 7.25).collect();
    let base = Array::from_slice(&values, &[2, 3, 4]).unwrap();
    let mut out = vec![];
    for dtype in Dtype::ALL {
        let x = base.astype(dtype).unwrap();
        out.push((format!("{dtype}"), x.clone()));
        // A transposed view must be saved in logical order.
        out.push((format!("{dtype}_t"), ops::transpose(&x, &[2, 0, 1]).unwrap()));
    }
    out.push(("scalar".into(), Array::scalar(-3i64)));
    out.push(("empty".into(), ops::zeros(&[0, 5], Dtype::Float32).unwrap()));
    let big = Array::from_slice(&[u64::MAX, 1 << 63, 7], &[3]).unwrap();
    out.push(("u64_extremes".into(), big));
    out
}

fn assert_same(what: &str, got: &Array, want: &Array) {
    assert_eq!(got.shape(), want.shape(), "{what}");
    assert_eq!(got.dtype(), want.dtype(), "{what}");
    // Bit patterns, through the widest integer of the same size.
    let bits = |a: &Array| -> Vec<u64> {
        match a.dtype() {
            Dtype::Float16 | Dtype::Bfloat16 => a
                .astype(Dtype::Float32)
                .unwrap()
                .to_vec::<f32>()
                .unwrap()
                .iter()
                .map(|v| v.to_bits() as u64)
                .collect(),
            Dtype::Float32 => {
                a.to_vec::<f32>().unwrap().iter().map(|v| v.to_bits() as u64).collect()
            }
            Dtype::Float64 => a.to_vec::<f64>().unwrap().iter().map(|v| v.to_bits()).collect(),
            _ => a.to_vec::<u64>().unwrap(),
        }
    };
    assert_eq!(bits(got), bits(want), "{what}");
}

#[test]
fn safetensors_round_trip_every_dtype_with_metadata() {
    let dir = TempDir::new("safetensors_round_trip_every_dtype_with_metadata");
    let arrays = every_dtype();
    let refs: Vec<(&str, &Array)> = arrays.iter().map(|(n, a)| (n.as_str(), a)).collect();
    let meta = HashMap::from([("origin".to_string(), "ember".to_string())]);
    let base = dir.path("round");
    io::save_safetensors(&base, &refs, Some(&meta)).unwrap();
    // `.safetensors` is appended, as MLX does.
    let (loaded, m) = io::load_safetensors(base.with_extension("safetensors")).unwrap();
    assert_eq!(m, meta);
    assert_eq!(loaded.len(), arrays.len());
    for (name, a) in &arrays {
        assert_same(name, &loaded[name], a);
    }
    let dup = io::save_safetensors(
        dir.path("dup.safetensors"),
        &[("a", &arrays[0].1), ("a", &arrays[1].1)],
        None,
    );
    assert_file_error(dup, &dir.path("dup.safetensors"), "given twice");
}

#[test]
fn npy_round_trip_every_dtype() {
    let dir = TempDir::new("npy_round_trip_every_dtype");
    for (name, a) in every_dtype() {
        let path = dir.path(&format!("{name}.npy"));
        io::save_npy(&path, &a).unwrap();
        assert_same(&name, &io::load_npy(&path).unwrap(), &a);
    }
    // `.npy` is appended when missing.
    io::save_npy(dir.path("plain"), &Array::scalar(1u8)).unwrap();
    assert!(dir.path("plain.npy").exists());
}

#[test]
fn npy_headers_are_byte_identical_to_np_save() {
    let dir = TempDir::new("npy_headers_are_byte_identical_to_np_save");
    for file in ["float32.npy", "bool.npy", "uint64.npy", "scalar.npy", "vector.npy", "empty.npy"] {
        let path = fixture_file(file);
        let x = io::load_npy(&path).unwrap();
        let out = dir.path(&format!("same_{file}"));
        io::save_npy(&out, &x).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&path).unwrap(), "{file}");
    }
}

#[test]
fn npz_round_trip_stored_and_compressed() {
    let dir = TempDir::new("npz_round_trip_stored_and_compressed");
    let arrays = every_dtype();
    let refs: Vec<(&str, &Array)> = arrays.iter().map(|(n, a)| (n.as_str(), a)).collect();
    for (file, compressed) in [("stored.npz", false), ("deflated.npz", true)] {
        let path = dir.path(file);
        if compressed {
            io::save_npz_compressed(&path, &refs).unwrap();
        } else {
            io::save_npz(&path, &refs).unwrap();
        }
        let loaded = io::load_npz(&path).unwrap();
        assert_eq!(loaded.len(), arrays.len());
        for (name, a) in &arrays {
            assert_same(name, &loaded[name], a);
        }
    }
    // Repetitive data really is deflated.
    let zeros = ops::zeros(&[4096], Dtype::Float32).unwrap();
    io::save_npz_compressed(dir.path("zeros.npz"), &[("z", &zeros)]).unwrap();
    assert!(std::fs::metadata(dir.path("zeros.npz")).unwrap().len() < 1024);
}

// ---------------------------------------------------------------- zero copy

/// The address range of this process's mappings of `path` (Linux).
fn mapped_ranges(path: &Path) -> Vec<(usize, usize)> {
    let target = path.canonicalize().unwrap().display().to_string();
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|l| l.ends_with(&target))
        .map(|l| {
            let range = l.split_whitespace().next().unwrap();
            let (a, b) = range.split_once('-').unwrap();
            (usize::from_str_radix(a, 16).unwrap(), usize::from_str_radix(b, 16).unwrap())
        })
        .collect()
}

fn is_mapped_from(x: &Array, path: &Path) -> bool {
    let ptr = x.ready().unwrap().buffer.as_ptr() as usize;
    mapped_ranges(path).iter().any(|&(a, b)| a <= ptr && ptr < b)
}

#[cfg(target_os = "linux")]
#[test]
fn safetensors_and_gguf_loads_share_the_mapped_file() {
    let st = fixture_file("all.safetensors");
    let (arrays, _) = io::load_safetensors(&st).unwrap();
    let x = arrays["float32"].clone();
    drop(arrays);
    assert!(is_mapped_from(&x, &st), "safetensors tensor was copied");
    // The mapping outlives the dict it came from.
    assert_eq!(x.to_vec::<f32>().unwrap().len(), 6);

    let gg = fixture_file("model.gguf");
    let f = GgufFile::open(&gg).unwrap();
    let t = f.tensor("f32").unwrap();
    let raw = f.raw("q4_0").unwrap();
    let want = t.to_vec::<f32>().unwrap();
    drop(f);
    assert!(is_mapped_from(&t, &gg) && is_mapped_from(&raw, &gg));
    assert_eq!(t.to_vec::<f32>().unwrap(), want);
    assert_eq!(raw.shape(), &[2, 36]);
}

/// Kilobytes of `path`'s mappings resident in this process, from /proc/self/smaps (Linux).
fn resident_kb(path: &Path) -> usize {
    mapped_kb(path, "Rss:")
}

/// The sum of `field` (kB) over `path`'s mappings in /proc/self/smaps (Linux).
fn mapped_kb(path: &Path, field: &str) -> usize {
    let target = path.canonicalize().unwrap().display().to_string();
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut in_target = false;
    let mut kb = 0;
    for line in smaps.lines() {
        if line.contains('-') && line.split_whitespace().count() >= 5 {
            in_target = line.ends_with(&target);
        } else if let (true, Some(v)) = (in_target, line.strip_prefix(field)) {
            kb += v.trim().trim_end_matches(" kB").parse::<usize>().unwrap();
        }
    }
    kb
}

#[cfg(target_os = "linux")]
#[test]
fn released_gguf_pages_fault_back_in_on_read() {
    let gg = fixture_file("model.gguf");
    let f = GgufFile::open(&gg).unwrap();
    let t = f.tensor("f32").unwrap();
    let want = t.to_vec::<f32>().unwrap();
    assert!(resident_kb(&gg) > 0, "reading the view touches the map");
    f.release_resident_pages();
    assert_eq!(resident_kb(&gg), 0, "pages still resident after release");
    // Views and metadata read as before.
    assert_eq!(t.to_vec::<f32>().unwrap(), want);
    assert!(f.tensor_infos().len() > 1);
}

#[cfg(target_os = "linux")]
#[test]
fn gguf_mapped_in_huge_pages_reads_the_same_bytes() {
    // In the target dir, not tmpfs: on ext4 (Linux 6.16+) or xfs the page cache can hold the
    // file in 2 MiB folios, and mapping it that way first drops its cached pages.
    let path = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("ember-io-{}-huge.gguf", std::process::id()));
    let values: Vec<f32> = (0..3 << 20).map(|i| i as f32).collect(); // 12 MiB
    let mut g = Gguf::header(3, 1, 0);
    g.tensor("w", &[values.len() as u64], 0, 0).pad(32);
    values.iter().for_each(|v| {
        g.bytes(&v.to_le_bytes());
    });
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&path).unwrap();
        file.write_all(&g.0).unwrap();
        file.sync_all().unwrap(); // clean pages: dirty ones cannot be dropped
    }
    let f = GgufFile::open(&path).unwrap();
    let huge = f.map_in_huge_pages();
    let pmd_kb = mapped_kb(&path, "FilePmdMapped:");
    eprintln!("mapped in huge pages: {huge} ({pmd_kb} kB)");
    if huge {
        assert!(pmd_kb * 1024 >= 4 << 21, "{pmd_kb} kB in huge pages");
    }
    // Nothing is lost either way.
    let data = f.data_bytes().unwrap();
    assert_eq!(data.to_vec::<u8>().unwrap(), &g.0[f.data_offset()..]);
    assert_eq!(f.tensor("w").unwrap().to_vec::<f32>().unwrap(), values);
    drop((data, f));
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn mapped_bytes_are_the_files_leading_bytes() {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("ember-io-{}-bytes.bin", std::process::id()));
    let bytes: Vec<u8> = (0..3usize << 20).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&path, &bytes).unwrap();
    let head = io::map_bytes(&path, 5 << 19).unwrap();
    assert_eq!((head.shape(), head.dtype()), (&[5usize << 19][..], Dtype::Uint8));
    assert_eq!(head.to_vec::<u8>().unwrap(), &bytes[..5 << 19]);
    let err = io::map_bytes(&path, bytes.len() + 1).unwrap_err().to_string();
    assert!(err.contains("bytes.bin") && err.contains("expected at least"), "{err}");
    drop(head);
    std::fs::remove_file(&path).unwrap();
}

/// A safetensors file from a JSON header and data bytes.
fn safetensors_bytes(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(header.as_bytes());
    out.extend(data);
    out
}

#[test]
fn misaligned_safetensors_tensor_is_copied() {
    let dir = TempDir::new("misaligned_safetensors_tensor_is_copied");
    // A one-byte tensor puts the f32 tensor at an odd address (the header is padded to 8).
    let mut header = concat!(
        r#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"#,
        r#""b":{"dtype":"F32","shape":[2],"data_offsets":[1,9]}}"#
    )
    .to_string();
    while !header.len().is_multiple_of(8) {
        header.push(' ');
    }
    let mut data = vec![7u8];
    data.extend(1.5f32.to_le_bytes());
    data.extend((-2.0f32).to_le_bytes());
    let path = dir.write("misaligned.safetensors", &safetensors_bytes(&header, &data));
    let (arrays, _) = io::load_safetensors(&path).unwrap();
    assert_eq!(arrays["b"].to_vec::<f32>().unwrap(), vec![1.5, -2.0]);
    assert_eq!(arrays["a"].to_vec::<u8>().unwrap(), vec![7]);
    #[cfg(target_os = "linux")]
    {
        assert!(!is_mapped_from(&arrays["b"], &path));
        assert!(is_mapped_from(&arrays["a"], &path));
    }
}

// ---------------------------------------------------------------- hostile files

#[test]
fn hostile_safetensors_are_errors_naming_the_field() {
    let dir = TempDir::new("hostile_safetensors_are_errors_naming_the_field");
    let case = |name: &str, bytes: &[u8], needle: &str| {
        let path = dir.write(name, bytes);
        assert_file_error(io::load_safetensors(&path), &path, needle);
    };
    case("st_short", b"\x01\x00", "fewer than 8");
    case("st_len", &u64::MAX.to_le_bytes(), "header length");
    case("st_json", &safetensors_bytes("{not json", b""), "header");
    let mut not_utf8 = 8u64.to_le_bytes().to_vec();
    not_utf8.extend([0xff; 8]);
    case("st_utf8", &not_utf8, "UTF-8");
    let one = |dtype: &str, shape: &str, offsets: &str| {
        format!(r#"{{"t":{{"dtype":"{dtype}","shape":{shape},"data_offsets":{offsets}}}}}"#)
    };
    case("st_short_data", &safetensors_bytes(&one("F32", "[4]", "[0,16]"), &[0; 8]), "16 bytes");
    case("st_mismatch", &safetensors_bytes(&one("F32", "[4]", "[0,8]"), &[0; 8]), "header");
    case(
        "st_huge",
        &safetensors_bytes(&one("U8", "[1152921504606846976]", "[0,1152921504606846976]"), &[0; 8]),
        "1152921504606846976",
    );
    case(
        "st_overflow",
        &safetensors_bytes(&one("F64", "[4294967296,4294967296]", "[0,8]"), &[0; 8]),
        "header",
    );
    case(
        "st_zero_overflow",
        &safetensors_bytes(&one("F32", "[0,4294967296,4294967296]", "[0,0]"), b""),
        "too large",
    );
    case("st_dtype", &safetensors_bytes(&one("F8_E4M3", "[1]", "[0,1]"), &[0]), "not supported");
    case("st_unknown_dtype", &safetensors_bytes(&one("Q9", "[1]", "[0,1]"), &[0]), "header");
    case("st_bool", &safetensors_bytes(&one("BOOL", "[3]", "[0,3]"), &[0, 1, 2]), "bool element 2");
    // Eight tensors of 2^61 - 1 bytes each end at 2^64 - 8: the end check must not overflow.
    let n = (1u64 << 61) - 1;
    let parts: Vec<String> = (0..8)
        .map(|i| {
            format!(
                r#""t{i}":{{"dtype":"U8","shape":[{n}],"data_offsets":[{},{}]}}"#,
                i * n,
                (i + 1) * n
            )
        })
        .collect();
    case(
        "st_sum_overflow",
        &safetensors_bytes(&format!("{{{}}}", parts.join(",")), &[0; 8]),
        "tensor data",
    );
}

/// A .npy file from a header dict and data.
fn npy_bytes(dict: &str, data: &[u8]) -> Vec<u8> {
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((dict.len() as u16).to_le_bytes());
    out.extend(dict.as_bytes());
    out.extend(data);
    out
}

#[test]
fn hostile_npy_are_errors_naming_the_field() {
    let dir = TempDir::new("hostile_npy_are_errors_naming_the_field");
    let case = |name: &str, bytes: &[u8], needle: &str| {
        let path = dir.write(name, bytes);
        assert_file_error(io::load_npy(&path), &path, needle);
    };
    let dict = |descr: &str, fortran: &str, shape: &str| {
        format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}\n")
    };
    case("np_empty", b"", "too few");
    case("np_magic", b"\x93NUMPZ\x01\x00\x00\x00", "magic");
    case("np_version", b"\x93NUMPY\x09\x00\x00\x00", "version 9");
    case("np_header_len", b"\x93NUMPY\x01\x00\xff\xff{", "header length");
    case("np_big_endian", &npy_bytes(&dict(">f4", "False", "(1,)"), &[0; 4]), "big-endian");
    case("np_complex", &npy_bytes(&dict("<c8", "False", "(1,)"), &[0; 8]), "not supported");
    case(
        "np_structured",
        &npy_bytes("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }", &[0; 4]),
        "structured",
    );
    case("np_missing", &npy_bytes("{'descr': '<f4', 'shape': (1,), }", &[0; 4]), "fortran_order");
    case("np_bad_dim", &npy_bytes(&dict("<f4", "False", "(-1,)"), &[0; 4]), "shape entry");
    case(
        "np_dim_too_big",
        &npy_bytes(&dict("<f4", "False", "(99999999999999999999999,)"), &[0; 4]),
        "shape entry",
    );
    case(
        "np_huge",
        &npy_bytes(&dict("<f4", "False", "(1152921504606846976,)"), &[0; 4]),
        "needs more than",
    );
    case(
        "np_overflow",
        &npy_bytes(&dict("<f8", "False", "(4294967296, 4294967296)"), &[0; 4]),
        "needs more than",
    );
    case(
        "np_zero_overflow",
        &npy_bytes(&dict("<f8", "False", "(0, 4294967296, 4294967296)"), b""),
        "needs more than",
    );
    case("np_truncated", &npy_bytes(&dict("<f4", "False", "(3,)"), &[0; 11]), "needs more than");
    case("np_bool", &npy_bytes(&dict("|b1", "False", "(2,)"), &[1, 7]), "bool element 1");
    case("np_fortran_word", &npy_bytes(&dict("<f4", "Maybe", "(1,)"), &[0; 4]), "fortran_order");
    // A Python 2 header (`3L`) and Fortran order are fine.
    let path = dir
        .write("np_py2", &npy_bytes(&dict("<i2", "True", "(2L, 2L)"), &[1, 0, 2, 0, 3, 0, 4, 0]));
    assert_eq!(io::load_npy(&path).unwrap().to_vec::<i16>().unwrap(), vec![1, 3, 2, 4]);
}

#[test]
fn hostile_npz_are_errors_naming_the_member() {
    let dir = TempDir::new("hostile_npz_are_errors_naming_the_member");
    let path = dir.write("bad.npz", b"PK\x03\x04 this is not a zip");
    assert_file_error(io::load_npz(&path), &path, "zip");
    // A valid zip whose member is not an .npy file.
    let path = dir.path("other.npz");
    {
        use std::io::Write;
        let mut z = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        z.start_file("notes.txt", zip::write::SimpleFileOptions::default()).unwrap();
        z.write_all(b"hi").unwrap();
        z.finish().unwrap();
    }
    assert_file_error(io::load_npz(&path), &path, "`notes.txt` is not a .npy file");
    // A member whose .npy is corrupt names the member.
    let path = dir.path("corrupt.npz");
    {
        use std::io::Write;
        let mut z = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        z.start_file("x.npy", zip::write::SimpleFileOptions::default()).unwrap();
        z.write_all(b"\x93NUMPY\x01\x00\x04\x00{}\n\n").unwrap();
        z.finish().unwrap();
    }
    assert_file_error(io::load_npz(&path), &path, "member `x.npy`: header");
}

/// Builds GGUF bytes field by field.
#[derive(Default)]
struct Gguf(Vec<u8>);

impl Gguf {
    fn header(version: u32, tensors: u64, kvs: u64) -> Gguf {
        let mut g = Gguf(b"GGUF".to_vec());
        g.u32(version).u64(tensors).u64(kvs);
        g
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend(v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend(v.to_le_bytes());
        self
    }
    fn str(&mut self, s: &str) -> &mut Self {
        self.u64(s.len() as u64);
        self.0.extend(s.as_bytes());
        self
    }
    fn tensor(&mut self, name: &str, dims: &[u64], ty: u32, offset: u64) -> &mut Self {
        self.str(name).u32(dims.len() as u32);
        dims.iter().for_each(|&d| {
            self.u64(d);
        });
        self.u32(ty).u64(offset)
    }
    fn pad(&mut self, align: usize) -> &mut Self {
        while !self.0.len().is_multiple_of(align) {
            self.0.push(0);
        }
        self
    }
    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend(b);
        self
    }
}

#[test]
fn crafted_gguf_round_trips_through_the_builder() {
    let dir = TempDir::new("crafted_gguf_round_trips_through_the_builder");
    // The builder itself writes valid files: one f32 tensor of 2 x 3.
    let mut g = Gguf::header(3, 1, 1);
    g.str("general.alignment").u32(4).u32(16).tensor("w", &[3, 2], 0, 0).pad(16);
    for v in 0..6 {
        g.bytes(&(v as f32).to_le_bytes());
    }
    let path = dir.write("ok.gguf", &g.0);
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.alignment(), 16);
    let w = f.tensor("w").unwrap();
    assert_eq!(w.shape(), &[2, 3]);
    assert_eq!(w.to_vec::<f32>().unwrap(), vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
}

#[test]
fn hostile_gguf_are_errors_naming_the_field() {
    let dir = TempDir::new("hostile_gguf_are_errors_naming_the_field");
    let case = |name: &str, g: &Gguf, needle: &str| {
        let path = dir.write(name, &g.0);
        assert_file_error(GgufFile::open(&path).map(|_| ()), &path, needle);
    };
    case("g_empty", &Gguf::default(), "magic");
    case("g_magic", &Gguf(b"GGML\x03\x00\x00\x00".to_vec()), "magic");
    case("g_v1", &Gguf::header(1, 0, 0), "version 1");
    case("g_big_endian", &Gguf::header(3u32.swap_bytes(), 0, 0), "big-endian");
    case("g_truncated", &Gguf(b"GGUF\x03\x00\x00\x00\x00\x00".to_vec()), "tensor count");
    case("g_kv_count", &Gguf::header(3, 0, 1 << 60), "metadata count");
    case("g_tensor_count", &Gguf::header(3, 1 << 60, 0), "tensor count");
    let kv = |ty: u32| {
        let mut g = Gguf::header(3, 0, 1);
        g.str("k").u32(ty);
        g
    };
    case("g_key_len", Gguf::header(3, 0, 1).u64(1 << 40).bytes(&[0; 16]), "metadata key #0");
    case("g_str_len", kv(8).u64(1 << 40), "metadata `k`: string of 1099511627776 bytes");
    case("g_type", kv(13).u32(0), "unknown value type 13");
    case("g_bool", kv(7).bytes(&[2]), "bool is 2");
    case("g_array_count", kv(9).u32(4).u64(1 << 60), "1152921504606846976 entries");
    case("g_array_type", kv(9).u32(42).u64(1), "unknown array element type 42");
    let mut deep = kv(9);
    for _ in 0..64 {
        deep.u32(9).u64(1);
    }
    case("g_deep", &deep, "nested deeper");
    let mut utf8 = Gguf::header(3, 0, 1);
    utf8.u64(2).bytes(&[0xff, 0xfe]).u32(4).u32(0);
    case("g_utf8", &utf8, "not UTF-8");
    let mut dup = Gguf::header(3, 0, 2);
    dup.str("k").u32(4).u32(1).str("k").u32(4).u32(2);
    case("g_dup_key", &dup, "appears twice");
    case(
        "g_alignment",
        Gguf::header(3, 0, 1).str("general.alignment").u32(4).u32(24),
        "power of two",
    );
    case(
        "g_alignment_type",
        Gguf::header(3, 0, 1).str("general.alignment").u32(10).u64(32),
        "power of two",
    );
    let tensor = |dims: &[u64], ty: u32, offset: u64| {
        let mut g = Gguf::header(3, 1, 0);
        g.tensor("t", dims, ty, offset);
        g
    };
    case("g_dims", &tensor(&[1, 1, 1, 1, 1], 0, 0), "5 dimensions");
    case("g_ggml_type", &tensor(&[4], 99, 0), "unknown ggml type 99");
    case("g_removed_type", &tensor(&[4], 4, 0), "unknown ggml type 4");
    case("g_block", &tensor(&[33], 8, 0), "not a multiple of the Q8_0 block size 32");
    case("g_quant_scalar", &tensor(&[], 2, 0), "at least one dimension");
    case("g_offset_align", &tensor(&[1], 0, 3), "not a multiple of the alignment");
    case("g_past_end", tensor(&[8], 0, 0).pad(32).bytes(&[0; 16]), "run past the end");
    case(
        "g_offset_huge",
        tensor(&[1], 0, u64::MAX - 31).pad(32).bytes(&[0; 4]),
        "run past the end",
    );
    case("g_elements", &tensor(&[1 << 32, 1 << 32, 1 << 32], 0, 0), "too large");
    case("g_zero_extent", &tensor(&[0, 1 << 32, 1 << 32, 1 << 32], 0, 0), "too large");
    let mut dup_t = Gguf::header(3, 2, 0);
    dup_t.tensor("t", &[1], 0, 0).tensor("t", &[1], 0, 32).pad(32).bytes(&[0; 64]);
    case("g_dup_tensor", &dup_t, "appears twice");
}

// ---------------------------------------------------------------- truncation and mutation

/// Loads `bytes` with `load` after every truncation and many pseudo-random mutations: any
/// result is fine, a panic is not.
fn survive_damage(dir: &TempDir, name: &str, load: impl Fn(&Path) -> bool) {
    let good = std::fs::read(fixture_file(name)).unwrap();
    let path = dir.path(&format!("damaged_{name}"));
    assert!(load(&fixture_file(name)), "{name} should load intact");
    let step = (good.len() / 400).max(1);
    for cut in (0..good.len()).step_by(step) {
        std::fs::write(&path, &good[..cut]).unwrap();
        // Losing more than any trailing padding loses data.
        assert!(!load(&path) || cut + 64 > good.len(), "{name} cut at {cut} loaded");
    }
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..1500 {
        let mut bad = good.clone();
        for _ in 0..1 + next() % 4 {
            let at = (next() % bad.len() as u64) as usize;
            bad[at] = match next() % 3 {
                0 => next() as u8,
                1 => bad[at] ^ (1 << (next() % 8)),
                _ => 0xff,
            };
        }
        std::fs::write(&path, &bad).unwrap();
        load(&path);
    }
}

#[test]
fn damaged_files_never_panic() {
    let dir = TempDir::new("damaged_files_never_panic");
    survive_damage(&dir, "model.gguf", |p| {
        GgufFile::open(p).map(|f| f.dequantize("q4_1").is_ok()).unwrap_or(false)
    });
    survive_damage(&dir, "all.safetensors", |p| io::load_safetensors(p).is_ok());
    survive_damage(&dir, "float64.npy", |p| io::load_npy(p).is_ok());
    survive_damage(&dir, "fortran.npy", |p| io::load_npy(p).is_ok());
    survive_damage(&dir, "arrays.npz", |p| io::load_npz(p).is_ok());
    survive_damage(&dir, "compressed.npz", |p| io::load_npz(p).is_ok());
}
