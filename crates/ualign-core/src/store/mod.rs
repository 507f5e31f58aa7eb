//! The SQLite store: one database file per study, shared by every process working on the
//! study (participants' screens, `generate`, `simulate`, the researcher's `stats` and
//! `dashboard`). Opening applies the migrations in `migrations/` (numbered, never edited
//! once released; safe when several processes open a new file at once), turns on WAL
//! (readers never block writers), foreign keys and the store's busy handler, and reads
//! the file's header and schema (a file that is not a database is refused at once). The
//! full integrity check reads the whole file, so it runs where a damaged file would do
//! harm unseen: `stats`, `plot`, `export`, `dashboard` and `ualign check`, not on every
//! open. Every write is one IMMEDIATE transaction ([`write`]). No UI and no ONNX Runtime.

mod queries;
mod records;
mod write;

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};

pub use queries::{Answer, Candidate, StoredTrial};
pub(crate) use queries::{ImportOutcome, NewCandidate};
pub use records::{BestOfKAnswer, CandidateRecord, Progress, QualityCounts, RankAnswer};
pub(crate) use records::{ParticipantRecord, TrialRecord};
pub use write::{WRITE_WAIT, WriteCause, WriteFailure};

use crate::study::{PolicySource, Prompt, Study};

/// Schema migrations, applied in order; the position in this list is the schema version.
const MIGRATIONS: &[(&str, &str)] = &[
    ("0001_init", include_str!("migrations/0001_init.sql")),
    ("0002_invitations", include_str!("migrations/0002_invitations.sql")),
    ("0003_seen_in_full", include_str!("migrations/0003_seen_in_full.sql")),
    ("0004_server_policies", include_str!("migrations/0004_server_policies.sql")),
    ("0005_answer_order", include_str!("migrations/0005_answer_order.sql")),
];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "cannot open database {path}: {source}\n  check that the file is a ualign database and that you may read it"
    )]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error(
        "cannot read database {} here: its folder {} is read-only for this user, and SQLite reads a database in WAL mode through a small index file it keeps beside it ({why})\n  make the folder writable (chmod u+w {}), or read a copy elsewhere with --db (copy the -wal file too, if there is one); an archive that will never change is read where it is once no one may write the file (chmod a-w {}) and its -wal file, if any, has been merged (open it once where it can be written)",
        .path.display(), .dir.display(), .dir.display(), .path.display()
    )]
    CannotRead { path: PathBuf, dir: PathBuf, why: String },
    #[error(
        "the folder {} for database {} does not exist (or is not a folder)\n  create it (mkdir -p {}) or choose another path with --db",
        .dir.display(), .path.display(), .dir.display()
    )]
    NoFolder { path: PathBuf, dir: PathBuf },
    #[error(
        "database {} cannot be written: {why}\n  ualign commits every answer as it is given; {fix}",
        .path.display()
    )]
    ReadOnly { path: PathBuf, why: String, fix: String },
    #[error(
        "database {path} is damaged or is not a database; SQLite found:\n{report}\n  restore it from a backup, or save what is readable with `sqlite3 {path} .recover`"
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
        "study file {study_path} has changed in meaning since database {path} was created from it (recorded {recorded_at}):\n  {}{}\n  Answers collected under one version of a study must never be mixed with another.\n  Either put the stored version back with `ualign restore {study_path}{}` (your edited file is kept beside it),\n  or give the changed study a new `name`, or a new database with `ualign init {study_path} --db NEW.sqlite`",
        changes.iter().take(8).cloned().collect::<Vec<_>>().join("\n  "),
        if changes.len() > 8 { format!("\n  … and {} more", changes.len() - 8) } else { String::new() },
        path.to_str().map(|p| format!(" --db {p}")).unwrap_or_default()
    )]
    StudyChanged { path: PathBuf, study_path: PathBuf, recorded_at: String, changes: Vec<String> },
    #[error(
        "{} holds no study{}: check the path (a mistyped one would be a new, empty study), or make the database with `ualign init STUDY{}`",
        path.display(),
        if path.exists() { "" } else { " (there is no such file)" },
        path.to_str().map(|p| format!(" --db {p}")).unwrap_or_default()
    )]
    NoStudy { path: PathBuf },
    /// The trial was answered already (a double key press, or the same participant in a
    /// second window): the first answer stands.
    #[error("trial {trial} is already answered")]
    AlreadyAnswered { trial: i64 },
    #[error(transparent)]
    Write(#[from] WriteFailure),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}

pub(crate) type Result<T, E = StoreError> = std::result::Result<T, E>;

/// An open study database. Its connection is the store's own: every query is a method
/// here, so the schema is known in one place.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// Read as an unchanging archive (see [`Store::open_existing`]).
    archive: bool,
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

/// Whether an error, or any error it was caused by, is SQLite finding the file damaged.
pub fn caused_by_damage(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.downcast_ref::<rusqlite::Error>().and_then(rusqlite::Error::sqlite_error_code)
            == Some(rusqlite::ErrorCode::DatabaseCorrupt)
        {
            return true;
        }
        cause = c.source();
    }
    false
}

