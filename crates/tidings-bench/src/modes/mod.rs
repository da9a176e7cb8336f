//! The three measurements and what they share: opening the subscriptions over the worker
//! processes, merging the workers' results, and printing the report (a readable summary,
//! then exactly one JSON line, on stdout).

mod fanout;
mod idle;
mod publish;

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::plot;
use super::pool::Pool;
use super::progress::Bar;
use super::protocol::{Command, Progress, WorkerResult, WorkerSpec};
use super::{new_histogram, Mode, Setup};

/// What a mode hands back: the summary lines, the JSON object, and what `--plot` draws.
pub struct Outcome {
    pub summary: String,
    pub json: Value,
    pub plot: Option<plot::Data>,
}

/// Runs the chosen mode and prints its report.
pub async fn run(setup: Setup) -> anyhow::Result<ExitCode> {
    let mut bar = Bar::new(setup.quiet);
    let deadline = Instant::now() + setup.timeout;
    let outcome = match setup.mode {
        Mode::Idle => idle::run(&setup, &mut bar, deadline).await,
        Mode::Fanout => fanout::run(&setup, &mut bar, deadline).await,
        Mode::Publish => publish::run(&setup, &mut bar, deadline).await,
    };
    bar.clear();
    let outcome = outcome?;
    print!("{}", outcome.summary);
    if let (Some(path), Some(data)) = (&setup.plot, &outcome.plot) {
        plot::draw(path, data).with_context(|| format!("drawing {}", path.display()))?;
        println!("plot: {}", path.display());
    }
    println!("{}", serde_json::to_string(&outcome.json)?);
    Ok(ExitCode::SUCCESS)
}

/// Starts the workers and waits until every subscription has started or failed.
pub(super) async fn open_subscriptions(
    setup: &Setup,
    bar: &mut Bar,
    deadline: Instant,
) -> anyhow::Result<Pool> {
    let total = setup.subscribers;
    let workers = setup.workers;
    let specs = (0..workers)
        .map(|index| {
            let first = total * index / workers;
            let end = total * (index + 1) / workers;
            WorkerSpec {
                index,
                addr: setup.subscribe.addr,
                request: setup.subscribe_request.clone(),
                first,
                count: end - first,
                sources: setup.sources.clone(),
                parse: setup.parse,
                epoch_ns: setup.epoch_ns,
                connect_concurrency: setup.connect_concurrency,
                bucket_ms: BUCKET_MS,
                receive_time: setup.receive_time,
                read_pause_us: u64::try_from(setup.read_pause.as_micros()).unwrap_or(u64::MAX),
            }
        })
        .collect();
    let mut pool = Pool::spawn(specs).await?;
    bar.next_phase();
    while !pool.all_settled() {
        if Instant::now() >= deadline {
            bail!("the subscriptions did not all start before --timeout");
        }
        pool.pump(Instant::now() + Duration::from_millis(100))
            .await?;
        let now = pool.totals();
        bar.show(
            "connecting",
            (now.connected + now.failed) as u64,
            total as u64,
            &format!("{} open, {} failed", now.connected, now.failed),
        );
    }
    let now = pool.totals();
    if now.connected == 0 {
        let results = pool
            .finish(&finish_now(), Instant::now() + Duration::from_secs(10))
            .await?;
        let errors = merge(results).errors.join("; ");
        bail!("no subscription could start: {errors}");
    }
    Ok(pool)
}

/// Tells the workers what was published and waits (past `deadline` by the drain time and a
/// margin at most) for their results.
pub(super) async fn finish_after_publishing(
    pool: &mut Pool,
    published: &super::publisher::Outcome,
    setup: &Setup,
    deadline: Instant,
) -> anyhow::Result<Vec<WorkerResult>> {
    let command = Command::Finish {
        events: published.sent,
        failed: published.failed.clone(),
        drain_ms: setup.drain.as_millis() as u64,
    };
    let wait = deadline.max(Instant::now() + setup.drain + Duration::from_secs(30));
    pool.finish(&command, wait).await
}

/// Ends a run that published nothing.
pub(super) fn finish_now() -> Command {
    Command::Finish {
        events: 0,
        failed: Vec::new(),
        drain_ms: 0,
    }
}

/// Width of a throughput-over-time bucket.
pub(super) const BUCKET_MS: u64 = 100;

/// The workers' results added up.
pub(super) struct Merged {
    pub progress: Progress,
    pub lost: u64,
    pub duplicated: u64,
    pub complete: usize,
    pub latency: Histogram<u64>,
    pub timeline: Vec<u64>,
    pub last_delivery_ns: u64,
    pub errors: Vec<String>,
}

