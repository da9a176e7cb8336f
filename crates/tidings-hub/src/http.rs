//! The HTTP surface: the routes and the handlers that call the engine. Who may call them is
//! decided in `admission`.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;

use crate::admission::{
    add_cors, admit_stream, allowed_origin, check_dev_host, check_targets, denied, principal,
    publisher, query_pairs,
};
use crate::auth::{Principal, PrincipalKind};
use crate::body::{parse_message, parse_publish, read_json_body};
use crate::cluster::{LoggedKey, Outcome};
use crate::error::ApiError;
use crate::hub::Hub;
use crate::idempotency::{fingerprint, validate_key, Claim};
use crate::publish::{Publish, Published};
use crate::sse_body::SseBody;
use crate::stream::RESPONSE_HEADERS;
use crate::topic::validate_user;

/// The hub's routes, ready to serve or to merge into a host application's router.
pub fn router(hub: Hub) -> Router {
    Router::new()
        .route("/events", get(subscribe))
        .route("/publish", post(publish))
        .route("/notify/{user}", post(notify))
        .route("/broadcast", post(broadcast))
        .route("/clients", get(clients))
        .route("/clients/{id}", axum::routing::delete(disconnect))
        .route(
            "/tasks",
            post(crate::tasks::routes::create).get(crate::tasks::routes::list),
        )
        .route(
            "/tasks/{id}",
            post(crate::tasks::routes::update).get(crate::tasks::routes::get),
        )
        .route("/presence/{user}", get(presence))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/client/tidings.js", get(crate::client_js::serve))
        .route("/dashboard", get(crate::dashboard::serve))
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(middleware::from_fn_with_state(hub.clone(), cors))
        .with_state(hub)
}

async fn subscribe(State(hub): State<Hub>, req: Request) -> Result<Response, ApiError> {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let tls = req.extensions().get::<crate::server::Tls>().is_some();
    let protocol = match (req.version(), tls) {
        (axum::http::Version::HTTP_2, true) => "h2+tls",
        (axum::http::Version::HTTP_2, false) => "h2",
        (_, true) => "http/1.1+tls",
        _ => "http/1.1",
    };
    let subscription = admit_stream(&hub, req.headers(), req.uri(), peer, protocol).await?;
    let mut res = Response::new(Body::new(SseBody::new(subscription)));
    for (name, value) in RESPONSE_HEADERS {
        res.headers_mut()
            .insert(name, HeaderValue::from_static(value));
    }
    Ok(res)
}

/// The caller of a POST and its JSON body, read within `--max-body-bytes` and
/// `--body-timeout`.
pub(crate) async fn authorized_body(
    hub: &Hub,
    req: Request,
) -> Result<(Principal, bytes::Bytes), ApiError> {
    let principal = publisher(hub, req.headers(), req.uri())?;
    Ok((principal, request_body(hub, req).await?))
}

/// A request's JSON body, read within `--max-body-bytes` and `--body-timeout`.
async fn request_body(hub: &Hub, req: Request) -> Result<bytes::Bytes, ApiError> {
    let (parts, body) = req.into_parts();
    let config = hub.config();
    read_json_body(
        &parts.headers,
        body,
        config.max_body_bytes,
        config.body_timeout,
    )
    .await
}

/// The request's `Idempotency-Key`, checked.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .map_err(|_| ApiError::bad_request("invalid_request", "Idempotency-Key is not text"))?;
    validate_key(key).map_err(|e| ApiError::bad_request("invalid_request", e))?;
    Ok(Some(key.to_owned()))
}

/// Whose keys a key is among: a token's subject, the publish keys together, or `--dev`.
fn key_scope(p: &Principal) -> String {
    match p.kind {
        PrincipalKind::PublishKey => "publish-key".to_owned(),
        PrincipalKind::Dev => "dev".to_owned(),
        _ => format!("sub:{}", p.sub.as_deref().unwrap_or_default()),
    }
}

