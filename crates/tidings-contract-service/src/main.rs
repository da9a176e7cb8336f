//! `sse-contract-service`: drives `tidings-client` instances for an independent SSE client
//! conformance suite (the "SSE contract tests" protocol).
//!
//! It is a small REST service on `127.0.0.1:PORT` (default 8000, `--port`; `--port 0` picks a
//! free one). It prints `listening on http://127.0.0.1:PORT` on stdout once it accepts
//! requests.
//! - `GET /`: `{"capabilities": [...]}`, what the client supports.
//! - `DELETE /`: the service exits.
//! - `POST /` with `{streamUrl, callbackUrl, tag?, initialDelayMs?, readTimeoutMs?,
//!   lastEventId?, headers?, method?, body?}`: starts a client on `streamUrl`; `201` with a
//!   `Location` naming the instance; `400` on bad input.
//! - `POST <instance>` with `{"command": "restart"}` or
//!   `{"command": "listen", "listen": {"type": "..."}}`: `204`; `400` for an unknown
//!   command; `404` for an unknown instance.
//! - `DELETE <instance>`: stops that client; `404` if unknown.
//!
//! Everything an instance's client sees is POSTed as JSON to `<callbackUrl>/<n>`, n = 1, 2, 3,
//! …, one at a time and in order: `{"kind": "event", "event": {"type", "data", "id"}}`,
//! `{"kind": "comment", "comment"}`, and `{"kind": "error", "error"}` for each error.
//!
//! The client delivers every event type without being asked, so `event-type-listeners` is not
//! among the capabilities and `listen` is accepted as a no-op.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use clap::Parser;
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use serde_json::{json, Value};
use tidings_client::{EventStream, Handle, SseItem};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Serve the SSE client contract-test protocol for tidings-client.
#[derive(Debug, Parser)]
#[command(name = "sse-contract-service", version)]
struct Args {
    /// The port to listen on, on 127.0.0.1 (0 picks a free one)
    #[arg(long, default_value_t = 8000)]
    port: u16,
}

/// What the client supports, in the protocol's words.
const CAPABILITIES: &[&str] = &[
    "bom",
    "comments",
    "headers",
    "last-event-id",
    "post",
    "read-timeout",
    "report",
    "restart",
    "server-directed-shutdown-request",
];

/// How long `DELETE /` waits for open requests before the process ends anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

type HttpClient = Client<HttpConnector, Full<Bytes>>;

struct App {
    /// `http://127.0.0.1:PORT`, for `Location` headers.
    base: String,
    instances: Mutex<HashMap<u64, Instance>>,
    next_id: AtomicU64,
    callbacks: HttpClient,
    shutdown: watch::Sender<bool>,
}

