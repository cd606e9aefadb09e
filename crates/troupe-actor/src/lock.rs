//! The lock for the runtime's hottest, shortest critical sections.
//!
//! A mailbox push or refill, and the hand-over of a task's future between workers, hold a lock
//! for a few instructions. A spinlock's unlock is a plain release store, where a parking mutex
//! needs a second atomic read-modify-write to look for parked waiters; on the message path that
//! difference is a third of the cost (measured with `perf annotate` on the ring benchmark). The
//! `Yield` strategy gives the core away while waiting, so a lock holder preempted by the OS does
//! not make the waiters burn their time slices.

/// A spinlock that yields to the OS scheduler while contended.
pub(crate) type SpinLock<T> = spin::mutex::SpinMutex<T, spin::relax::Yield>;
