//! `ualign generate`: fills every model policy's pools through ONNX Runtime and every
//! server policy's through its server, with a progress bar; resumable, and Ctrl-C keeps
//! every finished pool. Also the pool filling
//! that `simulate` and `demo` do first.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

use ualign_core::pools::{Models, PoolDone, PoolError, PoolJob, Progress, pending_jobs};
use ualign_core::study::PolicySource;

/// Fill every model and server policy's candidate pools.
#[derive(clap::Args)]
pub(crate) struct Cmd {
    #[command(flatten)]
    target: super::StudyArgs,
    #[command(flatten)]
    engine: super::EngineArgs,
}

impl Cmd {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        let study = super::load_study(&self.target.study)?;
        let cancel = super::cancel_on_ctrl_c();
        open_and_fill(&study, self.target.db.as_ref(), self.engine, Some(&cancel)).map(drop)
    }
}

/// Opens (or creates) the study's database and fills every missing pool: `generate`,
/// `simulate` and `demo`. A new database is made only once every model it needs has
/// loaded, so a mistyped model folder leaves no empty database behind.
pub(crate) fn open_and_fill(
    study: &ualign_core::study::Study,
    db: Option<&std::path::PathBuf>,
    engine: super::EngineArgs,
    cancel: Option<&AtomicBool>,
) -> anyhow::Result<ualign_core::store::Store> {
    let mut models = Models::new(engine.ep.into(), engine.threads);
    if !super::db_path(study, db).exists() {
        models.preload(study)?;
    }
    let (mut store, _) = super::open_store(study, db)?;
    fill(study, &mut store, &mut models, cancel)?;
    Ok(store)
}

/// Opens (or creates) the study's database for pools filled later, on the engine's own
/// thread (`demo`): a new database is made only once every model folder it needs opens.
pub(crate) fn open_checked(
    study: &ualign_core::study::Study,
    db: Option<&std::path::PathBuf>,
) -> anyhow::Result<ualign_core::store::Store> {
    if !super::db_path(study, db).exists() {
        for n in Models::check_folders(study)? {
            eprintln!("notice: {n}");
        }
    }
    Ok(super::open_store(study, db)?.0)
}

/// The command that goes on filling this study's pools in this database: `--db` is named
/// unless it is the study's default.
pub(crate) fn again(study: &ualign_core::study::Study, store: &ualign_core::store::Store) -> String {
    let mut cmd = format!("ualign generate {}", super::shell_word(&study.path.display().to_string()));
    if store.path() != study.default_db_path() {
        cmd.push_str(&format!(" --db {}", super::shell_word(&store.path().display().to_string())));
    }
    cmd
}

