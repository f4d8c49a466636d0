#![no_main]
//! `cantina_server::fuzzing::plan_document`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| cantina_server::fuzzing::plan_document(data));
