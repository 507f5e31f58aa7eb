//! Reading and validating a study file: syntax, types, unknown keys, then cross-references
//! (policies named by blocks, prompt ids, k against pool sizes), all reported together.

use std::collections::{BTreeSet, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use toml::de::DeTable;

use super::diag::{Diagnostic, Diagnostics, Severity, SourceMap};
use super::reader::{Cx, TableReader};
use super::server_policy::read_server;
use super::{Block, Decoding, Design, OnLength, Policy, PolicySource, Prompt, RankMode, Study, StudyOptions};

/// Parses a study from its text. Returns the study when it could be built (it may still
/// carry errors in the diagnostics; callers must check `has_errors`).
pub fn parse_study(path: &Path, text: &str) -> (Option<Study>, Diagnostics) {
    let src = SourceMap::new(path, text);
    let mut cx = Cx { src: &src, diags: Diagnostics::default() };
    let doc = match DeTable::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let msg = e.message().trim().to_string();
            cx.error(span, "", format!("TOML syntax error: {msg}"));
            return (None, cx.diags);
        }
    };
    let root = TableReader::new(doc.get_ref(), doc.span(), String::new());
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let study = read_study(&mut cx, &root, path, text, &base_dir);
    root.finish(&mut cx);
    (study, cx.diags)
}

fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

fn read_study(cx: &mut Cx, root: &TableReader, path: &Path, text: &str, base_dir: &Path) -> Option<Study> {
    let name = root.required_string(cx, "name");
    if let Some(n) = &name
        && !is_slug(n)
    {
        cx.error(
            root.span_of("name"),
            "name",
            format!(
                "`{n}` is not a slug: use lowercase letters, digits, '-' and '_' (at most 64), e.g. \"fortune-demo\""
            ),
        );
    }
    let title = root.string(cx, "title");
    let description = root.string(cx, "description").unwrap_or_default();
    let welcome = root.string(cx, "welcome").unwrap_or_default();
    let consent = root.string(cx, "consent").unwrap_or_default();
    let instructions = root.string(cx, "instructions").unwrap_or_default();
    let completion_message =
        root.string(cx, "completion_message").unwrap_or_else(|| "Thank you for taking part.".into());
    let completion_code = root.string(cx, "completion_code").unwrap_or_default();
    let completion_url = root.string(cx, "completion_url").filter(|u| match url_problem(u) {
        None => true,
        Some(why) => {
            let span = root.span_of("completion_url");
            cx.error(
                span,
                "completion_url",
                format!("{why}; e.g. Prolific's completion link, ending in /submissions/complete?cc=YOURCODE"),
            );
            false
        }
    });
    let seed = match root.integer(cx, "seed") {
        Some((s, _)) if s >= 0 => s as u64,
        Some((s, span)) => {
            cx.error(span, "seed", format!("{s} is negative; the seed must be an integer from 0 up"));
            0
        }
        None => 0,
    };
    let options = read_options(cx, root);

    let mut hasher = Sha256::new();
    hasher.update(b"study\0");
    hasher.update(text.as_bytes());
    let prompts = read_prompts(cx, root, base_dir, &mut hasher);
    let policies = read_policies(cx, root, base_dir);
    let blocks = read_blocks(cx, root, &prompts, &policies);
    let hash = format!("{:x}", hasher.finalize());

    let name = name?;
    Some(Study {
        path: path.to_path_buf(),
        source: text.to_string(),
        hash,
        title: title.unwrap_or_else(|| name.clone()),
        name,
        description,
        welcome,
        consent,
        instructions,
        completion_message,
        completion_code,
        completion_url,
        seed,
        options,
        prompts,
        policies,
        blocks,
    })
}

