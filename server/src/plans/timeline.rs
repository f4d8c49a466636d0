//! The timeline core: a plan in, what to start and stop, and when, out. No
//! I/O and no clock of its own: the executor feeds it the plan's time (the
//! audio's sample clock since the plan started, paused time left out) with
//! every input, runs what it says, and wakes it at [`Timeline::next_wake`].
//!
//! Rules:
//! - The plan's steps run in order; a step with `at` waits until that offset
//!   from the loop's start (or from the start of the track the plan started
//!   last) and is handed out as soon as it is next, with the time it must
//!   start at, so sounds can be given to the mixer ahead with their frame.
//!   A step whose time has passed starts at once and reports its lateness.
//! - `delay` steps are timed here; every other step is the executor's to
//!   run, and it reports each one's end with [`Input::Done`].
//! - `parallelSteps` start together; `JOIN_ALL` ends with the last of them,
//!   `JOIN_ANY` with the first, the others aborted.
//! - A failed step fails its group and the plan (the others aborted) unless
//!   it says `continueOnError`.
//! - Loops restart the steps, with `at` counted from the loop's start.
//! - Cancelling: now (everything running aborted), after the current step,
//!   or after the current loop. Pausing holds everything not yet started;
//!   steps already running are the executor's to pause.

use std::time::Duration;

use super::model::{Action, Anchor, Join, Plan, Repeat, Step};

/// Where a step is: indices from the plan's steps down through
/// `parallelSteps` (`[4, 1]` is `steps[4].parallelSteps.steps[1]`).
pub type StepPath = Vec<usize>;

/// How a plan is stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopMode {
    /// At once: running steps are aborted.
    Now,
    /// When the step running at the top level ends.
    AfterStep,
    /// When the current loop ends.
    AfterLoop,
}

/// What the executor tells the timeline.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// A time has come (a wake asked for, or any moment).
    Tick,
    /// The step at this path ended.
    Done {
        /// The step.
        step: StepPath,
        /// `Err` says why it failed.
        result: Result<(), String>,
    },
    /// A track the plan started began playing at this plan time.
    TrackStarted {
        /// When its first sample played.
        at: Duration,
    },
    /// Hold: start nothing new.
    Pause,
    /// Carry on.
    Resume,
    /// Stop.
    Stop(StopMode),
}

/// How a plan ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every step ran.
    Completed,
    /// A step failed.
    Failed {
        /// Its id.
        step: String,
        /// Why.
        reason: String,
    },
    /// Stopped.
    Cancelled,
}

/// What the executor must do, and what happened (for events).
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// Run this step so that it starts at plan time `at` (now or later).
    Begin {
        /// The step.
        step: StepPath,
        /// Its id.
        id: String,
        /// When it must start.
        at: Duration,
        /// How late it is already (its `at` passed before it was reached).
        late: Duration,
    },
    /// Stop this running step at once.
    Abort {
        /// The step.
        step: StepPath,
    },
    /// A step ended well.
    Finished {
        /// Its id.
        id: String,
    },
    /// A step failed.
    Failed {
        /// Its id.
        id: String,
        /// Why.
        reason: String,
        /// Its `continueOnError` let the plan go on.
        continued: bool,
    },
    /// A new loop began (1-based).
    Loop {
        /// Which.
        number: u32,
    },
    /// The plan is over.
    Ended(Outcome),
}

/// A step on its way.
#[derive(Clone, Debug)]
enum Active {
    /// Waiting for its `at`, or handed out and running.
    Leaf {
        path: StepPath,
        /// A delay's end.
        ends: Option<Duration>,
    },
    /// Parallel steps; `None` for the ones that ended.
    Group {
        path: StepPath,
        join: Join,
        children: Vec<Option<Active>>,
        /// A child ended well (what ends a `JOIN_ANY` group).
        won: bool,
    },
}

/// One plan's timeline.
#[derive(Debug)]
pub struct Timeline {
    plan: Plan,
    /// The next top-level step to start.
    next: usize,
    /// The top-level step running.
    current: Option<Active>,
    /// The loop's start.
    loop_start: Duration,
    /// Loops begun.
    loops: u32,
    /// The last track's start.
    track: Option<Duration>,
    paused: bool,
    stop: Option<StopMode>,
    ended: bool,
    /// A loop that took no time waits until then before the next.
    hold_until: Option<Duration>,
}

