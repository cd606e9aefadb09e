//! Acknowledged delivery: what the sender keeps until acked, and how the receiver drops
//! duplicates.
//!
//! Every acknowledged message gets a sequence number, reserved under the same lock that keeps
//! the sender's unacknowledged frames. The sender keeps each frame until the receiving node
//! acknowledges its number and re-queues it every retransmit interval (and after reconnecting).
//! The receiver remembers which numbers it has delivered, as a watermark below which everything
//! was seen plus the numbers seen above it, so a retransmitted copy is acknowledged again but not
//! delivered twice.
//!
//! A number can be abandoned (the message failed to encode after its number was reserved). So
//! that the receiver's memory does not keep everything above such a gap, the sender periodically
//! sends its *floor*: the lowest number that may still arrive. The receiver forgets everything
//! below it.
//!
//! All of this belongs to the pair (this node, one remote incarnation), not to a connection or a
//! `Peer` value: a node declared down and reached again keeps its numbering, its unacknowledged
//! messages (which are then retransmitted) and its record of what was delivered.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::task::Waker;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::framebuf::FrameBuf;

/// One message waiting for its acknowledgement.
struct Unacked {
    /// The whole frame, ready to be queued again (empty while the number is only reserved).
    /// Attached payloads are shared with the send queue, not copied.
    frame: FrameBuf,
    /// Channel and lane it was queued on.
    lane: (usize, usize),
    /// When it was last queued.
    sent: Instant,
    /// Retransmit rounds in a row it was its lane's oldest, due, and held back (see
    /// [`AckState::due`]).
    held: u8,
    /// A signal that is void once the node is declared lost (see [`AckState::reserve_control`]).
    void_on_loss: bool,
}

/// The sender's side: frames not yet acknowledged, with a bound on their bytes.
struct Outstanding {
    next_seq: u64,
    frames: BTreeMap<u64, Unacked>,
    bytes: usize,
    limit: usize,
    /// Per lane, the highest number acknowledged (a frame below it on the same lane was lost: a
    /// lane is one ordered stream, and the receiver acknowledges in order) and when an
    /// acknowledgement for the lane last came.
    acked_on: HashMap<(usize, usize), (u64, Instant)>,
}

impl Outstanding {
    fn reserve(&mut self, lane: (usize, usize)) -> Option<u64> {
        (self.bytes < self.limit).then(|| self.number(lane, false))
    }

    /// The next number, reserved for a frame on `lane` whatever the bound.
    fn number(&mut self, lane: (usize, usize), void_on_loss: bool) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        let unacked = Unacked { frame: FrameBuf::default(), lane, sent: Instant::now(), held: 0, void_on_loss };
        self.frames.insert(seq, unacked);
        seq
    }

    fn fill(&mut self, seq: u64, frame: FrameBuf) {
        if let Some(u) = self.frames.get_mut(&seq) {
            self.bytes += frame.len();
            u.frame = frame;
        }
    }

    /// Forgets number `seq` (abandoned, or acknowledged); its frame's lane, if it had one.
    fn remove(&mut self, seq: u64) -> Option<(usize, usize)> {
        let u = self.frames.remove(&seq)?;
        self.bytes -= u.frame.len();
        Some(u.lane)
    }

    /// Numbers `seqs` were acknowledged at `now`. The lanes' records are updated once per lane
    /// (a batch of acknowledgements is nearly always for one lane).
    fn acknowledged(&mut self, seqs: &[u64], now: Instant) {
        let mut last: Option<((usize, usize), u64)> = None;
        for &seq in seqs {
            let Some(lane) = self.remove(seq) else { continue };
            match &mut last {
                Some((l, highest)) if *l == lane => *highest = (*highest).max(seq),
                _ => {
                    if let Some((l, highest)) = last.replace((lane, seq)) {
                        self.note_acked(l, highest, now);
                    }
                }
            }
        }
        if let Some((lane, highest)) = last {
            self.note_acked(lane, highest, now);
        }
    }

    /// Lane `lane` had numbers up to `seq` acknowledged at `now`.
    fn note_acked(&mut self, lane: (usize, usize), seq: u64, now: Instant) {
        let (highest, at) = self.acked_on.entry(lane).or_insert((seq, now));
        *highest = (*highest).max(seq);
        *at = now;
    }

    fn floor(&self) -> u64 {
        self.frames.keys().next().copied().unwrap_or(self.next_seq)
    }
}