fn read_options(cx: &mut Cx, root: &TableReader) -> StudyOptions {
    let mut o = StudyOptions::default();
    let Some(t) = root.table(cx, "options") else {
        return o;
    };
    if let Some(b) = t.boolean(cx, "allow_no_preference") {
        o.allow_no_preference = b;
    }
    if let Some(b) = t.boolean(cx, "allow_skip") {
        o.allow_skip = b;
    }
    if let Some((s, span)) = t.number(cx, "min_reading_seconds") {
        if (0.0..=600.0).contains(&s) {
            o.min_reading_ms = (s * 1000.0).round() as u64;
        } else {
            cx.error(span, &t.path_of("min_reading_seconds"), format!("{s} is outside 0..=600 seconds"));
        }
    }
    if let Some(b) = t.boolean(cx, "shuffle_blocks") {
        o.shuffle_blocks = b;
    }
    if let Some(p) = t.string(cx, "participant_id_pattern") {
        match super::IdPattern::new(&p) {
            Ok(p) => o.participant_id_pattern = Some(p),
            Err(e) => cx.error(
                t.span_of("participant_id_pattern"),
                &t.path_of("participant_id_pattern"),
                format!("not a valid regular expression: {e}; e.g. \"[0-9a-f]{{24}}\" for Prolific ids"),
            ),
        }
    }
    if let Some((n, span)) = t.integer(cx, "break_every") {
        match u32::try_from(n) {
            Ok(n) if n > 0 => o.break_every = Some(n),
            _ => cx.error(
                span,
                &t.path_of("break_every"),
                format!("{n} is not a positive integer; leave the key out for no breaks"),
            ),
        }
    }
    t.finish(cx);
    o
}

fn read_prompts(cx: &mut Cx, root: &TableReader, base_dir: &Path, hasher: &mut Sha256) -> Vec<Prompt> {
    let mut prompts: Vec<(Prompt, Range<usize>, String)> = Vec::new();
    for t in root.tables(cx, "prompts") {
        let id = t.required_string(cx, "id");
        let text = t.required_string(cx, "text");
        let tags = t.string_list(cx, "tags").unwrap_or_default();
        if let (Some(id), Some(text)) = (id, text) {
            prompts.push((
                Prompt { id, text, tags: tags.into_iter().map(|(s, _)| s).collect() },
                t.span.clone(),
                t.path.clone(),
            ));
        }
        t.finish(cx);
    }
    if let Some(file) = root.string(cx, "prompts_file") {
        let span = root.span_of("prompts_file");
        let full = base_dir.join(&file);
        match std::fs::read_to_string(&full) {
            Ok(content) => {
                hasher.update(b"\0prompts_file\0");
                hasher.update(content.as_bytes());
                let (from_file, diags) = parse_prompt_file(&full, &content);
                for d in diags {
                    cx.diags.push(d);
                }
                prompts.extend(from_file.into_iter().map(|p| (p, span.clone(), "prompts_file".to_string())));
            }
            Err(e) => cx.error(
                span,
                "prompts_file",
                format!("cannot read {}: {e}; the path is relative to the study file's folder", full.display()),
            ),
        }
    }
    let mut seen: HashMap<String, ()> = HashMap::new();
    let mut out = Vec::new();
    for (p, span, path) in prompts {
        if p.id.trim().is_empty() {
            cx.error(span, &format!("{path}.id"), "prompt id is empty");
            continue;
        }
        if p.text.trim().is_empty() {
            cx.error(span, &format!("{path}.text"), format!("prompt `{}` has empty text", p.id));
            continue;
        }
        if seen.insert(p.id.clone(), ()).is_some() {
            cx.error(span, &format!("{path}.id"), format!("duplicate prompt id `{}`; prompt ids must be unique", p.id));
            continue;
        }
        out.push(p);
    }
    if out.is_empty() && !cx.diags.has_errors() {
        cx.error(
            root.span.start..root.span.start,
            "prompts",
            "the study has no prompts: add [[prompts]] entries or prompts_file = \"...\"",
        );
    }
    out
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PromptLine {
    id: String,
    text: String,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    #[allow(dead_code)]
    meta: serde_json::Value,
}

/// Prompts from a `.jsonl` file (`{"id", "text", "tags"?, "meta"?}` a line) or any other
/// text file (one prompt a non-empty line, id `L<line number>`).
pub(crate) fn parse_prompt_file(path: &Path, content: &str) -> (Vec<Prompt>, Vec<Diagnostic>) {
    let mut out = Vec::new();
    let mut diags = Vec::new();
    let jsonl = path.extension().is_some_and(|e| e == "jsonl");
    for (i, line) in content.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        if !jsonl {
            out.push(Prompt { id: format!("L{}", i + 1), text: line.trim().to_string(), tags: Vec::new() });
            continue;
        }
        match serde_json::from_str::<PromptLine>(line) {
            Ok(p) => out.push(Prompt { id: p.id, text: p.text, tags: p.tags }),
            Err(e) => diags.push(Diagnostic {
                severity: Severity::Error,
                file: path.to_path_buf(),
                line: i + 1,
                col: e.column().max(1),
                path: String::new(),
                message: format!(
                    "bad prompt line: {e}; each line must be {{\"id\": \"...\", \"text\": \"...\", \"tags\": [...]}}"
                ),
            }),
        }
    }
    (out, diags)
}

