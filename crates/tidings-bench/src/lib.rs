//! `tidings-bench` (also run as `tidings bench`): a load generator for SSE hubs, Tidings or any
//! other.
//!
//! It opens many subscriptions, publishes events that carry a sequence number and a send
//! timestamp, and reports what a user of the hub would feel: memory per idle connection,
//! deliveries per second, publish→receive latency, lost and duplicated events, and the hub's
//! CPU time per delivery. The generator is built to cost less than the hub it measures:
//! hand-written HTTP/1.1, no per-event allocation on the receive path, subscriptions spread
//! over worker processes and source addresses.
//!
//! # Layout
//! - [`BenchArgs`] (this file): flags, presets for known hubs, and [`run`].
//! - `modes`: the three measurements (`idle`, `fanout`, `publish`), their reports.
//! - `pool` and `worker`: the worker processes that hold subscriptions, and their protocol
//!   (`protocol`).
//! - `publisher`: concurrent publishers, back to back or on a schedule.
//! - `http1`, `chunked`: URL templates, request bytes, response heads, chunked bodies.
//! - `scan`: body bytes to `(seq, ts)` markers; `tracker`: loss and duplication per
//!   subscriber; `procfs`: CPU and memory of the hub and of the generator.
//! - `progress` (the bar on stderr) and `plot` (`--plot FILE`, an SVG).

mod chunked;
mod http1;
mod modes;
mod plot;
mod pool;
mod procfs;
mod progress;
mod protocol;
mod publisher;
mod scan;
mod tracker;
mod worker;

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use hdrhistogram::Histogram;

use http1::{header_lines, Endpoint, Template};
pub use protocol::ReceiveTime;
pub use scan::ParseMode;
use tidings_hub::units::parse_duration;

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Open N subscriptions and hold them: hub memory per connection (needs --hub-pid).
    Idle,
    /// N subscribers on one topic, K events: deliveries/s, latency, loss, hub CPU per delivery.
    Fanout,
    /// C concurrent publishers: publishes/s and acknowledgement latency.
    Publish,
}

/// Request shapes of known hubs. Explicit `--subscribe-url`, `--publish-url`,
/// `--publish-body` and `--content-type` override a preset's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// `GET /events?topic=T`, `POST /publish` with `{"topic","data":{"seq","ts"}}`.
    Tidings,
    /// nginx + Nchan as configured by bench/nchan: `GET /sub?topic=T`, `POST /pub?topic=T`.
    Nchan,
    /// The naive axum baseline (bench/naive-axum): `GET /events?topic=T`, `POST /publish?topic=T`.
    NaiveAxum,
}

impl Preset {
    /// (subscribe URL, publish URL, publish body) templates under `base`.
    fn templates(self, base: &str) -> (String, String, &'static str) {
        let base = base.trim_end_matches('/');
        match self {
            Preset::Tidings => (
                format!("{base}/events?topic={{topic}}"),
                format!("{base}/publish"),
                r#"{"topic":"{topic}","data":{"seq":{seq},"ts":{ts}}}"#,
            ),
            Preset::Nchan => (
                format!("{base}/sub?topic={{topic}}"),
                format!("{base}/pub?topic={{topic}}"),
                r#"{"seq":{seq},"ts":{ts}}"#,
            ),
            Preset::NaiveAxum => (
                format!("{base}/events?topic={{topic}}"),
                format!("{base}/publish?topic={{topic}}"),
                r#"{"seq":{seq},"ts":{ts}}"#,
            ),
        }
    }
}

/// Arguments of `tidings bench`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    tidings bench fanout -n 1000 -k 2000 --hub-pid $(pidof tidings)\n  \
    tidings bench fanout -n 10000 -k 200 --rate 20 --plot latency.svg\n  \
    tidings bench idle -n 10000 --hub-pid 1234\n  \
    tidings bench publish -c 8 -k 50000\n  \
    tidings bench fanout --preset nchan --url http://127.0.0.1:8081")]
pub struct BenchArgs {
    /// What to measure
    #[arg(value_enum, required_unless_present = "worker")]
    pub mode: Option<Mode>,

    /// Request shapes of a known hub
    #[arg(long, value_enum, default_value = "tidings")]
    pub preset: Preset,

    /// Base URL of the hub the preset's templates are built on (loopback only)
    #[arg(long, env = "TIDINGS_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,

    /// Subscription URL template; `{topic}` is replaced
    #[arg(long, value_name = "TEMPLATE")]
    pub subscribe_url: Option<String>,

    /// Publish URL template; `{topic}`, `{seq}`, `{ts}` are replaced
    #[arg(long, value_name = "TEMPLATE")]
    pub publish_url: Option<String>,

