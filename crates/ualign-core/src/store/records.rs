//! Typed read models: what the analysis, the export and the dashboard read, with every
//! query and every stored JSON value decoded here, in one place. A damaged value is an
//! error naming its row, never a silent default. Callers that need one consistent view
//! read inside [`Store::snapshot`].

use rusqlite::Row;
use serde::Serialize;
use serde_json::Value;

use super::{Candidate, Result, Store, StoreError};
use crate::schedule::{Slot, SlotRole};

/// A stored slot read for its role alone (its other fields are skipped, not allocated).
#[derive(serde::Deserialize)]
struct RoleOf {
    role: SlotRole,
}

/// An answered best_of_k trial (skips left out): what f(k) is computed from.
#[derive(Debug, Clone, PartialEq)]
pub struct BestOfKAnswer {
    pub participant: String,
    pub prompt_id: String,
    pub policy_a: String,
    pub policy_b: String,
    pub k: u32,
    /// Whose each displayed slot is, in displayed order (A's, B's; which sample fills it
    /// is in the export, not needed here: a million answers' slot lists as `Slot`s, each
    /// with its policy's name, held a gigabyte at 20,000 participants).
    pub roles: Vec<SlotRole>,
    /// The candidates shown, in displayed order (empty if the trial was never marked shown).
    pub candidate_ids: Vec<i64>,
    /// The displayed slot picked; none for "no preference".
    pub choice: Option<usize>,
    pub no_preference: bool,
}

/// An answered rank trial ("no preference" and skips left out).
#[derive(Debug, Clone, PartialEq)]
pub struct RankAnswer {
    pub participant: String,
    pub prompt: String,
    /// Candidate ids in displayed order.
    pub shown: Vec<i64>,
    /// The displayed slot picked (its first place, for an ordering).
    pub choice: Option<usize>,
    /// Displayed slots best first, for an ordering.
    pub ordering: Option<Vec<usize>>,
}

/// The counts the data-quality checks are made of.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QualityCounts {
    /// Picks in best_of_k and rank pick trials: (displayed slots, slot picked, answers).
    pub(crate) picks_by_slot: Vec<(usize, usize, usize)>,
    /// Every answer's response time, ascending.
    pub(crate) response_ms: Vec<u64>,
    /// Per participant with any: (participant, answers under the threshold, answers), most first.
    pub(crate) too_fast: Vec<(String, usize, usize)>,
    /// Per participant with attention checks: (participant, failed, checks), most failed first.
    pub(crate) attention: Vec<(String, usize, usize)>,
    /// Per answered repeat with a pick in both: the text picked the first time and the second.
    pub(crate) repeat_picks: Vec<(Option<String>, Option<String>)>,
    /// Answers confirmed before every answer of their trial had been seen in full, and
    /// answers for which it was recorded.
    pub(crate) seen_in_full: (usize, usize),
}

/// Participants enrolled, finished, and answers given out of trials planned.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Progress {
    pub participants: usize,
    pub completed: usize,
    pub answered: usize,
    pub trials: usize,
}

/// A stored candidate with everything recorded about it: a row of the export's
/// `candidates`, whose columns are these fields (README documents them).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CandidateRecord {
    #[serde(rename = "candidate_id")]
    pub id: i64,
    pub(crate) policy: String,
    pub prompt_id: String,
    pub(crate) sample_index: i64,
    pub text: String,
    pub(crate) token_count: Option<i64>,
    pub(crate) finish_reason: Option<String>,
    pub(crate) logprob: Option<f64>,
    pub(crate) seed: Option<i64>,
    pub(crate) model_hash: Option<String>,
    pub(crate) provider: Option<String>,
    pub(crate) prefill_ms: Option<f64>,
    pub(crate) decode_ms: Option<f64>,
    pub(crate) settings: Option<Value>,
    pub(crate) meta: Option<Value>,
    pub(crate) created_at: String,
}