fn read_policies(cx: &mut Cx, root: &TableReader, base_dir: &Path) -> Vec<Policy> {
    let mut out: Vec<Policy> = Vec::new();
    let tables = root.tables(cx, "policies");
    if tables.is_empty() && !root.has("policies") {
        cx.error(
            root.span.start..root.span.start,
            "policies",
            "the study has no policies: add at least one [[policies]] entry",
        );
    }
    for t in tables {
        let name = t.required_string(cx, "name");
        let source = t.required_string(cx, "source");
        let pool_size = match t.integer(cx, "pool_size") {
            Some((n, _)) if (1..=100_000).contains(&n) => n as u32,
            Some((n, span)) => {
                cx.error(span, &t.path_of("pool_size"), format!("{n} is not a positive integer (at most 100000)"));
                1
            }
            None => 8,
        };
        if let Some(n) = &name {
            if !is_slug(n) {
                cx.error(
                    t.span_of("name"),
                    &t.path_of("name"),
                    format!("`{n}` is not a slug: use lowercase letters, digits, '-' and '_'"),
                );
            } else if out.iter().any(|p| &p.name == n) {
                cx.error(t.span_of("name"), &t.path_of("name"), format!("duplicate policy name `{n}`"));
            }
        }
        let src = match source.as_deref() {
            Some("model") => {
                let dir = model_dir(cx, &t, base_dir);
                let (decoding, _) = read_decoding(cx, &t);
                dir.map(|dir| PolicySource::Model { dir, decoding })
            }
            Some("server") => read_server(cx, &t),
            Some("imported") => Some(PolicySource::Imported),
            Some(other) => {
                cx.error(
                    t.span_of("source"),
                    &t.path_of("source"),
                    format!("unknown source `{other}`; use \"model\", \"server\" or \"imported\""),
                );
                None
            }
            None => None,
        };
        let on_length = read_on_length(cx, &t);
        // A policy whose source is in error (reported above) is still known by name, so
        // the blocks naming it draw no second, misleading error.
        if let Some(name) = name {
            out.push(Policy { name, pool_size, source: src.unwrap_or(PolicySource::Imported), on_length });
        }
        t.finish(cx);
    }
    out
}

/// A model policy's `model`: a model folder or GGUF file relative to the study file, or a
/// name of the embedded default model (`"default"`), when no such path exists.
fn model_dir(cx: &mut Cx, t: &TableReader, base_dir: &Path) -> Option<PathBuf> {
    if !t.has("model") {
        cx.error(
            t.span.start..t.span.start,
            &t.path_of("model"),
            "missing: a model policy needs `model`, a model folder or GGUF file relative to the study file, or `model = \"default\"` for the embedded SmolLM2-135M-Instruct",
        );
        return None;
    }
    let m = t.string(cx, "model")?;
    let dir = base_dir.join(&m);
    if dir.exists() {
        return Some(dir);
    }
    if ualign_engine::DEFAULT_MODEL_NAMES.contains(&m.as_str()) {
        return Some(ualign_engine::default_model_dir());
    }
    cx.warning(
        t.span_of("model"),
        &t.path_of("model"),
        format!(
            "model folder {} does not exist (yet): give a model folder or GGUF file relative to the study file, or `model = \"default\"` for the embedded SmolLM2-135M-Instruct; `ualign generate` needs it",
            dir.display()
        ),
    );
    Some(dir)
}

