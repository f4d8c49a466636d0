//! Colour in the text output, for people at a terminal only.
//!
//! Colour is on when stdout is a terminal and `NO_COLOR` (<https://no-color.org>)
//! is unset or empty; a pipe, a file or a script gets plain text, so `grep`
//! and `awk` see the same bytes everywhere. What each colour means is decided
//! where the text is made (status cells, event topics); this module only knows
//! whether to apply it.

use std::{ffi::OsString, io::IsTerminal};

use anstyle::{AnsiColor, Color, Style};

/// Whether to colour the text output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Colours {
    /// True to write ANSI escapes.
    on: bool,
}

impl Colours {
    /// Plain text, whatever stdout is (`--no-color`, raw output, tests).
    pub const OFF: Colours = Colours { on: false };
    /// ANSI colour whatever stdout is (for tests).
    #[cfg(test)]
    pub const ON: Colours = Colours { on: true };

    /// Colour when stdout is a terminal and `NO_COLOR` does not forbid it.
    pub fn for_stdout() -> Self {
        Self::decide(
            std::io::stdout().is_terminal(),
            std::env::var_os("NO_COLOR"),
        )
    }

    fn decide(terminal: bool, no_color: Option<OsString>) -> Self {
        // The convention: present *and non-empty* switches colour off.
        let forbidden = no_color.is_some_and(|value| !value.is_empty());
        Self {
            on: terminal && !forbidden,
        }
    }

    /// `text` in `style`, or `text` as is when colour is off.
    pub fn paint(self, style: Style, text: &str) -> String {
        if self.on && style != Style::new() {
            format!("{style}{text}{style:#}")
        } else {
            text.to_string()
        }
    }
}

/// Text in a foreground colour.
pub const fn fg(colour: AnsiColor) -> Style {
    Style::new().fg_color(Some(Color::Ansi(colour)))
}

/// Text that matters less: timestamps, stopped things.
pub const DIM: Style = Style::new().dimmed();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_needs_a_terminal_and_no_no_color() {
        assert_eq!(Colours::decide(true, None), Colours::ON);
        assert_eq!(Colours::decide(false, None), Colours::OFF);
        assert_eq!(Colours::decide(true, Some("1".into())), Colours::OFF);
        // An empty NO_COLOR does not count, as the convention says.
        assert_eq!(Colours::decide(true, Some("".into())), Colours::ON);
    }

    #[test]
    fn paint_wraps_in_escapes_only_when_on() {
        let red = fg(AnsiColor::Red);
        assert_eq!(Colours::OFF.paint(red, "ERROR"), "ERROR");
        assert_eq!(Colours::ON.paint(red, "ERROR"), "\u{1b}[31mERROR\u{1b}[0m");
        assert_eq!(Colours::ON.paint(Style::new(), "plain"), "plain");
    }
}
