//! Progress of long tasks: a backend reports how far a job is, and every subscriber that may
//! see the task gets `progress` events, also one that connects late or resumes mid-job.
//!
//! A task lives in the hub's own history. Its creation and every update is an event `progress`
//! (data `{"taskId","progress","status","message","result"?}`) to the task's user and/or topic,
//! and to the system topic `$tasks`, which no client can subscribe to or match with `**`: it
//! indexes the hub's own events so the table of tasks is rebuilt from the history when the hub
//! starts (an acknowledged update survives `kill -9` like any event). The table is updated
//! where events are fanned out (`Inner::fan_out`), in id order, under the fan-out lock: a new
//! subscriber's snapshot of the live tasks it may see is exactly the state its replay and live
//! queue continue from.
//!
//! Rules: progress is 0 to 100 and never goes back (400); `pending` may become `running`,
//! `completed` or `failed`, `running` may become `completed` or `failed`; a finished task
//! (`completed` or `failed`) takes no update (409); an unknown task is 404. Updates of one task
//! are applied one at a time (on one node). Finished tasks are kept for `--task-retention` (or
//! the task's own `ttl`), then dropped from the table.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::event::{EventId, StoredEvent};
use crate::topic::Pattern;

pub(crate) mod routes;

/// The system topic every task event also goes to.
pub const TASK_TOPIC: &str = "$tasks";
/// The event type of task updates.
pub const PROGRESS_EVENT: &str = "progress";
/// Longest `message`.
pub const MAX_MESSAGE: usize = 1024;

/// Where a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    /// Created, not started.
    Pending,
    /// Under way.
    Running,
    /// Done (progress 100).
    Completed,
    /// Gave up.
    Failed,
}

impl TaskStatus {
    /// Reads `pending`, `running`, `completed` or `failed`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(Self::Pending),
            "running" => Some(Self::Running),
            "completed" => Some(Self::Completed),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }

    /// `completed` or `failed`: no further update.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Completed | Self::Failed)
    }

    /// Whether a task in this status may move to `next`.
    pub fn may_become(self, next: TaskStatus) -> bool {
        match self {
            Self::Pending => true,
            Self::Running => next != Self::Pending,
            Self::Completed | Self::Failed => false,
        }
    }
}

/// A task as `GET /tasks/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct TaskInfo {
    /// Its id.
    #[serde(rename = "taskId")]
    pub task_id: String,
    /// 0 to 100.
    pub progress: u8,
    /// Where it is.
    pub status: TaskStatus,
    /// The latest message.
    pub message: Option<String>,
    /// What it produced (any JSON), once given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// The user it reports to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The topic it reports to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// When it was created (Unix ms).
    #[serde(rename = "createdAt")]
    pub created_ms: u64,
    /// When it was last updated (Unix ms).
    #[serde(rename = "updatedAt")]
    pub updated_ms: u64,
    /// The id of its latest `progress` event.
    #[serde(rename = "lastEventId")]
    pub last_event_id: String,
}

/// A task to create.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct NewTask {
    /// Report to this user's connections.
    pub user: Option<String>,
    /// Report to this topic's subscribers.
    pub topic: Option<String>,
    /// A first message.
    pub message: Option<String>,
    /// How long to keep it once finished (default `--task-retention`).
    pub ttl: Option<Duration>,
}

impl NewTask {
    /// A task reporting to `user`.
    pub fn for_user(user: impl Into<String>) -> Self {
        Self {
            user: Some(user.into()),
            ..Self::default()
        }
    }

    /// A task reporting to `topic`.
    pub fn for_topic(topic: impl Into<String>) -> Self {
        Self {
            topic: Some(topic.into()),
            ..Self::default()
        }
    }

    /// Sets the first message.
    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }
}

/// An update of a task; unset fields keep their value.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct TaskUpdate {
    /// 0 to 100, not below the current progress.
    pub progress: Option<u8>,
    /// The new status.
    pub status: Option<TaskStatus>,
    /// A message.
    pub message: Option<String>,
    /// What it produced.
    pub result: Option<Value>,
}

