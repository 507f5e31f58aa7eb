//! `ualign serve`: the participant screens for people elsewhere, over SSH and in a
//! browser terminal, many at once in one process on one database.
//!
//! Data flows one way: a transport (`ssh`, `web`) authenticates a connection and turns
//! its bytes into terminal events; a `screen` thread per participant runs the same
//! participant app as `ualign run` on a terminal that writes to a bounded queue; the
//! transport sends that queue to the client. Everything shared lives in the `Hub`:
//! the study, who may enter (`Auth`), the session count and its limit, the per-address
//! rate limit, the one engine worker, and the log. Every confirmed answer is committed by
//! the session before the next screen, so a connection that drops, a client that is too
//! slow, or a killed server loses nothing.

pub(crate) mod limits;
pub(crate) mod screen;
pub(crate) mod ssh;
pub(crate) mod web;
pub(crate) use web::normal_origin;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ualign_core::pools::PoolWorker;
use ualign_core::session::EndReason;
use ualign_core::store::Store;
use ualign_core::study::Study;

/// Who may take part.
#[derive(Debug, Clone)]
pub(crate) enum Auth {
    /// Only `ualign invite` codes (the default).
    Invite,
    /// Anyone who knows the study's one shared password.
    Password(String),
    /// Anyone: the ID screen gives out pseudonyms. Must be asked for.
    Open,
}

/// The server's limits.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    /// Participant sessions at once; one more is told, politely, to come back later.
    pub(crate) max_sessions: usize,
    /// Participant sessions from one address at once (so that one address cannot fill
    /// the study, with `--auth open` or a shared password).
    pub(crate) max_sessions_per_address: usize,
    /// A session with no input for this long is closed (its answers are saved).
    pub(crate) idle_timeout: Duration,
    /// Connection attempts per address per minute (also the burst allowed at once).
    pub(crate) per_address_per_minute: u32,
    /// Connections not yet signed in, all addresses together.
    pub(crate) max_pending: usize,
    /// Connections not yet signed in from one address (so that one address cannot keep
    /// everyone else from signing in).
    pub(crate) max_pending_per_address: usize,
    /// How long a connection may take to sign in.
    pub(crate) sign_in_timeout: Duration,
    /// How long an HTTP client may take to send a request's headers, and may keep an idle
    /// connection open between requests (a client that trickles or sends nothing would
    /// otherwise hold one of the open connections' places for ever).
    pub(crate) request_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_sessions: 200,
            max_sessions_per_address: 32,
            idle_timeout: Duration::from_secs(30 * 60),
            per_address_per_minute: 60,
            max_pending: 64,
            max_pending_per_address: 16,
            sign_in_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(20),
        }
    }
}

/// What the transports share.
pub(crate) struct Hub {
    pub(crate) study: Study,
    pub(crate) db: PathBuf,
    pub(crate) auth: Auth,
    pub(crate) limits: Limits,
    /// Where participants connect, for the texts that tell them how to come back.
    pub(crate) ssh_addr: Option<SocketAddr>,
    pub(crate) http_addr: Option<SocketAddr>,
    /// Origins a browser's WebSocket may come from besides the page's own (a reverse proxy's
    /// public address).
    pub(crate) origins: Vec<String>,
    sessions: std::sync::Arc<AtomicUsize>,
    pending: std::sync::Arc<AtomicUsize>,
    next_connection: AtomicU64,
    stopping: AtomicBool,
    started: Instant,
    worker: Mutex<Option<PoolWorker>>,
    /// A connection for the sign-in checks (reads only).
    gate: Mutex<Store>,
    rate: Mutex<limits::RateLimiter>,
    refused: Mutex<limits::RefusalCounts>,
    per_address: Arc<limits::PerAddress>,
    pending_per_address: Arc<limits::PerAddress>,
    /// The window each participant's screens run in (the newest).
    windows: limits::Windows,
}

/// How a connection asks to be admitted, before any screen runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Admission {
    /// The participant id (or invitation code) the screen starts with.
    As(String),
    /// Admitted without an id: the ID screen asks (open and password studies).
    AskId,
    Refused,
}

