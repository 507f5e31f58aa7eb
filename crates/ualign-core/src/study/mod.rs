//! The study file: a TOML document in `studies/` that says what is compared (policies),
//! on what (prompts), how (blocks of trials) and what participants are told. `load` reads
//! it into a typed, validated [`Study`], reporting every problem with its location.

mod compare;
mod diag;
mod parse;
mod participant;
mod reader;
mod server_policy;

use std::path::{Path, PathBuf};

pub use compare::{declared_name, meaning_changes, prompt_changes};
pub use diag::{Diagnostic, Diagnostics, Severity};

pub use parse::parse_study;
pub use participant::{
    IdPattern, MAX_ID_LEN, invitation_hash, is_pseudonym, new_invitation_code, new_pseudonym, normal_invitation_code,
};
pub use reader::closest;
pub use ualign_engine::decoding::{Decoding, SamplingParams, limits};
pub use ualign_engine::server::{Endpoint, ServerSpec};

/// A validated study. Paths inside it are resolved against the study file's folder.
#[derive(Debug, Clone, PartialEq)]
pub struct Study {
    /// Where the study file was read from.
    pub path: PathBuf,
    /// Text of the study file as read, stored in the database.
    pub source: String,
    /// SHA-256 over the study file and every prompt file it names: a database belongs to
    /// exactly one version of a study.
    pub hash: String,
    /// Slug naming the study; its default database is `db/<name>.sqlite`.
    pub name: String,
    /// The heading of the participant's screens.
    pub title: String,
    /// The researcher's: what the study is for. Never shown to participants (it may say
    /// what the study expects to find).
    pub description: String,
    /// What participants read on the first screen; empty for ualign's own greeting.
    pub welcome: String,
    pub consent: String,
    pub instructions: String,
    pub completion_message: String,
    pub completion_code: String,
    /// Where the completion screen sends a participant in the browser (e.g. Prolific's
    /// completion link); also shown on the completion screen.
    pub completion_url: Option<String>,
    /// Randomisation seed: with the participant id it fixes every trial list.
    pub seed: u64,
    pub options: StudyOptions,
    pub prompts: Vec<Prompt>,
    pub policies: Vec<Policy>,
    pub blocks: Vec<Block>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StudyOptions {
    pub allow_no_preference: bool,
    pub allow_skip: bool,
    /// Enter is held until the trial has been on screen this long.
    pub min_reading_ms: u64,
    /// A break screen after every N trials.
    pub break_every: Option<u32>,
    /// Present the blocks in a per-participant random order instead of as listed.
    pub shuffle_blocks: bool,
    /// Ids the researcher hands out (beside ualign's own pseudonyms), e.g. Prolific's.
    pub participant_id_pattern: Option<IdPattern>,
}

impl Default for StudyOptions {
    fn default() -> Self {
        Self {
            allow_no_preference: true,
            allow_skip: false,
            min_reading_ms: 0,
            break_every: None,
            shuffle_blocks: false,
            participant_id_pattern: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    pub id: String,
    pub text: String,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub name: String,
    /// Candidates per prompt in this policy's pool.
    pub pool_size: u32,
    pub source: PolicySource,
    /// What participants see of a candidate that stopped at its length limit.
    pub on_length: OnLength,
}

/// What participants see of a candidate cut off at its length limit (`finish_reason =
/// "length"`: `max_new_tokens` of a model policy, or an imported line's). The candidate is
/// stored as written either way; what is shown is a function of it and of this rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnLength {
    /// As written, cut mid-sentence where it was cut.
    #[default]
    Keep,
    /// Up to its last sentence end (`.`, `!`, `?`, `…` before a space or the end, or a
    /// line break); marked as `Mark` when it has none.
    Trim,
    /// As written, with a last line saying it was cut off at the length limit.
    Mark,
}

impl OnLength {
    pub fn as_str(self) -> &'static str {
        match self {
            OnLength::Keep => "keep",
            OnLength::Trim => "trim",
            OnLength::Mark => "mark",
        }
    }
}

/// The line `OnLength::Mark` adds to a cut answer.
pub const CUT_MARK: &str = "[… cut off here: the answer reached its length limit]";

/// What participants see of `text`, a candidate that stopped at its length limit when
/// `cut`, under the rule `on_length`.
pub fn shown_text(text: &str, cut: bool, on_length: OnLength) -> String {
    let mark = |t: &str| format!("{}\n{CUT_MARK}", t.trim_end());
    match (cut, on_length) {
        (false, _) | (true, OnLength::Keep) => text.to_string(),
        (true, OnLength::Mark) => mark(text),
        (true, OnLength::Trim) => match last_sentence_end(text) {
            Some(end) => text[..end].trim_end().to_string(),
            None => mark(text),
        },
    }
}

/// The byte just past the last sentence end of `text` (`.`, `!`, `?` or `…`, with any
/// closing quotes or brackets, before whitespace; or a line break), if any with words
/// before it. A period after a lone number ("1. ", a list's marker) ends nothing.
fn last_sentence_end(text: &str) -> Option<usize> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut best = None;
    for (i, &(at, c)) in chars.iter().enumerate() {
        let next = chars.get(i + 1).map(|&(_, n)| n);
        let end = at + c.len_utf8();
        match c {
            '\n' if !text[..at].trim().is_empty() => best = Some(at),
            '.' | '!' | '?' | '…' => {
                let mut j = i + 1;
                while chars.get(j).is_some_and(|&(_, q)| matches!(q, '"' | '\'' | ')' | ']' | '”' | '’' | '*')) {
                    j += 1;
                }
                let close = chars.get(j).map_or(text.len(), |&(b, _)| b);
                let word_before = text[..at].rsplit(char::is_whitespace).next().unwrap_or("");
                let list_marker =
                    c == '.' && !word_before.is_empty() && word_before.chars().all(|d| d.is_ascii_digit());
                let followed = chars.get(j).is_none_or(|&(_, n)| n.is_whitespace());
                if followed && !list_marker && !text[..at].trim().is_empty() && next != Some('.') {
                    best = Some(close.max(end));
                }
            }
            _ => {}
        }
    }
    best
}

