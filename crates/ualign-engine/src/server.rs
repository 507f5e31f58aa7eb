//! Samples from an OpenAI-compatible server (vLLM, TGI, SGLang, llama.cpp's server, a
//! hosted API): one request per sample, each with its own seed, so that every candidate
//! can be asked for again on its own. Requests run concurrently up to the policy's
//! `concurrency`, with a per-request timeout, and retry with exponential backoff and
//! jitter on 429, 5xx, timeouts and dropped connections; an answer larger than
//! [`MAX_BODY`] is refused. Synchronous to its callers: the client owns a small Tokio
//! runtime and blocks on it, so neither `ualign-core` nor the screens see async code.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::decoding::Decoding;
use crate::generate::SampleSpec;

/// The largest answer read from a server: a completion of 8,192 tokens is well under
/// 1 MiB; anything past this is not a completion. With at most [`MAX_CONCURRENCY`]
/// requests in flight, answers never hold more than 512 MiB.
pub const MAX_BODY: usize = 2 << 20;

/// The most requests a policy may have in flight.
pub const MAX_CONCURRENCY: u32 = 256;

/// The longest model list read (`GET /models`).
const MODEL_LIST_LIMIT: usize = 16 << 20;

/// How long `GET /models`, the check before a run, may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// The first retry's wait; each later one doubles, up to [`BACKOFF_CAP`].
const BACKOFF_BASE: Duration = Duration::from_millis(500);
const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// The longest `Retry-After` honoured.
const RETRY_AFTER_CAP: Duration = Duration::from_secs(120);
/// How much of a server's error body an error message quotes.
const QUOTE: usize = 300;

/// The two OpenAI endpoints a policy can sample through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// `/chat/completions`: the prompt as one user message, through the server's own
    /// chat template.
    Chat,
    /// `/completions`: the prompt's text as it is.
    Completions,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat",
            Endpoint::Completions => "completions",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Endpoint::Chat => "/chat/completions",
            Endpoint::Completions => "/completions",
        }
    }
}

/// Where and how a server policy samples: what a study's `[[policies]]` entry with
/// `source = "server"` says.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSpec {
    /// The API's root, e.g. `http://gpu-box:8000/v1` (no trailing slash).
    pub base_url: String,
    /// The model name sent with every request.
    pub model: String,
    /// The environment variable holding the API key, if the server needs one. The key
    /// itself is never stored anywhere.
    pub api_key_env: Option<String>,
    pub endpoint: Endpoint,
    /// Requests in flight at once.
    pub concurrency: u32,
    /// How long one request may take, from sending to the last byte.
    pub timeout: Duration,
    /// Retries of one request after a transient failure (429, 5xx, timeout).
    pub retries: u32,
    /// Request fields beyond the standard ones: the sampling settings the study sets that
    /// OpenAI's API does not have (`top_k`, `min_p`, `repetition_penalty`) and the
    /// policy's `extra_body`.
    pub extra: Map<String, Value>,
    /// The person running ualign typed `base_url` themselves (`sample --server`), so a key
    /// may go to it wherever it is; a study file's URL sends a key to a host on the
    /// internet only when [`KEY_HOSTS_VAR`] names it.
    pub url_from_user: bool,
}

impl ServerSpec {
    /// The spec with its defaults: chat endpoint, 8 requests at once, 300 s per request,
    /// 5 retries, no key.
    pub fn new(base_url: &str, model: &str) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_string(),
            model: model.to_string(),
            api_key_env: None,
            endpoint: Endpoint::Chat,
            concurrency: 8,
            timeout: Duration::from_secs(300),
            retries: 5,
            extra: Map::new(),
            url_from_user: false,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }
}

/// The fields `extra_body` may not set: those ualign sets itself from the study (the
/// sampling settings that are not OpenAI's included: they belong in
/// `[policies.decoding]`), and those that would change what a stored candidate is (the
/// prompt echoed into it, a server-side best-of, another length limit).
pub const OWN_FIELDS: [&str; 17] = [
    "model",
    "messages",
    "prompt",
    "seed",
    "n",
    "stream",
    "stream_options",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "top_k",
    "min_p",
    "repetition_penalty",
    "best_of",
    "echo",
];

/// The environment variable naming the hosts on the internet that a study's server
/// policies may send an API key to (comma- or space-separated host names, e.g.
/// `api.openai.com`). A study file from elsewhere decides where its requests go; without
/// this, one could name a key the researcher has set and a host of its author's.
pub const KEY_HOSTS_VAR: &str = "UALIGN_KEY_HOSTS";

/// Whether `host` is one of `list`'s (a [`KEY_HOSTS_VAR`] value), case and a trailing dot
/// aside.
pub fn key_host_listed(host: &str, list: &str) -> bool {
    let norm = |h: &str| h.trim().trim_end_matches('.').to_ascii_lowercase();
    let host = norm(host);
    !host.is_empty() && list.split([',', ' ', '\t']).any(|h| norm(h) == host)
}

