//! The actor scheduler: a pool of worker threads with per-worker run queues and work stealing.
//!
//! Design (after Pony and CAF rather than a tokio task per actor):
//! - each worker owns a LIFO deque; a task woken by code running on a worker is pushed onto that
//!   worker's deque, so a message's receiver usually runs next, on the same core, with the
//!   message still in cache (ping-pong and rings never cross threads unless there is spare work);
//! - every [`FAIRNESS_TICK`] runs a worker takes its *oldest* task (and looks at the global
//!   queue), so LIFO order cannot starve anybody;
//! - a task that yields, or is woken while it runs, goes to the global FIFO queue;
//! - idle workers steal the oldest half of another worker's deque;
//! - a sleeping worker is woken only when work is queued and nobody is already searching.
//!
//! A pool has a fixed number of threads but a variable number of *active* workers
//! ([`StagePool::set_active_workers`]): the runtime's stages can be resized while running.
//!
//! Another stage (the network threads) can run the tasks it wakes itself when the pool is idle,
//! instead of waking a sleeping worker ([`collect_wakeups`], [`Woken::run_here`]): waking a parked
//! thread costs more than a short actor turn (~17 us on our VMs against a few us), and a request
//! that arrives on an idle node is answered on the thread that read it.

pub(crate) mod task;

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_deque::{Injector, Steal, Stealer, Worker};
use crossbeam_utils::sync::{Parker, Unparker};
use parking_lot::Mutex;

use task::{Runnable, Task};

/// How many tasks a worker runs between two looks at the oldest queued work.
const FAIRNESS_TICK: u32 = 31;
/// How many rounds an idle worker searches for work before it goes to sleep.
const SEARCH_ROUNDS: u32 = 64;

type TaskRef = Arc<dyn Runnable>;
/// A task and the pool it belongs to.
type PooledTask = (Arc<PoolShared>, TaskRef);

thread_local! {
    /// On a worker thread, its `WorkerLocal` (owned by `worker_main`); null elsewhere. A raw
    /// pointer in a `Cell` rather than an `Rc` in a `RefCell`: nothing to drop, so the access is
    /// a plain thread-local load on the wake-up path (see [`with_current`]).
    static CURRENT: std::cell::Cell<*const WorkerLocal> = const { std::cell::Cell::new(std::ptr::null()) };
    /// Set inside [`collect_wakeups`]: tasks scheduled from this (non-worker) thread are kept here
    /// instead of being queued.
    static COLLECTING: RefCell<Option<Vec<PooledTask>>> = const { RefCell::new(None) };
    /// True while [`Woken::run_here`] runs a task on this (non-worker) thread.
    static RUNNING_INLINE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with this thread's worker state, if it is a worker thread.
fn with_current<R>(f: impl FnOnce(Option<&WorkerLocal>) -> R) -> R {
    let local = CURRENT.with(|c| c.get());
    // SAFETY: `CURRENT` is non-null only between `worker_main` storing a pointer to its own
    // `WorkerLocal` and clearing it again, on this same thread, and `worker_main` keeps that
    // `WorkerLocal` alive (and in place, behind an `Rc`) for that whole span. `f` runs on this
    // thread within that span or outside it (then the pointer is null), and the reference cannot
    // outlive the call: `f` is generic over its lifetime. Only shared references are made. The
    // pool tests below run under Miri (see `task::tests` for the command).
    f(unsafe { local.as_ref() })
}

/// True while this thread runs a task of some pool: a worker's, or an inline turn
/// ([`Woken::run_here`]) on another stage's thread.
pub(crate) fn running_tasks() -> bool {
    on_worker_thread() || RUNNING_INLINE.with(|r| r.get())
}

/// How long one inline turn may take before the pool stops running tasks inline for a while.
const INLINE_SLOW: Duration = Duration::from_millis(1);
/// How long the pool runs no task inline after a slow inline turn.
const INLINE_BACKOFF: Duration = Duration::from_millis(100);
/// The most tasks (and the longest time) one [`Woken::run_here`] runs before handing the rest on.
const INLINE_MAX_TASKS: usize = 16;
const INLINE_BUDGET: Duration = Duration::from_micros(500);
/// The most tasks one [`collect_wakeups`] keeps; later wake-ups are queued on their pools.
const COLLECT_MAX: usize = 4 * INLINE_MAX_TASKS;

/// Tasks woken by code that ran inside [`collect_wakeups`], not yet queued. Dropping it queues them
/// on their pools, so none is ever lost.
#[derive(Default)]
pub struct Woken {
    tasks: std::collections::VecDeque<PooledTask>,
    /// An empty list with room, lent to the next [`collect_wakeups`]: a network thread collects
    /// once per run of frames, and a fresh list each time cost an allocation and a free.
    spare: Vec<PooledTask>,
}

impl std::fmt::Debug for Woken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Woken").field("tasks", &self.tasks.len()).finish()
    }
}

