//! `ualign run`: one participant's screens in this terminal, with missing pools generated
//! on the engine's own thread while they read; also what `demo` runs.

use std::io::IsTerminal;

use crate::tui::{self, Driver};
use ualign_core::pools::PoolWorker;
use ualign_core::study::Study;

/// Run the study for one participant in the terminal.
#[derive(clap::Args)]
pub(crate) struct Cmd {
    #[command(flatten)]
    target: super::StudyArgs,
    /// Participant id (a pseudonym); without it the participant types one or gets a new one
    #[arg(long)]
    participant: Option<String>,
    #[command(flatten)]
    engine: super::EngineArgs,
}

impl Cmd {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        // Before the database is opened (or made): without a terminal nothing can happen.
        need_terminal()?;
        let (study, store, _) = self.target.open()?;
        run_participant(study, store, self.participant, self.engine, false)
    }
}

/// The participant flow on this terminal, with live generation of missing pools (all of
/// them in the background from the start with `warm_up`, see [`Driver::warm_up`]).
pub(crate) fn run_participant(
    study: Study,
    store: ualign_core::store::Store,
    participant: Option<String>,
    engine: super::EngineArgs,
    warm_up: bool,
) -> anyhow::Result<()> {
    need_terminal()?;
    let has_models = study.policies.iter().any(|p| p.source.is_generated());
    let worker = has_models
        .then(|| PoolWorker::spawn(study.clone(), store.path().to_path_buf(), engine.ep.into(), engine.threads));
    let mut app = Driver::new(study, store, participant, worker)?;
    if warm_up {
        app.warm_up()?;
    }
    let result = tui::run(&mut app);
    for n in &app.researcher_notices {
        eprintln!("notice: {n}");
    }
    if let Some(p) = &app.participant {
        // The terminal may be gone (SIGHUP): a failed write is no reason to panic.
        use std::io::Write;
        let last = match &app.failure {
            Some(f) if f.answer_lost => "; the last answer was not saved",
            _ => "",
        };
        let db = app.store().path().display();
        let n = app.answered_this_session;
        let _ = if app.screen == crate::tui::app::Screen::Done {
            writeln!(
                std::io::stdout(),
                "participant {p} has completed the study in {db} ({n} answer(s) saved in this session)."
            )
        } else {
            writeln!(
                std::io::stdout(),
                "{n} answer(s) saved for participant {p} in {db}{last}; run again with --participant {p} to resume."
            )
        };
    }
    result
}

fn need_terminal() -> anyhow::Result<()> {
    anyhow::ensure!(
        std::io::stdout().is_terminal() && std::io::stdin().is_terminal(),
        "the participant screens need an interactive terminal (stdin and stdout are not a TTY)"
    );
    Ok(())
}