impl TaskUpdate {
    /// Progress, still running.
    pub fn progress(progress: u8) -> Self {
        Self {
            progress: Some(progress),
            status: Some(TaskStatus::Running),
            ..Self::default()
        }
    }

    /// Completed, with a result.
    pub fn completed(result: Option<Value>) -> Self {
        Self {
            status: Some(TaskStatus::Completed),
            result,
            ..Self::default()
        }
    }

    /// Failed, with a message.
    pub fn failed(message: impl Into<String>) -> Self {
        Self {
            status: Some(TaskStatus::Failed),
            message: Some(message.into()),
            ..Self::default()
        }
    }

    /// Sets a message.
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }
}

/// Why a task operation was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// No such task (never created, or dropped after its retention).
    #[error("no task {0:?} (never created, or finished longer ago than its retention)")]
    NotFound(String),
    /// The task is finished and takes no update.
    #[error("task {0:?} is {1}; a finished task takes no update")]
    Finished(String, &'static str),
    /// The request breaks a rule (progress backwards, bad status, ...).
    #[error("{0}")]
    Invalid(String),
    /// The event could not be published.
    #[error(transparent)]
    Publish(#[from] crate::publish::PublishError),
}

/// The data of a `progress` event.
#[derive(Debug, Serialize, Deserialize)]
struct ProgressData {
    #[serde(rename = "taskId")]
    task_id: String,
    progress: u8,
    status: TaskStatus,
    message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    result: Option<Value>,
}

struct Entry {
    info: TaskInfo,
    id: EventId,
    /// How long to keep it once finished.
    keep_ms: Option<u64>,
    finished_ms: Option<u64>,
    /// Serializes updates of this task on this node.
    updating: Arc<tokio::sync::Mutex<()>>,
}

/// The table of tasks.
pub(crate) struct Tasks {
    map: Mutex<HashMap<String, Entry>>,
    retention_ms: u64,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Tasks {
    pub fn new(retention: Duration) -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            retention_ms: ms(retention),
        }
    }

    /// Whether an event is a task event (it goes to [`TASK_TOPIC`], always its last topic).
    pub fn is_task_event(event: &StoredEvent) -> bool {
        event.topics.last().is_some_and(|t| &**t == TASK_TOPIC)
    }

    /// Takes a task event into the table (called in id order).
    pub fn observe(&self, event: &StoredEvent) {
        let Some(data) = data_line(&event.frame) else {
            return;
        };
        let Ok(data) = serde_json::from_slice::<ProgressData>(data) else {
            return;
        };
        let user = event.users.first().map(|u| u.to_string());
        let topic = event
            .topics
            .iter()
            .find(|t| &***t != TASK_TOPIC)
            .map(|t| t.to_string());
        let mut map = self.map.lock();
        let finished = data.status.is_finished().then_some(event.published_ms);
        match map.get_mut(&data.task_id) {
            // A state older than the one kept (a node's look back at the log racing its tail).
            Some(entry) if entry.id >= event.id => {}
            Some(entry) => {
                entry.info.progress = data.progress;
                entry.info.status = data.status;
                entry.info.message = data.message;
                if data.result.is_some() {
                    entry.info.result = data.result;
                }
                entry.info.updated_ms = event.published_ms;
                entry.info.last_event_id = event.id.to_string();
                entry.id = event.id;
                entry.finished_ms = finished;
            }
            None => {
                map.insert(
                    data.task_id.clone(),
                    Entry {
                        info: TaskInfo {
                            task_id: data.task_id,
                            progress: data.progress,
                            status: data.status,
                            message: data.message,
                            result: data.result,
                            user,
                            topic,
                            created_ms: event.published_ms,
                            updated_ms: event.published_ms,
                            last_event_id: event.id.to_string(),
                        },
                        id: event.id,
                        keep_ms: None,
                        finished_ms: finished,
                        updating: Arc::default(),
                    },
                );
            }
        }
    }

    /// Sets how long a task is kept once finished.
    pub fn keep(&self, task: &str, ttl: Duration) {
        if let Some(entry) = self.map.lock().get_mut(task) {
            entry.keep_ms = Some(ms(ttl));
        }
    }

    /// Drops the tasks finished longer ago than their retention.
    pub fn expire(&self, now_ms: u64) {
        let default = self.retention_ms;
        self.map.lock().retain(|_, e| match e.finished_ms {
            Some(at) => now_ms.saturating_sub(at) < e.keep_ms.unwrap_or(default),
            None => true,
        });
    }

    /// A task's state.
    pub fn get(&self, task: &str) -> Option<TaskInfo> {
        self.map.lock().get(task).map(|e| e.info.clone())
    }

    /// The tasks reporting to `user`, newest first.
    pub fn of_user(&self, user: &str) -> Vec<TaskInfo> {
        let mut out: Vec<TaskInfo> = self
            .map
            .lock()
            .values()
            .filter(|e| e.info.user.as_deref() == Some(user))
            .map(|e| e.info.clone())
            .collect();
        out.sort_by_key(|t| std::cmp::Reverse(t.created_ms));
        out
    }

    /// Every task in the table, oldest first.
    pub fn all(&self) -> Vec<TaskInfo> {
        let mut out: Vec<TaskInfo> = self.map.lock().values().map(|e| e.info.clone()).collect();
        out.sort_by_key(|t| t.created_ms);
        out
    }

    /// The lock that serializes updates of `task`, if it exists.
    pub fn update_lock(&self, task: &str) -> Option<Arc<tokio::sync::Mutex<()>>> {
        self.map.lock().get(task).map(|e| Arc::clone(&e.updating))
    }

    /// Tasks in the table (for `/metrics`).
    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    /// One `progress` event (without an id, so it does not move the client's position) per
    /// unfinished task this subscriber may see whose latest update is not after `after` (a
    /// resume replays those itself). Called under the fan-out lock.
    pub fn snapshot(
        &self,
        patterns: &[Pattern],
        user: Option<&str>,
        after: Option<EventId>,
        out: &mut BytesMut,
    ) {
        let map = self.map.lock();
        let mut live: Vec<&Entry> = map
            .values()
            .filter(|e| !e.info.status.is_finished())
            .filter(|e| after.is_none_or(|a| e.id <= a))
            .filter(|e| {
                (user.is_some() && e.info.user.as_deref() == user)
                    || e.info
                        .topic
                        .as_deref()
                        .is_some_and(|t| patterns.iter().any(|p| p.matches(t)))
            })
            .collect();
        live.sort_by_key(|e| e.id);
        for e in live {
            let data = progress_json(&e.info);
            let _ = tidings_wire::Event::new(&data)
                .with_event(PROGRESS_EVENT)
                .encode_into(out);
        }
    }
}

