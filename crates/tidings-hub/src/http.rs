//! The HTTP surface: routes, credentials, and the handlers that call the engine.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::auth::{AuthError, Principal};
use crate::body::{parse_message, parse_publish, read_json_body};
use crate::conn::SseBody;
use crate::error::ApiError;
use crate::hub::{Hub, SubscribeSpec, Subscribed};
use crate::publish::Publish;
use crate::registry::Limit;
use crate::topic::{validate_user, Pattern};

/// The hub's routes, ready to serve or to merge into a host application's router.
pub fn router(hub: Hub) -> Router {
    Router::new()
        .route("/events", get(subscribe))
        .route("/publish", post(publish))
        .route("/notify/{user}", post(notify))
        .route("/broadcast", post(broadcast))
        .route("/clients", get(clients))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(middleware::from_fn_with_state(hub.clone(), cors))
        .with_state(hub)
}

/// The raw bearer value: `Authorization: Bearer`, then `access_token=`, then the cookie.
fn credential<'a>(
    headers: &'a HeaderMap,
    query: &'a [(String, String)],
) -> Result<Option<&'a str>, ApiError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| ApiError::unauthorized("the Authorization header is not readable text"))?;
        let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(ApiError::unauthorized("use Authorization: Bearer <token>"));
        }
        return Ok(Some(token.trim()));
    }
    if let Some((_, token)) = query.iter().find(|(k, _)| k == "access_token") {
        return Ok(Some(token.as_str()));
    }
    for cookies in headers.get_all(header::COOKIE) {
        let Ok(cookies) = cookies.to_str() else {
            continue;
        };
        for pair in cookies.split(';') {
            if let Some(("tidings_token", token)) = pair.trim().split_once('=') {
                return Ok(Some(token));
            }
        }
    }
    Ok(None)
}

fn auth_error(hub: &Hub, err: AuthError) -> ApiError {
    hub.inner.metrics.rejected_auth.inc();
    ApiError::unauthorized(err.to_string())
}

fn principal(
    hub: &Hub,
    headers: &HeaderMap,
    query: &[(String, String)],
) -> Result<Principal, ApiError> {
    let token =
        credential(headers, query).inspect_err(|_| hub.inner.metrics.rejected_auth.inc())?;
    hub.inner
        .auth
        .authenticate(token)
        .map_err(|e| auth_error(hub, e))
}

fn query_pairs(uri: &Uri) -> Result<Vec<(String, String)>, ApiError> {
    Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|e| {
            ApiError::bad_request("invalid_request", format!("unreadable query string: {e}"))
        })
}

/// 401 for anonymous callers, 403 for identified ones.
fn denied(p: &Principal, what: String) -> ApiError {
    if p.is_anonymous() {
        ApiError::unauthorized(format!("{what}: credentials required"))
    } else {
        ApiError::forbidden(format!("{what}: not allowed by your token"))
    }
}

async fn subscribe(State(hub): State<Hub>, req: Request) -> Result<Response, ApiError> {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let subscribed = open_subscription(&hub, req.headers(), req.uri(), peer)?;
    let body = SseBody::new(
        Arc::clone(&hub.inner),
        subscribed.conn,
        subscribed.prelude,
        subscribed.replay,
    );
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .header("x-accel-buffering", "no")
        .body(Body::new(body))
        .unwrap_or_else(|_| ApiError::draining().into_response()))
}

