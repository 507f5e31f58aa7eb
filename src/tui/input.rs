//! Terminal input as bytes (what an SSH channel or a browser terminal sends) turned into
//! the key, mouse and paste events the screens take: printable UTF-8, control keys, the
//! CSI and SS3 sequences of xterm-like terminals (arrows, Home/End, PageUp/PageDown,
//! Delete, Shift-Tab, with their modifiers) and SGR mouse reports. Anything else is
//! dropped. The parser keeps at most [`MAX_PENDING`] bytes of an unfinished sequence, so
//! no input can make it grow; any byte string is accepted without panicking.

use ratatui::crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};

/// The longest escape sequence kept while waiting for its end; a longer one is dropped.
pub(crate) const MAX_PENDING: usize = 64;

const ESC: u8 = 0x1b;

/// A byte-stream parser; feed it chunks as they arrive.
#[derive(Debug, Default)]
pub(crate) struct InputParser {
    pending: Vec<u8>,
    /// The last byte fed was a carriage return (a following line feed is the same Enter).
    after_cr: bool,
    /// Inside a bracketed paste (`ESC [200~` … `ESC [201~`): text, never keys.
    pasting: bool,
}

impl InputParser {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// The events in `bytes`, with what was left unfinished before. A lone ESC at the
    /// end of a chunk is the Escape key (terminals send a whole sequence at once).
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Vec<Event> {
        let mut data = std::mem::take(&mut self.pending);
        data.extend_from_slice(bytes);
        let mut out = Vec::new();
        let mut i = 0;
        while i < data.len() {
            match self.one(&data[i..], &mut out) {
                Some(used) => i += used,
                None => {
                    // Unfinished: keep it for the next chunk, unless it is too long to be real.
                    let rest = &data[i..];
                    if rest == [ESC] {
                        out.push(key(KeyCode::Esc, KeyModifiers::NONE));
                    } else if rest.len() <= MAX_PENDING {
                        self.pending = rest.to_vec();
                    }
                    break;
                }
            }
        }
        out
    }

    /// Parses one event (or one ignored item) at the start of `b`: how many bytes it took,
    /// or `None` when `b` is an unfinished sequence.
    fn one(&mut self, b: &[u8], out: &mut Vec<Event>) -> Option<usize> {
        let was_cr = std::mem::replace(&mut self.after_cr, false);
        match b[0] {
            ESC => self.escape(b, out),
            b'\r' => {
                self.after_cr = true;
                out.push(key(KeyCode::Enter, KeyModifiers::NONE));
                Some(1)
            }
            b'\n' => {
                if !was_cr {
                    out.push(key(KeyCode::Enter, KeyModifiers::NONE));
                }
                Some(1)
            }
            0x7f | 0x08 => {
                out.push(key(KeyCode::Backspace, KeyModifiers::NONE));
                Some(1)
            }
            b'\t' => {
                out.push(key(KeyCode::Tab, KeyModifiers::NONE));
                Some(1)
            }
            c @ 0x01..=0x1a => {
                out.push(key(KeyCode::Char((b'a' + c - 1) as char), KeyModifiers::CONTROL));
                Some(1)
            }
            0x00 | 0x1c..=0x1f => Some(1),
            _ => utf8(b).map(|(c, used)| {
                if let Some(c) = c {
                    out.push(key(KeyCode::Char(c), KeyModifiers::NONE));
                }
                used
            }),
        }
    }

    fn escape(&mut self, b: &[u8], out: &mut Vec<Event>) -> Option<usize> {
        let &second = b.get(1)?;
        match second {
            b'[' => self.csi(b, out),
            b'O' => {
                let &third = b.get(2)?;
                if let Some(code) = ss3(third) {
                    out.push(key(code, KeyModifiers::NONE));
                }
                Some(3)
            }
            ESC => {
                // ESC ESC: the first is the Escape key.
                out.push(key(KeyCode::Esc, KeyModifiers::NONE));
                Some(1)
            }
            0x20..=0x7e => {
                out.push(key(KeyCode::Char(second as char), KeyModifiers::ALT));
                Some(2)
            }
            _ => {
                out.push(key(KeyCode::Esc, KeyModifiers::NONE));
                Some(1)
            }
        }
    }