/// The data of the `progress` event for a task's state.
pub(crate) fn progress_json(info: &TaskInfo) -> String {
    serde_json::to_string(&ProgressData {
        task_id: info.task_id.clone(),
        progress: info.progress,
        status: info.status,
        message: info.message.clone(),
        result: info.result.clone(),
    })
    .unwrap_or_default()
}

/// The (single) `data:` line of a frame the hub encoded from compact JSON.
fn data_line(frame: &Bytes) -> Option<&[u8]> {
    let at = memchr::memmem::find(frame, b"\ndata: ")? + "\ndata: ".len();
    let len = memchr::memchr(b'\n', &frame[at..])?;
    Some(&frame[at..at + len])
}

/// A fresh task id: 96 random bits, hex.
pub(crate) fn new_task_id() -> String {
    let bits: [u8; 12] = rand::random();
    let mut id = String::with_capacity(26);
    id.push_str("t_");
    for b in bits {
        id.push_str(&format!("{b:02x}"));
    }
    id
}

/// Checks an update against the current state; the state after it.
pub(crate) fn apply_update(current: &TaskInfo, update: &TaskUpdate) -> Result<TaskInfo, TaskError> {
    if current.status.is_finished() {
        let status = if current.status == TaskStatus::Completed {
            "completed"
        } else {
            "failed"
        };
        return Err(TaskError::Finished(current.task_id.clone(), status));
    }
    let mut next = current.clone();
    if let Some(p) = update.progress {
        if p > 100 {
            return Err(TaskError::Invalid(format!(
                "progress is {p}; it is 0 to 100"
            )));
        }
        if p < current.progress {
            return Err(TaskError::Invalid(format!(
                "progress never goes back: the task is at {}, the update says {p}",
                current.progress
            )));
        }
        next.progress = p;
    }
    if let Some(status) = update.status {
        if !current.status.may_become(status) {
            return Err(TaskError::Invalid(format!(
                "a {:?} task cannot become {:?}",
                current.status, status
            )));
        }
        next.status = status;
        if status == TaskStatus::Completed {
            if update.progress.is_some_and(|p| p != 100) {
                return Err(TaskError::Invalid(
                    "a completed task is at progress 100".into(),
                ));
            }
            next.progress = 100;
        }
    } else if update.progress.is_some() && current.status == TaskStatus::Pending {
        next.status = TaskStatus::Running;
    }
    if let Some(m) = &update.message {
        check_message(m)?;
        next.message = Some(m.clone());
    }
    if update.result.is_some() {
        next.result.clone_from(&update.result);
    }
    Ok(next)
}

