//! Every word the participant sees and every key binding, in one place, so a study's
//! wording stays consistent.

pub(crate) const MIN_WIDTH: u16 = 60;
pub(crate) const MIN_HEIGHT: u16 = 20;

pub(crate) const TOO_SMALL: &str = "Please enlarge the window";
pub(crate) const TOO_SMALL_DETAIL: &str = "This study needs a terminal of at least 60 columns and 20 rows.";

/// The "please enlarge" screen; `crowded`: the window is big enough for the study but too
/// short for this question's answers to show a line each.
pub(crate) fn too_small(w: u16, h: u16, crowded: bool) -> String {
    let detail = if crowded { TOO_SHORT_FOR_THE_ANSWERS } else { TOO_SMALL_DETAIL };
    format!("{TOO_SMALL}\n\n{detail}\n({w}×{h} now)")
}

pub(crate) const TOO_SHORT_FOR_THE_ANSWERS: &str =
    "This question has more answers than the window has rows for: make it taller to see every one.";

pub(crate) const WELCOME_HINT: &str = "Press Enter to begin · q to quit";
/// The first screen's text when the study sets no `welcome`.
pub(crate) const WELCOME: &str = "Welcome, and thank you for taking part. You will read short requests and the answers written to them, and tell us which you prefer.";
pub(crate) const CONSENT_TITLE: &str = "Consent";
pub(crate) const CONSENT_HINT: &str = "Press y to agree and continue · n to decline";
pub(crate) const DECLINED: &str = "You declined. Nothing was recorded. You may close this window.";
pub(crate) const ID_TITLE: &str = "Participant ID";
pub(crate) const ID_PROMPT: &str =
    "Type the participant ID you were given, then Enter.\nLeave it empty and press Enter to get a new anonymous ID.";
pub(crate) const ID_INVALID: &str = "This study does not know that ID. Type the ID you were given exactly (never your name), or leave it empty for a new anonymous ID.";
/// The ID screen where a returning participant proves who they are (`serve` with a shared
/// password, or open).
pub(crate) const ID_PROMPT_CODES: &str = "New here? Press Enter to get an anonymous participant ID (or type the ID you were given).\nComing back? Type the return code you were shown when you first took part, then Enter.";
pub(crate) const ID_NEEDS_CODE: &str = "That ID has taken part before. To continue as them, type the return code shown when they first signed in (three groups of four letters and digits). Lost it? Ask the researcher for a new one.";
pub(crate) const ID_HINT: &str = "Enter to continue · Esc to quit";
pub(crate) const ID_NEW: &str =
    "Your anonymous participant ID is shown below. Write it down: you need it to resume later.";
/// The new-ID screen of a participant given a return code.
pub(crate) fn new_id_with_code(participant: &str, code: &str) -> String {
    format!(
        "Your anonymous participant ID:\n\n    {participant}\n\nYour return code:\n\n    {code}\n\nWrite the return code down. To continue another time, you type it instead of an ID: it proves the answers are yours, and nobody else can use it. Keep it to yourself."
    )
}
pub(crate) const INSTRUCTIONS_TITLE: &str = "Instructions";
pub(crate) const CONTINUE_HINT: &str = "Press Enter to continue";
pub(crate) const RESUMING: &str = "Welcome back. You will continue where you left off.";
pub(crate) const BREAK_TITLE: &str = "Time for a short break";
pub(crate) const BREAK_TEXT: &str =
    "Your answers so far are saved. Stretch, look away from the screen, and press Enter when ready.";
pub(crate) const DONE_TITLE: &str = "All done";
pub(crate) const DONE_BEFORE: &str = "You have already finished this study: there is nothing more to answer.";
pub(crate) const DONE_CODE: &str = "Your completion code:";
pub(crate) const DONE_URL: &str = "To finish, open this address (in a browser it opens by itself):";
pub(crate) const QUIT_HINT: &str = "Press q to close.";
pub(crate) const CONFIRM_QUIT: &str =
    "Quit now? Your answers so far are saved and you can resume later with the same ID.\n\ny: quit · n: keep going";