/// A policy's `on_length` (what participants see of a candidate cut off at its limit).
fn read_on_length(cx: &mut Cx, t: &TableReader) -> OnLength {
    match t.string(cx, "on_length").as_deref() {
        None | Some("keep") => OnLength::Keep,
        Some("trim") => OnLength::Trim,
        Some("mark") => OnLength::Mark,
        Some(other) => {
            cx.error(
                t.span_of("on_length"),
                &t.path_of("on_length"),
                format!(
                    "unknown on_length `{other}`; use \"keep\" (as written), \"trim\" (up to the last sentence end) or \"mark\" (a line saying it was cut)"
                ),
            );
            OnLength::Keep
        }
    }
}

/// A policy's `[policies.decoding]`, with the keys it sets (a server is sent only the
/// settings outside OpenAI's own that the study names).
pub(super) fn read_decoding(cx: &mut Cx, policy: &TableReader) -> (Decoding, Vec<&'static str>) {
    let mut d = Decoding::default();
    let Some(t) = policy.table(cx, "decoding") else {
        return (d, Vec::new());
    };
    let set: Vec<&'static str> = ["top_k", "min_p", "repetition_penalty", "chat_template", "precision"]
        .into_iter()
        .filter(|k| t.has(k))
        .collect();
    let check = |cx: &mut Cx, key: &'static str| -> Option<f64> {
        let (v, span) = t.number(cx, key)?;
        match ualign_engine::decoding::limits::check(key, v) {
            Ok(()) => Some(v),
            Err(rule) => {
                cx.error(span, &t.path_of(key), rule);
                None
            }
        }
    };
    if let Some(v) = check(cx, "temperature") {
        d.sampling.temperature = v as f32;
    }
    if let Some(v) = check(cx, "top_p") {
        d.sampling.top_p = v as f32;
    }
    if let Some(v) = check(cx, "min_p") {
        d.sampling.min_p = v as f32;
    }
    if let Some(v) = check(cx, "repetition_penalty") {
        d.sampling.repetition_penalty = v as f32;
    }
    if let Some((v, span)) = t.integer(cx, "top_k") {
        match u32::try_from(v) {
            Ok(v) => d.sampling.top_k = v,
            Err(_) => cx.error(span, &t.path_of("top_k"), format!("{v} is negative; use 0 to turn top-k off")),
        }
    }
    if let Some((v, span)) = t.integer(cx, "max_new_tokens") {
        let range = ualign_engine::decoding::limits::MAX_NEW_TOKENS;
        match u64::try_from(v) {
            Ok(n) if range.contains(&n) => d.max_new_tokens = n as u32,
            _ => cx.error(
                span,
                &t.path_of("max_new_tokens"),
                format!("{v} is out of range: max_new_tokens must be from {} to {}", range.start(), range.end()),
            ),
        }
    }
    if let Some(stops) = t.string_list(cx, "stop") {
        for (s, span) in &stops {
            if s.is_empty() {
                cx.error(span.clone(), &t.path_of("stop"), "an empty stop string would end every sample at once");
            }
        }
        d.stop = stops.into_iter().map(|(s, _)| s).collect();
    }
    if let Some(b) = t.boolean(cx, "chat_template") {
        d.chat_template = b;
    }
    if let Some(p) = t.string(cx, "precision") {
        match ualign_engine::Precision::parse(&p) {
            Ok(p) => d.precision = p,
            Err(why) => cx.error(t.span_of("precision"), &t.path_of("precision"), why),
        }
    }
    t.finish(cx);
    (d, set)
}