/// Retransmit rounds a lane's oldest unacknowledged frame is held back at most, while its
/// receiver keeps acknowledging or its lane stays busy (see [`AckState::due`]).
const HELD_ROUNDS_MAX: u8 = 8;

/// A reserved sequence number, given up when dropped unless [`filled`](Reserved::fill).
pub(crate) struct Reserved<'a> {
    acks: &'a AckState,
    seq: u64,
    filled: bool,
}

impl<'a> Reserved<'a> {
    pub(crate) fn new(acks: &'a AckState, seq: u64) -> Self {
        Reserved { acks, seq, filled: false }
    }

    /// Keeps `frame` for retransmission under the number.
    pub(crate) fn fill(mut self, frame: FrameBuf) {
        self.acks.fill(self.seq, frame);
        self.filled = true;
    }
}

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        if !self.filled {
            self.acks.abandon(self.seq);
        }
    }
}

/// How far above the lowest number not yet delivered a sender's numbers may run: its
/// unacknowledged frames are bounded in bytes (see [`Outstanding`]), far below this many.
const AHEAD_MAX: u64 = 1 << 22;

/// What [`AckState::first_time`] says of an arriving number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arrival {
    /// Not seen before: deliver it.
    First,
    /// Delivered before: drop it (and acknowledge it again).
    Duplicate,
    /// Further ahead than any honest sender gets: drop it, unrecorded.
    OutOfWindow,
}

/// The receiver's side: which sequence numbers of one sender were delivered.
#[derive(Debug)]
struct Delivered {
    /// Every number below this was delivered or abandoned (numbers start at 1).
    next: u64,
    above: BTreeSet<u64>,
}

impl Default for Delivered {
    fn default() -> Self {
        Delivered { next: 1, above: BTreeSet::new() }
    }
}

impl Delivered {
    /// Records `seq`, unless it was delivered before or is out of the window.
    fn arrival(&mut self, seq: u64) -> Arrival {
        if seq.checked_sub(self.next).is_some_and(|ahead| ahead >= AHEAD_MAX) {
            return Arrival::OutOfWindow;
        }
        if seq < self.next || !self.above.insert(seq) {
            return Arrival::Duplicate;
        }
        self.collapse();
        Arrival::First
    }

    /// Forgets every number below `floor`: the sender will never send them again.
    fn advance_to(&mut self, floor: u64) {
        if floor > self.next {
            self.next = floor;
            self.above = self.above.split_off(&floor);
            self.collapse();
        }
    }

    fn collapse(&mut self) {
        while self.above.first() == Some(&self.next) {
            // The very last number stays in `above`: `next` cannot go past it.
            let Some(next) = self.next.checked_add(1) else { break };
            self.above.pop_first();
            self.next = next;
        }
    }
}

/// Acknowledged delivery between this node and one remote incarnation, both directions.
pub(crate) struct AckState {
    outstanding: Mutex<Outstanding>,
    /// Senders waiting for `outstanding` to drain.
    waiters: Mutex<Vec<Waker>>,
    delivered: Mutex<Delivered>,
    /// The floor last sent to the receiver.
    floor_sent: AtomicU64,
    /// Peers made with this state so far (one per time the node was reached again): a plan to
    /// forget the state of a lost node holds only if the node has not been reached since.
    peers_made: AtomicU64,
    /// The node's wire protocol version, once a handshake told (0 before).
    version: AtomicU16,
    /// The largest frame both sides take, once a handshake told (0 before).
    max_frame: AtomicUsize,
}

impl AckState {
    /// `limit`: bytes of unacknowledged frames above which senders wait.
    pub(crate) fn new(limit: usize) -> Self {
        AckState {
            outstanding: Mutex::new(Outstanding {
                next_seq: 1,
                frames: BTreeMap::new(),
                bytes: 0,
                limit,
                acked_on: HashMap::new(),
            }),
            waiters: Mutex::new(Vec::new()),
            delivered: Mutex::new(Delivered::default()),
            floor_sent: AtomicU64::new(1),
            peers_made: AtomicU64::new(0),
            version: AtomicU16::new(0),
            max_frame: AtomicUsize::new(0),
        }
    }

