//! Plumtree's knobs, with Partisan-like defaults, and the errors it reports.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Plumtree settings. Every queue, cache and list has a limit here.
///
/// Time-related defaults follow Partisan (lazy tick 1 s, anti-entropy every 10 s); the rest are
/// sized for clusters of a few thousand nodes and payloads up to 1 MiB.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlumtreeConfig {
    /// How often the driver feeds [`super::PlumtreeInput::Tick`]; also the resolution of the graft
    /// timers. Default 250 ms.
    pub tick_interval: Duration,
    /// How often queued `IHave` announcements are flushed to lazy peers. Default 1 s.
    pub lazy_tick: Duration,
    /// How long to wait after the first `IHave` of an unknown message for the eager copy before
    /// sending a `Graft` (the paper's timeout 1). Default 1 s.
    pub graft_timeout: Duration,
    /// How long to wait for a grafted message before grafting the next announcer (the paper's
    /// timeout 2). Default 500 ms.
    pub graft_retry_timeout: Duration,
    /// Most grafts sent for one missing message (announcers are tried in turn, so a lost answer
    /// is retried). Default 4.
    pub max_graft_attempts: u32,
    /// How often to run an anti-entropy exchange with one random neighbour. Default 10 s.
    pub anti_entropy_interval: Duration,
    /// Messages younger than this are left out of anti-entropy digests: they are still in
    /// flight along the tree or being grafted, and repairing them too would only race the tree.
    /// Default 5 s.
    pub anti_entropy_min_age: Duration,
    /// The hop-count optimisation: when a lazy peer announces a message we got over an eager
    /// path at least this many hops longer than the path through the announcer, graft the
    /// announcer and prune the eager sender. `None` disables it. Default `None`: with many origins
    /// sharing one tree, concurrent swaps by several nodes can cut the tree into pieces (see the
    /// crate's plumtree tests for a measurement).
    pub optimization_threshold: Option<u32>,
    /// Largest payload accepted for broadcast or forwarding, in bytes. Default 1 MiB.
    pub max_payload: usize,
    /// The oldest a message may be (see `age_ms` on [`super::PlumtreeMessage::Gossip`]) and still
    /// be delivered, forwarded, cached or repaired; also how long the seen-set keeps a gap open.
    /// A node that misses a message for longer than this never gets it. Default 300 s.
    pub message_ttl: Duration,
    /// How long the seen-set remembers an origin it has heard nothing from (its high-water mark).
    /// Must exceed `message_ttl`. Default 900 s.
    pub origin_idle_ttl: Duration,
    /// Most messages kept in the cache (for grafts and anti-entropy). Default 4096.
    pub cache_max_messages: usize,
    /// Most payload bytes kept in the cache. Default 64 MiB.
    pub cache_max_bytes: usize,
    /// Most origins the seen-set tracks; beyond it the least recently active origin is forgotten.
    /// Default 16384.
    pub max_origins: usize,
    /// Most open intervals (runs of seen ids above an origin's high-water mark) over all origins.
    /// Default 65536.
    pub max_seen_intervals: usize,
    /// Most open intervals per origin. Default 256.
    pub max_intervals_per_origin: usize,
    /// Most neighbours tracked; further `NeighborUp`s are ignored and counted. Default 4096.
    pub max_neighbors: usize,
    /// Most announcements in one `IHave`, ids in one `Graft` or `Request`, and entries of an
    /// incoming list that are looked at. Default 512.
    pub max_batch: usize,
    /// Most queued announcements per lazy peer; the oldest are dropped beyond it. Default 4096.
    pub max_lazy_queue: usize,
    /// Most unknown messages waiting for a graft; further `IHave`s are ignored. Default 4096.
    pub max_missing: usize,
    /// Most announcers remembered per missing message. Default 8.
    pub max_announcers: usize,
    /// Most id runs in an anti-entropy digest or reply. Default 256.
    pub max_digest_ranges: usize,
    /// Most ids examined when comparing a received digest with the seen-set. Default 8192.
    pub max_digest_ids: usize,
    /// Most messages sent in answer to one digest reply or request. Default 256.
    pub max_repair_messages: usize,
    /// Most payload bytes sent in answer to one digest reply or request. Default 4 MiB.
    pub max_repair_bytes: usize,
}

impl Default for PlumtreeConfig {
    fn default() -> Self {
        PlumtreeConfig {
            tick_interval: Duration::from_millis(250),
            lazy_tick: Duration::from_secs(1),
            graft_timeout: Duration::from_secs(1),
            graft_retry_timeout: Duration::from_millis(500),
            max_graft_attempts: 4,
            anti_entropy_interval: Duration::from_secs(10),
            anti_entropy_min_age: Duration::from_secs(5),
            optimization_threshold: None,
            max_payload: 1 << 20,
            message_ttl: Duration::from_secs(300),
            origin_idle_ttl: Duration::from_secs(900),
            cache_max_messages: 4096,
            cache_max_bytes: 64 << 20,
            max_origins: 16384,
            max_seen_intervals: 65536,
            max_intervals_per_origin: 256,
            max_neighbors: 4096,
            max_batch: 512,
            max_lazy_queue: 4096,
            max_missing: 4096,
            max_announcers: 8,
            max_digest_ranges: 256,
            max_digest_ids: 8192,
            max_repair_messages: 256,
            max_repair_bytes: 4 << 20,
        }
    }
}

