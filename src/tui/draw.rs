//! One draw function per screen. Drawing only reads the app's state (it records the panel
//! areas for mouse hits). Focus and choice are shown by border style and markers, never by
//! colour alone; `NO_COLOR` turns colour off.

use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Direction, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, BorderType, Borders, Clear, Gauge, Paragraph, Wrap};

use super::app::{App, Panel, Screen, TrialSlot, TrialState};
use super::text;
use crate::study::RankMode;

/// Colours, or none when NO_COLOR is set.
#[derive(Clone, Copy)]
pub struct Theme {
    pub color: bool,
}

impl Theme {
    pub fn from_env() -> Self {
        Self { color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) }
    }
    fn fg(&self, c: Color) -> Style {
        self.style(c)
    }
    /// A foreground colour, or the plain style under NO_COLOR.
    pub fn style(&self, c: Color) -> Style {
        if self.color { Style::default().fg(c) } else { Style::default() }
    }
}

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

fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect { x: area.x + (area.width - w) / 2, y: area.y + (area.height - h) / 2, width: w, height: h }
}

pub fn draw(f: &mut Frame, app: &App, theme: Theme) {
    let area = f.area();
    app.panels.borrow_mut().clear();
    if app.too_small() {
        draw_too_small(f, area);
        return;
    }
    match app.screen {
        Screen::Welcome => {
            message(f, area, &app.study.title, &reflow(&app.study.description), text::WELCOME_HINT, theme)
        }
        Screen::Consent => {
            message(f, area, text::CONSENT_TITLE, &reflow(&app.study.consent), text::CONSENT_HINT, theme)
        }
        Screen::Declined => message(f, area, text::CONSENT_TITLE, text::DECLINED, text::QUIT_HINT, theme),
        Screen::EnterId => draw_enter_id(f, area, app, theme),
        Screen::ShowNewId => {
            let body = format!("{}\n\n    {}", text::ID_NEW, app.participant.as_deref().unwrap_or(""));
            message(f, area, text::ID_TITLE, &body, text::CONTINUE_HINT, theme)
        }
        Screen::Instructions => {
            message(f, area, text::INSTRUCTIONS_TITLE, &reflow(&app.study.instructions), text::CONTINUE_HINT, theme)
        }
        Screen::Resuming => {
            let body = format!("{}\n\n{}", text::RESUMING, app.participant.as_deref().unwrap_or(""));
            message(f, area, &app.study.title, &body, text::CONTINUE_HINT, theme)
        }
        Screen::Break => message(f, area, text::BREAK_TITLE, text::BREAK_TEXT, text::CONTINUE_HINT, theme),
        Screen::Done => {
            let mut body = reflow(&app.study.completion_message);
            if !app.study.completion_code.is_empty() {
                body.push_str(&format!("\n\n{}\n\n    {}", text::DONE_CODE, app.study.completion_code));
            }
            message(f, area, text::DONE_TITLE, &body, text::QUIT_HINT, theme)
        }
        Screen::Trial => draw_trial(f, area, app, theme),
        Screen::Failed => {
            let (what, lost) = app.failure.as_ref().map_or(("", false), |x| (x.what.as_str(), x.answer_lost));
            let body = text::failed(what, lost, app.participant.as_deref(), &app.study.path);
            message(f, area, text::FAILED_TITLE, &body, text::FAILED_HINT, theme)
        }
    }
    if app.help {
        draw_help(f, area);
    }
    if app.confirm_quit {
        let r = centered(area, 64, 8);
        f.render_widget(Clear, r);
        f.render_widget(
            Paragraph::new(text::CONFIRM_QUIT)
                .wrap(Wrap { trim: false })
                .block(Block::default().borders(Borders::ALL).border_type(BorderType::Double).title(" Quit? ")),
            r,
        );
    }
}

fn draw_too_small(f: &mut Frame, area: Rect) {
    let t = format!("{}\n\n{}\n({}×{} now)", text::TOO_SMALL, text::TOO_SMALL_DETAIL, area.width, area.height);
    f.render_widget(Paragraph::new(t).alignment(Alignment::Center).wrap(Wrap { trim: true }), area);
}

