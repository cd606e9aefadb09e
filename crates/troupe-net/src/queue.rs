//! The bounded send queue of one lane (one connection slot of a channel to a peer).
//!
//! Senders encode frames straight into the queue's [`FrameBuf`] under a short lock; the lane's
//! writer swaps the whole buffer out and writes it with one (vectored) syscall, so a burst of
//! small messages costs one write and a large attached payload is never copied. The queue outlives connections: bytes queued while a lane
//! reconnects are written on the next connection.
//!
//! The bound is in bytes: a send is refused (`Full`) once `capacity` bytes wait, so the
//! queue holds at most `capacity` plus one message. Senders refused this way register a waker
//! and are woken when the writer takes the buffer.
//!
//! Urgent frames (asks and replies, whose latency is the round trip) need not wait for the
//! writer task to be scheduled: while the lane's connection is plain TCP and nothing is queued or
//! being written, [`SendQueue::push_now`] writes the frame to the socket from the sender's own
//! thread. Whatever the socket does not take at once stays at the front of the queue for the
//! writer of the same connection. A `writing` token makes sure one party writes at a time, which
//! keeps the bytes in push order.
//!
//! A monotonic lane keeps at most one queued message per target actor: a newer message for the
//! same target replaces the older one that has not been written yet (Partisan's monotonic
//! channels, for state that supersedes itself).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Waker;

use parking_lot::Mutex;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Notify;
use troupe_actor::ActorId;
use troupe_wire::{encode_frame, FrameKind};

use crate::framebuf::FrameBuf;

/// Why a frame was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueueRefusal {
    /// `capacity` bytes are waiting.
    Full,
    /// The lane was shut down.
    Closed,
}

/// What [`SendQueue::take`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Taken {
    /// Frames were moved out; the caller writes them, then calls [`SendQueue::written`].
    Frames,
    /// Nothing to write now (empty, or a sender is writing inline); wait for `ready`.
    Nothing,
    /// The queue is closed and empty.
    Closed,
}

/// Numbers connections, so a partly written frame never goes to a later connection.
static GENERATIONS: AtomicU64 = AtomicU64::new(1);

struct State {
    /// The rest of a frame an inline write left unfinished: written before `buf`, and only to
    /// the connection it was started on (cleared when that connection detaches).
    front: FrameBuf,
    buf: FrameBuf,
    /// Monotonic lanes: the latest frame per target, in first-queued order.
    latest: Option<Latest>,
    waiters: Vec<Waker>,
    closed: bool,
    /// The connection (generation) someone is writing to: the writer task or an inline sender.
    writing: Option<u64>,
    /// The generation of the lane's current connection.
    generation: u64,
    /// That connection's socket, when it is plain TCP and attached: senders may write to it.
    direct: Option<Arc<OwnedWriteHalf>>,
    /// Messages admitted by `push` (counted here, under the lock the push holds anyway, rather
    /// than on a node-wide counter every sender would contend on).
    messages: u64,
}

#[derive(Default)]
struct Latest {
    frames: HashMap<ActorId, FrameBuf>,
    order: Vec<ActorId>,
    bytes: usize,
    replaced: u64,
}

/// A lane's send queue.
pub(crate) struct SendQueue {
    state: Mutex<State>,
    capacity: usize,
    /// Wakes the writer when the queue goes from empty to not empty.
    pub(crate) ready: Notify,
    /// Bytes its writers (and senders writing inline) got into a socket so far: when a backlog
    /// drains, however slowly, the other side is alive.
    pub(crate) moved: AtomicU64,
    /// Set when a push that ignores the bound was refused at [`OVERFLOW_FACTOR`] times it (at
    /// least [`OVERFLOW_MIN`]).
    overflowed: AtomicBool,
}

