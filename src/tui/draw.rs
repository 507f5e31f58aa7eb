//! One draw function per screen. Drawing only reads the app's state and the layout
//! computed from it (`super::layout`); it writes nothing back and reads no clock (the
//! app keeps the time of its last event). Focus and choice are shown by border style and
//! markers, never by colour alone; `NO_COLOR` turns colour off.

use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, BorderType, Borders, Clear, LineGauge, Paragraph, Wrap};

use super::app::{App, CurrentTrial, Held, IdRefused, Screen, TrialState};
use super::layout::{self, Panel, centered, wrapped_height};
pub use super::layout::{inert, reflow};
use super::{keymap, text};
use ualign_core::study::RankMode;

/// Colours, or none when NO_COLOR is set.
#[derive(Clone, Copy)]
pub struct Theme {
    pub color: bool,
}

impl Theme {
    pub(crate) fn from_env() -> Self {
        Self { color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) }
    }
    fn fg(&self, c: Color) -> Style {
        self.style(c)
    }
    /// A foreground colour, or the plain style under NO_COLOR.
    pub(crate) fn style(&self, c: Color) -> Style {
        if self.color { Style::default().fg(c) } else { Style::default() }
    }
}

pub fn draw(f: &mut Frame, app: &App, theme: Theme) {
    let area = f.area();
    if app.too_small() {
        draw_too_small(f, area, app.too_short_for_the_trial());
        return;
    }
    match app.screen {
        Screen::Trial => draw_trial(f, area, app, theme),
        Screen::EnterId => draw_enter_id(f, area, app, theme),
        screen => {
            let (title, body, hint) = message_screen(app, screen);
            message(f, area, &title, &body, hint, theme);
        }
    }
    if app.help {
        draw_help(f, area);
    }
    if app.confirm_quit {
        let r = centered(area, 64, 8);
        f.render_widget(Clear, r);
        f.render_widget(
            Paragraph::new(text::CONFIRM_QUIT).wrap(Wrap { trim: false }).block(
                Block::default().borders(Borders::ALL).border_type(BorderType::Double).title(text::CONFIRM_QUIT_TITLE),
            ),
            r,
        );
    }
}

/// The title, body and key hint of a screen that is one message.
fn message_screen(app: &App, screen: Screen) -> (String, String, &'static str) {
    let study = &app.study;
    let participant = app.participant.as_deref().unwrap_or("");
    match screen {
        // The study's description is the researcher's (it may say what the study expects):
        // participants read the study's own welcome, or ualign's.
        Screen::Welcome => {
            let body = if study.welcome.trim().is_empty() { text::WELCOME.to_string() } else { reflow(&study.welcome) };
            (study.title.clone(), body, text::WELCOME_HINT)
        }
        Screen::Consent => (text::CONSENT_TITLE.into(), reflow(&study.consent), text::CONSENT_HINT),
        Screen::Declined => (text::CONSENT_TITLE.into(), text::DECLINED.into(), text::QUIT_HINT),
        Screen::ShowNewId => match &app.return_code {
            Some(code) => (text::ID_TITLE.into(), text::new_id_with_code(participant, code), text::CONTINUE_HINT),
            None => (text::ID_TITLE.into(), format!("{}\n\n    {participant}", text::ID_NEW), text::CONTINUE_HINT),
        },
        Screen::Instructions => (text::INSTRUCTIONS_TITLE.into(), reflow(&study.instructions), text::CONTINUE_HINT),
        Screen::Resuming => (study.title.clone(), format!("{}\n\n{participant}", text::RESUMING), text::CONTINUE_HINT),
        Screen::Break => (text::BREAK_TITLE.into(), text::BREAK_TEXT.into(), text::CONTINUE_HINT),
        Screen::Done => {
            let mut body = reflow(&study.completion_message);
            if app.finished_before {
                body = format!("{}\n\n{body}", text::DONE_BEFORE);
            }
            if !study.completion_code.is_empty() {
                body.push_str(&format!("\n\n{}\n\n    {}", text::DONE_CODE, study.completion_code));
            }
            if let Some(url) = &study.completion_url {
                body.push_str(&format!("\n\n{}\n\n    {url}", text::DONE_URL));
            }
            (text::DONE_TITLE.into(), body, text::QUIT_HINT)
        }
        Screen::Failed => {
            let (what, lost) = app.failure.as_ref().map_or(("", false), |x| (x.what.as_str(), x.answer_lost));
            let body = text::failed(what, lost, app.participant.as_deref(), &app.resume);
            (text::FAILED_TITLE.into(), body, text::FAILED_HINT)
        }
        Screen::Trial | Screen::EnterId => (String::new(), String::new(), ""),
    }
}

fn draw_too_small(f: &mut Frame, area: Rect, crowded: bool) {
    f.render_widget(
        Paragraph::new(text::too_small(area.width, area.height, crowded))
            .alignment(Alignment::Center)
            .wrap(Wrap { trim: true }),
        area,
    );
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
    let prompt = if app.return_codes { text::ID_PROMPT_CODES } else { text::ID_PROMPT };
    let mut body = format!("{prompt}\n\n  > {}█", app.id_input);
    match app.id_error {
        Some(IdRefused::Unknown) => body.push_str(&format!("\n\n{}", text::ID_INVALID)),
        Some(IdRefused::NeedsCode) => body.push_str(&format!("\n\n{}", text::ID_NEEDS_CODE)),
        None => {}
    }
    message(f, area, text::ID_TITLE, &body, text::ID_HINT, theme);
}

