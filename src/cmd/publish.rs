//! `tidings publish`: one event to a running hub, from the command line.

use std::process::ExitCode;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Arguments of `tidings publish`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("payload").required(true).args(["data", "text"])))]
#[command(group(clap::ArgGroup::new("target").required(true).multiple(true).args(["topic", "user", "broadcast"])))]
pub struct PublishArgs {
    /// The hub's base URL
    #[arg(long, env = "TIDINGS_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Topic to publish to (repeatable)
    #[arg(long)]
    pub topic: Vec<String>,
    /// User to address (repeatable)
    #[arg(long)]
    pub user: Vec<String>,
    /// Send to every connection (`POST /broadcast`)
    #[arg(long, conflicts_with_all = ["topic", "user"])]
    pub broadcast: bool,
    /// SSE event type [default: message]
    #[arg(long)]
    pub event: Option<String>,
    /// JSON data (any JSON value)
    #[arg(long)]
    pub data: Option<String>,
    /// Text data, sent as-is (one `data:` line per line)
    #[arg(long)]
    pub text: Option<String>,
    /// A `retry:` (milliseconds) to send with the event
    #[arg(long)]
    pub retry: Option<u64>,
    /// Token or publish key, sent as `Authorization: Bearer`
    #[arg(long, env = "TIDINGS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// Runs `tidings publish`.
pub fn run(args: PublishArgs) -> anyhow::Result<ExitCode> {
    let mut body = serde_json::Map::new();
    match args.topic.as_slice() {
        [] => {}
        [one] => {
            body.insert("topic".into(), one.clone().into());
        }
        many => {
            body.insert("topics".into(), many.to_vec().into());
        }
    }
    match args.user.as_slice() {
        [] => {}
        [one] => {
            body.insert("user".into(), one.clone().into());
        }
        many => {
            body.insert("users".into(), many.to_vec().into());
        }
    }
    if let Some(e) = &args.event {
        body.insert("event".into(), e.clone().into());
    }
    if let Some(d) = &args.data {
        let value: serde_json::Value = serde_json::from_str(d)
            .context("--data must be JSON (quote strings: --data '\"hi\"', or use --text)")?;
        body.insert("data".into(), value);
    }
    if let Some(t) = &args.text {
        body.insert("text".into(), t.clone().into());
    }
    if let Some(r) = args.retry {
        body.insert("retry".into(), r.into());
    }
    let path = if args.broadcast {
        "/broadcast"
    } else {
        "/publish"
    };
    let url = format!("{}{}", args.url.trim_end_matches('/'), path);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (status, reply) = runtime.block_on(request(
        http::Method::POST,
        &url,
        args.token.as_deref(),
        Some(serde_json::Value::Object(body)),
    ))?;
    Ok(report("publish", status, reply))
}

/// Prints a successful reply on stdout, or the error's message on stderr.
pub(crate) fn report(what: &str, status: http::StatusCode, reply: String) -> ExitCode {
    if status.is_success() {
        println!("{reply}");
        ExitCode::SUCCESS
    } else {
        let message = serde_json::from_str::<serde_json::Value>(&reply)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or(reply);
        eprintln!("tidings: {what} failed: {status}: {message}");
        ExitCode::FAILURE
    }
}

/// One request to the hub (a JSON body if given); the status and the reply's text.
pub(crate) async fn request(
    method: http::Method,
    url: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
) -> anyhow::Result<(http::StatusCode, String)> {
    let uri: http::Uri = url
        .parse()
        .with_context(|| format!("--url: {url:?} is not a URL"))?;
    if uri.scheme_str() != Some("http") {
        anyhow::bail!("--url: only http:// URLs are supported");
    }
    let mut req = http::Request::builder().method(method).uri(uri);
    if body.is_some() {
        req = req.header(http::header::CONTENT_TYPE, "application/json");
    }
    if let Some(t) = token {
        req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let body = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
    let req = req.body(Full::new(body))?;
    let client = Client::builder(TokioExecutor::new()).build_http();
    let res = client
        .request(req)
        .await
        .with_context(|| format!("cannot reach the hub at {url}"))?;
    let status = res.status();
    let bytes = res
        .into_body()
        .collect()
        .await
        .context("reading the hub's reply")?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}