impl Hub {
    pub(crate) fn new(
        study: Study,
        db: PathBuf,
        auth: Auth,
        limits: Limits,
        worker: Option<PoolWorker>,
    ) -> anyhow::Result<Self> {
        let (mut gate, _) = Store::open_for_study(&db, &study)?;
        // Sessions a killed server left open would stay open for ever.
        let abandoned = gate.close_abandoned_sessions(EndReason::ServerStopped.as_str())?;
        let rate = limits::RateLimiter::new(limits.per_address_per_minute);
        let hub = Self {
            study,
            db,
            auth,
            limits,
            ssh_addr: None,
            http_addr: None,
            origins: Vec::new(),
            sessions: Default::default(),
            pending: Default::default(),
            next_connection: AtomicU64::new(1),
            stopping: AtomicBool::new(false),
            started: Instant::now(),
            worker: Mutex::new(worker),
            gate: Mutex::new(gate),
            rate: Mutex::new(rate),
            refused: Mutex::new(limits::RefusalCounts::default()),
            per_address: Arc::default(),
            pending_per_address: Arc::default(),
            windows: limits::Windows::default(),
        };
        if abandoned > 0 {
            hub.log(&format!(
                "closed {abandoned} session(s) a server left open when it stopped without closing them (ended: server stopped)"
            ));
        }
        Ok(hub)
    }

    /// Whether a typed id or code lets its connection in, and as whom. Only reads: an
    /// invitation's first use is recorded when its screen starts.
    pub(crate) fn admit(&self, typed: Option<&str>, password: Option<&str>) -> Admission {
        let typed = typed.map(str::trim).filter(|t| !t.is_empty() && t.len() <= ualign_core::study::MAX_ID_LEN);
        let is_invitation = |t: &str| {
            ualign_core::study::normal_invitation_code(t).is_some_and(|code| {
                let gate = self.gate.lock().unwrap_or_else(|e| e.into_inner());
                gate.invitation_exists(&ualign_core::study::invitation_hash(&code)).unwrap_or(false)
            })
        };
        let known = |t: &str| {
            let gate = self.gate.lock().unwrap_or_else(|e| e.into_inner());
            gate.participant_exists(t).unwrap_or(false)
        };
        // A new participant under an id the study accepts; one who began before comes
        // back with their return code, so their id alone opens the ID screen (it asks).
        let new = |t: &str| self.study.accepts_participant_id(t) && !known(t);
        match &self.auth {
            Auth::Invite => match (typed, password) {
                (_, Some(p)) if is_invitation(p) => Admission::As(p.trim().to_string()),
                (Some(t), _) if is_invitation(t) => Admission::As(t.to_string()),
                _ => Admission::Refused,
            },
            Auth::Password(secret) => match password {
                Some(p) if constant_time_eq(p.as_bytes(), secret.as_bytes()) => match typed {
                    Some(t) if is_invitation(t) || new(t) => Admission::As(t.to_string()),
                    _ => Admission::AskId,
                },
                _ => Admission::Refused,
            },
            Auth::Open => match typed {
                Some(t) if is_invitation(t) || new(t) => Admission::As(t.to_string()),
                _ => Admission::AskId,
            },
        }
    }

    /// Whom a Prolific link's participant id admits (after the password, if any): the id
    /// when the study accepts it or knows it (a participant coming back through their
    /// link), else the ID screen, which a Prolific link is refused.
    pub(crate) fn admit_prolific(&self, pid: &str) -> Admission {
        let known = {
            let gate = self.gate.lock().unwrap_or_else(|e| e.into_inner());
            gate.participant_exists(pid).unwrap_or(false)
        };
        if self.study.accepts_participant_id(pid) || known { Admission::As(pid.to_string()) } else { Admission::AskId }
    }