/// Runs `f`; tasks of any pool that `f` schedules from this thread (which must not be a worker:
/// on a worker, wake-ups take the worker's own fast path) are returned instead of queued, up to
/// 64 of them (more than one [`Woken::run_here`] could run): later ones are queued
/// at once.
pub fn collect_wakeups<R>(woken: &mut Woken, f: impl FnOnce() -> R) -> R {
    /// Puts back the outer collection (if any) and hands what was collected to `woken`, even if
    /// `f` panics.
    struct Scope<'a> {
        outer: Option<Vec<PooledTask>>,
        woken: &'a mut Woken,
    }
    impl Drop for Scope<'_> {
        fn drop(&mut self) {
            let mine = COLLECTING.with(|c| std::mem::replace(&mut *c.borrow_mut(), self.outer.take()));
            if let Some(mut mine) = mine {
                self.woken.tasks.extend(mine.drain(..));
                self.woken.spare = mine;
            }
        }
    }
    if on_worker_thread() {
        return f();
    }
    let list = std::mem::take(&mut woken.spare);
    let outer = COLLECTING.with(|c| c.borrow_mut().replace(list));
    let _scope = Scope { outer, woken };
    f()
}

impl Woken {
    /// True when nothing was collected.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Runs the collected tasks on this thread while their pool is idle (every active worker
    /// asleep, none searching, no recent slow inline turn), collecting what they wake in turn;
    /// queues the rest on their pools. Runs at most 16 tasks and stops after 500 µs.
    pub fn run_here(&mut self) {
        if self.tasks.is_empty() {
            return;
        }
        // One clock read per turn (plus this one): on a VM a read costs ~50-100 ns, and a short
        // exchange's whole turn a few µs.
        let started = std::time::Instant::now();
        let mut now = started;
        let mut ran = 0;
        while let Some((pool, task)) = self.tasks.pop_front() {
            if ran >= INLINE_MAX_TASKS || now - started >= INLINE_BUDGET || !pool.idle_for_inline(now) {
                pool.push_external(task);
                continue;
            }
            ran += 1;
            let outer = RUNNING_INLINE.with(|r| r.replace(true));
            // What the task wakes joins the queue behind the tasks already collected.
            collect_wakeups(self, || task.run());
            RUNNING_INLINE.with(|r| r.set(outer));
            let turn_began = now;
            now = std::time::Instant::now();
            let took = now - turn_began;
            if took >= INLINE_SLOW {
                pool.back_off_inline(now, took);
            }
        }
    }

    /// Queues every collected task on its pool.
    pub fn release(&mut self) {
        for (pool, task) in self.tasks.drain(..) {
            pool.push_external(task);
        }
    }
}

impl Drop for Woken {
    fn drop(&mut self) {
        self.release();
    }
}

/// What a worker thread keeps for itself.
struct WorkerLocal {
    pool: Arc<PoolShared>,
    queue: Worker<TaskRef>,
    /// The task woken last by this worker: runs next, without touching the shared deque. Not
    /// stealable; a second wake-up moves the previous occupant to the deque.
    next: RefCell<Option<TaskRef>>,
    /// Wake-ups deferred by one task run (see [`defer_wake`]): `[after this run, after the next]`.
    deferred: RefCell<[Vec<std::task::Waker>; 2]>,
}

impl WorkerLocal {
    /// After each task run: wake what was deferred to now, and move the next batch up.
    fn run_deferred(&self) {
        let due = {
            let mut deferred = self.deferred.borrow_mut();
            if deferred[0].is_empty() && deferred[1].is_empty() {
                return;
            }
            let due = std::mem::take(&mut deferred[0]);
            deferred.swap(0, 1);
            due
        };
        for waker in due {
            waker.wake();
        }
    }

