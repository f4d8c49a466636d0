//! A plan as the timeline engine sees it: validated, every default filled
//! in, ids assigned. Made from a plan document by `decode.rs`.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::{bus::TopicSelector, eyes::Pattern, servos::Easing};

/// Where a plan runs; higher layers pre-empt lower ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Layer {
    /// Background behaviour; paused by foreground plans, resumed after.
    Ambient,
    /// Shows and responses (the default).
    Foreground,
    /// Urgent: cancels every lower layer.
    Override,
}

/// How often a plan's steps run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Repeat {
    /// Once (the default).
    Once,
    /// This many times in all.
    Times(u32),
    /// Until cancelled.
    Forever,
}

/// What a step's `at` counts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Anchor {
    /// The plan's start (of the current loop).
    Plan,
    /// The first sample of the music track the plan started last.
    Track,
}

/// When a step starts, on the audio's sample clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct At {
    /// How long after the anchor.
    pub offset: Duration,
    /// What it counts from.
    pub anchor: Anchor,
}

/// A plan, ready to run.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Its id, if the document gave one (the server assigns one otherwise).
    pub id: Option<String>,
    /// For people.
    pub name: String,
    /// Its layer.
    pub layer: Layer,
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// How often the steps run.
    pub repeat: Repeat,
}

/// One step.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// Unique in the plan (given, or `step-N`).
    pub id: String,
    /// Anchored on the audio clock; `None`: after the step before.
    pub at: Option<At>,
    /// A failure of this step does not fail the plan.
    pub continue_on_error: bool,
    /// What it does.
    pub action: Action,
}

/// How a group of parallel steps ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Join {
    /// When all have ended (the default).
    All,
    /// When the first has ended; the others are cancelled.
    Any,
}

/// What a `wait_for_event` step does when its timeout passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnTimeout {
    /// The step fails (the default).
    Fail,
    /// The plan goes on.
    Continue,
}

/// What a step does.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Say a line; ends when the speech ends.
    Speak {
        /// The text.
        text: String,
        /// The music's level under it (the speech's default if `None`).
        duck_level: Option<f32>,
        /// The duck's fade (the speech's default if `None`).
        duck_fade: Option<Duration>,
    },
    /// Play a clip from the speech cache.
    PlayCachedSpeech {
        /// Its key.
        key: String,
        /// What it says, for logs and events.
        text: String,
    },
    /// Crossfade into a track.
    MusicCrossfade {
        /// Its number, title or a query.
        track: String,
        /// The fade (the audio's default if `None`).
        seconds: Option<f64>,
    },
    /// Lower the music.
    MusicDuck {
        /// 0.0–1.0.
        level: f32,
        /// The fade.
        fade: Duration,
    },
    /// Bring the music back.
    MusicUnduck {
        /// The fade.
        fade: Duration,
    },
    /// Steps at once.
    Parallel {
        /// The steps.
        steps: Vec<Step>,
        /// When the group ends.
        join: Join,
    },
    /// Start a track.
    PlayMusic {
        /// Its number, title or a query.
        query: String,
    },
    /// Stop the music.
    StopMusic,
    /// A sound effect on the effects bus.
    PlaySound {
        /// A path, or a file in the data folder's `sounds` or the library.
        file: String,
    },
    /// Show a pattern on the eyes.
    EyePattern {
        /// The pattern.
        pattern: Pattern,
        /// And a brightness, if given.
        brightness: Option<f64>,
    },
    /// Wait.
    Delay {
        /// How long.
        duration: Duration,
    },
    /// Wait for an event on the bus.
    WaitForEvent {
        /// The glob as written.
        topic: String,
        /// It compiled.
        selector: TopicSelector,
        /// Payload fields that must hold these values.
        matches: Map<String, Value>,
        /// How long at most; `None`: forever.
        timeout: Option<Duration>,
        /// What the timeout does.
        on_timeout: OnTimeout,
    },
    /// Move a servo.
    Move {
        /// The servo.
        target: String,
        /// 0.0–1.0 of its range.
        position: f64,
        /// How long the move takes.
        duration: Duration,
        /// Its curve.
        easing: Easing,
    },
    /// A console line, as `Dispatch` runs it.
    Command {
        /// The line.
        line: String,
    },
}

impl Action {
    /// The step type's name in plan documents (`musicDuck` …).
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Speak { .. } => "speak",
            Action::PlayCachedSpeech { .. } => "playCachedSpeech",
            Action::MusicCrossfade { .. } => "musicCrossfade",
            Action::MusicDuck { .. } => "musicDuck",
            Action::MusicUnduck { .. } => "musicUnduck",
            Action::Parallel { .. } => "parallelSteps",
            Action::PlayMusic { .. } | Action::StopMusic => "playMusic",
            Action::PlaySound { .. } => "playSound",
            Action::EyePattern { .. } => "eyePattern",
            Action::Delay { .. } => "delay",
            Action::WaitForEvent { .. } => "waitForEvent",
            Action::Move { .. } => "move",
            Action::Command { .. } => "command",
        }
    }
}

impl Plan {
    /// Every step, nested ones included, depth first.
    pub fn all_steps(&self) -> Vec<&Step> {
        self.steps_with_paths()
            .into_iter()
            .map(|(_, step)| step)
            .collect()
    }

    /// Every step with where it is (indices down through `parallelSteps`),
    /// nested ones included, depth first.
    pub fn steps_with_paths(&self) -> Vec<(Vec<usize>, &Step)> {
        fn walk<'a>(steps: &'a [Step], at: &[usize], out: &mut Vec<(Vec<usize>, &'a Step)>) {
            for (i, step) in steps.iter().enumerate() {
                let mut path = at.to_vec();
                path.push(i);
                out.push((path.clone(), step));
                if let Action::Parallel { steps, .. } = &step.action {
                    walk(steps, &path, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.steps, &[], &mut out);
        out
    }
}
