//! Bounded actor mailboxes.
//!
//! Senders push under a short lock; the actor takes everything queued in one swap and works
//! through that batch without any synchronisation. The capacity bounds the messages *waiting* in
//! the mailbox; the batch the actor has taken (itself at most one capacity's worth) no longer
//! counts, just as a message a channel receiver has taken no longer counts. So an actor holds at
//! most twice its capacity in user messages, and a sender never waits while the actor is working
//! through a batch it could refill behind.
//!
//! System messages (stop, down, supervision) live in a separate queue that the capacity does not
//! bound, so they are never blocked by a full mailbox.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Waker;

use crate::lock::SpinLock;
use crate::rare_list::RareList;

use crate::system_msg::SystemMsg;

/// Why a push was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// At capacity.
    Full,
    /// The actor no longer accepts messages.
    Closed,
}

/// What a successful push asks the caller to do.
#[must_use]
pub(crate) struct Pushed {
    /// The actor was waiting for messages: wake it.
    pub(crate) wake_actor: bool,
}

// `repr(C)`: what a push reads and writes (the queue's header and the flags) first, the rarely
// used system queue last.
#[repr(C)]
struct Shared<M> {
    queue: VecDeque<M>,
    closed: bool,
    /// Closed for good: the actor has terminated; system messages are refused too.
    gone: bool,
    blocked_senders: RareList<Waker>,
    system: VecDeque<SystemMsg>,
}

/// The sending side, shared by every reference to the actor.
// `repr(C)`: a push reads `receiver_waiting` and `capacity` and takes the lock that sits just
// before the queue's header, so all of it shares the mailbox's first cache line or two (the
// compiler's own order had put the flags after the system queue). Big on two workers: 18.6-19.2
// M msg/s before, 19.2-19.6 after (8 alternating runs); ring 17.2-18.4 M hops/s before, 18.7-19.2
// after (3 pairs).
#[repr(C)]
pub(crate) struct Mailbox<M> {
    /// Set by the actor each time it takes the waiting messages; the first push after that clears
    /// it and wakes the actor. Lets an actor go idle without taking the lock again.
    receiver_waiting: AtomicBool,
    has_system: AtomicBool,
    capacity: usize,
    shared: SpinLock<Shared<M>>,
}

impl<M> Mailbox<M> {
    pub(crate) fn new(capacity: usize) -> Self {
        Mailbox {
            shared: SpinLock::new(Shared {
                queue: VecDeque::new(),
                system: VecDeque::new(),
                closed: false,
                gone: false,
                blocked_senders: RareList::default(),
            }),
            capacity: capacity.max(1),
            has_system: AtomicBool::new(false),
            receiver_waiting: AtomicBool::new(false),
        }
    }

    /// The capacity in waiting user messages.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// User messages waiting (not yet taken by the actor).
    pub(crate) fn len(&self) -> usize {
        self.shared.lock().queue.len()
    }

    /// Queues a user message if there is room; when full and `waker` is given, registers it to be
    /// woken once the actor takes the waiting messages.
    pub(crate) fn push(&self, msg: M, waker: Option<&Waker>) -> Result<Pushed, (Refused, M)> {
        let mut shared = self.shared.lock();
        if shared.closed {
            return Err((Refused::Closed, msg));
        }
        if shared.queue.len() >= self.capacity {
            if let Some(waker) = waker {
                if !shared.blocked_senders.iter().any(|w| w.will_wake(waker)) {
                    shared.blocked_senders.push(waker.clone());
                }
            }
            return Err((Refused::Full, msg));
        }
        shared.queue.push_back(msg);
        // Under the lock, so plain loads and stores do: exactly one push after a waiting refill
        // sees the flag. The actor's lock-free check of the flag (in `Receiver::next`) is ordered
        // after this write by the wake-up itself (see `sched::task`).
        let wake_actor = self.receiver_waiting.load(Ordering::Relaxed);
        if wake_actor {
            self.receiver_waiting.store(false, Ordering::Relaxed);
        }
        drop(shared);
        Ok(Pushed { wake_actor })
    }

