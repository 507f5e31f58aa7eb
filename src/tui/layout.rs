//! Where things go on the participant's screen, computed from the window's area and the
//! app's state alone: drawing uses it, and so do the keys and the mouse (which panel was
//! clicked, how far a panel can scroll), so nothing is written back while drawing. Also
//! the text measurement both need, and making candidate text inert.

use ratatui::layout::{Constraint, Direction, Layout, Rect};
use unicode_width::UnicodeWidthStr;

use ualign_core::session::PresentedTrial;

/// Makes candidate text inert: escape sequences and control characters are shown as
/// visible symbols, never interpreted; tabs become spaces; bidi overrides are dropped.
pub fn inert(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' => out.push('\n'),
            '\t' => out.push_str("    "),
            '\r' => {}
            '\u{1b}' => out.push('␛'),
            c if (c as u32) < 0x20 => out.push(char::from_u32(0x2400 + c as u32).unwrap_or('�')),
            '\u{7f}' => out.push('␡'),
            c if ('\u{80}'..='\u{9f}').contains(&c) => out.push('�'),
            '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => {}
            c => out.push(c),
        }
    }
    out
}

/// Study texts are written in TOML with hard line breaks: single newlines join lines into a
/// paragraph (wrapped to the window), blank lines separate paragraphs.
pub fn reflow(s: &str) -> String {
    s.trim()
        .split("\n\n")
        .map(|para| para.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" "))
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// Lines a text takes when word-wrapped to `width` (greedy, as ratatui wraps; a word wider
/// than the line is broken).
pub(crate) fn wrapped_height(s: &str, width: u16) -> u16 {
    let w = width.max(1) as usize;
    let mut total = 0usize;
    for line in s.split('\n') {
        let mut lines = 1;
        let mut col = 0usize;
        for word in line.split(' ') {
            let ww = word.width();
            let need = if col == 0 { ww } else { col + 1 + ww };
            if need <= w {
                col = need;
            } else if ww > w {
                // Break the long word across lines.
                let rest = if col == 0 { ww } else { ww + col + 1 };
                lines += (rest - 1) / w;
                col = rest % w;
            } else {
                lines += 1;
                col = ww;
            }
        }
        total += lines;
    }
    total.clamp(1, u16::MAX as usize) as u16
}

/// A rectangle of `w`×`h` (at most the area's) in the middle of `area`.
pub(crate) fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect { x: area.x + (area.width - w) / 2, y: area.y + (area.height - h) / 2, width: w, height: h }
}

/// A candidate panel: where it is, and how far its text can scroll.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Panel {
    pub(crate) rect: Rect,
    /// Text lines the panel shows at once.
    pub visible: u16,
    /// Lines the panel's text takes.
    pub(crate) lines: u16,
    /// The largest useful scroll offset: the text's lines less the visible ones.
    pub max_scroll: u16,
}

/// The trial screen, top to bottom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TrialLayout {
    pub(crate) progress: Rect,
    pub(crate) prompt: Rect,
    pub(crate) instruction: Rect,
    pub(crate) panels: Vec<Panel>,
    pub(crate) status: Rect,
    pub(crate) hints: Rect,
}

/// Lays out a trial in `area`: the prompt takes the height its text needs (up to a third of
/// the window), the panels sit side by side when up to five fit at 28 columns or more, and
/// take the height their text needs (up to what there is).
pub(crate) fn trial(area: Rect, v: &PresentedTrial) -> TrialLayout {
    let prompt_h = (wrapped_height(&inert(&v.prompt), area.width.saturating_sub(2)) + 2).min(area.height / 3).max(3);
    let chunks = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(prompt_h),
        Constraint::Length(1),
        Constraint::Min(4),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .split(area);
    let texts: Vec<String> = v.texts.iter().map(|x| inert(x)).collect();
    let n = texts.len() as u16;
    let side_by_side = n <= 5 && chunks[3].width / n.max(1) >= 28;
    let needed = if side_by_side {
        let inner = (chunks[3].width / n.max(1)).saturating_sub(2);
        texts.iter().map(|t| wrapped_height(t, inner)).max().unwrap_or(1) + 2
    } else {
        texts.iter().map(|t| wrapped_height(t, chunks[3].width.saturating_sub(2)).min(6) + 2).sum()
    };
    let area_panels = Rect { height: chunks[3].height.min(needed.max(4)), ..chunks[3] };
    let dir = if side_by_side { Direction::Horizontal } else { Direction::Vertical };
    let count = texts.len().max(1) as u32;
    let rects =
        Layout::default().direction(dir).constraints(vec![Constraint::Ratio(1, count); texts.len()]).split(area_panels);
    let panels = rects
        .iter()
        .zip(&texts)
        .map(|(r, text)| {
            let lines = wrapped_height(text, r.width.saturating_sub(2));
            let visible = r.height.saturating_sub(2);
            Panel { rect: *r, visible, lines, max_scroll: lines.saturating_sub(visible) }
        })
        .collect();
    TrialLayout {
        progress: chunks[0],
        prompt: chunks[1],
        instruction: chunks[2],
        panels,
        status: chunks[4],
        hints: chunks[5],
    }
}
