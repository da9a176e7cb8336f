//! The node's heartbeat: its lease and connection counts, shared every [`HEARTBEAT`],
//! and the log's retention and continuity followed.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use super::{Cluster, Others, HEARTBEAT, LEASE};
use crate::history::unix_ms;
use crate::hub::Inner;

/// Renews the lease and shares counts every [`HEARTBEAT`]; follows retention and the log's
/// continuity.
pub(super) async fn heartbeat(cluster: Arc<Cluster>, hub: Weak<Inner>) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = hub.upgrade() else { return };
        if !cluster.log.is_up() {
            continue;
        }
        let snapshot = {
            let registry = inner.registry();
            let users: serde_json::Map<String, serde_json::Value> = registry
                .user_counts()
                .map(|(u, n)| (u.to_owned(), n.into()))
                .collect();
            let topics: serde_json::Map<String, serde_json::Value> = registry
                .pattern_counts()
                .map(|(t, n)| (t.to_owned(), n.into()))
                .collect();
            serde_json::json!({
                "node": cluster.node,
                "total": registry.conns.len(),
                "users": users,
                "topics": topics,
            })
            .to_string()
        };
        drop(inner);
        if let Ok(snapshots) = cluster.log.heartbeat(&cluster.node, LEASE, &snapshot).await {
            let mut others = Others::default();
            for snap in snapshots {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&snap) else {
                    continue;
                };
                others.nodes += 1;
                others.total += v["total"].as_u64().unwrap_or(0) as usize;
                for (field, into) in [("users", &mut others.users), ("topics", &mut others.topics)]
                {
                    if let Some(map) = v[field].as_object() {
                        for (k, n) in map {
                            *into.entry(k.clone()).or_default() += n.as_u64().unwrap_or(0) as usize;
                        }
                    }
                }
            }
            *cluster.others.write() = others;
        }
        if let Ok(floor) = cluster.log.floor().await {
            cluster.floor.fetch_max(floor.as_u64(), Ordering::AcqRel);
        }
        if let Some(age) = cluster.max_age {
            let age = u64::try_from(age.as_millis()).unwrap_or(u64::MAX);
            let _ = cluster.log.trim_before(unix_ms().saturating_sub(age)).await;
        }
        if cluster.tail_up.load(Ordering::Acquire) {
            let _ = cluster.check_continuity().await;
        }
    }
}
