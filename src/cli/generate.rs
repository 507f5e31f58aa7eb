//! `ualign generate`: fills every model policy's pools through ONNX Runtime and every
//! server policy's through its server, with a progress bar; resumable, and Ctrl-C keeps
//! every finished pool. Also the pool filling
//! that `simulate` and `demo` do first.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
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
    shown.notices(models.take_notices());
    let is_server =
        |j: &PoolJob| study.policy(&j.policy).is_some_and(|p| matches!(p.source, PolicySource::Server { .. }));
    let mut by_server: BTreeMap<String, Vec<PoolJob>> = BTreeMap::new();
    for j in jobs.iter().filter(|j| is_server(j)) {
        by_server.entry(j.policy.clone()).or_default().push(j.clone());
    }
    let path = store.path().to_path_buf();
    let (tx, rx) = std::sync::mpsc::channel::<Filled>();
    let mut failures: Vec<PoolError> = Vec::new();
    std::thread::scope(|scope| {
        let threads: Vec<_> = by_server
            .into_iter()
            .map(|(policy, jobs)| {
                let (client, tx, path) = (models.take_server(&policy), tx.clone(), path.clone());
                scope.spawn(move || fill_server(study, &path, &policy, client, &jobs, cancel, &tx))
            })
            .collect();
        drop(tx);
        for job in jobs.iter().filter(|j| !is_server(j)) {
            shown.message(format!("· {} / {}", job.policy, job.prompt_id));
            let result = models.run_job(study, store, job, cancel);
            shown.notices(models.take_notices());
            while let Ok(f) = rx.try_recv() {
                shown.filled(f);
            }
            match result {
                Ok(d) => shown.pool(&d),
                Err(e) => {
                    failures.push(e);
                    break;
                }
            }
        }
        for f in rx {
            shown.filled(f);
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
        return Err(failed(study, store, failures, done));
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

/// The error `generate` ends with: Ctrl-C is what is said first; else the first error,
/// the others printed above it; with how to go on where something was stored.
fn failed(
    study: &ualign_core::study::Study,
    store: &ualign_core::store::Store,
    mut failures: Vec<PoolError>,
    done: u64,
) -> anyhow::Error {
    if let Some(i) = failures.iter().position(PoolError::is_cancelled) {
        failures.swap(0, i);
    }
    let e = failures.remove(0);
    if e.is_cancelled() {
        return anyhow::anyhow!(
            "interrupted: {done} candidates stored in {}, the unfinished pools were discarded; run `{}` to continue",
            store.path().display(),
            again(study, store)
        );
    }
    for other in &failures {
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

/// What a server policy's thread reports to the progress bar.
enum Filled {
    Pool(PoolDone),
    Notices(Vec<String>),
}

/// One server policy's pools, on its own thread and connection; `client` is the policy's
/// client where the check before the run made one.
fn fill_server(
    study: &ualign_core::study::Study,
    db: &std::path::Path,
    policy: &str,
    client: Option<ualign_engine::server::ServerClient>,
    jobs: &[PoolJob],
    cancel: Option<&AtomicBool>,
    tx: &std::sync::mpsc::Sender<Filled>,
) -> Result<(), PoolError> {
    let (mut store, _) = ualign_core::store::Store::open_for_study(db, study)?;
    let mut models = Models::new(ualign_engine::EpChoice::Cpu, None);
    if let Some(c) = client {
        models.adopt_server(policy, c);
    }
    let result = models.run_server_jobs(study, &mut store, jobs, cancel, &mut |_, d| {
        let _ = tx.send(Filled::Pool(d.clone()));
    });
    let _ = tx.send(Filled::Notices(models.take_notices()));
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

    fn message(&self, m: String) {
        self.bar.set_message(m);
    }

    fn filled(&mut self, f: Filled) {
        match f {
            Filled::Pool(d) => self.pool(&d),
            Filled::Notices(n) => self.notices(n),
        }
    }

    fn pool(&mut self, d: &PoolDone) {
        self.progress.pool_done(Some(d));
        if !self.providers.contains(&d.provider) {
            self.providers.push(d.provider.clone());
        }
        let secs = self.start.elapsed().as_secs_f64().max(1e-9);
        let p = &self.progress;
        self.bar.set_position(p.candidates_done);
        self.bar.set_message(format!(
            "· {}/{} pools · {:.1} cand/s · {:.0} tok/s · {}",
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
