//! Server policies (`source = "server"`) against a real OpenAI-compatible server:
//! llama-cpp-python's `llama_cpp.server` serving the default model's GGUF. `generate`
//! fills the pools, the same seed gives the same text again, and a `generate` killed with
//! SIGKILL resumes without losing or duplicating a pool. Outside CI these tests skip, with
//! the reason, where llama-cpp-python is not installed; with UALIGN_REQUIRE_SERVER=1 (as
//! `.ci/run` sets it) they fail instead. The error paths (401, 404, an answer that is not
//! a completion, 503s, a body past the limit) are driven by a small local fake server.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{self, ualign, ualign_env};

/// `python3 -m llama_cpp.server` on the default GGUF, on a free port; killed when dropped.
struct LlamaServer {
    child: Child,
    url: String,
    _log: tempfile::NamedTempFile,
}

impl LlamaServer {
    /// The server, or `None` (with the reason printed) where llama-cpp-python is missing
    /// and UALIGN_REQUIRE_SERVER is not set.
    fn start() -> Option<Self> {
        let required = std::env::var("UALIGN_REQUIRE_SERVER").is_ok_and(|v| v == "1");
        let probe = Command::new("python3").args(["-c", "import llama_cpp.server"]).output();
        if !probe.as_ref().is_ok_and(|o| o.status.success()) {
            let why = match probe {
                Ok(o) => String::from_utf8_lossy(&o.stderr).lines().last().unwrap_or("").to_string(),
                Err(e) => e.to_string(),
            };
            let msg = format!(
                "llama-cpp-python's server is not installed ({why}): pip install 'llama-cpp-python[server]==0.3.36' (.ci/run does)"
            );
            assert!(!required, "UALIGN_REQUIRE_SERVER=1: {msg}");
            eprintln!("SKIPPED: {msg}");
            return None;
        }
        let gguf = ualign_engine::ModelFolder::open(&crate::golden::smollm2()).unwrap().model.path().to_path_buf();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new("python3")
            .args(["-m", "llama_cpp.server", "--model"])
            .arg(&gguf)
            .args(["--model_alias", "smollm2", "--n_threads", "2", "--host", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(log.reopen().unwrap())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap();
        let mut server = Self { child, url: format!("http://127.0.0.1:{port}/v1"), _log: log };
        let start = Instant::now();
        while http_get(port, "/v1/models").is_none_or(|(status, _)| status != 200) {
            if let Ok(Some(status)) = server.child.try_wait() {
                let log = std::fs::read_to_string(server._log.path()).unwrap_or_default();
                panic!("llama_cpp.server exited ({status}) before answering:\n{log}");
            }
            assert!(start.elapsed() < Duration::from_secs(120), "llama_cpp.server did not answer within 120 s");
            std::thread::sleep(Duration::from_millis(200));
        }
        Some(server)
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A bare GET: (status, body), or `None` when nothing answers.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, out.split("\r\n\r\n").nth(1).unwrap_or("").to_string()))
}

/// A study folder with one study file.
fn study_dir(toml: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("studies")).unwrap();
    std::fs::write(dir.path().join("studies/s.toml"), toml).unwrap();
    dir
}

/// A best-of-k study of `prompts` prompts whose two policies ask `url`: `diverse` (pools
/// of `pool`, temperature 1, llama.cpp's own top-k and min-p turned off, its prompt cache
/// off for reproducibility) against `greedy`; `server_keys` go into both policies.
fn server_study(url: &str, prompts: usize, pool: u32, server_keys: &str) -> String {
    let mut s = String::from("name = \"srv\"\ntitle = \"Server study\"\nseed = 11\n\n");
    let texts = [
        "Name a fruit.",
        "Suggest a name for a cafe.",
        "Give a colour.",
        "Name a river.",
        "Say hello.",
        "Name a tree.",
    ];
    for (i, t) in texts.iter().cycle().take(prompts).enumerate() {
        s.push_str(&format!("[[prompts]]\nid = \"p{i}\"\ntext = \"{t}\"\n\n"));
    }
    s.push_str(&format!(
        r#"[[policies]]
name = "diverse"
source = "server"
base_url = "{url}"
model = "smollm2"
pool_size = {pool}
{server_keys}
[policies.decoding]
temperature = 1.0
top_k = 0
min_p = 0.0
max_new_tokens = 12
[policies.extra_body]
cache_prompt = false

[[policies]]
name = "greedy"
source = "server"
base_url = "{url}"
model = "smollm2"
pool_size = 1
{server_keys}
[policies.decoding]
temperature = 0.0
max_new_tokens = 12

[[blocks]]
name = "b"
design = "best_of_k"
policy_a = "diverse"
policy_b = "greedy"
k = [1, 2]
trials = 2
"#
    ));
    s
}

