//! Writing from many processes at once. Every write runs in an IMMEDIATE transaction: the
//! write lock is taken before anything is read, so a read-then-write never has to upgrade a
//! read transaction (SQLite cannot wait for such an upgrade: it fails at once with
//! "database is locked"). Waiting for the lock is SQLite's busy handler, with short sleeps
//! (a write here holds the lock for about a millisecond) up to [`WRITE_WAIT`] in all; the
//! few places where SQLite reports busy without calling the handler are retried a bounded
//! number of times. A write that still cannot happen comes back as [`WriteFailure`], which
//! says in plain words what is wrong and what to do.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, Transaction, TransactionBehavior};

use super::{Result, StoreError};

/// How long one write waits, in all, for other processes' writes to finish.
pub const WRITE_WAIT: Duration = Duration::from_secs(30);

/// Sleep before the busy handler's `attempt`-th retry, before jitter: 1 ms at first,
/// growing to 5 ms, so a waiting writer gets the lock soon after it is released (SQLite's
/// default handler sleeps up to 100 ms between tries).
fn busy_sleep_ms(attempt: u32) -> u32 {
    (1 + attempt / 10).min(5)
}

/// Busy-handler calls that add up to [`WRITE_WAIT`]: 100 ms in the first 40, then 5 ms each.
const BUSY_ATTEMPTS: u32 = 40 + (WRITE_WAIT.as_millis() as u32 - 100) / 5;

/// SQLite's busy handler for every connection of the store: true means "try again".
fn busy_wait(attempt: i32) -> bool {
    let attempt = attempt.max(0) as u32;
    if attempt >= BUSY_ATTEMPTS {
        return false;
    }
    // Jitter keeps writers that started waiting together from retrying in lockstep.
    let base = f64::from(busy_sleep_ms(attempt));
    let ms = base * (0.5 + rand::random::<f64>());
    std::thread::sleep(Duration::from_secs_f64(ms / 1000.0));
    true
}

pub(super) fn install_busy_handler(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_handler(Some(busy_wait))
}

/// Whether an error is another connection holding a lock (worth waiting for).
pub(super) fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked))
}

/// Retries of a busy error that SQLite reported without waiting (WAL recovery, a journal
/// mode change racing another process's first open).
const BUSY_RETRIES: u32 = 50;

/// Runs `f` again while it fails with a busy error, a bounded number of times.
pub(super) fn retry_busy<T>(mut f: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    let mut attempt = 0;
    loop {
        match f() {
            Err(e) if is_busy(&e) && attempt < BUSY_RETRIES => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(u64::from(busy_sleep_ms(attempt * 4))));
            }
            other => return other,
        }
    }
}

/// Why a write could not happen, in the words a participant or researcher needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteCause {
    /// The disk, or a file-size limit, is full.
    Full,
    /// The database file or its folder cannot be written.
    ReadOnly,
    /// The file is damaged.
    Damaged,
    /// Another process held the write lock for longer than [`WRITE_WAIT`].
    Busy,
    /// Any other input/output error.
    Io,
    /// SQLite refused the write for another reason (a bug: report it).
    Refused,
}

