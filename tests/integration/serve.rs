//! `ualign serve` as participants and attackers meet it: the real OpenSSH client in a
//! pseudo-terminal (one, then 32 at once, through a SIGKILL of the server), the refusals
//! (commands, sftp, forwarding, agent, wrong codes and passwords, a flood of connections,
//! absurd windows, random input), and a real headless browser (chromium through
//! chromedriver's WebDriver protocol) on the browser page.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portable_pty::CommandBuilder;

use crate::common::{Tui, count, example_for_participants, ualign, wait};

/// A running `ualign serve`, its ports read from what it prints.
pub(crate) struct Server {
    child: Child,
    pub(crate) ssh: Option<u16>,
    pub(crate) http: Option<u16>,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// `ualign serve studies/example.toml` in `dir` with `args` (the doors among them).
    pub(crate) fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_study(dir, "studies/example.toml", args, env)
    }

    pub(crate) fn start_study(dir: &Path, study: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ualign"))
            .current_dir(dir)
            .args(["serve", study])
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let into = log.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                into.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let (mut ssh, mut http) = (None, None);
        let mut printed = String::new();
        loop {
            let mut line = String::new();
            if out.read_line(&mut line).unwrap() == 0 {
                panic!("serve ended before it listened:\n{printed}{}", log.lock().unwrap());
            }
            printed.push_str(&line);
            if let Some(rest) = line.trim().strip_prefix("ssh:") {
                ssh = rest.split_whitespace().nth(2).and_then(|p| p.parse().ok());
            }
            if let Some(rest) = line.trim().strip_prefix("browser: http://127.0.0.1:") {
                http = rest.split('/').next().and_then(|p| p.parse().ok());
            }
            if line.contains("Ctrl-C stops") {
                break;
            }
        }
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        Self { child, ssh, http, log }
    }

    pub(crate) fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub(crate) fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub(crate) fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and the exit status.
    pub(crate) fn terminate(&mut self) -> std::process::ExitStatus {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.child.wait().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The OpenSSH client's options for these tests: no config, no known hosts, no agent,
/// and (unless `-o BatchMode=no` comes first) never a password prompt.
fn ssh_options(port: u16) -> Vec<String> {
    [
        "-F",
        "/dev/null",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "ConnectTimeout=20",
        "-e",
        "none",
        "-p",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([port.to_string()])
    .collect()
}

/// ssh's options, with `before` first: ssh takes the first value of an option it is given.
fn ssh_args(port: u16, before: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = before.iter().map(|s| s.to_string()).collect();
    args.extend(ssh_options(port));
    args.extend(["-o".to_string(), "BatchMode=yes".to_string()]);
    args
}

/// `ssh -p PORT user@127.0.0.1 extra…` in a pseudo-terminal of `size`.
fn ssh_tui(port: u16, user: &str, extra: &[&str], size: (u16, u16)) -> Tui {
    let mut cmd = CommandBuilder::new("ssh");
    cmd.args(ssh_args(port, extra));
    cmd.arg(format!("{user}@127.0.0.1"));
    cmd.env_remove("SSH_AUTH_SOCK");
    Tui::spawn(cmd, size)
}

/// `ssh [before] user@127.0.0.1 [after]` without a terminal: (exit success, stdout, stderr).
fn ssh_run(port: u16, user: &str, before: &[&str], after: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let out = Command::new("ssh")
        .args(ssh_args(port, before))
        .arg(format!("{user}@127.0.0.1"))
        .args(after)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// `count` invitation codes for the example study: (code, pseudonym).
fn invite(dir: &Path, count: usize) -> Vec<(String, String)> {
    let file = dir.join(format!("invites-{}.csv", rand::random::<u32>()));
    let (ok, _, err) = ualign(
        dir,
        &["invite", "studies/example.toml", "--count", &count.to_string(), "--out", file.to_str().unwrap()],
    );
    assert!(ok, "{err}");
    std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let (c, p) = l.split_once(',').unwrap();
            (c.to_string(), p.to_string())
        })
        .collect()
}

/// Welcome, consent and instructions, signed in already (no ID screen).
fn begin_signed_in(t: &mut Tui) {
    t.wait_for_text("Press Enter to begin");
    t.keys("\r");
    t.wait_for_text("Press y to agree");
    t.keys("y");
    t.wait_for_text("Instructions");
    t.keys("\r");
}

fn trials_of(db: &Path, p: &str) -> i64 {
    count(db, &format!("SELECT COUNT(*) FROM trials WHERE participant_id = '{p}'"))
}

fn answers_of(db: &Path, p: &str) -> i64 {
    count(
        db,
        &format!("SELECT COUNT(*) FROM answers a JOIN trials t ON t.id = a.trial_id WHERE t.participant_id = '{p}'"),
    )
}

fn example_server(extra: &[&str]) -> (tempfile::TempDir, PathBuf, Server) {
    let (dir, db) = example_for_participants();
    let mut args = vec!["--ssh", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    // Invitations first: `--auth invite` needs some.
    if !extra.contains(&"--auth") {
        invite(dir.path(), 1);
    }
    let server = Server::start(dir.path(), &args, &[]);
    (dir, db, server)
}

#[test]
fn a_participant_over_real_ssh_goes_from_consent_to_the_completion_code() {
    let (dir, db, server) = example_server(&[]);
    let (code, p) = invite(dir.path(), 1).remove(0);
    let mut t = ssh_tui(server.ssh.unwrap(), &code, &[], (100, 30));
    begin_signed_in(&mut t);
    let total = trials_of(&db, &p);
    assert!(total > 5, "{total}");
    for position in 0..total {
        t.answer(&db, &p, position, total);
    }
    t.wait_for_text("EXAMPLE-7Q2K");
    assert_eq!(answers_of(&db, &p), total);
    assert_eq!(
        count(&db, &format!("SELECT COUNT(*) FROM participants WHERE id = '{p}' AND completed_at IS NOT NULL")),
        1
    );
    assert_eq!(
        count(&db, &format!("SELECT COUNT(*) FROM sessions WHERE participant_id = '{p}' AND client LIKE 'ssh 100x30'")),
        1,
        "the session records the client's real window"
    );
    t.keys("q");
    wait("ssh to exit", || t.exited());
    let log = server.log();
    assert!(log.contains(&format!("{p} completed the study")), "{log}");
    assert!(!log.contains(&code), "the log never holds what was typed: {log}");
}

#[test]
fn an_answer_that_cannot_be_saved_is_in_the_servers_log_and_the_count_is_without_the_session() {
    let (dir, db, server) = example_server(&[]);
    let (code, p) = invite(dir.path(), 1).remove(0);
    let mut t = ssh_tui(server.ssh.unwrap(), &code, &[], (100, 30));
    begin_signed_in(&mut t);
    let total = trials_of(&db, &p);
    t.answer(&db, &p, 0, total);
    wait("the second trial to be shown", || {
        count(&db, &format!("SELECT COUNT(*) FROM trials WHERE participant_id = '{p}' AND shown_at IS NOT NULL")) == 2
    });
    // From now on the server cannot grow a file: its disk is as good as full.
    crate::common::limit_file_size(server.child.id(), 1);
    t.keys("1");
    t.keys("\r");
    t.wait_for_text("NOT saved");
    t.keys("q");
    wait("ssh to exit", || t.exited());
    wait("the session's end in the log", || server.log().contains(&format!("{p} ended")));
    let log = server.log();
    assert!(log.contains(&format!("{p} could not go on: ")) && log.contains("could not save the answer"), "{log}");
    assert!(log.contains(&format!("{p} ended: error, 1 answer(s) saved in this session [0 session(s)]")), "{log}");
    assert_eq!(answers_of(&db, &p), 1, "the answer before stands");
}

#[test]
fn the_window_follows_the_clients_terminal() {
    let (dir, _db, server) = example_server(&[]);
    let (code, _) = invite(dir.path(), 1).remove(0);
    let t = ssh_tui(server.ssh.unwrap(), &code, &[], (100, 30));
    t.wait_for_text("Press Enter to begin");
    t.resize(40, 12);
    t.wait_for_text("Please enlarge the window");
    t.wait_for_text("(40×12 now)");
    t.resize(100, 30);
    t.wait_for_text("Press Enter to begin");
}

#[test]
fn thirty_two_ssh_sessions_answer_at_once_and_all_resume_after_the_server_is_killed() {
    const N: usize = 32;
    const FIRST: i64 = 3;
    let (dir, db) = example_for_participants();
    let codes = invite(dir.path(), N);
    // Every participant from the same address, signing in at once: a lab behind one NAT.
    let args = ["--ssh", "127.0.0.1:0", "--rate-limit", "1000", "--max-pending-per-address", "32"];
    let mut server = Server::start(dir.path(), &args, &[]);
    let port = server.ssh.unwrap();
    let run_all = |port: u16, from: i64, to: i64, resuming: bool| -> Vec<Tui> {
        let handles: Vec<_> = codes
            .iter()
            .cloned()
            .map(|(code, p)| {
                let db = db.clone();
                std::thread::spawn(move || {
                    let mut t = ssh_tui(port, &code, &[], (100, 30));
                    if resuming {
                        t.wait_for_text("Welcome back");
                        t.keys("\r");
                    } else {
                        begin_signed_in(&mut t);
                    }
                    let total = trials_of(&db, &p);
                    for position in from..to {
                        t.answer(&db, &p, position, total);
                    }
                    assert!(!t.shown().contains("Something went wrong"), "{}", t.shown());
                    t
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    };
    let first = run_all(port, 0, FIRST, false);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM answers"), N as i64 * FIRST);
    // The server dies without warning, mid-study: its sessions stay open in the database
    // until the next server starts and closes them.
    server.kill9();
    drop(first);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM sessions WHERE ended_at IS NULL"), N as i64);
    let mut server = Server::start(dir.path(), &args, &[]);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM sessions WHERE end_reason = 'server stopped'"), N as i64);
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM sessions WHERE ended_at < started_at OR ended_at > (SELECT MAX(at) FROM
                 (SELECT MAX(answered_at) AS at FROM answers UNION ALL SELECT MAX(shown_at) FROM trials))"
        ),
        0,
        "each ends at its last sign of life"
    );
    wait("the closed sessions in the log", || {
        server.log().contains(&format!("closed {N} session(s) a server left open"))
    });
    let again = run_all(server.ssh.unwrap(), FIRST, FIRST + 1, true);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM answers"), N as i64 * (FIRST + 1), "every answer once, none lost");
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM (SELECT trial_id FROM answers GROUP BY trial_id HAVING COUNT(*) > 1)"),
        0
    );
    for (_, p) in &codes {
        assert_eq!(answers_of(&db, p), FIRST + 1, "{p}");
    }
    drop(again);
    assert!(server.alive());
    assert_eq!(server.terminate().code(), Some(0));
}

#[test]
fn commands_sftp_forwarding_and_the_agent_are_refused_and_nothing_runs() {
    let (dir, _db, server) = example_server(&[]);
    let (code, _) = invite(dir.path(), 1).remove(0);
    let port = server.ssh.unwrap();
    let marker = dir.path().join("ran");
    let touch = format!("touch {}", marker.display());
    let (ok, _, err) = ssh_run(port, &code, &[], &[&touch], &[]);
    assert!(!ok && err.contains("Only the study's screens run here"), "told why: {err}");
    let (ok, _, err) = ssh_run(port, &code, &["-s"], &["sftp"], &[]);
    assert!(!ok && err.contains("subsystem request failed"), "{err}");
    // -W is what -L does for each connection: a direct-tcpip channel.
    let (ok, _, err) = ssh_run(port, &code, &["-W", "127.0.0.1:22"], &[], &[]);
    assert!(!ok && err.contains("stdio forwarding failed"), "{err}");
    let (ok, _, err) =
        ssh_run(port, &code, &["-N", "-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:22"], &[], &[]);
    assert!(!ok && err.contains("forwarding failed"), "{err}");
    assert!(!marker.exists(), "a command ran on the server");
    // No terminal asked for (ssh -T): told how to connect, nothing started.
    let (ok, out, _) = ssh_run(port, &code, &["-T"], &[], &[]);
    assert!(!ok && out.contains("runs in a terminal window"), "{out}");
    // Agent forwarding asked for: the server never opens the agent's channel (a fake
    // agent with no keys counts the client's own visits), and the study runs as usual.
    let agent = tempfile::tempdir().unwrap();
    let sock = agent.path().join("agent.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let visits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = visits.clone();
    std::thread::spawn(move || {
        for mut c in listener.incoming().map_while(Result::ok) {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut head = [0u8; 4];
                while c.read_exact(&mut head).is_ok() {
                    let mut msg = vec![0u8; u32::from_be_bytes(head) as usize];
                    if c.read_exact(&mut msg).is_err() {
                        break;
                    }
                    // Every request gets "no identities" (12) or "failure" (5).
                    let reply: &[u8] =
                        if msg.first() == Some(&11) { &[0, 0, 0, 5, 12, 0, 0, 0, 0] } else { &[0, 0, 0, 1, 5] };
                    let _ = c.write_all(reply);
                }
            });
        }
    });
    let mut cmd = CommandBuilder::new("ssh");
    cmd.args(ssh_args(port, &["-A"]));
    cmd.arg(format!("{code}@127.0.0.1"));
    cmd.env("SSH_AUTH_SOCK", sock.to_str().unwrap());
    let mut t = Tui::spawn(cmd, (100, 30));
    t.wait_for_text("Press Enter to begin");
    let before = visits.load(std::sync::atomic::Ordering::SeqCst);
    t.keys("\r");
    t.wait_for_text("Press y to agree");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(visits.load(std::sync::atomic::Ordering::SeqCst), before, "the server reached the participant's agent");
}

#[test]
fn a_wrong_invitation_or_password_is_turned_away() {
    let (dir, _db, server) = example_server(&[]);
    let (ok, _, err) = ssh_run(server.ssh.unwrap(), "aaaa-bbbb-cccc", &["-tt"], &[], &[]);
    assert!(!ok && err.contains("Permission denied"), "{err}");
    drop(server);
    // A shared password: given through SSH_ASKPASS as a person would type it.
    let askpass = dir.path().join("askpass.sh");
    let with_password = |pw: &str| {
        std::fs::write(&askpass, format!("#!/bin/sh\necho '{pw}'\n")).unwrap();
        std::fs::set_permissions(&askpass, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    };
    let server = Server::start(
        dir.path(),
        &["--ssh", "127.0.0.1:0", "--auth", "password"],
        &[("UALIGN_SERVE_PASSWORD", "correct horse battery")],
    );
    let port = server.ssh.unwrap();
    let env = [("SSH_ASKPASS", askpass.to_str().unwrap()), ("SSH_ASKPASS_REQUIRE", "force"), ("DISPLAY", ":0")];
    with_password("wrong horse");
    let (ok, _, err) =
        ssh_run(port, "someone", &["-o", "BatchMode=no", "-o", "NumberOfPasswordPrompts=1", "-tt"], &[], &env);
    assert!(!ok && err.contains("Permission denied"), "{err}");
    drop(server);
    // Under --auth invite the code may be typed as the password too.
    let server = Server::start(dir.path(), &["--ssh", "127.0.0.1:0"], &[]);
    let (code, _) = invite(dir.path(), 1).remove(0);
    with_password(&code);
    let mut cmd = CommandBuilder::new("ssh");
    cmd.args(ssh_args(server.ssh.unwrap(), &["-o", "BatchMode=no"]));
    cmd.arg("participant@127.0.0.1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let t = Tui::spawn(cmd, (100, 30));
    t.wait_for_text("Press Enter to begin");
    drop((t, server));
    let server = Server::start(
        dir.path(),
        &["--ssh", "127.0.0.1:0", "--auth", "password"],
        &[("UALIGN_SERVE_PASSWORD", "correct horse battery")],
    );
    let port = server.ssh.unwrap();
    with_password("correct horse battery");
    let mut cmd = CommandBuilder::new("ssh");
    cmd.args(ssh_args(port, &["-o", "BatchMode=no"]));
    cmd.arg("someone@127.0.0.1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut t = Tui::spawn(cmd, (100, 30));
    t.wait_for_text("Press Enter to begin");
    t.keys("\r");
    t.keys("y");
    t.wait_for_text("Participant ID");
    // The user name `someone` is no id: the ID screen asks, and never stores it.
    assert_eq!(
        count(&dir.path().join("db/example.sqlite"), "SELECT COUNT(*) FROM participants WHERE id = 'someone'"),
        0
    );
}

/// The words on screen after `label`, up to the end of its line.
fn shown_after(t: &Tui, label: &str) -> String {
    let shown = t.shown();
    let rest = &shown[shown.find(label).unwrap_or_else(|| panic!("no {label:?} in:\n{shown}")) + label.len()..];
    rest.split_whitespace().find(|w| !w.starts_with('│')).unwrap().to_string()
}

/// A `--auth password` server over ssh, and an askpass script that types its password.
fn password_server(dir: &Path) -> (Server, PathBuf) {
    let server = Server::start(
        dir,
        &["--ssh", "127.0.0.1:0", "--auth", "password"],
        &[("UALIGN_SERVE_PASSWORD", "correct horse battery")],
    );
    let askpass = dir.join("askpass.sh");
    std::fs::write(&askpass, "#!/bin/sh\necho 'correct horse battery'\n").unwrap();
    std::fs::set_permissions(&askpass, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    (server, askpass)
}

/// Welcome, consent, and a new id on the ID screen: up to the id and return code shown.
fn begin_new(t: &mut Tui) {
    t.wait_for_text("Press Enter to begin");
    t.keys("\r");
    t.wait_for_text("Press y to agree");
    t.keys("y");
    t.wait_for_text("Participant ID");
    t.keys("\r");
    t.wait_for_text("Your return code");
}

/// `ssh user@` a password server, the password typed by `askpass`.
fn ssh_with_password(port: u16, user: &str, askpass: &Path) -> Tui {
    let mut cmd = CommandBuilder::new("ssh");
    cmd.args(ssh_args(port, &["-o", "BatchMode=no"]));
    cmd.arg(format!("{user}@127.0.0.1"));
    for (k, v) in [("SSH_ASKPASS", askpass.to_str().unwrap()), ("SSH_ASKPASS_REQUIRE", "force"), ("DISPLAY", ":0")] {
        cmd.env(k, v);
    }
    Tui::spawn(cmd, (100, 30))
}

#[test]
fn with_a_shared_password_a_participant_comes_back_with_their_return_code_never_their_id_alone() {
    let (dir, db) = example_for_participants();
    let (server, askpass) = password_server(dir.path());
    let port = server.ssh.unwrap();
    let signed_in = |user: &str| ssh_with_password(port, user, &askpass);
    let welcome = |t: &mut Tui| {
        t.wait_for_text("Press Enter to begin");
        t.keys("\r");
    };
    // A new participant is given an id and a return code, and answers a question.
    let mut first = signed_in("someone");
    begin_new(&mut first);
    let p = shown_after(&first, "Your anonymous participant ID:");
    let code = shown_after(&first, "Your return code:");
    assert!(p.starts_with("p-") && code.len() == 14, "{p} {code}");
    first.keys("\r");
    first.wait_for_text("Instructions");
    first.keys("\r");
    let total = trials_of(&db, &p);
    first.answer(&db, &p, 0, total);
    first.keys("q");
    first.keys("y");
    wait("the first window to close", || first.exited());
    assert!(
        first.shown().contains(&format!("type your return code {code}")),
        "the farewell repeats it:\n{}",
        first.shown()
    );
    assert_eq!(answers_of(&db, &p), 1);
    // Someone else with the password who saw the pseudonym cannot become them: not as
    // the ssh user name, not typed on the ID screen.
    let mut other = signed_in(&p);
    welcome(&mut other);
    other.wait_for_text("Press y to agree");
    other.keys("y");
    other.wait_for_text("Participant ID");
    assert!(other.shown().contains("return code"), "the ID screen says how to come back:\n{}", other.shown());
    other.keys(&format!("{p}\r"));
    other.wait_for_text("That ID has taken part before");
    assert!(!other.shown().contains("Welcome back"));
    drop(other);
    assert_eq!(
        count(&db, &format!("SELECT COUNT(*) FROM sessions WHERE participant_id = '{p}'")),
        1,
        "no session began as them"
    );
    // Their return code, typed on the ID screen, resumes them where they stopped.
    let mut back = signed_in("someone");
    welcome(&mut back);
    back.wait_for_text("Press y to agree");
    back.keys("y");
    back.wait_for_text("Participant ID");
    back.keys(&format!("{}\r", code.to_uppercase().replace('-', " ")));
    back.wait_for_text("Welcome back");
    back.keys("\r");
    back.answer(&db, &p, 1, total);
    assert_eq!(answers_of(&db, &p), 2);
    drop(back);
    // Or given as the ssh user name.
    let again = signed_in(&code);
    again.wait_for_text("Welcome back");
    drop(again);
    let log = server.log();
    assert!(!log.contains(&code), "the log never holds a code: {log}");
}

#[test]
fn a_return_code_the_researcher_makes_anew_replaces_the_lost_one() {
    let (dir, _db) = example_for_participants();
    let (server, askpass) = password_server(dir.path());
    let port = server.ssh.unwrap();
    let mut first = ssh_with_password(port, "someone", &askpass);
    begin_new(&mut first);
    let p = shown_after(&first, "Your anonymous participant ID:");
    let code = shown_after(&first, "Your return code:");
    drop(first);
    let (ok, fresh, err) = ualign(dir.path(), &["invite", "studies/example.toml", "--participant", &p]);
    assert!(ok, "{err}");
    let fresh = fresh.lines().nth(1).and_then(|l| l.split_once(',')).map(|(c, _)| c.to_string()).unwrap();
    let old = ssh_with_password(port, &code, &askpass);
    old.wait_for_text("Press Enter to begin");
    assert!(!old.shown().contains("Welcome back"), "the old code admits nobody");
    let new = ssh_with_password(port, &fresh, &askpass);
    new.wait_for_text("Welcome back");
    let (ok, _, err) = ualign(dir.path(), &["invite", "studies/example.toml", "--participant", "p-nobodyhere"]);
    assert!(!ok && err.contains("has no participant `p-nobodyhere`"), "{err}");
}

#[test]
fn a_flood_of_connections_is_rate_limited_while_a_real_participant_gets_in() {
    let (dir, _db, mut server) = example_server(&["--rate-limit", "10"]);
    let (code, _) = invite(dir.path(), 1).remove(0);
    let port = server.ssh.unwrap();
    // 200 connections from 127.0.0.2 as fast as they go: at most the burst hears the server.
    let greeted = (0..200).filter(|_| ssh_greets("127.0.0.2", port).is_some()).count();
    assert!(greeted <= 10, "{greeted} of 200 flooding connections got in");
    let t = ssh_tui(port, &code, &[], (100, 30));
    t.wait_for_text("Press Enter to begin");
    assert!(server.alive());
    wait("the refusals to be logged", || server.log().contains("too many attempts from one address"));
}

/// A TCP connection to 127.0.0.1:`port` from the address `source` (std has no
/// bind-before-connect; libc does it).
fn connect_from(source: &str, port: u16) -> Option<TcpStream> {
    use std::os::fd::FromRawFd;
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
    assert!(fd >= 0);
    let addr = |ip: &str, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(ip.parse::<std::net::Ipv4Addr>().unwrap()).to_be() },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as u32;
    let src = addr(source, 0);
    let dst = addr("127.0.0.1", port);
    unsafe {
        if libc::bind(fd, &src as *const _ as *const libc::sockaddr, len) != 0
            || libc::connect(fd, &dst as *const _ as *const libc::sockaddr, len) != 0
        {
            libc::close(fd);
            return None;
        }
        Some(TcpStream::from_raw_fd(fd))
    }
}

#[test]
fn absurd_windows_and_random_input_never_bring_the_server_down() {
    let (dir, _db, mut server) = example_server(&[]);
    let codes = invite(dir.path(), 2);
    let port = server.ssh.unwrap();
    let mut t = ssh_tui(port, &codes[0].0, &[], (9999, 9999));
    wait("the screen to start", || server.log().contains("began (ssh)"));
    t.resize(1, 1);
    t.resize(65535, 1);
    t.resize(0, 0);
    t.resize(100, 30);
    // A paste far beyond the screen's input bound loses keys, not the connection: once
    // the screen has read what it kept, it answers the next key.
    t.flood(vec![vec![b'x'; 100 * 1024]]);
    assert!(!t.exited(), "the client was dropped for a long paste: {}", server.log());
    wait("the screen to take keys again", || {
        t.send("\r");
        std::thread::sleep(Duration::from_millis(200));
        t.shown().contains("Press y to agree")
    });
    // 100 KiB of random bytes, far more than the screen's input bound: the excess is
    // dropped (the junk may also quit the screen, which ends this client, rightly).
    let seed: u64 = rand::random();
    println!("junk seed {seed}");
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
    let junk = (0..50).map(|_| (0..2048).map(|_| rand::Rng::random::<u8>(&mut rng)).collect()).collect();
    t.flood(junk);
    std::thread::sleep(Duration::from_millis(500));
    assert!(server.alive(), "{}", server.log());
    // Everyone else is unaffected.
    let other = ssh_tui(port, &codes[1].0, &[], (100, 30));
    other.wait_for_text("Press Enter to begin");
    assert!(!server.log().contains("panicked"), "{}", server.log());
}

#[test]
fn sigterm_tells_connected_participants_their_answers_are_saved() {
    let (dir, db, mut server) = example_server(&[]);
    let (code, p) = invite(dir.path(), 1).remove(0);
    let mut t = ssh_tui(server.ssh.unwrap(), &code, &[], (100, 30));
    begin_signed_in(&mut t);
    let total = trials_of(&db, &p);
    t.answer(&db, &p, 0, total);
    assert_eq!(server.terminate().code(), Some(0));
    t.wait_for_text("The study server is stopping. Every answer you confirmed is saved.");
    t.wait_for_text("invitation code");
    assert_eq!(answers_of(&db, &p), 1);
    assert_eq!(
        count(
            &db,
            &format!("SELECT COUNT(*) FROM sessions WHERE participant_id = '{p}' AND end_reason = 'server stopping'")
        ),
        1
    );
}

// ---------- the browser ----------

/// A minimal WebDriver client for chromedriver: JSON over HTTP/1.1.
struct Driver {
    port: u16,
    session: String,
    child: Child,
}

impl Driver {
    fn start() -> Self {
        let port = free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is needed (Debian: apt-get install chromium chromium-driver; .ci/run installs it)");
        let mut d = Self { port, session: String::new(), child };
        wait("chromedriver to listen", || TcpStream::connect(("127.0.0.1", port)).is_ok());
        let caps = serde_json::json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1000,700"]}
        }}});
        let v = d.call("POST", "/session", Some(caps));
        d.session = v["sessionId"].as_str().expect("a WebDriver session").to_string();
        d
    }

    fn call(&self, method: &str, path: &str, body: Option<serde_json::Value>) -> serde_json::Value {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        // The reply's headers, then exactly its Content-Length (chromedriver keeps the
        // connection open).
        let mut r = BufReader::new(s);
        let mut length = 0;
        loop {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0u8; length];
        r.read_exact(&mut body).unwrap();
        let v: serde_json::Value =
            serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&body)));
        v["value"].clone()
    }

    fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    fn go(&self, url: &str) {
        self.call("POST", &self.session_path("/url"), Some(serde_json::json!({ "url": url })));
    }

    fn script(&self, js: &str) -> serde_json::Value {
        self.call("POST", &self.session_path("/execute/sync"), Some(serde_json::json!({ "script": js, "args": [] })))
    }

    /// The terminal's text as xterm.js shows it.
    fn shown(&self) -> String {
        self.script("const r = document.querySelector('.xterm-rows'); return r ? r.innerText : '';")
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    fn wait_for_text(&self, needle: &str) {
        let start = Instant::now();
        while !self.shown().contains(needle) {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "waiting for {needle:?}; the page shows:\n{}",
                self.shown()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Types into the terminal, as a person at the keyboard.
    fn keys(&self, text: &str) {
        let el = self.call(
            "POST",
            &self.session_path("/element"),
            Some(serde_json::json!({"using": "css selector", "value": ".xterm-helper-textarea"})),
        );
        let id = el.as_object().and_then(|o| o.values().next()).and_then(|v| v.as_str()).unwrap().to_string();
        self.call(
            "POST",
            &self.session_path(&format!("/element/{id}/value")),
            Some(serde_json::json!({ "text": text })),
        );
        std::thread::sleep(Duration::from_millis(150));
    }

    fn screenshot(&self, to: &Path) {
        use base64_png::decode;
        let v = self.call("GET", &self.session_path("/screenshot"), None);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::write(to, decode(v.as_str().unwrap())).unwrap();
    }

    fn console_errors(&self) -> Vec<String> {
        let v = self.call("POST", &self.session_path("/se/log"), Some(serde_json::json!({"type": "browser"})));
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter(|l| l["level"] == "SEVERE")
                    .map(|l| l["message"].as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.call("DELETE", &self.session_path(""), None)
            }));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Base64 of a screenshot, decoded without another crate.
mod base64_png {
    pub(crate) fn decode(s: &str) -> Vec<u8> {
        let val = |c: u8| match c {
            b'A'..=b'Z' => Some(c - b'A'),
            b'a'..=b'z' => Some(c - b'a' + 26),
            b'0'..=b'9' => Some(c - b'0' + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        };
        let bits: Vec<u8> = s.bytes().filter_map(val).collect();
        bits.chunks(4)
            .flat_map(|c| {
                let n = c.iter().fold(0u32, |acc, &v| (acc << 6) | u32::from(v)) << (6 * (4 - c.len()));
                let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
                bytes[..c.len().saturating_sub(1)].to_vec()
            })
            .collect()
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Where a test keeps what a person would look at (the browser's screenshot).
fn artifact(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts").join(name)
}

#[test]
fn a_browser_paste_larger_than_a_websocket_message_loses_its_tail_not_the_connection() {
    let (dir, _db) = example_for_participants();
    let (code, _) = invite(dir.path(), 1).remove(0);
    let server = Server::start(dir.path(), &["--http", "127.0.0.1:0"], &[]);
    let port = server.http.unwrap();
    let d = Driver::start();
    d.go(&format!("http://127.0.0.1:{port}/?invite={code}"));
    d.wait_for_text("Press Enter to begin");
    // 40,000 characters pasted at once, as a clipboard gives them (one onData of the
    // whole text: a single message would be 2.5 times the server's 16 KiB bound).
    d.script(
        "const ta = document.querySelector('.xterm-helper-textarea'); const dt = new DataTransfer(); \
         dt.setData('text/plain', 'x'.repeat(40000)); \
         ta.dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true })); return 1;",
    );
    std::thread::sleep(Duration::from_millis(500));
    d.keys("\u{E007}");
    d.wait_for_text("Press y to agree");
    let status = d.script("return document.getElementById('status').textContent;");
    assert!(status.as_str().is_some_and(|s| s.starts_with("Connected")), "{status}");
}

#[test]
fn a_real_browser_shows_the_consent_screen_and_answers_a_trial() {
    let (dir, db) = example_for_participants();
    let (code, p) = invite(dir.path(), 1).remove(0);
    let server = Server::start(dir.path(), &["--http", "127.0.0.1:0"], &[]);
    let port = server.http.unwrap();
    let d = Driver::start();
    d.go(&format!("http://127.0.0.1:{port}/?invite={code}"));
    d.wait_for_text("Press Enter to begin");
    d.keys("\u{E007}");
    d.wait_for_text("Press y to agree");
    let shot = artifact("serve-browser-consent.png");
    d.screenshot(&shot);
    assert!(std::fs::read(&shot).unwrap().starts_with(b"\x89PNG"), "a PNG screenshot");
    d.keys("y");
    d.wait_for_text("Instructions");
    d.keys("\u{E007}");
    wait("the first trial to be shown", || {
        count(&db, &format!("SELECT COUNT(*) FROM trials WHERE participant_id = '{p}' AND shown_at IS NOT NULL")) == 1
    });
    d.keys("1");
    d.keys("\u{E007}");
    wait("the answer to be committed", || answers_of(&db, &p) == 1);
    assert_eq!(
        count(&db, &format!("SELECT COUNT(*) FROM sessions WHERE participant_id = '{p}' AND client LIKE 'browser %'")),
        1
    );
    let errors = d.console_errors();
    assert!(errors.is_empty(), "the page ran without errors (CSP included): {errors:?}");
}

#[test]
fn a_prolific_link_records_its_ids_and_the_completion_link_redirects() {
    // Prolific's completion page, played by a listener of the test's own.
    let prolific = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let done_url = format!("http://127.0.0.1:{}/done?cc=EXAMPLE", prolific.local_addr().unwrap().port());
    let dir = crate::common::example_copy_with(|s| {
        s.replace("min_reading_seconds = 2.0", "min_reading_seconds = 0\nparticipant_id_pattern = \"[0-9a-f]{24}\"")
            .replace(
                "completion_code = \"EXAMPLE-7Q2K\"",
                &format!("completion_code = \"EXAMPLE-7Q2K\"\ncompletion_url = \"{done_url}\""),
            )
    });
    for policy in ["sampled", "greedy"] {
        let file = format!("studies/example/{policy}.jsonl");
        let (ok, _, err) =
            ualign(dir.path(), &["import", "studies/example.toml", "--policy", policy, "--candidates", &file]);
        assert!(ok, "{err}");
    }
    let db = dir.path().join("db/example.sqlite");
    let server = Server::start(dir.path(), &["--http", "127.0.0.1:0", "--auth", "open"], &[]);
    let port = server.http.unwrap();
    let pid = "5f0c1e2d3b4a59687766aabb";
    let d = Driver::start();
    d.go(&format!(
        "http://127.0.0.1:{port}/?PROLIFIC_PID={pid}&STUDY_ID=60aa11bb22cc33dd44ee55ff&SESSION_ID=abc123def456"
    ));
    d.wait_for_text("Press Enter to begin");
    d.keys("\u{E007}");
    d.keys("y");
    d.wait_for_text("Instructions");
    d.keys("\u{E007}");
    let total = trials_of(&db, pid);
    assert!(total > 5, "the Prolific id is the participant id ({total} trials)");
    for position in 0..total {
        wait("the trial", || {
            count(
                &db,
                &format!(
                    "SELECT COUNT(*) FROM trials WHERE participant_id = '{pid}' AND position = {position} AND shown_at IS NOT NULL"
                ),
            ) == 1
        });
        d.keys("1");
        d.keys("2");
        d.keys("\u{E007}");
        wait("the answer", || answers_of(&db, pid) == position + 1);
        if (position + 1) % 10 == 0 && position + 1 < total {
            d.wait_for_text("short break");
            d.keys("\u{E007}");
        }
    }
    d.wait_for_text("EXAMPLE-7Q2K");
    assert_eq!(
        count(
            &db,
            &format!(
                "SELECT COUNT(*) FROM sessions WHERE participant_id = '{pid}' AND client LIKE 'browser prolific study=60aa11bb22cc33dd44ee55ff session=abc123def456 %'"
            )
        ),
        1
    );
    // The page goes to the completion link by itself.
    let (mut visit, _) = prolific.accept().unwrap();
    visit.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut request = String::new();
    BufReader::new(&visit).read_line(&mut request).unwrap();
    assert!(request.starts_with("GET /done?cc=EXAMPLE "), "{request}");
    let _ = visit.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\ndone");
    drop(visit);
    // A Prolific id the study's pattern does not accept is turned away, and nothing stored.
    d.go(&format!("http://127.0.0.1:{port}/?PROLIFIC_PID=AliceSmith1990"));
    d.wait_for_text("does not accept the Prolific ID");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM participants WHERE id = 'AliceSmith1990'"), 0);
}

/// A WebSocket handshake by hand: the status line the server answers.
fn handshake(port: u16, origin: Option<&str>, path: &str) -> String {
    handshake_with(port, origin, path, "")
}

/// [`handshake`] with `extra` header lines (each ending in CRLF).
fn handshake_with(port: u16, origin: Option<&str>, path: &str, extra: &str) -> String {
    open_websocket(port, origin, path, extra).0
}

/// A WebSocket opened by hand: the status line the server answers, and the connection
/// (past the response's head).
fn open_websocket(port: u16, origin: Option<&str>, path: &str, extra: &str) -> (String, BufReader<TcpStream>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let origin = origin.map(|o| format!("Origin: {o}\r\n")).unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{origin}{extra}Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let mut status = String::new();
    r.read_line(&mut status).unwrap();
    let mut line = String::new();
    while r.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
        line.clear();
    }
    (status, r)
}

/// A text message from the page, masked as a client's must be (`text` under 126 bytes).
fn page_message(ws: &mut BufReader<TcpStream>, text: &str) {
    let mask = [0x37u8, 0xfa, 0x21, 0x3d];
    let mut frame = vec![0x81, 0x80 | text.len() as u8];
    frame.extend(mask);
    frame.extend(text.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    ws.get_mut().write_all(&frame).unwrap();
}

/// What the server sends on `ws` within `within`, as text (frames' headers and all),
/// until it closes.
fn server_says(ws: &mut BufReader<TcpStream>, within: Duration) -> String {
    let end = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while let Some(left) = end.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) {
        ws.get_ref().set_read_timeout(Some(left)).unwrap();
        match ws.read(&mut buf) {
            Ok(n @ 1..) => got.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn the_websocket_refuses_other_origins_and_only_the_embedded_files_are_served() {
    let (dir, _db) = example_for_participants();
    invite(dir.path(), 1);
    let server = Server::start(dir.path(), &["--http", "127.0.0.1:0"], &[]);
    let port = server.http.unwrap();
    assert!(handshake(port, Some("http://evil.example"), "/ws").contains("403"));
    assert!(handshake(port, None, "/ws").contains("403"), "no Origin: refused");
    assert!(handshake(port, Some(&format!("http://127.0.0.1:{port}")), "/ws").contains("101"));
    // DNS rebinding: a page of the attacker's name, pointed at this machine, whose Origin
    // and Host agree. Only an address, localhost or an --origin is the page's own.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /ws HTTP/1.1\r\nHost: rebound.example:{port}\r\nOrigin: http://rebound.example:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut status = String::new();
    BufReader::new(s).read_line(&mut status).unwrap();
    assert!(status.contains("403"), "{status}");
    let get = |path: &str| {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").unwrap();
        let mut r = String::new();
        s.read_to_string(&mut r).unwrap();
        r
    };
    let page = get("/");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.to_lowercase().contains("content-security-policy: default-src 'none'; script-src 'self';"), "{page}");
    for path in ["/../Cargo.toml", "/assets/web/xterm.js", "/db/example.sqlite", "/etc/passwd", "/ws/../"] {
        let r = get(path);
        assert!(r.starts_with("HTTP/1.1 404") || r.starts_with("HTTP/1.1 400"), "{path}: {r}");
    }
}

#[test]
fn a_full_study_says_so_politely_and_an_idle_session_is_closed_with_its_answers_saved() {
    let (dir, db, server) = example_server(&["--max-sessions", "1", "--idle-minutes", "0.1"]);
    let codes = invite(dir.path(), 2);
    let port = server.ssh.unwrap();
    let mut first = ssh_tui(port, &codes[0].0, &[], (100, 30));
    begin_signed_in(&mut first);
    let total = trials_of(&db, &codes[0].1);
    first.answer(&db, &codes[0].1, 0, total);
    let second = ssh_tui(port, &codes[1].0, &[], (100, 30));
    second.wait_for_text("as many participants as it can take right now");
    // Six seconds without a key: the first session is closed, its answer kept.
    first.wait_for_text("without a key press. Every answer you confirmed is saved.");
    assert_eq!(answers_of(&db, &codes[0].1), 1);
    assert_eq!(
        count(
            &db,
            &format!("SELECT COUNT(*) FROM sessions WHERE participant_id = '{}' AND end_reason = 'idle'", codes[0].1)
        ),
        1
    );
    // Its place is free again.
    let third = ssh_tui(port, &codes[1].0, &[], (100, 30));
    third.wait_for_text("Press Enter to begin");
}

#[test]
fn a_participant_who_signs_in_again_goes_on_in_the_new_window_and_the_old_one_closes() {
    let (dir, db) = example_for_participants();
    let codes = invite(dir.path(), 2);
    let server = Server::start(dir.path(), &["--ssh", "127.0.0.1:0", "--http", "127.0.0.1:0"], &[]);
    // Over ssh: the first window answers a trial; the same code in a second window.
    let (code, p) = &codes[0];
    let mut first = ssh_tui(server.ssh.unwrap(), code, &[], (100, 30));
    begin_signed_in(&mut first);
    let total = trials_of(&db, p);
    first.answer(&db, p, 0, total);
    let mut second = ssh_tui(server.ssh.unwrap(), code, &[], (100, 30));
    second.wait_for_text("Welcome back");
    first.wait_for_text("You went on in another window, so this one is closed");
    wait("the old window to close", || first.exited());
    second.keys("\r");
    second.answer(&db, p, 1, total);
    assert_eq!(answers_of(&db, p), 2, "the new window goes on where the old one stopped");
    let ended = |reason: &str, who: &str| {
        count(&db, &format!("SELECT COUNT(*) FROM sessions WHERE participant_id = '{who}' AND end_reason = '{reason}'"))
    };
    assert_eq!(ended("another window", p), 1);
    // In the browser: the same rule at the WebSocket.
    let (code, p) = &codes[1];
    let port = server.http.unwrap();
    let origin = format!("http://127.0.0.1:{port}");
    let open = || {
        let (status, mut ws) = open_websocket(port, Some(&origin), &format!("/ws?invite={code}"), "");
        assert!(status.contains("101"), "{status}");
        page_message(&mut ws, r#"{"t":"r","c":100,"r":30}"#);
        ws
    };
    let mut old = open();
    assert!(server_says(&mut old, Duration::from_secs(2)).contains("Press Enter to begin"));
    let mut new = open();
    assert!(server_says(&mut new, Duration::from_secs(2)).contains("Press Enter to begin"));
    let told = server_says(&mut old, Duration::from_secs(5));
    assert!(told.contains("You went on in another window"), "{told:?}");
    wait("the log to say so", || server.log().contains(&format!("{p} ended: another window")));
    let log = server.log();
    assert!(log.contains(&format!("{p} went on in a new window")), "{log}");
}

#[test]
fn a_stalled_client_delays_no_one_else() {
    let (dir, db, server) = example_server(&[]);
    let codes = invite(dir.path(), 2);
    let port = server.ssh.unwrap();
    let mut stalled = ssh_tui(port, &codes[0].0, &[], (100, 30));
    stalled.wait_for_text("Press Enter to begin");
    // The client stops reading (and everything else) mid-session.
    let pid = stalled.child.process_id().unwrap() as i32;
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let mut other = ssh_tui(port, &codes[1].0, &[], (100, 30));
    begin_signed_in(&mut other);
    let total = trials_of(&db, &codes[1].1);
    for position in 0..3 {
        other.answer(&db, &codes[1].1, position, total);
    }
    unsafe { libc::kill(pid, libc::SIGCONT) };
    stalled.keys("\r");
    stalled.wait_for_text("Press y to agree");
}

#[test]
fn the_host_key_is_owner_only_and_kept_across_restarts() {
    let (dir, _db) = example_for_participants();
    invite(dir.path(), 1);
    let fingerprint = |s: &Server| {
        let _ = s;
        let key = dir.path().join("db/example.sqlite.ssh-host-key");
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600, "the host key is readable by its owner only");
        std::fs::read_to_string(key).unwrap()
    };
    let mut first = Server::start(dir.path(), &["--ssh", "127.0.0.1:0"], &[]);
    let key = fingerprint(&first);
    assert!(key.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
    first.terminate();
    let second = Server::start(dir.path(), &["--ssh", "127.0.0.1:0"], &[]);
    assert_eq!(fingerprint(&second), key, "the same host key: participants' ssh does not warn");
    // And the fingerprint printed is the one the real client sees.
    let out = Command::new("ssh-keyscan").args(["-p", &second.ssh.unwrap().to_string(), "127.0.0.1"]).output().unwrap();
    let scanned = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(scanned.contains("ssh-ed25519"), "{scanned}");
}

#[test]
fn one_engine_worker_fills_the_pools_that_waiting_participants_need() {
    // The fortune study with nothing generated: each participant's first trial waits for
    // the server's one engine worker.
    let dir = tempfile::tempdir().unwrap();
    let study = crate::common::repo("tests/fixtures/studies/fortune-demo.toml");
    let db = dir.path().join("fortune.sqlite");
    let (ok, _, err) = ualign(dir.path(), &["init", study.to_str().unwrap(), "--db", db.to_str().unwrap()]);
    assert!(ok, "{err}");
    let server = Server::start_study(
        dir.path(),
        study.to_str().unwrap(),
        &["--ssh", "127.0.0.1:0", "--auth", "open", "--db", db.to_str().unwrap(), "--threads", "1"],
        &[],
    );
    assert_eq!(count(&db, "SELECT COUNT(*) FROM candidates"), 0);
    let port = server.ssh.unwrap();
    let screens: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(move || {
                let mut t = ssh_tui(port, "anyone", &[], (100, 30));
                t.wait_for_text("Press Enter to begin");
                t.keys("\r");
                t.keys("y");
                t.wait_for_text("Participant ID");
                t.keys("\r"); // a new pseudonym
                t.wait_for_text("Your return code");
                t.keys("\r");
                t.wait_for_text("Instructions");
                t.keys("\r");
                t.wait_for_text("Question 1 of");
                t
            })
        })
        .collect();
    for s in screens {
        let t = s.join().unwrap();
        assert!(!t.shown().contains("Something went wrong"), "{}", t.shown());
    }
    assert!(count(&db, "SELECT COUNT(*) FROM candidates") > 0);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM participants WHERE id = 'anyone'"), 0, "a user name is no id");
    assert!(!server.log().contains("engine stopped"), "{}", server.log());
}

/// Whether the server closes `s` before `within` (end of stream or a reset), rather than
/// leaving it open.
fn closed_by_server(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn slow_and_silent_http_clients_are_closed_and_give_their_places_back() {
    let (dir, _db) = example_for_participants();
    invite(dir.path(), 1);
    // Open connections are capped at max sessions + 64 waiting to sign in: 65 here.
    let args = ["--http", "127.0.0.1:0", "--request-timeout", "2", "--max-sessions", "1", "--rate-limit", "1000"];
    let server = Server::start(dir.path(), &args, &[]);
    let port = server.http.unwrap();
    let page = |port: u16| -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(s, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
        let mut r = String::new();
        s.read_to_string(&mut r).ok()?;
        Some(r)
    };
    // A client that connects and says nothing is closed.
    let mut silent = TcpStream::connect(("127.0.0.1", port)).unwrap();
    assert!(closed_by_server(&mut silent, Duration::from_secs(15)), "a silent client was left open");
    // One that trickles its headers a byte every 300 ms is closed too: the limit is on
    // the whole head, not on each byte.
    let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n").unwrap();
    let started = Instant::now();
    let mut closed = false;
    while started.elapsed() < Duration::from_secs(15) {
        if slow.write_all(b"X").is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(closed || closed_by_server(&mut slow, Duration::from_secs(1)), "a trickling client was left open");
    // A kept-alive connection that asks for nothing more is closed as well.
    let mut kept = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(kept, "GET /ualign.css HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    assert!(closed_by_server(&mut kept, Duration::from_secs(15)), "an idle kept-alive connection was left open");
    // A head over 8 KiB is refused.
    let mut big = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let _ = write!(big, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: {}\r\n\r\n", "a".repeat(20_000));
    let mut reply = String::new();
    let _ = big.read_to_string(&mut reply);
    assert!(reply.is_empty() || reply.starts_with("HTTP/1.1 431"), "{reply}");
    // Every place taken by silent clients: a visitor is turned away until they are closed,
    // and then served.
    let hogs: Vec<TcpStream> = (0..65).map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(300));
    let refused = page(port);
    assert!(refused.as_deref().is_none_or(|r| r.is_empty()), "served past the cap: {refused:?}");
    for mut h in hogs {
        assert!(closed_by_server(&mut h, Duration::from_secs(15)), "a silent client was left open");
    }
    let served = page(port).unwrap_or_default();
    assert!(served.starts_with("HTTP/1.1 200"), "{served}");
}

#[test]
fn one_address_holds_at_most_its_share_of_the_sessions() {
    let (dir, _db, server) = example_server(&["--max-sessions-per-address", "1"]);
    let codes = invite(dir.path(), 2);
    let port = server.ssh.unwrap();
    let first = ssh_tui(port, &codes[0].0, &[], (100, 30));
    first.wait_for_text("Press Enter to begin");
    // Another participant from the same address is told so (the study is not full).
    let second = ssh_tui(port, &codes[1].0, &[], (100, 30));
    second.wait_for_text("from one network");
    // Once the first is gone, the address's place is free again.
    drop(first);
    let third = ssh_tui(port, &codes[1].0, &[], (100, 30));
    third.wait_for_text("Press Enter to begin");
}

#[test]
fn behind_a_local_proxy_the_rate_is_per_forwarded_address() {
    let (dir, _db) = example_for_participants();
    invite(dir.path(), 1);
    let server = Server::start(dir.path(), &["--http", "127.0.0.1:0", "--rate-limit", "2"], &[]);
    let port = server.http.unwrap();
    let origin = format!("http://127.0.0.1:{port}");
    let via_proxy =
        |forwarded: &str| handshake_with(port, Some(&origin), "/ws", &format!("X-Forwarded-For: {forwarded}\r\n"));
    // The burst of two for one participant's address, then refused; another address and
    // the proxy's own page loads are not held up by it.
    assert!(via_proxy("203.0.113.7").contains("101"));
    assert!(via_proxy("203.0.113.7").contains("101"));
    assert!(via_proxy("203.0.113.7").contains("429"));
    assert!(via_proxy("10.1.1.1, 203.0.113.8").contains("101"));
    for _ in 0..5 {
        assert!(handshake(port, Some(&origin), "/ws").contains("101"), "the proxy itself is not rate-limited");
    }
}

/// Whether an SSH connection from `source` hears the server's banner.
fn ssh_greets(source: &str, port: u16) -> Option<TcpStream> {
    let mut s = connect_from(source, port)?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut banner = [0u8; 8];
    matches!(s.read(&mut banner), Ok(n) if n >= 4 && banner.starts_with(b"SSH-")).then_some(s)
}

#[test]
fn one_address_cannot_keep_others_from_signing_in_over_ssh() {
    let (dir, _db) = example_for_participants();
    let codes = invite(dir.path(), 1);
    let args = ["--ssh", "127.0.0.1:0", "--rate-limit", "1000", "--max-pending-per-address", "2"];
    let mut server = Server::start(dir.path(), &args, &[]);
    let port = server.ssh.unwrap();
    // Two connections from 127.0.0.2 that never sign in hold its two places...
    let first = ssh_greets("127.0.0.2", port).expect("the first connection is greeted");
    let _second = ssh_greets("127.0.0.2", port).expect("the second connection is greeted");
    assert!(ssh_greets("127.0.0.2", port).is_none(), "a third from the same address is refused");
    // ...and nobody else's: another address, and a participant, still get in.
    assert!(ssh_greets("127.0.0.3", port).is_some(), "another address is not held up");
    let t = ssh_tui(port, &codes[0].0, &[], (100, 30));
    t.wait_for_text("Press Enter to begin");
    // A place given back is free again.
    drop(first);
    wait("the address's place to be free again", || ssh_greets("127.0.0.2", port).is_some());
    assert!(server.alive());
    wait("the refusals to be logged", || server.log().contains("too many connections signing in from one address"));
}

#[test]
fn a_browser_holds_a_sign_in_place_only_until_it_signs_in_and_file_requests_hold_none() {
    let (dir, _db) = example_for_participants();
    let codes = invite(dir.path(), 1);
    let args = ["--http", "127.0.0.1:0", "--max-pending-per-address", "2", "--request-timeout", "2"];
    let server = Server::start(dir.path(), &args, &[]);
    let port = server.http.unwrap();
    let origin = format!("http://127.0.0.1:{port}");
    // Through a reverse proxy on this machine, as the README sets one up.
    let from = |address: &str, path: &str| {
        let (status, ws) = open_websocket(port, Some(&origin), path, &format!("X-Forwarded-For: {address}\r\n"));
        assert!(status.contains("101"), "{status}");
        ws
    };
    let first = from("203.0.113.7", "/ws");
    let _second = from("203.0.113.7", "/ws");
    let mut third = from("203.0.113.7", "/ws");
    let told = server_says(&mut third, Duration::from_secs(10));
    assert!(told.contains("from your network are signing in"), "{told:?}");
    let mut other = from("198.51.100.4", "/ws");
    assert_eq!(server_says(&mut other, Duration::from_millis(500)), "", "another address waits to sign in");
    // A participant who signs in gives the place back for the next one.
    drop(first);
    let mut _signed_in = None;
    wait("the closed connection's place to be free and the participant to sign in", || {
        let mut ws = from("203.0.113.7", &format!("/ws?invite={}", codes[0].0));
        page_message(&mut ws, r#"{"t":"r","c":100,"r":30}"#);
        let screen = server_says(&mut ws, Duration::from_secs(2));
        _signed_in = Some(ws);
        screen.contains("Press Enter to begin")
    });
    let mut next = from("203.0.113.7", "/ws");
    assert_eq!(server_says(&mut next, Duration::from_millis(500)), "", "the signed-in session holds no sign-in place");
    // A connection that keeps asking for files is closed after the request timeout.
    let mut files = TcpStream::connect(("127.0.0.1", port)).unwrap();
    files.set_read_timeout(Some(Duration::from_millis(400))).unwrap();
    let started = Instant::now();
    let (mut answered, mut closed) = (String::new(), false);
    while !closed && started.elapsed() < Duration::from_secs(15) {
        closed = write!(files, "GET /favicon.ico HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").is_err();
        let mut buf = [0u8; 4096];
        match files.read(&mut buf) {
            Ok(0) => closed = true,
            Ok(n) => answered.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(e) => closed |= !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
        }
    }
    assert!(answered.starts_with("HTTP/1.1 204"), "{answered:?}");
    assert!(closed, "a connection asking for a file every 400 ms was kept open for 15 s");
}

#[test]
fn behind_a_local_proxy_one_address_holds_at_most_its_share_of_the_sessions() {
    let (dir, _db) = example_for_participants();
    let codes = invite(dir.path(), 3);
    let server = Server::start(dir.path(), &["--http", "127.0.0.1:0", "--max-sessions-per-address", "1"], &[]);
    let port = server.http.unwrap();
    let origin = format!("http://127.0.0.1:{port}");
    let sign_in = |address: &str, code: &str| {
        let forwarded = format!("X-Forwarded-For: {address}\r\n");
        let (status, mut ws) = open_websocket(port, Some(&origin), &format!("/ws?invite={code}"), &forwarded);
        assert!(status.contains("101"), "{status}");
        page_message(&mut ws, r#"{"t":"r","c":100,"r":30}"#);
        (server_says(&mut ws, Duration::from_secs(2)), ws)
    };
    let (screen, _first) = sign_in("203.0.113.7", &codes[0].0);
    assert!(screen.contains("Press Enter to begin"), "{screen:?}");
    let (screen, _) = sign_in("203.0.113.7", &codes[1].0);
    assert!(screen.contains("from one network are open from yours"), "{screen:?}");
    let (screen, _other) = sign_in("198.51.100.4", &codes[2].0);
    assert!(screen.contains("Press Enter to begin"), "another address is not held up: {screen:?}");
}