fn message(f: &mut Frame, area: Rect, title: &str, body: &str, hint: &str, theme: Theme) {
    let w = 76.min(area.width.saturating_sub(2)).max(40);
    let h = (wrapped_height(body.trim(), w.saturating_sub(2)) + 3).max(6).min(area.height.saturating_sub(2));
    let r = centered(area, w, h);
    let chunks = Layout::vertical([Constraint::Min(3), Constraint::Length(1)]).split(r);
    f.render_widget(
        Paragraph::new(inert(body.trim())).wrap(Wrap { trim: false }).block(
            Block::default()
                .borders(Borders::ALL)
                .border_type(BorderType::Rounded)
                .title(Span::styled(format!(" {} ", inert(title)), Style::default().add_modifier(Modifier::BOLD))),
        ),
        chunks[0],
    );
    f.render_widget(Paragraph::new(hint).style(theme.fg(Color::Cyan)).alignment(Alignment::Center), chunks[1]);
}

fn draw_enter_id(f: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let mut body = format!("{}\n\n  > {}█", text::ID_PROMPT, app.id_input);
    if app.id_error {
        body.push_str(&format!("\n\n{}", text::ID_INVALID));
    }
    message(f, area, text::ID_TITLE, &body, "Enter to continue · Esc to quit", theme);
}

fn draw_help(f: &mut Frame, area: Rect) {
    let lines: Vec<Line> = text::HELP
        .iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(format!("{k:>16}  "), Style::default().add_modifier(Modifier::BOLD)),
                Span::raw(*what),
            ])
        })
        .collect();
    let r = centered(area, 96, text::HELP.len() as u16 + 4);
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(Text::from(lines))
            .wrap(Wrap { trim: false })
            .block(Block::default().borders(Borders::ALL).border_type(BorderType::Double).title(" Keys (? to close) ")),
        r,
    );
}

/// Lines a text takes when word-wrapped to `width` (greedy, as ratatui wraps; a word wider
/// than the line is broken).
fn wrapped_height(s: &str, width: u16) -> u16 {
    use unicode_width::UnicodeWidthStr;
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

fn draw_trial(f: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let t = match &app.trial {
        Some(TrialSlot::Ready(t)) => t,
        Some(TrialSlot::Preparing(_)) => {
            let spinner = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];
            let i = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis()
                / 100) as usize;
            let body = format!("{} {}", spinner[i % spinner.len()], text::PREPARING);
            message(f, area, &app.study.title, &body, "q to quit", theme);
            return;
        }
        Some(TrialSlot::Failed(e)) => {
            message(
                f,
                area,
                "Something went wrong",
                &format!("{e}\n\nYour answers so far are saved."),
                text::QUIT_HINT,
                theme,
            );
            return;
        }
        None => return,
    };
    let v = &t.view;
    let prompt = inert(&v.prompt);
    let prompt_h = (wrapped_height(&prompt, area.width.saturating_sub(2)) + 2).min(area.height / 3).max(3);
    let chunks = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(prompt_h),
        Constraint::Length(1),
        Constraint::Min(4),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .split(area);
    // Progress.
    let done = v.position as f64 / v.total.max(1) as f64;
    f.render_widget(
        Gauge::default()
            .ratio(done.clamp(0.0, 1.0))
            .label(text::progress(v.position + 1, v.total))
            .gauge_style(theme.fg(Color::Blue).add_modifier(Modifier::BOLD)),
        chunks[0],
    );
    f.render_widget(
        Paragraph::new(prompt)
            .wrap(Wrap { trim: false })
            .block(Block::default().borders(Borders::ALL).title(format!(" {} ", text::PROMPT_TITLE))),
        chunks[1],
    );
    let instruction = if v.mode == RankMode::Order { text::ORDER_INSTRUCTION } else { text::PICK_INSTRUCTION };
    f.render_widget(Paragraph::new(instruction).style(Style::default().add_modifier(Modifier::ITALIC)), chunks[2]);
    // Panels take the height their text needs (up to what there is), the rest stays blank.
    let n = v.texts.len() as u16;
    let side_by_side = n <= 5 && chunks[3].width / n.max(1) >= 28;
    let needed = if side_by_side {
        let inner = (chunks[3].width / n.max(1)).saturating_sub(2);
        v.texts.iter().map(|t| wrapped_height(&inert(t), inner)).max().unwrap_or(1) + 2
    } else {
        v.texts.iter().map(|t| wrapped_height(&inert(t), chunks[3].width.saturating_sub(2)).min(6) + 2).sum()
    };
    let panels = Rect { height: chunks[3].height.min(needed.max(4)), ..chunks[3] };
    draw_panels(f, panels, app, t, side_by_side, theme);
    let status = if !app.reading_left().is_zero() {
        text::reading_wait(app.reading_left().as_secs() + 1)
    } else {
        app.status.as_ref().filter(|(_, at)| at.elapsed().as_secs() < 4).map(|(s, _)| s.clone()).unwrap_or_default()
    };
    f.render_widget(Paragraph::new(status).style(theme.fg(Color::Yellow)), chunks[4]);
    let opts = &app.study.options;
    f.render_widget(
        Paragraph::new(text::trial_hint(v.mode == RankMode::Order, opts.allow_no_preference, opts.allow_skip))
            .style(theme.fg(Color::Cyan)),
        chunks[5],
    );
}