    /// Publish method
    #[arg(long, default_value = "POST")]
    pub publish_method: String,

    /// Publish body template; must contain `{seq}` and `{ts}` so that the event's data carries `"seq":N` and `"ts":N`
    #[arg(long, value_name = "TEMPLATE")]
    pub publish_body: Option<String>,

    /// Content type of the publish body
    #[arg(long, default_value = "application/json")]
    pub content_type: String,

    /// `Authorization` header value for publish and subscribe requests (e.g. "Bearer KEY")
    #[arg(
        long,
        env = "TIDINGS_BENCH_AUTH",
        hide_env_values = true,
        value_name = "VALUE"
    )]
    pub auth: Option<String>,

    /// Extra header on every request, `Name: value` (repeatable)
    #[arg(long, value_name = "HEADER")]
    pub header: Vec<String>,

    /// Topic [default: a fresh `bench-<pid>-<time>` per run, so no history is replayed]
    #[arg(long)]
    pub topic: Option<String>,

    /// Subscriptions to open [default: 1000 for idle and fanout, 0 for publish]
    #[arg(long, short = 'n')]
    pub subscribers: Option<usize>,

    /// Events to publish
    #[arg(long, short = 'k', default_value_t = 1000)]
    pub events: u64,

    /// Events per second over all publishers [default: back to back, each as soon as the last is acknowledged]
    #[arg(long)]
    pub rate: Option<f64>,

    /// Concurrent publishers, each on its own keep-alive connection
    #[arg(long, short = 'c', default_value_t = 1)]
    pub publishers: usize,

    /// Stop publishing after this long even if fewer than --events were sent
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// idle: how long to hold the subscriptions before measuring
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub hold: Duration,

    /// After the last publish, how long without any delivery before missing events count as lost
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub drain: Duration,

    /// PID of the hub (repeatable; children are included) for memory and CPU figures
    #[arg(long, value_name = "PID")]
    pub hub_pid: Vec<u32>,

    /// Worker processes holding subscriptions [default: enough for 15,000 sockets each; at least 2 for fanout]
    #[arg(long)]
    pub workers: Option<usize>,

    /// Source addresses to spread subscriptions over: 127.0.0.2, 127.0.0.3, ...
    #[arg(long, default_value_t = 16)]
    pub source_addrs: usize,

    /// Connections being opened at once, per worker
    #[arg(long, default_value_t = 128)]
    pub connect_concurrency: usize,

    /// How subscribers find events in the stream
    #[arg(long, value_enum, default_value = "fast")]
    pub parse: ParseMode,

    /// Receive time of a delivery: `kernel` (when it reached the subscriber's socket,
    /// SO_TIMESTAMPNS) or `read` (when the generator read it, its own scheduling included)
    #[arg(long, value_enum, default_value = "kernel")]
    pub receive_time: ReceiveTime,

    /// While events arrive, each worker pauses this long between read rounds, outside epoll,
    /// so it reads many sockets per wakeup instead of being woken by every single write (the
    /// pause is not latency: receive times are the kernel's). 0 reads each socket the moment
    /// it is readable [default: 0.2ms; 0 with --receive-time read, which allows no other]
    #[arg(long, value_parser = parse_duration)]
    pub read_pause: Option<Duration>,

    /// Give up on the whole run after this long
    #[arg(long, value_parser = parse_duration, default_value = "10m")]
    pub timeout: Duration,

    /// Draw the latency distribution and deliveries over time to this SVG file
    #[arg(long, value_name = "FILE", value_parser = svg_path)]
    pub plot: Option<PathBuf>,

    /// No progress bar
    #[arg(long, short = 'q')]
    pub quiet: bool,

    /// Internal: run as a worker process (spec and commands on stdin, reports on stdout)
    #[arg(long, hide = true)]
    pub worker: bool,
}

/// Everything a mode needs, resolved from the arguments once.
#[derive(Debug, Clone)]
pub struct Setup {
    pub mode: Mode,
    pub subscribe: Endpoint,
    pub subscribe_request: String,
    pub publish: publisher::Plan,
    pub subscribers: usize,
    pub workers: usize,
    pub sources: Vec<Ipv4Addr>,
    pub hub_pids: Vec<u32>,
    pub args_line: String,
    pub epoch_ns: u64,
    pub hold: Duration,
    pub drain: Duration,
    pub timeout: Duration,
    pub parse: ParseMode,
    pub receive_time: ReceiveTime,
    pub read_pause: Duration,
    pub connect_concurrency: usize,
    pub plot: Option<PathBuf>,
    pub quiet: bool,
}

/// Runs `tidings bench`.
pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    if args.worker {
        return worker::run();
    }
    let setup = setup(args)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, modes::run(setup))
}

