//! `GET /client/tidings.js`: the committed JavaScript client, served so a page needs no
//! bundler, importable from any origin, revalidated by ETag.

mod support;

use support::{Hub, Req};

const BUNDLE: &str = include_str!("../clients/js/dist/tidings.js");

#[tokio::test]
async fn the_javascript_client_is_served_with_an_etag_and_for_any_origin() {
    let hub = Hub::standard(&[]);
    let res = hub
        .send(Req::get("/client/tidings.js").header("Origin", "https://app.example"))
        .await;
    res.expect_status(200);
    assert_eq!(
        res.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(res.header("access-control-allow-origin"), Some("*"));
    assert_eq!(res.header("cache-control"), Some("no-cache"));
    assert_eq!(String::from_utf8_lossy(&res.body), BUNDLE);
    assert!(BUNDLE.contains("Tidings"), "the bundle exports the client");
    let etag = res.header("etag").expect("an ETag").to_owned();
    let again = hub
        .send(Req::get("/client/tidings.js").header("If-None-Match", &etag))
        .await;
    again.expect_status(304);
    assert!(again.body.is_empty());
    let other = hub
        .send(Req::get("/client/tidings.js").header("If-None-Match", "\"stale\""))
        .await;
    other.expect_status(200);
}
