//! What a node knows about one remote node: its lanes (channel x connection slots), the state of
//! acknowledged delivery in both directions, and whether it is up.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use troupe_actor::{ActorId, NodeId};

use crate::acks::AckState;
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
    /// Acknowledged delivery with this incarnation (shared with later `Peer`s of it).
    pub(crate) acks: Arc<AckState>,
    /// Wakes the lane tasks when the peer goes down.
    pub(crate) stop: Arc<tokio::sync::Notify>,
    /// Messages received from it (counted per read, for traffic and idleness).
    pub(crate) received: AtomicU64,
    /// Bytes read from its connections.
    pub(crate) bytes_in: AtomicU64,
    /// Notified (all waiters) when a Pong arrives from it, on any connection: evidence of life
    /// for probes.
    pub(crate) pong: tokio::sync::Notify,
    /// Whether the overlay has been told it is connected.
    pub(crate) announced: AtomicBool,
    /// Being closed on purpose: its lanes do not redial.
    pub(crate) releasing: AtomicBool,
    /// It said goodbye: its lanes do not redial, sends to it fail, and what it sent before is
    /// read to the end before it counts as gone (`NodeShared::peer_leaving`).
    pub(crate) leaving: AtomicBool,
    /// The wire protocol version negotiated on its latest connection.
    pub(crate) version: std::sync::atomic::AtomicU16,
    /// Its actor signals, applied in arrival order once the messages before them are in.
    pub(crate) fence: crate::fence::SignalFence,
    /// Readers of its connections waiting for room in a full mailbox now.
    readers_waiting: AtomicU64,
    /// The largest frame it takes (from its latest handshake; ours until then): a larger one
    /// would end the connection.
    pub(crate) max_frame: AtomicUsize,
    /// Connections it dialled for its lanes that we are reading now: what it sent us before it
    /// said goodbye is read to the end before it counts as gone.
    inbound: AtomicUsize,
    /// This node said goodbye to it: its goodbye was queued, or could not be (the lane was
    /// closed); see [`Peer::say_goodbye`].
    said_goodbye: AtomicBool,
    /// Notified (all waiters) when one of those connections ends.
    inbound_ended: tokio::sync::Notify,
    /// The released peer for the same node whose connections were still being read when this
    /// one was made: this one's lanes and readers wait for it (see [`Peer::after_predecessor`]).
    predecessor: parking_lot::Mutex<std::sync::Weak<Peer>>,
}

/// A reader's wait for mailbox room, counted while it lasts (see [`Peer::waiting_for_room`]).
pub(crate) struct WaitingForRoom<'a>(&'a Peer);