/// The shortest a loop may take: a loop of instant steps runs at most this often.
const MIN_LOOP: Duration = Duration::from_millis(1);

impl Timeline {
    /// A timeline for `plan`; nothing runs until the first input.
    pub fn new(plan: Plan) -> Self {
        Self {
            plan,
            next: 0,
            current: None,
            loop_start: Duration::ZERO,
            loops: 0,
            track: None,
            paused: false,
            stop: None,
            ended: false,
            hold_until: None,
        }
    }

    /// The plan.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Whether the plan is over.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Whether it holds.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// The step at `path`.
    pub fn step(&self, path: &[usize]) -> Option<&Step> {
        let (first, rest) = path.split_first()?;
        let mut step = self.plan.steps.get(*first)?;
        for i in rest {
            let Action::Parallel { steps, .. } = &step.action else {
                return None;
            };
            step = steps.get(*i)?;
        }
        Some(step)
    }

    /// The earliest plan time at which a [`Input::Tick`] has work to do.
    pub fn next_wake(&self) -> Option<Duration> {
        fn wake(active: &Active) -> Option<Duration> {
            match active {
                Active::Leaf { ends, .. } => *ends,
                Active::Group { children, .. } => children.iter().flatten().filter_map(wake).min(),
            }
        }
        if self.ended || self.paused {
            return None;
        }
        self.current.as_ref().and_then(wake).or(self.hold_until)
    }

    /// Takes an input at plan time `now`; returns what to do.
    pub fn input(&mut self, now: Duration, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        if self.ended {
            return out;
        }
        match input {
            Input::Tick => {}
            Input::TrackStarted { at } => self.track = Some(at),
            Input::Pause => self.paused = true,
            Input::Resume => self.paused = false,
            Input::Stop(StopMode::Now) => {
                if let Some(active) = self.current.take() {
                    abort(&active, &mut out);
                }
                self.end(Outcome::Cancelled, &mut out);
                return out;
            }
            Input::Stop(mode) => self.stop = Some(mode),
            Input::Done { step, result } => self.done(&step, result, &mut out),
        }
        self.advance(now, &mut out);
        out
    }

    fn end(&mut self, outcome: Outcome, out: &mut Vec<Output>) {
        self.ended = true;
        self.current = None;
        out.push(Output::Ended(outcome));
    }

    /// Delays that are due end; the next steps start.
    fn advance(&mut self, now: Duration, out: &mut Vec<Output>) {
        loop {
            if self.ended {
                return;
            }
            // Delays due.
            if let Some(active) = self.current.take() {
                match self.expire(active, now, out) {
                    Ok(still) => self.current = still,
                    Err((id, reason)) => {
                        self.end(Outcome::Failed { step: id, reason }, out);
                        return;
                    }
                }
            }
            if self.current.is_some() {
                return;
            }
            // Every step of the last round ran: a graceful stop asked
            // meanwhile changes nothing, the plan completed.
            let last_round = match self.plan.repeat {
                Repeat::Once => true,
                Repeat::Times(n) => self.loops >= n,
                Repeat::Forever => false,
            };
            if self.stop.is_some()
                && self.loops > 0
                && self.next >= self.plan.steps.len()
                && last_round
            {
                self.end(Outcome::Completed, out);
                return;
            }
            // The top-level step ended, or none ran yet: a stop after the
            // step (or the loop, between loops) ends the plan now, paused or not.
            if self.stop == Some(StopMode::AfterStep)
                || (self.stop == Some(StopMode::AfterLoop) && self.next >= self.plan.steps.len())
            {
                self.end(Outcome::Cancelled, out);
                return;
            }
            if self.paused || self.hold_until.is_some_and(|t| now < t) {
                return;
            }
            if self.next >= self.plan.steps.len() || self.loops == 0 {
                let more = match self.plan.repeat {
                    _ if self.loops == 0 => true,
                    Repeat::Once => false,
                    Repeat::Times(n) => self.loops < n,
                    Repeat::Forever => true,
                };
                if !more || (self.loops > 0 && self.stop == Some(StopMode::AfterLoop)) {
                    let outcome = if self.stop.is_some() {
                        Outcome::Cancelled
                    } else {
                        Outcome::Completed
                    };
                    self.end(outcome, out);
                    return;
                }
                // A loop that took no time would spin: the next waits a moment.
                if self.loops > 0 && now <= self.loop_start {
                    self.hold_until = Some(self.loop_start + MIN_LOOP);
                    return;
                }
                self.hold_until = None;
                self.loops += 1;
                self.next = 0;
                self.loop_start = now;
                // Each loop anchors to the track it starts itself.
                self.track = None;
                if self.loops > 1 {
                    out.push(Output::Loop { number: self.loops });
                }
            }
            let index = self.next;
            self.next += 1;
            match self.begin(vec![index], now, out) {
                Ok(active) => self.current = active,
                Err((id, reason)) => {
                    self.end(Outcome::Failed { step: id, reason }, out);
                    return;
                }
            }
        }
    }

