//! `tidings tail URL`: subscribes to an event stream with `tidings-client` and prints each
//! event as it arrives; reconnects like a browser, saying so on stderr.
//!
//! Output, on stdout, one line per item, flushed at once:
//! - by default, a readable line per event (`<type> <id> <data>`, coloured when stdout is a
//!   terminal), multi-line data indented under it;
//! - with `--json`, one object per event, `{"event","data","id","retry"?}` (`retry`, in ms,
//!   when the server set the reconnection time since the previous event), and
//!   `{"comment": "..."}` with `--comments`.
//!
//! Connections, errors and reconnections go to stderr. Ctrl-C (or SIGTERM) ends it with exit
//! status 0; so do a `204 No Content` from the server and a closed stdout (`| head`). An
//! error the client will not retry ends it with status 1.

use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use super::json_line::JsonLine;
use anyhow::Context as _;
use tidings_client::{CloseReason, EventStream, SseItem};

/// Arguments of `tidings tail`.
#[derive(Debug, clap::Args)]
pub struct TailArgs {
    /// The stream's URL, e.g. http://127.0.0.1:8080/events
    pub url: String,
    /// Topic to subscribe to, added to the URL as `topic=` (repeatable)
    #[arg(long, value_name = "TOPIC")]
    pub topic: Vec<String>,
    /// Extra request header, as 'Name: value' (repeatable)
    #[arg(long, short = 'H', value_name = "HEADER")]
    pub header: Vec<String>,
    /// Resume after this event id (sent as `Last-Event-ID`)
    #[arg(long, value_name = "ID")]
    pub last_event_id: Option<String>,
    /// Token, sent as `Authorization: Bearer`
    #[arg(long, env = "TIDINGS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print one JSON object per line, as `tidings parse` does
    #[arg(long)]
    pub json: bool,
    /// Also print comments (heartbeats)
    #[arg(long)]
    pub comments: bool,
    /// Reconnect when no byte arrives for this long (e.g. 45s); off by default
    #[arg(long, value_name = "DURATION", value_parser = tidings_hub::units::parse_duration)]
    pub read_timeout: Option<Duration>,
    /// Give up after this many connection attempts in a row that fail
    #[arg(long, value_name = "N")]
    pub max_attempts: Option<u32>,
    /// PEM file of certificates to trust for https besides the system's (a private CA, or a
    /// hub's self-signed certificate)
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<std::path::PathBuf>,
}

/// Runs `tidings tail`.
pub fn run(args: TailArgs) -> anyhow::Result<ExitCode> {
    let stream = build(&args)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let out = Output {
        json: args.json,
        comments: args.comments,
        color: io::stdout().is_terminal(),
        err_color: io::stderr().is_terminal(),
        pending_retry: Default::default(),
    };
    runtime.block_on(tail(stream, out))
}

fn build(args: &TailArgs) -> anyhow::Result<EventStream> {
    let mut builder =
        EventStream::builder(with_topics(&args.url, &args.topic)).comments(args.comments);
    for header in &args.header {
        let (name, value) = header
            .split_once(':')
            .with_context(|| format!("--header {header:?} is not 'Name: value'"))?;
        builder = builder.header(name.trim(), value.trim());
    }
    if let Some(token) = &args.token {
        builder = builder.bearer_token(token);
    }
    if let Some(id) = &args.last_event_id {
        builder = builder.last_event_id(id);
    }
    if let Some(timeout) = args.read_timeout {
        builder = builder.read_timeout(timeout);
    }
    if let Some(attempts) = args.max_attempts {
        builder = builder.max_attempts(attempts);
    }
    if let Some(path) = &args.cacert {
        let pem = std::fs::read(path)
            .with_context(|| format!("--cacert: cannot read {}", path.display()))?;
        builder = builder.root_certificates_pem(&pem);
    }
    Ok(builder.build()?)
}