/// Pushes that ignore the bound (replies, acks, pongs, control messages, retransmissions: what the
/// other side asks for, or what must not be lost to a full queue) are still refused once the
/// queue holds this many times its bound: a peer that keeps asking and never reads the answers
/// must not grow our memory without end (see [`SendQueue::overflowed`]). Generous, because
/// replies count too: 128 concurrent asks answered with 512 KiB each wait as 64 MiB on one
/// connection when the asker reads slowly (Partisan's echo benchmark with parallelism 1).
pub(crate) const OVERFLOW_FACTOR: usize = 64;

/// The overflow mark is never below this, however small the bound (a control connection with a
/// 4 KiB bound still takes a burst of thousands of Downs).
pub(crate) const OVERFLOW_MIN: usize = 64 << 20;

impl SendQueue {
    pub(crate) fn new(capacity: usize, monotonic: bool) -> Self {
        SendQueue {
            state: Mutex::new(State {
                front: FrameBuf::default(),
                writing: None,
                generation: 0,
                direct: None,
                buf: FrameBuf::default(),
                latest: monotonic.then(Latest::default),
                waiters: Vec::new(),
                closed: false,
                messages: 0,
            }),
            capacity,
            ready: Notify::new(),
            moved: AtomicU64::new(0),
            overflowed: AtomicBool::new(false),
        }
    }

    /// Appends one frame written by `write` (which appends to the buffer and may fail, leaving the
    /// buffer as it was). For monotonic lanes, `target` replaces an older queued frame.
    pub(crate) fn push<E>(
        &self,
        target: Option<ActorId>,
        write: impl FnOnce(&mut FrameBuf) -> Result<(), E>,
    ) -> Result<Result<(), E>, QueueRefusal> {
        self.push_inner(target, true, write)
    }

    /// Like `push` on a monotonic lane, for a message to `target` that must not be replaced (an
    /// acknowledged one): it is queued in order with everything else, and the older state queued
    /// for `target` (which would be written after it) is dropped as superseded.
    pub(crate) fn push_superseding<E>(
        &self,
        target: ActorId,
        write: impl FnOnce(&mut FrameBuf) -> Result<(), E>,
    ) -> Result<Result<(), E>, QueueRefusal> {
        let mut state = self.state.lock();
        if let Some(latest) = &mut state.latest {
            if let Some(old) = latest.frames.remove(&target) {
                latest.bytes -= old.len();
                latest.replaced += 1;
                latest.order.retain(|t| *t != target);
            }
        }
        self.push_locked(state, None, true, write)
    }

    /// Appends one whole frame of `kind` with `payload`, ignoring the bound (acks, pongs, control
    /// messages: small, and never to be lost to a full queue). False when closed or past the
    /// overflow mark ([`OVERFLOW_FACTOR`]).
    pub(crate) fn push_frame(&self, kind: FrameKind, channel: u16, payload: &[u8]) -> bool {
        matches!(
            self.push_unbounded(|buf| encode_frame(buf.inline(), kind, 0, channel, payload, usize::MAX)),
            Some(Ok(()))
        )
    }

    /// Appends one whole frame of `kind` with `payload` if the queue has room (the bound applies,
    /// as for `push`). False when full or closed.
    pub(crate) fn try_push_frame(&self, kind: FrameKind, channel: u16, payload: &[u8]) -> bool {
        matches!(self.push(None, |buf| encode_frame(buf.inline(), kind, 0, channel, payload, usize::MAX)), Ok(Ok(())))
    }

    /// Like `push` but ignoring the bound (replies, which must not be lost to a full queue;
    /// their number is bounded by the asks waiting for them). `None` when closed or past the
    /// overflow mark ([`OVERFLOW_FACTOR`]).
    pub(crate) fn push_unbounded<E>(
        &self,
        write: impl FnOnce(&mut FrameBuf) -> Result<(), E>,
    ) -> Option<Result<(), E>> {
        self.push_inner(None, false, write).ok()
    }

    fn push_inner<E>(
        &self,
        target: Option<ActorId>,
        bounded: bool,
        write: impl FnOnce(&mut FrameBuf) -> Result<(), E>,
    ) -> Result<Result<(), E>, QueueRefusal> {
        self.push_locked(self.state.lock(), target, bounded, write)
    }

