//! Measures the durable history (`DiskStore`) the way the hub uses it. Figures and how to read
//! them are in `docs/HISTORY.md`; run release builds:
//!
//! ```text
//! cargo run --release -p tidings-hub --example history_bench -- publish DIR [PUBLISHERS] [SECONDS]
//! cargo run --release -p tidings-hub --example history_bench -- latency DIR [RATE] [SECONDS]
//! cargo run --release -p tidings-hub --example history_bench -- fill DIR EVENTS
//! cargo run --release -p tidings-hub --example history_bench -- open DIR
//! ```
//!
//! `HISTORY_BENCH_DURABILITY=interval` runs `publish` and `latency` with `--durability interval`.
//!
//! - `publish`: concurrent publishers through [`Hub::publish`] (sequencer, store with
//!   `--durability sync`, fan-out): acknowledged events per second.
//! - `latency`: publishes paced at RATE per second; acknowledge latency percentiles.
//! - `fill`: appends EVENTS events (1,000 busy topics, one quiet topic every 1,000,000 events)
//!   and exits without closing, like a crash: the next `open` recovers the journal.
//! - `open`: start-up time (open + recovery), first event of a quiet topic, and the replay rate
//!   of one resuming `**` subscriber reading pages of 512 as the hub does.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tidings_hub::event::{EventId, StoredEvent};
use tidings_hub::history::{
    DiskOptions, DiskStore, Durability, HistoryStore, ReplayFilter, Retention,
};
use tidings_hub::topic::Pattern;
use tidings_hub::{Hub, HubConfig, Publish};

type Error = Box<dyn std::error::Error>;

const KEEP_ALL: Retention = Retention {
    max_events: u64::MAX,
    max_bytes: u64::MAX,
    max_age: None,
};

