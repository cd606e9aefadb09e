//! The phi-accrual failure detector (Hayashibara, Défago, Yared, Katayama, SRDS 2004), in the
//! form Akka and Cassandra use.
//!
//! Instead of a yes/no verdict after a fixed timeout, the detector keeps the recent history of
//! heartbeat inter-arrival times of each peer and answers with a *suspicion level*
//! `phi = -log10(P(a heartbeat arrives later than now))`, assuming inter-arrival times are
//! normally distributed with the history's mean and standard deviation. `phi = 1` means about a
//! 10% chance that suspecting the peer is a mistake, `phi = 8` about 10⁻⁸ (under the model).
//! Applications pick a threshold; the detector adapts to each peer's network by itself.
//!
//! Like Akka, the normal tail is approximated with a logistic function (error below 0.0002), the
//! mean is padded by an *acceptable heartbeat pause* (GC pauses, bursts of load) and the standard
//! deviation has a floor so a very regular peer is not suspected after a tiny delay. A new peer's
//! history is seeded with two intervals around `first_heartbeat_estimate` so the first verdicts are
//! sane.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// Intervals longer than this are recorded as this (keeps the exact integer sums from
/// overflowing; a peer silent for an hour is suspected long before).
const MAX_INTERVAL_MICROS: u64 = 3_600_000_000;

/// Settings of a [`PhiAccrualDetector`].
#[derive(Clone, Debug, PartialEq)]
pub struct PhiAccrualConfig {
    /// Suspect a peer when its phi reaches this (Akka and Cassandra use 8; lower detects faster
    /// and errs more often).
    pub threshold: f64,
    /// How many recent inter-arrival times are kept per peer (the window; memory is 8 bytes per
    /// sample).
    pub max_sample_size: usize,
    /// Floor of the standard deviation used in the phi computation.
    pub min_std_deviation: Duration,
    /// Extra silence tolerated on top of the mean interval before phi starts to climb.
    pub acceptable_heartbeat_pause: Duration,
    /// The interval assumed for a peer before any has been measured (should be the heartbeat
    /// interval the peers use).
    pub first_heartbeat_estimate: Duration,
}

impl Default for PhiAccrualConfig {
    /// Akka's cluster defaults, with a smaller window: threshold 8, 200 samples, 100 ms minimum
    /// standard deviation, 3 s acceptable pause, 1 s first estimate.
    fn default() -> Self {
        PhiAccrualConfig {
            threshold: 8.0,
            max_sample_size: 200,
            min_std_deviation: Duration::from_millis(100),
            acceptable_heartbeat_pause: Duration::from_secs(3),
            first_heartbeat_estimate: Duration::from_secs(1),
        }
    }
}

/// The inter-arrival history of one peer: a bounded window with exact running sums.
#[derive(Clone, Debug)]
pub struct HeartbeatHistory {
    intervals: VecDeque<u64>,
    sum: u128,
    sum_sq: u128,
    max: usize,
    last: Duration,
}

impl HeartbeatHistory {
    /// A history whose last heartbeat arrived at `now`, seeded from the config's first estimate.
    pub fn new(config: &PhiAccrualConfig, now: Duration) -> Self {
        let max = config.max_sample_size.max(2);
        let mut h =
            HeartbeatHistory { intervals: VecDeque::with_capacity(max.min(64)), sum: 0, sum_sq: 0, max, last: now };
        let mean = micros(config.first_heartbeat_estimate);
        let dev = mean / 4;
        h.record(mean.saturating_sub(dev));
        h.record(mean.saturating_add(dev));
        h
    }

    fn record(&mut self, interval: u64) {
        let v = interval.min(MAX_INTERVAL_MICROS);
        if self.intervals.len() == self.max {
            if let Some(old) = self.intervals.pop_front() {
                self.sum -= u128::from(old);
                self.sum_sq -= u128::from(old) * u128::from(old);
            }
        }
        self.intervals.push_back(v);
        self.sum += u128::from(v);
        self.sum_sq += u128::from(v) * u128::from(v);
    }

    /// Records a heartbeat arriving at `now`; one arriving before the last one is ignored.
    pub fn heartbeat(&mut self, now: Duration) {
        if now < self.last {
            return;
        }
        let interval = micros(now - self.last);
        self.record(interval);
        self.last = now;
    }

    /// When the last heartbeat arrived.
    pub fn last(&self) -> Duration {
        self.last
    }

    /// Number of intervals in the window.
    pub fn len(&self) -> usize {
        self.intervals.len()
    }

    /// Whether the window is empty (never: it starts seeded).
    pub fn is_empty(&self) -> bool {
        self.intervals.is_empty()
    }

    /// Mean interval, in microseconds.
    pub fn mean_micros(&self) -> f64 {
        let n = self.intervals.len().max(1) as f64;
        self.sum as f64 / n
    }

    /// Standard deviation of the intervals, in microseconds.
    pub fn std_dev_micros(&self) -> f64 {
        let n = self.intervals.len() as u128;
        if n == 0 {
            return 0.0;
        }
        // n² · variance = n · Σx² − (Σx)², exact in integers (never negative).
        let scaled = (n * self.sum_sq).saturating_sub(self.sum * self.sum);
        (scaled as f64).sqrt() / n as f64
    }

    /// The suspicion level at `now` under `config`.
    pub fn phi(&self, config: &PhiAccrualConfig, now: Duration) -> f64 {
        let elapsed = micros(now.saturating_sub(self.last)) as f64;
        let mean = self.mean_micros() + micros(config.acceptable_heartbeat_pause) as f64;
        let std = self.std_dev_micros().max(micros(config.min_std_deviation) as f64).max(1.0);
        phi_of(elapsed, mean, std)
    }
}