/// The keys, as the keymap has them.
fn draw_help(f: &mut Frame, area: Rect) {
    let help = keymap::help();
    let lines: Vec<Line> = help
        .iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(format!("{k:>16}  "), Style::default().add_modifier(Modifier::BOLD)),
                Span::raw(*what),
            ])
        })
        .collect();
    let r = centered(area, 96, help.len() as u16 + 4);
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(Text::from(lines))
            .wrap(Wrap { trim: false })
            .block(Block::default().borders(Borders::ALL).border_type(BorderType::Double).title(text::HELP_TITLE)),
        r,
    );
}

fn draw_trial(f: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let t = match &app.trial {
        Some(CurrentTrial::Ready(t)) => t,
        Some(CurrentTrial::Preparing { progress, .. }) => {
            let mut body = format!("{} {}", text::spinner(app.ticks), text::PREPARING);
            if let Some(p) = progress {
                body = format!("{body}\n\n{}", text::preparing_progress(p));
            }
            message(f, area, &app.study.title, &body, text::PREPARING_HINT, theme);
            return;
        }
        Some(CurrentTrial::Unavailable(e)) => {
            message(f, area, text::TRIAL_FAILED_TITLE, &text::trial_failed(e), text::QUIT_HINT, theme);
            return;
        }
        None => return,
    };
    let v = &t.view;
    let l = layout::trial(area, &v.prompt, &v.texts);
    let done = v.position as f64 / v.total.max(1) as f64;
    // The question's number stands to the left of the bar, never inside it: a bar drawn
    // under its label covered the label with block characters once it grew past it.
    f.render_widget(
        LineGauge::default()
            .ratio(done.clamp(0.0, 1.0))
            .label(Span::styled(text::progress(v.position + 1, v.total), Style::default().add_modifier(Modifier::BOLD)))
            .filled_symbol(text::PROGRESS_DONE)
            .unfilled_symbol(text::PROGRESS_LEFT)
            .filled_style(theme.fg(Color::Blue)),
        l.progress,
    );
    f.render_widget(
        Paragraph::new(inert(&v.prompt))
            .wrap(Wrap { trim: false })
            .block(Block::default().borders(Borders::ALL).title(format!(" {} ", text::PROMPT_TITLE))),
        l.prompt,
    );
    let instruction = match (t.held, v.mode) {
        (Some(Held::NoPreference), _) => text::NO_PREFERENCE_HELD,
        (Some(Held::Skip), _) => text::SKIP_HELD,
        (None, RankMode::Order) => text::ORDER_INSTRUCTION,
        (None, RankMode::Pick) => text::PICK_INSTRUCTION,
    };
    f.render_widget(Paragraph::new(instruction).style(Style::default().add_modifier(Modifier::ITALIC)), l.instruction);
    for (i, panel) in l.panels.iter().enumerate() {
        draw_panel(f, t, i, panel, theme);
    }
    let reading_left = app.reading_left();
    let status = if !reading_left.is_zero() {
        text::reading_wait(reading_left.as_secs() + 1)
    } else {
        app.shown_status().unwrap_or_default()
    };
    f.render_widget(Paragraph::new(status).style(theme.fg(Color::Yellow)), l.status);
    let opts = &app.study.options;
    f.render_widget(
        Paragraph::new(text::trial_hint(
            v.mode == RankMode::Order,
            v.texts.len(),
            opts.allow_no_preference,
            opts.allow_skip,
        ))
        .style(theme.fg(Color::Cyan)),
        l.hints,
    );
}

fn draw_panel(f: &mut Frame, t: &TrialState, i: usize, panel: &Panel, theme: Theme) {
    let focused = t.focus == i;
    let chosen = t.picked == Some(i);
    let rank = t.order.iter().position(|&s| s == i);
    let marked = theme.fg(Color::Green).add_modifier(Modifier::BOLD | Modifier::REVERSED);
    let mut title = vec![Span::raw(" ")];
    if focused {
        title.push(Span::styled(text::FOCUS_MARK, Style::default().add_modifier(Modifier::BOLD)));
    }
    title.push(Span::styled(text::answer_title(i + 1), Style::default().add_modifier(Modifier::BOLD)));
    if chosen {
        title.push(Span::styled(text::CHOSEN_MARK, marked));
    }
    if let Some(rk) = rank {
        title.push(Span::styled(text::rank_mark(rk + 1), marked));
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
    let scroll = t.scroll[i].min(panel.max_scroll);
    let mut block =
        Block::default().borders(Borders::ALL).border_type(border).border_style(style).title(Line::from(title));
    if panel.lines > panel.visible {
        let last = (scroll + panel.visible).min(panel.lines);
        block = block.title_bottom(Line::from(text::scrolled(scroll + 1, last, panel.lines)).right_aligned());
    }
    let body = inert(&t.view.texts[i]);
    f.render_widget(Paragraph::new(body).wrap(Wrap { trim: false }).scroll((scroll, 0)).block(block), panel.rect);
}
