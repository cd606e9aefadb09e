//! Node configuration: a TOML file whose every key can be overridden by a `TROUPE_*` environment variable.
//!
//! Both sources go through one path: the file is parsed into a [`toml::Table`], each environment override is
//! converted to the TOML type of its target key and written into that table, and the merged table is
//! deserialized into a [`NodeConfig`] and [validated](NodeConfig::validate).
//!
//! # Environment variables
//!
//! The variable name is [`ENV_PREFIX`] followed by the key upper-cased; nested keys are joined with a double
//! underscore (key matching is case-insensitive; channel names are lower-cased):
//!
//! | variable | key |
//! |---|---|
//! | `TROUPE_NAME=n1` | `name` |
//! | `TROUPE_LISTEN=127.0.0.1:7000,127.0.0.1:7001` | `listen` (lists are comma-separated; empty = empty list) |
//! | `TROUPE_SEND_QUEUE_BYTES=1048576` | `send_queue_bytes` |
//! | `TROUPE_CHANNELS__BULK__PARALLELISM=16` | `channels.bulk.parallelism` (creates the channel if absent) |
//! | `TROUPE_TLS__CERT=/etc/troupe/node.pem` | `tls.cert` |
//! | `TROUPE_LINK__ONE_WAY_DELAY_MS=10` | `link.one_way_delay_ms` |
//!
//! An empty value for an optional key (`TROUPE_SECRET=`, `TROUPE_WORKERS=`, `TROUPE_TLS__SERVER_NAME=`,
//! `TROUPE_LINK__INFLIGHT_BYTES=`, …) removes the key, restoring its default (`None`).
//! A `TROUPE_` variable that names no config key is an error, except the variables in [`RESERVED_ENV_VARS`],
//! which other parts of troupe read and which are ignored here.
//!
//! Relative paths (`secret_file`, `tls.*`) are resolved against the process's working directory.
//!
//! # Example
//!
//! ```toml
//! name = "n1"
//! listen = ["0.0.0.0:7000"]
//! advertise = ["10.0.0.5:7000"]
//! seeds = ["10.0.0.4:7000"]
//! secret_file = "/etc/troupe/secret"
//!
//! [channels.bulk]
//! parallelism = 16
//!
//! [tls]
//! cert = "node.pem"
//! key = "node.key"
//! ca = "ca.pem"
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
pub use troupe_overlay::Role;

/// Prefix of the environment variables that override config keys.
pub const ENV_PREFIX: &str = "TROUPE_";

/// `TROUPE_` variables owned by other parts of troupe; [`NodeConfig::load`] ignores them.
pub const RESERVED_ENV_VARS: &[&str] = &["TROUPE_LOG", "TROUPE_CONFIG"];

/// Name of the reserved control (membership) channel; always at index 0 of [`NodeConfig::channel_table`],
/// always parallelism 1.
pub const CONTROL_CHANNEL: &str = "control";

/// Name of the reserved default channel; always at index 1 of [`NodeConfig::channel_table`].
pub const DEFAULT_CHANNEL: &str = "default";

/// Longest allowed node, cluster or channel name, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// Shortest allowed cluster secret, in bytes.
pub const MIN_SECRET_BYTES: usize = 16;

/// Smallest allowed `max_frame_bytes` (1 KiB).
pub const MIN_FRAME_BYTES: usize = 1 << 10;

/// Largest allowed `max_frame_bytes` (1 GiB).
pub const MAX_FRAME_BYTES: usize = 1 << 30;

/// Smallest allowed `send_queue_bytes` (4 KiB).
pub const MIN_SEND_QUEUE_BYTES: usize = 4 << 10;

/// Largest allowed channel parallelism (connections per channel per peer).
pub const MAX_CHANNEL_PARALLELISM: u16 = 256;

/// Largest allowed emulated one-way delay (one hour), in milliseconds.
pub const MAX_ONE_WAY_DELAY_MS: f64 = 3_600_000.0;

