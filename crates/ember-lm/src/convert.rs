//! `ember convert` (as `mlx_lm.convert`): rewrites a Hugging Face model directory in MLX's
//! layout, optionally quantizing its matrices with MLX's affine scheme. The output is what
//! mlx-lm writes: `model.safetensors` with the Hugging Face tensor names (a quantized matrix
//! as `<name>.weight` uint32 codes, `<name>.scales`, `<name>.biases`), config.json with a
//! `quantization` entry (`group_size`, `bits`, also copied to `quantization_config` as
//! mlx-lm does) and the tokenizer and other non-weight files copied. [`crate::hf::load`]
//! reads it back.
//!
//! GGUF input is refused: its tensors would need llama.cpp's Q/K row permutation undone and
//! its tokenizer written as tokenizer.json, which ember does not do yet.

use crate::error::{Error, Result};
use crate::hf::{config_from_json, read_json};
use crate::hf_weights::{Quantization, SafetensorsWeights, INDEX_FILE, WEIGHTS_FILE};
use ember_core::io::save_safetensors;
use ember_core::{ops, Array};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;

/// Extensions of weight files, which are never copied (the weights are rewritten).
const WEIGHT_EXTENSIONS: [&str; 8] =
    ["safetensors", "bin", "pt", "pth", "gguf", "h5", "msgpack", "ckpt"];

/// Whether the tensor `name` is quantized under `q`: as mlx-lm's default predicate, the
/// 2-d `.weight` of a linear or embedding layer (the only 2-d weights of these models)
/// whose rows are whole groups.
fn quantizable(name: &str, a: &Array, q: Quantization) -> bool {
    name.ends_with(".weight")
        && a.ndim() == 2
        && a.dtype().is_float()
        && a.shape()[1].is_multiple_of(q.group_size)
}

/// Checks that `out` can be written: absent, or an empty directory.
fn check_output(out: &Path) -> Result<()> {
    if !out.exists() {
        return Ok(());
    }
    let mut entries = std::fs::read_dir(out)
        .map_err(|e| Error::model(out, format!("cannot write there: {e}")))?;
    if entries.next().is_some() {
        return Err(Error::model(out, "already exists and is not empty; choose a new directory"));
    }
    Ok(())
}

/// Converts the Hugging Face directory `src` into `out` (created; it must not hold files),
/// quantizing its matrices when `quantize` is given. `progress` receives one line per step.
pub fn convert(
    src: &Path,
    out: &Path,
    quantize: Option<Quantization>,
    progress: &mut dyn FnMut(&str),
) -> Result<()> {
    if !src.is_dir() {
        return Err(Error::model(
            src,
            "ember convert reads Hugging Face model directories; converting GGUF files is not \
             supported yet",
        ));
    }
    if let Some(q) = quantize {
        if !ops::affine::SUPPORTED_BITS.contains(&q.bits) {
            return Err(Error::model(
                src,
                format!("--q-bits {} is not supported (2, 4, 8)", q.bits),
            ));
        }
        if !ops::affine::SUPPORTED_GROUP_SIZES.contains(&q.group_size) {
            return Err(Error::model(
                src,
                format!("--q-group-size {} is not supported (32, 64, 128)", q.group_size),
            ));
        }
    }
    check_output(out)?;
    let config_path = src.join("config.json");
    let mut config = read_json(&config_path)?.ok_or_else(|| {
        Error::model(&config_path, "missing: a model directory needs config.json")
    })?;
    // Checks the model is one ember runs, and reads how it is already quantized.
    let existing = config_from_json(&config, &config_path)?.quantization;
    if quantize.is_some() && existing.is_some() {
        return Err(Error::model(&config_path, "the model is already quantized"));
    }
    let weights = SafetensorsWeights::open(src, existing)?;
    let mut names: Vec<(&str, &Array)> = weights.tensors().collect();
    names.sort_by_key(|(n, _)| *n);
    let mut tensors: Vec<(String, Array)> = Vec::new();
    for (i, (name, a)) in names.iter().enumerate() {
        let line = format!("[{}/{}] {name} {:?} {}", i + 1, names.len(), a.shape(), a.dtype());
        match quantize.filter(|&q| quantizable(name, a, q)) {
            Some(q) => {
                let (codes, scales, biases) = ops::quantize(a, q.group_size, q.bits)?;
                ember_core::eval(&[&codes, &scales, &biases])?;
                let module = name.strip_suffix(".weight").expect("checked by quantizable");
                tensors.push((name.to_string(), codes));
                tensors.push((format!("{module}.scales"), scales));
                tensors.push((format!("{module}.biases"), biases));
                progress(&format!("{line} -> {}-bit, groups of {}", q.bits, q.group_size));
            }
            None => {
                tensors.push((name.to_string(), (*a).clone()));
                progress(&line);
            }
        }
    }
    std::fs::create_dir_all(out).map_err(|e| Error::model(out, format!("cannot create: {e}")))?;
    let refs: Vec<(&str, &Array)> = tensors.iter().map(|(n, a)| (n.as_str(), a)).collect();
    let metadata = HashMap::from([("format".to_string(), "mlx".to_string())]);
    save_safetensors(out.join(WEIGHTS_FILE), &refs, Some(&metadata))?;
    progress(&format!("wrote {}", out.join(WEIGHTS_FILE).display()));
    if let Some(q) = quantize {
        let entry = json!({"group_size": q.group_size, "bits": q.bits, "mode": "affine"});
        config.insert("quantization".into(), entry.clone());
        config.insert("quantization_config".into(), entry);
    }
    let text = serde_json::to_string_pretty(&Value::Object(config))
        .map_err(|e| Error::model(&config_path, format!("cannot write: {e}")))?;
    write(&out.join("config.json"), text.as_bytes())?;
    copy_other_files(src, out, progress)
}

/// Writes `bytes` to `path`.
fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| Error::model(path, format!("cannot write: {e}")))
}

/// Copies the files of `src` that are not weights, the shard index or config.json (the
/// tokenizer, its config, the generation config, the chat template...).
fn copy_other_files(src: &Path, out: &Path, progress: &mut dyn FnMut(&str)) -> Result<()> {
    let entries =
        std::fs::read_dir(src).map_err(|e| Error::model(src, format!("cannot list: {e}")))?;
    for entry in entries {
        let path = entry.map_err(|e| Error::model(src, format!("cannot list: {e}")))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let weight = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| WEIGHT_EXTENSIONS.contains(&e));
        if !path.is_file() || weight || name == INDEX_FILE || name == "config.json" {
            continue;
        }
        std::fs::copy(&path, out.join(name))
            .map_err(|e| Error::model(&path, format!("cannot copy: {e}")))?;
        progress(&format!("copied {name}"));
    }
    Ok(())
}
