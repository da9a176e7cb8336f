//! A real `nats-server -js` for the cluster tests: started by the test on a free loopback port
//! with its own store directory (never the machine's shared instance on 4222). It can be
//! killed with SIGKILL, restarted on the same port and store, or restarted with its store
//! wiped.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::WAIT;

/// A running `nats-server -js`; killed when dropped.
pub struct Nats {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

fn server_binary() -> String {
    let bin = std::env::var("TIDINGS_NATS_SERVER").unwrap_or_else(|_| "nats-server".into());
    let found = Command::new(&bin)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "the cluster tests need a real `nats-server` ({bin:?} cannot run): install the Debian \
         package nats-server (scripts/test installs it when missing)"
    );
    bin
}

impl Nats {
    pub fn start() -> Nats {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let mut nats = Nats {
            child: None,
            port,
            dir: tempfile::tempdir().expect("a store directory"),
        };
        nats.launch();
        nats
    }

    fn launch(&mut self) {
        let child = Command::new(server_binary())
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
        for entry in std::fs::read_dir(self.dir.path()).expect("the store directory") {
            let path = entry.expect("an entry").path();
            let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
        }
        self.launch();
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill9();
    }
}
