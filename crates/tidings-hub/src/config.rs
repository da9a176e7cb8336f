//! The hub's typed configuration: every tunable with its default and its validation.
//!
//! # Layout
//! - [`HubConfig`] (this file): what the engine is told, its defaults and its checks.
//! - `serve`: [`ServeConfig`] (the listener, the history store and a `HubConfig`) and its
//!   [`Loader`]: defaults, then a TOML file, then `TIDINGS_*` variables, then flags.
//! - `options`: [`OPTIONS`], every option once: its name, help, parser and printer. Flags,
//!   variables, file keys, `--help` and `--print-config` all come from it.
//!
//! An embedding application builds a `HubConfig` directly
//! (`let mut config = HubConfig::default(); config.dev = true;`) or loads the binary's file
//! with [`ServeConfig::load`].

mod options;
mod serve;

use std::net::SocketAddr;
use std::time::Duration;

pub use options::{find, parse_switch, Arity, OptionSpec, OPTIONS};
pub use serve::{DurabilityMode, HistoryChoice, Layer, LoadError, Loader, ServeConfig};

/// Everything the hub engine can be told.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HubConfig {
    /// Anonymous subscribe, publish and admin (loopback listeners only; enforced by `serve`).
    pub dev: bool,
    /// HS256 secret for tokens.
    pub jwt_secret: Option<String>,
    /// PEM public key for RS256 / ES256 tokens.
    pub jwt_public_key_pem: Option<Vec<u8>>,
    /// Static bearer keys for server-side publishers.
    pub publish_keys: Vec<String>,
    /// Patterns anonymous clients may subscribe to.
    pub public_topics: Vec<String>,
    /// Allowed CORS origins (`*` for any); empty means no CORS headers.
    pub cors_origins: Vec<String>,
    /// Idle time after which a stream gets a heartbeat comment.
    pub heartbeat: Duration,
    /// Reconnection delay announced with `retry:` at stream start.
    pub retry: Duration,
    /// Per-connection queue bound; past it the subscriber is disconnected.
    pub queue_bytes: usize,
    /// Streams in all.
    pub max_connections: usize,
    /// Streams per token subject.
    pub max_connections_per_user: usize,
    /// Streams per client IP address.
    pub max_connections_per_ip: usize,
    /// `topic=` patterns per stream.
    pub max_topics: usize,
    /// Largest event: its encoded frame plus the bytes of its target names.
    pub max_event_bytes: usize,
    /// Topics + users one event may name.
    pub max_targets: usize,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Events kept for replay.
    pub history_max_events: usize,
    /// Bytes of encoded events kept for replay.
    pub history_max_bytes: usize,
    /// Age past which events are dropped from history; `None` keeps them until another limit.
    pub history_max_age: Option<Duration>,
    /// Time a client has to send its request head; also how long an idle keep-alive
    /// connection is kept waiting for its next request.
    pub header_timeout: Duration,
    /// Time a client has to send a request body once its head arrived.
    pub body_timeout: Duration,
    /// Open connections that are not event streams (waiting for a request head, idle
    /// keep-alive, or in a request). Past it the oldest idle one is closed to make room.
    pub max_http_connections: usize,
    /// The `aud` a token must carry (one of them); `None` refuses tokens with `aud`.
    pub jwt_audience: Vec<String>,
    /// The `iss` a token must carry (one of them); `None` refuses tokens with `iss`.
    pub jwt_issuer: Vec<String>,
    /// Longest graceful drain on shutdown.
    pub shutdown_timeout: Duration,
    /// How long a publish's `Idempotency-Key` is remembered.
    pub idempotency_window: Duration,
    /// Most `Idempotency-Key`s remembered at once (the oldest are forgotten first).
    pub idempotency_keys: usize,
    /// How long a finished task is kept (`GET /tasks/{id}`) before it is dropped.
    pub task_retention: Duration,
    /// Proxies whose `X-Forwarded-For` names the client (`--trusted-proxy`, CIDR blocks).
    pub trusted_proxies: Vec<String>,
    /// URLs the hub POSTs notifications to (`--webhook`).
    pub webhooks: Vec<String>,
    /// The key of the notifications' HMAC signature (`--webhook-secret`).
    pub webhook_secret: Option<String>,
    /// Which notifications are sent (`--webhook-event`).
    pub webhook_events: Vec<String>,
    /// Pin each stream writer thread of `serve` to its own CPU (one writer per CPU the
    /// process may use), so the writes of one publish run on every core at once.
    pub pin_writers: bool,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            dev: false,
            jwt_secret: None,
            jwt_public_key_pem: None,
            publish_keys: Vec::new(),
            public_topics: Vec::new(),
            cors_origins: Vec::new(),
            heartbeat: Duration::from_secs(15),
            retry: Duration::from_secs(3),
            queue_bytes: 1 << 20,
            max_connections: 100_000,
            max_connections_per_user: 100,
            max_connections_per_ip: 10_000,
            max_topics: 64,
            max_event_bytes: 512 << 10,
            max_targets: 64,
            max_body_bytes: 1 << 20,
            history_max_events: 100_000,
            history_max_bytes: 256 << 20,
            history_max_age: None,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            max_http_connections: 4096,
            jwt_audience: Vec::new(),
            jwt_issuer: Vec::new(),
            shutdown_timeout: Duration::from_secs(10),
            pin_writers: true,
            idempotency_window: Duration::from_secs(3600),
            idempotency_keys: 100_000,
            task_retention: Duration::from_secs(3600),
            trusted_proxies: Vec::new(),
            webhooks: Vec::new(),
            webhook_secret: None,
            webhook_events: vec![
                "connect".into(),
                "disconnect".into(),
                "task.finished".into(),
            ],
        }
    }
}

