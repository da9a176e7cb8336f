//! How a node finds the shared log: `--cluster`, `--cluster-prefix`, `--cluster-ca`,
//! `--durability`.

use crate::config::DurabilityMode;

/// Where the shared log is (`--cluster`, `--cluster-prefix`) and how durable Redis must be.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterOptions {
    /// `redis://[user:password@]host:port[/db]`.
    pub url: String,
    /// Prefix of every key the hub uses.
    pub prefix: String,
    /// `sync` needs `appendfsync always`; `interval` accepts `everysec`.
    pub durability: DurabilityMode,
    /// PEM certificates to trust for `rediss://` instead of the system's roots
    /// (`--cluster-ca`).
    pub ca: Option<std::path::PathBuf>,
}

impl ClusterOptions {
    /// Options for the log at `url` under the default prefix `tidings`, `--durability sync`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: "tidings".into(),
            durability: DurabilityMode::Sync,
            ca: None,
        }
    }

    /// Trusts the certificates of this PEM file for `rediss://`.
    pub fn ca(mut self, path: Option<std::path::PathBuf>) -> Self {
        self.ca = path;
        self
    }

    /// Sets the key prefix.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets the durability Redis must provide.
    pub fn durability(mut self, durability: DurabilityMode) -> Self {
        self.durability = durability;
        self
    }
}
