//! `sse-contract-service` as a conformance harness drives it: the real binary on a free port,
//! a scripted SSE server for its client to connect to, and a callback receiver that records
//! the numbered messages.

use std::process::Stdio;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{Method, Request, StatusCode};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use tidings_client::testing::ScriptServer;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(10);

/// The service, started with `--port 0`, killed on drop if still alive.
struct Service {
    child: Child,
    base: String,
}

impl Service {
    async fn start() -> Service {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sse-contract-service"))
            .args(["--port", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start sse-contract-service");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .expect("starts within the deadline")
            .expect("readable stdout")
            .expect("a first line");
        let base = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Service { child, base }
    }
}

/// One HTTP exchange: status, `Location`, and the body as JSON (or `Null`).
async fn call(
    method: Method,
    url: &str,
    body: Option<Value>,
) -> (StatusCode, Option<String>, Value) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let request = Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("valid request");
    let response = tokio::time::timeout(WAIT, client.request(request))
        .await
        .expect("an answer within the deadline")
        .expect("an HTTP answer");
    let status = response.status();
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("readable body")
        .to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, location, value)
}

/// Records every callback as `(n, body)`, in arrival order.
struct Callbacks {
    url: String,
    received: mpsc::UnboundedReceiver<(u64, Value)>,
}

impl Callbacks {
    async fn start() -> Callbacks {
        let (tx, received) = mpsc::unbounded_channel();
        let router = Router::new()
            .route(
                "/cb/{n}",
                post(
                    |State(tx): State<mpsc::UnboundedSender<(u64, Value)>>,
                     Path(n): Path<u64>,
                     body: Bytes| async move {
                        let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        let _ = tx.send((n, value));
                        StatusCode::ACCEPTED
                    },
                ),
            )
            .with_state(tx);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local address");
        tokio::spawn(async move { axum::serve(listener, router).await });
        Callbacks {
            url: format!("http://{addr}/cb"),
            received,
        }
    }

    async fn next(&mut self) -> (u64, Value) {
        tokio::time::timeout(WAIT, self.received.recv())
            .await
            .expect("a callback within the deadline")
            .expect("receiver running")
    }
}

#[tokio::test]
async fn reports_its_capabilities() {
    let service = Service::start().await;
    let (status, _, body) = call(Method::GET, &service.base, None).await;
    assert_eq!(status, StatusCode::OK);
    let capabilities: Vec<&str> = body["capabilities"]
        .as_array()
        .expect("a capabilities array")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for expected in [
        "comments",
        "headers",
        "last-event-id",
        "post",
        "report",
        "read-timeout",
        "restart",
        "bom",
        "server-directed-shutdown-request",
    ] {
        assert!(
            capabilities.contains(&expected),
            "{expected} in {capabilities:?}"
        );
    }
    // Every event type is delivered without a `listen`, so this one is not claimed.
    assert!(!capabilities.contains(&"event-type-listeners"));
}