pub(crate) const PREPARING: &str = "Preparing the answers for this question…";
pub(crate) const PREPARING_HINT: &str = "q to quit";

/// The "preparing" screen's progress line, once the engine has filled a pool.
pub(crate) fn preparing_progress(p: &ualign_core::pools::Progress) -> String {
    format!("{} of {} sets of answers ready · {} tokens written", p.pools_done, p.pools, p.tokens)
}
pub(crate) const TRIAL_FAILED_TITLE: &str = "Something went wrong";
pub(crate) const CONFIRM_QUIT_TITLE: &str = " Quit? ";
pub(crate) const HELP_TITLE: &str = " Keys (? to close) ";
pub(crate) const PICK_FIRST: &str = "Press the number of an answer first.";
pub(crate) const RANK_ALL_FIRST: &str = "Rank every answer first.";
pub(crate) const FOCUS_MARK: &str = "▶ ";
pub(crate) const CHOSEN_MARK: &str = " ✔ chosen";

/// The frame of the "preparing" spinner at tick `ticks`.
pub(crate) fn spinner(ticks: u64) -> &'static str {
    const FRAMES: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];
    FRAMES[(ticks % FRAMES.len() as u64) as usize]
}

/// A trial that cannot be shown: why, and that nothing is lost.
pub(crate) fn trial_failed(why: &str) -> String {
    format!("{why}\n\nYour answers so far are saved.")
}

pub(crate) fn rank_mark(rank: usize) -> String {
    format!(" #{rank}")
}

/// Which lines of a long answer a panel shows.
pub(crate) fn scrolled(first: u16, last: u16, lines: u16) -> String {
    format!(" {first}–{last} of {lines} lines (PgUp/PgDn) ")
}

pub(crate) fn imported_missing(policies: &[String], prompt: &str) -> String {
    format!(
        "candidates of imported policy `{}` for prompt `{prompt}` are missing; the researcher must run `ualign import`",
        policies.join("`, `")
    )
}

pub(crate) const POOLS_MISSING: &str = "candidates are missing; run `ualign generate` first";

pub(crate) fn prefetch_failed(error: &str) -> String {
    format!("could not prepare the next question: {error}")
}
pub(crate) const SAVED: &str = "Saved.";
pub(crate) const ANSWERED_ELSEWHERE: &str =
    "That question was already answered in another window; its first answer stands.";
pub(crate) const ENGINE_STOPPED: &str = "The program that writes the answers stopped unexpectedly";
pub(crate) const FAILED_TITLE: &str = "Your answers are safe, but the study cannot go on";
pub(crate) const FAILED_HINT: &str = "Press q to close, then tell the researcher.";

/// The failure screen's text: what happened, what was saved and what was not, and how to
/// come back.
/// How a participant comes back to the study: the command to type at this terminal, or
/// (served remotely) how to connect again.
#[derive(Debug, Clone)]
pub(crate) enum Resume {
    Command(std::path::PathBuf),
    Reconnect(String),
}