/// Every stored candidate as (policy, prompt, sample, text), in that order.
fn texts(db: &Path) -> Vec<(String, String, i64, String)> {
    let c = common::sql(db);
    let mut q = c
        .prepare(
            "SELECT policy, prompt_id, sample_index, text FROM candidates ORDER BY policy, prompt_id, sample_index",
        )
        .unwrap();
    q.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).unwrap().map(Result::unwrap).collect()
}

#[test]
fn a_server_policy_fills_its_pools_and_the_same_seed_gives_the_same_text_again() {
    let Some(server) = LlamaServer::start() else { return };
    // One request at a time, so that both runs ask in the same order: llama-cpp-python's
    // server reuses the previous request's evaluated prompt, and a sample's text depends on
    // whether that request had the same prompt (see README: Reproducibility, per server).
    // The greedy policy runs in-process beside it: a study may mix both, filled at once.
    let study = server_study(&server.url, 2, 3, "concurrency = 1").replace(
        &format!("name = \"greedy\"\nsource = \"server\"\nbase_url = \"{}\"\nmodel = \"smollm2\"\npool_size = 1\nconcurrency = 1\n", server.url),
        "name = \"greedy\"\nsource = \"model\"\nmodel = \"default\"\npool_size = 1\n",
    );
    assert!(study.contains("source = \"model\""));
    let dir = study_dir(&study);
    let d = dir.path();
    let (ok, out, err) = ualign(d, &["validate", "studies/s.toml"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("(1 model, 1 server, 0 imported)") && out.contains("model `smollm2` (chat endpoint, 1 at once)"),
        "{out}"
    );
    let (ok, out, err) = ualign(d, &["generate", "studies/s.toml"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("generated 8 candidates") && out.contains(&format!("server {}", server.url)), "{out}");
    let db = d.join("db/srv.sqlite");
    let first = texts(&db);
    assert_eq!(first.len(), 8);
    assert!(
        first.iter().filter(|t| t.0 == "diverse").map(|t| &t.3).collect::<std::collections::BTreeSet<_>>().len() > 2
    );

    assert_recorded(&db, &server.url);
    // One stored candidate asked for again: the same text.
    let (ok, out, err) =
        ualign(d, &["sample", "--study", "studies/s.toml", "--policy", "diverse", "--prompt", "p1", "--index", "2"]);
    assert!(ok, "{out}{err}");
    assert!(err.contains("the same text as stored candidate"), "{err}");
    // And the whole study again, into another database: every text the same.
    let (ok, _, err) = ualign(d, &["init", "studies/s.toml", "--db", "db/again.sqlite"]);
    assert!(ok, "{err}");
    let (ok, out, err) = ualign(d, &["generate", "studies/s.toml", "--db", "db/again.sqlite"]);
    assert!(ok, "{out}{err}");
    assert_eq!(texts(&d.join("db/again.sqlite")), first);
    // The participant screens (`run`, `serve`) fill missing pools on the engine worker's
    // thread: through the same server, the same texts.
    {
        use ualign_core::pools::{PoolWorker, WorkerEvent, pending_jobs};
        let study = ualign_core::study::load(&d.join("studies/s.toml")).unwrap().0;
        let live = d.join("db/live.sqlite");
        let (store, _) = ualign_core::store::Store::open_for_study(&live, &study).unwrap();
        let jobs = pending_jobs(&study, &store).unwrap();
        assert_eq!(jobs.len(), 4, "two prompts of two policies");
        let mut worker = PoolWorker::spawn(study, live.clone(), ualign_engine::EpChoice::Cpu, None);
        let request = worker.request_background(jobs);
        let mut seen = Vec::new();
        common::wait_within("the worker to fill the pools", Duration::from_secs(120), || {
            seen.extend(worker.poll());
            seen.iter().any(|e| matches!(e, WorkerEvent::Done { .. } | WorkerEvent::Failed { .. }))
        });
        assert!(matches!(seen.last(), Some(WorkerEvent::Done { request: r }) if *r == request), "{seen:?}");
        assert_eq!(texts(&live), first);
    }
    // A full database: nothing to do.
    let (ok, out, _) = ualign(d, &["generate", "studies/s.toml"]);
    assert!(ok && out.contains("every pool of study `srv` is complete"), "{out}");

    sample_server_is_reproducible(d, &server.url);
}

/// What was asked and answered is recorded beside every candidate.
fn assert_recorded(db: &Path, url: &str) {
    let c = common::sql(db);
    let mut q = c
        .prepare("SELECT seed, token_count, finish_reason, provider, meta, settings FROM candidates WHERE policy = 'diverse'")
        .unwrap();
    let rows: Vec<(i64, Option<i64>, String, String, String, String)> = q
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for (seed, tokens, finish, provider, meta, settings) in &rows {
        let m: serde_json::Value = serde_json::from_str(meta).unwrap();
        let s = &m["server"];
        assert_eq!(s["request"]["seed"].as_i64(), Some(*seed), "the seed column is the seed sent: {meta}");
        assert!(*seed < 1 << 31);
        assert_eq!(s["request"]["n"], 1);
        assert_eq!(s["model"], "smollm2", "{meta}");
        assert_eq!(s["endpoint"], "chat");
        assert_eq!(s["determinism_claimed"], false, "llama.cpp's server returns no system_fingerprint");
        assert_eq!(s["completion_tokens"].as_i64(), *tokens);
        assert!(s["latency_ms"].as_f64().unwrap() > 0.0 && s["attempts"] == 1);
        assert!(finish == "stop" || finish == "length", "{finish}");
        assert_eq!(provider, &format!("server {}", url));
        assert!(settings.contains("\"max_tokens\":12") && !settings.contains("messages"), "what was sent: {settings}");
    }
    let diverse = rows.iter().find(|r| r.4.contains("\"temperature\":1.0")).unwrap();
    assert!(diverse.4.contains("\"top_k\":0") && diverse.4.contains("\"cache_prompt\":false"), "{}", diverse.4);
}

/// `sample --server` tries the server without a study; its seeds are its own, and fixed.
fn sample_server_is_reproducible(d: &Path, url: &str) {
    let args = [
        "sample",
        "--server",
        url,
        "--model",
        "smollm2",
        "--prompt",
        "Name a fruit.",
        "-k",
        "2",
        "--max-new-tokens",
        "8",
        "--top-k",
        "0",
        "--json",
    ];
    let (ok, out, err) = ualign(d, &args);
    assert!(ok, "{err}");
    let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(lines[0]["request"]["top_k"], 0);
    assert!(lines[0]["request"].get("min_p").is_none(), "settings not asked for stay the server's");
    assert_eq!(lines[2]["timing"]["candidates"], 2);
    let (_, again, _) = ualign(d, &args);
    let text = |out: &str, i: usize| {
        serde_json::from_str::<serde_json::Value>(out.lines().nth(i).unwrap()).unwrap()["text"].clone()
    };
    assert_eq!((text(&out, 0), text(&out, 1)), (text(&again, 0), text(&again, 1)));
}

#[test]
fn generate_interrupted_or_killed_resumes_without_losing_or_duplicating_a_pool() {
    let Some(server) = LlamaServer::start() else { return };
    let dir = study_dir(&server_study(&server.url, 6, 4, "concurrency = 2"));
    let d = dir.path();
    let db = d.join("db/srv.sqlite");
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_ualign"))
            .current_dir(d)
            .args(["generate", "studies/s.toml"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let pools = |db: &Path| common::count(db, "SELECT COUNT(DISTINCT policy || '/' || prompt_id) FROM candidates");
    let study = ualign_core::study::load(&d.join("studies/s.toml")).unwrap().0;
    // Ctrl-C: the pools stored stay, the requests in flight are dropped, and it says how to
    // go on.
    let child = spawn();
    common::wait_within("a first pool to be stored", Duration::from_secs(120), || db.exists() && pools(&db) >= 1);
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("interrupted:") && err.contains("ualign generate"), "{err}");
    common::assert_pools_whole(&db, &study);
    // SIGKILL, which nothing can catch: the same.
    let before = pools(&db);
    let mut child = spawn();
    common::wait_within("another pool to be stored", Duration::from_secs(120), || pools(&db) > before);
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "killed before it finished");
    let stored = common::count(&db, "SELECT COUNT(*) FROM candidates");
    assert!(stored < 30, "killed while pools were still missing ({stored} stored)");
    common::assert_pools_whole(&db, &study);
    let before_resume = texts(&db);

    // The server found under another name: the same study (where a server runs is not
    // what it samples), and `generate` says the pools' candidates now come from elsewhere.
    let file = d.join("studies/s.toml");
    let moved = server.url.replace("127.0.0.1", "localhost");
    std::fs::write(&file, std::fs::read_to_string(&file).unwrap().replace(&server.url, &moved)).unwrap();
    let (ok, out, err) = ualign(d, &["generate", "studies/s.toml"]);
    assert!(ok, "{out}{err}");
    assert!(err.contains(&format!("came from {}, the study now names {moved}", server.url)), "{err}");
    assert!(out.contains(&format!("generated {} candidates", 30 - stored)), "only what was missing: {out}");
    let resumed = texts(&db);
    assert_eq!(resumed.len(), 30);
    let keys: std::collections::BTreeSet<_> = resumed.iter().map(|t| (&t.0, &t.1, t.2)).collect();
    assert_eq!(keys.len(), 30, "no sample stored twice");
    // What was stored before stays as it was. (Its texts are not compared with an
    // uninterrupted run's: this server's text for a seed depends on the request before it,
    // and a resumed run asks in another order.)
    assert!(before_resume.iter().all(|t| resumed.contains(t)), "a stored candidate was replaced");
}

/// What the fake server was asked: method, path, headers (lowercase names) and body.
#[derive(Debug, Clone)]
struct Asked {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

/// A local HTTP server for error paths only: answers a request that is the n-th of its
/// method (0 first) with `answer(n, request)` = (status, body), closing each connection
/// after its answer.
struct Fake {
    url: String,
    asked: Arc<Mutex<Vec<Asked>>>,
}

impl Fake {
    fn start(answer: impl Fn(usize, &Asked) -> (u16, String) + Send + Sync + 'static) -> Self {
        Self::start_with_headers(move |n, r| {
            let (status, body) = answer(n, r);
            (status, body, String::new())
        })
    }

    /// [`Fake::start`] whose answers also carry header lines (`Name: value\r\n` each).
    fn start_with_headers(answer: impl Fn(usize, &Asked) -> (u16, String, String) + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let log = asked.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let Some(req) = read_request(&stream) else { continue };
                let n = {
                    let mut log = log.lock().unwrap();
                    log.push(req.clone());
                    log.iter().filter(|a: &&Asked| a.method == req.method).count() - 1
                };
                let (status, body, headers) = answer(n, &req);
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{headers}Connection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Self { url: format!("http://127.0.0.1:{port}/v1"), asked }
    }

    fn asked(&self) -> Vec<Asked> {
        self.asked.lock().unwrap().clone()
    }
}

fn read_request(stream: &TcpStream) -> Option<Asked> {
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let len: usize = headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some(Asked { method, path, headers, body: String::from_utf8_lossy(&body).into() })
}

const MODELS: &str = r#"{"object":"list","data":[{"id":"smollm2","object":"model"}]}"#;

fn completion(text: &str) -> String {
    serde_json::json!({"model": "smollm2", "choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 3, "completion_tokens": 2}})
    .to_string()
}

/// `generate` on a one-prompt study against `url`: (success, stdout + stderr).
fn generate_against(url: &str, keys: &str, env: &[(&str, &str)]) -> (tempfile::TempDir, bool, String) {
    let dir = study_dir(&server_study(url, 1, 2, keys));
    let (ok, out, err) = ualign_env(dir.path(), &["generate", "studies/s.toml"], env);
    (dir, ok, format!("{out}{err}"))
}

#[test]
fn a_refused_key_a_wrong_url_or_a_server_that_is_down_is_found_before_any_database_is_made() {
    let fake = Fake::start(|_, _| (401, r#"{"error":{"message":"invalid api key"}}"#.into()));
    let (dir, ok, out) =
        generate_against(&fake.url, "api_key_env = \"UALIGN_TEST_KEY\"", &[("UALIGN_TEST_KEY", "sk-secret-123")]);
    assert!(!ok);
    assert!(
        out.contains("policy `diverse`")
            && out.contains("refused the request (HTTP 401)")
            && out.contains("invalid api key"),
        "{out}"
    );
    assert!(out.contains("check the key in UALIGN_TEST_KEY"), "{out}");
    assert!(!out.contains("sk-secret-123"), "the key is never printed: {out}");
    assert!(!dir.path().join("db/srv.sqlite").exists(), "no database made");
    let asked = fake.asked();
    assert_eq!((asked[0].method.as_str(), asked[0].path.as_str()), ("GET", "/v1/models"));
    assert!(
        asked[0].headers.contains(&("authorization".into(), "Bearer sk-secret-123".into())),
        "{:?}",
        asked[0].headers
    );

    // A key the study names but the environment lacks.
    let (_, ok, out) = generate_against(&fake.url, "api_key_env = \"UALIGN_TEST_UNSET_KEY\"", &[]);
    assert!(!ok && out.contains("the environment variable UALIGN_TEST_UNSET_KEY is not set"), "{out}");

    // A key never crosses the internet unencrypted, and only a variable that says it holds
    // one may be sent.
    let (dir, ok, out) = generate_against(
        "http://models.example.com:8000/v1",
        "api_key_env = \"UALIGN_TEST_KEY\"",
        &[("UALIGN_TEST_KEY", "sk-secret-123")],
    );
    assert!(!ok && out.contains("would cross the network unencrypted to models.example.com"), "{out}");
    assert!(!dir.path().join("db/srv.sqlite").exists());
    // A study file's https URL on the internet gets a key only when the person running
    // ualign names the host; `sample --server`'s URL is their own.
    let key = [("UALIGN_TEST_KEY", "sk-secret-123")];
    let (dir, ok, out) = generate_against("https://models.example.com/v1", "api_key_env = \"UALIGN_TEST_KEY\"", &key);
    assert!(
        !ok && out.contains("send this key to models.example.com")
            && out.contains("UALIGN_KEY_HOSTS=models.example.com"),
        "{out}"
    );
    assert!(!out.contains("sk-secret-123") && !dir.path().join("db/srv.sqlite").exists(), "{out}");
    let named = [key[0], ("UALIGN_KEY_HOSTS", "other.example, Models.Example.com")];
    let (_, ok, out) = generate_against("https://models.example.com/v1", "api_key_env = \"UALIGN_TEST_KEY\"", &named);
    assert!(!ok && !out.contains("send this key to") && out.contains("cannot reach"), "named, it is tried: {out}");
    let args = ["sample", "--server", "http://user:pw@127.0.0.1:9/v1", "--model", "m", "--prompt", "x"];
    let (ok, _, err) = ualign(dir.path(), &args);
    assert!(!ok && err.contains("a user or password in the URL") && !err.contains("pw@"), "{err}");
    let args =
        ["sample", "--server", &fake.url, "--model", "m", "--prompt", "x", "--api-key-env", "AWS_SECRET_ACCESS_KEY"];
    let (ok, _, err) = ualign_env(dir.path(), &args, &[("AWS_SECRET_ACCESS_KEY", "aws-secret")]);
    assert!(!ok && err.contains("other services' credentials"), "{err}");
    assert!(fake.asked().iter().all(|a| !a.headers.iter().any(|h| h.1.contains("aws-secret"))));

    // Nothing listening.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (dir, ok, out) = generate_against(&format!("http://127.0.0.1:{port}/v1"), "", &[]);
    assert!(!ok && out.contains("cannot reach") && out.contains("check base_url"), "{out}");
    assert!(!dir.path().join("db/srv.sqlite").exists());
}

#[test]
fn a_missing_model_or_an_answer_that_is_not_a_completion_stores_nothing_and_says_why() {
    for (answer, expect) in [
        ((404, r#"{"error":{"message":"The model `smollm2` does not exist."}}"#.to_string()), "answered HTTP 404"),
        ((200, "<html>gateway</html>".to_string()), "not an OpenAI-style completion: not JSON"),
        ((200, r#"{"choices":[]}"#.to_string()), "no `choices[0]`"),
        ((400, r#"{"error":"top_k is not supported"}"#.to_string()), "refused the request (HTTP 400)"),
    ] {
        let fake =
            Fake::start(move |_, r| if r.path.ends_with("/models") { (200, MODELS.into()) } else { answer.clone() });
        let (dir, ok, out) = generate_against(&fake.url, "", &[]);
        assert!(!ok, "{out}");
        // Both policies ask the failing server at once; the first to fail stops the other,
        // so the error names whichever it was.
        let named = out.contains("policy `diverse`: ") || out.contains("policy `greedy`: ");
        assert!(out.contains(expect) && named, "{expect}: {out}");
        let db = dir.path().join("db/srv.sqlite");
        assert_eq!(common::count(&db, "SELECT COUNT(*) FROM candidates"), 0, "nothing half-written: {out}");
        let posts = fake.asked().iter().filter(|a| a.method == "POST").count();
        assert!((1..=3).contains(&posts), "a lasting error is not retried: {posts} requests for 3 samples");
    }
}

#[test]
fn overloaded_servers_are_retried_with_backoff_and_huge_answers_refused() {
    // Two 503s (one asking for a wait too long to be a duration) and a 429 asking for a
    // second, then answers: every sample is stored, and the attempts each took are
    // recorded.
    let fake = Fake::start_with_headers(|n, r| match (n, r.path.ends_with("/models")) {
        (_, true) => (200, MODELS.into(), String::new()),
        (0, _) => (503, "busy".into(), "Retry-After: 99999999999999999999\r\n".into()),
        (1, _) => (503, "busy".into(), "Retry-After: 1e20\r\n".into()),
        (2, _) => (429, "slow down".into(), "Retry-After: 1\r\n".into()),
        _ => (200, completion("Apple"), String::new()),
    });
    let keys = "concurrency = 1\nretries = 4\napi_key_env = \"UALIGN_TEST_KEY\"";
    let (dir, ok, out) = generate_against(&fake.url, keys, &[("UALIGN_TEST_KEY", "sk-secret-456")]);
    assert!(ok, "{out}");
    let db = dir.path().join("db/srv.sqlite");
    // The key went with every request and into no file.
    let auth = ("authorization".to_string(), "Bearer sk-secret-456".to_string());
    assert!(fake.asked().iter().all(|a| a.headers.contains(&auth)));
    for entry in std::fs::read_dir(dir.path().join("db")).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(!bytes.windows(13).any(|w| w == b"sk-secret-456"), "the key is in a database file");
    }
    assert_eq!(common::count(&db, "SELECT COUNT(*) FROM candidates"), 3);
    // (The two policies fill at once, so which samples met the failures varies.)
    let attempts = common::count(&db, "SELECT SUM(json_extract(meta, '$.server.attempts')) FROM candidates");
    assert_eq!(attempts, 6, "every request counted in its sample's attempts");
    let posts: Vec<serde_json::Value> =
        fake.asked().iter().filter(|a| a.method == "POST").map(|a| serde_json::from_str(&a.body).unwrap()).collect();
    assert_eq!(posts.len(), 6, "3 samples, 3 retries");
    let mut by_seed: std::collections::BTreeMap<i64, Vec<&serde_json::Value>> = Default::default();
    for b in &posts {
        by_seed.entry(b["seed"].as_i64().unwrap()).or_default().push(b);
    }
    assert_eq!(by_seed.len(), 3, "each sample its own seed");
    assert!(by_seed.values().all(|v| v.iter().all(|b| *b == v[0])), "a retry sends the same request");

    // Retries run out: the error says so, and what was stored stays.
    let fake =
        Fake::start(|_, r| if r.path.ends_with("/models") { (200, MODELS.into()) } else { (500, "boom".into()) });
    let (_, ok, out) = generate_against(&fake.url, "retries = 1", &[]);
    assert!(!ok && out.contains("gave up after 2 attempts") && out.contains("HTTP 500: boom"), "{out}");

    // A server that never answers: each request ends at timeout_s.
    let fake = Fake::start(|_, r| {
        if !r.path.ends_with("/models") {
            std::thread::sleep(Duration::from_secs(5));
        }
        (200, MODELS.into())
    });
    let (_, ok, out) = generate_against(&fake.url, "timeout_s = 1\nretries = 0", &[]);
    assert!(!ok && out.contains("gave up after 1 attempt; the last: timed out"), "{out}");

    // An answer past the limit is refused, not read into memory.
    let huge = format!("{{\"pad\":\"{}\"}}", "x".repeat(3 << 20));
    let fake =
        Fake::start(move |_, r| if r.path.ends_with("/models") { (200, MODELS.into()) } else { (200, huge.clone()) });
    let (_, ok, out) = generate_against(&fake.url, "", &[]);
    assert!(!ok && out.contains("larger than 2 MiB"), "{out}");
}

#[test]
fn a_server_policy_is_checked_with_locations_and_never_holds_a_key() {
    let bad = |keys: &str| {
        let study = server_study("http://h:8000/v1", 1, 2, keys);
        let dir = study_dir(&study);
        let (ok, out, err) = ualign(dir.path(), &["validate", "studies/s.toml"]);
        assert!(!ok, "{keys}: {out}");
        err
    };
    let err = bad("api_key = \"sk-live-abcdef123456\"");
    assert!(err.contains("policies[0].api_key") && err.contains("api_key_env"), "{err}");
    assert!(!err.contains("abcdef123456"), "{err}");
    let err = bad("api_key_env = \"sk-live-abcdef123456\"");
    assert!(err.contains("not an environment variable's name") && !err.contains("abcdef123456"), "{err}");
    assert!(bad("api_key_env = \"GITHUB_TOKEN\"").contains("other services' credentials"));
    assert!(bad("api_key_env = \"HOME\"").contains("must say it holds a key or token"));
    assert!(bad("endpoint = \"responses\"").contains("unknown endpoint `responses`"));
    assert!(bad("concurrency = 0").contains("concurrency (requests in flight at once) is from 1 to 256"));
    assert!(bad("timeout_s = -3").contains("timeout_s"));
    for (extra, key) in [("seed = 3", "seed"), ("top_k = 3", "top_k")] {
        // top_k: the study's decoding sets it already.
        let dir = study_dir(&server_study("http://h:8000/v1", 1, 2, "").replace("cache_prompt = false", extra));
        let (ok, _, err) = ualign(dir.path(), &["validate", "studies/s.toml"]);
        assert!(
            !ok && err.contains(&format!("`{key}` is ualign's to set")) && err.contains("policies[0].extra_body"),
            "{err}"
        );
    }
    let dir = study_dir(
        &server_study("gpu-box:8000/v1", 1, 2, "").replace("min_p = 0.0", "min_p = 0.0\nchat_template = false"),
    );
    let (ok, _, err) = ualign(dir.path(), &["validate", "studies/s.toml"]);
    assert!(!ok && err.contains("give the scheme") && err.contains("`endpoint` decides this"), "{err}");
    let dir = study_dir(
        &server_study("http://h:8000/v1", 1, 2, "").replace("min_p = 0.0", "min_p = 0.0\nprecision = \"fast\""),
    );
    let (ok, _, err) = ualign(dir.path(), &["validate", "studies/s.toml"]);
    assert!(!ok && err.contains("policies[0].decoding.precision") && err.contains("a server runs its model"), "{err}");
    let dir = study_dir(&server_study("http://user:pw@h/v1", 1, 2, ""));
    let (ok, _, err) = ualign(dir.path(), &["validate", "studies/s.toml"]);
    assert!(!ok && err.contains("password in the URL"), "{err}");
}
