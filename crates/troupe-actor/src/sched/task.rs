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

use std::cell::UnsafeCell;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
#[cfg(test)]
use std::time::Duration;

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
// `repr(C)` puts `state` first, right after the `Arc`'s reference counts: a wake-up (often from
// another core) does a compare-exchange on the state and then increments the strong count, and
// with `state` last the two were on different cache lines in three of four allocations.
#[repr(C)]
pub(crate) struct Task<F> {
    state: AtomicU8,
    /// Touched only by the one thread that holds the task's single run-queue entry, between its
    /// `swap` to `RUNNING` and the end of its poll (see [`Task::run`]), or by `Drop`.
    future: UnsafeCell<Option<Live<F>>>,
    pool: Arc<PoolShared>,
}

// SAFETY: the only state not already `Sync` is `future`, and the scheduling protocol gives one
// thread at a time access to it (see `Task::run`); moving that access between threads needs the
// future to be `Send`.
unsafe impl<F: Send> Sync for Task<F> {}

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
            future: UnsafeCell::new(Some(Live { future: Box::pin(future), waker: None })),
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
        // SAFETY: this thread has exclusive access to `future` until the state leaves `RUNNING`
        // below. A task is put in a run queue only by the waker whose `fetch_or` found it `IDLE`,
        // or by its runner after the poll (keeping `NOTIFIED`, so no waker queues it meanwhile):
        // there is never more than one entry, and the one running it is the one that took that
        // entry. The previous poll's accesses happen-before ours: it ended with a release
        // read-modify-write of `state` (the `compare_exchange` to `IDLE` or the `fetch_and`),
        // later wake-ups are read-modify-writes that continue its release sequence, and our
        // `swap` acquires. `Drop` takes `&mut self`, so it never overlaps a poll. Checked by Miri's
        // data-race detector in this module's test (see `tests`).
        let slot = unsafe { &mut *self.future.get() };
        let done = match slot.as_mut() {
            Some(live) => {
                let waker = live.waker.get_or_insert_with(|| Waker::from(self.clone()));
                let mut cx = Context::from_waker(waker);
                // Handlers, hooks, supervision strategies and interval factories catch their own
                // panics; what unwinds to here came from other user code run in a task (a future
                // given to `StagePool::spawn`) or from a bug. It must not take the worker thread
                // with it: that would strand the task it holds in its LIFO slot and every wake-up
                // it deferred. The task ends instead, as if completed.
                match catch_unwind(AssertUnwindSafe(|| live.future.as_mut().poll(&mut cx))) {
                    Ok(poll) => poll.is_ready(),
                    Err(panic) => {
                        tracing::error!(
                            pool = %self.pool.name,
                            "a task panicked outside any handler and was ended: {}",
                            crate::runner::panic_message(&*panic)
                        );
                        true
                    }
                }
            }
            None => true,
        };
        if done {
            // Drop the future (and everything the actor owned) once the task is marked complete:
            // a wake-up from its drop glue then finds it complete and is ignored. An actor's
            // future that is dropped unfinished ends the actor as killed (`runner::Life`).
            let future = slot.take();
            self.state.swap(COMPLETE, Ordering::AcqRel);
            if catch_unwind(AssertUnwindSafe(move || drop(future))).is_err() {
                tracing::error!(pool = %self.pool.name, "a task's state panicked while being dropped");
            }
            return;
        }
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

#[cfg(test)]
mod tests {
    //! The state machine under concurrent wake-ups. Small enough for Miri, whose data-race
    //! detector checks that the unsynchronised accesses to the future never race:
    //!
    //! ```text
    //! MIRIFLAGS="-Zmiri-tree-borrows -Zmiri-permissive-provenance -Zmiri-ignore-leaks" \
    //!     cargo +nightly miri test -p troupe-actor --lib sched::task
    //! ```
    //!
    //! (crossbeam-epoch, under the work-stealing deques, needs tree borrows and exposed
    //! provenance, and keeps its global collector alive to the end: the "leaks" are its.)

    use std::sync::atomic::{AtomicBool, AtomicUsize};
    use std::sync::mpsc;

    use parking_lot::Mutex;

    use super::*;
    use crate::sched::StagePool;

    /// Each task stores its waker for the waking threads, counts its polls in plain (non-atomic)
    /// memory inside the future, and asserts that no other poll of it is in progress.
    #[test]
    fn a_task_woken_from_many_threads_is_polled_by_one_at_a_time_and_never_lost() {
        const TASKS: usize = 3;
        const WAKERS: usize = 2;
        const POLLS: usize = if cfg!(miri) { 20 } else { 2_000 };
        let pool = StagePool::new("task-test", 2, None);
        let wakers: Arc<Vec<Mutex<Option<Waker>>>> = Arc::new((0..TASKS).map(|_| Mutex::new(None)).collect());
        let woken = Arc::new((0..TASKS).map(|_| AtomicUsize::new(0)).collect::<Vec<_>>());
        let (done_tx, done_rx) = mpsc::channel();
        for index in 0..TASKS {
            let wakers = wakers.clone();
            let woken = woken.clone();
            let done = done_tx.clone();
            let in_poll = Arc::new(AtomicBool::new(false));
            let mut polls = 0usize;
            pool.spawn(std::future::poll_fn(move |cx| {
                assert!(!in_poll.swap(true, Ordering::Relaxed), "two polls of one task at once");
                polls += 1;
                *wakers[index].lock() = Some(cx.waker().clone());
                // Every wake-up counted before this poll began must be seen by it: a poll that
                // ends Pending while wake-ups are outstanding is followed by another poll.
                let ready = woken[index].load(Ordering::Relaxed) >= POLLS;
                in_poll.store(false, Ordering::Relaxed);
                if ready {
                    let _ = done.send((index, polls));
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            }));
        }
        let threads: Vec<_> = (0..WAKERS)
            .map(|_| {
                let wakers = wakers.clone();
                let woken = woken.clone();
                std::thread::spawn(move || {
                    for round in 0..POLLS {
                        for index in 0..TASKS {
                            // Publish first, then wake: the wake-up must make the next poll see it.
                            woken[index].fetch_add(1, Ordering::Relaxed);
                            if let Some(waker) = wakers[index].lock().clone() {
                                waker.wake();
                            }
                        }
                        if round % 8 == 0 {
                            std::thread::yield_now();
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("waking thread");
        }
        // The last wake-up of each task went to a waker stored by a poll; if the task was still
        // being polled then, it is polled again. So every task completes.
        for index in 0..TASKS {
            if let Some(waker) = wakers[index].lock().clone() {
                waker.wake();
            }
        }
        let mut finished = [false; TASKS];
        for _ in 0..TASKS {
            let (index, polls) = done_rx.recv_timeout(Duration::from_secs(60)).expect("a task was never polled again");
            assert!(!finished[index]);
            assert!(polls >= 1);
            finished[index] = true;
        }
        pool.shutdown();
    }
}