/// Why `base_url` is not a server's base URL, if it is not: an http(s) URL with a host,
/// no user or password (they would be stored with the study and shown), no query or
/// fragment. The study file's check and the client's are this one.
pub fn base_url_refusal(base_url: &str) -> Option<String> {
    let url = match reqwest::Url::parse(base_url) {
        Ok(u) => u,
        Err(e) => return Some(format!("{e}; give the scheme and host, e.g. http://gpu-box:8000/v1")),
    };
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Some("give the scheme and host, e.g. http://gpu-box:8000/v1".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Some("a user or password in the URL would be stored and shown: name the key's environment variable with api_key_env instead".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Some("no query or fragment: give the API's root, e.g. http://gpu-box:8000/v1".into());
    }
    None
}

/// Why an environment variable may not be named as a policy's `api_key_env`, if it may
/// not: its value goes to the server on every request, so a study file from elsewhere
/// must not be able to send a machine's other secrets (cloud, code hosting, CI
/// credentials) to a host of its choosing. The name must say it is a key or token.
pub fn key_env_refusal(name: &str) -> Option<String> {
    let mut chars = name.chars();
    let is_name = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !is_name {
        return Some(
            "not an environment variable's name: api_key_env names the variable that holds the key (letters, digits and _, e.g. VLLM_KEY), never the key itself".into(),
        );
    }
    let upper = name.to_ascii_uppercase();
    if !(upper.contains("KEY") || upper.contains("TOKEN")) {
        return Some("the variable's name must say it holds a key or token (e.g. VLLM_KEY, OPENAI_API_KEY, HF_TOKEN): its value goes to the server with every request".into());
    }
    // Anywhere in the name (HOMEBREW_GITHUB_API_TOKEN), and these as prefixes only.
    // (Not AZURE or GOOGLE: AZURE_OPENAI_API_KEY and GOOGLE_API_KEY are model APIs' keys.)
    const OTHER_SERVICES: [&str; 19] = [
        "AWS",
        "GCP",
        "GCLOUD",
        "GITHUB",
        "GITLAB",
        "BITBUCKET",
        "SSH",
        "GPG",
        "NPM",
        "PYPI",
        "TWINE",
        "CARGO",
        "DOCKER",
        "KUBE",
        "VAULT",
        "SLACK",
        "STRIPE",
        "DATABASE",
        "SENTRY",
    ];
    const PREFIXES: [&str; 5] = ["GH_", "CI_", "ACTIONS_", "NODE_AUTH", "RUNNER_"];
    let words: Vec<&str> = upper.split('_').collect();
    let other = OTHER_SERVICES
        .iter()
        .find(|w| words.iter().any(|x| x.starts_with(**w)))
        .or_else(|| PREFIXES.iter().find(|p| upper.starts_with(**p)));
    other.map(|p| {
        format!(
            "`{name}` names another service ({}), and other services' credentials must never go to a model server: export the server's key in a variable of its own (e.g. VLLM_KEY)",
            p.trim_end_matches('_')
        )
    })
}

/// The seed sent for a sample whose study seed is `seed`: its low 31 bits, which every
/// server takes (llama.cpp's is 32-bit, some APIs' a signed 32-bit integer). What was sent
/// is what is recorded.
pub fn request_seed(seed: u64) -> u64 {
    seed & 0x7fff_ffff
}

/// The request body for one sample: exactly what is sent and recorded.
pub fn request_body(spec: &ServerSpec, decoding: &Decoding, prompt: &str, seed: u64) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), json!(spec.model));
    match spec.endpoint {
        Endpoint::Chat => body.insert("messages".into(), json!([{ "role": "user", "content": prompt }])),
        Endpoint::Completions => body.insert("prompt".into(), json!(prompt)),
    };
    body.insert("max_tokens".into(), json!(decoding.max_new_tokens));
    body.insert("temperature".into(), json!(f64::from(decoding.sampling.temperature)));
    body.insert("top_p".into(), json!(f64::from(decoding.sampling.top_p)));
    body.insert("seed".into(), json!(request_seed(seed)));
    body.insert("n".into(), json!(1));
    body.insert("stream".into(), json!(false));
    if !decoding.stop.is_empty() {
        body.insert("stop".into(), json!(decoding.stop));
    }
    for (k, v) in &spec.extra {
        body.entry(k.clone()).or_insert_with(|| v.clone());
    }
    Value::Object(body)
}

/// One sample as the server gave it, with what was asked and what came back beside the
/// text.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ServerSample {
    pub index: u32,
    /// The seed sent ([`request_seed`] of the sample's study seed).
    pub seed: u64,
    pub text: String,
    /// As the server said it (`stop`, `length`, …); `unknown` when it said nothing.
    pub finish_reason: String,
    /// The model the server says answered.
    pub model: Option<String>,
    pub system_fingerprint: Option<String>,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    /// From sending the request that succeeded to its last byte.
    pub latency_ms: f64,
    /// Requests sent for this sample (1 when the first succeeded).
    pub attempts: u32,
    /// The body sent.
    pub request: Value,
}

