//! Shared by the CLI's server-less tests: running the binary, and an address
//! where nothing listens.

#![allow(dead_code)]

use std::{
    net::TcpListener,
    process::{Command, Output, Stdio},
};

/// Runs `cantina` with `args`, free of the caller's `CANTINA_*` settings.
pub fn cantina(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cantina"))
        .args(args)
        .env_remove("CANTINA_SERVER")
        .env_remove("CANTINA_TOKEN")
        .env_remove("CANTINA_TLS_CA")
        .stdin(Stdio::null())
        .output()
        .expect("the cantina binary runs")
}

/// An address where nothing listens: a port the OS just handed out and that
/// was closed again at once.
pub fn dead_address() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    drop(listener);
    address
}

/// Output bytes as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
