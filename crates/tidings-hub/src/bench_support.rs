//! Hooks for the fan-out micro-benchmarks (`benches/fanout.rs`); not a stable API.
//!
//! The benchmarks need subscribers without sockets: this registers connections straight in the
//! engine and plays their writers by draining the queues, so what is timed is exactly the
//! publish path (validate, encode once, append to history, enqueue to N subscribers).

use std::collections::VecDeque;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;

use crate::conn::Drained;
use crate::hub::{Hub, SubscribeSpec};
use crate::subscription::Subscription;
use crate::topic::Pattern;
use crate::{HubConfig, Publish, PublishError, Published};

/// A hub with `n` socket-less subscribers on one topic.
pub struct FanoutFixture {
    hub: Hub,
    subs: Vec<Subscription>,
    spare: VecDeque<Bytes>,
}

impl FanoutFixture {
    /// Registers `subscribers` connections on `topic`. Needs a tokio runtime.
    pub fn new(subscribers: usize, topic: &str) -> Self {
        let config = HubConfig {
            dev: true,
            max_connections: subscribers + 1,
            max_connections_per_ip: subscribers + 1,
            history_max_events: 10_000,
            ..Default::default()
        };
        let hub = Hub::new(config).expect("a valid configuration");
        let pattern = Pattern::parse(topic).expect("a valid topic");
        let subs = (0..subscribers)
            .map(|_| {
                let spec = SubscribeSpec {
                    patterns: vec![pattern.clone()],
                    user: None,
                    ip: None,
                    exp: None,
                    last_event_id: None,
                    protocol: "http/1.1",
                };
                hub.inner.subscribe(spec).expect("under the limits")
            })
            .collect();
        Self {
            hub,
            subs,
            spare: VecDeque::new(),
        }
    }

    /// Publishes one event through the real path and returns its outcome.
    pub async fn publish(&self, event: Publish) -> Result<Published, PublishError> {
        self.hub.publish(event).await
    }

    /// Empties every subscriber's queue as its writer would; returns the frames taken.
    pub fn drain(&mut self) -> usize {
        let mut cx = Context::from_waker(Waker::noop());
        let mut frames = 0;
        for sub in &self.subs {
            if let Poll::Ready(Drained::Frames(_)) = sub.conn().poll_drain(&mut cx, &mut self.spare)
            {
                frames += self.spare.len();
                self.spare.clear();
            }
        }
        frames
    }
}