    /// What a handshake with the node settled (the same on every connection: it is one build
    /// and one configuration): its wire protocol version, and the largest frame both sides take.
    /// A peer made for the node again uses them before its own first handshake, so its signals
    /// are numbered and its frames sized for the node from the start.
    pub(crate) fn remember_handshake(&self, version: u16, max_frame: usize) {
        self.version.store(version, Ordering::Relaxed);
        self.max_frame.store(max_frame, Ordering::Relaxed);
    }

    /// The version [`remember_handshake`](Self::remember_handshake) recorded, if any.
    pub(crate) fn known_version(&self) -> Option<u16> {
        Some(self.version.load(Ordering::Relaxed)).filter(|&v| v > 0)
    }

    /// The frame limit [`remember_handshake`](Self::remember_handshake) recorded, if any.
    pub(crate) fn known_max_frame(&self) -> Option<usize> {
        Some(self.max_frame.load(Ordering::Relaxed)).filter(|&m| m > 0)
    }

    /// A peer is made with this state (the node is reached, for the first time or again).
    pub(crate) fn peer_made(&self) {
        self.peers_made.fetch_add(1, Ordering::Relaxed);
    }

    /// How many peers were made with this state so far.
    pub(crate) fn peers_made(&self) -> u64 {
        self.peers_made.load(Ordering::Relaxed)
    }

    /// Reserves the next number for a message queued on `lane`; `None` while too much is
    /// unacknowledged. Follow with [`fill`](Self::fill) or [`abandon`](Self::abandon).
    pub(crate) fn reserve(&self, lane: (usize, usize)) -> Option<u64> {
        self.outstanding.lock().reserve(lane)
    }

    /// Reserves the next number for a control message queued on `lane`, whatever is
    /// unacknowledged (a few bytes each, and bounded by the queue's overflow mark: a signal must
    /// not go unnumbered, or wait, behind acknowledged messages). `void_on_loss` for a signal
    /// that starts something (a watch, a link, a stop): see [`abandon_void`](Self::abandon_void).
    pub(crate) fn reserve_control(&self, lane: (usize, usize), void_on_loss: bool) -> u64 {
        self.outstanding.lock().number(lane, void_on_loss)
    }

    /// Gives up the unacknowledged signals reserved `void_on_loss` and returns how many there
    /// were: the node was declared lost, and its actors' watchers and links heard of it, so a
    /// watch, a link or a stop must not take effect should the node be reached again. (A Down
    /// or an unlink is kept: a node taken for lost may be alive and still waiting for it.)
    pub(crate) fn abandon_void(&self) -> usize {
        let abandoned = {
            let mut outstanding = self.outstanding.lock();
            let seqs: Vec<u64> =
                outstanding.frames.iter().filter(|(_, u)| u.void_on_loss).map(|(seq, _)| *seq).collect();
            for &seq in &seqs {
                outstanding.remove(seq);
            }
            seqs.len()
        };
        self.wake_waiters();
        abandoned
    }

    /// Keeps the frame of reserved number `seq` for retransmission.
    pub(crate) fn fill(&self, seq: u64, frame: FrameBuf) {
        self.outstanding.lock().fill(seq, frame);
    }

    /// Gives up a reserved number (its message was never sent).
    pub(crate) fn abandon(&self, seq: u64) {
        self.outstanding.lock().remove(seq);
        self.wake_waiters();
    }

    /// The receiver acknowledged `seqs`.
    pub(crate) fn acked(&self, seqs: &[u64]) {
        {
            self.outstanding.lock().acknowledged(seqs, Instant::now());
        }
        self.wake_waiters();
    }

    /// Ready when a reservation would succeed; registers `waker` otherwise.
    pub(crate) fn poll_room(&self, waker: &Waker) -> bool {
        let mut waiters = self.waiters.lock();
        let outstanding = self.outstanding.lock();
        if outstanding.bytes < outstanding.limit {
            return true;
        }
        if !waiters.iter().any(|w| w.will_wake(waker)) {
            waiters.push(waker.clone());
        }
        false
    }

