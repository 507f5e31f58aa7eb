//! Everything that can go wrong in the engine, each saying what to do about it.

use std::path::PathBuf;

use crate::gguf;

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
