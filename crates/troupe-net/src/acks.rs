//! Acknowledged delivery: what the sender keeps until acked, and how the receiver drops
//! duplicates. Pure data structures; the node drives them.
//!
//! Every acknowledged message gets a sequence number from a per-peer counter. The sender keeps
//! its encoded frame until the receiving node acknowledges the number, and re-queues it every
//! retransmit interval (and after reconnecting). The receiver remembers which numbers it has
//! delivered, as a watermark below which everything was seen plus the numbers seen above it, so
//! a retransmitted copy is acknowledged again but not delivered twice.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// One message waiting for its acknowledgement.
pub(crate) struct Unacked {
    /// The whole frame, ready to be queued again.
    pub(crate) frame: Vec<u8>,
    /// Channel and lane it was queued on.
    pub(crate) lane: (usize, usize),
    /// When it was last queued.
    pub(crate) sent: Instant,
}

/// The sender's side: frames not yet acknowledged, with a bound on their bytes.
pub(crate) struct Outstanding {
    frames: BTreeMap<u64, Unacked>,
    bytes: usize,
    limit: usize,
}

impl Outstanding {
    pub(crate) fn new(limit: usize) -> Self {
        Outstanding { frames: BTreeMap::new(), bytes: 0, limit }
    }

    /// True when no more may be admitted until acks arrive.
    pub(crate) fn is_full(&self) -> bool {
        self.bytes >= self.limit
    }

    pub(crate) fn insert(&mut self, seq: u64, unacked: Unacked) {
        self.bytes += unacked.frame.len();
        if let Some(old) = self.frames.insert(seq, unacked) {
            self.bytes -= old.frame.len();
        }
    }

    /// Forgets acknowledged numbers; returns how many were outstanding.
    pub(crate) fn ack(&mut self, seqs: &[u64]) -> usize {
        let mut removed = 0;
        for seq in seqs {
            if let Some(u) = self.frames.remove(seq) {
                self.bytes -= u.frame.len();
                removed += 1;
            }
        }
        removed
    }

    /// Frames last queued before `now - after`, in sequence order; marks them queued now.
    pub(crate) fn due(&mut self, now: Instant, after: Duration) -> Vec<(u64, (usize, usize), Vec<u8>)> {
        let mut due = Vec::new();
        for (seq, u) in self.frames.iter_mut() {
            if now.duration_since(u.sent) >= after {
                u.sent = now;
                due.push((*seq, u.lane, u.frame.clone()));
            }
        }
        due
    }

    pub(crate) fn len(&self) -> usize {
        self.frames.len()
    }

    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

/// The receiver's side: which sequence numbers of one sender were delivered.
#[derive(Debug, Default)]
pub(crate) struct Delivered {
    /// Every number ≤ this was delivered (numbers start at 1).
    watermark: u64,
    above: BTreeSet<u64>,
}

impl Delivered {
    /// Records `seq`; false when it was delivered before (a duplicate).
    pub(crate) fn first_time(&mut self, seq: u64) -> bool {
        if seq <= self.watermark || !self.above.insert(seq) {
            return false;
        }
        while self.above.first() == Some(&(self.watermark + 1)) {
            self.above.pop_first();
            self.watermark += 1;
        }
        true
    }

    /// Numbers remembered above the watermark (gaps keep them).
    #[cfg(test)]
    pub(crate) fn pending(&self) -> usize {
        self.above.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any arrival order with duplicates delivers each number exactly once, and the memory
        /// collapses to the watermark once there are no gaps.
        #[test]
        fn each_number_once(order in proptest::collection::vec(1u64..200, 0..600)) {
            let mut d = Delivered::default();
            let mut seen = std::collections::HashSet::new();
            for seq in &order {
                prop_assert_eq!(d.first_time(*seq), seen.insert(*seq));
            }
            for seq in 1..200 {
                d.first_time(seq);
            }
            prop_assert_eq!(d.pending(), 0);
        }
    }

    #[test]
    fn outstanding_tracks_bytes_and_due() {
        let mut o = Outstanding::new(10);
        let t0 = Instant::now();
        o.insert(1, Unacked { frame: vec![0; 6], lane: (1, 0), sent: t0 });
        assert!(!o.is_full());
        o.insert(2, Unacked { frame: vec![0; 6], lane: (1, 0), sent: t0 });
        assert!(o.is_full());
        assert_eq!(o.due(t0, Duration::from_secs(1)).len(), 0);
        assert_eq!(o.due(t0 + Duration::from_secs(1), Duration::from_secs(1)).len(), 2);
        assert_eq!(o.ack(&[1, 3]), 1);
        assert_eq!((o.len(), o.bytes()), (1, 6));
    }
}
