//! Who may do what: the one admission path of every request.
//!
//! A new stream is admitted here whichever sink serves it (the axum route of [`crate::router`]
//! or the native path of [`crate::serve`]): the `--dev` Host guard, credentials (header, then
//! `access_token`, then cookie), topic permissions, `--max-topics`, the resume position and
//! the connection limits, then the registration. POST callers and their targets are checked
//! here too, and CORS grants are decided here for both sinks.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::Query;
use axum::http::{header, HeaderMap, HeaderValue, Uri};

use crate::auth::{AuthError, Principal};
use crate::error::ApiError;
use crate::event::EventId;
use crate::hub::{Hub, SubscribeSpec};
use crate::publish::Publish;
use crate::registry::Limit;
use crate::subscription::Subscription;
use crate::topic::Pattern;

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

pub(crate) fn principal(
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

pub(crate) fn query_pairs(uri: &Uri) -> Result<Vec<(String, String)>, ApiError> {
    Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|e| {
            ApiError::bad_request("invalid_request", format!("unreadable query string: {e}"))
        })
}

/// 401 for anonymous callers, 403 for identified ones.
pub(crate) fn denied(p: &Principal, what: String) -> ApiError {
    if p.is_anonymous() {
        ApiError::unauthorized(format!("{what}: credentials required"))
    } else {
        ApiError::forbidden(format!("{what}: not allowed by your token"))
    }
}

/// Everything `GET /events` checks before a stream starts (Host, body, credentials, topics,
/// permissions, limits), then the registration. Shared by the axum route and the native
/// stream path of [`crate::serve`].
///
/// On a cluster node two steps wait on the cluster first: a `Last-Event-ID` ahead of this
/// node's tail (a client moving from a faster node) is waited for, up to
/// [`crate::cluster::CATCH_UP_WAIT`], so it is not mistaken for an unknown id; and the user's
/// slot is taken from the cluster-wide count of `--max-connections-per-user`.
pub(crate) async fn admit_stream(
    hub: &Hub,
    headers: &HeaderMap,
    uri: &Uri,
    peer: Option<IpAddr>,
    protocol: &'static str,
) -> Result<Subscription, ApiError> {
    check_dev_host(hub, headers, uri)?;
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
        if crate::topic::is_system(t) && !(principal.admin && t.starts_with("$sys/")) {
            return Err(ApiError::forbidden(format!(
                "{t:?} is a system topic: `$sys/…` is for admin tokens, other `$` topics are \
                 the hub's own"
            )));
        }
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
    let mut held = None;
    if let Some(cluster) = &hub.inner.cluster {
        if let Some(id) = last_event_id.as_deref().and_then(EventId::parse) {
            cluster
                .catch_up(&hub.inner, id, crate::cluster::CATCH_UP_WAIT)
                .await;
            cluster.refresh_floor(id).await;
        }
        if let Some(user) = &principal.sub {
            if !cluster.acquire(user, config.max_connections_per_user).await {
                hub.inner.metrics.rejected_limit.inc();
                return Err(ApiError::limit(
                    "this user is at --max-connections-per-user across the cluster",
                ));
            }
            held = Some((Arc::clone(cluster), Arc::clone(user)));
        }
    }
    let spec = SubscribeSpec {
        patterns,
        user: principal.sub.clone(),
        ip: crate::proxy::client_ip(&hub.inner.trusted_proxies, headers, peer),
        exp: principal.exp,
        last_event_id,
        protocol,
    };
    let admitted = hub.inner.subscribe(spec).map_err(|limit| match limit {
        Limit::Total => ApiError::limit("the hub is at --max-connections"),
        Limit::PerUser => ApiError::limit("this user is at --max-connections-per-user"),
        Limit::PerIp => ApiError::limit("this address is at --max-connections-per-ip"),
        Limit::Draining => ApiError::draining(),
    });
    if let Some((cluster, user)) = held {
        match &admitted {
            Ok(sub) => cluster.hold(sub.key(), user),
            Err(_) => cluster.release_user(user),
        }
    }
    admitted
}

/// The caller of a POST endpoint. Credentials come from the `Authorization` header only: a
/// cookie is sent by the browser on a cross-site request, and a token in the URL leaks into
/// logs and history, so neither may publish on a user's behalf.
pub(crate) fn publisher(hub: &Hub, headers: &HeaderMap, uri: &Uri) -> Result<Principal, ApiError> {
    let p = principal(hub, headers, &[]).and_then(|p| reject_ambient(hub, headers, uri, p))?;
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

pub(crate) fn check_targets(p: &Principal, event: &Publish) -> Result<(), ApiError> {
    // A system topic is refused as invalid whoever asks (before permissions: no grant covers it).
    if let Some(t) = event.topics.iter().find(|t| crate::topic::is_system(t)) {
        return Err(ApiError::bad_request(
            "invalid_topic",
            format!("topic {t:?} starts with `$`, which is reserved for the hub's system topics"),
        ));
    }
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
pub(crate) fn check_dev_host(hub: &Hub, headers: &HeaderMap, uri: &Uri) -> Result<(), ApiError> {
    if !hub.config().dev {
        return Ok(());
    }
    // HTTP/2 names the host in the `:authority` pseudo-header (the URI), not in `Host`.
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
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
