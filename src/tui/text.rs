//! Every word the participant sees and every key binding, in one place, so a study's
//! wording stays consistent.

pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 20;

pub const TOO_SMALL: &str = "Please enlarge the window";
pub const TOO_SMALL_DETAIL: &str = "This study needs a terminal of at least 60 columns and 20 rows.";

pub fn too_small(w: u16, h: u16) -> String {
    format!("{TOO_SMALL}\n\n{TOO_SMALL_DETAIL}\n({w}×{h} now)")
}

pub const WELCOME_HINT: &str = "Press Enter to begin · q to quit";
pub const CONSENT_TITLE: &str = "Consent";
pub const CONSENT_HINT: &str = "Press y to agree and continue · n to decline";
pub const DECLINED: &str = "You declined. Nothing was recorded. You may close this window.";
pub const ID_TITLE: &str = "Participant ID";
pub const ID_PROMPT: &str =
    "Type the participant ID you were given, then Enter.\nLeave it empty and press Enter to get a new anonymous ID.";
pub const ID_INVALID: &str = "This study does not know that ID. Type the ID you were given exactly (never your name), or leave it empty for a new anonymous ID.";
pub const ID_HINT: &str = "Enter to continue · Esc to quit";
pub const ID_NEW: &str = "Your anonymous participant ID is shown below. Write it down: you need it to resume later.";
pub const INSTRUCTIONS_TITLE: &str = "Instructions";
pub const CONTINUE_HINT: &str = "Press Enter to continue";
pub const RESUMING: &str = "Welcome back. You will continue where you left off.";
pub const BREAK_TITLE: &str = "Time for a short break";
pub const BREAK_TEXT: &str =
    "Your answers so far are saved. Stretch, look away from the screen, and press Enter when ready.";
pub const DONE_TITLE: &str = "All done";
pub const DONE_CODE: &str = "Your completion code:";
pub const DONE_URL: &str = "To finish, open this address (in a browser it opens by itself):";
pub const QUIT_HINT: &str = "Press q to close.";
pub const CONFIRM_QUIT: &str =
    "Quit now? Your answers so far are saved and you can resume later with the same ID.\n\ny: quit · n: keep going";
pub const PREPARING: &str = "Preparing the answers for this question…";
pub const PREPARING_HINT: &str = "q to quit";
pub const TRIAL_FAILED_TITLE: &str = "Something went wrong";
pub const CONFIRM_QUIT_TITLE: &str = " Quit? ";
pub const HELP_TITLE: &str = " Keys (? to close) ";
pub const PICK_FIRST: &str = "Press the number of an answer first.";
pub const RANK_ALL_FIRST: &str = "Rank every answer first.";
pub const FOCUS_MARK: &str = "▶ ";
pub const CHOSEN_MARK: &str = " ✔ chosen";

/// The frame of the "preparing" spinner at tick `ticks`.
pub fn spinner(ticks: u64) -> &'static str {
    const FRAMES: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];
    FRAMES[(ticks % FRAMES.len() as u64) as usize]
}

/// A trial that cannot be shown: why, and that nothing is lost.
pub fn trial_failed(why: &str) -> String {
    format!("{why}\n\nYour answers so far are saved.")
}

pub fn rank_mark(rank: usize) -> String {
    format!(" #{rank}")
}

/// Which lines of a long answer a panel shows.
pub fn scrolled(first: u16, last: u16, lines: u16) -> String {
    format!(" {first}–{last} of {lines} lines (PgUp/PgDn) ")
}

pub fn imported_missing(policies: &[String], prompt: &str) -> String {
    format!(
        "candidates of imported policy `{}` for prompt `{prompt}` are missing; the researcher must run `ualign import`",
        policies.join("`, `")
    )
}

pub const POOLS_MISSING: &str = "candidates are missing; run `ualign generate` first";

pub fn prefetch_failed(error: &str) -> String {
    format!("could not prepare the next question: {error}")
}
pub const SAVED: &str = "Saved.";
pub const ANSWERED_ELSEWHERE: &str = "That question was already answered in another window; its first answer stands.";
pub const ENGINE_STOPPED: &str = "The program that writes the answers stopped unexpectedly";
pub const FAILED_TITLE: &str = "Your answers are safe, but the study cannot go on";
pub const FAILED_HINT: &str = "Press q to close, then tell the researcher.";