    /// Before going idle: wake everything deferred.
    fn flush_deferred(&self) {
        let all: Vec<_> = self.deferred.borrow_mut().iter_mut().flat_map(std::mem::take).collect();
        for waker in all {
            waker.wake();
        }
    }
}

/// On a worker thread, arranges for `waker` to be woken once the *next* task this worker runs has
/// finished, and returns true; elsewhere returns false. Lets an asker wait one turn for an answer
/// the target (usually run next, from the LIFO slot) is about to give, without arming a timer.
pub(crate) fn defer_wake(waker: &std::task::Waker) -> bool {
    with_current(|current| match current {
        Some(local) => {
            local.deferred.borrow_mut()[1].push(waker.clone());
            true
        }
        None => false,
    })
}

/// State shared by all workers of one pool.
pub(crate) struct PoolShared {
    name: String,
    injector: Injector<TaskRef>,
    stealers: Vec<Stealer<TaskRef>>,
    unparkers: Vec<Unparker>,
    /// Indices of sleeping active workers.
    sleepers: Mutex<Vec<usize>>,
    /// Until when (ns since `epoch`) no task runs inline ([`Woken::run_here`]).
    inline_backoff_until: std::sync::atomic::AtomicU64,
    epoch: std::time::Instant,
    num_sleeping: AtomicUsize,
    num_searching: AtomicUsize,
    active: AtomicUsize,
    shutdown: AtomicBool,
}

impl PoolShared {
    /// Queues a task. From a worker of this pool it goes to that worker's own deque (or, for a
    /// yield, to the global queue); from anywhere else it goes to the global queue.
    pub(crate) fn push(self: &Arc<Self>, task: TaskRef, yielded: bool) {
        let not_local = with_current(move |current| {
            match current {
                Some(local) if Arc::ptr_eq(&local.pool, self) && !yielded => {
                    let previous = local.next.borrow_mut().replace(task);
                    if let Some(previous) = previous {
                        local.queue.push(previous);
                    }
                    if !local.queue.is_empty() && self.num_sleeping.load(Ordering::Relaxed) > 0 {
                        // Work is waiting behind the woken task: let an idle worker steal some.
                        // (A stale read here cannot stall progress: this worker runs its own
                        // deque; it only delays help, and sleepers re-check every 100 ms.)
                        self.notify_if_idle();
                    }
                    None
                }
                _ => Some(task),
            }
        });
        if let Some(task) = not_local {
            if yielded {
                return self.push_external(task);
            }
            let task = COLLECTING.with(|c| match c.borrow_mut().as_mut() {
                // Past what one inline run could take, queue at once: a loop that wakes a million
                // actors (spawning them from `main`) must not hold a million entries here.
                Some(collected) if collected.len() < COLLECT_MAX => {
                    collected.push((self.clone(), task));
                    None
                }
                _ => Some(task),
            });
            if let Some(task) = task {
                self.push_external(task);
            }
        }
    }

    /// Queues a task on the global queue and wakes a worker if needed.
    fn push_external(&self, task: TaskRef) {
        self.injector.push(task);
        self.notify_if_idle();
    }

    /// Whether a task may run inline on a non-worker thread at `now`: every active worker is
    /// asleep, none is searching, and no inline turn was slow recently.
    fn idle_for_inline(&self, now: std::time::Instant) -> bool {
        if self.shutdown.load(Ordering::Relaxed) {
            return false;
        }
        let now = now.saturating_duration_since(self.epoch).as_nanos() as u64;
        now >= self.inline_backoff_until.load(Ordering::Relaxed) && self.all_workers_asleep()
    }

    /// Every active worker is parked and none is searching for work.
    fn all_workers_asleep(&self) -> bool {
        self.num_searching.load(Ordering::SeqCst) == 0
            && self.num_sleeping.load(Ordering::SeqCst) >= self.active.load(Ordering::Relaxed)
    }

    /// An inline turn took `took`: run none inline for [`INLINE_BACKOFF`], so a long handler does
    /// not keep holding another stage's thread.
    fn back_off_inline(&self, now: std::time::Instant, took: Duration) {
        let until = now.saturating_duration_since(self.epoch) + INLINE_BACKOFF;
        self.inline_backoff_until.store(until.as_nanos() as u64, Ordering::Relaxed);
        tracing::debug!(pool = %self.name, ?took, "slow inline task turn; waking workers instead for a while");
    }

