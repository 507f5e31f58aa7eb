//! Where things go on the participant's screen, computed from the window's area and the
//! app's state alone: drawing uses it, and so do the keys and the mouse (which panel was
//! clicked, how far a panel can scroll), so nothing is written back while drawing. Also
//! the text measurement both need, and making candidate text inert.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::widgets::{Paragraph, Wrap};

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

/// Lines a text takes when word-wrapped to `width`, as ratatui wraps it when the panels
/// draw it (its own word wrapper, asked for the count: a hand-made copy of the rules
/// missed how a word wider than the line is broken).
pub(crate) fn wrapped_height(s: &str, width: u16) -> u16 {
    let count = Paragraph::new(s).wrap(Wrap { trim: false }).line_count(width.max(1));
    count.clamp(1, u16::MAX as usize) as u16
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
    pub lines: u16,
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
/// the window). The answers sit side by side (up to five, at 28 columns or more each) only
/// when every one fits whole that way; else they are stacked, each as tall as its text
/// needs. When the stack cannot show every answer whole, the rows are shared so that no
/// answer is cut while another has room to spare: the answers that fit within an equal
/// share are shown whole, and the rest share what is left equally (a layout that padded a
/// short answer while cutting a long one would favour one policy's answers by their length).
pub(crate) fn trial(area: Rect, prompt: &str, texts: &[String]) -> TrialLayout {
    let prompt_h =
        wrapped_height(&inert(prompt), area.width.saturating_sub(2)).saturating_add(2).min(area.height / 3).max(3);
    let chunks = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(prompt_h),
        Constraint::Length(1),
        Constraint::Min(4),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .split(area);
    let texts: Vec<String> = texts.iter().map(|x| inert(x)).collect();
    let n = texts.len() as u16;
    let room = chunks[3];
    let column = room.width / n.max(1);
    let side_by_side_need =
        texts.iter().map(|t| wrapped_height(t, column.saturating_sub(2))).max().unwrap_or(1).saturating_add(2);
    let rects: Vec<Rect> = if n <= 5 && column >= 28 && side_by_side_need <= room.height {
        let row = Rect { height: side_by_side_need, ..room };
        let count = texts.len().max(1) as u32;
        Layout::horizontal(vec![Constraint::Ratio(1, count); texts.len()]).split(row).to_vec()
    } else {
        let needs: Vec<u16> =
            texts.iter().map(|t| wrapped_height(t, room.width.saturating_sub(2)).saturating_add(2)).collect();
        let mut y = room.y;
        shared_heights(&needs, room.height)
            .into_iter()
            .map(|h| {
                let r = Rect { y, height: h, ..room };
                y += h;
                r
            })
            .collect()
    };
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

/// Heights for stacked panels that need `needs` rows each, in `room` rows: each its need
/// when all fit; else max–min fair shares: every panel gets its need or the common level,
/// whichever is less, the level as high as the room allows (rows left by rounding go to
/// the shortest cut panels), so a cut panel is never shorter than a whole one (but for the
/// row of rounding that may complete one).
fn shared_heights(needs: &[u16], room: u16) -> Vec<u16> {
    if needs.iter().map(|&h| u32::from(h)).sum::<u32>() <= u32::from(room) {
        return needs.to_vec();
    }
    let mut order: Vec<usize> = (0..needs.len()).collect();
    order.sort_by_key(|&i| needs[i]);
    let mut heights = vec![0u16; needs.len()];
    let mut left = room;
    for (k, &i) in order.iter().enumerate() {
        let share = left / (needs.len() - k) as u16;
        if needs[i] <= share {
            heights[i] = needs[i];
            left -= needs[i];
        } else {
            // This and every taller panel are cut: they share what is left, the rows of
            // rounding going to the shortest first (where a row may show an answer whole).
            let cut = &order[k..];
            let (each, extra) = (left / cut.len() as u16, left % cut.len() as u16);
            for (m, &j) in cut.iter().enumerate() {
                heights[j] = (each + u16::from((m as u16) < extra)).min(needs[j]);
            }
            break;
        }
    }
    heights
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(n: usize) -> String {
        (1..=n).map(|i| format!("line {i}")).collect::<Vec<_>>().join("\n")
    }

    /// No panel is cut while another has rows it does not need.
    fn fair(l: &TrialLayout) -> bool {
        let cut = l.panels.iter().any(|p| p.lines > p.visible);
        let padded = l.panels.iter().any(|p| p.visible > p.lines);
        !(cut && padded)
    }

    #[test]
    fn answers_that_fit_are_shown_whole_and_the_rest_share_the_room() {
        // The reported case: five answers stacked at 110×34, one of two lines.
        let texts = [lines(2), lines(1), lines(3), lines(2), lines(1)];
        let l = trial(Rect::new(0, 0, 110, 34), "Name a coffee shop.", &texts);
        assert!(l.panels.iter().all(|p| p.max_scroll == 0 && p.visible == p.lines), "{:?}", l.panels);
        // Too long to fit: the short ones whole, the long ones share the rest equally.
        let texts = [lines(40), lines(2), lines(30), lines(1)];
        let area = Rect::new(0, 0, 80, 24);
        let l = trial(area, "Advice?", &texts);
        assert!(fair(&l), "{:?}", l.panels);
        assert_eq!((l.panels[1].visible, l.panels[3].visible), (2, 1), "the short ones whole");
        assert!(l.panels[0].max_scroll > 0 && l.panels[2].max_scroll > 0);
        assert!(l.panels[0].visible.abs_diff(l.panels[2].visible) <= 1, "{:?}", l.panels);
        let used: u16 = l.panels.iter().map(|p| p.rect.height).sum();
        let room = area.height - 1 - l.prompt.height - 1 - 1 - 1;
        assert_eq!(used, room, "every row is used");
        // Side by side only when every answer fits whole so.
        let l = trial(Rect::new(0, 0, 140, 40), "?", &[lines(3), lines(2)]);
        assert_eq!(l.panels[0].rect.y, l.panels[1].rect.y, "side by side");
        let l = trial(Rect::new(0, 0, 140, 40), "?", &[lines(60), lines(2)]);
        assert!(l.panels[1].rect.y > l.panels[0].rect.y && fair(&l), "stacked: {:?}", l.panels);
    }

    /// The rows ratatui's wrapping (as the panels draw their text) fills at `width`: the
    /// row of a marker line drawn after the text (blank rows count too).
    fn rendered_height(text: &str, width: u16) -> u16 {
        use ratatui::buffer::Buffer;
        use ratatui::widgets::Widget;
        let area = Rect::new(0, 0, width, 400);
        let mut buf = Buffer::empty(area);
        Paragraph::new(format!("{text}\n#")).wrap(Wrap { trim: false }).render(area, &mut buf);
        let marker = (0..400).find(|&y| buf[(0, y)].symbol() == "#").expect("the marker is drawn");
        // A text's last newline ends its last line (as str::lines reads it), opening none.
        (marker - u16::from(text.ends_with('\n'))).max(1)
    }

    #[test]
    fn wrapped_heights_are_the_rows_ratatui_draws() {
        let long = "a".repeat(20);
        for (text, width) in [
            (format!("{long} b"), 10),
            (format!("x {long} b"), 10),
            ("one two three four five six seven".to_string(), 9),
            (format!("{} end", "word ".repeat(30)), 23),
            ("line 1\nline 2\n\nline 4".to_string(), 40),
            (long.clone(), 10),
            (format!("{long}a b c"), 10),
            (format!("ab {long} cd {long}"), 7),
            ("a  b   c    d".to_string(), 3),
            ("ends with a space ".to_string(), 6),
        ] {
            assert_eq!(wrapped_height(&text, width), rendered_height(&text, width), "{text:?} at {width}");
        }
    }

    proptest::proptest! {
        #[test]
        fn wrapped_heights_are_the_rows_ratatui_draws_for_any_text(text in "[ab \n]{0,80}|[a-z]{0,30}( [a-z]{0,30}){0,6}", width in 3u16..30) {
            proptest::prop_assert_eq!(wrapped_height(&text, width), rendered_height(&text, width), "{:?} at {}", text, width);
        }
    }

    #[test]
    fn shared_heights_never_cut_one_panel_while_another_has_room() {
        for room in 4..60u16 {
            for needs in [vec![3, 3, 3], vec![40, 3, 12, 5, 3], vec![7, 7], vec![3, 30, 30, 30]] {
                let h = shared_heights(&needs, room);
                let total: u32 = h.iter().map(|&x| u32::from(x)).sum();
                let want: u32 = needs.iter().map(|&x| u32::from(x)).sum();
                assert_eq!(total, want.min(u32::from(room)), "{needs:?} in {room}: {h:?}");
                let cut_min = h.iter().zip(&needs).filter(|(h, n)| h < n).map(|(h, _)| *h).min();
                let whole_max = h.iter().zip(&needs).filter(|(h, n)| h == n).map(|(h, _)| *h).max();
                // (A row left by rounding may just complete a panel: one row's difference.)
                if let (Some(c), Some(w)) = (cut_min, whole_max) {
                    assert!(c + 1 >= w, "a cut panel ({c}) shorter than a whole one ({w}): {needs:?} in {room}: {h:?}");
                }
            }
        }
    }
}
