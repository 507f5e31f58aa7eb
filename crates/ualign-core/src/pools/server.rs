//! Filling server policies' pools: every missing sample of the jobs asked for, requested
//! concurrently (up to the policy's `concurrency`), each pool stored in one transaction
//! as soon as its last sample is in. What was sent and what the server said about each
//! answer is recorded beside it (`candidates.meta`).

use std::ops::ControlFlow;
use std::sync::atomic::AtomicBool;

use serde_json::json;

use super::generate::{Models, PoolDone, PoolError};
use super::plan::PoolJob;
use crate::store::{NewCandidate, Store};
use crate::study::{Policy, PolicySource, Study};
use ualign_engine::SampleSpec;
use ualign_engine::server::{ServerClient, ServerJob, ServerSample, ServerSpec};

impl Models {
    /// The client of a server policy, made and checked against the server on first use
    /// (the check's notices join the others).
    pub fn server(&mut self, policy: &Policy) -> Result<&ServerClient, PoolError> {
        let PolicySource::Server { server, .. } = &policy.source else {
            return Err(PoolError::NotAModel(policy.name.clone()));
        };
        if !self.servers.contains_key(&policy.name) {
            let err = |source| PoolError::server(&policy.name, source);
            let client = ServerClient::new(server.clone()).map_err(err)?;
            let notices = client.check().map_err(err)?;
            self.notices.extend(notices.into_iter().map(|n| format!("policy `{}`: {n}", policy.name)));
            self.servers.insert(policy.name.clone(), client);
        }
        Ok(&self.servers[&policy.name])
    }

    /// The client of a server policy made so far (by [`Models::preload`]), taken out to be
    /// used elsewhere (another thread's [`Models`]).
    pub fn take_server(&mut self, policy: &str) -> Option<ServerClient> {
        self.servers.remove(policy)
    }

    /// Uses `client` (checked already) for `policy`.
    pub fn adopt_server(&mut self, policy: &str, client: ServerClient) {
        self.servers.insert(policy.to_string(), client);
    }

    /// Fills the jobs of one server policy: all their missing samples requested at once
    /// (the policy's `concurrency` in flight), each pool stored in its own transaction as
    /// soon as it is complete and then handed to `on_pool`. On Ctrl-C or an error the
    /// pools stored so far stay, and nothing of the others is stored.
    pub fn run_server_jobs(
        &mut self,
        study: &Study,
        store: &mut Store,
        jobs: &[PoolJob],
        cancel: Option<&AtomicBool>,
        on_pool: &mut dyn FnMut(&PoolJob, &PoolDone),
    ) -> Result<(), PoolError> {
        let Some(first) = jobs.first() else { return Ok(()) };
        let policy = study.policy(&first.policy).ok_or_else(|| PoolError::NotAModel(first.policy.clone()))?;
        let PolicySource::Server { server: spec, decoding } = &policy.source else {
            return Err(PoolError::NotAModel(policy.name.clone()));
        };
        let mut requests = Vec::with_capacity(jobs.len());
        for job in jobs {
            if job.policy != policy.name {
                return Err(PoolError::NotAModel(job.policy.clone()));
            }
            let prompt = study.prompt(&job.prompt_id).ok_or_else(|| PoolError::NoPrompt(job.prompt_id.clone()))?;
            let samples = job
                .missing
                .iter()
                .map(|&index| SampleSpec {
                    index,
                    seed: crate::seed::sample_seed(study.seed, &prompt.id, &policy.name, index),
                })
                .collect();
            requests.push(ServerJob { prompt: prompt.text.clone(), samples });
        }
        let client = self.server(policy)?;
        let mut stored: Result<(), PoolError> = Ok(());
        let ran = client.run(&requests, decoding, cancel, &mut |j, samples| {
            let job = &jobs[j];
            let rows: Vec<NewCandidate> = samples.into_iter().map(|s| row(job, spec, s)).collect();
            let new_tokens = rows.iter().filter_map(|r| r.token_count).map(u64::from).sum();
            match store.insert_candidates(&rows) {
                // Rows another process stored first are not counted again.
                Ok(inserted) => {
                    let done = PoolDone { candidates: inserted, new_tokens, provider: provider(spec) };
                    on_pool(job, &done);
                    ControlFlow::Continue(())
                }
                Err(e) => {
                    stored = Err(e.into());
                    ControlFlow::Break(())
                }
            }
        });
        stored?;
        ran.map_err(|source| PoolError::server(&policy.name, source))
    }
}

