//! The one JSON error shape every endpoint answers with.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::publish::PublishError;

/// An error answer: `{"error": {"code", "message"}}` with its status.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
    }
    pub fn limit(message: impl Into<String>) -> Self {
        Self {
            retry_after: Some(5),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "limit_exceeded", message)
        }
    }
    pub fn draining() -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "draining",
                "the hub is shutting down; retry on another node or shortly",
            )
        }
    }
    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such endpoint; see the API reference",
        )
    }
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this endpoint does not take that method",
        )
    }
}

impl ApiError {
    /// The JSON body, as every sink sends it.
    pub fn body(&self) -> String {
        serde_json::json!({ "error": { "code": self.code, "message": self.message } }).to_string()
    }

    /// The headers of the answer (content type, and `Retry-After` when there is one).
    pub fn headers(&self) -> HeaderMap {
        let mut h = HeaderMap::with_capacity(2);
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(secs) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        h
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, self.headers(), self.body()).into_response()
    }
}

impl From<PublishError> for ApiError {
    fn from(e: PublishError) -> Self {
        match &e {
            PublishError::NoTarget
            | PublishError::Invalid(_)
            | PublishError::Reserved(_)
            | PublishError::TooManyTargets { .. } => {
                ApiError::bad_request("invalid_request", e.to_string())
            }
            PublishError::Topic(..) => ApiError::bad_request("invalid_topic", e.to_string()),
            PublishError::User(..) => ApiError::bad_request("invalid_user", e.to_string()),
            PublishError::TooLarge { .. } => ApiError::too_large(e.to_string()),
            PublishError::Draining => ApiError::draining(),
            PublishError::History(err) => ApiError {
                retry_after: Some(1),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "history_unavailable",
                    err.to_string(),
                )
            },
        }
    }
}