/// `--durability sync`, or `interval` (100 ms) when `HISTORY_BENCH_DURABILITY=interval`.
fn open(dir: PathBuf) -> Result<DiskStore, Error> {
    let durability = match std::env::var("HISTORY_BENCH_DURABILITY").as_deref() {
        Ok("interval") => Durability::Interval(Duration::from_millis(100)),
        _ => Durability::Sync,
    };
    Ok(DiskStore::open(DiskOptions {
        dir,
        durability,
        retention: KEEP_ALL,
    })?)
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: u64| -> u64 {
        args.get(i).and_then(|s| s.parse().ok()).unwrap_or(default)
    };
    let dir = PathBuf::from(args.get(1).ok_or("usage: history_bench MODE DIR ...")?);
    match args.first().map(String::as_str) {
        Some("publish") => publish(dir, arg(2, 64) as usize, arg(3, 10)),
        Some("latency") => latency(dir, arg(2, 1000), arg(3, 10)),
        Some("fill") => fill(dir, arg(2, 10_000_000)),
        Some("open") => open_and_replay(dir),
        _ => Err("modes: publish, latency, fill, open".into()),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn hub_on(dir: PathBuf) -> Result<(Hub, Arc<DiskStore>), Error> {
    let store = Arc::new(open(dir)?);
    let hub = Hub::with_history(HubConfig::default(), Arc::clone(&store) as _)?;
    Ok((hub, store))
}

fn publish(dir: PathBuf, publishers: usize, seconds: u64) -> Result<(), Error> {
    runtime()?.block_on(async move {
        let (hub, store) = hub_on(dir)?;
        let done = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let tasks: Vec<_> = (0..publishers)
            .map(|p| {
                let (hub, done, acked) = (hub.clone(), Arc::clone(&done), Arc::clone(&acked));
                tokio::spawn(async move {
                    let data = format!("{{\"publisher\":{p},\"payload\":\"{}\"}}", "x".repeat(64));
                    while !done.load(Ordering::Relaxed) {
                        let event = Publish::to_topic(format!("bench/{}", p % 16)).text(&data);
                        if hub.publish(event).await.is_ok() {
                            acked.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        done.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await?;
        }
        let elapsed = started.elapsed().as_secs_f64();
        let n = acked.load(Ordering::Relaxed);
        let mut metrics = String::new();
        store.render_metrics(&mut metrics);
        let commits = metric(&metrics, "tidings_history_commits_total");
        println!(
            "publish: {publishers} concurrent publishers, {n} events acknowledged in {elapsed:.2} s \
             = {:.0} events/s; {commits} group commits (fsyncs), {:.1} events per fsync",
            n as f64 / elapsed,
            n as f64 / commits.max(1.0)
        );
        Ok(())
    })
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

fn latency(dir: PathBuf, rate: u64, seconds: u64) -> Result<(), Error> {
    runtime()?.block_on(async move {
        let (hub, store) = hub_on(dir)?;
        let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let (tx, rx) = mpsc::channel();
        let total = rate * seconds;
        for i in 0..total {
            ticker.tick().await;
            let (hub, tx) = (hub.clone(), tx.clone());
            // Each publish on its own task, so a slow one never delays the next send.
            tokio::spawn(async move {
                let started = Instant::now();
                let ok = hub
                    .publish(Publish::to_topic("bench/latency").text(i.to_string()))
                    .await
                    .is_ok();
                let _ = tx.send((ok, started.elapsed()));
            });
        }
        drop(tx);
        let mut lat: Vec<Duration> = rx.iter().filter(|(ok, _)| *ok).map(|(_, d)| d).collect();
        lat.sort();
        let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
        println!(
            "latency: {} publishes at {rate}/s: p50 {:?}, p90 {:?}, p99 {:?}, p99.9 {:?}, max {:?}",
            lat.len(),
            pct(0.50),
            pct(0.90),
            pct(0.99),
            pct(0.999),
            lat[lat.len() - 1]
        );
        // Where the time went: the store's own commit (write + fsync) latency histogram.
        let mut metrics = String::new();
        store.render_metrics(&mut metrics);
        let buckets: Vec<&str> = metrics
            .lines()
            .filter_map(|l| l.strip_prefix("tidings_history_commit_seconds_bucket"))
            .collect();
        println!(
            "commit latency buckets (le, cumulative): {}",
            buckets.join(" ")
        );
        Ok(())
    })
}

fn event(id: u64, topic: &str) -> Arc<StoredEvent> {
    let frame = format!(
        "id: {id:016}\ndata: {{\"n\":{id},\"payload\":\"0123456789abcdef0123456789abcdef\"}}\n\n"
    );
    Arc::new(StoredEvent::new(
        EventId::from_u64(id),
        vec![Arc::from(topic)].into(),
        Box::new([]),
        false,
        0,
        Bytes::from(frame),
    ))
}

fn fill(dir: PathBuf, events: u64) -> Result<(), Error> {
    let store = open(dir)?;
    let first = store.bounds().newest.as_u64() + 1;
    let started = Instant::now();
    let (tx, rx) = mpsc::channel::<()>();
    let batch = 1000u64;
    let mut outstanding = 0;
    let mut id = first;
    while id < first + events {
        let end = (id + batch).min(first + events);
        let batch: Vec<_> = (id..end)
            .map(|i| {
                let n = i - first;
                if n % 1_000_000 == 500_000 {
                    event(i, "quiet/q")
                } else {
                    event(i, &format!("busy/{}", n % 1000))
                }
            })
            .collect();
        let tx = tx.clone();
        store.append(
            batch,
            Box::new(move |r| {
                r.expect("append");
                let _ = tx.send(());
            }),
        );
        outstanding += 1;
        // A bounded pipeline: the flusher groups what is queued into one commit.
        while outstanding > 64 {
            rx.recv()?;
            outstanding -= 1;
        }
        id = end;
        if (id - first) % 1_000_000 == 0 {
            eprintln!(
                "{} events, {:.0} s",
                id - first,
                started.elapsed().as_secs_f64()
            );
        }
    }
    while outstanding > 0 {
        rx.recv()?;
        outstanding -= 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "fill: {events} events in {elapsed:.1} s = {:.0} events/s; newest {}",
        events as f64 / elapsed,
        store.bounds().newest
    );
    // Exit without closing, as after a crash: the next open recovers the journal.
    std::process::exit(0);
}

fn open_and_replay(dir: PathBuf) -> Result<(), Error> {
    let started = Instant::now();
    let store = open(dir)?;
    let bounds = store.bounds();
    let opened = started.elapsed();
    let (events, bytes) = store.size();
    println!("open: {events} events ({bytes} frame bytes) retained; opened in {opened:?}");

    let quiet = [Pattern::parse("quiet/q")?];
    let filter = ReplayFilter {
        patterns: &quiet,
        user: None,
    };
    let started = Instant::now();
    let one = store.read(bounds.floor, bounds.newest, &filter, 1)?;
    let first = started.elapsed();
    let started = Instant::now();
    let page = store.read(bounds.floor, bounds.newest, &filter, 512)?;
    let whole = started.elapsed();
    println!(
        "quiet topic: first event ({} read) in {first:?}; all {} of its events among {events} \
         (one page) in {whole:?}",
        one.len(),
        page.len()
    );

    let all = [Pattern::parse("**")?];
    let filter = ReplayFilter {
        patterns: &all,
        user: None,
    };
    let want = 2_000_000usize.min(events);
    let started = Instant::now();
    let (mut after, mut n, mut frame_bytes) = (bounds.floor, 0usize, 0usize);
    while n < want {
        let page = store.read(after, bounds.newest, &filter, 512)?;
        let Some(last) = page.last() else { break };
        after = last.id();
        n += page.len();
        frame_bytes += page.iter().map(|e| e.frame().len()).sum::<usize>();
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "replay (**): {n} events in {elapsed:.2} s = {:.0} events/s ({:.0} MB/s of frames)",
        n as f64 / elapsed,
        frame_bytes as f64 / elapsed / 1e6
    );

    let busy = [Pattern::parse("busy/7")?];
    let filter = ReplayFilter {
        patterns: &busy,
        user: None,
    };
    let started = Instant::now();
    let (mut after, mut n) = (bounds.floor, 0usize);
    loop {
        let page = store.read(after, bounds.newest, &filter, 512)?;
        let Some(last) = page.last() else { break };
        after = last.id();
        n += page.len();
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "replay (busy/7, 1 in 1000): {n} events in {elapsed:.2} s = {:.0} events/s",
        n as f64 / elapsed
    );
    Ok(())
}
