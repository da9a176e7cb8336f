//! cargo-fuzz target: `tidings_hub::fuzzing::topic_pattern` on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tidings_hub::fuzzing::topic_pattern(data);
});
