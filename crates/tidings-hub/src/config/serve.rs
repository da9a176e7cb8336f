//! A served hub's whole configuration ([`ServeConfig`]: the listener, the history store and
//! the [`HubConfig`]) and how it is loaded, in layers: the defaults, then a TOML file, then
//! `TIDINGS_*` variables, then flags, each overriding the one before (a list given by a layer
//! replaces the lower layers' list). The `tidings` binary adds its flags with [`Loader`]; an
//! embedding application loads the same file and environment with [`ServeConfig::load`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::options::{find, OptionSpec};
use super::{ConfigError, HubConfig};
use crate::history::Durability;

/// Everything `tidings serve` is told.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServeConfig {
    /// The address to listen on (`--listen`).
    pub listen: SocketAddr,
    /// Keep history in memory only (`--memory`).
    pub memory: bool,
    /// The durable history's directory (`--data-dir`).
    pub data_dir: PathBuf,
    /// When a publish is acknowledged (`--durability`).
    pub durability: DurabilityMode,
    /// How often `interval` durability fsyncs (`--flush-interval`).
    pub flush_interval: Duration,
    /// The PEM file of the token public key (`--jwt-public-key`); read by [`Loader::finish`]
    /// into [`HubConfig::jwt_public_key_pem`].
    pub jwt_public_key: Option<PathBuf>,
    /// Share the port with other processes (`--reuse-port`).
    pub reuse_port: bool,
    /// The TLS certificate chain, PEM (`--tls-cert`).
    pub tls_cert: Option<PathBuf>,
    /// The TLS private key, PEM (`--tls-key`).
    pub tls_key: Option<PathBuf>,
    /// The shared log of cluster mode (`--cluster`).
    pub cluster: Option<String>,
    /// The prefix of the cluster's keys (`--cluster-prefix`).
    pub cluster_prefix: String,
    /// Roots to trust for `rediss://` (`--cluster-ca`).
    pub cluster_ca: Option<PathBuf>,
    /// The engine's configuration.
    pub hub: HubConfig,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            memory: false,
            data_dir: PathBuf::from("tidings-data"),
            durability: DurabilityMode::Sync,
            flush_interval: Duration::from_millis(100),
            jwt_public_key: None,
            reuse_port: false,
            tls_cert: None,
            tls_key: None,
            cluster: None,
            cluster_prefix: "tidings".into(),
            cluster_ca: None,
            hub: HubConfig::default(),
        }
    }
}

/// When a publish is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DurabilityMode {
    /// After fsync (group commit).
    Sync,
    /// After the write reaches the OS; fsynced every `flush_interval`.
    Interval,
}

impl DurabilityMode {
    /// Reads `sync` or `interval`.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.trim() {
            "sync" => Ok(Self::Sync),
            "interval" => Ok(Self::Interval),
            other => Err(format!("{other:?}; use `sync` or `interval`")),
        }
    }

    /// `sync` or `interval`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sync => "sync",
            Self::Interval => "interval",
        }
    }
}

/// Which history store to serve from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HistoryChoice {
    /// In memory (`--memory`).
    Memory,
    /// The durable store.
    Disk {
        /// Its directory.
        dir: PathBuf,
        /// Its durability.
        durability: Durability,
    },
    /// A shared log (`--cluster`).
    Cluster(crate::cluster::ClusterOptions),
}

impl ServeConfig {
    /// Defaults, then `file` (if given), then the process's `TIDINGS_*` variables; checked.
    pub fn load(file: Option<&Path>) -> Result<Self, LoadError> {
        let mut loader = Loader::new();
        if let Some(path) = file {
            loader.file(path)?;
        }
        loader.env(std::env::vars())?;
        loader.finish()
    }

    /// The history store this configuration selects.
    pub fn history(&self) -> HistoryChoice {
        if let Some(url) = &self.cluster {
            return HistoryChoice::Cluster(
                crate::cluster::ClusterOptions::new(url.clone())
                    .prefix(self.cluster_prefix.clone())
                    .durability(self.durability)
                    .ca(self.cluster_ca.clone()),
            );
        }
        if self.memory {
            return HistoryChoice::Memory;
        }
        let durability = match self.durability {
            DurabilityMode::Sync => Durability::Sync,
            DurabilityMode::Interval => Durability::Interval(self.flush_interval),
        };
        HistoryChoice::Disk {
            dir: self.data_dir.clone(),
            durability,
        }
    }

    /// The configuration as a TOML file that loads back to it (secrets shown as `"<secret>"`
    /// unless `secrets`): what `tidings serve --print-config` prints.
    pub fn to_toml(&self, secrets: bool) -> String {
        let mut out = String::new();
        for option in super::OPTIONS {
            let values = option.get(self);
            let quote = |v: &String| {
                if option.secret && !secrets {
                    "\"<secret>\"".to_owned()
                } else {
                    toml_string(v)
                }
            };
            match option.arity {
                super::Arity::Switch => {
                    out.push_str(&format!("{} = {}\n", option.key(), values.join("")));
                }
                super::Arity::One if values.is_empty() => {
                    out.push_str(&format!("# {} is not set\n", option.key()));
                }
                super::Arity::One => {
                    out.push_str(&format!("{} = {}\n", option.key(), quote(&values[0])));
                }
                super::Arity::Many => {
                    let list: Vec<String> = values.iter().map(quote).collect();
                    out.push_str(&format!("{} = [{}]\n", option.key(), list.join(", ")));
                }
            }
        }
        out
    }
}