    /// `push_inner` with the lock already held.
    fn push_locked<E>(
        &self,
        mut state: parking_lot::MutexGuard<'_, State>,
        target: Option<ActorId>,
        bounded: bool,
        write: impl FnOnce(&mut FrameBuf) -> Result<(), E>,
    ) -> Result<Result<(), E>, QueueRefusal> {
        if state.closed {
            return Err(QueueRefusal::Closed);
        }
        let queued = state.buf.len() + state.latest.as_ref().map_or(0, |l| l.bytes);
        if bounded && queued >= self.capacity {
            return Err(QueueRefusal::Full);
        }
        if queued >= self.capacity.saturating_mul(OVERFLOW_FACTOR).max(OVERFLOW_MIN) {
            self.overflowed.store(true, Ordering::Relaxed);
            return Err(QueueRefusal::Full);
        }
        let was_empty = queued == 0;
        let result = match (&mut state.latest, target) {
            (Some(latest), Some(target)) => {
                let mut frame = FrameBuf::default();
                let result = write(&mut frame);
                if result.is_ok() {
                    latest.bytes += frame.len();
                    match latest.frames.insert(target, frame) {
                        Some(old) => {
                            latest.bytes -= old.len();
                            latest.replaced += 1;
                        }
                        None => latest.order.push(target),
                    }
                }
                result
            }
            _ => write(&mut state.buf),
        };
        if bounded && result.is_ok() {
            state.messages += 1;
        }
        drop(state);
        if was_empty && result.is_ok() {
            self.ready.notify_one();
        }
        Ok(result)
    }

    /// Appends already-encoded frames (retransmissions, delayed sends), ignoring the bound: they
    /// were admitted under the bound once already. False when closed or past the overflow mark
    /// ([`OVERFLOW_FACTOR`]).
    pub(crate) fn push_raw(&self, frames: &FrameBuf) -> bool {
        self.push_unbounded(|buf| {
            buf.append(frames);
            Ok::<(), ()>(())
        })
        .is_some()
    }

    /// Puts the frames `frames` returns in front of everything queued (the unacknowledged
    /// frames of a lane that reconnects: they go out before what was queued after them).
    /// `frames` runs under the queue's lock, so no frame can be queued between its snapshot and
    /// the prepend (senders take this lock, then the acknowledgement lock: the same order).
    /// Ignores the bound and the overflow mark, like retransmissions (the acknowledgement state
    /// bounds these frames). Returns how many were queued: none when closed.
    pub(crate) fn push_front_with(&self, frames: impl FnOnce() -> Vec<FrameBuf>) -> usize {
        let (queued, was_empty) = {
            let mut state = self.state.lock();
            if state.closed {
                return 0;
            }
            let frames = frames();
            if frames.is_empty() {
                return 0;
            }
            let was_empty = state.buf.is_empty();
            let mut front = FrameBuf::default();
            for frame in &frames {
                front.append(frame);
            }
            front.append(&state.buf);
            state.buf = front;
            (frames.len(), was_empty)
        };
        if was_empty {
            self.ready.notify_one();
        }
        queued
    }