/// Whether an error means the file is not a database or is damaged.
fn is_damage(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt))
}

/// Turns an integrity report (or the error that stopped it) into the store's errors.
fn check_report(path: &Path, report: rusqlite::Result<Vec<String>>) -> Result<()> {
    let report = report.map_err(|e| {
        if is_damage(&e) {
            StoreError::Corrupt { path: path.to_path_buf(), report: format!("  {e}") }
        } else {
            StoreError::Open { path: path.to_path_buf(), source: e }
        }
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
    pub(crate) fn start(path: &Path, archive: bool) -> Result<Self> {
        let conn =
            connect_reading(path, archive).map_err(|source| StoreError::Open { path: path.to_path_buf(), source })?;
        let handle = std::thread::Builder::new()
            .name("ualign-integrity".into())
            .spawn(move || {
                write::install_busy_handler(&conn)?;
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

/// A read-only connection; for an archive, opened immutable (SQLite then takes no locks
/// and needs no `-shm` file, which it could not make in a read-only folder).
fn connect_reading(path: &Path, archive: bool) -> rusqlite::Result<Connection> {
    use rusqlite::OpenFlags;
    if !archive {
        return Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY);
    }
    let mut uri = String::from("file:");
    for c in path.to_string_lossy().chars() {
        match c {
            '%' => uri.push_str("%25"),
            '?' => uri.push_str("%3f"),
            '#' => uri.push_str("%23"),
            c => uri.push(c),
        }
    }
    uri.push_str("?immutable=1");
    Connection::open_with_flags(uri, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI)
}

/// Whether `path` is an archive to read as it stands: no one may write the file (no write
/// permission bit at all) and there is no write-ahead log beside it with anything in it.
fn is_archive(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let no_writer = std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o222 == 0);
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    no_writer && std::fs::metadata(&wal).map_or(true, |m| m.len() == 0)
}

/// Whether the file at `path` holds a recorded study, read without changing it (an empty
/// file, or another program's SQLite database, would otherwise be given ualign's tables).
/// A file that cannot be read this way counts as holding one: opening it says what is
/// wrong with it.
fn holds_study(path: &Path) -> bool {
    let Ok(conn) = connect_reading(path, is_archive(path)) else { return true };
    let found = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'study')",
        [],
        |r| r.get::<_, bool>(0),
    );
    match found {
        Ok(false) => false,
        Ok(true) => conn.query_row("SELECT COUNT(*) FROM study", [], |r| r.get::<_, i64>(0)).map_or(true, |n| n > 0),
        Err(_) => true,
    }
}

/// Whether the process may write `path` (the kernel's answer, which knows about
/// ownership, ACLs and read-only mounts, not just the mode bits).
fn may_write(path: &Path) -> bool {
    write_refusal(path).is_none()
}

/// Why this user cannot write `path`, if they cannot: access(2)'s error (EACCES for
/// permissions, EROFS for a file system mounted read-only).
fn write_refusal(path: &Path) -> Option<std::io::Error> {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return Some(std::io::Error::from(std::io::ErrorKind::InvalidInput));
    };
    // SAFETY: `c` is a valid NUL-terminated path; access(2) only reads it.
    let ok = unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 };
    (!ok).then(std::io::Error::last_os_error)
}