#[derive(Debug, Clone, PartialEq)]
pub enum PolicySource {
    /// An ONNX model folder (Hugging Face layout) sampled with these settings.
    Model { dir: PathBuf, decoding: Decoding },
    /// An OpenAI-compatible server (vLLM, TGI, SGLang, llama.cpp's server, a hosted API)
    /// sampled with these settings, one request per sample.
    Server { server: ServerSpec, decoding: Decoding },
    /// Candidates produced elsewhere and brought in with `ualign import`.
    Imported,
}

impl PolicySource {
    /// Whether ualign makes this policy's candidates itself (`generate`, and the
    /// participant screens' background filling), as opposed to `ualign import`.
    pub fn is_generated(&self) -> bool {
        !matches!(self, PolicySource::Imported)
    }

    /// The decoding settings of a generated policy.
    pub fn decoding(&self) -> Option<&Decoding> {
        match self {
            PolicySource::Model { decoding, .. } | PolicySource::Server { decoding, .. } => Some(decoding),
            PolicySource::Imported => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    pub name: String,
    /// Trials of this block each participant answers (attention checks and repeats come on top).
    pub trials: u32,
    /// Ids of the prompts this block draws from.
    pub prompts: Vec<String>,
    pub design: Design,
    /// Gold trials per participant whose one candidate is deliberately broken.
    pub attention_checks: u32,
    /// Fraction of the block's trials shown again later, to measure consistency.
    pub repeat_fraction: f64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Design {
    /// k candidates from `policy_a` and one from `policy_b` in k+1 shuffled, blinded slots.
    BestOfK { policy_a: String, policy_b: String, k: Vec<u32> },
    /// m candidates drawn from the pools of `policies`; pick a favourite or order them all.
    Rank { policies: Vec<String>, m: u32, mode: RankMode },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RankMode {
    Pick,
    Order,
}

impl RankMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RankMode::Pick => "pick",
            RankMode::Order => "order",
        }
    }
}

/// Why a study could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum StudyError {
    #[error("cannot read study file {path}: {source}\n  check the path; study files usually live in studies/")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}", render(.0))]
    Invalid(Vec<Diagnostic>),
}