    /// Hands out the step at `path` (and, for a group, its children).
    /// `Ok(None)`: it ended already (a failed step that continues).
    fn begin(
        &mut self,
        path: StepPath,
        now: Duration,
        out: &mut Vec<Output>,
    ) -> Result<Option<Active>, (String, String)> {
        let step = self.step(&path).expect("a step of the plan").clone();
        let due = match step.at {
            None => now,
            Some(at) => match at.anchor {
                Anchor::Plan => self.loop_start + at.offset,
                Anchor::Track => match self.track {
                    Some(track) => track + at.offset,
                    None => {
                        return self.fail_now(
                            &step,
                            "it is anchored to the music track, but this plan has started no track yet (start one with playMusic or musicCrossfade before it)",
                            out,
                        );
                    }
                },
            },
        };
        let start = due.max(now);
        match &step.action {
            Action::Parallel { steps, join } => {
                let mut children = Vec::with_capacity(steps.len());
                for i in 0..steps.len() {
                    let mut child = path.clone();
                    child.push(i);
                    match self.begin(child, start, out) {
                        Ok(active) => children.push(active),
                        Err(e) => {
                            for c in children.iter().flatten() {
                                abort(c, out);
                            }
                            return Err(e);
                        }
                    }
                }
                let group = Active::Group {
                    path,
                    join: *join,
                    children,
                    won: false,
                };
                Ok(settle(group, &step, out))
            }
            action => {
                out.push(Output::Begin {
                    step: path.clone(),
                    id: step.id.clone(),
                    at: start,
                    late: now.saturating_sub(due),
                });
                let ends = match action {
                    Action::Delay { duration } => Some(start + *duration),
                    _ => None,
                };
                Ok(Some(Active::Leaf { path, ends }))
            }
        }
    }

    fn fail_now(
        &self,
        step: &Step,
        reason: &str,
        out: &mut Vec<Output>,
    ) -> Result<Option<Active>, (String, String)> {
        out.push(Output::Failed {
            id: step.id.clone(),
            reason: reason.to_string(),
            continued: step.continue_on_error,
        });
        if step.continue_on_error {
            Ok(None)
        } else {
            Err((step.id.clone(), reason.to_string()))
        }
    }

    /// Ends the delays of `active` that are due at `now`.
    fn expire(
        &self,
        active: Active,
        now: Duration,
        out: &mut Vec<Output>,
    ) -> Result<Option<Active>, (String, String)> {
        match active {
            Active::Leaf {
                ends: Some(end),
                ref path,
                ..
            } if end <= now => {
                let id = self.step(path).expect("a step").id.clone();
                out.push(Output::Finished { id });
                Ok(None)
            }
            leaf @ Active::Leaf { .. } => Ok(Some(leaf)),
            Active::Group {
                path,
                join,
                children,
                mut won,
            } => {
                let mut kept = Vec::with_capacity(children.len());
                for child in children {
                    kept.push(match child {
                        Some(c) => {
                            let still = self.expire(c, now, out)?;
                            // A delay or a group that ended here ended well.
                            won |= still.is_none();
                            still
                        }
                        None => None,
                    });
                }
                let step = self.step(&path).expect("a step").clone();
                Ok(settle(
                    Active::Group {
                        path,
                        join,
                        children: kept,
                        won,
                    },
                    &step,
                    out,
                ))
            }
        }
    }

