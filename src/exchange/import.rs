//! Import of candidates produced elsewhere (vLLM, TGI, another lab's runs) into an
//! `imported` policy's pools. One JSON object a line:
//! `{"prompt_id": "...", "text": "...", "sample_index": 0}`; `sample_index` is optional
//! (the next free index per prompt), and every other field is kept as metadata.
//! Every bad line is reported with its line number; the import is one transaction.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::store::{NewCandidate, Store, StoreError};
use crate::study::{PolicySource, Study};

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("policy `{0}` is not in the study; policies: {1}")]
    UnknownPolicy(String, String),
    #[error(
        "policy `{0}` generates its candidates with a model (source = \"model\"); only policies with source = \"imported\" take imports"
    )]
    NotImported(String),
    #[error("{}\n{} bad line{} in {}; nothing was imported. Fix them and run the import again",
        .problems.join("\n"), .problems.len(), if .problems.len() == 1 { "" } else { "s" }, .path.display())]
    BadLines { path: PathBuf, problems: Vec<String> },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What an import did.
#[derive(Debug, Default)]
pub struct ImportReport {
    pub imported: usize,
    pub prompts: usize,
    /// Prompts whose pool is still smaller than the policy's pool_size: (prompt id, have, want).
    pub short_pools: Vec<(String, u32, u32)>,
}

pub fn import_candidates(
    store: &mut Store,
    study: &Study,
    policy: &str,
    file: &Path,
) -> Result<ImportReport, ImportError> {
    let pol = study.policy(policy).ok_or_else(|| {
        ImportError::UnknownPolicy(
            policy.to_string(),
            study.policies.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", "),
        )
    })?;
    if !matches!(pol.source, PolicySource::Imported) {
        return Err(ImportError::NotImported(policy.to_string()));
    }
    let content =
        std::fs::read_to_string(file).map_err(|source| ImportError::Read { path: file.to_path_buf(), source })?;
    let shown = file.display().to_string();

    let mut taken: HashMap<String, Vec<u32>> = HashMap::new();
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    for (i, line) in content.lines().enumerate() {
        let at = format!("{shown}:{}", i + 1);
        if line.trim().is_empty() {
            continue;
        }
        let obj: Map<String, Value> = match serde_json::from_str(line) {
            Ok(Value::Object(o)) => o,
            Ok(_) => {
                problems.push(format!("{at}:1: expected a JSON object {{\"prompt_id\": ..., \"text\": ...}}"));
                continue;
            }
            Err(e) => {
                problems.push(format!("{at}:{}: not valid JSON: {e}", e.column().max(1)));
                continue;
            }
        };
        let mut meta = obj.clone();
        let prompt_id = match meta.remove("prompt_id") {
            Some(Value::String(s)) => s,
            Some(_) => {
                problems.push(format!("{at}: `prompt_id` must be a string"));
                continue;
            }
            None => {
                problems.push(format!("{at}: missing `prompt_id`"));
                continue;
            }
        };
        let text = match meta.remove("text") {
            Some(Value::String(s)) if !s.trim().is_empty() => s,
            Some(Value::String(_)) => {
                problems.push(format!("{at}: `text` is empty"));
                continue;
            }
            Some(_) => {
                problems.push(format!("{at}: `text` must be a string"));
                continue;
            }
            None => {
                problems.push(format!("{at}: missing `text`"));
                continue;
            }
        };
        if study.prompt(&prompt_id).is_none() {
            problems.push(format!("{at}: prompt_id `{prompt_id}` is not a prompt of study `{}`", study.name));
            continue;
        }
        let used = match taken.get(&prompt_id) {
            Some(v) => v,
            None => {
                let stored = store.stored_samples(policy, &prompt_id)?;
                taken.entry(prompt_id.clone()).or_insert(stored)
            }
        };
        let sample_index = match meta.remove("sample_index") {
            None => (0..).find(|s| !used.contains(s)).unwrap_or(0),
            Some(v) => match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
                Some(s) if !used.contains(&s) => s,
                Some(s) => {
                    problems.push(format!("{at}: sample_index {s} of prompt `{prompt_id}` is already taken"));
                    continue;
                }
                None => {
                    problems.push(format!("{at}: `sample_index` must be a non-negative integer"));
                    continue;
                }
            },
        };
        taken.entry(prompt_id.clone()).or_default().push(sample_index);
        rows.push(NewCandidate {
            policy: policy.to_string(),
            prompt_id,
            sample_index,
            text,
            provider: Some("imported".into()),
            meta: (!meta.is_empty()).then(|| Value::Object(meta).to_string()),
            ..Default::default()
        });
    }
    if !problems.is_empty() {
        return Err(ImportError::BadLines { path: file.to_path_buf(), problems });
    }
    let imported = store.insert_candidates(&rows)?;
    let mut report = ImportReport { imported, prompts: taken.len(), short_pools: Vec::new() };
    for p in &study.prompts {
        let have = store.pool_count(policy, &p.id)?;
        if have < pol.pool_size {
            report.short_pools.push((p.id.clone(), have, pol.pool_size));
        }
    }
    Ok(report)
}
