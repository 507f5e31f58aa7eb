//! Keys → commands. What a key means depends on what the participant sees (a [`Context`]);
//! the trial screen's bindings are a table that the help overlay is drawn from, so the
//! keys and their description cannot drift apart.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// What the participant asked for with a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Command {
    /// Enter: go on, or confirm the answer.
    Confirm,
    /// y (consent, and "quit now?").
    Yes,
    /// n (decline, and "keep going").
    No,
    /// Esc while typing the ID: asks whether to quit.
    Back,
    /// q or Ctrl-C: asks first (quits at once where nothing is left to lose).
    Quit,
    /// ?: show or hide the keys.
    Help,
    /// A digit: pick that answer (in ordering questions, give it the next rank).
    Pick(usize),
    PickFocused,
    FocusNext,
    FocusPrev,
    Scroll(Scroll),
    /// Backspace or u: take back a held "no preference" or "skip", else (in an ordering
    /// question) the last rank.
    Undo,
    NoPreference,
    Skip,
    /// A character typed into the ID field, and Backspace there.
    Type(char),
    Erase,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scroll {
    PageDown,
    PageUp,
    LineDown,
    LineUp,
    Top,
    End,
}

/// Where a key is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Context {
    /// The failure screen: only quitting is left.
    Failed,
    /// "Quit now?" is asked.
    ConfirmQuit,
    /// The help overlay is open.
    Help,
    /// The ID field.
    Typing,
    Consent,
    Trial,
    /// Any other screen: Enter goes on.
    Screen,
}

/// One binding: the keys as the help names them, what they do, and which key events they
/// are.
pub(crate) struct Binding {
    pub(crate) keys: &'static str,
    pub(crate) does: &'static str,
    pub(crate) command: fn(&KeyEvent) -> Option<Command>,
}

fn code(k: &KeyEvent) -> KeyCode {
    k.code
}

/// The trial screen's own keys, in the order the help lists them.
pub(crate) const TRIAL: &[Binding] = &[
    Binding {
        keys: "1–9",
        does: "pick that answer (in ordering questions: give it the next rank)",
        command: |k| match code(k) {
            KeyCode::Char(c @ '1'..='9') => Some(Command::Pick(c as usize - '1' as usize)),
            _ => None,
        },
    },
    Binding {
        keys: "← → ↑ ↓ / Tab",
        does: "move focus between answers",
        command: |k| match code(k) {
            KeyCode::Right | KeyCode::Down | KeyCode::Tab => Some(Command::FocusNext),
            KeyCode::Left | KeyCode::Up | KeyCode::BackTab => Some(Command::FocusPrev),
            _ => None,
        },
    },
    Binding {
        keys: "Space",
        does: "pick the focused answer",
        command: |k| (code(k) == KeyCode::Char(' ')).then_some(Command::PickFocused),
    },
    Binding {
        keys: "PgUp PgDn",
        does: "scroll the focused answer by a page",
        command: |k| match code(k) {
            KeyCode::PageDown => Some(Command::Scroll(Scroll::PageDown)),
            KeyCode::PageUp => Some(Command::Scroll(Scroll::PageUp)),
            _ => None,
        },
    },
    Binding {
        keys: "j k / Home End",
        does: "scroll it by a line / to its top or end",
        command: |k| match code(k) {
            KeyCode::Char('j') => Some(Command::Scroll(Scroll::LineDown)),
            KeyCode::Char('k') => Some(Command::Scroll(Scroll::LineUp)),
            KeyCode::Home => Some(Command::Scroll(Scroll::Top)),
            KeyCode::End => Some(Command::Scroll(Scroll::End)),
            _ => None,
        },
    },
    Binding {
        keys: "Enter",
        does: "confirm your choice",
        command: |k| (code(k) == KeyCode::Enter).then_some(Command::Confirm),
    },
    Binding {
        keys: "Backspace / u",
        does: "undo the last rank (ordering questions), or take back no preference or skip",
        command: |k| matches!(code(k), KeyCode::Backspace | KeyCode::Char('u')).then_some(Command::Undo),
    },
    Binding {
        keys: "=",
        does: "no preference (when the study allows it; Enter confirms it)",
        command: |k| (code(k) == KeyCode::Char('=')).then_some(Command::NoPreference),
    },
    Binding {
        keys: "s",
        does: "skip this question (when the study allows it; Enter confirms it)",
        command: |k| (code(k) == KeyCode::Char('s')).then_some(Command::Skip),
    },
];

