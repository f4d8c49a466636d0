//! Plans as text: one line per plan event (`plan run`, `plan watch`), the
//! table of plans (`plan list`, `status`), the plans of the server's folder,
//! a validation's problems in compiler style (`FILE:LINE: path: message`)
//! and a valid plan's resolved timeline.
//!
//! The event line is `HH:MM:SS.mmm  id  name  step  kind  STATUS  message`,
//! with `+0.4ms late` on a step's start (how long after its due time it
//! started) and `loop N` in the later loops of a repeating plan. Columns
//! widen as longer values arrive, since a live stream cannot know its widest
//! line ahead; a value the plan does not have is `-`. A message of several
//! lines (a failed command's usage) is joined into one with `; `, here and in
//! the tables, so that one event stays one line.

use std::time::SystemTime;

use anstyle::{AnsiColor, Style};
use cantina::v1::{
    Layer, PlanEvent, PlanEventKind, PlanProblem, PlanStatus, PlanSummary, ResolvedStep, SavedPlan,
    ValidatePlanResponse,
};

use crate::{
    colour::{self, Colours},
    status::{enum_name, or_none},
    table::{self, Cell},
    time,
};

/// The longest kind, `step-finished`: the kind column is this wide from
/// the first line on.
const KIND_WIDTH: usize = 13;

/// Renders plan events as text lines, remembering the column widths seen so
/// far.
#[derive(Debug)]
pub struct PlanLines {
    /// Whether to colour the status, the kind and the time.
    colours: Colours,
    /// Whether lines start with the event's time.
    timestamps: bool,
    /// The widest id, name, step and kind so far.
    widths: [usize; 4],
}

impl PlanLines {
    /// A renderer with no lines behind it yet.
    pub fn new(colours: Colours, timestamps: bool) -> Self {
        Self {
            colours,
            timestamps,
            widths: [0, 0, 0, KIND_WIDTH],
        }
    }