/// A configuration value that cannot work; the message names the option.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("invalid --{option}: {reason}")]
#[non_exhaustive]
pub struct ConfigError {
    /// The option's flag name, without dashes.
    pub option: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(option: &'static str, reason: impl Into<String>) -> Self {
        Self {
            option,
            reason: reason.into(),
        }
    }
}

fn bad(option: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::new(option, reason)
}

impl HubConfig {
    /// The defaults with `dev` on: anonymous subscribe, publish and admin, for a first try on
    /// a loopback address.
    pub fn dev() -> Self {
        Self {
            dev: true,
            ..Self::default()
        }
    }

    /// Checks every value; the first problem is returned, naming its option.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for block in &self.trusted_proxies {
            crate::proxy::Cidr::parse(block).map_err(|reason| ConfigError {
                option: "trusted-proxy",
                reason,
            })?;
        }
        for url in &self.webhooks {
            let ok = url
                .parse::<http::Uri>()
                .ok()
                .is_some_and(|u| u.scheme_str() == Some("http") && u.host().is_some());
            if !ok {
                return Err(ConfigError {
                    option: "webhook",
                    reason: format!(
                        "{url:?} is not an http:// URL (https:// receivers need a TLS-terminating proxy for now)"
                    ),
                });
            }
        }
        for name in &self.webhook_events {
            if crate::webhooks::WebhookEvent::parse(name).is_none() {
                return Err(ConfigError {
                    option: "webhook-event",
                    reason: format!("{name:?}: use connect, disconnect, task.finished or publish"),
                });
            }
        }
        if self.webhook_secret.as_ref().is_some_and(|s| s.len() < 16) {
            return Err(ConfigError {
                option: "webhook-secret",
                reason: "use at least 16 bytes".into(),
            });
        }
        let positive = [
            ("queue-bytes", self.queue_bytes),
            ("max-connections", self.max_connections),
            ("max-connections-per-user", self.max_connections_per_user),
            ("max-connections-per-ip", self.max_connections_per_ip),
            ("max-topics", self.max_topics),
            ("max-event-bytes", self.max_event_bytes),
            ("max-targets", self.max_targets),
            ("max-http-connections", self.max_http_connections),
            ("max-body-bytes", self.max_body_bytes),
            ("history-max-events", self.history_max_events),
            ("history-max-bytes", self.history_max_bytes),
            ("idempotency-keys", self.idempotency_keys),
        ];
        for (option, value) in positive {
            if value == 0 {
                return Err(bad(option, "must be at least 1"));
            }
        }
        let durations = [
            ("heartbeat", self.heartbeat),
            ("header-timeout", self.header_timeout),
            ("body-timeout", self.body_timeout),
        ];
        for (option, value) in durations {
            if value < Duration::from_millis(10) {
                return Err(bad(option, "must be at least 10ms"));
            }
        }
        if self
            .history_max_age
            .is_some_and(|age| age < Duration::from_secs(1))
        {
            return Err(bad("history-max-age", "must be at least 1s"));
        }
        if self.idempotency_window < Duration::from_secs(1) {
            return Err(bad("idempotency-window", "must be at least 1s"));
        }
        if self.retry.as_millis() > u128::from(u32::MAX) {
            return Err(bad("retry", "is too long"));
        }
        if let Some(secret) = &self.jwt_secret {
            if secret.len() < 16 {
                return Err(bad(
                    "jwt-secret",
                    "must be at least 16 bytes (a short HMAC secret can be guessed)",
                ));
            }
        }
        for key in &self.publish_keys {
            if key.len() < 16 {
                return Err(bad("publish-key", "must be at least 16 bytes"));
            }
        }
        for origin in &self.cors_origins {
            if origin.is_empty() || origin.chars().any(|c| c.is_control() || c == ' ') {
                return Err(bad("cors-origin", format!("{origin:?} is not an origin")));
            }
        }
        for pattern in &self.public_topics {
            crate::topic::Pattern::parse(pattern)
                .map_err(|e| bad("public-topic", format!("{pattern:?}: {e}")))?;
        }
        if self.max_targets > 65_535 {
            return Err(bad(
                "max-targets",
                "must be at most 65535 (the history's record format counts targets in 16 bits)",
            ));
        }
        for (option, values) in [
            ("jwt-audience", &self.jwt_audience),
            ("jwt-issuer", &self.jwt_issuer),
        ] {
            if values.iter().any(String::is_empty) {
                return Err(bad(option, "must not be empty"));
            }
        }
        if self.max_event_bytes > self.queue_bytes {
            return Err(bad(
                "max-event-bytes",
                "must not exceed --queue-bytes (such an event could never be queued)",
            ));
        }
        Ok(())
    }

    /// `--dev` is only for loopback listeners.
    pub fn check_listen(&self, addr: SocketAddr) -> Result<(), ConfigError> {
        if self.dev && !addr.ip().is_loopback() {
            return Err(bad(
                "dev",
                format!("only allowed on a loopback address, not {addr}; drop --dev or listen on 127.0.0.1"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        HubConfig::default().validate().unwrap();
    }

    #[test]
    fn zero_limit_is_rejected_naming_the_option() {
        let cfg = HubConfig {
            max_topics: 0,
            ..Default::default()
        };
        let err = cfg.validate().unwrap_err();
        assert_eq!(err.option, "max-topics");
        assert!(err.to_string().contains("--max-topics"));
    }

    #[test]
    fn short_jwt_secret_is_rejected() {
        let cfg = HubConfig {
            jwt_secret: Some("short".into()),
            ..Default::default()
        };
        assert_eq!(cfg.validate().unwrap_err().option, "jwt-secret");
    }

    #[test]
    fn dev_mode_refuses_public_addresses() {
        let cfg = HubConfig {
            dev: true,
            ..Default::default()
        };
        assert!(cfg.check_listen("127.0.0.1:8080".parse().unwrap()).is_ok());
        assert!(cfg.check_listen("[::1]:8080".parse().unwrap()).is_ok());
        assert_eq!(
            cfg.check_listen("0.0.0.0:8080".parse().unwrap())
                .unwrap_err()
                .option,
            "dev"
        );
    }
}