/// What went wrong talking to a server, each saying what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(
        "api_key_env = \"{0}\", but the environment variable {0} is not set (or not valid text): export it before running ualign; the key is read from the environment only and never stored"
    )]
    NoKey(String),
    #[error("api_key_env = \"{var}\": {why}")]
    BadKey { var: String, why: String },
    #[error("base_url `{url}` is not a server's base URL: {why}")]
    BadUrl { url: String, why: String },
    #[error(
        "cannot reach {url}: {why}\n  check base_url (OpenAI-compatible servers answer under /v1, e.g. http://host:8000/v1) and that the server is running"
    )]
    Connect { url: String, why: String },
    #[error("{url} refused the request (HTTP {status}): {body}\n  {hint}")]
    Auth { url: String, status: u16, body: String, hint: String },
    #[error(
        "{url} answered HTTP 404: {body}\n  check base_url (it usually ends in /v1) and `model` (the name the server serves)"
    )]
    NotFound { url: String, body: String },
    #[error(
        "{url} refused the request (HTTP {status}): {body}\n  check the policy's decoding settings and extra_body against what this server accepts"
    )]
    Refused { url: String, status: u16, body: String },
    #[error("{url} answered something that is not an OpenAI-style completion: {why}\n  first bytes: {snippet}")]
    BadAnswer { url: String, why: String, snippet: String },
    #[error(
        "{url}: gave up after {attempts} {}; the last: {last}\n  the server is overloaded or failing: lower the policy's concurrency, raise timeout_s or retries, or try again later; finished pools are kept",
        if *attempts == 1 { "attempt" } else { "attempts" }
    )]
    GaveUp { url: String, attempts: u32, last: String },
    #[error(
        "a request was lost ({0}); this is a bug in ualign: please report it. Stored pools are whole; run again to go on"
    )]
    Lost(String),
    #[error("cancelled")]
    Cancelled,
}

impl ServerError {
    /// Whether the run was cancelled (nothing is wrong with the server).
    pub fn is_cancelled(&self) -> bool {
        matches!(self, ServerError::Cancelled)
    }
}

/// One pool's worth of requests: a prompt and the samples wanted of it.
#[derive(Debug, Clone)]
pub struct ServerJob {
    pub prompt: String,
    pub samples: Vec<SampleSpec>,
}

/// A client for one server policy.
pub struct ServerClient {
    spec: ServerSpec,
    key: Option<String>,
    http: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

impl ServerClient {
    /// A client for `spec`: its key read from the environment, its URL checked. Nothing is
    /// sent yet.
    pub fn new(spec: ServerSpec) -> Result<Self, ServerError> {
        let url = reqwest::Url::parse(&spec.base_url);
        // What an error shows of the URL: never a password written into it.
        let shown = match &url {
            Ok(u) if !u.username().is_empty() || u.password().is_some() => {
                let mut u = u.clone();
                let _ = u.set_username("");
                let _ = u.set_password(None);
                u.to_string()
            }
            Ok(_) => spec.base_url.clone(),
            Err(_) if spec.base_url.contains('@') => "(a URL holding '@')".into(),
            Err(_) => spec.base_url.clone(),
        };
        let bad = |why: String| ServerError::BadUrl { url: shown.clone(), why };
        if let Some(why) = base_url_refusal(&spec.base_url) {
            return Err(bad(why));
        }
        let url = url.map_err(|e| bad(e.to_string()))?;
        let key = match &spec.api_key_env {
            Some(var) => {
                let bad_key = |why: String| ServerError::BadKey { var: var.clone(), why };
                if let Some(why) = key_env_refusal(var) {
                    return Err(bad_key(why));
                }
                let key = std::env::var(var).map_err(|_| ServerError::NoKey(var.clone()))?;
                if reqwest::header::HeaderValue::from_str(&format!("Bearer {key}")).is_err() {
                    return Err(bad_key(
                        "its value holds a line break or another character no HTTP header may hold".into(),
                    ));
                }
                if url.scheme() == "http" && !is_local(&url) {
                    return Err(bad_key(format!(
                        "the key would cross the network unencrypted to {}: use https://, or a server on this machine or the local network",
                        url.host_str().unwrap_or("?")
                    )));
                }
                let host = url.host_str().unwrap_or("?");
                let listed = || std::env::var(KEY_HOSTS_VAR).is_ok_and(|l| key_host_listed(host, &l));
                if !is_local(&url) && !spec.url_from_user && !listed() {
                    return Err(bad_key(format!(
                        "the study would send this key to {host}, a host outside this machine and its local network. A study file decides where its requests go, so ualign sends a key there only when you name the host: if {host} is the service that key is for, run again with {KEY_HOSTS_VAR}={host} in the environment (several hosts: separate them with commas)"
                    )));
                }
                Some(key)
            }
            None => None,
        };
        let mut http = reqwest::Client::builder();
        if url.scheme() == "http" {
            // An `HTTP_PROXY` would carry the prompt and the key, unencrypted, past the
            // local network the URL names.
            http = http.no_proxy();
        }
        let http = http
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(spec.timeout)
            // A redirect would send the prompt, and the key, to a host the study never named.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("ualign/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| bad(e.to_string()))?;
        // Two threads for the requests, so that storing a pool on the caller's thread
        // never holds up the answers coming in.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ualign-server")
            .enable_all()
            .build()
            .map_err(|e| bad(format!("no runtime for the client: {e}")))?;
        Ok(Self { spec, key, http, rt })
    }