/// A publish's JSON answer, and whether it repeats an earlier one.
struct Answer {
    json: Bytes,
    replayed: bool,
}

/// Turns a publish outcome into its answer; `shape` renders the events as the endpoint
/// answers (`/publish`, `/notify`, `/broadcast` differ).
fn answer_of(
    outcome: Outcome,
    shape: impl FnOnce(Vec<Published>) -> Bytes,
) -> Result<Answer, ApiError> {
    match outcome {
        Outcome::Fresh(out) => Ok(Answer {
            json: shape(out),
            replayed: false,
        }),
        Outcome::Replayed(out) => Ok(Answer {
            json: shape(out),
            replayed: true,
        }),
        Outcome::Conflict => Err(key_reused()),
    }
}

fn key_reused() -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
        "this Idempotency-Key was already used for another request within \
         --idempotency-window; use a new key for a new request",
    )
}

/// The JSON answer of a publish endpoint, and whether it repeats an earlier one (then sent
/// with `Idempotent-Replayed: true`).
pub(crate) struct Reply {
    pub json: Bytes,
    pub replayed: bool,
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut res = (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            self.json,
        )
            .into_response();
        if self.replayed {
            res.headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
        }
        res
    }
}

/// Runs `publish` once per `Idempotency-Key`: a retry inside the window gets the first
/// answer (marked `Idempotent-Replayed: true`) and publishes nothing. On a cluster node the
/// key is also recorded in the shared log with the events (one atomic step), so a retry on
/// another node, or after this node restarted, is answered with the first event's id too.
async fn at_most_once<F, Fut>(
    hub: &Hub,
    principal: &Principal,
    key: Option<String>,
    endpoint: &str,
    body: &[u8],
    publish: F,
) -> Result<Reply, ApiError>
where
    F: FnOnce(Option<LoggedKey>) -> Fut,
    Fut: std::future::Future<Output = Result<Answer, ApiError>>,
{
    let Some(key) = key else {
        let answer = publish(None).await?;
        return Ok(Reply {
            json: answer.json,
            replayed: answer.replayed,
        });
    };
    let scope = key_scope(principal);
    let logged = hub.inner.cluster.as_ref().map(|_| {
        LoggedKey::new(
            &scope,
            &key,
            endpoint,
            body,
            hub.config().idempotency_window,
        )
    });
    let fingerprint = fingerprint(endpoint, body);
    match hub.inner.idempotency.claim(&scope, &key, fingerprint).await {
        Claim::Replay(json) => {
            hub.inner.metrics.idempotent_replays.inc();
            Ok(Reply {
                json,
                replayed: true,
            })
        }
        Claim::Conflict => Err(key_reused()),
        Claim::First(attempt) => {
            let answer = publish(logged).await?;
            let json = answer.json;
            if answer.replayed {
                hub.inner.metrics.idempotent_replays.inc();
            }
            attempt.succeeded(json.clone());
            Ok(Reply {
                json,
                replayed: answer.replayed,
            })
        }
    }
}

/// What `POST /publish` needs before its body: a valid `Idempotency-Key` (if any) and a
/// caller allowed to publish. Checked by the router and the native path alike, in this order.
pub(crate) fn publish_caller(
    hub: &Hub,
    headers: &HeaderMap,
    uri: &axum::http::Uri,
) -> Result<(Option<String>, Principal), ApiError> {
    let key = idempotency_key(headers)?;
    Ok((key, publisher(hub, headers, uri)?))
}

