//! The browser door: one page with a terminal (xterm.js and its fit add-on, vendored in
//! `assets/web/` and embedded in the binary) whose WebSocket drives the same participant
//! screens as SSH. Nothing is served but the embedded files; every response carries a
//! strict Content-Security-Policy; the WebSocket is refused unless it comes from the
//! page's own origin (or one given with `--origin`). Sign-in comes from the page's address:
//! `?invite=CODE` under `--auth invite`, Prolific's `PROLIFIC_PID` (with `STUDY_ID` and
//! `SESSION_ID`, recorded with the session) or nothing under `--auth open`; under
//! `--auth password` the page's terminal asks for the study's password first.
//!
//! The WebSocket's messages: from the page, text frames of JSON, `{"t":"d","d":"…"}` for
//! typed input and `{"t":"r","c":COLUMNS,"r":ROWS}` for the window's size; from the
//! server, binary frames of terminal output and text frames of JSON (`{"redirect":URL}`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ratatui::crossterm::event::Event;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::screen::{self, Out, Start};
use super::{Admission, Auth, Hub};
use crate::tui::input::InputParser;
use crate::tui::text;

/// The largest message a page may send (a paste is cut into several).
const MAX_MESSAGE: usize = 16 * 1024;
/// The most a request's head (request line and headers) may take; hyper's smallest
/// read buffer. The page's requests need a few hundred bytes.
const MAX_HEAD: usize = 8192;
/// How long the page has to say its window's size, and a write to wait for the page.
const HELLO_TIMEOUT: Duration = Duration::from_secs(15);
const WRITE_TIMEOUT: Duration = Duration::from_secs(20);

/// Scripts only from the embedded files (no inline script, no eval); styles also inline,
/// because xterm.js writes its colours and measurements into `<style>` elements it makes.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; img-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The embedded files: path, content type, bytes.
const FILES: &[(&str, &str, &[u8])] = &[
    ("/", "text/html; charset=utf-8", include_bytes!("../../assets/web/index.html")),
    ("/ualign.js", "text/javascript; charset=utf-8", include_bytes!("../../assets/web/ualign.js")),
    ("/ualign.css", "text/css; charset=utf-8", include_bytes!("../../assets/web/ualign.css")),
    ("/xterm.js", "text/javascript; charset=utf-8", include_bytes!("../../assets/web/xterm.js")),
    ("/xterm.css", "text/css; charset=utf-8", include_bytes!("../../assets/web/xterm.css")),
    ("/addon-fit.js", "text/javascript; charset=utf-8", include_bytes!("../../assets/web/addon-fit.js")),
];

/// The listener: each accepted connection is rate-limited per address (one from this
/// machine, a reverse proxy's, at its WebSocket by the address forwarded) and counted
/// against a cap on open HTTP connections (participant sessions and a margin for those
/// loading the page).
struct Limited {
    listener: tokio::net::TcpListener,
    hub: Arc<Hub>,
    open: Arc<AtomicUsize>,
}