    pub fn spec(&self) -> &ServerSpec {
        &self.spec
    }

    /// Asks the server which models it serves (`GET /models`), once and without retries:
    /// a wrong URL, a refused key or a server that is down is found before anything is
    /// stored. Returns notices (the model is not among those listed; the server lists
    /// none) that are worth showing but need not stop a run: some servers answer any
    /// model name.
    pub fn check(&self) -> Result<Vec<String>, ServerError> {
        let url = self.spec.url("/models");
        self.rt.block_on(async {
            let get = self.http.get(&url).timeout(CHECK_TIMEOUT.min(self.spec.timeout));
            let resp = self.authorised(get).send().await.map_err(|e| connect_error(&url, &e))?;
            let status = resp.status().as_u16();
            // A hosted catalogue can list thousands of models: a longer list is not read,
            // only said.
            let body = match read_within(resp, &url, MODEL_LIST_LIMIT).await {
                Ok(b) => b,
                Err(ServerError::BadAnswer { why, .. }) if (200..300).contains(&status) => {
                    return Ok(vec![format!("{url}: {why}; the model list was not checked")]);
                }
                Err(e) => return Err(e),
            };
            match status {
                200..=299 => {}
                401 | 403 => return Err(self.auth_error(&url, status, &body)),
                _ => {
                    return Ok(vec![format!(
                        "{url} answered HTTP {status} ({}); the model list could not be checked",
                        quote(&body)
                    )]);
                }
            }
            let ids: Vec<String> = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v.get("data")?.as_array().cloned())
                .unwrap_or_default()
                .iter()
                .filter_map(|m| m.get("id")?.as_str().map(str::to_string))
                .collect();
            let mut notices = Vec::new();
            if !ids.is_empty() && !ids.iter().any(|id| id == &self.spec.model) {
                notices.push(format!(
                    "{} lists the models {}, not `{}`; servers that serve one model often answer any name, others refuse it",
                    self.spec.base_url,
                    ids.iter().take(8).map(|m| format!("`{}`", quote_short(m.as_bytes()))).collect::<Vec<_>>().join(", "),
                    self.spec.model
                ));
            }
            if let (Some(var), Ok(u)) = (&self.spec.api_key_env, reqwest::Url::parse(&self.spec.base_url)) {
                notices.push(format!("the API key in ${var} goes to {}", u.host_str().unwrap_or("?")));
            }
            Ok(notices)
        })
    }

    /// Samples every job, with at most `concurrency` requests in flight across them all.
    /// `on_done(j, samples)` is called on this thread as soon as every sample of job `j`
    /// is in (samples in index order); it may stop the run with `Break`. The first
    /// request that fails for good, or `cancel` set, stops the run: requests in flight
    /// are dropped, and the jobs already handed to `on_done` are all that was done.
    pub fn run(
        &self,
        jobs: &[ServerJob],
        decoding: &Decoding,
        cancel: Option<&AtomicBool>,
        on_done: &mut dyn FnMut(usize, Vec<ServerSample>) -> ControlFlow<()>,
    ) -> Result<(), ServerError> {
        if jobs.iter().all(|j| j.samples.is_empty()) {
            return Ok(());
        }
        self.rt.block_on(self.run_async(jobs, decoding, cancel, on_done))
    }

