//! [`Builder`]: every setting of a stream, validated once by [`Builder::build`] into the
//! `Config` (module `config`, with the defaults) the driver reads.

use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, Uri};

use crate::config::{Config, Tuning};
use crate::stream::EventStream;
use crate::BuildError;

impl EventStream {
    /// Starts configuring a stream from `url` (`http://…`).
    pub fn builder(url: impl Into<String>) -> Builder {
        Builder::new(url)
    }
}

/// The settings of an [`EventStream`]. Start with [`EventStream::builder`].
///
/// Every setter takes and returns the builder; invalid values (a URL that does not parse, a
/// header with a line break) are reported by [`Builder::build`], not by the setter.
///
/// ```no_run
/// # use std::time::Duration;
/// let stream = tidings_client::EventStream::builder("http://127.0.0.1:8080/events?topic=orders/*")
///     .bearer_token("eyJ...")
///     .initial_delay(Duration::from_millis(500))
///     .read_timeout(Duration::from_secs(45))
///     .build()?;
/// # Ok::<(), tidings_client::BuildError>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct Builder {
    url: String,
    method: Method,
    headers: HeaderMap,
    body: Option<Bytes>,
    /// The first invalid setting, reported by `build`.
    invalid: Option<BuildError>,
    config: Tuning,
    roots: Vec<rustls::pki_types::CertificateDer<'static>>,
}

impl Builder {
    pub(crate) fn new(url: impl Into<String>) -> Self {
        Builder {
            url: url.into(),
            method: Method::GET,
            headers: HeaderMap::new(),
            body: None,
            invalid: None,
            config: Tuning::default(),
            roots: Vec::new(),
        }
    }

    /// Adds a request header, sent on every connection. Repeating a name adds another value.
    ///
    /// `Accept` and `Cache-Control` are always `text/event-stream` and `no-cache`. A
    /// `Last-Event-ID` header given here is taken as [`Builder::last_event_id`].
    /// Also trusts the certificates of this PEM text for https (a private CA, or a server's
    /// self-signed certificate), besides the system's roots.
    pub fn root_certificates_pem(mut self, pem: &[u8]) -> Self {
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::CertificateDer;
        let parsed: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(pem).collect();
        match parsed {
            Ok(certs) if !certs.is_empty() => self.roots.extend(certs),
            Ok(_) => {
                self.invalid
                    .get_or_insert(BuildError::Certificate("no PEM CERTIFICATE block".into()));
            }
            Err(err) => {
                self.invalid
                    .get_or_insert(BuildError::Certificate(err.to_string()));
            }
        }
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        let Ok(header) = HeaderName::from_bytes(name.as_bytes()) else {
            self.invalid
                .get_or_insert(BuildError::HeaderName(name.into()));
            return self;
        };
        if header.as_str() == "last-event-id" {
            return self.last_event_id(value);
        }
        match HeaderValue::from_str(value) {
            Ok(value) => {
                self.headers.append(header, value);
            }
            Err(_) => {
                self.invalid
                    .get_or_insert(BuildError::HeaderValue(name.into()));
            }
        }
        self
    }

    /// Sends `Authorization: Bearer <token>`, as the Tidings hub expects.
    pub fn bearer_token(self, token: &str) -> Self {
        self.header("authorization", &format!("Bearer {token}"))
    }