/// A connection that gives its place back when it closes.
struct Counted {
    stream: tokio::net::TcpStream,
    open: Arc<AtomicUsize>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl AsyncRead for Counted {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl axum::serve::Listener for Limited {
    type Io = Counted;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let cap = self.hub.limits.max_sessions + self.hub.limits.max_pending;
        loop {
            let Ok((stream, peer)) = self.listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            // A peer on this machine is a reverse proxy in front of the door (or a local
            // user): every participant behind it would share its one address, so the
            // per-address rate is applied at the WebSocket instead, to the address the
            // proxy forwards. The places of connections signing in are taken by the
            // WebSockets, not by the requests for the page's files.
            let allowed = !self.hub.stopping() && (peer.ip().is_loopback() || self.hub.allow_attempt(peer.ip()));
            if !allowed {
                continue;
            }
            if self.open.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < cap).then_some(n + 1)).is_err() {
                continue;
            }
            let _ = stream.set_nodelay(true);
            return (Counted { stream, open: self.open.clone() }, peer);
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

/// Serves the page and its WebSocket on `listener` until the server stops. Each connection
/// is hyper's HTTP/1 with a timer, so that a request's head must arrive whole within the
/// limits' `request_timeout` (axum's own `serve` sets no timer, and hyper then never
/// times a head out).
pub(crate) async fn listen(hub: Arc<Hub>, listener: tokio::net::TcpListener) {
    let mut app = Router::new();
    for &(path, kind, body) in FILES {
        app = app.route(path, get(move || async move { file(kind, body) }));
    }
    let app = app
        .route("/ws", get(websocket))
        .route("/favicon.ico", get(|| async { secured(StatusCode::NO_CONTENT.into_response()) }))
        .fallback(|| async { secured((StatusCode::NOT_FOUND, "not found").into_response()) })
        .with_state(hub.clone());
    let timeout = hub.limits.request_timeout;
    let mut limited = Limited { listener, hub, open: Arc::default() };
    loop {
        let (io, peer) = axum::serve::Listener::accept(&mut limited).await;
        // axum's ConnectInfo, put where its extractor finds it (what axum's own serve does
        // with `into_make_service_with_connect_info`).
        let app = hyper_util::service::TowerToHyperService::new(app.clone());
        let service = hyper::service::service_fn(move |mut req: axum::http::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            hyper::service::Service::call(&app, req)
        });
        tokio::spawn(async move {
            // The headers of every request within `timeout` (also the wait for the next
            // request on a kept-alive connection), and in at most MAX_HEAD bytes.
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(timeout)
                .max_buf_size(MAX_HEAD)
                .serve_connection(hyper_util::rt::TokioIo::new(io), service)
                .with_upgrades();
            tokio::pin!(connection);
            // A connection lives as a WebSocket (then the future ends, the socket moved
            // into it) or for `timeout` of requests: one that keeps asking for files
            // would otherwise hold its place for ever. Then it ends after its request.
            if tokio::time::timeout(timeout, connection.as_mut()).await.is_err() {
                connection.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(timeout, connection).await;
            }
        });
    }
}

fn file(kind: &'static str, body: &'static [u8]) -> Response {
    let mut r = body.into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    secured(r)
}

/// The headers every response carries.
fn secured(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// An `--origin` as browsers send one: `scheme://host[:port]`, lowercase, without a
/// trailing slash or the scheme's default port (a browser never sends `:443`); a path, a
/// query or another scheme is refused with what an origin is.
pub(crate) fn normal_origin(given: &str) -> Result<String, String> {
    let shape = "an origin is a scheme, a host and a port if not the default, with no path: e.g. https://study.example.org or http://lab-pc.example:8080";
    let bare = given.trim().trim_end_matches('/');
    let Some((scheme, rest)) = bare.split_once("://") else { return Err(format!("--origin {given}: {shape}")) };
    let scheme = scheme.to_ascii_lowercase();
    if !matches!(scheme.as_str(), "http" | "https") || rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
        return Err(format!("--origin {given}: {shape}"));
    }
    let rest = rest.to_ascii_lowercase();
    let default = if scheme == "https" { ":443" } else { ":80" };
    Ok(format!("{scheme}://{}", rest.strip_suffix(default).unwrap_or(&rest)))
}

/// Whether a WebSocket's `Origin` is one the page may have, scheme, host and port alike:
/// one the researcher gave with `--origin` (a reverse proxy's https address, a host name),
/// or the page as this door serves it, `http://` and the `Host` it was asked of, where
/// that host is an IP address or `localhost` and the port is the door's (`port`). A host
/// name is never taken from the request: an attacker's name, pointed at this machine by
/// DNS, would give its page this door's origin (DNS rebinding).
fn origin_allowed(headers: &HeaderMap, allowed: &[String], port: Option<u16>) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else { return false };
    if allowed.iter().any(|a| a.eq_ignore_ascii_case(origin)) {
        return true;
    }
    let (Some(host), Some(port)) = (headers.get(header::HOST).and_then(|v| v.to_str().ok()), port) else {
        return false;
    };
    // This door serves its page over plain http alone.
    let Some(("http", authority)) = origin.split_once("://") else { return false };
    if authority != host {
        return false;
    }
    let (name, at) = match authority.rsplit_once(':') {
        Some((n, p)) if !p.contains(']') => (n, p.parse::<u16>().ok()),
        _ => (authority, Some(80)),
    };
    let literal = name.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>().is_ok();
    at == Some(port) && (literal || name.eq_ignore_ascii_case("localhost"))
}