    async fn run_async(
        &self,
        jobs: &[ServerJob],
        decoding: &Decoding,
        cancel: Option<&AtomicBool>,
        on_done: &mut dyn FnMut(usize, Vec<ServerSample>) -> ControlFlow<()>,
    ) -> Result<(), ServerError> {
        let shared = Arc::new(Shared {
            http: self.http.clone(),
            url: self.spec.url(self.spec.endpoint.path()),
            key: self.key.clone(),
            spec: self.spec.clone(),
            decoding: decoding.clone(),
            hint: self.auth_hint(),
        });
        let gate = Arc::new(tokio::sync::Semaphore::new(self.spec.concurrency.clamp(1, MAX_CONCURRENCY) as usize));
        let mut tasks = tokio::task::JoinSet::new();
        let mut left: Vec<Vec<ServerSample>> = jobs.iter().map(|j| Vec::with_capacity(j.samples.len())).collect();
        let mut waiting: Vec<usize> = jobs.iter().map(|j| j.samples.len()).collect();
        // The samples in study order, each sent only once a permit is free: the requests
        // go in that order whatever the threads do (a server whose text depends on the
        // request before it gives the same texts to a run in the same order), each body is
        // made only when it is sent, and the jobs finish in order, each handed on as soon
        // as its last sample is in.
        let mut queue = jobs
            .iter()
            .enumerate()
            .flat_map(|(j, job)| {
                let prompt: Arc<str> = job.prompt.as_str().into();
                job.samples.iter().map(move |s| (j, prompt.clone(), *s))
            })
            .peekable();
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        let mut open = jobs.iter().filter(|j| !j.samples.is_empty()).count();
        while open > 0 {
            tokio::select! {
                permit = gate.clone().acquire_owned(), if queue.peek().is_some() => {
                    let permit = permit.map_err(|e| ServerError::Lost(e.to_string()))?;
                    let Some((j, prompt, s)) = queue.next() else { continue };
                    let shared = shared.clone();
                    tasks.spawn(async move {
                        let _permit = permit;
                        (j, shared.sample(&prompt, s).await)
                    });
                }
                got = tasks.join_next(), if !tasks.is_empty() => {
                    let (j, result) = match got {
                        Some(Ok(done)) => done,
                        // A request's task that panicked: never a pool that looks filled.
                        Some(Err(e)) => return Err(ServerError::Lost(e.to_string())),
                        None => continue,
                    };
                    left[j].push(result?);
                    waiting[j] -= 1;
                    if waiting[j] == 0 {
                        open -= 1;
                        let mut samples = std::mem::take(&mut left[j]);
                        samples.sort_by_key(|s| s.index);
                        if on_done(j, samples).is_break() {
                            return Ok(());
                        }
                    }
                }
                _ = tick.tick() => {
                    if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                        return Err(ServerError::Cancelled);
                    }
                    if queue.peek().is_none() && tasks.is_empty() {
                        return Err(ServerError::Lost(format!("{open} pools were left without answers")));
                    }
                }
            }
        }
        Ok(())
    }

    fn authorised(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.key {
            Some(k) => req.bearer_auth(k),
            None => req,
        }
    }

    fn auth_hint(&self) -> String {
        match &self.spec.api_key_env {
            Some(var) => format!("check the key in {var}, and that it may use model `{}`", self.spec.model),
            None => {
                "the server wants an API key: set `api_key_env` on the policy to the environment variable that holds it"
                    .into()
            }
        }
    }

    fn auth_error(&self, url: &str, status: u16, body: &[u8]) -> ServerError {
        ServerError::Auth { url: url.to_string(), status, body: quote(body), hint: self.auth_hint() }
    }
}

/// What every request of a run shares: the client, the endpoint's URL, the key, the
/// policy and its settings.
struct Shared {
    http: reqwest::Client,
    url: String,
    key: Option<String>,
    spec: ServerSpec,
    decoding: Decoding,
    hint: String,
}

/// One sample's request.
struct Request<'a> {
    shared: &'a Shared,
    body: Value,
    index: u32,
    seed: u64,
}

impl Shared {
    /// One sample: asks until the server answers or it gives up.
    async fn sample(&self, prompt: &str, s: SampleSpec) -> Result<ServerSample, ServerError> {
        let body = request_body(&self.spec, &self.decoding, prompt, s.seed);
        Request { shared: self, body, index: s.index, seed: request_seed(s.seed) }.send().await
    }
}

/// What one attempt came to.
enum Attempt {
    Done(ServerSample),
    /// Worth another try, after at least this long (a `Retry-After`), with this reason.
    Again(Option<Duration>, String),
    Fail(ServerError),
}

impl Request<'_> {
    async fn send(self) -> Result<ServerSample, ServerError> {
        let retries = self.shared.spec.retries;
        let mut last = String::new();
        for attempt in 0..=retries {
            match self.attempt(attempt + 1).await {
                Attempt::Done(s) => return Ok(s),
                Attempt::Fail(e) => return Err(e),
                Attempt::Again(after, why) => {
                    last = why;
                    if attempt < retries {
                        tokio::time::sleep(backoff(attempt, after, self.seed ^ u64::from(self.index))).await;
                    }
                }
            }
        }
        Err(ServerError::GaveUp { url: self.shared.url.clone(), attempts: retries + 1, last })
    }

    async fn attempt(&self, attempts: u32) -> Attempt {
        let shared = self.shared;
        let started = Instant::now();
        let mut req = shared.http.post(&shared.url).json(&self.body);
        if let Some(k) = &shared.key {
            req = req.bearer_auth(k);
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) if e.is_builder() => {
                return Attempt::Fail(ServerError::Refused { url: shared.url.clone(), status: 0, body: transport(&e) });
            }
            // A server that restarts refuses connections for a moment: retried like a 503.
            // A wrong URL is found before any of this, by `ServerClient::check`.
            Err(e) => return Attempt::Again(None, transport(&e)),
        };
        let status = resp.status().as_u16();
        let retry_after = retry_after(resp.headers());
        let body = match read_limited(resp, &shared.url).await {
            Ok(b) => b,
            Err(e @ ServerError::BadAnswer { .. }) => return Attempt::Fail(e),
            Err(e) => return Attempt::Again(None, e.to_string()),
        };
        let url = shared.url.clone();
        match status {
            200..=299 => {}
            401 | 403 => {
                return Attempt::Fail(ServerError::Auth { url, status, body: quote(&body), hint: shared.hint.clone() });
            }
            404 => return Attempt::Fail(ServerError::NotFound { url, body: quote(&body) }),
            408 | 409 | 425 | 429 | 500..=599 => {
                return Attempt::Again(retry_after, format!("HTTP {status}: {}", quote(&body)));
            }
            _ => return Attempt::Fail(ServerError::Refused { url, status, body: quote(&body) }),
        }
        let latency_ms = started.elapsed().as_secs_f64() * 1e3;
        match parse_completion(&body, shared.spec.endpoint) {
            Ok(c) => Attempt::Done(ServerSample {
                index: self.index,
                seed: self.seed,
                text: c.text,
                finish_reason: c.finish_reason,
                model: c.model,
                system_fingerprint: c.system_fingerprint,
                prompt_tokens: c.prompt_tokens,
                completion_tokens: c.completion_tokens,
                latency_ms,
                attempts,
                request: self.body.clone(),
            }),
            Err(why) => Attempt::Fail(ServerError::BadAnswer { url, why, snippet: quote(&body) }),
        }
    }
}

