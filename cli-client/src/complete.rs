//! Tab completion of command names in the shell.
//!
//! The names come from one ListCommands call at start-up. Only the command
//! words at the start of a line are completed, word by word, so that `ey<Tab>`
//! gives `eye ` and `eye p<Tab>` gives `eye pattern `; arguments are left alone
//! because only the server knows what they may be.

use cantina::v1::CommandInfo;
use rustyline::{
    Context, Helper,
    completion::{Completer, Pair},
    highlight::Highlighter,
    hint::Hinter,
    validate::Validator,
};

/// Every way to type a command, split into lower-case words.
#[derive(Debug, Default)]
pub struct CommandNames {
    /// Canonical names and aliases; command words are case-insensitive on the
    /// server, so they are matched in lower case here.
    phrases: Vec<Vec<String>>,
}

impl CommandNames {
    /// Collects the names and aliases of `commands`.
    pub fn new(commands: &[CommandInfo]) -> Self {
        let phrases = commands
            .iter()
            .flat_map(|c| std::iter::once(&c.name).chain(&c.aliases))
            .map(|name| {
                name.split_whitespace()
                    .map(str::to_lowercase)
                    .collect::<Vec<_>>()
            })
            .filter(|words| !words.is_empty())
            .collect();
        Self { phrases }
    }

    /// Completes the word that ends at `pos`: the byte offset where that word
    /// starts, and the words that can replace it, sorted.
    pub fn complete(&self, line: &str, pos: usize) -> (usize, Vec<String>) {
        let Some(before) = line.get(..pos) else {
            return (pos, Vec::new());
        };
        // Quotes and escapes only appear in arguments.
        if before.contains(['"', '\'', '\\']) {
            return (pos, Vec::new());
        }
        // The word being completed runs from the last white space to the
        // cursor; the complete words before it must spell the start of a name.
        let start = before.trim_end_matches(|c: char| !c.is_whitespace()).len();
        let typed: Vec<String> = before[..start]
            .split_whitespace()
            .map(str::to_lowercase)
            .collect();
        let partial = before[start..].to_lowercase();
        let mut words: Vec<String> = self
            .phrases
            .iter()
            .filter(|phrase| phrase.len() > typed.len() && phrase.starts_with(&typed))
            .map(|phrase| &phrase[typed.len()])
            .filter(|word| word.starts_with(&partial))
            .cloned()
            .collect();
        words.sort();
        words.dedup();
        (start, words)
    }
}

/// The rustyline helper of the shell: completion only, no hints or colours.
#[derive(Debug, Default)]
pub struct ShellHelper {
    /// What the first words of a line can be.
    names: CommandNames,
}

impl ShellHelper {
    /// A helper that completes the names of `commands`.
    pub fn new(commands: &[CommandInfo]) -> Self {
        Self {
            names: CommandNames::new(commands),
        }
    }
}

impl Completer for ShellHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let (start, words) = self.names.complete(line, pos);
        let candidates = words
            .into_iter()
            .map(|word| Pair {
                // The space lets the next <Tab> go on to the next word.
                replacement: format!("{word} "),
                display: word,
            })
            .collect();
        Ok((start, candidates))
    }
}

impl Hinter for ShellHelper {
    type Hint = String;
}

impl Highlighter for ShellHelper {}

impl Validator for ShellHelper {}

impl Helper for ShellHelper {}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> CommandNames {
        let command = |name: &str, aliases: &[&str]| CommandInfo {
            name: name.into(),
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
            ..CommandInfo::default()
        };
        CommandNames::new(&[
            command("engage", &["e"]),
            command("eye pattern", &["ep"]),
            command("eye brightness", &[]),
            command("status", &["st"]),
            command("play music", &[]),
        ])
    }

    fn complete(line: &str) -> (usize, Vec<String>) {
        names().complete(line, line.len())
    }

    #[test]
    fn the_first_word_completes_against_names_and_aliases() {
        assert_eq!(complete("en"), (0, vec!["engage".to_string()]));
        assert_eq!(
            complete("e"),
            (
                0,
                vec!["e".into(), "engage".into(), "ep".into(), "eye".into()]
            )
        );
        assert_eq!(complete("  St"), (2, vec!["st".into(), "status".into()]));
        assert_eq!(complete("").1.len(), 7);
    }

    #[test]
    fn multi_word_names_complete_word_by_word() {
        assert_eq!(
            complete("eye "),
            (4, vec!["brightness".into(), "pattern".into()])
        );
        assert_eq!(complete("EYE pa"), (4, vec!["pattern".into()]));
        assert_eq!(complete("play "), (5, vec!["music".into()]));
    }

    #[test]
    fn arguments_are_not_completed() {
        assert_eq!(complete("eye pattern ").1, Vec::<String>::new());
        assert_eq!(complete("eye pattern ha").1, Vec::<String>::new());
        assert_eq!(complete("engage e").1, Vec::<String>::new());
        assert_eq!(complete("play \"mu").1, Vec::<String>::new());
        assert_eq!(complete("xyz ").1, Vec::<String>::new());
    }

    #[test]
    fn only_the_text_before_the_cursor_counts() {
        assert_eq!(
            names().complete("ey pattern happy", 2),
            (0, vec!["eye".to_string()])
        );
        // A position inside a multi-byte character is not a place to complete.
        assert_eq!(names().complete("é", 1).1, Vec::<String>::new());
    }
}
