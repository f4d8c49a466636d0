//! Text into sentences, so that long text starts fast: the first sentence
//! plays while the rest is made.

/// Longest piece handed to the engine at once: a run-on text with no full
/// stop is cut at a comma, else a space, so it still streams.
const MAX_PIECE: usize = 300;

/// The text's sentences, in order, trimmed; empty pieces dropped. A sentence
/// ends at `.`, `!`, `?`, `…` or `;` followed by a space, or at a line break.
pub fn sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\n' || c == '\r' {
            push(&mut out, &mut current);
            continue;
        }
        current.push(c);
        let ends = matches!(c, '.' | '!' | '?' | '…' | ';');
        if ends {
            // Runs such as `?!` or `...` stay with their sentence.
            while let Some(&next) = chars.peek() {
                if matches!(next, '.' | '!' | '?' | '…' | '"' | '\'' | ')' | '»' | '”') {
                    current.push(next);
                    chars.next();
                } else {
                    break;
                }
            }
            if chars.peek().is_none_or(|n| n.is_whitespace()) {
                push(&mut out, &mut current);
            }
        }
    }
    push(&mut out, &mut current);
    out
}

fn push(out: &mut Vec<String>, current: &mut String) {
    let piece = current.trim();
    if piece.chars().any(char::is_alphanumeric) {
        split_long(piece, out);
    } else if !piece.is_empty()
        && let Some(last) = out.last_mut()
    {
        // Lone punctuation belongs to the sentence before.
        last.push_str(piece);
    }
    current.clear();
}

fn split_long(mut piece: &str, out: &mut Vec<String>) {
    while piece.len() > MAX_PIECE {
        let mut limit = MAX_PIECE;
        while !piece.is_char_boundary(limit) {
            limit -= 1;
        }
        let head = &piece[..limit];
        let cut = head
            .rfind([',', ':'])
            .map(|i| i + 1)
            .or_else(|| head.rfind(char::is_whitespace))
            .filter(|&i| i > 0)
            .unwrap_or(limit);
        out.push(piece[..cut].trim().to_string());
        piece = piece[cut..].trim_start();
    }
    if !piece.is_empty() {
        out.push(piece.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_cut_after_each_sentence() {
        assert_eq!(
            sentences("Welcome to Oga's Cantina! The band plays at 9.30 tonight. Ready?"),
            [
                "Welcome to Oga's Cantina!",
                "The band plays at 9.30 tonight.",
                "Ready?"
            ]
        );
    }

    #[test]
    fn runs_of_punctuation_and_quotes_stay_with_their_sentence() {
        assert_eq!(
            sentences("What?! He said \"no.\" Fine... ok"),
            ["What?!", "He said \"no.\"", "Fine...", "ok"]
        );
    }

    #[test]
    fn line_breaks_end_sentences_and_blank_pieces_vanish() {
        assert_eq!(sentences("one\n\ntwo\r\n  \n"), ["one", "two"]);
        assert!(sentences("  ...  ").is_empty());
        assert!(sentences("").is_empty());
    }

    #[test]
    fn a_run_on_text_is_cut_at_commas_then_spaces_and_never_lost() {
        let text = "word, ".repeat(200);
        let pieces = sentences(&text);
        assert!(pieces.len() > 1);
        assert!(pieces.iter().all(|p| p.len() <= MAX_PIECE));
        let words: usize = pieces.iter().map(|p| p.matches("word").count()).sum();
        assert_eq!(words, 200);
        let long = "é".repeat(400);
        let pieces = sentences(&long);
        assert_eq!(pieces.concat(), long);
    }
}
