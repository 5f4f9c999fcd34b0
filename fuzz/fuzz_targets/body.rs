#![no_main]
//! See `stuffgate::fuzzing::body` for what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| stuffgate::fuzzing::body(data));
