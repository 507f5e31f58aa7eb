//! One participant's pass through a study, with no UI. [`Session::begin`] enrols the
//! participant (a stored trial list is kept: it is what resuming follows) and opens a
//! session; [`Session::next`] presents the first unanswered trial with its texts in
//! displayed order (marking it shown), or says which candidates it still needs, or that
//! the list is done; [`Session::submit`] commits an answer before anything else happens;
//! [`Session::finish`] closes the session. The participant screens and `simulate` both
//! drive it. A session holds no connection: each call takes the store it works on, so
//! many sessions can run in one process.

use crate::pools::{PoolJob, missing_for_trial};
use crate::schedule::{self, Slot, SlotRole, TrialKind};
use crate::store::{Answer, Store, StoreError, StoredTrial};
use crate::study::{RankMode, Study};

/// Why a session ended, as `sessions.end_reason` stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// Every trial was answered, or the participant left the completion or declined screen.
    Completed,
    /// The participant quit (and said yes when asked).
    Quit,
    /// Something could not be saved or read.
    Error,
    /// SIGTERM or SIGHUP.
    Signal,
    /// The terminal, or the remote participant's connection, went away.
    TerminalClosed,
    /// `serve` is stopping.
    ServerStopping,
    /// The server was killed with the session open (closed when a server starts again).
    ServerStopped,
    /// A remote client read its screen too slowly.
    ClientTooSlow,
    /// A remote participant typed nothing for the idle time.
    Idle,
    /// The participant went on in another window (`serve`: the newest window of a
    /// participant is the one that runs).
    AnotherWindow,
}

impl EndReason {
    /// The stored word.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Completed => "completed",
            EndReason::Quit => "quit",
            EndReason::Error => "error",
            EndReason::Signal => "signal",
            EndReason::TerminalClosed => "terminal closed",
            EndReason::ServerStopping => "server stopping",
            EndReason::ServerStopped => "server stopped",
            EndReason::ClientTooSlow => "client too slow",
            EndReason::Idle => "idle",
            EndReason::AnotherWindow => "another window",
        }
    }
}

impl std::fmt::Display for EndReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A participant's open session.
#[derive(Debug)]
pub struct Session {
    participant: String,
    /// The session's row, when it has one (a simulation records none).
    id: Option<i64>,
    open: bool,
}

/// A trial ready to show: its candidates' texts in displayed order.
#[derive(Debug, Clone, PartialEq)]
pub struct PresentedTrial {
    pub trial_id: i64,
    /// Position in the participant's list (0-based) and the list's length.
    pub position: usize,
    pub total: usize,
    pub(crate) block: String,
    pub(crate) kind: TrialKind,
    pub mode: RankMode,
    pub(crate) prompt_id: String,
    pub prompt: String,
    pub(crate) slots: Vec<Slot>,
    /// The stored candidate of each slot.
    pub candidate_ids: Vec<i64>,
    /// What each slot shows: the candidate's text (as the policy's `on_length` shows one
    /// cut off at its limit), or for an attention check's broken slot its words shuffled.
    pub texts: Vec<String>,
}

/// What comes next for the participant.
#[derive(Debug)]
pub enum Next {
    Trial(PresentedTrial),
    /// The trial at `position` cannot be shown yet: `jobs` are the model pools it needs
    /// generated, `imported` the imported policies whose candidates are missing.
    Missing {
        position: usize,
        prompt_id: String,
        jobs: Vec<PoolJob>,
        imported: Vec<String>,
    },
    /// Every trial is answered; the participant is marked completed and the session closed.
    Done,
}

/// What became of a submitted answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    Saved,
    /// The trial was answered already (the same participant in another window): the
    /// first answer stands.
    AnsweredElsewhere,
}

impl Session {
    /// Begins or resumes `participant`'s session: creates them if new, records their
    /// consent time (the first only), enrols them with their trial list unless one is
    /// stored, and opens a session row for `client` (none for `None`).
    pub fn begin(
        store: &mut Store,
        study: &Study,
        participant: &str,
        consented_at: Option<&str>,
        client: Option<&str>,
    ) -> Result<Self, StoreError> {
        store.ensure_participant(participant)?;
        if let Some(at) = consented_at {
            store.record_consent_at(participant, at)?;
        }
        store.enrol(participant, &schedule::plan(study, participant))?;
        let id = client.map(|c| store.start_session(participant, c)).transpose()?;
        Ok(Self { participant: participant.to_string(), id, open: true })
    }

    /// The first unanswered trial, presented; or what it needs; or the end.
    pub fn next(&mut self, store: &mut Store, study: &Study) -> Result<Next, StoreError> {
        let trials = store.trials(&self.participant)?;
        let Some(trial) = trials.iter().find(|t| !t.answered) else {
            store.mark_completed(&self.participant)?;
            self.finish(store, EndReason::Completed);
            return Ok(Next::Done);
        };
        let (jobs, imported) = missing_for_trial(study, store, trial)?;
        if !jobs.is_empty() || !imported.is_empty() {
            return Ok(Next::Missing {
                position: trial.position,
                prompt_id: trial.plan.prompt_id.clone(),
                jobs,
                imported,
            });
        }
        self.present(store, study, trial, trials.len()).map(Next::Trial)
    }