    /// Queues as many of `msgs` as there is room for, from the front, under one lock (a reader
    /// handing over a batch of messages for one actor). `Err` when none could be queued; the
    /// messages not queued stay in `msgs`. When nothing is waiting and all of `msgs` fits, the
    /// two queues trade buffers instead of copying.
    pub(crate) fn push_many(&self, msgs: &mut VecDeque<M>) -> Result<Pushed, Refused> {
        debug_assert!(!msgs.is_empty(), "an empty batch would wake the actor for nothing");
        let mut shared = self.shared.lock();
        if shared.closed {
            return Err(Refused::Closed);
        }
        let room = self.capacity.saturating_sub(shared.queue.len());
        if room == 0 {
            return Err(Refused::Full);
        }
        if shared.queue.is_empty() && msgs.len() <= room {
            std::mem::swap(&mut shared.queue, msgs);
        } else {
            let n = room.min(msgs.len());
            shared.queue.extend(msgs.drain(..n));
        }
        // As in `push`.
        let wake_actor = self.receiver_waiting.load(Ordering::Relaxed);
        if wake_actor {
            self.receiver_waiting.store(false, Ordering::Relaxed);
        }
        drop(shared);
        Ok(Pushed { wake_actor })
    }

    /// Queues a system message; it is never refused for capacity. Returns false when the actor is
    /// gone for good. The caller wakes the actor.
    pub(crate) fn push_system(&self, msg: SystemMsg) -> bool {
        self.push_system_then(msg, || {})
    }

    /// Queues a Kill, setting `flag` (the actor's "kill requested", which a handler waiting at
    /// an await point checks) under the same lock: whoever sees the flag and then takes this
    /// lock finds the Kill queued (see `runner::decide`, which discards the Kill of a kill that
    /// already ended the incarnation). False when the actor is gone for good.
    pub(crate) fn push_kill(&self, flag: &AtomicBool) -> bool {
        self.push_system_then(SystemMsg::Kill, || flag.store(true, Ordering::SeqCst))
    }

    /// `push_system`, running `first` under the lock before anything else.
    fn push_system_then(&self, msg: SystemMsg, first: impl FnOnce()) -> bool {
        let mut shared = self.shared.lock();
        first();
        if shared.gone {
            return false;
        }
        shared.system.push_back(msg);
        self.has_system.store(true, Ordering::Release);
        true
    }

    /// Puts `msgs` back in front of the system queue, in their order (messages an actor kept
    /// between two incarnations). Dropped when the actor is gone for good.
    pub(crate) fn requeue_system(&self, msgs: Vec<SystemMsg>) {
        if msgs.is_empty() {
            return;
        }
        let mut shared = self.shared.lock();
        if shared.gone {
            return;
        }
        for msg in msgs.into_iter().rev() {
            shared.system.push_front(msg);
        }
        self.has_system.store(true, Ordering::Release);
    }

    /// Removes the queued system messages `unwanted` picks.
    pub(crate) fn discard_system(&self, unwanted: impl Fn(&SystemMsg) -> bool) {
        let mut shared = self.shared.lock();
        shared.system.retain(|m| !unwanted(m));
        if shared.system.is_empty() {
            self.has_system.store(false, Ordering::Release);
        }
    }

    /// Cheap check used between messages.
    pub(crate) fn has_system(&self) -> bool {
        self.has_system.load(Ordering::Acquire)
    }

    pub(crate) fn pop_system(&self) -> Option<SystemMsg> {
        let mut shared = self.shared.lock();
        let msg = shared.system.pop_front();
        if shared.system.is_empty() {
            self.has_system.store(false, Ordering::Release);
        }
        msg
    }

