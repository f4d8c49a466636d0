//! Aligned text tables whose cells may be coloured.
//!
//! Widths are counted on the visible text before any colour is added, so
//! escapes never push a column out of line; the last column is not padded, so
//! lines carry no trailing blanks for a diff or a test to trip over.

use anstyle::Style;

use crate::colour::Colours;

/// One cell: its text and the style it gets when colour is on.
#[derive(Clone, Debug)]
pub struct Cell {
    /// What is shown.
    text: String,
    /// How it is coloured; `Style::new()` for plain.
    style: Style,
}

impl Cell {
    /// A coloured cell.
    pub fn styled(text: impl Into<String>, style: Style) -> Self {
        Self {
            text: text.into(),
            style,
        }
    }
}

impl From<String> for Cell {
    fn from(text: String) -> Self {
        Self::styled(text, Style::new())
    }
}

impl From<&str> for Cell {
    fn from(text: &str) -> Self {
        Self::from(text.to_string())
    }
}

/// Lays out `rows` (the first is usually the header) in columns two spaces
/// apart, each line starting with `indent` and ending in a newline.
pub fn render(rows: &[Vec<Cell>], indent: &str, colours: Colours) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|column| {
            rows.iter()
                .filter_map(|row| row.get(column))
                .map(|cell| cell.text.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();

    let mut text = String::new();
    for row in rows {
        let mut line = String::from(indent);
        for (column, cell) in row.iter().enumerate() {
            if column > 0 {
                line.push_str("  ");
            }
            line.push_str(&colours.paint(cell.style, &cell.text));
            if column + 1 < row.len() {
                let padding = widths[column].saturating_sub(cell.text.chars().count());
                line.extend(std::iter::repeat_n(' ', padding));
            }
        }
        // Empty trailing cells (no message, say) would leave blanks behind.
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use anstyle::AnsiColor;

    use super::*;
    use crate::colour::fg;

    fn row(cells: &[&str]) -> Vec<Cell> {
        cells.iter().map(|&c| Cell::from(c)).collect()
    }

    #[test]
    fn columns_align_on_the_widest_cell() {
        let rows = [
            row(&["NAME", "STATUS", "MESSAGE"]),
            row(&["audio", "RUNNING", ""]),
        ];
        assert_eq!(
            render(&rows, "", Colours::OFF),
            "NAME   STATUS   MESSAGE\naudio  RUNNING\n"
        );
        assert_eq!(render(&rows[1..], "  ", Colours::OFF), "  audio  RUNNING\n");
    }

    #[test]
    fn colour_does_not_count_towards_the_width() {
        let rows = [
            row(&["STATUS", "X"]),
            vec![Cell::styled("ERROR", fg(AnsiColor::Red)), Cell::from("y")],
        ];
        assert_eq!(
            render(&rows, "", Colours::ON),
            "STATUS  X\n\u{1b}[31mERROR\u{1b}[0m   y\n"
        );
    }
}
