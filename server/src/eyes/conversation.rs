//! The eyes follow the conversation in INTERACTIVE mode, as the original
//! droid's did: `voice.listening.started` shows `listening`,
//! `voice.thinking.started` shows `thinking`, the matching `.stopped` goes
//! back to the mode's resting pattern, and `voice.sentiment` shows happy,
//! sad, angry or surprised for [`SENTIMENT_HOLD`], then what was shown
//! before. Outside INTERACTIVE (and during `eye test`) these events change
//! nothing.
//!
//! [`Conversation`] decides, as plain data in and out; [`follow`] is the
//! thin shell: a bus subscription, a timer, and the eyes' handle.
//!
//! Others change the eyes too (commands, the mode, the speech showing
//! `speaking` while it plays and restoring what was there before), so every
//! decision looks at what the eyes show *now*, and undoes only what it did
//! itself: a `.stopped` acts only while its own pattern shows, and a
//! sentiment's end restores only while the sentiment still shows.

use std::sync::Arc;
use std::time::Duration;

use tokio::{sync::watch, task::JoinHandle, time::Instant};
use tracing::{debug, warn};

use super::{Eyes, Pattern, pattern_for};
use crate::{
    bus::{Bus, Event, Item, Topic, TopicSet, client::Sentiment, with_correlation},
    modes::Mode,
};

/// How long a sentiment shows.
pub const SENTIMENT_HOLD: Duration = Duration::from_secs(2);

/// The topics the eyes follow: the conversation, and the end of speech (a
/// sentiment shown over `speaking` must not bring `speaking` back after it).
const TOPICS: [Topic; 6] = [
    Topic::VoiceListeningStarted,
    Topic::VoiceListeningStopped,
    Topic::VoiceThinkingStarted,
    Topic::VoiceThinkingStopped,
    Topic::VoiceSentiment,
    Topic::SpeechEnded,
];

/// What happened in the conversation, as far as the eyes care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cue {
    /// Something began that has a pattern: show it.
    Started(Pattern),
    /// What `pattern` stood for ended.
    Stopped(Pattern),
    /// A mood: show it for a while.
    Sentiment(Sentiment),
    /// The sentiment shown under this token has shown long enough.
    SentimentOver(u64),
}

impl Cue {
    /// The cue an event gives, if any.
    pub fn of_event(event: &Event) -> Option<Cue> {
        Some(match event.topic {
            Topic::VoiceListeningStarted => Cue::Started(Pattern::Listening),
            Topic::VoiceListeningStopped => Cue::Stopped(Pattern::Listening),
            Topic::VoiceThinkingStarted => Cue::Started(Pattern::Thinking),
            Topic::VoiceThinkingStopped => Cue::Stopped(Pattern::Thinking),
            Topic::SpeechEnded => Cue::Stopped(Pattern::Speaking),
            Topic::VoiceSentiment => Cue::Sentiment(Sentiment::of_payload(&event.payload)?),
            _ => return None,
        })
    }
}

/// The pattern a sentiment shows.
pub fn pattern_of(sentiment: Sentiment) -> Pattern {
    match sentiment {
        Sentiment::Happy => Pattern::Happy,
        Sentiment::Sad => Pattern::Sad,
        Sentiment::Angry => Pattern::Angry,
        Sentiment::Surprised => Pattern::Surprised,
    }
}

/// What the eyes are doing when a cue comes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    /// The droid's mode.
    pub mode: Mode,
    /// The pattern the eyes show.
    pub shown: Pattern,
    /// Whether `eye test` is running.
    pub testing: bool,
}

/// What to do with the eyes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Leave them as they are.
    Nothing,
    /// Show a pattern.
    Show(Pattern),
    /// Show a sentiment's pattern, and after [`SENTIMENT_HOLD`] give the cue
    /// [`Cue::SentimentOver`] with `token`.
    ShowFor {
        /// The pattern.
        pattern: Pattern,
        /// Names this showing.
        token: u64,
    },
}

/// A sentiment on show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Held {
    pattern: Pattern,
    token: u64,
    /// What to show when it is over.
    restore: Pattern,
}