/// Configuration of one troupe node.
///
/// Every field has a default, so an empty TOML file is a valid configuration. Unknown keys are errors.
#[derive(Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// Node name, default `"node"`; non-empty, `[A-Za-z0-9._-]`, at most [`MAX_NAME_LEN`] bytes.
    pub name: String,
    /// Cluster name, default `"troupe"`; same rule as `name`. Nodes of different clusters refuse each other.
    pub cluster: String,
    /// Cluster secret, at least [`MIN_SECRET_BYTES`] bytes when set. Redacted from `Debug` output.
    pub secret: Option<String>,
    /// Alternative to `secret`: a file holding the secret (trailing newlines are trimmed). Setting both
    /// `secret` and `secret_file` is an error. Read by [`NodeConfig::secret_bytes`].
    pub secret_file: Option<PathBuf>,
    /// Listen addresses, each an IP socket address `"ip:port"`; default `["127.0.0.1:0"]`; at least one.
    pub listen: Vec<String>,
    /// Addresses other nodes should dial (`"host:port"`, port ≠ 0); empty (the default) means the bound
    /// listen addresses.
    pub advertise: Vec<String>,
    /// Addresses (`"host:port"`, port ≠ 0) to connect to at start.
    pub seeds: Vec<String>,
    /// Largest frame accepted or sent, default 64 MiB; between [`MIN_FRAME_BYTES`] and [`MAX_FRAME_BYTES`].
    pub max_frame_bytes: usize,
    /// Send queue limit per connection, default 4 MiB; at least [`MIN_SEND_QUEUE_BYTES`].
    pub send_queue_bytes: usize,
    /// TCP connect timeout, default 5000 ms; at least 1.
    pub connect_timeout_ms: u64,
    /// Handshake timeout, default 5000 ms; at least 1.
    pub handshake_timeout_ms: u64,
    /// Ping a peer after this long without traffic from it, default 20000 ms (Partisan: 20 s); at least 1.
    pub idle_ping_ms: u64,
    /// How long to wait for a ping's answer, default 10000 ms; at least 1.
    pub ping_timeout_ms: u64,
    /// Unanswered pings before a peer is considered down, default 5; at least 1.
    pub ping_attempts: u32,
    /// Retransmit interval of acknowledged sends, default 1000 ms; at least 1.
    pub ack_retransmit_ms: u64,
    /// First reconnect back-off, default 100 ms; at least 1.
    pub reconnect_min_ms: u64,
    /// Largest reconnect back-off, default 10000 ms; at least `reconnect_min_ms`.
    pub reconnect_max_ms: u64,
    /// Actor scheduler threads; `None` (default) = number of cores; at least 1 when set.
    pub workers: Option<usize>,
    /// Tokio threads for network I/O, default 1; at least 1.
    pub net_threads: usize,
    /// Membership overlay, default `"none"` (connections only where the application makes them);
    /// `"static"`, `"full"`, `"client-server"` or `"hyparview"` run that overlay.
    pub overlay: OverlayKind,
    /// This node's role in a client-server overlay, `"server"` (default) or `"client"`.
    pub role: Role,
    /// How a message reaches a node that is not a neighbour: `"direct"` (default; connect on demand) or
    /// `"relay"` (pass it along the overlay, at most `relay_ttl` hops).
    pub reach: Reach,
    /// Hops a relayed message may take, default 5 (Partisan's TTL); `1..=255`.
    pub relay_ttl: u32,
    /// DNS names (`"host:port"`) whose addresses (every A and AAAA record) are all seeds.
    pub seed_dns: Vec<String>,
    /// HyParView's parameters (used with `overlay = "hyparview"`); Partisan's defaults.
    pub hyparview: HyParViewSettings,
    /// Close a connection the overlay does not use once it has carried no message for this long,
    /// default 10000 ms; at least 1.
    pub release_idle_ms: u64,
    /// Named channels. Names are lower-case `[a-z0-9._-]`, at most [`MAX_NAME_LEN`] bytes. The reserved
    /// name `"default"` may appear to set the default channel's parallelism; `"control"` may appear only with
    /// parallelism 1. Neither reserved channel may be monotonic. See [`NodeConfig::channel_table`].
    pub channels: BTreeMap<String, ChannelConfig>,
    /// TLS for all connections; `None` (default) = plain TCP.
    pub tls: Option<TlsConfig>,
    /// User-space link emulation on this node's outgoing connections; `None` (default) = none.
    pub link: Option<LinkEmulation>,
}

/// Which membership overlay a node runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OverlayKind {
    /// No overlay: connections only where the application makes them.
    #[default]
    None,
    /// Connect to the seeds only.
    Static,
    /// Everyone connects to everyone; membership spread by gossip.
    Full,
    /// Servers mesh; clients connect to servers.
    ClientServer,
    /// Partial views (active and passive), for large clusters.
    Hyparview,
}

impl std::str::FromStr for OverlayKind {
    type Err = String;

    /// Parses the configuration spelling (`"hyparview"`, `"client-server"`, ...).
    fn from_str(s: &str) -> Result<Self, String> {
        [OverlayKind::None, OverlayKind::Static, OverlayKind::Full, OverlayKind::ClientServer, OverlayKind::Hyparview]
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown overlay {s:?} (none, static, full, client-server, hyparview)"))
    }
}

impl OverlayKind {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            OverlayKind::None => "none",
            OverlayKind::Static => "static",
            OverlayKind::Full => "full",
            OverlayKind::ClientServer => "client-server",
            OverlayKind::Hyparview => "hyparview",
        }
    }
}

/// How a message reaches a node that is not an overlay neighbour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reach {
    /// Open a connection to it on demand.
    #[default]
    Direct,
    /// Pass the message along the overlay.
    Relay,
}

/// HyParView's parameters, as configured (`[hyparview]` in TOML, `TROUPE_HYPARVIEW__<KEY>`).
/// The defaults are Partisan's.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HyParViewSettings {
    /// Largest active view (neighbours with a connection), default 6.
    pub active_max: usize,
    /// Below this many neighbours a node promotes from its passive view at once, default 3.
    pub active_min: usize,
    /// Largest passive view, default 30.
    pub passive_max: usize,
    /// Active random walk length (TTL of FORWARD_JOIN and SHUFFLE), default 6.
    pub arwl: u32,
    /// Passive random walk length, default 6.
    pub prwl: u32,
    /// Shuffle period, default 10000 ms.
    pub shuffle_ms: u64,
    /// Active-view entries a SHUFFLE carries, default 3.
    pub shuffle_active: usize,
    /// Passive-view entries a SHUFFLE carries, default 4.
    pub shuffle_passive: usize,
    /// Random promotion period, default 5000 ms.
    pub promotion_ms: u64,
}

impl Default for HyParViewSettings {
    fn default() -> Self {
        let d = troupe_overlay::HyParViewConfig::default();
        HyParViewSettings {
            active_max: d.active_max,
            active_min: d.active_min,
            passive_max: d.passive_max,
            arwl: d.arwl,
            prwl: d.prwl,
            shuffle_ms: d.shuffle_interval.as_millis() as u64,
            shuffle_active: d.shuffle_active,
            shuffle_passive: d.shuffle_passive,
            promotion_ms: d.promotion_interval.as_millis() as u64,
        }
    }
}

impl HyParViewSettings {
    /// The protocol configuration these settings give, with `seed` for its RNG.
    pub fn protocol_config(&self, seed: u64) -> troupe_overlay::HyParViewConfig {
        troupe_overlay::HyParViewConfig {
            active_max: self.active_max,
            active_min: self.active_min,
            passive_max: self.passive_max,
            arwl: self.arwl,
            prwl: self.prwl,
            shuffle_interval: std::time::Duration::from_millis(self.shuffle_ms),
            shuffle_active: self.shuffle_active,
            shuffle_passive: self.shuffle_passive,
            promotion_interval: std::time::Duration::from_millis(self.promotion_ms),
            ..troupe_overlay::HyParViewConfig::with_seed(seed)
        }
    }
}

/// Settings of one named channel.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChannelConfig {
    /// TCP connections per peer for this channel, default 1; `1..=`[`MAX_CHANNEL_PARALLELISM`].
    pub parallelism: u16,
    /// Drop a queued send when a newer one for the same target is queued (for state-carrying messages),
    /// default false.
    pub monotonic: bool,
}

