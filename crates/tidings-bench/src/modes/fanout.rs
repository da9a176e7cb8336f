//! `fanout`: N subscribers on one topic, K events, and what each subscriber received.
//!
//! Deliveries per second are counted from the first publish to the last delivery. Latency is
//! publish send time → the read that completed the event, per delivery. Loss and duplication
//! are counted per subscriber by sequence number (publishes that failed are not expected).
//! The hub's CPU time is sampled after the subscriptions settle and again when the last
//! delivery is in, so the connection phase is not charged to deliveries.

use std::fmt::Write as _;
use std::rc::Rc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;

use super::super::plot;
use super::super::procfs;
use super::super::progress::Bar;
use super::super::publisher::{self, Counters};
use super::super::Setup;
use super::{
    base_json, finish_after_publishing, heading, merge, open_subscriptions, percentiles_line,
    percentiles_us, throughput_series, Outcome,
};

pub async fn run(setup: &Setup, bar: &mut Bar, deadline: Instant) -> anyhow::Result<Outcome> {
    let mut pool = open_subscriptions(setup, bar, deadline).await?;
    // Let the hub finish registering what it acknowledged with a response head.
    pool.pump(Instant::now() + Duration::from_millis(300))
        .await?;
    let start = pool.totals();
    let hub_before = sample(setup)?;
    let own_before = procfs::sample_self();

    let counters = Rc::new(Counters::default());
    let plan = setup.publish.clone();
    let publishing = tokio::task::spawn_local(publisher::run(plan, Rc::clone(&counters)));
    let expected_events = setup.publish.events;
    bar.next_phase();
    while !publishing.is_finished() {
        if Instant::now() >= deadline {
            anyhow::bail!("--timeout reached while publishing");
        }
        pool.pump(Instant::now() + Duration::from_millis(100))
            .await?;
        let now = pool.totals();
        bar.show(
            "publishing",
            counters.acked.get() + counters.failed.get(),
            expected_events,
            &format!(
                "{} delivered, {} failed publishes",
                now.received - start.received,
                counters.failed.get()
            ),
        );
    }
    let published = publishing.await?;
    bar.next_phase();
    bar.show("draining", 0, 0, "waiting for the last deliveries");
    let results = finish_after_publishing(&mut pool, &published, setup, deadline).await?;
    let hub_after = sample(setup)?;
    let own_after = procfs::sample_self();
    let merged = merge(results);

    let good_events = published.sent - published.failed.len() as u64;
    let started = merged.progress.connected;
    let deliveries = merged.progress.received;
    let elapsed_ns = merged
        .last_delivery_ns
        .saturating_sub(published.first_send_ns)
        .max(1);
    let seconds = elapsed_ns as f64 / 1e9;
    let per_second = deliveries as f64 / seconds;
    let publish_seconds = published
        .last_ack_ns
        .saturating_sub(published.first_send_ns)
        .max(1) as f64
        / 1e9;
    let generator_cpu = (merged
        .progress
        .own
        .cpu_ticks
        .saturating_sub(start.own.cpu_ticks)
        + own_after.cpu_ticks.saturating_sub(own_before.cpu_ticks)) as f64
        / procfs::TICKS_PER_SECOND;

    let mut json = base_json(setup, "fanout");
    json.insert("connected".into(), started.into());
    json.insert("failed".into(), merged.progress.failed.into());
    json.insert("closed_early".into(), merged.progress.closed.into());
    json.insert("events".into(), setup.publish.events.into());
    json.insert("sent".into(), published.sent.into());
    json.insert("publish_failed".into(), published.failed.len().into());
    json.insert("rate".into(), json!(setup.publish.rate));
    json.insert("publishers".into(), setup.publish.publishers.into());
    json.insert("deliveries".into(), deliveries.into());
    json.insert(
        "expected_deliveries".into(),
        (good_events * started as u64).into(),
    );
    json.insert("lost".into(), merged.lost.into());
    json.insert("duplicated".into(), merged.duplicated.into());
    json.insert("complete_subscribers".into(), merged.complete.into());
    json.insert("duration_s".into(), json!(seconds));
    json.insert("deliveries_per_s".into(), json!(per_second.round()));
    json.insert(
        "publishes_per_s".into(),
        json!((published.sent as f64 / publish_seconds).round()),
    );
    json.insert("latency_us".into(), percentiles_us(&merged.latency));
    json.insert("receive_time".into(), json!(setup.receive_time));
    json.insert(
        "read_pause_us".into(),
        json!(setup.read_pause.as_micros() as u64),
    );
    json.insert("publish_ack_us".into(), percentiles_us(&published.ack));
    json.insert("generator_cpu_s".into(), json!(generator_cpu));

    let mut summary = heading(setup, "fanout");
    let _ = writeln!(
        summary,
        "subscribers: {started} open ({} failed, {} closed early), {} workers",
        merged.progress.failed, merged.progress.closed, setup.workers
    );
    let _ = writeln!(
        summary,
        "published: {} events ({} failed) in {:.2} s, {:.0}/s, {}",
        published.sent,
        published.failed.len(),
        publish_seconds,
        published.sent as f64 / publish_seconds,
        match setup.publish.rate {
            Some(rate) => format!("at {rate}/s"),
            None => format!("back to back, {} publisher(s)", setup.publish.publishers),
        }
    );
    let _ = writeln!(
        summary,
        "delivered: {deliveries} of {} expected in {seconds:.2} s = {per_second:.0} deliveries/s",
        good_events * started as u64
    );
    let _ = writeln!(
        summary,
        "lost: {}  duplicated: {}  (subscribers with every event: {} of {started})",
        merged.lost, merged.duplicated, merged.complete
    );
    summary.push_str(&percentiles_line(
        "latency publish->receive",
        &merged.latency,
    ));
    summary.push_str(&percentiles_line("publish acknowledgement", &published.ack));
    match (hub_before, hub_after) {
        (Some(before), Some(after)) => {
            let cpu = after.cpu_seconds_since(&before);
            let per = cpu / deliveries.max(1) as f64;
            json.insert("hub_cpu_s".into(), json!(cpu));
            json.insert(
                "hub_cpu_per_delivery_us".into(),
                json!((per * 1e6 * 1000.0).round() / 1000.0),
            );
            let _ = writeln!(
                summary,
                "hub CPU: {cpu:.2} s, {:.3} µs per delivery (the generator used {generator_cpu:.2} s)",
                per * 1e6
            );
        }
        _ => {
            json.insert("hub_cpu_per_delivery_us".into(), Value::Null);
            let _ = writeln!(
                summary,
                "hub CPU: not measured (give --hub-pid); the generator used {generator_cpu:.2} s"
            );
        }
    }
    let errors: Vec<String> = published
        .errors
        .iter()
        .chain(&merged.errors)
        .cloned()
        .collect();
    for error in &errors {
        let _ = writeln!(summary, "error: {error}");
    }
    json.insert("errors".into(), json!(errors));
    Ok(Outcome {
        summary,
        json: Value::Object(json),
        plot: Some(plot::Data {
            title: format!(
                "fanout: {started} subscribers, {} events{}",
                published.sent,
                setup
                    .publish
                    .rate
                    .map(|r| format!(" at {r}/s"))
                    .unwrap_or_default()
            ),
            latency: merged.latency,
            throughput: throughput_series(&merged.timeline),
        }),
    })
}

fn sample(setup: &Setup) -> anyhow::Result<Option<procfs::Sample>> {
    if setup.hub_pids.is_empty() {
        return Ok(None);
    }
    procfs::sample(&setup.hub_pids).map(Some)
}