/// Everything `GET /events` checks before a stream starts (body, credentials, topics,
/// permissions, limits), then the registration. Shared by the axum route and the native
/// stream path of [`crate::serve`].
pub(crate) fn open_subscription(
    hub: &Hub,
    headers: &HeaderMap,
    uri: &Uri,
    peer: Option<IpAddr>,
) -> Result<Subscribed, ApiError> {
    if hub.is_draining() {
        return Err(ApiError::draining());
    }
    let has_body = headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.to_str().map_or(true, |v| v.trim() != "0"));
    if has_body {
        return Err(ApiError::bad_request(
            "invalid_request",
            "GET /events takes no request body",
        ));
    }
    let query = query_pairs(uri)?;
    let principal = principal(hub, headers, &query)?;
    let config = hub.config();
    let requested: Vec<&str> = query
        .iter()
        .filter(|(k, _)| k == "topic")
        .map(|(_, v)| v.as_str())
        .collect();
    if requested.len() > config.max_topics {
        hub.inner.metrics.rejected_limit.inc();
        return Err(ApiError::limit(format!(
            "{} topics requested, at most {} per connection (--max-topics)",
            requested.len(),
            config.max_topics
        )));
    }
    let mut patterns: Vec<Pattern> = Vec::with_capacity(requested.len());
    for t in requested {
        let p = Pattern::parse(t)
            .map_err(|e| ApiError::bad_request("invalid_topic", format!("topic {t:?}: {e}")))?;
        if !principal.may_subscribe(&p) {
            return Err(denied(&principal, format!("subscribing to {t:?}")));
        }
        if !patterns.contains(&p) {
            patterns.push(p);
        }
    }
    if patterns.is_empty() && principal.sub.is_none() {
        return Err(ApiError::bad_request(
            "invalid_request",
            "give at least one topic= (or use a token with a subject to receive that user's events)",
        ));
    }
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| {
            query
                .iter()
                .find(|(k, _)| k == "last_event_id")
                .map(|(_, v)| v.clone())
        });
    let spec = SubscribeSpec {
        patterns,
        user: principal.sub.clone(),
        ip: peer,
        exp: principal.exp,
        last_event_id,
    };
    hub.inner.subscribe(spec).map_err(|limit| match limit {
        Limit::Total => ApiError::limit("the hub is at --max-connections"),
        Limit::PerUser => ApiError::limit("this user is at --max-connections-per-user"),
        Limit::PerIp => ApiError::limit("this address is at --max-connections-per-ip"),
        Limit::Draining => ApiError::draining(),
    })
}

/// The caller of a POST endpoint. Credentials come from the `Authorization` header only: a
/// cookie is sent by the browser on a cross-site request, and a token in the URL leaks into
/// logs and history, so neither may publish on a user's behalf.
fn publisher(hub: &Hub, req: &Request) -> Result<Principal, ApiError> {
    let p = principal(hub, req.headers(), &[])
        .and_then(|p| reject_ambient(hub, req.headers(), req.uri(), p))?;
    if p.is_anonymous() && !hub.config().dev {
        return Err(ApiError::unauthorized(
            "publishing needs a token or a publish key",
        ));
    }
    Ok(p)
}

/// With no `Authorization` header, a cookie or `access_token` on a POST is refused outright
/// (401) rather than ignored, so a client that relied on it learns why.
fn reject_ambient(
    hub: &Hub,
    headers: &HeaderMap,
    uri: &Uri,
    p: Principal,
) -> Result<Principal, ApiError> {
    if headers.contains_key(header::AUTHORIZATION) {
        return Ok(p);
    }
    let query = query_pairs(uri)?;
    let in_query = query.iter().any(|(k, _)| k == "access_token");
    let in_cookie = credential(headers, &[]).ok().flatten().is_some();
    if in_query || in_cookie {
        hub.inner.metrics.rejected_auth.inc();
        return Err(ApiError::unauthorized(
            "POST endpoints take credentials only from the Authorization header \
             (the access_token parameter and the tidings_token cookie are for GET /events)",
        ));
    }
    Ok(p)
}

fn check_targets(p: &Principal, event: &Publish) -> Result<(), ApiError> {
    for t in &event.topics {
        if !p.may_publish_topic(t) {
            return Err(denied(p, format!("publishing to topic {t:?}")));
        }
    }
    for u in &event.users {
        if !p.may_notify_user(u) {
            return Err(denied(p, format!("publishing to user {u:?}")));
        }
    }
    if event.broadcast && !p.may_broadcast() {
        return Err(denied(p, "broadcasting".to_owned()));
    }
    Ok(())
}

