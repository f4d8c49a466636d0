//! Why a command failed, and the exit code each reason gives.
//!
//! Scripts tell failures apart by exit code, so the mapping lives in one place:
//!
//! | code | meaning |
//! | ---- | ------- |
//! | 0    | success |
//! | 1    | any other failure; a plan that failed (`plan run`), a plan file that is not valid (`plan validate`) |
//! | 2    | usage error: bad arguments (INVALID_ARGUMENT, NOT_FOUND), a bad `--server`, `--token`, `--token-file` or `--tls-ca`, as clap |
//! | 3    | a plan cancelled or skipped (`plan run`; `plan start` when skipped) |
//! | 69   | the server cannot be reached, TLS failed (certificate refused) or the connection broke, or a subsystem is UNAVAILABLE (sysexits `EX_UNAVAILABLE`) |
//! | 77   | UNAUTHENTICATED or PERMISSION_DENIED (sysexits `EX_NOPERM`) |
//! | 130  | interrupted by Ctrl-C: while the shell waits for the server, or `events` stopped (quietly: that is how it usually ends) |
//!
//! `cantina events` exits 0 when the server ends the stream itself (it is
//! shutting down), and 69 when the connection breaks. `cantina logs` exits 0
//! once the backlog is printed; with `-f` it outlives a broken connection or a
//! server restart by reconnecting (see [`Failure::is_transient`]), and only
//! Ctrl-C (130) or a refusal ends it. `cantina plan run` exits by how its
//! plan ended ([`plan_exit_code`]), and 69 when the server ends the stream
//! before the plan did.

use std::{error::Error as _, fmt, process::ExitCode};

use cantina::{client::ConnectError, v1::PlanStatus};
use tonic::{Code, Status};

/// Exit code of usage errors, the same as clap's.
const USAGE: u8 = 2;
/// Exit code when the server or a subsystem is unavailable.
const UNAVAILABLE: u8 = 69;
/// Exit code when the server refuses our credentials.
const NO_PERMISSION: u8 = 77;
/// Exit code after Ctrl-C, as a shell reports SIGINT.
const INTERRUPTED: u8 = 130;
/// Exit code of a plan that did not run to its end: cancelled or skipped.
const NOT_COMPLETED: u8 = 3;

/// The exit code for a plan that is where `status` says: 0 completed (or
/// under way: running, paused, pending), 1 failed (or a status this build
/// does not know), 3 cancelled or skipped.
pub fn plan_exit_code(status: PlanStatus) -> ExitCode {
    ExitCode::from(match status {
        PlanStatus::Completed | PlanStatus::Running | PlanStatus::Paused | PlanStatus::Pending => 0,
        PlanStatus::Failed | PlanStatus::Unspecified => 1,
        PlanStatus::Cancelled | PlanStatus::Skipped => NOT_COMPLETED,
    })
}

/// A command that did not succeed.
#[derive(Debug)]
pub enum Failure {
    /// No connection could be made.
    Connect(ConnectError),
    /// The server answered with an error status.
    Server(Status),
    /// The connection broke after it was made (the server stopped, say).
    Disconnected {
        /// The server's address, which tonic's message leaves out.
        address: String,
        /// The transport failure, as tonic reports it.
        status: Status,
    },
    /// The user pressed Ctrl-C before the server answered.
    Interrupted,
}

