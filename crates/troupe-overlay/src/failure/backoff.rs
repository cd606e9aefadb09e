//! Capped exponential backoff with jitter for reconnection attempts.

use std::time::Duration;

use rand::Rng;

/// Settings of a [`Backoff`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackoffConfig {
    /// Delay after the first failure.
    pub initial: Duration,
    /// The delay doubles per consecutive failure up to this cap.
    pub max: Duration,
    /// Give up after this many consecutive failures (`None`: never give up, keep trying every
    /// `max` at most).
    pub max_attempts: Option<u32>,
}

impl Default for BackoffConfig {
    /// 500 ms doubling to 30 s, never giving up.
    fn default() -> Self {
        BackoffConfig { initial: Duration::from_millis(500), max: Duration::from_secs(30), max_attempts: None }
    }
}

/// The reconnection state of one peer: consecutive failures and when the next attempt is due.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Backoff {
    failures: u32,
    next_attempt: Duration,
}

impl Backoff {
    /// A backoff with no failure: an attempt is due now.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether an attempt is due at `now` (and the attempts are not exhausted).
    pub fn ready(&self, now: Duration, config: &BackoffConfig) -> bool {
        now >= self.next_attempt && !self.exhausted(config)
    }

    /// Records a failed attempt at `now`; returns the delay before the next one, drawn uniformly
    /// from the upper half of the capped exponential delay.
    pub fn failed(&mut self, now: Duration, config: &BackoffConfig, rng: &mut impl Rng) -> Duration {
        let exp = config.initial.saturating_mul(1u32 << self.failures.min(20));
        let cap = exp.min(config.max);
        let delay = cap.mul_f64(rng.random_range(0.5..=1.0));
        self.failures = self.failures.saturating_add(1);
        self.next_attempt = now.saturating_add(delay);
        delay
    }

    /// Records a success: the next attempt (after a later failure) starts from scratch.
    pub fn succeeded(&mut self) {
        *self = Backoff::default();
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// When the next attempt is due.
    pub fn next_attempt(&self) -> Duration {
        self.next_attempt
    }

    /// Whether `config.max_attempts` consecutive attempts failed.
    pub fn exhausted(&self, config: &BackoffConfig) -> bool {
        config.max_attempts.is_some_and(|m| self.failures >= m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn delays_grow_then_cap_and_attempts_are_bounded() {
        let config =
            BackoffConfig { initial: Duration::from_millis(100), max: Duration::from_secs(1), max_attempts: Some(8) };
        let mut rng = StdRng::seed_from_u64(3);
        let mut b = Backoff::new();
        assert!(b.ready(Duration::ZERO, &config));
        let mut now = Duration::ZERO;
        let mut delays = Vec::new();
        for _ in 0..8 {
            assert!(b.ready(now, &config));
            let d = b.failed(now, &config, &mut rng);
            assert!(!b.ready(now, &config) || d.is_zero());
            delays.push(d);
            now += d;
        }
        assert!(delays[0] >= Duration::from_millis(50) && delays[0] <= Duration::from_millis(100));
        assert!(delays.iter().all(|d| *d <= config.max));
        assert!(delays[7] >= Duration::from_millis(500), "capped delays stay in the upper half");
        assert!(b.exhausted(&config));
        assert!(!b.ready(now + Duration::from_secs(100), &config));
        b.succeeded();
        assert_eq!(b.failures(), 0);
        assert!(b.ready(now, &config));
    }
}