/// What the mouse does, for the help.
pub(crate) const MOUSE: (&str, &str) = ("mouse", "click an answer to focus and pick it");

fn ctrl_c(k: &KeyEvent) -> bool {
    k.modifiers.contains(KeyModifiers::CONTROL) && k.code == KeyCode::Char('c')
}

/// Keys that mean the same on every screen but the ID field.
pub(crate) const GLOBAL: &[Binding] = &[
    Binding {
        keys: "?",
        does: "show or hide this help",
        command: |k| (code(k) == KeyCode::Char('?')).then_some(Command::Help),
    },
    Binding {
        keys: "q / Ctrl-C",
        does: "quit (asks first; answers are saved)",
        command: |k| (ctrl_c(k) || code(k) == KeyCode::Char('q')).then_some(Command::Quit),
    },
];

/// The help overlay's lines: (keys, what they do).
pub(crate) fn help() -> Vec<(&'static str, &'static str)> {
    TRIAL.iter().map(|b| (b.keys, b.does)).chain([MOUSE]).chain(GLOBAL.iter().map(|b| (b.keys, b.does))).collect()
}

fn first(bindings: &[Binding], k: &KeyEvent) -> Option<Command> {
    bindings.iter().find_map(|b| (b.command)(k))
}

/// What `key` means in `ctx`, if anything.
pub(crate) fn command(ctx: Context, key: &KeyEvent) -> Option<Command> {
    let c = code(key);
    match ctx {
        Context::Failed => {
            (ctrl_c(key) || matches!(c, KeyCode::Char('q') | KeyCode::Enter | KeyCode::Esc)).then_some(Command::Quit)
        }
        Context::ConfirmQuit => match c {
            KeyCode::Char('y' | 'Y') => Some(Command::Yes),
            _ if ctrl_c(key) => Some(Command::Yes),
            KeyCode::Char('n' | 'N') | KeyCode::Esc => Some(Command::No),
            _ => None,
        },
        Context::Help => matches!(c, KeyCode::Char('?') | KeyCode::Esc | KeyCode::Enter).then_some(Command::Help),
        Context::Typing => match c {
            _ if ctrl_c(key) => Some(Command::Quit),
            KeyCode::Enter => Some(Command::Confirm),
            KeyCode::Backspace => Some(Command::Erase),
            KeyCode::Esc => Some(Command::Back),
            KeyCode::Char(ch) if !ch.is_control() => Some(Command::Type(ch)),
            _ => None,
        },
        Context::Consent => first(GLOBAL, key).or(match c {
            KeyCode::Char('y' | 'Y') => Some(Command::Yes),
            KeyCode::Char('n' | 'N') => Some(Command::No),
            _ => None,
        }),
        Context::Trial => first(GLOBAL, key).or_else(|| first(TRIAL, key)),
        Context::Screen => first(GLOBAL, key).or((c == KeyCode::Enter).then_some(Command::Confirm)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: KeyCode) -> KeyEvent {
        KeyEvent::new(c, KeyModifiers::NONE)
    }

    #[test]
    fn every_trial_binding_is_in_the_help_and_does_what_it_says() {
        let help = help();
        assert_eq!(help.len(), TRIAL.len() + 1 + GLOBAL.len());
        assert_eq!(command(Context::Trial, &key(KeyCode::Char('3'))), Some(Command::Pick(2)));
        assert_eq!(command(Context::Trial, &key(KeyCode::End)), Some(Command::Scroll(Scroll::End)));
        assert_eq!(command(Context::Trial, &key(KeyCode::Char('q'))), Some(Command::Quit));
        assert_eq!(command(Context::Trial, &key(KeyCode::Char('x'))), None);
        // Typing an ID takes q and ? as letters, Ctrl-C still quits.
        assert_eq!(command(Context::Typing, &key(KeyCode::Char('q'))), Some(Command::Type('q')));
        assert_eq!(command(Context::Typing, &key(KeyCode::Char('?'))), Some(Command::Type('?')));
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(command(Context::Typing, &ctrl_c), Some(Command::Quit));
        assert_eq!(command(Context::ConfirmQuit, &ctrl_c), Some(Command::Yes));
        assert_eq!(command(Context::Failed, &key(KeyCode::Enter)), Some(Command::Quit));
        assert_eq!(command(Context::Failed, &key(KeyCode::Char('1'))), None);
    }
}