impl WriteCause {
    fn of(e: &rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(ErrorCode::DiskFull | ErrorCode::TooBig) => WriteCause::Full,
            Some(ErrorCode::ReadOnly | ErrorCode::PermissionDenied | ErrorCode::CannotOpen) => WriteCause::ReadOnly,
            Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => WriteCause::Damaged,
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => WriteCause::Busy,
            Some(ErrorCode::SystemIoFailure) => WriteCause::Io,
            _ => WriteCause::Refused,
        }
    }

    /// What is wrong, in plain words.
    pub fn plain(self) -> &'static str {
        match self {
            WriteCause::Full => "the disk is full (or a file-size limit was reached)",
            WriteCause::ReadOnly => "the database file or its folder cannot be written",
            WriteCause::Damaged => "the database file is damaged",
            WriteCause::Busy => "another program kept the database busy for too long",
            WriteCause::Io => "the computer could not write to its disk (it may be full, or failing)",
            WriteCause::Refused => "the database refused it",
        }
    }

    /// What the researcher should do.
    pub(crate) fn remedy(self, path: &Path) -> String {
        let p = path.display();
        match self {
            WriteCause::Full => format!("free disk space where {p} lives (df -h), then resume"),
            WriteCause::ReadOnly => {
                format!("give write permission to {p} and its folder (SQLite writes {p}-wal and {p}-shm beside it)")
            }
            WriteCause::Damaged => format!(
                "stop the study and run `ualign check` on it; restore {p} from a backup, or save what is readable with `sqlite3 {p} .recover`"
            ),
            WriteCause::Busy => format!(
                "another process held {p} for over {} s; look for a stuck process (fuser {p}) and resume",
                WRITE_WAIT.as_secs()
            ),
            WriteCause::Io => format!("check free space (df -h) and the disk holding {p} (dmesg), then resume"),
            WriteCause::Refused => "this is a bug in ualign; please report it with the message above".to_string(),
        }
    }
}

/// A write that could not happen: what was being written, why, and the SQLite detail.
#[derive(Debug, thiserror::Error)]
#[error("could not save {what} to {}: {} (SQLite: {sqlite})\n  {}", .path.display(), .cause.plain(), .cause.remedy(.path))]
pub struct WriteFailure {
    pub(crate) path: PathBuf,
    pub(crate) what: &'static str,
    pub cause: WriteCause,
    /// SQLite's own error, shown in the message (not a separate cause in the chain).
    pub(crate) sqlite: rusqlite::Error,
}

/// Runs `f` in an IMMEDIATE transaction on `conn` and commits it; busy errors SQLite
/// reports without waiting are retried, and any other SQLite error becomes a
/// [`WriteFailure`] naming `what`. Errors `f` itself raises (a refused answer, say) pass
/// through unchanged, and nothing of a failed `f` is committed.
pub(super) fn write<T>(
    conn: &mut Connection,
    path: &Path,
    what: &'static str,
    mut f: impl FnMut(&Transaction<'_>) -> Result<T>,
) -> Result<T> {
    let mut attempt = 0;
    loop {
        let result = (|| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let value = f(&tx)?;
            tx.commit()?;
            Ok(value)
        })();
        match result {
            Err(StoreError::Sqlite(e)) if is_busy(&e) && attempt < BUSY_RETRIES => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(u64::from(busy_sleep_ms(attempt * 4))));
            }
            Err(StoreError::Sqlite(sqlite)) => {
                let cause = WriteCause::of(&sqlite);
                return Err(StoreError::Write(WriteFailure { path: path.to_path_buf(), what, cause, sqlite }));
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_busy_handler_waits_about_write_wait_in_all() {
        let total: u32 = (0..BUSY_ATTEMPTS).map(busy_sleep_ms).sum();
        let want = WRITE_WAIT.as_millis() as u32;
        assert!(total.abs_diff(want) <= 10, "{total} ms against {want} ms");
    }

    #[test]
    fn sqlite_errors_are_told_in_plain_words() {
        let err = |code| rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None);
        assert_eq!(WriteCause::of(&err(rusqlite::ffi::SQLITE_FULL)), WriteCause::Full);
        assert_eq!(WriteCause::of(&err(rusqlite::ffi::SQLITE_IOERR_WRITE)), WriteCause::Io);
        assert_eq!(WriteCause::of(&err(rusqlite::ffi::SQLITE_READONLY)), WriteCause::ReadOnly);
        assert_eq!(WriteCause::of(&err(rusqlite::ffi::SQLITE_CORRUPT)), WriteCause::Damaged);
        assert_eq!(WriteCause::of(&err(rusqlite::ffi::SQLITE_BUSY)), WriteCause::Busy);
        assert_eq!(WriteCause::of(&err(rusqlite::ffi::SQLITE_IOERR_FSYNC)), WriteCause::Io);
    }
}
