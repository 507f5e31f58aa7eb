//! `ualign serve`: the participant screens over SSH and in a browser, for participants
//! elsewhere, many at once on one database (see `serve` for how it is built).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use super::values;
use crate::serve::{self, Auth, Doors, Hub, Limits};
use ualign_core::pools::PoolWorker;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum AuthArg {
    /// Only `ualign invite` codes (as the SSH user or password, or ?invite= in the browser)
    Invite,
    /// One shared study password (UALIGN_SERVE_PASSWORD or --password-file)
    Password,
    /// Anyone; the ID screen gives out pseudonyms
    Open,
}

#[derive(clap::Args)]
pub(crate) struct Cmd {
    #[command(flatten)]
    target: super::StudyArgs,
    /// SSH address to listen on (a bare port means 127.0.0.1:PORT)
    #[arg(long, value_parser = address)]
    ssh: Option<SocketAddr>,
    /// HTTP address for the browser page (a bare port means 127.0.0.1:PORT)
    #[arg(long, value_parser = address)]
    http: Option<SocketAddr>,
    /// Who may take part
    #[arg(long, value_enum, default_value = "invite")]
    auth: AuthArg,
    /// File whose first line is the study password (else UALIGN_SERVE_PASSWORD), for --auth password
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// Another origin the browser page may be served from, scheme, host and port (a host name participants type, or a reverse proxy's https address; an IP address or localhost needs none), repeatable
    #[arg(long)]
    origin: Vec<String>,
    /// Participant sessions at once, 1 to 10000
    #[arg(long, default_value = "200", value_parser = values::whole::<usize, 1, 10_000>)]
    max_sessions: usize,
    /// Participant sessions from one address at once (raise it for a class behind one NAT), 1 to 10000
    #[arg(long, default_value = "32", value_parser = values::whole::<usize, 1, 10_000>)]
    max_sessions_per_address: usize,
    /// Connections signing in from one address at once (raise it for a class behind one NAT), 1 to 10000
    #[arg(long, default_value = "16", value_parser = values::whole::<usize, 1, 10_000>)]
    max_pending_per_address: usize,
    /// Minutes without a key press before a session is closed (its answers are saved), 0.05 to 1440
    #[arg(long, default_value = "30", value_parser = values::minutes)]
    idle_minutes: f64,
    /// Connection attempts per address per minute (also the burst allowed at once), 1 to 100000
    #[arg(long, default_value = "60", value_parser = values::whole::<u32, 1, 100_000>)]
    rate_limit: u32,
    /// Seconds a browser may take to send a request's headers, or keep an idle connection open between requests, 1 to 600
    #[arg(long, default_value = "20", value_parser = values::whole::<u64, 1, 600>)]
    request_timeout: u64,
    #[command(flatten)]
    engine: super::EngineArgs,
}

/// `PORT` or `ADDR:PORT`.
fn address(s: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    s.parse().map_err(|_| format!("`{s}` is not an address: give PORT or ADDR:PORT, e.g. 2222 or 0.0.0.0:2222"))
}

