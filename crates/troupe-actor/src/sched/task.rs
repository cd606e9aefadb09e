//! A schedulable task: one pinned future plus an atomic scheduling state.
//!
//! Every actor is exactly one task. The state machine guarantees that a task is in at most one run
//! queue and is polled by at most one worker at a time, and that a wake-up arriving while the task
//! runs is never lost (it is recorded as `NOTIFIED` and the task is polled again).
//!
//! Every change of the state is a read-modify-write, never a plain store, and that is what makes
//! "wake-up" mean "the next poll sees what the waker wrote". A waker writes its data (say, a
//! message and the mailbox's "actor is waiting" flag) and then `fetch_or`s `NOTIFIED` with release
//! ordering; a poll begins by `swap`ping in `RUNNING` with acquire ordering. Read-modify-writes of
//! one atomic are totally ordered and each continues the release sequence of the ones before it,
//! so either the waker's `fetch_or` comes first, and the poll synchronizes with it and sees its
//! data; or the poll's `swap` comes first, and the waker finds `RUNNING` and makes the task poll
//! again. With a plain store where the `swap` is (the first version of this module), a waker that
//! found the task already queued synchronized with nothing: on x86 the poll could read the
//! mailbox flag from before the waker's write (store buffering), park, and leave the actor idle
//! with messages queued. A locked instruction the mailbox happened to execute after the flag
//! write hid it; once the mailbox cleared its flag inside its lock instead, `tests/stress.rs`
//! (`busy_actors_pinging_at_random_never_stall`) stalled in every run.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use crate::lock::SpinLock;

use super::PoolShared;

/// Not queued and not running: waiting for a wake-up.
const IDLE: u8 = 0;
/// Being polled by a worker.
const RUNNING: u8 = 1;
/// Woken: on its own (`NOTIFIED`) the task is in a run queue; with `RUNNING` it is polled again
/// once the current poll ends.
const NOTIFIED: u8 = 2;
/// The future finished; wake-ups are ignored.
const COMPLETE: u8 = 4;

/// Something a worker can run.
pub(crate) trait Runnable: Send + Sync + 'static {
    /// Poll the task once (called by a worker after taking it from a queue).
    fn run(self: Arc<Self>);
}

/// The task behind an actor (or any future handed to a [`StagePool`](super::StagePool)).
pub(crate) struct Task<F> {
    state: AtomicU8,
    // The lock is never contended: the state machine lets only the worker that moved the task
    // from NOTIFIED to RUNNING touch the future. It is here so this module needs no `unsafe`,
    // and it costs one atomic operation per poll.
    future: SpinLock<Option<Live<F>>>,
    pool: Arc<PoolShared>,
}

/// A task's future and the waker it is polled with (created once, dropped with the future, which
/// breaks the task → waker → task cycle when the task completes).
struct Live<F> {
    future: Pin<Box<F>>,
    waker: Option<Waker>,
}

impl<F> Task<F>
where
    F: Future<Output = ()> + Send + 'static,
{
    /// Wraps `future` in a task owned by `pool`; the task starts IDLE (not yet scheduled).
    pub(crate) fn new(future: F, pool: Arc<PoolShared>) -> Arc<Self> {
        Arc::new(Task {
            state: AtomicU8::new(IDLE),
            future: SpinLock::new(Some(Live { future: Box::pin(future), waker: None })),
            pool,
        })
    }

    /// Marks the task runnable and queues it, unless it already is queued, running or complete.
    pub(crate) fn schedule(self: &Arc<Self>) {
        if self.state.fetch_or(NOTIFIED, Ordering::AcqRel) == IDLE {
            self.pool.push(self.clone(), false);
        }
    }
}

impl<F> Runnable for Task<F>
where
    F: Future<Output = ()> + Send + 'static,
{
    fn run(self: Arc<Self>) {
        let was = self.state.swap(RUNNING, Ordering::AcqRel);
        debug_assert_eq!(was, NOTIFIED, "a task runs only after being queued");
        let mut slot = self.future.lock();
        let done = match slot.as_mut() {
            Some(live) => {
                let waker = live.waker.get_or_insert_with(|| Waker::from(self.clone()));
                let mut cx = Context::from_waker(waker);
                live.future.as_mut().poll(&mut cx).is_ready()
            }
            None => true,
        };
        if done {
            // Drop the future (and everything the actor owned) outside the scheduling race.
            let future = slot.take();
            drop(slot);
            self.state.swap(COMPLETE, Ordering::AcqRel);
            drop(future);
            return;
        }
        drop(slot);
        if self.state.compare_exchange(RUNNING, IDLE, Ordering::AcqRel, Ordering::Acquire).is_err() {
            // Woken while running. A task that yielded its turn goes to the global queue (fair to
            // everyone); one woken by a message or a reply stays on this worker, where it is hot.
            // Keeps `NOTIFIED` (queued), so no waker queues it a second time.
            self.state.fetch_and(!RUNNING, Ordering::AcqRel);
            self.pool.push(self.clone(), take_yield_request());
        }
    }
}

impl<F> Wake for Task<F>
where
    F: Future<Output = ()> + Send + 'static,
{
    fn wake(self: Arc<Self>) {
        self.schedule();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.schedule();
    }
}

thread_local! {
    /// Set by [`YieldNow`] when it gives up its turn, read by the worker after the poll.
    static YIELD_REQUESTED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn take_yield_request() -> bool {
    YIELD_REQUESTED.with(|y| y.replace(false))
}

/// A future that returns `Pending` once, after asking to be polled again: gives other tasks a
/// turn (the task goes to the back of the global queue).
pub(crate) struct YieldNow(bool);

impl YieldNow {
    pub(crate) fn new() -> Self {
        YieldNow(false)
    }
}

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            YIELD_REQUESTED.with(|y| y.set(true));
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}
