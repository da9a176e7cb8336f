//! `POST /publish` served natively, request after request on a keep-alive connection.
//!
//! Why by hand: a publish is one small request and one small answer, and through hyper, the
//! router and the CORS middleware it cost the hub more user time than the whole request
//! costs the naive axum hub (boxed services, header maps, a timer per request, allocations);
//! see docs/PERFORMANCE.md. Here the head is read with httparse ([`super::head`]), the body
//! with one `read` when it came with the head, and the answer goes out with one write.
//! What is checked, in which order, and what is answered are the router's: the Host guard
//! and CORS of its middleware, then `http::publish_caller`, `body::check_json_request` and
//! `http::publish_body`. Anything unusual (chunked bodies, `Expect`, HTTP/1.0) stays with
//! hyper (see `head::parse_head`).

use std::cell::RefCell;
use std::time::{Duration, SystemTime};

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::PublishHead;
use crate::admission::{add_cors, allowed_origin, check_dev_host, CorsGrant};
use crate::body::{body_timeout, check_json_request};
use crate::error::ApiError;
use crate::http::{publish_body, publish_caller, Reply};
use crate::hub::Hub;

/// Whether the connection can take another request.
pub(super) enum After {
    KeepAlive,
    Close,
}

/// Answers one publish; its head and body leave `buf`, whatever follows them stays.
pub(super) async fn serve(
    hub: &Hub,
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    req: PublishHead,
) -> After {
    let cors = allowed_origin(hub, &req.headers);
    let config = hub.config();
    // The router's order: its middleware's Host guard, then the handler's checks. An answer
    // before the body is read ends the connection (the body is not read to skip it).
    let checked = check_dev_host(hub, &req.headers, &req.uri)
        .and_then(|()| publish_caller(hub, &req.headers, &req.uri))
        .and_then(|caller| {
            check_json_request(&req.headers, config.max_body_bytes)?;
            Ok(caller)
        });
    let (key, principal) = match checked {
        Ok(caller) => caller,
        Err(err) => {
            let _ = write_answer(stream, Err(err), cors.as_ref(), true).await;
            return After::Close;
        }
    };
    let total = req.head_len + req.length;
    if buf.len() < total {
        buf.reserve(total - buf.len());
        let deadline = tokio::time::Instant::now() + config.body_timeout;
        while buf.len() < total {
            match tokio::time::timeout_at(deadline, stream.read_buf(buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                // Gone mid-body: nobody to answer.
                Ok(_) => return After::Close,
                Err(_) => {
                    let err = body_timeout(config.body_timeout);
                    let _ = write_answer(stream, Err(err), cors.as_ref(), true).await;
                    return After::Close;
                }
            }
        }
    }
    let body = buf.split_to(total).split_off(req.head_len).freeze();
    let answer = publish_body(hub, &principal, key, &body).await;
    let close = req.close || hub.is_draining();
    match write_answer(stream, answer, cors.as_ref(), close).await {
        Ok(()) if !close => After::KeepAlive,
        _ => After::Close,
    }
}

/// Writes the answer, head and body in one write.
async fn write_answer(
    stream: &mut TcpStream,
    answer: Result<Reply, ApiError>,
    cors: Option<&CorsGrant>,
    close: bool,
) -> std::io::Result<()> {
    let (status, mut headers, body) = match answer {
        Ok(reply) => {
            let mut headers = HeaderMap::new();
            if reply.replayed {
                headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
            }
            (StatusCode::OK, headers, reply.json)
        }
        Err(err) => {
            let mut headers = err.headers();
            headers.remove(header::CONTENT_TYPE);
            (err.status, headers, Bytes::from(err.body()))
        }
    };
    if let Some(grant) = cors {
        add_cors(&mut headers, grant);
    }
    let out = render(status, &headers, &body, close);
    stream.write_all(&out).await
}

/// The whole answer: status line, JSON content type and length, `headers`, the date, the
/// connection's fate, and the body.
fn render(status: StatusCode, headers: &HeaderMap, body: &[u8], close: bool) -> Vec<u8> {
    use std::io::Write as _;
    let mut out = Vec::with_capacity(160 + body.len() + headers.len() * 48);
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    );
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    DATE.with(|date| {
        let mut date = date.borrow_mut();
        date.refresh();
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(date.text.as_bytes());
        out.extend_from_slice(b"\r\n");
    });
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// The `Date` header's text, formatted once a second per thread.
struct CachedDate {
    second: u64,
    text: String,
}

impl CachedDate {
    fn refresh(&mut self) {
        let now = SystemTime::now();
        let second = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs();
        if second != self.second || self.text.is_empty() {
            self.second = second;
            self.text = httpdate::fmt_http_date(now);
        }
    }
}

thread_local! {
    static DATE: RefCell<CachedDate> = const {
        RefCell::new(CachedDate {
            second: 0,
            text: String::new(),
        })
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_one_valid_http_response() {
        let mut headers = HeaderMap::new();
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
        let out = render(StatusCode::OK, &headers, b"{\"id\":\"1\"}", false);
        let mut raw = [httparse::EMPTY_HEADER; 8];
        let mut res = httparse::Response::new(&mut raw);
        let httparse::Status::Complete(n) = res.parse(&out).expect("parses") else {
            panic!("a whole head");
        };
        assert_eq!(res.code, Some(200));
        let get = |name: &str| {
            res.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| std::str::from_utf8(h.value).unwrap().to_owned())
        };
        assert_eq!(get("content-length").as_deref(), Some("10"));
        assert_eq!(get("content-type").as_deref(), Some("application/json"));
        assert_eq!(get("idempotent-replayed").as_deref(), Some("true"));
        assert!(get("date").is_some_and(|d| d.ends_with(" GMT")));
        assert_eq!(get("connection"), None);
        assert_eq!(&out[n..], b"{\"id\":\"1\"}");
        let closing = render(
            StatusCode::PAYLOAD_TOO_LARGE,
            &HeaderMap::new(),
            b"{}",
            true,
        );
        assert!(closing.starts_with(b"HTTP/1.1 413 Payload Too Large\r\n"));
        assert!(std::str::from_utf8(&closing)
            .unwrap()
            .contains("connection: close\r\n"));
    }
}