/// TLS settings (PEM files).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// This node's certificate chain (PEM).
    pub cert: PathBuf,
    /// This node's private key (PEM).
    pub key: PathBuf,
    /// The CA certificate(s) peers' certificates must chain to (PEM).
    pub ca: PathBuf,
    /// Whether accepting nodes require a client certificate, default true.
    #[serde(default = "default_true")]
    pub require_client_cert: bool,
    /// Server name to verify in peers' certificates; `None` (default) lets the transport choose.
    #[serde(default)]
    pub server_name: Option<String>,
}

/// User-space link emulation: what this node reads from each of its connections (dialled or accepted) is
/// delayed and windowed as if it had crossed a long link (see [`crate::emulation::DelayedReader`]). Give both
/// nodes the same settings for a symmetric link: each delays its own receiving direction, so the round trip
/// is twice `one_way_delay_ms`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinkEmulation {
    /// Added one-way delay in milliseconds, default 0; finite, `0..=`[`MAX_ONE_WAY_DELAY_MS`].
    pub one_way_delay_ms: f64,
    /// Cap on unacknowledged bytes per connection and direction (the send window of a long link, so one
    /// connection moves at most `inflight_bytes / RTT` bytes per second); `None` (default) = no cap; at least 1
    /// when set.
    pub inflight_bytes: Option<usize>,
    /// Probability of dropping a message, default 0; `0.0..=1.0`.
    pub loss: f64,
}

fn default_true() -> bool {
    true
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            name: "node".to_owned(),
            cluster: "troupe".to_owned(),
            secret: None,
            secret_file: None,
            listen: vec!["127.0.0.1:0".to_owned()],
            advertise: Vec::new(),
            seeds: Vec::new(),
            max_frame_bytes: 64 << 20,
            send_queue_bytes: 4 << 20,
            connect_timeout_ms: 5000,
            handshake_timeout_ms: 5000,
            idle_ping_ms: 20_000,
            ping_timeout_ms: 10_000,
            ping_attempts: 5,
            ack_retransmit_ms: 1000,
            reconnect_min_ms: 100,
            reconnect_max_ms: 10_000,
            workers: None,
            net_threads: 1,
            overlay: OverlayKind::None,
            role: Role::Server,
            reach: Reach::Direct,
            relay_ttl: 5,
            seed_dns: Vec::new(),
            hyparview: HyParViewSettings::default(),
            release_idle_ms: 10_000,
            channels: BTreeMap::new(),
            tls: None,
            link: None,
        }
    }
}

impl Default for ChannelConfig {
    fn default() -> Self {
        ChannelConfig { parallelism: 1, monotonic: false }
    }
}

impl Default for LinkEmulation {
    fn default() -> Self {
        LinkEmulation { one_way_delay_ms: 0.0, inflight_bytes: None, loss: 0.0 }
    }
}

impl LinkEmulation {
    /// The delay and window this asks of the transport, or `None` when it asks for none (no delay and no
    /// cap: only `loss`, which the message path applies).
    pub fn link_config(&self) -> Option<crate::emulation::LinkConfig> {
        let delay = std::time::Duration::try_from_secs_f64(self.one_way_delay_ms / 1000.0).unwrap_or_default();
        if delay.is_zero() && self.inflight_bytes.is_none() {
            return None;
        }
        Some(crate::emulation::LinkConfig {
            one_way_delay: delay,
            inflight_cap: self.inflight_bytes.unwrap_or(usize::MAX),
            bandwidth: None,
        })
    }
}

