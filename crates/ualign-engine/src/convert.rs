//! `ualign convert`: the graph the engine builds from a GGUF model, written out as an ONNX
//! model folder to inspect or run elsewhere.

use std::path::{Path, PathBuf};

use crate::error::EngineError;
use crate::model::{self, ModelFile, ModelFolder};
use crate::{gguf, onnx};

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
    let built = gguf::decoder::build(gguf, crate::Precision::Exact)?;
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