    /// The model pools the trial after the first unanswered one needs: what a screen
    /// generates while the participant reads.
    pub fn upcoming_jobs(&self, store: &Store, study: &Study) -> Result<Vec<PoolJob>, StoreError> {
        let trials = store.trials(&self.participant)?;
        match trials.iter().position(|t| !t.answered).and_then(|i| trials.get(i + 1)) {
            Some(t) => Ok(missing_for_trial(study, store, t)?.0),
            None => Ok(Vec::new()),
        }
    }

    fn present(
        &self,
        store: &mut Store,
        study: &Study,
        t: &StoredTrial,
        total: usize,
    ) -> Result<PresentedTrial, StoreError> {
        let prompt = study.prompt(&t.plan.prompt_id).map(|p| p.text.clone()).unwrap_or_default();
        let mut ids = Vec::with_capacity(t.plan.slots.len());
        let mut texts = Vec::with_capacity(t.plan.slots.len());
        for slot in &t.plan.slots {
            let c = store.candidate(&slot.policy, &t.plan.prompt_id, slot.sample)?.ok_or_else(|| {
                StoreError::Invalid(format!(
                    "candidate {} of policy `{}` for prompt `{}` vanished",
                    slot.sample, slot.policy, t.plan.prompt_id
                ))
            })?;
            // What the study shows of an answer cut off at its length limit.
            let on_length = study.policy(&slot.policy).map(|p| p.on_length).unwrap_or_default();
            let shown = crate::study::shown_text(&c.text, c.cut, on_length);
            let text = if slot.role == SlotRole::Broken {
                let source = shown;
                store.attention_text(c.id, || schedule::broken_text(&source, c.id as u64))?
            } else {
                shown
            };
            ids.push(c.id);
            texts.push(text);
        }
        store.mark_shown(t.id, &ids, self.id)?;
        Ok(PresentedTrial {
            trial_id: t.id,
            position: t.position,
            total,
            block: t.plan.block.clone(),
            kind: t.plan.kind,
            mode: t.plan.mode,
            prompt_id: t.plan.prompt_id.clone(),
            prompt,
            slots: t.plan.slots.clone(),
            candidate_ids: ids,
            texts,
        })
    }

    /// Commits an answer to trial `trial_id` in its own transaction, with whether the
    /// participant had seen every answer in full (`None` where nothing was shown: a
    /// simulation).
    pub fn submit(
        &mut self,
        store: &mut Store,
        trial_id: i64,
        answer: &Answer,
        response_ms: u64,
        seen_in_full: Option<bool>,
    ) -> Result<Submitted, StoreError> {
        match store.record_answer(trial_id, answer, response_ms, seen_in_full, self.id) {
            Ok(()) => Ok(Submitted::Saved),
            Err(StoreError::AlreadyAnswered { .. }) => Ok(Submitted::AnsweredElsewhere),
            Err(e) => Err(e),
        }
    }

