//! HTTPS on the hub (`--tls-cert`, `--tls-key`): a self-signed certificate made by the test
//! (with Debian's `openssl`), streams over HTTP/2 (many on one connection) and over HTTP/1.1,
//! the Rust client and `tidings tail` over https, certificate reload on SIGHUP, and refusals of
//! a bad configuration.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use support::{json, serve_until_exit, Hub, Token, PUBLISH_KEY, SECRET, WAIT};
use tokio::net::TcpStream;

/// A self-signed certificate for 127.0.0.1 and localhost (not a CA: rustls refuses a CA
/// certificate as a server's).
fn certificate(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .args(["-days", "1", "-subj", &format!("/CN={name}")])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .output()
        .unwrap_or_else(|e| panic!("the TLS tests need `openssl` (Debian package openssl): {e}"));
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

fn tls_hub(cert: &Path, key: &Path, extra: &[&str]) -> Hub {
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let mut full = vec![
        "--memory",
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        cert,
        "--tls-key",
        key,
        "--jwt-secret",
        SECRET,
        "--publish-key",
        PUBLISH_KEY,
        "--public-topic",
        "**",
    ];
    full.extend_from_slice(extra);
    Hub::launch_binary(&full, &[])
}

/// A TLS connection to the hub trusting `cert`, offering `alpn`.
async fn tls_connect(
    hub: &Hub,
    cert: &Path,
    alpn: &[u8],
) -> (tokio_rustls::client::TlsStream<TcpStream>, Vec<u8>) {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(hub.addr()).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = connector.connect(name, tcp).await.expect("a TLS handshake");
    let peer = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(alpn), "ALPN");
    (tls, peer)
}

/// Reads one body frame's text with a deadline.
async fn frame_text(body: &mut hyper::body::Incoming) -> String {
    loop {
        let frame = tokio::time::timeout(WAIT, body.frame())
            .await
            .expect("a frame in time")
            .expect("the stream is open")
            .expect("a good frame");
        if let Ok(data) = frame.into_data() {
            return String::from_utf8_lossy(&data).into_owned();
        }
    }
}

#[tokio::test]
async fn many_streams_share_one_http2_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path(), "hub");
    let hub = tls_hub(&cert, &key, &["--heartbeat", "1s"]);
    let (tls, _) = tls_connect(&hub, &cert, b"h2").await;
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .expect("an HTTP/2 connection");
    tokio::spawn(conn);
    let mut bodies = Vec::new();
    for i in 0..10 {
        let req = hyper::Request::get(format!("https://127.0.0.1/events?topic=tabs/{i}&topic=all"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let mut sender = sender.clone();
        let res = sender.send_request(req).await.expect("a stream");
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["content-type"], "text/event-stream");
        let mut body = res.into_body();
        let prelude = frame_text(&mut body).await;
        assert!(prelude.contains("event: connected"), "{prelude}");
        bodies.push(body);
    }
    // Order: each of the ten streams gets the same events in publish order.
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(
            hub.publish_tls(&cert, &json!({"topic": "all", "data": n}))
                .await,
        );
    }
    for body in &mut bodies {
        let mut text = String::new();
        while ids.iter().any(|id| !text.contains(&format!("id: {id}"))) {
            text.push_str(&frame_text(body).await);
        }
        let at: Vec<usize> = ids
            .iter()
            .map(|id| text.find(&format!("id: {id}")).unwrap())
            .collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "in order: {text}");
    }
    // Heartbeats reach an idle HTTP/2 stream.
    let beat = frame_text(&mut bodies[0]).await;
    assert!(beat.starts_with(':'), "a heartbeat comment: {beat:?}");
    // A drain reaches every HTTP/2 stream: a retry, then the end.
    hub.sigterm();
    for body in &mut bodies {
        let mut text = String::new();
        while let Some(Ok(frame)) = tokio::time::timeout(WAIT, body.frame())
            .await
            .expect("the end in time")
        {
            if let Ok(d) = frame.into_data() {
                text.push_str(&String::from_utf8_lossy(&d));
            }
        }
        assert!(text.contains("retry: "), "the drain's retry: {text:?}");
    }
}