    /// A new connection's number, for the log.
    pub(crate) fn connection_number(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed)
    }

    /// Whether a connection from `addr` may start now (the per-address rate and the caps
    /// on connections still signing in); the place is given back when the guard drops.
    pub(crate) fn allow_connection(&self, addr: std::net::IpAddr) -> Result<limits::Place, limits::Refusal> {
        if self.stopping() {
            return Err(limits::Refusal::Stopping);
        }
        if !self.allow_attempt(addr) {
            return Err(limits::Refusal::RateLimited);
        }
        self.take_pending(Some(addr))
    }

    /// Whether `addr` may make a connection attempt now (the per-address rate alone: for
    /// a participant behind a reverse proxy on this machine, whose connection the
    /// listener could not tell from the proxy's other ones).
    pub(crate) fn allow_attempt(&self, addr: std::net::IpAddr) -> bool {
        let allowed = self.rate.lock().unwrap_or_else(|e| e.into_inner()).allow(addr, Instant::now());
        if !allowed {
            self.count_refusal(limits::Refusal::RateLimited);
        }
        allowed
    }

    /// A place among the connections signing in, for a client at `addr` (`None`: an
    /// address not counted, a local proxy's that forwards none).
    pub(crate) fn take_pending(&self, addr: Option<std::net::IpAddr>) -> Result<limits::Place, limits::Refusal> {
        let (pending, cap) = (&self.pending, self.limits.max_pending);
        let per_address = (&self.pending_per_address, self.limits.max_pending_per_address);
        self.take_place(
            addr,
            (pending, cap),
            per_address,
            [limits::Refusal::TooManyPending, limits::Refusal::AddressPending],
        )
    }

    /// A participant session's place for a client at `addr`, if the study is not full and
    /// the address holds fewer than its share (`None`: an address not counted, a local
    /// proxy's that forwards none).
    pub(crate) fn take_session(&self, addr: Option<std::net::IpAddr>) -> Result<limits::Place, limits::Refusal> {
        let (sessions, cap) = (&self.sessions, self.limits.max_sessions);
        let per_address = (&self.per_address, self.limits.max_sessions_per_address);
        self.take_place(addr, (sessions, cap), per_address, [limits::Refusal::Full, limits::Refusal::AddressFull])
    }

    /// A place among `total` and among `addr`'s in `per_address`, each under its cap;
    /// refused (and counted) as `why[0]` when all are taken, `why[1]` when the address's are.
    fn take_place(
        &self,
        addr: Option<std::net::IpAddr>,
        (total, cap): (&Arc<AtomicUsize>, usize),
        (per_address, address_cap): (&Arc<limits::PerAddress>, usize),
        why: [limits::Refusal; 2],
    ) -> Result<limits::Place, limits::Refusal> {
        let refuse = |why: limits::Refusal| {
            self.count_refusal(why);
            Err(why)
        };
        let address = match addr.map(|a| limits::PerAddress::take(per_address, a, address_cap)) {
            Some(None) => return refuse(why[1]),
            Some(place) => place,
            None => None,
        };
        match limits::CountedPlace::take(total, cap) {
            Some(total) => Ok(limits::Place::new(total, address)),
            None => refuse(why[0]),
        }
    }

    /// Connection `connection` now runs `participant`'s screens (see [`limits::Windows`]);
    /// the connection number of the window it closes, if any.
    pub(crate) fn claim_window(&self, participant: &str, connection: u64, closing: Arc<AtomicBool>) -> Option<u64> {
        self.windows.claim(participant, connection, closing)
    }

    /// A window's screens ended.
    pub(crate) fn release_window(&self, participant: &str, connection: u64) {
        self.windows.release(participant, connection);
    }

    pub(crate) fn session_count(&self) -> usize {
        self.sessions.load(Ordering::Relaxed)
    }

    fn count_refusal(&self, why: limits::Refusal) {
        self.refused.lock().unwrap_or_else(|e| e.into_inner()).add(why);
    }

    /// Refusals since the last call, as one log line (never one line per refusal: a flood
    /// must not flood the log).
    pub(crate) fn take_refusals(&self) -> Option<String> {
        self.refused.lock().unwrap_or_else(|e| e.into_inner()).take_summary()
    }

    /// A handle on the engine worker for one session, if the study has model policies.
    pub(crate) fn worker_handle(&self) -> Option<PoolWorker> {
        self.worker.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(PoolWorker::handle)
    }

    /// What the engine told the researcher since the last call.
    pub(crate) fn worker_notices(&self) -> Vec<String> {
        let mut w = self.worker.lock().unwrap_or_else(|e| e.into_inner());
        w.as_mut()
            .map(|w| {
                w.poll()
                    .into_iter()
                    .filter_map(|ev| match ev {
                        ualign_core::pools::WorkerEvent::Notice(n) => Some(n),
                        ualign_core::pools::WorkerEvent::Stopped(why) => Some(format!("the engine stopped: {why}")),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Stop accepting; every screen tells its participant and ends.
    pub(crate) fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// Milliseconds since the server started: the clock of idle timeouts.
    pub(crate) fn clock_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Whether a returning participant proves who they are with a return code (a shared
    /// password or an open study: anyone may reach the ID screen, so an id is not enough).
    pub(crate) fn return_codes(&self) -> bool {
        !matches!(self.auth, Auth::Invite)
    }

    /// How a participant comes back, in words; `code`, the return code this window gave
    /// them, is repeated for them to keep.
    pub(crate) fn reconnect_hint(&self, participant: Option<&str>, code: Option<&str>) -> String {
        let how = match (self.ssh_addr, self.http_addr) {
            (Some(_), Some(_)) => "connect again the way you did (the same link, or ssh with the same ID)",
            (Some(_), None) => "connect again with ssh as before",
            _ => "open the same link again",
        };
        match (participant, code, &self.auth) {
            (_, _, Auth::Invite) => format!("{how}, with your invitation code."),
            (_, Some(code), _) => format!("{how}, and type your return code {code} (not your participant ID)."),
            (Some(_), None, _) => format!("{how}, and type the return code you were given when you first took part."),
            (None, None, _) => format!("{how}."),
        }
    }

    /// One line of the server's log: the time, the line, the live session count. Never a
    /// participant's typed text: pseudonyms and reasons only.
    pub(crate) fn log(&self, line: &str) {
        eprintln!("{} {line} [{} session(s)]", chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ"), self.session_count());
    }
}

/// Compares secrets in time that depends only on their lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_equal_only_when_equal() {
        assert!(constant_time_eq(b"hunter2", b"hunter2"));
        assert!(!constant_time_eq(b"hunter2", b"hunter3"));
        assert!(!constant_time_eq(b"hunter2", b"hunter22"));
    }
}

/// Where the server listens.
#[derive(Debug, Clone, Default)]
pub(crate) struct Doors {
    pub(crate) ssh: Option<SocketAddr>,
    pub(crate) http: Option<SocketAddr>,
}

/// What `serve` tells the researcher before the first participant comes.
pub(crate) struct Listening {
    pub(crate) ssh: Option<(SocketAddr, String)>,
    pub(crate) http: Option<SocketAddr>,
}

/// Runs the server until `stop` is set (SIGINT/SIGTERM): binds the doors, calls `ready`
/// with where they are, then logs refusals and the engine's notices until stopped; then
/// every screen tells its participant that their answers are saved and how to come back,
/// and the server waits (at most `grace`) for them to close.
pub(crate) fn run(
    mut hub: Hub,
    doors: Doors,
    stop: &AtomicBool,
    grace: Duration,
    ready: impl FnOnce(&Listening),
) -> anyhow::Result<()> {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("ualign-net").enable_all().build()?;
    let bind = |addr: SocketAddr, flag: &str| {
        let std = std::net::TcpListener::bind(addr).map_err(|e| {
            anyhow::anyhow!("cannot listen on {addr} ({e}); choose another address or port with {flag} ADDR:PORT")
        })?;
        std.set_nonblocking(true)?;
        Ok::<_, anyhow::Error>(std)
    };
    let ssh = doors.ssh.map(|a| bind(a, "--ssh")).transpose()?;
    let http = doors.http.map(|a| bind(a, "--http")).transpose()?;
    hub.ssh_addr = ssh.as_ref().map(|l| l.local_addr()).transpose()?;
    hub.http_addr = http.as_ref().map(|l| l.local_addr()).transpose()?;
    let key = ssh.is_some().then(|| ssh::host_key(&hub.db)).transpose()?;
    let hub = Arc::new(hub);
    let mut tasks = Vec::new();
    let _guard = runtime.enter();
    let mut listening = Listening { ssh: None, http: hub.http_addr };
    if let (Some(l), Some((key, fingerprint))) = (ssh, key) {
        listening.ssh = Some((l.local_addr()?, fingerprint));
        let l = tokio::net::TcpListener::from_std(l)?;
        tasks.push(runtime.spawn(ssh::listen(hub.clone(), l, key)));
    }
    if let Some(l) = http {
        let l = tokio::net::TcpListener::from_std(l)?;
        tasks.push(runtime.spawn(web::listen(hub.clone(), l)));
    }
    ready(&listening);
    let mut last_summary = Instant::now();
    let mut last_count = usize::MAX;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        for n in hub.worker_notices() {
            hub.log(&format!("notice: {n}"));
        }
        if last_summary.elapsed() >= Duration::from_secs(10) {
            last_summary = Instant::now();
            if let Some(line) = hub.take_refusals() {
                hub.log(&line);
            }
        }
        let count = hub.session_count();
        if count != last_count && count == 0 && last_count != usize::MAX {
            hub.log("no participant connected");
        }
        last_count = count;
    }
    hub.stop();
    for t in &tasks {
        t.abort();
    }
    hub.log("stopping: no new connections; telling connected participants");
    let since = Instant::now();
    while hub.session_count() > 0 && since.elapsed() < grace {
        std::thread::sleep(Duration::from_millis(50));
    }
    // Give the last frames a moment to leave.
    std::thread::sleep(Duration::from_millis(300));
    if let Some(line) = hub.take_refusals() {
        hub.log(&line);
    }
    // The engine stopped and waited for (a session thread still holding the hub must not
    // keep it generating while the process exits).
    drop(hub.worker.lock().unwrap_or_else(|e| e.into_inner()).take());
    hub.log("stopped");
    drop(_guard);
    runtime.shutdown_timeout(Duration::from_secs(2));
    Ok(())
}