/// A completion's fields, read from the answer's JSON.
#[derive(Debug, PartialEq)]
struct Completion {
    text: String,
    finish_reason: String,
    model: Option<String>,
    system_fingerprint: Option<String>,
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
}

fn parse_completion(body: &[u8], endpoint: Endpoint) -> Result<Completion, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON ({e})"))?;
    if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
        return Err(format!("the server answered an error with status 200: {}", quote(err.to_string().as_bytes())));
    }
    let choice =
        v.get("choices").and_then(Value::as_array).and_then(|c| c.first()).ok_or("no `choices[0]` in the answer")?;
    let text = match endpoint {
        Endpoint::Chat => {
            let message = choice.get("message").ok_or("no `choices[0].message` (is this the chat endpoint?)")?;
            match message.get("content") {
                Some(Value::String(s)) => s.clone(),
                // Never an empty candidate shown to participants as if it were an answer.
                Some(Value::Null) | None => {
                    return Err("the answer has no text (`choices[0].message.content` is null: a refusal, a tool call, or a reasoning model that spent max_new_tokens before answering; raise max_new_tokens or choose another model)".into());
                }
                Some(_) => return Err("`choices[0].message.content` is not text".into()),
            }
        }
        Endpoint::Completions => choice
            .get("text")
            .and_then(Value::as_str)
            .ok_or("no text in `choices[0].text` (is this the completions endpoint?)")?
            .to_string(),
    };
    let s = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
    let usage = v.get("usage");
    let tokens = |key: &str| usage.and_then(|u| u.get(key)).and_then(Value::as_u64);
    Ok(Completion {
        text,
        finish_reason: s(choice.get("finish_reason")).unwrap_or_else(|| "unknown".into()),
        model: s(v.get("model")),
        system_fingerprint: s(v.get("system_fingerprint")),
        prompt_tokens: tokens("prompt_tokens"),
        completion_tokens: tokens("completion_tokens"),
    })
}

/// The body of `resp`, refused past [`MAX_BODY`].
async fn read_limited(resp: reqwest::Response, url: &str) -> Result<Vec<u8>, ServerError> {
    read_within(resp, url, MAX_BODY).await
}

/// The body of `resp`, refused past `limit` bytes.
async fn read_within(mut resp: reqwest::Response, url: &str, limit: usize) -> Result<Vec<u8>, ServerError> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_large(url, limit));
    }
    let mut out = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if out.len() + chunk.len() > limit {
                    return Err(too_large(url, limit));
                }
                out.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(out),
            Err(e) => return Err(ServerError::Connect { url: url.to_string(), why: transport(&e) }),
        }
    }
}

fn too_large(url: &str, limit: usize) -> ServerError {
    ServerError::BadAnswer {
        url: url.to_string(),
        why: format!("the answer is larger than {} MiB", limit >> 20),
        snippet: String::new(),
    }
}

fn connect_error(url: &str, e: &reqwest::Error) -> ServerError {
    ServerError::Connect { url: url.to_string(), why: transport(e) }
}

/// A transport error by its causes, which is where reqwest says what happened (its own
/// text only repeats the URL).
fn transport(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".into();
    }
    let mut causes: Vec<String> = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !causes.iter().any(|c| c.contains(&text)) {
            causes.push(text);
        }
        source = s.source();
    }
    if causes.is_empty() { e.to_string() } else { causes.join(": ") }
}

/// A server's text, quoted in an error: at most [`QUOTE`] characters, on one line, with
/// no control or invisible characters (a hostile server's body must not drive the
/// terminal or reorder what it shows).
fn quote(body: &[u8]) -> String {
    quote_with(body, QUOTE)
}

/// [`quote`] for a name (a model id): at most 80 characters.
fn quote_short(body: &[u8]) -> String {
    quote_with(body, 80)
}

