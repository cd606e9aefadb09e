//! The bounded cache of recent messages: what a node can send in answer to a graft or an
//! anti-entropy exchange.
//!
//! Bounded by count, payload bytes and age; the oldest insertions go first. A message evicted
//! from every cache can no longer be repaired: nodes that missed it never get it. Since
//! anti-entropy runs every 10 s and the default age limit is 5 minutes, that takes a partition
//! (or an isolation) longer than `message_ttl`, or more than `cache_max_messages` broadcasts
//! during one.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;

use crate::member::PeerId;

use super::message::{IdRange, MessageId, Topic};

/// One cached message.
#[derive(Clone, Debug)]
pub(crate) struct Cached {
    pub topic: Topic,
    pub payload: Bytes,
    /// Our hop count for it.
    pub hops: u32,
    /// Its age when we received it, in milliseconds.
    pub age_at_receipt_ms: u64,
    /// When we received it.
    pub received_at: Duration,
    /// Who sent us the copy we delivered (`None` for our own broadcasts and repairs); used by the
    /// hop-count optimisation.
    pub eager_from: Option<PeerId>,
    /// Delivered through a `Repair`, and no `Gossip` copy has arrived since: the first one that
    /// does is no sign of a redundant tree link and must not cause a prune.
    pub via_repair: bool,
}

impl Cached {
    /// Its age now, in milliseconds.
    pub fn age_ms(&self, now: Duration) -> u64 {
        let held = now.saturating_sub(self.received_at).as_millis();
        self.age_at_receipt_ms.saturating_add(u64::try_from(held).unwrap_or(u64::MAX))
    }
}

/// Limits of a [`MessageCache`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct CacheLimits {
    pub max_messages: usize,
    pub max_bytes: usize,
    pub ttl_ms: u64,
}

/// The cache. See the module documentation.
#[derive(Debug)]
pub(crate) struct MessageCache {
    entries: HashMap<MessageId, Cached>,
    order: VecDeque<MessageId>,
    bytes: usize,
    limits: CacheLimits,
}

impl MessageCache {
    pub(crate) fn new(limits: CacheLimits) -> Self {
        MessageCache { entries: HashMap::new(), order: VecDeque::new(), bytes: 0, limits }
    }

    /// Adds a message (a payload over the byte limit on its own is not cached).
    pub(crate) fn insert(&mut self, id: MessageId, entry: Cached) {
        let size = entry.payload.len();
        if size > self.limits.max_bytes || self.entries.contains_key(&id) {
            return;
        }
        while !self.order.is_empty()
            && (self.order.len() >= self.limits.max_messages || self.bytes.saturating_add(size) > self.limits.max_bytes)
        {
            self.pop_oldest();
        }
        self.bytes += size;
        self.entries.insert(id, entry);
        self.order.push_back(id);
    }

    fn pop_oldest(&mut self) {
        if let Some(old) = self.order.pop_front() {
            if let Some(e) = self.entries.remove(&old) {
                self.bytes = self.bytes.saturating_sub(e.payload.len());
            }
        }
    }

    /// A message if cached and still younger than the age limit.
    pub(crate) fn get(&self, id: &MessageId, now: Duration) -> Option<&Cached> {
        self.entries.get(id).filter(|e| e.age_ms(now) <= self.limits.ttl_ms)
    }

    /// A cached message, expired or not (for bookkeeping, never for sending).
    pub(crate) fn get_mut(&mut self, id: &MessageId) -> Option<&mut Cached> {
        self.entries.get_mut(id)
    }

    /// Drops messages past the age limit (from the oldest insertion on; an entry inserted later
    /// but already older waits for its turn, and [`MessageCache::get`] hides it meanwhile).
    pub(crate) fn prune(&mut self, now: Duration) {
        while let Some(id) = self.order.front() {
            let expired = self.entries.get(id).is_none_or(|e| e.age_ms(now) > self.limits.ttl_ms);
            if !expired {
                break;
            }
            self.pop_oldest();
        }
    }

