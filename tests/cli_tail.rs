//! `tidings tail` as a user runs it: the real binary against a scripted SSE server on
//! loopback, checked through its request, its stdout, its stderr and its exit status.

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tidings_client::testing::ScriptServer;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, ChildStdout, Command};

const WAIT: Duration = Duration::from_secs(10);

/// A running `tidings tail`, killed on drop if still alive.
struct Tail {
    child: Child,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr: Lines<BufReader<ChildStderr>>,
}

impl Tail {
    fn start(args: &[&str]) -> Tail {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tidings"))
            .arg("tail")
            .args(args)
            .env_remove("TIDINGS_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start tidings tail");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let stderr = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
        Tail {
            child,
            stdout,
            stderr,
        }
    }

    async fn stdout_line(&mut self) -> String {
        tokio::time::timeout(WAIT, self.stdout.next_line())
            .await
            .expect("a line within the deadline")
            .expect("readable stdout")
            .expect("stdout still open")
    }

    /// Reads stderr until a line contains `needle`; returns that line.
    async fn stderr_line_with(&mut self, needle: &str) -> String {
        loop {
            let line = tokio::time::timeout(WAIT, self.stderr.next_line())
                .await
                .expect("a line within the deadline")
                .expect("readable stderr")
                .unwrap_or_else(|| panic!("stderr ended before a line with {needle:?}"));
            if line.contains(needle) {
                return line;
            }
        }
    }

    async fn exit(&mut self) -> ExitStatus {
        tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("exits within the deadline")
            .expect("exit status")
    }

    /// Sends SIGINT, as Ctrl-C in a terminal does.
    fn interrupt(&self) {
        let pid = self.child.id().expect("still running");
        let status = std::process::Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }
}

#[tokio::test]
async fn json_output_is_one_object_per_event_and_a_reconnect_resumes_from_the_last_id() {
    let server = ScriptServer::bind().await.expect("bind");
    let url = server.url("/events");
    let mut tail = Tail::start(&[
        &url,
        "--topic",
        "orders/*",
        "--topic",
        "a b",
        "--header",
        "X-Tenant: 7",
        "--token",
        "secret",
        "--json",
    ]);
    let mut conn = server.accept().await.expect("connection");
    let request = conn.request();
    assert_eq!(request.target, "/events?topic=orders/*&topic=a%20b");
    assert_eq!(request.header("x-tenant"), Some("7"));
    assert_eq!(request.header("authorization"), Some("Bearer secret"));
    assert_eq!(request.header("accept"), Some("text/event-stream"));
    conn.start_stream().await.expect("head");
    conn.send(b"retry: 20\n: heartbeat\nid: 5\nevent: tick\ndata: a\ndata: b\n\n")
        .await
        .expect("events");
    // One object per event; the retry the server set rides on the next event.
    assert_eq!(
        tail.stdout_line().await,
        r#"{"event":"tick","data":"a\nb","id":"5","retry":20}"#
    );
    conn.close().await.expect("close");

    tail.stderr_line_with("reconnecting").await;
    let mut again = server.accept().await.expect("reconnection");
    assert_eq!(again.request().header("last-event-id"), Some("5"));
    again.start_stream().await.expect("head");
    again.send(b"data: more\n\n").await.expect("event");
    assert_eq!(
        tail.stdout_line().await,
        r#"{"event":"message","data":"more","id":"5"}"#
    );

    tail.interrupt();
    assert_eq!(tail.exit().await.code(), Some(0));
}

#[tokio::test]
async fn readable_output_off_a_terminal_has_no_colour_codes() {
    let server = ScriptServer::bind().await.expect("bind");
    let mut tail = Tail::start(&[&server.url("/"), "--last-event-id", "3", "--comments"]);
    let mut conn = server.accept().await.expect("connection");
    assert_eq!(conn.request().header("last-event-id"), Some("3"));
    conn.start_stream().await.expect("head");
    conn.send(b": hi\nevent: tick\nid: 4\ndata: one\ndata: two\n\n")
        .await
        .expect("events");
    assert_eq!(tail.stdout_line().await, ": hi");
    assert_eq!(tail.stdout_line().await, "tick #4 one");
    assert_eq!(tail.stdout_line().await, "    two");
    tail.interrupt();
    assert_eq!(tail.exit().await.code(), Some(0));
}

#[tokio::test]
async fn no_content_ends_tail_with_status_zero() {
    let server = ScriptServer::bind().await.expect("bind");
    let mut tail = Tail::start(&[&server.url("/")]);
    let conn = server.accept().await.expect("connection");
    conn.respond(204, &[], b"").await.expect("204");
    tail.stderr_line_with("204").await;
    assert_eq!(tail.exit().await.code(), Some(0));
}

#[tokio::test]
async fn an_error_that_is_not_retried_ends_tail_with_status_one() {
    let server = ScriptServer::bind().await.expect("bind");
    let mut tail = Tail::start(&[&server.url("/")]);
    let conn = server.accept().await.expect("connection");
    conn.respond(401, &[], b"").await.expect("401");
    let line = tail.stderr_line_with("error").await;
    assert!(line.contains("401"), "{line}");
    assert_eq!(tail.exit().await.code(), Some(1));
}

#[tokio::test]
async fn a_malformed_header_flag_is_refused() {
    let mut tail = Tail::start(&["http://127.0.0.1:1/", "--header", "no colon"]);
    let line = tail.stderr_line_with("Name: value").await;
    assert!(line.contains("no colon"), "{line}");
    assert_eq!(tail.exit().await.code(), Some(1));
}