    /// Moves every waiting user message into `batch` (which must be empty) and wakes senders
    /// waiting for room. With `wait`, the next push wakes the actor.
    fn refill(&self, batch: &mut VecDeque<M>, wait: bool) {
        let blocked = {
            let mut shared = self.shared.lock();
            std::mem::swap(&mut shared.queue, batch);
            if wait {
                self.receiver_waiting.store(true, Ordering::Release);
            }
            if batch.is_empty() || shared.blocked_senders.is_empty() {
                Vec::new()
            } else {
                shared.blocked_senders.take()
            }
        };
        for waker in blocked {
            waker.wake();
        }
    }

    fn wake_blocked_senders(&self) {
        let wakers = self.shared.lock().blocked_senders.take();
        for waker in wakers {
            waker.wake();
        }
    }

    /// Refuses further user messages (system messages are still accepted). Messages already
    /// accepted stay queued for the actor.
    pub(crate) fn close_for_senders(&self) {
        self.shared.lock().closed = true;
        self.wake_blocked_senders();
    }

    /// Closes the mailbox for good and returns what nobody will handle.
    pub(crate) fn close_and_drain(&self) -> (VecDeque<M>, VecDeque<SystemMsg>) {
        let drained = {
            let mut shared = self.shared.lock();
            shared.closed = true;
            shared.gone = true;
            self.has_system.store(false, Ordering::Release);
            (std::mem::take(&mut shared.queue), std::mem::take(&mut shared.system))
        };
        self.wake_blocked_senders();
        drained
    }

    /// True once [`close_and_drain`](Self::close_and_drain) ran: the actor is gone for good.
    pub(crate) fn is_gone(&self) -> bool {
        self.shared.lock().gone
    }

    /// Reopens a mailbox closed by [`close_for_senders`](Self::close_for_senders) (after a restart).
    pub(crate) fn reopen(&self) {
        self.shared.lock().closed = false;
    }
}

/// The actor's side of its mailbox: the batch it is working through.
pub(crate) struct Receiver<M> {
    batch: VecDeque<M>,
    /// The mailbox will wake the actor on the next push (set by a waiting refill).
    armed: bool,
}

impl<M> Receiver<M> {
    pub(crate) fn new() -> Self {
        Receiver { batch: VecDeque::new(), armed: false }
    }

    /// The next user message, if any is queued. With `wait`, an empty result means the actor may
    /// go idle: the next push wakes it.
    #[inline]
    pub(crate) fn next(&mut self, mailbox: &Mailbox<M>, wait: bool) -> Option<M> {
        if let Some(msg) = self.batch.pop_front() {
            return Some(msg);
        }
        if wait && self.armed && mailbox.receiver_waiting.load(Ordering::Acquire) {
            // Nothing was pushed since the last refill (a push clears the flag).
            return None;
        }
        mailbox.refill(&mut self.batch, wait);
        self.armed = wait;
        if self.batch.capacity() > 4096 && self.batch.len() < 64 {
            // Do not keep a burst's worth of memory in an idle actor.
            self.batch.shrink_to(64);
        }
        self.batch.pop_front()
    }

