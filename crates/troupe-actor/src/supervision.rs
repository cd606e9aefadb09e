//! Supervision strategies: which children restart when one fails, how often, and how soon.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::id::ActorId;

/// Which children are restarted when one fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrategyKind {
    /// Only the failed child.
    OneForOne,
    /// All children.
    OneForAll,
    /// The failed child and every child started after it.
    RestForOne,
}

/// Delay before a restart: `min · 2^(n−1)`, capped at `max`, for the n-th restart inside the
/// intensity window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay of the first restart.
    pub min: Duration,
    /// Largest delay.
    pub max: Duration,
}

impl Backoff {
    /// Restart at once (Erlang's behaviour; the default).
    pub const NONE: Backoff = Backoff { min: Duration::ZERO, max: Duration::ZERO };

    /// Exponential backoff from `min` to `max`.
    pub fn exponential(min: Duration, max: Duration) -> Self {
        Backoff { min, max: max.max(min) }
    }

    /// The delay for the `n`-th recent restart (n ≥ 1).
    pub fn delay(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX);
        self.min.saturating_mul(factor).min(self.max)
    }
}

/// How a parent supervises its children.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupervisionStrategy {
    /// Which children restart.
    pub kind: StrategyKind,
    /// At most this many restarts within `within`; one more and the parent gives up, stops all
    /// its children and fails itself with `ExitReason::RestartLimit` (escalation). The node's
    /// root guardian, which supervises the top-level actors and has nobody to give up to, counts
    /// each top-level actor's restarts on its own and stops for good only the one past its limit.
    pub max_restarts: u32,
    /// The intensity window.
    pub within: Duration,
    /// Delay before each restart.
    pub backoff: Backoff,
}

impl Default for SupervisionStrategy {
    fn default() -> Self {
        SupervisionStrategy::one_for_one()
    }
}

impl SupervisionStrategy {
    /// One-for-one, at most 10 restarts in 10 s, no backoff.
    pub fn one_for_one() -> Self {
        SupervisionStrategy {
            kind: StrategyKind::OneForOne,
            max_restarts: 10,
            within: Duration::from_secs(10),
            backoff: Backoff::NONE,
        }
    }

    /// One-for-all with the default limits.
    pub fn one_for_all() -> Self {
        SupervisionStrategy { kind: StrategyKind::OneForAll, ..Self::one_for_one() }
    }

    /// Rest-for-one with the default limits.
    pub fn rest_for_one() -> Self {
        SupervisionStrategy { kind: StrategyKind::RestForOne, ..Self::one_for_one() }
    }

    /// Sets the restart intensity.
    pub fn intensity(mut self, max_restarts: u32, within: Duration) -> Self {
        self.max_restarts = max_restarts;
        self.within = within;
        self
    }

    /// Sets the backoff.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }
}

/// Restart history of one parent, for the intensity limit.
#[derive(Debug, Default)]
pub(crate) struct RestartHistory {
    recent: VecDeque<Instant>,
    /// The root guardian's: a window per top-level actor (it has nobody to give up to, so one
    /// actor's failures must not use up another's restarts).
    per_child: HashMap<ActorId, VecDeque<Instant>>,
}

impl RestartHistory {
    /// Records a restart at `now`; returns the number of restarts in the window (including this
    /// one), or `None` when that exceeds the strategy's limit.
    pub(crate) fn record(&mut self, strategy: &SupervisionStrategy, now: Instant) -> Option<u32> {
        record_in(&mut self.recent, strategy, now)
    }

    /// [`record`](Self::record) in a window of `child`'s own.
    pub(crate) fn record_child(&mut self, child: ActorId, strategy: &SupervisionStrategy, now: Instant) -> Option<u32> {
        record_in(self.per_child.entry(child).or_default(), strategy, now)
    }

    /// Forgets `child`'s own window (it terminated).
    pub(crate) fn forget_child(&mut self, child: ActorId) {
        self.per_child.remove(&child);
    }
}

fn record_in(recent: &mut VecDeque<Instant>, strategy: &SupervisionStrategy, now: Instant) -> Option<u32> {
    while recent.front().is_some_and(|t| now.duration_since(*t) > strategy.within) {
        recent.pop_front();
    }
    recent.push_back(now);
    let n = recent.len() as u32;
    (n <= strategy.max_restarts).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let b = Backoff::exponential(Duration::from_millis(10), Duration::from_millis(50));
        assert_eq!(b.delay(1), Duration::from_millis(10));
        assert_eq!(b.delay(2), Duration::from_millis(20));
        assert_eq!(b.delay(3), Duration::from_millis(40));
        assert_eq!(b.delay(4), Duration::from_millis(50));
        assert_eq!(b.delay(40), Duration::from_millis(50));
        assert_eq!(Backoff::NONE.delay(3), Duration::ZERO);
    }

    #[test]
    fn intensity_window_slides() {
        let s = SupervisionStrategy::one_for_one().intensity(2, Duration::from_secs(1));
        let mut h = RestartHistory::default();
        let t0 = Instant::now();
        assert_eq!(h.record(&s, t0), Some(1));
        assert_eq!(h.record(&s, t0 + Duration::from_millis(10)), Some(2));
        assert_eq!(h.record(&s, t0 + Duration::from_millis(20)), None);
        let mut h = RestartHistory::default();
        assert_eq!(h.record(&s, t0), Some(1));
        assert_eq!(h.record(&s, t0 + Duration::from_millis(600)), Some(2));
        assert_eq!(h.record(&s, t0 + Duration::from_millis(1500)), Some(2));
        assert_eq!(h.record(&s, t0 + Duration::from_millis(3000)), Some(1));
    }
}