/// Generates every missing pool with a progress bar: each server policy's pools on a
/// thread of its own (its own connection to the database; its requests overlap across
/// its pools, up to its `concurrency`), the models' pools one at a time on this thread
/// (each is one batch on the engine), all at once.
fn fill(
    study: &ualign_core::study::Study,
    store: &mut ualign_core::store::Store,
    models: &mut Models,
    cancel: Option<&AtomicBool>,
) -> anyhow::Result<()> {
    let jobs = pending_jobs(study, store)?;
    let progress = Progress::of(&jobs);
    if progress.candidates == 0 {
        println!("every pool of study `{}` is complete ({})", study.name, store.path().display());
        report_cuts(study, store)?;
        return Ok(());
    }
    let mut shown = Shown::new(progress);
    let is_server =
        |j: &PoolJob| study.policy(&j.policy).is_some_and(|p| matches!(p.source, PolicySource::Server { .. }));
    let by_server = check_servers(study, store, models, &jobs, &shown)?;
    let model_jobs: Vec<PoolJob> = jobs.iter().filter(|j| !is_server(j)).cloned().collect();
    let (path, db) = (store.path().to_path_buf(), &mut *store);
    // Ctrl-C, or a failure anywhere: every thread stops at its next request or pool.
    let halt = AtomicBool::new(false);
    let (tx, rx) = std::sync::mpsc::channel::<Filled>();
    let mut failures: Vec<PoolError> = Vec::new();
    std::thread::scope(|scope| {
        let mut threads: Vec<_> = by_server
            .into_iter()
            .map(|(policy, jobs)| {
                let (client, tx, path, halt) = (models.take_server(&policy), tx.clone(), path.clone(), &halt);
                scope.spawn(move || fill_server(study, &path, &policy, client, &jobs, halt, &tx))
            })
            .collect();
        let (tx_models, halt_models) = (tx.clone(), &halt);
        threads.push(scope.spawn(move || fill_models(study, db, models, &model_jobs, halt_models, &tx_models)));
        drop(tx);
        loop {
            match rx.recv_timeout(std::time::Duration::from_millis(100)) {
                Ok(Filled::Failed) => halt.store(true, Ordering::Relaxed),
                Ok(f) => shown.filled(f),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
            if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                halt.store(true, Ordering::Relaxed);
            }
        }
        for t in threads {
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failures.push(e),
                // A bug: shown as the panic it is, after every other thread has ended.
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
    });
    let done = shown.progress.candidates_done;
    if !failures.is_empty() {
        shown.bar.abandon();
        let interrupted = cancel.is_some_and(|c| c.load(Ordering::Relaxed));
        return Err(failed(study, store, failures, done, interrupted));
    }
    shown.bar.finish_and_clear();
    let secs = shown.start.elapsed().as_secs_f64();
    let tokens = shown.progress.tokens;
    println!(
        "generated {done} candidates ({tokens} tokens) in {secs:.1} s: {:.1} candidates/s, {:.0} tokens/s on {}",
        done as f64 / secs.max(1e-9),
        tokens as f64 / secs.max(1e-9),
        shown.providers.join(", ")
    );
    report_cuts(study, store)
}

/// The server policies' jobs, by policy, once every server has been asked for its models
/// (once, before any pool is filled), so that what it says, where each key goes and which
/// policy's server has moved are said first.
fn check_servers(
    study: &ualign_core::study::Study,
    store: &ualign_core::store::Store,
    models: &mut Models,
    jobs: &[PoolJob],
    shown: &Shown,
) -> anyhow::Result<BTreeMap<String, Vec<PoolJob>>> {
    let mut by_server: BTreeMap<String, Vec<PoolJob>> = BTreeMap::new();
    for j in jobs {
        if study.policy(&j.policy).is_some_and(|p| matches!(p.source, PolicySource::Server { .. })) {
            by_server.entry(j.policy.clone()).or_default().push(j.clone());
        }
    }
    for policy in by_server.keys().filter_map(|p| study.policy(p)) {
        models.server(policy)?;
    }
    shown.notices(models.take_notices());
    shown.notices(ualign_core::pools::moved_servers(study, store)?);
    Ok(by_server)
}

/// The error `generate` ends with: Ctrl-C is what is said first; else the first error,
/// the others printed above it; with how to go on where something was stored.
fn failed(
    study: &ualign_core::study::Study,
    store: &ualign_core::store::Store,
    failures: Vec<PoolError>,
    done: u64,
    interrupted: bool,
) -> anyhow::Error {
    // The threads a failure stopped report themselves cancelled: only the failures are
    // worth saying, and all of them, even when Ctrl-C came after.
    let mut real: Vec<PoolError> = failures.into_iter().filter(|e| !e.is_cancelled()).collect();
    // In the study's order, whichever thread failed first: the same run says the same.
    let order = |e: &PoolError| e.policy().and_then(|p| study.policies.iter().position(|q| q.name == p));
    real.sort_by_key(|e| order(e).unwrap_or(usize::MAX));
    if interrupted || real.is_empty() {
        for e in &real {
            eprintln!("error: {e}");
        }
        return anyhow::anyhow!(
            "interrupted: {done} candidates stored in {}, the unfinished pools were discarded; run `{}` to continue",
            store.path().display(),
            again(study, store)
        );
    }
    let e = real.remove(0);
    for other in &real {
        eprintln!("error: {other}");
    }
    if done == 0 {
        return e.into();
    }
    anyhow::Error::new(e).context(format!(
        "{done} candidates were stored in {} before this error; run `{}` once it is fixed",
        store.path().display(),
        again(study, store)
    ))
}

/// What a filling thread reports to the progress bar.
enum Filled {
    /// Pool `.1` of its thread's jobs is stored.
    Pool(PoolDone, String),
    Notices(Vec<String>),
    /// The thread failed: the others are to stop.
    Failed,
}

/// The model policies' pools, one at a time (each is one batch on the engine).
fn fill_models(
    study: &ualign_core::study::Study,
    store: &mut ualign_core::store::Store,
    models: &mut Models,
    jobs: &[PoolJob],
    halt: &AtomicBool,
    tx: &std::sync::mpsc::Sender<Filled>,
) -> Result<(), PoolError> {
    for job in jobs {
        let result = models.run_job(study, store, job, Some(halt));
        let _ = tx.send(Filled::Notices(models.take_notices()));
        match result {
            Ok(d) => {
                let _ = tx.send(Filled::Pool(d, format!("{} / {}", job.policy, job.prompt_id)));
            }
            Err(e) => {
                let _ = tx.send(Filled::Failed);
                return Err(e);
            }
        }
    }
    Ok(())
}

/// One server policy's pools, on its own thread and connection; `client` is the policy's
/// client where the check before the run made one.
fn fill_server(
    study: &ualign_core::study::Study,
    db: &std::path::Path,
    policy: &str,
    client: Option<ualign_engine::server::ServerClient>,
    jobs: &[PoolJob],
    halt: &AtomicBool,
    tx: &std::sync::mpsc::Sender<Filled>,
) -> Result<(), PoolError> {
    let result = (|| {
        let (mut store, _) = ualign_core::store::Store::open_for_study(db, study)?;
        let mut models = Models::new(ualign_engine::EpChoice::Cpu, None);
        if let Some(c) = client {
            models.adopt_server(policy, c);
        }
        let result = models.run_server_jobs(study, &mut store, jobs, Some(halt), &mut |job, d| {
            let _ = tx.send(Filled::Pool(d.clone(), format!("{} / {}", job.policy, job.prompt_id)));
        });
        let _ = tx.send(Filled::Notices(models.take_notices()));
        result
    })();
    if result.as_ref().is_err_and(|e| !e.is_cancelled()) {
        let _ = tx.send(Filled::Failed);
    }
    result
}

/// The progress bar and what it counts.
struct Shown {
    bar: ProgressBar,
    progress: Progress,
    start: Instant,
    /// Where the candidates came from, each once, in order.
    providers: Vec<String>,
}

impl Shown {
    fn new(progress: Progress) -> Self {
        let bar = ProgressBar::new(progress.candidates);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} candidates {msg} (ETA {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Self { bar, progress, start: Instant::now(), providers: Vec::new() }
    }

    fn filled(&mut self, f: Filled) {
        match f {
            Filled::Pool(d, what) => self.pool(&d, &what),
            Filled::Notices(n) => self.notices(n),
            Filled::Failed => {}
        }
    }

    fn pool(&mut self, d: &PoolDone, what: &str) {
        self.progress.pool_done(Some(d));
        if !self.providers.contains(&d.provider) {
            self.providers.push(d.provider.clone());
        }
        let secs = self.start.elapsed().as_secs_f64().max(1e-9);
        let p = &self.progress;
        self.bar.set_position(p.candidates_done);
        self.bar.set_message(format!(
            "· {}/{} pools · {:.1} cand/s · {:.0} tok/s · {what} done ({})",
            p.pools_done,
            p.pools,
            p.candidates_done as f64 / secs,
            p.tokens as f64 / secs,
            d.provider
        ));
    }

    /// Notices above the bar (or on stderr where the bar is hidden, as when stderr is not
    /// a terminal: indicatif drops a hidden bar's lines).
    fn notices(&self, notices: Vec<String>) {
        for n in notices {
            if self.bar.is_hidden() {
                eprintln!("notice: {n}");
            } else {
                self.bar.println(format!("notice: {n}"));
            }
        }
    }
}

/// Says, per policy, how many candidates stopped at their length limit and what
/// participants will see of them (the study's `on_length`).
fn report_cuts(study: &ualign_core::study::Study, store: &ualign_core::store::Store) -> anyhow::Result<()> {
    for line in cut_lines(study, &store.length_cuts()?) {
        println!("{line}");
    }
    Ok(())
}

/// The lines of [`report_cuts`], for the counts `(policy, cut, candidates)`.
pub(crate) fn cut_lines(study: &ualign_core::study::Study, counts: &[(String, i64, i64)]) -> Vec<String> {
    use ualign_core::study::OnLength;
    let mut lines = Vec::new();
    for (name, cut, total) in counts {
        let Some(policy) = study.policy(name).filter(|_| *cut > 0) else { continue };
        let limit = match &policy.source {
            PolicySource::Model { decoding, .. } | PolicySource::Server { decoding, .. } => {
                format!("max_new_tokens = {}", decoding.max_new_tokens)
            }
            PolicySource::Imported => "the length limit of the lines imported".to_string(),
        };
        let shown = match policy.on_length {
            OnLength::Keep => {
                "participants see them cut mid-sentence, which can bias picks against long answers: raise max_new_tokens, or set on_length = \"trim\" (end at the last sentence) or \"mark\" (say it was cut) on the policy"
            }
            OnLength::Trim => "participants see each up to its last sentence end (on_length = \"trim\")",
            OnLength::Mark => "participants see each with a line saying it was cut off (on_length = \"mark\")",
        };
        lines.push(format!("policy `{name}`: {cut} of {total} candidates stopped at {limit}; {shown}"));
    }
    lines
}