pub(crate) fn failed(what: &str, answer_lost: bool, participant: Option<&str>, resume: &Resume) -> String {
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
pub(crate) const PROMPT_TITLE: &str = "Request";

pub(crate) const PICK_INSTRUCTION: &str = "Pick the answer you like best.";
pub(crate) const ORDER_INSTRUCTION: &str =
    "Order all answers: press the number of your favourite, then the next, and so on.";

/// The trial screen's key line: the keys that exist on this trial (digits up to its number
/// of answers, at most 9).
pub(crate) fn trial_hint(order: bool, answers: usize, allow_no_pref: bool, allow_skip: bool) -> String {
    let digits = match answers.min(9) {
        0 | 1 => "1".to_string(),
        n => format!("1–{n}"),
    };
    let mut parts = vec![if order { format!("{digits} rank · Backspace undo") } else { format!("{digits} pick") }];
    parts.push("Enter confirm".into());
    if allow_no_pref {
        parts.push("= no preference".into());
    }
    if allow_skip {
        parts.push("s skip".into());
    }
    parts.push("? help".into());
    parts.push("q quit".into());
    parts.join(" · ")
}

/// The instruction line while "no preference" or "skip" waits for Enter.
pub(crate) const NO_PREFERENCE_HELD: &str =
    "No preference: press Enter to confirm it, or pick an answer instead (Backspace takes it back).";
pub(crate) const SKIP_HELD: &str =
    "Skip this question: press Enter to confirm it, or pick an answer instead (Backspace takes it back).";

/// The progress bar's symbols for questions answered and questions left (told apart
/// without colour too).
pub(crate) const PROGRESS_DONE: &str = "█";
pub(crate) const PROGRESS_LEFT: &str = "░";

pub(crate) fn progress(i: usize, n: usize) -> String {
    format!("Question {i} of {n}")
}

pub(crate) fn reading_wait(secs: u64) -> String {
    format!("Please read all answers: you can confirm in {secs} s")
}

pub(crate) fn answer_title(i: usize) -> String {
    format!("Answer {i}")
}

// What a remote participant (`ualign serve`) reads when their connection ends.

pub(crate) const SERVE_CANNOT_START: &str = "Sorry: the study cannot start right now (the researcher has been told). Nothing of yours was lost; please try again later.";
pub(crate) const SERVE_ADDRESS_FULL: &str = "Sorry: as many sessions as the study takes from one network are open from yours right now. Please try again in a few minutes.";
pub(crate) const SERVE_BUSY: &str =
    "Sorry: too many people are signing in to the study at this moment. Please reload the page in a minute.";
pub(crate) const SERVE_ADDRESS_BUSY: &str = "Sorry: too many connections from your network are signing in to the study at this moment. Please reload the page in a minute.";
pub(crate) const SERVE_SIGN_IN_SLOW: &str = "The sign-in took too long. Please reload the page to try again.";
pub(crate) const SERVE_FULL: &str =
    "Sorry: the study has as many participants as it can take right now. Please try again in a few minutes.";
pub(crate) const SERVE_NEED_TERMINAL: &str =
    "This study runs in a terminal window: connect with `ssh -t` (no command after the address).";
pub(crate) const SERVE_ONLY_STUDY: &str = "Only the study's screens run here: connect without a command to take part.";
pub(crate) const SERVE_NEED_INVITATION: &str = "This study needs your invitation: open the link you were given (it ends in ?invite=…), or ask the researcher for one.";

pub(crate) const SERVE_PROLIFIC_REFUSED: &str = "This study does not accept the Prolific ID in your link. Please return the study on Prolific and tell the researcher; nothing was recorded.";

pub(crate) fn serve_stopping(reconnect: &str) -> String {
    format!(
        "The study server is stopping. Every answer you confirmed is saved.\nTo continue where you left off later, {reconnect}"
    )
}

pub(crate) fn serve_idle(after: std::time::Duration, reconnect: &str) -> String {
    let secs = after.as_secs();
    let after = if secs >= 120 { format!("{} minutes", secs / 60) } else { format!("{secs} seconds") };
    format!(
        "This session was closed after {after} without a key press. Every answer you confirmed is saved.\nTo continue where you left off, {reconnect}"
    )
}

/// The farewell of a window whose participant signed in again elsewhere.
pub(crate) const SERVE_OTHER_WINDOW: &str =
    "You went on in another window, so this one is closed. Every answer you confirmed is saved.";

pub(crate) fn serve_saved(answered: usize, reconnect: &str) -> String {
    format!("{answered} answer(s) saved in this session. To continue where you left off, {reconnect}")
}
