//! JSON request bodies of the publish endpoints, read with a size bound and parsed strictly.

use axum::body::Body;
use axum::http::{header, HeaderMap};
use http_body_util::BodyExt;
use serde::de::Deserializer;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::ApiError;
use crate::publish::{Payload, Publish};

/// What a JSON request must show before its body is read: `Content-Type: application/json`
/// and no declared length over `limit`.
pub(crate) fn check_json_request(headers: &HeaderMap, limit: usize) -> Result<(), ApiError> {
    // Required, not only checked when present: a cross-site "simple" request (a form, or
    // fetch without a content type) must never reach a publish handler.
    let essence = headers
        .get(header::CONTENT_TYPE)
        .and_then(|ct| ct.to_str().ok())
        .and_then(|ct| ct.split(';').next())
        .map(str::trim);
    if !essence.is_some_and(|e| e.eq_ignore_ascii_case("application/json")) {
        return Err(ApiError::new(
            axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with Content-Type: application/json",
        ));
    }
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > limit as u64 {
            return Err(too_large(limit));
        }
    }
    Ok(())
}

fn too_large(limit: usize) -> ApiError {
    ApiError::too_large(format!(
        "request body over {limit} bytes (--max-body-bytes)"
    ))
}

/// The answer to a body that did not arrive within `timeout`.
pub(crate) fn body_timeout(timeout: std::time::Duration) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::REQUEST_TIMEOUT,
        "body_timeout",
        format!(
            "the request body did not arrive within {} ms (--body-timeout)",
            timeout.as_millis()
        ),
    )
}

/// Reads a request body of at most `limit` bytes within `timeout`, after checking its content
/// type.
pub(crate) async fn read_json_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<bytes::Bytes, ApiError> {
    check_json_request(headers, limit)?;
    let collect = http_body_util::Limited::new(body, limit).collect();
    let Ok(collected) = tokio::time::timeout(timeout, collect).await else {
        return Err(body_timeout(timeout));
    };
    match collected {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => Err(too_large(limit)),
        Err(err) => Err(ApiError::bad_request(
            "invalid_request",
            format!("could not read the body: {err}"),
        )),
    }
}

/// One event of `POST /publish`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishBody {
    topic: Option<String>,
    topics: Option<Vec<String>>,
    user: Option<String>,
    users: Option<Vec<String>>,
    event: Option<String>,
    #[serde(default, deserialize_with = "present")]
    data: Option<Box<RawValue>>,
    text: Option<String>,
    retry: Option<u64>,
}

/// The body of `POST /notify/{user}` and `POST /broadcast`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageBody {
    event: Option<String>,
    #[serde(default, deserialize_with = "present")]
    data: Option<Box<RawValue>>,
    text: Option<String>,
    retry: Option<u64>,
}

/// Keeps `"data": null` apart from a missing `data`; the value's text is kept as sent.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(d).map(Some)
}

/// The JSON text with its insignificant whitespace removed and nothing else changed: numbers
/// keep their digits (`12345678901234567890123`, `-0`, `1.0e5`), strings their escapes.
/// Parsing into `serde_json::Value` and printing again would round big numbers through f64.
/// `json` must be valid JSON (serde_json checked it while reading the body).
pub(crate) fn compact_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in json.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            if c == '"' {
                in_string = true;
            }
            out.push(c);
        }
    }
    out
}

/// Parses a body straight into its request type. Only when that fails is the body checked
/// for syntax alone, so a broken body is `malformed_json` whatever its fields, and a
/// well-formed one of the wrong shape is `invalid_request`.
fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice::<T>(bytes).map_err(|err| {
        match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
            Err(syntax) => json_error(syntax),
            Ok(_) => json_error(err),
        }
    })
}

fn json_error(err: serde_json::Error) -> ApiError {
    match err.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
            ApiError::bad_request(
                "malformed_json",
                format!("the body is not valid JSON: {err}"),
            )
        }
        _ => ApiError::bad_request("invalid_request", format!("wrong request shape: {err}")),
    }
}

