//! Command-line interface: one file per subcommand, each a clap `Cmd` with a thin `run`.

mod check;
mod convert;
mod dashboard;
mod demo;
mod export;
mod generate;
mod import;
mod init;
mod invite;
mod plot;
mod power;
mod restore;
mod run;
mod sample;
mod serve;
mod simulate;
mod stats;
mod validate;
mod values;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use ualign_core::study::{self, Study};

#[derive(Parser)]
#[command(name = "ualign", version, about = "Human user studies of test-time-scaling alignment, in the terminal")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The whole tool on the embedded default model and demo study, in one command
    Demo(demo::Cmd),
    /// Run the study for one participant in the terminal (resumable)
    Run(run::Cmd),
    /// Report empirical f(k) against k/(k+1) from the answers so far
    Stats(stats::Cmd),
    /// Live view for the researcher, refreshing as answers arrive
    Dashboard(dashboard::Cmd),
    /// Draw the f(k) figure (SVG or PNG) for a paper
    Plot(plot::Cmd),
    /// Participants needed for a target on f(k), simulated from an assumed population or a pilot
    Power(power::Cmd),
    /// Synthetic participants (cyclic, condorcet:P, pl:S, mallows:PHI:C, plmix:C:S) through the real scheduler and store
    Simulate(simulate::Cmd),
    /// Check a study file and report every problem with its location
    Validate(validate::Cmd),
    /// Create (or open) the study's database and record the study
    Init(init::Cmd),
    /// Fill an imported policy's pools from a JSONL file of candidates
    Import(import::Cmd),
    /// Write candidates, trials with answers, and participants as CSV or JSONL
    Export(export::Cmd),
    /// Fill every model policy's candidate pools through ONNX Runtime (resumable)
    Generate(generate::Cmd),
    /// Try a model folder without a study: k candidates for one prompt
    Sample(sample::Cmd),
    /// Write the study text stored in the database back to the study file (the edited file is kept)
    Restore(restore::Cmd),
    /// Check that a study's database is sound (SQLite's full integrity and foreign-key checks)
    Check(check::Cmd),
    /// Write the ONNX model ualign builds from a GGUF file as a model folder
    Convert(convert::Cmd),
    /// Make single-participant invitation codes (the database keeps only their hashes)
    Invite(invite::Cmd),
    /// Serve the participant screens over SSH and in a browser, many participants at once
    Serve(serve::Cmd),
}

impl Cli {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self.command {
            Command::Demo(c) => c.run().map(|()| ExitCode::SUCCESS),
            Command::Run(c) => c.run().map(|()| ExitCode::SUCCESS),
            Command::Stats(c) => c.run().map(|()| ExitCode::SUCCESS),
            Command::Dashboard(c) => c.run().map(|()| ExitCode::SUCCESS),
            Command::Plot(c) => c.run().map(|()| ExitCode::SUCCESS),
            Command::Power(c) => c.run().map(|()| ExitCode::SUCCESS),
            Command::Simulate(c) => c.run().map(|()| ExitCode::SUCCESS),
            Command::Validate(c) => c.run(),
            Command::Init(c) => c.run().map(|()| ExitCode::SUCCESS),
            Command::Import(c) => c.run().map(|()| ExitCode::SUCCESS),
            Command::Export(c) => c.run().map(|()| ExitCode::SUCCESS),
            Command::Generate(c) => c.run().map(|()| ExitCode::SUCCESS),
            Command::Sample(c) => c.run(),
            Command::Restore(c) => c.run().map(|()| ExitCode::SUCCESS),
            Command::Check(c) => c.run().map(|()| ExitCode::SUCCESS),
            Command::Convert(c) => c.run().map(|()| ExitCode::SUCCESS),
            Command::Invite(c) => c.run().map(|()| ExitCode::SUCCESS),
            Command::Serve(c) => c.run().map(|()| ExitCode::SUCCESS),
        }
    }
}

/// The study file and its database, shared by every subcommand that works on a study.
#[derive(clap::Args)]
pub(crate) struct StudyArgs {
    /// The study file (TOML)
    pub(crate) study: PathBuf,
    /// Database file (default: db/<study name>.sqlite)
    #[arg(long)]
    pub(crate) db: Option<PathBuf>,
}