    /// The request method; `GET` by default. `POST` or `REPORT` with a [`Builder::body`]
    /// serve APIs that take their query in the body.
    pub fn method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }

    /// The request body, sent again on every reconnection. Set a `Content-Type` header to go
    /// with it.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// The reconnection time until the server sends `retry:`; 1 s by default.
    pub fn initial_delay(mut self, delay: Duration) -> Self {
        self.config.initial_delay = delay;
        self
    }

    /// The cap on the delay that backoff grows to; 30 s by default. A server's `retry:` above
    /// the cap is still honoured.
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.config.max_delay = delay;
        self
    }

    /// How much the delay grows with each failure in a row; 2.0 by default, at least 1.0
    /// (1.0 waits the reconnection time every time, as a browser does).
    pub fn backoff_factor(mut self, factor: f64) -> Self {
        self.config.backoff_factor = factor;
        self
    }

    /// The largest fraction of a delay that random jitter takes off, from 0.0 (none) to 1.0;
    /// 0.5 by default, so a delay of 2 s becomes 1 to 2 s.
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.config.jitter = fraction;
        self
    }

    /// How long a stream must stay open to count as healthy; 60 s by default. When a healthy
    /// stream ends, backoff and the attempt count start again from the beginning.
    pub fn healthy_after(mut self, period: Duration) -> Self {
        self.config.healthy_after = period;
        self
    }

    /// Stops after this many connection attempts in a row without a healthy stream, the
    /// first connection included (so 1 never reconnects). Unbounded by default.
    ///
    /// The count survives connections that open and then fail before
    /// [`Builder::healthy_after`], so a server that accepts and drops every connection still
    /// exhausts it.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.config.max_attempts = Some(attempts);
        self
    }

    /// Treats a connection that delivers no byte for this long as dead, and reconnects.
    /// None by default; set it above the server's heartbeat (the Tidings hub sends one every
    /// 15 s by default).
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.config.read_timeout = Some(timeout);
        self
    }

    /// The time allowed to connect and receive the response head; 30 s by default.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// The `Last-Event-ID` of the first request, to resume a stream seen earlier. Empty by
    /// default, and an empty id is never sent.
    pub fn last_event_id(mut self, id: &str) -> Self {
        self.config.last_event_id = id.to_owned();
        self
    }

    /// The longest line accepted, in bytes; 16 MiB by default. A longer line ends the stream
    /// with [`Error::LineTooLong`](crate::Error::LineTooLong).
    pub fn max_line_len(mut self, bytes: usize) -> Self {
        self.config.max_line_len = bytes;
        self
    }

    /// The most redirects followed in a row; 10 by default, 0 to follow none.
    pub fn max_redirects(mut self, redirects: u32) -> Self {
        self.config.max_redirects = redirects;
        self
    }

    /// Whether comment lines are yielded as [`SseItem::Comment`](crate::SseItem::Comment);
    /// on by default.
    pub fn comments(mut self, yes: bool) -> Self {
        self.config.comments = yes;
        self
    }

    /// Whether the Tidings hub's `reset` event is yielded as
    /// [`SseItem::Reset`](crate::SseItem::Reset); on by default. Off, it is an ordinary event.
    pub fn recognise_reset(mut self, yes: bool) -> Self {
        self.config.recognise_reset = yes;
        self
    }

    /// Validates the settings and returns the stream. Nothing connects until the stream is
    /// first polled.
    pub fn build(self) -> Result<EventStream, BuildError> {
        Ok(EventStream::new(self.validate()?))
    }

    pub(crate) fn validate(self) -> Result<Config, BuildError> {
        if let Some(invalid) = self.invalid {
            return Err(invalid);
        }
        let url = parse_url(&self.url)?;
        let tuning = self.config;
        if !(tuning.backoff_factor >= 1.0 && tuning.backoff_factor.is_finite()) {
            return Err(BuildError::Setting("backoff_factor must be at least 1.0"));
        }
        if !(0.0..=1.0).contains(&tuning.jitter) {
            return Err(BuildError::Setting("jitter must be between 0.0 and 1.0"));
        }
        if tuning.max_attempts == Some(0) {
            return Err(BuildError::Setting("max_attempts must be at least 1"));
        }
        if tuning.read_timeout == Some(Duration::ZERO) {
            return Err(BuildError::Setting("read_timeout must be positive"));
        }
        Ok(Config {
            url,
            method: self.method,
            headers: self.headers,
            body: self.body,
            tuning,
            roots: self.roots,
        })
    }
}

fn parse_url(url: &str) -> Result<Uri, BuildError> {
    let invalid = |reason: &str| BuildError::Url {
        url: url.into(),
        reason: reason.into(),
    };
    let uri: Uri = url
        .parse()
        .map_err(|err: http::uri::InvalidUri| invalid(&err.to_string()))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => return Err(BuildError::UnsupportedScheme(other.into())),
        None => return Err(invalid("no scheme (expected http:// or https://)")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid("no host"));
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate(b: Builder) -> Result<Config, BuildError> {
        b.validate()
    }

    #[test]
    fn only_absolute_http_urls_are_accepted() {
        assert!(validate(Builder::new("http://127.0.0.1:1/events")).is_ok());
        assert!(validate(Builder::new("https://127.0.0.1:1/events")).is_ok());
        assert_eq!(
            validate(Builder::new("ftp://h/")).err(),
            Some(BuildError::UnsupportedScheme("ftp".into()))
        );
        assert!(matches!(
            validate(Builder::new("/events")),
            Err(BuildError::Url { .. })
        ));
        assert!(matches!(
            validate(Builder::new("http://h h/")),
            Err(BuildError::Url { .. })
        ));
    }

    #[test]
    fn a_bad_header_is_reported_by_build_not_lost() {
        let err = validate(
            Builder::new("http://h/")
                .header("x-ok", "1")
                .header("bad name", "v"),
        );
        assert_eq!(err.err(), Some(BuildError::HeaderName("bad name".into())));
        let err = validate(Builder::new("http://h/").header("x-a", "line\nbreak"));
        assert_eq!(err.err(), Some(BuildError::HeaderValue("x-a".into())));
    }

    #[test]
    fn a_last_event_id_header_sets_the_initial_id() {
        let config =
            validate(Builder::new("http://h/").header("Last-Event-ID", "41")).expect("valid");
        assert_eq!(config.tuning.last_event_id, "41");
        assert!(config.headers.get("last-event-id").is_none());
    }

    #[test]
    fn repeated_headers_keep_every_value() {
        let config = validate(
            Builder::new("http://h/")
                .header("x-a", "1")
                .header("X-A", "2"),
        )
        .expect("valid");
        assert_eq!(config.headers.get_all("x-a").iter().count(), 2);
    }

    #[test]
    fn out_of_range_tuning_is_rejected() {
        let base = || Builder::new("http://h/");
        assert!(validate(base().backoff_factor(0.5)).is_err());
        assert!(validate(base().backoff_factor(f64::NAN)).is_err());
        assert!(validate(base().jitter(1.5)).is_err());
        assert!(validate(base().max_attempts(0)).is_err());
        assert!(validate(base().read_timeout(Duration::ZERO)).is_err());
        assert!(validate(base().backoff_factor(1.0).jitter(0.0).max_attempts(1)).is_ok());
    }
}
