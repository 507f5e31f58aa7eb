//! `ualign sample`: tries a model folder without a study: k candidates for one prompt, with
//! the settings a study's policy has when it leaves them out (so what is tried is what a
//! study gets), or the folder's generation_config.json as transformers reads it with
//! `--generation-config`; and the timing of the run. With `--study`, it makes one of a
//! study's stored candidates again and says whether it is the same.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use serde_json::{Value, json};

use super::values;
use ualign_engine::server::printable;
use ualign_engine::{GenOptions, SampleSpec, SamplingParams};

/// Try a model folder without a study: k candidates for one prompt.
#[derive(clap::Args)]
pub(crate) struct Cmd {
    /// Model folder (config.json, tokenizer.json, tokenizer_config.json, model.onnx), a
    /// GGUF file, or `default` for the embedded SmolLM2-135M-Instruct
    #[arg(required_unless_present_any = ["study", "server"], conflicts_with = "server")]
    model: Option<PathBuf>,
    /// Sample an OpenAI-compatible server instead (its API root, e.g.
    /// http://gpu-box:8000/v1), one request per candidate, each with its own seed
    #[arg(long, requires = "server_model", conflicts_with_all = ["study", "generation_config", "ignore_eos", "threads"])]
    server: Option<String>,
    /// With --server: the model name to ask the server for
    #[arg(long = "model", id = "server_model", requires = "server")]
    server_model: Option<String>,
    /// With --server: the environment variable holding the API key (never the key itself)
    #[arg(long, requires = "server")]
    api_key_env: Option<String>,
    /// With --server: requests in flight at once (1 to 256)
    #[arg(long, requires = "server", default_value_t = 8, allow_negative_numbers = true, value_parser = values::whole::<u32, 1, { ualign_engine::server::MAX_CONCURRENCY as u64 }>)]
    concurrency: u32,
    /// The prompt's text; with --study, the prompt's id
    #[arg(long)]
    prompt: String,
    /// Number of candidates (1 to 10000)
    #[arg(short, default_value_t = 4, allow_negative_numbers = true, value_parser = values::whole::<u32, 1, { values::MAX_K }>)]
    k: u32,
    /// Make one stored candidate of a study again (with --policy, --prompt ID, --index I),
    /// from its policy's model and settings and the study's seed, and compare it with the
    /// stored one
    #[arg(long, requires_all = ["policy", "index"], conflicts_with_all = SETTINGS)]
    study: Option<PathBuf>,
    /// With --study: the policy
    #[arg(long, requires = "study")]
    policy: Option<String>,
    /// With --study: the candidate's sample_index (0 up, as `export` writes it)
    #[arg(long, requires = "study", allow_negative_numbers = true, value_parser = values::whole::<u32, 0, { u32::MAX as u64 }>)]
    index: Option<u32>,
    /// With --study: the database (default: db/<study name>.sqlite)
    #[arg(long, requires = "study")]
    db: Option<PathBuf>,
    /// Settings left out come from the folder's generation_config.json, read as
    /// transformers reads it (top-k 50 where the file does not set top_k), instead of a
    /// study's defaults
    #[arg(long)]
    generation_config: bool,
    /// 1 to 8192. Default: 64 (or generation_config.json's)
    #[arg(long, allow_negative_numbers = true, value_parser = values::whole::<u32, 1, 8192>)]
    max_new_tokens: Option<u32>,
    /// 0 is greedy, at most 100. Default: 1.0 (or generation_config.json's)
    #[arg(long, allow_negative_numbers = true, value_parser = values::temperature)]
    temperature: Option<f32>,
    /// In (0, 1]. Default: 1.0, off (or generation_config.json's)
    #[arg(long, allow_negative_numbers = true, value_parser = values::top_p)]
    top_p: Option<f32>,
    /// 0 is off. Default: 0, as in a study (with --generation-config: the file's, else 50,
    /// transformers' default whenever a model's generation_config.json does not set top_k)
    #[arg(long, allow_negative_numbers = true, value_parser = values::whole::<u32, 0, { u32::MAX as u64 }>)]
    top_k: Option<u32>,
    /// In [0, 1]. Default: 0, off (or generation_config.json's)
    #[arg(long, allow_negative_numbers = true, value_parser = values::min_p)]
    min_p: Option<f32>,
    /// Positive. Default: 1.0, off (or generation_config.json's)
    #[arg(long, allow_negative_numbers = true, value_parser = values::repetition_penalty)]
    repetition_penalty: Option<f32>,
    /// Stop strings (repeat the flag for several)
    #[arg(long)]
    stop: Vec<String>,
    #[arg(long, default_value_t = 0, allow_negative_numbers = true, value_parser = values::whole::<u64, 0, { u64::MAX }>)]
    seed: u64,
    #[arg(long, value_enum, default_value = "cpu")]
    ep: super::EpArg,
    /// Intra-op threads, 1 to 256 (default: ONNX Runtime's choice)
    #[arg(long, allow_negative_numbers = true, value_parser = values::whole::<usize, 1, { values::MAX_THREADS }>)]
    threads: Option<usize>,
    /// How a GGUF model's matrices are multiplied: exact (fp32, greedy equals
    /// transformers') or fast (int8 activations: 1.5-2.8x faster on a CPU, logits slightly
    /// off; the default model's MODEL_CARD.md says how much)
    #[arg(long, default_value = "exact", value_parser = ualign_engine::Precision::parse, conflicts_with = "server")]
    precision: ualign_engine::Precision,
    /// Send the prompt as is, not through the chat template (with --server: to the
    /// /completions endpoint instead of /chat/completions)
    #[arg(long)]
    raw: bool,
    /// Decode exactly max-new-tokens, ignoring eos
    #[arg(long)]
    ignore_eos: bool,
    /// One JSON object per candidate, then one with the timing
    #[arg(long)]
    json: bool,
}