/// Prints `<redacted>` in place of a secret.
struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Debug for NodeConfig {
    /// Like a derived `Debug`, but the `secret` value is redacted so configs can be logged.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeConfig")
            .field("name", &self.name)
            .field("cluster", &self.cluster)
            .field("secret", &self.secret.as_ref().map(|_| Redacted))
            .field("secret_file", &self.secret_file)
            .field("listen", &self.listen)
            .field("advertise", &self.advertise)
            .field("seeds", &self.seeds)
            .field("max_frame_bytes", &self.max_frame_bytes)
            .field("send_queue_bytes", &self.send_queue_bytes)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("handshake_timeout_ms", &self.handshake_timeout_ms)
            .field("idle_ping_ms", &self.idle_ping_ms)
            .field("ping_timeout_ms", &self.ping_timeout_ms)
            .field("ping_attempts", &self.ping_attempts)
            .field("ack_retransmit_ms", &self.ack_retransmit_ms)
            .field("reconnect_min_ms", &self.reconnect_min_ms)
            .field("reconnect_max_ms", &self.reconnect_max_ms)
            .field("workers", &self.workers)
            .field("net_threads", &self.net_threads)
            .field("overlay", &self.overlay)
            .field("role", &self.role)
            .field("reach", &self.reach)
            .field("relay_ttl", &self.relay_ttl)
            .field("seed_dns", &self.seed_dns)
            .field("hyparview", &self.hyparview)
            .field("release_idle_ms", &self.release_idle_ms)
            .field("channels", &self.channels)
            .field("tls", &self.tls)
            .field("link", &self.link)
            .finish()
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file (the config file or the `secret_file`) could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML text is malformed, has an unknown key or a value of the wrong type.
    #[error("{source_name}: {message}")]
    Parse {
        /// The file name (or a description of the source).
        source_name: String,
        /// toml's message, naming the key and, for file errors, the line.
        message: String,
    },
    /// A value breaks a rule.
    #[error("config key `{key}`: {message}")]
    Invalid {
        /// The key in dotted form, e.g. `channels.bulk.parallelism`.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A `TROUPE_*` environment variable is unknown or its value cannot be converted.
    #[error("environment variable {var} (config key `{key}`): {message}")]
    Env {
        /// The variable's name.
        var: String,
        /// The config key it maps to, in dotted form.
        key: String,
        /// What is wrong.
        message: String,
    },
}

impl NodeConfig {
    /// Parses TOML text (no environment overrides), then validates.
    pub fn from_toml_str(text: &str) -> Result<NodeConfig, ConfigError> {
        Self::load_from(Some(text), "config", std::iter::empty())
    }

    /// Reads the file at `path` (or starts from the defaults when `None`), applies the `TROUPE_*` overrides
    /// found in the process environment, then validates.
    ///
    /// Variables outside the `TROUPE_` prefix are never looked at, so non-UTF-8 variables elsewhere in the
    /// environment are harmless.
    pub fn load(path: Option<&Path>) -> Result<NodeConfig, ConfigError> {
        let text = match path {
            Some(p) => Some(std::fs::read_to_string(p).map_err(|source| ConfigError::Read { path: p.into(), source })?),
            None => None,
        };
        let source = path.map_or_else(|| "defaults".to_owned(), |p| p.display().to_string());
        Self::load_from(text.as_deref(), &source, process_env()?)
    }

    /// The testable core of [`load`](Self::load): file text (or none), `source` (the file name, used in
    /// messages) and explicit environment pairs. Pairs without the `TROUPE_` prefix and the
    /// [`RESERVED_ENV_VARS`] are ignored.
    pub fn load_from(
        text: Option<&str>,
        source: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<NodeConfig, ConfigError> {
        let mut table = match text {
            Some(text) => text.parse::<toml::Table>().map_err(|e| parse_error(source, &e))?,
            None => toml::Table::new(),
        };
        let overrides = collect_overrides(env)?;
        for ov in &overrides {
            ov.apply(&mut table)?;
            tracing::debug!(var = %ov.var, key = %ov.key, "config key overridden from the environment");
        }
        check_tls_complete(&table, &overrides)?;
        let config: NodeConfig = match table.try_into() {
            Ok(config) => config,
            Err(merged) => return Err(deserialize_error(text, source, !overrides.is_empty(), &merged)),
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks every rule documented on the fields; the error names the offending key in dotted form.
    /// Does no I/O (the `secret_file` is read by [`secret_bytes`](Self::secret_bytes)).
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_name("name", &self.name, false)?;
        check_name("cluster", &self.cluster, false)?;
        if let Some(secret) = &self.secret {
            check_secret_len("secret", secret.len(), "the secret")?;
            if self.secret_file.is_some() {
                return Err(invalid("secret_file", "set either `secret` or `secret_file`, not both"));
            }
        }
        if let Some(file) = &self.secret_file {
            if file.as_os_str().is_empty() {
                return Err(invalid("secret_file", "must not be empty"));
            }
        }
        if self.listen.is_empty() {
            return Err(invalid("listen", "at least one listen address is required"));
        }
        for addr in &self.listen {
            if addr.parse::<SocketAddr>().is_err() {
                return Err(invalid("listen", format!("`{addr}` is not an IP socket address (\"ip:port\")")));
            }
        }
        for (key, list) in [("advertise", &self.advertise), ("seeds", &self.seeds), ("seed_dns", &self.seed_dns)] {
            for addr in list {
                check_host_port(key, addr)?;
            }
        }
        check_range("max_frame_bytes", self.max_frame_bytes, MIN_FRAME_BYTES, MAX_FRAME_BYTES)?;
        check_range("send_queue_bytes", self.send_queue_bytes, MIN_SEND_QUEUE_BYTES, usize::MAX)?;
        for (key, value) in [
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("handshake_timeout_ms", self.handshake_timeout_ms),
            ("idle_ping_ms", self.idle_ping_ms),
            ("ping_timeout_ms", self.ping_timeout_ms),
            ("ping_attempts", u64::from(self.ping_attempts)),
            ("ack_retransmit_ms", self.ack_retransmit_ms),
            ("reconnect_min_ms", self.reconnect_min_ms),
        ] {
            check_range(key, value, 1, u64::MAX)?;
        }
        if self.reconnect_max_ms < self.reconnect_min_ms {
            return Err(invalid(
                "reconnect_max_ms",
                format!("{} is less than reconnect_min_ms ({})", self.reconnect_max_ms, self.reconnect_min_ms),
            ));
        }
        if let Some(workers) = self.workers {
            check_range("workers", workers, 1, usize::MAX)?;
        }
        check_range("net_threads", self.net_threads, 1, usize::MAX)?;
        check_range("relay_ttl", self.relay_ttl, 1, 255)?;
        check_range("release_idle_ms", self.release_idle_ms, 1, u64::MAX)?;
        check_range("hyparview.shuffle_ms", self.hyparview.shuffle_ms, 1, u64::MAX)?;
        check_range("hyparview.promotion_ms", self.hyparview.promotion_ms, 1, u64::MAX)?;
        self.hyparview.protocol_config(0).validate().map_err(|e| invalid("hyparview", e.to_string()))?;
        for (name, channel) in &self.channels {
            check_channel(name, channel)?;
        }
        if let Some(tls) = &self.tls {
            for (key, path) in [("tls.cert", &tls.cert), ("tls.key", &tls.key), ("tls.ca", &tls.ca)] {
                if path.as_os_str().is_empty() {
                    return Err(invalid(key, "must not be empty"));
                }
            }
            if tls.server_name.as_deref() == Some("") {
                return Err(invalid("tls.server_name", "must not be empty when set"));
            }
        }
        if let Some(link) = &self.link {
            let delay = link.one_way_delay_ms;
            if !(0.0..=MAX_ONE_WAY_DELAY_MS).contains(&delay) {
                return Err(invalid(
                    "link.one_way_delay_ms",
                    format!("{delay} is outside 0..={MAX_ONE_WAY_DELAY_MS} milliseconds"),
                ));
            }
            if let Some(inflight) = link.inflight_bytes {
                check_range("link.inflight_bytes", inflight, 1, usize::MAX)?;
            }
            if !(0.0..=1.0).contains(&link.loss) {
                return Err(invalid("link.loss", format!("{} is not a probability in 0.0..=1.0", link.loss)));
            }
        }
        Ok(())
    }

    /// The cluster secret: the bytes of `secret`, or the contents of `secret_file` with trailing newlines
    /// (`\n`, `\r\n`) trimmed; `None` when neither is set. Errors when both are set, when the file cannot be
    /// read ([`ConfigError::Read`]) or when the secret is shorter than [`MIN_SECRET_BYTES`].
    pub fn secret_bytes(&self) -> Result<Option<Vec<u8>>, ConfigError> {
        match (&self.secret, &self.secret_file) {
            (Some(_), Some(_)) => Err(invalid("secret_file", "set either `secret` or `secret_file`, not both")),
            (Some(secret), None) => {
                check_secret_len("secret", secret.len(), "the secret")?;
                Ok(Some(secret.as_bytes().to_vec()))
            }
            (None, Some(path)) => {
                let mut bytes =
                    std::fs::read(path).map_err(|source| ConfigError::Read { path: path.clone(), source })?;
                while matches!(bytes.last(), Some(b'\n' | b'\r')) {
                    bytes.pop();
                }
                check_secret_len("secret_file", bytes.len(), &format!("the secret in {}", path.display()))?;
                Ok(Some(bytes))
            }
            (None, None) => Ok(None),
        }
    }

    /// The channel table with the reserved channels filled in: index 0 is `"control"` (parallelism 1, not
    /// monotonic), index 1 is `"default"` (from `channels.default` if present, else [`ChannelConfig::default`]),
    /// then the other named channels in name order. A channel's index is stable for a given config.
    pub fn channel_table(&self) -> Vec<(String, ChannelConfig)> {
        let mut table = Vec::with_capacity(self.channels.len() + 2);
        table.push((CONTROL_CHANNEL.to_owned(), ChannelConfig::default()));
        table.push((DEFAULT_CHANNEL.to_owned(), self.channels.get(DEFAULT_CHANNEL).cloned().unwrap_or_default()));
        table.extend(
            self.channels
                .iter()
                .filter(|(name, _)| name.as_str() != CONTROL_CHANNEL && name.as_str() != DEFAULT_CHANNEL)
                .map(|(name, channel)| (name.clone(), channel.clone())),
        );
        table
    }
}

// ---------------------------------------------------------------------------------------------------------
// Validation helpers

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.to_owned(), message: message.into() }
}

/// Node, cluster and channel names: non-empty, at most [`MAX_NAME_LEN`] bytes, `[A-Za-z0-9._-]`
/// (`[a-z0-9._-]` when `lower_only`).
fn check_name(key: &str, name: &str, lower_only: bool) -> Result<(), ConfigError> {
    if name.is_empty() {
        return Err(invalid(key, "must not be empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(invalid(key, format!("`{name}` is {} bytes long; at most {MAX_NAME_LEN} allowed", name.len())));
    }
    let allowed = |c: char| {
        c.is_ascii_digit()
            || matches!(c, '.' | '_' | '-')
            || if lower_only { c.is_ascii_lowercase() } else { c.is_ascii_alphabetic() }
    };
    if let Some(bad) = name.chars().find(|&c| !allowed(c)) {
        let charset = if lower_only { "[a-z0-9._-]" } else { "[A-Za-z0-9._-]" };
        return Err(invalid(key, format!("`{name}` contains {bad:?}; only {charset} allowed")));
    }
    Ok(())
}

fn check_secret_len(key: &str, len: usize, what: &str) -> Result<(), ConfigError> {
    if len < MIN_SECRET_BYTES {
        return Err(invalid(key, format!("{what} is {len} bytes; at least {MIN_SECRET_BYTES} are required")));
    }
    Ok(())
}

fn check_range<T: PartialOrd + fmt::Display + Copy>(key: &str, value: T, min: T, max: T) -> Result<(), ConfigError> {
    if value < min {
        return Err(invalid(key, format!("{value} is less than the minimum {min}")));
    }
    if value > max {
        return Err(invalid(key, format!("{value} is more than the maximum {max}")));
    }
    Ok(())
}

/// `"host:port"` with a non-zero port; host is an IPv4 address, a bracketed IPv6 address or a DNS name.
fn check_host_port(key: &str, addr: &str) -> Result<(), ConfigError> {
    let bad = |why: &str| invalid(key, format!("`{addr}` is not \"host:port\": {why}"));
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err(bad("missing `:port`"));
    };
    match port.parse::<u16>() {
        Ok(0) => return Err(bad("port 0 cannot be dialled")),
        Ok(_) => {}
        Err(_) => return Err(bad("the port is not a number in 1..=65535")),
    }
    if let Some(inner) = host.strip_prefix('[') {
        let ok = inner.strip_suffix(']').is_some_and(|ip| ip.parse::<Ipv6Addr>().is_ok());
        return if ok { Ok(()) } else { Err(bad("bad bracketed IPv6 address")) };
    }
    if host.is_empty() {
        return Err(bad("empty host"));
    }
    if host.len() > 253 || !host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')) {
        return Err(bad("the host is neither an IP address nor a DNS name (IPv6 needs brackets)"));
    }
    Ok(())
}

fn check_channel(name: &str, channel: &ChannelConfig) -> Result<(), ConfigError> {
    check_name(&format!("channels.{name}"), name, true)?;
    let key = |field: &str| format!("channels.{name}.{field}");
    if name == CONTROL_CHANNEL {
        if channel.parallelism != 1 {
            return Err(invalid(&key("parallelism"), "the control channel always has parallelism 1"));
        }
    } else {
        check_range(&key("parallelism"), channel.parallelism, 1, MAX_CHANNEL_PARALLELISM)?;
    }
    if channel.monotonic && (name == CONTROL_CHANNEL || name == DEFAULT_CHANNEL) {
        return Err(invalid(&key("monotonic"), format!("the reserved `{name}` channel cannot be monotonic")));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// Parsing helpers

fn toml_message(error: &toml::de::Error) -> String {
    error.to_string().trim_end().to_owned()
}

fn parse_error(source: &str, error: &toml::de::Error) -> ConfigError {
    ConfigError::Parse { source_name: source.to_owned(), message: toml_message(error) }
}

/// Deserializing the merged table failed. toml errors on a table carry no line numbers, so when the file
/// alone fails the same way, report the file's error (with its line); otherwise blame file + environment.
fn deserialize_error(text: Option<&str>, source: &str, env_applied: bool, merged: &toml::de::Error) -> ConfigError {
    if let Some(text) = text {
        if let Err(file_error) = toml::from_str::<NodeConfig>(text) {
            if !env_applied || file_error.message() == merged.message() {
                return parse_error(source, &file_error);
            }
        }
    }
    let source_name = if env_applied { format!("{source} with {ENV_PREFIX}* overrides") } else { source.to_owned() };
    ConfigError::Parse { source_name, message: toml_message(merged) }
}

// ---------------------------------------------------------------------------------------------------------
// Environment overrides

/// The TOML type an overridable key takes, and how an environment string converts to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Str,
    /// An optional string; an empty value removes the key.
    OptStr,
    /// Comma-separated, items trimmed, empty items dropped.
    List,
    Bool,
    U16,
    U32,
    U64,
    Usize,
    /// An optional `usize`; an empty value removes the key.
    OptUsize,
    F64,
}

const TOP_KEYS: &[(&str, Kind)] = &[
    ("name", Kind::Str),
    ("cluster", Kind::Str),
    ("secret", Kind::OptStr),
    ("secret_file", Kind::OptStr),
    ("listen", Kind::List),
    ("advertise", Kind::List),
    ("seeds", Kind::List),
    ("max_frame_bytes", Kind::Usize),
    ("send_queue_bytes", Kind::Usize),
    ("connect_timeout_ms", Kind::U64),
    ("handshake_timeout_ms", Kind::U64),
    ("idle_ping_ms", Kind::U64),
    ("ping_timeout_ms", Kind::U64),
    ("ping_attempts", Kind::U32),
    ("ack_retransmit_ms", Kind::U64),
    ("reconnect_min_ms", Kind::U64),
    ("reconnect_max_ms", Kind::U64),
    ("workers", Kind::OptUsize),
    ("net_threads", Kind::Usize),
    ("overlay", Kind::Str),
    ("role", Kind::Str),
    ("reach", Kind::Str),
    ("relay_ttl", Kind::U32),
    ("seed_dns", Kind::List),
    ("release_idle_ms", Kind::U64),
];

/// Keys of `NodeConfig` holding tables (not overridable as a whole).
const TABLE_KEYS: &[&str] = &["channels", "tls", "link", "hyparview"];

const HYPARVIEW_KEYS: &[(&str, Kind)] = &[
    ("active_max", Kind::Usize),
    ("active_min", Kind::Usize),
    ("passive_max", Kind::Usize),
    ("arwl", Kind::U32),
    ("prwl", Kind::U32),
    ("shuffle_ms", Kind::U64),
    ("shuffle_active", Kind::Usize),
    ("shuffle_passive", Kind::Usize),
    ("promotion_ms", Kind::U64),
];

const CHANNEL_KEYS: &[(&str, Kind)] = &[("parallelism", Kind::U16), ("monotonic", Kind::Bool)];

const TLS_KEYS: &[(&str, Kind)] = &[
    ("cert", Kind::Str),
    ("key", Kind::Str),
    ("ca", Kind::Str),
    ("require_client_cert", Kind::Bool),
    ("server_name", Kind::OptStr),
];

/// The `tls` keys without a default.
const TLS_REQUIRED: &[&str] = &["cert", "key", "ca"];

const LINK_KEYS: &[(&str, Kind)] =
    &[("one_way_delay_ms", Kind::F64), ("inflight_bytes", Kind::OptUsize), ("loss", Kind::F64)];

fn lookup(keys: &[(&str, Kind)], key: &str) -> Option<Kind> {
    keys.iter().find(|(k, _)| *k == key).map(|&(_, kind)| kind)
}

/// `TROUPE_TLS__CERT` → `tls.cert` (lower-cased, `__` → `.`).
fn dotted_key(var: &str) -> String {
    var.strip_prefix(ENV_PREFIX).unwrap_or(var).split("__").collect::<Vec<_>>().join(".").to_ascii_lowercase()
}

fn var_list(prefix: &str, keys: &[(&str, Kind)]) -> String {
    keys.iter().map(|(k, _)| format!("{ENV_PREFIX}{prefix}{}", k.to_ascii_uppercase())).collect::<Vec<_>>().join(", ")
}

/// One environment override, resolved and converted.
#[derive(Debug)]
struct Override {
    var: String,
    /// Dotted key, for messages.
    key: String,
    path: Vec<String>,
    /// `None` removes the key (empty value for an optional key).
    value: Option<toml::Value>,
}

impl Override {
    fn error(&self, message: String) -> ConfigError {
        ConfigError::Env { var: self.var.clone(), key: self.key.clone(), message }
    }

    /// Writes the value into `table`, creating intermediate tables (`channels.<name>`, `tls`, `link`) as needed.
    fn apply(&self, table: &mut toml::Table) -> Result<(), ConfigError> {
        let Some((last, parents)) = self.path.split_last() else { return Ok(()) };
        let mut current = table;
        for (depth, segment) in parents.iter().enumerate() {
            if self.value.is_none() && !current.contains_key(segment) {
                return Ok(()); // removing a key below an absent table: nothing to do
            }
            let entry = current.entry(segment.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            current = match entry {
                toml::Value::Table(inner) => inner,
                other => {
                    return Err(self.error(format!(
                        "cannot override: `{}` in the config file is not a table (it is of type {})",
                        self.path[..=depth].join("."),
                        other.type_str()
                    )))
                }
            };
        }
        match &self.value {
            Some(value) => {
                current.insert(last.clone(), value.clone());
            }
            None => {
                current.remove(last);
            }
        }
        Ok(())
    }
}

/// Maps a `TROUPE_*` variable name to its key path and kind.
fn resolve(var: &str) -> Result<(Vec<String>, Kind), ConfigError> {
    let key = dotted_key(var);
    let error = |message: String| ConfigError::Env { var: var.to_owned(), key: key.clone(), message };
    let rest = &var[ENV_PREFIX.len()..];
    let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
    let unknown_top = || {
        error(format!(
            "not a config key; known: {}, {ENV_PREFIX}CHANNELS__<NAME>__<FIELD>, {ENV_PREFIX}TLS__<FIELD>, \
             {ENV_PREFIX}LINK__<FIELD> (ignored: {})",
            var_list("", TOP_KEYS),
            RESERVED_ENV_VARS.join(", ")
        ))
    };
    if path.iter().any(String::is_empty) {
        return Err(unknown_top());
    }
    let kind = match path.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        [top] => match lookup(TOP_KEYS, top) {
            Some(kind) => kind,
            None if TABLE_KEYS.contains(top) => {
                return Err(error(format!(
                    "`{top}` is a table; set its fields with {ENV_PREFIX}{}__<FIELD>",
                    top.to_ascii_uppercase()
                )))
            }
            None => return Err(unknown_top()),
        },
        ["tls", field] => lookup(TLS_KEYS, field)
            .ok_or_else(|| error(format!("not a TLS key; known: {}", var_list("TLS__", TLS_KEYS))))?,
        ["link", field] => lookup(LINK_KEYS, field)
            .ok_or_else(|| error(format!("not a link emulation key; known: {}", var_list("LINK__", LINK_KEYS))))?,
        ["hyparview", field] => lookup(HYPARVIEW_KEYS, field)
            .ok_or_else(|| error(format!("not a HyParView key; known: {}", var_list("HYPARVIEW__", HYPARVIEW_KEYS))))?,
        ["channels", _] => {
            return Err(error(format!(
                "set a channel's fields with {}",
                var_list(&format!("CHANNELS__{}__", path[1].to_ascii_uppercase()), CHANNEL_KEYS)
            )))
        }
        ["channels", name, field] => lookup(CHANNEL_KEYS, field).ok_or_else(|| {
            error(format!(
                "not a channel key; known: {}",
                var_list(&format!("CHANNELS__{}__", name.to_ascii_uppercase()), CHANNEL_KEYS)
            ))
        })?,
        _ => return Err(unknown_top()),
    };
    Ok((path, kind))
}

fn parse_int<T: std::str::FromStr + TryInto<i64>>(raw: &str, what: &str) -> Result<toml::Value, String> {
    let value: T = raw.trim().parse().map_err(|_| format!("expected {what}, got `{raw}`"))?;
    let value: i64 = value.try_into().map_err(|_| format!("`{raw}` is too large"))?;
    Ok(toml::Value::Integer(value))
}

/// Converts an environment string to the TOML value of `kind`; `Ok(None)` removes the key.
fn convert(kind: Kind, raw: &str) -> Result<Option<toml::Value>, String> {
    let value = match kind {
        Kind::Str => toml::Value::String(raw.to_owned()),
        Kind::OptStr if raw.is_empty() => return Ok(None),
        Kind::OptStr => toml::Value::String(raw.to_owned()),
        Kind::List => toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| toml::Value::String(item.to_owned()))
                .collect(),
        ),
        Kind::Bool => match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => toml::Value::Boolean(true),
            "false" | "0" | "no" | "off" => toml::Value::Boolean(false),
            _ => return Err(format!("expected true or false, got `{raw}`")),
        },
        Kind::U16 => parse_int::<u16>(raw, "an integer in 0..=65535")?,
        Kind::U32 => parse_int::<u32>(raw, "a non-negative 32-bit integer")?,
        Kind::U64 => parse_int::<u64>(raw, "a non-negative integer")?,
        Kind::OptUsize if raw.trim().is_empty() => return Ok(None),
        Kind::Usize | Kind::OptUsize => parse_int::<usize>(raw, "a non-negative integer")?,
        Kind::F64 => match raw.trim().parse::<f64>() {
            Ok(x) if x.is_finite() => toml::Value::Float(x),
            _ => return Err(format!("expected a finite number, got `{raw}`")),
        },
    };
    Ok(Some(value))
}

