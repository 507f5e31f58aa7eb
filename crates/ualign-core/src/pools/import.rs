//! Import of candidates produced elsewhere (vLLM, TGI, another lab's runs) into an
//! `imported` policy's pools. One JSON object a line:
//! `{"prompt_id": "...", "text": "...", "sample_index": 0}`; `sample_index` is optional
//! (the next free index of the prompt in the file) and must lie in the policy's pool
//! (0 to `pool_size` − 1); every other field is kept as metadata. A UTF-8 byte-order mark
//! is accepted. The file is read and checked whole before the database is touched, and
//! every bad line is reported with its line number.
//!
//! A file is a policy's whole set of candidates: importing into a policy that has some
//! already is refused unless `replace` is asked for, which swaps the policy's pools in one
//! transaction, and is refused once any trial has shown one of them (answers must keep
//! referring to the texts people saw).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::store::{ImportOutcome, NewCandidate, Store, StoreError};
use crate::study::{Policy, PolicySource, Study};

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error(
        "{}:{line}: not UTF-8 text (the first bad byte is at offset {offset}); save the file as UTF-8 and import it again",
        .path.display()
    )]
    NotUtf8 { path: PathBuf, line: usize, offset: usize },
    #[error(
        "{} holds no candidates; expected one JSON object a line: {{\"prompt_id\": \"...\", \"text\": \"...\"}}",
        .path.display()
    )]
    Empty { path: PathBuf },
    #[error("policy `{0}` is not in the study; policies: {1}")]
    UnknownPolicy(String, String),
    #[error(
        "policy `{0}` generates its candidates with a model (source = \"model\"); only policies with source = \"imported\" take imports"
    )]
    NotImported(String),
    #[error("{}\n{} bad line{} in {}; nothing was imported. Fix them and run the import again",
        .problems.join("\n"), .problems.len(), if .problems.len() == 1 { "" } else { "s" }, .path.display())]
    BadLines { path: PathBuf, problems: Vec<String> },
    #[error(
        "policy `{policy}` already has {count} candidates in {}; nothing was imported.\n  A file is a policy's whole set of candidates: to replace them all with {}, run the import again with --replace (allowed until a participant has seen one of them)",
        .db.display(), .file.display()
    )]
    HasCandidates { policy: String, count: usize, db: PathBuf, file: PathBuf },
    #[error(
        "cannot replace the candidates of policy `{policy}`: {trials} trial(s) of {participants} participant(s) have shown them already, and their answers must keep referring to the texts people saw; nothing was imported.\n  Import the new set into a new policy, or start a new database (--db) for the new version of the study"
    )]
    Shown { policy: String, trials: usize, participants: usize },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What an import did.
#[derive(Debug, Default)]
pub struct ImportReport {
    pub imported: usize,
    pub prompts: usize,
    /// Candidates of the policy that were replaced (with `--replace`).
    pub replaced: usize,
    /// Prompts whose pool is still smaller than the policy's pool_size: (prompt id, have, want).
    pub short_pools: Vec<(String, u32, u32)>,
}

/// A checked import file: the rows to store, all valid for the study and policy.
#[derive(Debug)]
pub struct Candidates {
    pub(crate) policy: String,
    pub(crate) rows: Vec<NewCandidate>,
}

/// The imported policy named `policy`, or why it cannot take an import.
fn imported_policy<'s>(study: &'s Study, policy: &str) -> Result<&'s Policy, ImportError> {
    let pol = study.policy(policy).ok_or_else(|| {
        ImportError::UnknownPolicy(
            policy.to_string(),
            study.policies.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", "),
        )
    })?;
    if !matches!(pol.source, PolicySource::Imported) {
        return Err(ImportError::NotImported(policy.to_string()));
    }
    Ok(pol)
}

/// The file's text, without a byte-order mark; bytes that are not UTF-8 are an error
/// naming their line.
fn read_text(file: &Path) -> Result<String, ImportError> {
    let bytes = std::fs::read(file).map_err(|source| ImportError::Read { path: file.to_path_buf(), source })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..offset].iter().filter(|&&b| b == b'\n').count() + 1;
        ImportError::NotUtf8 { path: file.to_path_buf(), line, offset }
    })?;
    Ok(match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_string(),
        None => text,
    })
}

/// One line of an import file as read: the fields ualign uses (checked below, so a wrong
/// one is named), and every other field, kept as metadata.
#[derive(Debug, serde::Deserialize)]
struct ImportLine {
    prompt_id: Option<Value>,
    text: Option<Value>,
    sample_index: Option<Value>,
    /// As an OpenAI-compatible server says it: "length" marks an answer cut off at its
    /// limit (what the policy's `on_length` applies to).
    finish_reason: Option<Value>,
    #[serde(flatten)]
    meta: Map<String, Value>,
}

/// A line's fields with their types checked.
struct Checked {
    prompt_id: String,
    text: String,
    sample_index: Option<u64>,
    finish_reason: Option<String>,
    meta: Map<String, Value>,
}

impl ImportLine {
    fn check(self, at: &str) -> Result<Checked, String> {
        let prompt_id = match self.prompt_id {
            Some(Value::String(s)) => s,
            Some(_) => return Err(format!("{at}: `prompt_id` must be a string")),
            None => return Err(format!("{at}: missing `prompt_id`")),
        };
        let text = match self.text {
            Some(Value::String(s)) if !s.trim().is_empty() => s,
            Some(Value::String(_)) => return Err(format!("{at}: `text` is empty")),
            Some(_) => return Err(format!("{at}: `text` must be a string")),
            None => return Err(format!("{at}: missing `text`")),
        };
        let sample_index = match self.sample_index {
            None => None,
            Some(v) => Some(v.as_u64().ok_or_else(|| format!("{at}: `sample_index` must be a non-negative integer"))?),
        };
        let finish_reason = match self.finish_reason {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if !s.is_empty() && s.len() <= 32 => Some(s),
            Some(_) => {
                return Err(format!(
                    "{at}: `finish_reason` must be a short string such as \"stop\" or \"length\" (an answer cut off at its limit)"
                ));
            }
        };
        Ok(Checked { prompt_id, text, sample_index, finish_reason, meta: self.meta })
    }
}

