//! A model folder as Hugging Face tools write it: `config.json`, `generation_config.json`,
//! `tokenizer.json`, `tokenizer_config.json`, and `model.onnx` or
//! `decoder_model_merged.onnx` exported with Optimum's `text-generation-with-past` (or
//! written by onnxruntime-genai's builder or `ualign convert`). Or a folder with a GGUF
//! file (llama.cpp's format), whose graph the engine builds itself: its tokenizer and chat
//! template come from the GGUF unless `tokenizer.json` / `tokenizer_config.json` are
//! beside it; or a folder whose `weights.json` names where its GGUF is provisioned (the
//! default model). Reading it checks everything generation relies on and names the file
//! at fault.

use std::path::{Path, PathBuf};

use ort::session::Session;
use ort::value::{TensorElementType, ValueType};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::EngineError;
use crate::gguf::{self, Gguf, Meta};

/// The file a folder's model runs from.
pub enum ModelFile {
    Onnx(PathBuf),
    /// A GGUF file, and its SHA-256 when provisioning already verified it.
    Gguf {
        gguf: Box<Gguf>,
        sha256: Option<String>,
    },
}

impl ModelFile {
    pub fn path(&self) -> &Path {
        match self {
            ModelFile::Onnx(p) => p,
            ModelFile::Gguf { gguf, .. } => &gguf.path,
        }
    }
}

/// The tokenizer and metadata of a model folder (no ONNX session).
pub struct ModelFolder {
    pub(crate) dir: PathBuf,
    pub model: ModelFile,
    pub tokenizer: tokenizers::Tokenizer,
    /// Where the tokenizer came from: the folder's tokenizer.json, or the GGUF.
    pub tokenizer_file: PathBuf,
    pub chat_template: Option<String>,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    /// Every id that ends a sequence (config.json and generation_config.json together).
    pub eos_ids: Vec<u32>,
    pub(crate) config: Value,
    /// generation_config.json's settings (null without one).
    pub generation: Value,
    /// What the user should be told about the folder: which defaults stand in for a
    /// missing optional file.
    pub(crate) notices: Vec<String>,
}

pub(super) fn read_json(path: &Path) -> Result<Value, EngineError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| EngineError::Folder { file: path.to_path_buf(), problem: format!("cannot read it: {e}") })?;
    serde_json::from_str(&text)
        .map_err(|e| EngineError::Folder { file: path.to_path_buf(), problem: format!("not valid JSON: {e}") })
}

fn ids_of(v: Option<&Value>) -> Vec<u32> {
    match v {
        Some(Value::Number(n)) => n.as_u64().map(|n| vec![n as u32]).unwrap_or_default(),
        Some(Value::Array(a)) => a.iter().filter_map(|x| x.as_u64()).map(|n| n as u32).collect(),
        _ => Vec::new(),
    }
}

/// A special token in tokenizer_config.json: a string or `{"content": ...}`.
fn token_text(v: Option<&Value>) -> Option<String> {
    match v {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Object(o)) => o.get("content").and_then(Value::as_str).map(String::from),
        _ => None,
    }
}

/// The folder's `.gguf` files.
fn gguf_files(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x.eq_ignore_ascii_case("gguf")))
        .collect();
    found.sort();
    found
}