    /// `ESC [ params final`: parameters are bytes 0x30–0x3f, then intermediates 0x20–0x2f,
    /// then one final byte 0x40–0x7e.
    fn csi(&mut self, b: &[u8], out: &mut Vec<Event>) -> Option<usize> {
        let mut end = 2;
        while end < b.len() && (0x20..=0x3f).contains(&b[end]) {
            end += 1;
        }
        let &fin = b.get(end)?;
        let used = end + 1;
        if !(0x40..=0x7e).contains(&fin) {
            // Not a CSI sequence after all: drop the introducer.
            return Some(2);
        }
        let params = &b[2..end];
        if let Some(rest) = params.strip_prefix(b"<") {
            if let Some(m) = sgr_mouse(rest, fin) {
                out.push(Event::Mouse(m));
            }
            return Some(used);
        }
        let nums: Vec<u16> =
            std::str::from_utf8(params).unwrap_or("").split(';').map(|p| p.parse().unwrap_or(0)).collect();
        let modifiers = nums.get(1).map_or(KeyModifiers::NONE, |&m| modifiers(m));
        let code = match (fin, nums.first().copied().unwrap_or(0)) {
            (b'A', _) => Some(KeyCode::Up),
            (b'B', _) => Some(KeyCode::Down),
            (b'C', _) => Some(KeyCode::Right),
            (b'D', _) => Some(KeyCode::Left),
            (b'H', _) => Some(KeyCode::Home),
            (b'F', _) => Some(KeyCode::End),
            (b'Z', _) => Some(KeyCode::BackTab),
            (b'~', 1 | 7) => Some(KeyCode::Home),
            (b'~', 4 | 8) => Some(KeyCode::End),
            (b'~', 2) => Some(KeyCode::Insert),
            (b'~', 3) => Some(KeyCode::Delete),
            (b'~', 5) => Some(KeyCode::PageUp),
            (b'~', 6) => Some(KeyCode::PageDown),
            (b'~', 200) => {
                self.pasting = true;
                None
            }
            (b'~', 201) => {
                self.pasting = false;
                None
            }
            _ => None,
        };
        if let Some(code) = code
            && !self.pasting
        {
            let modifiers = if code == KeyCode::BackTab { modifiers | KeyModifiers::SHIFT } else { modifiers };
            out.push(key(code, modifiers));
        }
        Some(used)
    }
}

fn key(code: KeyCode, modifiers: KeyModifiers) -> Event {
    Event::Key(KeyEvent::new(code, modifiers))
}

/// xterm's modifier parameter: 1 + (shift 1, alt 2, ctrl 4).
fn modifiers(m: u16) -> KeyModifiers {
    let bits = m.saturating_sub(1);
    let mut k = KeyModifiers::NONE;
    if bits & 1 != 0 {
        k |= KeyModifiers::SHIFT;
    }
    if bits & 2 != 0 {
        k |= KeyModifiers::ALT;
    }
    if bits & 4 != 0 {
        k |= KeyModifiers::CONTROL;
    }
    k
}

fn ss3(b: u8) -> Option<KeyCode> {
    Some(match b {
        b'A' => KeyCode::Up,
        b'B' => KeyCode::Down,
        b'C' => KeyCode::Right,
        b'D' => KeyCode::Left,
        b'H' => KeyCode::Home,
        b'F' => KeyCode::End,
        b'P' => KeyCode::F(1),
        b'Q' => KeyCode::F(2),
        b'R' => KeyCode::F(3),
        b'S' => KeyCode::F(4),
        _ => return None,
    })
}

/// An SGR mouse report's `button;column;row` (1-based) and its final byte: `M` press or
/// motion, `m` release.
fn sgr_mouse(params: &[u8], fin: u8) -> Option<MouseEvent> {
    let text = std::str::from_utf8(params).ok()?;
    let mut it = text.split(';').map(|p| p.parse::<u16>().ok());
    let (button, column, row) = (it.next()??, it.next()??, it.next()??);
    if it.next().is_some() || !matches!(fin, b'M' | b'm') {
        return None;
    }
    let which = match button & 0b11 {
        0 => MouseButton::Left,
        1 => MouseButton::Middle,
        _ => MouseButton::Right,
    };
    let kind = if button & 64 != 0 {
        if button & 1 == 0 { MouseEventKind::ScrollUp } else { MouseEventKind::ScrollDown }
    } else if button & 32 != 0 {
        MouseEventKind::Drag(which)
    } else if fin == b'm' {
        MouseEventKind::Up(which)
    } else {
        MouseEventKind::Down(which)
    };
    Some(MouseEvent {
        kind,
        column: column.saturating_sub(1),
        row: row.saturating_sub(1),
        modifiers: KeyModifiers::NONE,
    })
}

