//! Test support for the hub's black-box integration tests: everything a `tests/hub_*.rs` file
//! needs to run a real hub and talk to it over real HTTP on loopback.
//!
//! The hub is the `tidings` binary, or, with `TIDINGS_TEST_HUB=embedded`, the hub's router in
//! an axum application (`examples/embedded-hub.rs`, same flags); `scripts/test` runs the suite
//! both ways. What only `serve` does (header timeouts, the native stream path, the bound on
//! non-stream connections, `--dev`'s printout, the umask) is tested on the binary in both runs
//! (`Hub::start_binary` and friends).
//!
//! Layout:
//! - [`hub`]: [`Hub`], one hub child process per test, on its own port, killed on drop; plus
//!   [`serve_until_exit`] for starts that must fail.
//! - [`http`]: a raw HTTP/1.1 client over a tokio `TcpStream` ([`Req`] in, [`Response`] out),
//!   with a chunked-transfer decoder, so tests see exactly the bytes the hub sends.
//! - [`sse`]: [`SseStream`], an open `GET /events` response fed to `tidings_wire::Parser`.
//! - [`tokens`]: JWT minting, legitimate and hostile, and the test key files.
//! - [`metrics`]: reading Prometheus text.
//! - [`proxy`]: a fault-injecting TCP proxy (cut, stall, slow, refuse) for the broker tests.
//! - [`redis`]: a real `redis-server` per test (free port, temp dir, AOF), and cluster nodes on it.
//!
//! Every wait has a deadline, so a hung hub fails a test instead of hanging the suite.
//! Each test binary uses only part of this module, hence the `dead_code` and `unused_imports`
//! allowance.
#![allow(dead_code, unused_imports)]

pub mod broker;
pub mod http;
pub mod hub;
pub mod metrics;
pub mod nats;
pub mod nginx;
pub mod proxy;
pub mod redis;
pub mod sse;
pub mod tokens;

use std::time::Duration;

pub use http::{Req, Response};
pub use hub::{serve_until_exit, Exited, Hub};
pub use metrics::Metrics;
pub use serde_json::{json, Value};
pub use sse::{End, SseStream};
pub use tidings_wire::{Item, MessageEvent};
pub use tokens::{Token, SECRET};

/// How long any single wait for the hub may take before the test fails. Generous on purpose:
/// it bounds a hang on a loaded two-core machine; it is never a performance assertion.
pub const WAIT: Duration = Duration::from_secs(10);

/// The static publish key that most tests start their hub with (`--publish-key`).
pub const PUBLISH_KEY: &str = "test-publish-key-7c1e";

/// A free loopback port (bound, read, released: the caller binds it next).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The server binary a test needs: the variable `env` if set, else `default` on `PATH`. Fails
/// the test, naming the Debian package, when it cannot run: a missing service never passes.
pub fn require_server(env: &str, default: &str, package: &str) -> String {
    let bin = std::env::var(env).unwrap_or_else(|_| default.into());
    let found = std::process::Command::new(&bin)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "this test needs a real `{default}` ({bin:?} cannot run): install the Debian package \
         {package} (scripts/test installs it when missing)"
    );
    bin
}

/// Empties a server's data directory (a restart that lost everything).
pub fn clear_dir(dir: &std::path::Path) {
    for entry in std::fs::read_dir(dir).expect("the data directory") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path).expect("remove a data directory");
        } else {
            std::fs::remove_file(&path).expect("remove a data file");
        }
    }
}

/// A small deterministic random generator (xorshift64*), so the randomized tests print their
/// seed and can be replayed exactly.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded from `TIDINGS_TEST_SEED` if set, else from the clock; prints the seed.
    pub fn from_env_or_clock(label: &str) -> Rng {
        let seed = std::env::var("TIDINGS_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            });
        eprintln!("{label}: seed {seed} (replay with TIDINGS_TEST_SEED={seed})");
        Rng::new(seed)
    }

    /// A generator with this seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// The next value, uniform over `u64`.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `lo..hi` (`hi` exclusive).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo).max(1)
    }
}

/// Percent-encodes a query value (everything but unreserved characters).
pub fn q(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `/events?topic=a&topic=b` for these patterns.
pub fn events_path(topics: &[&str]) -> String {
    let query: Vec<String> = topics.iter().map(|t| format!("topic={}", q(t))).collect();
    if query.is_empty() {
        "/events".to_owned()
    } else {
        format!("/events?{}", query.join("&"))
    }
}

/// True if `text` is JSON written without any whitespace outside its strings.
pub fn is_compact_json(text: &str) -> bool {
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
        } else if c.is_whitespace() {
            return false;
        }
    }
    serde_json::from_str::<Value>(text).is_ok()
}
