//! `tidings serve`: the options (flags, `TIDINGS_*` environment, TOML file) and the server.
//!
//! [`ServeOptions`] is the one list of options: clap reads it from flags and the environment,
//! serde reads the same struct from the `--config` file, and [`ServeOptions::into_config`]
//! turns the merge into the hub's typed, validated [`HubConfig`]. Defaults live in
//! `HubConfig::default()`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Deserialize;
use tidings_hub::auth::{mint_hs256, TokenSpec};
use tidings_hub::history::{DiskOptions, DiskStore, Durability, HistoryStore as _, Retention};
use tidings_hub::{Hub, HubConfig};

use tidings_hub::units::{parse_duration, parse_size};

/// Options of `tidings serve`. Each is also `TIDINGS_<NAME>` and a key of the `--config` file.
#[derive(Debug, Default, clap::Args, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct ServeOptions {
    /// Address to listen on; port 0 picks a free port [default: 127.0.0.1:8080]
    #[arg(long, env = "TIDINGS_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,

    /// TOML file with any of these options (flags win over the environment, which wins over the file)
    #[arg(long, env = "TIDINGS_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// First-try mode: anonymous subscribe, publish and admin on a loopback address; prints a sample token and curl commands
    #[arg(long, env = "TIDINGS_DEV", num_args = 0..=1, default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new(), value_name = "BOOL")]
    pub dev: Option<bool>,

    /// Keep history in memory only, lost on exit (default: durable, in --data-dir)
    #[arg(long, env = "TIDINGS_MEMORY", num_args = 0..=1, default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new(), value_name = "BOOL")]
    pub memory: Option<bool>,

    /// Directory of the durable history; one hub process at a time [default: ./tidings-data]
    #[arg(long, env = "TIDINGS_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// When a publish is acknowledged: `sync` after fsync (group commit; survives power loss), or `interval` after the write reaches the OS, fsynced every --flush-interval (survives a process crash; a machine crash can lose the last interval) [default: sync]
    #[arg(long, env = "TIDINGS_DURABILITY", value_name = "MODE")]
    pub durability: Option<String>,

    /// How often `--durability interval` fsyncs the history [default: 100ms]
    #[arg(
        long,
        env = "TIDINGS_FLUSH_INTERVAL",
        value_name = "DURATION",
        allow_hyphen_values = true
    )]
    #[serde(default, deserialize_with = "text")]
    pub flush_interval: Option<String>,

    /// HS256 secret for tokens (at least 16 bytes)
    #[arg(
        long,
        env = "TIDINGS_JWT_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub jwt_secret: Option<String>,

    /// PEM public key for RS256 (RSA) or ES256 (P-256) tokens
    #[arg(long, env = "TIDINGS_JWT_PUBLIC_KEY", value_name = "FILE")]
    pub jwt_public_key: Option<PathBuf>,

    /// Static key for server-side publishers, sent as `Authorization: Bearer KEY`; may publish anything and read /clients (repeatable)
    #[arg(
        long,
        env = "TIDINGS_PUBLISH_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    #[serde(default)]
    pub publish_key: Vec<String>,

    /// Anonymous clients may subscribe to topics matching this pattern (repeatable)
    #[arg(long, env = "TIDINGS_PUBLIC_TOPIC", value_name = "PATTERN")]
    #[serde(default)]
    pub public_topic: Vec<String>,

    /// Allowed CORS origin, `*` for any (repeatable)
    #[arg(long, env = "TIDINGS_CORS_ORIGIN", value_name = "ORIGIN")]
    #[serde(default)]
    pub cors_origin: Vec<String>,

    /// Idle time before a heartbeat comment [default: 15s]
    #[arg(
        long,
        env = "TIDINGS_HEARTBEAT",
        value_name = "DURATION",
        allow_hyphen_values = true
    )]
    #[serde(default, deserialize_with = "text")]
    pub heartbeat: Option<String>,

    /// Reconnection delay announced with `retry:` at stream start [default: 3s]
    #[arg(
        long,
        env = "TIDINGS_RETRY",
        value_name = "DURATION",
        allow_hyphen_values = true
    )]
    #[serde(default, deserialize_with = "text")]
    pub retry: Option<String>,

    /// Per-connection send queue; past it the subscriber is disconnected [default: 1MiB]
    #[arg(
        long,
        env = "TIDINGS_QUEUE_BYTES",
        value_name = "SIZE",
        allow_hyphen_values = true
    )]
    #[serde(default, deserialize_with = "text")]
    pub queue_bytes: Option<String>,

    /// Event streams in all [default: 100000]
    #[arg(
        long,
        env = "TIDINGS_MAX_CONNECTIONS",
        value_name = "N",
        allow_hyphen_values = true
    )]
    pub max_connections: Option<usize>,

    /// Event streams per token subject [default: 100]
    #[arg(
        long,
        env = "TIDINGS_MAX_CONNECTIONS_PER_USER",
        value_name = "N",
        allow_hyphen_values = true
    )]
    pub max_connections_per_user: Option<usize>,

    /// Event streams per client IP address [default: 10000]
    #[arg(
        long,
        env = "TIDINGS_MAX_CONNECTIONS_PER_IP",
        value_name = "N",
        allow_hyphen_values = true
    )]
    pub max_connections_per_ip: Option<usize>,

    /// `topic=` patterns per stream [default: 64]
    #[arg(
        long,
        env = "TIDINGS_MAX_TOPICS",
        value_name = "N",
        allow_hyphen_values = true
    )]
    pub max_topics: Option<usize>,

    /// Largest event: its encoded frame plus its target names [default: 512KiB]
    #[arg(
        long,
        env = "TIDINGS_MAX_EVENT_BYTES",
        value_name = "SIZE",
        allow_hyphen_values = true
    )]
    #[serde(default, deserialize_with = "text")]
    pub max_event_bytes: Option<String>,

    /// Topics + users one event may name; more is refused with 400 [default: 64]
    #[arg(
        long,
        env = "TIDINGS_MAX_TARGETS",
        value_name = "N",
        allow_hyphen_values = true
    )]
    pub max_targets: Option<usize>,

    /// Largest request body [default: 1MiB]
    #[arg(
        long,
        env = "TIDINGS_MAX_BODY_BYTES",
        value_name = "SIZE",
        allow_hyphen_values = true
    )]
    #[serde(default, deserialize_with = "text")]
    pub max_body_bytes: Option<String>,

    /// Events kept for replay [default: 100000]
    #[arg(
        long,
        env = "TIDINGS_HISTORY_MAX_EVENTS",
        value_name = "N",
        allow_hyphen_values = true
    )]
    pub history_max_events: Option<usize>,

    /// Bytes of events kept for replay [default: 256MiB]
    #[arg(
        long,
        env = "TIDINGS_HISTORY_MAX_BYTES",
        value_name = "SIZE",
        allow_hyphen_values = true
    )]
    #[serde(default, deserialize_with = "text")]
    pub history_max_bytes: Option<String>,

    /// Events older than this are dropped from history, e.g. `24h` [default: no age limit]
    #[arg(
        long,
        env = "TIDINGS_HISTORY_MAX_AGE",
        value_name = "DURATION",
        allow_hyphen_values = true
    )]
    #[serde(default, deserialize_with = "text")]
    pub history_max_age: Option<String>,

    /// Time a client has to send its request head (slow-loris guard), and how long an idle keep-alive connection waits for its next request [default: 10s]
    #[arg(
        long,
        env = "TIDINGS_HEADER_TIMEOUT",
        value_name = "DURATION",
        allow_hyphen_values = true
    )]
    #[serde(default, deserialize_with = "text")]
    pub header_timeout: Option<String>,

    /// Time a client has to send a request body once its head arrived; slower gets 408 [default: 10s]
    #[arg(
        long,
        env = "TIDINGS_BODY_TIMEOUT",
        value_name = "DURATION",
        allow_hyphen_values = true
    )]
    #[serde(default, deserialize_with = "text")]
    pub body_timeout: Option<String>,

    /// Open connections that are not event streams (waiting for a request, idle keep-alive, or in a request); past it the oldest idle one is closed. Capped at a quarter of the open-files limit [default: 4096]
    #[arg(
        long,
        env = "TIDINGS_MAX_HTTP_CONNECTIONS",
        value_name = "N",
        allow_hyphen_values = true
    )]
    pub max_http_connections: Option<usize>,

    /// Audience a token's `aud` must name (repeatable); without it, tokens carrying `aud` are refused
    #[arg(long, env = "TIDINGS_JWT_AUDIENCE", value_name = "AUD")]
    #[serde(default)]
    pub jwt_audience: Vec<String>,

    /// Issuer a token's `iss` must be (repeatable); without it, tokens carrying `iss` are refused
    #[arg(long, env = "TIDINGS_JWT_ISSUER", value_name = "ISS")]
    #[serde(default)]
    pub jwt_issuer: Vec<String>,

    /// Longest graceful drain on SIGTERM/SIGINT [default: 10s]
    #[arg(
        long,
        env = "TIDINGS_SHUTDOWN_TIMEOUT",
        value_name = "DURATION",
        allow_hyphen_values = true
    )]
    #[serde(default, deserialize_with = "text")]
    pub shutdown_timeout: Option<String>,

    /// Share the listen port with other hub processes (SO_REUSEPORT; the kernel spreads new connections). Each process keeps its own subscribers and history: publish to every process, or use cluster mode
    #[arg(long, env = "TIDINGS_REUSE_PORT", num_args = 0..=1, default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new(), value_name = "BOOL")]
    pub reuse_port: Option<bool>,

    /// Pin each stream writer thread to its own CPU, so the writes of one publish use every core at once [default: true]
    #[arg(long, env = "TIDINGS_PIN_WRITERS", num_args = 0..=1, default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new(), value_name = "BOOL")]
    pub pin_writers: Option<bool>,
}