/// The decisions: what each cue does to the eyes.
#[derive(Debug, Default)]
pub struct Conversation {
    sentiment: Option<Held>,
    next_token: u64,
}

impl Conversation {
    /// What `cue` does, given what the eyes are doing `now`.
    pub fn decide(&mut self, cue: Cue, now: Now) -> Action {
        if now.mode != Mode::Interactive || now.testing {
            // Whatever was held is not ours to restore any more.
            self.sentiment = None;
            return Action::Nothing;
        }
        let rest = pattern_for(now.mode);
        match cue {
            Cue::Started(pattern) => {
                self.sentiment = None;
                if now.shown == pattern {
                    Action::Nothing
                } else {
                    Action::Show(pattern)
                }
            }
            Cue::Stopped(pattern) => {
                // A sentiment shown meanwhile must not bring back what ended.
                if let Some(held) = &mut self.sentiment
                    && held.restore == pattern
                {
                    held.restore = rest;
                }
                // `speaking` is the speech's to restore.
                if now.shown == pattern && pattern != Pattern::Speaking {
                    Action::Show(rest)
                } else {
                    Action::Nothing
                }
            }
            Cue::Sentiment(sentiment) => {
                let pattern = pattern_of(sentiment);
                // A sentiment over another restores what was before both.
                let restore = match self.sentiment {
                    Some(held) if now.shown == held.pattern => held.restore,
                    _ => now.shown,
                };
                self.next_token += 1;
                let token = self.next_token;
                self.sentiment = Some(Held {
                    pattern,
                    token,
                    restore,
                });
                Action::ShowFor { pattern, token }
            }
            Cue::SentimentOver(token) => match self.sentiment {
                Some(held) if held.token == token => {
                    self.sentiment = None;
                    // Changed meanwhile by someone else: theirs now.
                    if now.shown == held.pattern && held.restore != held.pattern {
                        Action::Show(held.restore)
                    } else {
                        Action::Nothing
                    }
                }
                // A sentiment replaced by a newer one, or dropped.
                _ => Action::Nothing,
            },
        }
    }
}

