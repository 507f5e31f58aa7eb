//! ualign-engine: the generation engine. ONNX Runtime provisioning ([`runtime`]), model
//! folders of ONNX exports or GGUF files ([`ModelFolder`], [`gguf`], whose graphs
//! [`onnx`] builds), chat templates, the sampler ([`sampler`], transformers' logits
//! processors in their order) and the k-sample loop ([`Generator::generate`]). It knows
//! nothing of studies, databases or screens: it samples prompts with [`decoding`]
//! settings and per-sample seeds, and `ualign-core` fills a study's pools with it.
//!
//! ```no_run
//! use ualign_engine::{EpChoice, GenOptions, SampleSpec, SamplingParams};
//! let mut g = ualign_engine::load("assets/models/fortune-llama".as_ref(), EpChoice::Cpu, Some(2))?;
//! let ids = g.encode_prompt("Tell me a fortune.", true)?;
//! let specs: Vec<SampleSpec> = (0..4).map(|i| SampleSpec { index: i, seed: 7 + u64::from(i) }).collect();
//! let opts = GenOptions { params: SamplingParams::default(), max_new_tokens: 40, stop: vec![], ignore_eos: false };
//! let (samples, _timing) = g.generate(&ids, &specs, &opts, None)?;
//! # Ok::<(), ualign_engine::EngineError>(())
//! ```

mod convert;
pub mod decoding;
mod error;
mod generate;
pub mod gguf;
mod model;
pub mod onnx;
mod runtime;
pub mod sampler;
pub mod server;
mod template;
mod weights;

use std::path::Path;

pub use convert::{Converted, convert};
pub use decoding::Precision;
pub use error::EngineError;
pub use generate::{FinishReason, GenOptions, Generator, MAX_BATCH, PoolTiming, Sample, SampleSpec};
pub use model::{KvType, ModelFile, ModelFolder, Signature};
pub use runtime::{EpChoice, ProviderUsed, Runtime, cuda_available, runtime};
pub use sampler::SamplingParams;

/// The names a study may give its `model` for the embedded default model: SmolLM2-135M-
/// Instruct, whose folder (`assets/models/smollm2-135m-instruct`) ships with ualign and
/// whose GGUF the build provisions.
pub const DEFAULT_MODEL_NAMES: [&str; 2] = ["default", "smollm2-135m-instruct"];

/// The embedded default model's folder (see [`DEFAULT_MODEL_NAMES`]).
pub fn default_model_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/models/smollm2-135m-instruct").components().collect()
}

/// Loads a model folder on the chosen execution provider. A GGUF model's graph is built
/// in memory first.
pub fn load(dir: &Path, ep: EpChoice, threads: Option<usize>) -> Result<Generator, EngineError> {
    load_at(dir, ep, threads, Precision::Exact)
}

/// [`load`], with a GGUF model's matrices multiplied at `precision`. An ONNX file's
/// `MatMulNBits` nodes keep what they were exported with, so it takes exact only.
pub fn load_at(
    dir: &Path,
    ep: EpChoice,
    threads: Option<usize>,
    precision: Precision,
) -> Result<Generator, EngineError> {
    let mut folder = ModelFolder::open(dir)?;
    folder.takes(precision)?;
    let (session, provider) = match &folder.model {
        ModelFile::Onnx(onnx) => runtime::session(runtime::Source::File(onnx), ep, threads)?,
        ModelFile::Gguf { gguf, .. } => {
            let built = gguf::decoder::build(gguf, precision)?;
            folder.notices.extend(built.notices);
            let source =
                runtime::Source::Memory { path: &gguf.path, graph: &built.graph, weights: built.weights.into() };
            runtime::session(source, ep, threads)?
        }
    };
    let mut g = Generator::new(folder, session, provider)?;
    g.precision = precision;
    Ok(g)
}
