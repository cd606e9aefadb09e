//! Timers that work from any thread and outlive the runtime they started on.
//!
//! A system times asks, shutdowns and actor timers on the tokio runtime it was given (the node's
//! network runtime) or on one it started. A given runtime can shut down while the system lives
//! on (a node dropped while someone keeps its `ActorSystem`); polling a tokio timer of a runtime
//! that shut down panics, so every timer here checks, while it polls, that its runtime is still
//! there, and moves to a small runtime of the system's own when it is not.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::{OnceLock, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::runtime::{Handle, Runtime};
use tokio::time::{Instant, Sleep};

use crate::system::SystemShared;

/// The tokio runtime a system's timers run on.
pub(crate) struct TimerRuntime {
    /// The runtime the system was given or started.
    primary: Handle,
    /// `primary` shuts down when this is dropped (and not while it can be upgraded); `None`:
    /// `primary` lives as long as the system.
    primary_owner: Option<Weak<dyn Any + Send + Sync>>,
    /// Started the first time a timer (or `block_on`) needs a runtime after `primary` shut down;
    /// `None` inside when it could not be started.
    fallback: OnceLock<Option<Runtime>>,
    /// For thread names.
    name: String,
}

/// Which runtime a timer was armed on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Source {
    Primary,
    Fallback,
}

impl TimerRuntime {
    pub(crate) fn new(name: &str, primary: Handle, primary_owner: Option<Weak<dyn Any + Send + Sync>>) -> Self {
        TimerRuntime { primary, primary_owner, fallback: OnceLock::new(), name: name.to_string() }
    }

    /// Runs `f` while the primary runtime is guaranteed not to shut down; `None` if it has.
    fn while_primary_lives<R>(&self, f: impl FnOnce() -> R) -> Option<R> {
        match &self.primary_owner {
            None => Some(f()),
            Some(owner) => {
                // Holding the owner keeps the runtime from shutting down while `f` runs.
                let _alive = owner.upgrade()?;
                Some(f())
            }
        }
    }

    /// The runtime that replaces the primary one, started on first use.
    fn fallback(&self) -> Option<&Handle> {
        let runtime = self.fallback.get_or_init(|| {
            let built = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name(format!("{}-timers", self.name))
                .enable_time()
                .build();
            match built {
                Ok(runtime) => {
                    tracing::info!(system = %self.name, "the system's tokio runtime shut down; timers run on a runtime of the system's own");
                    Some(runtime)
                }
                Err(error) => {
                    tracing::error!(system = %self.name, %error, "the system's tokio runtime shut down and no other could be started: timers expire at once");
                    None
                }
            }
        });
        runtime.as_ref().map(Runtime::handle)
    }

    /// A handle to the runtime timers use now (for `block_on`).
    pub(crate) fn live_handle(&self) -> Handle {
        match self.while_primary_lives(|| ()) {
            Some(()) => self.primary.clone(),
            None => self.fallback().unwrap_or(&self.primary).clone(),
        }
    }

    /// A sleep until `deadline` on the runtime timers use now. `None` when there is none.
    fn arm(&self, deadline: Instant) -> Option<(Pin<Box<Sleep>>, Source)> {
        let on_primary = self.while_primary_lives(|| {
            let _entered = self.primary.enter();
            Box::pin(tokio::time::sleep_until(deadline))
        });
        if let Some(sleep) = on_primary {
            return Some((sleep, Source::Primary));
        }
        let fallback = self.fallback()?;
        let _entered = fallback.enter();
        Some((Box::pin(tokio::time::sleep_until(deadline)), Source::Fallback))
    }
}

impl Drop for TimerRuntime {
    /// Shuts the fallback runtime down without blocking: the system may drop on a runtime thread.
    fn drop(&mut self) {
        if let Some(Some(runtime)) = self.fallback.take() {
            runtime.shutdown_background();
        }
    }
}

/// `limit` from now; about 30 years from now when that is later (no overflow for `Duration::MAX`).
pub(crate) fn deadline_after(limit: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(30 * 365 * 86_400);
    let now = Instant::now();
    now.checked_add(limit.min(FAR)).unwrap_or(now)
}

