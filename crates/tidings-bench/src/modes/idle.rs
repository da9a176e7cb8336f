//! `idle`: open N subscriptions, hold them, and measure what they cost the hub at rest.
//!
//! The hub is sampled before the first connection and again at the end of `--hold`; the
//! growth divided by the connections held is its memory per idle connection. The generator's
//! own memory is reported beside it, so a reader sees both ends of the sockets.

use std::fmt::Write as _;

use serde_json::{json, Value};
use tokio::time::Instant;

use super::super::procfs;
use super::super::progress::Bar;
use super::super::Setup;
use super::{base_json, finish_now, heading, human_bytes, merge, open_subscriptions, Outcome};

pub async fn run(setup: &Setup, bar: &mut Bar, deadline: Instant) -> anyhow::Result<Outcome> {
    let before = hub_sample(setup).await?;
    let mut pool = open_subscriptions(setup, bar, deadline).await?;
    let hold_until = Instant::now() + setup.hold;
    bar.next_phase();
    while Instant::now() < hold_until.min(deadline) {
        pool.pump(Instant::now() + std::time::Duration::from_millis(100))
            .await?;
        let left = hold_until.saturating_duration_since(Instant::now());
        let held = setup.hold.as_millis().saturating_sub(left.as_millis()) as u64;
        let now = pool.totals();
        bar.show(
            "holding",
            held,
            setup.hold.as_millis() as u64,
            &format!("{} open, {} closed", now.connected - now.closed, now.closed),
        );
    }
    let after = hub_sample(setup).await?;
    let held = pool.totals();
    let generator = held.own;
    let parent = procfs::sample_self();
    let results = pool
        .finish(
            &finish_now(),
            deadline.max(Instant::now() + std::time::Duration::from_secs(30)),
        )
        .await?;
    let merged = merge(results);
    let open = held.connected.saturating_sub(held.closed);

    let mut json = base_json(setup, "idle");
    json.insert("connected".into(), held.connected.into());
    json.insert("failed".into(), held.failed.into());
    json.insert("closed".into(), held.closed.into());
    json.insert("held".into(), open.into());
    json.insert("hold_s".into(), setup.hold.as_secs_f64().into());
    let mut summary = heading(setup, "idle");
    let _ = writeln!(
        summary,
        "subscriptions: {open} held for {:.1} s ({} failed, {} closed by the hub)",
        setup.hold.as_secs_f64(),
        held.failed,
        held.closed
    );
    match (before, after) {
        (Some(before), Some(after)) if open > 0 => {
            let rss = (after.rss_bytes as f64 - before.rss_bytes as f64) / open as f64;
            let pss = (after.pss_bytes as f64 - before.pss_bytes as f64) / open as f64;
            json.insert("hub_rss_before_bytes".into(), before.rss_bytes.into());
            json.insert("hub_rss_after_bytes".into(), after.rss_bytes.into());
            json.insert("hub_bytes_per_connection".into(), json!(rss.round()));
            json.insert("hub_pss_bytes_per_connection".into(), json!(pss.round()));
            let _ = writeln!(
                summary,
                "hub memory: {} -> {} RSS, {} per connection (PSS: {} per connection)",
                human_bytes(before.rss_bytes as f64),
                human_bytes(after.rss_bytes as f64),
                human_bytes(rss),
                human_bytes(pss)
            );
        }
        _ => {
            json.insert("hub_bytes_per_connection".into(), Value::Null);
            let _ = writeln!(summary, "hub memory: not measured (give --hub-pid)");
        }
    }
    let generator_rss = generator.rss_bytes + parent.rss_bytes;
    json.insert("generator_rss_bytes".into(), generator_rss.into());
    json.insert(
        "generator_bytes_per_connection".into(),
        json!((generator_rss as f64 / open.max(1) as f64).round()),
    );
    let _ = writeln!(
        summary,
        "generator memory: {} RSS over {} processes ({} per connection)",
        human_bytes(generator_rss as f64),
        setup.workers + 1,
        human_bytes(generator_rss as f64 / open.max(1) as f64)
    );
    for error in &merged.errors {
        let _ = writeln!(summary, "error: {error}");
    }
    json.insert("errors".into(), json!(merged.errors));
    Ok(Outcome {
        summary,
        json: Value::Object(json),
        plot: None,
    })
}

/// A sample of the hub, after letting it settle a moment; `None` without `--hub-pid`.
async fn hub_sample(setup: &Setup) -> anyhow::Result<Option<procfs::Sample>> {
    if setup.hub_pids.is_empty() {
        return Ok(None);
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    procfs::sample(&setup.hub_pids).map(Some)
}
