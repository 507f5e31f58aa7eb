//! End to end in a pseudo-terminal: the real binary, real keys. Accept consent, answer
//! three trials, kill the process, start it again, finish; then the database must hold
//! exactly the answers given, in order, with their displayed orders, none shown twice.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portable_pty::{CommandBuilder, PtySize, native_pty_system};
use rusqlite::Connection;

struct Tui {
    child: Box<dyn portable_pty::Child + Send + Sync>,
    writer: Box<dyn Write + Send>,
    /// The screen as a terminal would show it.
    screen: Arc<Mutex<vt100::Parser>>,
}

impl Tui {
    fn start(dir: &Path, args: &[&str]) -> Self {
        let pty =
            native_pty_system().openpty(PtySize { rows: 30, cols: 100, pixel_width: 0, pixel_height: 0 }).unwrap();
        let mut cmd = CommandBuilder::new(env!("CARGO_BIN_EXE_ualign"));
        cmd.args(args);
        cmd.cwd(dir);
        cmd.env("NO_COLOR", "1");
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
        std::mem::forget(pty.master); // keep the terminal open while the child runs
        Self { child, writer, screen }
    }

    fn wait_for_text(&self, needle: &str) {
        let out = self.screen.clone();
        let shown = move || out.lock().unwrap().screen().contents();
        let start = Instant::now();
        while !shown().contains(needle) {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "timed out waiting for {needle:?}; the screen shows:\n{}",
                shown()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn keys(&mut self, s: &str) {
        self.writer.write_all(s.as_bytes()).unwrap();
        self.writer.flush().unwrap();
        std::thread::sleep(Duration::from_millis(60));
    }
}

impl Drop for Tui {
    /// A failing test must not leave the program running.
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn wait(what: &str, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < Duration::from_secs(30), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn count(db: &Path, sql: &str) -> i64 {
    let c = Connection::open(db).unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    c.query_row(sql, [], |r| r.get(0)).unwrap_or(0)
}

/// Answers the shown trial with "1", "2", Enter: a pick of slot 1 (the second answer),
/// or in an ordering trial the order 0, 1, then the rest.
fn answer_current(tui: &mut Tui, db: &Path, answered: i64) {
    wait("the trial to be shown", || {
        count(db, &format!("SELECT COUNT(*) FROM trials WHERE position = {answered} AND shown_at IS NOT NULL")) == 1
    });
    tui.keys("1");
    tui.keys("2");
    tui.keys("\r");
    wait("the answer to be committed", || count(db, "SELECT COUNT(*) FROM answers") == answered + 1);
}

#[test]
fn answer_three_kill_resume_and_finish() {
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("studies");
    std::fs::create_dir_all(dir.path().join("studies/example")).unwrap();
    let study = std::fs::read_to_string(src.join("example.toml"))
        .unwrap()
        .replace("min_reading_seconds = 2.0", "min_reading_seconds = 0\nparticipant_id_pattern = \"e2e[0-9]{2}\"");
    std::fs::write(dir.path().join("studies/example.toml"), study).unwrap();
    for f in ["prompts.jsonl", "sampled.jsonl", "greedy.jsonl"] {
        std::fs::copy(src.join("example").join(f), dir.path().join("studies/example").join(f)).unwrap();
    }
    let bin = env!("CARGO_BIN_EXE_ualign");
    for policy in ["sampled", "greedy"] {
        let out = std::process::Command::new(bin)
            .current_dir(dir.path())
            .args(["import", "studies/example.toml", "--policy", policy, "--candidates"])
            .arg(format!("studies/example/{policy}.jsonl"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let db = dir.path().join("db/example.sqlite");

    let mut tui = Tui::start(dir.path(), &["run", "studies/example.toml"]);
    tui.wait_for_text("Press Enter to begin");
    tui.keys("\r");
    tui.wait_for_text("Press y to agree");
    tui.keys("y");
    tui.wait_for_text("Participant ID");
    tui.keys("e2e01\r");
    wait("the participant", || count(&db, "SELECT COUNT(*) FROM participants WHERE consent_at IS NOT NULL") == 1);
    tui.keys("\r"); // instructions
    for i in 0..3 {
        answer_current(&mut tui, &db, i);
    }
    // The fourth trial is on screen when the process dies.
    wait("trial 4 on screen", || {
        count(&db, "SELECT COUNT(*) FROM trials WHERE position = 3 AND shown_at IS NOT NULL") == 1
    });
    tui.child.kill().unwrap();
    tui.child.wait().unwrap();
    assert_eq!(count(&db, "SELECT COUNT(*) FROM answers"), 3);

    let mut tui = Tui::start(dir.path(), &["run", "studies/example.toml", "--participant", "e2e01"]);
    tui.wait_for_text("Welcome back");
    tui.keys("\r");
    let total = count(&db, "SELECT COUNT(*) FROM trials");
    assert_eq!(total, 11);
    for i in 3..total {
        answer_current(&mut tui, &db, i);
        if (i + 1) % 10 == 0 && i + 1 < total {
            tui.wait_for_text("short break");
            tui.keys("\r");
        }
    }
    tui.wait_for_text("EXAMPLE-7Q2K");
    tui.keys("q");
    let status = tui.child.wait().unwrap();
    assert!(status.success());

    let c = Connection::open(&db).unwrap();
    let mut st = c
        .prepare(
            "SELECT t.position, t.mode, t.slots, t.candidate_ids, a.choice, a.ordering
             FROM trials t JOIN answers a ON a.trial_id = t.id ORDER BY a.answered_at, t.position",
        )
        .unwrap();
    type Row = (i64, String, String, Option<String>, Option<i64>, Option<String>);
    let rows: Vec<Row> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows.len(), 11, "exactly the answers given");
    for (i, (pos, mode, slots, cids, choice, ordering)) in rows.iter().enumerate() {
        assert_eq!(*pos, i as i64, "answered in order, none twice, none skipped");
        let n_slots = serde_json::from_str::<Vec<serde_json::Value>>(slots).unwrap().len();
        let ids: Vec<i64> = serde_json::from_str(cids.as_ref().unwrap()).unwrap();
        assert_eq!(ids.len(), n_slots, "displayed order stored");
        if mode == "order" {
            let o: Vec<usize> = serde_json::from_str(ordering.as_ref().unwrap()).unwrap();
            assert_eq!(o[..2], [0, 1]);
        } else {
            assert_eq!(*choice, Some(1));
        }
    }
    let sessions = count(&db, "SELECT COUNT(*) FROM sessions WHERE participant_id = 'e2e01'");
    assert_eq!(sessions, 2);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM sessions WHERE end_reason = 'completed'"), 1);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM participants WHERE completed_at IS NOT NULL"), 1);
}
