//! Topics: every kind of event the droid publishes, in one enum with dotted
//! names, each in a class that decides what goes first when a subscriber's
//! queue is contended. Glob patterns (`music.*`, `system.mode.*`, `*`) compile
//! once, at subscription, into a [`TopicSelector`]: for the declared topics a
//! [`TopicSet`], so matching at publish time is a bit test.
//!
//! Clients publish events of their own under `ext.` (`ext.button.pressed`),
//! names the server cannot list in advance. They share one variant,
//! [`Topic::External`], and each such event carries its full [`ExtName`]; a
//! selector keeps the globs that can match an `ext.` name, tried only on
//! external events (every other event still costs one bit test).

use std::{fmt, sync::Arc};

/// How urgent a topic's events are when a subscriber's queue is contended:
/// a queued higher class is delivered first and evicted last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TopicClass {
    /// High-volume telemetry (progress, levels): first to go under pressure.
    Bulk = 0,
    /// Ordinary state changes.
    Normal = 1,
    /// Lifecycle, modes and failures: never dropped while others can be.
    Critical = 2,
}

impl TopicClass {
    /// Every class, most urgent first.
    pub const BY_URGENCY: [TopicClass; 3] =
        [TopicClass::Critical, TopicClass::Normal, TopicClass::Bulk];
}

macro_rules! topics {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal, $class:ident; )*) => {
        /// Every event topic.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Topic {
            $( $(#[$doc])* $variant, )*
        }

        impl Topic {
            /// Every topic, in declaration order.
            pub const ALL: &'static [Topic] = &[$(Topic::$variant),*];

            /// The dotted name, e.g. `system.mode.changed`.
            pub fn as_str(self) -> &'static str {
                match self { $(Topic::$variant => $name,)* }
            }

            /// The topic's class.
            pub fn class(self) -> TopicClass {
                match self { $(Topic::$variant => TopicClass::$class,)* }
            }
        }
    };
}

