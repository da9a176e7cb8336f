//! `tidings serve`: flags over the library's configuration, and the server.
//!
//! Every option is defined once, in `tidings_hub::config::OPTIONS` (name, help, parser,
//! printer; the shown default is `ServeConfig::default()`); [`ServeArgs`] turns that list into
//! clap flags with their `TIDINGS_*` variables, and the library's `Loader` layers the file,
//! the variables and the flags.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use clap::parser::ValueSource;
use tidings_hub::auth::{mint_hs256, TokenSpec};
use tidings_hub::config::{Arity, HistoryChoice, Layer, Loader, ServeConfig, OPTIONS};
use tidings_hub::history::{DiskOptions, DiskStore, Durability, HistoryStore as _, Retention};
use tidings_hub::{Hub, HubConfig};

/// The flags of `tidings serve`: `--config`, `--print-config`, and one flag per option of
/// [`OPTIONS`] (each also read from its `TIDINGS_*` variable by clap, which says which of the
/// two gave a value).
#[derive(Debug, Default)]
pub struct ServeArgs {
    /// `--config FILE`.
    config: Option<PathBuf>,
    /// `--print-config`.
    print_config: bool,
    /// Option values given by flags or variables, with their layer, in the order given.
    given: Vec<(Layer, &'static str, String)>,
}

impl clap::FromArgMatches for ServeArgs {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let mut args = ServeArgs {
            config: matches.get_one::<PathBuf>("config").cloned(),
            print_config: matches.get_flag("print-config"),
            given: Vec::new(),
        };
        for option in OPTIONS {
            let layer = match matches.value_source(option.name) {
                Some(ValueSource::CommandLine) => Layer::Flags,
                Some(ValueSource::EnvVariable) => Layer::Env,
                _ => continue,
            };
            for value in matches
                .get_many::<String>(option.name)
                .into_iter()
                .flatten()
            {
                args.given.push((layer, option.name, value.clone()));
            }
        }
        Ok(args)
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl clap::Args for ServeArgs {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        use clap::{Arg, ArgAction};
        let mut cmd = cmd
            .arg(
                Arg::new("config")
                    .long("config")
                    .env("TIDINGS_CONFIG")
                    .value_name("FILE")
                    .value_parser(clap::value_parser!(PathBuf))
                    .help("TOML file with any of these options (flags win over the environment, which wins over the file)"),
            )
            .arg(
                Arg::new("print-config")
                    .long("print-config")
                    .action(ArgAction::SetTrue)
                    .help("Print the configuration these flags, variables and file give, as a TOML file (secrets hidden), and exit"),
            );
        for option in OPTIONS {
            let mut help = option.help.to_owned();
            if let Some(default) = option
                .default_text()
                .filter(|_| !help.contains("[default:"))
            {
                help.push_str(&format!(" [default: {default}]"));
            }
            let mut arg = Arg::new(option.name)
                .long(option.name)
                .env(option.env())
                .value_name(option.value_name)
                .hide_env_values(option.secret)
                .help(help);
            arg = match option.arity {
                Arity::Switch => arg
                    .num_args(0..=1)
                    .default_missing_value("true")
                    .action(ArgAction::Set),
                Arity::One => arg.action(ArgAction::Set).allow_hyphen_values(true),
                Arity::Many => arg.action(ArgAction::Append),
            };
            cmd = cmd.arg(arg);
        }
        cmd
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl ServeArgs {
    /// The configuration: defaults, the file, then the variables and flags clap read.
    pub fn load(&self) -> anyhow::Result<ServeConfig> {
        let mut loader = Loader::new();
        if let Some(path) = &self.config {
            loader.file(path)?;
        }
        for layer in [Layer::Env, Layer::Flags] {
            for (_, name, value) in self.given.iter().filter(|(l, _, _)| *l == layer) {
                loader.value(layer, name, value)?;
            }
        }
        Ok(loader.finish()?)
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
        retention: Retention::of(config),
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
pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let serve = args.load()?;
    if args.print_config {
        print!("{}", serve.to_toml(false));
        return Ok(ExitCode::SUCCESS);
    }
    let history = serve.history();
    let tls = match (&serve.tls_cert, &serve.tls_key) {
        (Some(cert), Some(key)) => Some(std::sync::Arc::new(
            tidings_hub::tls::Tls::load(cert, key).map_err(anyhow::Error::msg)?,
        )),
        (None, None) => None,
        _ => anyhow::bail!(
            "invalid --tls-cert: --tls-cert and --tls-key go together: give both (PEM files) or neither"
        ),
    };
    let serve_cluster = serve.cluster.as_ref().map(|_| serve.cluster_prefix.clone());
    let (listen, reuse_port, mut config) = (serve.listen, serve.reuse_port, serve.hub);
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
        .worker_threads(request_workers())
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
            HistoryChoice::Cluster(options) => {
                let hub = Hub::clustered(config, options)
                    .await
                    .context("cannot join the cluster")?;
                (hub, None)
            }
            other => anyhow::bail!("this binary cannot serve from {other:?}"),
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        println!("tidings listening on {scheme}://{addr}");
        if dev {
            print_dev_help(addr, dev_token.as_deref());
        }
        let where_ = match (&disk, &serve_cluster) {
            (Some(d), _) => format!("history in {}", d.dir().display()),
            (None, Some(prefix)) => format!("cluster log {prefix}:log"),
            (None, None) => "history in memory".to_owned(),
        };
        tracing::info!(%addr, "serving ({where_})");
        if let Some(tls) = &tls {
            tokio::spawn(reload_on_sighup(std::sync::Arc::clone(tls)));
        }
        tidings_hub::serve_with(listener, hub.clone(), tls, shutdown_signal()).await?;
        hub.leave_cluster().await;
        if let Some(store) = disk {
            // Writes what is queued and syncs, so a clean stop loses nothing in any mode.
            store.close();
        }
        tracing::info!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// Reloads the TLS certificate and key on every SIGHUP (certificate rotation without a
/// restart: open streams keep going on the old one).
async fn reload_on_sighup(tls: std::sync::Arc<tidings_hub::tls::Tls>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    while hup.recv().await.is_some() {
        match tls.reload() {
            Ok(()) => tracing::info!("TLS certificate reloaded"),
            Err(err) => tracing::warn!(%err, "TLS certificate not reloaded; the old one stays"),
        }
    }
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

/// Worker threads of the runtime that accepts connections and serves requests: half the CPUs
/// this process may use (at least one), since the event streams have a runtime of their own
/// with a thread per CPU (`tidings_hub::serve`). With a worker per CPU here too, a worker that
/// picked up a request woke an idle sibling that found nothing to do and parked again: on two
/// CPUs that park/unpark churn was a third of the hub's CPU per publish (20.8 -> 12.6 us,
/// 48k -> 64k publishes/s with `tidings-bench publish -c 4`; fan-out and delivery latency
/// unchanged; docs/PERFORMANCE.md). `TOKIO_WORKER_THREADS` still decides when set.
fn request_workers() -> usize {
    if let Some(n) = std::env::var("TOKIO_WORKER_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
    {
        return n;
    }
    let cpus = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
    (cpus / 2).max(1)
}