async fn tail(mut stream: EventStream, out: Output) -> anyhow::Result<ExitCode> {
    let mut stdout = io::stdout().lock();
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        let item = tokio::select! {
            () = &mut stop => return Ok(ExitCode::SUCCESS),
            item = stream.next() => item,
        };
        let Some(item) = item else {
            return Ok(ExitCode::SUCCESS);
        };
        if let Some(line) = out.stdout_line(&item) {
            let written = writeln!(stdout, "{line}").and_then(|()| stdout.flush());
            match written {
                Err(err) if err.kind() == io::ErrorKind::BrokenPipe => {
                    return Ok(ExitCode::SUCCESS)
                }
                result => result.context("cannot write to stdout")?,
            }
        }
        if let Some(line) = out.stderr_line(&item) {
            eprintln!("{line}");
        }
        if let SseItem::Closed(reason) = item {
            return Ok(match reason {
                CloseReason::NoContent | CloseReason::Requested => ExitCode::SUCCESS,
                _ => ExitCode::FAILURE,
            });
        }
    }
}

/// Ctrl-C, or SIGTERM on Unix.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// Adds `topic=` query parameters to a URL.
fn with_topics(url: &str, topics: &[String]) -> String {
    let mut url = url.to_owned();
    for topic in topics {
        if !url.contains('?') {
            url.push('?');
        } else if !url.ends_with(['?', '&']) {
            url.push('&');
        }
        url.push_str("topic=");
        url.push_str(&encode_query_value(topic));
    }
    url
}

/// What a query value keeps as it is: unreserved characters, and `/` and `*`, common in topic
/// patterns and allowed in a query, so URLs stay readable.
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/')
    .remove(b'*');

/// Percent-encodes a query value.
fn encode_query_value(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, QUERY_VALUE).to_string()
}

/// How items are shown.
struct Output {
    json: bool,
    comments: bool,
    color: bool,
    err_color: bool,
    /// A `retry:` seen since the last event, printed with the next one (`--json`).
    pending_retry: std::cell::Cell<Option<u128>>,
}

const BOLD_CYAN: &str = "\x1b[1;36m";
const BOLD_YELLOW: &str = "\x1b[1;33m";
const DIM: &str = "\x1b[2m";
const RED: &str = "\x1b[31m";
const RESET: &str = "\x1b[0m";

impl Output {
    /// The stdout line for an item, if it has one.
    fn stdout_line(&self, item: &SseItem) -> Option<String> {
        if self.json {
            return self.json_line(item);
        }
        let paint = |style: &str, text: &str| paint(self.color, style, text);
        match item {
            SseItem::Event(e) => Some(human_event(&e.event, &e.id, &e.data, &paint, BOLD_CYAN)),
            SseItem::Reset(r) => {
                let e = &r.event;
                let line = human_event(&e.event, &e.id, &e.data, &paint, BOLD_YELLOW);
                Some(format!(
                    "{line}\n{}",
                    paint(
                        BOLD_YELLOW,
                        &format!(
                            "  (the hub could not resume after {:?}: {}; earlier state may be stale)",
                            r.last_event_id, r.reason
                        )
                    )
                ))
            }
            SseItem::Comment(text) if self.comments => Some(paint(DIM, &format!(": {text}"))),
            _ => None,
        }
    }

    fn json_line(&self, item: &SseItem) -> Option<String> {
        let line = match item {
            SseItem::Event(e) => {
                JsonLine::event(&e.event, &e.data, &e.id).with_retry(self.pending_retry.take())
            }
            SseItem::Reset(r) => JsonLine::event(&r.event.event, &r.event.data, &r.event.id)
                .with_retry(self.pending_retry.take()),
            SseItem::Retry(delay) => {
                self.pending_retry.set(Some(delay.as_millis()));
                return None;
            }
            SseItem::Comment(text) if self.comments => JsonLine::Comment { comment: text },
            _ => return None,
        };
        serde_json::to_string(&line).ok()
    }

    /// The stderr line for an item, if it has one.
    fn stderr_line(&self, item: &SseItem) -> Option<String> {
        let paint = |style: &str, text: &str| paint(self.err_color, style, text);
        let text = match item {
            SseItem::Open(open) => {
                paint(DIM, &format!("connected to {} ({})", open.url, open.status))
            }
            SseItem::Error {
                error,
                will_retry: true,
            } => paint(DIM, &format!("connection lost: {error}")),
            SseItem::Error {
                error,
                will_retry: false,
            } => paint(RED, &format!("error: {error}")),
            SseItem::Reconnecting { delay, attempt } => paint(
                DIM,
                &format!("reconnecting in {} (attempt {attempt})", seconds(*delay)),
            ),
            SseItem::Closed(CloseReason::NoContent) => {
                paint(DIM, "the server asked not to reconnect (204 No Content)")
            }
            SseItem::Closed(CloseReason::AttemptsExhausted) => {
                paint(RED, "giving up: too many failed attempts in a row")
            }
            _ => return None,
        };
        Some(text)
    }
}