/// The refusal of a database whose file or folder (`what`) cannot be written, saying what
/// is actually wrong: a read-only mount is no permission to give.
fn read_only(path: &Path, what: &Path, refusal: &std::io::Error, permissions: String) -> StoreError {
    if refusal.raw_os_error() == Some(libc::EROFS) {
        StoreError::ReadOnly {
            path: path.to_path_buf(),
            why: format!("{} is on a file system mounted read-only", what.display()),
            fix: "mount it read-write, or copy the database to a writable folder and give its path with --db".into(),
        }
    } else {
        StoreError::ReadOnly {
            path: path.to_path_buf(),
            why: permissions,
            fix: format!("give write permission (chmod u+w {}) or work on a copy with --db", what.display()),
        }
    }
}

/// Refuses, before anything is created or shown, a database that could be read but not
/// written: a read-only file, or a folder where SQLite cannot make its `-wal` and `-shm`
/// files.
fn check_writable(path: &Path, dir: &Path) -> Result<()> {
    if path.exists()
        && let Some(e) = write_refusal(path)
    {
        return Err(read_only(path, path, &e, "the file is read-only for this user".into()));
    }
    if let Some(e) = write_refusal(dir) {
        let why = format!(
            "its folder {} is read-only for this user, and SQLite keeps its write-ahead log beside the database",
            dir.display()
        );
        return Err(read_only(path, dir, &e, why));
    }
    Ok(())
}