impl Drop for WaitingForRoom<'_> {
    fn drop(&mut self) {
        self.0.readers_waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Peer {
    pub(crate) fn new(
        id: NodeId,
        name: String,
        addrs: Vec<SocketAddr>,
        channels: &[(u16, bool)],
        queue_bytes: usize,
        acks: Arc<AckState>,
        max_frame: usize,
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
        let version = acks.known_version().unwrap_or(troupe_wire::MIN_PROTOCOL_VERSION);
        let max_frame = acks.known_max_frame().map_or(max_frame, |known| known.min(max_frame));
        Peer {
            id,
            name,
            addrs,
            lanes,
            up: AtomicBool::new(false),
            down: AtomicBool::new(false),
            acks,
            stop: Arc::new(tokio::sync::Notify::new()),
            received: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            pong: tokio::sync::Notify::new(),
            announced: AtomicBool::new(false),
            releasing: AtomicBool::new(false),
            leaving: AtomicBool::new(false),
            version: std::sync::atomic::AtomicU16::new(version),
            fence: crate::fence::SignalFence::default(),
            readers_waiting: AtomicU64::new(0),
            max_frame: AtomicUsize::new(max_frame),
            inbound: AtomicUsize::new(0),
            said_goodbye: AtomicBool::new(false),
            inbound_ended: tokio::sync::Notify::new(),
            predecessor: parking_lot::Mutex::new(std::sync::Weak::new()),
        }
    }

    /// Makes `old`, a released peer for the same node still reading its connections to their
    /// end, this one's predecessor.
    pub(crate) fn follow(&self, old: &Arc<Peer>) {
        *self.predecessor.lock() = Arc::downgrade(old);
    }

    /// Waits until the predecessor, if any, is done: its connections read to their end and
    /// closed; or until it made no progress for `patience`. A reader of this peer's connections
    /// waits for it before it hands on any message, so what a sender wrote before the release
    /// is delivered before what it wrote after; and a data lane before it dials, so the other
    /// side cannot take the new connection for one of the old peer's.
    pub(crate) async fn after_predecessor(&self, patience: std::time::Duration) {
        // Gone altogether (dropped) means done too.
        let Some(old) = self.predecessor.lock().upgrade() else { return };
        let stopped = old.stop.notified();
        tokio::pin!(stopped);
        stopped.as_mut().enable();
        // `down` is set just before the release's `close_lanes` notifies `stop`.
        while !old.is_down() {
            let before = old.progress();
            if tokio::time::timeout(patience, stopped.as_mut()).await.is_ok() || old.progress() == before {
                break;
            }
        }
        // Once one waiter is through, the others need not wait either.
        *self.predecessor.lock() = std::sync::Weak::new();
    }

    /// Waits until the predecessor, if any, is down or its control connection has ended (the
    /// other side ends it once it handled the release) with nothing left to write, at most
    /// `limit`. Leaves the predecessor
    /// in place for the data lanes and readers ([`Peer::after_predecessor`]).
    pub(crate) async fn after_predecessor_control(&self, limit: std::time::Duration) {
        let Some(old) = self.predecessor.lock().upgrade() else { return };
        let deadline = std::time::Instant::now() + limit;
        // Also while its control lane holds frames (the Release itself) and no connection: it
        // dials once more for them (see `lane_loop`).
        let control = old.control_lane();
        while std::time::Instant::now() < deadline
            && !old.is_down()
            && (control.connected.load(Ordering::Acquire) || control.queue.has_backlog())
        {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    }

    /// Bytes read from it and written to it so far: what moves while its connections are read
    /// or written.
    pub(crate) fn progress(&self) -> u64 {
        let written: u64 = self.lanes.iter().flatten().map(|lane| lane.queue.moved.load(Ordering::Relaxed)).sum();
        self.bytes_in.load(Ordering::Relaxed) + written
    }

    /// Whether a release should keep waiting for its connections: they moved since `before` (a
    /// [`Peer::progress`] value), or a reader waits for mailbox room, or its readers wait for a
    /// predecessor of their own.
    pub(crate) fn still_moving(&self, before: u64) -> bool {
        self.progress() != before || self.is_waiting_for_room() || self.has_live_predecessor()
    }

    /// Whether it was released on purpose (not leaving the cluster): a send it refuses because
    /// its queues are finished goes to the node's next peer.
    pub(crate) fn is_released(&self) -> bool {
        self.releasing.load(Ordering::Acquire) && !self.is_leaving()
    }

    /// Whether it follows a released predecessor still being read out.
    pub(crate) fn has_live_predecessor(&self) -> bool {
        self.predecessor.lock().upgrade().is_some_and(|old| !old.is_down())
    }

    /// Actor messages queued to it so far, over all lanes (including ones since sent).
    pub(crate) fn messages_sent(&self) -> u64 {
        self.lanes.iter().flatten().map(|l| l.queue.messages()).sum()
    }

    /// Actor messages exchanged with it so far, both directions: what makes a connection "used".
    pub(crate) fn traffic(&self) -> u64 {
        self.messages_sent() + self.received.load(Ordering::Relaxed)
    }

    /// The peer as the overlay knows it (needs an address to be dialled again).
    pub(crate) fn member(&self) -> Option<troupe_overlay::Member> {
        let addr = *self.addrs.first()?;
        Some(troupe_overlay::Member { id: troupe_overlay::PeerId(self.id.0), name: self.name.clone(), addr })
    }

    pub(crate) fn is_down(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }

    /// Connected (its control lane came up) and not declared down: a working peer.
    pub(crate) fn is_working(&self) -> bool {
        self.up.load(Ordering::Acquire) && !self.is_down()
    }

    /// The lane for a message: `key mod parallelism` within the channel, falling back (with
    /// `fallback`) to the default channel (1) while that lane of a named channel is disconnected.
    /// Acknowledged sends do not fall back: a message sent again on its own lane after a
    /// reconnect would arrive after later ones that took the default channel.
    pub(crate) fn pick(&self, channel: usize, key: u64, fallback: bool) -> (usize, usize) {
        let channel = channel.min(self.lanes.len() - 1);
        let lanes = &self.lanes[channel];
        let lane = slot(key, lanes.len());
        if fallback && channel > 1 && !lanes[lane].connected.load(Ordering::Relaxed) && self.up.load(Ordering::Relaxed)
        {
            let fallback = &self.lanes[1];
            let other = slot(key, fallback.len());
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

    /// Queues a control message on lane `(channel, index)`, ignoring the bound. False when it
    /// does not encode, or the lane is closed or past its overflow mark (then the peer is
    /// dropped: see `SendQueue::overflowed`).
    pub(crate) fn push_control(&self, (channel, index): (usize, usize), control: &troupe_wire::Control) -> bool {
        let mut payload = Vec::new();
        control.encode(&mut payload).is_ok()
            && self.lane((channel, index)).queue.push_frame(troupe_wire::FrameKind::Control, channel as u16, &payload)
    }

    /// Queues this node's goodbye on the control lane, once (this node is leaving the cluster):
    /// true if this call queued it.
    pub(crate) fn say_goodbye(&self) -> bool {
        !self.said_goodbye.swap(true, Ordering::AcqRel) && self.push_control((0, 0), &troupe_wire::Control::Goodbye)
    }

    /// Queues an actor signal (watch, unwatch, down, stop, kill, link, unlink, and the `After`
    /// forms) on the control lane. To a node of protocol version 6 or later it goes numbered
    /// from the acknowledged messages' sequence and is kept until acknowledged: a control
    /// connection lost with it on the wire sends it again, in order, on the next one (a lost
    /// watch would leave its watcher waiting for ever). Plain to older nodes and to a node whose
    /// version is not known yet (no handshake so far). False as for
    /// [`push_control`](Self::push_control).
    pub(crate) fn push_actor_control(&self, control: &troupe_wire::Control) -> bool {
        const LANE: (usize, usize) = (0, 0);
        if self.version.load(Ordering::Relaxed) < 6 {
            return self.push_control(LANE, control);
        }
        // Numbered under the queue's lock, so numbers go out in queue order; never plain once
        // the version allows numbers, or a plain signal lost with a connection could be
        // overtaken by a later numbered one sent again (a link, then its unlink).
        let pushed = self.lane(LANE).queue.push_unbounded(|buf| {
            let mut payload = Vec::new();
            let seq = self.acks.reserve_control(LANE, starts_something(control));
            let reserved = crate::acks::Reserved::new(&self.acks, seq);
            control.encode_numbered(seq, &mut payload)?;
            let mut frame = crate::framebuf::FrameBuf::default();
            let (kind, flag) = (troupe_wire::FrameKind::Control, troupe_wire::flags::ACK_REQUESTED);
            troupe_wire::encode_frame(frame.inline(), kind, flag, 0, &payload, usize::MAX)?;
            buf.append(&frame);
            reserved.fill(frame);
            Ok::<(), troupe_wire::WireError>(())
        });
        matches!(pushed, Some(Ok(())))
    }

    /// Counts a connection it dialled for one of its lanes while we read it (until the guard is
    /// dropped).
    pub(crate) fn reading_inbound(&self) -> ReadingInbound<'_> {
        self.inbound.fetch_add(1, Ordering::AcqRel);
        ReadingInbound(self)
    }

    /// Waits (at most `limit`) until we read none of the connections it dialled.
    pub(crate) async fn inbound_drained(&self, limit: std::time::Duration) {
        let _ = tokio::time::timeout(limit, async {
            loop {
                let ended = self.inbound_ended.notified();
                tokio::pin!(ended);
                ended.as_mut().enable();
                if self.inbound.load(Ordering::Acquire) == 0 {
                    return;
                }
                ended.await;
            }
        })
        .await;
    }

    /// Whether it said goodbye (see [`leaving`](Self::leaving)).
    pub(crate) fn is_leaving(&self) -> bool {
        self.leaving.load(Ordering::Acquire)
    }

    /// Whether its lanes must not redial: it is down, being released, or leaving.
    pub(crate) fn ending(&self) -> bool {
        self.is_down() || self.releasing.load(Ordering::Acquire) || self.is_leaving()
    }

    /// The largest frame to send it.
    pub(crate) fn max_frame(&self) -> usize {
        self.max_frame.load(Ordering::Relaxed)
    }

    /// Counts a reader's wait for mailbox room until the guard is dropped.
    pub(crate) fn waiting_for_room(&self) -> WaitingForRoom<'_> {
        self.readers_waiting.fetch_add(1, Ordering::Relaxed);
        WaitingForRoom(self)
    }

    /// Whether a reader of its connections is waiting for room in a full mailbox.
    pub(crate) fn is_waiting_for_room(&self) -> bool {
        self.readers_waiting.load(Ordering::Relaxed) > 0
    }

    /// Lets every lane write what it has queued and then end its sending side (a release), taking
    /// nothing new; readers go on until the other side ends too (see `NodeShared::release_peer`).
    pub(crate) fn finish_lanes(&self) {
        for lane in self.lanes.iter().flatten() {
            lane.queue.finish();
        }
    }

    /// Whether frames wait in one of its lanes, or a writer is writing some.
    pub(crate) fn has_backlog(&self) -> bool {
        self.lanes.iter().flatten().any(|lane| lane.queue.has_backlog())
    }

    /// Whether a connection of one of its lanes, or one it dialled for its own, is still open.
    pub(crate) fn has_connections(&self) -> bool {
        self.inbound.load(Ordering::Acquire) > 0
            || self.lanes.iter().flatten().any(|lane| lane.connected.load(Ordering::Acquire))
    }

    /// Shuts every lane queue (senders see the peer as unreachable).
    pub(crate) fn close_lanes(&self) {
        for lanes in &self.lanes {
            for lane in lanes {
                lane.queue.close();
            }
        }
        self.stop.notify_waiters();
        self.acks.wake_waiters();
    }
}

/// `key mod lanes`, without a division for the common single-lane channel (a 64-bit division
/// is a measurable part of a small remote send).
fn slot(key: u64, lanes: usize) -> usize {
    if lanes == 1 {
        0
    } else {
        (key % lanes as u64) as usize
    }
}

/// The default partition key: the target actor, so one sender's messages to one actor stay in
/// order on one connection.
pub(crate) fn default_key(target: ActorId) -> u64 {
    target.serial.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 16
}

/// A connection the peer dialled, counted while we read it (see [`Peer::reading_inbound`]).
pub(crate) struct ReadingInbound<'a>(&'a Peer);

impl Drop for ReadingInbound<'_> {
    fn drop(&mut self) {
        self.0.inbound.fetch_sub(1, Ordering::AcqRel);
        self.0.inbound_ended.notify_waiters();
    }
}

