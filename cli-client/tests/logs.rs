//! `cantina logs` and `cantina log-level` where no server is needed: their
//! help, and the arguments they refuse before connecting. (Streaming,
//! resuming and the server's answers are covered by the workspace's
//! end-to-end tests against the real server.)

mod common;

use common::{cantina, dead_address, text};

#[test]
fn logs_help_lists_the_flags_and_the_defaults() {
    let output = cantina(&["logs", "--help"]);
    assert!(output.status.success(), "{output:?}");
    let help = text(&output.stdout);
    for word in [
        "--follow",
        "-f",
        "--tail <N>",
        "--since <WHEN>",
        "--level <LEVEL>",
        "--service <NAME>",
        "--grep <REGEX>",
        "--contains <TEXT>",
        "--timestamps",
        "--no-color",
        "--output",
        "pretty",
        "raw",
        "json",
        "last 100",
        "Ctrl-C",
        "reconnects",
        "skipped",
    ] {
        assert!(help.contains(word), "{word} missing from:\n{help}");
    }
    for level in ["trace", "debug", "info", "warn", "error"] {
        assert!(help.contains(level), "{level} missing from:\n{help}");
    }
}

#[test]
fn the_main_help_lists_logs_and_log_level() {
    let output = cantina(&["--help"]);
    assert!(output.status.success(), "{output:?}");
    let help = text(&output.stdout);
    for word in ["logs", "log-level"] {
        assert!(help.contains(word), "{word} missing from:\n{help}");
    }
    let output = cantina(&["log-level", "--help"]);
    assert!(output.status.success(), "{output:?}");
    assert!(text(&output.stdout).contains("EnvFilter"), "{output:?}");
}

#[test]
fn a_bad_grep_regex_exits_2_without_connecting() {
    // Nothing listens there: a connection attempt would exit 69.
    let address = dead_address();
    let output = cantina(&["--server", &address, "logs", "--grep", "time(out"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = text(&output.stderr);
    assert!(stderr.contains("--grep"), "{stderr}");
    assert!(stderr.contains("unclosed group"), "{stderr}");
    assert!(!stderr.contains(&address), "{stderr}");
    assert!(output.stdout.is_empty(), "{output:?}");
}

#[test]
fn since_takes_durations_and_utc_times_and_refuses_the_rest() {
    let address = dead_address();
    // Good values get as far as connecting, which fails with 69.
    for since in ["5m", "1h30m", "2026-11-22T15:00:00Z", "2026-11-22 15:00:00"] {
        let output = cantina(&["--server", &address, "logs", "--since", since]);
        assert_eq!(output.status.code(), Some(69), "{since}: {output:?}");
    }
    for since in ["soon", "5 parsecs", "2026-13-40T00:00:00Z"] {
        let output = cantina(&["--server", &address, "logs", "--since", since]);
        assert_eq!(output.status.code(), Some(2), "{since}: {output:?}");
        let stderr = text(&output.stderr);
        assert!(stderr.contains("--since"), "{stderr}");
        assert!(stderr.contains("1h30m"), "{stderr}");
    }
}

#[test]
fn bad_tail_and_level_values_exit_2() {
    let address = dead_address();
    for args in [
        &["logs", "--tail", "lots"][..],
        &["logs", "--level", "loud"],
        &["-o", "yaml", "logs"],
    ] {
        let mut all = vec!["--server", &address];
        all.extend_from_slice(args);
        let output = cantina(&all);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
    }
}

#[test]
fn logs_and_log_level_exit_69_when_the_server_cannot_be_reached() {
    let address = dead_address();
    for args in [
        &["logs"][..],
        &["logs", "-f"],
        &["logs", "-f", "--tail", "0"],
        &["-o", "json", "logs", "--tail", "50"],
        &["-o", "raw", "logs"],
        &[
            "-o",
            "pretty",
            "logs",
            "--level",
            "info",
            "--service",
            "audio",
        ],
        &["log-level", "debug"],
    ] {
        let mut all = vec!["--server", &address];
        all.extend_from_slice(args);
        let output = cantina(&all);
        assert_eq!(output.status.code(), Some(69), "{args:?}: {output:?}");
        let stderr = text(&output.stderr);
        assert!(stderr.starts_with("error: "), "{stderr}");
        assert!(stderr.contains(&address), "{stderr}");
        assert!(output.stdout.is_empty(), "{output:?}");
    }
}
