//! A plan's timeline worked out without running it (`ValidatePlan`'s dry
//! run): each step's start and length where they are known before the show
//! (delays, `at` offsets, steps that return at once), and the earliest it
//! can start where they are not (speech, events, commands).

use std::time::Duration;

use super::{
    model::{Action, Anchor, Join, Plan, Step},
    timeline::StepPath,
};

/// One step of the dry run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// Where it is.
    pub path: StepPath,
    /// Its id.
    pub id: String,
    /// Its type (`delay`, `speak` …).
    pub kind: &'static str,
    /// When it starts, from the plan's start, if that is known.
    pub start: Option<Duration>,
    /// The earliest it can start.
    pub earliest: Duration,
    /// How long it lasts, if that is known.
    pub duration: Option<Duration>,
    /// Its start counts from the track the plan plays (known only then).
    pub on_track: bool,
}

/// A step's JSON path in the plan document:
/// `steps[2].parallelSteps.steps[0]`.
pub fn json_path(path: &[usize]) -> String {
    path.iter()
        .enumerate()
        .map(|(depth, i)| {
            if depth == 0 {
                format!("steps[{i}]")
            } else {
                format!(".parallelSteps.steps[{i}]")
            }
        })
        .collect()
}

/// The first loop of `plan`, step by step, nested steps after their group.
pub fn resolve(plan: &Plan) -> Vec<Resolved> {
    let mut out = Vec::new();
    let mut at = Some(Duration::ZERO);
    let mut floor = Duration::ZERO;
    for (i, step) in plan.steps.iter().enumerate() {
        let (end, earliest_end) = walk(step, vec![i], at, floor, &mut out);
        at = end;
        floor = earliest_end;
    }
    out
}

/// Adds `step` (and its children) starting after `prev` (known) or no
/// earlier than `floor`; returns its end, known or earliest.
fn walk(
    step: &Step,
    path: StepPath,
    prev: Option<Duration>,
    floor: Duration,
    out: &mut Vec<Resolved>,
) -> (Option<Duration>, Duration) {
    let (start, earliest, on_track) = match step.at {
        None => (prev, floor, false),
        Some(at) => match at.anchor {
            Anchor::Plan => (prev.map(|p| p.max(at.offset)), floor.max(at.offset), false),
            Anchor::Track => (None, floor, true),
        },
    };
    let index = out.len();
    out.push(Resolved {
        path: path.clone(),
        id: step.id.clone(),
        kind: step.action.kind(),
        start,
        earliest,
        duration: None,
        on_track,
    });
    let duration = match &step.action {
        Action::Delay { duration } | Action::Move { duration, .. } => Some(*duration),
        // These return once what they ask for has begun.
        Action::EyePattern { .. }
        | Action::MusicDuck { .. }
        | Action::MusicUnduck { .. }
        | Action::PlayMusic { .. }
        | Action::StopMusic
        | Action::PlaySound { .. }
        | Action::MusicCrossfade { .. } => Some(Duration::ZERO),
        Action::Speak { .. }
        | Action::PlayCachedSpeech { .. }
        | Action::WaitForEvent { .. }
        | Action::Command { .. } => None,
        Action::Parallel { steps, join } => {
            let mut ends = Vec::new();
            for (i, child) in steps.iter().enumerate() {
                let mut p = path.clone();
                p.push(i);
                let (end, _) = walk(child, p, start, earliest, out);
                ends.push(end);
            }
            let known: Option<Vec<Duration>> = ends.into_iter().collect();
            match (known, start, join) {
                (Some(ends), Some(s), Join::All) => ends.iter().max().map(|e| *e - s),
                (Some(ends), Some(s), Join::Any) => ends.iter().min().map(|e| *e - s),
                _ => None,
            }
        }
    };
    out[index].duration = duration;
    let end = start.zip(duration).map(|(s, d)| s + d);
    (end, earliest + duration.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::plans::decode::{Limits, decode};

    fn s(n: f64) -> Option<Duration> {
        Some(Duration::from_secs_f64(n))
    }

    #[test]
    fn known_times_are_given_and_unknown_ones_only_their_earliest() {
        let plan = decode(
            &json!({"steps": [
                {"id": "wait", "delay": {"duration": "1s"}},
                {"id": "eyes", "eyePattern": {"pattern": "happy"}},
                {"id": "group", "parallelSteps": {"steps": [
                    {"id": "a", "delay": {"duration": "2s"}},
                    {"id": "b", "delay": {"duration": "0.5s"}}
                ]}},
                {"id": "talk", "speak": {"text": "hello"}},
                {"id": "cue", "at": "10s", "command": {"line": "status"}},
                {"id": "flash", "at": "1s", "atFrom": "AT_FROM_TRACK", "eyePattern": {"pattern": "sad"}}
            ]}),
            &Limits::default(),
        )
        .unwrap();
        let r = resolve(&plan);
        let row = |id: &str| r.iter().find(|x| x.id == id).unwrap().clone();
        assert_eq!((row("wait").start, row("wait").duration), (s(0.0), s(1.0)));
        assert_eq!((row("eyes").start, row("eyes").duration), (s(1.0), s(0.0)));
        assert_eq!(
            (row("group").start, row("group").duration),
            (s(1.0), s(2.0))
        );
        assert_eq!(row("b").path, vec![2, 1]);
        assert_eq!((row("b").start, row("b").duration), (s(1.0), s(0.5)));
        assert_eq!((row("talk").start, row("talk").duration), (s(3.0), None));
        // After speech of unknown length: no earlier than 10 s, exactly when unknown.
        assert_eq!(
            (row("cue").start, row("cue").earliest),
            (None, Duration::from_secs(10))
        );
        assert!(row("flash").on_track && row("flash").start.is_none());
        assert_eq!(r.len(), 8);
    }
}
