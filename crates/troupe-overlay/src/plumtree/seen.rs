//! The bounded set of message ids a node has seen.
//!
//! Per origin it keeps a high-water mark `floor` (every sequence number `<= floor` counts as
//! seen) and the runs of seen numbers above it as intervals `[start, end]`. Sequence numbers of
//! one origin grow with time, so in steady state every origin is just a floor; intervals exist
//! only while some earlier message is missing (a gap), and a node that joins late holds one
//! interval per origin until anti-entropy fills the gap or the gap expires.
//!
//! Memory is bounded three ways, each by moving a floor up ("declaring a gap seen"), which can
//! only lose a late message, never deliver one twice:
//! - age: when an interval of an origin was opened more than `message_ttl` ago, every message
//!   in the gaps below it was broadcast even earlier, so it is older than `message_ttl` and
//!   would be refused anyway; the floor moves to the interval's end;
//! - count: at most `max_intervals_per_origin` per origin and `max_seen_intervals` overall; an
//!   insertion over either limit closes the lowest intervals of the origin being inserted into;
//! - origins: an origin with no open interval and no activity for `origin_idle_ttl` is
//!   forgotten; over `max_origins`, the least recently active origin is forgotten.
//!
//! Forgetting an origin is the one place a duplicate could come from: a copy of one of its old
//! messages arriving afterwards with a measured age under `message_ttl`. Ages only miss time on
//! the wire, so that needs a copy to sit in network buffers for `origin_idle_ttl - message_ttl`
//! (10 minutes by default), or more than `max_origins` origins active at once.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::member::PeerId;

use super::message::MessageId;

/// Limits of a [`SeenSet`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct SeenLimits {
    pub max_origins: usize,
    pub max_intervals: usize,
    pub max_intervals_per_origin: usize,
    pub ttl: Duration,
    pub origin_idle_ttl: Duration,
}

#[derive(Clone, Copy, Debug)]
struct Interval {
    end: u64,
    /// When the interval's lowest member was first seen.
    since: Duration,
}

#[derive(Debug, Default)]
struct Origin {
    floor: u64,
    /// start -> interval; disjoint, non-adjacent, all starting above `floor + 1`.
    intervals: BTreeMap<u64, Interval>,
    last_active: Duration,
}

impl Origin {
    fn contains(&self, seq: u64) -> bool {
        seq <= self.floor || self.intervals.range(..=seq).next_back().is_some_and(|(_, iv)| iv.end >= seq)
    }

    /// Closes the lowest interval: the gap below it is abandoned. Returns whether one existed.
    fn close_lowest(&mut self) -> bool {
        match self.intervals.pop_first() {
            Some((_, iv)) => {
                self.floor = self.floor.max(iv.end);
                true
            }
            None => false,
        }
    }
}

/// The seen-set. See the module documentation.
#[derive(Debug)]
pub(crate) struct SeenSet {
    origins: HashMap<PeerId, Origin>,
    intervals: usize,
    limits: SeenLimits,
    /// Never forgotten (our own origin).
    pinned: PeerId,
    /// Gaps abandoned because of the count limits (for stats).
    pub(crate) forced_closes: u64,
    /// Origins forgotten because of `max_origins` (for stats).
    pub(crate) forced_evictions: u64,
}

impl SeenSet {
    pub(crate) fn new(pinned: PeerId, limits: SeenLimits) -> Self {
        SeenSet { origins: HashMap::new(), intervals: 0, limits, pinned, forced_closes: 0, forced_evictions: 0 }
    }

    /// Whether `id` counts as seen.
    pub(crate) fn contains(&self, id: &MessageId) -> bool {
        // Sequence number 0 is never used: treat it as seen so it is never delivered.
        id.seq == 0 || self.origins.get(&id.origin).is_some_and(|o| o.contains(id.seq))
    }

    /// Marks `id` seen. Returns `false` if it already was.
    pub(crate) fn insert(&mut self, id: MessageId, now: Duration) -> bool {
        if self.contains(&id) {
            return false;
        }
        if !self.origins.contains_key(&id.origin) && self.origins.len() >= self.limits.max_origins {
            self.evict_least_recent();
        }
        let origin = self.origins.entry(id.origin).or_default();
        origin.last_active = origin.last_active.max(now);
        let seq = id.seq;
        let mut added = 1usize;
        // Merge with an interval ending right below, or start a new one.
        let lower_key = origin
            .intervals
            .range(..seq)
            .next_back()
            .filter(|(_, iv)| iv.end.checked_add(1) == Some(seq))
            .map(|(k, _)| *k);
        let start = match lower_key {
            Some(k) => {
                if let Some(iv) = origin.intervals.get_mut(&k) {
                    iv.end = seq;
                }
                added = 0;
                k
            }
            None => {
                origin.intervals.insert(seq, Interval { end: seq, since: now });
                seq
            }
        };
        // Merge with an interval starting right above.
        if let Some(upper) = seq.checked_add(1).and_then(|s| origin.intervals.remove(&s)) {
            if let Some(iv) = origin.intervals.get_mut(&start) {
                iv.end = upper.end;
            }
            // Two intervals became one.
            if added == 1 {
                added = 0;
            } else {
                self.intervals = self.intervals.saturating_sub(1);
            }
        }
        self.intervals += added;
        // Fold an interval that now touches the floor into it.
        if let Some((&first, iv)) = origin.intervals.first_key_value() {
            if origin.floor.checked_add(1) == Some(first) {
                origin.floor = iv.end;
                origin.intervals.pop_first();
                self.intervals = self.intervals.saturating_sub(1);
            }
        }
        // Enforce the count limits on this origin.
        while origin.intervals.len() > self.limits.max_intervals_per_origin
            || (self.intervals > self.limits.max_intervals && !origin.intervals.is_empty())
        {
            if origin.close_lowest() {
                self.intervals = self.intervals.saturating_sub(1);
                self.forced_closes += 1;
            }
        }
        true
    }

