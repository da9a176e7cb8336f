//! What the cluster suite needs of a broker, so the same tests run on Redis and on NATS.

use std::net::SocketAddr;

use super::nats::Nats;
use super::redis::Redis;

pub trait Broker: Send + 'static {
    /// A fresh broker on a free port, durable as the hub requires.
    fn start() -> Self;
    fn url(&self) -> String;
    fn addr(&self) -> SocketAddr;
    fn kill9(&mut self);
    /// Again on the same port and data.
    fn restart(&mut self);
    /// Again on the same port, its data gone.
    fn restart_empty(&mut self);
    /// How many entries the log holds, where the test can tell.
    fn log_len(&self) -> Option<u64>;
    /// The URL of this broker's kind at another address (a proxy in front of it).
    fn url_at(&self, addr: SocketAddr) -> String;
}

impl Broker for Redis {
    fn start() -> Self {
        Redis::start()
    }
    fn url(&self) -> String {
        Redis::url(self)
    }
    fn addr(&self) -> SocketAddr {
        Redis::addr(self)
    }
    fn kill9(&mut self) {
        Redis::kill9(self)
    }
    fn restart(&mut self) {
        Redis::restart(self)
    }
    fn restart_empty(&mut self) {
        Redis::restart_empty(self)
    }
    fn log_len(&self) -> Option<u64> {
        Some(self.xlen("tidings:log"))
    }
    fn url_at(&self, addr: SocketAddr) -> String {
        format!("redis://{addr}/0")
    }
}

impl Broker for Nats {
    fn start() -> Self {
        Nats::start()
    }
    fn url(&self) -> String {
        Nats::url(self)
    }
    fn addr(&self) -> SocketAddr {
        Nats::addr(self)
    }
    fn kill9(&mut self) {
        Nats::kill9(self)
    }
    fn restart(&mut self) {
        Nats::restart(self)
    }
    fn restart_empty(&mut self) {
        Nats::restart_empty(self)
    }
    fn log_len(&self) -> Option<u64> {
        None
    }
    fn url_at(&self, addr: SocketAddr) -> String {
        format!("nats://{addr}")
    }
}