/// Whether an actor signal starts something at the receiver (a watch, a link, a stop, a kill),
/// rather than reporting or cancelling (a Down, an unlink): the former is void once the node is
/// declared lost (see `AckState::abandon_void`).
fn starts_something(control: &troupe_wire::Control) -> bool {
    use troupe_wire::{Control, Signal};
    match control {
        Control::Watch { .. } | Control::Link { .. } | Control::Stop { .. } | Control::Kill { .. } => true,
        Control::After { signal, .. } | Control::AfterAll { signal, .. } => matches!(signal, Signal::Stop { .. }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer with a control channel, a one-lane default channel and a four-lane channel 2.
    fn peer() -> Peer {
        let channels = [(1, false), (1, false), (4, false)];
        Peer::new(NodeId(7), "p".into(), Vec::new(), &channels, 1 << 20, Arc::new(AckState::new(1 << 20)), 1 << 20)
    }

    fn connect_all(peer: &Peer) {
        peer.lanes.iter().flatten().for_each(|l| l.connected.store(true, Ordering::Relaxed));
        peer.up.store(true, Ordering::Relaxed);
    }

    #[test]
    fn the_key_picks_the_lane_modulo_the_channels_parallelism() {
        let peer = peer();
        connect_all(&peer);
        for key in [0u64, 1, 2, 3, 5, 1 << 40, u64::MAX] {
            assert_eq!(peer.pick(1, key, true), (1, 0), "a one-lane channel has one lane (key {key})");
            assert_eq!(peer.pick(2, key, true), (2, (key % 4) as usize), "key {key}");
        }
        assert_eq!(peer.pick(9, 6, true), (2, 2), "an unknown channel index is clamped to the last channel");
    }

    #[test]
    fn a_named_channel_whose_lane_is_down_falls_back_to_the_default_channel() {
        let peer = peer();
        connect_all(&peer);
        peer.lanes[2][3].connected.store(false, Ordering::Relaxed);
        assert_eq!(peer.pick(2, 7, true), (1, 0), "lane 3 of channel 2 is down: the default channel carries it");
        assert_eq!(peer.pick(2, 7, false), (2, 3), "an acknowledged send waits for its own lane");
        assert_eq!(peer.pick(2, 6, true), (2, 2), "lane 2 is up: no fallback");
        peer.lanes[1][0].connected.store(false, Ordering::Relaxed);
        assert_eq!(
            peer.pick(2, 7, true),
            (2, 3),
            "with the default channel down too, the message waits for its own lane"
        );
    }

    #[test]
    fn a_peer_made_again_starts_from_what_the_last_handshake_settled() {
        let acks = Arc::new(AckState::new(1 << 20));
        let channels = [(1, false), (1, false)];
        let make = |acks: &Arc<AckState>| {
            Peer::new(NodeId(7), "p".into(), Vec::new(), &channels, 1 << 20, acks.clone(), 1 << 20)
        };
        let first = make(&acks);
        assert_eq!(first.version.load(Ordering::Relaxed), troupe_wire::MIN_PROTOCOL_VERSION);
        assert_eq!(first.max_frame(), 1 << 20, "ours, until a handshake tells");
        acks.remember_handshake(6, 64 << 10);
        let again = make(&acks);
        assert_eq!(again.version.load(Ordering::Relaxed), 6, "signals numbered before its own handshake");
        assert_eq!(again.max_frame(), 64 << 10, "frames sized for the node before its own handshake");
        assert!(again.push_actor_control(&troupe_wire::Control::Kill {
            target: troupe_wire::WireActorId { node: 7, serial: 1 }
        }));
        assert_eq!(acks.unacked(), 1, "the signal went numbered");
    }
}