fn message(
    event: Option<String>,
    data: Option<Box<RawValue>>,
    text: Option<String>,
    retry: Option<u64>,
    target: Publish,
) -> Result<Publish, ApiError> {
    let payload = match (data, text) {
        (Some(value), None) => Payload::Json(compact_json(value.get())),
        (None, Some(text)) => Payload::Text(text),
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "give exactly one of \"data\" or \"text\", not both",
            ))
        }
        (None, None) => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "give exactly one of \"data\" (any JSON) or \"text\" (a string)",
            ))
        }
    };
    Ok(Publish {
        event,
        payload,
        retry,
        ..target
    })
}

fn one_or_many(
    field: &str,
    one: Option<String>,
    many: Option<Vec<String>>,
) -> Result<Vec<String>, ApiError> {
    match (one, many) {
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "invalid_request",
            format!("give \"{field}\" or \"{field}s\", not both"),
        )),
        (Some(x), None) => Ok(vec![x]),
        (None, Some(xs)) => Ok(xs),
        (None, None) => Ok(Vec::new()),
    }
}

/// Parses `POST /publish`: one object, or an array of them (a batch). `true` for a batch.
pub(crate) fn parse_publish(bytes: &[u8]) -> Result<(Vec<Publish>, bool), ApiError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    let (bodies, batch) = if first == Some(&b'[') {
        let bodies: Vec<PublishBody> = parse_json(bytes)?;
        if bodies.is_empty() {
            return Err(ApiError::bad_request(
                "invalid_request",
                "an empty batch publishes nothing",
            ));
        }
        (bodies, true)
    } else {
        (vec![parse_json::<PublishBody>(bytes)?], false)
    };
    let mut out = Vec::with_capacity(bodies.len());
    for b in bodies {
        let target = Publish {
            topics: one_or_many("topic", b.topic, b.topics)?,
            users: one_or_many("user", b.user, b.users)?,
            ..Publish::to_everyone()
        };
        let target = Publish {
            broadcast: false,
            ..target
        };
        if target.topics.is_empty() && target.users.is_empty() {
            return Err(ApiError::bad_request(
                "invalid_request",
                "an event needs a target: give topic, topics, user or users",
            ));
        }
        out.push(message(b.event, b.data, b.text, b.retry, target)?);
    }
    Ok((out, batch))
}

/// Parses the body of `POST /notify/{user}` and `POST /broadcast`.
pub(crate) fn parse_message(bytes: &[u8], target: Publish) -> Result<Publish, ApiError> {
    let b: MessageBody = parse_json(bytes)?;
    message(b.event, b.data, b.text, b.retry, target)
}

#[cfg(test)]
mod tests {
    use super::compact_json;

    #[test]
    fn compacting_keeps_number_text_and_strings_exactly() {
        assert_eq!(
            compact_json(" { \"n\" : 12345678901234567890123 , \"z\": -0, \"e\": 1.0E+5 } "),
            r#"{"n":12345678901234567890123,"z":-0,"e":1.0E+5}"#
        );
        assert_eq!(
            compact_json(r#"[ "a b", "q\" x", "\\", "\\\" y" ]"#),
            r#"["a b","q\" x","\\","\\\" y"]"#
        );
        assert_eq!(compact_json("\n\t null\r\n"), "null");
    }

    proptest::proptest! {
        /// Whatever JSON value a publisher sends, compacting it means the same value.
        #[test]
        fn compacting_any_json_keeps_its_value(v in json_value()) {
            let pretty = serde_json::to_string_pretty(&v).unwrap();
            let compact = compact_json(&pretty);
            proptest::prop_assert_eq!(&compact, &serde_json::to_string(&v).unwrap());
        }
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<u64>().prop_map(serde_json::Value::from),
            ".*".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(serde_json::Value::from),
                proptest::collection::btree_map(".*", inner, 0..8)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }
}
