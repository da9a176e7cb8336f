//! `GET /dashboard`: the live dashboard, one page embedded in the binary (no CDN, no build
//! step), built on the hub's own JavaScript client (`/client/tidings.js`). The page holds no
//! data: it reads everything with the admin token the operator pastes into it (kept in the
//! tab's session storage), from the admin-only system topics (`$sys/stats`,
//! `$sys/connections`, `$sys/tap`) and `GET /clients`; a `--dev` hub lets it in without one.
//!
//! Its Content-Security-Policy allows only this origin and the page's own inline script (by
//! its SHA-256), so the page cannot be made to load or send anything elsewhere.

use std::sync::LazyLock;

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use sha2::{Digest, Sha256};

const PAGE: &str = include_str!("dashboard.html");

static CSP: LazyLock<HeaderValue> = LazyLock::new(|| {
    let script = PAGE
        .split_once("<script type=\"module\">")
        .and_then(|(_, rest)| rest.split_once("</script>"))
        .map_or("", |(script, _)| script);
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(script.as_bytes()));
    HeaderValue::from_str(&format!(
        "default-src 'none'; script-src 'self' 'sha256-{hash}'; style-src 'unsafe-inline'; \
         connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'"
    ))
    .unwrap_or(HeaderValue::from_static("default-src 'self'"))
});

pub(crate) async fn serve() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (header::CONTENT_SECURITY_POLICY, CSP.clone()),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        PAGE,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_small_and_its_script_is_pinned_by_the_policy() {
        // Raw size bounds the gzipped size (the 30 KB budget gzipped is checked by the
        // browser test with the served bytes).
        assert!(PAGE.len() < 60 * 1024, "the page is {} bytes", PAGE.len());
        assert!(CSP.to_str().unwrap().contains("'sha256-"));
        assert!(
            !PAGE.contains("http://") && !PAGE.contains("https://"),
            "no outside origin"
        );
    }
}