pub(crate) fn check_message(m: &str) -> Result<(), TaskError> {
    if m.len() > MAX_MESSAGE {
        return Err(TaskError::Invalid(format!(
            "message is {} bytes, at most {MAX_MESSAGE}",
            m.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(status: TaskStatus, progress: u8) -> TaskInfo {
        TaskInfo {
            task_id: "t_1".into(),
            progress,
            status,
            message: None,
            result: None,
            user: Some("u".into()),
            topic: None,
            created_ms: 0,
            updated_ms: 0,
            last_event_id: String::new(),
        }
    }

    #[test]
    fn progress_never_goes_back_and_stays_within_0_to_100() {
        let t = info(TaskStatus::Running, 40);
        assert!(apply_update(&t, &TaskUpdate::progress(39)).is_err());
        assert!(apply_update(&t, &TaskUpdate::progress(101)).is_err());
        assert_eq!(
            apply_update(&t, &TaskUpdate::progress(40))
                .unwrap()
                .progress,
            40
        );
        assert_eq!(
            apply_update(&t, &TaskUpdate::progress(41))
                .unwrap()
                .progress,
            41
        );
    }

    #[test]
    fn status_moves_forward_only_and_finished_tasks_take_nothing() {
        let pending = info(TaskStatus::Pending, 0);
        let running = apply_update(&pending, &TaskUpdate::progress(5)).unwrap();
        assert_eq!(running.status, TaskStatus::Running);
        let back = TaskUpdate {
            status: Some(TaskStatus::Pending),
            ..TaskUpdate::default()
        };
        assert!(matches!(
            apply_update(&running, &back),
            Err(TaskError::Invalid(_))
        ));
        let done = apply_update(&running, &TaskUpdate::completed(Some(Value::from(1)))).unwrap();
        assert_eq!((done.status, done.progress), (TaskStatus::Completed, 100));
        assert!(matches!(
            apply_update(&done, &TaskUpdate::progress(100)),
            Err(TaskError::Finished(..))
        ));
        let failed = apply_update(&running, &TaskUpdate::failed("boom")).unwrap();
        assert!(matches!(
            apply_update(&failed, &TaskUpdate::default()),
            Err(TaskError::Finished(..))
        ));
    }

    #[test]
    fn the_data_line_is_found_in_an_encoded_frame() {
        let frame = tidings_wire::Event::new("{\"a\":1}")
            .with_id("0000000000000001")
            .with_event("progress")
            .encode()
            .unwrap();
        assert_eq!(data_line(&frame), Some(&b"{\"a\":1}"[..]));
    }
}
