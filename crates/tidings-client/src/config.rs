//! A stream's validated settings, as the driver and the connector read them, and their
//! defaults. [`crate::Builder`] fills and checks them.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Uri};

/// The settings that need no validation beyond their range.
#[derive(Debug, Clone)]
pub(crate) struct Tuning {
    pub(crate) initial_delay: Duration,
    pub(crate) max_delay: Duration,
    pub(crate) backoff_factor: f64,
    pub(crate) jitter: f64,
    pub(crate) healthy_after: Duration,
    pub(crate) max_attempts: Option<u32>,
    pub(crate) read_timeout: Option<Duration>,
    pub(crate) connect_timeout: Duration,
    pub(crate) last_event_id: String,
    pub(crate) max_line_len: usize,
    pub(crate) max_redirects: u32,
    pub(crate) comments: bool,
    pub(crate) recognise_reset: bool,
}

/// A validated [`Builder`].
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) url: Uri,
    pub(crate) method: Method,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Option<Bytes>,
    pub(crate) tuning: Tuning,
    /// Certificates trusted for https besides the system's roots.
    pub(crate) roots: Vec<rustls::pki_types::CertificateDer<'static>>,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            backoff_factor: 2.0,
            jitter: 0.5,
            healthy_after: Duration::from_secs(60),
            max_attempts: None,
            read_timeout: None,
            connect_timeout: Duration::from_secs(30),
            last_event_id: String::new(),
            max_line_len: tidings_wire::DEFAULT_MAX_LINE_LEN,
            max_redirects: 10,
            comments: true,
            recognise_reset: true,
        }
    }
}