topics! {
    /// The server finished booting.
    SystemStarted = "system.started", Critical;
    /// The server began shutting down.
    SystemStopping = "system.stopping", Critical;
    /// The panic button: every plan cancelled, music and speech stopped.
    SystemPanic = "system.panic", Critical;
    /// A mode change began.
    ModeTransitionStarted = "system.mode.transition.started", Critical;
    /// The mode changed.
    ModeChanged = "system.mode.changed", Critical;
    /// A mode change finished.
    ModeTransitionCompleted = "system.mode.transition.completed", Critical;
    /// A mode change failed and the previous mode was restored.
    ModeTransitionFailed = "system.mode.transition.failed", Critical;
    /// A subsystem's status changed.
    ServiceStatusChanged = "service.status.changed", Critical;
    /// A console command ran.
    CommandExecuted = "command.executed", Normal;
    /// A console command was refused or failed.
    CommandFailed = "command.failed", Normal;
    /// A bus handler failed or timed out.
    BusHandlerFailed = "bus.handler.failed", Critical;
    /// A bus handler failed too often in a row and was unsubscribed.
    BusHandlerUnsubscribed = "bus.handler.unsubscribed", Critical;
    /// Periodic bus metrics.
    BusMetrics = "bus.metrics", Bulk;
    /// Music started playing.
    MusicPlaybackStarted = "music.playback.started", Normal;
    /// Music stopped.
    MusicPlaybackStopped = "music.playback.stopped", Normal;
    /// Music paused.
    MusicPlaybackPaused = "music.playback.paused", Normal;
    /// Music resumed.
    MusicPlaybackResumed = "music.playback.resumed", Normal;
    /// A track played to its end.
    MusicPlaybackEnded = "music.playback.ended", Normal;
    /// The current track ends in 30 s.
    MusicTrackEndingSoon = "music.track.ending_soon", Normal;
    /// The queue changed.
    MusicQueueUpdated = "music.queue.updated", Normal;
    /// The volume changed.
    MusicVolumeChanged = "music.volume.changed", Normal;
    /// Ducking began.
    MusicDuckStarted = "music.duck.started", Normal;
    /// Ducking ended.
    MusicDuckEnded = "music.duck.ended", Normal;
    /// A crossfade began.
    MusicCrossfadeStarted = "music.crossfade.started", Normal;
    /// A crossfade finished.
    MusicCrossfadeCompleted = "music.crossfade.completed", Normal;
    /// The library was rescanned.
    MusicLibraryUpdated = "music.library.updated", Normal;
    /// DJ mode began.
    MusicDjStarted = "music.dj.started", Normal;
    /// DJ mode ended.
    MusicDjStopped = "music.dj.stopped", Normal;
    /// A DJ crossfade begins in `dj_commentary_lead`: the moment for commentary.
    MusicDjTransitionUpcoming = "music.dj.transition.upcoming", Normal;
    /// Playback position, periodically.
    MusicPlaybackProgress = "music.playback.progress", Bulk;
    /// A sound effect began (`play sound`).
    AudioSoundStarted = "audio.sound.started", Normal;
    /// The audio output ran dry.
    AudioUnderrun = "audio.underrun", Bulk;
    /// The audio device was lost.
    AudioDeviceLost = "audio.device.lost", Critical;
    /// The audio device came back.
    AudioDeviceRecovered = "audio.device.recovered", Critical;
    /// Speech began.
    SpeechStarted = "speech.started", Normal;
    /// Speech ended.
    SpeechEnded = "speech.ended", Normal;
    /// A client's microphone opened (published with `PublishEvent`).
    VoiceListeningStarted = "voice.listening.started", Normal;
    /// A client's microphone closed.
    VoiceListeningStopped = "voice.listening.stopped", Normal;
    /// A client began preparing a reply.
    VoiceThinkingStarted = "voice.thinking.started", Normal;
    /// A client's reply is ready (or abandoned).
    VoiceThinkingStopped = "voice.thinking.stopped", Normal;
    /// A client judged the conversation's mood: payload `sentiment`.
    VoiceSentiment = "voice.sentiment", Normal;
    /// An event a client published under `ext.` (buttons, sensors,
    /// scripts); each carries its full name, e.g. `ext.button.pressed`.
    External = "ext.*", Normal;
    /// The eyes show another pattern.
    EyesPatternChanged = "eyes.pattern.changed", Normal;
    /// The eyes' brightness changed.
    EyesBrightnessChanged = "eyes.brightness.changed", Normal;
    /// The eyes' board stopped answering.
    EyesConnectionLost = "eyes.connection.lost", Critical;
    /// The eyes' board answers again.
    EyesConnectionRecovered = "eyes.connection.recovered", Critical;
    /// `eye test` began cycling the patterns.
    EyesTestStarted = "eyes.test.started", Normal;
    /// `eye test` ended (completed, cancelled or failed).
    EyesTestFinished = "eyes.test.finished", Normal;
    /// A servo move began: payload `id`, `servo`, `to_us`, `duration_ms` …
    ServoMoveStarted = "servo.move.started", Normal;
    /// A servo move ended: payload `id`, `servo` and `outcome` (finished,
    /// replaced, halted, interrupted, stopped).
    ServoMoveFinished = "servo.move.finished", Normal;
    /// The servo board stopped answering.
    ServosConnectionLost = "servos.connection.lost", Critical;
    /// The servo board answers again; the servos are back at their targets.
    ServosConnectionRecovered = "servos.connection.recovered", Critical;
    /// A plan started.
    PlanStarted = "plan.started", Normal;
    /// A plan step started.
    PlanStepStarted = "plan.step.started", Normal;
    /// A plan step finished.
    PlanStepFinished = "plan.step.finished", Normal;
    /// A plan step failed.
    PlanStepFailed = "plan.step.failed", Normal;
    /// A plan was paused by a higher layer.
    PlanPaused = "plan.paused", Normal;
    /// A plan resumed.
    PlanResumed = "plan.resumed", Normal;
    /// A plan ended.
    PlanEnded = "plan.ended", Normal;
    /// What the logs capture changed.
    LogLevelChanged = "log.level.changed", Normal;
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

const _: () = assert!(Topic::ALL.len() <= 128, "TopicSet is a u128");

/// A set of topics: what a subscription receives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TopicSet(u128);

impl TopicSet {
    /// Every topic.
    pub fn all() -> Self {
        Topic::ALL.iter().copied().collect()
    }

    /// Whether `topic` is in the set.
    pub fn contains(self, topic: Topic) -> bool {
        self.0 & (1 << topic as u32) != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The topics of the set, in declaration order.
    pub fn topics(self) -> impl Iterator<Item = Topic> {
        Topic::ALL
            .iter()
            .copied()
            .filter(move |t| self.contains(*t))
    }

    /// The declared topics that glob `patterns` select (with
    /// [`Topic::External`] when one of them can match an `ext.` name); see
    /// [`TopicSelector::parse`].
    pub fn parse<S: AsRef<str>>(patterns: &[S]) -> Result<Self, PatternError> {
        TopicSelector::parse(patterns).map(|s| s.set)
    }
}

impl From<Topic> for TopicSet {
    fn from(topic: Topic) -> Self {
        TopicSet(1 << topic as u32)
    }
}

impl FromIterator<Topic> for TopicSet {
    fn from_iter<I: IntoIterator<Item = Topic>>(iter: I) -> Self {
        TopicSet(iter.into_iter().fold(0, |bits, t| bits | (1 << t as u32)))
    }
}

/// What a subscription receives: a set of declared topics and, when the set
/// holds [`Topic::External`], which external names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TopicSelector {
    /// The declared topics.
    set: TopicSet,
    /// The globs an external event's name must match (one of them);
    /// `None`: every name.
    external: Option<Arc<[Box<str>]>>,
}

impl TopicSelector {
    /// Compiles glob patterns (`*` any characters, dots included; `?` one
    /// character). An empty list means every topic. A pattern that matches no
    /// topic (and can match no `ext.` name) is an error that names the
    /// closest topics, because a typo would otherwise be a subscription that
    /// silently never fires.
    pub fn parse<S: AsRef<str>>(patterns: &[S]) -> Result<Self, PatternError> {
        if patterns.is_empty() {
            return Ok(TopicSet::all().into());
        }
        let mut set = TopicSet::default();
        let mut external: Vec<Box<str>> = Vec::new();
        let mut every_name = false;
        for pattern in patterns {
            let pattern = pattern.as_ref().trim();
            let matched: TopicSet = Topic::ALL
                .iter()
                .copied()
                .filter(|t| *t != Topic::External && glob_match(pattern, t.as_str()))
                .collect();
            let ext = may_match_external(pattern);
            if matched.is_empty() && !ext {
                return Err(PatternError {
                    pattern: pattern.to_string(),
                    closest: closest(pattern),
                });
            }
            set.0 |= matched.0;
            if ext {
                set.0 |= TopicSet::from(Topic::External).0;
                every_name |= pattern.chars().all(|c| c == '*') || pattern == "ext.*";
                external.push(pattern.into());
            }
        }
        Ok(Self {
            set,
            external: (!every_name && !external.is_empty()).then(|| external.into()),
        })
    }

    /// The declared topics selected.
    pub fn set(&self) -> TopicSet {
        self.set
    }

    /// Whether an event on `topic`, named `name` (its full name: only
    /// external events have one of their own), is selected. For declared
    /// topics a bit test; the globs run only for external events.
    pub fn matches(&self, topic: Topic, name: &str) -> bool {
        self.set.contains(topic)
            && (topic != Topic::External
                || self
                    .external
                    .as_ref()
                    .is_none_or(|globs| globs.iter().any(|g| glob_match(g, name))))
    }
}

impl From<TopicSet> for TopicSelector {
    /// Every external name when the set holds [`Topic::External`].
    fn from(set: TopicSet) -> Self {
        Self {
            set,
            external: None,
        }
    }
}

impl From<Topic> for TopicSelector {
    fn from(topic: Topic) -> Self {
        TopicSet::from(topic).into()
    }
}

/// Characters of an `ext.` name's segments besides lowercase letters and
/// digits.
const NAME_PUNCTUATION: [char; 2] = ['_', '-'];

fn name_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || NAME_PUNCTUATION.contains(&c)
}

