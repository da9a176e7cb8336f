//! `publish`: publish throughput and acknowledgement latency with C concurrent publishers,
//! optionally with N subscribers listening (then loss and duplication are checked too).

use std::fmt::Write as _;
use std::rc::Rc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;

use super::super::plot;
use super::super::pool::Pool;
use super::super::procfs;
use super::super::progress::Bar;
use super::super::publisher::{self, Counters};
use super::super::Setup;
use super::{
    base_json, finish_after_publishing, heading, merge, open_subscriptions, percentiles_line,
    percentiles_us, Outcome,
};

pub async fn run(setup: &Setup, bar: &mut Bar, deadline: Instant) -> anyhow::Result<Outcome> {
    let mut pool: Option<Pool> = if setup.subscribers > 0 {
        Some(open_subscriptions(setup, bar, deadline).await?)
    } else {
        None
    };
    let hub_before = sample(setup)?;
    let counters = Rc::new(Counters::default());
    let publishing =
        tokio::task::spawn_local(publisher::run(setup.publish.clone(), Rc::clone(&counters)));
    bar.next_phase();
    while !publishing.is_finished() {
        if Instant::now() >= deadline {
            anyhow::bail!("--timeout reached while publishing");
        }
        let tick = Instant::now() + Duration::from_millis(100);
        match &mut pool {
            Some(pool) => pool.pump(tick).await?,
            None => tokio::time::sleep_until(tick).await,
        }
        bar.show(
            "publishing",
            counters.acked.get() + counters.failed.get(),
            setup.publish.events,
            &format!("{} failed", counters.failed.get()),
        );
    }
    let published = publishing.await?;
    let hub_after = sample(setup)?;
    let acked = published.sent - published.failed.len() as u64;
    let seconds = published
        .last_ack_ns
        .saturating_sub(published.first_send_ns)
        .max(1) as f64
        / 1e9;
    let per_second = acked as f64 / seconds;

    let mut json = base_json(setup, "publish");
    json.insert("publishers".into(), setup.publish.publishers.into());
    json.insert("rate".into(), json!(setup.publish.rate));
    json.insert("sent".into(), published.sent.into());
    json.insert("acked".into(), acked.into());
    json.insert("publish_failed".into(), published.failed.len().into());
    json.insert("duration_s".into(), json!(seconds));
    json.insert("publishes_per_s".into(), json!(per_second.round()));
    json.insert("ack_us".into(), percentiles_us(&published.ack));
    let mut summary = heading(setup, "publish");
    let _ = writeln!(
        summary,
        "published: {acked} acknowledged ({} failed) in {seconds:.2} s by {} publisher(s) = {per_second:.0} publishes/s",
        published.failed.len(),
        setup.publish.publishers
    );
    summary.push_str(&percentiles_line("acknowledgement", &published.ack));
    if let (Some(before), Some(after)) = (hub_before, hub_after) {
        let cpu = after.cpu_seconds_since(&before);
        let per = cpu / acked.max(1) as f64;
        json.insert("hub_cpu_s".into(), json!(cpu));
        json.insert(
            "hub_cpu_per_publish_us".into(),
            json!((per * 1e6 * 1000.0).round() / 1000.0),
        );
        let _ = writeln!(
            summary,
            "hub CPU: {cpu:.2} s, {:.2} µs per publish",
            per * 1e6
        );
    }
    let mut errors = published.errors.clone();
    let mut latency = None;
    if let Some(mut pool) = pool {
        let results = finish_after_publishing(&mut pool, &published, setup, deadline).await?;
        let merged = merge(results);
        json.insert("deliveries".into(), merged.progress.received.into());
        json.insert("lost".into(), merged.lost.into());
        json.insert("duplicated".into(), merged.duplicated.into());
        json.insert("latency_us".into(), percentiles_us(&merged.latency));
        let _ = writeln!(
            summary,
            "subscribers: {} delivered, lost {}, duplicated {}",
            merged.progress.received, merged.lost, merged.duplicated
        );
        summary.push_str(&percentiles_line(
            "latency publish->receive",
            &merged.latency,
        ));
        errors.extend(merged.errors);
        latency = Some(merged.latency);
    }
    for error in &errors {
        let _ = writeln!(summary, "error: {error}");
    }
    json.insert("errors".into(), json!(errors));
    Ok(Outcome {
        summary,
        json: Value::Object(json),
        plot: Some(plot::Data {
            title: format!("publish: {} publisher(s)", setup.publish.publishers),
            latency: latency.unwrap_or(published.ack),
            throughput: Vec::new(),
        }),
    })
}

fn sample(setup: &Setup) -> anyhow::Result<Option<procfs::Sample>> {
    if setup.hub_pids.is_empty() {
        return Ok(None);
    }
    procfs::sample(&setup.hub_pids).map(Some)
}