fn quote_with(body: &[u8], limit: usize) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() || is_invisible(c) { ' ' } else { c })
        .take(limit)
        .collect::<String>()
        .trim()
        .to_string();
    if text.chars().count() > limit {
        out.push('…');
    }
    if out.is_empty() { "(empty body)".into() } else { out }
}

/// A server's text as it may be printed to a terminal: line breaks and tabs kept, every
/// other control character and the invisible ones (bidirectional overrides, zero-width
/// characters) dropped. What is stored is the text as the server sent it.
pub fn printable(text: &str) -> String {
    text.chars().filter(|&c| c == '\n' || c == '\t' || !(c.is_control() || is_invisible(c))).collect()
}

/// Characters that change how the text around them shows without showing themselves.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}' | '\u{061c}')
}

/// Whether `url`'s host is this machine or the local network (a loopback or private
/// address, `localhost`, a one-label name such as `gpu-box`, or a `.local`, `.lan`,
/// `.internal` or `.home.arpa` name): where a key may go without TLS.
fn is_local(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else { return false };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<std::net::IpAddr>() {
        // 100.64/10: carrier-grade NAT's shared space, where Tailscale's own (encrypted)
        // network lives.
        Ok(std::net::IpAddr::V4(ip)) => {
            ip.is_loopback()
                || ip.is_private()
                || ip.is_link_local()
                || (ip.octets()[0] == 100 && (ip.octets()[1] & 0xc0) == 64)
        }
        Ok(std::net::IpAddr::V6(ip)) => ip.is_loopback() || (ip.segments()[0] & 0xfe00) == 0xfc00,
        Err(_) => {
            // A trailing dot makes a name absolute (`com.`): no local search domain applies.
            let absolute = host.ends_with('.');
            let d = host.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost"
                || (!d.contains('.') && !absolute)
                || [".localhost", ".local", ".lan", ".internal", ".home.arpa"].iter().any(|s| d.ends_with(s))
        }
    }
}

/// A `Retry-After` in seconds (its date form is not read), at most [`RETRY_AFTER_CAP`].
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let secs: u64 = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs.min(RETRY_AFTER_CAP.as_secs())))
}