/// `-log10(1 - F(elapsed))` for a normal distribution, with Akka's logistic approximation of the
/// CDF. Written as `log10(1 + e^t)` with a stable softplus, it is finite and non-decreasing in
/// `elapsed`.
fn phi_of(elapsed: f64, mean: f64, std: f64) -> f64 {
    let y = (elapsed - mean) / std;
    let t = y * (1.5976 + 0.070566 * y * y);
    let softplus = t.max(0.0) + (-t.abs()).exp().ln_1p();
    softplus / std::f64::consts::LN_10
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// A phi-accrual failure detector for many peers.
///
/// The caller bounds the number of peers (it monitors the members it is connected to and calls
/// [`remove`](Self::remove) when one goes); each peer costs at most `max_sample_size` samples.
#[derive(Clone, Debug)]
pub struct PhiAccrualDetector<K> {
    config: PhiAccrualConfig,
    peers: BTreeMap<K, HeartbeatHistory>,
}

impl<K: Ord + Clone> PhiAccrualDetector<K> {
    /// A detector with no peers.
    pub fn new(config: PhiAccrualConfig) -> Self {
        PhiAccrualDetector { config, peers: BTreeMap::new() }
    }

    /// The settings.
    pub fn config(&self) -> &PhiAccrualConfig {
        &self.config
    }

    /// Records a heartbeat from `peer` arriving at `now` (starts monitoring it if new).
    pub fn heartbeat(&mut self, peer: &K, now: Duration) {
        match self.peers.get_mut(peer) {
            Some(h) => h.heartbeat(now),
            None => {
                self.peers.insert(peer.clone(), HeartbeatHistory::new(&self.config, now));
            }
        }
    }

    /// The suspicion level of `peer` at `now`; 0 for a peer not monitored.
    pub fn phi(&self, peer: &K, now: Duration) -> f64 {
        self.peers.get(peer).map_or(0.0, |h| h.phi(&self.config, now))
    }

    /// Whether `peer` is below the suspicion threshold at `now` (a peer not monitored is).
    pub fn is_available(&self, peer: &K, now: Duration) -> bool {
        self.phi(peer, now) < self.config.threshold
    }

    /// Whether `peer` is monitored.
    pub fn is_monitoring(&self, peer: &K) -> bool {
        self.peers.contains_key(peer)
    }

    /// Stops monitoring `peer`.
    pub fn remove(&mut self, peer: &K) {
        self.peers.remove(peer);
    }

    /// The history of `peer`.
    pub fn history(&self, peer: &K) -> Option<&HeartbeatHistory> {
        self.peers.get(peer)
    }

    /// Number of monitored peers.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether no peer is monitored.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn unknown_peer_is_available_with_phi_zero() {
        let d = PhiAccrualDetector::<u32>::new(PhiAccrualConfig::default());
        assert_eq!(d.phi(&1, ms(10_000)), 0.0);
        assert!(d.is_available(&1, ms(10_000)));
    }

    #[test]
    fn phi_matches_the_normal_tail() {
        // At one standard deviation past the mean the tail is ~0.1587, phi ~0.80.
        let p = phi_of(1_100.0, 1_000.0, 100.0);
        assert!((p - (-(0.1587f64).log10())).abs() < 0.01, "phi {p}");
        // At the mean the tail is one half.
        let p = phi_of(1_000.0, 1_000.0, 100.0);
        assert!((p - 2f64.log10()).abs() < 1e-9, "phi {p}");
        // Far in the tail phi stays finite and large.
        let p = phi_of(1e9, 1_000.0, 100.0);
        assert!(p.is_finite() && p > 1e6, "phi {p}");
    }

    #[test]
    fn steady_heartbeats_then_silence() {
        let mut d = PhiAccrualDetector::new(PhiAccrualConfig::default());
        for i in 0..50 {
            d.heartbeat(&7u8, ms(1_000 * i));
        }
        let last = ms(49_000);
        assert!(d.phi(&7, last + ms(1_000)) < 0.5);
        assert!(d.is_available(&7, last + ms(3_500)));
        assert!(!d.is_available(&7, last + ms(6_000)), "phi {}", d.phi(&7, last + ms(6_000)));
    }

    #[test]
    fn window_is_bounded_and_sums_stay_exact() {
        let config = PhiAccrualConfig { max_sample_size: 10, ..PhiAccrualConfig::default() };
        let mut h = HeartbeatHistory::new(&config, Duration::ZERO);
        for i in 1..=1_000u64 {
            h.heartbeat(ms(500 * i));
        }
        assert_eq!(h.len(), 10);
        assert!((h.mean_micros() - 500_000.0).abs() < 1e-6);
        assert!(h.std_dev_micros().abs() < 1e-6);
    }

    #[test]
    fn out_of_order_heartbeat_is_ignored() {
        let mut h = HeartbeatHistory::new(&PhiAccrualConfig::default(), ms(5_000));
        let before = h.len();
        h.heartbeat(ms(4_000));
        assert_eq!(h.len(), before);
        assert_eq!(h.last(), ms(5_000));
    }

    #[test]
    fn remove_forgets_the_peer() {
        let mut d = PhiAccrualDetector::new(PhiAccrualConfig::default());
        d.heartbeat(&1u8, ms(0));
        assert!(d.is_monitoring(&1));
        d.remove(&1);
        assert!(!d.is_monitoring(&1));
        assert!(d.is_empty());
    }
}
