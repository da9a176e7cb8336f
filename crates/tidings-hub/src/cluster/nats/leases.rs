//! Leases and connection counts on NATS: the side streams `{name}_nodes` (each node's
//! snapshot, expiring after the lease) and `{name}_users` (per user, the streams each node
//! holds, updated by compare-and-set).

use std::collections::HashMap;

use async_nats::jetstream::stream;
use bytes::Bytes;
use futures_util::StreamExt as _;

use super::{down, NatsLog};
use crate::cluster::broker::BrokerError;

impl NatsLog {
    async fn side(&self, suffix: &str) -> Result<stream::Stream, BrokerError> {
        self.get(&format!("{}_{suffix}", self.name)).await
    }

    /// The subjects holding a message in a side stream.
    async fn subjects(&self, suffix: &str) -> Result<Vec<String>, BrokerError> {
        let stream = self.side(suffix).await?;
        let mut listed = stream
            .info_with_subjects(format!("{}.{suffix}.*", self.name))
            .await
            .map_err(|e| down(e.to_string()))?;
        let mut out = Vec::new();
        while let Some(item) = listed.next().await {
            if let Ok((subject, _)) = item {
                out.push(subject);
            }
        }
        Ok(out)
    }

    /// Renews this node's snapshot; the other live nodes' snapshots.
    pub async fn heartbeat(&self, node: &str, snapshot: &str) -> Result<Vec<String>, BrokerError> {
        let mine = format!("{}.nodes.{node}", self.name);
        self.js
            .publish(mine.clone(), Bytes::from(snapshot.to_owned()))
            .await
            .map_err(|e| down(e.to_string()))?
            .await
            .map_err(|e| down(e.to_string()))?;
        let stream = self.side("nodes").await?;
        let mut out = Vec::new();
        for subject in self.subjects("nodes").await? {
            if subject == mine {
                continue;
            }
            if let Ok(m) = stream.direct_get_last_for_subject(subject).await {
                out.push(String::from_utf8_lossy(&m.payload).into_owned());
            }
        }
        Ok(out)
    }

    /// Leaves the live set.
    pub async fn leave(&self, node: &str) -> Result<(), BrokerError> {
        self.side("nodes")
            .await?
            .purge()
            .filter(format!("{}.nodes.{node}", self.name))
            .await
            .map(|_| ())
            .map_err(|e| down(e.to_string()))
    }

    /// Changes `user`'s count on `node` by `delta` (compare-and-set); with `limit`, only if the
    /// live nodes' total stays within it. Whether it changed.
    async fn adjust(
        &self,
        node: &str,
        user: &str,
        delta: i64,
        limit: Option<usize>,
    ) -> Result<bool, BrokerError> {
        let subject = format!("{}.users.{}", self.name, user_key(user));
        let stream = self.side("users").await?;
        for _ in 0..16 {
            let (mut counts, last): (HashMap<String, i64>, u64) = match stream
                .direct_get_last_for_subject(subject.clone())
                .await
            {
                Ok(m) => (
                    serde_json::from_slice(&m.payload).unwrap_or_default(),
                    m.sequence,
                ),
                Err(e) if e.kind() == stream::DirectGetErrorKind::NotFound => (HashMap::new(), 0),
                Err(e) => return Err(down(e.to_string())),
            };
            if let Some(limit) = limit {
                let prefix = format!("{}.nodes.", self.name);
                let live: Vec<String> = self
                    .subjects("nodes")
                    .await?
                    .into_iter()
                    .filter_map(|s| s.strip_prefix(&prefix).map(str::to_owned))
                    .collect();
                counts.retain(|n, _| n == node || live.contains(n));
                let total: i64 = counts.values().sum();
                if total >= i64::try_from(limit).unwrap_or(i64::MAX) {
                    return Ok(false);
                }
            }
            let n = counts.entry(node.to_owned()).or_default();
            *n = (*n + delta).max(0);
            counts.retain(|_, n| *n > 0);
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(
                "Nats-Expected-Last-Subject-Sequence",
                last.to_string().as_str(),
            );
            let value = Bytes::from(serde_json::to_vec(&counts).unwrap_or_default());
            let sent = self
                .js
                .publish_with_headers(subject.clone(), headers, value)
                .await
                .map_err(|e| down(e.to_string()))?;
            if sent.await.is_ok() {
                return Ok(true);
            }
        }
        Err(down("too much contention on a user's connection count"))
    }

    pub async fn acquire(&self, node: &str, user: &str, limit: usize) -> Result<bool, BrokerError> {
        self.adjust(node, user, 1, Some(limit)).await
    }

    pub async fn release(&self, node: &str, user: &str) -> Result<(), BrokerError> {
        self.adjust(node, user, -1, None).await.map(|_| ())
    }
}

/// A key-value key for a user id (which may hold any printable character): hex.
fn user_key(user: &str) -> String {
    user.bytes().map(|b| format!("{b:02x}")).collect()
}
