//! One connection attempt: send the request, follow redirects, and check that the answer is
//! an event stream. The driver decides what to do with the outcome.

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::config::Config;
use crate::{redirect, Error};

/// The HTTP/1.1 client a stream connects with (http, or https over rustls).
pub(crate) type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Builds the client of one stream. It keeps no idle connections: a reconnection must be a
/// new TCP connection, not a pooled one that the server may have closed meanwhile. https
/// trusts the system's roots and those given to the builder.
pub(crate) fn http_client(config: &Config) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(config.tuning.connect_timeout));
    connector.enforce_http(false);
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    for cert in &config.roots {
        let _ = roots.add(cert.clone());
    }
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("the ring provider supports TLS 1.2 and 1.3")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let https = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(connector);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(https)
}

/// A successful attempt.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The response is an event stream; its body is the stream.
    Stream {
        url: Uri,
        response: Box<Response<Incoming>>,
    },
    /// `204 No Content`: the server says not to reconnect.
    NoContent,
}

const USER_AGENT: &str = concat!("tidings-client/", env!("CARGO_PKG_VERSION"));

/// Makes one connection attempt, following up to `max_redirects` redirects.
pub(crate) async fn connect(
    http: &HttpClient,
    config: &Config,
    last_event_id: &str,
) -> Result<Outcome, Error> {
    let mut url = config.url.clone();
    let mut method = config.method.clone();
    let mut body = config.body.clone();
    let mut headers = config.headers.clone();
    let mut redirects = 0;
    loop {
        let request = build_request(&url, &method, &headers, body.clone(), last_event_id);
        let timeout = config.tuning.connect_timeout;
        let response = match tokio::time::timeout(timeout, http.request(request)).await {
            Err(_) => return Err(Error::ConnectTimeout(timeout)),
            Ok(Err(err)) => return Err(Error::Connect(Box::new(err))),
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        if redirect::is_followed(status) {
            if redirects == config.tuning.max_redirects {
                return Err(Error::TooManyRedirects {
                    limit: config.tuning.max_redirects,
                });
            }
            redirects += 1;
            let next = location(&url, status, response.headers())?;
            if !matches!(next.scheme_str(), Some("http" | "https")) {
                let scheme = next.scheme_str().unwrap_or_default();
                return Err(Error::UnsupportedScheme(scheme.into()));
            }
            let next_method = redirect::next_method(status, &method);
            if next_method != method {
                // The body went with the old method; a GET carries none.
                body = None;
                headers.remove(header::CONTENT_TYPE);
                headers.remove(header::CONTENT_LENGTH);
            }
            if !redirect::same_origin(&url, &next) {
                redirect::strip_credentials(&mut headers);
            }
            method = next_method;
            url = next;
            continue;
        }
        return check(url, response);
    }
}

fn build_request(
    url: &Uri,
    method: &Method,
    headers: &HeaderMap,
    body: Option<Bytes>,
    last_event_id: &str,
) -> Request<Full<Bytes>> {
    let mut request = Request::new(Full::new(body.unwrap_or_default()));
    *request.method_mut() = method.clone();
    *request.uri_mut() = url.clone();
    let h = request.headers_mut();
    h.clone_from(headers);
    h.insert(
        header::ACCEPT,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if !h.contains_key(header::USER_AGENT) {
        h.insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
    }
    // Never an empty header: the standard sends `Last-Event-ID` only when there is an id.
    if !last_event_id.is_empty() {
        // An id comes from the stream as text without CR, LF or NUL, but it may still hold
        // bytes a header cannot carry (other control characters); then it is not sent rather
        // than sent mangled.
        match HeaderValue::from_str(last_event_id) {
            Ok(value) => {
                h.insert("last-event-id", value);
            }
            Err(_) => tracing::warn!("last event id cannot be sent as a header; omitted"),
        }
    }
    request
}

fn location(url: &Uri, status: StatusCode, headers: &HeaderMap) -> Result<Uri, Error> {
    let redirect_error = |reason: String| Error::Redirect { status, reason };
    let value = headers
        .get(header::LOCATION)
        .ok_or_else(|| redirect_error("no Location header".into()))?;
    let value = value
        .to_str()
        .map_err(|_| redirect_error("Location is not ASCII".into()))?;
    redirect::resolve(url, value).map_err(redirect_error)
}

/// Accepts a final response as an event stream, or says why not.
fn check(url: Uri, response: Response<Incoming>) -> Result<Outcome, Error> {
    let status = response.status();
    if status == StatusCode::NO_CONTENT {
        return Ok(Outcome::NoContent);
    }
    if !status.is_success() {
        let retry_after = retry_after(response.headers());
        return Err(Error::Status {
            status,
            retry_after,
        });
    }
    let content_type = response.headers().get(header::CONTENT_TYPE);
    if !content_type.is_some_and(is_event_stream) {
        return Err(Error::ContentType {
            found: content_type.map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
        });
    }
    Ok(Outcome::Stream {
        url,
        response: Box::new(response),
    })
}

/// `text/event-stream`, in any case, with or without parameters.
fn is_event_stream(value: &HeaderValue) -> bool {
    let Ok(value) = value.to_str() else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("text/event-stream")
}

/// `Retry-After` in seconds. The HTTP-date form is not read: the backoff delay applies then.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_stream_type_matches_with_parameters_and_any_case() {
        for ok in [
            "text/event-stream",
            "Text/Event-Stream; charset=utf-8",
            " text/event-stream ",
        ] {
            assert!(is_event_stream(&HeaderValue::from_static(ok)), "{ok}");
        }
        for bad in ["text/plain", "text/event-streams", "application/json"] {
            assert!(!is_event_stream(&HeaderValue::from_static(bad)), "{bad}");
        }
    }

    #[test]
    fn retry_after_is_read_in_seconds_and_dates_are_ignored() {
        let mut headers = HeaderMap::new();
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
        headers.insert(
            header::RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn every_request_asks_for_an_uncached_event_stream_and_empty_ids_are_not_sent() {
        let url: Uri = "http://h/e".parse().expect("valid URL");
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_static("text/html"));
        let request = build_request(&url, &Method::GET, &headers, None, "");
        let h = request.headers();
        assert_eq!(h[header::ACCEPT], "text/event-stream");
        assert_eq!(h[header::CACHE_CONTROL], "no-cache");
        assert!(h.get("last-event-id").is_none());
        let request = build_request(&url, &Method::GET, &headers, None, "7");
        assert_eq!(request.headers()["last-event-id"], "7");
    }
}