    /// A step the executor ran has ended.
    fn done(&mut self, path: &[usize], result: Result<(), String>, out: &mut Vec<Output>) {
        // The end of a step that is not running (aborted, or a group's race
        // already decided) changes nothing.
        if !self.current.as_ref().is_some_and(|a| runs(a, path)) {
            return;
        }
        let Some(step) = self.step(path).cloned() else {
            return;
        };
        let Some(current) = self.current.take() else {
            return;
        };
        let result_ok = result.is_ok();
        let failure = match result {
            Ok(()) => {
                out.push(Output::Finished {
                    id: step.id.clone(),
                });
                None
            }
            Err(reason) => {
                out.push(Output::Failed {
                    id: step.id.clone(),
                    reason: reason.clone(),
                    continued: step.continue_on_error,
                });
                (!step.continue_on_error).then_some((step.id.clone(), reason))
            }
        };
        // The nearest group around the step that may fail takes its failure.
        let catcher = failure.as_ref().and_then(|_| {
            (1..path.len())
                .rev()
                .map(|n| path[..n].to_vec())
                .find(|p| self.step(p).is_some_and(|s| s.continue_on_error))
        });
        if let (Some((id, reason)), Some(group)) = (&failure, catcher) {
            let mut rest = Some(current);
            remove(&mut rest, path, false);
            // The rest of the group stops; the plan goes on after it.
            if let Some(subtree) = rest.as_ref().and_then(|a| subtree(a, &group)) {
                abort(&subtree.clone(), out);
            }
            remove(&mut rest, &group, false);
            let group_id = self.step(&group).expect("a step").id.clone();
            out.push(Output::Failed {
                id: group_id,
                reason: format!("step '{id}' failed: {reason}"),
                continued: true,
            });
            self.current = rest.and_then(|a| self.resettle(a, out));
            return;
        }
        match failure {
            Some((id, reason)) => {
                // Everything else running stops; the plan fails.
                let mut rest = Some(current);
                remove(&mut rest, path, false);
                if let Some(rest) = rest {
                    abort(&rest, out);
                }
                self.end(Outcome::Failed { step: id, reason }, out);
            }
            None => {
                let mut rest = Some(current);
                remove(&mut rest, path, result_ok);
                self.current = rest.and_then(|a| self.resettle(a, out));
            }
        }
    }

    /// Re-checks the groups after a child ended.
    fn resettle(&self, active: Active, out: &mut Vec<Output>) -> Option<Active> {
        match active {
            leaf @ Active::Leaf { .. } => Some(leaf),
            Active::Group {
                path,
                join,
                children,
                mut won,
            } => {
                let children = children
                    .into_iter()
                    .map(|c| {
                        let was = c.is_some();
                        let still = c.and_then(|c| self.resettle(c, out));
                        // A nested group that ended here ended well.
                        won |= was && still.is_none();
                        still
                    })
                    .collect();
                let step = self.step(&path).expect("a step").clone();
                settle(
                    Active::Group {
                        path,
                        join,
                        children,
                        won,
                    },
                    &step,
                    out,
                )
            }
        }
    }
}

/// Whether the leaf at `path` runs under `active`.
fn runs(active: &Active, path: &[usize]) -> bool {
    match active {
        Active::Leaf { path: p, .. } => p == path,
        Active::Group { children, .. } => children.iter().flatten().any(|c| runs(c, path)),
    }
}

/// The node at `path` under `active`, if it is there.
fn subtree<'a>(active: &'a Active, path: &[usize]) -> Option<&'a Active> {
    match active {
        Active::Leaf { path: p, .. } => (p == path).then_some(active),
        Active::Group {
            path: p, children, ..
        } => {
            if p.as_slice() == path {
                return Some(active);
            }
            children.iter().flatten().find_map(|c| subtree(c, path))
        }
    }
}

/// Removes the running step at `path` from the tree.
/// `ok`: it ended well, which wins a `JOIN_ANY` group it was in.
fn remove(slot: &mut Option<Active>, path: &[usize], ok: bool) {
    let Some(active) = slot else { return };
    match active {
        Active::Leaf { path: p, .. } if p == path => *slot = None,
        Active::Leaf { .. } => {}
        Active::Group {
            children,
            path: p,
            won,
            ..
        } => {
            if p.as_slice() == path {
                *slot = None;
                return;
            }
            for child in children.iter_mut() {
                let was = child.is_some();
                remove(child, path, ok);
                if was && child.is_none() && ok {
                    *won = true;
                }
            }
        }
    }
}

