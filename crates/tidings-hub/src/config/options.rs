//! Every option of a served hub, once: its name, its help, how its value is read and how it is
//! shown. Flags, `TIDINGS_*` variables, the TOML file, `--help` and `--print-config` all come
//! from [`OPTIONS`]; the shown default is the value of [`ServeConfig::default`], so a default
//! is written in one place only.

use std::path::PathBuf;

use super::serve::{DurabilityMode, ServeConfig};
use crate::units::{format_duration, format_size, parse_duration, parse_size};

/// How an option takes values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arity {
    /// A switch: `--dev`, `--dev=false`; `true`/`false` (also `yes`/`no`, `on`/`off`, `1`/`0`).
    Switch,
    /// One value.
    One,
    /// Repeatable: each flag adds one; a list in the file.
    Many,
}

/// One option.
#[derive(Clone, Copy)]
pub struct OptionSpec {
    /// The flag name without dashes (`max-event-bytes`); the file key is the same with `_`,
    /// the variable `TIDINGS_` and the same in capitals with `_`.
    pub name: &'static str,
    /// What a value is (`DURATION`, `SIZE`, `N`, ...), for `--help`.
    pub value_name: &'static str,
    /// How it takes values.
    pub arity: Arity,
    /// One line (or a few) for `--help`.
    pub help: &'static str,
    /// A value that is valid and differs from the default (for the docs and the tests).
    pub example: &'static str,
    /// Hidden in `--print-config` and in the environment listing of `--help`.
    pub secret: bool,
    /// Applies one value (for [`Arity::Many`], adds one).
    set: fn(&mut ServeConfig, &str) -> Result<(), String>,
    /// Empties a list before a higher layer's values replace it.
    clear: fn(&mut ServeConfig),
    /// The current values as text (none when unset).
    get: fn(&ServeConfig) -> Vec<String>,
}

impl std::fmt::Debug for OptionSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OptionSpec")
            .field("name", &self.name)
            .finish()
    }
}

impl OptionSpec {
    /// The environment variable: `TIDINGS_MAX_EVENT_BYTES`.
    pub fn env(&self) -> String {
        format!(
            "TIDINGS_{}",
            self.name.replace('-', "_").to_ascii_uppercase()
        )
    }

    /// The TOML key: `max_event_bytes`.
    pub fn key(&self) -> String {
        self.name.replace('-', "_")
    }

    /// Applies one value, or says why it cannot be.
    pub fn set(&self, config: &mut ServeConfig, value: &str) -> Result<(), String> {
        (self.set)(config, value)
    }

    /// Empties a list option (a no-op for the others).
    pub fn clear(&self, config: &mut ServeConfig) {
        (self.clear)(config)
    }

    /// The option's values in `config`, as they would be written.
    pub fn get(&self, config: &ServeConfig) -> Vec<String> {
        (self.get)(config)
    }

    /// The default as `--help` shows it (`None` when there is none to show).
    pub fn default_text(&self) -> Option<String> {
        let values = self.get(&ServeConfig::default());
        (!values.is_empty()).then(|| values.join(", "))
    }
}

/// Reads a switch's value.
pub fn parse_switch(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "" | "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err(format!("{value:?} is not true or false")),
    }
}

fn count(value: &str) -> Result<usize, String> {
    value
        .trim()
        .parse()
        .map_err(|_| format!("{value:?} is not a whole number"))
}

fn size(value: &str) -> Result<usize, String> {
    usize::try_from(parse_size(value)?).map_err(|_| format!("size {value:?} is too large"))
}

fn no_clear(_: &mut ServeConfig) {}

/// An option with one value: `one!(name, VALUE, example, help, |c| &mut field, parse, show)`.
macro_rules! one {
    ($name:literal, $value:literal, $example:literal, $help:literal, secret: $secret:literal,
     |$c:ident| $field:expr, $parse:expr, $show:expr) => {
        OptionSpec {
            name: $name,
            value_name: $value,
            arity: Arity::One,
            help: $help,
            example: $example,
            secret: $secret,
            set: |$c, v| {
                $field = $parse(v)?;
                Ok(())
            },
            clear: no_clear,
            get: |$c| $show(&$field),
        }
    };
}

