//! Which samples a study still needs: the pools its blocks draw from, those of them that
//! miss samples, and what one trial needs before it can be shown. Reads the store only.

use std::collections::{BTreeMap, BTreeSet};

use crate::store::{Store, StoreError, StoredTrial};
use crate::study::{Design, Study};

/// One unit of work: the missing samples of one policy's pool for one prompt.
#[derive(Debug, Clone)]
pub struct PoolJob {
    pub policy: String,
    pub prompt_id: String,
    pub missing: Vec<u32>,
}

impl PoolJob {
    /// The samples of a pool of `pool_size` that are not stored yet.
    pub(crate) fn whole_pool(store: &Store, policy: &str, prompt_id: &str, pool_size: u32) -> Result<Self, StoreError> {
        let have = store.stored_samples(policy, prompt_id)?;
        Ok(Self {
            policy: policy.to_string(),
            prompt_id: prompt_id.to_string(),
            missing: (0..pool_size).filter(|i| have.binary_search(i).is_err()).collect(),
        })
    }

    /// This job less what another request or process has stored since it was made.
    pub(crate) fn still_missing(&self, store: &Store) -> Result<Self, StoreError> {
        let have = store.stored_samples(&self.policy, &self.prompt_id)?;
        Ok(Self {
            missing: self.missing.iter().copied().filter(|i| have.binary_search(i).is_err()).collect(),
            ..self.clone()
        })
    }
}

/// (policy, prompt) pairs the study's blocks draw from, by policy.
pub fn needed_pools(study: &Study) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for b in &study.blocks {
        let policies: Vec<&String> = match &b.design {
            Design::BestOfK { policy_a, policy_b, .. } => vec![policy_a, policy_b],
            Design::Rank { policies, .. } => policies.iter().collect(),
        };
        for p in policies {
            out.entry(p.clone()).or_default().extend(b.prompts.iter().cloned());
        }
    }
    out
}

/// The pools of the policies ualign generates (model and server policies) that still
/// miss samples, in study order.
pub fn pending_jobs(study: &Study, store: &Store) -> Result<Vec<PoolJob>, StoreError> {
    let needed = needed_pools(study);
    let mut jobs = Vec::new();
    for policy in &study.policies {
        if !policy.source.is_generated() {
            continue;
        }
        let Some(prompts) = needed.get(&policy.name) else {
            continue;
        };
        for prompt in study.prompts.iter().filter(|p| prompts.contains(&p.id)) {
            let job = PoolJob::whole_pool(store, &policy.name, &prompt.id, policy.pool_size)?;
            if !job.missing.is_empty() {
                jobs.push(job);
            }
        }
    }
    Ok(jobs)
}

/// [`pending_jobs`] prompt by prompt (each prompt's pools one after another, prompts in
/// study order): the order in which whole trials become ready, for background filling.
pub fn pending_jobs_by_prompt(study: &Study, store: &Store) -> Result<Vec<PoolJob>, StoreError> {
    let mut jobs = pending_jobs(study, store)?;
    let order = |id: &str| study.prompts.iter().position(|p| p.id == id).unwrap_or(usize::MAX);
    // A stable sort keeps the policies' study order within a prompt.
    jobs.sort_by_key(|j| order(&j.prompt_id));
    Ok(jobs)
}

/// What a trial still needs before it can be shown: jobs for the generated policies' missing
/// samples (whole pools, so one request fills what later trials of the prompt need too),
/// and the imported policies whose candidates are missing (only `ualign import` can
/// fill those).
pub fn missing_for_trial(
    study: &Study,
    store: &Store,
    trial: &StoredTrial,
) -> Result<(Vec<PoolJob>, Vec<String>), StoreError> {
    let prompt = &trial.plan.prompt_id;
    let mut jobs: Vec<PoolJob> = Vec::new();
    let mut imported: Vec<String> = Vec::new();
    for slot in &trial.plan.slots {
        if jobs.iter().any(|j| j.policy == slot.policy) || imported.contains(&slot.policy) {
            continue;
        }
        if store.candidate(&slot.policy, prompt, slot.sample)?.is_some() {
            continue;
        }
        match study.policy(&slot.policy) {
            Some(p) if p.source.is_generated() => {
                jobs.push(PoolJob::whole_pool(store, &p.name, prompt, p.pool_size)?);
            }
            _ => imported.push(slot.policy.clone()),
        }
    }
    Ok((jobs, imported))
}