struct Instance {
    handle: Handle,
    task: JoinHandle<()>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match serve(args.port).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("sse-contract-service: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(port: u16) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    let addr = listener.local_addr()?;
    let (shutdown, mut stop) = watch::channel(false);
    let app = Arc::new(App {
        base: format!("http://{addr}"),
        instances: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(1),
        callbacks: Client::builder(TokioExecutor::new()).build_http(),
        shutdown,
    });
    let router = Router::new()
        .route("/", get(status).delete(exit).post(create))
        .route("/streams/{id}", axum::routing::post(command).delete(remove))
        .with_state(app);
    println!("listening on http://{addr}");

    let mut stopped = stop.clone();
    let server = axum::serve(listener, router).with_graceful_shutdown(async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    });
    tokio::select! {
        result = server => result,
        () = async {
            let _ = stop.wait_for(|stop| *stop).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => Ok(()),
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

async fn status() -> Json<Value> {
    Json(json!({
        "name": "tidings-client",
        "clientVersion": env!("CARGO_PKG_VERSION"),
        "capabilities": CAPABILITIES,
    }))
}

async fn exit(State(app): State<Arc<App>>) -> StatusCode {
    let _ = app.shutdown.send(true);
    StatusCode::NO_CONTENT
}

/// The body of `POST /`. A `null` property counts as absent.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateStream {
    stream_url: String,
    callback_url: String,
    tag: Option<String>,
    initial_delay_ms: Option<u64>,
    read_timeout_ms: Option<u64>,
    last_event_id: Option<String>,
    headers: Option<HashMap<String, String>>,
    method: Option<String>,
    body: Option<String>,
}

async fn create(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let params: CreateStream = match serde_json::from_slice(&body) {
        Ok(params) => params,
        Err(err) => return bad_request(format!("invalid stream parameters: {err}")),
    };
    let callback_url = params.callback_url.trim_end_matches('/').to_owned();
    if !callback_url
        .parse::<Uri>()
        .is_ok_and(|uri| uri.scheme_str() == Some("http") && uri.host().is_some())
    {
        return bad_request(format!("invalid callbackUrl {:?}", params.callback_url));
    }
    let stream = match client_for(&params) {
        Ok(stream) => stream,
        Err(message) => return bad_request(message),
    };
    let id = app.next_id.fetch_add(1, Ordering::Relaxed);
    let handle = stream.handle();
    let tag = params.tag.unwrap_or_default();
    let task = tokio::spawn(relay(stream, app.callbacks.clone(), callback_url, tag));
    lock(&app.instances).insert(id, Instance { handle, task });
    let location = format!("{}/streams/{id}", app.base);
    (StatusCode::CREATED, [(header::LOCATION, location)]).into_response()
}

fn client_for(params: &CreateStream) -> Result<EventStream, String> {
    let mut builder = EventStream::builder(params.stream_url.as_str()).recognise_reset(false);
    if let Some(ms) = params.initial_delay_ms {
        builder = builder.initial_delay(Duration::from_millis(ms));
    }
    if let Some(ms) = params.read_timeout_ms.filter(|ms| *ms > 0) {
        builder = builder.read_timeout(Duration::from_millis(ms));
    }
    if let Some(id) = &params.last_event_id {
        builder = builder.last_event_id(id);
    }
    for (name, value) in params.headers.iter().flatten() {
        builder = builder.header(name, value);
    }
    if let Some(method) = &params.method {
        let method = Method::from_bytes(method.as_bytes())
            .map_err(|_| format!("invalid method {method:?}"))?;
        builder = builder.method(method);
    }
    if let Some(body) = &params.body {
        builder = builder.body(body.clone());
    }
    builder.build().map_err(|err| err.to_string())
}

/// Runs one instance's client, POSTing what it sees to the callback URL, one message at a
/// time, numbered from 1, so the order is kept.
async fn relay(mut stream: EventStream, http: HttpClient, callback_url: String, tag: String) {
    let mut n = 0u64;
    while let Some(item) = stream.next().await {
        let message = match item {
            SseItem::Event(event) => json!({
                "kind": "event",
                "event": {"type": event.event, "data": event.data, "id": event.id},
            }),
            SseItem::Comment(comment) => json!({"kind": "comment", "comment": comment}),
            SseItem::Error { error, .. } => json!({"kind": "error", "error": error.to_string()}),
            _ => continue,
        };
        n += 1;
        let url = format!("{callback_url}/{n}");
        if let Err(err) = post_json(&http, &url, &message).await {
            eprintln!("sse-contract-service [{tag}]: callback {url} failed: {err}");
        }
    }
}

async fn post_json(http: &HttpClient, url: &str, message: &Value) -> Result<(), String> {
    let request = axum::http::Request::post(url)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(message.to_string())))
        .map_err(|err| err.to_string())?;
    let response = http.request(request).await.map_err(|err| err.to_string())?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("answered {}", response.status()))
    }
}

/// The body of `POST <instance>`.
#[derive(Debug, Deserialize)]
struct Command {
    command: String,
    listen: Option<Listen>,
}

#[derive(Debug, Deserialize)]
struct Listen {
    #[serde(rename = "type")]
    kind: String,
}

async fn command(State(app): State<Arc<App>>, Path(id): Path<String>, body: Bytes) -> Response {
    let Some(handle) =
        instance_id(&id).and_then(|id| lock(&app.instances).get(&id).map(|i| i.handle.clone()))
    else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let command: Command = match serde_json::from_slice(&body) {
        Ok(command) => command,
        Err(err) => return bad_request(format!("invalid command: {err}")),
    };
    match command.command.as_str() {
        "restart" => {
            handle.restart();
            StatusCode::NO_CONTENT.into_response()
        }
        // Every event type is delivered already; an empty type is still a malformed command.
        "listen" if command.listen.is_some_and(|l| !l.kind.is_empty()) => {
            StatusCode::NO_CONTENT.into_response()
        }
        "listen" => bad_request("listen needs {\"listen\": {\"type\": \"...\"}}".into()),
        other => bad_request(format!("unknown command {other:?}")),
    }
}

async fn remove(State(app): State<Arc<App>>, Path(id): Path<String>) -> StatusCode {
    let removed = instance_id(&id).and_then(|id| lock(&app.instances).remove(&id));
    match removed {
        Some(instance) => {
            // Aborting drops the stream, which closes its connection; no callback follows.
            instance.task.abort();
            StatusCode::NO_CONTENT
        }
        None => StatusCode::NOT_FOUND,
    }
}

fn instance_id(id: &str) -> Option<u64> {
    id.parse().ok()
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, message).into_response()
}

/// The instance table holds no invariant a panic could break halfway, so a poisoned lock is
/// still usable.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
