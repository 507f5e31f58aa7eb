//! The generation engine: ONNX Runtime provisioning, model folders, chat templates, the
//! sampler and the k-sample loop. No UI and no store here: `fill` in `cli::generate` and
//! the TUI's worker thread drive it.

pub mod decoding;
mod generate;
pub mod gguf;
mod model;
pub mod onnx;
mod runtime;
pub mod sampler;
mod template;
mod weights;

use std::path::{Path, PathBuf};

pub use generate::{FinishReason, GenOptions, Generator, MAX_BATCH, PoolTiming, Sample, SampleSpec};
pub use model::{KvType, ModelFile, ModelFolder, Signature};
pub use runtime::{EpChoice, ProviderUsed, Runtime, cuda_available, runtime};
pub use sampler::SamplingParams;

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
    #[error(transparent)]
    Gguf(#[from] gguf::GgufError),
    #[error("{0}")]
    Weights(String),
}

/// Loads a model folder on the chosen execution provider. A GGUF model's graph is built
/// in memory first.
pub fn load(dir: &Path, ep: EpChoice, threads: Option<usize>) -> Result<Generator, EngineError> {
    let mut folder = ModelFolder::open(dir)?;
    let (session, provider) = match &folder.model {
        ModelFile::Onnx(onnx) => runtime::session(runtime::Source::File(onnx), ep, threads)?,
        ModelFile::Gguf { gguf, .. } => {
            let built = gguf::decoder::build(gguf)?;
            folder.notices.extend(built.notices);
            let source =
                runtime::Source::Memory { path: &gguf.path, graph: &built.graph, weights: built.weights.into() };
            runtime::session(source, ep, threads)?
        }
    };
    Generator::new(folder, session, provider)
}

/// What `convert` wrote.
pub struct Converted {
    pub files: Vec<String>,
    pub notices: Vec<String>,
}

/// Writes the graph ualign builds from a GGUF model (a `.gguf` file or a folder with one)
/// as an ONNX model folder in `out`, which must not hold a model yet: `model.onnx` and
/// `model.onnx.data`, `config.json`, `generation_config.json` and the tokenizer files.
pub fn convert(model: &Path, out: &Path) -> Result<Converted, EngineError> {
    let folder = ModelFolder::open(model)?;
    let ModelFile::Gguf { gguf, .. } = &folder.model else {
        return Err(EngineError::Folder {
            file: folder.model.path().to_path_buf(),
            problem: "this is an ONNX model already; convert reads GGUF files".into(),
        });
    };
    let built = gguf::decoder::build(gguf)?;
    let io = |file: PathBuf, e: std::io::Error| EngineError::Folder { file, problem: format!("cannot write it: {e}") };
    if out.join("model.onnx").exists() {
        return Err(EngineError::Folder {
            file: out.join("model.onnx"),
            problem: "exists already; convert writes into a new or empty folder".into(),
        });
    }
    std::fs::create_dir_all(out).map_err(|e| io(out.to_path_buf(), e))?;
    let eos = || folder.eos_ids.clone();
    let generation = match &folder.generation {
        serde_json::Value::Null => {
            serde_json::json!({"eos_token_id": eos(), "bos_token_id": built.config["bos_token_id"]})
        }
        g => g.clone(),
    };
    let mut tokenizer_config = serde_json::json!({
        "bos_token": folder.bos_token, "eos_token": folder.eos_token, "chat_template": folder.chat_template,
        "add_bos_token": false, "clean_up_tokenization_spaces": false, "model_max_length": built.arch.positions,
        "tokenizer_class": "PreTrainedTokenizerFast",
    });
    let given = folder.dir.join("tokenizer_config.json");
    if given.is_file() {
        tokenizer_config = model::read_json(&given)?;
    }
    let pretty = |v: &serde_json::Value| serde_json::to_vec_pretty(v).expect("JSON values serialise");
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("model.onnx", built.graph),
        (onnx::WEIGHTS_FILE, built.weights),
        ("config.json", pretty(&folder.config)),
        ("generation_config.json", pretty(&generation)),
        ("tokenizer_config.json", pretty(&tokenizer_config)),
    ];
    let mut names = Vec::new();
    for (name, bytes) in files {
        let path = out.join(name);
        write_whole(&path, &bytes).map_err(|e| io(path.clone(), e))?;
        names.push(name.to_string());
    }
    let tok = out.join("tokenizer.json");
    folder
        .tokenizer
        .save(&tok, true)
        .map_err(|e| EngineError::Folder { file: tok.clone(), problem: format!("cannot write it: {e}") })?;
    names.push("tokenizer.json".into());
    Ok(Converted { files: names, notices: built.notices })
}

/// Writes a file whole: to a temporary name, then renamed, so a crash leaves no half file.
fn write_whole(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
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