fn human_event(
    event: &str,
    id: &str,
    data: &str,
    paint: &dyn Fn(&str, &str) -> String,
    style: &str,
) -> String {
    let mut line = paint(style, event);
    if !id.is_empty() {
        line.push(' ');
        line.push_str(&paint(DIM, &format!("#{id}")));
    }
    let mut lines = data.split('\n');
    line.push(' ');
    line.push_str(lines.next().unwrap_or_default());
    for more in lines {
        line.push_str("\n    ");
        line.push_str(more);
    }
    line
}

fn paint(on: bool, style: &str, text: &str) -> String {
    if on {
        format!("{style}{text}{RESET}")
    } else {
        text.to_owned()
    }
}

fn seconds(delay: Duration) -> String {
    format!("{:.1}s", delay.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidings_client::Event;

    fn plain(json: bool, comments: bool) -> Output {
        Output {
            json,
            comments,
            color: false,
            err_color: false,
            pending_retry: Default::default(),
        }
    }

    fn event(kind: &str, data: &str, id: &str) -> SseItem {
        SseItem::Event(Event {
            event: kind.into(),
            data: data.into(),
            id: id.into(),
        })
    }

    #[test]
    fn topics_are_appended_as_encoded_query_parameters() {
        let topics = ["orders/*".to_owned(), "a b&c".to_owned()];
        assert_eq!(
            with_topics("http://h/events", &topics),
            "http://h/events?topic=orders/*&topic=a%20b%26c"
        );
        assert_eq!(
            with_topics("http://h/events?x=1", &topics[..1]),
            "http://h/events?x=1&topic=orders/*"
        );
        assert_eq!(
            with_topics("http://h/events?", &topics[..1]),
            "http://h/events?topic=orders/*"
        );
        assert_eq!(encode_query_value("é"), "%C3%A9");
    }

    #[test]
    fn json_lines_are_one_object_per_event_with_the_retry_set_before_it() {
        let out = plain(true, true);
        assert_eq!(
            out.stdout_line(&event("tick", "a\nb", "7")).as_deref(),
            Some(r#"{"event":"tick","data":"a\nb","id":"7"}"#)
        );
        assert_eq!(
            out.stdout_line(&SseItem::Retry(Duration::from_millis(500))),
            None
        );
        assert_eq!(
            out.stdout_line(&event("tick", "b", "8")).as_deref(),
            Some(r#"{"event":"tick","data":"b","id":"8","retry":500}"#)
        );
        assert_eq!(
            out.stdout_line(&event("tick", "c", "9")).as_deref(),
            Some(r#"{"event":"tick","data":"c","id":"9"}"#)
        );
        assert_eq!(
            out.stdout_line(&SseItem::Comment("hi".into())).as_deref(),
            Some(r#"{"comment":"hi"}"#)
        );
        assert_eq!(
            plain(true, false).stdout_line(&SseItem::Comment("hi".into())),
            None
        );
    }

    #[test]
    fn readable_lines_show_type_id_and_indented_data_without_colour_off_a_terminal() {
        let out = plain(false, false);
        assert_eq!(
            out.stdout_line(&event("message", "one\ntwo", ""))
                .as_deref(),
            Some("message one\n    two")
        );
        assert_eq!(
            out.stdout_line(&event("tick", "x", "42")).as_deref(),
            Some("tick #42 x")
        );
        assert_eq!(out.stdout_line(&SseItem::Retry(Duration::ZERO)), None);
    }

    #[test]
    fn colour_is_used_only_when_asked() {
        let coloured = Output {
            color: true,
            ..plain(false, false)
        };
        let line = coloured
            .stdout_line(&event("tick", "x", "1"))
            .expect("a line");
        assert!(line.contains("\x1b["), "{line:?}");
    }

    #[test]
    fn reconnections_are_reported_on_stderr() {
        let out = plain(false, false);
        let line = out.stderr_line(&SseItem::Reconnecting {
            delay: Duration::from_millis(1500),
            attempt: 2,
        });
        assert_eq!(line.as_deref(), Some("reconnecting in 1.5s (attempt 2)"));
        assert_eq!(out.stderr_line(&event("m", "d", "")), None);
    }
}
