//! Export of a study database to files a researcher analyses: `candidates`, `trials`
//! (joined with their answers, displayed order and timings) and `participants`, as CSV or
//! JSONL with stable column names (documented in README.md), plus the study file's text.
//! Participant ids are the pseudonyms the store holds; nothing typed as a name is stored.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::schedule::Slot;
use crate::store::{Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Jsonl,
}

impl Format {
    pub fn ext(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
        }
    }
}

pub const CANDIDATE_COLUMNS: &[&str] = &[
    "candidate_id",
    "policy",
    "prompt_id",
    "sample_index",
    "text",
    "token_count",
    "finish_reason",
    "logprob",
    "seed",
    "model_hash",
    "provider",
    "prefill_ms",
    "decode_ms",
    "settings",
    "meta",
    "created_at",
];

pub const TRIAL_COLUMNS: &[&str] = &[
    "trial_id",
    "participant_id",
    "position",
    "block",
    "kind",
    "mode",
    "prompt_id",
    "k",
    "policy_a",
    "policy_b",
    "n_slots",
    "slot_policies",
    "slot_samples",
    "slot_roles",
    "candidate_ids",
    "repeat_of_trial_id",
    "session_id",
    "shown_at",
    "answered_at",
    "response_ms",
    "choice_slot",
    "choice_candidate_id",
    "choice_policy",
    "choice_role",
    "ordering_slots",
    "ordering_candidate_ids",
    "no_preference",
    "skipped",
];

pub const PARTICIPANT_COLUMNS: &[&str] =
    &["participant_id", "created_at", "consent_at", "completed_at", "trials", "answered", "sessions"];

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Sql(#[from] rusqlite::Error),
}

type Row = Vec<Value>;

/// The exported tables, read from one snapshot of the database: a candidate a trial
/// names is in `candidates` even while other processes keep writing.
pub struct Tables {
    candidates: Vec<Row>,
    trials: Vec<Row>,
    participants: Vec<Row>,
    study_source: Option<String>,
}

/// Reads every table from one snapshot of the store.
pub fn read_tables(store: &Store) -> Result<Tables, ExportError> {
    let _snapshot = store.snapshot()?;
    Ok(Tables {
        candidates: candidate_rows(store)?,
        trials: trial_rows(store)?,
        participants: participant_rows(store)?,
        study_source: store.stored_study()?.map(|s| s.source),
    })
}

/// Writes the tables into `out`; returns the files written with their row counts.
pub fn write_tables(tables: &Tables, format: Format, out: &Path) -> Result<Vec<(PathBuf, usize)>, ExportError> {
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ExportError::Write { path: path.clone(), source }
    };
    std::fs::create_dir_all(out).map_err(write_err(out))?;
    let mut written = Vec::new();
    for (name, cols, rows) in [
        ("candidates", CANDIDATE_COLUMNS, &tables.candidates),
        ("trials", TRIAL_COLUMNS, &tables.trials),
        ("participants", PARTICIPANT_COLUMNS, &tables.participants),
    ] {
        let path = out.join(format!("{name}.{}", format.ext()));
        write_table(&path, format, cols, rows).map_err(write_err(&path))?;
        written.push((path, rows.len()));
    }
    if let Some(source) = &tables.study_source {
        let path = out.join("study.toml");
        std::fs::write(&path, source).map_err(write_err(&path))?;
        written.push((path, 1));
    }
    Ok(written)
}

/// Reads and writes every table; returns the files written with their row counts.
pub fn export(store: &Store, format: Format, out: &Path) -> Result<Vec<(PathBuf, usize)>, ExportError> {
    write_tables(&read_tables(store)?, format, out)
}

/// Writes to a temporary file first, then renames: a reader never sees half a file.
fn write_table(path: &Path, format: Format, cols: &[&str], rows: &[Row]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("{}.partial", format.ext()));
    {
        let file = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        match format {
            Format::Csv => {
                let mut w = csv::Writer::from_writer(file);
                w.write_record(cols)?;
                for row in rows {
                    w.write_record(row.iter().map(csv_cell))?;
                }
                w.flush()?;
            }
            Format::Jsonl => {
                let mut file = file;
                for row in rows {
                    let obj: serde_json::Map<String, Value> =
                        cols.iter().map(|c| c.to_string()).zip(row.iter().cloned()).collect();
                    serde_json::to_writer(&mut file, &obj)?;
                    file.write_all(b"\n")?;
                }
                file.flush()?;
            }
        }
    }
    std::fs::rename(&tmp, path)
}

fn csv_cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => u8::from(*b).to_string(),
        other => other.to_string(),
    }
}

fn json_text(s: Option<String>) -> Value {
    s.and_then(|s| serde_json::from_str(&s).ok()).unwrap_or(Value::Null)
}

