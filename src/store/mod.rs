//! The SQLite store: one database file per study. Opening applies the migrations in
//! `migrations/` (numbered, never edited once released), turns on WAL, foreign keys and
//! a busy timeout, and checks integrity. Every write that must land whole runs in one
//! transaction. No UI and no ONNX Runtime here.

mod queries;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

pub use queries::*;

use crate::study::{PolicySource, Study};

/// Schema migrations, applied in order; the position in this list is the schema version.
const MIGRATIONS: &[(&str, &str)] = &[("0001_init", include_str!("migrations/0001_init.sql"))];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open database {path}: {source}\n  check that the folder exists and is writable")]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error(
        "cannot create the database folder {dir}: {source}\n  check the path given with --db, or create the folder yourself"
    )]
    CreateDir { dir: PathBuf, source: std::io::Error },
    #[error(
        "database {path} failed SQLite's integrity check:\n{report}\n  the file is damaged; restore it from a backup, or export what is readable with `sqlite3 {path} .dump`"
    )]
    Corrupt { path: PathBuf, report: String },
    #[error("database {path} has schema version {found}, newer than this ualign knows ({known}); use a newer ualign")]
    TooNew { path: PathBuf, found: i64, known: i64 },
    #[error("applying migration {name} to {path} failed: {source}")]
    Migration { path: PathBuf, name: &'static str, source: rusqlite::Error },
    #[error(
        "database {path} belongs to study `{stored}`, not `{given}`.\n  A database holds one study; pass --db with another path for `{given}`"
    )]
    OtherStudy { path: PathBuf, stored: String, given: String },
    #[error(
        "study file {study_path} has changed since database {path} was created from it\n  (recorded {recorded_at}, hash {stored_hash:.12}…; the file now hashes to {new_hash:.12}…).\n  Answers collected under one version of a study must never be mixed with another.\n  Either restore the study file as it was (its text is stored: `ualign export` writes it to study.toml),\n  or give the changed study a new `name` or a new database with --db PATH"
    )]
    StudyChanged { path: PathBuf, study_path: PathBuf, recorded_at: String, stored_hash: String, new_hash: String },
    #[error("database {path} holds no study yet; run `ualign init STUDY` first")]
    NoStudy { path: PathBuf },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// An open study database.
pub struct Store {
    pub(crate) conn: Connection,
    path: PathBuf,
}

/// What `open_for_study` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    Created,
    Existing,
}

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// SQLite's full integrity check: "ok", or what it found.
fn integrity_report(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    conn.prepare("PRAGMA integrity_check").and_then(|mut s| s.query_map([], |r| r.get::<_, String>(0))?.collect())
}

/// Turns an integrity report (or the error that stopped it) into the store's errors.
fn check_report(path: &Path, report: rusqlite::Result<Vec<String>>) -> Result<()> {
    let report = report.map_err(|e| match e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(f.code, rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt) =>
        {
            StoreError::Corrupt { path: path.to_path_buf(), report: format!("  {e}") }
        }
        e => StoreError::Open { path: path.to_path_buf(), source: e },
    })?;
    if report != ["ok"] {
        return Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            report: report.into_iter().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n"),
        });
    }
    Ok(())
}

/// SQLite's full integrity check of a database, running on its own read-only connection
/// while a command that only reads gets on with its work; [`IntegrityCheck::finish`]
/// waits for it, and the command reports a damaged file instead of its results.
pub struct IntegrityCheck {
    path: PathBuf,
    handle: std::thread::JoinHandle<rusqlite::Result<Vec<String>>>,
}

impl IntegrityCheck {
    fn start(path: &Path) -> Result<Self> {
        let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|source| StoreError::Open { path: path.to_path_buf(), source })?;
        let handle = std::thread::Builder::new()
            .name("ualign-integrity".into())
            .spawn(move || {
                conn.busy_timeout(Duration::from_secs(10))?;
                integrity_report(&conn)
            })
            .map_err(|e| StoreError::Invalid(format!("cannot start the integrity check of {}: {e}", path.display())))?;
        Ok(Self { path: path.to_path_buf(), handle })
    }

    /// Waits for the check: Ok when SQLite found nothing wrong.
    pub fn finish(self) -> Result<()> {
        let report = self.handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        check_report(&self.path, report)
    }
}

