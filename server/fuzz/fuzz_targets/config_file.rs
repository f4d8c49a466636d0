#![no_main]
//! `cantina_server::fuzzing::config_file`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| cantina_server::fuzzing::config_file(data));
