#![no_main]
//! `cantina_server::fuzzing::tail_query`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| cantina_server::fuzzing::tail_query(data));