/// `POST /publish` once its body is read: parse, check every target, publish (once per key).
pub(crate) async fn publish_body(
    hub: &Hub,
    principal: &Principal,
    key: Option<String>,
    bytes: &Bytes,
) -> Result<Reply, ApiError> {
    let (events, batch) = parse_publish(bytes)?;
    for e in &events {
        check_targets(principal, e)?;
    }
    at_most_once(
        hub,
        principal,
        key,
        "/publish",
        bytes,
        |logged| async move {
            let outcome = hub.publish_keyed(events, logged.as_ref()).await?;
            answer_of(outcome, |published| {
                // Written straight from the structs: no `serde_json::Value` in between.
                let json = if batch {
                    serde_json::to_vec(&published)
                } else {
                    serde_json::to_vec(&published.into_iter().next())
                };
                Bytes::from(json.unwrap_or_default())
            })
        },
    )
    .await
}

async fn publish(State(hub): State<Hub>, req: Request) -> Result<Response, ApiError> {
    let (key, principal) = publish_caller(&hub, req.headers(), req.uri())?;
    let bytes = request_body(&hub, req).await?;
    Ok(publish_body(&hub, &principal, key, &bytes)
        .await?
        .into_response())
}

/// Connections of `user` on the other nodes, as of their last heartbeat (0 on a single node).
fn elsewhere_for_user(hub: &Hub, user: &str) -> usize {
    hub.inner
        .cluster
        .as_ref()
        .map_or(0, |c| c.others().users.get(user).copied().unwrap_or(0))
}

/// Connections on the other nodes, as of their last heartbeat (0 on a single node).
fn elsewhere_total(hub: &Hub) -> usize {
    hub.inner.cluster.as_ref().map_or(0, |c| c.others().total)
}

async fn notify(
    State(hub): State<Hub>,
    Path(user): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    validate_user(&user)
        .map_err(|e| ApiError::bad_request("invalid_user", format!("user {user:?}: {e}")))?;
    let key = idempotency_key(req.headers())?;
    let (principal, bytes) = authorized_body(&hub, req).await?;
    let endpoint = format!("/notify/{user}");
    let event = parse_message(&bytes, Publish::to_user(user.clone()))?;
    check_targets(&principal, &event)?;
    at_most_once(&hub, &principal, key, &endpoint, &bytes, |logged| {
        let (hub, user) = (&hub, &user);
        async move {
            let outcome = hub.publish_keyed(vec![event], logged.as_ref()).await?;
            let elsewhere = elsewhere_for_user(hub, user);
            answer_of(outcome, |published| {
                let p = published.into_iter().next();
                Bytes::from(
                    serde_json::json!({
                        "id": p.as_ref().map(|p| p.id.clone()),
                        "sent": p.map_or(0, |p| p.delivered) + elsewhere,
                    })
                    .to_string(),
                )
            })
        }
    })
    .await
    .map(IntoResponse::into_response)
}