/// A Prolific id of the address, if it has the shape of one (letters and digits, at most 64).
fn prolific_value(q: &HashMap<String, String>, key: &str) -> Option<String> {
    q.get(key).filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric())).cloned()
}

/// The participant's address for the per-address limits: the peer's, or where the peer is
/// on this machine (a reverse proxy in front of `--http`, as the README sets up, so that
/// every participant would otherwise share 127.0.0.1), the last address its
/// X-Forwarded-For names, the one the proxy itself saw (Caddy sets it; nginx's
/// `$proxy_add_x_forwarded_for` appends it); `None` for a local peer that forwards none,
/// which is not limited per address.
fn client_address(peer: std::net::IpAddr, headers: &HeaderMap) -> Option<std::net::IpAddr> {
    if !peer.is_loopback() {
        return Some(peer);
    }
    let last = headers.get_all("x-forwarded-for").iter().next_back().and_then(|v| v.to_str().ok())?;
    last.rsplit(',').next().and_then(|v| v.trim().parse().ok())
}

async fn websocket(
    State(hub): State<Arc<Hub>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    upgrade: WebSocketUpgrade,
) -> Response {
    if !origin_allowed(&headers, &hub.origins, hub.http_addr.map(|a| a.port())) {
        return secured((StatusCode::FORBIDDEN, "cross-origin WebSocket refused").into_response());
    }
    if hub.stopping() {
        return secured((StatusCode::SERVICE_UNAVAILABLE, "the study server is stopping").into_response());
    }
    let prolific = prolific_value(&q, "PROLIFIC_PID");
    let mut client = "browser".to_string();
    if prolific.is_some() {
        client.push_str(" prolific");
        for (key, name) in [("STUDY_ID", "study"), ("SESSION_ID", "session")] {
            if let Some(v) = prolific_value(&q, key) {
                client.push_str(&format!(" {name}={v}"));
            }
        }
    }
    let typed = q.get("invite").cloned().or(prolific.clone());
    // A remote peer's rate was counted when it connected; a local proxy's participant's is
    // counted here.
    let local = peer.ip().is_loopback();
    let peer = client_address(peer.ip(), &headers);
    if local && peer.is_some_and(|a| !hub.allow_attempt(a)) {
        return secured((StatusCode::TOO_MANY_REQUESTS, "too many attempts from one address").into_response());
    }
    // A place among the connections signing in, until the session has its own; refused,
    // the page's terminal says why.
    let pending = hub.take_pending(peer);
    let hub2 = hub.clone();
    let upgrade = upgrade.max_message_size(MAX_MESSAGE).max_frame_size(MAX_MESSAGE);
    upgrade.on_upgrade(move |mut socket| async move {
        let why = match pending {
            Ok(pending) => {
                let sign_in = SignIn { peer, typed, prolific: prolific.is_some(), client, pending };
                return session(hub2, socket, sign_in).await;
            }
            Err(super::limits::Refusal::AddressPending) => text::SERVE_ADDRESS_BUSY,
            Err(_) => text::SERVE_BUSY,
        };
        say(&mut socket, why).await;
    })
}