impl StudyArgs {
    /// Loads the study and opens its database (see [`open_store`]: a `--db` must hold it).
    pub(crate) fn open(&self) -> anyhow::Result<(Study, ualign_core::store::Store, ualign_core::store::Opened)> {
        let study = load_study(&self.study)?;
        let (store, opened) = open_store(&study, self.db.as_ref())?;
        Ok((study, store, opened))
    }

    /// Loads the study and opens its database, making it if it does not exist (`init`).
    pub(crate) fn create(&self) -> anyhow::Result<(Study, ualign_core::store::Store, ualign_core::store::Opened)> {
        let study = load_study(&self.study)?;
        let (store, opened) = create_store(&study, self.db.as_ref())?;
        Ok((study, store, opened))
    }

    /// [`Self::open_existing`] for a command that only reads: the database's integrity
    /// check runs beside the work and must be finished before results are shown.
    pub(crate) fn open_for_reading(
        &self,
    ) -> anyhow::Result<(Study, ualign_core::store::Store, ualign_core::store::IntegrityCheck)> {
        let study = load_study(&self.study)?;
        let (store, check) = ualign_core::store::Store::open_existing_for_reading(&db_path(&study, self.db.as_ref()))?;
        let store = checked_against(store, &study)?;
        Ok((study, store, check))
    }

    /// Loads the study and opens its existing database, checked against the study file.
    pub(crate) fn open_existing(&self) -> anyhow::Result<(Study, ualign_core::store::Store)> {
        let study = load_study(&self.study)?;
        let store =
            checked_against(ualign_core::store::Store::open_existing(&db_path(&study, self.db.as_ref()))?, &study)?;
        Ok((study, store))
    }
}

/// The database, refused if it was made from another study or another version of this one.
fn checked_against(mut store: ualign_core::store::Store, study: &Study) -> anyhow::Result<ualign_core::store::Store> {
    store.record_study(study).context("checking the database against the study file")?;
    note_if_reworded(&store, study)?;
    Ok(store)
}

/// A study file that opened its database but is not byte for byte the stored text
/// differs only in comments and layout: said once, since the stored text is the record.
fn note_if_reworded(store: &ualign_core::store::Store, study: &Study) -> anyhow::Result<()> {
    if store.study_text_differs(study)? {
        eprintln!(
            "note: {} differs from the study text stored in {} only in comments or layout; the stored text stays the study's record (`ualign restore {}` writes it back)",
            study.path.display(),
            store.path().display(),
            study.path.display()
        );
    }
    Ok(())
}

/// For a command that reads only what the database stores (`check`, `export`): the study
/// file names the database, and if the file now means something else (or does not load)
/// that is said, not refused, so a researcher can always inspect and recover what is
/// stored. Without `--db` the file must load far enough to name its database.
pub(crate) fn open_stored_for_reading(
    args: &StudyArgs,
) -> anyhow::Result<(ualign_core::store::Store, ualign_core::store::IntegrityCheck)> {
    let (study, path) = match (study::load(&args.study), args.db.as_ref()) {
        (Ok((study, _)), db) => {
            let path = db_path(&study, db);
            (Some(study), path)
        }
        (Err(e), Some(db)) => {
            eprintln!("note: {} does not load, so the database is read as it stands:\n{e}", args.study.display());
            (None, db.clone())
        }
        (Err(e), None) => {
            return Err(anyhow::Error::new(e)
                .context("the study file does not load, so its database is unknown: pass it with --db PATH"));
        }
    };
    let (store, check) = ualign_core::store::Store::open_existing_for_reading(&path)?;
    if let Some(study) = study {
        let changes = store.study_changes(&study)?;
        if changes.is_empty() {
            note_if_reworded(&store, &study)?;
        } else {
            eprintln!(
                "note: {} has changed in meaning since {} was made from it:\n  {}\n  what follows is the database's own study; `ualign restore {}` writes its text back to the file",
                study.path.display(),
                path.display(),
                changes.join("\n  "),
                study.path.display()
            );
        }
    }
    Ok((store, check))
}

/// Where generation runs: shared by every subcommand that may generate pools.
#[derive(clap::Args, Clone, Copy)]
pub(crate) struct EngineArgs {
    /// Execution provider: cpu, cuda (never falls back), or auto (CUDA, else CPU with a notice)
    #[arg(long, value_enum, default_value = "cpu")]
    pub(crate) ep: EpArg,
    /// Intra-op threads, 1 to 256 (default: ONNX Runtime's choice)
    #[arg(long, allow_negative_numbers = true, value_parser = values::whole::<usize, 1, { values::MAX_THREADS }>)]
    pub(crate) threads: Option<usize>,
}

