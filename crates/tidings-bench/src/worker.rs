//! A worker process: holds its share of the subscriptions on one thread and counts what
//! arrives.
//!
//! Each subscription is a task on a single-threaded runtime with no buffer of its own: reads
//! go into one shared 64 KiB buffer and are decoded (chunked framing, then [`EventScanner`])
//! on the spot, so a held connection costs the socket, the task and a few words of state.
//! Time is read once per `read`, not per event.

use std::cell::{Cell, RefCell};
use std::io::{BufRead as _, Write as _};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use hdrhistogram::Histogram;
use std::task::Poll;

use std::os::fd::AsRawFd as _;

use nix::sys::socket::{recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags};
use tokio::io::{AsyncWriteExt as _, Interest};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use super::chunked::ChunkedDecoder;
use super::http1::{connect, parse_head, Framing};
use super::procfs::sample_self;
use super::protocol::{Command, Progress, ReceiveTime, Report, WorkerResult, WorkerSpec};
use super::scan::EventScanner;
use super::{new_histogram, now_ns};

const READ_BUFFER: usize = 64 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
const PROGRESS_EVERY: Duration = Duration::from_millis(250);
const MAX_ERRORS: usize = 5;

thread_local! {
    static READ_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_BUFFER]);
}

/// Where one subscription is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SubState {
    Opening,
    Open,
    /// Started, then ended before the finish: it counts as losing what it missed.
    ClosedEarly,
    /// Never started: reported as failed, not as losing every event.
    Failed,
}

/// State shared by the tasks of this worker (one thread, so `RefCell` and `Cell`).
struct Shared {
    spec: WorkerSpec,
    trackers: RefCell<Vec<super::tracker::SeqTracker>>,
    states: RefCell<Vec<SubState>>,
    latency: RefCell<Histogram<u64>>,
    timeline: RefCell<Vec<u64>>,
    connected: Cell<usize>,
    failed: Cell<usize>,
    closed: Cell<usize>,
    received: Cell<u64>,
    last_delivery_ns: Cell<u64>,
    errors: RefCell<Vec<String>>,
    /// Set when the run is over: subscriptions that end now are not "closed early".
    finishing: Cell<bool>,
    /// Something was read since the pacer last looked.
    read_since_pause: Cell<bool>,
    /// The pacer, parked until the next read.
    pacer: RefCell<Option<std::task::Waker>>,
}

impl Shared {
    fn note_error(&self, error: impl std::fmt::Display) {
        let text = error.to_string();
        let mut errors = self.errors.borrow_mut();
        if errors.len() < MAX_ERRORS && !errors.contains(&text) {
            errors.push(text);
        }
    }

    fn progress(&self) -> Progress {
        Progress {
            connected: self.connected.get(),
            failed: self.failed.get(),
            closed: self.closed.get(),
            received: self.received.get(),
            own: sample_self(),
        }
    }
}

/// Entry point of `tidings bench --worker`: reads its [`WorkerSpec`] from stdin.
pub fn run() -> anyhow::Result<ExitCode> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the worker spec")?;
    let spec: WorkerSpec = serde_json::from_str(&line).context("parsing the worker spec")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, work(spec))?;
    Ok(ExitCode::SUCCESS)
}

fn send(report: &Report) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, report)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