/// The caller of a POST and its JSON body, read within `--max-body-bytes` and
/// `--body-timeout`.
async fn authorized_body(hub: &Hub, req: Request) -> Result<(Principal, bytes::Bytes), ApiError> {
    let principal = publisher(hub, &req)?;
    let (parts, body) = req.into_parts();
    let config = hub.config();
    let bytes = read_json_body(
        &parts.headers,
        body,
        config.max_body_bytes,
        config.body_timeout,
    )
    .await?;
    Ok((principal, bytes))
}

async fn publish(State(hub): State<Hub>, req: Request) -> Result<Response, ApiError> {
    let (principal, bytes) = authorized_body(&hub, req).await?;
    let (events, batch) = parse_publish(&bytes)?;
    for e in &events {
        check_targets(&principal, e)?;
    }
    let published = hub.publish_batch(events).await?;
    if batch {
        Ok(Json(published).into_response())
    } else {
        Ok(Json(published.into_iter().next()).into_response())
    }
}

async fn notify(
    State(hub): State<Hub>,
    Path(user): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    validate_user(&user)
        .map_err(|e| ApiError::bad_request("invalid_user", format!("user {user:?}: {e}")))?;
    let (principal, bytes) = authorized_body(&hub, req).await?;
    let event = parse_message(&bytes, Publish::to_user(user))?;
    check_targets(&principal, &event)?;
    let p = hub.publish(event).await?;
    Ok(Json(serde_json::json!({ "id": p.id, "sent": p.delivered })).into_response())
}

async fn broadcast(State(hub): State<Hub>, req: Request) -> Result<Response, ApiError> {
    let (principal, bytes) = authorized_body(&hub, req).await?;
    let event = parse_message(&bytes, Publish::to_everyone())?;
    check_targets(&principal, &event)?;
    let total = hub.connection_count();
    let p = hub.publish(event).await?;
    Ok(
        Json(serde_json::json!({ "id": p.id, "sent": p.delivered, "total": total }))
            .into_response(),
    )
}

async fn clients(State(hub): State<Hub>, req: Request) -> Result<Response, ApiError> {
    let query = query_pairs(req.uri())?;
    let p = principal(&hub, req.headers(), &query)?;
    if !p.admin {
        return Err(denied(&p, "GET /clients".to_owned()));
    }
    let registry = hub.inner.registry();
    if let Some((_, user)) = query.iter().find(|(k, _)| k == "user") {
        let conns: Vec<String> = registry
            .user_conns(user)
            .iter()
            .map(|c| c.to_string())
            .collect();
        return Ok(Json(serde_json::json!({ "user": user, "connections": conns })).into_response());
    }
    let users: serde_json::Map<String, serde_json::Value> = registry
        .user_counts()
        .map(|(u, n)| (u.to_owned(), n.into()))
        .collect();
    let topics: serde_json::Map<String, serde_json::Value> = registry
        .pattern_counts()
        .map(|(t, n)| (t.to_owned(), n.into()))
        .collect();
    Ok(
        Json(
            serde_json::json!({ "total": registry.conns.len(), "users": users, "topics": topics }),
        )
        .into_response(),
    )
}