    /// The cached ids at least `min_age_ms` old and not expired, as runs; at most `max` of
    /// them, the runs holding the newest insertions kept when there are more.
    pub(crate) fn ranges(&self, now: Duration, min_age_ms: u64, max: usize) -> Vec<IdRange> {
        let mut ids: Vec<MessageId> = self
            .entries
            .iter()
            .filter(|(_, e)| (min_age_ms..=self.limits.ttl_ms).contains(&e.age_ms(now)))
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        let mut out: Vec<IdRange> = Vec::new();
        for id in ids {
            match out.last_mut() {
                Some(r) if r.origin == id.origin && r.last.checked_add(1) == Some(id.seq) => {
                    r.last = id.seq;
                }
                _ => out.push(IdRange { origin: id.origin, first: id.seq, last: id.seq }),
            }
        }
        if out.len() > max {
            // Keep the runs holding the most recent insertions.
            let mut rank: HashMap<MessageId, usize> = HashMap::new();
            for (i, id) in self.order.iter().enumerate() {
                rank.insert(*id, i);
            }
            out.sort_by_key(|r| {
                std::cmp::Reverse(rank.get(&MessageId { origin: r.origin, seq: r.last }).copied().unwrap_or(0))
            });
            out.truncate(max);
            out.sort_by_key(|r| (r.origin, r.first));
        }
        out
    }

    /// Number of cached messages.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Cached payload bytes.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(len: usize, at: u64) -> Cached {
        Cached {
            topic: Topic(0),
            payload: Bytes::from(vec![0u8; len]),
            hops: 0,
            age_at_receipt_ms: 0,
            received_at: Duration::from_millis(at),
            eager_from: None,
            via_repair: false,
        }
    }

    fn id(o: u64, seq: u64) -> MessageId {
        MessageId { origin: PeerId(o), seq }
    }

    #[test]
    fn bounded_by_count_bytes_and_age() {
        let mut c = MessageCache::new(CacheLimits { max_messages: 3, max_bytes: 100, ttl_ms: 1000 });
        for s in 1..=5 {
            c.insert(id(1, s), entry(10, 0));
        }
        assert_eq!(c.len(), 3);
        assert!(c.get(&id(1, 2), Duration::ZERO).is_none());
        assert!(c.get(&id(1, 5), Duration::ZERO).is_some());
        c.insert(id(2, 1), entry(95, 0));
        assert!(c.bytes() <= 100);
        assert_eq!(c.len(), 1);
        c.insert(id(2, 2), entry(101, 0));
        assert!(c.get(&id(2, 2), Duration::ZERO).is_none());
        assert!(c.get(&id(2, 1), Duration::from_millis(1001)).is_none());
        c.prune(Duration::from_millis(1001));
        assert_eq!(c.len(), 0);
        assert_eq!(c.bytes(), 0);
    }

    #[test]
    fn ranges_compress_runs() {
        let mut c = MessageCache::new(CacheLimits { max_messages: 100, max_bytes: 1000, ttl_ms: 1000 });
        for s in [1, 2, 3, 5, 6] {
            c.insert(id(1, s), entry(1, 0));
        }
        c.insert(id(2, 9), entry(1, 0));
        let r = c.ranges(Duration::ZERO, 0, 10);
        assert_eq!(
            r,
            vec![
                IdRange { origin: PeerId(1), first: 1, last: 3 },
                IdRange { origin: PeerId(1), first: 5, last: 6 },
                IdRange { origin: PeerId(2), first: 9, last: 9 },
            ]
        );
        let r = c.ranges(Duration::ZERO, 0, 1);
        assert_eq!(r, vec![IdRange { origin: PeerId(2), first: 9, last: 9 }]);
        assert!(c.ranges(Duration::from_millis(10), 11, 10).is_empty(), "all too young");
    }
}
