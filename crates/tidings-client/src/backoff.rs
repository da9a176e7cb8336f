//! Reconnection delays: pure arithmetic, with the randomness passed in so it can be tested.
//!
//! The base is the browser's "reconnection time": [`Builder::initial_delay`] until the server
//! sends `retry:`, then the server's value. Each failure in a row multiplies it by the factor,
//! up to the cap; jitter then takes a random fraction off, so that clients dropped together
//! do not all come back in the same instant.
//!
//! [`Builder::initial_delay`]: crate::Builder::initial_delay

use std::time::Duration;

/// The delay policy of one stream.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    /// The reconnection time: the initial delay, or the latest `retry:` from the server.
    pub(crate) base: Duration,
    pub(crate) factor: f64,
    pub(crate) max: Duration,
    /// The largest fraction of the delay that jitter may take off, in `0.0..=1.0`.
    pub(crate) jitter: f64,
}

impl Backoff {
    /// The delay before the next attempt, after `failures` connections in a row that did not
    /// become healthy (the first reconnection after a healthy stream has `failures` = 1).
    /// `unit_random` is drawn uniformly from `0.0..1.0`.
    ///
    /// Growth stops at the cap, but never below the base: a server that asks for a longer
    /// `retry:` than the cap gets what it asked for.
    pub(crate) fn delay(&self, failures: u32, unit_random: f64) -> Duration {
        let exponent = failures.saturating_sub(1).min(64) as i32;
        let grown = self.base.as_secs_f64() * self.factor.powi(exponent);
        let cap = self.max.max(self.base).as_secs_f64();
        let capped = if grown.is_finite() {
            grown.min(cap)
        } else {
            cap
        };
        let kept = 1.0 - self.jitter * unit_random.clamp(0.0, 1.0);
        Duration::from_secs_f64((capped * kept).max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(base_ms: u64, jitter: f64) -> Backoff {
        Backoff {
            base: Duration::from_millis(base_ms),
            factor: 2.0,
            max: Duration::from_secs(30),
            jitter,
        }
    }

    #[test]
    fn first_reconnect_waits_the_base_and_each_failure_doubles_it() {
        let b = policy(1000, 0.0);
        let delays: Vec<u64> = (1..=4)
            .map(|n| b.delay(n, 0.5).as_millis() as u64)
            .collect();
        assert_eq!(delays, [1000, 2000, 4000, 8000]);
        assert_eq!(b.delay(0, 0.5), Duration::from_secs(1));
    }

    #[test]
    fn growth_stops_at_the_cap_even_after_very_many_failures() {
        let b = policy(1000, 0.0);
        assert_eq!(b.delay(10, 0.0), Duration::from_secs(30));
        assert_eq!(b.delay(u32::MAX, 0.0), Duration::from_secs(30));
    }

    #[test]
    fn a_server_retry_longer_than_the_cap_is_honoured() {
        let b = policy(60_000, 0.0);
        assert_eq!(b.delay(1, 0.0), Duration::from_secs(60));
        assert_eq!(b.delay(5, 0.0), Duration::from_secs(60));
    }

    #[test]
    fn jitter_only_shortens_the_delay_by_at_most_its_fraction() {
        let b = policy(1000, 0.5);
        assert_eq!(b.delay(1, 0.0), Duration::from_secs(1));
        assert_eq!(b.delay(1, 1.0), Duration::from_millis(500));
        let mid = b.delay(1, 0.5);
        assert!(mid > Duration::from_millis(500) && mid < Duration::from_secs(1));
    }

    #[test]
    fn a_zero_base_means_reconnect_at_once() {
        assert_eq!(policy(0, 0.5).delay(7, 0.3), Duration::ZERO);
    }
}
