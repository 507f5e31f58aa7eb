//! Helpers shared by the integration tests that drive the real binary: the example study
//! in a private folder, running `ualign`, and a participant's screen in a pseudo-terminal.
// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portable_pty::{CommandBuilder, PtySize, native_pty_system};
use rusqlite::Connection;

pub(crate) fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Runs the binary in `dir`: (success, stdout, stderr).
pub(crate) fn ualign(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ualign")).current_dir(dir).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// `ualign` with extra environment variables.
pub(crate) fn ualign_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ualign"))
        .current_dir(dir)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// A copy of the example study in a temp dir (so its db/ is private), its text passed
/// through `edit`.
pub(crate) fn example_copy_with(edit: impl FnOnce(String) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = repo("studies");
    std::fs::create_dir_all(dir.path().join("studies/example")).unwrap();
    let study = std::fs::read_to_string(src.join("example.toml")).unwrap();
    std::fs::write(dir.path().join("studies/example.toml"), edit(study)).unwrap();
    for f in ["prompts.jsonl", "sampled.jsonl", "greedy.jsonl"] {
        std::fs::copy(src.join("example").join(f), dir.path().join("studies/example").join(f)).unwrap();
    }
    dir
}

pub(crate) fn example_copy() -> tempfile::TempDir {
    example_copy_with(|s| s)
}

/// The example study for participants typing ids `e2e` and two digits, answering as fast
/// as they like, with its pools imported; returns the folder and the database's path.
pub(crate) fn example_for_participants() -> (tempfile::TempDir, PathBuf) {
    let dir = example_copy_with(|s| {
        s.replace("min_reading_seconds = 2.0", "min_reading_seconds = 0\nparticipant_id_pattern = \"e2e[0-9]{2}\"")
    });
    for policy in ["sampled", "greedy"] {
        let file = format!("studies/example/{policy}.jsonl");
        let (ok, _, err) =
            ualign(dir.path(), &["import", "studies/example.toml", "--policy", policy, "--candidates", &file]);
        assert!(ok, "{err}");
    }
    let db = dir.path().join("db/example.sqlite");
    (dir, db)
}

pub(crate) fn wait(what: &str, ok: impl FnMut() -> bool) {
    wait_within(what, Duration::from_secs(60), ok);
}

/// As [`wait`], for something slow (a real model's generation on a loaded machine).
pub(crate) fn wait_within(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// One number from the database, read on a connection of its own.
pub(crate) fn count(db: &Path, sql: &str) -> i64 {
    let c = Connection::open(db).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    c.query_row(sql, [], |r| r.get(0)).unwrap_or(0)
}

/// The real binary in a pseudo-terminal of 100×30.
pub(crate) struct Tui {
    pub(crate) child: Box<dyn portable_pty::Child + Send + Sync>,
    /// Shared so that a flood can be written from a thread of its own (a write to a
    /// terminal whose program has exited blocks once its buffer is full).
    writer: Arc<Mutex<Box<dyn Write + Send>>>,
    /// The screen as a terminal would show it.
    screen: Arc<Mutex<vt100::Parser>>,
    /// The terminal's controlling side, kept open while the child runs.
    master: Option<Box<dyn portable_pty::MasterPty + Send>>,
}

impl Tui {
    pub(crate) fn start(dir: &Path, args: &[&str]) -> Self {
        let mut cmd = CommandBuilder::new(env!("CARGO_BIN_EXE_ualign"));
        cmd.args(args);
        cmd.cwd(dir);
        cmd.env("NO_COLOR", "1");
        Self::spawn(cmd, (100, 30))
    }

    /// Any program in a pseudo-terminal of `size` (columns, rows), read as 100×30.
    pub(crate) fn spawn(cmd: CommandBuilder, size: (u16, u16)) -> Self {
        let pty = native_pty_system()
            .openpty(PtySize { rows: size.1, cols: size.0, pixel_width: 0, pixel_height: 0 })
            .unwrap();
        let child = pty.slave.spawn_command(cmd).unwrap();
        let mut reader = pty.master.try_clone_reader().unwrap();
        let screen = Arc::new(Mutex::new(vt100::Parser::new(30, 100, 0)));
        let out = screen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                out.lock().unwrap().process(&buf[..n]);
            }
        });
        let writer = pty.master.take_writer().unwrap();
        Self { child, writer: Arc::new(Mutex::new(writer)), screen, master: Some(pty.master) }
    }

    /// Changes the terminal's size (the program gets SIGWINCH).
    pub(crate) fn resize(&self, cols: u16, rows: u16) {
        if let Some(m) = &self.master {
            let _ = m.resize(PtySize { rows, cols, pixel_width: 0, pixel_height: 0 });
        }
    }

    /// Sends `chunks` from a thread of its own and waits until they are written or the
    /// program has exited (after which a write may never return).
    pub(crate) fn flood(&mut self, chunks: Vec<Vec<u8>>) {
        let writer = self.writer.clone();
        let sending = std::thread::spawn(move || {
            for c in chunks {
                let mut w = writer.lock().unwrap();
                if w.write_all(&c).and_then(|()| w.flush()).is_err() {
                    return;
                }
            }
        });
        wait("the flood to be written or the program to exit", || sending.is_finished() || self.exited());
    }

    /// Whether the program has exited.
    pub(crate) fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    pub(crate) fn shown(&self) -> String {
        self.screen.lock().unwrap().screen().contents()
    }

    pub(crate) fn wait_for_text(&self, needle: &str) {
        self.wait_for_text_within(needle, Duration::from_secs(60));
    }

    /// As [`Tui::wait_for_text`], for a screen that waits on something slow (a real
    /// model's generation on a loaded machine).
    pub(crate) fn wait_for_text_within(&self, needle: &str, limit: Duration) {
        let start = Instant::now();
        while !self.shown().contains(needle) {
            assert!(start.elapsed() < limit, "timed out waiting for {needle:?}; the screen shows:\n{}", self.shown());
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Types `s`, then gives the program a moment, as a person would.
    pub(crate) fn keys(&mut self, s: &str) {
        self.send(s);
        std::thread::sleep(Duration::from_millis(60));
    }

    /// Types `s` at once.
    pub(crate) fn send(&mut self, s: &str) {
        let mut w = self.writer.lock().unwrap();
        w.write_all(s.as_bytes()).unwrap();
        w.flush().unwrap();
    }

    /// Consent, the typed id and the instructions: up to the first trial.
    pub(crate) fn begin(&mut self, id: &str) {
        self.wait_for_text("Press Enter to begin");
        self.keys("\r");
        self.wait_for_text("Press y to agree");
        self.keys("y");
        self.wait_for_text("Participant ID");
        self.keys(&format!("{id}\r"));
        self.wait_for_text("Instructions");
        self.keys("\r");
    }

    /// Answers participant `id`'s trial at `position` with "1", "2", Enter (a pick of the
    /// second answer, or in an ordering trial the order 0, 1, then the rest) once it is
    /// on screen, and waits for the answer to be committed; a break screen after it is
    /// passed too.
    pub(crate) fn answer(&mut self, db: &Path, id: &str, position: i64, total: i64) {
        let shown = format!(
            "SELECT COUNT(*) FROM trials WHERE participant_id = '{id}' AND position = {position} AND shown_at IS NOT NULL"
        );
        wait("the trial to be shown", || count(db, &shown) == 1);
        self.keys("1");
        self.keys("2");
        self.keys("\r");
        let answered = format!(
            "SELECT COUNT(*) FROM answers a JOIN trials t ON t.id = a.trial_id WHERE t.participant_id = '{id}'"
        );
        wait("the answer to be committed", || count(db, &answered) == position + 1);
        if (position + 1) % 10 == 0 && position + 1 < total {
            self.wait_for_text("short break");
            self.keys("\r");
        }
    }
}

impl Drop for Tui {
    /// A failing test must not leave the program running.
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// A connection of the test's own to a study database, for checking what is stored.
pub(crate) fn sql(db: &Path) -> Connection {
    let c = Connection::open(db).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    c
}

/// Asserts that every pool stored in `db` is whole: as many candidates per policy and
/// prompt as the policy's pool size (a pool is stored at once or not at all).
pub(crate) fn assert_pools_whole(db: &Path, study: &ualign_core::study::Study) {
    let pools: Vec<(String, i64)> = sql(db)
        .prepare("SELECT policy, COUNT(*) FROM candidates GROUP BY policy, prompt_id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for (policy, n) in pools {
        let size = i64::from(study.policy(&policy).unwrap().pool_size);
        assert_eq!(n, size, "policy {policy}: a pool of {n} of {size} was stored");
    }
}

/// Limits the size of every file process `pid` writes (as `ulimit -f` would): from then on
/// SQLite's writes past the limit fail as on a full disk.
pub(crate) fn limit_file_size(pid: u32, bytes: u64) {
    let limit = libc::rlimit { rlim_cur: bytes, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: prlimit only reads `limit`; a null old-limit pointer is allowed.
    let rc = unsafe { libc::prlimit(pid as libc::pid_t, libc::RLIMIT_FSIZE, &limit, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
}