/// The model file of a folder: `model.onnx`, Optimum's merged decoder, its one `.gguf`
/// file, or the GGUF its `weights.json` provisions.
fn find_model(dir: &Path) -> Result<FoundModel, EngineError> {
    if let Some(p) = ["model.onnx", "decoder_model_merged.onnx"].iter().map(|n| dir.join(n)).find(|p| p.is_file()) {
        return Ok(FoundModel::Onnx(p));
    }
    match &gguf_files(dir)[..] {
        [one] => return Ok(FoundModel::Gguf(one.clone(), None)),
        [] => {}
        many => {
            return Err(EngineError::Folder {
                file: dir.to_path_buf(),
                problem: format!(
                    "it holds {} GGUF files ({}); give the path of the one to use",
                    many.len(),
                    many.iter()
                        .filter_map(|p| p.file_name())
                        .map(|n| n.to_string_lossy())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
    }
    if dir.join(super::weights::DESCRIPTOR).is_file() {
        let (path, sha) = super::weights::resolve(dir)?;
        return Ok(FoundModel::Gguf(path, Some(sha)));
    }
    Err(EngineError::Folder {
        file: dir.join("model.onnx"),
        problem: "missing: expected model.onnx or decoder_model_merged.onnx (Optimum's text-generation-with-past export), or a .gguf file".into(),
    })
}

enum FoundModel {
    Onnx(PathBuf),
    Gguf(PathBuf, Option<String>),
}

/// An optional JSON file of the folder; a missing one is a notice saying which defaults apply.
fn optional_json(dir: &Path, name: &str, defaults: &str, notices: &mut Vec<String>) -> Result<Value, EngineError> {
    let path = dir.join(name);
    if path.is_file() {
        return read_json(&path);
    }
    notices.push(format!("{} has no {name}: {defaults}", dir.display()));
    Ok(Value::Null)
}

fn load_tokenizer(path: &Path) -> Result<tokenizers::Tokenizer, EngineError> {
    tokenizers::Tokenizer::from_file(path).map_err(|e| EngineError::Folder {
        file: path.to_path_buf(),
        problem: format!("cannot load the tokenizer: {e}"),
    })
}

fn gguf_error(e: gguf::GgufError) -> EngineError {
    EngineError::Gguf(e)
}

/// The chat template: tokenizer_config.json's (a string, or the "default" of a list of
/// named ones), else `chat_template.jinja`.
fn chat_template(dir: &Path, tc: &Value) -> Option<String> {
    match tc.get("chat_template") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Array(list)) => list
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
            .and_then(|t| t.get("template").and_then(Value::as_str))
            .map(String::from),
        _ => None,
    }
    .or_else(|| std::fs::read_to_string(dir.join("chat_template.jinja")).ok())
}

/// A GGUF metadata id as its token's text.
fn gguf_token(g: &Gguf, key: &str) -> Option<String> {
    let id = g.meta(key)?.as_u64()? as usize;
    gguf::tokenizer::tokens(g).ok()?.get(id).map(|t| t.to_string())
}

impl ModelFolder {
    /// Opens a model folder, or a `.gguf` file (with the files beside it).
    pub fn open(path: &Path) -> Result<Self, EngineError> {
        let is_gguf_file = path.is_file() && path.extension().is_some_and(|x| x.eq_ignore_ascii_case("gguf"));
        let dir = if is_gguf_file { path.parent().unwrap_or(Path::new(".")) } else { path };
        if !dir.is_dir() {
            return Err(EngineError::Folder {
                file: path.to_path_buf(),
                problem: "no such folder; a model folder holds config.json, tokenizer.json, tokenizer_config.json and model.onnx (or a .gguf file)".into(),
            });
        }
        let found = if is_gguf_file { FoundModel::Gguf(path.to_path_buf(), None) } else { find_model(dir)? };
        match found {
            FoundModel::Onnx(onnx) => Self::open_onnx(dir, onnx),
            FoundModel::Gguf(file, sha256) => {
                let g = Gguf::open(&file).map_err(gguf_error)?;
                Self::open_gguf(dir, g, sha256)
            }
        }
    }

    fn open_onnx(dir: &Path, onnx: PathBuf) -> Result<Self, EngineError> {
        let genai = dir.join("genai_config.json");
        let (config, genai_search) = if !dir.join("config.json").is_file() && genai.is_file() {
            from_genai_config(&read_json(&genai)?)
        } else {
            (read_json(&dir.join("config.json"))?, Value::Null)
        };
        let mut notices = Vec::new();
        let generation = if genai_search.is_null() || dir.join("generation_config.json").is_file() {
            generation_config(dir, &mut notices)?
        } else {
            genai_search
        };
        let tokenizer_file = dir.join("tokenizer.json");
        if !tokenizer_file.is_file() {
            return Err(EngineError::Folder {
                file: tokenizer_file,
                problem: "missing: the Hugging Face tokenizers file is required".into(),
            });
        }
        let tokenizer = load_tokenizer(&tokenizer_file)?;
        let tc = optional_json(
            dir,
            "tokenizer_config.json",
            "no chat template unless chat_template.jinja is there (prompts are sent as raw text), and no bos/eos tokens beyond tokenizer.json's own",
            &mut notices,
        )?;
        let folder = Self {
            dir: dir.to_path_buf(),
            model: ModelFile::Onnx(onnx),
            chat_template: chat_template(dir, &tc),
            bos_token: token_text(tc.get("bos_token")),
            eos_token: token_text(tc.get("eos_token")),
            tokenizer,
            tokenizer_file,
            eos_ids: Vec::new(),
            config,
            generation,
            notices,
        };
        Ok(folder.with_eos_ids(None))
    }

    /// A GGUF folder: config, tokenizer and chat template from the files beside the GGUF
    /// where they are there, else from the GGUF itself.
    fn open_gguf(dir: &Path, g: Gguf, sha256: Option<String>) -> Result<Self, EngineError> {
        let arch = gguf::decoder::Arch::read(&g).map_err(gguf_error)?;
        let config_file = dir.join("config.json");
        let config = if config_file.is_file() {
            read_json(&config_file)?
        } else {
            arch.config(&g, g.tensor("output.weight").is_none())
        };
        let mut notices = Vec::new();
        let generation = generation_config(dir, &mut notices)?;
        let tokenizer_file = dir.join("tokenizer.json");
        let tokenizer = if tokenizer_file.is_file() {
            let t = load_tokenizer(&tokenizer_file)?;
            gguf::tokenizer::check_vocab(&t, &tokenizer_file, &g).map_err(gguf_error)?;
            t
        } else {
            let json = gguf::tokenizer::tokenizer_json(&g).map_err(gguf_error)?;
            json.to_string().parse::<tokenizers::Tokenizer>().map_err(|e| EngineError::Folder {
                file: g.path.clone(),
                problem: format!("the tokenizer built from its metadata does not load: {e}"),
            })?
        };
        let tc_file = dir.join("tokenizer_config.json");
        let tc = if tc_file.is_file() { read_json(&tc_file)? } else { Value::Null };
        let from_gguf = |k: &str| g.meta(k).and_then(Meta::as_str).map(String::from);
        let folder = Self {
            dir: dir.to_path_buf(),
            chat_template: chat_template(dir, &tc).or_else(|| from_gguf("tokenizer.chat_template")),
            bos_token: token_text(tc.get("bos_token")).or_else(|| gguf_token(&g, "tokenizer.ggml.bos_token_id")),
            eos_token: token_text(tc.get("eos_token")).or_else(|| gguf_token(&g, "tokenizer.ggml.eos_token_id")),
            tokenizer,
            tokenizer_file: if tokenizer_file.is_file() { tokenizer_file } else { g.path.clone() },
            eos_ids: Vec::new(),
            config,
            generation,
            notices,
            model: ModelFile::Gguf { gguf: Box::new(g), sha256 },
        };
        let gguf_eos = match &folder.model {
            ModelFile::Gguf { gguf, .. } => gguf.meta("tokenizer.ggml.eos_token_id").and_then(Meta::as_u64),
            ModelFile::Onnx(_) => None,
        };
        Ok(folder.with_eos_ids(gguf_eos.map(|e| e as u32)))
    }

    /// Every id that ends a sequence: generation_config.json's, config.json's, the eos
    /// token's, the GGUF's.
    fn with_eos_ids(mut self, extra: Option<u32>) -> Self {
        let mut eos_ids = ids_of(self.generation.get("eos_token_id"));
        let eos_token_id = self.eos_token.as_deref().and_then(|t| self.tokenizer.token_to_id(t));
        for id in ids_of(self.config.get("eos_token_id")).into_iter().chain(eos_token_id).chain(extra) {
            if !eos_ids.contains(&id) {
                eos_ids.push(id);
            }
        }
        self.eos_ids = eos_ids;
        self
    }

    /// Whether the model can run at `precision`: a GGUF model at either (ualign builds its
    /// graph); an ONNX file's matmuls run as it was exported, so exact only.
    pub fn takes(&self, precision: crate::Precision) -> Result<(), EngineError> {
        match &self.model {
            ModelFile::Onnx(onnx) if !precision.is_exact() => Err(EngineError::Folder {
                file: onnx.clone(),
                problem: format!(
                    "precision = \"{}\" applies to GGUF models, whose graph ualign builds; an ONNX file's matmuls run as it was exported. Use precision = \"exact\" (the default) for this model, or give the model as a GGUF file",
                    precision.as_str()
                ),
            }),
            _ => Ok(()),
        }
    }

    /// The model's hash when run at `precision`: [`ModelFolder::hash`] for exact, and
    /// for fast the hash of that, the word and the fast path's version, so candidates
    /// from the two never pass for the same model's.
    pub fn hash_at(&self, precision: crate::Precision) -> Result<String, EngineError> {
        let exact = self.hash()?;
        if precision.is_exact() {
            return Ok(exact);
        }
        let mut h = Sha256::new();
        h.update(format!("{exact}\nprecision {} {}", precision.as_str(), crate::gguf::decoder::FAST_GRAPH_VERSION));
        Ok(format!("{:x}", h.finalize()))
    }

    /// SHA-256 of the model: of the ONNX file (and its external data file if any); of a
    /// GGUF file and the graph builder's version (a new builder is a new model).
    pub fn hash(&self) -> Result<String, EngineError> {
        let file_hash = |paths: &[PathBuf]| -> Result<String, EngineError> {
            let mut h = Sha256::new();
            for p in paths {
                if p.is_file() {
                    let mut f = std::fs::File::open(p).map_err(|e| EngineError::Folder {
                        file: p.clone(),
                        problem: format!("cannot read it: {e}"),
                    })?;
                    std::io::copy(&mut f, &mut h).map_err(|e| EngineError::Folder {
                        file: p.clone(),
                        problem: format!("cannot read it: {e}"),
                    })?;
                }
            }
            Ok(format!("{:x}", h.finalize()))
        };
        match &self.model {
            ModelFile::Onnx(onnx) => {
                file_hash(&[onnx.clone(), onnx.with_extension("onnx_data"), onnx.with_extension("onnx.data")])
            }
            ModelFile::Gguf { gguf, sha256 } => {
                let sha = match sha256 {
                    Some(s) => s.clone(),
                    None => file_hash(std::slice::from_ref(&gguf.path))?,
                };
                let mut h = Sha256::new();
                h.update(format!("{}\n{sha}", gguf::decoder::GRAPH_VERSION));
                Ok(format!("{:x}", h.finalize()))
            }
        }
    }
}

/// The config.json and generation_config.json equivalents of onnxruntime-genai's
/// `genai_config.json` (what its model builder writes instead).
fn from_genai_config(g: &Value) -> (Value, Value) {
    let m = &g["model"];
    let d = &m["decoder"];
    let config = serde_json::json!({
        "model_type": m["type"],
        "num_hidden_layers": d["num_hidden_layers"],
        "hidden_size": d["hidden_size"],
        "num_attention_heads": d["num_attention_heads"],
        "num_key_value_heads": d["num_key_value_heads"],
        "head_dim": d["head_size"],
        "max_position_embeddings": m["context_length"],
        "vocab_size": m["vocab_size"],
        "bos_token_id": m["bos_token_id"],
        "eos_token_id": m["eos_token_id"],
    });
    let s = &g["search"];
    let mut generation = serde_json::json!({"eos_token_id": m["eos_token_id"]});
    for key in ["do_sample", "temperature", "top_k", "top_p", "repetition_penalty"] {
        if !s[key].is_null() {
            generation[key] = s[key].clone();
        }
    }
    (config, generation)
}

/// generation_config.json, or a notice of the defaults that stand in for it.
fn generation_config(dir: &Path, notices: &mut Vec<String>) -> Result<Value, EngineError> {
    optional_json(
        dir,
        "generation_config.json",
        "the end-of-sequence ids come from config.json and tokenizer_config.json, and `ualign sample` uses transformers' defaults (temperature 1, top-k 50, no top-p or min-p, 64 new tokens)",
        notices,
    )
}

/// Element type of the KV cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvType {
    F32,
    F16,
}

/// What the ONNX graph takes and gives, read from the session.
#[derive(Debug, Clone)]
pub struct Signature {
    pub(crate) has_position_ids: bool,
    pub(crate) has_use_cache_branch: bool,
    /// Per layer: (past key, past value, present key, present value) names.
    pub(crate) layers: Vec<[String; 4]>,
    pub(crate) kv_type: KvType,
    pub(crate) kv_heads: usize,
    pub(crate) head_dim: usize,
    pub(crate) logits_type: KvType,
    /// Vocabulary size of the logits, when the graph states it.
    pub vocab: Option<usize>,
}

fn tensor_info(t: &ValueType) -> Option<(TensorElementType, Vec<i64>)> {
    match t {
        ValueType::Tensor { ty, shape, .. } => Some((*ty, shape.iter().copied().collect())),
        _ => None,
    }
}

/// A graph's inputs or outputs: name and type.
type Ports = Vec<(String, ValueType)>;

fn has(list: &[(String, ValueType)], n: &str) -> bool {
    list.iter().any(|(x, _)| x == n)
}

/// The KV cache's names per layer: (past key, past value, present key, present value).
fn kv_layers(inputs: &Ports, outputs: &Ports) -> Result<Vec<[String; 4]>, String> {
    let mut layers = Vec::new();
    while has(inputs, &format!("past_key_values.{}.key", layers.len())) {
        let i = layers.len();
        let names = [
            format!("past_key_values.{i}.key"),
            format!("past_key_values.{i}.value"),
            format!("present.{i}.key"),
            format!("present.{i}.value"),
        ];
        if !has(inputs, &names[1]) || !has(outputs, &names[2]) || !has(outputs, &names[3]) {
            return Err(format!(
                "layer {i}: expected inputs {} and {} and outputs {} and {}",
                names[0], names[1], names[2], names[3]
            ));
        }
        layers.push(names);
    }
    if layers.is_empty() {
        return Err("the graph has no past_key_values.* inputs: it was exported without a KV cache; use --task text-generation-with-past".into());
    }
    Ok(layers)
}

/// The graph's inputs are the ones ualign feeds.
fn check_inputs(inputs: &Ports) -> Result<(), String> {
    for need in ["input_ids", "attention_mask"] {
        if !has(inputs, need) {
            return Err(format!(
                "the graph has no `{need}` input (inputs: {}); export it with Optimum's --task text-generation-with-past",
                inputs.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
            ));
        }
    }
    let known = |n: &str| {
        matches!(n, "input_ids" | "attention_mask" | "position_ids" | "use_cache_branch")
            || n.starts_with("past_key_values.")
    };
    if let Some((n, _)) = inputs.iter().find(|(n, _)| !known(n)) {
        return Err(format!(
            "unexpected input `{n}`: ualign feeds input_ids, attention_mask, position_ids, use_cache_branch and past_key_values.*"
        ));
    }
    Ok(())
}

fn float_type(what: &str, ty: Option<TensorElementType>) -> Result<KvType, String> {
    match ty {
        Some(TensorElementType::Float32) => Ok(KvType::F32),
        Some(TensorElementType::Float16) => Ok(KvType::F16),
        other => Err(format!("{what} of type {other:?}: only fp32 and fp16 are supported")),
    }
}

/// The KV cache's head count and head size: from the graph where it states them, else
/// from config.json.
fn kv_dims(kv_shape: &[i64], config: &Value) -> Option<(usize, usize)> {
    let cfg = |k: &str| config.get(k).and_then(Value::as_u64).map(|v| v as usize);
    let heads = cfg("num_attention_heads").or(cfg("n_head"));
    let hidden = cfg("hidden_size").or(cfg("n_embd"));
    let kv_heads = if kv_shape[1] > 0 { Some(kv_shape[1] as usize) } else { cfg("num_key_value_heads").or(heads) };
    let head_dim = if kv_shape[3] > 0 {
        Some(kv_shape[3] as usize)
    } else {
        cfg("head_dim").or(match (hidden, heads) {
            (Some(h), Some(n)) if n > 0 => Some(h / n),
            _ => None,
        })
    };
    Some((kv_heads?, head_dim?))
}

impl Signature {
    /// Reads and checks the graph's inputs and outputs against the text-generation-with-past layout.
    pub(crate) fn read(session: &Session, onnx: &Path, config: &Value) -> Result<Self, EngineError> {
        let bad = |problem: String| EngineError::Folder { file: onnx.to_path_buf(), problem };
        let inputs: Ports = session.inputs().iter().map(|o| (o.name().to_string(), o.dtype().clone())).collect();
        let outputs: Ports = session.outputs().iter().map(|o| (o.name().to_string(), o.dtype().clone())).collect();
        check_inputs(&inputs).map_err(bad)?;
        let logits = outputs
            .iter()
            .find(|(n, _)| n == "logits")
            .ok_or_else(|| bad("the graph has no `logits` output".into()))?;
        let layers = kv_layers(&inputs, &outputs).map_err(bad)?;
        let (kv_ty, kv_shape) = inputs
            .iter()
            .find(|(n, _)| n == &layers[0][0])
            .and_then(|(_, t)| tensor_info(t))
            .ok_or_else(|| bad("past_key_values.0.key is not a tensor".into()))?;
        let kv_type = float_type("KV cache", Some(kv_ty)).map_err(bad)?;
        let logits_type = float_type("logits", tensor_info(&logits.1).map(|t| t.0)).map_err(bad)?;
        if kv_shape.len() != 4 {
            return Err(bad(format!(
                "past_key_values.0.key has rank {} (expected [batch, kv_heads, past, head_dim])",
                kv_shape.len()
            )));
        }
        let (kv_heads, head_dim) = kv_dims(&kv_shape, config).ok_or_else(|| {
            bad("cannot tell the KV cache's head count and size from the graph or config.json".into())
        })?;
        let vocab = tensor_info(&logits.1).and_then(|(_, s)| s.last().copied()).filter(|&v| v > 0).map(|v| v as usize);
        Ok(Self {
            has_position_ids: has(&inputs, "position_ids"),
            has_use_cache_branch: has(&inputs, "use_cache_branch"),
            layers,
            kv_type,
            kv_heads,
            head_dim,
            logits_type,
            vocab,
        })
    }
}
