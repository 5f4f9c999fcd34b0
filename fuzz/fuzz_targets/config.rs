#![no_main]
//! See `stuffgate::fuzzing::config` for what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| stuffgate::fuzzing::config(data));