    /// Wakes one sleeping worker if there is one and nobody is already looking for work.
    fn notify_if_idle(&self) {
        fence(Ordering::SeqCst);
        if self.num_sleeping.load(Ordering::SeqCst) == 0 || self.num_searching.load(Ordering::SeqCst) > 0 {
            return;
        }
        let woken = {
            let mut sleepers = self.sleepers.lock();
            let woken = sleepers.pop();
            if woken.is_some() {
                self.num_sleeping.fetch_sub(1, Ordering::SeqCst);
            }
            woken
        };
        if let Some(index) = woken {
            self.unparkers[index].unpark();
        }
    }

    fn has_visible_work(&self) -> bool {
        !self.injector.is_empty() || self.stealers.iter().any(|s| !s.is_empty())
    }
}

/// True on a worker thread of any pool.
pub(crate) fn on_worker_thread() -> bool {
    CURRENT.with(|c| !c.get().is_null())
}

/// A pool of worker threads running tasks (actors, or any `Send` future).
///
/// Several pools can live in one process (several nodes, or several stages of one node).
pub struct StagePool {
    shared: Arc<PoolShared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for StagePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StagePool")
            .field("name", &self.shared.name)
            .field("threads", &self.max_workers())
            .field("active", &self.active_workers())
            .finish()
    }
}

impl StagePool {
    /// Starts a pool of `threads` worker threads, all active. Each thread enters `tokio` (when
    /// given) so that code running on it can use tokio timers and I/O.
    ///
    /// # Panics
    /// If the operating system refuses to start a thread.
    pub fn new(name: &str, threads: usize, tokio: Option<tokio::runtime::Handle>) -> Self {
        let threads = threads.max(1);
        let queues: Vec<Worker<TaskRef>> = (0..threads).map(|_| Worker::new_lifo()).collect();
        let parkers: Vec<Parker> = (0..threads).map(|_| Parker::new()).collect();
        let shared = Arc::new(PoolShared {
            name: name.to_string(),
            injector: Injector::new(),
            stealers: queues.iter().map(Worker::stealer).collect(),
            unparkers: parkers.iter().map(|p| p.unparker().clone()).collect(),
            sleepers: Mutex::new(Vec::with_capacity(threads)),
            inline_backoff_until: std::sync::atomic::AtomicU64::new(0),
            epoch: std::time::Instant::now(),
            num_sleeping: AtomicUsize::new(0),
            num_searching: AtomicUsize::new(0),
            active: AtomicUsize::new(threads),
            shutdown: AtomicBool::new(false),
        });
        let handles = queues
            .into_iter()
            .zip(parkers)
            .enumerate()
            .map(|(index, (queue, parker))| {
                let shared = shared.clone();
                let tokio = tokio.clone();
                std::thread::Builder::new()
                    .name(format!("{name}-{index}"))
                    .spawn(move || {
                        let _tokio = tokio.as_ref().map(|handle| handle.enter());
                        worker_main(index, shared, queue, parker);
                    })
                    .expect("failed to start a worker thread")
            })
            .collect();
        StagePool { shared, threads: Mutex::new(handles) }
    }

    /// Runs `future` as a task of this pool.
    pub fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        Task::new(future, self.shared.clone()).schedule();
    }

    /// Creates a task for `future` without scheduling it; the caller schedules it (usually through
    /// its waker) once everything it needs is in place.
    pub(crate) fn task<F>(&self, future: F) -> Arc<Task<F>>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        Task::new(future, self.shared.clone())
    }

    /// Number of worker threads (the most that can be active).
    pub fn max_workers(&self) -> usize {
        self.shared.stealers.len()
    }

    /// Number of workers currently taking work.
    pub fn active_workers(&self) -> usize {
        self.shared.active.load(Ordering::SeqCst)
    }

    /// Changes how many workers take work (clamped to `1..=max_workers`). Deactivated workers hand
    /// their queued tasks to the others and sleep until reactivated.
    pub fn set_active_workers(&self, n: usize) {
        let n = n.clamp(1, self.max_workers());
        self.shared.active.store(n, Ordering::SeqCst);
        for unparker in &self.shared.unparkers {
            unparker.unpark();
        }
    }

    /// True when called from one of this pool's worker threads.
    pub fn is_current_thread(&self) -> bool {
        with_current(|current| current.is_some_and(|l| Arc::ptr_eq(&l.pool, &self.shared)))
    }

    /// Stops the workers after their current task and joins them (unless called from a worker of
    /// this pool, where the threads are left to finish on their own). Queued tasks are dropped.
    pub fn shutdown(&self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        for unparker in &self.shared.unparkers {
            unparker.unpark();
        }
        let handles = std::mem::take(&mut *self.threads.lock());
        if self.is_current_thread() {
            return;
        }
        for handle in handles {
            let _ = handle.join();
        }
    }
}

