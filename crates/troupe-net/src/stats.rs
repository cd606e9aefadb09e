//! A node's counters.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

#[derive(Default)]
pub(crate) struct Counters {
    /// Messages queued to peers that are gone; live lanes count their own (`SendQueue::messages`).
    pub(crate) messages_out: AtomicU64,
    pub(crate) messages_in: AtomicU64,
    pub(crate) frames_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) dead_letters: AtomicU64,
    pub(crate) decode_errors: AtomicU64,
    pub(crate) bad_frames: AtomicU64,
    pub(crate) duplicates: AtomicU64,
    pub(crate) retransmits: AtomicU64,
    pub(crate) dropped_by_faults: AtomicU64,
    pub(crate) handshakes_rejected: AtomicU64,
    pub(crate) handshakes_failed: AtomicU64,
    pub(crate) relayed: AtomicU64,
    pub(crate) relay_dropped: AtomicU64,
    pub(crate) failure_notices_sent: AtomicU64,
    pub(crate) failure_notices_withheld: AtomicU64,
}

/// A snapshot of a node's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NodeStats {
    /// Messages queued for other nodes.
    pub messages_out: u64,
    /// Messages from other nodes delivered to mailboxes.
    pub messages_in: u64,
    /// Frames received.
    pub frames_in: u64,
    /// Bytes written to sockets.
    pub bytes_out: u64,
    /// Bytes read from sockets.
    pub bytes_in: u64,
    /// Messages for actors that are gone or unknown.
    pub dead_letters: u64,
    /// Messages or replies that failed to decode (or had the wrong type tag).
    pub decode_errors: u64,
    /// Malformed frames (the connection is closed for framing errors).
    pub bad_frames: u64,
    /// Acknowledged messages received again and not delivered twice.
    pub duplicates: u64,
    /// Acknowledged messages queued again: by the retransmit round, or in front of a lane that
    /// reconnected (copies of frames that were still queued, never sent, count too).
    pub retransmits: u64,
    /// Messages dropped by interposition, partitions or emulated loss.
    pub dropped_by_faults: u64,
    /// Inbound connections rejected (wrong secret, cluster, version, garbage, timeout).
    pub handshakes_rejected: u64,
    /// Outbound handshakes that failed.
    pub handshakes_failed: u64,
    /// Acknowledged messages still waiting for their ack.
    pub unacked: u64,
    /// Messages replaced on monotonic lanes.
    pub monotonic_replaced: u64,
    /// Frames this node passed along the overlay (its own relayed sends included).
    pub relayed: u64,
    /// Relayed frames dropped: no route (TTL spent, no neighbour), a full lane to the next hop,
    /// or too many relayed messages already waiting for full mailboxes here.
    pub relay_dropped: u64,
    /// Failure notices this node broadcast (a peer it lost, that nobody had reported yet).
    pub failure_notices_sent: u64,
    /// Peers this node lost but did not report, because another peer still heard from them
    /// (an indirect probe).
    pub failure_notices_withheld: u64,
    /// Bytes of large-frame buffers the node keeps for reuse (bounded node-wide; buffers whose
    /// payloads actors still hold count too).
    pub frame_pool_bytes: u64,
    /// Relayed messages waiting here for room in full mailboxes, now (a gauge, not a counter).
    pub relay_waiting: u64,
    /// Watches other nodes hold on this node's actors, now (a gauge): one per watching node
    /// and watched actor.
    pub remote_watches: u64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> NodeStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        NodeStats {
            messages_out: get(&self.messages_out),
            messages_in: get(&self.messages_in),
            frames_in: get(&self.frames_in),
            bytes_out: get(&self.bytes_out),
            bytes_in: get(&self.bytes_in),
            dead_letters: get(&self.dead_letters),
            decode_errors: get(&self.decode_errors),
            bad_frames: get(&self.bad_frames),
            duplicates: get(&self.duplicates),
            retransmits: get(&self.retransmits),
            dropped_by_faults: get(&self.dropped_by_faults),
            handshakes_rejected: get(&self.handshakes_rejected),
            handshakes_failed: get(&self.handshakes_failed),
            unacked: 0,
            monotonic_replaced: 0,
            relayed: get(&self.relayed),
            relay_dropped: get(&self.relay_dropped),
            failure_notices_sent: get(&self.failure_notices_sent),
            failure_notices_withheld: get(&self.failure_notices_withheld),
            frame_pool_bytes: 0,
            relay_waiting: 0,
            remote_watches: 0,
        }
    }
}
