//! Timeouts that work from any thread: inside a tokio runtime they use it, elsewhere they use the
//! actor system's own I/O runtime.

use std::future::Future;
use std::pin::Pin;
use std::sync::Weak;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Sleep;

use crate::system::SystemShared;

/// Where timers come from when the current thread has no tokio runtime (actor workers do not).
#[derive(Clone)]
pub(crate) enum Clock<'a> {
    /// The actor system's own I/O runtime.
    System(&'a Weak<SystemShared>),
    /// A runtime handle (a remote actor's transport).
    Runtime(tokio::runtime::Handle),
}

impl Clock<'_> {
    /// Runs `f` inside a runtime context. `None` when there is no runtime left anywhere.
    fn enter<R>(&self, f: impl FnOnce() -> R) -> Option<R> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Some(f());
        }
        match self {
            Clock::System(system) => {
                let system = system.upgrade()?;
                let _entered = system.tokio.enter();
                Some(f())
            }
            Clock::Runtime(handle) => {
                let _entered = handle.enter();
                Some(f())
            }
        }
    }
}

/// Runs `fut` for at most `limit`. `None` means it timed out (or no runtime is left to time it).
pub(crate) async fn timeout<F: Future>(clock: Clock<'_>, limit: Duration, fut: F) -> Option<F::Output> {
    let timed = clock.enter(|| tokio::time::timeout(limit, fut))?;
    timed.await.ok()
}

/// A tokio sleep created in a runtime context (the current one, or the clock's). `None` when
/// there is no runtime left anywhere: nothing could answer then.
fn sleep(clock: &Clock<'_>, limit: Duration) -> Option<Pin<Box<Sleep>>> {
    clock.enter(|| Box::pin(tokio::time::sleep(limit)))
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
    Armed(Pin<Box<Sleep>>),
    Expired,
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
                Stage::Yielded => {
                    this.stage = match sleep(&this.clock, this.limit) {
                        Some(timer) => Stage::Armed(timer),
                        None => Stage::Expired,
                    };
                }
                Stage::Armed(timer) => {
                    return match timer.as_mut().poll(cx) {
                        Poll::Ready(()) => Poll::Ready(None),
                        Poll::Pending => Poll::Pending,
                    };
                }
                Stage::Expired => return Poll::Ready(None),
            }
        }
    }
}