/// One UTF-8 character at the start of `b`: the character (`None` for an invalid byte,
/// which is skipped) and its length; `None` when the character is cut off at the end.
fn utf8(b: &[u8]) -> Option<(Option<char>, usize)> {
    let len = match b[0] {
        0x00..=0x7f => 1,
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => return Some((None, 1)),
    };
    if b.len() < len {
        // A continuation byte that is wrong already makes it invalid.
        if b[1..].iter().any(|c| c & 0xc0 != 0x80) {
            return Some((None, 1));
        }
        return None;
    }
    match std::str::from_utf8(&b[..len]) {
        Ok(s) => Some((s.chars().next().filter(|c| !c.is_control()), len)),
        Err(_) => Some((None, 1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(bytes: &[u8]) -> Vec<(KeyCode, KeyModifiers)> {
        InputParser::new()
            .feed(bytes)
            .into_iter()
            .filter_map(|e| match e {
                Event::Key(k) => Some((k.code, k.modifiers)),
                _ => None,
            })
            .collect()
    }

    const N: KeyModifiers = KeyModifiers::NONE;

    #[test]
    fn keys_of_an_xterm_like_terminal() {
        assert_eq!(
            keys(b"a1 \r"),
            [(KeyCode::Char('a'), N), (KeyCode::Char('1'), N), (KeyCode::Char(' '), N), (KeyCode::Enter, N)]
        );
        assert_eq!(keys(b"\r\n\n"), [(KeyCode::Enter, N), (KeyCode::Enter, N)], "CR LF is one Enter");
        assert_eq!(
            keys(b"\x1b[A\x1b[B\x1bOC\x1b[D"),
            [(KeyCode::Up, N), (KeyCode::Down, N), (KeyCode::Right, N), (KeyCode::Left, N)]
        );
        assert_eq!(
            keys(b"\x1b[5~\x1b[6~\x1b[H\x1b[4~\x1b[3~"),
            [(KeyCode::PageUp, N), (KeyCode::PageDown, N), (KeyCode::Home, N), (KeyCode::End, N), (KeyCode::Delete, N)]
        );
        assert_eq!(keys(b"\x1b[Z"), [(KeyCode::BackTab, KeyModifiers::SHIFT)]);
        assert_eq!(keys(b"\x1b[1;5C"), [(KeyCode::Right, KeyModifiers::CONTROL)]);
        assert_eq!(
            keys(b"\x7f\x08\t\x03"),
            [
                (KeyCode::Backspace, N),
                (KeyCode::Backspace, N),
                (KeyCode::Tab, N),
                (KeyCode::Char('c'), KeyModifiers::CONTROL)
            ]
        );
        assert_eq!(keys(b"\x1b"), [(KeyCode::Esc, N)], "a lone ESC is the Escape key");
        assert_eq!(keys(b"\x1bq"), [(KeyCode::Char('q'), KeyModifiers::ALT)]);
        assert_eq!(keys("é✔".as_bytes()), [(KeyCode::Char('é'), N), (KeyCode::Char('✔'), N)]);
        assert_eq!(
            keys(b"\x1b[200~ab\x1b[201~"),
            [(KeyCode::Char('a'), N), (KeyCode::Char('b'), N)],
            "a paste is text"
        );
    }

    #[test]
    fn a_sequence_split_across_chunks_is_one_key() {
        let mut p = InputParser::new();
        assert!(p.feed(b"\x1b[").is_empty());
        assert!(p.feed(b"1;").is_empty());
        assert_eq!(p.feed(b"2A").len(), 1);
        assert!(p.feed(&"é".as_bytes()[..1]).is_empty());
        let e = p.feed(&"é".as_bytes()[1..]);
        assert!(matches!(e[..], [Event::Key(KeyEvent { code: KeyCode::Char('é'), .. })]), "{e:?}");
    }

    #[test]
    fn sgr_mouse_reports_are_clicks_and_wheel() {
        let ev = InputParser::new().feed(b"\x1b[<0;10;5M\x1b[<0;10;5m\x1b[<65;1;1M");
        let kinds: Vec<_> = ev
            .iter()
            .map(|e| match e {
                Event::Mouse(m) => (m.kind, m.column, m.row),
                _ => panic!("{e:?}"),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                (MouseEventKind::Down(MouseButton::Left), 9, 4),
                (MouseEventKind::Up(MouseButton::Left), 9, 4),
                (MouseEventKind::ScrollDown, 0, 0)
            ]
        );
    }

    #[test]
    fn an_endless_sequence_is_dropped_not_kept() {
        let mut p = InputParser::new();
        let mut junk = b"\x1b[".to_vec();
        junk.extend(std::iter::repeat_n(b'1', 10_000));
        assert!(p.feed(&junk).is_empty());
        assert!(p.pending.len() <= MAX_PENDING);
        assert_eq!(p.feed(b"x").len(), 1, "what follows is read again");
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_in_any_chunks_never_panic_or_grow(chunks in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..200), 0..20)) {
            let mut p = InputParser::new();
            for c in &chunks {
                let events = p.feed(c);
                proptest::prop_assert!(events.len() <= c.len() + MAX_PENDING);
                proptest::prop_assert!(p.pending.len() <= MAX_PENDING);
            }
        }
    }
}