/// Where a timer finds its system's [`TimerRuntime`].
#[derive(Clone, Copy)]
pub(crate) enum Clock<'a> {
    /// A local actor's system, which may be gone.
    System(&'a Weak<SystemShared>),
    /// A system known to be alive (a remote actor's transport holds its node's system).
    Alive(&'a SystemShared),
}

impl Clock<'_> {
    fn with<R>(&self, f: impl FnOnce(&TimerRuntime) -> R) -> Option<R> {
        match self {
            Clock::System(system) => Some(f(&system.upgrade()?.timers)),
            Clock::Alive(system) => Some(f(&system.timers)),
        }
    }
}

/// A sleep until a deadline, armed on first poll, that moves to the system's own runtime when
/// the one it was armed on shuts down. Expires at once when the system is gone.
pub(crate) struct Timer {
    deadline: Instant,
    armed: Option<(Pin<Box<Sleep>>, Source)>,
}

impl Timer {
    pub(crate) fn until(deadline: Instant) -> Self {
        Timer { deadline, armed: None }
    }

    pub(crate) fn after(limit: Duration) -> Self {
        Self::until(deadline_after(limit))
    }

    /// Ready once the deadline has passed: `true`; or at once with `false` when nothing can time
    /// it (the system is gone, or its runtime and no fallback could be started).
    pub(crate) fn poll_expired(&mut self, clock: Clock<'_>, cx: &mut Context<'_>) -> Poll<bool> {
        let expired = |polled: Poll<()>| polled.map(|()| true);
        clock
            .with(|timers| loop {
                match &mut self.armed {
                    None => match timers.arm(self.deadline) {
                        Some(armed) => self.armed = Some(armed),
                        None => return Poll::Ready(false),
                    },
                    Some((sleep, Source::Primary)) => match timers.while_primary_lives(|| sleep.as_mut().poll(cx)) {
                        Some(polled) => return expired(polled),
                        // Its runtime shut down: arm again on the fallback, same deadline.
                        None => self.armed = None,
                    },
                    Some((sleep, Source::Fallback)) => return expired(sleep.as_mut().poll(cx)),
                }
            })
            .unwrap_or(Poll::Ready(false))
    }
}

/// Runs `fut` for at most `limit`. `None` means it timed out (or no system is left to time it).
pub(crate) async fn timeout<F: Future>(clock: Clock<'_>, limit: Duration, fut: F) -> Option<F::Output> {
    let mut timer = Timer::after(limit);
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        timer.poll_expired(clock, cx).map(|_| None)
    })
    .await
}

/// Like [`timeout`], but cheap when `fut` finishes within one scheduling turn: on a worker
/// thread, its first `Pending` defers a wake-up until the worker has run one more task instead of
/// arming a timer (an ask's target usually runs next, on the same worker, and has answered by
/// then). Only if it is still pending is a timer armed, for the full `limit` from that moment; so
/// the timeout is never shorter than `limit`, and at most one task run longer.
pub(crate) fn lazy_timeout<F: Future + Unpin>(clock: Clock<'_>, limit: Duration, fut: F) -> LazyTimeout<'_, F> {
    LazyTimeout { fut, clock, limit, stage: Stage::First }
}

enum Stage {
    First,
    Yielded,
    Armed(Timer),
}

pub(crate) struct LazyTimeout<'a, F> {
    fut: F,
    clock: Clock<'a>,
    limit: Duration,
    stage: Stage,
}

impl<F: Future + Unpin> Future for LazyTimeout<'_, F> {
    /// `None` when it timed out.
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let Poll::Ready(out) = Pin::new(&mut this.fut).poll(cx) {
            return Poll::Ready(Some(out));
        }
        loop {
            match &mut this.stage {
                Stage::First => {
                    this.stage = Stage::Yielded;
                    if crate::sched::defer_wake(cx.waker()) {
                        return Poll::Pending;
                    }
                }
                Stage::Yielded => this.stage = Stage::Armed(Timer::after(this.limit)),
                Stage::Armed(timer) => return timer.poll_expired(this.clock, cx).map(|_| None),
            }
        }
    }
}