/// Reads a TOML number or string as text, so `heartbeat = 15` and `heartbeat = "15s"` both work.
fn text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumOrText {
        Int(i64),
        Float(f64),
        Text(String),
    }
    Ok(Some(match NumOrText::deserialize(d)? {
        NumOrText::Int(n) => n.to_string(),
        NumOrText::Float(f) => f.to_string(),
        NumOrText::Text(s) => s,
    }))
}

macro_rules! merge {
    ($cli:ident, $file:ident; $($field:ident),* ; lists $($list:ident),*) => {
        $( if $cli.$field.is_none() { $cli.$field = $file.$field.take(); } )*
        $( if $cli.$list.is_empty() { $cli.$list = std::mem::take(&mut $file.$list); } )*
    };
}

impl ServeOptions {
    /// Fills every option not given by a flag or the environment from the `--config` file.
    pub fn merge_file(mut self) -> anyhow::Result<Self> {
        let Some(path) = self.config.clone() else {
            return Ok(self);
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("--config: cannot read {}", path.display()))?;
        let mut file: ServeOptions = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("--config {}: {}", path.display(), e.message()))?;
        merge!(self, file; listen, dev, memory, jwt_secret, jwt_public_key, heartbeat, retry,
            queue_bytes, max_connections, max_connections_per_user, max_connections_per_ip,
            max_topics, max_event_bytes, max_body_bytes, history_max_events, history_max_bytes,
            history_max_age, data_dir, durability, flush_interval,
            header_timeout, shutdown_timeout, reuse_port, pin_writers, max_targets, body_timeout,
            max_http_connections; lists publish_key, public_topic, cors_origin, jwt_audience,
            jwt_issuer);
        Ok(self)
    }

    /// The listen address and the hub configuration, with every value checked.
    pub fn into_config(self) -> anyhow::Result<(SocketAddr, HubConfig)> {
        let d = HubConfig::default();
        let listen = self.listen.as_deref().unwrap_or("127.0.0.1:8080");
        let listen: SocketAddr = listen.parse().map_err(|_| {
            anyhow::anyhow!("invalid --listen: {listen:?} is not an address like 127.0.0.1:8080")
        })?;
        let duration = |name: &str, v: Option<String>, default| -> anyhow::Result<_> {
            v.map_or(Ok(default), |v| {
                parse_duration(&v).map_err(|e| anyhow::anyhow!("invalid --{name}: {e}"))
            })
        };
        let size = |name: &str, v: Option<String>, default: usize| -> anyhow::Result<usize> {
            v.map_or(Ok(default), |v| {
                parse_size(&v)
                    .map_err(|e| anyhow::anyhow!("invalid --{name}: {e}"))
                    .and_then(|n| {
                        usize::try_from(n)
                            .map_err(|_| anyhow::anyhow!("invalid --{name}: too large"))
                    })
            })
        };
        let jwt_public_key_pem = match &self.jwt_public_key {
            Some(path) => Some(std::fs::read(path).with_context(|| {
                format!("invalid --jwt-public-key: cannot read {}", path.display())
            })?),
            None => None,
        };
        let config = HubConfig {
            dev: self.dev.unwrap_or(false),
            pin_writers: self.pin_writers.unwrap_or(d.pin_writers),
            jwt_secret: self.jwt_secret,
            jwt_public_key_pem,
            publish_keys: self.publish_key,
            public_topics: self.public_topic,
            cors_origins: self.cors_origin,
            heartbeat: duration("heartbeat", self.heartbeat, d.heartbeat)?,
            retry: duration("retry", self.retry, d.retry)?,
            queue_bytes: size("queue-bytes", self.queue_bytes, d.queue_bytes)?,
            max_connections: self.max_connections.unwrap_or(d.max_connections),
            max_connections_per_user: self
                .max_connections_per_user
                .unwrap_or(d.max_connections_per_user),
            max_connections_per_ip: self
                .max_connections_per_ip
                .unwrap_or(d.max_connections_per_ip),
            max_topics: self.max_topics.unwrap_or(d.max_topics),
            max_event_bytes: size("max-event-bytes", self.max_event_bytes, d.max_event_bytes)?,
            max_body_bytes: size("max-body-bytes", self.max_body_bytes, d.max_body_bytes)?,
            max_targets: self.max_targets.unwrap_or(d.max_targets),
            body_timeout: duration("body-timeout", self.body_timeout, d.body_timeout)?,
            max_http_connections: self.max_http_connections.unwrap_or(d.max_http_connections),
            jwt_audience: self.jwt_audience,
            jwt_issuer: self.jwt_issuer,
            history_max_events: self.history_max_events.unwrap_or(d.history_max_events),
            history_max_bytes: size(
                "history-max-bytes",
                self.history_max_bytes,
                d.history_max_bytes,
            )?,
            history_max_age: self
                .history_max_age
                .map(|v| {
                    parse_duration(&v)
                        .map_err(|e| anyhow::anyhow!("invalid --history-max-age: {e}"))
                })
                .transpose()?,
            header_timeout: duration("header-timeout", self.header_timeout, d.header_timeout)?,
            shutdown_timeout: duration(
                "shutdown-timeout",
                self.shutdown_timeout,
                d.shutdown_timeout,
            )?,
        };
        config.validate()?;
        config.check_listen(listen)?;
        Ok((listen, config))
    }
}

