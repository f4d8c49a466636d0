//! `status`: the droid at a glance: version, session, mode, uptime, the
//! address it serves on and every subsystem.

use std::time::Duration;

use serde_json::json;

use super::{Category, Command, CommandError, CommandSpec, Context, Reply};

/// Declaration of `status`.
pub static SPEC: CommandSpec = CommandSpec {
    name: "status",
    aliases: &[],
    shortcuts: &["st"],
    usage: "status",
    description: "show the system status: mode, uptime and every subsystem",
    category: Category::System,
    min_args: 0,
    max_args: Some(0),
    parse,
};

/// `status` takes nothing.
#[derive(Debug)]
pub struct Status;

fn parse(_: &'static CommandSpec, _: Vec<String>) -> Result<Command, CommandError> {
    Ok(Command::Status(Status))
}

/// Whole seconds, as people read an uptime.
fn human(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

impl Status {
    pub(super) fn apply(self, ctx: &Context<'_>) -> Result<Reply, CommandError> {
        let droid = ctx.droid;
        let info = &droid.info;
        let mode = droid.modes.current();
        let subsystems = droid.supervisor.snapshot();
        let uptime = info.uptime();

        let mut text = format!(
            "Cantina {} · session {}\n{:<11} {}\n{:<11} {}\n{:<11} {} ({}{})\n",
            info.version,
            info.session_id,
            "mode",
            mode,
            "uptime",
            human(uptime),
            "listening",
            info.listen,
            if info.token_required {
                "token required"
            } else {
                "no token"
            },
            if info.tls { ", TLS" } else { "" },
        );
        if subsystems.is_empty() {
            text.push_str(&format!("{:<11} none", "subsystems"));
        } else {
            text.push_str("subsystems:");
            for record in &subsystems {
                let up = record
                    .running_since
                    .map(|t| human(t.elapsed()))
                    .unwrap_or_default();
                text.push_str(&format!(
                    "\n  {:<10} {:<9} {:<10} {}",
                    record.name,
                    record.status.as_str(),
                    up,
                    record.message
                ));
            }
        }

        let data = json!({
            "version": info.version,
            "session_id": info.session_id,
            "started_at": humantime::format_rfc3339_millis(info.started_at).to_string(),
            "uptime_seconds": uptime.as_secs_f64(),
            "mode": mode.as_str(),
            "listen": info.listen.to_string(),
            "token_required": info.token_required,
            "tls": info.tls,
            "subsystems": subsystems.iter().map(|r| json!({
                "name": r.name,
                "status": r.status.as_str(),
                "message": r.message,
                "critical": r.critical,
                "uptime_seconds": r.running_since.map(|t| t.elapsed().as_secs_f64()),
            })).collect::<Vec<_>>(),
        });
        Ok(Reply::with_data(text, data))
    }
}
