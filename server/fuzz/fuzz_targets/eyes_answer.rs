#![no_main]
//! `cantina_server::fuzzing::eyes_answer`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| cantina_server::fuzzing::eyes_answer(data));
