//! The generation engine: ONNX Runtime provisioning, model folders, chat templates, the
//! sampler and the k-sample loop. No UI and no store here: `fill` in `cli::generate` and
//! the TUI's worker thread drive it.

mod generate;
pub mod gguf;
mod model;
pub mod onnx;
mod runtime;
pub mod sampler;
mod template;

use std::path::{Path, PathBuf};

pub use generate::{FinishReason, GenOptions, Generator, MAX_BATCH, PoolTiming, Sample, SampleSpec};
pub use model::{KvType, ModelFolder, Signature};
pub use runtime::{EpChoice, ProviderUsed, Runtime, cuda_available, runtime};
pub use sampler::SamplingParams;

pub use crate::seed::sample_seed;

use crate::decoding::Decoding;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(
        "ONNX Runtime could not be loaded.\n  Tried:\n  {tried}\n  Fix it one of three ways:\n  1. set ORT_DYLIB_PATH to a libonnxruntime.so (1.31 or newer);\n  2. rebuild with python3 and pip on PATH, so the build fetches the onnxruntime wheel itself (`cargo build --release`);\n  3. `python3 -m pip install onnxruntime==1.31.1` (or onnxruntime-gpu for CUDA), which ualign finds at run time"
    )]
    NoRuntime { tried: String },
    #[error("{file}: {problem}")]
    Folder { file: PathBuf, problem: String },
    #[error("cannot create an ONNX Runtime session for {path}: {message}")]
    Session { path: PathBuf, message: String },
    #[error(
        "the CUDA execution provider could not be registered: {message}\n  --ep cuda never falls back to CPU; use --ep auto to fall back, or install onnxruntime-gpu with CUDA 13 and cuDNN 9 and point ORT_DYLIB_PATH at its libonnxruntime.so"
    )]
    Cuda { message: String },
    #[error("ONNX Runtime failed during generation: {0}")]
    Run(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("chat template: {0}")]
    Template(String),
    #[error("prompt: {0}")]
    Prompt(String),
    #[error("cancelled")]
    Cancelled,
}

/// Loads a model folder on the chosen execution provider.
pub fn load(dir: &Path, ep: EpChoice, threads: Option<usize>) -> Result<Generator, EngineError> {
    let folder = ModelFolder::open(dir)?;
    let (session, provider) = runtime::session(&folder.onnx, ep, threads)?;
    Generator::new(folder, session, provider)
}

impl Generator {
    /// Token ids of a prompt: through the chat template when asked and the folder has one
    /// (the template writes its own special tokens), else the raw text with the
    /// tokenizer's own special tokens.
    pub fn encode_prompt(&self, text: &str, use_template: bool) -> Result<Vec<u32>, EngineError> {
        let tok = &self.folder.tokenizer;
        let (input, special) = match (&self.folder.chat_template, use_template) {
            (Some(t), true) => (
                template::render(
                    t,
                    text,
                    self.folder.bos_token.as_deref(),
                    self.folder.eos_token.as_deref(),
                    self.template_day,
                )?,
                false,
            ),
            _ => (text.to_string(), true),
        };
        let enc = tok.encode(input.as_str(), special).map_err(|e| EngineError::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }
}

impl From<&Decoding> for GenOptions {
    fn from(d: &Decoding) -> Self {
        GenOptions { params: d.sampling, max_new_tokens: d.max_new_tokens, stop: d.stop.clone(), ignore_eos: false }
    }
}
