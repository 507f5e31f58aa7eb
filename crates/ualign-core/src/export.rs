//! Export of a study database to files a researcher analyses: `candidates`, `trials`
//! (joined with their answers, displayed order and timings) and `participants`, as CSV or
//! JSONL with stable column names (documented in README.md), plus the study file's text.
//! Participant ids are the pseudonyms the store holds; nothing typed as a name is stored.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::schedule::SlotRole;
use crate::store::{CandidateRecord, ParticipantRecord, Store, StoreError, TrialRecord};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Jsonl,
}

impl Format {
    pub(crate) fn ext(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
        }
    }
}

/// One row of `trials`: a trial joined with its answer; lists in displayed order.
#[derive(Debug, Default, Serialize)]
pub(crate) struct TrialRow {
    pub(crate) trial_id: i64,
    pub(crate) participant_id: String,
    pub(crate) position: i64,
    pub(crate) block: String,
    pub(crate) kind: String,
    pub(crate) mode: String,
    pub(crate) prompt_id: String,
    pub(crate) k: Option<i64>,
    pub(crate) policy_a: Option<String>,
    pub(crate) policy_b: Option<String>,
    pub(crate) n_slots: usize,
    pub(crate) slot_policies: Vec<String>,
    pub(crate) slot_samples: Vec<u32>,
    pub(crate) slot_roles: Vec<SlotRole>,
    pub(crate) candidate_ids: Option<Vec<i64>>,
    pub(crate) repeat_of_trial_id: Option<i64>,
    pub(crate) session_id: Option<i64>,
    pub(crate) shown_at: Option<String>,
    pub(crate) answered_at: Option<String>,
    pub(crate) response_ms: Option<i64>,
    pub(crate) choice_slot: Option<usize>,
    pub(crate) choice_candidate_id: Option<i64>,
    pub(crate) choice_policy: Option<String>,
    pub(crate) choice_role: Option<SlotRole>,
    pub(crate) ordering_slots: Option<Vec<usize>>,
    pub(crate) ordering_candidate_ids: Option<Vec<Option<i64>>>,
    pub(crate) no_preference: Option<bool>,
    pub(crate) skipped: Option<bool>,
    pub(crate) seen_in_full: Option<bool>,
}

impl From<TrialRecord> for TrialRow {
    fn from(t: TrialRecord) -> Self {
        let cid_at = |i: usize| t.candidate_ids.as_ref().and_then(|c| c.get(i).copied());
        let chosen = t.choice.and_then(|c| t.slots.get(c));
        Self {
            trial_id: t.id,
            participant_id: t.participant.clone(),
            position: t.position,
            block: t.block.clone(),
            kind: t.kind.clone(),
            mode: t.mode.clone(),
            prompt_id: t.prompt_id.clone(),
            k: t.k,
            policy_a: t.policy_a.clone(),
            policy_b: t.policy_b.clone(),
            n_slots: t.slots.len(),
            slot_policies: t.slots.iter().map(|s| s.policy.clone()).collect(),
            slot_samples: t.slots.iter().map(|s| s.sample).collect(),
            slot_roles: t.slots.iter().map(|s| s.role).collect(),
            candidate_ids: t.candidate_ids.clone(),
            repeat_of_trial_id: t.repeat_of,
            session_id: t.session_id,
            shown_at: t.shown_at.clone(),
            answered_at: t.answered_at.clone(),
            response_ms: t.response_ms,
            choice_slot: t.choice,
            choice_candidate_id: t.choice.and_then(cid_at),
            choice_policy: chosen.map(|s| s.policy.clone()),
            choice_role: chosen.map(|s| s.role),
            ordering_slots: t.ordering.clone(),
            ordering_candidate_ids: t.ordering.as_ref().map(|o| o.iter().map(|&i| cid_at(i)).collect()),
            no_preference: t.no_preference,
            skipped: t.skipped,
            seen_in_full: t.seen_in_full,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write a row: {0}")]
    Row(#[from] serde_json::Error),
}

/// A table's rows as ordered maps, column names first to last.
type Table = Vec<serde_json::Map<String, Value>>;

fn table<T: Serialize>(rows: impl IntoIterator<Item = T>) -> Result<Table, ExportError> {
    rows.into_iter()
        .map(|r| match serde_json::to_value(r)? {
            Value::Object(m) => Ok(m),
            _ => unreachable!("rows are structs"),
        })
        .collect()
}

/// The exported tables, read from one snapshot of the database: a candidate a trial
/// names is in `candidates` even while other processes keep writing.
pub struct Tables {
    candidates: Table,
    trials: Table,
    participants: Table,
    study_source: Option<String>,
}

/// Reads every table from one snapshot of the store.
pub fn read_tables(store: &Store) -> Result<Tables, ExportError> {
    let _snapshot = store.snapshot()?;
    Ok(Tables {
        candidates: table(store.candidate_records()?)?,
        trials: table(store.trial_records()?.into_iter().map(TrialRow::from))?,
        participants: table(store.participant_records()?)?,
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
    let [(_, c), (_, t), (_, p)] = columns();
    for (name, cols, rows) in [
        ("candidates", c, &tables.candidates),
        ("trials", t, &tables.trials),
        ("participants", p, &tables.participants),
    ] {
        let path = out.join(format!("{name}.{}", format.ext()));
        write_table(&path, format, &cols, rows).map_err(write_err(&path))?;
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

/// A row type's columns: its fields, in order.
fn columns_of<T: Serialize + Default>() -> Vec<String> {
    match serde_json::to_value(T::default()) {
        Ok(Value::Object(m)) => m.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// The columns of each exported table, in order (what README documents).
pub fn columns() -> [(&'static str, Vec<String>); 3] {
    [
        ("candidates", columns_of::<CandidateRecord>()),
        ("trials", columns_of::<TrialRow>()),
        ("participants", columns_of::<ParticipantRecord>()),
    ]
}

/// Writes to a temporary file first, then renames: a reader never sees half a file.
fn write_table(path: &Path, format: Format, cols: &[String], rows: &Table) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("{}.partial", format.ext()));
    {
        let file = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        match format {
            Format::Csv => {
                let mut w = csv::Writer::from_writer(file);
                w.write_record(cols)?;
                for row in rows {
                    w.write_record(row.values().map(csv_cell))?;
                }
                w.flush()?;
            }
            Format::Jsonl => {
                let mut file = file;
                for row in rows {
                    serde_json::to_writer(&mut file, row)?;
                    file.write_all(b"\n")?;
                }
                file.flush()?;
            }
        }
    }
    std::fs::rename(&tmp, path)
}

/// A CSV cell: JSON lists and objects as JSON text, booleans as 0/1, null as empty.
fn csv_cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => u8::from(*b).to_string(),
        other => other.to_string(),
    }
}