async fn work(spec: WorkerSpec) -> anyhow::Result<()> {
    let count = spec.count;
    let shared = Rc::new(Shared {
        trackers: RefCell::new(vec![Default::default(); count]),
        states: RefCell::new(vec![SubState::Opening; count]),
        latency: RefCell::new(new_histogram()),
        timeline: RefCell::new(Vec::new()),
        connected: Cell::new(0),
        failed: Cell::new(0),
        closed: Cell::new(0),
        received: Cell::new(0),
        last_delivery_ns: Cell::new(0),
        errors: RefCell::new(Vec::new()),
        finishing: Cell::new(false),
        read_since_pause: Cell::new(false),
        pacer: RefCell::new(None),
        spec,
    });
    if shared.spec.read_pause_us > 0 {
        tokio::task::spawn_local(pace(
            Rc::clone(&shared),
            Duration::from_micros(shared.spec.read_pause_us),
        ));
    }

    let opener = Rc::clone(&shared);
    tokio::task::spawn_local(async move {
        let gate = std::sync::Arc::new(Semaphore::new(opener.spec.connect_concurrency.max(1)));
        for index in 0..count {
            let Ok(permit) = std::sync::Arc::clone(&gate).acquire_owned().await else {
                return;
            };
            let shared = Rc::clone(&opener);
            tokio::task::spawn_local(async move {
                subscribe(&shared, index, permit).await;
            });
        }
    });

    let reporter = Rc::clone(&shared);
    tokio::task::spawn_local(async move {
        let mut tick = tokio::time::interval(PROGRESS_EVERY);
        loop {
            tick.tick().await;
            if send(&Report::Progress(reporter.progress())).is_err() {
                std::process::exit(1);
            }
        }
    });

    // stdin is read on a plain thread: the runtime is built without tokio's stdio support.
    let (lines, mut commands) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let Some(line) = commands.recv().await else {
        // The parent went away: nothing to report to.
        return Ok(());
    };
    let Command::Finish {
        events,
        failed,
        drain_ms,
    } = serde_json::from_str(&line).context("parsing a command")?;
    finish(&shared, events, &failed, Duration::from_millis(drain_ms)).await;
    let result = result(&shared, events, &failed);
    send(&Report::Result(Box::new(result)))?;
    Ok(())
}

