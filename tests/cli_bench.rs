//! `tidings bench` runs the tidings-bench binary (crates/tidings-bench), so the hub's binary
//! does not carry the load generator.

use std::process::Command;

const BINARY: &str = env!("CARGO_BIN_EXE_tidings");

#[test]
fn bench_runs_the_tidings_bench_binary_with_the_same_arguments() {
    let output = Command::new(BINARY)
        .args(["bench", "--help"])
        .output()
        .expect("run tidings bench --help");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(stdout.contains("--subscribe-url"), "{stdout}");
}

#[test]
fn bench_without_tidings_bench_says_how_to_build_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let alone = dir.path().join("tidings");
    std::fs::copy(BINARY, &alone).expect("copy the binary");
    let output = Command::new(&alone)
        .args(["bench", "fanout"])
        .env("PATH", dir.path())
        .output()
        .expect("run tidings bench");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cargo build --release -p tidings-bench"),
        "{stderr}"
    );
}