fn read_blocks(cx: &mut Cx, root: &TableReader, prompts: &[Prompt], policies: &[Policy]) -> Vec<Block> {
    let tables = root.tables(cx, "blocks");
    if tables.is_empty() && !root.has("blocks") {
        cx.error(
            root.span.start..root.span.start,
            "blocks",
            "the study has no blocks: add at least one [[blocks]] entry",
        );
    }
    let all_tags: BTreeSet<&str> = prompts.iter().flat_map(|p| p.tags.iter().map(String::as_str)).collect();
    let mut out: Vec<Block> = Vec::new();
    for t in tables {
        let name = t.required_string(cx, "name");
        if let Some(n) = &name
            && out.iter().any(|b| &b.name == n)
        {
            cx.error(t.span_of("name"), &t.path_of("name"), format!("duplicate block name `{n}`"));
        }
        let (trials, attention_checks, repeat_fraction) = read_counts(cx, &t);
        let block_prompts = select_prompts(cx, &t, prompts, &all_tags);
        let design = match t.required_string(cx, "design").as_deref() {
            Some("best_of_k") => read_best_of_k(cx, &t, policies),
            Some("rank") => read_rank(cx, &t, policies),
            Some(other) => {
                cx.error(
                    t.span_of("design"),
                    &t.path_of("design"),
                    format!("unknown design `{other}`; use \"best_of_k\" or \"rank\""),
                );
                t.allow(DESIGN_KEYS);
                None
            }
            None => {
                t.allow(DESIGN_KEYS);
                None
            }
        };
        if let (Some(trials), Some(design)) = (trials, &design)
            && let Some(message) = repeat_notice(trials, block_prompts.len(), design, policies)
        {
            cx.warning(t.span_of("trials"), &t.path_of("trials"), message);
        }
        t.finish(cx);
        if let (Some(name), Some(trials), Some(design)) = (name, trials, design) {
            out.push(Block { name, trials, prompts: block_prompts, design, attention_checks, repeat_fraction });
        }
    }
    out
}

/// A block's `trials`, `attention_checks` (0 when absent; never more than the trials) and
/// `repeat_fraction` (0 when absent), each checked against its range.
fn read_counts(cx: &mut Cx, t: &TableReader) -> (Option<u32>, u32, f64) {
    let trials = match t.required_integer(cx, "trials") {
        Some((n, _)) if (1..=10_000).contains(&n) => Some(n as u32),
        Some((n, span)) => {
            cx.error(span, &t.path_of("trials"), format!("{n} is not a positive integer (at most 10000)"));
            None
        }
        None => None,
    };
    let attention_checks = match t.integer(cx, "attention_checks") {
        Some((n, span)) if trials.is_some_and(|tr| n > i64::from(tr)) => {
            let tr = trials.unwrap_or(0);
            cx.error(
                span,
                &t.path_of("attention_checks"),
                format!("{n} attention checks but only {tr} trials: a block cannot check attention more often than it asks real questions; use at most {tr}"),
            );
            0
        }
        Some((n, _)) if (0..=1000).contains(&n) => n as u32,
        Some((n, span)) => {
            cx.error(span, &t.path_of("attention_checks"), format!("{n} is not a count from 0 to 1000"));
            0
        }
        None => 0,
    };
    let repeat_fraction = match t.number(cx, "repeat_fraction") {
        Some((f, _)) if (0.0..=1.0).contains(&f) => f,
        Some((f, span)) => {
            cx.error(span, &t.path_of("repeat_fraction"), format!("{f} is not a fraction in [0, 1]"));
            0.0
        }
        None => 0.0,
    };
    (trials, attention_checks, repeat_fraction)
}

