//! cargo-fuzz target: `tidings_hub::fuzzing::publish_body` on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tidings_hub::fuzzing::publish_body(data);
});