async fn metrics(State(hub): State<Hub>) -> Response {
    let mut text = hub.inner.metrics.render(hub.inner.gauges());
    hub.inner.history.render_metrics(&mut text);
    if let Some(conns) = hub.inner.http_conns.read().as_ref() {
        use std::fmt::Write as _;
        let _ = write!(
            text,
            "# HELP tidings_http_connections Open connections that are not event streams.\n\
             # TYPE tidings_http_connections gauge\ntidings_http_connections {}\n\
             # HELP tidings_http_connections_evicted_total Idle non-stream connections closed to make room (--max-http-connections, or out of descriptors).\n\
             # TYPE tidings_http_connections_evicted_total counter\ntidings_http_connections_evicted_total {}\n",
            conns.len(),
            conns.evicted()
        );
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn healthz() -> Response {
    Json(serde_json::json!({ "status": "ok" })).into_response()
}

async fn readyz(State(hub): State<Hub>) -> Response {
    if hub.is_draining() {
        return ApiError::draining().into_response();
    }
    Json(serde_json::json!({ "status": "ready" })).into_response()
}

/// CORS for the configured origins, and preflight answers.
async fn cors(State(hub): State<Hub>, req: Request, next: Next) -> Response {
    if let Err(err) = check_dev_host(&hub, req.headers()) {
        return err.into_response();
    }
    let allowed = allowed_origin(&hub, req.headers());
    if req.method() == Method::OPTIONS {
        let mut res = StatusCode::NO_CONTENT.into_response();
        let h = res.headers_mut();
        h.insert(
            header::ALLOW,
            HeaderValue::from_static("GET, POST, OPTIONS"),
        );
        if let Some(origin) = &allowed {
            add_cors(h, origin);
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, POST, OPTIONS"),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(
                    "Authorization, Content-Type, Last-Event-ID, Cache-Control, Idempotency-Key",
                ),
            );
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("600"),
            );
        }
        return res;
    }
    let mut res = next.run(req).await;
    if let Some(origin) = allowed {
        add_cors(res.headers_mut(), &origin);
    }
    res
}

/// What CORS allows a request's `Origin`.
#[derive(Debug, Clone)]
pub(crate) enum CorsGrant {
    /// Listed by name in `--cors-origin`: echoed back, with credentials.
    Origin(HeaderValue),
    /// Allowed only through `--cors-origin '*'`: a literal `*` and never credentials, so no
    /// site can read a logged-in user's stream with their cookie.
    Any,
}

/// The request's `Origin` when `--cors-origin` allows it. A listed origin wins over `*`.
pub(crate) fn allowed_origin(hub: &Hub, headers: &HeaderMap) -> Option<CorsGrant> {
    let origins = &hub.config().cors_origins;
    let origin = headers.get(header::ORIGIN)?;
    let text = origin.to_str().ok()?;
    if origins
        .iter()
        .any(|a| a != "*" && a.eq_ignore_ascii_case(text))
    {
        return Some(CorsGrant::Origin(origin.clone()));
    }
    origins.iter().any(|a| a == "*").then_some(CorsGrant::Any)
}

pub(crate) fn add_cors(h: &mut HeaderMap, grant: &CorsGrant) {
    match grant {
        CorsGrant::Origin(origin) => {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            h.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
            h.append(header::VARY, HeaderValue::from_static("Origin"));
        }
        CorsGrant::Any => {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
        }
    }
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Retry-After"),
    );
}

/// `--dev` opens everything to anonymous callers on loopback; a page on another site can
/// still reach it through DNS rebinding (its own name resolving to 127.0.0.1). The browser
/// then sends that name as `Host`, so a dev hub answers only loopback names and addresses.
pub(crate) fn check_dev_host(hub: &Hub, headers: &HeaderMap) -> Result<(), ApiError> {
    if !hub.config().dev {
        return Ok(());
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if is_loopback_host(host) {
        return Ok(());
    }
    Err(ApiError::forbidden(
        "--dev answers only requests for a loopback host (localhost, 127.0.0.1, [::1]); \
         this Host header names another (DNS rebinding guard)",
    ))
}

/// `localhost`, `*.localhost`, `127.x.y.z` or `[::1]`, with or without a port.
pub(crate) fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((addr, port)) if port.is_empty() || port.starts_with(':') => addr,
            _ => return false,
        }
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if name == "localhost" || name.ends_with(".localhost") {
        return true;
    }
    name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}
