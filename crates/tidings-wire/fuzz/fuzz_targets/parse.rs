//! Fuzzes the parser: no panic on any bytes, and the same output whatever the chunking.
#![no_main]

// Each target uses one of the shared checks.
#[allow(dead_code)]
#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|input: &[u8]| checks::parse(input));
