#![no_main]
//! `cantina_server::fuzzing::command_line`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| cantina_server::fuzzing::command_line(data));
