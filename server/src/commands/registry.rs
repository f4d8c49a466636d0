//! The command registry: finds the command a line names and, when none does,
//! the commands the person most likely meant.
//!
//! Matching order, as the original console did it and people expect: the
//! longest multi-word phrase first (`play music`, `eye pattern`), then single
//! words, then shortcuts (`e`, `st`). Command words are case-insensitive.

use std::collections::HashMap;

use super::{CommandError, CommandSpec};

/// The commands on offer, indexed by every way to type them.
pub struct Registry {
    /// In declaration order, for `help` and stable suggestions.
    specs: Vec<&'static CommandSpec>,
    /// Names and aliases (possibly multi-word), lower case.
    phrases: HashMap<&'static str, &'static CommandSpec>,
    /// Shortcuts, tried last.
    shortcuts: HashMap<&'static str, &'static CommandSpec>,
    /// Words in the longest phrase.
    max_words: usize,
}

impl Registry {
    /// Indexes `specs`; two commands claiming the same words is a bug, reported
    /// here rather than found by a confused user.
    pub fn new(specs: Vec<&'static CommandSpec>) -> Result<Self, String> {
        let mut phrases = HashMap::new();
        let mut shortcuts = HashMap::new();
        let mut max_words = 1;
        for &spec in &specs {
            for &phrase in std::iter::once(&spec.name).chain(spec.aliases) {
                if phrase != phrase.to_lowercase() || phrase.split(' ').any(str::is_empty) {
                    return Err(format!(
                        "'{phrase}' must be lower-case words separated by one space"
                    ));
                }
                if let Some(other) = phrases.insert(phrase, spec) {
                    return Err(format!(
                        "'{phrase}' is claimed by both '{}' and '{}'",
                        other.name, spec.name
                    ));
                }
                max_words = max_words.max(phrase.split(' ').count());
            }
            for &shortcut in spec.shortcuts {
                if let Some(other) = shortcuts.insert(shortcut, spec) {
                    return Err(format!(
                        "shortcut '{shortcut}' is claimed by both '{}' and '{}'",
                        other.name, spec.name
                    ));
                }
            }
        }
        Ok(Self {
            specs,
            phrases,
            shortcuts,
            max_words,
        })
    }

    /// Every command, in declaration order.
    pub fn specs(&self) -> &[&'static CommandSpec] {
        &self.specs
    }

    /// Finds the command that `words` starts with; returns it and how many
    /// words it used. The rest are its arguments.
    pub fn resolve(&self, words: &[String]) -> Result<(&'static CommandSpec, usize), CommandError> {
        let lower: Vec<String> = words.iter().map(|w| w.to_lowercase()).collect();
        for n in (1..=self.max_words.min(lower.len())).rev() {
            if let Some(&spec) = self.phrases.get(lower[..n].join(" ").as_str()) {
                return Ok((spec, n));
            }
        }
        if let Some(&spec) = lower.first().and_then(|w| self.shortcuts.get(w.as_str())) {
            return Ok((spec, 1));
        }
        Err(CommandError::Unknown {
            input: words.first().cloned().unwrap_or_default(),
            suggestions: self.suggest(&lower),
        })
    }

    /// The commands closest to `words` (lower case): those within a small edit
    /// distance of a name or alias, or whose name begins with the words typed
    /// (`eye` → `eye pattern`, `eye test` …). Best first, at most three.
    pub fn suggest(&self, words: &[String]) -> Vec<&'static CommandSpec> {
        let mut scored: Vec<(usize, usize, &'static CommandSpec)> = Vec::new();
        for (order, &spec) in self.specs.iter().enumerate() {
            let best = std::iter::once(&spec.name)
                .chain(spec.aliases)
                .filter_map(|phrase| score(words, phrase))
                .min();
            if let Some(distance) = best {
                scored.push((distance, order, spec));
            }
        }
        scored.sort_by_key(|&(distance, order, _)| (distance, order));
        let Some(&(best, _, _)) = scored.first() else {
            return Vec::new();
        };
        scored
            .into_iter()
            .take_while(|&(distance, _, _)| distance == best)
            .take(3)
            .map(|(_, _, spec)| spec)
            .collect()
    }
}

