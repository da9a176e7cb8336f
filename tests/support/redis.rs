//! A real `redis-server` for the cluster tests: started by the test on a free loopback port
//! with its own temporary directory (never the machine's shared instance on 6379), with the
//! append-only file fsynced on every write unless told otherwise. It can be killed with
//! SIGKILL, restarted on the same port and directory (its AOF replayed), or restarted empty.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::hub::Hub;
use super::{free_port, WAIT};

/// A running `redis-server`; killed when dropped.
pub struct Redis {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    args: Vec<String>,
    /// Serves TLS only (`rediss://`) with this certificate and key.
    tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

impl Redis {
    /// `appendonly yes`, `appendfsync always`: what `--durability sync` requires.
    pub fn start() -> Redis {
        Redis::start_with(&["--appendonly", "yes", "--appendfsync", "always"])
    }

    /// A server with these persistence settings (`--appendonly no`, ...).
    pub fn start_with(settings: &[&str]) -> Redis {
        let dir = tempfile::tempdir().expect("a temporary directory for redis");
        let mut redis = Redis {
            child: None,
            port: free_port(),
            dir,
            args: settings.iter().map(|s| (*s).to_owned()).collect(),
            tls: None,
        };
        redis.launch();
        redis
    }

    /// AOF always, TLS only, with this PEM certificate and key.
    pub fn start_tls(cert: &std::path::Path, key: &std::path::Path) -> Redis {
        let mut redis = Redis {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().expect("a temporary directory for redis"),
            args: ["--appendonly", "yes", "--appendfsync", "always"]
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            tls: Some((cert.to_owned(), key.to_owned())),
        };
        redis.launch();
        redis
    }

    fn launch(&mut self) {
        let bin = super::require_server("TIDINGS_REDIS_SERVER", "redis-server", "redis-server");
        let mut cmd = Command::new(bin);
        match &self.tls {
            None => cmd.args(["--port", &self.port.to_string()]),
            Some((cert, key)) => cmd
                .args(["--port", "0", "--tls-port", &self.port.to_string()])
                .arg("--tls-cert-file")
                .arg(cert)
                .arg("--tls-key-file")
                .arg(key)
                .args(["--tls-auth-clients", "no"]),
        };
        let child = cmd
            .args(["--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--save", "", "--protected-mode", "no", "--daemonize", "no"])
            .args(["--logfile", ""])
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        loop {
            let ready = if self.tls.is_some() {
                TcpStream::connect(self.addr()).is_ok()
            } else {
                self.ping()
            };
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer PING within {WAIT:?}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the server answers `PING` with `PONG` (not `LOADING`).
    pub fn ping(&self) -> bool {
        self.command(&["PING"])
            .is_some_and(|r| r.starts_with("+PONG"))
    }

    /// Sends one command (inline RESP) and returns the raw reply, if the server answered.
    pub fn command(&self, args: &[&str]) -> Option<String> {
        let mut s = TcpStream::connect_timeout(&self.addr(), Duration::from_millis(500)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).ok()?;
        let mut buf = vec![0u8; 64 * 1024];
        let n = s.read(&mut buf).ok()?;
        (n > 0).then(|| String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `redis://127.0.0.1:PORT/0` (`rediss://` when it serves TLS).
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}/0", self.port)
    }

    /// SIGKILL: a crash, nothing flushed beyond what the AOF policy already wrote.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and directory (the AOF is replayed).
    pub fn restart(&mut self) {
        self.kill9();
        self.launch();
    }

    /// Kills the server, deletes its data and starts it empty on the same port.
    pub fn restart_empty(&mut self) {
        self.kill9();
        super::clear_dir(self.dir.path());
        self.launch();
    }

    /// `XLEN` of a stream.
    pub fn xlen(&self, key: &str) -> u64 {
        let reply = self.command(&["XLEN", key]).expect("XLEN answered");
        reply
            .trim()
            .trim_start_matches(':')
            .parse()
            .unwrap_or_else(|_| panic!("XLEN reply {reply:?}"))
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A hub node on `redis` with the usual test credentials (see `Hub::standard`) plus `extra`.
pub fn node(redis_url: &str, extra: &[&str]) -> Hub {
    let mut full = vec!["--listen", "127.0.0.1:0", "--cluster", redis_url];
    full.extend_from_slice(&[
        "--jwt-secret",
        super::tokens::SECRET,
        "--publish-key",
        super::PUBLISH_KEY,
        "--public-topic",
        "**",
    ]);
    full.extend_from_slice(extra);
    Hub::launch_binary(&full, &[])
}

/// `n` nodes on one Redis.
pub fn nodes(redis_url: &str, n: usize, extra: &[&str]) -> Vec<Hub> {
    (0..n).map(|_| node(redis_url, extra)).collect()
}