impl Models {
    /// Sample `index` of a server policy's pool for a prompt, asked for again exactly as
    /// `generate` asked for it (same request, same seed), and not stored: what `ualign
    /// sample --study` compares with the stored candidate.
    pub fn server_sample(
        &mut self,
        study: &Study,
        policy: &str,
        prompt_id: &str,
        index: u32,
        cancel: Option<&AtomicBool>,
    ) -> Result<ServerSample, PoolError> {
        let policy = study.policy(policy).ok_or_else(|| PoolError::NotAModel(policy.to_string()))?;
        let PolicySource::Server { decoding, .. } = &policy.source else {
            return Err(PoolError::NotAModel(policy.name.clone()));
        };
        let prompt = study.prompt(prompt_id).ok_or_else(|| PoolError::NoPrompt(prompt_id.to_string()))?;
        let seed = crate::seed::sample_seed(study.seed, &prompt.id, &policy.name, index);
        let job = ServerJob { prompt: prompt.text.clone(), samples: vec![SampleSpec { index, seed }] };
        let mut got = None;
        let client = self.server(policy)?;
        client
            .run(std::slice::from_ref(&job), decoding, cancel, &mut |_, mut s| {
                got = s.pop();
                ControlFlow::Break(())
            })
            .map_err(|source| PoolError::server(&policy.name, source))?;
        got.ok_or_else(|| PoolError::NotAModel(policy.name.clone()))
    }
}

/// Notices for the server policies whose stored candidates came from another server than
/// the one the study names now (a `base_url` may change without making another study):
/// if it serves other weights under the same model name, one pool would hold two models.
pub fn moved_servers(study: &Study, store: &Store) -> Result<Vec<String>, PoolError> {
    let mut out = Vec::new();
    for (policy, from, n) in store.providers()? {
        let Some(PolicySource::Server { server, .. }) = study.policy(&policy).map(|p| &p.source) else { continue };
        if from != provider(server) {
            out.push(format!(
                "policy `{policy}`: {n} stored candidates came from {}, the study now names {}; if that server serves other weights under the name `{}`, this policy's pools will mix two models",
                from.strip_prefix("server ").unwrap_or(&from),
                server.base_url,
                server.model
            ));
        }
    }
    Ok(out)
}

/// Where a server policy's candidates came from, as the `provider` column says it.
fn provider(spec: &ServerSpec) -> String {
    format!("server {}", spec.base_url)
}

/// A stored candidate of a server's answer: the seed sent, the finish reason and token
/// count the server gave, the latency as `decode_ms`, the settings sent (the request less
/// its prompt: a setting the study left to the server is not there), and in `meta`
/// everything else.
fn row(job: &PoolJob, spec: &ServerSpec, s: ServerSample) -> NewCandidate {
    let mut settings = s.request.clone();
    if let Some(o) = settings.as_object_mut() {
        o.retain(|k, _| !matches!(k.as_str(), "messages" | "prompt" | "model"));
    }
    let meta = json!({
        "server": {
            "base_url": spec.base_url,
            "endpoint": spec.endpoint.as_str(),
            "requested_model": spec.model,
            "model": s.model,
            "system_fingerprint": s.system_fingerprint,
            // OpenAI's only promise: the same seed and system_fingerprint give mostly the
            // same text. No open-source server makes one; none is assumed.
            "determinism_claimed": s.system_fingerprint.is_some(),
            "prompt_tokens": s.prompt_tokens,
            "completion_tokens": s.completion_tokens,
            "latency_ms": s.latency_ms,
            "attempts": s.attempts,
            "request": s.request,
        }
    });
    NewCandidate {
        policy: job.policy.clone(),
        prompt_id: job.prompt_id.clone(),
        sample_index: s.index,
        text: s.text,
        token_count: s.completion_tokens.and_then(|n| u32::try_from(n).ok()),
        finish_reason: Some(s.finish_reason),
        logprob: None,
        seed: Some(s.seed),
        settings: Some(settings.to_string()),
        model_hash: None,
        provider: Some(provider(spec)),
        prefill_ms: None,
        decode_ms: Some(s.latency_ms),
        meta: Some(meta.to_string()),
    }
}