/// `--ep`: the engine's [`EpChoice`](ualign_engine::EpChoice) as the command line names it.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum EpArg {
    Cpu,
    Cuda,
    /// CUDA when it works, else CPU with a visible notice
    Auto,
}

impl From<EpArg> for ualign_engine::EpChoice {
    fn from(a: EpArg) -> Self {
        match a {
            EpArg::Cpu => Self::Cpu,
            EpArg::Cuda => Self::Cuda,
            EpArg::Auto => Self::Auto,
        }
    }
}

/// A flag set by Ctrl-C: long jobs stop at the next safe point instead of dying midway.
pub(crate) fn cancel_on_ctrl_c() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    let cancel = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // A second Ctrl-C while the current pool finishes is the same request.
    let _ = signal_hook::flag::register(signal_hook::consts::SIGINT, cancel.clone());
    cancel
}

/// Loads a study, printing its warnings; errors come back as one message listing them all.
pub(crate) fn load_study(path: &Path) -> anyhow::Result<Study> {
    let (study, warnings) = study::load(path)?;
    for w in warnings {
        eprintln!("{w}");
    }
    Ok(study)
}

/// The database path: `--db` when given, else the study's default `db/<name>.sqlite`.
pub(crate) fn db_path(study: &Study, db: Option<&PathBuf>) -> PathBuf {
    db.cloned().unwrap_or_else(|| study.default_db_path())
}

/// Opens the study's database for writing: at its default path (`db/<name>.sqlite`) it
/// is made on first use; a `--db` path must hold the study already (made by `init`), so
/// that a mistyped one is refused and nothing is created.
pub(crate) fn open_store(
    study: &Study,
    db: Option<&PathBuf>,
) -> anyhow::Result<(ualign_core::store::Store, ualign_core::store::Opened)> {
    match db {
        None => create_store(study, None),
        Some(path) => match ualign_core::store::Store::open_made_for_study(path, study) {
            Ok(store) => {
                note_if_reworded(&store, study)?;
                Ok((store, ualign_core::store::Opened::Existing))
            }
            Err(e @ ualign_core::store::StoreError::NoStudy { .. }) => {
                Err(anyhow::Error::new(e).context(match similar_database(path) {
                    Some(like) => format!(
                        "no database of study `{}` at {}; did you mean {}?",
                        study.name,
                        path.display(),
                        like.display()
                    ),
                    None => format!("no database of study `{}` at {}", study.name, path.display()),
                }))
            }
            Err(e) => Err(anyhow::Error::new(e).context(format!("opening the database for study `{}`", study.name))),
        },
    }
}

/// A database beside `path` whose name is a few edits from its name (`weekend.sqlite`
/// for a typed `weeknd.sqlite`).
fn similar_database(path: &Path) -> Option<PathBuf> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name()?.to_str()?;
    let names: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n != name && (n.ends_with(".sqlite") || n.ends_with(".db")))
        .collect();
    let known: Vec<&str> = names.iter().map(String::as_str).collect();
    ualign_core::study::closest(name, &known).map(|n| dir.join(n))
}

/// Opens the study's database for writing, making it if it does not exist (`init`, and
/// every command at the study's default path). Only the default folder `db/` is
/// created; a `--db` path must be in a folder that exists.
pub(crate) fn create_store(
    study: &Study,
    db: Option<&PathBuf>,
) -> anyhow::Result<(ualign_core::store::Store, ualign_core::store::Opened)> {
    let path = db_path(study, db);
    if db.is_none()
        && let Some(dir) = path.parent()
    {
        std::fs::create_dir_all(dir).with_context(|| {
            format!("cannot create the database folder {}; create it yourself or pass --db PATH", dir.display())
        })?;
    }
    let (store, opened) = ualign_core::store::Store::open_for_study(&path, study)
        .with_context(|| format!("opening the database for study `{}`", study.name))?;
    note_if_reworded(&store, study)?;
    Ok((store, opened))
}

/// `word` as a POSIX shell reads it back (quoted only where it needs to be), for the
/// commands the CLI tells the researcher to run.
pub(crate) fn shell_word(word: &str) -> String {
    shlex::try_quote(word).map_or_else(|_| word.to_string(), |q| q.into_owned())
}