/// A stored trial joined with its answer, if it has one (the export's `trials`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TrialRecord {
    pub(crate) id: i64,
    pub(crate) participant: String,
    pub(crate) position: i64,
    pub(crate) block: String,
    pub(crate) kind: String,
    pub(crate) mode: String,
    pub(crate) prompt_id: String,
    pub(crate) k: Option<i64>,
    pub(crate) policy_a: Option<String>,
    pub(crate) policy_b: Option<String>,
    pub(crate) slots: Vec<Slot>,
    pub(crate) candidate_ids: Option<Vec<i64>>,
    pub(crate) repeat_of: Option<i64>,
    pub(crate) session_id: Option<i64>,
    pub(crate) shown_at: Option<String>,
    pub(crate) answered_at: Option<String>,
    pub(crate) response_ms: Option<i64>,
    pub(crate) choice: Option<usize>,
    pub(crate) ordering: Option<Vec<usize>>,
    pub(crate) no_preference: Option<bool>,
    pub(crate) skipped: Option<bool>,
    pub(crate) seen_in_full: Option<bool>,
}

/// A participant with their counts: a row of the export's `participants`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct ParticipantRecord {
    #[serde(rename = "participant_id")]
    pub(crate) id: String,
    pub(crate) created_at: String,
    pub(crate) consent_at: Option<String>,
    pub(crate) completed_at: Option<String>,
    pub(crate) trials: i64,
    pub(crate) answered: i64,
    pub(crate) sessions: i64,
}

/// Decodes a stored JSON value of row `id` of `table`; a damaged one is an error.
fn json<T: serde::de::DeserializeOwned>(table: &str, id: impl std::fmt::Display, what: &str, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| {
        StoreError::Invalid(format!(
            "{table} row {id} has an unreadable {what} ({e}); the database was edited outside ualign or is damaged: run `ualign check`"
        ))
    })
}

fn json_opt<T: serde::de::DeserializeOwned>(
    table: &str,
    id: impl std::fmt::Display + Copy,
    what: &str,
    text: Option<String>,
) -> Result<Option<T>> {
    text.map(|t| json(table, id, what, &t)).transpose()
}

/// A stored slot index (a displayed position), which is never negative.
fn slot_index(table: &str, id: i64, v: Option<i64>) -> Result<Option<usize>> {
    v.map(|c| usize::try_from(c).map_err(|_| StoreError::Invalid(format!("{table} row {id} has slot {c}")))).transpose()
}

