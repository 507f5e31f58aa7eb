//! ONNX Runtime provisioning: finds the shared library, initialises `ort` once per
//! process, and builds sessions on the requested execution provider.
//!
//! The library comes, in this order, from `ORT_DYLIB_PATH`; from what the build fetched
//! (`build.rs`, compiled in as `UALIGN_ORT_BUILD_DYLIB`); or from an installed Python
//! `onnxruntime` / `onnxruntime-gpu` package.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use ort::ep::{self, ExecutionProvider};
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;

use crate::error::EngineError;

/// The loaded library's ONNX Runtime environment, which every session is built in.
#[derive(Clone)]
pub struct Runtime {
    env: ort::environment::Environment,
}

static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();

/// Execution provider requested with `--ep`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EpChoice {
    #[default]
    Cpu,
    Cuda,
    /// CUDA when it works, else CPU with a visible notice.
    Auto,
}

fn python_onnxruntime() -> Option<PathBuf> {
    let out = Command::new("python3")
        .args(["-c", "import onnxruntime, os; print(os.path.dirname(onnxruntime.__file__))"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("capi");
    let mut libs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("libonnxruntime.so")))
        .collect();
    libs.sort();
    libs.pop()
}

fn candidates() -> Vec<(PathBuf, &'static str)> {
    let mut out = Vec::new();
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        out.push((PathBuf::from(p), "ORT_DYLIB_PATH"));
    }
    let built = env!("UALIGN_ORT_BUILD_DYLIB");
    if !built.is_empty() && Path::new(built).is_file() {
        out.push((PathBuf::from(built), "the build (pip download of the onnxruntime wheel)"));
    }
    if out.is_empty()
        && let Some(p) = python_onnxruntime()
    {
        out.push((p, "the installed Python onnxruntime package"));
    }
    out
}

/// Loads ONNX Runtime once; later calls return the same result.
pub fn runtime() -> Result<&'static Runtime, EngineError> {
    let r = RUNTIME.get_or_init(|| {
        let tried = candidates();
        let mut problems = Vec::new();
        for (path, found_by) in tried {
            if !path.is_file() {
                problems.push(format!("{} (from {found_by}): no such file", path.display()));
                continue;
            }
            match ort::init_from(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| b.with_name("ualign").build().map_err(|e| e.to_string()))
            {
                Ok(env) => {
                    return Ok(Runtime { env });
                }
                Err(e) => problems.push(format!("{} (from {found_by}): {e}", path.display())),
            }
        }
        Err(problems.join("\n  "))
    });
    r.as_ref().map_err(|tried| EngineError::NoRuntime { tried: tried.clone() })
}

/// The provider a session actually runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderUsed {
    pub name: &'static str,
    pub(crate) device: String,
    /// Set when `auto` fell back to CPU: why.
    pub fallback: Option<String>,
}

impl std::fmt::Display for ProviderUsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.name, self.device)
    }
}

/// What a session is built from: an ONNX file, or a graph built in memory with its
/// external data (the weights) in memory too.
pub(crate) enum Source<'a> {
    File(&'a Path),
    Memory { path: &'a Path, graph: &'a [u8], weights: Arc<[u8]> },
}

impl Source<'_> {
    fn path(&self) -> &Path {
        match self {
            Source::File(p) | Source::Memory { path: p, .. } => p,
        }
    }
}

/// Builds a session for `model` on the chosen provider. CUDA is registered with
/// `error_on_failure`, so it never falls back to CPU silently; `auto` falls back and says so.
/// TF32 is off on CUDA: a study's samples are computed in full fp32, as on the CPU.
pub(crate) fn session(
    source: Source<'_>,
    ep_choice: EpChoice,
    threads: Option<usize>,
) -> Result<(Session, ProviderUsed), EngineError> {
    let rt = runtime()?;
    let model = source.path();
    let build = |cuda: bool| -> Result<Session, ort::Error> {
        let mut b = Session::builder(&rt.env)?.with_optimization_level(GraphOptimizationLevel::Level3)?;
        if let Some(t) = threads {
            b = b.with_intra_threads(t)?;
        }
        if cuda {
            b = b.with_execution_providers([ep::CUDA::default().with_tf32(false).build().error_on_failure()])?;
        }
        match &source {
            Source::File(p) => b.commit_from_file(p),
            Source::Memory { graph, weights, .. } => b
                .with_external_initializer_file_in_memory(super::onnx::WEIGHTS_FILE, weights.clone())?
                .commit_from_memory(graph),
        }
    };
    let err = |e: ort::Error| EngineError::Session { path: model.to_path_buf(), message: e.to_string() };
    match ep_choice {
        EpChoice::Cpu => {
            Ok((build(false).map_err(err)?, ProviderUsed { name: "cpu", device: "cpu".into(), fallback: None }))
        }
        EpChoice::Cuda => {
            let s = build(true).map_err(|e| EngineError::Cuda { message: e.to_string() })?;
            Ok((s, ProviderUsed { name: "cuda", device: cuda_device(), fallback: None }))
        }
        EpChoice::Auto => match build(true) {
            Ok(s) => Ok((s, ProviderUsed { name: "cuda", device: cuda_device(), fallback: None })),
            Err(e) => {
                let s = build(false).map_err(err)?;
                Ok((s, ProviderUsed { name: "cpu", device: "cpu".into(), fallback: Some(e.to_string()) }))
            }
        },
    }
}

fn cuda_device() -> String {
    let visible = std::env::var("CUDA_VISIBLE_DEVICES").unwrap_or_default();
    let name = Command::new("nvidia-smi")
        .args(["--query-gpu=name", "--format=csv,noheader", "-i", "0"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    match (name.is_empty(), visible.is_empty()) {
        (false, _) => format!("0 ({name})"),
        (true, false) => visible,
        _ => "0".into(),
    }
}

/// True when `ep::CUDA` can be registered with the loaded library.
pub fn cuda_available() -> bool {
    runtime().is_ok() && ep::CUDA::is_available().unwrap_or(false)
}