    /// Closes the session with its reason (quit, completed, signal, error). Best effort
    /// and once: when the database cannot be written, the session simply stays open in it.
    pub fn finish(&mut self, store: &mut Store, reason: EndReason) {
        if std::mem::take(&mut self.open)
            && let Some(id) = self.id
        {
            let _ = store.end_session(id, reason.as_str());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::pools::import::import_candidates;

    /// The example study with its pools imported, in a fresh database.
    fn example(dir: &Path) -> (Study, Store) {
        // The workspace's root, where the example study lives.
        let repo = &Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let (s, _) = crate::study::load(&repo.join("studies/example.toml")).unwrap();
        let (mut store, _) = Store::open_for_study(&dir.join("e.sqlite"), &s).unwrap();
        for policy in ["sampled", "greedy"] {
            let file = repo.join(format!("studies/example/{policy}.jsonl"));
            import_candidates(&mut store, &s, policy, &file, false).unwrap();
        }
        (s, store)
    }

    fn pick_first(t: &PresentedTrial) -> Answer {
        match t.mode {
            RankMode::Pick => Answer::Pick(0),
            RankMode::Order => Answer::Order((0..t.slots.len()).collect()),
        }
    }

    #[test]
    fn a_participant_goes_through_the_list_and_resumes_where_they_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let (s, mut store) = example(dir.path());
        let mut session =
            Session::begin(&mut store, &s, "p-abcdefghjk", Some("2026-12-01T10:00:00.000Z"), Some("t")).unwrap();
        let Next::Trial(first) = session.next(&mut store, &s).unwrap() else { panic!() };
        assert_eq!((first.position, first.total), (0, 11));
        assert_eq!(first.texts.len(), first.slots.len());
        assert!(first.texts.iter().all(|t| !t.is_empty()));
        // Presenting again before an answer shows the same trial.
        let Next::Trial(again) = session.next(&mut store, &s).unwrap() else { panic!() };
        assert_eq!(again, first);
        assert_eq!(
            session.submit(&mut store, first.trial_id, &pick_first(&first), 900, None).unwrap(),
            Submitted::Saved
        );
        session.finish(&mut store, EndReason::Quit);
        // A new session for the same participant resumes at the second trial.
        let mut session = Session::begin(&mut store, &s, "p-abcdefghjk", None, Some("t")).unwrap();
        let mut seen = vec![first.position];
        loop {
            match session.next(&mut store, &s).unwrap() {
                Next::Trial(t) => {
                    seen.push(t.position);
                    session.submit(&mut store, t.trial_id, &pick_first(&t), 900, None).unwrap();
                }
                Next::Done => break,
                Next::Missing { .. } => panic!("every pool is imported"),
            }
        }
        assert_eq!(seen, (0..11).collect::<Vec<_>>(), "each trial once, in order");
        assert!(store.is_completed("p-abcdefghjk").unwrap());
        assert_eq!(store.consent_at("p-abcdefghjk").unwrap().as_deref(), Some("2026-12-01T10:00:00.000Z"));
    }

    #[test]
    fn an_answer_the_database_refuses_is_a_write_failure_and_nothing_is_half_written() {
        let dir = tempfile::tempdir().unwrap();
        let (s, mut store) = example(dir.path());
        let mut session = Session::begin(&mut store, &s, "refused", None, None).unwrap();
        let Next::Trial(first) = session.next(&mut store, &s).unwrap() else { panic!() };
        assert_eq!(session.submit(&mut store, first.trial_id, &pick_first(&first), 1, None).unwrap(), Submitted::Saved);
        let Next::Trial(second) = session.next(&mut store, &s).unwrap() else { panic!() };
        // From now on SQLite refuses every write on this connection, as on a read-only file.
        store.refuse_writes(true);
        let e = session.submit(&mut store, second.trial_id, &pick_first(&second), 1, None).unwrap_err();
        let StoreError::Write(w) = &e else { panic!("{e:?}") };
        assert!(w.cause.plain().contains("cannot be written"), "{e}");
        assert!(e.to_string().contains("could not save the answer") && e.to_string().contains("e.sqlite"), "{e}");
        store.refuse_writes(false);
        assert_eq!(store.counts().unwrap().2, 1, "the first answer alone is stored");
    }

    #[test]
    fn the_same_participant_in_two_sessions_answers_each_trial_once() {
        let dir = tempfile::tempdir().unwrap();
        let (s, mut store) = example(dir.path());
        let (mut other, _) = Store::open_for_study(&dir.path().join("e.sqlite"), &s).unwrap();
        let mut a = Session::begin(&mut store, &s, "twice", None, None).unwrap();
        let mut b = Session::begin(&mut other, &s, "twice", None, None).unwrap();
        let Next::Trial(ta) = a.next(&mut store, &s).unwrap() else { panic!() };
        let Next::Trial(tb) = b.next(&mut other, &s).unwrap() else { panic!() };
        assert_eq!(ta.trial_id, tb.trial_id);
        assert_eq!(a.submit(&mut store, ta.trial_id, &pick_first(&ta), 1, None).unwrap(), Submitted::Saved);
        assert_eq!(b.submit(&mut other, tb.trial_id, &pick_first(&tb), 1, None).unwrap(), Submitted::AnsweredElsewhere);
        let Next::Trial(next) = b.next(&mut other, &s).unwrap() else { panic!() };
        assert_eq!(next.position, 1, "the second window moves on");
    }

    #[test]
    fn a_trial_whose_candidates_are_missing_says_which() {
        let dir = tempfile::tempdir().unwrap();
        // The workspace's root, where the example study lives.
        let repo = &Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let (s, _) = crate::study::load(&repo.join("studies/example.toml")).unwrap();
        let (mut store, _) = Store::open_for_study(&dir.path().join("e.sqlite"), &s).unwrap();
        let mut session = Session::begin(&mut store, &s, "early", None, None).unwrap();
        let Next::Missing { position, jobs, imported, .. } = session.next(&mut store, &s).unwrap() else { panic!() };
        assert_eq!(position, 0);
        assert!(jobs.is_empty(), "both policies are imported: nothing for the engine");
        assert!(!imported.is_empty() && imported.iter().all(|p| p == "sampled" || p == "greedy"));
    }

    #[test]
    fn many_sessions_in_one_process_store_every_answer_once() {
        let dir = tempfile::tempdir().unwrap();
        let (s, store) = example(dir.path());
        let db = store.path().to_path_buf();
        drop(store);
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let (s, db) = (s.clone(), db.clone());
                std::thread::spawn(move || {
                    let (mut store, _) = Store::open_for_study(&db, &s).unwrap();
                    let mut session = Session::begin(&mut store, &s, &format!("t{i}"), None, Some("thread")).unwrap();
                    while let Next::Trial(t) = session.next(&mut store, &s).unwrap() {
                        session.submit(&mut store, t.trial_id, &pick_first(&t), 1, None).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let (store, _) = Store::open_for_study(&db, &s).unwrap();
        assert_eq!(store.counts().unwrap(), (8, 88, 88));
    }
}
