//! What can go wrong, and the one rule that decides whether the client tries again.

use std::time::Duration;

use http::StatusCode;

/// The source of an I/O or HTTP failure, boxed so that the HTTP stack stays out of the API.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a connection failed or ended. Each one arrives in
/// [`SseItem::Error`](crate::SseItem::Error), which also says whether the client will
/// reconnect.
///
/// # The retry rule
/// [`Error::is_retryable`] decides, and nothing else does:
/// - **retry**: a connection that could not be made or broke ([`Connect`](Error::Connect),
///   [`Body`](Error::Body)), a timeout ([`ConnectTimeout`](Error::ConnectTimeout),
///   [`ReadTimeout`](Error::ReadTimeout)), a stream the server ended
///   ([`StreamEnded`](Error::StreamEnded)), and the statuses 5xx and 429 (waiting at least
///   their `Retry-After`);
/// - **stop**: every other status (4xx, and a 3xx that is not a redirect the client follows),
///   a `Content-Type` other than `text/event-stream`, a redirect that cannot
///   be followed or loops past the limit, a URL scheme the client cannot speak, and a line
///   longer than the limit (reconnecting would receive the same line again).
///
/// A `204 No Content` is not an error: it is the server's way to say "stop", and the stream
/// closes with [`CloseReason::NoContent`](crate::CloseReason::NoContent).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The TCP connection could not be made, or the request could not be sent. The message
    /// includes the whole chain of causes ("connection refused", …); the cause itself is the
    /// field.
    #[error("cannot connect: {}", causes(.0.as_ref()))]
    Connect(BoxError),
    /// No response head arrived within the connect timeout.
    #[error("no response within {0:?}")]
    ConnectTimeout(Duration),
    /// The connection broke while the stream was being read. The message includes the chain
    /// of causes.
    #[error("the connection broke: {}", causes(.0.as_ref()))]
    Body(BoxError),
    /// No byte arrived within the read timeout: the connection is presumed dead.
    #[error("no data within the read timeout of {0:?}")]
    ReadTimeout(Duration),
    /// The server closed the stream cleanly. Browsers reconnect in this case, and so does
    /// this client.
    #[error("the server closed the stream")]
    StreamEnded,
    /// The response had a status that does not open a stream.
    #[error("the server answered {status}")]
    Status {
        /// The status received.
        status: StatusCode,
        /// The `Retry-After` delay the server asked for, if it sent one in seconds.
        retry_after: Option<Duration>,
    },
    /// The response was not an event stream.
    #[error("the response is not an event stream (Content-Type: {})", found.as_deref().unwrap_or("none"))]
    ContentType {
        /// The `Content-Type` received, if any.
        found: Option<String>,
    },
    /// More redirects in a row than the configured limit: a loop, most likely.
    #[error("more than {limit} redirects in a row")]
    TooManyRedirects {
        /// The limit in force.
        limit: u32,
    },
    /// A redirect without a usable `Location`.
    #[error("cannot follow the redirect ({status}): {reason}")]
    Redirect {
        /// The redirect status received.
        status: StatusCode,
        /// What is wrong with its `Location`.
        reason: String,
    },
    /// A redirect to a URL scheme this build cannot connect to.
    #[error("cannot connect to a {0}:// URL (only http:// is supported)")]
    UnsupportedScheme(String),
    /// A line of the stream was longer than [`Builder::max_line_len`](crate::Builder::max_line_len).
    #[error("a line of the stream is longer than {limit} bytes")]
    LineTooLong {
        /// The limit in force, in bytes.
        limit: usize,
    },
    /// The stream could not be parsed for another reason the parser reports.
    #[error("the stream cannot be parsed: {0}")]
    Parse(#[source] tidings_wire::ParseError),
}

impl Error {
    /// Whether the client reconnects after this error (see [the rule](Error#the-retry-rule)).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Connect(_)
            | Error::ConnectTimeout(_)
            | Error::Body(_)
            | Error::ReadTimeout(_)
            | Error::StreamEnded => true,
            Error::Status { status, .. } => {
                status.is_server_error() || *status == StatusCode::TOO_MANY_REQUESTS
            }
            Error::ContentType { .. }
            | Error::TooManyRedirects { .. }
            | Error::Redirect { .. }
            | Error::UnsupportedScheme(_)
            | Error::LineTooLong { .. }
            | Error::Parse(_) => false,
        }
    }

    /// The delay the server asked for with `Retry-After`, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// An error and its sources, as one line: HTTP stacks wrap the useful part ("Connection
/// refused") a level or two down, where a plain `to_string()` would not show it.
fn causes(err: &(dyn std::error::Error + 'static)) -> String {
    let mut line = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        // Some layers repeat their source's message in their own; say it once.
        if !line.ends_with(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line
}

/// A setting given to [`Builder`](crate::Builder) that cannot work. Reported by
/// [`Builder::build`](crate::Builder::build), before any connection is made.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildError {
    /// The URL does not parse, or lacks a scheme or a host.
    #[error("invalid URL {url:?}: {reason}")]
    Url {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The URL's scheme is not one this build can connect to.
    #[error("cannot connect to a {0}:// URL (http:// and https:// are supported)")]
    UnsupportedScheme(String),
    /// A root certificate given to the builder does not parse.
    #[error("invalid root certificate: {0}")]
    Certificate(String),
    /// A header name that HTTP does not allow.
    #[error("invalid header name {0:?}")]
    HeaderName(String),
    /// A header value that HTTP does not allow (a line break, for instance).
    #[error("invalid value for header {0:?}")]
    HeaderValue(String),
    /// A setting out of its range.
    #[error("invalid setting: {0}")]
    Setting(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_and_429_retry_other_statuses_stop() {
        let status = |code: u16| Error::Status {
            status: StatusCode::from_u16(code).expect("valid status"),
            retry_after: None,
        };
        for code in [500, 502, 503, 504, 429] {
            assert!(status(code).is_retryable(), "{code} should retry");
        }
        for code in [400, 401, 403, 404, 410, 300, 304] {
            assert!(!status(code).is_retryable(), "{code} should stop");
        }
    }

    #[test]
    fn network_failures_retry_protocol_violations_stop() {
        assert!(Error::StreamEnded.is_retryable());
        assert!(Error::ReadTimeout(Duration::from_secs(1)).is_retryable());
        assert!(Error::Connect("refused".into()).is_retryable());
        assert!(!Error::ContentType { found: None }.is_retryable());
        assert!(!Error::TooManyRedirects { limit: 10 }.is_retryable());
        assert!(!Error::LineTooLong { limit: 8 }.is_retryable());
    }

    #[test]
    fn connection_errors_show_their_root_cause() {
        #[derive(Debug, thiserror::Error)]
        #[error("client error (Connect)")]
        struct Outer(#[source] std::io::Error);
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let err = Error::Connect(Box::new(Outer(refused)));
        assert_eq!(
            err.to_string(),
            "cannot connect: client error (Connect): refused"
        );
    }

    #[test]
    fn content_type_error_names_what_was_received() {
        let err = Error::ContentType {
            found: Some("text/html".into()),
        };
        assert!(err.to_string().contains("text/html"), "{err}");
        let err = Error::ContentType { found: None };
        assert!(err.to_string().contains("none"), "{err}");
    }
}
