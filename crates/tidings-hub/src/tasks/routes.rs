//! `POST /tasks`, `POST /tasks/{id}`, `GET /tasks/{id}`, `GET /tasks?user=u`.
//!
//! Creating and updating a task needs publish permission on every target (its topic, and its
//! user as `users/{user}`), with credentials from the `Authorization` header like every POST.
//! Reading one needs to be its user, or allowed to subscribe to its topic, or admin.

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::Value;

use super::{NewTask, TaskError, TaskInfo, TaskStatus, TaskUpdate};
use crate::admission::{check_targets, denied, principal, query_pairs};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::http::authorized_body;
use crate::hub::Hub;
use crate::publish::Publish;
use crate::topic::{validate_topic, validate_user, Pattern};

impl From<TaskError> for ApiError {
    fn from(e: TaskError) -> Self {
        match e {
            TaskError::NotFound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "task_not_found", e.to_string())
            }
            TaskError::Finished(..) => {
                ApiError::new(StatusCode::CONFLICT, "task_finished", e.to_string())
            }
            TaskError::Invalid(_) => ApiError::bad_request("invalid_request", e.to_string()),
            TaskError::Publish(p) => ApiError::from(p),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    user: Option<String>,
    topic: Option<String>,
    message: Option<String>,
    /// Seconds, or a duration (`"10m"`).
    ttl: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    progress: Option<Value>,
    status: Option<String>,
    message: Option<String>,
    result: Option<Value>,
}

fn parse<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::bad_request(
            "invalid_json",
            format!("the body is not a valid task request: {e}"),
        )
    })
}

/// The publish permission check of a task's targets.
fn may_report(p: &Principal, user: Option<&str>, topic: Option<&str>) -> Result<(), ApiError> {
    let mut targets = Publish::to_everyone();
    targets.broadcast = false;
    targets.users.extend(user.map(str::to_owned));
    targets.topics.extend(topic.map(str::to_owned));
    check_targets(p, &targets)
}

fn may_read(p: &Principal, task: &TaskInfo) -> bool {
    if p.admin {
        return true;
    }
    if task.user.is_some() && p.sub.as_deref() == task.user.as_deref() {
        return true;
    }
    task.topic
        .as_deref()
        .and_then(|t| Pattern::parse(t).ok())
        .is_some_and(|t| p.may_subscribe(&t))
}

pub(crate) async fn create(State(hub): State<Hub>, req: Request) -> Result<Response, ApiError> {
    let (p, bytes) = authorized_body(&hub, req).await?;
    let body: CreateBody = parse(&bytes)?;
    if let Some(u) = &body.user {
        validate_user(u)
            .map_err(|e| ApiError::bad_request("invalid_user", format!("user {u:?}: {e}")))?;
    }
    if let Some(t) = &body.topic {
        validate_topic(t)
            .map_err(|e| ApiError::bad_request("invalid_topic", format!("topic {t:?}: {e}")))?;
    }
    may_report(&p, body.user.as_deref(), body.topic.as_deref())?;
    let ttl = match &body.ttl {
        None => None,
        Some(Value::Number(n)) => Some(
            n.as_f64()
                .filter(|s| *s >= 0.0 && *s <= 30.0 * 86_400.0)
                .map(std::time::Duration::from_secs_f64)
                .ok_or_else(|| {
                    ApiError::bad_request("invalid_request", "ttl is 0 to 30 days in seconds")
                })?,
        ),
        Some(Value::String(s)) => Some(
            crate::units::parse_duration(s)
                .map_err(|e| ApiError::bad_request("invalid_request", format!("ttl: {e}")))?,
        ),
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "ttl is seconds or a duration like \"10m\"",
            ))
        }
    };
    let task = hub
        .create_task(NewTask {
            user: body.user,
            topic: body.topic,
            message: body.message,
            ttl,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(task)).into_response())
}

pub(crate) async fn update(
    State(hub): State<Hub>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let (p, bytes) = authorized_body(&hub, req).await?;
    let body: UpdateBody = parse(&bytes)?;
    let current = hub
        .task(&id)
        .ok_or_else(|| ApiError::from(TaskError::NotFound(id.clone())))?;
    may_report(&p, current.user.as_deref(), current.topic.as_deref())?;
    let progress = match body.progress {
        None => None,
        Some(Value::Number(n)) => Some(
            n.as_u64()
                .filter(|v| *v <= 100)
                .and_then(|v| u8::try_from(v).ok())
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_request",
                        format!("progress is {n}; it is a whole number from 0 to 100"),
                    )
                })?,
        ),
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_request",
                format!("progress is {other}; it is a whole number from 0 to 100"),
            ))
        }
    };
    let status = match body.status.as_deref() {
        None => None,
        Some(s) => Some(TaskStatus::parse(s).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_request",
                format!("status {s:?}: use pending, running, completed or failed"),
            )
        })?),
    };
    let task = hub
        .update_task(
            &id,
            TaskUpdate {
                progress,
                status,
                message: body.message,
                result: body.result,
            },
        )
        .await?;
    Ok(Json(task).into_response())
}

pub(crate) async fn get(
    State(hub): State<Hub>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let query = query_pairs(req.uri())?;
    let p = principal(&hub, req.headers(), &query)?;
    let task = hub
        .task(&id)
        .ok_or_else(|| ApiError::from(TaskError::NotFound(id.clone())))?;
    if !may_read(&p, &task) {
        // Not found rather than forbidden: whether a task exists is not for others to learn.
        return Err(TaskError::NotFound(id).into());
    }
    Ok(Json(task).into_response())
}

pub(crate) async fn list(State(hub): State<Hub>, req: Request) -> Result<Response, ApiError> {
    let query = query_pairs(req.uri())?;
    let p = principal(&hub, req.headers(), &query)?;
    let user = match query.iter().find(|(k, _)| k == "user") {
        Some((_, u)) => u.clone(),
        None => p.sub.as_deref().map(str::to_owned).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_request",
                "give ?user= (or use a token with a subject)",
            )
        })?,
    };
    if !p.admin && p.sub.as_deref() != Some(user.as_str()) {
        return Err(denied(&p, format!("listing the tasks of {user:?}")));
    }
    Ok(
        Json(serde_json::json!({ "user": user, "tasks": hub.tasks_of_user(&user) }))
            .into_response(),
    )
}
