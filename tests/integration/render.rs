//! Hostile candidate text renders inert and within bounds.

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::text::Text;
use ratatui::widgets::{Paragraph, Wrap};
use ualign::tui::draw::{inert, reflow};

#[test]
fn escape_sequences_and_controls_are_shown_not_interpreted() {
    let s = inert("red \u{1b}[31mtext\u{1b}[0m\tand\u{7}bell\r\n\u{202e}reversed");
    assert!(!s.contains('\u{1b}') && !s.contains('\u{7}') && !s.contains('\r') && !s.contains('\u{202e}'));
    assert!(s.contains("␛[31m"), "{s}");
    assert!(s.contains("    and␇bell"), "{s}");
    assert!(s.contains("\nreversed"));
}

#[test]
fn wide_characters_and_long_words_stay_inside_the_panel() {
    let text = inert("日本語のテキスト 😀😀😀 and_a_very_long_unbroken_string_that_is_wider_than_any_panel_could_be");
    let mut term = Terminal::new(TestBackend::new(20, 8)).unwrap();
    term.draw(|f| f.render_widget(Paragraph::new(Text::from(text.clone())).wrap(Wrap { trim: false }), f.area()))
        .unwrap();
    let buf = term.backend().buffer();
    // Read the rows back, skipping the cell a wide character covers.
    let rows: Vec<String> = (0..buf.area.height)
        .map(|y| {
            let mut row = String::new();
            let mut x = 0;
            while x < buf.area.width {
                let sym = buf[(x, y)].symbol();
                row.push_str(sym);
                x += (unicode_width::UnicodeWidthStr::width(sym) as u16).max(1);
            }
            row
        })
        .collect();
    let all: String = rows.concat();
    assert!(all.contains("日本語"), "{rows:#?}");
    assert!(all.contains("😀"), "{rows:#?}");
    // The unbroken string is wrapped across lines, not cut off.
    let joined: String = rows.iter().map(|r| r.trim_end()).collect();
    assert!(joined.contains("and_a_very_long_unbroken_string_that_is_wider_than_any_panel_could_be"), "{rows:#?}");
}

#[test]
fn study_texts_reflow_into_paragraphs() {
    assert_eq!(reflow("  one\ntwo\n\nthree  \n four\n"), "one two\n\nthree four");
}
