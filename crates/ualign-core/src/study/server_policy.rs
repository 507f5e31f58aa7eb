//! A `[[policies]]` entry with `source = "server"`: an OpenAI-compatible server's URL,
//! model and limits, read with their locations like every other field. The API key is
//! named by its environment variable and never written in the study (which the database
//! stores).

use std::time::Duration;

use serde_json::json;

use super::PolicySource;
use super::parse::read_decoding;
use super::reader::{Cx, TableReader};
use ualign_engine::server::{Endpoint, MAX_CONCURRENCY, OWN_FIELDS, ServerSpec, base_url_refusal, key_env_refusal};

/// Ranges of the server policy's limits.
const CONCURRENCY: std::ops::RangeInclusive<i64> = 1..=MAX_CONCURRENCY as i64;
const TIMEOUT_S: std::ops::RangeInclusive<i64> = 1..=86_400;
const RETRIES: std::ops::RangeInclusive<i64> = 0..=100;

pub(super) fn read_server(cx: &mut Cx, t: &TableReader) -> Option<PolicySource> {
    let base_url = t.required_string(cx, "base_url").filter(|u| base_url_ok(cx, t, u));
    let model = t.required_string(cx, "model");
    if model.as_deref().is_some_and(|m| m.trim().is_empty()) {
        cx.error(t.span_of("model"), &t.path_of("model"), "the model name is empty: give the name the server serves");
    }
    let api_key_env = read_key_env(cx, t);
    let endpoint = match t.string(cx, "endpoint").as_deref() {
        None | Some("chat") => Endpoint::Chat,
        Some("completions") => Endpoint::Completions,
        Some(other) => {
            cx.error(
                t.span_of("endpoint"),
                &t.path_of("endpoint"),
                format!(
                    "unknown endpoint `{other}`; use \"chat\" (/chat/completions, the server's chat template) or \"completions\" (/completions, the prompt as it is)"
                ),
            );
            Endpoint::Chat
        }
    };
    let concurrency = bounded(cx, t, "concurrency", CONCURRENCY, "requests in flight at once");
    let timeout_s = bounded(cx, t, "timeout_s", TIMEOUT_S, "seconds one request may take");
    let retries = bounded(cx, t, "retries", RETRIES, "retries of a request after a 429, 5xx or timeout");
    let (decoding, extra) = read_request(cx, t);
    let mut spec = ServerSpec::new(&base_url?, &model?);
    spec.api_key_env = api_key_env;
    spec.endpoint = endpoint;
    if let Some(n) = concurrency {
        spec.concurrency = n as u32;
    }
    if let Some(s) = timeout_s {
        spec.timeout = Duration::from_secs(s as u64);
    }
    if let Some(n) = retries {
        spec.retries = n as u32;
    }
    spec.extra = extra;
    Some(PolicySource::Server { server: spec, decoding })
}

/// `api_key_env`, the name of the variable holding the key (and a refusal of a key
/// written into the study).
fn read_key_env(cx: &mut Cx, t: &TableReader) -> Option<String> {
    if t.has("api_key") {
        cx.error(
            t.span_of("api_key"),
            &t.path_of("api_key"),
            "a key in the study file would be stored in every database made from it: remove it, export the key in an environment variable and name that variable with `api_key_env = \"VLLM_KEY\"`",
        );
    }
    let var = t.string(cx, "api_key_env");
    if let Some(var) = &var
        && let Some(why) = key_env_refusal(var)
    {
        cx.error(t.span_of("api_key_env"), &t.path_of("api_key_env"), format!("`{}`: {why}", shorten(var)));
    }
    var
}

/// The decoding settings, and the request fields beyond OpenAI's own: the sampling
/// settings the study names that OpenAI's API lacks, then `extra_body`.
fn read_request(
    cx: &mut Cx,
    t: &TableReader,
) -> (ualign_engine::decoding::Decoding, serde_json::Map<String, serde_json::Value>) {
    let (decoding, set) = read_decoding(cx, t);
    if set.contains(&"chat_template") {
        cx.error(
            t.span_of("decoding"),
            &t.path_of("decoding.chat_template"),
            "a server policy's `endpoint` decides this: \"chat\" sends the prompt through the server's chat template, \"completions\" sends it as it is",
        );
    }
    if set.contains(&"precision") {
        cx.error(
            t.span_of("decoding"),
            &t.path_of("decoding.precision"),
            "precision is how ualign's own engine multiplies a GGUF model's matrices; a server runs its model as it was started: leave it out",
        );
    }
    let mut extra = serde_json::Map::new();
    for key in set.iter().filter(|k| **k != "chat_template" && **k != "precision") {
        let v = match *key {
            "top_k" => json!(decoding.sampling.top_k),
            "min_p" => json!(f64::from(decoding.sampling.min_p)),
            _ => json!(f64::from(decoding.sampling.repetition_penalty)),
        };
        extra.insert((*key).to_string(), v);
    }
    if let Some((body, span)) = t.json_table(cx, "extra_body") {
        for (k, v) in body {
            if OWN_FIELDS.contains(&k.as_str()) || extra.contains_key(&k) {
                cx.error(
                    span.clone(),
                    &t.path_of(&format!("extra_body.{k}")),
                    format!(
                        "`{k}` is ualign's to set, from the study (the prompt, its seed and [policies.decoding]), or would change what a stored candidate is: set it in [policies.decoding] if it is a decoding setting there, or leave it out"
                    ),
                );
            } else {
                extra.insert(k, v);
            }
        }
    }
    (decoding, extra)
}

/// An integer key within `range`, or an error saying the range.
fn bounded(
    cx: &mut Cx,
    t: &TableReader,
    key: &'static str,
    range: std::ops::RangeInclusive<i64>,
    what: &str,
) -> Option<i64> {
    let (n, span) = t.integer(cx, key)?;
    if range.contains(&n) {
        return Some(n);
    }
    cx.error(
        span,
        &t.path_of(key),
        format!("{n} is out of range: {key} ({what}) is from {} to {}", range.start(), range.end()),
    );
    None
}

/// Whether `url` is a server's base URL, saying why not where it is not.
fn base_url_ok(cx: &mut Cx, t: &TableReader, url: &str) -> bool {
    let problem = base_url_refusal(url);
    if let Some(p) = &problem {
        // (Never the URL itself: it may hold a password.)
        cx.error(t.span_of("base_url"), &t.path_of("base_url"), format!("not a server's base URL: {p}"));
    }
    problem.is_none()
}

/// The start of a value that may be a secret, for a message.
fn shorten(s: &str) -> String {
    if s.chars().count() <= 12 { s.to_string() } else { format!("{}…", s.chars().take(6).collect::<String>()) }
}