impl Failure {
    /// The process exit code for this failure.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.code())
    }

    fn code(&self) -> u8 {
        match self {
            Failure::Connect(
                ConnectError::BadAddress(_)
                | ConnectError::BadToken
                | ConnectError::BadTokenFile(_)
                | ConnectError::BadCa(_),
            ) => USAGE,
            Failure::Connect(ConnectError::Unreachable { .. } | ConnectError::Tls { .. }) => {
                UNAVAILABLE
            }
            Failure::Server(status) => match status.code() {
                Code::InvalidArgument | Code::NotFound => USAGE,
                Code::Unauthenticated | Code::PermissionDenied => NO_PERMISSION,
                Code::Unavailable => UNAVAILABLE,
                _ => 1,
            },
            Failure::Disconnected { .. } => UNAVAILABLE,
            Failure::Interrupted => INTERRUPTED,
        }
    }

    /// What to do about it, when the message alone may not say.
    pub fn hint(&self) -> Option<&'static str> {
        (self.code() == NO_PERMISSION)
            .then_some("pass --token or --token-file, or set CANTINA_TOKEN or CANTINA_TOKEN_FILE")
    }

    /// Whether trying again later may well work: the connection broke, nothing
    /// answers yet, or the server says it is UNAVAILABLE (starting or
    /// stopping). Refusals (bad arguments, credentials) are not, since the
    /// same request would be refused again.
    pub fn is_transient(&self) -> bool {
        match self {
            Failure::Connect(ConnectError::Unreachable { .. }) | Failure::Disconnected { .. } => {
                true
            }
            Failure::Server(status) => status.code() == Code::Unavailable,
            Failure::Connect(_) | Failure::Interrupted => false,
        }
    }

    /// Whether the shell is pointless after this failure at start-up: nothing
    /// answers, or every command would be refused.
    pub fn is_fatal_at_start(&self) -> bool {
        match self {
            Failure::Connect(_) | Failure::Disconnected { .. } => true,
            Failure::Server(status) => matches!(
                status.code(),
                Code::Unavailable | Code::Unauthenticated | Code::PermissionDenied
            ),
            Failure::Interrupted => false,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Connect(e) => write!(f, "{e}"),
            // The server's message is written for people (usage, suggestions),
            // so it is shown as is; the code only stands in when it is empty.
            Failure::Server(status) if status.message().is_empty() => {
                write!(f, "{}", status.code().description())
            }
            Failure::Server(status) => f.write_str(status.message()),
            Failure::Disconnected { address, status } => {
                write!(
                    f,
                    "lost the connection to the Cantina server at {address}: {}",
                    status.message()
                )?;
                // tonic's message is generic ("tcp connect error"); the root
                // cause says what happened ("Connection refused").
                let mut cause = status.source();
                while let Some(next) = cause.and_then(|e| e.source()) {
                    cause = Some(next);
                }
                if let Some(cause) = cause.map(|e| e.to_string())
                    && !status.message().contains(&cause)
                {
                    write!(f, " ({cause})")?;
                }
                f.write_str(". Is it still running?")?;
                // TLS: a TLS server drops a plaintext client at once, or
                // answers with bytes that are no HTTP/2 (INTERNAL).
                let dropped = status.code() == Code::Internal
                    || cause
                        .and_then(|e| e.downcast_ref::<std::io::Error>())
                        .is_some_and(|e| {
                            matches!(
                                e.kind(),
                                std::io::ErrorKind::BrokenPipe
                                    | std::io::ErrorKind::ConnectionReset
                                    | std::io::ErrorKind::UnexpectedEof
                            )
                        });
                if dropped && address.starts_with("http://") {
                    f.write_str(
                        " If it serves TLS, use --server https://HOST:PORT (and --tls-ca FILE)",
                    )?;
                }
                Ok(())
            }
            Failure::Interrupted => {
                f.write_str("interrupted; the droid may still carry the command out")
            }
        }
    }
}

impl From<ConnectError> for Failure {
    fn from(e: ConnectError) -> Self {
        Failure::Connect(e)
    }
}

impl From<Status> for Failure {
    fn from(status: Status) -> Self {
        Failure::Server(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_map_to_exit_codes() {
        let code = |c: Code| Failure::Server(Status::new(c, "x")).code();
        assert_eq!(code(Code::InvalidArgument), 2);
        assert_eq!(code(Code::NotFound), 2);
        assert_eq!(code(Code::Unauthenticated), 77);
        assert_eq!(code(Code::PermissionDenied), 77);
        assert_eq!(code(Code::Unavailable), 69);
        assert_eq!(code(Code::FailedPrecondition), 1);
        assert_eq!(code(Code::Internal), 1);
        assert_eq!(Failure::Connect(ConnectError::BadToken).code(), 2);
    }

    #[test]
    fn plans_exit_by_how_they_ended() {
        assert_eq!(plan_exit_code(PlanStatus::Completed), ExitCode::SUCCESS);
        assert_eq!(plan_exit_code(PlanStatus::Running), ExitCode::SUCCESS);
        assert_eq!(plan_exit_code(PlanStatus::Failed), ExitCode::from(1));
        assert_eq!(plan_exit_code(PlanStatus::Cancelled), ExitCode::from(3));
        assert_eq!(plan_exit_code(PlanStatus::Skipped), ExitCode::from(3));
    }

    #[test]
    fn the_message_is_the_servers_and_auth_failures_get_a_hint() {
        let usage = Failure::Server(Status::invalid_argument(
            "unknown command 'engag'\nusage: engage\ndid you mean 'engage'?",
        ));
        assert_eq!(
            usage.to_string(),
            "unknown command 'engag'\nusage: engage\ndid you mean 'engage'?"
        );
        assert_eq!(usage.hint(), None);
        assert!(!usage.is_fatal_at_start());

        let auth = Failure::Server(Status::unauthenticated(""));
        assert_eq!(
            auth.hint(),
            Some("pass --token or --token-file, or set CANTINA_TOKEN or CANTINA_TOKEN_FILE")
        );
        assert!(!auth.to_string().is_empty());
        assert!(auth.is_fatal_at_start());

        assert!(!Failure::Server(Status::unimplemented("no")).is_fatal_at_start());
    }

    #[test]
    fn only_lost_connections_and_unavailable_are_worth_retrying() {
        assert!(Failure::Server(Status::unavailable("starting")).is_transient());
        assert!(
            Failure::Disconnected {
                address: "http://127.0.0.1:1".into(),
                status: Status::internal("h2 error"),
            }
            .is_transient()
        );
        for code in [
            Code::InvalidArgument,
            Code::Unauthenticated,
            Code::PermissionDenied,
            Code::Unimplemented,
            Code::Internal,
        ] {
            assert!(
                !Failure::Server(Status::new(code, "x")).is_transient(),
                "{code:?}"
            );
        }
        assert!(!Failure::Connect(ConnectError::BadToken).is_transient());
        assert!(!Failure::Interrupted.is_transient());
    }
}
