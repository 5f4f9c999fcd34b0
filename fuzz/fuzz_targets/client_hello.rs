#![no_main]
//! See `stuffgate::fuzzing::client_hello` for what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| stuffgate::fuzzing::client_hello(data));