    /// Like `push` (`bounded`) or `push_unbounded`, for a frame someone may wait on: when the
    /// lane is idle, its connection is plain TCP and `urgent` (asked once the frame is written)
    /// says so, the frame is written to the socket right here, without waiting for the writer
    /// task to be scheduled. Returns the push result and the bytes written inline (the caller
    /// counts them as sent).
    pub(crate) fn push_now<E>(
        &self,
        bounded: bool,
        write: impl FnOnce(&mut FrameBuf) -> Result<(), E>,
        urgent: impl FnOnce() -> bool,
    ) -> Result<(Result<(), E>, usize), QueueRefusal> {
        let mut state = self.state.lock();
        let idle = state.writing.is_none()
            && state.latest.is_none()
            && state.front.is_empty()
            && state.buf.is_empty()
            && state.direct.is_some();
        if !idle {
            return self.push_locked(state, None, bounded, write).map(|r| (r, 0));
        }
        if state.closed {
            return Err(QueueRefusal::Closed);
        }
        if let Err(e) = write(&mut state.buf) {
            return Ok((Err(e), 0));
        }
        if bounded {
            state.messages += 1;
        }
        let socket = match state.direct.as_ref() {
            Some(socket) if urgent() => socket.clone(),
            _ => {
                drop(state);
                self.ready.notify_one();
                return Ok((Ok(()), 0));
            }
        };
        let generation = state.generation;
        let mut frame = std::mem::take(&mut state.buf);
        state.writing = Some(generation);
        drop(state);
        // An error leaves the rest queued: the writer task hits the same error and ends the
        // connection, which drops the partial frame.
        let written = frame.try_write_tcp(&socket).unwrap_or(0);
        self.moved.fetch_add(written as u64, Ordering::Relaxed);
        let mut state = self.state.lock();
        if state.writing == Some(generation) {
            state.writing = None;
            if !frame.is_empty() {
                state.front = frame;
            } else {
                state.buf.recycle(frame);
            }
        }
        // Also when closed: a writer that found nothing to take while this write went on waits to
        // hear that it may end.
        let more = !state.front.is_empty() || !state.buf.is_empty() || state.closed;
        drop(state);
        if more {
            self.ready.notify_one();
        }
        Ok((Ok(()), written))
    }

    /// Makes a new connection the lane's writer, offering its socket for inline writes when it
    /// is plain TCP; returns the connection's generation (for `take`, `written`, `detach`).
    /// Whatever an earlier connection left half written (or a writer that was aborted left
    /// marked as writing) no longer applies.
    pub(crate) fn attach(&self, socket: Option<Arc<OwnedWriteHalf>>) -> u64 {
        let generation = GENERATIONS.fetch_add(1, Ordering::Relaxed);
        let mut state = self.state.lock();
        state.front = FrameBuf::default();
        state.writing = None;
        state.generation = generation;
        state.direct = socket;
        generation
    }

    /// Withdraws connection `generation` (it ended) and drops the frame left half written to
    /// it, if any.
    pub(crate) fn detach(&self, generation: u64) {
        let mut state = self.state.lock();
        if state.generation == generation {
            state.direct = None;
            state.front = FrameBuf::default();
        }
    }

    /// Ready when a push would not be refused as full; registers `waker` otherwise.
    pub(crate) fn poll_room(&self, waker: &Waker) -> Result<bool, QueueRefusal> {
        let mut state = self.state.lock();
        if state.closed {
            return Err(QueueRefusal::Closed);
        }
        let queued = state.buf.len() + state.latest.as_ref().map_or(0, |l| l.bytes);
        if queued < self.capacity {
            return Ok(true);
        }
        if !state.waiters.iter().any(|w| w.will_wake(waker)) {
            state.waiters.push(waker.clone());
        }
        Ok(false)
    }

    /// Moves everything queued into `out` (which the writer then writes, calling `written`
    /// when done) and wakes waiting senders.
    pub(crate) fn take(&self, out: &mut FrameBuf, generation: u64) -> Taken {
        let waiters = {
            let mut state = self.state.lock();
            let empty = state.front.is_empty()
                && state.buf.is_empty()
                && state.latest.as_ref().is_none_or(|l| l.order.is_empty());
            if empty {
                // Not while a sender writes inline: what the socket does not take of its frame
                // comes back to `front` for this writer (the sender notifies `ready`).
                return if state.closed && state.writing.is_none() { Taken::Closed } else { Taken::Nothing };
            }
            if state.writing.is_some() || state.generation != generation {
                // A sender is writing inline (it notifies `ready` when it is done), or this
                // writer's connection was replaced.
                return Taken::Nothing;
            }
            let state = &mut *state;
            if !state.front.is_empty() {
                out.append(&state.front);
                state.front.clear();
            }
            if out.is_empty() {
                state.buf.swap_into(out);
            } else {
                out.append(&state.buf);
                state.buf.clear();
            }
            if let Some(latest) = &mut state.latest {
                for target in latest.order.drain(..) {
                    if let Some(frame) = latest.frames.remove(&target) {
                        out.append(&frame);
                    }
                }
                latest.bytes = 0;
            }
            state.writing = Some(generation);
            std::mem::take(&mut state.waiters)
        };
        for waker in waiters {
            waker.wake();
        }
        Taken::Frames
    }