/// Resolves and converts the `TROUPE_*` pairs, in variable-name order (so errors are deterministic).
fn collect_overrides(env: impl IntoIterator<Item = (String, String)>) -> Result<Vec<Override>, ConfigError> {
    let mut pairs: Vec<(String, String)> = env
        .into_iter()
        .filter(|(var, _)| var.starts_with(ENV_PREFIX) && !RESERVED_ENV_VARS.contains(&var.as_str()))
        .collect();
    pairs.sort();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut overrides = Vec::with_capacity(pairs.len());
    for (var, raw) in pairs {
        let (path, kind) = resolve(&var)?;
        let key = path.join(".");
        if let Some(previous) = seen.insert(key.clone(), var.clone()) {
            return Err(ConfigError::Env { var, key, message: format!("{previous} already sets this key") });
        }
        let value =
            convert(kind, &raw).map_err(|message| ConfigError::Env { var: var.clone(), key: key.clone(), message })?;
        overrides.push(Override { var, key, path, value });
    }
    Ok(overrides)
}

/// When the environment touched `tls`, the merged table must still have every required TLS key; say which
/// one is missing in terms of the environment rather than toml's bare "missing field".
fn check_tls_complete(table: &toml::Table, overrides: &[Override]) -> Result<(), ConfigError> {
    let Some(first) = overrides.iter().find(|ov| ov.path[0] == "tls") else { return Ok(()) };
    let Some(tls) = table.get("tls").and_then(toml::Value::as_table) else { return Ok(()) };
    match TLS_REQUIRED.iter().find(|field| !tls.contains_key(**field)) {
        Some(missing) => Err(ConfigError::Env {
            var: first.var.clone(),
            key: format!("tls.{missing}"),
            message: format!(
                "TLS needs `tls.cert`, `tls.key` and `tls.ca`; `tls.{missing}` is set neither in the config file \
                 nor by {ENV_PREFIX}TLS__{}",
                missing.to_ascii_uppercase()
            ),
        }),
        None => Ok(()),
    }
}

