//! Serving the hub on a TCP listener: the accept loop, connection settings, and shutdown.
//!
//! `axum::serve` cannot bound how long a client may take to send its request head, so this
//! loop drives connections itself: a slow-loris client is timed out by `--header-timeout`,
//! every socket gets TCP_NODELAY (events are small and latency matters), each request carries
//! its peer address for the per-IP limit, and a first request `GET /events` takes the native
//! stream path (`native`) while everything else goes to hyper and the axum router.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tower::Service;

use crate::http::router;
use crate::http_conns::{BusyBody, HttpConns};
use crate::hub::Hub;
use crate::native::{first_request, FirstRequest};

/// Serves `hub` on `listener` until `shutdown` completes, then drains: streams are told to
/// come back later and closed, in-flight requests finish, all within `--shutdown-timeout`.
pub async fn serve(
    listener: TcpListener,
    hub: Hub,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    serve_with(listener, hub, None, shutdown).await
}

/// [`serve`], over TLS when `tls` is given: HTTP/2 or HTTP/1.1 as the client's ALPN chooses,
/// every request (streams included) through hyper and the router. The native stream path is
/// for cleartext HTTP/1.1 only.
pub async fn serve_with(
    listener: TcpListener,
    hub: Hub,
    tls: Option<Arc<crate::tls::Tls>>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let app = router(hub.clone());
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(hub.config().header_timeout)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    let writer_runtime = Writers::start(&hub);
    let conns = HttpConns::new(hub.config().max_http_connections);
    *hub.inner.http_conns.write() = Some(Arc::clone(&conns));
    let mut accept_errors = RateLimitedLog::new("accept failed; backing off", LOG_EVERY);
    let mut refusals = RateLimitedLog::new(
        "refused a connection: --max-http-connections are all in a request",
        LOG_EVERY,
    );
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // Out of descriptors (EMFILE/ENFILE) or a reset before accept. Close the
                    // oldest idle connection so the next accept finds a descriptor, back off
                    // briefly, and say so once per interval rather than once per try.
                    let freed = conns.evict_idle();
                    accept_errors.log(&err, freed);
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(slot) = conns.admit() else {
            refusals.log(&"every slot busy", false);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let hub = hub.clone();
        let http = http.clone();
        let watcher = graceful.watcher();
        if let Some(tls) = &tls {
            let acceptor = tls.acceptor();
            tokio::spawn(serve_tls(hub, app, acceptor, stream, peer, slot, watcher));
            continue;
        }
        tokio::spawn(async move {
            let (rewind, slot) = match first_request(&hub, stream, peer, slot).await {
                FirstRequest::Done => return,
                FirstRequest::Http(rewind, slot) => (rewind, slot),
            };
            let busy = slot.busy_handle();
            let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                let mut app = app.clone();
                let request = busy.request();
                async move {
                    // Busy until the response body is over, not only until the handler returns.
                    let res = app.call(req).await;
                    res.map(|res| res.map(|body| BusyBody::wrap(body, request)))
                }
            });
            let conn = watcher.watch(http.serve_connection(TokioIo::new(rewind), service));
            tokio::select! {
                ended = conn => {
                    if let Err(err) = ended {
                        tracing::debug!(%err, %peer, "connection ended with an error");
                    }
                }
                // Idle, and closed to make room for a newcomer.
                () = slot.evicted() => {}
            }
        });
    }
    drop(listener);
    hub.drain();
    let drained = async { tokio::join!(graceful.shutdown(), hub.streams_closed()) };
    if tokio::time::timeout(hub.config().shutdown_timeout, drained)
        .await
        .is_err()
    {
        tracing::warn!("shutdown timeout reached with connections still open");
    }
    drop(writer_runtime);
    Ok(())
}

/// Marks a request that came over TLS (for the protocol the dashboard shows).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tls;

