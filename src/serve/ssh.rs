//! The SSH door (russh): `ssh -p PORT ID@host` opens the participant screens, sized to the
//! client's terminal and redrawn when its window changes. Only that ever runs: a command
//! (`ssh host cmd`), a subsystem (sftp), port, agent and X11 forwarding and environment
//! variables are refused, and a connection may open one session channel. Sign-in: the
//! user name (or the password) is an invitation code under `--auth invite`; under
//! `password` the password is the study's; under `open` anyone comes in. A user name the
//! study accepts as a participant id is used as one, anything else gets the ID screen.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use russh::keys::{HashAlg, PrivateKey};
use russh::server::{Auth, Msg, Session};
use russh::{Channel, ChannelId, MethodKind, MethodSet, Pty};

use super::limits::{Place, Refusal};
use super::screen::{self, Out, ScreenInput, Start};
use super::{Admission, Hub};
use crate::tui::input::InputParser;
use crate::tui::text;

/// How long one write to a client may wait for its window to open before it is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(20);

/// The server's host key beside the database (`<db>.ssh-host-key`, owner-only), made on
/// first start; with its SHA-256 fingerprint as `ssh` shows it.
pub(crate) fn host_key(db: &Path) -> anyhow::Result<(PrivateKey, String)> {
    let path = key_path(db);
    let key = if path.exists() {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| anyhow::anyhow!("cannot read the SSH host key {}: {e}", path.display()))?;
        PrivateKey::from_openssh(text.as_bytes()).map_err(|e| {
            anyhow::anyhow!(
                "{} is not an OpenSSH private key ({e}); move it away and a new host key is made (participants' ssh will then warn that the key changed)",
                path.display()
            )
        })?
    } else {
        let mut seed = [0u8; 32];
        rand::Rng::fill(&mut rand::rng(), &mut seed);
        let key = PrivateKey::from(russh::keys::ssh_key::private::Ed25519Keypair::from_seed(&seed));
        let text = key.to_openssh(russh::keys::ssh_key::LineEnding::LF)?;
        write_owner_only(&path, text.as_bytes())?;
        key
    };
    let fingerprint = key.public_key().fingerprint(HashAlg::Sha256).to_string();
    Ok((key, fingerprint))
}

pub(crate) fn key_path(db: &Path) -> std::path::PathBuf {
    let mut name = db.as_os_str().to_os_string();
    name.push(".ssh-host-key");
    name.into()
}

/// Creates `path` new with mode 0600 and writes `bytes`.
fn write_owner_only(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot create the SSH host key {}: {e}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

/// russh's settings: only the password and none methods, a bounded sign-in, a window and
/// packet size of its defaults, keep-alives that find a vanished client.
fn config(hub: &Hub, key: PrivateKey) -> russh::server::Config {
    russh::server::Config {
        server_id: russh::SshId::Standard(format!("SSH-2.0-ualign_{}", env!("CARGO_PKG_VERSION")).into()),
        methods: MethodSet::from(&[MethodKind::None, MethodKind::Password][..]),
        auth_rejection_time: Duration::from_millis(500),
        auth_rejection_time_initial: Some(Duration::ZERO),
        max_auth_attempts: 4,
        keys: vec![key],
        inactivity_timeout: Some(hub.limits.idle_timeout + Duration::from_secs(60)),
        keepalive_interval: Some(Duration::from_secs(30)),
        keepalive_max: 3,
        nodelay: true,
        ..Default::default()
    }
}

/// Accepts SSH connections on `listener` until the server stops.
pub(crate) async fn listen(hub: Arc<Hub>, listener: tokio::net::TcpListener, key: PrivateKey) {
    let config = Arc::new(config(&hub, key));
    loop {
        let Ok((stream, peer)) = listener.accept().await else { continue };
        let Ok(pending) = hub.allow_connection(peer.ip()) else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let conn = Conn::new(hub.clone(), pending, peer.ip());
        let (config, deadline) = (config.clone(), hub.limits.sign_in_timeout);
        let signed_in = conn.signed_in.clone();
        tokio::spawn(async move {
            let Ok(Ok(session)) = tokio::time::timeout(deadline, russh::server::run_stream(config, stream, conn)).await
            else {
                return;
            };
            let handle = session.handle();
            tokio::spawn(async move {
                tokio::time::sleep(deadline).await;
                if !signed_in.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = handle
                        .disconnect(russh::Disconnect::ByApplication, "sign-in took too long".into(), String::new())
                        .await;
                }
            });
            let _ = session.await;
        });
    }
}