impl Store {
    /// Opens (creating if needed) a database file and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, true)
    }

    fn open_with(path: &Path, check_integrity: bool) -> Result<Self> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir { dir: dir.to_path_buf(), source })?;
        }
        let conn = Connection::open(path).map_err(|source| StoreError::Open { path: path.to_path_buf(), source })?;
        let mut store = Self { conn, path: path.to_path_buf() };
        store.configure(check_integrity)?;
        store.migrate()?;
        Ok(store)
    }

    /// A private in-memory database, for tests and simulations.
    pub fn open_in_memory() -> Result<Self> {
        let conn = Connection::open_in_memory()?;
        let mut store = Self { conn, path: PathBuf::from(":memory:") };
        store.configure(true)?;
        store.migrate()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn configure(&mut self, check_integrity: bool) -> Result<()> {
        let path = self.path.clone();
        let open_err = |source| StoreError::Open { path: path.clone(), source };
        self.conn.busy_timeout(Duration::from_secs(10)).map_err(open_err)?;
        // A file that is not a database fails here, on the first read.
        let report = if check_integrity {
            integrity_report(&self.conn)
        } else {
            self.conn.query_row("PRAGMA schema_version", [], |r| r.get::<_, i64>(0)).map(|_| vec!["ok".to_string()])
        };
        check_report(&self.path, report)?;
        self.conn.pragma_update(None, "journal_mode", "WAL").map_err(open_err)?;
        self.conn.pragma_update(None, "synchronous", "NORMAL").map_err(open_err)?;
        self.conn.pragma_update(None, "foreign_keys", "ON").map_err(open_err)?;
        Ok(())
    }

    pub fn schema_version(&self) -> Result<i64> {
        Ok(self.conn.pragma_query_value(None, "user_version", |r| r.get(0))?)
    }

    fn migrate(&mut self) -> Result<()> {
        let current = self.schema_version()?;
        let known = MIGRATIONS.len() as i64;
        if current > known {
            return Err(StoreError::TooNew { path: self.path.clone(), found: current, known });
        }
        for (i, (name, sql)) in MIGRATIONS.iter().enumerate().skip(current as usize) {
            let path = self.path.clone();
            let err = |source| StoreError::Migration { path: path.clone(), name, source };
            let tx = self.conn.transaction().map_err(err)?;
            tx.execute_batch(sql).map_err(err)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64).map_err(err)?;
            tx.commit().map_err(err)?;
        }
        Ok(())
    }

    /// Opens the study's database, recording the study on first use and refusing a
    /// database made from another study or from another version of this one.
    pub fn open_for_study(path: &Path, study: &Study) -> Result<(Self, Opened)> {
        let mut store = Self::open(path)?;
        let opened = store.record_study(study)?;
        Ok((store, opened))
    }

    /// Opens a database that must already hold a study (analysis, export).
    pub fn open_existing(path: &Path) -> Result<Self> {
        Self::open_existing_with(path, true)
    }

    /// [`Store::open_existing`] for a command that only reads (stats, plot): the full
    /// integrity check, which reads the whole file, runs beside it; the command must call
    /// [`IntegrityCheck::finish`] before it shows anything it computed.
    pub fn open_existing_for_reading(path: &Path) -> Result<(Self, IntegrityCheck)> {
        let store = Self::open_existing_with(path, false)?;
        Ok((store, IntegrityCheck::start(path)?))
    }

    fn open_existing_with(path: &Path, check_integrity: bool) -> Result<Self> {
        if !path.exists() {
            return Err(StoreError::NoStudy { path: path.to_path_buf() });
        }
        let store = Self::open_with(path, check_integrity)?;
        if store.stored_study()?.is_none() {
            return Err(StoreError::NoStudy { path: path.to_path_buf() });
        }
        Ok(store)
    }

    /// The stored study's (name, hash, source, created_at), if any.
    pub fn stored_study(&self) -> Result<Option<StoredStudy>> {
        Ok(self
            .conn
            .query_row("SELECT name, hash, source, path, created_at FROM study WHERE id = 1", [], |r| {
                Ok(StoredStudy {
                    name: r.get(0)?,
                    hash: r.get(1)?,
                    source: r.get(2)?,
                    path: r.get(3)?,
                    created_at: r.get(4)?,
                })
            })
            .optional()?)
    }

    pub fn record_study(&mut self, study: &Study) -> Result<Opened> {
        if let Some(stored) = self.stored_study()? {
            if stored.name != study.name {
                return Err(StoreError::OtherStudy {
                    path: self.path.clone(),
                    stored: stored.name,
                    given: study.name.clone(),
                });
            }
            if stored.hash != study.hash {
                return Err(StoreError::StudyChanged {
                    path: self.path.clone(),
                    study_path: study.path.clone(),
                    recorded_at: stored.created_at,
                    stored_hash: stored.hash,
                    new_hash: study.hash.clone(),
                });
            }
            return Ok(Opened::Existing);
        }
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO study (id, name, hash, source, path, created_at) VALUES (1, ?1, ?2, ?3, ?4, ?5)",
            params![study.name, study.hash, study.source, study.path.display().to_string(), now()],
        )?;
        {
            let mut ins = tx.prepare("INSERT INTO prompts (id, text, tags) VALUES (?1, ?2, ?3)")?;
            for p in &study.prompts {
                ins.execute(params![p.id, p.text, serde_json::to_string(&p.tags).unwrap_or_default()])?;
            }
            let mut ins = tx.prepare(
                "INSERT INTO policies (name, source, pool_size, model_path, decoding) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for p in &study.policies {
                let (source, model, decoding) = match &p.source {
                    PolicySource::Model { dir, decoding } => {
                        ("model", Some(dir.display().to_string()), serde_json::to_string(decoding).ok())
                    }
                    PolicySource::Imported => ("imported", None, None),
                };
                ins.execute(params![p.name, source, p.pool_size, model, decoding])?;
            }
        }
        tx.commit()?;
        Ok(Opened::Created)
    }
}

#[derive(Debug, Clone)]
pub struct StoredStudy {
    pub name: String,
    pub hash: String,
    pub source: String,
    pub path: String,
    pub created_at: String,
}
