//! The hub under test: the real `tidings` binary, `serve --memory --listen 127.0.0.1:0`, one
//! process per test so tests never share state, ports or limits.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::http::{send, Req, Response};
use super::metrics::Metrics;
use super::sse::SseStream;
use super::{PUBLISH_KEY, WAIT};

/// The `tidings` binary under test, built by cargo for the integration tests.
pub const BINARY: &str = env!("CARGO_BIN_EXE_tidings");

/// Only the last part of stderr is kept: enough to explain a failure, bounded for the
/// tests that make the hub log thousands of lines.
const STDERR_KEEP: usize = 64 * 1024;

/// A running hub. Killed (SIGKILL) when dropped, unless it already exited.
#[derive(Debug)]
pub struct Hub {
    child: Child,
    addr: SocketAddr,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
    exited: Option<ExitStatus>,
}

/// The result of a `tidings serve` that was expected to stop by itself.
#[derive(Debug)]
pub struct Exited {
    /// `None` if it was still running at the deadline (and was killed).
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

/// Which hub the tests start: the `tidings serve` binary (the default), or the hub's router
/// embedded in an axum application (`examples/embedded-hub.rs`) when `TIDINGS_TEST_HUB` is
/// `embedded`. Both take the same flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Binary,
    Embedded,
}

impl Target {
    /// The target this test run was asked for.
    pub fn of_run() -> Target {
        match std::env::var("TIDINGS_TEST_HUB").as_deref() {
            Ok("embedded") => Target::Embedded,
            Ok("binary") | Err(_) => Target::Binary,
            Ok(other) => panic!("TIDINGS_TEST_HUB={other:?}: use `binary` or `embedded`"),
        }
    }
}

/// The embedded hub: the example built beside the binary (`cargo build --example embedded-hub`).
fn embedded_binary() -> std::path::PathBuf {
    let path = std::path::Path::new(BINARY)
        .with_file_name("examples")
        .join("embedded-hub");
    assert!(
        path.is_file(),
        "TIDINGS_TEST_HUB=embedded needs {} (`cargo build -p tidings --example embedded-hub`; \
         scripts/test builds it)",
        path.display()
    );
    path
}

fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    command_for(Target::of_run(), args, env)
}

fn command_for(target: Target, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = match target {
        Target::Binary => {
            let mut cmd = Command::new(BINARY);
            cmd.arg("serve");
            cmd
        }
        Target::Embedded => Command::new(embedded_binary()),
    };
    cmd.args(args);
    // The tests set every option they rely on; none may leak in from the caller's shell.
    for (name, _) in std::env::vars() {
        if name.starts_with("TIDINGS_") {
            cmd.env_remove(name);
        }
    }
    cmd.envs(env.iter().copied());
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Reads a pipe to its end on a thread, keeping the last [`STDERR_KEEP`] bytes or so.
fn drain(mut pipe: impl Read + Send + 'static) -> (Arc<Mutex<String>>, JoinHandle<()>) {
    let kept = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&kept);
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            let mut kept = sink.lock().unwrap_or_else(|e| e.into_inner());
            kept.push_str(&String::from_utf8_lossy(&buf[..n]));
            if kept.len() > STDERR_KEEP * 2 {
                let cut = kept.len() - STDERR_KEEP;
                let cut = (cut..kept.len())
                    .find(|&i| kept.is_char_boundary(i))
                    .unwrap_or(0);
                kept.drain(..cut);
            }
        }
    });
    (kept, reader)
}

/// Parses `listening on http://ADDR` (or `https://`) out of a line of the hub's stdout.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    let at = line.find("listening on ")? + "listening on ".len();
    let rest = line[at..]
        .strip_prefix("http://")
        .or_else(|| line[at..].strip_prefix("https://"))?;
    let addr = rest.split_whitespace().next()?.trim_end_matches('/');
    addr.parse().ok()
}

/// `args` of the usual hub of the black-box tests: HS256 tokens with the test secret, the test
/// publish key, every topic public, then `extra`.
fn standard_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--jwt-secret",
        super::tokens::SECRET,
        "--publish-key",
        PUBLISH_KEY,
        "--public-topic",
        "**",
    ];
    args.extend_from_slice(extra);
    args
}

/// `--memory` on a free loopback port, then `args`.
fn in_memory<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut full = vec!["--memory", "--listen", "127.0.0.1:0"];
    full.extend_from_slice(args);
    full
}

