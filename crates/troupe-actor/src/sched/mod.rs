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

thread_local! {
    static CURRENT: RefCell<Option<Rc<WorkerLocal>>> = const { RefCell::new(None) };
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
    CURRENT.with(|c| match c.try_borrow() {
        Ok(current) => match current.as_ref() {
            Some(local) => {
                local.deferred.borrow_mut()[1].push(waker.clone());
                true
            }
            None => false,
        },
        Err(_) => false,
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
    num_sleeping: AtomicUsize,
    num_searching: AtomicUsize,
    active: AtomicUsize,
    shutdown: AtomicBool,
}

impl PoolShared {
    /// Queues a task. From a worker of this pool it goes to that worker's own deque (or, for a
    /// yield, to the global queue); from anywhere else it goes to the global queue.
    pub(crate) fn push(self: &Arc<Self>, task: TaskRef, yielded: bool) {
        let not_local = CURRENT.with(move |current| {
            let current = current.borrow();
            match current.as_ref() {
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
            self.injector.push(task);
            self.notify_if_idle();
        }
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
    CURRENT.with(|c| c.try_borrow().map(|c| c.is_some()).unwrap_or(true))
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
        CURRENT.with(|c| c.borrow().as_ref().is_some_and(|l| Arc::ptr_eq(&l.pool, &self.shared)))
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

fn worker_main(index: usize, shared: Arc<PoolShared>, queue: Worker<TaskRef>, parker: Parker) {
    let local = Rc::new(WorkerLocal {
        pool: shared.clone(),
        queue,
        next: RefCell::new(None),
        deferred: RefCell::new([Vec::new(), Vec::new()]),
    });
    CURRENT.with(|c| *c.borrow_mut() = Some(local.clone()));
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
    CURRENT.with(|c| *c.borrow_mut() = None);
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

    #[test]
    fn runs_many_tasks_on_all_workers_and_resizes() {
        let pool = StagePool::new("test", 2, None);
        let counter = Arc::new(AtomicU64::new(0));
        for _ in 0..10_000 {
            let counter = counter.clone();
            pool.spawn(async move {
                counter.fetch_add(1, Ordering::SeqCst);
            });
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while counter.load(Ordering::SeqCst) < 10_000 {
            assert!(std::time::Instant::now() < deadline, "tasks did not all run");
            std::thread::sleep(Duration::from_millis(1));
        }
        pool.set_active_workers(1);
        assert_eq!(pool.active_workers(), 1);
        for _ in 0..1000 {
            let counter = counter.clone();
            pool.spawn(async move {
                counter.fetch_add(1, Ordering::SeqCst);
            });
        }
        while counter.load(Ordering::SeqCst) < 11_000 {
            assert!(std::time::Instant::now() < deadline, "tasks did not run on one worker");
            std::thread::sleep(Duration::from_millis(1));
        }
        pool.set_active_workers(99);
        assert_eq!(pool.active_workers(), 2);
        pool.shutdown();
    }
}