impl Drop for StagePool {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Clears [`CURRENT`] when dropped: a worker thread's last step before its `WorkerLocal` goes.
struct LeaveWorker;

impl Drop for LeaveWorker {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(std::ptr::null()));
    }
}

fn worker_main(index: usize, shared: Arc<PoolShared>, queue: Worker<TaskRef>, parker: Parker) {
    let local = Rc::new(WorkerLocal {
        pool: shared.clone(),
        queue,
        next: RefCell::new(None),
        deferred: RefCell::new([Vec::new(), Vec::new()]),
    });
    CURRENT.with(|c| c.set(Rc::as_ptr(&local)));
    // Declared after `local`, so dropped before it, whether the loop ends or unwinds.
    let leave = LeaveWorker;
    let mut tick: u32 = 0;
    while !shared.shutdown.load(Ordering::Relaxed) {
        if index >= shared.active.load(Ordering::Relaxed) {
            hand_over_and_wait(&shared, &local, &parker);
            continue;
        }
        tick = tick.wrapping_add(1);
        let next = local.next.borrow_mut().take();
        let task = if tick % FAIRNESS_TICK == 0 {
            // Let older work go first now and then; the woken task waits in the deque.
            if let Some(next) = next {
                local.queue.push(next);
            }
            oldest_first(&shared, &local.queue, index)
        } else {
            next.or_else(|| local.queue.pop()).or_else(|| find_elsewhere(&shared, &local.queue, index))
        };
        match task {
            Some(task) => {
                task.run();
                local.run_deferred();
            }
            None => {
                local.flush_deferred();
                if local.next.borrow().is_none() {
                    search_then_sleep(index, &shared, &local.queue, &parker);
                }
            }
        }
    }
    drop(leave);
    drop(local.next.borrow_mut().take());
    drop(std::mem::take(&mut *local.deferred.borrow_mut()));
    // Queued tasks hold actor futures that may refer back to the pool; dropping them here, on the
    // worker, breaks those cycles.
    while local.queue.pop().is_some() {}
}

/// The oldest task: global queue first, then the bottom of our own deque.
fn oldest_first(shared: &PoolShared, queue: &Worker<TaskRef>, index: usize) -> Option<TaskRef> {
    steal_from_injector(shared, queue)
        .or_else(|| steal_one(&shared.stealers[index]))
        .or_else(|| queue.pop())
        .or_else(|| find_elsewhere(shared, queue, index))
}

fn find_elsewhere(shared: &PoolShared, queue: &Worker<TaskRef>, index: usize) -> Option<TaskRef> {
    steal_from_injector(shared, queue).or_else(|| {
        let n = shared.stealers.len();
        (1..n).find_map(|offset| {
            let victim = (index + offset) % n;
            loop {
                match shared.stealers[victim].steal_batch_and_pop(queue) {
                    Steal::Success(task) => return Some(task),
                    Steal::Empty => return None,
                    Steal::Retry => continue,
                }
            }
        })
    })
}

fn steal_from_injector(shared: &PoolShared, queue: &Worker<TaskRef>) -> Option<TaskRef> {
    loop {
        match shared.injector.steal_batch_and_pop(queue) {
            Steal::Success(task) => return Some(task),
            Steal::Empty => return None,
            Steal::Retry => continue,
        }
    }
}

fn steal_one(stealer: &Stealer<TaskRef>) -> Option<TaskRef> {
    loop {
        match stealer.steal() {
            Steal::Success(task) => return Some(task),
            Steal::Empty => return None,
            Steal::Retry => continue,
        }
    }
}