/// What a WebSocket brings to its sign-in.
struct SignIn {
    /// The address counted for the per-address limits (none for a local proxy's that
    /// forwards none).
    peer: Option<std::net::IpAddr>,
    /// The invitation code or id of the page's address.
    typed: Option<String>,
    prolific: bool,
    /// How the session is logged.
    client: String,
    /// Its place among the connections signing in.
    pending: super::limits::Place,
}

/// A message from the page.
enum FromPage {
    Data(String),
    Resize(u16, u16),
    Closed,
    Other,
}

async fn receive(socket: &mut WebSocket) -> FromPage {
    match socket.recv().await {
        Some(Ok(Message::Text(t))) => {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(t.as_str()) else { return FromPage::Other };
            match v.get("t").and_then(|t| t.as_str()) {
                Some("d") => v.get("d").and_then(|d| d.as_str()).map_or(FromPage::Other, |d| FromPage::Data(d.into())),
                Some("r") => {
                    let n = |k: &str| {
                        v.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0).min(u64::from(u32::MAX)) as u32
                    };
                    let (c, r) = screen::clamp_size(n("c"), n("r"));
                    FromPage::Resize(c, r)
                }
                _ => FromPage::Other,
            }
        }
        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => FromPage::Closed,
        Some(Ok(_)) => FromPage::Other,
    }
}

async fn say(socket: &mut WebSocket, message: &str) {
    let text = format!("\r\n{}\r\n", message.replace('\n', "\r\n"));
    let _ = tokio::time::timeout(WRITE_TIMEOUT, socket.send(Message::Binary(text.into_bytes().into()))).await;
    let _ = socket.send(Message::Close(None)).await;
}

/// Asks for the study's password in the page's terminal (three tries): whether it was given.
async fn ask_password(socket: &mut WebSocket, hub: &Hub) -> bool {
    for _ in 0..3 {
        let _ = socket.send(Message::Binary(b"\r\nStudy password: ".to_vec().into())).await;
        let Some(typed) = read_line(socket, hub).await else { return false };
        if hub.admit(None, Some(&typed)) != Admission::Refused {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let _ = socket.send(Message::Binary(b"\r\nThat is not the password.".to_vec().into())).await;
    }
    false
}

/// A line typed in the page's terminal, not echoed (at most 256 characters kept).
async fn read_line(socket: &mut WebSocket, hub: &Hub) -> Option<String> {
    let mut typed = String::new();
    loop {
        match tokio::time::timeout(hub.limits.sign_in_timeout, receive(socket)).await {
            Ok(FromPage::Data(d)) => {
                for c in d.chars() {
                    match c {
                        '\r' | '\n' => return Some(typed),
                        '\u{7f}' | '\u{8}' => {
                            typed.pop();
                        }
                        c if !c.is_control() && typed.len() < 256 => typed.push(c),
                        _ => {}
                    }
                }
            }
            Ok(FromPage::Resize(..) | FromPage::Other) => {}
            Ok(FromPage::Closed) | Err(_) => return None,
        }
    }
}

/// The page's sign-in: its window's size, then (a password study) the password; the id to
/// start with (none: the ID screen asks) and the size, or what to tell the page (`None`:
/// it is gone).
async fn sign_in(
    hub: &Hub,
    socket: &mut WebSocket,
    s: &SignIn,
) -> Result<(Option<String>, (u16, u16)), Option<&'static str>> {
    // The page says its window's size first.
    let size = loop {
        match tokio::time::timeout(HELLO_TIMEOUT, receive(socket)).await {
            Ok(FromPage::Resize(c, r)) => break (c, r),
            Ok(FromPage::Data(_) | FromPage::Other) => {}
            Ok(FromPage::Closed) | Err(_) => return Err(None),
        }
    };
    let admission = match &hub.auth {
        Auth::Password(_) => {
            if !ask_password(socket, hub).await {
                return Err(Some("Wrong password: ask the researcher for the study's password."));
            }
            match s.typed.as_deref().map(|t| hub.admit(Some(t), None)) {
                Some(Admission::As(id)) => Admission::As(id),
                _ => Admission::AskId,
            }
        }
        _ => hub.admit(s.typed.as_deref(), None),
    };
    // A Prolific link resumes its participant by the id in it: Prolific gives each
    // participant their own link, so the id there is theirs (typed on the ID screen, an
    // id of a participant who began before is not enough).
    let admission = match (admission, s.typed.as_deref()) {
        (Admission::AskId, Some(pid)) if s.prolific => hub.admit_prolific(pid),
        (a, _) => a,
    };
    match admission {
        Admission::As(id) => Ok((Some(id), size)),
        Admission::AskId if s.prolific => Err(Some(text::SERVE_PROLIFIC_REFUSED)),
        Admission::AskId => Ok((None, size)),
        Admission::Refused => Err(Some(text::SERVE_NEED_INVITATION)),
    }
}

