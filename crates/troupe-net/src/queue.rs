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
//! A monotonic lane keeps at most one queued message per target actor: a newer message for the
//! same target replaces the older one that has not been written yet (Partisan's monotonic
//! channels, for state that supersedes itself).

use std::collections::HashMap;
use std::task::Waker;

use parking_lot::Mutex;
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

struct State {
    buf: FrameBuf,
    /// Monotonic lanes: the latest frame per target, in first-queued order.
    latest: Option<Latest>,
    waiters: Vec<Waker>,
    closed: bool,
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
}

impl SendQueue {
    pub(crate) fn new(capacity: usize, monotonic: bool) -> Self {
        SendQueue {
            state: Mutex::new(State {
                buf: FrameBuf::default(),
                latest: monotonic.then(Latest::default),
                waiters: Vec::new(),
                closed: false,
                messages: 0,
            }),
            capacity,
            ready: Notify::new(),
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

    /// Appends one whole frame of `kind` with `payload`, ignoring the bound (acks, pongs, control
    /// messages: small, and never to be lost to a full queue). False when closed.
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
    /// their number is bounded by the asks waiting for them). `None` when closed.
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
        let mut state = self.state.lock();
        if state.closed {
            return Err(QueueRefusal::Closed);
        }
        let queued = state.buf.len() + state.latest.as_ref().map_or(0, |l| l.bytes);
        if bounded && queued >= self.capacity {
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
    /// were admitted under the bound once already. False when closed.
    pub(crate) fn push_raw(&self, frames: &FrameBuf) -> bool {
        self.push_unbounded(|buf| {
            buf.append(frames);
            Ok::<(), ()>(())
        })
        .is_some()
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

    /// Moves everything queued into `out` (which the writer then writes) and wakes waiting
    /// senders. Returns false when the queue is closed and empty.
    pub(crate) fn take(&self, out: &mut FrameBuf) -> bool {
        let waiters = {
            let mut state = self.state.lock();
            if state.buf.is_empty() && state.latest.as_ref().is_none_or(|l| l.order.is_empty()) {
                return !state.closed;
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
            std::mem::take(&mut state.waiters)
        };
        for waker in waiters {
            waker.wake();
        }
        true
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

    /// Refuses further pushes, drops what waits and wakes every waiter (they see `Closed`).
    pub(crate) fn close(&self) {
        let waiters = {
            let mut state = self.state.lock();
            state.closed = true;
            state.buf = FrameBuf::default();
            state.latest = None;
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
        assert!(q.take(&mut out));
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
        q.take(&mut out);
        assert_eq!(out.to_vec(), vec![4, 9]);
        assert_eq!(q.replaced(), 4);
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
