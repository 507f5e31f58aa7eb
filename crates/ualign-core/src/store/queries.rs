//! Reads and writes of the study data: candidate pools, participants, their trial lists
//! and answers. Each public write is one transaction.

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::{Result, Store, StoreError, now};
use crate::schedule::{PlannedTrial, Slot, TrialKind};
use crate::study::RankMode;

/// A candidate to be stored (from the engine or an import).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct NewCandidate {
    pub(crate) policy: String,
    pub(crate) prompt_id: String,
    pub(crate) sample_index: u32,
    pub(crate) text: String,
    pub(crate) token_count: Option<u32>,
    pub(crate) finish_reason: Option<String>,
    pub(crate) logprob: Option<f64>,
    pub(crate) seed: Option<u64>,
    pub(crate) settings: Option<String>,
    pub(crate) model_hash: Option<String>,
    pub(crate) provider: Option<String>,
    pub(crate) prefill_ms: Option<f64>,
    pub(crate) decode_ms: Option<f64>,
    pub(crate) meta: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    pub id: i64,
    pub policy: String,
    pub prompt_id: String,
    pub sample_index: u32,
    pub text: String,
    /// It stopped at its length limit (`finish_reason = "length"`).
    pub cut: bool,
}

/// A trial as stored, with its answer if it has one.
#[derive(Debug, Clone)]
pub struct StoredTrial {
    pub id: i64,
    pub position: usize,
    pub plan: PlannedTrial,
    pub candidate_ids: Option<Vec<i64>>,
    pub answered: bool,
}

/// A participant's answer to one trial, in displayed slot numbers (0-based).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    Pick(usize),
    Order(Vec<usize>),
    NoPreference,
    Skip,
}

/// What [`Store::import_pools`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ImportOutcome {
    /// The rows were stored; `replaced` candidates of the policy were removed first.
    Stored { stored: usize, replaced: usize },
    /// The policy already has candidates and replacing was not asked for.
    HasCandidates { count: usize },
    /// Replacing was asked for, but trials have shown the policy's candidates already.
    Shown { trials: usize, participants: usize },
}

const INSERT_CANDIDATE: &str =
    "INSERT INTO candidates (policy, prompt_id, sample_index, text, token_count, finish_reason, logprob, seed,
     settings, model_hash, provider, prefill_ms, decode_ms, meta, created_at)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)";

fn insert_rows(tx: &rusqlite::Transaction<'_>, sql: &str, rows: &[NewCandidate]) -> Result<usize> {
    let mut ins = tx.prepare_cached(sql)?;
    let created = now();
    let mut n = 0;
    for c in rows {
        n += ins.execute(params![
            c.policy,
            c.prompt_id,
            c.sample_index,
            c.text,
            c.token_count,
            c.finish_reason,
            c.logprob,
            c.seed.map(|s| s as i64),
            c.settings,
            c.model_hash,
            c.provider,
            c.prefill_ms,
            c.decode_ms,
            c.meta,
            created
        ])?;
    }
    Ok(n)
}

impl Store {
    /// Adds generated candidates in one transaction: all land, or none does. A sample that
    /// another process stored meanwhile (two `generate` runs, or a participant's screen
    /// filling the same pool) is kept as it is: it was drawn with the same seed. Returns
    /// how many rows were new.
    pub(crate) fn insert_candidates(&mut self, rows: &[NewCandidate]) -> Result<usize> {
        let sql = format!("{INSERT_CANDIDATE} ON CONFLICT (policy, prompt_id, sample_index) DO NOTHING");
        self.write("the generated candidates", |tx| insert_rows(tx, &sql, rows))
    }