    /// The writer of connection `generation` finished writing what it took.
    pub(crate) fn written(&self, generation: u64) {
        let mut state = self.state.lock();
        if state.writing == Some(generation) {
            state.writing = None;
        }
    }

    /// Whether a push was refused because the queue held [`OVERFLOW_FACTOR`] times its bound: its
    /// peer asks for more than it reads, and must be dropped (what it asked for is lost anyway).
    pub(crate) fn overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Relaxed)
    }

    /// Whether frames wait to be written, or a writer is writing some.
    pub(crate) fn has_backlog(&self) -> bool {
        let state = self.state.lock();
        state.writing.is_some()
            || !state.front.is_empty()
            || !state.buf.is_empty()
            || state.latest.as_ref().is_some_and(|l| !l.order.is_empty())
    }

    /// Bytes waiting.
    pub(crate) fn len(&self) -> usize {
        let state = self.state.lock();
        state.buf.len() + state.latest.as_ref().map_or(0, |l| l.bytes)
    }

    /// Messages admitted by `push` so far.
    pub(crate) fn messages(&self) -> u64 {
        self.state.lock().messages
    }

    /// Messages replaced by newer ones on a monotonic lane.
    pub(crate) fn replaced(&self) -> u64 {
        self.state.lock().latest.as_ref().map_or(0, |l| l.replaced)
    }

    /// Takes no more frames, but lets the writer write what is queued: it then ends its
    /// connection's sending side (a release: see `NodeShared::release_peer`). Waiters see
    /// `Closed`.
    pub(crate) fn finish(&self) {
        self.shut(false);
    }

    /// Refuses further pushes, drops what waits and wakes every waiter (they see `Closed`).
    pub(crate) fn close(&self) {
        self.shut(true);
    }

    fn shut(&self, discard: bool) {
        let waiters = {
            let mut state = self.state.lock();
            state.closed = true;
            if discard {
                state.buf = FrameBuf::default();
                state.latest = None;
            }
            std::mem::take(&mut state.waiters)
        };
        for waker in waiters {
            waker.wake();
        }
        self.ready.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use troupe_actor::NodeId;

    fn id(serial: u64) -> ActorId {
        ActorId { node: NodeId(1), serial }
    }

    fn eight(b: &mut FrameBuf) -> Result<(), ()> {
        b.inline().extend_from_slice(&[0; 8]);
        Ok(())
    }

    #[test]
    fn try_push_frame_keeps_the_bound_push_frame_does_not() {
        let q = SendQueue::new(20, false);
        assert!(q.try_push_frame(FrameKind::Control, 1, &[7; 8]));
        assert!(q.try_push_frame(FrameKind::Control, 1, &[7; 8]), "16 bytes queued, under the bound of 20");
        assert!(!q.try_push_frame(FrameKind::Control, 1, &[7; 8]), "refused once full");
        assert!(q.push_frame(FrameKind::Control, 0, &[1]), "control frames ignore the bound");
        q.close();
        assert!(!q.try_push_frame(FrameKind::Control, 1, &[]), "refused once closed");
    }

    #[test]
    fn bound_refuses_then_admits_after_take() {
        let q = SendQueue::new(10, false);
        assert_eq!(q.push(None, eight), Ok(Ok(())));
        assert_eq!(q.push(None, eight), Ok(Ok(())));
        assert_eq!(q.push(None, eight), Err(QueueRefusal::Full));
        let mut out = FrameBuf::default();
        let generation = q.attach(None);
        assert_eq!(q.take(&mut out, generation), Taken::Frames);
        q.written(generation);
        assert_eq!(out.len(), 16);
        assert_eq!(q.len(), 0);
        assert!(q
            .push(None, |b| {
                b.inline().push(1);
                Ok::<_, ()>(())
            })
            .is_ok());
    }

    #[test]
    fn monotonic_keeps_the_latest_per_target() {
        let q = SendQueue::new(1 << 20, true);
        for v in 0..5u8 {
            q.push(Some(id(1)), |b| {
                b.inline().push(v);
                Ok::<_, ()>(())
            })
            .unwrap()
            .unwrap();
        }
        q.push(Some(id(2)), |b| {
            b.inline().push(9);
            Ok::<_, ()>(())
        })
        .unwrap()
        .unwrap();
        let mut out = FrameBuf::default();
        let generation = q.attach(None);
        q.take(&mut out, generation);
        assert_eq!(out.to_vec(), vec![4, 9]);
        assert_eq!(q.replaced(), 4);
    }

    #[test]
    fn pushes_ignoring_the_bound_stop_at_the_overflow_mark() {
        let capacity = OVERFLOW_MIN / OVERFLOW_FACTOR * 2;
        let q = SendQueue::new(capacity, false);
        let mut pushed = 0;
        while q.push_frame(FrameKind::Pong, 0, &[0; 64 << 10]) {
            pushed += 1;
            assert!(pushed < 10_000, "never refused");
        }
        assert!(q.overflowed());
        let mark = capacity * OVERFLOW_FACTOR;
        assert!(q.len() >= mark && q.len() < mark + (64 << 10) + 64, "{} against {mark}", q.len());
        // A small bound still takes OVERFLOW_MIN.
        let small = SendQueue::new(4 << 10, false);
        assert!(small.push_frame(FrameKind::Pong, 0, &vec![0; OVERFLOW_MIN / 2]));
        assert!(!small.overflowed());
    }

    #[test]
    fn a_message_that_must_not_be_replaced_supersedes_older_state_and_keeps_its_place() {
        let q = SendQueue::new(1 << 20, true);
        let byte = |v: u8| {
            move |b: &mut FrameBuf| -> Result<(), ()> {
                b.inline().push(v);
                Ok(())
            }
        };
        q.push(Some(id(1)), byte(1)).unwrap().unwrap();
        q.push(Some(id(2)), byte(2)).unwrap().unwrap();
        q.push_superseding(id(1), byte(3)).unwrap().unwrap();
        let mut out = FrameBuf::default();
        let generation = q.attach(None);
        q.take(&mut out, generation);
        // 1 was older state for the same target: dropped, not written after 3.
        assert_eq!(out.to_vec(), vec![3, 2]);
        assert_eq!(q.replaced(), 1);
    }

    /// A connected loopback pair: our write half, their read half.
    async fn pair() -> (Arc<OwnedWriteHalf>, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ours = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (theirs, _) = listener.accept().await.unwrap();
        let (read, write) = ours.into_split();
        std::mem::forget(read); // keeps our side open for the test's length
        (Arc::new(write), theirs)
    }

    /// Runs a lane writer for `q` on `socket`; notify the returned `Notify` to stop it.
    fn spawn_writer(
        socket: Arc<OwnedWriteHalf>,
        q: &Arc<SendQueue>,
    ) -> (Arc<Notify>, tokio::task::JoinHandle<std::io::Result<()>>) {
        let stop = Arc::new(Notify::new());
        let write =
            crate::conn::write_loop(crate::conn::WriteHalf::Tcp(socket), q.clone(), stop.clone(), |_| {}, || false);
        (stop, tokio::spawn(write))
    }

    fn bytes(payload: Vec<u8>) -> impl FnOnce(&mut FrameBuf) -> Result<(), ()> {
        move |b| {
            b.inline().extend_from_slice(&payload);
            Ok(())
        }
    }

    #[tokio::test]
    async fn urgent_frames_are_written_by_the_sender_when_the_lane_is_idle() {
        use tokio::io::AsyncReadExt;
        let (socket, mut theirs) = pair().await;
        let q = SendQueue::new(1 << 20, false);
        let before = q.push_now(true, bytes(vec![1; 10]), || true).unwrap();
        assert_eq!(before.1, 0, "no connection attached yet: queued for the writer");
        let mut out = FrameBuf::default();
        let generation = q.attach(Some(socket));
        assert_eq!(q.take(&mut out, generation), Taken::Frames);
        q.written(generation);
        let (result, inline) = q.push_now(true, bytes(vec![2; 10]), || false).unwrap();
        assert!(result.is_ok());
        assert_eq!(inline, 0, "not urgent: left to the writer");
        assert_eq!(q.len(), 10);
        q.take(&mut out, generation);
        q.written(generation);
        let (_, inline) = q.push_now(true, bytes(vec![3; 10]), || true).unwrap();
        assert_eq!(inline, 10, "idle lane: written by the sender");
        assert_eq!(q.len(), 0);
        let mut got = [0u8; 10];
        theirs.read_exact(&mut got).await.unwrap();
        assert_eq!(got, [3; 10]);
        // While the writer holds the lane, urgent frames queue behind what it writes.
        q.push(None, bytes(vec![4; 5])).unwrap().unwrap();
        assert_eq!(q.take(&mut out, generation), Taken::Frames);
        let (_, inline) = q.push_now(true, bytes(vec![5; 5]), || true).unwrap();
        assert_eq!(inline, 0);
        q.written(generation);
        q.detach(generation);
        let (_, inline) = q.push_now(true, bytes(vec![6; 5]), || true).unwrap();
        assert_eq!(inline, 0, "detached: no inline writes");
    }

    #[tokio::test]
    async fn a_partly_written_urgent_frame_is_finished_first_and_never_on_a_later_connection() {
        use tokio::io::AsyncReadExt;
        // Bigger than any socket buffer: the sender writes part, the writer the rest.
        let big: Vec<u8> = (0..24u32 << 20).map(|i| (i % 251) as u8).collect();
        let q = Arc::new(SendQueue::new(64 << 20, false));

        // The lane's writer runs (and has attached its socket) before the sender writes.
        let (socket, mut theirs) = pair().await;
        let (stop, writer) = spawn_writer(socket, &q);
        tokio::task::yield_now().await;
        let (_, inline) = q.push_now(true, bytes(big.clone()), || true).unwrap();
        assert!(inline > 0 && inline < big.len(), "a partial inline write: {inline}");
        q.push(None, bytes(vec![7; 1000])).unwrap().unwrap();
        let mut got = vec![0u8; big.len() + 1000];
        theirs.read_exact(&mut got).await.unwrap();
        assert!(got[..big.len()] == big[..], "the frame's rest comes first");
        assert_eq!(&got[big.len()..], &[7; 1000][..]);
        stop.notify_one();
        writer.await.unwrap().unwrap();

        // A frame left half written when its connection ends is not continued on the next one.
        let (socket, _theirs) = pair().await;
        let generation = q.attach(Some(socket));
        let (_, inline) = q.push_now(true, bytes(big.clone()), || true).unwrap();
        assert!(inline < big.len());
        q.detach(generation);
        let (socket, mut theirs) = pair().await;
        let (stop, writer) = spawn_writer(socket, &q);
        q.push(None, bytes(vec![8; 100])).unwrap().unwrap();
        let mut got = [0u8; 100];
        theirs.read_exact(&mut got).await.unwrap();
        assert_eq!(got, [8; 100]);
        stop.notify_one();
        writer.await.unwrap().unwrap();
    }

    #[test]
    fn closed_queue_refuses() {
        let q = SendQueue::new(10, false);
        q.close();
        assert_eq!(q.push(None, |_| Ok::<_, ()>(())), Err(QueueRefusal::Closed));
        let mut one = FrameBuf::default();
        one.inline().push(1);
        assert!(!q.push_raw(&one));
    }
}