/// What a participant meets again when a block has more trials than prompts: each prompt
/// recurs a round later, with candidates not yet shown for it while its pools have them.
/// None when every prompt is shown once at most.
fn repeat_notice(trials: u32, prompts: usize, design: &Design, policies: &[Policy]) -> Option<String> {
    let prompts = prompts as u32;
    if prompts == 0 || trials <= prompts {
        return None;
    }
    let times = trials.div_ceil(prompts);
    let again = trials - prompts;
    let pool = |name: &str| policies.iter().find(|p| p.name == name).map_or(0, |p| p.pool_size);
    // Candidates a prompt needs for `times` showings, and what its pools hold.
    let short: Vec<String> = match design {
        Design::BestOfK { policy_a, policy_b, k } => {
            let k_max = k.iter().copied().max().unwrap_or(1);
            if policy_a == policy_b {
                let need = times * (k_max + 1);
                (pool(policy_a) < need)
                    .then(|| format!("`{policy_a}`'s pool of {} (up to {need} needed)", pool(policy_a)))
                    .into_iter()
                    .collect()
            } else {
                [(policy_a, times * k_max), (policy_b, times)]
                    .into_iter()
                    .filter(|(p, need)| pool(p) < *need)
                    .map(|(p, need)| format!("`{p}`'s pool of {} (up to {need} needed)", pool(p)))
                    .collect()
            }
        }
        Design::Rank { policies: names, m, .. } => {
            let have: u32 = names.iter().map(|p| pool(p)).sum();
            let need = times * m;
            (have < need).then(|| format!("the pools' {have} candidates (up to {need} needed)")).into_iter().collect()
        }
    };
    let candidates = if short.is_empty() {
        "each time with candidates not yet shown for it".to_string()
    } else {
        format!(
            "with some of the same candidates again, since a prompt shown {times} times outgrows {}",
            short.join(" and ")
        )
    };
    Some(format!(
        "{trials} trials over {prompts} prompts: {again} of each participant's trials show a prompt already seen (each prompt up to {times} times, a round of the other prompts apart), {candidates}; add prompts, or set trials = {prompts} to show each prompt once"
    ))
}

/// Keys of either design: not reported as unknown when the design itself is unreadable.
const DESIGN_KEYS: &[&str] = &["policy_a", "policy_b", "k", "policies", "m", "mode"];

fn select_prompts(cx: &mut Cx, t: &TableReader, prompts: &[Prompt], all_tags: &BTreeSet<&str>) -> Vec<String> {
    let ids = t.string_list(cx, "prompts");
    let tags = t.string_list(cx, "tags");
    let mut selected: Vec<String> = Vec::new();
    if let Some(ids) = &ids {
        for (i, (id, span)) in ids.iter().enumerate() {
            if prompts.iter().any(|p| &p.id == id) {
                selected.push(id.clone());
            } else {
                cx.error(span.clone(), &format!("{}[{i}]", t.path_of("prompts")), format!("no prompt has id `{id}`"));
            }
        }
    }
    if let Some(tags) = &tags {
        for (i, (tag, span)) in tags.iter().enumerate() {
            if !all_tags.contains(tag.as_str()) {
                cx.error(span.clone(), &format!("{}[{i}]", t.path_of("tags")), format!("no prompt has tag `{tag}`"));
            }
        }
        for p in prompts {
            if p.tags.iter().any(|pt| tags.iter().any(|(t, _)| t == pt)) && !selected.contains(&p.id) {
                selected.push(p.id.clone());
            }
        }
    }
    if ids.is_none() && tags.is_none() {
        selected = prompts.iter().map(|p| p.id.clone()).collect();
    } else if ids.as_ref().is_none_or(Vec::is_empty) && tags.as_ref().is_none_or(Vec::is_empty) {
        // Both given lists are empty (a wrong id or tag was reported above).
        let key = if ids.is_some() { "prompts" } else { "tags" };
        cx.error(
            t.span_of(key),
            &t.path_of(key),
            "the block selects no prompts: name prompt ids or tags, or leave both keys out for every prompt",
        );
    }
    selected
}

fn policy_ref(cx: &mut Cx, t: &TableReader, key: &'static str, policies: &[Policy]) -> Option<String> {
    let name = t.required_string(cx, key)?;
    if policies.iter().any(|p| p.name == name) {
        Some(name)
    } else {
        let known: Vec<&str> = policies.iter().map(|p| p.name.as_str()).collect();
        let hint = super::closest(&name, &known).map(|c| format!("; did you mean `{c}`?")).unwrap_or_default();
        cx.error(
            t.span_of(key),
            &t.path_of(key),
            format!("no policy is named `{name}`{hint} (policies: {})", known.join(", ")),
        );
        None
    }
}

