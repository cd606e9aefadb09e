//! What a node knows about one remote node: its lanes (channel x connection slots), the state of
//! acknowledged delivery in both directions, and whether it is up.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Waker;

use parking_lot::Mutex;
use troupe_actor::{ActorId, NodeId};

use crate::acks::{Delivered, Outstanding};
use crate::queue::SendQueue;

/// One connection slot of a channel to a peer. Its queue survives reconnects.
pub(crate) struct Lane {
    pub(crate) queue: Arc<SendQueue>,
    pub(crate) connected: AtomicBool,
}

/// A remote node incarnation.
pub(crate) struct Peer {
    pub(crate) id: NodeId,
    pub(crate) name: String,
    /// Where to dial it.
    pub(crate) addrs: Vec<SocketAddr>,
    /// `lanes[channel][lane]`.
    pub(crate) lanes: Vec<Vec<Lane>>,
    pub(crate) up: AtomicBool,
    pub(crate) down: AtomicBool,
    next_seq: AtomicU64,
    /// Our acknowledged messages to it, not yet acknowledged.
    pub(crate) outstanding: Mutex<Outstanding>,
    /// Senders waiting for `outstanding` to drain.
    pub(crate) ack_waiters: Mutex<Vec<Waker>>,
    /// Its acknowledged messages to us that we delivered.
    pub(crate) delivered: Mutex<Delivered>,
    /// Wakes the lane tasks when the peer goes down.
    pub(crate) stop: Arc<tokio::sync::Notify>,
}

impl Peer {
    pub(crate) fn new(
        id: NodeId,
        name: String,
        addrs: Vec<SocketAddr>,
        channels: &[(u16, bool)],
        queue_bytes: usize,
        outstanding_limit: usize,
    ) -> Peer {
        let lanes = channels
            .iter()
            .map(|&(parallelism, monotonic)| {
                (0..parallelism.max(1))
                    .map(|_| Lane {
                        queue: Arc::new(SendQueue::new(queue_bytes, monotonic)),
                        connected: AtomicBool::new(false),
                    })
                    .collect()
            })
            .collect();
        Peer {
            id,
            name,
            addrs,
            lanes,
            up: AtomicBool::new(false),
            down: AtomicBool::new(false),
            next_seq: AtomicU64::new(1),
            outstanding: Mutex::new(Outstanding::new(outstanding_limit)),
            ack_waiters: Mutex::new(Vec::new()),
            delivered: Mutex::new(Delivered::default()),
            stop: Arc::new(tokio::sync::Notify::new()),
        }
    }

    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq.fetch_add(1, Ordering::Relaxed)
    }

    /// The next sequence number, for a later Peer of the same incarnation to continue from
    /// (the other side may still remember the numbers it delivered).
    pub(crate) fn seq_position(&self) -> u64 {
        self.next_seq.load(Ordering::Relaxed)
    }

    /// Continues the sequence of an earlier Peer of the same incarnation.
    pub(crate) fn resume_seq(&self, next: u64) {
        self.next_seq.store(next, Ordering::Relaxed);
    }

    pub(crate) fn is_down(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }

    /// The lane for a message: `key mod parallelism` within the channel, falling back to the
    /// default channel (1) while every lane of a named channel is disconnected.
    pub(crate) fn pick(&self, channel: usize, key: u64) -> (usize, usize) {
        let channel = channel.min(self.lanes.len() - 1);
        let lanes = &self.lanes[channel];
        let lane = (key % lanes.len() as u64) as usize;
        if channel > 1 && !lanes[lane].connected.load(Ordering::Relaxed) && self.up.load(Ordering::Relaxed) {
            let fallback = &self.lanes[1];
            let other = (key % fallback.len() as u64) as usize;
            if fallback[other].connected.load(Ordering::Relaxed) {
                return (1, other);
            }
        }
        (channel, lane)
    }

    pub(crate) fn lane(&self, (channel, lane): (usize, usize)) -> &Lane {
        &self.lanes[channel][lane]
    }

    pub(crate) fn control_lane(&self) -> &Lane {
        &self.lanes[0][0]
    }

    /// Wakes senders waiting for acknowledgements.
    pub(crate) fn wake_ack_waiters(&self) {
        for waker in std::mem::take(&mut *self.ack_waiters.lock()) {
            waker.wake();
        }
    }

    /// Shuts every lane queue (senders see the peer as unreachable).
    pub(crate) fn close_lanes(&self) {
        for lanes in &self.lanes {
            for lane in lanes {
                lane.queue.close();
            }
        }
        self.stop.notify_waiters();
        self.wake_ack_waiters();
    }
}

/// The default partition key: the target actor, so one sender's messages to one actor stay in
/// order on one connection.
pub(crate) fn default_key(target: ActorId) -> u64 {
    target.serial.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 16
}
