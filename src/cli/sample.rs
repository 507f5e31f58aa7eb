//! `ualign sample`: tries a model folder without a study: k candidates for one prompt, with
//! the folder's own generation settings as transformers reads them unless flags say
//! otherwise, and the timing of the run.

use std::path::PathBuf;

use serde_json::{Value, json};

use super::values;
use ualign_engine::{GenOptions, SampleSpec, SamplingParams};

/// Try a model folder without a study: k candidates for one prompt.
#[derive(clap::Args)]
pub(crate) struct Cmd {
    /// Model folder (config.json, tokenizer.json, tokenizer_config.json, model.onnx)
    model: PathBuf,
    #[arg(long)]
    prompt: String,
    /// Number of candidates (1 to 10000)
    #[arg(short, default_value_t = 4, allow_negative_numbers = true, value_parser = values::whole::<u32, 1, { values::MAX_K }>)]
    k: u32,
    /// 1 to 8192. Default: generation_config.json, else 64
    #[arg(long, allow_negative_numbers = true, value_parser = values::whole::<u32, 1, 8192>)]
    max_new_tokens: Option<u32>,
    /// 0 is greedy, at most 100. Default: generation_config.json, else 1.0
    #[arg(long, allow_negative_numbers = true, value_parser = values::temperature)]
    temperature: Option<f32>,
    /// In (0, 1]. Default: generation_config.json, else 1.0 (off)
    #[arg(long, allow_negative_numbers = true, value_parser = values::top_p)]
    top_p: Option<f32>,
    /// 0 is off. Default: generation_config.json, else 50 (transformers' default, which
    /// applies whenever a model's generation_config.json does not set top_k)
    #[arg(long, allow_negative_numbers = true, value_parser = values::whole::<u32, 0, { u32::MAX as u64 }>)]
    top_k: Option<u32>,
    /// In [0, 1]. Default: generation_config.json, else 0 (off)
    #[arg(long, allow_negative_numbers = true, value_parser = values::min_p)]
    min_p: Option<f32>,
    /// Positive. Default: generation_config.json, else 1.0 (off)
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
    /// Send the prompt as is, not through the chat template
    #[arg(long)]
    raw: bool,
    /// Decode exactly max-new-tokens, ignoring eos
    #[arg(long)]
    ignore_eos: bool,
    /// One JSON object per candidate, then one with the timing
    #[arg(long)]
    json: bool,
}

/// `GenerationConfig.top_k` when the file leaves it out: sampling a Hugging Face model with
/// its own settings keeps the 50 most likely tokens unless its generation_config.json says
/// otherwise, so `sample` does too.
const TRANSFORMERS_TOP_K: f64 = 50.0;

fn gen_default(cfg: &Value, key: &str) -> Option<f64> {
    cfg.get(key).and_then(Value::as_f64)
}

impl Cmd {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        let t_load = std::time::Instant::now();
        let mut g = ualign_engine::load(&self.model, self.ep.into(), self.threads)?;
        let load_ms = t_load.elapsed().as_secs_f64() * 1000.0;
        for n in std::mem::take(&mut g.notices) {
            eprintln!("notice: {n}");
        }
        if let Some(why) = &g.provider.fallback {
            eprintln!("notice: CUDA is not available ({}); running on CPU", why.lines().next().unwrap_or(why));
        }
        let opts = self.options(&g.folder.generation)?;
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
        Ok(())
    }

    /// The settings: each flag, else the folder's generation_config.json as transformers
    /// reads it, else transformers' defaults; what the file gives is held to the same
    /// rules as the flags.
    fn options(&self, gc: &Value) -> anyhow::Result<GenOptions> {
        let gc_path = if self.model.is_dir() { self.model.clone() } else { self.model.with_file_name("") }
            .join("generation_config.json");
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
            },
        })
    }
}