/// One SSH connection.
struct Conn {
    hub: Arc<Hub>,
    number: u64,
    /// A place among the connections signing in, given back once signed in.
    pending: Option<Place>,
    peer: std::net::IpAddr,
    signed_in: Arc<std::sync::atomic::AtomicBool>,
    admitted: Option<Admission>,
    channel: Option<ChannelId>,
    size: Option<(u16, u16)>,
    input: Option<ScreenInput>,
    parser: InputParser,
}

impl Conn {
    fn new(hub: Arc<Hub>, pending: Place, peer: std::net::IpAddr) -> Self {
        let number = hub.connection_number();
        Self {
            hub,
            number,
            pending: Some(pending),
            peer,
            signed_in: Default::default(),
            admitted: None,
            channel: None,
            size: None,
            input: None,
            parser: InputParser::new(),
        }
    }

    fn decide(&mut self, user: &str, password: Option<&str>) -> Auth {
        match self.hub.admit(Some(user), password) {
            Admission::Refused => Auth::Reject {
                proceed_with_methods: Some(MethodSet::from(&[MethodKind::Password][..])),
                partial_success: false,
            },
            a => {
                self.admitted = Some(a);
                Auth::Accept
            }
        }
    }

    /// Refuses the request on `channel` and ends it (the message on its stderr is for
    /// clients that show it; OpenSSH says only that the request failed).
    fn refuse_channel(&self, channel: ChannelId, session: &mut Session, message: &str) -> Result<(), russh::Error> {
        session.channel_failure(channel)?;
        let text = format!("{}\r\n", message.replace('\n', "\r\n"));
        session.extended_data(channel, 1, text.into_bytes())?;
        session.exit_status_request(channel, 1)?;
        session.eof(channel)?;
        session.close(channel)
    }

    /// A shell that cannot start (no terminal, a full study): the participant reads why
    /// in their own terminal, then the channel closes.
    fn tell_and_close(&self, channel: ChannelId, session: &mut Session, message: &str) -> Result<(), russh::Error> {
        self.answer_and_close(channel, session, message, None)
    }

    /// The request on `channel` taken, `message` sent on its output (or, with `stream`,
    /// that extended stream: 1 is stderr), exit status 1, and the channel closed.
    fn answer_and_close(
        &self,
        channel: ChannelId,
        session: &mut Session,
        message: &str,
        stream: Option<u32>,
    ) -> Result<(), russh::Error> {
        session.channel_success(channel)?;
        let text = format!("{}\r\n", message.replace('\n', "\r\n")).into_bytes();
        match stream {
            Some(code) => session.extended_data(channel, code, text)?,
            None => session.data(channel, text)?,
        }
        session.exit_status_request(channel, 1)?;
        session.eof(channel)?;
        session.close(channel)
    }

