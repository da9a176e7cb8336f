//! Fan-out: durable events queued to their subscribers, in id order, on the hub's runtime.
//!
//! A store reports batches durable in append order, from wherever it runs: inline under the
//! sequencer's lock (the memory store) or on its flusher thread (the disk store, between two
//! group commits). Neither is a place for a wave of thousands of enqueues, so the report only
//! queues the batch here ([`Inner::durable`]); one runner takes every batch queued so far and
//! fans them out in one pass (one lock, one round of wake-ups), in the order they came. At most
//! one runner exists at a time, which keeps the order. The runner is the publisher's own task
//! once it has left the sequencer (inline reports), or a task spawned on the hub's runtime
//! (reports from a flusher thread).

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::Waker;

use parking_lot::Mutex;

use super::Inner;
use crate::conn::Enqueued;
use crate::event::StoredEvent;
use crate::publish::{PublishError, Published};

/// Most batches one pass of the runner takes: bounds how long it holds the registry's read
/// lock (new subscribers wait on it).
const PASS: usize = 64;

pub(crate) type Reply = tokio::sync::oneshot::Sender<Result<Vec<Published>, PublishError>>;

/// Durable batches waiting for the runner.
pub(super) struct FanoutQueue {
    state: Mutex<QueueState>,
    /// The hub's runtime, where the runner is spawned.
    runtime: tokio::runtime::Handle,
}

#[derive(Default)]
struct QueueState {
    batches: VecDeque<(Vec<Arc<StoredEvent>>, Reply)>,
    running: bool,
}

impl FanoutQueue {
    pub fn new(runtime: tokio::runtime::Handle) -> Self {
        Self {
            state: Mutex::new(QueueState::default()),
            runtime,
        }
    }
}

thread_local! {
    /// Set while this thread appends under the sequencer (see [`Inner::append_inline`]): a
    /// store that reports durability inline (the memory store) reports it here.
    static APPENDING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// A runner is due on this thread once the sequencer's lock is released.
    static RUN_AFTER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl Inner {
    /// Runs `append` (the store's append, under the sequencer's lock); returns whether this
    /// thread must now run the fan-out itself, once it has released the lock. A store that
    /// reports inline thus has its batches fanned out by the publisher's own task, with no
    /// hop to another task; one that reports from its own thread has a runner spawned.
    pub(crate) fn append_inline(&self, append: impl FnOnce()) -> bool {
        APPENDING.with(|a| a.set(true));
        append();
        APPENDING.with(|a| a.set(false));
        RUN_AFTER.with(|r| r.replace(false))
    }

    /// A batch is durable: queue it for the runner, starting one if none runs. Called by the
    /// store, in append order.
    pub(crate) fn durable(self: &Arc<Self>, events: Vec<Arc<StoredEvent>>, reply: Reply) {
        let start = {
            let mut st = self.fanout.state.lock();
            st.batches.push_back((events, reply));
            !std::mem::replace(&mut st.running, true)
        };
        if !start {
            return;
        }
        if APPENDING.with(|a| a.get()) {
            RUN_AFTER.with(|r| r.set(true));
        } else {
            let hub = Arc::clone(self);
            self.fanout.runtime.spawn(async move { hub.run_fanout() });
        }
    }

    /// The runner: fans out what is queued, pass after pass, until nothing is.
    pub(crate) fn run_fanout(&self) {
        loop {
            let pass: Vec<_> = {
                let mut st = self.fanout.state.lock();
                if st.batches.is_empty() {
                    st.running = false;
                    return;
                }
                let n = st.batches.len().min(PASS);
                st.batches.drain(..n).collect()
            };
            self.fan_out(pass);
        }
    }

    /// Queues durable events to their subscribers, in id order, then wakes their writers and
    /// answers the publishers. The one place fan-out happens.
    fn fan_out(&self, batches: Vec<(Vec<Arc<StoredEvent>>, Reply)>) {
        let mut wakes = Vec::new();
        let mut replies = Vec::with_capacity(batches.len());
        let mut tapped: Vec<Arc<StoredEvent>> = Vec::new();
        let tapping = self.system_watched();
        let newest = {
            let mut fanned_out = self.fanned_out.lock();
            let registry = self.registry.read();
            for (events, reply) in batches {
                let mut out = Vec::with_capacity(events.len());
                for event in &events {
                    if crate::tasks::Tasks::is_task_event(event) {
                        self.tasks.observe(event);
                    }
                    if tapping {
                        tapped.push(Arc::clone(event));
                    }
                    let mut delivered = 0usize;
                    registry.fanout(event, |conn| {
                        match conn.enqueue(event.id, &event.frame, &mut wakes) {
                            Enqueued::Queued => delivered += 1,
                            Enqueued::Skipped => {}
                            Enqueued::Overflow => self.metrics.slow_consumer_disconnects.inc(),
                        }
                    });
                    self.metrics.events_delivered.add(delivered as u64);
                    out.push(Published {
                        id: event.id.to_string(),
                        delivered,
                    });
                    *fanned_out = (*fanned_out).max(event.id);
                }
                replies.push((reply, out));
            }
            *fanned_out
        };
        if self.cluster.is_some() {
            self.note_fanned_out(newest);
        }
        self.wake_writers(wakes);
        for event in &tapped {
            self.tap(event);
        }
        for (reply, out) in replies {
            self.metrics.events_published.add(out.len() as u64);
            let _ = reply.send(Ok(out));
        }
    }

    /// Wakes the streams a fan-out queued to, once the whole wave is queued.
    ///
    /// With a writer runtime (`serve`), one task on it does the waking: a stream woken from
    /// inside the runtime goes to that worker's local queue and the other workers steal from
    /// it, where a wake from here would go through the runtime's shared queue and unpark a
    /// writer that then preempts this thread after every few streams (measured: the fan-out
    /// and a writer taking turns on one core for the first 1-2 ms of a 1,000-stream wave).
    /// A few wakes are cheaper done here than a spawned task.
    fn wake_writers(&self, wakes: Vec<Waker>) {
        const INLINE: usize = 4;
        let writers = self.writers.read();
        match &*writers {
            Some(writers) if wakes.len() > INLINE => {
                writers.spawn(async move {
                    for waker in wakes {
                        waker.wake();
                    }
                });
            }
            _ => {
                drop(writers);
                for waker in wakes {
                    waker.wake();
                }
            }
        }
    }

    /// The runtime the native streams run on, while `serve` runs.
    pub fn set_writers(&self, writers: Option<tokio::runtime::Handle>) {
        *self.writers.write() = writers;
    }

    /// The writer runtime, if `serve` runs one: where a new native stream is started, and
    /// where `wake_writers` wakes a wave.
    pub fn writers(&self) -> Option<tokio::runtime::Handle> {
        self.writers.read().clone()
    }
}