/// Whether glob `pattern` can match some external name: `ext.`, then name
/// characters and dots. (Decided on the two automata together: the glob's
/// positions against where in `ext.…` the text is.)
fn may_match_external(pattern: &str) -> bool {
    const PREFIX: &[u8] = b"ext.";
    let p = pattern.as_bytes();
    // The name's states: 0..4 inside `ext.`, 4 after it (a name character
    // must come), 5 in the rest (name characters or dots); 5 accepts.
    let step = |state: usize, c: u8| -> Option<usize> {
        match state {
            s if s < PREFIX.len() => (PREFIX[s] == c).then_some(s + 1),
            4 => name_char(c as char).then_some(5),
            _ => (name_char(c as char) || c == b'.').then_some(5),
        }
    };
    // Characters that can stand for `?` or `*` in each state.
    let any = |state: usize| -> Vec<u8> {
        match state {
            s if s < PREFIX.len() => vec![PREFIX[s]],
            _ => vec![b'a', b'.'],
        }
    };
    let mut seen = std::collections::HashSet::new();
    let mut todo = vec![(0usize, 0usize)];
    while let Some((pi, state)) = todo.pop() {
        if !seen.insert((pi, state)) {
            continue;
        }
        match p.get(pi) {
            None => {
                if state == 5 {
                    return true;
                }
            }
            Some(b'*') => {
                todo.push((pi + 1, state));
                for c in any(state) {
                    if let Some(next) = step(state, c) {
                        todo.push((pi, next));
                    }
                }
            }
            Some(b'?') => {
                for c in any(state) {
                    if let Some(next) = step(state, c) {
                        todo.push((pi + 1, next));
                    }
                }
            }
            Some(&c) => {
                if let Some(next) = step(state, c) {
                    todo.push((pi + 1, next));
                }
            }
        }
    }
    false
}