    pub(crate) fn wake_waiters(&self) {
        for waker in std::mem::take(&mut *self.waiters.lock()) {
            waker.wake();
        }
    }

    /// Frames last queued before `now - after` that look lost, in sequence order, with their
    /// lanes; marks them queued now.
    ///
    /// On a live connection nothing is lost (TCP), and a connection that ends has its lane's
    /// unacknowledged frames queued first on the next one (`unacked_on`): what this catches is
    /// emulated or injected loss. A frame was lost for sure when a later frame on its lane was
    /// acknowledged (a lane is one ordered stream, acknowledged in order): it goes again, even
    /// into a busy lane. Otherwise only the oldest unacknowledged frame of a lane goes again:
    /// once nothing was acknowledged on that lane for `after` and the lane is `idle` (nothing
    /// queued or being written), or after [`HELD_ROUNDS_MAX`] rounds in any case. A slow
    /// receiver may still be working through the rest (read, or still in its socket): copying
    /// everything unacknowledged again every round would pile copies up behind it, while one
    /// frame per lane now and then costs nothing and leaves no loss unrepaired for long. Lost
    /// frames at the end of a lane thus go again one per round or so.
    /// `idle` runs under this state's lock, so it must take no lock a sender may hold while
    /// reserving a number (a send queue's).
    pub(crate) fn due(
        &self,
        now: Instant,
        after: Duration,
        mut idle: impl FnMut((usize, usize)) -> bool,
    ) -> Vec<((usize, usize), FrameBuf)> {
        let mut outstanding = self.outstanding.lock();
        let Outstanding { frames, acked_on, .. } = &mut *outstanding;
        let mut lanes_seen = BTreeSet::new();
        let mut picked = Vec::new();
        for (&seq, u) in frames.iter_mut() {
            if u.frame.is_empty() {
                continue;
            }
            let oldest_of_lane = lanes_seen.insert(u.lane);
            if now.duration_since(u.sent) < after {
                continue;
            }
            let acked = acked_on.get(&u.lane);
            let overtaken = acked.is_some_and(|&(highest, _)| highest > seq);
            let send = overtaken
                || (oldest_of_lane && {
                    let quiet = acked.is_none_or(|&(_, at)| now.duration_since(at) >= after);
                    if (quiet && idle(u.lane)) || u.held >= HELD_ROUNDS_MAX {
                        true
                    } else {
                        u.held += 1;
                        false
                    }
                });
            if send {
                u.held = 0;
                u.sent = now;
                picked.push((u.lane, u.frame.clone()));
            }
        }
        picked
    }

    /// Every unacknowledged frame of `lane`, in sequence order, marked queued now: what a lane
    /// that lost its connection sends first on the next one, so a retransmission does not
    /// arrive after messages sent later on the same lane (acknowledged sends keep to their own
    /// lane: see `Peer::pick`).
    pub(crate) fn unacked_on(&self, lane: (usize, usize), now: Instant) -> Vec<FrameBuf> {
        let mut outstanding = self.outstanding.lock();
        let mut frames = Vec::new();
        for u in outstanding.frames.values_mut().filter(|u| u.lane == lane && !u.frame.is_empty()) {
            u.sent = now;
            u.held = 0;
            frames.push(u.frame.clone());
        }
        frames
    }

    /// The floor last told to the receiver, to tell it again (a floor is sent once, on the
    /// control connection, and may be lost with it); `None` before any acknowledged traffic.
    pub(crate) fn floor_to_repeat(&self) -> Option<u64> {
        Some(self.floor_sent.load(Ordering::Relaxed)).filter(|&floor| floor > 1)
    }

    /// The floor to tell the receiver, if it rose since it was last told.
    pub(crate) fn new_floor(&self) -> Option<u64> {
        let floor = self.outstanding.lock().floor();
        (self.floor_sent.fetch_max(floor, Ordering::Relaxed) < floor).then_some(floor)
    }

    /// Messages waiting for their acknowledgement.
    pub(crate) fn unacked(&self) -> usize {
        self.outstanding.lock().frames.len()
    }