/// Makes `eyes` follow the conversation on `bus` while the droid is in
/// INTERACTIVE mode. Subscribes at once (no event published after this call
/// is missed); the task ends when the bus closes.
pub fn follow(bus: &Bus, mode: watch::Receiver<Mode>, eyes: Eyes) -> JoinHandle<()> {
    let mut events = bus
        .subscribe(TOPICS.into_iter().collect::<TopicSet>())
        .name("eyes: conversation")
        .stream();
    tokio::spawn(async move {
        let mut conversation = Conversation::default();
        // The sentiment showing: when it is over, its token, its correlation.
        let mut timer: Option<(Instant, u64, Arc<str>)> = None;
        loop {
            let deadline = timer.as_ref().map_or_else(Instant::now, |t| t.0);
            let (cue, correlation) = tokio::select! {
                item = events.next() => match item {
                    None => return,
                    Some(Item::Missed(_)) => continue,
                    Some(Item::Event(event)) => match Cue::of_event(&event) {
                        Some(cue) => (cue, Arc::from(event.correlation_id.to_string())),
                        None => continue,
                    },
                },
                () = tokio::time::sleep_until(deadline), if timer.is_some() => {
                    let (_, token, correlation) = timer.take().expect("armed");
                    (Cue::SentimentOver(token), correlation)
                }
            };
            let state = eyes.state();
            let now = Now {
                mode: *mode.borrow(),
                shown: state.pattern,
                testing: state.testing,
            };
            let action = conversation.decide(cue, now);
            debug!(?cue, ?now, ?action, "the eyes follow the conversation");
            let pattern = match action {
                Action::Nothing => continue,
                Action::Show(pattern) | Action::ShowFor { pattern, .. } => pattern,
            };
            let shown = with_correlation(correlation.to_string(), eyes.set_pattern(pattern)).await;
            match (shown, action) {
                (Err(e), _) => {
                    warn!(?cue, %pattern, error = %e, "the eyes could not follow the conversation")
                }
                // Held from when it shows.
                (Ok(()), Action::ShowFor { token, .. }) => {
                    timer = Some((Instant::now() + SENTIMENT_HOLD, token, correlation));
                }
                (Ok(()), _) => {}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERACTIVE: Mode = Mode::Interactive;

    fn now(mode: Mode, shown: Pattern) -> Now {
        Now {
            mode,
            shown,
            testing: false,
        }
    }

    /// Plays cues against eyes that show whatever was decided (or what
    /// `meanwhile` puts there), returning each action.
    fn play(mode: Mode, start: Pattern, script: &[Step]) -> Vec<Action> {
        let mut conversation = Conversation::default();
        let mut shown = start;
        script
            .iter()
            .map(|step| match *step {
                Step::Meanwhile(pattern) => {
                    shown = pattern;
                    Action::Nothing
                }
                Step::Cue(cue) => {
                    let action = conversation.decide(cue, now(mode, shown));
                    if let Action::Show(p) | Action::ShowFor { pattern: p, .. } = action {
                        shown = p;
                    }
                    action
                }
            })
            .collect()
    }

    #[derive(Clone, Copy)]
    enum Step {
        Cue(Cue),
        /// Someone else changed the eyes.
        Meanwhile(Pattern),
    }
    use Step::{Cue as C, Meanwhile};

    #[test]
    fn listening_and_thinking_show_and_their_stops_rest() {
        let actions = play(
            INTERACTIVE,
            Pattern::Engaged,
            &[
                C(Cue::Started(Pattern::Listening)),
                C(Cue::Stopped(Pattern::Listening)),
                C(Cue::Started(Pattern::Thinking)),
                C(Cue::Stopped(Pattern::Thinking)),
            ],
        );
        assert_eq!(
            actions,
            [
                Action::Show(Pattern::Listening),
                Action::Show(Pattern::Engaged),
                Action::Show(Pattern::Thinking),
                Action::Show(Pattern::Engaged),
            ]
        );
    }

    #[test]
    fn a_stop_undoes_only_its_own_start() {
        let actions = play(
            INTERACTIVE,
            Pattern::Engaged,
            &[
                C(Cue::Started(Pattern::Listening)),
                C(Cue::Started(Pattern::Thinking)),
                // Listening ends after thinking began: thinking stays.
                C(Cue::Stopped(Pattern::Listening)),
                // The speech shows speaking; thinking's end leaves it alone.
                Meanwhile(Pattern::Speaking),
                C(Cue::Stopped(Pattern::Thinking)),
                // And speech ending is the speech's to restore.
                C(Cue::Stopped(Pattern::Speaking)),
            ],
        );
        assert_eq!(
            actions,
            [
                Action::Show(Pattern::Listening),
                Action::Show(Pattern::Thinking),
                Action::Nothing,
                Action::Nothing,
                Action::Nothing,
                Action::Nothing,
            ]
        );
    }

    #[test]
    fn a_sentiment_shows_then_restores_what_was_before() {
        let actions = play(
            INTERACTIVE,
            Pattern::Thinking,
            &[
                C(Cue::Sentiment(Sentiment::Surprised)),
                C(Cue::SentimentOver(1)),
            ],
        );
        assert_eq!(
            actions,
            [
                Action::ShowFor {
                    pattern: Pattern::Surprised,
                    token: 1
                },
                Action::Show(Pattern::Thinking),
            ]
        );
    }

    #[test]
    fn a_sentiment_whose_eyes_changed_meanwhile_leaves_them_alone() {
        let actions = play(
            INTERACTIVE,
            Pattern::Engaged,
            &[
                C(Cue::Sentiment(Sentiment::Happy)),
                // The speech began: speaking shows.
                Meanwhile(Pattern::Speaking),
                C(Cue::SentimentOver(1)),
            ],
        );
        assert_eq!(actions[2], Action::Nothing);
        // A conversation cue replaces the sentiment too.
        let actions = play(
            INTERACTIVE,
            Pattern::Engaged,
            &[
                C(Cue::Sentiment(Sentiment::Sad)),
                C(Cue::Started(Pattern::Listening)),
                C(Cue::SentimentOver(1)),
            ],
        );
        assert_eq!(
            actions[1..],
            [Action::Show(Pattern::Listening), Action::Nothing]
        );
    }

    #[test]
    fn a_sentiment_over_another_restores_what_was_before_both() {
        let actions = play(
            INTERACTIVE,
            Pattern::Engaged,
            &[
                C(Cue::Sentiment(Sentiment::Happy)),
                C(Cue::Sentiment(Sentiment::Angry)),
                // The first one's time is up: replaced, so nothing.
                C(Cue::SentimentOver(1)),
                C(Cue::SentimentOver(2)),
            ],
        );
        assert_eq!(
            actions[2..],
            [Action::Nothing, Action::Show(Pattern::Engaged)]
        );
    }

    #[test]
    fn what_ended_under_a_sentiment_is_not_brought_back() {
        for (under, stop) in [
            (Pattern::Listening, Pattern::Listening),
            (Pattern::Speaking, Pattern::Speaking),
        ] {
            let actions = play(
                INTERACTIVE,
                under,
                &[
                    C(Cue::Sentiment(Sentiment::Happy)),
                    C(Cue::Stopped(stop)),
                    C(Cue::SentimentOver(1)),
                ],
            );
            assert_eq!(
                actions[1..],
                [Action::Nothing, Action::Show(Pattern::Engaged)],
                "{under}"
            );
        }
    }

    #[test]
    fn outside_interactive_mode_nothing_changes() {
        for mode in [Mode::Idle, Mode::Ambient, Mode::Startup] {
            let actions = play(
                mode,
                pattern_for(mode),
                &[
                    C(Cue::Started(Pattern::Listening)),
                    C(Cue::Sentiment(Sentiment::Sad)),
                    C(Cue::SentimentOver(1)),
                    C(Cue::Stopped(Pattern::Listening)),
                ],
            );
            assert!(actions.iter().all(|a| *a == Action::Nothing), "{mode}");
        }
    }

    #[test]
    fn leaving_interactive_mode_drops_a_held_sentiment() {
        let mut conversation = Conversation::default();
        let shown = conversation.decide(
            Cue::Sentiment(Sentiment::Happy),
            now(INTERACTIVE, Pattern::Engaged),
        );
        assert!(matches!(shown, Action::ShowFor { .. }));
        // Its time runs out in AMBIENT (whose pattern is happy too): nothing.
        let over = conversation.decide(Cue::SentimentOver(1), now(Mode::Ambient, Pattern::Happy));
        assert_eq!(over, Action::Nothing);
        // And back in INTERACTIVE, the old token is gone.
        let late = conversation.decide(Cue::SentimentOver(1), now(INTERACTIVE, Pattern::Happy));
        assert_eq!(late, Action::Nothing);
    }

    #[test]
    fn an_eye_test_is_not_interrupted() {
        let mut conversation = Conversation::default();
        let testing = Now {
            testing: true,
            ..now(INTERACTIVE, Pattern::Sad)
        };
        assert_eq!(
            conversation.decide(Cue::Started(Pattern::Listening), testing),
            Action::Nothing
        );
    }

    #[test]
    fn events_give_cues() {
        use crate::bus::{Draft, ExtName};
        let bus = Bus::default();
        let cue = |draft: Draft| {
            bus.publish(draft);
            Cue::of_event(&bus.history(None::<Topic>, 1)[0])
        };
        let sentiment = |s| {
            Draft::new(
                Topic::VoiceSentiment,
                "t",
                serde_json::json!({ "sentiment": s }),
            )
        };
        assert_eq!(
            cue(sentiment("angry")),
            Some(Cue::Sentiment(Sentiment::Angry))
        );
        assert_eq!(cue(sentiment("bored")), None);
        assert_eq!(
            cue(Draft::new(Topic::VoiceThinkingStopped, "t", ())),
            Some(Cue::Stopped(Pattern::Thinking))
        );
        assert_eq!(
            cue(Draft::new(Topic::SpeechEnded, "t", ())),
            Some(Cue::Stopped(Pattern::Speaking))
        );
        let ext = ExtName::parse("ext.voice.listening.started").unwrap();
        assert_eq!(cue(Draft::external(ext, "t", ())), None);
    }
}
