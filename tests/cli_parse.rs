//! `tidings parse` as a user runs it: the real binary on a file, on stdin, and on a missing file.

use std::io::Write;
use std::process::{Command, Stdio};

const STREAM: &[u8] =
    b"\xEF\xBB\xBFretry: 1000\r\nid: 1\r\nevent: greet\r\ndata: hello\r\n\r\n: ping\rdata: bye\r\r";

const EXPECTED: &str = concat!(
    "{\"retry\":1000}\n",
    "{\"event\":\"greet\",\"data\":\"hello\",\"id\":\"1\"}\n",
    "{\"event\":\"message\",\"data\":\"bye\",\"id\":\"1\"}\n",
);

fn tidings() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tidings"))
}

#[test]
fn parses_a_file_given_as_argument() {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(STREAM).expect("write capture");
    let output = tidings()
        .arg("parse")
        .arg(file.path())
        .output()
        .expect("run tidings");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), EXPECTED);
}

#[test]
fn parses_stdin_and_prints_comments_when_asked() {
    let mut child = tidings()
        .args(["parse", "--comments"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run tidings");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(STREAM)
        .expect("write stdin");
    let output = child.wait_with_output().expect("wait");
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert_eq!(lines[2], "{\"comment\":\"ping\"}");
}

#[test]
fn missing_file_is_a_one_line_error_and_a_failure_exit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("no-such-capture.txt");
    let output = tidings()
        .arg("parse")
        .arg(&missing)
        .output()
        .expect("run tidings");
    assert!(!output.status.success());
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("no-such-capture.txt"), "{stderr}");
}

#[test]
fn a_directory_is_a_one_line_error_and_a_failure_exit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = tidings()
        .arg("parse")
        .arg(dir.path())
        .output()
        .expect("run tidings");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}