/// A group whose children have all ended (`JOIN_ALL`), or one has ended
/// well (`JOIN_ANY`), is finished (the others aborted); else it goes on.
fn settle(group: Active, step: &Step, out: &mut Vec<Output>) -> Option<Active> {
    let Active::Group {
        join,
        ref children,
        won,
        ..
    } = group
    else {
        return Some(group);
    };
    let running = children.iter().flatten().count();
    // JOIN_ANY ends with the first to end well (a failure that continues
    // does not win the race), or when none is left.
    let over = match join {
        Join::All => running == 0,
        Join::Any => won || running == 0,
    };
    if !over {
        return Some(group);
    }
    for child in children.iter().flatten() {
        abort(child, out);
    }
    out.push(Output::Finished {
        id: step.id.clone(),
    });
    None
}

/// Aborts every running step under `active`.
fn abort(active: &Active, out: &mut Vec<Output>) {
    match active {
        Active::Leaf { path, .. } => out.push(Output::Abort { step: path.clone() }),
        Active::Group { children, .. } => {
            for child in children.iter().flatten() {
                abort(child, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::plans::decode::{Limits, decode};

    fn timeline(doc: serde_json::Value) -> Timeline {
        Timeline::new(decode(&doc, &Limits::default()).expect("a valid plan"))
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn begin(step: &[usize], id: &str, at: u64, late: u64) -> Output {
        Output::Begin {
            step: step.to_vec(),
            id: id.into(),
            at: ms(at),
            late: ms(late),
        }
    }

    fn finished(id: &str) -> Output {
        Output::Finished { id: id.into() }
    }

    fn done(step: &[usize]) -> Input {
        Input::Done {
            step: step.to_vec(),
            result: Ok(()),
        }
    }

    #[test]
    fn steps_run_in_order_and_delays_are_timed_here() {
        let mut t = timeline(json!({"steps": [
            {"id": "wait", "delay": {"duration": "1s"}},
            {"id": "hello", "command": {"line": "say hello"}},
            {"id": "pause", "delay": {"duration": "2s"}}
        ]}));
        assert_eq!(t.input(ms(0), Input::Tick), [begin(&[0], "wait", 0, 0)]);
        assert_eq!(t.next_wake(), Some(ms(1000)));
        assert_eq!(t.input(ms(500), Input::Tick), []);
        assert_eq!(
            t.input(ms(1000), Input::Tick),
            [finished("wait"), begin(&[1], "hello", 1000, 0)]
        );
        assert_eq!(t.next_wake(), None, "the executor runs the command");
        assert_eq!(
            t.input(ms(1500), done(&[1])),
            [finished("hello"), begin(&[2], "pause", 1500, 0)]
        );
        assert_eq!(t.next_wake(), Some(ms(3500)));
        assert_eq!(
            t.input(ms(3500), Input::Tick),
            [finished("pause"), Output::Ended(Outcome::Completed)]
        );
        assert!(t.is_ended());
    }

    #[test]
    fn a_step_with_at_is_handed_out_early_with_its_time_or_late_with_its_lateness() {
        let mut t = timeline(json!({"steps": [
            {"id": "music", "playMusic": {"query": "1"}},
            {"id": "flash", "at": "5s", "eyePattern": {"pattern": "happy"}},
            {"id": "bow", "at": "1s", "command": {"line": "eye pattern sad"}}
        ]}));
        t.input(ms(0), Input::Tick);
        // Reached at 1.2 s, it is handed out then, to start at 5 s exactly.
        assert_eq!(
            t.input(ms(1200), done(&[0])),
            [finished("music"), begin(&[1], "flash", 5000, 0)]
        );
        // Its 1 s had passed when reached at 5.1 s: at once, 4.1 s late.
        assert_eq!(
            t.input(ms(5100), done(&[1])),
            [finished("flash"), begin(&[2], "bow", 5100, 4100)]
        );
    }

    #[test]
    fn an_at_on_the_track_counts_from_the_tracks_first_sample() {
        let mut t = timeline(json!({"steps": [
            {"id": "music", "playMusic": {"query": "1"}},
            {"id": "flash", "at": "83.5s", "atFrom": "AT_FROM_TRACK", "eyePattern": {"pattern": "happy"}}
        ]}));
        t.input(ms(0), Input::Tick);
        t.input(ms(40), Input::TrackStarted { at: ms(37) });
        assert_eq!(
            t.input(ms(50), done(&[0])),
            [finished("music"), begin(&[1], "flash", 83_537, 0)]
        );
        let mut orphan = timeline(json!({"steps": [
            {"id": "flash", "at": "1s", "atFrom": "AT_FROM_TRACK", "eyePattern": {"pattern": "happy"}}
        ]}));
        let out = orphan.input(ms(0), Input::Tick);
        assert!(
            matches!(&out[..], [Output::Failed { id, continued: false, .. }, Output::Ended(Outcome::Failed { .. })] if id == "flash"),
            "{out:?}"
        );
    }

    #[test]
    fn parallel_steps_join_all_or_any() {
        let mut all = timeline(json!({"steps": [
            {"id": "group", "parallelSteps": {"steps": [
                {"id": "a", "delay": {"duration": "1s"}},
                {"id": "b", "command": {"line": "say hi"}}
            ]}},
            {"id": "after", "command": {"line": "status"}}
        ]}));
        assert_eq!(
            all.input(ms(0), Input::Tick),
            [begin(&[0, 0], "a", 0, 0), begin(&[0, 1], "b", 0, 0)]
        );
        assert_eq!(all.input(ms(1000), Input::Tick), [finished("a")]);
        assert_eq!(
            all.input(ms(3000), done(&[0, 1])),
            [
                finished("b"),
                finished("group"),
                begin(&[1], "after", 3000, 0)
            ]
        );

        let mut any = timeline(json!({"steps": [
            {"id": "race", "parallelSteps": {"join": "JOIN_ANY", "steps": [
                {"id": "timeout", "delay": {"duration": "10s"}},
                {"id": "button", "waitForEvent": {"topic": "ext.button.*"}}
            ]}}
        ]}));
        any.input(ms(0), Input::Tick);
        assert_eq!(
            any.input(ms(2000), done(&[0, 1])),
            [
                finished("button"),
                Output::Abort { step: vec![0, 0] },
                finished("race"),
                Output::Ended(Outcome::Completed)
            ]
        );
    }

    #[test]
    fn a_failure_fails_the_plan_with_the_step_unless_it_continues_on_error() {
        let mut t = timeline(json!({"steps": [
            {"id": "group", "parallelSteps": {"steps": [
                {"id": "slow", "delay": {"duration": "5s"}},
                {"id": "eyes", "eyePattern": {"pattern": "happy"}}
            ]}},
            {"id": "never", "command": {"line": "status"}}
        ]}));
        t.input(ms(0), Input::Tick);
        let out = t.input(
            ms(100),
            Input::Done {
                step: vec![0, 1],
                result: Err("the eyes' board is lost".into()),
            },
        );
        assert_eq!(
            out,
            [
                Output::Failed {
                    id: "eyes".into(),
                    reason: "the eyes' board is lost".into(),
                    continued: false
                },
                Output::Abort { step: vec![0, 0] },
                Output::Ended(Outcome::Failed {
                    step: "eyes".into(),
                    reason: "the eyes' board is lost".into()
                })
            ]
        );

        let mut lenient = timeline(json!({"steps": [
            {"id": "eyes", "continueOnError": true, "eyePattern": {"pattern": "happy"}},
            {"id": "next", "command": {"line": "status"}}
        ]}));
        lenient.input(ms(0), Input::Tick);
        let out = lenient.input(
            ms(10),
            Input::Done {
                step: vec![0],
                result: Err("lost".into()),
            },
        );
        assert_eq!(
            out,
            [
                Output::Failed {
                    id: "eyes".into(),
                    reason: "lost".into(),
                    continued: true
                },
                begin(&[1], "next", 10, 0)
            ]
        );
    }

    #[test]
    fn loops_restart_with_at_counted_from_the_loop_and_stop_after_the_loop_when_asked() {
        let mut t = timeline(json!({"loop": true, "steps": [
            {"id": "cue", "at": "1s", "command": {"line": "eye pattern happy"}},
            {"id": "rest", "delay": {"duration": "2s"}}
        ]}));
        assert_eq!(t.input(ms(0), Input::Tick), [begin(&[0], "cue", 1000, 0)]);
        t.input(ms(1000), done(&[0]));
        assert_eq!(
            t.input(ms(3000), Input::Tick),
            [
                finished("rest"),
                Output::Loop { number: 2 },
                begin(&[0], "cue", 4000, 0)
            ]
        );
        assert_eq!(t.input(ms(3500), Input::Stop(StopMode::AfterLoop)), []);
        t.input(ms(4000), done(&[0]));
        assert_eq!(
            t.input(ms(6000), Input::Tick),
            [finished("rest"), Output::Ended(Outcome::Cancelled)]
        );

        let mut twice =
            timeline(json!({"repeat": 2, "steps": [{"id": "d", "delay": {"duration": "1s"}}]}));
        twice.input(ms(0), Input::Tick);
        twice.input(ms(1000), Input::Tick);
        assert_eq!(
            twice.input(ms(2000), Input::Tick),
            [finished("d"), Output::Ended(Outcome::Completed)]
        );
    }

    #[test]
    fn stopping_now_aborts_what_runs_and_after_the_step_lets_it_finish() {
        let mut t = timeline(json!({"steps": [
            {"id": "talk", "speak": {"text": "hello"}},
            {"id": "more", "speak": {"text": "again"}}
        ]}));
        t.input(ms(0), Input::Tick);
        assert_eq!(t.input(ms(100), Input::Stop(StopMode::AfterStep)), []);
        assert_eq!(
            t.input(ms(900), done(&[0])),
            [finished("talk"), Output::Ended(Outcome::Cancelled)]
        );

        let mut now = timeline(json!({"steps": [{"id": "talk", "speak": {"text": "hello"}}]}));
        now.input(ms(0), Input::Tick);
        assert_eq!(
            now.input(ms(100), Input::Stop(StopMode::Now)),
            [
                Output::Abort { step: vec![0] },
                Output::Ended(Outcome::Cancelled)
            ]
        );
        assert_eq!(now.input(ms(200), done(&[0])), [], "nothing after the end");
    }

    #[test]
    fn a_paused_plan_starts_nothing_new_and_resumes_where_it_was() {
        let mut t = timeline(json!({"steps": [
            {"id": "talk", "speak": {"text": "hello"}},
            {"id": "wait", "delay": {"duration": "3s"}},
            {"id": "end", "command": {"line": "status"}}
        ]}));
        t.input(ms(0), Input::Tick);
        t.input(ms(100), Input::Pause);
        // The speech ends while paused: the next step waits for the resume.
        assert_eq!(t.input(ms(500), done(&[0])), [finished("talk")]);
        assert_eq!(t.next_wake(), None);
        assert_eq!(
            t.input(ms(500), Input::Resume),
            [begin(&[1], "wait", 500, 0)]
        );
        // Paused in the middle of the delay: the executor's plan clock stands
        // still while paused, so the delay keeps its remaining time.
        t.input(ms(1500), Input::Pause);
        assert_eq!(t.next_wake(), None);
        assert_eq!(t.input(ms(1500), Input::Resume), []);
        assert_eq!(t.next_wake(), Some(ms(3500)));
        assert_eq!(
            t.input(ms(3500), Input::Tick),
            [finished("wait"), begin(&[2], "end", 3500, 0)]
        );
    }

    #[test]
    fn the_end_of_a_step_that_no_longer_runs_changes_nothing() {
        let mut t = timeline(json!({"steps": [
            {"id": "race", "parallelSteps": {"join": "JOIN_ANY", "steps": [
                {"id": "talk", "speak": {"text": "hi"}},
                {"id": "wait", "waitForEvent": {"topic": "ext.*", "timeout": "5s"}}
            ]}},
            {"id": "next", "command": {"line": "status"}}
        ]}));
        t.input(ms(0), Input::Tick);
        t.input(
            ms(5000),
            Input::Done {
                step: vec![0, 0],
                result: Ok(()),
            },
        );
        // The wait's timeout, queued before its abort, arrives late.
        let late = t.input(
            ms(5001),
            Input::Done {
                step: vec![0, 1],
                result: Err("timeout".into()),
            },
        );
        assert_eq!(late, []);
        assert!(!t.is_ended());
    }

    #[test]
    fn a_failure_that_continues_does_not_win_a_join_any_race() {
        let mut t = timeline(json!({"steps": [
            {"id": "race", "parallelSteps": {"join": "JOIN_ANY", "steps": [
                {"id": "flaky", "continueOnError": true, "eyePattern": {"pattern": "happy"}},
                {"id": "wait", "delay": {"duration": "2s"}}
            ]}}
        ]}));
        t.input(ms(0), Input::Tick);
        let out = t.input(
            ms(10),
            Input::Done {
                step: vec![0, 0],
                result: Err("lost".into()),
            },
        );
        assert_eq!(
            out,
            [Output::Failed {
                id: "flaky".into(),
                reason: "lost".into(),
                continued: true
            }]
        );
        assert_eq!(
            t.input(ms(2000), Input::Tick),
            [
                Output::Finished { id: "wait".into() },
                Output::Finished { id: "race".into() },
                Output::Ended(Outcome::Completed)
            ]
        );
    }

    #[test]
    fn a_group_that_may_fail_takes_a_childs_failure_and_the_plan_goes_on() {
        let mut t = timeline(json!({"steps": [
            {"id": "both", "continueOnError": true, "parallelSteps": {"steps": [
                {"id": "talk", "speak": {"text": "hi"}},
                {"id": "cmd", "command": {"line": "status"}}
            ]}},
            {"id": "next", "command": {"line": "status"}}
        ]}));
        t.input(ms(0), Input::Tick);
        let out = t.input(
            ms(10),
            Input::Done {
                step: vec![0, 1],
                result: Err("boom".into()),
            },
        );
        assert_eq!(
            out,
            [
                Output::Failed {
                    id: "cmd".into(),
                    reason: "boom".into(),
                    continued: false
                },
                Output::Abort { step: vec![0, 0] },
                Output::Failed {
                    id: "both".into(),
                    reason: "step 'cmd' failed: boom".into(),
                    continued: true
                },
                begin(&[1], "next", 10, 0),
            ]
        );
    }

    #[test]
    fn a_stop_after_the_last_step_leaves_the_plan_completed() {
        let mut t = timeline(json!({"steps": [
            {"id": "one", "command": {"line": "status"}},
            {"id": "two", "command": {"line": "status"}}
        ]}));
        t.input(ms(0), Input::Tick);
        t.input(
            ms(5),
            Input::Done {
                step: vec![0],
                result: Ok(()),
            },
        );
        assert!(t.input(ms(6), Input::Stop(StopMode::AfterStep)).is_empty());
        assert_eq!(
            t.input(
                ms(10),
                Input::Done {
                    step: vec![1],
                    result: Ok(())
                }
            ),
            [finished("two"), Output::Ended(Outcome::Completed)]
        );
        // Stopped before its last step: cancelled.
        let mut t = timeline(json!({"steps": [
            {"id": "one", "command": {"line": "status"}},
            {"id": "two", "command": {"line": "status"}}
        ]}));
        t.input(ms(0), Input::Tick);
        t.input(ms(1), Input::Stop(StopMode::AfterStep));
        assert_eq!(
            t.input(
                ms(5),
                Input::Done {
                    step: vec![0],
                    result: Ok(())
                }
            ),
            [finished("one"), Output::Ended(Outcome::Cancelled)]
        );
    }

    #[test]
    fn a_loop_of_instant_steps_does_not_spin() {
        // The decoder refuses such a loop; the timeline holds anyway.
        let mut plan = decode(
            &json!({"steps": [{"id": "d", "delay": {"duration": "0s"}}]}),
            &Limits::default(),
        )
        .unwrap();
        plan.repeat = Repeat::Forever;
        let mut t = Timeline::new(plan);
        let out = t.input(ms(0), Input::Tick);
        assert!(out.len() < 10, "{out:?}");
        assert_eq!(t.next_wake(), Some(ms(1)));
        let out = t.input(ms(1), Input::Tick);
        assert!(out.contains(&Output::Loop { number: 2 }), "{out:?}");
    }

    #[test]
    fn a_stop_after_the_step_before_any_ran_or_while_paused_ends_at_once() {
        let mut t = timeline(json!({"steps": [{"id": "talk", "speak": {"text": "hi"}}]}));
        assert_eq!(
            t.input(ms(0), Input::Stop(StopMode::AfterStep)),
            [Output::Ended(Outcome::Cancelled)]
        );
        let mut p = timeline(json!({"steps": [
            {"id": "a", "speak": {"text": "hi"}},
            {"id": "b", "speak": {"text": "there"}}
        ]}));
        p.input(ms(0), Input::Tick);
        p.input(ms(10), Input::Pause);
        p.input(
            ms(20),
            Input::Done {
                step: vec![0],
                result: Ok(()),
            },
        );
        assert_eq!(
            p.input(ms(30), Input::Stop(StopMode::AfterStep)),
            [Output::Ended(Outcome::Cancelled)]
        );
    }
}