macro_rules! switch {
    ($name:literal, $example:literal, $help:literal, |$c:ident| $field:expr) => {
        OptionSpec {
            name: $name,
            value_name: "BOOL",
            arity: Arity::Switch,
            help: $help,
            example: $example,
            secret: false,
            set: |$c, v| {
                $field = parse_switch(v)?;
                Ok(())
            },
            clear: no_clear,
            get: |$c| vec![$field.to_string()],
        }
    };
}

macro_rules! many {
    ($name:literal, $value:literal, $example:literal, $help:literal, secret: $secret:literal,
     |$c:ident| $field:expr) => {
        OptionSpec {
            name: $name,
            value_name: $value,
            arity: Arity::Many,
            help: $help,
            example: $example,
            secret: $secret,
            set: |$c, v| {
                $field.push(v.to_owned());
                Ok(())
            },
            clear: |$c| $field.clear(),
            get: |$c| $field.clone(),
        }
    };
}

fn show_duration(d: &std::time::Duration) -> Vec<String> {
    vec![format_duration(*d)]
}

fn show_size(n: &usize) -> Vec<String> {
    vec![format_size(*n as u64)]
}

fn show_count(n: &usize) -> Vec<String> {
    vec![n.to_string()]
}

fn text(v: &str) -> Result<String, String> {
    Ok(v.to_owned())
}

fn cluster_url(v: &str) -> Result<String, String> {
    let v = v.trim();
    if ["redis://", "rediss://", "nats://"]
        .iter()
        .any(|s| v.starts_with(s))
    {
        Ok(v.to_owned())
    } else {
        Err("a cluster URL starts with redis:// (redis://127.0.0.1:6379/0) or nats:// (nats://127.0.0.1:4222)".into())
    }
}

fn path(v: &str) -> Result<PathBuf, String> {
    Ok(PathBuf::from(v))
}

fn some<T, E>(parse: impl Fn(&str) -> Result<T, E>) -> impl Fn(&str) -> Result<Option<T>, E> {
    move |v| parse(v).map(Some)
}

fn show_opt<T>(show: impl Fn(&T) -> Vec<String>) -> impl Fn(&Option<T>) -> Vec<String> {
    move |v| v.as_ref().map(&show).unwrap_or_default()
}