    /// Starts the participant screens on `channel`, and the task that sends them.
    fn start_screen(&mut self, channel: ChannelId, session: &mut Session) -> Result<(), russh::Error> {
        let Some(size) = self.size else {
            return self.tell_and_close(channel, session, text::SERVE_NEED_TERMINAL);
        };
        let place = match self.hub.take_session(Some(self.peer)) {
            Ok(place) => place,
            Err(Refusal::AddressFull) => return self.tell_and_close(channel, session, text::SERVE_ADDRESS_FULL),
            Err(_) => return self.tell_and_close(channel, session, text::SERVE_FULL),
        };
        let who = match &self.admitted {
            Some(Admission::As(id)) => Some(id.clone()),
            _ => None,
        };
        let start = Start { who, client: "ssh".into(), size, connection: self.number, place, vouched: false };
        let Ok((input, mut output)) = screen::spawn(self.hub.clone(), start) else {
            return self.tell_and_close(channel, session, text::SERVE_CANNOT_START);
        };
        session.channel_success(channel)?;
        self.input = Some(input);
        let handle = session.handle();
        tokio::spawn(async move {
            while let Some(out) = output.rx.recv().await {
                if let Out::Frame(bytes) = &out {
                    match tokio::time::timeout(WRITE_TIMEOUT, handle.data(channel, bytes.clone())).await {
                        Ok(Ok(())) => {}
                        _ => break,
                    }
                }
                output.written(&out);
            }
            let _ = handle.exit_status_request(channel, 0).await;
            let _ = handle.eof(channel).await;
            let _ = handle.close(channel).await;
        });
        Ok(())
    }
}

impl russh::server::Handler for Conn {
    type Error = russh::Error;

    async fn auth_none(&mut self, user: &str) -> Result<Auth, Self::Error> {
        Ok(self.decide(user, None))
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        Ok(self.decide(user, Some(password)))
    }

    async fn auth_succeeded(&mut self, _session: &mut Session) -> Result<(), Self::Error> {
        self.pending = None;
        self.signed_in.store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.channel.is_none() {
            self.channel = Some(channel.id());
            reply.accept().await;
        } else {
            reply.reject(russh::ChannelOpenFailure::AdministrativelyProhibited).await;
        }
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        columns: u32,
        rows: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if Some(channel) != self.channel || self.input.is_some() {
            return session.channel_failure(channel);
        }
        self.size = Some(screen::clamp_size(columns, rows));
        session.channel_success(channel)
    }

    async fn shell_request(&mut self, channel: ChannelId, session: &mut Session) -> Result<(), Self::Error> {
        if Some(channel) != self.channel || self.input.is_some() {
            return session.channel_failure(channel);
        }
        self.start_screen(channel, session)
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        _data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // Nothing runs; taken only so that OpenSSH prints why (it prints nothing but
        // "exec request failed" for a refused one) and exits with 1.
        self.answer_and_close(channel, session, text::SERVE_ONLY_STUDY, Some(1))
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse_channel(channel, session, text::SERVE_ONLY_STUDY)
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        _value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single: bool,
        _protocol: &str,
        _cookie: &str,
        _screen: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)
    }

    async fn agent_request(&mut self, _channel: ChannelId, _session: &mut Session) -> Result<bool, Self::Error> {
        Ok(false)
    }

    async fn tcpip_forward(
        &mut self,
        _address: &str,
        _port: &mut u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        Ok(false)
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        _host: &str,
        _port: u32,
        _originator: &str,
        _originator_port: u32,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply.reject(russh::ChannelOpenFailure::AdministrativelyProhibited).await;
        Ok(())
    }

    async fn data(&mut self, channel: ChannelId, data: &[u8], session: &mut Session) -> Result<(), Self::Error> {
        let Some(input) = &self.input else { return Ok(()) };
        if Some(channel) != self.channel {
            return Ok(());
        }
        for ev in self.parser.feed(data) {
            if !input.send(ev) {
                // The screen has ended.
                self.input = None;
                return session.close(channel);
            }
        }
        Ok(())
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        columns: u32,
        rows: u32,
        _pix_width: u32,
        _pix_height: u32,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let (Some(input), true) = (&self.input, Some(channel) == self.channel) {
            let (c, r) = screen::clamp_size(columns, rows);
            input.send(ratatui::crossterm::event::Event::Resize(c, r));
        }
        Ok(())
    }

    async fn channel_eof(&mut self, _channel: ChannelId, _session: &mut Session) -> Result<(), Self::Error> {
        self.input = None;
        Ok(())
    }

    async fn channel_close(&mut self, _channel: ChannelId, _session: &mut Session) -> Result<(), Self::Error> {
        self.input = None;
        Ok(())
    }
}
