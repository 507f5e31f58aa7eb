//! Keys → actions. What a key means depends on what the participant sees (a [`Context`]);
//! the trial screen's bindings are a table that the help overlay is drawn from, so the
//! keys and their description cannot drift apart.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// What the participant asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
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
    /// Backspace or u in an ordering question: take back the last rank.
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
    pub(crate) action: fn(&KeyEvent) -> Option<Action>,
}

fn code(k: &KeyEvent) -> KeyCode {
    k.code
}

/// The trial screen's own keys, in the order the help lists them.
pub(crate) const TRIAL: &[Binding] = &[
    Binding {
        keys: "1–9",
        does: "pick that answer (in ordering questions: give it the next rank)",
        action: |k| match code(k) {
            KeyCode::Char(c @ '1'..='9') => Some(Action::Pick(c as usize - '1' as usize)),
            _ => None,
        },
    },
    Binding {
        keys: "← → ↑ ↓ / Tab",
        does: "move focus between answers",
        action: |k| match code(k) {
            KeyCode::Right | KeyCode::Down | KeyCode::Tab => Some(Action::FocusNext),
            KeyCode::Left | KeyCode::Up | KeyCode::BackTab => Some(Action::FocusPrev),
            _ => None,
        },
    },
    Binding {
        keys: "Space",
        does: "pick the focused answer",
        action: |k| (code(k) == KeyCode::Char(' ')).then_some(Action::PickFocused),
    },
    Binding {
        keys: "PgUp PgDn",
        does: "scroll the focused answer by a page",
        action: |k| match code(k) {
            KeyCode::PageDown => Some(Action::Scroll(Scroll::PageDown)),
            KeyCode::PageUp => Some(Action::Scroll(Scroll::PageUp)),
            _ => None,
        },
    },
    Binding {
        keys: "j k / Home End",
        does: "scroll it by a line / to its top or end",
        action: |k| match code(k) {
            KeyCode::Char('j') => Some(Action::Scroll(Scroll::LineDown)),
            KeyCode::Char('k') => Some(Action::Scroll(Scroll::LineUp)),
            KeyCode::Home => Some(Action::Scroll(Scroll::Top)),
            KeyCode::End => Some(Action::Scroll(Scroll::End)),
            _ => None,
        },
    },
    Binding {
        keys: "Enter",
        does: "confirm your choice",
        action: |k| (code(k) == KeyCode::Enter).then_some(Action::Confirm),
    },
    Binding {
        keys: "Backspace / u",
        does: "undo the last rank (ordering questions)",
        action: |k| matches!(code(k), KeyCode::Backspace | KeyCode::Char('u')).then_some(Action::Undo),
    },
    Binding {
        keys: "=",
        does: "no preference (when the study allows it)",
        action: |k| (code(k) == KeyCode::Char('=')).then_some(Action::NoPreference),
    },
    Binding {
        keys: "s",
        does: "skip this question (when the study allows it)",
        action: |k| (code(k) == KeyCode::Char('s')).then_some(Action::Skip),
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
        action: |k| (code(k) == KeyCode::Char('?')).then_some(Action::Help),
    },
    Binding {
        keys: "q / Ctrl-C",
        does: "quit (asks first; answers are saved)",
        action: |k| (ctrl_c(k) || code(k) == KeyCode::Char('q')).then_some(Action::Quit),
    },
];

/// The help overlay's lines: (keys, what they do).
pub(crate) fn help() -> Vec<(&'static str, &'static str)> {
    TRIAL.iter().map(|b| (b.keys, b.does)).chain([MOUSE]).chain(GLOBAL.iter().map(|b| (b.keys, b.does))).collect()
}

fn first(bindings: &[Binding], k: &KeyEvent) -> Option<Action> {
    bindings.iter().find_map(|b| (b.action)(k))
}

/// What `key` means in `ctx`, if anything.
pub(crate) fn action(ctx: Context, key: &KeyEvent) -> Option<Action> {
    let c = code(key);
    match ctx {
        Context::Failed => {
            (ctrl_c(key) || matches!(c, KeyCode::Char('q') | KeyCode::Enter | KeyCode::Esc)).then_some(Action::Quit)
        }
        Context::ConfirmQuit => match c {
            KeyCode::Char('y' | 'Y') => Some(Action::Yes),
            _ if ctrl_c(key) => Some(Action::Yes),
            KeyCode::Char('n' | 'N') | KeyCode::Esc => Some(Action::No),
            _ => None,
        },
        Context::Help => matches!(c, KeyCode::Char('?') | KeyCode::Esc | KeyCode::Enter).then_some(Action::Help),
        Context::Typing => match c {
            _ if ctrl_c(key) => Some(Action::Quit),
            KeyCode::Enter => Some(Action::Confirm),
            KeyCode::Backspace => Some(Action::Erase),
            KeyCode::Esc => Some(Action::Back),
            KeyCode::Char(ch) if !ch.is_control() => Some(Action::Type(ch)),
            _ => None,
        },
        Context::Consent => first(GLOBAL, key).or(match c {
            KeyCode::Char('y' | 'Y') => Some(Action::Yes),
            KeyCode::Char('n' | 'N') => Some(Action::No),
            _ => None,
        }),
        Context::Trial => first(GLOBAL, key).or_else(|| first(TRIAL, key)),
        Context::Screen => first(GLOBAL, key).or((c == KeyCode::Enter).then_some(Action::Confirm)),
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
        assert_eq!(action(Context::Trial, &key(KeyCode::Char('3'))), Some(Action::Pick(2)));
        assert_eq!(action(Context::Trial, &key(KeyCode::End)), Some(Action::Scroll(Scroll::End)));
        assert_eq!(action(Context::Trial, &key(KeyCode::Char('q'))), Some(Action::Quit));
        assert_eq!(action(Context::Trial, &key(KeyCode::Char('x'))), None);
        // Typing an ID takes q and ? as letters, Ctrl-C still quits.
        assert_eq!(action(Context::Typing, &key(KeyCode::Char('q'))), Some(Action::Type('q')));
        assert_eq!(action(Context::Typing, &key(KeyCode::Char('?'))), Some(Action::Type('?')));
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(action(Context::Typing, &ctrl_c), Some(Action::Quit));
        assert_eq!(action(Context::ConfirmQuit, &ctrl_c), Some(Action::Yes));
        assert_eq!(action(Context::Failed, &key(KeyCode::Enter)), Some(Action::Quit));
        assert_eq!(action(Context::Failed, &key(KeyCode::Char('1'))), None);
    }
}
