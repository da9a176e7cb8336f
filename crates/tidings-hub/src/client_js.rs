//! `GET /client/tidings.js`: the JavaScript client (`clients/js`), built and committed, served
//! by the hub so a page needs no bundler: `import { Tidings } from "https://hub/client/tidings.js"`.
//!
//! The URL is not versioned, so the answer is revalidated (`Cache-Control: no-cache` with an
//! `ETag`; a matching `If-None-Match` gets 304). Any page may import it (`*` CORS, no
//! credentials): it is public code.

use std::sync::LazyLock;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// The bundle `clients/js` builds (`npm run build`); CI fails when it is stale.
const BUNDLE: &str = include_str!("../../../clients/js/dist/tidings.js");

static ETAG: LazyLock<HeaderValue> = LazyLock::new(|| {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(BUNDLE.as_bytes());
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    HeaderValue::from_str(&format!("\"{hex}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
});

pub(crate) async fn serve(headers: HeaderMap) -> Response {
    let mut out = HeaderMap::with_capacity(5);
    out.insert(header::ETAG, ETAG.clone());
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    out.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    out.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("cross-origin"),
    );
    let fresh = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| tag.trim() == ETAG.to_str().unwrap_or_default() || tag.trim() == "*");
    if fresh {
        return (StatusCode::NOT_MODIFIED, out).into_response();
    }
    out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    (StatusCode::OK, out, BUNDLE).into_response()
}
