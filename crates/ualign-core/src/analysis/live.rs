//! The live view's f(k), kept up to date from the answers committed since the last read:
//! what the dashboard shows within a moment of a commit however many participants a study
//! has. A [`LiveReader`] keeps each row's sums (per participant, in the order answers were
//! committed) and its confidence sequence (in the order participants finished); a read
//! takes only the answers numbered after the last one it read (schema 5's answer numbers),
//! adds them, pushes newly finished participants into the sequences, and recomputes the
//! intervals of the rows that changed. Its rows equal [`LiveView::compute`]'s, which reads
//! every answer, bit for bit (a test holds it to that).
//!
//! Where a read finds what it cannot add (answers numbered below the last read, which a
//! restored backup would show; a participant's answer after they finished; a finish order
//! that is not the last one extended), it starts again from every answer, so that what it
//! shows is never a sum the whole reading would not give.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use super::confseq::Running;
use super::fk::{self, CS_ALPHA, FkRow, RowSums};
use super::report::AnalysisError;
use super::report::LiveView;
use crate::store::{BestOfKAnswer, Store};
use crate::study::Study;

/// The live f(k) and progress, read piece by piece (see the module's documentation).
#[derive(Debug, Clone)]
pub struct LiveReader {
    replicates: usize,
    seed: u64,
    /// The number of the last answer added (0 before any).
    read_upto: i64,
    /// Texts of the candidates answers showed: a shown candidate never changes (its pool
    /// may only be replaced while none of it has been shown).
    texts: HashMap<i64, String>,
    rows: BTreeMap<(String, String, u32), Row>,
    /// Finished participants in the sequences, in the order they finished.
    finished: Vec<String>,
    in_sequences: HashSet<String>,
    /// Reads that had to start again from every answer (for tests and the bench).
    restarts: usize,
    /// Where the rows' intervals are computed: this pool, else the process-wide one.
    pool: Option<Arc<rayon::ThreadPool>>,
}

#[derive(Debug, Clone)]
struct Row {
    sums: RowSums,
    cs: Running,
    /// The row as last computed; none when its sums or sequence changed since.
    shown: Option<FkRow>,
}

impl LiveReader {
    /// Before any read; `replicates`: the f(k) bootstrap's, as the report's.
    pub fn new(study: &Study, replicates: usize) -> Self {
        Self::empty(replicates, study.seed)
    }

    fn empty(replicates: usize, seed: u64) -> Self {
        Self {
            replicates,
            seed,
            read_upto: 0,
            texts: HashMap::new(),
            rows: BTreeMap::new(),
            finished: Vec::new(),
            in_sequences: HashSet::new(),
            restarts: 0,
            pool: None,
        }
    }

    /// Computes the rows' intervals in `pool` (a dashboard keeps its live view out of the
    /// process-wide pool, where the full report's work runs).
    pub fn in_pool(mut self, pool: Arc<rayon::ThreadPool>) -> Self {
        self.pool = Some(pool);
        self
    }

    /// Reads the answers committed since the last read (all of them the first time) and
    /// gives the live view now.
    pub fn read(&mut self, study: &Study, store: &Store) -> Result<LiveView, AnalysisError> {
        let _snapshot = store.snapshot()?;
        let Some(upto) = store.last_answer_seq()? else {
            // A file from before answer numbers is an archive that never changes.
            return LiveView::compute(study, store, self.replicates);
        };
        if upto < self.read_upto {
            self.restart();
        }
        let answers = store.best_of_k_answers_after(self.read_upto, upto)?;
        self.learn_texts(store, &answers)?;
        let answered_after_finishing = self.add(&answers);
        self.read_upto = upto;
        let finished = store.finish_order()?;
        if answered_after_finishing || !finished.starts_with(&self.finished) {
            // Rebuilt from the start below (a rare case: answers after finishing, or a
            // finish order that changed).
            self.restarts += 1;
            self.finished.clear();
            self.in_sequences.clear();
            for row in self.rows.values_mut() {
                row.cs = Running::new(CS_ALPHA);
                row.shown = None;
            }
        }
        self.finish_and_recompute(finished);
        Ok(LiveView { progress: store.progress()?, fk: self.rows.values().filter_map(|r| r.shown.clone()).collect() })
    }

    /// Reads the texts of the candidates `answers` showed that are not known yet.
    fn learn_texts(&mut self, store: &Store, answers: &[BestOfKAnswer]) -> Result<(), AnalysisError> {
        let mut missing: Vec<i64> =
            answers.iter().flat_map(|a| &a.candidate_ids).filter(|id| !self.texts.contains_key(id)).copied().collect();
        missing.sort_unstable();
        missing.dedup();
        if !missing.is_empty() {
            self.texts.extend(store.candidate_texts(&missing)?);
        }
        Ok(())
    }

    /// Adds `answers` to their rows' sums (each row's in the order they were committed;
    /// its key looked up once, not once per answer); whether any came from a participant
    /// already in the sequences.
    fn add(&mut self, answers: &[BestOfKAnswer]) -> bool {
        let by_id: HashMap<i64, &str> = self.texts.iter().map(|(id, t)| (*id, t.as_str())).collect();
        let mut by_row: BTreeMap<(&str, &str, u32), Vec<fk::Observation<'_>>> = BTreeMap::new();
        for o in fk::scores(answers, &by_id) {
            by_row.entry((o.policy_a, o.policy_b, o.k)).or_default().push(o);
        }
        let mut after_finishing = false;
        for ((a, b, k), obs) in by_row {
            let row = self.rows.entry((a.to_string(), b.to_string(), k)).or_insert_with(|| Row {
                sums: RowSums::default(),
                cs: Running::new(CS_ALPHA),
                shown: None,
            });
            for o in obs {
                after_finishing |= self.in_sequences.contains(o.participant);
                row.sums.add(o.participant, o.score);
            }
            row.shown = None;
        }
        after_finishing
    }

    /// Row by row (in parallel, in the reader's pool): those in `finished` past the ones
    /// taken already into the sequence, then the row anew where anything changed.
    fn finish_and_recompute(&mut self, finished: Vec<String>) {
        let newly = &finished[self.finished.len()..];
        self.in_sequences.extend(newly.iter().cloned());
        let resampling = (self.replicates, self.seed);
        let rows = &mut self.rows;
        let mut recompute = move || {
            use rayon::prelude::*;
            rows.par_iter_mut().for_each(|((a, b, k), r)| {
                for p in newly {
                    if let Some(mean) = r.sums.mean_of(p) {
                        r.cs.push(mean);
                        r.shown = None;
                    }
                }
                if r.shown.is_none() {
                    r.shown = Some(r.sums.row((a, b, *k), &r.cs, resampling));
                }
            });
        };
        match &self.pool {
            Some(pool) => pool.install(recompute),
            None => recompute(),
        }
        self.finished = finished;
    }

    /// How many reads had to start again from every answer or sequence.
    pub fn restarts(&self) -> usize {
        self.restarts
    }

    fn restart(&mut self) {
        let (restarts, pool) = (self.restarts + 1, self.pool.take());
        *self = Self::empty(self.replicates, self.seed);
        (self.restarts, self.pool) = (restarts, pool);
    }
}
