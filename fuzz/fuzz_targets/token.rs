#![no_main]
//! See `stuffgate::fuzzing::token` for what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| stuffgate::fuzzing::token(data));
