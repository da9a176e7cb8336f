//! Replays the committed fuzz corpus (`fuzz/corpus/*`) through the fuzz targets' checks on
//! stable Rust, so every input the fuzzer ever found interesting stays a regression test
//! without nightly or libFuzzer.

#[path = "../fuzz/checks.rs"]
mod checks;

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).expect("the corpus directory is committed") {
        let path = entry.expect("readable directory entry").path();
        let input = std::fs::read(&path).expect("readable corpus file");
        let outcome = std::panic::catch_unwind(|| check(&input));
        assert!(
            outcome.is_ok(),
            "corpus file {} fails the {target} check",
            path.display()
        );
        count += 1;
    }
    count
}

#[test]
fn every_parse_corpus_file_passes_the_parse_fuzz_check() {
    assert!(replay("parse", checks::parse) >= 100);
}

#[test]
fn every_encode_corpus_file_passes_the_encode_fuzz_check() {
    assert!(replay("encode", checks::encode) >= 10);
}