#[tokio::test]
async fn an_instance_relays_what_its_client_sees_in_order_and_obeys_commands() {
    let service = Service::start().await;
    let sse = ScriptServer::bind().await.expect("bind");
    let mut callbacks = Callbacks::start().await;

    let params = json!({
        "streamUrl": sse.url("/stream"),
        "callbackUrl": callbacks.url,
        "tag": "relay test",
        "initialDelayMs": 0,
        "lastEventId": "abc",
        "headers": {"x-test": "1"},
        "readTimeoutMs": null,
    });
    let (status, location, _) = call(Method::POST, &service.base, Some(params)).await;
    assert!(status.is_success(), "{status}");
    let instance = location.expect("a Location header");
    assert!(instance.starts_with(&service.base), "{instance}");

    let mut conn = sse.accept().await.expect("the client connects");
    assert_eq!(conn.request().header("x-test"), Some("1"));
    assert_eq!(conn.request().header("last-event-id"), Some("abc"));
    conn.start_stream().await.expect("head");
    conn.send(b":hi\nevent: greet\nid: 1\ndata: a\n\ndata: b\n\n")
        .await
        .expect("events");
    conn.close().await.expect("close");

    let expected = [
        json!({"kind": "comment", "comment": "hi"}),
        json!({"kind": "event", "event": {"type": "greet", "data": "a", "id": "1"}}),
        json!({"kind": "event", "event": {"type": "message", "data": "b", "id": "1"}}),
    ];
    for (i, message) in expected.iter().enumerate() {
        assert_eq!(callbacks.next().await, (i as u64 + 1, message.clone()));
    }
    let (n, error) = callbacks.next().await;
    assert_eq!((n, error["kind"].as_str()), (4, Some("error")));
    assert!(error["error"].as_str().is_some_and(|e| !e.is_empty()));

    // It reconnected by itself, with the last id; a restart drops that connection without
    // an error callback.
    let mut second = sse.accept().await.expect("reconnection");
    assert_eq!(second.request().header("last-event-id"), Some("1"));
    second.start_stream().await.expect("head");
    let (status, _, _) = call(Method::POST, &instance, Some(json!({"command": "restart"}))).await;
    assert!(status.is_success(), "{status}");
    assert!(
        second.client_closed_within(WAIT).await,
        "restart drops the connection"
    );
    let mut third = sse.accept().await.expect("connection after restart");
    third.start_stream().await.expect("head");
    third.send(b"data: after\n\n").await.expect("event");
    assert_eq!(
        callbacks.next().await,
        (
            5,
            json!({"kind": "event", "event": {"type": "message", "data": "after", "id": "1"}})
        )
    );

    let listen = json!({"command": "listen", "listen": {"type": "greet"}});
    assert!(call(Method::POST, &instance, Some(listen))
        .await
        .0
        .is_success());
    let unknown = json!({"command": "jump"});
    assert_eq!(
        call(Method::POST, &instance, Some(unknown)).await.0,
        StatusCode::BAD_REQUEST
    );

    let (status, _, _) = call(Method::DELETE, &instance, None).await;
    assert!(status.is_success(), "{status}");
    assert!(
        third.client_closed_within(WAIT).await,
        "delete stops the client"
    );
    assert_eq!(
        call(Method::DELETE, &instance, None).await.0,
        StatusCode::NOT_FOUND
    );
    let restart = json!({"command": "restart"});
    assert_eq!(
        call(Method::POST, &instance, Some(restart)).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn method_and_body_reach_the_stream_server() {
    let service = Service::start().await;
    let sse = ScriptServer::bind().await.expect("bind");
    let callbacks = Callbacks::start().await;
    let params = json!({
        "streamUrl": sse.url("/"),
        "callbackUrl": callbacks.url,
        "method": "REPORT",
        "body": "{\"hello\": \"world\"}",
        "headers": {"content-type": "application/json; charset=utf-8"},
    });
    let (status, _, _) = call(Method::POST, &service.base, Some(params)).await;
    assert!(status.is_success(), "{status}");
    let conn = sse.accept().await.expect("the client connects");
    let request = conn.request();
    assert_eq!(request.method, "REPORT");
    assert_eq!(request.body, b"{\"hello\": \"world\"}");
    assert_eq!(
        request.header("content-type"),
        Some("application/json; charset=utf-8")
    );
}

#[tokio::test]
async fn bad_parameters_are_a_400() {
    let service = Service::start().await;
    for params in [
        json!({"callbackUrl": "http://127.0.0.1:1/cb"}),
        json!({"streamUrl": "http://127.0.0.1:1/", "callbackUrl": "not a url"}),
        json!({"streamUrl": "ftp://127.0.0.1/", "callbackUrl": "http://127.0.0.1:1/cb"}),
        json!({"streamUrl": "http://127.0.0.1:1/", "callbackUrl": "http://127.0.0.1:1/cb", "method": "BAD METHOD"}),
        json!("not an object"),
    ] {
        let (status, _, _) = call(Method::POST, &service.base, Some(params.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{params}");
    }
}

#[tokio::test]
async fn delete_on_the_root_stops_the_service() {
    let mut service = Service::start().await;
    let (status, _, _) = call(Method::DELETE, &service.base, None).await;
    assert!(status.is_success(), "{status}");
    let exit = tokio::time::timeout(WAIT, service.child.wait())
        .await
        .expect("exits within the deadline")
        .expect("exit status");
    assert_eq!(exit.code(), Some(0));
}