fn read_best_of_k(cx: &mut Cx, t: &TableReader, policies: &[Policy]) -> Option<Design> {
    let a = policy_ref(cx, t, "policy_a", policies);
    let b = policy_ref(cx, t, "policy_b", policies);
    if !t.has("k") {
        cx.error(
            t.span.start..t.span.start,
            &t.path_of("k"),
            "missing: add the list of k values, e.g. `k = [1, 2, 4, 8]`",
        );
        return None;
    }
    let ks = t.integer_list(cx, "k")?;
    if ks.is_empty() {
        cx.error(t.span_of("k"), &t.path_of("k"), "the list of k values is empty, e.g. `k = [1, 2, 4, 8]`");
    }
    let pool_a = a.as_ref().and_then(|a| policies.iter().find(|p| &p.name == a)).map(|p| p.pool_size);
    let mut k = Vec::new();
    for (v, span, path) in ks {
        if !(1..=64).contains(&v) {
            cx.error(span, &path, format!("{v} is not a positive integer (at most 64)"));
        } else if let Some(pool) = pool_a.filter(|&pool| v as u32 > pool) {
            cx.error(
                span,
                &path,
                format!("k = {v} needs {v} distinct candidates but policy_a's pool_size is {pool}; raise pool_size to at least {v}"),
            );
        } else if k.contains(&(v as u32)) {
            cx.error(span, &path, format!("k = {v} is listed twice"));
        } else {
            k.push(v as u32);
        }
    }
    Some(Design::BestOfK { policy_a: a?, policy_b: b?, k })
}

fn read_rank(cx: &mut Cx, t: &TableReader, policies: &[Policy]) -> Option<Design> {
    let names = t.string_list(cx, "policies");
    let mode = match t.string(cx, "mode").as_deref() {
        None | Some("pick") => RankMode::Pick,
        Some("order") => RankMode::Order,
        Some(other) => {
            cx.error(
                t.span_of("mode"),
                &t.path_of("mode"),
                format!("unknown mode `{other}`; use \"pick\" or \"order\""),
            );
            RankMode::Pick
        }
    };
    let mut chosen = Vec::new();
    match names {
        Some(names) if !names.is_empty() => {
            for (i, (n, span)) in names.into_iter().enumerate() {
                if policies.iter().any(|p| p.name == n) {
                    chosen.push(n);
                } else {
                    cx.error(span, &format!("{}[{i}]", t.path_of("policies")), format!("no policy is named `{n}`"));
                }
            }
        }
        Some(_) => cx.error(
            t.span_of("policies"),
            &t.path_of("policies"),
            "empty list; name the policies whose pools are ranked",
        ),
        None => chosen = policies.iter().map(|p| p.name.clone()).collect(),
    }
    let pool: u32 = policies.iter().filter(|p| chosen.contains(&p.name)).map(|p| p.pool_size).sum();
    let m = match t.required_integer(cx, "m") {
        Some((m, span)) if !(2..=16).contains(&m) => {
            cx.error(span, &t.path_of("m"), format!("{m} candidates cannot be ranked; use 2 to 16"));
            return None;
        }
        Some((m, span)) if m as u32 > pool && !chosen.is_empty() => {
            cx.error(
                span,
                &t.path_of("m"),
                format!("m = {m} but the chosen pools hold only {pool} candidates per prompt"),
            );
            return None;
        }
        Some((m, _)) => m as u32,
        None => return None,
    };
    Some(Design::Rank { policies: chosen, m, mode })
}

/// Why `url` cannot be a completion link (`None` when it can): an http(s) address of at
/// most 2,000 characters, with no spaces or control characters.
fn url_problem(url: &str) -> Option<String> {
    if !url.split_once("://").is_some_and(|(scheme, rest)| matches!(scheme, "http" | "https") && !rest.is_empty()) {
        return Some(format!("`{url}` is not an http(s) address"));
    }
    if url.len() > 2000 {
        return Some(format!("the address is {} characters long; at most 2000", url.len()));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '<' || c == '>') {
        return Some("the address holds spaces, quotes, angle brackets or control characters".into());
    }
    None
}
