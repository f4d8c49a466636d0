#![no_main]
//! `cantina_server::fuzzing::maestro_answer`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| cantina_server::fuzzing::maestro_answer(data));
