#![no_main]
//! See `stuffgate::fuzzing::path` for what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| stuffgate::fuzzing::path(data));