/// One line's candidate, or what is wrong with it.
fn parse_line(
    at: &str,
    line: &str,
    study: &Study,
    pool: &Policy,
) -> Result<(String, Option<u32>, NewCandidate), String> {
    let l = match serde_json::from_str::<Value>(line) {
        Ok(v @ Value::Object(_)) => serde_json::from_value::<ImportLine>(v).map_err(|e| format!("{at}:1: {e}"))?,
        Ok(_) => return Err(format!("{at}:1: expected a JSON object {{\"prompt_id\": ..., \"text\": ...}}")),
        Err(e) => return Err(format!("{at}:{}: not valid JSON: {e}", e.column().max(1))),
    }
    .check(at)?;
    if study.prompt(&l.prompt_id).is_none() {
        return Err(format!("{at}: prompt_id `{}` is not a prompt of study `{}`", l.prompt_id, study.name));
    }
    let sample_index = match l.sample_index {
        None => None,
        Some(s) if s < u64::from(pool.pool_size) => Some(s as u32),
        Some(s) => {
            return Err(format!(
                "{at}: sample_index {s} is outside the pool of policy `{}` (pool_size {}: indices 0 to {}); raise pool_size in the study or drop the line",
                pool.name,
                pool.pool_size,
                pool.pool_size - 1
            ));
        }
    };
    let row = NewCandidate {
        policy: pool.name.clone(),
        prompt_id: l.prompt_id.clone(),
        text: l.text,
        finish_reason: l.finish_reason,
        provider: Some("imported".into()),
        meta: (!l.meta.is_empty()).then(|| Value::Object(l.meta).to_string()),
        ..Default::default()
    };
    Ok((l.prompt_id, sample_index, row))
}

/// Reads and checks an import file against the study, touching no database: every bad
/// line is reported at once.
pub fn read_candidates(study: &Study, policy: &str, file: &Path) -> Result<Candidates, ImportError> {
    let pool = imported_policy(study, policy)?;
    let content = read_text(file)?;
    let shown = file.display().to_string();
    // Sample indices used so far per prompt, with the line that took each.
    let mut taken: HashMap<String, HashMap<u32, usize>> = HashMap::new();
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    for (i, line) in content.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = format!("{shown}:{}", i + 1);
        let (prompt_id, index, mut row) = match parse_line(&at, line, study, pool) {
            Ok(parsed) => parsed,
            Err(problem) => {
                problems.push(problem);
                continue;
            }
        };
        let used = taken.entry(prompt_id.clone()).or_default();
        let sample_index = match index {
            Some(s) => match used.get(&s) {
                Some(first) => {
                    problems.push(format!(
                        "{at}: sample_index {s} of prompt `{prompt_id}` is already taken (by line {first})"
                    ));
                    continue;
                }
                None => s,
            },
            None => match (0..pool.pool_size).find(|s| !used.contains_key(s)) {
                Some(s) => s,
                None => {
                    problems.push(format!(
                        "{at}: prompt `{prompt_id}` has more candidates than policy `{policy}`'s pool_size ({})",
                        pool.pool_size
                    ));
                    continue;
                }
            },
        };
        used.insert(sample_index, i + 1);
        row.sample_index = sample_index;
        rows.push(row);
    }
    if !problems.is_empty() {
        return Err(ImportError::BadLines { path: file.to_path_buf(), problems });
    }
    if rows.is_empty() {
        return Err(ImportError::Empty { path: file.to_path_buf() });
    }
    Ok(Candidates { policy: policy.to_string(), rows })
}

/// Stores checked candidates as the policy's pools (see the module's doc for `replace`).
pub fn store_candidates(
    store: &mut Store,
    study: &Study,
    file: &Path,
    candidates: &Candidates,
    replace: bool,
) -> Result<ImportReport, ImportError> {
    let pool = imported_policy(study, &candidates.policy)?;
    let policy = candidates.policy.clone();
    let (imported, replaced) = match store.import_pools(&policy, &candidates.rows, replace)? {
        ImportOutcome::Stored { stored, replaced } => (stored, replaced),
        ImportOutcome::HasCandidates { count } => {
            return Err(ImportError::HasCandidates {
                policy,
                count,
                db: store.path().to_path_buf(),
                file: file.to_path_buf(),
            });
        }
        ImportOutcome::Shown { trials, participants } => {
            return Err(ImportError::Shown { policy, trials, participants });
        }
    };
    let mut prompts: Vec<&str> = candidates.rows.iter().map(|r| r.prompt_id.as_str()).collect();
    prompts.sort_unstable();
    prompts.dedup();
    let mut report = ImportReport { imported, prompts: prompts.len(), replaced, short_pools: Vec::new() };
    for p in &study.prompts {
        let have = store.pool_count(&policy, &p.id)?;
        if have < pool.pool_size {
            report.short_pools.push((p.id.clone(), have, pool.pool_size));
        }
    }
    Ok(report)
}

/// Reads, checks and stores an import file in one call.
pub fn import_candidates(
    store: &mut Store,
    study: &Study,
    policy: &str,
    file: &Path,
    replace: bool,
) -> Result<ImportReport, ImportError> {
    let candidates = read_candidates(study, policy, file)?;
    store_candidates(store, study, file, &candidates, replace)
}