/// Spin a little looking for work, then sleep until notified.
fn search_then_sleep(index: usize, shared: &Arc<PoolShared>, queue: &Worker<TaskRef>, parker: &Parker) {
    shared.num_searching.fetch_add(1, Ordering::SeqCst);
    for round in 0..SEARCH_ROUNDS {
        if let Some(task) = find_elsewhere(shared, queue, index) {
            shared.num_searching.fetch_sub(1, Ordering::SeqCst);
            // We were the searcher; there may be more work behind this task.
            shared.notify_if_idle();
            task.run();
            return;
        }
        if round < SEARCH_ROUNDS / 2 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
    shared.num_searching.fetch_sub(1, Ordering::SeqCst);

    // Announce we are going to sleep, then look once more: a producer either sees us in the
    // sleeper list or we see its task (both sides use SeqCst).
    {
        let mut sleepers = shared.sleepers.lock();
        sleepers.push(index);
        shared.num_sleeping.fetch_add(1, Ordering::SeqCst);
    }
    fence(Ordering::SeqCst);
    if shared.has_visible_work() || shared.shutdown.load(Ordering::SeqCst) {
        remove_sleeper(shared, index);
        return;
    }
    parker.park_timeout(Duration::from_millis(100));
    remove_sleeper(shared, index);
}

fn remove_sleeper(shared: &PoolShared, index: usize) {
    let mut sleepers = shared.sleepers.lock();
    if let Some(pos) = sleepers.iter().position(|&i| i == index) {
        sleepers.swap_remove(pos);
        shared.num_sleeping.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An inactive worker gives its queued tasks to the global queue and sleeps until the active count
/// changes or the pool shuts down.
fn hand_over_and_wait(shared: &Arc<PoolShared>, local: &WorkerLocal, parker: &Parker) {
    let queue = &local.queue;
    let mut moved = false;
    if let Some(task) = local.next.borrow_mut().take() {
        shared.injector.push(task);
        moved = true;
    }
    while let Some(task) = queue.pop() {
        shared.injector.push(task);
        moved = true;
    }
    if moved {
        shared.notify_if_idle();
    }
    parker.park_timeout(Duration::from_millis(100));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    /// Polls `done` every millisecond; fails with `what` after 10 s.
    fn wait_until(what: &str, done: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Waits until every worker of `pool` sleeps (they search a little before parking).
    fn wait_idle(pool: &StagePool) {
        wait_until("the pool never went idle", || pool.shared.all_workers_asleep());
    }

    /// Waits until `counter` reaches `n`; fails with `what` after 10 s.
    fn wait_for_count(counter: &AtomicU64, n: u64, what: &str) {
        wait_until(what, || counter.load(Ordering::SeqCst) >= n);
    }

    /// Spawns a task that adds one to `counter`.
    fn spawn_counting(pool: &StagePool, counter: &Arc<AtomicU64>) {
        let counter = counter.clone();
        pool.spawn(async move {
            counter.fetch_add(1, Ordering::SeqCst);
        });
    }

    /// Spawns a task (onto the pool's queue: it runs on a worker) that records the thread it ran
    /// on; returns the record.
    fn recording_task(pool: &StagePool, woken: &mut Woken) -> Arc<Mutex<Option<std::thread::ThreadId>>> {
        let ran_on = Arc::new(Mutex::new(None));
        let record = ran_on.clone();
        collect_wakeups(woken, || {
            pool.spawn(async move {
                *record.lock() = Some(std::thread::current().id());
            })
        });
        ran_on
    }

    #[test]
    fn woken_tasks_run_on_the_waking_thread_when_the_pool_is_idle() {
        let pool = StagePool::new("inline", 2, None);
        // A worker wakes every 100 ms to look around; if that happens between the check and
        // run_here, the task rightly goes to the workers: try again.
        let ran_here = (0..10).any(|_| {
            wait_idle(&pool);
            let mut woken = Woken::default();
            let ran_on = recording_task(&pool, &mut woken);
            assert!(!woken.is_empty(), "the task was queued instead of collected");
            assert!(ran_on.lock().is_none(), "a collected task ran before run_here");
            woken.run_here();
            drop(woken);
            wait_until("the task never ran", || ran_on.lock().is_some());
            let ran_on = *ran_on.lock();
            ran_on == Some(std::thread::current().id())
        });
        assert!(ran_here, "the idle pool's task never ran on the waking thread");
        pool.shutdown();
    }

    #[test]
    fn a_task_that_panics_is_ended_and_its_worker_keeps_running() {
        let pool = StagePool::new("panics", 1, None);
        pool.spawn(async { panic!("a task panicked on purpose") });
        let counter = Arc::new(AtomicU64::new(0));
        for _ in 0..3 {
            spawn_counting(&pool, &counter);
        }
        wait_for_count(&counter, 3, "the only worker died with the panicking task");
        pool.shutdown();
    }

    #[test]
    fn collected_tasks_are_never_lost() {
        let pool = StagePool::new("inline", 2, None);
        let counter = Arc::new(AtomicU64::new(0));
        // More than one run_here takes: the rest go to the workers. And a dropped `Woken` queues
        // what it holds.
        let mut woken = Woken::default();
        let mut dropped = Woken::default();
        for i in 0..100 {
            let into = if i % 2 == 0 { &mut woken } else { &mut dropped };
            collect_wakeups(into, || spawn_counting(&pool, &counter));
        }
        woken.run_here();
        drop(dropped);
        wait_for_count(&counter, 100, "collected tasks were lost");
        pool.shutdown();
    }

    #[test]
    fn one_collection_keeps_a_bounded_number_of_tasks_and_queues_the_rest() {
        let pool = StagePool::new("inline", 2, None);
        let counter = Arc::new(AtomicU64::new(0));
        let mut woken = Woken::default();
        collect_wakeups(&mut woken, || {
            for _ in 0..1_000 {
                spawn_counting(&pool, &counter);
            }
        });
        assert_eq!(woken.tasks.len(), COLLECT_MAX, "a wake-up loop must not grow the collection without bound");
        drop(woken);
        wait_for_count(&counter, 1_000, "tasks past the bound were lost");
        pool.shutdown();
    }

    #[test]
    fn a_slow_inline_turn_sends_later_tasks_to_the_workers() {
        let pool = StagePool::new("inline", 1, None);
        wait_idle(&pool);
        let mut woken = Woken::default();
        collect_wakeups(&mut woken, || pool.spawn(async { std::thread::sleep(INLINE_SLOW * 2) }));
        woken.run_here();
        // Backing off: the next task is queued for the worker even though the pool is idle.
        wait_idle(&pool);
        let ran_on = recording_task(&pool, &mut woken);
        woken.run_here();
        wait_until("the task never ran", || ran_on.lock().is_some());
        assert_ne!(*ran_on.lock(), Some(std::thread::current().id()), "a task ran inline right after a slow turn");
        pool.shutdown();
    }

    /// Tasks spawned from a worker go through that worker's own queues (the LIFO slot, the deque
    /// it overflows into, stolen from by the other worker): every one runs, each on a worker of
    /// the pool. Small enough for Miri, which checks `with_current`'s thread-local pointer.
    #[test]
    fn tasks_spawned_on_workers_all_run_there() {
        let pool = Arc::new(StagePool::new("test", 2, None));
        let counter = Arc::new(AtomicU64::new(0));
        let on_workers = Arc::new(AtomicU64::new(0));
        let (inner_pool, inner_counter, inner_on) = (pool.clone(), counter.clone(), on_workers.clone());
        pool.spawn(async move {
            for _ in 0..32 {
                let (pool, counter, on) = (inner_pool.clone(), inner_counter.clone(), inner_on.clone());
                inner_pool.spawn(async move {
                    on.fetch_add(pool.is_current_thread() as u64, Ordering::SeqCst);
                    spawn_counting(&pool, &counter);
                    counter.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        wait_for_count(&counter, 64, "tasks spawned on workers did not all run");
        assert_eq!(on_workers.load(Ordering::SeqCst), 32, "a task ran off the pool's workers");
        assert!(!pool.is_current_thread(), "the test thread is not a worker");
        pool.shutdown();
    }

    #[test]
    fn runs_many_tasks_on_all_workers_and_resizes() {
        let pool = StagePool::new("test", 2, None);
        let counter = Arc::new(AtomicU64::new(0));
        for _ in 0..10_000 {
            spawn_counting(&pool, &counter);
        }
        wait_for_count(&counter, 10_000, "tasks did not all run");
        pool.set_active_workers(1);
        assert_eq!(pool.active_workers(), 1);
        for _ in 0..1000 {
            spawn_counting(&pool, &counter);
        }
        wait_for_count(&counter, 11_000, "tasks did not run on one worker");
        pool.set_active_workers(99);
        assert_eq!(pool.active_workers(), 2);
        pool.shutdown();
    }
}
