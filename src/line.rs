//! The syntax of a console line, both ways: [`split`] turns a line into words
//! the way a POSIX shell does (the server), [`join`] turns words back into a
//! line that splits into the same words (the CLI, whose words the user's
//! shell has already unquoted).
//!
//! White space separates words, single quotes keep everything literally,
//! double quotes keep spaces and honour `\"` and `\\`, a backslash outside
//! quotes escapes the next character. Unlike a shell (and the shell-words and
//! shlex crates), `#` starts no comment: `play music #1` keeps its argument.

use std::borrow::Cow;

/// A line that cannot be split.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenizeError {
    /// A quote was opened and never closed.
    #[error(
        "unterminated {quote} quote starting at column {column}: close it, or escape it with a backslash"
    )]
    UnterminatedQuote {
        /// `single` or `double`.
        quote: &'static str,
        /// 1-based column of the opening quote.
        column: usize,
    },
    /// The line ends with a lone backslash.
    #[error("the line ends with a lone backslash: remove it or escape it as \\\\")]
    TrailingBackslash,
}

/// Splits `line` into words.
pub fn split(line: &str) -> Result<Vec<String>, TokenizeError> {
    let mut words = Vec::new();
    let mut word = String::new();
    // Whether a word has begun: `""` is an empty word, not nothing.
    let mut in_word = false;
    let mut chars = line.chars().enumerate();
    while let Some((i, c)) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some((_, '\'')) => break,
                        Some((_, c)) => word.push(c),
                        None => {
                            return Err(TokenizeError::UnterminatedQuote {
                                quote: "single",
                                column: i + 1,
                            });
                        }
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some((_, '"')) => break,
                        Some((_, '\\')) => match chars.next() {
                            Some((_, c @ ('"' | '\\'))) => word.push(c),
                            Some((_, c)) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => {
                                return Err(TokenizeError::UnterminatedQuote {
                                    quote: "double",
                                    column: i + 1,
                                });
                            }
                        },
                        Some((_, c)) => word.push(c),
                        None => {
                            return Err(TokenizeError::UnterminatedQuote {
                                quote: "double",
                                column: i + 1,
                            });
                        }
                    }
                }
            }
            '\\' => match chars.next() {
                Some((_, c)) => {
                    in_word = true;
                    word.push(c);
                }
                None => return Err(TokenizeError::TrailingBackslash),
            },
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// Joins `words` into a line that [`split`] turns back into the same words:
/// a word that is empty or holds white space, a quote or a backslash is
/// wrapped in double quotes with `\\` and `"` escaped.
pub fn join<S: AsRef<str>>(words: &[S]) -> String {
    words
        .iter()
        .map(|word| quote(word.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

fn quote(word: &str) -> Cow<'_, str> {
    let needs_quotes = word.is_empty()
        || word
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\'));
    if !needs_quotes {
        return Cow::Borrowed(word);
    }
    let mut quoted = String::with_capacity(word.len() + 2);
    quoted.push('"');
    for c in word.chars() {
        if matches!(c, '"' | '\\') {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    Cow::Owned(quoted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        split(line).unwrap()
    }

    #[test]
    fn splits_on_any_white_space() {
        assert_eq!(
            words("  eye   pattern\thappy \n"),
            ["eye", "pattern", "happy"]
        );
        assert!(words("   ").is_empty());
    }

    #[test]
    fn quotes_keep_spaces_and_can_join_a_word() {
        assert_eq!(
            words(r#"play music "cantina band""#),
            ["play", "music", "cantina band"]
        );
        assert_eq!(
            words("play music 'mad about me'"),
            ["play", "music", "mad about me"]
        );
        assert_eq!(
            words(r#"say "it's" 'a "test"'"#),
            ["say", "it's", r#"a "test""#]
        );
        assert_eq!(words(r#"pre"fix"'ed'"#), ["prefixed"]);
        assert_eq!(words(r#"empty "" ''"#), ["empty", "", ""]);
    }

    #[test]
    fn backslashes_escape() {
        assert_eq!(
            words(r#"a\ b "c\"d" "e\\f" "g\h""#),
            ["a b", r#"c"d"#, r"e\f", r"g\h"]
        );
    }

    #[test]
    fn hash_is_an_ordinary_character() {
        assert_eq!(words("play music #1"), ["play", "music", "#1"]);
    }

    #[test]
    fn unterminated_quotes_are_reported_with_their_column() {
        assert_eq!(
            split(r#"play music "cantina"#),
            Err(TokenizeError::UnterminatedQuote {
                quote: "double",
                column: 12
            })
        );
        assert_eq!(
            split("say 'hi"),
            Err(TokenizeError::UnterminatedQuote {
                quote: "single",
                column: 5
            })
        );
        assert_eq!(split("oops \\"), Err(TokenizeError::TrailingBackslash));
    }

    #[test]
    fn join_quotes_only_what_needs_it() {
        assert_eq!(join(&["eye", "pattern", "happy"]), "eye pattern happy");
        assert_eq!(join::<&str>(&[]), "");
        assert_eq!(
            join(&["play", "music", "cantina band"]),
            r#"play music "cantina band""#
        );
        assert_eq!(join(&["say", ""]), r#"say """#);
        assert_eq!(join(&["say", r#"a "b" \c"#]), r#"say "a \"b\" \\c""#);
        assert_eq!(join(&["play", "#1"]), "play #1");
    }

    #[test]
    fn split_undoes_join() {
        let words = [
            "play",
            "cantina band",
            "",
            " ",
            "it's",
            r#"say "hi""#,
            r"back\slash",
            r"trailing\",
            "#hashtag",
            "mid#dle",
            "tab\there",
            "new\nline",
            "$HOME",
            "`tick`",
            "*?[]~=%",
            "ünïcødé ✨",
        ];
        for word in words {
            let line = join(&["cmd", word]);
            assert_eq!(split(&line).unwrap(), ["cmd", word], "line {line:?}");
        }
        let line = join(&words);
        assert_eq!(split(&line).unwrap(), words, "line {line:?}");
    }
}