impl Store {
    /// Opens (creating if needed) a database file for writing and brings its schema up to
    /// date. The folder must exist; a file or folder that cannot be written is refused.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, true)
    }

    fn open_with(path: &Path, for_writing: bool) -> Result<Self> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        if !dir.is_dir() {
            return Err(StoreError::NoFolder { path: path.to_path_buf(), dir: dir.to_path_buf() });
        }
        if for_writing {
            check_writable(path, dir)?;
        }
        let mut store = match Self::connect(path, false) {
            // A folder SQLite cannot make its index in: an archive is read as it stands,
            // anything else is refused with what to do.
            Err(e) if !for_writing && !may_write(dir) => {
                if !is_archive(path) {
                    let why = match e {
                        StoreError::Open { source, .. } => source.to_string(),
                        other => other.to_string(),
                    };
                    return Err(StoreError::CannotRead { path: path.to_path_buf(), dir: dir.to_path_buf(), why });
                }
                Self::connect(path, true)?
            }
            other => other?,
        };
        if for_writing && store.conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(false) {
            return Err(StoreError::ReadOnly {
                path: path.to_path_buf(),
                why: "SQLite could open it only for reading".into(),
                fix: format!("give write permission (chmod u+w {}) or work on a copy with --db", path.display()),
            });
        }
        // A read-only file of an older schema is read as it is (what readers read is in
        // every version); any other file is brought up to date.
        let read_only = store.conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(false);
        if for_writing || !read_only || store.schema_version()? > MIGRATIONS.len() as i64 {
            store.migrate()?;
        }
        Ok(store)
    }

    /// A private in-memory database, for tests.
    #[cfg(test)]
    pub(crate) fn open_in_memory() -> Result<Self> {
        let conn = Connection::open_in_memory()?;
        let mut store = Self { conn, path: PathBuf::from(":memory:"), archive: false };
        store.configure()?;
        store.migrate()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A connection to `path` (an archive: read-only and immutable), configured.
    fn connect(path: &Path, archive: bool) -> Result<Self> {
        let open_err = |source| StoreError::Open { path: path.to_path_buf(), source };
        let conn = if archive { connect_reading(path, true) } else { Connection::open(path) }.map_err(open_err)?;
        let mut store = Self { conn, path: path.to_path_buf(), archive };
        store.configure()?;
        Ok(store)
    }

    fn configure(&mut self) -> Result<()> {
        let path = self.path.clone();
        let open_err = |source| StoreError::Open { path: path.clone(), source };
        write::install_busy_handler(&self.conn).map_err(open_err)?;
        // A file that is not a database fails here, on its first read, which reads only the
        // header and the schema: opening costs the same whatever the file's size.
        let first_read = self.conn.query_row("PRAGMA schema_version", [], |r| r.get::<_, i64>(0));
        check_report(&self.path, first_read.map(|_| vec!["ok".to_string()]))?;
        // Switching a new file to WAL needs a moment alone with it; when several processes
        // open a new file at once, SQLite may report busy here without waiting. An archive
        // is only read.
        if !self.archive {
            write::retry_busy(|| {
                self.conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))
            })
            .map_err(open_err)?;
        }
        self.conn.pragma_update(None, "synchronous", "NORMAL").map_err(open_err)?;
        self.conn.pragma_update(None, "foreign_keys", "ON").map_err(open_err)?;
        Ok(())
    }

    /// SQLite's full integrity check of the whole file (it reads every page).
    pub fn check_integrity(&self) -> Result<()> {
        check_report(&self.path, integrity_report(&self.conn))
    }

    /// A consistent view for a reader: until it is dropped, every query sees the database
    /// as it was at the first one, whatever other processes commit meanwhile (and they are
    /// not held up: under WAL a reader never blocks a writer).
    pub(crate) fn snapshot(&self) -> Result<Snapshot<'_>> {
        Ok(Snapshot { _read: self.conn.unchecked_transaction()? })
    }

    /// Rows that break a foreign key (a trial of a participant who is not stored, an
    /// answer to a trial that is not): SQLite does not look for them by itself.
    pub fn foreign_key_problems(&self) -> Result<Vec<String>> {
        let mut st = self.conn.prepare("PRAGMA foreign_key_check")?;
        let rows = st.query_map([], |r| {
            Ok(format!(
                "row {} of table {} refers to a missing row of table {}",
                r.get::<_, Option<i64>>(1)?.map_or("?".into(), |v| v.to_string()),
                r.get::<_, String>(0)?,
                r.get::<_, String>(2)?
            ))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Runs `f` as one IMMEDIATE write transaction (see [`write`]); `what` names what is
    /// being saved, for the message if it cannot be.
    pub(crate) fn write<T>(
        &mut self,
        what: &'static str,
        f: impl FnMut(&rusqlite::Transaction<'_>) -> Result<T>,
    ) -> Result<T> {
        write::write(&mut self.conn, &self.path, what, f)
    }

    /// Makes SQLite refuse every write on this connection (as on a read-only file), for
    /// tests of what a failed write does.
    #[cfg(test)]
    pub(crate) fn refuse_writes(&self, refuse: bool) {
        self.conn.pragma_update(None, "query_only", refuse).expect("query_only is a plain pragma");
    }

    /// Whether answers record `seen_in_full` (schema 3 on; a read-only file of an older
    /// schema is read as it is).
    pub(crate) fn records_seen_in_full(&self) -> Result<bool> {
        Ok(self.schema_version()? >= 3)
    }

    pub fn schema_version(&self) -> Result<i64> {
        Ok(self.conn.pragma_query_value(None, "user_version", |r| r.get(0))?)
    }

    fn migrate(&mut self) -> Result<()> {
        let known = MIGRATIONS.len() as i64;
        let current = self.schema_version()?;
        if current > known {
            return Err(StoreError::TooNew { path: self.path.clone(), found: current, known });
        }
        if current == known {
            return Ok(());
        }
        let path = self.path.clone();
        // A migration that rebuilds a table (SQLite cannot alter a constraint) runs with
        // foreign keys off, which only takes effect outside a transaction; every key is
        // checked before the commit instead.
        self.conn.pragma_update(None, "foreign_keys", "OFF")?;
        let migrated = self.write("the database schema", |tx| {
            // Another process may have migrated the file while this one waited for the lock.
            let current: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
            if current > known {
                return Err(StoreError::TooNew { path: path.clone(), found: current, known });
            }
            // Rows that broke a key before (`ualign check` reports them) are not the
            // migration's to mend; it must only add none.
            let broken = || tx.query_row("SELECT COUNT(*) FROM pragma_foreign_key_check", [], |r| r.get::<_, i64>(0));
            let before = broken()?;
            for (i, (name, sql)) in MIGRATIONS.iter().enumerate().skip(current as usize) {
                let err = |source| StoreError::Migration { path: path.clone(), name, source };
                tx.execute_batch(sql).map_err(err)?;
                tx.pragma_update(None, "user_version", (i + 1) as i64).map_err(err)?;
            }
            let after = broken()?;
            if after > before {
                return Err(StoreError::Invalid(format!(
                    "migrating the schema of {} would leave {} more rows breaking a foreign key; nothing was changed",
                    path.display(),
                    after - before
                )));
            }
            Ok(())
        });
        // Keys on again whatever happened, the migration's own error first.
        let on = self.conn.pragma_update(None, "foreign_keys", "ON");
        migrated?;
        Ok(on?)
    }

    /// Opens the study's database, recording the study on first use and refusing a
    /// database made from another study or from another version of this one.
    pub fn open_for_study(path: &Path, study: &Study) -> Result<(Self, Opened)> {
        let mut store = Self::open(path)?;
        let opened = store.record_study(study)?;
        Ok((store, opened))
    }

    /// Opens a database that must already hold a study, for a command that reads it
    /// (analysis, export). The full integrity check is the caller's: see
    /// [`Store::open_existing_for_reading`] and [`Store::check_integrity`].
    pub fn open_existing(path: &Path) -> Result<Self> {
        if !path.exists() || !holds_study(path) {
            return Err(StoreError::NoStudy { path: path.to_path_buf() });
        }
        let store = Self::open_with(path, false)?;
        if store.stored_study()?.is_none() {
            return Err(StoreError::NoStudy { path: path.to_path_buf() });
        }
        Ok(store)
    }

    /// Opens for writing a database that must already hold this study: refused, with
    /// nothing created or changed, when the file is missing or holds no study (a
    /// mistyped `--db` must not become a new, empty study: only `init` makes one).
    pub fn open_made_for_study(path: &Path, study: &Study) -> Result<Self> {
        if !path.exists() || !holds_study(path) {
            return Err(StoreError::NoStudy { path: path.to_path_buf() });
        }
        Ok(Self::open_for_study(path, study)?.0)
    }

    /// [`Store::open_existing`] with SQLite's full integrity check running beside the
    /// command on its own connection; the command must call [`IntegrityCheck::finish`]
    /// before it shows anything it computed.
    pub fn open_existing_for_reading(path: &Path) -> Result<(Self, IntegrityCheck)> {
        let store = Self::open_existing(path)?;
        let check = IntegrityCheck::start(path, store.archive)?;
        Ok((store, check))
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

    /// The prompts as recorded with the study, in the study's order.
    pub fn stored_prompts(&self) -> Result<Vec<Prompt>> {
        let mut q = self.conn.prepare("SELECT id, text, tags FROM prompts ORDER BY rowid")?;
        let rows = q.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, text, tags) = row?;
            let tags = serde_json::from_str(&tags).map_err(|e| {
                StoreError::Invalid(format!("prompt {id} has unreadable tags ({e}); run `ualign check`"))
            })?;
            out.push(Prompt { id, text, tags });
        }
        Ok(out)
    }

    /// Whether the study file differs from the stored text only in comments and layout
    /// (it opened, so it means the same): worth a note, since the stored text is the record.
    pub fn study_text_differs(&self, study: &Study) -> Result<bool> {
        Ok(self.stored_study()?.is_some_and(|s| s.hash != study.hash))
    }

    /// The day the study was recorded (UTC): what chat templates that print a date see,
    /// so a study's samples are the same whenever its pools are filled.
    pub fn study_day(&self) -> Result<chrono::NaiveDate> {
        let stored = self.stored_study()?.ok_or_else(|| StoreError::NoStudy { path: self.path.clone() })?;
        chrono::DateTime::parse_from_rfc3339(&stored.created_at).map(|t| t.date_naive()).map_err(|e| {
            StoreError::Invalid(format!("the study's recorded time `{}` is unreadable: {e}", stored.created_at))
        })
    }

    /// Records the study in a new database, or checks that the recorded one is this study
    /// in this version. Safe when several processes open a new database at once: one
    /// records it, the others find it recorded.
    pub fn record_study(&mut self, study: &Study) -> Result<Opened> {
        if let Some(stored) = self.stored_study()? {
            return self.same_study(stored, study).map(|()| Opened::Existing);
        }
        let created = self.write("the study", |tx| {
            if tx.query_row("SELECT COUNT(*) FROM study", [], |r| r.get::<_, i64>(0))? > 0 {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO study (id, name, hash, source, path, created_at) VALUES (1, ?1, ?2, ?3, ?4, ?5)",
                params![study.name, study.hash, study.source, study.path.display().to_string(), now()],
            )?;
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
                    PolicySource::Server { server, decoding } => (
                        "server",
                        Some(format!("{} @ {}", server.model, server.base_url)),
                        serde_json::to_string(decoding).ok(),
                    ),
                    PolicySource::Imported => ("imported", None, None),
                };
                ins.execute(params![p.name, source, p.pool_size, model, decoding])?;
            }
            Ok(true)
        })?;
        if created {
            return Ok(Opened::Created);
        }
        // Another process recorded a study first: it must be this one.
        let stored = self.stored_study()?.ok_or_else(|| StoreError::NoStudy { path: self.path.clone() })?;
        self.same_study(stored, study).map(|()| Opened::Existing)
    }

    fn same_study(&self, stored: StoredStudy, study: &Study) -> Result<()> {
        if stored.name != study.name {
            return Err(StoreError::OtherStudy {
                path: self.path.clone(),
                stored: stored.name,
                given: study.name.clone(),
            });
        }
        let changes = self.changes_from(&stored, study)?;
        if !changes.is_empty() {
            return Err(StoreError::StudyChanged {
                path: self.path.clone(),
                study_path: study.path.clone(),
                recorded_at: stored.created_at,
                changes,
            });
        }
        Ok(())
    }

    /// How the study file differs in meaning from the study this database holds (empty:
    /// the same study, perhaps with other comments or layout), for the commands that read
    /// the stored study whatever the file says (`check`, `export`, `validate --db`).
    /// A database of another study is refused.
    pub fn study_changes(&self, study: &Study) -> Result<Vec<String>> {
        let stored = self.stored_study()?.ok_or_else(|| StoreError::NoStudy { path: self.path.clone() })?;
        if stored.name != study.name {
            return Err(StoreError::OtherStudy {
                path: self.path.clone(),
                stored: stored.name,
                given: study.name.clone(),
            });
        }
        self.changes_from(&stored, study)
    }

    fn changes_from(&self, stored: &StoredStudy, study: &Study) -> Result<Vec<String>> {
        if stored.hash == study.hash {
            return Ok(Vec::new());
        }
        // Comments and layout are not a change of study; the stored text stays its record.
        let mut changes = crate::study::meaning_changes(&stored.source, &study.source);
        changes.extend(crate::study::prompt_changes(&self.stored_prompts()?, &study.prompts));
        Ok(changes)
    }
}

/// A reader's consistent view of the database ([`Store::snapshot`]): held, every query
/// of the store sees the database as it was at the first one; dropped, it ends.
pub(crate) struct Snapshot<'a> {
    _read: rusqlite::Transaction<'a>,
}

#[derive(Debug, Clone)]
pub struct StoredStudy {
    pub name: String,
    pub hash: String,
    pub source: String,
    pub path: String,
    pub created_at: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_keys_are_on_again_after_a_migration_that_turned_them_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as i64);
        let on: i64 = store.conn.pragma_query_value(None, "foreign_keys", |r| r.get(0)).unwrap();
        assert_eq!(on, 1, "the connection that migrated enforces foreign keys");
        let refused = store.conn.execute(
            "INSERT INTO candidates (policy, prompt_id, sample_index, text, created_at) VALUES ('none', 'none', 0, 't', 'now')",
            [],
        );
        assert!(refused.is_err(), "a candidate of no policy is refused");
    }
}