/// Which history store `serve` runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryChoice {
    /// `--memory`.
    Memory,
    /// The durable store (the default).
    Disk {
        /// `--data-dir`.
        dir: PathBuf,
        /// `--durability` and `--flush-interval`.
        durability: Durability,
    },
}

impl ServeOptions {
    /// The history store that `--memory`, `--data-dir`, `--durability` and `--flush-interval`
    /// select, checked.
    pub fn history(&self) -> anyhow::Result<HistoryChoice> {
        let every = match self.flush_interval.as_deref() {
            None => Duration::from_millis(100),
            Some(v) => {
                parse_duration(v).map_err(|e| anyhow::anyhow!("invalid --flush-interval: {e}"))?
            }
        };
        if !(Duration::from_millis(1)..=Duration::from_secs(60)).contains(&every) {
            anyhow::bail!("invalid --flush-interval: must be between 1ms and 60s");
        }
        let durability = match self.durability.as_deref().unwrap_or("sync") {
            "sync" => Durability::Sync,
            "interval" => Durability::Interval(every),
            other => {
                anyhow::bail!("invalid --durability: {other:?}; use `sync` or `interval`")
            }
        };
        if self.memory.unwrap_or(false) {
            return Ok(HistoryChoice::Memory);
        }
        let dir = self
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("tidings-data"));
        Ok(HistoryChoice::Disk { dir, durability })
    }
}