    /// Removes the rest of the current batch (when the actor terminates).
    pub(crate) fn drain(&mut self) -> VecDeque<M> {
        std::mem::take(&mut self.batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_fifo() {
        let mailbox = Mailbox::new(3);
        let mut rx = Receiver::new();
        assert!(rx.next(&mailbox, true).is_none());
        assert!(mailbox.push(1, None).map(|p| p.wake_actor).unwrap_or(false), "first push wakes the waiting actor");
        assert!(!mailbox.push(2, None).map(|p| p.wake_actor).unwrap_or(true), "only the first push wakes");
        assert!(mailbox.push(3, None).is_ok());
        assert!(matches!(mailbox.push(4, None), Err((Refused::Full, 4))));
        assert_eq!(mailbox.len(), 3);
        assert_eq!(rx.next(&mailbox, true), Some(1));
        // The actor took the batch: room again, while it works through it.
        assert_eq!(mailbox.len(), 0);
        assert!(mailbox.push(4, None).is_ok());
        assert_eq!(rx.next(&mailbox, true), Some(2));
        assert_eq!(rx.next(&mailbox, true), Some(3));
        assert_eq!(rx.next(&mailbox, true), Some(4));
        assert_eq!(rx.next(&mailbox, true), None);
        assert!(mailbox.push(5, None).is_ok());
        mailbox.close_for_senders();
        assert!(matches!(mailbox.push(6, None), Err((Refused::Closed, 6))));
        assert_eq!(rx.next(&mailbox, true), Some(5));
    }

    #[test]
    fn push_many_fills_to_capacity_in_order() {
        let mailbox = Mailbox::new(4);
        let mut rx = Receiver::new();
        assert!(rx.next(&mailbox, true).is_none());
        let mut run: VecDeque<u32> = (1..=3).collect();
        assert!(mailbox.push_many(&mut run).map(|p| p.wake_actor).unwrap_or(false), "wakes the waiting actor");
        assert!(run.is_empty());
        let mut run: VecDeque<u32> = (4..=6).collect();
        assert!(!mailbox.push_many(&mut run).map(|p| p.wake_actor).unwrap_or(true), "only the first push wakes");
        assert_eq!(run, VecDeque::from([5, 6]), "only one fitted");
        assert!(matches!(mailbox.push_many(&mut run), Err(Refused::Full)));
        assert_eq!(rx.next(&mailbox, true), Some(1));
        assert!(mailbox.push_many(&mut run).is_ok());
        assert!(run.is_empty());
        let got: Vec<u32> = std::iter::from_fn(|| rx.next(&mailbox, true)).collect();
        assert_eq!(got, vec![2, 3, 4, 5, 6]);
        mailbox.close_for_senders();
        let mut run: VecDeque<u32> = VecDeque::from([7]);
        assert!(matches!(mailbox.push_many(&mut run), Err(Refused::Closed)));
        assert_eq!(run, VecDeque::from([7]), "a refused run is left to the caller");
    }
}

#[cfg(test)]
mod stress {
    use super::*;
    use std::sync::{Arc, Condvar, Mutex};
    use std::time::Duration;

    /// Senders on three threads, the receiver on a fourth that sleeps whenever `next` says it may
    /// go idle, until a push reports that it must be woken: every message arrives, and the
    /// receiver is never left asleep with messages waiting.
    #[test]
    fn no_wake_is_lost_under_concurrent_pushes() {
        let mailbox = Arc::new(Mailbox::new(1 << 20));
        let woken = Arc::new((Mutex::new(false), Condvar::new()));
        let (senders, per) = (3u64, 200_000u64);
        let handles: Vec<_> = (0..senders)
            .map(|_| {
                let (mailbox, woken) = (mailbox.clone(), woken.clone());
                std::thread::spawn(move || {
                    for i in 0..per {
                        if mailbox.push(i, None).expect("room").wake_actor {
                            *woken.0.lock().expect("lock") = true;
                            woken.1.notify_one();
                        }
                        if i % 64 == 0 {
                            std::thread::yield_now();
                        }
                    }
                })
            })
            .collect();
        let mut rx = Receiver::new();
        let mut got = 0u64;
        while got < senders * per {
            match rx.next(&mailbox, true) {
                Some(_) => got += 1,
                None => {
                    let flag = woken.0.lock().expect("lock");
                    let (mut flag, wait) =
                        woken.1.wait_timeout_while(flag, Duration::from_secs(10), |woken| !*woken).expect("lock");
                    assert!(!wait.timed_out(), "left asleep after {got} messages");
                    *flag = false;
                }
            }
        }
        for handle in handles {
            handle.join().expect("sender");
        }
    }
}