    fn evict_least_recent(&mut self) {
        let victim = self
            .origins
            .iter()
            .filter(|(p, _)| **p != self.pinned)
            .min_by_key(|(p, o)| (o.last_active, **p))
            .map(|(p, _)| *p);
        if let Some(p) = victim {
            if let Some(o) = self.origins.remove(&p) {
                self.intervals = self.intervals.saturating_sub(o.intervals.len());
            }
            self.forced_evictions += 1;
        }
    }

    /// Age-based pruning; call periodically.
    pub(crate) fn prune(&mut self, now: Duration) {
        let ttl = self.limits.ttl;
        let idle = self.limits.origin_idle_ttl;
        let pinned = self.pinned;
        let mut closed = 0usize;
        self.origins.retain(|p, o| {
            // Everything below an expired interval is older than the ttl: close up to it.
            let expired = o.intervals.iter().rev().find(|(_, iv)| now.saturating_sub(iv.since) > ttl).map(|(k, _)| *k);
            if let Some(k) = expired {
                while o.intervals.first_key_value().is_some_and(|(s, _)| *s <= k) {
                    o.close_lowest();
                    closed += 1;
                }
            }
            *p == pinned || !o.intervals.is_empty() || now.saturating_sub(o.last_active) <= idle
        });
        self.intervals = self.intervals.saturating_sub(closed);
    }

    /// Number of origins tracked.
    pub(crate) fn origins(&self) -> usize {
        self.origins.len()
    }

    /// Number of open intervals over all origins.
    pub(crate) fn intervals(&self) -> usize {
        self.intervals
    }

    #[cfg(test)]
    fn recount(&self) -> usize {
        self.origins.values().map(|o| o.intervals.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn limits() -> SeenLimits {
        SeenLimits {
            max_origins: 4,
            max_intervals: 16,
            max_intervals_per_origin: 8,
            ttl: Duration::from_secs(10),
            origin_idle_ttl: Duration::from_secs(30),
        }
    }

    fn id(o: u64, seq: u64) -> MessageId {
        MessageId { origin: PeerId(o), seq }
    }

    #[test]
    fn in_order_is_just_a_floor() {
        let mut s = SeenSet::new(PeerId(0), limits());
        for seq in 1..=1000 {
            assert!(s.insert(id(1, seq), Duration::ZERO));
        }
        assert_eq!(s.intervals(), 0);
        assert!(s.contains(&id(1, 500)));
        assert!(!s.contains(&id(1, 1001)));
        assert!(!s.insert(id(1, 7), Duration::ZERO));
    }

    #[test]
    fn gaps_fill_and_expire() {
        let mut s = SeenSet::new(PeerId(0), limits());
        s.insert(id(1, 1), Duration::ZERO);
        s.insert(id(1, 3), Duration::ZERO);
        s.insert(id(1, 5), Duration::from_secs(5));
        assert_eq!(s.intervals(), 2);
        assert!(!s.contains(&id(1, 2)));
        assert!(s.insert(id(1, 2), Duration::from_secs(6)));
        assert_eq!(s.intervals(), 1, "1..=3 folded into the floor");
        // The gap at 4 expires once the interval opened at t=5 s is older than the ttl.
        s.prune(Duration::from_secs(14));
        assert!(!s.contains(&id(1, 4)));
        s.prune(Duration::from_secs(16));
        assert!(s.contains(&id(1, 4)), "abandoned gap counts as seen");
        assert_eq!(s.intervals(), 0);
    }

    #[test]
    fn idle_origins_are_forgotten_but_not_ours() {
        let mut s = SeenSet::new(PeerId(9), limits());
        s.insert(id(9, 1), Duration::ZERO);
        s.insert(id(1, 1), Duration::ZERO);
        s.prune(Duration::from_secs(31));
        assert_eq!(s.origins(), 1);
        assert!(s.contains(&id(9, 1)));
    }

    proptest! {
        /// Against a plain set: never reports an inserted id unseen (no duplicates), intervals
        /// stay within their limits and the counter stays exact.
        #[test]
        fn never_forgets_inside_limits(ops in proptest::collection::vec((0u64..6, 1u64..40, 0u64..30), 1..400)) {
            let mut s = SeenSet::new(PeerId(0), limits());
            let mut model: BTreeSet<(u64, u64)> = BTreeSet::new();
            for (o, seq, t) in ops {
                let now = Duration::from_secs(t);
                let fresh = s.insert(id(o, seq), now);
                if fresh {
                    prop_assert!(!model.contains(&(o, seq)) || s.forced_evictions > 0);
                }
                model.insert((o, seq));
                prop_assert!(s.contains(&id(o, seq)));
                prop_assert!(s.origins() <= 4);
                prop_assert!(s.intervals() <= 16);
                prop_assert_eq!(s.intervals(), s.recount());
            }
            s.prune(Duration::from_secs(100));
            prop_assert_eq!(s.intervals(), s.recount());
        }
    }
}
