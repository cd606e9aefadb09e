//! Counters and gauges of one Plumtree instance.

use serde::{Deserialize, Serialize};

/// What one Plumtree instance did since it started (counters) and holds now (gauges).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlumtreeStats {
    /// Broadcasts started here.
    pub broadcasts: u64,
    /// Broadcasts refused (payload too large).
    pub broadcasts_refused: u64,
    /// Messages handed to the application (including our own broadcasts).
    pub delivered: u64,
    /// `Gossip` messages sent (eager pushes and graft answers).
    pub gossip_sent: u64,
    /// `Gossip` messages received.
    pub gossip_received: u64,
    /// Payload messages (`Gossip` or `Repair`) received for a message already seen.
    pub duplicates: u64,
    /// `IHave` messages sent.
    pub ihave_sent: u64,
    /// Announcements (ids) sent in `IHave`s.
    pub ihave_ids_sent: u64,
    /// `IHave` messages received.
    pub ihave_received: u64,
    /// `Graft` messages sent.
    pub graft_sent: u64,
    /// `Graft` messages received.
    pub graft_received: u64,
    /// Grafts sent by the hop-count optimisation.
    pub optimization_grafts: u64,
    /// `Prune` messages sent.
    pub prune_sent: u64,
    /// `Prune` messages received.
    pub prune_received: u64,
    /// Missing messages given up on (no announcer left to graft).
    pub grafts_given_up: u64,
    /// Anti-entropy exchanges started.
    pub anti_entropy_rounds: u64,
    /// `Repair` messages sent.
    pub repair_sent: u64,
    /// `Repair` messages received.
    pub repair_received: u64,
    /// Messages first delivered as the answer to a graft (or arriving after one was sent).
    pub recovered_by_graft: u64,
    /// Messages first delivered through a `Repair` (from anti-entropy, or a grafted message
    /// spreading through a subtree).
    pub repaired: u64,
    /// Payload messages refused for being older than `message_ttl`.
    pub expired: u64,
    /// Incoming messages ignored as malformed, oversized, or from a non-neighbour.
    pub ignored: u64,
    /// Announcements dropped because a lazy queue was full.
    pub lazy_queue_dropped: u64,
    /// `IHave` ids not tracked because too many messages were already missing.
    pub missing_dropped: u64,
    /// `NeighborUp`s ignored because `max_neighbors` was reached.
    pub neighbors_refused: u64,
    /// Seen-set gaps abandoned early because of its count limits.
    pub seen_forced_closes: u64,
    /// Origins forgotten early because of `max_origins`.
    pub seen_forced_evictions: u64,
    /// Gauge: eager peers.
    pub eager: u64,
    /// Gauge: lazy peers.
    pub lazy: u64,
    /// Gauge: cached messages.
    pub cache_messages: u64,
    /// Gauge: cached payload bytes.
    pub cache_bytes: u64,
    /// Gauge: origins in the seen-set.
    pub seen_origins: u64,
    /// Gauge: open intervals in the seen-set.
    pub seen_intervals: u64,
    /// Gauge: messages announced but not yet received.
    pub missing: u64,
    /// Gauge: announcements queued for lazy peers.
    pub lazy_queued: u64,
}