fn setup(args: BenchArgs) -> anyhow::Result<Setup> {
    let mode = args
        .mode
        .context("a mode is required: idle, fanout or publish")?;
    let (subscribe_url, publish_url, body) = args.preset.templates(&args.url);
    let subscribe = Endpoint::parse(args.subscribe_url.as_deref().unwrap_or(&subscribe_url))?;
    let publish = Endpoint::parse(args.publish_url.as_deref().unwrap_or(&publish_url))?;
    let body = Template::parse(args.publish_body.as_deref().unwrap_or(body));
    if !body.has_markers() {
        bail!("--publish-body must contain {{seq}} and {{ts}}: the subscribers find them in each event's data");
    }
    let topic = args.topic.clone().unwrap_or_else(|| {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        format!("bench-{}-{secs}", std::process::id())
    });
    if topic.is_empty()
        || !topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./~".contains(&b))
    {
        bail!(
            "--topic {topic:?}: use letters, digits and -_./~ only (it goes into URLs unescaped)"
        );
    }
    let read_pause = match (args.receive_time, args.read_pause) {
        (ReceiveTime::Read, Some(pause)) if !pause.is_zero() => bail!(
            "--read-pause needs --receive-time kernel: with read times a pause would count as latency"
        ),
        (_, Some(pause)) if pause > Duration::from_millis(10) => {
            bail!("--read-pause is at most 10ms")
        }
        (_, Some(pause)) => pause,
        (ReceiveTime::Kernel, None) => Duration::from_micros(200),
        (ReceiveTime::Read, None) => Duration::ZERO,
    };
    if args.rate.is_some_and(|rate| rate.is_nan() || rate <= 0.0) {
        bail!("--rate must be a positive number of events per second");
    }

    let mut headers = args.header.clone();
    if let Some(auth) = &args.auth {
        headers.push(format!("Authorization: {auth}"));
    }
    let headers = header_lines(&headers)?;
    let subscribers = args.subscribers.unwrap_or(match mode {
        Mode::Idle | Mode::Fanout => 1000,
        Mode::Publish => 0,
    });
    let by_files = subscribers.div_ceil(15_000).max(1);
    let workers = args
        .workers
        .unwrap_or(match mode {
            Mode::Fanout if subscribers >= 100 => by_files.max(2),
            _ => by_files,
        })
        .clamp(1, subscribers.max(1));
    if subscribers.div_ceil(workers) > 18_000 {
        bail!("{subscribers} subscriptions over {workers} workers is over 18,000 sockets per process; raise --workers");
    }
    let sources = match subscribe.addr.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => (0..args.source_addrs.min(250))
            .map(|i| Ipv4Addr::new(127, 0, 0, 2 + i as u8))
            .collect(),
        _ => Vec::new(),
    };
    let subscribe_request =
        String::from_utf8(http1::subscribe_request(&subscribe, &topic, &headers))
            .context("the subscribe request must be text")?;
    let epoch_ns = unix_ns();
    let args_line = std::env::args().skip(1).collect::<Vec<_>>().join(" ");
    Ok(Setup {
        mode,
        publish: publisher::Plan {
            endpoint: publish,
            method: args.publish_method.clone(),
            body,
            content_type: args.content_type.clone(),
            headers,
            topic,
            events: args.events,
            rate: args.rate,
            publishers: args.publishers.max(1),
            duration: args.duration,
            epoch_ns,
            source: None,
        },
        subscribe,
        subscribe_request,
        subscribers,
        workers,
        sources,
        hub_pids: procfs::with_children(&args.hub_pid),
        args_line,
        epoch_ns,
        hold: args.hold,
        drain: args.drain,
        timeout: args.timeout,
        parse: args.parse,
        receive_time: args.receive_time,
        read_pause,
        connect_concurrency: args.connect_concurrency,
        plot: args.plot,
        quiet: args.quiet,
    })
}

/// `--plot`: refused at once unless it names an `.svg` file, since the plot is drawn only after
/// the whole run (and an SVG in a `.png` file helps nobody).
fn svg_path(arg: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(arg);
    if path
        .extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("svg"))
    {
        Ok(path)
    } else {
        Err("the plot is an SVG; give the file a .svg name".into())
    }
}

/// Unix time in ns.
fn unix_ns() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
}

/// ns since the run's epoch (a Unix time in ns shared by the parent and its workers, so a
/// send time taken in one process compares with a receive time taken in another).
fn now_ns(epoch_ns: u64) -> u64 {
    unix_ns().saturating_sub(epoch_ns)
}

/// A latency histogram in ns: 1 ns to one hour, 3 significant digits.
fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("constant bounds are valid")
}