/// Runs `sql` and collects its rows through `read` (each row's columns are read first,
/// then decoded, so a decoding error is a store error with its row).
fn collect<R, T>(
    store: &Store,
    sql: &str,
    params: impl rusqlite::Params,
    read: impl FnMut(&Row<'_>) -> rusqlite::Result<R>,
    mut decode: impl FnMut(R) -> Result<T>,
) -> Result<Vec<T>> {
    let mut st = store.conn.prepare(sql)?;
    let rows = st.query_map(params, read)?;
    let mut out = Vec::new();
    for row in rows {
        out.push(decode(row?)?);
    }
    Ok(out)
}

/// Rows that need no decoding.
fn as_is<T>(t: T) -> Result<T> {
    Ok(t)
}

impl Store {
    /// Every stored candidate, by id.
    pub fn all_candidates(&self) -> Result<Vec<Candidate>> {
        collect(
            self,
            "SELECT id, policy, prompt_id, sample_index, text, finish_reason = 'length' FROM candidates ORDER BY id",
            [],
            super::queries::candidate_row,
            as_is,
        )
    }

    /// The texts of the candidates with these ids (those stored; any order).
    pub fn candidate_texts(&self, ids: &[i64]) -> Result<Vec<(i64, String)>> {
        let ids = serde_json::to_string(ids).map_err(|e| StoreError::Invalid(e.to_string()))?;
        collect(
            self,
            "SELECT id, text FROM candidates WHERE id IN (SELECT value FROM json_each(?1))",
            [ids],
            |r| Ok((r.get(0)?, r.get(1)?)),
            as_is,
        )
    }

    /// Every answered best_of_k trial that was not skipped, in the order the answers were
    /// committed (a live view that reads them piece by piece reads them in this order too).
    pub fn best_of_k_answers(&self) -> Result<Vec<BestOfKAnswer>> {
        self.best_of_k_answers_in("", [])
    }

    /// As [`Store::best_of_k_answers`], those committed after answer number `after` up to
    /// `upto` ([`Store::last_answer_seq`]); none where the file predates answer numbers.
    pub fn best_of_k_answers_after(&self, after: i64, upto: i64) -> Result<Vec<BestOfKAnswer>> {
        if !self.numbers_answers()? {
            return Ok(Vec::new());
        }
        self.best_of_k_answers_in("AND a.seq > ?1 AND a.seq <= ?2", [after, upto])
    }

    /// The number of the last answer committed (0 for none): what a live view reads up to.
    /// None where the file predates answer numbers (a read-only archive of schema 4 or
    /// less, which never changes).
    pub fn last_answer_seq(&self) -> Result<Option<i64>> {
        if !self.numbers_answers()? {
            return Ok(None);
        }
        Ok(Some(self.conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM answers", [], |r| r.get(0))?))
    }

    /// Whether answers carry the number they were committed under (schema 5 on).
    fn numbers_answers(&self) -> Result<bool> {
        Ok(self.schema_version()? >= 5)
    }

    fn best_of_k_answers_in<P: rusqlite::Params>(&self, range: &str, params: P) -> Result<Vec<BestOfKAnswer>> {
        type Raw = (i64, i64, (String, String), String, String, u32, String, Option<String>, Option<i64>, bool);
        // Older files (read as they are) have no answer numbers: their trial order stands in.
        let seq = if self.numbers_answers()? { "a.seq" } else { "a.trial_id" };
        let mut rows = collect(
            self,
            &format!(
                "SELECT t.id, {seq}, t.participant_id, t.prompt_id, t.policy_a, t.policy_b, t.k, t.slots, t.candidate_ids, a.choice, a.no_preference
                 FROM trials t JOIN answers a ON a.trial_id = t.id
                 WHERE t.kind = 'best_of_k' AND a.skipped = 0 {range}"
            ),
            params,
            |r| -> rusqlite::Result<Raw> {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    (r.get(2)?, r.get(3)?),
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                    r.get(9)?,
                    r.get(10)?,
                ))
            },
            |(id, seq, (participant, prompt_id), policy_a, policy_b, k, slots, cids, choice, no_preference)| {
                Ok((
                    seq,
                    BestOfKAnswer {
                        participant,
                        prompt_id,
                        policy_a,
                        policy_b,
                        k,
                        roles: json::<Vec<RoleOf>>("trials", id, "slot list", &slots)?
                            .into_iter()
                            .map(|r| r.role)
                            .collect(),
                        candidate_ids: json_opt("trials", id, "candidate id list", cids)?.unwrap_or_default(),
                        choice: slot_index("answers", id, choice)?,
                        no_preference,
                    },
                ))
            },
        )?;
        // Sorted here rather than by SQLite: scanning by the answer-number index would read
        // the trials in random order.
        rows.sort_by_key(|(seq, _)| *seq);
        Ok(rows.into_iter().map(|(_, a)| a).collect())
    }

    /// Every answered rank trial that was shown and got a pick or an ordering, by
    /// participant, prompt and position.
    pub fn rank_answers(&self) -> Result<Vec<RankAnswer>> {
        type Raw = (i64, String, String, String, Option<i64>, Option<String>);
        collect(
            self,
            "SELECT t.id, t.participant_id, t.prompt_id, t.candidate_ids, a.choice, a.ordering
             FROM trials t JOIN answers a ON a.trial_id = t.id
             WHERE t.kind = 'rank' AND a.skipped = 0 AND a.no_preference = 0 AND t.candidate_ids IS NOT NULL
             ORDER BY t.participant_id, t.prompt_id, t.position",
            [],
            |r| -> rusqlite::Result<Raw> { Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)) },
            |(id, participant, prompt, shown, choice, ordering)| {
                Ok(RankAnswer {
                    participant,
                    prompt,
                    shown: json("trials", id, "candidate id list", &shown)?,
                    choice: slot_index("answers", id, choice)?,
                    ordering: json_opt("answers", id, "ordering", ordering)?,
                })
            },
        )
    }

    /// The counts behind the data-quality checks; `too_fast_ms` is the threshold of "too fast".
    pub fn quality_counts(&self, too_fast_ms: u64) -> Result<QualityCounts> {
        let count = |r: &Row<'_>, i| r.get::<_, i64>(i).map(|v| v as usize);
        let picks_by_slot = collect(
            self,
            "SELECT json_array_length(t.slots), a.choice, COUNT(*) FROM trials t JOIN answers a ON a.trial_id = t.id
             WHERE t.kind IN ('best_of_k', 'rank') AND t.mode = 'pick' AND a.choice IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2",
            [],
            |r| Ok((count(r, 0)?, count(r, 1)?, count(r, 2)?)),
            as_is,
        )?;
        let response_ms = collect(
            self,
            "SELECT response_ms FROM answers ORDER BY response_ms",
            [],
            |r| r.get::<_, i64>(0),
            |v| Ok(v.max(0) as u64),
        )?;
        let too_fast = collect(
            self,
            "SELECT t.participant_id, SUM(a.response_ms < ?1), COUNT(*) FROM answers a JOIN trials t ON t.id = a.trial_id
             GROUP BY 1 HAVING SUM(a.response_ms < ?1) > 0 ORDER BY 2 DESC",
            [i64::try_from(too_fast_ms).unwrap_or(i64::MAX)],
            |r| Ok((r.get::<_, String>(0)?, count(r, 1)?, count(r, 2)?)),
            as_is,
        )?;
        // A failed check: no pick, or a pick of a slot that is not the intact (gold) one.
        let attention = collect(
            self,
            "SELECT t.participant_id,
                    SUM(a.choice IS NULL OR json_extract(t.slots, '$[' || a.choice || '].role') != 'gold'), COUNT(*)
             FROM trials t JOIN answers a ON a.trial_id = t.id WHERE t.kind = 'attention' GROUP BY 1 ORDER BY 2 DESC",
            [],
            |r| Ok((r.get::<_, String>(0)?, count(r, 1)?, count(r, 2)?)),
            as_is,
        )?;
        let repeat_picks = collect(
            self,
            "SELECT (SELECT text FROM candidates WHERE id = json_extract(o.candidate_ids, '$[' || oa.choice || ']')),
                    (SELECT text FROM candidates WHERE id = json_extract(r.candidate_ids, '$[' || ra.choice || ']'))
             FROM trials r JOIN trials o ON o.id = r.repeat_of JOIN answers oa ON oa.trial_id = o.id
             JOIN answers ra ON ra.trial_id = r.id WHERE oa.choice IS NOT NULL AND ra.choice IS NOT NULL",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
            as_is,
        )?;
        let seen_in_full = if self.records_seen_in_full()? {
            self.conn.query_row(
                "SELECT COALESCE(SUM(seen_in_full = 0), 0), COUNT(seen_in_full) FROM answers",
                [],
                |r| Ok((count(r, 0)?, count(r, 1)?)),
            )?
        } else {
            (0, 0)
        };
        Ok(QualityCounts { picks_by_slot, response_ms, too_fast, attention, repeat_picks, seen_in_full })
    }

    /// Finished participants' ids in the order they finished (ties by enrolment): the
    /// order in which they enter f(k)'s confidence sequences.
    pub fn finish_order(&self) -> Result<Vec<String>> {
        let mut st = self
            .conn
            .prepare("SELECT id FROM participants WHERE completed_at IS NOT NULL ORDER BY completed_at, rowid")?;
        let ids = st.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(ids)
    }

    /// Participants, finished participants, trials and answers.
    pub(crate) fn progress(&self) -> Result<Progress> {
        let (participants, completed): (i64, i64) =
            self.conn.query_row("SELECT COUNT(*), COUNT(completed_at) FROM participants", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
        let (trials, answered): (i64, i64) =
            self.conn.query_row("SELECT COUNT(*), (SELECT COUNT(*) FROM answers) FROM trials", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
        Ok(Progress {
            participants: participants as usize,
            completed: completed as usize,
            answered: answered as usize,
            trials: trials as usize,
        })
    }

    /// A number that changes whenever another connection commits to the database (SQLite's
    /// `data_version`): what the dashboard polls to know when to recompute.
    pub fn data_version(&self) -> Result<i64> {
        Ok(self.conn.query_row("PRAGMA data_version", [], |r| r.get(0))?)
    }

    /// Every candidate with everything recorded about it, by policy, prompt and sample.
    pub fn candidate_records(&self) -> Result<Vec<CandidateRecord>> {
        type Raw = (CandidateRecord, Option<String>, Option<String>);
        collect(
            self,
            "SELECT id, policy, prompt_id, sample_index, text, token_count, finish_reason, logprob, seed, model_hash,
                    provider, prefill_ms, decode_ms, settings, meta, created_at
             FROM candidates ORDER BY policy, prompt_id, sample_index",
            [],
            |r| -> rusqlite::Result<Raw> {
                Ok((
                    CandidateRecord {
                        id: r.get(0)?,
                        policy: r.get(1)?,
                        prompt_id: r.get(2)?,
                        sample_index: r.get(3)?,
                        text: r.get(4)?,
                        token_count: r.get(5)?,
                        finish_reason: r.get(6)?,
                        logprob: r.get(7)?,
                        seed: r.get(8)?,
                        model_hash: r.get(9)?,
                        provider: r.get(10)?,
                        prefill_ms: r.get(11)?,
                        decode_ms: r.get(12)?,
                        settings: None,
                        meta: None,
                        created_at: r.get(15)?,
                    },
                    r.get(13)?,
                    r.get(14)?,
                ))
            },
            |(mut c, settings, meta)| {
                c.settings = json_opt("candidates", c.id, "settings", settings)?;
                c.meta = json_opt("candidates", c.id, "metadata", meta)?;
                Ok(c)
            },
        )
    }

    /// Every trial with its answer, by participant and position.
    pub(crate) fn trial_records(&self) -> Result<Vec<TrialRecord>> {
        type Raw = (TrialRecord, String, Option<String>, Option<i64>, Option<String>);
        let seen = if self.records_seen_in_full()? { "a.seen_in_full" } else { "NULL" };
        collect(
            self,
            &format!(
                "SELECT t.id, t.participant_id, t.position, t.block, t.kind, t.mode, t.prompt_id, t.k, t.policy_a, t.policy_b,
                        t.slots, t.candidate_ids, t.repeat_of, t.session_id, t.shown_at, a.answered_at, a.response_ms,
                        a.choice, a.ordering, a.no_preference, a.skipped, {seen}
                 FROM trials t LEFT JOIN answers a ON a.trial_id = t.id
                 ORDER BY t.participant_id, t.position"
            ),
            [],
            |r| -> rusqlite::Result<Raw> {
                Ok((
                    TrialRecord {
                        id: r.get(0)?,
                        participant: r.get(1)?,
                        position: r.get(2)?,
                        block: r.get(3)?,
                        kind: r.get(4)?,
                        mode: r.get(5)?,
                        prompt_id: r.get(6)?,
                        k: r.get(7)?,
                        policy_a: r.get(8)?,
                        policy_b: r.get(9)?,
                        slots: Vec::new(),
                        candidate_ids: None,
                        repeat_of: r.get(12)?,
                        session_id: r.get(13)?,
                        shown_at: r.get(14)?,
                        answered_at: r.get(15)?,
                        response_ms: r.get(16)?,
                        choice: None,
                        ordering: None,
                        no_preference: r.get(19)?,
                        skipped: r.get(20)?,
                        seen_in_full: r.get(21)?,
                    },
                    r.get(10)?,
                    r.get(11)?,
                    r.get(17)?,
                    r.get(18)?,
                ))
            },
            |(mut t, slots, cids, choice, ordering)| {
                t.slots = json("trials", t.id, "slot list", &slots)?;
                t.candidate_ids = json_opt("trials", t.id, "candidate id list", cids)?;
                t.choice = slot_index("answers", t.id, choice)?;
                t.ordering = json_opt("answers", t.id, "ordering", ordering)?;
                Ok(t)
            },
        )
    }

    /// Every participant with their counts, in the order they joined.
    pub(crate) fn participant_records(&self) -> Result<Vec<ParticipantRecord>> {
        collect(
            self,
            "SELECT p.id, p.created_at, p.consent_at, p.completed_at,
                    (SELECT COUNT(*) FROM trials t WHERE t.participant_id = p.id),
                    (SELECT COUNT(*) FROM trials t JOIN answers a ON a.trial_id = t.id WHERE t.participant_id = p.id),
                    (SELECT COUNT(*) FROM sessions s WHERE s.participant_id = p.id)
             FROM participants p ORDER BY p.created_at, p.id",
            [],
            |r| {
                Ok(ParticipantRecord {
                    id: r.get(0)?,
                    created_at: r.get(1)?,
                    consent_at: r.get(2)?,
                    completed_at: r.get(3)?,
                    trials: r.get(4)?,
                    answered: r.get(5)?,
                    sessions: r.get(6)?,
                })
            },
            as_is,
        )
    }
}
