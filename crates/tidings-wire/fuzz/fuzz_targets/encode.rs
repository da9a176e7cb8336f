//! Fuzzes the encoder: no panic, an error exactly for fields that would corrupt the stream,
//! and what it encodes parses back to the same event.
#![no_main]

// Each target uses one of the shared checks.
#[allow(dead_code)]
#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|input: &[u8]| checks::encode(input));
