//! `ualign serve` under load: N participants over SSH (russh's client, as many OpenSSH
//! clients would be) and M over the browser page's WebSocket protocol, each pressing a key
//! every few seconds and answering a trial with every second key, on the example study
//! with imported pools. Reports, for each phase, the latency from a keystroke to the first
//! byte of the redrawn frame (p50/p99), answers committed per second, and the server's
//! memory per session (its RSS with the sessions open, less its RSS before any came,
//! divided by their number). The peer in the same run is one session alone.
//!
//!   cargo bench --bench serve                      # 1, then 100 SSH; 1, then 32 browser
//!   UALIGN_BENCH_SSH=200 UALIGN_BENCH_WS=64 UALIGN_BENCH_SECONDS=90 cargo bench --bench serve

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use russh::ChannelMsg;
use tokio::sync::Mutex;

fn env_or(key: &str, default: usize) -> usize {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn ualign(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ualign")).current_dir(dir).args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into()
}

/// The example study in a temp folder, answering as fast as one likes, pools imported.
fn study() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("studies");
    std::fs::create_dir_all(dir.path().join("studies/example")).unwrap();
    let text = std::fs::read_to_string(src.join("example.toml")).unwrap();
    std::fs::write(
        dir.path().join("studies/example.toml"),
        text.replace("min_reading_seconds = 2.0", "min_reading_seconds = 0"),
    )
    .unwrap();
    for f in ["prompts.jsonl", "sampled.jsonl", "greedy.jsonl"] {
        std::fs::copy(src.join("example").join(f), dir.path().join("studies/example").join(f)).unwrap();
    }
    for policy in ["sampled", "greedy"] {
        let file = format!("studies/example/{policy}.jsonl");
        ualign(dir.path(), &["import", "studies/example.toml", "--policy", policy, "--candidates", &file]);
    }
    dir
}

fn codes(dir: &Path, n: usize) -> Vec<String> {
    let file = dir.join(format!("codes-{}.csv", rand::random::<u32>()));
    ualign(dir, &["invite", "studies/example.toml", "--count", &n.to_string(), "--out", file.to_str().unwrap()]);
    std::fs::read_to_string(file).unwrap().lines().skip(1).map(|l| l.split(',').next().unwrap().to_string()).collect()
}

struct Server {
    child: Child,
    ssh: u16,
    http: u16,
}