fn toml_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A layer of configuration, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Layer {
    /// The TOML file.
    File,
    /// `TIDINGS_*` variables.
    Env,
    /// Command-line flags.
    Flags,
}

/// Why a configuration could not be loaded. The message names the option and where its value
/// came from.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file cannot be read.
    #[error("--config: cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not TOML, or a value has the wrong type.
    #[error("--config {path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A key or flag that is no option.
    #[error("{origin}: unknown option {name:?}")]
    Unknown {
        /// Where it was given.
        origin: String,
        /// What was given.
        name: String,
    },
    /// A value an option cannot take.
    #[error("invalid --{option} ({origin}): {reason}")]
    Value {
        /// The option.
        option: &'static str,
        /// Where the value came from.
        origin: String,
        /// Why it is refused.
        reason: String,
    },
    /// Values that do not work together, or a file they name that cannot be read.
    #[error(transparent)]
    Invalid(#[from] ConfigError),
}

/// Builds a [`ServeConfig`] from layers given lowest first.
#[derive(Debug, Default)]
pub struct Loader {
    config: ServeConfig,
    /// The layer that last set each option (a list from a higher layer replaces the list).
    set_by: HashMap<&'static str, Layer>,
}

impl Loader {
    /// Starts from the defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a TOML file's keys.
    pub fn file(&mut self, path: &Path) -> Result<&mut Self, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        self.toml(&text, path)
    }

    /// Adds the keys of a TOML document (`path` names it in errors).
    pub fn toml(&mut self, text: &str, path: &Path) -> Result<&mut Self, LoadError> {
        let file_error = |message: String| LoadError::File {
            path: path.to_owned(),
            message,
        };
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| file_error(e.message().to_owned()))?;
        let origin = format!("--config {}", path.display());
        for (key, value) in table {
            let option =
                find(&key)
                    .filter(|o| o.key() == key)
                    .ok_or_else(|| LoadError::Unknown {
                        origin: origin.clone(),
                        name: key.clone(),
                    })?;
            let values = match value {
                toml::Value::Array(items) => items.into_iter().map(scalar).collect(),
                one => vec![scalar(one)],
            };
            let values = values
                .into_iter()
                .collect::<Option<Vec<String>>>()
                .ok_or_else(|| file_error(format!("{key}: use a string, a number or a boolean")))?;
            for value in values {
                self.apply(option, Layer::File, &origin, &value)?;
            }
        }
        Ok(self)
    }

    /// Adds the `TIDINGS_*` variables among `vars` that name an option (others, such as
    /// `TIDINGS_LOG` and `TIDINGS_CONFIG`, are not options and are skipped).
    pub fn env(
        &mut self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<&mut Self, LoadError> {
        for (name, value) in vars {
            // The cluster URL carries a password; it is also read under the conventional
            // name of a URL variable.
            if name == "TIDINGS_CLUSTER_URL" {
                if let Some(option) = find("cluster") {
                    self.apply(option, Layer::Env, &name, &value)?;
                }
                continue;
            }
            if let Some(option) = find(&name).filter(|o| o.env() == name) {
                self.apply(option, Layer::Env, &name, &value)?;
            }
        }
        Ok(self)
    }

    /// Adds one value of the option called `name` (its flag name), from `layer`.
    pub fn value(&mut self, layer: Layer, name: &str, value: &str) -> Result<&mut Self, LoadError> {
        let option = find(name).ok_or_else(|| LoadError::Unknown {
            origin: format!("{layer:?}"),
            name: name.to_owned(),
        })?;
        let origin = match layer {
            Layer::File => "file".to_owned(),
            Layer::Env => option.env(),
            Layer::Flags => format!("--{}", option.name),
        };
        self.apply(option, layer, &origin, value)?;
        Ok(self)
    }

    fn apply(
        &mut self,
        option: &'static OptionSpec,
        layer: Layer,
        origin: &str,
        value: &str,
    ) -> Result<(), LoadError> {
        if self.set_by.insert(option.name, layer) != Some(layer) {
            option.clear(&mut self.config);
        }
        option
            .set(&mut self.config, value)
            .map_err(|reason| LoadError::Value {
                option: option.name,
                origin: origin.to_owned(),
                reason,
            })
    }

    /// The configuration so far, unchecked.
    pub fn config(&self) -> &ServeConfig {
        &self.config
    }

    /// Checks the whole and reads the files it names (the token public key).
    pub fn finish(self) -> Result<ServeConfig, LoadError> {
        let mut config = self.config;
        if !(Duration::from_millis(1)..=Duration::from_secs(60)).contains(&config.flush_interval) {
            return Err(ConfigError::new("flush-interval", "must be between 1ms and 60s").into());
        }
        if let Some(path) = &config.jwt_public_key {
            let pem = std::fs::read(path).map_err(|e| {
                ConfigError::new(
                    "jwt-public-key",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            config.hub.jwt_public_key_pem = Some(pem);
        }
        if config.cluster.is_some() && config.memory {
            return Err(ConfigError::new(
                "memory",
                "--memory and --cluster exclude each other: a cluster keeps its history in the shared log",
            )
            .into());
        }
        config.hub.validate()?;
        config.hub.check_listen(config.listen)?;
        Ok(config)
    }
}

/// A TOML scalar as option text (`15`, `"15s"`, `true` all read the same way as on the
/// command line).
fn scalar(value: toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s),
        toml::Value::Integer(n) => Some(n.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