/// How far `words` are from `phrase`; `None` when too far to suggest.
fn score(words: &[String], phrase: &str) -> Option<usize> {
    let k = phrase.split(' ').count();
    if words.len() < k {
        // Typed only the start of a multi-word command.
        let typed = words.join(" ");
        return phrase.starts_with(&format!("{typed} ")).then_some(0);
    }
    let typed = words[..k].join(" ");
    let distance = strsim::damerau_levenshtein(&typed, phrase);
    let tolerance = (phrase.chars().count() / 3).max(1);
    (distance <= tolerance).then_some(distance)
}

#[cfg(test)]
mod tests {
    use super::super::{Category, Command, CommandError, CommandSpec};
    use super::*;

    fn never(_: &'static CommandSpec, _: Vec<String>) -> Result<Command, CommandError> {
        unreachable!("registry tests do not parse")
    }

    const fn spec(
        name: &'static str,
        aliases: &'static [&'static str],
        shortcuts: &'static [&'static str],
    ) -> CommandSpec {
        CommandSpec {
            name,
            aliases,
            shortcuts,
            usage: name,
            description: "",
            category: Category::System,
            min_args: 0,
            max_args: None,
            parse: never,
        }
    }

    static PLAY: CommandSpec = spec("play music", &[], &["p"]);
    static PLAY_SOUND: CommandSpec = spec("play sound", &[], &[]);
    static STOP: CommandSpec = spec("stop music", &["stop"], &["s"]);
    static ENGAGE: CommandSpec = spec("engage", &[], &["e"]);
    static EYE_PATTERN: CommandSpec = spec("eye pattern", &[], &[]);
    static EYE_TEST: CommandSpec = spec("eye test", &[], &[]);
    static STATUS: CommandSpec = spec("status", &[], &["st"]);

    fn registry() -> Registry {
        Registry::new(vec![
            &PLAY,
            &PLAY_SOUND,
            &STOP,
            &ENGAGE,
            &EYE_PATTERN,
            &EYE_TEST,
            &STATUS,
        ])
        .unwrap()
    }

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    fn resolve(line: &str) -> (&'static str, usize) {
        let (spec, used) = registry().resolve(&words(line)).unwrap();
        (spec.name, used)
    }

    #[test]
    fn longest_phrase_then_word_then_shortcut() {
        assert_eq!(resolve("play music cantina band"), ("play music", 2));
        assert_eq!(resolve("Eye PATTERN happy"), ("eye pattern", 2));
        assert_eq!(resolve("stop"), ("stop music", 1));
        assert_eq!(resolve("stop music"), ("stop music", 2));
        assert_eq!(resolve("e"), ("engage", 1));
        assert_eq!(resolve("p 3"), ("play music", 1));
        assert_eq!(resolve("st"), ("status", 1));
    }

    #[test]
    fn typos_get_the_closest_command() {
        let Err(CommandError::Unknown { input, suggestions }) = registry().resolve(&words("engag"))
        else {
            panic!("expected unknown");
        };
        assert_eq!(input, "engag");
        assert_eq!(
            suggestions.iter().map(|s| s.name).collect::<Vec<_>>(),
            ["engage"]
        );

        let suggested = registry().suggest(&words("eye patern happy"));
        assert_eq!(
            suggested.iter().map(|s| s.name).collect::<Vec<_>>(),
            ["eye pattern"]
        );
    }

    #[test]
    fn a_first_word_alone_suggests_its_commands() {
        let suggested = registry().suggest(&words("eye"));
        assert_eq!(
            suggested.iter().map(|s| s.name).collect::<Vec<_>>(),
            ["eye pattern", "eye test"]
        );
        let suggested = registry().suggest(&words("play"));
        assert_eq!(
            suggested.iter().map(|s| s.name).collect::<Vec<_>>(),
            ["play music", "play sound"]
        );
    }

    #[test]
    fn nonsense_gets_no_suggestion() {
        assert!(registry().suggest(&words("xyzzy")).is_empty());
    }

    #[test]
    fn collisions_are_refused() {
        static OTHER_STOP: CommandSpec = spec("stop", &[], &[]);
        static OTHER_E: CommandSpec = spec("eject", &[], &["e"]);
        let err = Registry::new(vec![&STOP, &OTHER_STOP]).err().unwrap();
        assert_eq!(err, "'stop' is claimed by both 'stop music' and 'stop'");
        assert!(Registry::new(vec![&ENGAGE, &OTHER_E]).is_err());
    }
}