async fn broadcast(State(hub): State<Hub>, req: Request) -> Result<Response, ApiError> {
    let key = idempotency_key(req.headers())?;
    let (principal, bytes) = authorized_body(&hub, req).await?;
    let event = parse_message(&bytes, Publish::to_everyone())?;
    check_targets(&principal, &event)?;
    at_most_once(&hub, &principal, key, "/broadcast", &bytes, |logged| {
        let hub = &hub;
        async move {
            let local = hub.connection_count();
            let outcome = hub.publish_keyed(vec![event], logged.as_ref()).await?;
            let elsewhere = elsewhere_total(hub);
            answer_of(outcome, |published| {
                let p = published.into_iter().next();
                Bytes::from(
                    serde_json::json!({
                        "id": p.as_ref().map(|p| p.id.clone()),
                        "sent": p.map_or(0, |p| p.delivered) + elsewhere,
                        "total": local + elsewhere,
                    })
                    .to_string(),
                )
            })
        }
    })
    .await
    .map(IntoResponse::into_response)
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
    // `?connections=1`: the streams themselves (at most 1,000), for the dashboard.
    let listing = query
        .iter()
        .any(|(k, v)| k == "connections" && v != "0" && v != "false");
    let connections: Option<Vec<serde_json::Value>> = listing.then(|| {
        let now = crate::history::unix_ms();
        registry
            .conns
            .values()
            .take(1000)
            .map(|c| {
                serde_json::json!({
                    "clientId": &*c.client_id,
                    "user": c.user.as_deref(),
                    "topics": c.patterns.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
                    "address": c.ip.map(|ip| ip.to_string()),
                    "protocol": c.protocol,
                    "ageS": now.saturating_sub(c.opened_ms) / 1000,
                    "queuedBytes": c.queued_bytes(),
                })
            })
            .collect()
    });
    // On a cluster node, the other nodes' counts as of their last heartbeat are added.
    let mut users: std::collections::BTreeMap<String, usize> = registry
        .user_counts()
        .map(|(u, n)| (u.to_owned(), n))
        .collect();
    let mut topics: std::collections::BTreeMap<String, usize> = registry
        .pattern_counts()
        .map(|(t, n)| (t.to_owned(), n))
        .collect();
    let mut total = registry.conns.len();
    drop(registry);
    let mut body = serde_json::Map::new();
    if let Some(cluster) = &hub.inner.cluster {
        let others = cluster.others();
        total += others.total;
        for (u, n) in &others.users {
            *users.entry(u.clone()).or_default() += n;
        }
        for (t, n) in &others.topics {
            *topics.entry(t.clone()).or_default() += n;
        }
        body.insert("nodes".into(), (others.nodes + 1).into());
    }
    body.insert("total".into(), total.into());
    body.insert("users".into(), serde_json::json!(users));
    body.insert("topics".into(), serde_json::json!(topics));
    if let Some(list) = connections {
        body.insert("connections".into(), list.into());
    }
    Ok(Json(serde_json::Value::Object(body)).into_response())
}

/// `DELETE /clients/{id}` (admin): ends one stream (its client reconnects as after any drop).
async fn disconnect(
    State(hub): State<Hub>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let query = query_pairs(req.uri())?;
    let p = principal(&hub, req.headers(), &query)?;
    if !p.admin {
        return Err(denied(&p, format!("DELETE /clients/{id}")));
    }
    if hub.disconnect(&id) {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no open stream with client id {id:?} on this node"),
        ))
    }
}

/// `GET /presence/{user}` (admin or that user): online, connection count, since when.
async fn presence(
    State(hub): State<Hub>,
    Path(user): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    validate_user(&user)
        .map_err(|e| ApiError::bad_request("invalid_user", format!("user {user:?}: {e}")))?;
    let query = query_pairs(req.uri())?;
    let p = principal(&hub, req.headers(), &query)?;
    if !p.admin && p.sub.as_deref() != Some(user.as_str()) {
        return Err(denied(&p, format!("GET /presence/{user}")));
    }
    let (here, since) = hub.inner.registry().presence(&user);
    let elsewhere = elsewhere_for_user(&hub, &user);
    let connections = here + elsewhere;
    Ok(Json(serde_json::json!({
        "user": user,
        "online": connections > 0,
        "connections": connections,
        "since": since,
    }))
    .into_response())
}

async fn metrics(State(hub): State<Hub>) -> Response {
    let mut text = hub.inner.metrics.render(hub.inner.gauges());
    hub.inner.history.render_metrics(&mut text);
    hub.inner.webhooks.render_metrics(&mut text);
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
    if let Some(cluster) = &hub.inner.cluster {
        if !cluster.is_ready() {
            return ApiError {
                retry_after: Some(1),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "broker_unavailable",
                    "the cluster broker is unreachable; open streams stay open, publishes are refused",
                )
            }
            .into_response();
        }
    }
    Json(serde_json::json!({ "status": "ready" })).into_response()
}

/// CORS for the configured origins, and preflight answers.
async fn cors(State(hub): State<Hub>, req: Request, next: Next) -> Response {
    if let Err(err) = check_dev_host(&hub, req.headers(), req.uri()) {
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
