//! The hub embedded in an axum application, configured exactly like `tidings serve`: the same
//! flags, `TIDINGS_*` variables and `--config` file, loaded by the hub library
//! (`tidings_hub::config::Loader`), served by `axum::serve` with connect info (for the per-IP
//! limit) and a graceful drain on SIGTERM/SIGINT.
//!
//! The hub's black-box test suite runs against this program as well as against the `tidings`
//! binary (`TIDINGS_TEST_HUB=embedded`, see `scripts/test`), so the embedded path keeps every
//! promise the binary keeps.
//!
//! Run: `cargo run --example embedded-hub -- --dev --memory`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use tidings_hub::config::{find, Arity, HistoryChoice, Layer, Loader};
use tidings_hub::history::{DiskOptions, DiskStore, Retention};
use tidings_hub::Hub;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("embedded-hub: {err}");
            ExitCode::FAILURE
        }
    }
}

/// The command line: `--config FILE`, and every other option as (name, value).
struct Flags {
    file: Option<String>,
    given: Vec<(String, String)>,
}

/// `--name value`, `--name=value`, or a bare switch; `--config FILE` apart.
fn flags() -> Result<Flags, String> {
    let mut args = std::env::args().skip(1).peekable();
    let (mut file, mut given) = (None, Vec::new());
    while let Some(arg) = args.next() {
        let flag = arg
            .strip_prefix("--")
            .ok_or_else(|| format!("unexpected argument {arg:?}"))?;
        let (name, inline) = match flag.split_once('=') {
            Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
            None => (flag.to_owned(), None),
        };
        let switch = find(&name).is_some_and(|o| o.arity == Arity::Switch);
        let value = match inline {
            Some(value) => value,
            None if switch => match args.peek() {
                Some(next) if tidings_hub::config::parse_switch(next).is_ok() => {
                    args.next().unwrap_or_default()
                }
                _ => "true".to_owned(),
            },
            None => args
                .next()
                .ok_or_else(|| format!("--{name} needs a value"))?,
        };
        if name == "config" {
            file = Some(value);
        } else {
            given.push((name, value));
        }
    }
    Ok(Flags { file, given })
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let Flags { file, given } = flags()?;
    let mut loader = Loader::new();
    if let Some(path) = file.or_else(|| std::env::var("TIDINGS_CONFIG").ok()) {
        loader.file(path.as_ref())?;
    }
    loader.env(std::env::vars())?;
    for (name, value) in &given {
        loader.value(Layer::Flags, name, value)?;
    }
    let serve = loader.finish()?;
    if serve.tls_cert.is_some() || serve.tls_key.is_some() {
        // This example serves the router with axum::serve, in cleartext; an application that
        // wants the hub's own TLS calls tidings_hub::serve_with with a tidings_hub::tls::Tls.
        return Err("--tls-cert/--tls-key: the embedded example serves cleartext only".into());
    }
    let mut config = serve.hub.clone();
    if config.dev && config.jwt_secret.is_none() && config.jwt_public_key_pem.is_none() {
        // As `tidings serve --dev`: a secret for this run only.
        config.jwt_secret = Some(format!("{:032x}", rand::random::<u128>()));
    }
    let (hub, disk) = match serve.history() {
        HistoryChoice::Disk { dir, durability } => {
            let store = Arc::new(DiskStore::open(DiskOptions {
                dir,
                durability,
                retention: Retention::of(&config),
            })?);
            (
                Hub::with_history(config, Arc::clone(&store) as _)?,
                Some(store),
            )
        }
        HistoryChoice::Cluster(options) => (Hub::clustered(config, options).await?, None),
        _ => (Hub::new(config)?, None),
    };
    let listener = tokio::net::TcpListener::bind(serve.listen).await?;
    use axum::serve::ListenerExt as _;
    println!(
        "tidings (embedded) listening on http://{}",
        listener.local_addr()?
    );
    let app = axum::Router::new()
        .merge(tidings_hub::router(hub.clone()))
        .into_make_service_with_connect_info::<SocketAddr>();
    let draining = hub.clone();
    let grace = serve.hub.shutdown_timeout;
    // Events are small and latency matters: no Nagle delay on any connection.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            draining.drain();
            let _ = tokio::time::timeout(grace, draining.streams_closed()).await;
        })
        .await?;
    if let Some(store) = disk {
        store.close();
    }
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
