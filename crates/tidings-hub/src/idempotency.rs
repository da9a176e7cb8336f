//! `Idempotency-Key` on a publish: a retry with the same key inside `--idempotency-window`
//! gets the first attempt's answer and publishes nothing new.
//!
//! A publisher whose request timed out cannot know whether the event was published; with a key
//! it can simply retry. Keys are scoped to the caller (its token subject, or the publish keys
//! as one caller) and tied to the request (endpoint and body): the same key with another body is
//! refused with 422 rather than silently answered for the other event. A retry that arrives
//! while the first attempt is still in flight waits for it. A failed attempt (refused, or the
//! history unavailable) leaves nothing behind, so its retry publishes. At most
//! `--idempotency-keys` keys are remembered; past that the oldest are forgotten first.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::watch;

/// Longest key accepted.
pub(crate) const MAX_KEY_LEN: usize = 255;

/// Checks a key: 1 to 255 visible ASCII characters.
pub(crate) fn validate_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(format!(
            "Idempotency-Key must be 1 to {MAX_KEY_LEN} characters"
        ));
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("Idempotency-Key must be visible ASCII characters (no spaces)".into());
    }
    Ok(())
}

/// What a request is, for telling a retry from another request under the same key.
pub(crate) fn fingerprint(endpoint: &str, body: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    endpoint.hash(&mut h);
    body.hash(&mut h);
    h.finish()
}

type Key = (Arc<str>, Arc<str>);

/// The remembered keys.
pub(crate) struct Idempotency {
    window: Duration,
    max_keys: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    entries: HashMap<Key, Entry>,
    /// Keys in the order they were first seen, for expiry and the bound.
    order: VecDeque<(Instant, Key)>,
}

struct Entry {
    fingerprint: u64,
    at: Instant,
    /// `None` while the first attempt runs; its answer once it succeeded.
    answer: watch::Receiver<Option<Bytes>>,
}

/// What became of a claim on a key.
pub(crate) enum Claim {
    /// The first attempt: publish, then [`Attempt::succeeded`] with the answer.
    First(Attempt),
    /// A retry: the first attempt's answer.
    Replay(Bytes),
    /// The key was used for another request.
    Conflict,
}

/// The first attempt under a key. Dropped without [`Attempt::succeeded`], it forgets the key.
pub(crate) struct Attempt {
    owner: Arc<Idempotency>,
    key: Key,
    answer: watch::Sender<Option<Bytes>>,
    done: bool,
}

impl Attempt {
    /// Remembers the answer for the retries.
    pub fn succeeded(mut self, answer: Bytes) {
        self.done = true;
        self.answer.send_replace(Some(answer));
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if !self.done {
            let mut st = self.owner.state.lock();
            if st
                .entries
                .get(&self.key)
                .is_some_and(|e| e.answer.same_channel(&self.answer.subscribe()))
            {
                st.entries.remove(&self.key);
            }
        }
    }
}

impl Idempotency {
    pub fn new(window: Duration, max_keys: usize) -> Arc<Self> {
        Arc::new(Self {
            window,
            max_keys: max_keys.max(1),
            state: Mutex::new(State::default()),
        })
    }

    /// Claims `key` for the caller `scope` and the request `fingerprint`.
    pub async fn claim(self: &Arc<Self>, scope: &str, key: &str, fingerprint: u64) -> Claim {
        let key: Key = (Arc::from(scope), Arc::from(key));
        loop {
            let mut waiting = {
                let mut st = self.state.lock();
                let now = Instant::now();
                self.forget_old(&mut st, now);
                match st.entries.get(&key) {
                    Some(entry) if entry.fingerprint != fingerprint => return Claim::Conflict,
                    Some(entry) => {
                        if let Some(answer) = entry.answer.borrow().clone() {
                            return Claim::Replay(answer);
                        }
                        entry.answer.clone()
                    }
                    None => {
                        let (tx, rx) = watch::channel(None);
                        st.entries.insert(
                            key.clone(),
                            Entry {
                                fingerprint,
                                at: now,
                                answer: rx,
                            },
                        );
                        st.order.push_back((now, key.clone()));
                        while st.entries.len() > self.max_keys {
                            let Some((at, oldest)) = st.order.pop_front() else {
                                break;
                            };
                            if st.entries.get(&oldest).is_some_and(|e| e.at == at) {
                                st.entries.remove(&oldest);
                            }
                        }
                        return Claim::First(Attempt {
                            owner: Arc::clone(self),
                            key,
                            answer: tx,
                            done: false,
                        });
                    }
                }
            };
            // The first attempt is in flight: wait for its answer; if it fails, claim again.
            let answer = match waiting.wait_for(Option::is_some).await {
                Ok(answer) => answer.clone(),
                Err(_) => None,
            };
            if let Some(answer) = answer {
                return Claim::Replay(answer);
            }
        }
    }

    /// Drops keys older than the window.
    fn forget_old(&self, st: &mut State, now: Instant) {
        while let Some((at, _)) = st.order.front() {
            if now.duration_since(*at) < self.window {
                break;
            }
            if let Some((at, key)) = st.order.pop_front() {
                if st.entries.get(&key).is_some_and(|e| e.at == at) {
                    st.entries.remove(&key);
                }
            }
        }
    }

    /// Keys remembered now (for `/metrics`).
    pub fn len(&self) -> usize {
        self.state.lock().entries.len()
    }
}

#[cfg(test)]
mod tests;
