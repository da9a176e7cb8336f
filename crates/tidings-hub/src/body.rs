//! JSON request bodies of the publish endpoints, read with a size bound and parsed strictly.

use axum::body::Body;
use axum::http::{header, HeaderMap};
use http_body_util::BodyExt;
use serde::de::Deserializer;
use serde::Deserialize;

use crate::error::ApiError;
use crate::publish::{Payload, Publish};

/// Reads a request body of at most `limit` bytes, after checking its content type.
pub(crate) async fn read_json_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<bytes::Bytes, ApiError> {
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let essence = ct
            .to_str()
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim();
        if !essence.eq_ignore_ascii_case("application/json") {
            return Err(ApiError::new(
                axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with Content-Type: application/json",
            ));
        }
    }
    let too_large = || {
        ApiError::too_large(format!(
            "request body over {limit} bytes (--max-body-bytes)"
        ))
    };
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > limit as u64 {
            return Err(too_large());
        }
    }
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => Err(too_large()),
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
    data: Option<serde_json::Value>,
    text: Option<String>,
    retry: Option<u64>,
}

/// The body of `POST /notify/{user}` and `POST /broadcast`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageBody {
    event: Option<String>,
    #[serde(default, deserialize_with = "present")]
    data: Option<serde_json::Value>,
    text: Option<String>,
    retry: Option<u64>,
}

/// Keeps `"data": null` apart from a missing `data`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
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
    data: Option<serde_json::Value>,
    text: Option<String>,
    retry: Option<u64>,
    target: Publish,
) -> Result<Publish, ApiError> {
    let payload = match (data, text) {
        (Some(value), None) => Payload::Json(value.to_string()),
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
