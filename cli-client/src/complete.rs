//! Tab completion of command names, and of plan names, in the shell.
//!
//! The names come from one ListCommands call at start-up. The command words
//! at the start of a line are completed, word by word, so that `ey<Tab>`
//! gives `eye ` and `eye p<Tab>` gives `eye pattern `. Arguments are left
//! alone because only the server knows what they may be, with one
//! exception: the plan a plan command names. `plan run <Tab>` offers the
//! plans of the server's folder, and `plan stop|pause|resume|status <Tab>`
//! the plans under way (names and ids), from a ListPlans call made at that
//! moment, so that they are current; with no answer in time (no server),
//! there is simply nothing to offer.

use cantina::v1::{CommandInfo, ListPlansResponse, PlanStatus};
use rustyline::{
    Context, Helper,
    completion::{Completer, Pair},
    highlight::Highlighter,
    hint::Hinter,
    validate::Validator,
};

/// The console commands whose first argument is a plan of the server's
/// folder, by canonical name (their aliases follow).
const SAVED_PLAN_COMMANDS: [&str; 1] = ["plan run"];

/// The console commands whose first argument is a plan under way.
const ACTIVE_PLAN_COMMANDS: [&str; 4] = ["plan stop", "plan pause", "plan resume", "plan status"];

/// The plans a command's argument may name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlanNames {
    /// The plans of the server's folder.
    pub saved: Vec<String>,
    /// The ids and names of the plans running, paused or queued.
    pub active: Vec<String>,
}

impl From<&ListPlansResponse> for PlanNames {
    fn from(list: &ListPlansResponse) -> Self {
        let active = list
            .plans
            .iter()
            .filter(|p| {
                matches!(
                    p.status(),
                    PlanStatus::Running | PlanStatus::Paused | PlanStatus::Pending
                )
            })
            .flat_map(|p| [p.plan_id.clone(), p.name.clone()])
            .filter(|name| !name.is_empty())
            .collect();
        Self {
            saved: list.saved.iter().map(|s| s.name.clone()).collect(),
            active,
        }
    }
}

/// What a command's first argument is, as far as completion goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Argument {
    /// Anything: only the server knows.
    Other,
    /// A plan of the server's folder.
    SavedPlan,
    /// A plan under way.
    ActivePlan,
}

/// One way to type a command.
#[derive(Debug)]
struct Phrase {
    /// Its words, in lower case.
    words: Vec<String>,
    /// What its first argument is.
    argument: Argument,
}

/// Every way to type a command, split into lower-case words.
#[derive(Debug, Default)]
pub struct CommandNames {
    /// Canonical names and aliases; command words are case-insensitive on the
    /// server, so they are matched in lower case here.
    phrases: Vec<Phrase>,
}

impl CommandNames {
    /// Collects the names and aliases of `commands`.
    pub fn new(commands: &[CommandInfo]) -> Self {
        let phrases = commands
            .iter()
            .flat_map(|c| {
                let argument = if SAVED_PLAN_COMMANDS.contains(&c.name.as_str()) {
                    Argument::SavedPlan
                } else if ACTIVE_PLAN_COMMANDS.contains(&c.name.as_str()) {
                    Argument::ActivePlan
                } else {
                    Argument::Other
                };
                std::iter::once(&c.name)
                    .chain(&c.aliases)
                    .map(move |name| Phrase {
                        words: name.split_whitespace().map(str::to_lowercase).collect(),
                        argument,
                    })
            })
            .filter(|phrase| !phrase.words.is_empty())
            .collect();
        Self { phrases }
    }

    /// Completes the word that ends at `pos`: the byte offset where that word
    /// starts, and the words that can replace it, sorted. `plans` is asked
    /// only when the word is a plan command's argument.
    pub fn complete(
        &self,
        line: &str,
        pos: usize,
        plans: impl FnOnce() -> PlanNames,
    ) -> (usize, Vec<String>) {
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
        let argument = self
            .phrases
            .iter()
            .find(|phrase| phrase.words == typed)
            .map_or(Argument::Other, |phrase| phrase.argument);
        let mut words: Vec<String> = match argument {
            Argument::Other => self
                .phrases
                .iter()
                .filter(|phrase| {
                    phrase.words.len() > typed.len() && phrase.words.starts_with(&typed)
                })
                .map(|phrase| &phrase.words[typed.len()])
                .filter(|word| word.starts_with(&partial))
                .cloned()
                .collect(),
            Argument::SavedPlan | Argument::ActivePlan => {
                let names = plans();
                let names = if argument == Argument::SavedPlan {
                    names.saved
                } else {
                    names.active
                };
                names
                    .into_iter()
                    .filter(|name| name.to_lowercase().starts_with(&partial))
                    .collect()
            }
        };
        words.sort();
        words.dedup();
        (start, words)
    }
}

/// Where the shell's plan names come from, asked at each <Tab> that needs
/// them.
pub type PlanSource = Box<dyn Fn() -> PlanNames>;

/// The rustyline helper of the shell: completion only, no hints or colours.
pub struct ShellHelper {
    /// What the first words of a line can be.
    names: CommandNames,
    /// The plans a plan command's argument may name.
    plans: PlanSource,
}

impl ShellHelper {
    /// A helper that completes the names of `commands`, and plan names from
    /// `plans`.
    pub fn new(commands: &[CommandInfo], plans: PlanSource) -> Self {
        Self {
            names: CommandNames::new(commands),
            plans,
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
        let (start, words) = self.names.complete(line, pos, &self.plans);
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
            command("plan run", &["run plan"]),
            command("plan stop", &["plan cancel"]),
        ])
    }

    fn plans() -> PlanNames {
        PlanNames {
            saved: vec!["ambient-idle".into(), "dj-intro".into(), "greeting".into()],
            active: vec!["plan-3".into(), "greeting".into()],
        }
    }

    fn complete(line: &str) -> (usize, Vec<String>) {
        names().complete(line, line.len(), plans)
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
        assert_eq!(complete("").1.len(), 9);
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
            names().complete("ey pattern happy", 2, plans),
            (0, vec!["eye".to_string()])
        );
        // A position inside a multi-byte character is not a place to complete.
        assert_eq!(names().complete("é", 1, plans).1, Vec::<String>::new());
    }

    #[test]
    fn plan_commands_complete_plan_names() {
        assert_eq!(
            complete("plan run "),
            (
                9,
                vec!["ambient-idle".into(), "dj-intro".into(), "greeting".into()]
            )
        );
        assert_eq!(complete("run plan g"), (9, vec!["greeting".into()]));
        assert_eq!(complete("PLAN RUN Dj"), (9, vec!["dj-intro".into()]));
        assert_eq!(
            complete("plan cancel "),
            (12, vec!["greeting".into(), "plan-3".into()])
        );
        // Only the first argument is a plan.
        assert_eq!(complete("plan run greeting q").1, Vec::<String>::new());
        // Without a server there are no names, and completion goes on.
        assert_eq!(
            names().complete("plan run ", 9, PlanNames::default).1,
            Vec::<String>::new()
        );
        // Plans are asked for only when a plan is being named.
        let asked = std::cell::Cell::new(false);
        names().complete("eye ", 4, || {
            asked.set(true);
            plans()
        });
        assert!(!asked.get());
    }
}