/// The failure screen's text: what happened, what was saved and what was not, and how to
/// come back.
/// How a participant comes back to the study: the command to type at this terminal, or
/// (served remotely) how to connect again.
#[derive(Debug, Clone)]
pub enum Resume {
    Command(std::path::PathBuf),
    Reconnect(String),
}

pub fn failed(what: &str, answer_lost: bool, participant: Option<&str>, resume: &Resume) -> String {
    let lost = if answer_lost {
        "Every answer you confirmed before this one is saved. This last answer was NOT saved: you will see this question again."
    } else {
        "Every answer you confirmed is saved."
    };
    let resume = match participant {
        Some(p) => match resume {
            Resume::Command(study) => format!(
                "To continue later, once the researcher has fixed it, use your participant ID {p}:\n\n    ualign run {} --participant {p}",
                study.display()
            ),
            Resume::Reconnect(how) => format!("To continue later, once the researcher has fixed it, {how}"),
        },
        None => "You had not started the questions yet; nothing is lost.".to_string(),
    };
    format!("Something went wrong: {what}.\n\n{lost}\n\n{resume}")
}
pub const PROMPT_TITLE: &str = "Request";

pub const PICK_INSTRUCTION: &str = "Pick the answer you like best.";
pub const ORDER_INSTRUCTION: &str = "Order all answers: press the number of your favourite, then the next, and so on.";

pub fn trial_hint(order: bool, allow_no_pref: bool, allow_skip: bool) -> String {
    let mut parts = vec![if order { "1–9 rank · Backspace undo" } else { "1–9 pick" }, "Enter confirm"];
    if allow_no_pref {
        parts.push("= no preference");
    }
    if allow_skip {
        parts.push("s skip");
    }
    parts.push("? help");
    parts.push("q quit");
    parts.join(" · ")
}

pub fn progress(i: usize, n: usize) -> String {
    format!("Question {i} of {n}")
}

pub fn reading_wait(secs: u64) -> String {
    format!("Please read all answers: you can confirm in {secs} s")
}

pub fn answer_title(i: usize) -> String {
    format!("Answer {i}")
}

// What a remote participant (`ualign serve`) reads when their connection ends.

pub const SERVE_CANNOT_START: &str = "Sorry: the study cannot start right now (the researcher has been told). Nothing of yours was lost; please try again later.";
pub const SERVE_ADDRESS_FULL: &str = "Sorry: as many sessions as the study takes from one network are open from yours right now. Please try again in a few minutes.";
pub const SERVE_BUSY: &str =
    "Sorry: too many people are signing in to the study at this moment. Please reload the page in a minute.";
pub const SERVE_ADDRESS_BUSY: &str = "Sorry: too many connections from your network are signing in to the study at this moment. Please reload the page in a minute.";
pub const SERVE_SIGN_IN_SLOW: &str = "The sign-in took too long. Please reload the page to try again.";
pub const SERVE_FULL: &str =
    "Sorry: the study has as many participants as it can take right now. Please try again in a few minutes.";
pub const SERVE_NEED_TERMINAL: &str =
    "This study runs in a terminal window: connect with `ssh -t` (no command after the address).";
pub const SERVE_ONLY_STUDY: &str = "Only the study's screens run here: connect without a command to take part.";
pub const SERVE_NEED_INVITATION: &str = "This study needs your invitation: open the link you were given (it ends in ?invite=…), or ask the researcher for one.";

pub const SERVE_PROLIFIC_REFUSED: &str = "This study does not accept the Prolific ID in your link. Please return the study on Prolific and tell the researcher; nothing was recorded.";

pub fn serve_stopping(reconnect: &str) -> String {
    format!(
        "The study server is stopping. Every answer you confirmed is saved.\nTo continue where you left off later, {reconnect}"
    )
}

pub fn serve_idle(after: std::time::Duration, reconnect: &str) -> String {
    let secs = after.as_secs();
    let after = if secs >= 120 { format!("{} minutes", secs / 60) } else { format!("{secs} seconds") };
    format!(
        "This session was closed after {after} without a key press. Every answer you confirmed is saved.\nTo continue where you left off, {reconnect}"
    )
}

pub fn serve_saved(answered: usize, reconnect: &str) -> String {
    format!("{answered} answer(s) saved in this session. To continue where you left off, {reconnect}")
}