    /// Stores an import into `policy`'s pools in one transaction, after checking, inside
    /// it, that the policy has no candidates yet, or with `replace` that none of its
    /// candidates has been shown to anyone (then they are all replaced by `rows`).
    pub(crate) fn import_pools(&mut self, policy: &str, rows: &[NewCandidate], replace: bool) -> Result<ImportOutcome> {
        self.write("the imported candidates", |tx| {
            let count: i64 =
                tx.query_row("SELECT COUNT(*) FROM candidates WHERE policy = ?1", [policy], |r| r.get(0))?;
            if count > 0 && !replace {
                return Ok(ImportOutcome::HasCandidates { count: count as usize });
            }
            if count > 0 {
                let (trials, participants): (i64, i64) = tx.query_row(
                    "SELECT COUNT(DISTINCT t.id), COUNT(DISTINCT t.participant_id)
                     FROM trials t, json_each(t.candidate_ids) j
                     WHERE t.candidate_ids IS NOT NULL
                       AND j.value IN (SELECT id FROM candidates WHERE policy = ?1)",
                    [policy],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                if trials > 0 {
                    return Ok(ImportOutcome::Shown { trials: trials as usize, participants: participants as usize });
                }
                tx.execute(
                    "DELETE FROM attention_texts WHERE candidate_id IN (SELECT id FROM candidates WHERE policy = ?1)",
                    [policy],
                )?;
                tx.execute("DELETE FROM candidates WHERE policy = ?1", [policy])?;
            }
            let stored = insert_rows(tx, INSERT_CANDIDATE, rows)?;
            Ok(ImportOutcome::Stored { stored, replaced: count as usize })
        })
    }

    /// Number of stored candidates of a policy for a prompt.
    pub fn pool_count(&self, policy: &str, prompt_id: &str) -> Result<u32> {
        Ok(self.conn.query_row(
            "SELECT COUNT(*) FROM candidates WHERE policy = ?1 AND prompt_id = ?2",
            params![policy, prompt_id],
            |r| r.get(0),
        )?)
    }

    /// Sample indices already stored for a policy and prompt.
    pub fn stored_samples(&self, policy: &str, prompt_id: &str) -> Result<Vec<u32>> {
        let mut st = self.conn.prepare_cached(
            "SELECT sample_index FROM candidates WHERE policy = ?1 AND prompt_id = ?2 ORDER BY sample_index",
        )?;
        let rows = st.query_map(params![policy, prompt_id], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn candidate(&self, policy: &str, prompt_id: &str, sample: u32) -> Result<Option<Candidate>> {
        Ok(self
            .conn
            .query_row(
                "SELECT id, policy, prompt_id, sample_index, text, finish_reason = 'length' FROM candidates WHERE policy = ?1 AND prompt_id = ?2 AND sample_index = ?3",
                params![policy, prompt_id, sample],
                candidate_row,
            )
            .optional()?)
    }

    /// Per policy with candidates: (policy, candidates that stopped at their length limit,
    /// candidates), by policy name.
    pub fn length_cuts(&self) -> Result<Vec<(String, i64, i64)>> {
        let mut st = self.conn.prepare(
            "SELECT policy, COALESCE(SUM(finish_reason IS 'length'), 0), COUNT(*) FROM candidates GROUP BY policy ORDER BY policy",
        )?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Per policy and provider (where its candidates were made: an execution provider, a
    /// server's URL): (policy, provider, candidates), by policy and provider.
    pub fn providers(&self) -> Result<Vec<(String, String, i64)>> {
        let mut st = self
            .conn
            .prepare("SELECT policy, COALESCE(provider, ''), COUNT(*) FROM candidates GROUP BY 1, 2 ORDER BY 1, 2")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The model hash and settings (JSON) a candidate was made with, where it was made here.
    pub fn candidate_provenance(&self, id: i64) -> Result<(Option<String>, Option<String>)> {
        Ok(self.conn.query_row("SELECT model_hash, settings FROM candidates WHERE id = ?1", [id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?)
    }

    pub fn candidate_by_id(&self, id: i64) -> Result<Option<Candidate>> {
        Ok(self
            .conn
            .query_row(
                "SELECT id, policy, prompt_id, sample_index, text, finish_reason = 'length' FROM candidates WHERE id = ?1",
                [id],
                candidate_row,
            )
            .optional()?)
    }

    /// The broken text of an attention check for a candidate, made once and stored (two
    /// processes showing it at once both get the one stored first).
    pub(crate) fn attention_text(&mut self, candidate_id: i64, make: impl FnOnce() -> String) -> Result<String> {
        let stored = |c: &Connection| {
            c.query_row("SELECT text FROM attention_texts WHERE candidate_id = ?1", [candidate_id], |r| r.get(0))
                .optional()
        };
        if let Some(t) = stored(&self.conn)? {
            return Ok(t);
        }
        let text = make();
        self.write("an attention check's text", |tx| {
            tx.execute(
                "INSERT INTO attention_texts (candidate_id, text) VALUES (?1, ?2) ON CONFLICT (candidate_id) DO NOTHING",
                params![candidate_id, text],
            )?;
            stored(tx)?.ok_or_else(|| StoreError::Invalid(format!("no attention text for candidate {candidate_id}")))
        })
    }

    /// Creates the participant if new. Returns true when created.
    pub fn ensure_participant(&mut self, id: &str) -> Result<bool> {
        let n = self.write("the participant", |tx| {
            Ok(tx.execute("INSERT OR IGNORE INTO participants (id, created_at) VALUES (?1, ?2)", params![id, now()])?)
        })?;
        Ok(n == 1)
    }

    /// Stores invitations, (code hash, pseudonym) each, in one transaction: all or none. A
    /// pseudonym already enrolled or invited is refused (nothing is stored).
    pub fn add_invitations(&mut self, invitations: &[(String, String)]) -> Result<()> {
        self.write("the invitations", |tx| {
            let at = now();
            for (hash, participant) in invitations {
                let taken = enrolled_or_invited(tx, participant)?;
                if taken > 0 {
                    return Err(StoreError::Invalid(format!(
                        "pseudonym {participant} is taken; run the command again"
                    )));
                }
                tx.execute(
                    "INSERT INTO invitations (code_hash, participant_id, created_at) VALUES (?1, ?2, ?3)",
                    params![hash, participant, at],
                )?;
            }
            Ok(())
        })
    }

    /// Enrols a new participant together with their return code (an invitation, by its
    /// hash, already used: the participant has it on screen), in one transaction. False,
    /// and nothing stored, when the id is in the study already (another connection took
    /// it a moment before).
    pub fn enroll_with_return_code(&mut self, participant: &str, code_hash: &str) -> Result<bool> {
        self.write("the participant and their return code", |tx| {
            let at = now();
            let taken = enrolled_or_invited(tx, participant)?;
            if taken > 0 {
                return Ok(false);
            }
            tx.execute("INSERT INTO participants (id, created_at) VALUES (?1, ?2)", params![participant, at])?;
            tx.execute(
                "INSERT INTO invitations (code_hash, participant_id, created_at, used_at) VALUES (?1, ?2, ?3, ?3)",
                params![code_hash, participant, at],
            )?;
            Ok(true)
        })
    }

    /// A new return code (by its hash) for a participant of the study, or one invited:
    /// their earlier code, if any, stops admitting them. False, and nothing stored, when
    /// the study has no such participant.
    pub fn replace_return_code(&mut self, participant: &str, code_hash: &str) -> Result<bool> {
        self.write("the return code", |tx| {
            let known = enrolled_or_invited(tx, participant)?;
            if known == 0 {
                return Ok(false);
            }
            tx.execute("DELETE FROM invitations WHERE participant_id = ?1", [participant])?;
            tx.execute(
                "INSERT INTO invitations (code_hash, participant_id, created_at) VALUES (?1, ?2, ?3)",
                params![code_hash, participant, now()],
            )?;
            Ok(true)
        })
    }

    /// The pseudonym an invitation code (by its hash) admits, recording its first use.
    pub fn redeem_invitation(&mut self, code_hash: &str) -> Result<Option<String>> {
        self.write("the invitation", |tx| {
            let participant: Option<String> = tx
                .query_row("SELECT participant_id FROM invitations WHERE code_hash = ?1", [code_hash], |r| r.get(0))
                .optional()?;
            if participant.is_some() {
                tx.execute(
                    "UPDATE invitations SET used_at = COALESCE(used_at, ?2) WHERE code_hash = ?1",
                    params![code_hash, now()],
                )?;
            }
            Ok(participant)
        })
    }

    /// (invitations made, invitations used).
    /// Whether an invitation with this code hash exists (a read: nothing is recorded).
    pub fn invitation_exists(&self, code_hash: &str) -> Result<bool> {
        Ok(self
            .conn
            .query_row("SELECT COUNT(*) FROM invitations WHERE code_hash = ?1", [code_hash], |r| r.get::<_, i64>(0))?
            > 0)
    }

    pub fn invitation_counts(&self) -> Result<(i64, i64)> {
        Ok(self
            .conn
            .query_row("SELECT COUNT(*), COUNT(used_at) FROM invitations", [], |r| Ok((r.get(0)?, r.get(1)?)))?)
    }

    pub fn participant_exists(&self, id: &str) -> Result<bool> {
        Ok(self.conn.query_row("SELECT COUNT(*) FROM participants WHERE id = ?1", [id], |r| r.get::<_, i64>(0))? > 0)
    }

    /// Records when the participant accepted the consent text (the first time only).
    pub fn record_consent(&mut self, id: &str) -> Result<()> {
        self.record_consent_at(id, &now())
    }

    pub(crate) fn record_consent_at(&mut self, id: &str, at: &str) -> Result<()> {
        self.write("the consent", |tx| {
            tx.execute("UPDATE participants SET consent_at = COALESCE(consent_at, ?2) WHERE id = ?1", params![id, at])?;
            Ok(())
        })
    }

    pub fn consent_at(&self, id: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row("SELECT consent_at FROM participants WHERE id = ?1", [id], |r| r.get(0))
            .optional()?
            .flatten())
    }

    /// Whether the participant has finished their trial list.
    pub fn is_completed(&self, id: &str) -> Result<bool> {
        Ok(self
            .conn
            .query_row("SELECT completed_at IS NOT NULL FROM participants WHERE id = ?1", [id], |r| r.get(0))
            .optional()?
            .unwrap_or(false))
    }

    pub(crate) fn mark_completed(&mut self, id: &str) -> Result<()> {
        self.write("the completion", |tx| {
            tx.execute(
                "UPDATE participants SET completed_at = COALESCE(completed_at, ?2) WHERE id = ?1",
                params![id, now()],
            )?;
            Ok(())
        })
    }

    /// Stores a participant's trial list, unless one is stored already (then it is kept:
    /// the stored list, not a recomputed one, is what resuming follows). Creates the
    /// participant if new. Returns true when the list was stored now.
    pub fn enrol(&mut self, participant: &str, plan: &[PlannedTrial]) -> Result<bool> {
        let slots: Vec<String> = plan
            .iter()
            .map(|t| serde_json::to_string(&t.slots).map_err(|e| StoreError::Invalid(e.to_string())))
            .collect::<Result<_>>()?;
        self.write("the participant's trial list", |tx| {
            let existing: i64 =
                tx.query_row("SELECT COUNT(*) FROM trials WHERE participant_id = ?1", [participant], |r| r.get(0))?;
            if existing > 0 {
                return Ok(false);
            }
            tx.execute(
                "INSERT OR IGNORE INTO participants (id, created_at) VALUES (?1, ?2)",
                params![participant, now()],
            )?;
            let mut ids: Vec<i64> = Vec::with_capacity(plan.len());
            let mut ins = tx.prepare(
                "INSERT INTO trials (participant_id, position, block, kind, mode, prompt_id, k, policy_a, policy_b, slots, repeat_of)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?;
            for (pos, (t, slots)) in plan.iter().zip(&slots).enumerate() {
                let repeat_of = t.repeat_of.and_then(|p| ids.get(p).copied());
                ins.execute(params![
                    participant,
                    pos,
                    t.block,
                    t.kind.as_str(),
                    t.mode.as_str(),
                    t.prompt_id,
                    t.k,
                    t.policy_a,
                    t.policy_b,
                    slots,
                    repeat_of
                ])?;
                ids.push(tx.last_insert_rowid());
            }
            Ok(true)
        })
    }

    /// The participant's stored trials in order, each with whether it is answered.
    pub fn trials(&self, participant: &str) -> Result<Vec<StoredTrial>> {
        let mut st = self.conn.prepare_cached(
            "SELECT t.id, t.position, t.block, t.kind, t.mode, t.prompt_id, t.k, t.policy_a, t.policy_b, t.slots,
                    (SELECT r.position FROM trials r WHERE r.id = t.repeat_of), t.candidate_ids, a.trial_id IS NOT NULL
             FROM trials t LEFT JOIN answers a ON a.trial_id = t.id
             WHERE t.participant_id = ?1 ORDER BY t.position",
        )?;
        let rows = st.query_map([participant], |r| {
            let kind: String = r.get(3)?;
            let mode: String = r.get(4)?;
            let slots: String = r.get(9)?;
            let cids: Option<String> = r.get(11)?;
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                kind,
                mode,
                r.get::<_, String>(5)?,
                r.get::<_, Option<u32>>(6)?,
                r.get::<_, Option<String>>(7)?,
                r.get::<_, Option<String>>(8)?,
                slots,
                r.get::<_, Option<i64>>(10)?,
                cids,
                r.get::<_, bool>(12)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, pos, block, kind, mode, prompt_id, k, policy_a, policy_b, slots, repeat_of, cids, answered) = row?;
            let bad = |what: &str| StoreError::Invalid(format!("trial {id} has an unreadable {what}"));
            let slots: Vec<Slot> = serde_json::from_str(&slots).map_err(|_| bad("slot list"))?;
            let candidate_ids = match cids {
                Some(s) => Some(serde_json::from_str(&s).map_err(|_| bad("candidate id list"))?),
                None => None,
            };
            out.push(StoredTrial {
                id,
                position: pos as usize,
                plan: PlannedTrial {
                    block,
                    kind: TrialKind::parse(&kind).ok_or_else(|| bad("kind"))?,
                    mode: if mode == "order" { RankMode::Order } else { RankMode::Pick },
                    prompt_id,
                    k,
                    policy_a,
                    policy_b,
                    slots,
                    repeat_of: repeat_of.map(|p| p as usize),
                },
                candidate_ids,
                answered,
            });
        }
        Ok(out)
    }

    /// The first unanswered trial: where a participant resumes.
    pub fn next_trial(&self, participant: &str) -> Result<Option<StoredTrial>> {
        Ok(self.trials(participant)?.into_iter().find(|t| !t.answered))
    }

    pub(crate) fn start_session(&mut self, participant: &str, client: &str) -> Result<i64> {
        self.write("the session", |tx| {
            tx.execute(
                "INSERT INTO sessions (participant_id, started_at, client) VALUES (?1, ?2, ?3)",
                params![participant, now(), client],
            )?;
            Ok(tx.last_insert_rowid())
        })
    }

    pub(crate) fn end_session(&mut self, session: i64, reason: &str) -> Result<()> {
        self.write("the end of the session", |tx| {
            tx.execute(
                "UPDATE sessions SET ended_at = ?2, end_reason = ?3 WHERE id = ?1 AND ended_at IS NULL",
                params![session, now(), reason],
            )?;
            Ok(())
        })
    }

    /// Closes the sessions of remote clients (`ssh …`, `browser …`) that were never closed:
    /// their server was killed. Each is ended for `reason` at its last sign of life (its
    /// last answer or trial shown, else its start). Returns how many. (`serve` calls it at
    /// start: one server serves a study database at a time.)
    pub fn close_abandoned_sessions(&mut self, reason: &str) -> Result<usize> {
        self.write("the end of sessions left open", |tx| {
            Ok(tx.execute(
                "UPDATE sessions SET end_reason = ?1, ended_at = COALESCE(
                     (SELECT MAX(at) FROM (SELECT a.answered_at AS at FROM answers a WHERE a.session_id = sessions.id
                                           UNION ALL SELECT t.shown_at FROM trials t WHERE t.session_id = sessions.id)),
                     started_at)
                 WHERE ended_at IS NULL AND (client LIKE 'ssh %' OR client LIKE 'browser %')",
                [reason],
            )?)
        })
    }

    /// Records which candidates a trial displays (in displayed order) when first shown; a
    /// trial shown again after a resume keeps its first displayed candidates.
    pub fn mark_shown(&mut self, trial_id: i64, candidate_ids: &[i64], session: Option<i64>) -> Result<()> {
        let ids = serde_json::to_string(candidate_ids).map_err(|e| StoreError::Invalid(e.to_string()))?;
        self.write("which answers the question shows", |tx| {
            tx.execute(
                "UPDATE trials SET candidate_ids = COALESCE(candidate_ids, ?2), shown_at = COALESCE(shown_at, ?3),
                 session_id = COALESCE(session_id, ?4) WHERE id = ?1",
                params![trial_id, ids, now(), session],
            )?;
            Ok(())
        })
    }

    /// Commits one answer in its own transaction. A trial is answered once: a second
    /// answer is refused ([`StoreError::AlreadyAnswered`]), so a double key press, or the
    /// same participant in a second window, can never overwrite the first.
    pub fn record_answer(
        &mut self,
        trial_id: i64,
        answer: &Answer,
        response_ms: u64,
        seen_in_full: Option<bool>,
        session: Option<i64>,
    ) -> Result<()> {
        let response_ms = i64::try_from(response_ms).unwrap_or(i64::MAX);
        self.write("the answer", |tx| {
            let slots: Option<String> =
                tx.query_row("SELECT slots FROM trials WHERE id = ?1", [trial_id], |r| r.get(0)).optional()?;
            let Some(slots) = slots else {
                return Err(StoreError::Invalid(format!("no trial has id {trial_id}")));
            };
            let n = serde_json::from_str::<Vec<Slot>>(&slots)
                .map_err(|_| StoreError::Invalid(format!("trial {trial_id} has an unreadable slot list")))?
                .len();
            let (choice, ordering, no_pref, skipped) = match answer {
                Answer::Pick(i) if *i < n => (Some(*i as i64), None, false, false),
                Answer::Order(o) if is_permutation(o, n) => {
                    (o.first().map(|&i| i as i64), Some(serde_json::to_string(o).unwrap_or_default()), false, false)
                }
                Answer::NoPreference => (None, None, true, false),
                Answer::Skip => (None, None, false, true),
                other => {
                    return Err(StoreError::Invalid(format!(
                        "answer {other:?} does not fit trial {trial_id} with {n} slots"
                    )));
                }
            };
            let inserted = tx.execute(
                "INSERT OR IGNORE INTO answers (trial_id, choice, ordering, no_preference, skipped, response_ms, answered_at, session_id, seen_in_full, seq)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, (SELECT COALESCE(MAX(seq), 0) + 1 FROM answers))",
                params![trial_id, choice, ordering, no_pref, skipped, response_ms, now(), session, seen_in_full],
            )?;
            if inserted == 0 {
                return Err(StoreError::AlreadyAnswered { trial: trial_id });
            }
            Ok(())
        })
    }

    /// Counts used by summaries: (participants, trials, answers).
    pub fn counts(&self) -> Result<(i64, i64, i64)> {
        Ok(self.conn.query_row(
            "SELECT (SELECT COUNT(*) FROM participants), (SELECT COUNT(*) FROM trials), (SELECT COUNT(*) FROM answers)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?)
    }
}

fn is_permutation(o: &[usize], n: usize) -> bool {
    let mut seen = vec![false; n];
    o.len() == n && o.iter().all(|&i| i < n && !std::mem::replace(&mut seen[i], true))
}

/// How many of the participants and invitations hold `participant` (0: the id is free).
fn enrolled_or_invited(tx: &rusqlite::Transaction<'_>, participant: &str) -> rusqlite::Result<i64> {
    tx.query_row(
        "SELECT (SELECT COUNT(*) FROM participants WHERE id = ?1) + (SELECT COUNT(*) FROM invitations WHERE participant_id = ?1)",
        [participant],
        |r| r.get(0),
    )
}

pub(super) fn candidate_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Candidate> {
    Ok(Candidate {
        id: r.get(0)?,
        policy: r.get(1)?,
        prompt_id: r.get(2)?,
        sample_index: r.get(3)?,
        text: r.get(4)?,
        cut: r.get::<_, Option<bool>>(5)?.unwrap_or(false),
    })
}