    /// Records an arriving number (see [`Arrival`]).
    pub(crate) fn arrival(&self, seq: u64) -> Arrival {
        self.delivered.lock().arrival(seq)
    }

    /// Records an arriving number; false for a duplicate or one out of the window.
    #[cfg(test)]
    pub(crate) fn first_time(&self, seq: u64) -> bool {
        self.arrival(seq) == Arrival::First
    }

    /// The sender's floor arrived.
    pub(crate) fn advance_to(&self, floor: u64) {
        self.delivered.lock().advance_to(floor);
    }

    /// Numbers remembered above the receiver's watermark.
    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.delivered.lock().above.len()
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
            let state = AckState::new(1 << 20);
            let mut seen = std::collections::HashSet::new();
            for seq in &order {
                prop_assert_eq!(state.first_time(*seq), seen.insert(*seq));
            }
            for seq in 1..200 {
                state.first_time(seq);
            }
            prop_assert_eq!(state.remembered(), 0);
        }

        /// A floor forgets what lies below it and keeps exactly-once above it.
        #[test]
        fn floor_trims_and_keeps_exactly_once(
            order in proptest::collection::vec(1u64..300, 0..300),
            floor in 1u64..300,
        ) {
            let state = AckState::new(1 << 20);
            for seq in &order {
                state.first_time(*seq);
            }
            state.advance_to(floor);
            prop_assert!(state.delivered.lock().above.iter().all(|s| *s > floor));
            if floor > 1 {
                prop_assert!(!state.first_time(floor - 1));
            }
            let fresh = 400;
            prop_assert!(state.first_time(fresh));
            prop_assert!(!state.first_time(fresh));
        }
    }

    /// A frame overtaken on its lane by an acknowledged later one was lost: it goes again even
    /// into a busy lane. A lane's oldest frame waits while its lane is busy or acknowledgements
    /// for the lane keep coming, but only so many rounds.
    #[test]
    fn only_frames_that_look_lost_are_sent_again() {
        let state = AckState::new(1 << 20);
        let frame = || {
            let mut frame = FrameBuf::default();
            frame.inline().extend_from_slice(&[0; 6]);
            frame
        };
        let mut seqs = Vec::new();
        for lane in [(1, 0), (1, 0), (1, 1), (1, 0), (1, 0)] {
            let seq = state.reserve(lane).unwrap();
            state.fill(seq, frame());
            seqs.push(seq);
        }
        let period = Duration::from_millis(100);
        let busy = |_| false;
        let idle = |_| true;
        std::thread::sleep(period * 2);
        // On lane (1, 0) the fourth frame was acknowledged just now: the two before it were lost,
        // the fifth may still be on its way. Lane (1, 1) never heard anything, and is busy.
        state.acked(&[seqs[3]]);
        let now = Instant::now();
        let sent: Vec<_> = state.due(now, period, busy).into_iter().map(|(lane, _)| lane).collect();
        assert_eq!(sent, vec![(1, 0), (1, 0)], "the overtaken frames, into a busy lane");
        // Idle now: lane (1, 1) heard nothing for a period, so its frame goes; lane (1, 0) heard an
        // acknowledgement just now, so its fifth frame waits.
        let sent: Vec<_> = state.due(now, period, idle).into_iter().map(|(lane, _)| lane).collect();
        assert_eq!(sent, vec![(1, 1)]);
        // A lane whose acknowledgements keep coming (or that stays busy) holds back its oldest
        // frame only so many rounds.
        state.acked(&[seqs[0], seqs[1]]);
        let mut rounds = 0;
        let later = now + period * 2;
        loop {
            let sent: Vec<_> = state.due(later, period, busy).into_iter().map(|(lane, _)| lane).collect();
            rounds += 1;
            if sent.contains(&(1, 0)) {
                break;
            }
            assert!(rounds <= HELD_ROUNDS_MAX as usize + 1, "the lane's oldest frame was never sent again");
        }
        assert!(rounds > 1, "sent at once into a busy lane");
    }

    /// A frame of six bytes.
    fn six() -> FrameBuf {
        let mut frame = FrameBuf::default();
        frame.inline().extend_from_slice(&[0; 6]);
        frame
    }

    #[test]
    fn reserve_fill_ack_and_floor() {
        let state = AckState::new(10);
        let a = state.reserve((1, 0)).unwrap();
        state.fill(a, six());
        let b = state.reserve((1, 0)).unwrap();
        state.fill(b, six());
        assert_eq!(state.reserve((1, 0)), None, "12 bytes unacked, limit 10");
        let now = Instant::now();
        let idle = |_| true;
        assert_eq!(state.due(now, Duration::from_secs(1), idle).len(), 0);
        // Not into a lane whose queue still holds frames (for up to `HELD_ROUNDS_MAX` rounds).
        let later = now + Duration::from_secs(2);
        for _ in 0..5 {
            assert_eq!(state.due(later, Duration::from_secs(1), |_| false).len(), 0);
        }
        assert_eq!(state.due(later, Duration::from_secs(1), idle).len(), 1, "the lane's oldest");
        assert_eq!(state.due(later + Duration::from_secs(2), Duration::from_secs(1), idle).len(), 1);
        assert_eq!(state.new_floor(), None, "floor is still 1");
        state.acked(&[a, 99]);
        assert_eq!(state.unacked(), 1);
        assert_eq!(state.new_floor(), Some(b));
        let c = state.reserve((1, 0)).unwrap();
        state.abandon(c);
        state.acked(&[b]);
        assert_eq!(state.new_floor(), Some(c + 1), "an abandoned number does not hold the floor");
        assert_eq!(state.new_floor(), None);
    }

    #[test]
    fn control_numbers_ignore_the_bound_and_void_signals_can_be_given_up() {
        let state = AckState::new(10);
        let message = state.reserve((1, 0)).unwrap();
        state.fill(message, six());
        let signals: Vec<u64> = (0..3).map(|i| state.reserve_control((0, 0), i != 1)).collect();
        for &seq in &signals {
            state.fill(seq, six());
        }
        assert_eq!(state.reserve((1, 0)), None, "24 bytes unacked, limit 10");
        assert_eq!(state.unacked(), 4);
        assert_eq!(state.abandon_void(), 2);
        assert_eq!(state.unacked(), 2, "the message and the signal kept on a loss are left");
        state.acked(&[message, signals[1]]);
        assert_eq!(state.new_floor(), Some(signals[2] + 1), "given-up numbers do not hold the floor");
    }

    #[test]
    fn an_abandoned_gap_does_not_pin_the_receivers_memory() {
        let receiver = AckState::new(1 << 20);
        // Number 1 was abandoned by the sender; 2..1000 arrive.
        for seq in 2..1000 {
            assert!(receiver.first_time(seq));
        }
        assert_eq!(receiver.remembered(), 998);
        receiver.advance_to(2);
        assert_eq!(receiver.remembered(), 0);
        assert!(!receiver.first_time(500));
    }

    #[test]
    fn a_reservation_dropped_unfilled_is_given_up() {
        let state = AckState::new(1 << 20);
        let seq = state.reserve((1, 0)).unwrap();
        drop(Reserved::new(&state, seq));
        assert_eq!(state.unacked(), 0);
        let seq = state.reserve((1, 0)).unwrap();
        let mut frame = FrameBuf::default();
        frame.inline().extend_from_slice(&[1, 2, 3]);
        Reserved::new(&state, seq).fill(frame);
        assert_eq!(state.unacked(), 1);
    }

    #[test]
    fn numbers_far_ahead_are_refused_unrecorded() {
        let receiver = AckState::new(1 << 20);
        assert_eq!(receiver.arrival(1 + AHEAD_MAX), Arrival::OutOfWindow);
        assert_eq!(receiver.arrival(u64::MAX), Arrival::OutOfWindow);
        assert_eq!(receiver.remembered(), 0);
        assert_eq!(receiver.arrival(AHEAD_MAX), Arrival::First);
        // A floor at the very top, and the top number itself: no overflow.
        receiver.advance_to(u64::MAX);
        assert_eq!(receiver.arrival(u64::MAX), Arrival::First);
        assert_eq!(receiver.arrival(u64::MAX), Arrival::Duplicate);
    }
}