/// The wait before retry `attempt` (0 first): exponential from [`BACKOFF_BASE`] up to
/// [`BACKOFF_CAP`], each drawn in its upper half ("equal jitter", so many clients that
/// failed together do not retry together), and never shorter than the server's
/// `Retry-After`.
fn backoff(attempt: u32, retry_after: Option<Duration>, salt: u64) -> Duration {
    let exp = BACKOFF_BASE.saturating_mul(1u32 << attempt.min(16)).min(BACKOFF_CAP);
    let noise = {
        use rand::{Rng, SeedableRng};
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        rand_chacha::ChaCha8Rng::seed_from_u64(salt ^ nanos as u64).random_range(0.5..=1.0)
    };
    exp.mul_f64(noise).max(retry_after.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_holds_the_study_settings_and_extra_fields_never_replace_ualigns_own() {
        let mut spec = ServerSpec::new("http://h:1/v1/", "m");
        assert_eq!(spec.base_url, "http://h:1/v1");
        spec.extra.insert("top_k".into(), json!(0));
        spec.extra.insert("cache_prompt".into(), json!(false));
        spec.extra.insert("seed".into(), json!(99));
        let mut d = Decoding::default();
        d.sampling.temperature = 0.7;
        d.stop = vec!["\n\n".into()];
        let b = request_body(&spec, &d, "Hi", (1 << 40) + 5);
        assert_eq!(b["messages"], json!([{ "role": "user", "content": "Hi" }]));
        assert_eq!(b["seed"], json!(5), "the low 31 bits of the study's seed, not extra_body's");
        assert_eq!(b["max_tokens"], json!(64));
        assert_eq!(b["top_k"], json!(0));
        assert_eq!(b["cache_prompt"], json!(false));
        assert_eq!(b["stop"], json!(["\n\n"]));
        assert!((b["temperature"].as_f64().unwrap() - 0.7).abs() < 1e-6);
        spec.endpoint = Endpoint::Completions;
        let b = request_body(&spec, &Decoding::default(), "Hi", 1);
        assert_eq!(b["prompt"], json!("Hi"));
        assert!(b.get("messages").is_none() && b.get("stop").is_none());
    }

    #[test]
    fn answers_are_read_or_refused_with_the_reason() {
        let chat = br#"{"model":"m1","system_fingerprint":"fp","choices":[{"message":{"role":"assistant","content":"Hello"},"finish_reason":"length"}],"usage":{"prompt_tokens":3,"completion_tokens":2}}"#;
        let c = parse_completion(chat, Endpoint::Chat).unwrap();
        assert_eq!((c.text.as_str(), c.finish_reason.as_str()), ("Hello", "length"));
        assert_eq!((c.model.as_deref(), c.system_fingerprint.as_deref()), (Some("m1"), Some("fp")));
        assert_eq!((c.prompt_tokens, c.completion_tokens), (Some(3), Some(2)));
        let text = br#"{"choices":[{"text":"Hi"}]}"#;
        let c = parse_completion(text, Endpoint::Completions).unwrap();
        let with_null_error = br#"{"error":null,"choices":[{"text":"Hi"}]}"#;
        assert_eq!(parse_completion(with_null_error, Endpoint::Completions).unwrap().text, "Hi");
        assert_eq!((c.text.as_str(), c.finish_reason.as_str(), c.model), ("Hi", "unknown", None));
        for (body, why) in [
            (&b"<html>bad gateway</html>"[..], "not JSON"),
            (br#"{"choices":[]}"#, "choices[0]"),
            (br#"{"error":{"message":"boom"}}"#, "error"),
            (br#"{"choices":[{"text":"x"}]}"#, "chat endpoint"),
            (br#"{"choices":[{"message":{"content":7}}]}"#, "not text"),
            (br#"{"choices":[{"message":{"content":null},"finish_reason":"length"}]}"#, "has no text"),
        ] {
            let e = parse_completion(body, Endpoint::Chat).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
    }

    #[test]
    fn backoff_doubles_within_its_jitter_up_to_the_cap_and_honours_retry_after() {
        for attempt in 0..10 {
            let full = BACKOFF_BASE.saturating_mul(1 << attempt).min(BACKOFF_CAP);
            let d = backoff(attempt, None, u64::from(attempt));
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?} of {full:?}");
        }
        assert!(backoff(0, Some(Duration::from_secs(7)), 1) >= Duration::from_secs(7));
    }

    #[test]
    fn quotes_are_short_single_lines_without_control_characters() {
        assert_eq!(quote(b"a\x1b[2Jb\nc"), "a [2Jb c");
        assert_eq!(quote(b""), "(empty body)");
        let long = quote(&[b'x'; 1000]);
        assert_eq!(long.chars().count(), QUOTE + 1);
    }

    #[test]
    fn keys_go_only_in_variables_that_say_so_and_never_unencrypted_across_the_internet() {
        assert_eq!(key_env_refusal("VLLM_KEY"), None);
        assert_eq!(key_env_refusal("OPENAI_API_KEY"), None);
        assert_eq!(key_env_refusal("HF_TOKEN"), None);
        assert!(key_env_refusal("AWS_SECRET_ACCESS_KEY").unwrap().contains("other services"));
        assert!(key_env_refusal("GH_TOKEN").is_some() && key_env_refusal("HOME").is_some());
        assert!(key_env_refusal("HOMEBREW_GITHUB_API_TOKEN").is_some(), "another service anywhere in the name");
        assert_eq!(key_env_refusal("AZURE_OPENAI_API_KEY"), None);
        assert!(key_env_refusal("sk-abc").unwrap().contains("not an environment variable's name"));
        for (host, list, want) in [
            ("api.openai.com", "api.openai.com", true),
            ("API.OpenAI.com.", "example.org, api.openai.com", true),
            ("api.openai.com", "example.org api.openai.com\tx.y", true),
            ("api.openai.com.evil.example", "api.openai.com", false),
            ("openai.com", "api.openai.com", false),
            ("api.openai.com", "", false),
            ("", ",", false),
        ] {
            assert_eq!(key_host_listed(host, list), want, "{host} in {list:?}");
        }
        let local = |u: &str| is_local(&reqwest::Url::parse(u).unwrap());
        for u in [
            "http://127.0.0.1:8000/v1",
            "http://localhost/v1",
            "http://gpu-box:8000/v1",
            "http://10.1.2.3/v1",
            "http://192.168.0.9/v1",
            "http://[::1]:8000/v1",
            "http://node7.cluster.internal/v1",
        ] {
            assert!(local(u), "{u}");
        }
        for u in [
            "http://api.example.com/v1",
            "http://8.8.8.8/v1",
            "http://[2001:db8::1]/v1",
            "http://com./v1",
            "http://localhost.example.com/v1",
            "http://127.0.0.1.nip.io/v1",
        ] {
            assert!(!local(u), "{u}");
        }
        assert_eq!(printable("a\u{1b}[2J\u{202e}b\nc\td\u{200b}"), "a[2Jb\nc\td");
    }

    #[test]
    fn a_url_without_a_scheme_or_a_missing_key_is_refused_before_any_request() {
        assert!(matches!(ServerClient::new(ServerSpec::new("gpu-box:8000/v1", "m")), Err(ServerError::BadUrl { .. })));
        assert!(matches!(ServerClient::new(ServerSpec::new("ftp://h/v1", "m")), Err(ServerError::BadUrl { .. })));
        let mut spec = ServerSpec::new("http://127.0.0.1:9/v1", "m");
        spec.api_key_env = Some("UALIGN_TEST_NO_SUCH_KEY_VARIABLE".into());
        let e = ServerClient::new(spec).err().unwrap();
        assert!(e.to_string().contains("UALIGN_TEST_NO_SUCH_KEY_VARIABLE is not set"), "{e}");
    }
}
