//! A schedulable task: one pinned future plus an atomic scheduling state.
//!
//! Every actor is exactly one task. The state machine guarantees that a task is in at most one run
//! queue and is polled by at most one worker at a time, and that a wake-up arriving while the task
//! runs is never lost (it is recorded as `NOTIFIED` and the task is polled again).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use crate::lock::SpinLock;

use super::PoolShared;

/// Not queued and not running: waiting for a wake-up.
const IDLE: u8 = 0;
/// In a run queue.
const SCHEDULED: u8 = 1;
/// Being polled by a worker.
const RUNNING: u8 = 2;
/// Flag on `RUNNING`: woken while being polled, so poll again.
const NOTIFIED: u8 = 4;
/// The future finished; wake-ups are ignored.
const COMPLETE: u8 = 8;

/// Something a worker can run.
pub(crate) trait Runnable: Send + Sync + 'static {
    /// Poll the task once (called by a worker after taking it from a queue).
    fn run(self: Arc<Self>);
}

/// The task behind an actor (or any future handed to a [`StagePool`](super::StagePool)).
pub(crate) struct Task<F> {
    state: AtomicU8,
    // The lock is never contended: the state machine lets only the worker that moved the task
    // from SCHEDULED to RUNNING touch the future. It is here so this module needs no `unsafe`,
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
        let mut current = self.state.load(Ordering::Acquire);
        loop {
            let next = match current {
                IDLE => SCHEDULED,
                RUNNING => RUNNING | NOTIFIED,
                // Already queued, already notified, or complete: nothing to do.
                _ => return,
            };
            match self.state.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    if next == SCHEDULED {
                        self.pool.push(self.clone(), false);
                    }
                    return;
                }
                Err(actual) => current = actual,
            }
        }
    }
}

impl<F> Runnable for Task<F>
where
    F: Future<Output = ()> + Send + 'static,
{
    fn run(self: Arc<Self>) {
        self.state.store(RUNNING, Ordering::Release);
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
            self.state.store(COMPLETE, Ordering::Release);
            drop(future);
            return;
        }
        drop(slot);
        if self.state.compare_exchange(RUNNING, IDLE, Ordering::AcqRel, Ordering::Acquire).is_err() {
            // Woken while running. A task that yielded its turn goes to the global queue (fair to
            // everyone); one woken by a message or a reply stays on this worker, where it is hot.
            self.state.store(SCHEDULED, Ordering::Release);
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