/// One TLS connection: the handshake (within `--header-timeout`), then HTTP/2 or HTTP/1.1.
async fn serve_tls(
    hub: Hub,
    app: axum::Router,
    acceptor: tokio_rustls::TlsAcceptor,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    slot: crate::http_conns::HttpConn,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let timeout = hub.config().header_timeout;
    let stream = match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(err)) => {
            tracing::debug!(%err, %peer, "TLS handshake failed");
            return;
        }
        Err(_) => return,
    };
    let busy = slot.busy_handle();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
        req.extensions_mut().insert(Tls);
        let mut app = app.clone();
        let request = busy.request();
        async move {
            let res = app.call(req).await;
            res.map(|res| res.map(|body| BusyBody::wrap(body, request)))
        }
    });
    let mut http =
        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(timeout)
        .keep_alive(true);
    http.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(1000)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let conn = watcher.watch(
        http.serve_connection(TokioIo::new(stream), service)
            .into_owned(),
    );
    tokio::select! {
        ended = conn => {
            if let Err(err) = ended {
                tracing::debug!(%err, %peer, "TLS connection ended with an error");
            }
        }
        () = slot.evicted() => {}
    }
}

/// How long the accept loop waits after a failed accept (out of descriptors: long enough not to
/// spin, short enough to serve again within a blink once one is free).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);
/// At most one log line per this interval for a repeating accept-loop condition.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// A warning that may repeat thousands of times a second: logged once per interval, with the
/// count of what it stands for.
struct RateLimitedLog {
    what: &'static str,
    every: Duration,
    last: Option<std::time::Instant>,
    suppressed: u64,
}

impl RateLimitedLog {
    fn new(what: &'static str, every: Duration) -> Self {
        Self {
            what,
            every,
            last: None,
            suppressed: 0,
        }
    }

    fn log(&mut self, err: &dyn std::fmt::Display, freed: bool) {
        let now = std::time::Instant::now();
        if self.last.is_some_and(|at| now - at < self.every) {
            self.suppressed += 1;
            return;
        }
        tracing::warn!(
            %err,
            closed_idle_connection = freed,
            repeats_since_last_log = self.suppressed,
            "{}",
            self.what
        );
        self.last = Some(now);
        self.suppressed = 0;
    }
}

/// The writer runtime while `serve` runs. However `serve` ends (returns, or its future is
/// dropped), the hub stops handing wake-ups to it and it shuts down without blocking; a stale
/// handle would have the fan-out spawn its wake-ups onto a dead runtime, where they are lost.
struct Writers {
    hub: Hub,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Writers {
    fn start(hub: &Hub) -> Self {
        let runtime = writer_runtime(hub.config().pin_writers);
        hub.inner
            .set_writers(runtime.as_ref().map(|rt| rt.handle().clone()));
        Self {
            hub: hub.clone(),
            runtime,
        }
    }
}

impl Drop for Writers {
    fn drop(&mut self) {
        self.hub.inner.set_writers(None);
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// The runtime the event streams run on: one thread per core, apart from the threads that
/// accept connections and handle publishes. `None` (streams share the caller's runtime) if it
/// cannot be built.
///
/// With `pin`, writer thread i runs only on the i-th CPU the process may use. A publish wakes
/// every matching stream at once; left to itself the kernel often places both writers on the
/// waker's core for the whole burst (measured: half a wave's writes on one core while the other
/// idles), so one wave of writes took twice as long as the two cores allow.
fn writer_runtime(pin: bool) -> Option<tokio::runtime::Runtime> {
    let cpus = if pin { allowed_cpus() } else { Vec::new() };
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let next = std::sync::atomic::AtomicUsize::new(0);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("tidings-writer")
        .on_thread_start(move || {
            // Pin only the writers: the runtime's blocking threads start here too, but they
            // are spawned later, after every worker took its CPU.
            let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if index < threads && cpus.len() >= threads {
                pin_current_thread(cpus[index]);
            }
        })
        .enable_all()
        .build()
        .inspect_err(
            |err| tracing::warn!(%err, "no separate writer runtime; streams share the main one"),
        )
        .ok()
}

/// The CPUs this process may run on.
fn allowed_cpus() -> Vec<usize> {
    use nix::sched::{sched_getaffinity, CpuSet};
    use nix::unistd::Pid;
    let Ok(set) = sched_getaffinity(Pid::from_raw(0)) else {
        return Vec::new();
    };
    (0..CpuSet::count())
        .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
        .collect()
}

fn pin_current_thread(cpu: usize) {
    use nix::sched::{sched_setaffinity, CpuSet};
    use nix::unistd::Pid;
    let mut set = CpuSet::new();
    if set.set(cpu).is_ok() {
        if let Err(err) = sched_setaffinity(Pid::from_raw(0), &set) {
            tracing::debug!(%err, cpu, "cannot pin a writer thread");
        }
    }
}