fn render(diags: &[Diagnostic]) -> String {
    let n = diags.iter().filter(|d| d.severity == Severity::Error).count();
    let mut s = diags.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n");
    s.push_str(&format!(
        "\n{n} problem{} found; fix them and run `ualign validate` again",
        if n == 1 { "" } else { "s" }
    ));
    s
}

/// Reads and validates a study file. Warnings are returned beside the study.
/// Where a study's database is made when no `--db` is given: `db/<name>.sqlite` beside
/// the `studies/` folder that holds the file, else under the working folder.
pub fn default_db_path(study_path: &Path, name: &str) -> PathBuf {
    let dir = study_path.parent().unwrap_or(Path::new("."));
    let root = if dir.file_name().is_some_and(|n| n == "studies") {
        dir.parent().unwrap_or(Path::new(".")).to_path_buf()
    } else {
        PathBuf::from(".")
    };
    root.join("db").join(format!("{name}.sqlite"))
}

pub fn load(path: &Path) -> Result<(Study, Vec<Diagnostic>), StudyError> {
    let source =
        std::fs::read_to_string(path).map_err(|source| StudyError::Read { path: path.to_path_buf(), source })?;
    let (study, diags) = parse_study(path, &source);
    match study {
        Some(s) if !diags.has_errors() => Ok((s, diags.items)),
        _ => Err(StudyError::Invalid(diags.items)),
    }
}

impl Study {
    pub fn policy(&self, name: &str) -> Option<&Policy> {
        self.policies.iter().find(|p| p.name == name)
    }

    pub fn prompt(&self, id: &str) -> Option<&Prompt> {
        self.prompts.iter().find(|p| p.id == id)
    }

    /// Default database path: `db/<name>.sqlite` beside the `studies/` folder holding the
    /// study file (or in the current folder's `db/` when the file lives elsewhere).
    pub fn default_db_path(&self) -> PathBuf {
        default_db_path(&self.path, &self.name)
    }

    /// Trials one participant answers, counting attention checks and repeats.
    pub fn trials_per_participant(&self) -> u32 {
        self.blocks.iter().map(|b| b.trials + b.attention_checks + b.repeat_count()).sum()
    }
}

impl Block {
    /// Repeated trials per participant: the fraction of the block's trials, leaving out the
    /// last two (a repeat always comes at least two trials after its original).
    pub fn repeat_count(&self) -> u32 {
        ((f64::from(self.trials) * self.repeat_fraction).round() as u32).min(self.trials.saturating_sub(2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_answer_is_trimmed_to_its_last_sentence_or_marked() {
        let trim = |t: &str| shown_text(t, true, OnLength::Trim);
        assert_eq!(trim("It rains. Take a coat and"), "It rains.");
        assert_eq!(trim("Is it? \"Yes!\" she said and"), "Is it? \"Yes!\"");
        assert_eq!(trim("Wait... then go\nand"), "Wait... then go");
        assert_eq!(trim("1. Plant beans\n2. Water"), "1. Plant beans");
        assert_eq!(trim("3.5 litres of water and"), format!("3.5 litres of water and\n{CUT_MARK}"));
        assert_eq!(trim("1. Plant"), format!("1. Plant\n{CUT_MARK}"), "a list marker ends no sentence");
        assert_eq!(trim("Done."), "Done.");
        assert_eq!(shown_text("It rains. Take a", false, OnLength::Trim), "It rains. Take a", "only cut answers");
        assert_eq!(shown_text("It rains. Take a", true, OnLength::Keep), "It rains. Take a");
        assert_eq!(shown_text("It rains. Take a ", true, OnLength::Mark), format!("It rains. Take a\n{CUT_MARK}"));
        // Never a panic on any text, and never longer than the text and its mark.
        for t in ["", " ", ".", "\n", "…", "é.", "a.\u{301} b", "!!", "x\n\n"] {
            let s = trim(t);
            assert!(s.len() <= t.len() + CUT_MARK.len() + 1, "{t:?} -> {s:?}");
        }
    }
}
