//! Long tasks on the hub: creating and updating them (each a published `progress` event),
//! reading the table, and rebuilding it from the history at start.

use super::*;

impl Hub {
    /// Creates a task reporting to its user and/or topic: publishes its first `progress`
    /// event (`pending`, 0) and returns its state.
    pub async fn create_task(&self, task: NewTask) -> Result<TaskInfo, TaskError> {
        if task.user.is_none() && task.topic.is_none() {
            return Err(TaskError::Invalid(
                "a task needs a user or a topic to report to".into(),
            ));
        }
        if let Some(m) = &task.message {
            crate::tasks::check_message(m)?;
        }
        let id = crate::tasks::new_task_id();
        let info = TaskInfo {
            task_id: id.clone(),
            progress: 0,
            status: crate::tasks::TaskStatus::Pending,
            message: task.message.clone(),
            result: None,
            user: task.user.clone(),
            topic: task.topic.clone(),
            created_ms: 0,
            updated_ms: 0,
            last_event_id: String::new(),
        };
        self.publish_task(&info).await?;
        if let Some(ttl) = task.ttl {
            self.inner.tasks.keep(&id, ttl);
        }
        Ok(self.inner.tasks.get(&id).unwrap_or(info))
    }

    /// Updates a task (see `tasks` for the rules) and publishes its `progress` event.
    pub async fn update_task(&self, task: &str, update: TaskUpdate) -> Result<TaskInfo, TaskError> {
        let lock = self
            .inner
            .tasks
            .update_lock(task)
            .ok_or_else(|| TaskError::NotFound(task.to_owned()))?;
        let _one_at_a_time = lock.lock().await;
        let current = self
            .inner
            .tasks
            .get(task)
            .ok_or_else(|| TaskError::NotFound(task.to_owned()))?;
        let next = crate::tasks::apply_update(&current, &update)?;
        self.publish_task(&next).await?;
        let now = self.inner.tasks.get(task).unwrap_or(next);
        if now.status.is_finished() {
            // Sent by the node that took the update, so once per cluster.
            self.inner
                .webhooks
                .notify(crate::webhooks::WebhookEvent::TaskFinished, || {
                    serde_json::to_value(&now).unwrap_or_default()
                });
        }
        Ok(now)
    }

    /// A task's state, if the hub knows it.
    pub fn task(&self, task: &str) -> Option<TaskInfo> {
        self.inner.tasks.get(task)
    }

    /// Every task the hub knows (live, and finished within their retention), oldest first: a
    /// backend that restarts finds its unfinished jobs here.
    pub fn tasks(&self) -> Vec<TaskInfo> {
        self.inner.tasks.all()
    }

    /// The tasks reporting to `user`, newest first.
    pub fn tasks_of_user(&self, user: &str) -> Vec<TaskInfo> {
        self.inner.tasks.of_user(user)
    }

    async fn publish_task(&self, info: &TaskInfo) -> Result<(), TaskError> {
        let mut event = Publish::to_everyone();
        event.broadcast = false;
        event.topics.extend(info.topic.clone());
        event.users.extend(info.user.clone());
        event.event = Some(crate::tasks::PROGRESS_EVENT.to_owned());
        event.payload = crate::publish::Payload::Json(crate::tasks::progress_json(info));
        let limits = PublishLimits {
            max_event_bytes: self.inner.config.max_event_bytes,
            max_targets: self.inner.config.max_targets,
        };
        let prepared = event.prepare_system(&limits, crate::tasks::TASK_TOPIC)?;
        self.publish_prepared(vec![prepared]).await?;
        Ok(())
    }
}

impl Inner {
    /// Rebuilds the table of tasks from the history's `$tasks` events (a restart, or a crash).
    pub(super) fn recover_tasks(&self) {
        let Ok(pattern) = Pattern::parse(crate::tasks::TASK_TOPIC) else {
            return;
        };
        let patterns = [pattern];
        let filter = crate::history::ReplayFilter {
            patterns: &patterns,
            user: None,
        };
        let bounds = self.history.bounds();
        let mut after = bounds.floor;
        loop {
            let Ok(page) = self.history.read(after, bounds.newest, &filter, 4096) else {
                return;
            };
            let Some(last) = page.last().map(|e| e.id) else {
                break;
            };
            for event in &page {
                self.tasks.observe(event);
            }
            after = last;
        }
        self.tasks
            .expire(u64::try_from(unix_now().as_millis()).unwrap_or(u64::MAX));
    }
}