/// Every option of `tidings serve` (and of [`ServeConfig::load`]), in `--help` order.
pub static OPTIONS: &[OptionSpec] = &[
    one!("listen", "ADDR", "127.0.0.1:9090",
        "Address to listen on; port 0 picks a free port", secret: false,
        |c| c.listen, |v: &str| v.trim().parse().map_err(|_| format!("{v:?} is not an address like 127.0.0.1:8080")),
        |a: &std::net::SocketAddr| vec![a.to_string()]),
    switch!("dev", "true", "First-try mode: anonymous subscribe, publish and admin on a loopback address; prints a sample token and curl commands",
        |c| c.hub.dev),
    switch!("memory", "true", "Keep history in memory only, lost on exit (default: durable, in --data-dir)",
        |c| c.memory),
    one!("data-dir", "DIR", "/var/lib/tidings",
        "Directory of the durable history; one hub process at a time", secret: false,
        |c| c.data_dir, path, |p: &PathBuf| vec![p.display().to_string()]),
    one!("durability", "MODE", "interval",
        "When a publish is acknowledged: `sync` after fsync (group commit; survives power loss), or `interval` after the write reaches the OS, fsynced every --flush-interval (survives a process crash; a machine crash can lose the last interval)", secret: false,
        |c| c.durability, DurabilityMode::parse, |m: &DurabilityMode| vec![m.as_str().to_owned()]),
    one!("tls-cert", "FILE", "/etc/tidings/cert.pem",
        "Serve HTTPS (HTTP/2 and HTTP/1.1) with this PEM certificate chain; with --tls-key. Reloaded on SIGHUP", secret: false,
        |c| c.tls_cert, some(path), show_opt(|p: &PathBuf| vec![p.display().to_string()])),
    one!("tls-key", "FILE", "/etc/tidings/key.pem",
        "The PEM private key of --tls-cert", secret: false,
        |c| c.tls_key, some(path), show_opt(|p: &PathBuf| vec![p.display().to_string()])),
    one!("cluster", "URL", "redis://127.0.0.1:6390/0",
        "Cluster mode: share one log with other hub processes through Redis (`redis://[:PASSWORD@]HOST:PORT[/DB]`, `rediss://` for TLS) or NATS JetStream (`nats://[USER:PASSWORD@]HOST:PORT`); also TIDINGS_CLUSTER_URL. Any node takes any publish or subscription; --memory and --data-dir do not apply. See docs/CLUSTER.md", secret: true,
        |c| c.cluster, some(cluster_url), show_opt(|s: &String| vec![s.clone()])),
    one!("cluster-ca", "FILE", "/etc/tidings/redis-ca.pem",
        "PEM certificates to trust for a `rediss://` --cluster (a private CA, or the server's own certificate) instead of the system's roots", secret: false,
        |c| c.cluster_ca, some(path), show_opt(|p: &PathBuf| vec![p.display().to_string()])),
    one!("cluster-prefix", "PREFIX", "tidings-eu",
        "Prefix of every Redis key of the cluster (several clusters can share one Redis)", secret: false,
        |c| c.cluster_prefix, text, |s: &String| vec![s.clone()]),
    one!("flush-interval", "DURATION", "250ms",
        "How often `--durability interval` fsyncs the history (1ms to 60s)", secret: false,
        |c| c.flush_interval, parse_duration, show_duration),
    one!("jwt-secret", "SECRET", "an-hs256-secret-of-32-bytes-long",
        "HS256 secret for tokens (at least 16 bytes)", secret: true,
        |c| c.hub.jwt_secret, some(text), show_opt(|s: &String| vec![s.clone()])),
    one!("jwt-public-key", "FILE", "/etc/tidings/jwt.pem",
        "PEM public key for RS256 (RSA) or ES256 (P-256) tokens", secret: false,
        |c| c.jwt_public_key, some(path), show_opt(|p: &PathBuf| vec![p.display().to_string()])),
    many!("publish-key", "KEY", "a-publish-key-of-32-bytes-long!!",
        "Static key for server-side publishers, sent as `Authorization: Bearer KEY`; may publish anything and read /clients (repeatable)", secret: true,
        |c| c.hub.publish_keys),
    many!("public-topic", "PATTERN", "news/*",
        "Anonymous clients may subscribe to topics matching this pattern (repeatable)", secret: false,
        |c| c.hub.public_topics),
    many!("cors-origin", "ORIGIN", "https://app.example.com",
        "Allowed CORS origin, `*` for any (repeatable)", secret: false,
        |c| c.hub.cors_origins),
    one!("heartbeat", "DURATION", "30s",
        "Idle time before a heartbeat comment", secret: false,
        |c| c.hub.heartbeat, parse_duration, show_duration),
    one!("retry", "DURATION", "5s",
        "Reconnection delay announced with `retry:` at stream start", secret: false,
        |c| c.hub.retry, parse_duration, show_duration),
    one!("queue-bytes", "SIZE", "2MiB",
        "Per-connection send queue; past it the subscriber is disconnected", secret: false,
        |c| c.hub.queue_bytes, size, show_size),
    one!("max-connections", "N", "5000",
        "Event streams in all", secret: false,
        |c| c.hub.max_connections, count, show_count),
    one!("max-connections-per-user", "N", "10",
        "Event streams per token subject", secret: false,
        |c| c.hub.max_connections_per_user, count, show_count),
    one!("max-connections-per-ip", "N", "500",
        "Event streams per client IP address", secret: false,
        |c| c.hub.max_connections_per_ip, count, show_count),
    one!("max-topics", "N", "16",
        "`topic=` patterns per stream", secret: false,
        |c| c.hub.max_topics, count, show_count),
    one!("max-event-bytes", "SIZE", "64KiB",
        "Largest event: its encoded frame plus its target names", secret: false,
        |c| c.hub.max_event_bytes, size, show_size),
    one!("max-targets", "N", "8",
        "Topics + users one event may name; more is refused with 400", secret: false,
        |c| c.hub.max_targets, count, show_count),
    one!("max-body-bytes", "SIZE", "2MiB",
        "Largest request body", secret: false,
        |c| c.hub.max_body_bytes, size, show_size),
    one!("history-max-events", "N", "5000",
        "Events kept for replay", secret: false,
        |c| c.hub.history_max_events, count, show_count),
    one!("history-max-bytes", "SIZE", "64MiB",
        "Bytes of events kept for replay", secret: false,
        |c| c.hub.history_max_bytes, size, show_size),
    one!("history-max-age", "DURATION", "24h",
        "Events older than this are dropped from history, e.g. `24h` [default: no age limit]", secret: false,
        |c| c.hub.history_max_age, some(parse_duration), show_opt(show_duration)),
    one!("header-timeout", "DURATION", "5s",
        "Time a client has to send its request head (slow-loris guard), and how long an idle keep-alive connection waits for its next request", secret: false,
        |c| c.hub.header_timeout, parse_duration, show_duration),
    one!("body-timeout", "DURATION", "5s",
        "Time a client has to send a request body once its head arrived; slower gets 408", secret: false,
        |c| c.hub.body_timeout, parse_duration, show_duration),
    one!("max-http-connections", "N", "1024",
        "Open connections that are not event streams (waiting for a request, idle keep-alive, or in a request); past it the oldest idle one is closed. Capped at a quarter of the open-files limit", secret: false,
        |c| c.hub.max_http_connections, count, show_count),
    many!("jwt-audience", "AUD", "tidings",
        "Audience a token's `aud` must name (repeatable); without it, tokens carrying `aud` are refused", secret: false,
        |c| c.hub.jwt_audience),
    many!("jwt-issuer", "ISS", "https://auth.example.com",
        "Issuer a token's `iss` must be (repeatable); without it, tokens carrying `iss` are refused", secret: false,
        |c| c.hub.jwt_issuer),
    one!("idempotency-window", "DURATION", "10m",
        "How long a publish's `Idempotency-Key` is remembered: a retry with the same key inside it gets the first answer and publishes nothing", secret: false,
        |c| c.hub.idempotency_window, parse_duration, show_duration),
    one!("idempotency-keys", "N", "5000",
        "Most `Idempotency-Key`s remembered at once; past it the oldest are forgotten first", secret: false,
        |c| c.hub.idempotency_keys, count, show_count),
    one!("task-retention", "DURATION", "15m",
        "How long a finished task (`POST /tasks`) is kept for `GET /tasks/{id}` before it is dropped", secret: false,
        |c| c.hub.task_retention, parse_duration, show_duration),
    many!("trusted-proxy", "CIDR", "10.0.0.0/8",
        "A reverse proxy (address or CIDR block) whose `X-Forwarded-For` names the client, for the per-IP limit and the addresses shown (repeatable); from any other peer the header is ignored", secret: false,
        |c| c.hub.trusted_proxies),
    many!("webhook", "URL", "http://127.0.0.1:3000/hooks/tidings",
        "POST signed notifications (connect, disconnect, task.finished; see --webhook-event) to this URL (repeatable); retried with backoff, bounded queue, never in the way of delivery", secret: false,
        |c| c.hub.webhooks),
    one!("webhook-secret", "SECRET", "a-webhook-secret-of-32-bytes-long",
        "Key of the `Tidings-Signature` HMAC-SHA256 of each notification (at least 16 bytes)", secret: true,
        |c| c.hub.webhook_secret, some(text), show_opt(|s: &String| vec![s.clone()])),
    many!("webhook-event", "NAME", "publish",
        "Which notifications --webhook sends: connect, disconnect, task.finished, publish (repeatable; default the first three)", secret: false,
        |c| c.hub.webhook_events),
    one!("shutdown-timeout", "DURATION", "30s",
        "Longest graceful drain on SIGTERM/SIGINT", secret: false,
        |c| c.hub.shutdown_timeout, parse_duration, show_duration),
    switch!("reuse-port", "true", "Share the listen port with other hub processes (SO_REUSEPORT; the kernel spreads new connections). Each process keeps its own subscribers and history: publish to every process, or use cluster mode",
        |c| c.reuse_port),
    switch!("pin-writers", "false", "Pin each stream writer thread to its own CPU, so the writes of one publish use every core at once",
        |c| c.hub.pin_writers),
];

/// The option called `name` (flag name, file key or variable).
pub fn find(name: &str) -> Option<&'static OptionSpec> {
    let name = name
        .strip_prefix("TIDINGS_")
        .unwrap_or(name)
        .to_ascii_lowercase()
        .replace('_', "-");
    OPTIONS.iter().find(|o| o.name == name)
}