/// The longest external name, in bytes.
pub const MAX_EXT_NAME: usize = 128;

/// The full name of an external event: `ext.` and one or more dotted
/// segments of lowercase letters, digits, `_` and `-` (`ext.button.pressed`),
/// at most [`MAX_EXT_NAME`] bytes. Cheap to clone.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ExtName(Arc<str>);

impl ExtName {
    /// Checks `name`.
    pub fn parse(name: &str) -> Result<Self, NameError> {
        let bad = |problem: String| NameError {
            name: name.to_string(),
            problem,
        };
        let Some(rest) = name.strip_prefix("ext.") else {
            return Err(bad("it does not start with 'ext.'".into()));
        };
        if name.len() > MAX_EXT_NAME {
            return Err(bad(format!(
                "it is {} bytes long; the limit is {MAX_EXT_NAME}",
                name.len()
            )));
        }
        for segment in rest.split('.') {
            if segment.is_empty() {
                return Err(bad(
                    "it has an empty segment (nothing after 'ext.', two dots in a row, or a dot at the end)".into(),
                ));
            }
            if let Some(c) = segment.chars().find(|c| !name_char(*c)) {
                return Err(bad(format!(
                    "'{}' is not allowed in a segment",
                    c.escape_default()
                )));
            }
        }
        Ok(Self(Arc::from(name)))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ExtName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An external name that is not one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "'{name}' is not a valid external topic: {problem}. External topics are 'ext.' and dotted segments of lowercase letters, digits, '_' and '-', at most {MAX_EXT_NAME} bytes, e.g. 'ext.button.pressed'"
)]
pub struct NameError {
    /// The name given.
    pub name: String,
    /// What is wrong with it.
    pub problem: String,
}