impl Server {
    fn start(dir: &Path) -> Self {
        use std::io::BufRead;
        let mut child = Command::new(env!("CARGO_BIN_EXE_ualign"))
            .current_dir(dir)
            .args(["serve", "studies/example.toml", "--ssh", "127.0.0.1:0", "--http", "127.0.0.1:0"])
            .args(["--rate-limit", "100000", "--max-sessions", "10000", "--max-sessions-per-address", "10000"])
            .args(["--max-pending-per-address", "10000"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let (mut ssh, mut http) = (0, 0);
        loop {
            let mut line = String::new();
            assert!(out.read_line(&mut line).unwrap() > 0, "serve did not start");
            if let Some(rest) = line.trim().strip_prefix("ssh:") {
                ssh = rest.split_whitespace().nth(2).unwrap().parse().unwrap();
            }
            if let Some(rest) = line.trim().strip_prefix("browser: http://127.0.0.1:") {
                http = rest.split('/').next().unwrap().parse().unwrap();
            }
            if line.contains("Ctrl-C stops") {
                break;
            }
        }
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        Self { child, ssh, http }
    }

    /// The server's resident memory, in bytes.
    fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap();
        kb * 1024
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Client;

impl russh::client::Handler for Client {
    type Error = russh::Error;
    async fn check_server_key(&mut self, _key: &russh::keys::PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

/// One participant's connection: send bytes, wait for the next output.
enum Conn {
    // The handle keeps the connection open.
    Ssh(russh::Channel<russh::client::Msg>, #[allow(dead_code)] russh::client::Handle<Client>),
    Ws(Box<tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>>),
}

impl Conn {
    async fn ssh(port: u16, code: &str) -> Self {
        let config = Arc::new(russh::client::Config { nodelay: true, ..Default::default() });
        let mut handle = russh::client::connect(config, ("127.0.0.1", port), Client).await.unwrap();
        assert!(handle.authenticate_none(code).await.unwrap().success(), "the code was not accepted");
        let channel = handle.channel_open_session().await.unwrap();
        channel.request_pty(false, "xterm", 100, 30, 0, 0, &[]).await.unwrap();
        channel.request_shell(false).await.unwrap();
        Conn::Ssh(channel, handle)
    }

    async fn ws(port: u16, code: &str) -> Self {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = format!("ws://127.0.0.1:{port}/ws?invite={code}").into_client_request().unwrap();
        req.headers_mut().insert("Origin", format!("http://127.0.0.1:{port}").parse().unwrap());
        let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
        let hello = serde_json::json!({"t": "r", "c": 100, "r": 30}).to_string();
        ws.send(tokio_tungstenite::tungstenite::Message::text(hello)).await.unwrap();
        Conn::Ws(Box::new(ws))
    }

    async fn send(&mut self, bytes: &[u8]) {
        match self {
            Conn::Ssh(ch, _) => ch.data(bytes).await.unwrap(),
            Conn::Ws(ws) => {
                let msg = serde_json::json!({"t": "d", "d": String::from_utf8_lossy(bytes)}).to_string();
                ws.send(tokio_tungstenite::tungstenite::Message::text(msg)).await.unwrap();
            }
        }
    }

    /// The next output, or `None` when the connection ended.
    async fn next(&mut self) -> Option<Vec<u8>> {
        match self {
            Conn::Ssh(ch, _) => loop {
                match ch.wait().await? {
                    ChannelMsg::Data { data } => return Some(data.to_vec()),
                    ChannelMsg::Eof | ChannelMsg::Close => return None,
                    _ => {}
                }
            },
            Conn::Ws(ws) => loop {
                match ws.next().await? {
                    Ok(tokio_tungstenite::tungstenite::Message::Binary(b)) => return Some(b.to_vec()),
                    Ok(tokio_tungstenite::tungstenite::Message::Close(_)) | Err(_) => return None,
                    _ => {}
                }
            },
        }
    }

    /// Output until `needle` has been seen (or the connection ends).
    async fn until(&mut self, needle: &str) -> String {
        let mut seen = String::new();
        while !seen.contains(needle) {
            match tokio::time::timeout(Duration::from_secs(30), self.next()).await {
                Ok(Some(b)) => seen.push_str(&String::from_utf8_lossy(&b)),
                _ => break,
            }
        }
        seen
    }

    /// Presses `key` and measures the time to the first byte of the redrawn frame; also
    /// returns what came within a moment after (to see which screen it is).
    async fn press(&mut self, key: &[u8]) -> (Duration, String) {
        // Whatever came meanwhile (a status line timing out) is not this key's frame.
        while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(2), self.next()).await {}
        let start = Instant::now();
        self.send(key).await;
        let Ok(Some(first)) = tokio::time::timeout(Duration::from_secs(30), self.next()).await else {
            return (start.elapsed(), String::new());
        };
        let latency = start.elapsed();
        let mut seen = String::from_utf8_lossy(&first).to_string();
        while let Ok(Some(more)) = tokio::time::timeout(Duration::from_millis(30), self.next()).await {
            seen.push_str(&String::from_utf8_lossy(&more));
        }
        (latency, seen)
    }
}

/// One participant: through the consent and instructions, then a key every 0.5–2 s (two
/// picks, then Enter: an answer every 2–4 s) until `until`.
async fn participant(mut c: Conn, until: Instant, latencies: Arc<Mutex<Vec<Duration>>>) -> usize {
    c.until("Press Enter to begin").await;
    c.press(b"\r").await;
    c.press(b"y").await;
    c.press(b"\r").await;
    let mut answered = 0;
    let mut mine = Vec::new();
    while Instant::now() < until {
        let pause = Duration::from_millis(1000 + rand::random::<u64>() % 1000);
        tokio::time::sleep(pause).await;
        // A pick of 2 (or, ordering, 1 then 2, the rest after).
        for key in [b"1", b"2"] {
            let (l, _) = c.press(key).await;
            mine.push(l);
            tokio::time::sleep(pause / 2).await;
        }
        let (l, shown) = c.press(b"\r").await;
        mine.push(l);
        answered += 1;
        if shown.contains("short break") {
            c.press(b"\r").await;
        }
        if shown.contains("All done") || shown.contains("EXAMPLE-7Q2K") {
            break;
        }
    }
    latencies.lock().await.extend(mine);
    answered
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn count(db: &Path, sql: &str) -> i64 {
    let c = rusqlite::Connection::open(db).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    c.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// One phase: `n` participants over `transport`, `seconds` long.
fn phase(rt: &tokio::runtime::Runtime, dir: &Path, transport: &str, n: usize, seconds: u64) {
    let db: PathBuf = dir.join("db/example.sqlite");
    let codes = codes(dir, n);
    let server = Server::start(dir);
    let base = server.rss();
    let before = count(&db, "SELECT COUNT(*) FROM answers");
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let (ssh, http) = (server.ssh, server.http);
    let start = Instant::now();
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(base));
    let (peak_w, pid) = (peak.clone(), server.child.id());
    let sampler = std::thread::spawn(move || {
        while start.elapsed() < Duration::from_secs(seconds + 5) {
            if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status"))
                && let Some(kb) = s
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            {
                peak_w.fetch_max(kb * 1024, std::sync::atomic::Ordering::Relaxed);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let answered: usize = rt.block_on(async {
        let until = Instant::now() + Duration::from_secs(seconds);
        let mut tasks = Vec::new();
        for code in codes {
            // Participants arrive over a few seconds, not all in one millisecond (the
            // server lets 64 sign in at once).
            tokio::time::sleep(Duration::from_millis(25)).await;
            let latencies = latencies.clone();
            let transport = transport.to_string();
            tasks.push(tokio::spawn(async move {
                let c = if transport == "ssh" { Conn::ssh(ssh, &code).await } else { Conn::ws(http, &code).await };
                participant(c, until, latencies).await
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        total
    });
    let elapsed = start.elapsed().as_secs_f64();
    sampler.join().unwrap();
    let stored = count(&db, "SELECT COUNT(*) FROM answers") - before;
    let mut l = latencies.blocking_lock().clone();
    l.sort();
    let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "{transport:>7} × {n:>3}: keystroke→frame p50 {:.1} ms, p99 {:.1} ms ({} keystrokes); {stored} answers stored ({answered} sent), {:.1} answers/s; RSS {:.1} MB before, {:.1} MB peak: {:.2} MB per session",
        percentile(&l, 0.5),
        percentile(&l, 0.99),
        l.len(),
        stored as f64 / elapsed,
        base as f64 / 1e6,
        peak as f64 / 1e6,
        (peak.saturating_sub(base)) as f64 / 1e6 / n as f64,
    );
    assert_eq!(stored as usize, answered, "every answer sent was stored once");
}

fn main() {
    // `cargo bench` passes --bench; a plain `cargo test` of benches passes nothing and
    // must not run the load.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let seconds = env_or("UALIGN_BENCH_SECONDS", 45) as u64;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    for (transport, n) in [
        ("ssh", 1),
        ("ssh", env_or("UALIGN_BENCH_SSH", 100)),
        ("browser", 1),
        ("browser", env_or("UALIGN_BENCH_WS", 32)),
    ] {
        let dir = study();
        phase(&rt, dir.path(), transport, n, seconds);
    }
}
