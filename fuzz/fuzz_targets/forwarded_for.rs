#![no_main]
//! See `stuffgate::fuzzing::forwarded_for` for what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| stuffgate::fuzzing::forwarded_for(data));
