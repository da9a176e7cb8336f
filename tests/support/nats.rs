//! A real `nats-server -js` for the cluster tests: started by the test on a free loopback port
//! with its own store directory (never the machine's shared instance on 4222). It can be
//! killed with SIGKILL, restarted on the same port and store, or restarted with its store
//! wiped.

use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::WAIT;

/// A running `nats-server -js`; killed when dropped.
pub struct Nats {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl Nats {
    pub fn start() -> Nats {
        let port = super::free_port();
        let mut nats = Nats {
            child: None,
            port,
            dir: tempfile::tempdir().expect("a store directory"),
        };
        nats.launch();
        nats
    }

    fn launch(&mut self) {
        let child = Command::new(super::require_server(
            "TIDINGS_NATS_SERVER",
            "nats-server",
            "nats-server",
        ))
        .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string()])
        .arg("-sd")
        .arg(self.dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        while TcpStream::connect(self.addr()).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill9();
        self.launch();
    }

    pub fn restart_empty(&mut self) {
        self.kill9();
        super::clear_dir(self.dir.path());
        self.launch();
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill9();
    }
}