pub(super) fn merge(results: Vec<WorkerResult>) -> Merged {
    let mut merged = Merged {
        progress: Progress::default(),
        lost: 0,
        duplicated: 0,
        complete: 0,
        latency: new_histogram(),
        timeline: Vec::new(),
        last_delivery_ns: 0,
        errors: Vec::new(),
    };
    for result in results {
        let p = result.progress;
        merged.progress.connected += p.connected;
        merged.progress.failed += p.failed;
        merged.progress.closed += p.closed;
        merged.progress.received += p.received;
        merged.progress.own.cpu_ticks += p.own.cpu_ticks;
        merged.progress.own.rss_bytes += p.own.rss_bytes;
        merged.progress.own.pss_bytes += p.own.pss_bytes;
        merged.lost += result.lost;
        merged.duplicated += result.duplicated;
        merged.complete += result.complete;
        for (value, count) in result.latency {
            merged.latency.saturating_record_n(value, count);
        }
        if merged.timeline.len() < result.timeline.len() {
            merged.timeline.resize(result.timeline.len(), 0);
        }
        for (slot, count) in merged.timeline.iter_mut().zip(result.timeline) {
            *slot += count;
        }
        merged.last_delivery_ns = merged.last_delivery_ns.max(result.last_delivery_ns);
        for error in result.errors {
            if !merged.errors.contains(&error) && merged.errors.len() < 8 {
                merged.errors.push(error);
            }
        }
    }
    merged
}

/// Percentiles of a histogram in ns, as µs.
pub(super) fn percentiles_us(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return Value::Null;
    }
    let us = |ns: u64| (ns as f64 / 1000.0 * 10.0).round() / 10.0;
    json!({
        "p50": us(h.value_at_quantile(0.50)),
        "p90": us(h.value_at_quantile(0.90)),
        "p99": us(h.value_at_quantile(0.99)),
        "p99.9": us(h.value_at_quantile(0.999)),
        "max": us(h.max()),
        "mean": (h.mean() / 100.0).round() / 10.0,
        "count": h.len(),
    })
}

/// One summary line of percentiles.
pub(super) fn percentiles_line(label: &str, h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return format!("{label}: no samples\n");
    }
    let fmt = |ns: u64| human_duration(ns as f64 / 1e9);
    format!(
        "{label}: p50 {}  p90 {}  p99 {}  p99.9 {}  max {}\n",
        fmt(h.value_at_quantile(0.50)),
        fmt(h.value_at_quantile(0.90)),
        fmt(h.value_at_quantile(0.99)),
        fmt(h.value_at_quantile(0.999)),
        fmt(h.max())
    )
}

pub(super) fn human_duration(seconds: f64) -> String {
    if seconds >= 1.0 {
        format!("{seconds:.2} s")
    } else if seconds >= 1e-3 {
        format!("{:.2} ms", seconds * 1e3)
    } else {
        format!("{:.1} µs", seconds * 1e6)
    }
}

pub(super) fn human_bytes(bytes: f64) -> String {
    let sign = if bytes < 0.0 { "-" } else { "" };
    let bytes = bytes.abs();
    if bytes >= 1024.0 * 1024.0 {
        format!("{sign}{:.1} MiB", bytes / 1024.0 / 1024.0)
    } else if bytes >= 1024.0 {
        format!("{sign}{:.2} KiB", bytes / 1024.0)
    } else {
        format!("{sign}{bytes:.0} B")
    }
}

/// The header lines every summary starts with.
pub(super) fn heading(setup: &Setup, mode: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{mode}: tidings {}", setup.args_line);
    let _ = writeln!(
        out,
        "target: {} (subscribe) / {} {} (publish), topic {}",
        setup.subscribe.addr,
        setup.publish.method,
        setup.publish.endpoint.addr,
        setup.publish.topic
    );
    out
}

/// The fields every JSON report carries.
pub(super) fn base_json(setup: &Setup, mode: &str) -> serde_json::Map<String, Value> {
    let mut map = serde_json::Map::new();
    map.insert("mode".into(), mode.into());
    map.insert(
        "subscribe_addr".into(),
        setup.subscribe.addr.to_string().into(),
    );
    map.insert("topic".into(), setup.publish.topic.clone().into());
    map.insert("subscribers".into(), setup.subscribers.into());
    map.insert("workers".into(), setup.workers.into());
    map.insert("hub_pids".into(), json!(setup.hub_pids));
    map
}

/// Deliveries per second over time, from the merged timeline, trimmed to where deliveries
/// happened, as (seconds since the first, per second).
pub(super) fn throughput_series(timeline: &[u64]) -> Vec<(f64, f64)> {
    let Some(first) = timeline.iter().position(|c| *c > 0) else {
        return Vec::new();
    };
    let last = timeline.iter().rposition(|c| *c > 0).unwrap_or(first);
    let per_second = 1000.0 / BUCKET_MS as f64;
    timeline[first..=last]
        .iter()
        .enumerate()
        .map(|(i, c)| (i as f64 * BUCKET_MS as f64 / 1000.0, *c as f64 * per_second))
        .collect()
}
