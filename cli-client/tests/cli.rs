//! The `cantina` binary where no server is needed: its help, its completion
//! scripts, and how it fails when nothing listens at the address. (How it
//! talks to a real server is in the workspace's end-to-end tests.)

mod common;

use std::{
    io::Write,
    process::{Command, Stdio},
};

use common::{cantina, dead_address, text};

#[test]
fn completions_print_a_bash_script_for_cantina() {
    let output = cantina(&["completions", "bash"]);
    assert!(output.status.success(), "{output:?}");
    let script = text(&output.stdout);
    assert!(script.contains("cantina"), "{script}");
    assert!(script.contains("complete"), "{script}");
}

#[test]
fn help_lists_the_subcommands_and_options() {
    let output = cantina(&["--help"]);
    assert!(output.status.success(), "{output:?}");
    let help = text(&output.stdout);
    for word in [
        "commands",
        "status",
        "events",
        "shell",
        "completions",
        "plan",
        "panic",
        "--server",
        "--token",
        "--output",
    ] {
        assert!(help.contains(word), "{word} missing from:\n{help}");
    }
}

#[test]
fn an_unreachable_server_exits_69_naming_the_address() {
    let address = dead_address();
    for format in ["text", "json"] {
        let output = cantina(&[
            "--server", &address, "-o", format, "eye", "pattern", "happy",
        ]);
        assert_eq!(output.status.code(), Some(69), "{output:?}");
        let stderr = text(&output.stderr);
        assert!(stderr.starts_with("error: "), "{stderr}");
        assert!(stderr.contains(&address), "{stderr}");
        assert!(output.stdout.is_empty(), "{output:?}");
    }
}

#[test]
fn events_help_documents_the_globs() {
    let output = cantina(&["events", "--help"]);
    assert!(output.status.success(), "{output:?}");
    let help = text(&output.stdout);
    for word in [
        "[TOPIC_GLOB]...",
        "system.*",
        "matches any",
        "every event",
        "--no-timestamps",
        "Ctrl-C",
        "-o json",
    ] {
        assert!(help.contains(word), "{word} missing from:\n{help}");
    }
}

#[test]
fn events_and_status_exit_69_when_the_server_cannot_be_reached() {
    let address = dead_address();
    for args in [
        &["events"][..],
        &["events", "system.*", "music.*"],
        &["-o", "json", "events"],
        &["status"],
        &["-o", "json", "status"],
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

#[test]
fn help_words_go_to_the_server_not_to_clap() {
    let address = dead_address();
    let output = cantina(&["--server", &address, "help", "engage"]);
    assert_eq!(output.status.code(), Some(69), "{output:?}");
    assert!(text(&output.stderr).contains(&address), "{output:?}");
}

#[test]
fn the_shell_exits_69_when_the_server_cannot_be_reached_at_start() {
    let address = dead_address();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cantina"))
        .args(["--server", &address, "shell"])
        .env_remove("CANTINA_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The shell may exit before reading, so a failed write is fine.
    let _ = child.stdin.take().unwrap().write_all(b"status\n");
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(69), "{output:?}");
    assert!(output.stdout.is_empty(), "{output:?}");
    assert!(text(&output.stderr).contains(&address), "{output:?}");
}

#[test]
fn plan_help_documents_files_names_and_exit_codes() {
    let output = cantina(&["plan", "--help"]);
    assert!(output.status.success(), "{output:?}");
    let help = text(&output.stdout);
    for word in [
        "run",
        "start",
        "validate",
        "list",
        "watch",
        "cancel",
        "pause",
        "resume",
        "FILE|NAME",
        "plans folder",
    ] {
        assert!(help.contains(word), "{word} missing from:\n{help}");
    }
    let output = cantina(&["plan", "run", "--help"]);
    let help = text(&output.stdout);
    for word in [
        "--if-busy",
        "replace",
        "queue",
        "skip",
        "Ctrl-C",
        "carries on",
        " 3 ",
    ] {
        assert!(help.contains(word), "{word} missing from:\n{help}");
    }
}

#[test]
fn plan_commands_fail_like_the_others_without_a_server() {
    let address = dead_address();
    // A missing plan file is a usage error, found before connecting.
    let output = cantina(&["--server", &address, "plan", "run", "no-such-show.yaml"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(
        text(&output.stderr).contains("no-such-show.yaml"),
        "{output:?}"
    );
    for args in [
        &["plan", "validate", "greeting"][..],
        &["plan", "list"],
        &["plan", "run", "greeting"],
        &["plan", "watch"],
        &["panic"],
    ] {
        let mut all = vec!["--server", &address];
        all.extend_from_slice(args);
        let output = cantina(&all);
        assert_eq!(output.status.code(), Some(69), "{args:?}: {output:?}");
        assert!(text(&output.stderr).contains(&address), "{output:?}");
        assert!(output.stdout.is_empty(), "{output:?}");
    }
}