/// Opens the durable history with the configured retention, logging what it holds.
fn open_history(
    dir: PathBuf,
    durability: Durability,
    config: &HubConfig,
) -> anyhow::Result<Arc<DiskStore>> {
    let started = Instant::now();
    let store = DiskStore::open(DiskOptions {
        dir,
        durability,
        retention: Retention {
            max_events: config.history_max_events as u64,
            max_bytes: config.history_max_bytes as u64,
            max_age: config.history_max_age,
        },
    })
    .context("--data-dir: cannot open the history")?;
    let (events, bytes) = store.size();
    tracing::info!(
        dir = %store.dir().display(),
        events,
        bytes,
        ?durability,
        opened_ms = started.elapsed().as_millis() as u64,
        "history opened"
    );
    Ok(Arc::new(store))
}

/// Runs `tidings serve` until SIGTERM or SIGINT.
pub fn run(options: ServeOptions) -> anyhow::Result<ExitCode> {
    let options = options.merge_file()?;
    let history = options.history()?;
    let reuse_port = options.reuse_port.unwrap_or(false);
    let (listen, mut config) = options.into_config()?;
    init_logging();
    let open_files = crate::limits::raise_open_files();
    if let Some(soft) = open_files {
        // Keep three quarters of the descriptors for streams, the listener and the history.
        let cap = usize::try_from(soft / 4).unwrap_or(usize::MAX).max(16);
        if config.max_http_connections > cap {
            tracing::info!(
                max_http_connections = cap,
                "--max-http-connections capped at a quarter of the open-files limit"
            );
            config.max_http_connections = cap;
        }
    }
    // History holds private notifications: files the hub creates are for its user alone.
    crate::limits::private_umask();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let mut dev_secret = None;
        let real_key = config.jwt_secret.is_some() || config.jwt_public_key_pem.is_some();
        if config.dev && !real_key {
            // A fresh secret per run, so the printed sample token works and dies with the process.
            let secret: String = (0..32)
                .map(|_| format!("{:02x}", rand::random::<u8>()))
                .collect();
            config.jwt_secret = Some(secret.clone());
            dev_secret = Some(secret);
        }
        // Never a sample token signed with a real, configured secret: it would be a working
        // admin credential printed to a terminal or a log.
        let dev_token = if let (true, Some(secret)) = (config.dev, dev_secret.clone()) {
            let spec = TokenSpec {
                sub: Some("dev".into()),
                subscribe: vec!["**".into()],
                publish: vec!["**".into()],
                admin: true,
                ttl: std::time::Duration::from_secs(24 * 3600),
            };
            Some(
                mint_hs256(&secret, &spec)
                    .map_err(|e| anyhow::anyhow!("cannot mint the dev token: {e}"))?,
            )
        } else {
            None
        };
        let dev = config.dev;
        let listener = bind(listen, reuse_port)
            .with_context(|| format!("--listen: cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        let (hub, disk) = match history {
            HistoryChoice::Memory => (Hub::new(config).context("cannot start the hub")?, None),
            HistoryChoice::Disk { dir, durability } => {
                let store = open_history(dir, durability, &config)?;
                let hub = Hub::with_history(config, Arc::clone(&store) as _)
                    .context("cannot start the hub")?;
                (hub, Some(store))
            }
        };
        println!("tidings listening on http://{addr}");
        if dev {
            print_dev_help(addr, dev_token.as_deref());
        }
        let where_ = disk.as_ref().map_or("history in memory".to_owned(), |d| {
            format!("history in {}", d.dir().display())
        });
        tracing::info!(%addr, "serving ({where_})");
        tidings_hub::serve(listener, hub, shutdown_signal()).await?;
        if let Some(store) = disk {
            // Writes what is queued and syncs, so a clean stop loses nothing in any mode.
            store.close();
        }
        tracing::info!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// Binds the listening socket, optionally shared with other processes (`--reuse-port`).
fn bind(addr: SocketAddr, reuse_port: bool) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    #[cfg(unix)]
    if reuse_port {
        socket.set_reuseport(true)?;
    }
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

fn print_dev_help(addr: SocketAddr, token: Option<&str>) {
    let Some(token) = token else {
        println!(
            "\n--dev: anonymous subscribe and publish are open on this loopback address.\n\
             no sample token: a real token key is configured, and --dev never signs with it\n\
             (mint one with `tidings token`).\n\n\
             subscribe:\n  curl -N 'http://{addr}/events?topic=demo'\n"
        );
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        return;
    };
    println!(
        "\n--dev: anonymous subscribe and publish are open on this loopback address.\n\
         sample token (signed with a secret generated for this run):\n  {token}\n\n\
         subscribe:\n  curl -N 'http://{addr}/events?topic=demo'\n\
         publish:\n  curl -X POST http://{addr}/publish -H 'Content-Type: application/json' \\\n    -d '{{\"topic\":\"demo\",\"data\":{{\"hello\":\"world\"}}}}'\n\
         with the token:\n  curl -N -H 'Authorization: Bearer {token}' 'http://{addr}/events?topic=demo'\n\
         in a browser:\n  new EventSource('http://{addr}/events?topic=demo').onmessage = e => console.log(e.data)\n"
    );
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TIDINGS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal as _;
    let _ = tracing_subscriber::fmt()
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received; draining");
}