/// The durable store in `dir` on a free loopback port, then `args`.
fn on_disk<'a>(dir: &'a std::path::Path, args: &[&'a str]) -> Vec<&'a str> {
    let dir = dir.to_str().expect("a UTF-8 data directory");
    let mut full = vec!["--data-dir", dir, "--listen", "127.0.0.1:0"];
    full.extend_from_slice(args);
    full
}

impl Hub {
    /// Starts `tidings serve --memory --listen 127.0.0.1:0 <args>` and waits until it prints
    /// the address it listens on.
    pub fn start(args: &[&str]) -> Hub {
        Hub::start_with_env(args, &[])
    }

    /// The usual hub of the black-box tests: HS256 tokens with the test secret, the test
    /// publish key, every topic public for anonymous subscribers, plus `extra` options.
    pub fn standard(extra: &[&str]) -> Hub {
        Hub::start(&standard_args(extra))
    }

    /// Like [`Hub::start`], with extra environment variables.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Hub {
        Hub::launch(&in_memory(args), env)
    }

    /// Starts `tidings serve <args>` exactly as given and waits until it prints the address it
    /// listens on.
    pub fn launch(full: &[&str], env: &[(&str, &str)]) -> Hub {
        Hub::spawn(command(full, env), full)
    }

    /// The `tidings serve` binary whatever the run's target: for what only `serve` does (the
    /// native stream path, header timeouts, the bound on non-stream connections, writer
    /// threads, `--dev`'s printout, `--reuse-port`).
    pub fn start_binary(args: &[&str]) -> Hub {
        Hub::launch_binary(&in_memory(args), &[])
    }

    /// [`Hub::launch`], always on the binary.
    pub fn launch_binary(full: &[&str], env: &[(&str, &str)]) -> Hub {
        Hub::spawn(command_for(Target::Binary, full, env), full)
    }

    /// [`Hub::standard`], always on the binary.
    pub fn standard_binary(extra: &[&str]) -> Hub {
        Hub::start_binary(&standard_args(extra))
    }

    /// Like [`Hub::start`] (memory, a free loopback port), with the open-files limit of the
    /// hub process set to `soft` and `hard` before it starts (a shell's `ulimit`).
    pub fn start_with_open_files(soft: u64, hard: u64, args: &[&str]) -> Hub {
        let full = in_memory(args);
        // The binary's handling of its descriptors: always the binary.
        let mut cmd = command_for(Target::Binary, &full, &[]);
        let script = format!("ulimit -Sn {soft} && ulimit -Hn {hard} && exec \"$0\" \"$@\"");
        let mut shell = Command::new("sh");
        shell.arg("-c").arg(script).arg(cmd.get_program());
        shell.args(cmd.get_args());
        for (name, value) in cmd.get_envs() {
            match value {
                Some(value) => shell.env(name, value),
                None => shell.env_remove(name),
            };
        }
        cmd = shell;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Hub::spawn(cmd, &full)
    }

    fn spawn(mut cmd: Command, full: &[&str]) -> Hub {
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {BINARY}: {e}"));
        let (stderr, _) = drain(child.stderr.take().expect("stderr is piped"));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let (found_tx, found_rx) = mpsc::channel();
        let lines = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let sink = Arc::clone(&stdout);
        std::thread::spawn(move || {
            for line in lines.split(b'\n') {
                let Ok(line) = line else { break };
                let line = String::from_utf8_lossy(&line).trim_end().to_owned();
                if let Some(addr) = listening_addr(&line) {
                    let _ = found_tx.send(addr);
                }
                sink.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
        let addr = match found_rx.recv_timeout(WAIT) {
            Ok(addr) => addr,
            Err(why) => {
                let _ = child.kill();
                let status = child.wait().ok();
                // Let the reader threads catch the last output.
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "`tidings serve {}` did not print `listening on http://ADDR` ({why:?}); \
                     exit: {status:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                    full.join(" "),
                    stdout.lock().unwrap_or_else(|e| e.into_inner()).join("\n"),
                    stderr.lock().unwrap_or_else(|e| e.into_inner()),
                );
            }
        };
        Hub {
            child,
            addr,
            stdout,
            stderr,
            exited: None,
        }
    }

    /// The address the hub listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The hub's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every line the hub printed on stdout so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The end of what the hub printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        self.signal("TERM");
    }

    /// Sends a signal by name (`TERM`, `INT`), with `kill(1)`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {} failed", self.pid());
    }

    /// Waits for the process to exit; fails the test (with stderr) if it is still running
    /// after `wait`.
    pub async fn wait_exit(&mut self, wait: Duration) -> ExitStatus {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait on the hub") {
                self.exited = Some(status);
                return status;
            }
            if Instant::now() >= deadline {
                panic!(
                    "the hub did not exit within {wait:?}; stderr:\n{}",
                    self.stderr()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Resident set size of the hub process, from `/proc/<pid>/status`.
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/<pid>/status");
        let line = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .expect("VmRSS in /proc/<pid>/status");
        let kib: u64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .expect("VmRSS in kB");
        kib * 1024
    }

    /// Sends one request and reads the whole reply.
    pub async fn send(&self, req: Req) -> Response {
        send(self.addr, &req).await
    }

    /// Opens `GET /events…`; a non-200 reply comes back as `Err`.
    pub async fn open(&self, req: Req) -> Result<SseStream, Response> {
        SseStream::open(self.addr, &req).await
    }

    /// Opens `GET /events…` that must be refused; returns the reply.
    pub async fn refused(&self, req: Req) -> Response {
        let target = req.target.clone();
        match self.open(req).await {
            Ok(_) => panic!("GET {target} was accepted (200) but must be refused"),
            Err(reply) => reply,
        }
    }

    /// Opens `GET /events…`, asserts 200 and reads the preamble (`retry:` and `connected`),
    /// so events published after this returns are delivered to it.
    pub async fn subscribe(&self, req: Req) -> SseStream {
        let target = req.target.clone();
        let mut stream = match self.open(req).await {
            Ok(stream) => stream,
            Err(reply) => panic!("GET {target}: status {} {}", reply.status, reply.text()),
        };
        stream.expect_preamble().await;
        stream
    }

    /// `POST path` with a JSON body and the test publish key; asserts 200, returns the reply.
    pub async fn post_ok(&self, path: &str, body: &Value) -> Value {
        self.send(Req::post(path).bearer(PUBLISH_KEY).json(body))
            .await
            .ok_json()
    }

    /// `POST /publish` with the test publish key; asserts 200 and returns the event id.
    pub async fn publish(&self, body: &Value) -> String {
        let reply = self.post_ok("/publish", body).await;
        reply
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("publish reply without an id string: {reply}"))
            .to_owned()
    }

    /// `GET /metrics`, parsed.
    pub async fn metrics(&self) -> Metrics {
        let reply = self.send(Req::get("/metrics")).await;
        reply.expect_status(200);
        Metrics::parse(&reply.text())
    }

    /// Polls `/metrics` until `name` (summed over its labels) satisfies `pred`, or fails the
    /// test with the last value after `wait`.
    pub async fn wait_metric(&self, name: &str, wait: Duration, pred: impl Fn(f64) -> bool) -> f64 {
        let deadline = Instant::now() + wait;
        loop {
            let value = self.metrics().await.sum(name);
            if let Some(v) = value.filter(|v| pred(*v)) {
                return v;
            }
            if Instant::now() >= deadline {
                panic!("metric {name} never reached the expected value within {wait:?}; last: {value:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `tidings serve <args>` (exactly these arguments) that is expected to stop by itself,
/// such as a start with invalid configuration. Kills it if it still runs after `wait`.
pub fn serve_until_exit(args: &[&str], env: &[(&str, &str)], wait: Duration) -> Exited {
    // The binary's own command line and start-up: always the binary.
    let mut child = command_for(Target::Binary, args, env)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {BINARY}: {e}"));
    let (stderr, stderr_reader) = drain(child.stderr.take().expect("stderr is piped"));
    let (stdout, stdout_reader) = drain(child.stdout.take().expect("stdout is piped"));
    let deadline = Instant::now() + wait;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // The pipes close when the process ends, which ends the readers.
    let _ = stderr_reader.join();
    let _ = stdout_reader.join();
    let stdout = stdout.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let stderr = stderr.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Exited {
        status,
        stdout,
        stderr,
    }
}

impl Hub {
    /// Starts `tidings serve --data-dir DIR --listen 127.0.0.1:0 <args>`: the durable history
    /// (no `--memory`), so a test can kill the hub and start another on the same directory.
    /// Returns once it prints the address it listens on.
    pub fn start_on_disk(dir: &std::path::Path, args: &[&str]) -> Hub {
        Hub::launch(&on_disk(dir, args), &[])
    }

    /// [`Hub::start_on_disk`], always on the binary.
    pub fn start_on_disk_binary(dir: &std::path::Path, args: &[&str]) -> Hub {
        Hub::launch_binary(&on_disk(dir, args), &[])
    }

    /// Kills the hub with SIGKILL (no drain, no flush: a crash) and reaps it.
    pub fn kill9(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            self.exited = self.child.wait().ok();
        }
    }
}
