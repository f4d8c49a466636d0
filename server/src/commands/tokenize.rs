//! Splits a console line into words the way a POSIX shell does: white space
//! separates words, single quotes keep everything literally, double quotes
//! keep spaces and honour `\"` and `\\`, a backslash outside quotes escapes the
//! next character. Unlike a shell (and the shell-words and shlex crates), `#`
//! starts no comment: `play music #1` must keep its argument.

/// A line that cannot be split.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenizeError {
    /// A quote was opened and never closed.
    #[error("unterminated {quote} quote starting at column {column}: close it, or escape it with a backslash")]
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
pub fn tokenize(line: &str) -> Result<Vec<String>, TokenizeError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn split(line: &str) -> Vec<String> {
        tokenize(line).unwrap()
    }

    #[test]
    fn splits_on_any_white_space() {
        assert_eq!(split("  eye   pattern\thappy \n"), ["eye", "pattern", "happy"]);
        assert!(split("   ").is_empty());
    }

    #[test]
    fn quotes_keep_spaces_and_can_join_a_word() {
        assert_eq!(split(r#"play music "cantina band""#), ["play", "music", "cantina band"]);
        assert_eq!(split("play music 'mad about me'"), ["play", "music", "mad about me"]);
        assert_eq!(split(r#"say "it's" 'a "test"'"#), ["say", "it's", r#"a "test""#]);
        assert_eq!(split(r#"pre"fix"'ed'"#), ["prefixed"]);
        assert_eq!(split(r#"empty "" ''"#), ["empty", "", ""]);
    }

    #[test]
    fn backslashes_escape() {
        assert_eq!(split(r#"a\ b "c\"d" "e\\f" "g\h""#), ["a b", r#"c"d"#, r"e\f", r"g\h"]);
    }

    #[test]
    fn hash_is_an_ordinary_character() {
        assert_eq!(split("play music #1"), ["play", "music", "#1"]);
    }

    #[test]
    fn unterminated_quotes_are_reported_with_their_column() {
        assert_eq!(
            tokenize(r#"play music "cantina"#),
            Err(TokenizeError::UnterminatedQuote { quote: "double", column: 12 })
        );
        assert_eq!(
            tokenize("say 'hi"),
            Err(TokenizeError::UnterminatedQuote { quote: "single", column: 5 })
        );
        assert_eq!(tokenize("oops \\"), Err(TokenizeError::TrailingBackslash));
    }
}