/// A pattern that matches no topic.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no topic matches '{pattern}'{}", hint(.closest))]
pub struct PatternError {
    /// The pattern.
    pub pattern: String,
    /// The closest topic names or families.
    pub closest: Vec<String>,
}

fn hint(closest: &[String]) -> String {
    if closest.is_empty() {
        "; topics look like system.mode.changed, music.playback.started, eyes.* or, for clients' own events, ext.* (see the README)"
            .into()
    } else {
        format!(
            "; did you mean {}?",
            closest
                .iter()
                .map(|c| format!("'{c}'"))
                .collect::<Vec<_>>()
                .join(" or ")
        )
    }
}

fn closest(pattern: &str) -> Vec<String> {
    let plain = pattern.trim_end_matches(['*', '.']);
    let segments = plain.split('.').count();
    // Compare with each topic cut to as many dot-segments as were typed:
    // `sytem` against `system`, `system.mod` against `system.mode`.
    let mut scored: Vec<(usize, &'static str)> = Topic::ALL
        .iter()
        .map(|t| {
            let name = t.as_str();
            let candidate: Vec<&str> = name.split('.').take(segments).collect();
            (
                strsim::damerau_levenshtein(plain, &candidate.join(".")),
                name,
            )
        })
        .filter(|(d, _)| *d <= (plain.len() / 3).max(1))
        .collect();
    scored.sort();
    let best = scored.first().map(|(d, _)| *d);
    let mut names: Vec<String> = scored
        .into_iter()
        .take_while(|(d, _)| Some(*d) == best)
        .map(|(_, name)| {
            // Suggest the pattern for the family when the typo was in its prefix.
            if pattern.ends_with('*') {
                let family: Vec<&str> = name.split('.').take(segments).collect();
                format!("{}.*", family.join("."))
            } else {
                name.to_string()
            }
        })
        .collect();
    names.dedup();
    names.truncate(3);
    names
}

/// `*` matches any run of characters (dots included), `?` exactly one.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was, and what it has swallowed so far.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_shell_patterns_across_dots() {
        assert!(glob_match("music.*", "music.playback.started"));
        assert!(glob_match("*", "eyes.pattern.changed"));
        assert!(glob_match(
            "system.mode.*",
            "system.mode.transition.started"
        ));
        assert!(glob_match("*.started", "plan.started"));
        assert!(glob_match("plan.step.?????ed", "plan.step.started"));
        assert!(!glob_match("music.*", "musical.chairs"));
        assert!(!glob_match(
            "system.mode.changed",
            "system.mode.changed.twice"
        ));
        assert!(glob_match("a*b*c", "aXXbYYc") && !glob_match("a*b*c", "aXXbYY"));
    }

    #[test]
    fn topic_sets_compile_globs() {
        let set = TopicSet::parse(&["system.mode.*", "service.*"]).unwrap();
        assert!(set.contains(Topic::ModeChanged));
        assert!(set.contains(Topic::ModeTransitionFailed));
        assert!(set.contains(Topic::ServiceStatusChanged));
        assert!(!set.contains(Topic::SystemStarted));
        assert_eq!(TopicSet::parse::<&str>(&[]).unwrap(), TopicSet::all());
        assert_eq!(set.topics().count(), 5);
    }

    #[test]
    fn a_pattern_matching_nothing_names_the_closest_topics() {
        let err = TopicSet::parse(&["muisc.*"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no topic matches 'muisc.*'; did you mean 'music.*'?"
        );
        let err = TopicSet::parse(&["system.mode.chnged"]).unwrap_err();
        assert!(err.to_string().contains("'system.mode.changed'"), "{err}");
        let err = TopicSet::parse(&["sytem.*"]).unwrap_err();
        assert!(
            err.to_string().ends_with("did you mean 'system.*'?"),
            "{err}"
        );
        let err = TopicSet::parse(&["zzz"]).unwrap_err();
        assert!(err.to_string().contains("topics look like"), "{err}");
    }

    #[test]
    fn ext_globs_select_external_events_by_their_full_name() {
        let buttons = TopicSelector::parse(&["ext.button.*"]).unwrap();
        assert!(buttons.matches(Topic::External, "ext.button.pressed"));
        assert!(!buttons.matches(Topic::External, "ext.sensor.door"));
        assert!(!buttons.matches(Topic::ModeChanged, "system.mode.changed"));
        assert_eq!(buttons.set(), TopicSet::from(Topic::External));

        // Globs that can match both kinds select both, each by its own test.
        let started = TopicSelector::parse(&["*.started"]).unwrap();
        assert!(started.matches(Topic::PlanStarted, "plan.started"));
        assert!(started.matches(Topic::External, "ext.show.started"));
        assert!(!started.matches(Topic::External, "ext.show.stopped"));

        for every in [&["*"][..], &["ext.*"], &[]] {
            let all = TopicSelector::parse(every).unwrap();
            assert!(
                all.matches(Topic::External, "ext.anything.at_all"),
                "{every:?}"
            );
        }
        // A declared topic (or set) as a selector takes every external name.
        let external = TopicSelector::from(Topic::External);
        assert!(external.matches(Topic::External, "ext.x"));
        // Globs that cannot match an external name select no external event.
        let music = TopicSelector::parse(&["music.*"]).unwrap();
        assert!(!music.matches(Topic::External, "ext.music.x"));
    }

    #[test]
    fn a_glob_is_accepted_when_it_can_match_some_external_name() {
        for ok in [
            "ext.*",
            "ext.button.pressed",
            "e*",
            "*.pressed",
            "ext.?",
            "ext.a-b_c.9",
        ] {
            assert!(TopicSelector::parse(&[ok]).is_ok(), "{ok}");
        }
        for bad in [
            "ext",
            "ext.",
            "ext..x",
            "ext.Button",
            "ext.a b",
            "external.*",
        ] {
            assert!(TopicSelector::parse(&[bad]).is_err(), "{bad}");
        }
        let err = TopicSelector::parse(&["ex.*"]).unwrap_err();
        assert!(err.to_string().ends_with("did you mean 'ext.*'?"), "{err}");
    }

    #[test]
    fn external_names_are_checked_with_the_reason() {
        assert_eq!(
            ExtName::parse("ext.button.pressed").unwrap().as_str(),
            "ext.button.pressed"
        );
        assert!(ExtName::parse("ext.a-1.b_2").is_ok());
        let problem = |name: &str| ExtName::parse(name).unwrap_err().problem;
        assert!(problem("button.pressed").contains("does not start with 'ext.'"));
        assert!(problem("ext.").contains("empty segment"));
        assert!(problem("ext.a..b").contains("empty segment"));
        assert!(problem("ext.a.").contains("empty segment"));
        assert_eq!(problem("ext.Button"), "'B' is not allowed in a segment");
        assert_eq!(problem("ext.a b"), "' ' is not allowed in a segment");
        assert!(problem(&format!("ext.{}", "a".repeat(MAX_EXT_NAME))).contains("the limit is 128"));
        assert!(ExtName::parse(&format!("ext.{}", "a".repeat(MAX_EXT_NAME - 4))).is_ok());
        let err = ExtName::parse("ext.").unwrap_err().to_string();
        assert!(err.contains("e.g. 'ext.button.pressed'"), "{err}");
    }

    #[test]
    fn names_are_unique_and_dotted() {
        let mut names: Vec<_> = Topic::ALL.iter().map(|t| t.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Topic::ALL.len());
        assert!(
            names
                .iter()
                .all(|n| n.contains('.') && *n == n.to_lowercase())
        );
    }
}
