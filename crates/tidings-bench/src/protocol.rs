//! What the parent and its worker processes say to each other, one JSON object per line:
//! the parent writes a [`WorkerSpec`] then [`Command`]s to a worker's stdin; the worker writes
//! [`Report`]s to its stdout. A worker whose stdin closes (the parent died) stops.

use std::net::{Ipv4Addr, SocketAddr};

use serde::{Deserialize, Serialize};

use super::procfs::Sample;
use super::scan::ParseMode;

/// The subscribers one worker opens.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerSpec {
    pub index: usize,
    pub addr: SocketAddr,
    /// The subscription request head, sent as is on every connection.
    pub request: String,
    /// Global index of this worker's first subscriber (source addresses go round-robin on it).
    pub first: usize,
    pub count: usize,
    pub sources: Vec<Ipv4Addr>,
    pub parse: ParseMode,
    /// Unix time (ns) that `ts` markers count from.
    pub epoch_ns: u64,
    /// Connections being opened at once.
    pub connect_concurrency: usize,
    /// Width of a throughput-over-time bucket, in ms.
    pub bucket_ms: u64,
    /// Where a delivery's receive time comes from.
    pub receive_time: ReceiveTime,
    /// While data flows, pause this long (µs) between read rounds (0: no pause).
    pub read_pause_us: u64,
}

/// Where a delivery's receive time comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ReceiveTime {
    /// The kernel's receive timestamp of the newest segment a read returned (SO_TIMESTAMPNS):
    /// when the bytes reached the subscriber's socket, whatever the generator was doing.
    Kernel,
    /// The clock when the generator's `read` returned: includes the generator's own scheduling.
    Read,
}

/// From the parent to a worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// Sequence numbers `0..events` were sent, except `failed` (sorted). Wait until every
    /// open subscriber has them all, or until nothing arrived for `drain_ms`, then report a
    /// [`Report::Result`] and exit.
    Finish {
        events: u64,
        failed: Vec<u64>,
        drain_ms: u64,
    },
}

/// Counts a worker sends several times a second.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Progress {
    /// Subscriptions whose response head (200) arrived.
    pub connected: usize,
    /// Subscriptions that never started (refused, error status, timeout).
    pub failed: usize,
    /// Started subscriptions that ended before the finish.
    pub closed: usize,
    /// Marked events received, duplicates included.
    pub received: u64,
    /// The worker process itself.
    pub own: Sample,
}

/// The end of a worker's run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkerResult {
    pub progress: Progress,
    pub lost: u64,
    pub duplicated: u64,
    /// Subscribers that received every event.
    pub complete: usize,
    /// Latency histogram as (ns, count) pairs.
    pub latency: Vec<(u64, u64)>,
    /// Deliveries per bucket since the epoch.
    pub timeline: Vec<u64>,
    /// When the last marked event arrived, ns since the epoch.
    pub last_delivery_ns: u64,
    /// A few distinct error messages, for the summary.
    pub errors: Vec<String>,
}

/// From a worker to the parent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "report", rename_all = "snake_case")]
pub enum Report {
    Progress(Progress),
    Result(Box<WorkerResult>),
}