async fn session(hub: Arc<Hub>, mut socket: WebSocket, s: SignIn) {
    let number = hub.connection_number();
    // The whole sign-in within the limit (a password study's three tries too).
    let (who, size) = match tokio::time::timeout(hub.limits.sign_in_timeout, sign_in(&hub, &mut socket, &s)).await {
        Ok(Ok(signed_in)) => signed_in,
        Ok(Err(None)) => return,
        Ok(Err(Some(why))) => return say(&mut socket, why).await,
        Err(_) => return say(&mut socket, text::SERVE_SIGN_IN_SLOW).await,
    };
    let place = match hub.take_session(s.peer) {
        Ok(place) => place,
        Err(super::limits::Refusal::AddressFull) => return say(&mut socket, text::SERVE_ADDRESS_FULL).await,
        Err(_) => return say(&mut socket, text::SERVE_FULL).await,
    };
    // Signed in: the place among those signing in is someone else's now.
    drop(s.pending);
    let client = s.client;
    // A Prolific link's own id (not an invitation code in it) is the participant's.
    let vouched = s.prolific && who.as_deref().is_some_and(|w| ualign_core::study::normal_invitation_code(w).is_none());
    let Ok((input, mut output)) =
        screen::spawn(hub.clone(), Start { who, client, size, connection: number, place, vouched })
    else {
        return say(&mut socket, text::SERVE_CANNOT_START).await;
    };
    let mut parser = InputParser::new();
    loop {
        tokio::select! {
            out = output.rx.recv() => {
                let Some(out) = out else { break };
                let msg = match &out {
                    Out::Frame(b) => Message::Binary(b.clone().into()),
                    Out::Redirect(url) => Message::Text(serde_json::json!({ "redirect": url }).to_string().into()),
                };
                match tokio::time::timeout(WRITE_TIMEOUT, socket.send(msg)).await {
                    Ok(Ok(())) => output.written(&out),
                    _ => return,
                }
            }
            from = receive(&mut socket) => match from {
                FromPage::Data(d) => {
                    if !parser.feed(d.as_bytes()).into_iter().all(|ev| input.send(ev)) {
                        break;
                    }
                }
                FromPage::Resize(c, r) => {
                    input.send(Event::Resize(c, r));
                }
                FromPage::Other => {}
                FromPage::Closed => return,
            }
        }
    }
    let _ = socket.send(Message::Close(None)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, host.parse().unwrap());
        if let Some(o) = origin {
            h.insert(header::ORIGIN, o.parse().unwrap());
        }
        h
    }

    /// An origin of `scheme` and `host`.
    fn at(scheme: &str, host: &str) -> String {
        format!("{scheme}://{host}")
    }

    #[test]
    fn only_the_pages_own_origin_may_open_the_websocket() {
        let ok = |origin: &str, host: &str, allowed: &[String]| {
            origin_allowed(&headers(Some(origin), host), allowed, Some(8080))
        };
        for own in ["127.0.0.1:8080", "192.0.2.7:8080", "[::1]:8080", "localhost:8080"] {
            assert!(ok(&at("http", own), own, &[]), "{own}");
        }
        assert!(!ok(&at("http", "evil.example"), "127.0.0.1:8080", &[]));
        // DNS rebinding: the attacker's name, pointed at this machine, in Origin and Host alike.
        assert!(!ok(&at("http", "evil.example:8080"), "evil.example:8080", &[]), "a name is never the page's own");
        assert!(!ok(&at("https", "127.0.0.1:8080"), "127.0.0.1:8080", &[]), "this door serves http only");
        assert!(!ok(&at("http", "127.0.0.1:9090"), "127.0.0.1:9090", &[]), "another port is another page");
        assert!(!ok(&at("ftp", "127.0.0.1:8080"), "127.0.0.1:8080", &[]), "only web pages");
        assert!(!origin_allowed(&headers(None, "127.0.0.1:8080"), &[], Some(8080)), "no Origin: not a page of ours");
        // A reverse proxy's address is the researcher's to give, scheme included.
        let public = "study.example.org";
        let allowed = vec![normal_origin(&(at("HTTPS", "Study.Example.org:443") + "/")).unwrap()];
        assert!(ok(&at("https", public), "127.0.0.1:8080", &allowed));
        assert!(ok(&at("https", public), public, &allowed));
        assert!(!ok(&at("http", public), public, &allowed), "the scheme too");
        assert!(!ok(&at("https", public), public, &[]), "a name needs --origin");
    }

    #[test]
    fn an_origin_given_is_taken_as_browsers_send_it_and_a_path_is_refused() {
        assert_eq!(normal_origin("https://study.example.org/").unwrap(), "https://study.example.org");
        assert_eq!(normal_origin("HTTPS://Study.Example.org:443").unwrap(), "https://study.example.org");
        assert_eq!(normal_origin(&at("http", "lab-pc.example:80")).unwrap(), at("http", "lab-pc.example"));
        assert_eq!(normal_origin(&at("http", "lab-pc.example:8080")).unwrap(), at("http", "lab-pc.example:8080"));
        for bad in
            ["study.example.org", "ftp://x.example", "https://x.example/study", "https://x.example?a=1", "https://"]
        {
            let e = normal_origin(bad).unwrap_err();
            assert!(e.contains(bad) && e.contains("no path"), "{bad}: {e}");
        }
    }

    #[test]
    fn behind_a_proxy_on_this_machine_the_participant_is_the_forwarded_address() {
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", HeaderValue::from_static("10.0.0.9, 203.0.113.7"));
        let loopback: std::net::IpAddr = "127.0.0.1".parse().unwrap();
        let remote: std::net::IpAddr = "198.51.100.2".parse().unwrap();
        assert_eq!(client_address(loopback, &h), Some("203.0.113.7".parse().unwrap()), "the proxy's own");
        assert_eq!(client_address(remote, &h), Some(remote), "a remote client cannot name another address");
        assert_eq!(client_address(loopback, &HeaderMap::new()), None, "a local peer forwarding none");
        h.append("x-forwarded-for", HeaderValue::from_static("not an address"));
        assert_eq!(client_address(loopback, &h), None);
    }

    #[test]
    fn prolific_ids_must_look_like_ids() {
        let q: HashMap<String, String> = [
            ("PROLIFIC_PID".to_string(), "5f0c1e2d3b4a59687766aabb".to_string()),
            ("STUDY_ID".to_string(), "x y".to_string()),
        ]
        .into();
        assert_eq!(prolific_value(&q, "PROLIFIC_PID").as_deref(), Some("5f0c1e2d3b4a59687766aabb"));
        assert_eq!(prolific_value(&q, "STUDY_ID"), None);
        assert_eq!(prolific_value(&q, "SESSION_ID"), None);
    }
}