fn draw_panels(f: &mut Frame, area: Rect, app: &App, t: &TrialState, side_by_side: bool, theme: Theme) {
    let n = t.view.texts.len();
    let dir = if side_by_side { Direction::Horizontal } else { Direction::Vertical };
    let rects = Layout::default().direction(dir).constraints(vec![Constraint::Ratio(1, n as u32); n]).split(area);
    let mut panels = Vec::with_capacity(n);
    for (i, r) in rects.iter().enumerate() {
        let focused = t.focus == i;
        let chosen = t.picked == Some(i);
        let rank = t.order.iter().position(|&s| s == i);
        let mut title = vec![Span::raw(" ")];
        if focused {
            title.push(Span::styled("▶ ", Style::default().add_modifier(Modifier::BOLD)));
        }
        title.push(Span::styled(text::answer_title(i + 1), Style::default().add_modifier(Modifier::BOLD)));
        if chosen {
            title.push(Span::styled(
                " ✔ chosen",
                theme.fg(Color::Green).add_modifier(Modifier::BOLD | Modifier::REVERSED),
            ));
        }
        if let Some(rk) = rank {
            title.push(Span::styled(
                format!(" #{}", rk + 1),
                theme.fg(Color::Green).add_modifier(Modifier::BOLD | Modifier::REVERSED),
            ));
        }
        title.push(Span::raw(" "));
        let border = if chosen || rank.is_some() {
            BorderType::Double
        } else if focused {
            BorderType::Thick
        } else {
            BorderType::Plain
        };
        let style = if focused { theme.fg(Color::Cyan).add_modifier(Modifier::BOLD) } else { Style::default() };
        let body = inert(&t.view.texts[i]);
        let inner_w = r.width.saturating_sub(2);
        let total = wrapped_height(&body, inner_w);
        let visible = r.height.saturating_sub(2);
        let max_scroll = total.saturating_sub(visible);
        let scroll = t.scroll[i].min(max_scroll);
        panels.push(Panel { rect: *r, visible, max_scroll });
        let mut block =
            Block::default().borders(Borders::ALL).border_type(border).border_style(style).title(Line::from(title));
        if total > visible {
            block = block.title_bottom(
                Line::from(format!(
                    " {}–{} of {} lines (PgUp/PgDn) ",
                    scroll + 1,
                    (scroll + visible).min(total),
                    total
                ))
                .right_aligned(),
            );
        }
        f.render_widget(Paragraph::new(body).wrap(Wrap { trim: false }).scroll((scroll, 0)).block(block), *r);
    }
    *app.panels.borrow_mut() = panels;
}