/// The flags a study's policy sets itself, refused beside `--study`.
const SETTINGS: [&str; 13] = [
    "model",
    "precision",
    "k",
    "generation_config",
    "max_new_tokens",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "repetition_penalty",
    "stop",
    "raw",
    "ignore_eos",
];

/// `GenerationConfig.top_k` when the file leaves it out: sampling a Hugging Face model with
/// its own settings keeps the 50 most likely tokens unless its generation_config.json says
/// otherwise, so `sample` does too.
const TRANSFORMERS_TOP_K: f64 = 50.0;

fn gen_default(cfg: &Value, key: &str) -> Option<f64> {
    cfg.get(key).and_then(Value::as_f64)
}

impl Cmd {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        if let Some(study) = &self.study {
            return self.reproduce(study);
        }
        if let Some(url) = &self.server {
            return self.sample_server(url);
        }
        let model = self.model_dir();
        let t_load = std::time::Instant::now();
        let mut g = ualign_engine::load_at(&model, self.ep.into(), self.threads, self.precision)?;
        let load_ms = t_load.elapsed().as_secs_f64() * 1000.0;
        for n in std::mem::take(&mut g.notices) {
            eprintln!("notice: {n}");
        }
        if let Some(why) = &g.provider.fallback {
            eprintln!("notice: CUDA is not available ({}); running on CPU", why.lines().next().unwrap_or(why));
        }
        let opts = self.options(&model, &g.folder.generation)?;
        let ids = g.encode_prompt(&self.prompt, !self.raw)?;
        let specs: Vec<SampleSpec> = (0..self.k)
            .map(|i| SampleSpec { index: i, seed: ualign_core::seed::sample_seed(self.seed, "sample", "cli", i) })
            .collect();
        let (samples, t) = g.generate(&ids, &specs, &opts, None)?;
        if self.json {
            for s in &samples {
                println!(
                    "{}",
                    json!({"index": s.index, "text": s.text, "token_ids": s.token_ids, "finish_reason": s.finish_reason,
                           "logprob": s.logprob, "seed": s.seed})
                );
            }
            println!("{}", json!({ "timing": self.timing(&g, &opts, &t, load_ms) }));
        } else {
            for s in &samples {
                println!(
                    "[{}] ({} tokens, {}, logprob {:.2})\n{}\n",
                    s.index + 1,
                    s.token_ids.len(),
                    s.finish_reason.as_str(),
                    s.logprob,
                    s.text.trim()
                );
            }
            eprintln!(
                "{}: prefill {} tokens in {:.1} ms; decode {} tokens in {:.1} ms ({:.0} tokens/s)",
                g.provider,
                t.prompt_tokens,
                t.prefill_ms,
                t.new_tokens,
                t.decode_ms,
                t.decode_tokens_per_s()
            );
        }
        Ok(ExitCode::SUCCESS)
    }

    /// `--study`: one stored candidate made again, compared with the stored one (exit 1
    /// when they differ, with what may explain it).
    fn reproduce(&self, study_path: &std::path::Path) -> anyhow::Result<ExitCode> {
        let (policy, index) = (self.policy.clone().unwrap_or_default(), self.index.unwrap_or_default());
        let target = super::StudyArgs { study: study_path.to_path_buf(), db: self.db.clone() };
        let study = super::load_study(study_path)?;
        self.check_reproducible(&study, &policy, index)?;
        let db = super::db_path(&study, self.db.as_ref());
        let store = if self.db.is_some() || db.exists() { Some(target.open_existing()?.1) } else { None };
        // The chat template's date is the study's recorded day; a study with no database yet has today.
        let day = match &store {
            Some(s) => s.study_day()?,
            None => chrono::Utc::now().date_naive(),
        };
        let mut models = ualign_core::pools::Models::new(self.ep.into(), self.threads);
        if matches!(study.policy(&policy).map(|p| &p.source), Some(ualign_core::study::PolicySource::Server { .. })) {
            let s = models.server_sample(&study, &policy, &self.prompt, index, None)?;
            return self.compare_server(store.as_ref(), &policy, s);
        }
        let made = models.sample(&study, &policy, &self.prompt, &[index], day, None)?;
        for n in models.take_notices() {
            eprintln!("notice: {n}");
        }
        let s = made.samples.into_iter().next().context("the engine made no sample")?;
        let stored = match &store {
            Some(st) => st.candidate(&policy, &self.prompt, index)?.map(|c| -> anyhow::Result<_> {
                let (hash, _) = st.candidate_provenance(c.id)?;
                Ok((c, hash))
            }),
            None => None,
        }
        .transpose()?;
        let same = stored.as_ref().map(|(c, _)| c.text == s.text);
        if self.json {
            println!(
                "{}",
                json!({"policy": policy, "prompt": self.prompt, "index": s.index, "text": s.text, "token_ids": s.token_ids,
                       "finish_reason": s.finish_reason, "logprob": s.logprob, "seed": s.seed, "model_hash": made.model_hash,
                       "stored_candidate": stored.as_ref().map(|(c, _)| c.id), "same_as_stored": same})
            );
        } else {
            println!("{}", s.text);
        }
        let what = format!("policy `{policy}`, prompt `{}`, sample {index}", self.prompt);
        match (stored, same) {
            (Some((c, _)), Some(true)) => eprintln!("{what}: the same text as stored candidate {}", c.id),
            (Some((c, hash)), _) => {
                let why = match hash {
                    Some(h) if h != made.model_hash => {
                        format!("it was made with model {h:.12}…, the folder now holds {:.12}…", made.model_hash)
                    }
                    Some(_) => format!(
                        "the model is the same ({:.12}…); the provider or machine may differ (stored candidates record theirs: `ualign export`)",
                        made.model_hash
                    ),
                    None => "it was imported, not made here".into(),
                };
                eprintln!("{what}: DIFFERS from stored candidate {}: {why}", c.id);
                return Ok(ExitCode::FAILURE);
            }
            _ => eprintln!("{what}: not stored yet; `ualign generate` will store this text"),
        }
        Ok(ExitCode::SUCCESS)
    }

    /// `--study` for a server policy: the candidate asked for again, compared with the
    /// stored one (exit 1 when they differ, with the models and fingerprints of both).
    fn compare_server(
        &self,
        store: Option<&ualign_core::store::Store>,
        policy: &str,
        s: ualign_engine::server::ServerSample,
    ) -> anyhow::Result<ExitCode> {
        let stored = match store {
            Some(st) => st.candidate(policy, &self.prompt, s.index)?,
            None => None,
        };
        let same = stored.as_ref().map(|c| c.text == s.text);
        if self.json {
            let mut v = serde_json::to_value(&s)?;
            v["policy"] = json!(policy);
            v["prompt"] = json!(self.prompt);
            v["stored_candidate"] = json!(stored.as_ref().map(|c| c.id));
            v["same_as_stored"] = json!(same);
            println!("{v}");
        } else {
            println!("{}", printable(&s.text));
        }
        let what = format!("policy `{policy}`, prompt `{}`, sample {}", self.prompt, s.index);
        let answered = format!(
            "the server answered as `{}`{}",
            printable(s.model.as_deref().unwrap_or("?")),
            s.system_fingerprint.as_ref().map(|f| format!(", fingerprint {}", printable(f))).unwrap_or_default()
        );
        match (stored, same) {
            (Some(c), Some(true)) => eprintln!("{what}: the same text as stored candidate {} ({answered})", c.id),
            (Some(c), _) => {
                eprintln!(
                    "{what}: DIFFERS from stored candidate {} ({answered}; the stored one's model, fingerprint and request are in `ualign export`'s meta): the server may have changed its model or build, or is not deterministic for a fixed seed (vLLM needs batch invariance; llama.cpp's server needs cache_prompt off)",
                    c.id
                );
                return Ok(ExitCode::FAILURE);
            }
            _ => eprintln!("{what}: not stored yet; `ualign generate` will ask for it ({answered})"),
        }
        Ok(ExitCode::SUCCESS)
    }

    /// That `--policy`, `--prompt` and `--index` name a candidate the study's own model
    /// made, or why not (with the closest name where one was mistyped).
    fn check_reproducible(&self, study: &ualign_core::study::Study, policy: &str, index: u32) -> anyhow::Result<()> {
        let Some(p) = study.policy(policy) else {
            let known: Vec<&str> = study.policies.iter().map(|p| p.name.as_str()).collect();
            let hint = ualign_core::study::closest(policy, &known)
                .map(|c| format!("did you mean `{c}`? "))
                .unwrap_or_default();
            anyhow::bail!("the study has no policy `{policy}`; {hint}(policies: {})", known.join(", "));
        };
        if study.prompt(&self.prompt).is_none() {
            let known: Vec<&str> = study.prompts.iter().map(|p| p.id.as_str()).collect();
            let hint = ualign_core::study::closest(&self.prompt, &known)
                .map(|c| format!("; did you mean `{c}`?"))
                .unwrap_or_default();
            anyhow::bail!("with --study, --prompt is a prompt's id: the study has no prompt `{}`{hint}", self.prompt);
        }
        match &p.source {
            ualign_core::study::PolicySource::Model { .. } => {}
            ualign_core::study::PolicySource::Server { .. } => {}
            ualign_core::study::PolicySource::Imported => anyhow::bail!(
                "policy `{policy}` is imported: ualign did not make its candidates, so it cannot make them again"
            ),
        }
        if index >= p.pool_size {
            anyhow::bail!(
                "--index {index} is not in policy `{policy}`'s pools: they hold samples 0 to {}",
                p.pool_size - 1
            );
        }
        Ok(())
    }

    /// `--server`: k candidates from an OpenAI-compatible server, as a study's server
    /// policy with these settings would ask for them.
    fn sample_server(&self, url: &str) -> anyhow::Result<ExitCode> {
        use ualign_engine::server::{Endpoint, ServerClient, ServerJob, ServerSpec};
        if self.ep != super::EpArg::Cpu {
            anyhow::bail!("--ep chooses the in-process engine's provider; the server decides its own");
        }
        let mut spec = ServerSpec::new(url, self.server_model.as_deref().unwrap_or_default());
        spec.api_key_env.clone_from(&self.api_key_env);
        // The URL is the one typed here, not a study file's.
        spec.url_from_user = true;
        spec.concurrency = self.concurrency;
        spec.endpoint = if self.raw { Endpoint::Completions } else { Endpoint::Chat };
        // Beyond OpenAI's own settings, only what was asked for: a server's defaults stay
        // its own, as a study's server policy sends them.
        for (key, v) in [
            ("top_k", self.top_k.map(|v| json!(v))),
            ("min_p", self.min_p.map(|v| json!(f64::from(v)))),
            ("repetition_penalty", self.repetition_penalty.map(|v| json!(f64::from(v)))),
        ] {
            if let Some(v) = v {
                spec.extra.insert(key.into(), v);
            }
        }
        let d = ualign_engine::decoding::Decoding::default();
        let decoding = ualign_engine::decoding::Decoding {
            sampling: SamplingParams {
                temperature: self.temperature.unwrap_or(d.sampling.temperature),
                top_p: self.top_p.unwrap_or(d.sampling.top_p),
                ..d.sampling
            },
            max_new_tokens: self.max_new_tokens.unwrap_or(d.max_new_tokens),
            stop: self.stop.clone(),
            chat_template: !self.raw,
            precision: ualign_engine::Precision::Exact,
        };
        let client = ServerClient::new(spec)?;
        for n in client.check()? {
            eprintln!("notice: {n}");
        }
        let samples: Vec<SampleSpec> = (0..self.k)
            .map(|i| SampleSpec { index: i, seed: ualign_core::seed::sample_seed(self.seed, "sample", "cli", i) })
            .collect();
        let job = ServerJob { prompt: self.prompt.clone(), samples };
        let cancel = super::cancel_on_ctrl_c();
        let started = std::time::Instant::now();
        let mut got = Vec::new();
        client.run(std::slice::from_ref(&job), &decoding, Some(&cancel), &mut |_, s| {
            got = s;
            std::ops::ControlFlow::Continue(())
        })?;
        let secs = started.elapsed().as_secs_f64();
        for s in &got {
            if self.json {
                println!("{}", serde_json::to_string(s)?);
            } else {
                let tokens = s.completion_tokens.map_or("?".to_string(), |n| n.to_string());
                println!(
                    "[{}] ({tokens} tokens, {}, seed {})\n{}\n",
                    s.index + 1,
                    s.finish_reason,
                    s.seed,
                    s.text.trim()
                );
            }
        }
        let tokens: u64 = got.iter().filter_map(|s| s.completion_tokens).sum();
        let model = got.iter().find_map(|s| s.model.as_deref().map(printable)).unwrap_or_else(|| "?".into());
        let summary = json!({"server": url, "model": model, "candidates": got.len(), "completion_tokens": tokens,
                             "wall_s": secs, "tokens_per_s": tokens as f64 / secs.max(1e-9)});
        if self.json {
            println!("{}", json!({ "timing": summary }));
        } else {
            eprintln!(
                "{url} (model `{model}`): {} candidates, {tokens} tokens in {secs:.1} s ({:.0} tokens/s, {} at once)",
                got.len(),
                tokens as f64 / secs.max(1e-9),
                self.concurrency
            );
        }
        Ok(ExitCode::SUCCESS)
    }

    /// The model folder: the path given, or the embedded default's for `default`.
    fn model_dir(&self) -> PathBuf {
        let m = self.model.clone().unwrap_or_default();
        match m.to_str() {
            Some(name) if !m.exists() && ualign_engine::DEFAULT_MODEL_NAMES.contains(&name) => {
                ualign_engine::default_model_dir()
            }
            _ => m,
        }
    }

    /// The settings: each flag, else a study's defaults; with `--generation-config`, each
    /// flag, else the folder's generation_config.json as transformers reads it, else
    /// transformers' defaults, what the file gives held to the same rules as the flags.
    fn options(&self, model: &std::path::Path, gc: &Value) -> anyhow::Result<GenOptions> {
        if !self.generation_config {
            let d = ualign_engine::decoding::Decoding::default();
            let params = SamplingParams {
                temperature: self.temperature.unwrap_or(d.sampling.temperature),
                top_k: self.top_k.unwrap_or(d.sampling.top_k),
                top_p: self.top_p.unwrap_or(d.sampling.top_p),
                min_p: self.min_p.unwrap_or(d.sampling.min_p),
                repetition_penalty: self.repetition_penalty.unwrap_or(d.sampling.repetition_penalty),
            };
            let max_new_tokens = self.max_new_tokens.unwrap_or(d.max_new_tokens);
            return Ok(GenOptions { params, max_new_tokens, stop: self.stop.clone(), ignore_eos: self.ignore_eos });
        }
        let gc_path =
            if model.is_dir() { model.to_path_buf() } else { model.with_file_name("") }.join("generation_config.json");
        let greedy_default = gc.get("do_sample").and_then(Value::as_bool) == Some(false);
        let params = SamplingParams {
            temperature: self.temperature.unwrap_or(if greedy_default {
                0.0
            } else {
                gen_default(gc, "temperature").unwrap_or(1.0) as f32
            }),
            top_k: self.top_k.unwrap_or(gen_default(gc, "top_k").unwrap_or(TRANSFORMERS_TOP_K) as u32),
            top_p: self.top_p.unwrap_or(gen_default(gc, "top_p").unwrap_or(1.0) as f32),
            min_p: self.min_p.unwrap_or(gen_default(gc, "min_p").unwrap_or(0.0) as f32),
            repetition_penalty: self
                .repetition_penalty
                .unwrap_or(gen_default(gc, "repetition_penalty").unwrap_or(1.0) as f32),
        };
        let from_file = |key: &str, v: f32, flag: &str| -> anyhow::Result<()> {
            ualign_engine::decoding::limits::check(key, f64::from(v)).map_err(|rule| {
                anyhow::anyhow!("{}: {key} = {v}: {rule}; pass --{flag} to override it", gc_path.display())
            })
        };
        from_file("temperature", params.temperature, "temperature")?;
        from_file("top_p", params.top_p, "top-p")?;
        from_file("min_p", params.min_p, "min-p")?;
        from_file("repetition_penalty", params.repetition_penalty, "repetition-penalty")?;
        let max_new_tokens = match (self.max_new_tokens, gen_default(gc, "max_new_tokens")) {
            (Some(n), _) => n,
            (None, Some(n)) if (1.0..=8192.0).contains(&n) => n as u32,
            (None, Some(n)) => anyhow::bail!(
                "{}: max_new_tokens = {n} is out of range (1 to 8192); pass --max-new-tokens to override it",
                gc_path.display()
            ),
            (None, None) => 64,
        };
        Ok(GenOptions { params, max_new_tokens, stop: self.stop.clone(), ignore_eos: self.ignore_eos })
    }

    /// The timing line of `--json`, with the settings used.
    fn timing(
        &self,
        g: &ualign_engine::Generator,
        opts: &GenOptions,
        t: &ualign_engine::PoolTiming,
        load_ms: f64,
    ) -> Value {
        let p = &opts.params;
        json!({
            "provider": g.provider.to_string(),
            "load_ms": load_ms,
            "prompt_tokens": t.prompt_tokens,
            "prefill_ms": t.prefill_ms,
            "decode_ms": t.decode_ms,
            "decode_run_ms": t.decode_run_ms,
            "decode_steps": t.decode_steps,
            "decode_tokens": t.new_tokens,
            "decode_tokens_per_s": t.decode_tokens_per_s(),
            "settings": {
                "temperature": p.temperature, "top_k": p.top_k, "top_p": p.top_p, "min_p": p.min_p,
                "repetition_penalty": p.repetition_penalty, "max_new_tokens": opts.max_new_tokens,
                "chat_template": !self.raw && g.folder.chat_template.is_some(), "seed": self.seed,
                "precision": g.precision().as_str(),
            },
        })
    }
}