fn candidate_rows(store: &Store) -> Result<Vec<Row>, ExportError> {
    let mut st = store.conn().prepare(
        "SELECT id, policy, prompt_id, sample_index, text, token_count, finish_reason, logprob, seed, model_hash,
                provider, prefill_ms, decode_ms, settings, meta, created_at
         FROM candidates ORDER BY policy, prompt_id, sample_index",
    )?;
    let rows = st.query_map([], |r| {
        Ok(vec![
            json!(r.get::<_, i64>(0)?),
            json!(r.get::<_, String>(1)?),
            json!(r.get::<_, String>(2)?),
            json!(r.get::<_, i64>(3)?),
            json!(r.get::<_, String>(4)?),
            json!(r.get::<_, Option<i64>>(5)?),
            json!(r.get::<_, Option<String>>(6)?),
            json!(r.get::<_, Option<f64>>(7)?),
            json!(r.get::<_, Option<i64>>(8)?),
            json!(r.get::<_, Option<String>>(9)?),
            json!(r.get::<_, Option<String>>(10)?),
            json!(r.get::<_, Option<f64>>(11)?),
            json!(r.get::<_, Option<f64>>(12)?),
            json_text(r.get(13)?),
            json_text(r.get(14)?),
            json!(r.get::<_, String>(15)?),
        ])
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

fn trial_rows(store: &Store) -> Result<Vec<Row>, ExportError> {
    let mut st = store.conn().prepare(
        "SELECT t.id, t.participant_id, t.position, t.block, t.kind, t.mode, t.prompt_id, t.k, t.policy_a, t.policy_b,
                t.slots, t.candidate_ids, t.repeat_of, t.session_id, t.shown_at, a.answered_at, a.response_ms,
                a.choice, a.ordering, a.no_preference, a.skipped
         FROM trials t LEFT JOIN answers a ON a.trial_id = t.id
         ORDER BY t.participant_id, t.position",
    )?;
    let rows = st.query_map([], |r| {
        let slots: Vec<Slot> = serde_json::from_str(&r.get::<_, String>(10)?).unwrap_or_default();
        let cids: Option<Vec<i64>> = r.get::<_, Option<String>>(11)?.and_then(|s| serde_json::from_str(&s).ok());
        let choice: Option<usize> = r.get::<_, Option<i64>>(17)?.map(|c| c as usize);
        let ordering: Option<Vec<usize>> = r.get::<_, Option<String>>(18)?.and_then(|s| serde_json::from_str(&s).ok());
        let cid_at = |i: usize| cids.as_ref().and_then(|c| c.get(i).copied());
        let role = |s: &Slot| serde_json::to_value(s.role).unwrap_or(Value::Null);
        Ok(vec![
            json!(r.get::<_, i64>(0)?),
            json!(r.get::<_, String>(1)?),
            json!(r.get::<_, i64>(2)?),
            json!(r.get::<_, String>(3)?),
            json!(r.get::<_, String>(4)?),
            json!(r.get::<_, String>(5)?),
            json!(r.get::<_, String>(6)?),
            json!(r.get::<_, Option<i64>>(7)?),
            json!(r.get::<_, Option<String>>(8)?),
            json!(r.get::<_, Option<String>>(9)?),
            json!(slots.len()),
            json!(slots.iter().map(|s| s.policy.clone()).collect::<Vec<_>>()),
            json!(slots.iter().map(|s| s.sample).collect::<Vec<_>>()),
            Value::Array(slots.iter().map(role).collect()),
            json!(cids),
            json!(r.get::<_, Option<i64>>(12)?),
            json!(r.get::<_, Option<i64>>(13)?),
            json!(r.get::<_, Option<String>>(14)?),
            json!(r.get::<_, Option<String>>(15)?),
            json!(r.get::<_, Option<i64>>(16)?),
            json!(choice),
            json!(choice.and_then(cid_at)),
            json!(choice.and_then(|c| slots.get(c)).map(|s| s.policy.clone())),
            choice.and_then(|c| slots.get(c)).map_or(Value::Null, role),
            json!(ordering),
            json!(ordering.as_ref().map(|o| o.iter().map(|&i| cid_at(i)).collect::<Vec<_>>())),
            json!(r.get::<_, Option<bool>>(19)?),
            json!(r.get::<_, Option<bool>>(20)?),
        ])
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

fn participant_rows(store: &Store) -> Result<Vec<Row>, ExportError> {
    let mut st = store.conn().prepare(
        "SELECT p.id, p.created_at, p.consent_at, p.completed_at,
                (SELECT COUNT(*) FROM trials t WHERE t.participant_id = p.id),
                (SELECT COUNT(*) FROM trials t JOIN answers a ON a.trial_id = t.id WHERE t.participant_id = p.id),
                (SELECT COUNT(*) FROM sessions s WHERE s.participant_id = p.id)
         FROM participants p ORDER BY p.created_at, p.id",
    )?;
    let rows = st.query_map([], |r| {
        Ok(vec![
            json!(r.get::<_, String>(0)?),
            json!(r.get::<_, String>(1)?),
            json!(r.get::<_, Option<String>>(2)?),
            json!(r.get::<_, Option<String>>(3)?),
            json!(r.get::<_, i64>(4)?),
            json!(r.get::<_, i64>(5)?),
            json!(r.get::<_, i64>(6)?),
        ])
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
