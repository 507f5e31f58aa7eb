//! `ualign generate`: fills every model policy's pools through ONNX Runtime and every
//! server policy's through its server, with a progress bar; resumable, and Ctrl-C keeps
//! every finished pool. Also the pool filling
//! that `simulate` and `demo` do first.

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

use ualign_core::pools::{Models, PoolDone, Progress, pending_jobs};
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

/// Generates every missing pool with a progress bar.
fn fill(
    study: &ualign_core::study::Study,
    store: &mut ualign_core::store::Store,
    models: &mut Models,
    cancel: Option<&AtomicBool>,
) -> anyhow::Result<()> {
    let jobs = pending_jobs(study, store)?;
    let mut progress = Progress::of(&jobs);
    if progress.candidates == 0 {
        println!("every pool of study `{}` is complete ({})", study.name, store.path().display());
        report_cuts(study, store)?;
        return Ok(());
    }
    let bar = ProgressBar::new(progress.candidates);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} candidates {msg} (ETA {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    notices(&bar, models);
    let start = Instant::now();
    let mut provider = String::new();
    let mut at = 0;
    while at < jobs.len() {
        // A server policy's pools go together, so that its requests overlap across pools;
        // a model's pools go one at a time (each is one batch on the engine).
        let job = &jobs[at];
        let server = study.policy(&job.policy).is_some_and(|p| matches!(p.source, PolicySource::Server { .. }));
        let end = if server { at + jobs[at..].iter().take_while(|j| j.policy == job.policy).count() } else { at + 1 };
        let group = &jobs[at..end];
        at = end;
        bar.set_message(format!("· {} / {}", job.policy, job.prompt_id));
        let mut on_pool = |d: &PoolDone| {
            progress.pool_done(Some(d));
            provider.clone_from(&d.provider);
            let secs = start.elapsed().as_secs_f64().max(1e-9);
            bar.set_position(progress.candidates_done);
            bar.set_message(format!(
                "· {}/{} pools · {:.1} cand/s · {:.0} tok/s · {provider}",
                progress.pools_done,
                progress.pools,
                progress.candidates_done as f64 / secs,
                progress.tokens as f64 / secs
            ));
        };
        let result = if server {
            models.run_server_jobs(study, store, group, cancel, &mut |_, d| on_pool(d))
        } else {
            models.run_job(study, store, job, cancel).map(|d| on_pool(&d))
        };
        notices(&bar, models);
        match result {
            Ok(()) => {}
            Err(e) if e.is_cancelled() => {
                bar.abandon();
                anyhow::bail!(
                    "interrupted: {} candidates stored in {}, the unfinished pools were discarded; run `{}` to continue",
                    progress.candidates_done,
                    store.path().display(),
                    again(study, store)
                );
            }
            Err(e) if progress.candidates_done == 0 => {
                bar.abandon();
                return Err(e.into());
            }
            Err(e) => {
                bar.abandon();
                return Err(anyhow::Error::new(e).context(format!(
                    "{} candidates were stored in {} before this error; run `{}` once it is fixed",
                    progress.candidates_done,
                    store.path().display(),
                    again(study, store)
                )));
            }
        }
    }
    bar.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    let (done, tokens) = (progress.candidates_done, progress.tokens);
    println!(
        "generated {done} candidates ({tokens} tokens) in {secs:.1} s: {:.1} candidates/s, {:.0} tokens/s on {provider}",
        done as f64 / secs.max(1e-9),
        tokens as f64 / secs.max(1e-9)
    );
    report_cuts(study, store)
}

/// The models' and servers' notices, above the bar (or on stderr where the bar is hidden,
/// as when stderr is not a terminal: indicatif drops a hidden bar's lines).
fn notices(bar: &ProgressBar, models: &mut Models) {
    for n in models.take_notices() {
        if bar.is_hidden() {
            eprintln!("notice: {n}");
        } else {
            bar.println(format!("notice: {n}"));
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