/// Read rounds while data flows. Without this, every write the hub makes to an idle worker
/// wakes it (a context switch, on the hub's CPU, inside its `write`) for a single read. Here,
/// once something was read, the worker sleeps `pause` outside epoll (writes meanwhile wake
/// nobody), then yields, which polls epoll without blocking and runs every reader that became
/// ready; when a round reads nothing, the pacer parks and the worker blocks in epoll again.
async fn pace(shared: Rc<Shared>, pause: Duration) {
    loop {
        std::future::poll_fn(|cx| {
            if shared.read_since_pause.replace(false) {
                Poll::Ready(())
            } else {
                *shared.pacer.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
        std::thread::sleep(pause);
        tokio::task::yield_now().await;
    }
}

/// Waits until every open subscriber has every event, or nothing arrives for `drain`.
async fn finish(shared: &Shared, events: u64, failed: &[u64], drain: Duration) {
    let mut last_received = shared.received.get();
    let mut quiet_since = tokio::time::Instant::now();
    loop {
        // Subscribers that closed early or never connected will not catch up.
        let waiting = any_open_and_short(shared, events, failed);
        if !waiting {
            break;
        }
        let received = shared.received.get();
        if received != last_received {
            last_received = received;
            quiet_since = tokio::time::Instant::now();
        } else if quiet_since.elapsed() >= drain {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shared.finishing.set(true);
}

fn any_open_and_short(shared: &Shared, events: u64, failed: &[u64]) -> bool {
    let trackers = shared.trackers.borrow();
    let states = shared.states.borrow();
    trackers
        .iter()
        .zip(states.iter())
        .any(|(tracker, state)| *state == SubState::Open && !tracker.has_all(events, failed))
}

fn result(shared: &Shared, events: u64, failed: &[u64]) -> WorkerResult {
    let trackers = shared.trackers.borrow();
    let states = shared.states.borrow();
    let started = trackers
        .iter()
        .zip(states.iter())
        .filter(|(_, state)| matches!(state, SubState::Open | SubState::ClosedEarly))
        .map(|(tracker, _)| tracker);
    let mut lost = 0;
    let mut duplicated = 0;
    let mut complete = 0;
    for tracker in started {
        let missing = tracker.lost(events, failed);
        lost += missing;
        duplicated += tracker.duplicated();
        complete += usize::from(missing == 0);
    }
    let latency = shared.latency.borrow();
    WorkerResult {
        progress: shared.progress(),
        lost,
        duplicated,
        complete,
        latency: latency
            .iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
            .collect(),
        timeline: shared.timeline.borrow().clone(),
        last_delivery_ns: shared.last_delivery_ns.get(),
        errors: shared.errors.borrow().clone(),
    }
}

/// One subscription, from connect to close.
async fn subscribe(shared: &Shared, index: usize, permit: tokio::sync::OwnedSemaphorePermit) {
    let spec = &shared.spec;
    let source =
        (!spec.sources.is_empty()).then(|| spec.sources[(spec.first + index) % spec.sources.len()]);
    let opened = tokio::time::timeout(CONNECT_TIMEOUT, open(spec, source)).await;
    drop(permit);
    let (mut stream, head_rest, framing) = match opened {
        Ok(Ok(opened)) => opened,
        Ok(Err(error)) => {
            shared.note_error(format!("subscribe: {error:#}"));
            shared.failed.set(shared.failed.get() + 1);
            shared.states.borrow_mut()[index] = SubState::Failed;
            return;
        }
        Err(_) => {
            shared.note_error("subscribe: no response head within 20 s");
            shared.failed.set(shared.failed.get() + 1);
            shared.states.borrow_mut()[index] = SubState::Failed;
            return;
        }
    };
    shared.connected.set(shared.connected.get() + 1);
    shared.states.borrow_mut()[index] = SubState::Open;
    let mut body = Body {
        framing,
        chunked: ChunkedDecoder::default(),
        scanner: EventScanner::new(spec.parse),
    };
    let outcome = match body.take(shared, index, &head_rest, now_ns(spec.epoch_ns)) {
        Ok(()) => read_stream(shared, index, &mut stream, &mut body).await,
        Err(error) => Err(error),
    };
    if !shared.finishing.get() {
        if let Err(error) = outcome {
            shared.note_error(format!("stream: {error:#}"));
        } else {
            shared.note_error("stream: the hub closed a subscription");
        }
        shared.closed.set(shared.closed.get() + 1);
        shared.states.borrow_mut()[index] = SubState::ClosedEarly;
    }
}

/// Connects, sends the request and reads the head; returns the body bytes read with it.
async fn open(
    spec: &WorkerSpec,
    source: Option<std::net::Ipv4Addr>,
) -> anyhow::Result<(TcpStream, Vec<u8>, Framing)> {
    let mut stream = connect(spec.addr, source).await?;
    stream.write_all(spec.request.as_bytes()).await?;
    let mut head = Vec::with_capacity(1024);
    loop {
        if tokio::io::AsyncReadExt::read_buf(&mut stream, &mut head).await? == 0 {
            bail!("the hub closed the connection before answering");
        }
        if let Some(parsed) = parse_head(&head)? {
            if parsed.status != 200 {
                let body = String::from_utf8_lossy(&head[parsed.len..]);
                bail!("status {}: {}", parsed.status, body.trim());
            }
            let rest = head.split_off(parsed.len);
            return Ok((stream, rest, parsed.framing));
        }
    }
}

/// Reads until the hub closes the stream, into the shared buffer.
///
/// One `recvmsg` per readiness event: a read shorter than the buffer means the socket is
/// drained, so readiness is cleared at once instead of by a second read that would only
/// return `EAGAIN` (one wasted syscall per wakeup, which at one event per wakeup doubles the
/// generator's cost). With [`ReceiveTime::Kernel`] the same call returns the kernel's receive
/// timestamp of the newest segment read; a read without one (the timestamp was switched on
/// after those bytes arrived) falls back to the clock.
async fn read_stream(
    shared: &Shared,
    index: usize,
    stream: &mut TcpStream,
    body: &mut Body,
) -> anyhow::Result<()> {
    let kernel_time = shared.spec.receive_time == ReceiveTime::Kernel;
    if kernel_time {
        setsockopt(&*stream, sockopt::ReceiveTimestampns, &true)
            .context("SO_TIMESTAMPNS (use --receive-time read where it is missing)")?;
    }
    let mut control = if kernel_time {
        nix::cmsg_space!(nix::sys::time::TimeSpec)
    } else {
        Vec::new()
    };
    loop {
        let done = std::future::poll_fn(|cx| loop {
            if let Err(error) = std::task::ready!(stream.poll_read_ready(cx)) {
                return Poll::Ready(Err(anyhow::Error::from(error)));
            }
            let outcome = READ_BUF.with_borrow_mut(|buf| {
                let mut short = None;
                let read = stream.try_io(Interest::READABLE, || {
                    let (n, stamp) = recv_stamped(stream, buf, &mut control)?;
                    if n > 0 && n < buf.len() {
                        // Drained: hand the bytes over through `short` and report
                        // WouldBlock, which makes tokio clear the readiness.
                        short = Some((n, stamp));
                        return Err(std::io::ErrorKind::WouldBlock.into());
                    }
                    Ok((n, stamp))
                });
                let (n, stamp) = match (read, short) {
                    (_, Some(got)) | (Ok(got), None) => got,
                    (Err(error), None) if error.kind() == std::io::ErrorKind::WouldBlock => {
                        return None
                    }
                    (Err(error), None) => return Some(Err(anyhow::Error::from(error))),
                };
                if n == 0 {
                    return Some(Ok(true));
                }
                if !shared.read_since_pause.replace(true) {
                    if let Some(pacer) = shared.pacer.borrow_mut().take() {
                        pacer.wake();
                    }
                }
                let now = stamp
                    .map(|unix| unix.saturating_sub(shared.spec.epoch_ns))
                    .unwrap_or_else(|| now_ns(shared.spec.epoch_ns));
                Some(body.take(shared, index, &buf[..n], now).map(|()| false))
            });
            if let Some(outcome) = outcome {
                return Poll::Ready(outcome);
            }
        })
        .await?;
        if done {
            return Ok(());
        }
    }
}

/// One non-blocking `recvmsg` into `buf`: the byte count and, when the socket has
/// SO_TIMESTAMPNS on, the receive timestamp (Unix ns) of the newest segment read.
fn recv_stamped(
    stream: &TcpStream,
    buf: &mut [u8],
    control: &mut Vec<u8>,
) -> std::io::Result<(usize, Option<u64>)> {
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let cmsg = (!control.is_empty()).then_some(control.as_mut_slice());
    let msg = recvmsg::<()>(stream.as_raw_fd(), &mut iov, cmsg, MsgFlags::MSG_DONTWAIT)
        .map_err(std::io::Error::from)?;
    let mut stamp = None;
    if let Ok(cmsgs) = msg.cmsgs() {
        for cmsg in cmsgs {
            if let ControlMessageOwned::ScmTimestampns(ts) = cmsg {
                let ns = i128::from(ts.tv_sec()) * 1_000_000_000 + i128::from(ts.tv_nsec());
                stamp = u64::try_from(ns).ok().filter(|&ns| ns > 0);
            }
        }
    }
    Ok((msg.bytes, stamp))
}

/// Decoding state of one response body.
struct Body {
    framing: Framing,
    chunked: ChunkedDecoder,
    scanner: EventScanner,
}

impl Body {
    /// Decodes bytes just read and records every marked event in them.
    fn take(
        &mut self,
        shared: &Shared,
        index: usize,
        bytes: &[u8],
        now: u64,
    ) -> anyhow::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let mut trackers = shared.trackers.borrow_mut();
        let tracker = &mut trackers[index];
        let mut latency = shared.latency.borrow_mut();
        let mut count = 0u64;
        let mut on_event = |seq: u64, ts: u64| {
            tracker.record(seq);
            latency.saturating_record(now.saturating_sub(ts).max(1));
            count += 1;
        };
        let scanner = &mut self.scanner;
        match self.framing {
            Framing::Chunked => {
                let mut scan_error = None;
                self.chunked.feed(bytes, |run| {
                    if let Err(error) = scanner.feed(run, &mut on_event) {
                        scan_error.get_or_insert(error);
                    }
                })?;
                if let Some(error) = scan_error {
                    return Err(error.into());
                }
            }
            Framing::UntilClose | Framing::Length(_) => scanner.feed(bytes, &mut on_event)?,
        }
        if count > 0 {
            shared.received.set(shared.received.get() + count);
            shared.last_delivery_ns.set(now);
            let bucket = usize::try_from(now / (shared.spec.bucket_ms.max(1) * 1_000_000))
                .unwrap_or(usize::MAX);
            let mut timeline = shared.timeline.borrow_mut();
            if bucket < 1 << 20 {
                if timeline.len() <= bucket {
                    timeline.resize(bucket + 1, 0);
                }
                timeline[bucket] += count;
            }
        }
        Ok(())
    }
}