impl Cmd {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.ssh.is_some() || self.http.is_some(),
            "give at least one door: --ssh PORT (participants connect with ssh) and/or --http PORT (a browser page)"
        );
        let (study, store, _) = self.target.open()?;
        let auth = self.auth()?;
        if matches!(auth, Auth::Invite) {
            let (made, used) = store.invitation_counts()?;
            anyhow::ensure!(
                made > 0,
                "--auth invite (the default) admits only invitation codes, and {} has none yet: run `ualign invite {} --count N --out invites.csv` first, or choose --auth password or --auth open",
                store.path().display(),
                self.target.study.display()
            );
            println!("invitations: {made} made, {used} used");
        }
        let missing = ualign_core::pools::pending_jobs(&study, &store)?;
        let has_models = study.policies.iter().any(|p| p.source.is_generated());
        let db = store.path().to_path_buf();
        if !missing.is_empty() {
            println!(
                "pools: {} still to generate; they are generated as participants need them, the waiting participants' first (run `{}` beforehand so that nobody waits)",
                missing.len(),
                super::generate::again(&study, &store)
            );
        }
        drop(store);
        let worker = has_models.then(|| {
            let mut w = PoolWorker::spawn(study.clone(), db.clone(), self.engine.ep.into(), self.engine.threads);
            // Between participants' requests the engine fills what is left.
            if !missing.is_empty() {
                w.request_background(missing);
            }
            w
        });
        let limits = Limits {
            max_sessions: self.max_sessions,
            max_sessions_per_address: self.max_sessions_per_address,
            max_pending_per_address: self.max_pending_per_address,
            idle_timeout: Duration::from_secs_f64(self.idle_minutes * 60.0),
            per_address_per_minute: self.rate_limit,
            request_timeout: Duration::from_secs(self.request_timeout),
            ..Limits::default()
        };
        let name = study.name.clone();
        let mut hub = Hub::new(study, db.clone(), auth, limits, worker)?;
        hub.origins = self
            .origin
            .iter()
            .map(|o| serve::normal_origin(o))
            .collect::<Result<_, _>>()
            .map_err(anyhow::Error::msg)?;
        let stop = super::cancel_on_ctrl_c();
        let _ = signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone());
        let auth_name = self.auth_name();
        let origins_given = !self.origin.is_empty();
        serve::run(hub, Doors { ssh: self.ssh, http: self.http }, &stop, Duration::from_secs(10), |at| {
            println!("ualign serve: study `{name}`, database {}, --auth {auth_name}", db.display());
            if let Some((addr, fingerprint)) = &at.ssh {
                let who = if auth_name == "invite" { "CODE" } else { "ID" };
                // ssh takes an IPv6 address without brackets.
                let at = host(addr).trim_matches(|c| c == '[' || c == ']').to_string();
                println!("  ssh:     ssh -p {} {who}@{at}   (host key {fingerprint})", addr.port());
            }
            if let Some(addr) = &at.http {
                let query = if auth_name == "invite" { "/?invite=CODE" } else { "/" };
                // serve speaks plain HTTP; TLS is a reverse proxy's.
                let scheme = "http";
                println!("  browser: {scheme}://{}:{}{query}", host(addr), addr.port());
                if !origins_given {
                    println!(
                        "           (at an IP address or localhost; a host name, or a reverse proxy's https address, needs --origin URL)"
                    );
                }
            }
            println!("  Ctrl-C stops: participants are told their answers are saved and how to come back.");
        })
    }

    fn auth_name(&self) -> &'static str {
        match self.auth {
            AuthArg::Invite => "invite",
            AuthArg::Password => "password",
            AuthArg::Open => "open",
        }
    }

    fn auth(&self) -> anyhow::Result<Auth> {
        Ok(match self.auth {
            AuthArg::Invite => Auth::Invite,
            AuthArg::Open => Auth::Open,
            AuthArg::Password => {
                let secret = match &self.password_file {
                    Some(f) => std::fs::read_to_string(f)
                        .with_context(|| format!("cannot read the password file {}", f.display()))?
                        .lines()
                        .next()
                        .unwrap_or("")
                        .to_string(),
                    None => std::env::var("UALIGN_SERVE_PASSWORD").unwrap_or_default(),
                };
                anyhow::ensure!(
                    secret.chars().count() >= 8,
                    "--auth password needs the study password (at least 8 characters) in UALIGN_SERVE_PASSWORD or the first line of --password-file FILE"
                );
                Auth::Password(secret)
            }
        })
    }
}

/// How a participant names this machine: the address itself, or for 0.0.0.0 / :: a
/// placeholder for the machine's name.
fn host(addr: &SocketAddr) -> String {
    match addr.ip() {
        ip if ip.is_unspecified() => "THIS-MACHINE".into(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    }
}