/// The next event of this type from the Rust client, skipping the rest.
async fn next_event(
    stream: &mut tidings_client::EventStream,
    event: &str,
) -> tidings_client::Event {
    loop {
        match tokio::time::timeout(WAIT, stream.next())
            .await
            .expect("an item in time")
        {
            Some(tidings_client::SseItem::Event(e)) if e.event == event => return e,
            Some(tidings_client::SseItem::Error { error, .. }) => {
                panic!("the client failed: {error}")
            }
            Some(_) => {}
            None => panic!("the client stopped"),
        }
    }
}

trait PublishTls {
    async fn publish_tls(&self, cert: &Path, body: &serde_json::Value) -> String;
}

impl PublishTls for Hub {
    /// `POST /publish` over https/HTTP/1.1.
    async fn publish_tls(&self, cert: &Path, body: &serde_json::Value) -> String {
        let (tls, _) = tls_connect(self, cert, b"http/1.1").await;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .unwrap();
        tokio::spawn(conn);
        let req = hyper::Request::post("/publish")
            .header("host", "127.0.0.1")
            .header("authorization", format!("Bearer {PUBLISH_KEY}"))
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let res = sender.send_request(req).await.unwrap();
        assert_eq!(res.status(), 200);
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        v["id"].as_str().unwrap().to_owned()
    }
}

#[tokio::test]
async fn the_rust_client_and_tidings_tail_speak_https() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path(), "hub");
    let hub = tls_hub(&cert, &key, &[]);
    let url = format!(
        "https://127.0.0.1:{}/events?topic=secure",
        hub.addr().port()
    );
    let pem = std::fs::read(&cert).unwrap();
    let mut stream = tidings_client::EventStream::builder(url.clone())
        .root_certificates_pem(&pem)
        .build()
        .expect("an https stream");
    let mut tail = tokio::process::Command::new(support::hub::BINARY)
        .args(["tail", &url, "--json", "--cacert", cert.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Both connected (the client's `connected` event; tail's first line), then a publish.
    next_event(&mut stream, "connected").await;
    let stdout = tail.stdout.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let first = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(first.contains("connected"), "{first}");
    let id = hub
        .publish_tls(&cert, &json!({"topic": "secure", "data": "over tls"}))
        .await;
    let event = next_event(&mut stream, "message").await;
    assert_eq!(
        (event.id.as_str(), event.data.as_str()),
        (id.as_str(), "\"over tls\"")
    );
    let line = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(line.contains("over tls") && line.contains(&id), "{line}");
    // An untrusted certificate is refused, not ignored.
    let mut untrusted = tidings_client::EventStream::builder(url)
        .max_attempts(1)
        .build()
        .unwrap();
    loop {
        match tokio::time::timeout(WAIT, untrusted.next())
            .await
            .expect("in time")
        {
            Some(tidings_client::SseItem::Event(e)) => {
                panic!("an untrusted hub was believed: {e:?}")
            }
            Some(tidings_client::SseItem::Error { error, .. }) => {
                assert!(error.to_string().contains("certificate"), "{error}");
            }
            None | Some(tidings_client::SseItem::Closed(_)) => break,
            Some(_) => {}
        }
    }
}

#[tokio::test]
async fn sighup_reloads_the_certificate_without_dropping_streams() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path(), "first");
    let hub = tls_hub(&cert, &key, &[]);
    let (_, before) = tls_connect(&hub, &cert, b"h2").await;
    // A stream open on the old certificate.
    let (tls, _) = tls_connect(&hub, &cert, b"http/1.1").await;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let res = sender
        .send_request(
            hyper::Request::get("/events?topic=r")
                .header("host", "127.0.0.1")
                .body(Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    let mut body = res.into_body();
    assert!(frame_text(&mut body).await.contains("connected"));

    let (new_cert, new_key) = certificate(dir.path(), "second");
    // The client trusts both while the hub switches (it may still serve the old one).
    let both = dir.path().join("both.pem");
    let pem = [
        std::fs::read(&cert).unwrap(),
        std::fs::read(&new_cert).unwrap(),
    ]
    .concat();
    std::fs::write(&both, pem).unwrap();
    // Replaced whole (a rename), as a certificate tool does.
    std::fs::rename(&new_cert, &cert).unwrap();
    std::fs::rename(&new_key, &key).unwrap();
    hub.signal("HUP");
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (_, now) = tls_connect(&hub, &both, b"h2").await;
        if now != before {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "SIGHUP did not reload the certificate"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let id = hub
        .publish_tls(&cert, &json!({"topic": "r", "data": 1}))
        .await;
    let text = frame_text(&mut body).await;
    assert!(
        text.contains(&id),
        "the stream on the old certificate goes on: {text}"
    );
}

#[tokio::test]
async fn per_user_limits_hold_over_http2() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path(), "hub");
    let hub = tls_hub(&cert, &key, &["--max-connections-per-user", "2"]);
    let token = Token::new().sub("u").subscribe(&["**"]).sign();
    let (tls, _) = tls_connect(&hub, &cert, b"h2").await;
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let mut statuses = Vec::new();
    let mut keep = Vec::new();
    for _ in 0..3 {
        let req = hyper::Request::get("https://127.0.0.1/events?topic=x")
            .header("authorization", format!("Bearer {token}"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let res = sender.clone().send_request(req).await.unwrap();
        statuses.push(res.status().as_u16());
        keep.push(res);
    }
    assert_eq!(statuses, [200, 200, 429], "the limit counts HTTP/2 streams");
}

#[test]
fn a_bad_tls_configuration_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, _) = certificate(dir.path(), "hub");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a pem").unwrap();
    let cert = cert.to_str().unwrap();
    for (args, needle) in [
        (vec!["--tls-cert", cert], "go together"),
        (
            vec!["--tls-cert", cert, "--tls-key", garbage.to_str().unwrap()],
            "--tls-key",
        ),
        (
            vec!["--tls-cert", garbage.to_str().unwrap(), "--tls-key", cert],
            "--tls-cert",
        ),
    ] {
        let mut full = vec!["--memory", "--listen", "127.0.0.1:0", "--dev"];
        full.extend(args);
        let out = serve_until_exit(&full, &[], WAIT);
        assert!(out.status.is_some_and(|s| !s.success()), "{out:?}");
        assert!(out.stderr.contains(needle), "{needle}: {}", out.stderr);
    }
}