/// The `TROUPE_*` variables of the process environment, skipping the reserved ones. Other variables are not
/// examined (so non-UTF-8 values elsewhere do not matter).
fn process_env() -> Result<Vec<(String, String)>, ConfigError> {
    let mut pairs = Vec::new();
    for (var, value) in std::env::vars_os() {
        let Some(name) = var.to_str() else {
            let lossy = var.to_string_lossy();
            if lossy.starts_with(ENV_PREFIX) {
                return Err(ConfigError::Env {
                    key: dotted_key(&lossy),
                    var: lossy.into_owned(),
                    message: "the variable name is not valid UTF-8".to_owned(),
                });
            }
            continue;
        };
        if !name.starts_with(ENV_PREFIX) || RESERVED_ENV_VARS.contains(&name) {
            continue;
        }
        let value = value.into_string().map_err(|_| ConfigError::Env {
            var: name.to_owned(),
            key: dotted_key(name),
            message: "the value is not valid UTF-8".to_owned(),
        })?;
        pairs.push((name.to_owned(), value));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config with every optional part present, so its serialized form shows every key.
    fn everything() -> NodeConfig {
        NodeConfig {
            secret: Some("0123456789abcdef".into()),
            secret_file: Some("/s".into()),
            workers: Some(2),
            channels: [("bulk".to_owned(), ChannelConfig::default())].into(),
            tls: Some(TlsConfig {
                cert: "c".into(),
                key: "k".into(),
                ca: "a".into(),
                require_client_cert: true,
                server_name: Some("n".into()),
            }),
            link: Some(LinkEmulation { inflight_bytes: Some(1), ..LinkEmulation::default() }),
            ..NodeConfig::default()
        }
    }

    fn keys(value: &toml::Value) -> Vec<String> {
        value.as_table().unwrap().keys().cloned().collect()
    }

    fn sorted(keys: &[(&str, Kind)]) -> Vec<String> {
        let mut keys: Vec<String> = keys.iter().map(|(k, _)| (*k).to_owned()).collect();
        keys.sort();
        keys
    }

    /// The env key schema must list exactly the struct's fields.
    #[test]
    fn schema_matches_struct_fields() {
        let table = toml::Value::try_from(everything()).unwrap();
        let mut top = sorted(TOP_KEYS);
        top.extend(TABLE_KEYS.iter().map(|k| (*k).to_owned()));
        top.sort();
        assert_eq!(keys(&table), top);
        assert_eq!(keys(&table["tls"]), sorted(TLS_KEYS));
        assert_eq!(keys(&table["link"]), sorted(LINK_KEYS));
        assert_eq!(keys(&table["hyparview"]), sorted(HYPARVIEW_KEYS));
        assert_eq!(keys(&table["channels"]["bulk"]), sorted(CHANNEL_KEYS));
    }

    /// Each kind's conversion of a plausible value deserializes into the struct.
    #[test]
    fn every_key_is_settable_from_env() {
        let sample = |kind: Kind| match kind {
            Kind::Str | Kind::OptStr => "x",
            Kind::List => "127.0.0.1:1",
            Kind::Bool => "false",
            Kind::F64 => "0.5",
            _ => "4096",
        };
        let groups: [(&str, &[(&str, Kind)]); 5] = [
            ("", TOP_KEYS),
            ("TLS__", TLS_KEYS),
            ("LINK__", LINK_KEYS),
            ("CHANNELS__BULK__", CHANNEL_KEYS),
            ("HYPARVIEW__", HYPARVIEW_KEYS),
        ];
        for (prefix, keys) in groups {
            for (key, kind) in keys {
                let value = match *key {
                    "overlay" => "hyparview",
                    "role" => "client",
                    "reach" => "relay",
                    _ => sample(*kind),
                };
                let mut env = vec![(format!("TROUPE_{prefix}{}", key.to_ascii_uppercase()), value.to_owned())];
                if prefix == "TLS__" {
                    for field in TLS_REQUIRED.iter().filter(|f| *f != key) {
                        env.push((format!("TROUPE_TLS__{}", field.to_ascii_uppercase()), "p".to_owned()));
                    }
                }
                let overrides = collect_overrides(env).unwrap();
                let mut table = toml::Table::new();
                for ov in &overrides {
                    ov.apply(&mut table).unwrap();
                }
                let result: Result<NodeConfig, _> = table.try_into();
                assert!(result.is_ok(), "{prefix}{key}: {result:?}");
            }
        }
    }

    #[test]
    fn conversions() {
        assert_eq!(convert(Kind::U16, " 16 "), Ok(Some(toml::Value::Integer(16))));
        assert!(convert(Kind::U16, "65536").is_err());
        assert!(convert(Kind::U64, "-1").is_err());
        assert!(convert(Kind::Usize, "18446744073709551615").unwrap_err().contains("too large"));
        assert_eq!(convert(Kind::OptUsize, ""), Ok(None));
        assert_eq!(convert(Kind::OptStr, ""), Ok(None));
        assert_eq!(convert(Kind::Str, ""), Ok(Some(toml::Value::String(String::new()))));
        assert_eq!(convert(Kind::Bool, "Yes"), Ok(Some(toml::Value::Boolean(true))));
        assert!(convert(Kind::Bool, "maybe").is_err());
        assert!(convert(Kind::F64, "NaN").is_err());
        assert_eq!(convert(Kind::F64, "10"), Ok(Some(toml::Value::Float(10.0))));
        assert_eq!(convert(Kind::List, ""), Ok(Some(toml::Value::Array(vec![]))));
        assert_eq!(
            convert(Kind::List, "a, b,,"),
            Ok(Some(toml::Value::Array(vec![toml::Value::String("a".into()), toml::Value::String("b".into())])))
        );
    }

    #[test]
    fn host_port_rules() {
        for ok in ["a:1", "10.0.0.1:7000", "[::1]:7000", "node-1.example.com:65535"] {
            assert!(check_host_port("seeds", ok).is_ok(), "{ok}");
        }
        for bad in ["a", "a:0", ":1", "a:x", "::1:7000", "[::1:7000", "a b:1", "a:65536"] {
            assert!(check_host_port("seeds", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn debug_redacts_secret() {
        let text = format!("{:?}", everything());
        assert!(!text.contains("0123456789abcdef"), "{text}");
        assert!(text.contains("<redacted>"));
    }
}