    /// The line for `event`, without a newline.
    pub fn line(&mut self, event: &PlanEvent) -> String {
        let mut line = String::new();
        if self.timestamps {
            let clock = event
                .timestamp
                .as_ref()
                .and_then(time::clock)
                .unwrap_or_else(|| time::clock_of(SystemTime::now()));
            line.push_str(&self.colours.paint(colour::DIM, &clock));
            line.push_str("  ");
        }
        let kind = kind_name(event.kind);
        let columns = [
            or_none(&event.plan_id),
            or_none(&event.plan_name),
            or_none(&event.step_id),
            kind.as_str(),
        ];
        let kind_style = match PlanEventKind::try_from(event.kind) {
            Ok(PlanEventKind::StepFailed) => colour::fg(AnsiColor::Red),
            Ok(PlanEventKind::Started | PlanEventKind::Ended) => Style::new().bold(),
            _ => Style::new(),
        };
        for (column, text) in columns.iter().enumerate() {
            self.widths[column] = self.widths[column].max(text.chars().count());
            let style = if column == 3 {
                kind_style
            } else {
                Style::new()
            };
            line.push_str(&self.colours.paint(style, text));
            let padding = self.widths[column].saturating_sub(text.chars().count());
            line.extend(std::iter::repeat_n(' ', padding));
            line.push_str("  ");
        }
        let status = status_name(event.status);
        line.push_str(&self.colours.paint(status_style(event.status), &status));
        if !event.message.is_empty() {
            line.push_str("  ");
            line.push_str(&one_line(&event.message));
        }
        if event.kind == PlanEventKind::StepStarted as i32
            && let Some(lateness) = &event.lateness
        {
            line.push_str("  ");
            line.push_str(&format!("+{} late", time::millis(lateness)));
        }
        if event.r#loop > 1 {
            line.push_str(&format!("  loop {}", event.r#loop));
        }
        line
    }
}

/// `text` on one line: its lines, trimmed, joined with `; `.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// The event as one line of proto3 JSON (JSON Lines).
pub fn json_line(event: &PlanEvent) -> String {
    cantina::json::to_json(event).to_string()
}

/// `step-started`: a kind as the event lines write it.
fn kind_name(kind: i32) -> String {
    enum_name(
        PlanEventKind::try_from(kind),
        kind,
        |k| k.as_str_name(),
        "PLAN_EVENT_KIND_",
    )
    .to_lowercase()
    .replace('_', "-")
}

/// `RUNNING`: a plan status without its prefix.
pub fn status_name(status: i32) -> String {
    enum_name(
        PlanStatus::try_from(status),
        status,
        |s| s.as_str_name(),
        "PLAN_STATUS_",
    )
}

/// `FOREGROUND`: a layer without its prefix; `-` when unset.
fn layer_name(layer: i32) -> String {
    if layer == Layer::Unspecified as i32 {
        return "-".into();
    }
    enum_name(Layer::try_from(layer), layer, |l| l.as_str_name(), "LAYER_")
}

/// Green when completed, red when failed, yellow when held or stopped short.
fn status_style(status: i32) -> Style {
    match PlanStatus::try_from(status) {
        Ok(PlanStatus::Completed) => colour::fg(AnsiColor::Green),
        Ok(PlanStatus::Failed) => colour::fg(AnsiColor::Red),
        Ok(PlanStatus::Cancelled | PlanStatus::Skipped | PlanStatus::Paused) => {
            colour::fg(AnsiColor::Yellow)
        }
        Ok(PlanStatus::Pending) => colour::DIM,
        _ => Style::new(),
    }
}

/// The plans, one row each: where each stands, the step it is on, how far
/// along, and why it ended or waits.
pub fn plans_table(plans: &[PlanSummary], indent: &str, colours: Colours) -> String {
    let header = [
        "ID", "NAME", "LAYER", "STATUS", "STEP", "ELAPSED", "MESSAGE",
    ];
    let mut rows = vec![header.map(Cell::from).to_vec()];
    for plan in plans {
        let mut step = or_none(&plan.current_step_id).to_string();
        if plan.steps_total > 0 {
            step.push_str(&format!(" ({}/{}", plan.steps_done, plan.steps_total));
            if plan.r#loop > 1 {
                step.push_str(&format!(", loop {}", plan.r#loop));
            }
            step.push(')');
        }
        rows.push(vec![
            Cell::from(or_none(&plan.plan_id)),
            Cell::from(or_none(&plan.name)),
            Cell::from(layer_name(plan.layer)),
            Cell::styled(status_name(plan.status), status_style(plan.status)),
            Cell::from(step),
            Cell::from(plan.elapsed.as_ref().map_or("-".into(), time::seconds)),
            Cell::from(one_line(&plan.message)),
        ]);
    }
    table::render(&rows, indent, colours)
}

/// The plans of the server's folder, with the first problem of any that is
/// not valid.
pub fn saved_table(saved: &[SavedPlan], indent: &str, colours: Colours) -> String {
    let header = ["NAME", "LAYER", "STEPS", "PROBLEM"];
    let mut rows = vec![header.map(Cell::from).to_vec()];
    for plan in saved {
        rows.push(vec![
            Cell::from(or_none(&plan.name)),
            Cell::from(layer_name(plan.layer)),
            Cell::from(plan.steps.to_string()),
            Cell::styled(one_line(&plan.problem), colour::fg(AnsiColor::Red)),
        ]);
    }
    table::render(&rows, indent, colours)
}

/// `FILE:LINE: path: message`, as compilers write it, so that editors jump
/// to the line; the line and the path are left out when there is none.
pub fn problem_line(label: &str, problem: &PlanProblem) -> String {
    let mut line = label.to_string();
    if problem.line > 0 {
        line.push_str(&format!(":{}", problem.line));
    }
    line.push_str(": ");
    if !problem.path.is_empty() {
        line.push_str(&problem.path);
        line.push_str(": ");
    }
    line.push_str(&problem.message);
    line
}

/// A validation for people: every problem, or `valid: N steps` and, when
/// asked, the timeline. Ends in a newline.
pub fn validation(
    label: &str,
    verdict: &ValidatePlanResponse,
    timeline: bool,
    colours: Colours,
) -> String {
    if !verdict.valid {
        let mut text: String = verdict
            .problems
            .iter()
            .map(|p| problem_line(label, p) + "\n")
            .collect();
        if verdict.problems.is_empty() {
            text = format!("{label}: not valid\n");
        }
        return text;
    }
    let steps = verdict.timeline.len();
    let mut text = format!("valid: {steps} step{}", if steps == 1 { "" } else { "s" });
    if !verdict.name.is_empty() {
        text.push_str(&format!(" (plan '{}'", verdict.name));
        if verdict.layer != Layer::Unspecified as i32 {
            text.push_str(&format!(" on the {} layer", layer_name(verdict.layer)));
        }
        text.push(')');
    }
    text.push('\n');
    if timeline && !verdict.timeline.is_empty() {
        text.push('\n');
        text.push_str(&timeline_table(&verdict.timeline, colours));
    }
    text
}

/// The dry run, a row per step, nested steps indented under their group:
/// when each starts (`after 1.5s` when only its earliest start is known
/// before the show: after a speech, an event, a command) and how long it
/// lasts (`?` when unknown). `♪ on track` marks steps timed from the music
/// track the plan plays.
pub fn timeline_table(steps: &[ResolvedStep], colours: Colours) -> String {
    let header = ["STEP", "KIND", "START", "DURATION", ""];
    let mut rows = vec![header.map(Cell::from).to_vec()];
    for step in steps {
        let indent = "  ".repeat(step.depth as usize);
        let start = match (&step.start, &step.earliest) {
            (Some(start), _) => time::seconds(start),
            (None, Some(earliest)) => format!("after {}", time::seconds(earliest)),
            (None, None) => "?".into(),
        };
        rows.push(vec![
            Cell::from(format!("{indent}{}", or_none(&step.step_id))),
            Cell::from(step.kind.as_str()),
            Cell::from(start),
            Cell::from(step.duration.as_ref().map_or("?".into(), time::seconds)),
            Cell::styled(
                if step.on_track { "♪ on track" } else { "" },
                colour::fg(AnsiColor::Magenta),
            ),
        ]);
    }
    table::render(&rows, "", colours)
}

#[cfg(test)]
mod tests {
    use prost_types::{Duration, Timestamp};

    use super::*;

    fn millis(ms: i64) -> Option<Duration> {
        Some(Duration {
            seconds: ms / 1000,
            nanos: (ms % 1000) as i32 * 1_000_000,
        })
    }

    fn event(kind: PlanEventKind, step: &str, status: PlanStatus, message: &str) -> PlanEvent {
        PlanEvent {
            plan_id: "plan-3".into(),
            plan_name: "greeting".into(),
            kind: kind as i32,
            step_id: step.into(),
            status: status as i32,
            message: message.into(),
            timestamp: Some(Timestamp {
                seconds: 1_795_879_812,
                nanos: 345_000_000,
            }),
            ..PlanEvent::default()
        }
    }

    #[test]
    fn an_event_line_has_time_plan_step_kind_status_and_message() {
        let mut lines = PlanLines::new(Colours::OFF, true);
        assert_eq!(
            lines.line(&event(
                PlanEventKind::Started,
                "",
                PlanStatus::Running,
                "plan 'greeting' started on the foreground layer"
            )),
            "15:30:12.345  plan-3  greeting  -  started        RUNNING  plan 'greeting' started on the foreground layer"
        );
        let started = PlanEvent {
            lateness: Some(Duration {
                seconds: 0,
                nanos: 400_000,
            }),
            r#loop: 2,
            ..event(PlanEventKind::StepStarted, "smile", PlanStatus::Running, "")
        };
        assert_eq!(
            lines.line(&started),
            "15:30:12.345  plan-3  greeting  smile  step-started   RUNNING  +0.4ms late  loop 2"
        );
        // The columns widened: the next line keeps them.
        let mut lines = PlanLines::new(Colours::OFF, false);
        lines.line(&started);
        assert_eq!(
            lines.line(&event(
                PlanEventKind::Ended,
                "",
                PlanStatus::Failed,
                "step 'boom' failed: unknown command 'no'\nusage: <command>\n"
            )),
            "plan-3  greeting  -      ended          FAILED  step 'boom' failed: unknown command 'no'; usage: <command>"
        );
    }

    #[test]
    fn colour_marks_the_status_and_failed_steps() {
        let mut lines = PlanLines::new(Colours::ON, false);
        let line = lines.line(&event(
            PlanEventKind::StepFailed,
            "boom",
            PlanStatus::Running,
            "unknown command",
        ));
        assert!(line.contains("\u{1b}[31mstep-failed\u{1b}[0m"), "{line}");
        let line = lines.line(&event(PlanEventKind::Ended, "", PlanStatus::Completed, ""));
        assert!(line.contains("\u{1b}[32mCOMPLETED\u{1b}[0m"), "{line}");
    }

    #[test]
    fn json_lines_are_the_proto3_mapping() {
        let line = json_line(&event(PlanEventKind::Ended, "", PlanStatus::Cancelled, ""));
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["kind"], "PLAN_EVENT_KIND_ENDED");
        assert_eq!(value["status"], "PLAN_STATUS_CANCELLED");
        assert_eq!(value["planName"], "greeting");
    }

    #[test]
    fn the_plan_table_shows_progress_elapsed_and_why() {
        let plans = [
            PlanSummary {
                plan_id: "plan-1".into(),
                name: "ambient-idle".into(),
                layer: Layer::Ambient as i32,
                status: PlanStatus::Paused as i32,
                current_step_id: "rest".into(),
                steps_total: 6,
                steps_done: 1,
                r#loop: 2,
                elapsed: millis(31_500),
                message: "paused by plan 'greeting'".into(),
                ..PlanSummary::default()
            },
            PlanSummary {
                plan_id: "plan-2".into(),
                name: "greeting".into(),
                layer: Layer::Foreground as i32,
                status: PlanStatus::Completed as i32,
                steps_total: 4,
                steps_done: 4,
                elapsed: millis(1_750),
                ..PlanSummary::default()
            },
        ];
        let expected = "\
ID      NAME          LAYER       STATUS     STEP                ELAPSED  MESSAGE
plan-1  ambient-idle  AMBIENT     PAUSED     rest (1/6, loop 2)  31.5s    paused by plan 'greeting'
plan-2  greeting      FOREGROUND  COMPLETED  - (4/4)             1.75s
";
        assert_eq!(plans_table(&plans, "", Colours::OFF), expected);
    }

    #[test]
    fn the_saved_plans_show_their_problem() {
        let saved = [
            SavedPlan {
                name: "broken".into(),
                layer: Layer::Unspecified as i32,
                problem: "line 3: steps[0]: no action".into(),
                ..SavedPlan::default()
            },
            SavedPlan {
                name: "greeting".into(),
                layer: Layer::Foreground as i32,
                steps: 4,
                ..SavedPlan::default()
            },
        ];
        let expected = "  NAME      LAYER       STEPS  PROBLEM
  broken    -           0      line 3: steps[0]: no action
  greeting  FOREGROUND  4
";
        assert_eq!(saved_table(&saved, "  ", Colours::OFF), expected);
    }

    #[test]
    fn problems_read_as_compiler_messages() {
        let problem = |path: &str, line| PlanProblem {
            path: path.into(),
            message: "must not be negative".into(),
            line,
        };
        assert_eq!(
            problem_line("show.yaml", &problem("steps[0].delay.duration", 4)),
            "show.yaml:4: steps[0].delay.duration: must not be negative"
        );
        assert_eq!(
            problem_line("greeting", &problem("steps[0]", 0)),
            "greeting: steps[0]: must not be negative"
        );
        assert_eq!(
            problem_line("show.yaml", &problem("", 1)),
            "show.yaml:1: must not be negative"
        );
        let verdict = ValidatePlanResponse {
            valid: false,
            problems: vec![problem("a", 2), problem("b", 5)],
            ..ValidatePlanResponse::default()
        };
        assert_eq!(
            validation("x.yaml", &verdict, true, Colours::OFF),
            "x.yaml:2: a: must not be negative\nx.yaml:5: b: must not be negative\n"
        );
    }

    #[test]
    fn a_valid_plan_counts_its_steps_and_shows_its_timeline() {
        let step =
            |id: &str, kind: &str, start, earliest, duration, depth, on_track| ResolvedStep {
                step_id: String::from(id),
                kind: String::from(kind),
                start,
                earliest,
                duration,
                depth,
                on_track,
                ..ResolvedStep::default()
            };
        let verdict = ValidatePlanResponse {
            valid: true,
            name: "timed".into(),
            layer: Layer::Foreground as i32,
            timeline: vec![
                step("hello", "speak", millis(0), millis(0), None, 0, false),
                step("both", "parallelSteps", None, millis(0), None, 0, false),
                step("wait", "delay", None, millis(0), millis(1500), 1, false),
                step("flash", "eyePattern", None, millis(0), millis(0), 1, true),
            ],
            ..ValidatePlanResponse::default()
        };
        assert_eq!(
            validation("t.json", &verdict, false, Colours::OFF),
            "valid: 4 steps (plan 'timed' on the FOREGROUND layer)\n"
        );
        let expected = "\
valid: 4 steps (plan 'timed' on the FOREGROUND layer)

STEP     KIND           START     DURATION
hello    speak          0s        ?
both     parallelSteps  after 0s  ?
  wait   delay          after 0s  1.5s
  flash  eyePattern     after 0s  0s        ♪ on track
";
        assert_eq!(validation("t.json", &verdict, true, Colours::OFF), expected);
    }
}