#[tokio::test]
async fn a_stalled_http2_stream_is_cut_and_its_neighbours_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path(), "hub");
    let hub = tls_hub(
        &cert,
        &key,
        &["--queue-bytes", "64KiB", "--max-event-bytes", "16KiB"],
    );
    let (tls, _) = tls_connect(&hub, &cert, b"h2").await;
    // Small windows, so a stream nobody reads pushes back on the hub at once.
    let (sender, conn) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .initial_stream_window_size(65_535)
            .initial_connection_window_size(1 << 24)
            .handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let open = |sender: &hyper::client::conn::http2::SendRequest<Empty<Bytes>>| {
        let mut sender = sender.clone();
        async move {
            let req = hyper::Request::get("https://127.0.0.1/events?topic=big")
                .body(Empty::<Bytes>::new())
                .unwrap();
            let mut body = sender.send_request(req).await.unwrap().into_body();
            assert!(frame_text(&mut body).await.contains("connected"));
            body
        }
    };
    let mut reader = open(&sender).await;
    let _stalled = open(&sender).await; // never read
    const EVENTS: usize = 200;
    let counting = tokio::spawn(async move {
        let mut text = String::new();
        while text.matches("\ndata: ").count() < EVENTS {
            text.push_str(&frame_text(&mut reader).await);
        }
    });
    let payload = "x".repeat(4000);
    for i in 0..EVENTS {
        hub.publish_tls(
            &cert,
            &json!({"topic": "big", "data": {"i": i, "pad": payload}}),
        )
        .await;
    }
    tokio::time::timeout(WAIT, counting)
        .await
        .expect("the reading stream got every event")
        .unwrap();
    // The stalled stream was cut (its queue passed --queue-bytes), read over https.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (tls, _) = tls_connect(&hub, &cert, b"http/1.1").await;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .unwrap();
        tokio::spawn(conn);
        let req = hyper::Request::get("/metrics")
            .header("host", "127.0.0.1")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let res = sender.send_request(req).await.unwrap();
        let text = res.into_body().collect().await.unwrap().to_bytes();
        let metrics = support::Metrics::parse(&String::from_utf8_lossy(&text));
        if metrics.sum("tidings_slow_consumer_disconnects_total") >= Some(1.0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the stalled HTTP/2 stream was never cut"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