/// Why Plumtree refused something.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlumtreeError {
    /// A broadcast payload is over [`PlumtreeConfig::max_payload`].
    #[error("payload of {size} bytes is over the {max}-byte limit")]
    PayloadTooLarge {
        /// The payload's size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A configuration value is out of range.
    #[error("invalid plumtree config: {0}")]
    InvalidConfig(&'static str),
}

impl PlumtreeConfig {
    /// Checks that the settings make sense together.
    pub fn validate(&self) -> Result<(), PlumtreeError> {
        let nonzero_durations = [
            (self.tick_interval, "tick_interval must be > 0"),
            (self.lazy_tick, "lazy_tick must be > 0"),
            (self.graft_timeout, "graft_timeout must be > 0"),
            (self.graft_retry_timeout, "graft_retry_timeout must be > 0"),
            (self.anti_entropy_interval, "anti_entropy_interval must be > 0"),
            (self.message_ttl, "message_ttl must be > 0"),
        ];
        for (d, why) in nonzero_durations {
            if d.is_zero() {
                return Err(PlumtreeError::InvalidConfig(why));
            }
        }
        if self.origin_idle_ttl <= self.message_ttl {
            return Err(PlumtreeError::InvalidConfig(
                "origin_idle_ttl must exceed message_ttl, or old messages could be delivered twice",
            ));
        }
        let nonzero_counts = [
            (self.cache_max_messages, "cache_max_messages must be > 0"),
            (self.max_origins, "max_origins must be > 0"),
            (self.max_seen_intervals, "max_seen_intervals must be > 0"),
            (self.max_intervals_per_origin, "max_intervals_per_origin must be > 0"),
            (self.max_batch, "max_batch must be > 0"),
            (self.max_lazy_queue, "max_lazy_queue must be > 0"),
            (self.max_announcers, "max_announcers must be > 0"),
            (self.max_digest_ranges, "max_digest_ranges must be > 0"),
            (self.max_graft_attempts as usize, "max_graft_attempts must be > 0"),
        ];
        for (n, why) in nonzero_counts {
            if n == 0 {
                return Err(PlumtreeError::InvalidConfig(why));
            }
        }
        Ok(())
    }

    /// A copy with every invalid value replaced by its default (what [`super::Plumtree::new`]
    /// runs on, since it cannot fail).
    pub fn sanitized(&self) -> PlumtreeConfig {
        let d = PlumtreeConfig::default();
        let mut c = self.clone();
        let fix_d = |v: &mut Duration, dv: Duration| {
            if v.is_zero() {
                *v = dv;
            }
        };
        fix_d(&mut c.tick_interval, d.tick_interval);
        fix_d(&mut c.lazy_tick, d.lazy_tick);
        fix_d(&mut c.graft_timeout, d.graft_timeout);
        fix_d(&mut c.graft_retry_timeout, d.graft_retry_timeout);
        fix_d(&mut c.anti_entropy_interval, d.anti_entropy_interval);
        fix_d(&mut c.message_ttl, d.message_ttl);
        if c.origin_idle_ttl <= c.message_ttl {
            c.origin_idle_ttl = c.message_ttl.saturating_mul(3);
        }
        let fix_n = |v: &mut usize, dv: usize| {
            if *v == 0 {
                *v = dv;
            }
        };
        fix_n(&mut c.cache_max_messages, d.cache_max_messages);
        fix_n(&mut c.max_origins, d.max_origins);
        fix_n(&mut c.max_seen_intervals, d.max_seen_intervals);
        fix_n(&mut c.max_intervals_per_origin, d.max_intervals_per_origin);
        fix_n(&mut c.max_batch, d.max_batch);
        fix_n(&mut c.max_lazy_queue, d.max_lazy_queue);
        fix_n(&mut c.max_announcers, d.max_announcers);
        fix_n(&mut c.max_digest_ranges, d.max_digest_ranges);
        if c.max_graft_attempts == 0 {
            c.max_graft_attempts = d.max_graft_attempts;
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(PlumtreeConfig::default().validate(), Ok(()));
    }

    #[test]
    fn bad_values_are_reported_and_sanitized() {
        let c = PlumtreeConfig {
            tick_interval: Duration::ZERO,
            origin_idle_ttl: Duration::from_secs(1),
            max_batch: 0,
            ..PlumtreeConfig::default()
        };
        assert!(matches!(c.validate(), Err(PlumtreeError::InvalidConfig(_))));
        let s = c.sanitized();
        assert_eq!(s.validate(), Ok(()));
        assert_eq!(s.tick_interval, PlumtreeConfig::default().tick_interval);
        assert!(s.origin_idle_ttl > s.message_ttl);
        assert_eq!(s.max_batch, PlumtreeConfig::default().max_batch);
    }
}
