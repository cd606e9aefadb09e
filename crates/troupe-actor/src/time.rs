//! Timeouts that work from any thread: inside a tokio runtime they use it, elsewhere they use the
//! actor system's own I/O runtime.

use std::future::Future;
use std::pin::Pin;
use std::sync::Weak;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Sleep;

use crate::system::SystemShared;

/// Runs `fut` for at most `limit`. `None` means it timed out (or no runtime is left to time it).
pub(crate) async fn timeout<F: Future>(system: &Weak<SystemShared>, limit: Duration, fut: F) -> Option<F::Output> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return tokio::time::timeout(limit, fut).await.ok();
    }
    let timed = {
        let system = system.upgrade()?;
        let _entered = system.tokio.enter();
        tokio::time::timeout(limit, fut)
    };
    timed.await.ok()
}

/// A tokio sleep created in a runtime context (the current one, or the system's). `None` when
/// there is no runtime left anywhere: nothing could answer then.
fn sleep(system: &Weak<SystemShared>, limit: Duration) -> Option<Pin<Box<Sleep>>> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Some(Box::pin(tokio::time::sleep(limit)));
    }
    let system = system.upgrade()?;
    let _entered = system.tokio.enter();
    Some(Box::pin(tokio::time::sleep(limit)))
}

/// Like [`timeout`], but cheap when `fut` finishes within one scheduling turn: on a worker
/// thread, its first `Pending` defers a wake-up until the worker has run one more task instead of
/// arming a timer (an ask's target usually runs next, on the same worker, and has answered by
/// then). Only if it is still pending is a timer armed, for the full `limit` from that moment; so
/// the timeout is never shorter than `limit`, and at most one task run longer.
pub(crate) fn lazy_timeout<F: Future + Unpin>(
    system: &Weak<SystemShared>,
    limit: Duration,
    fut: F,
) -> LazyTimeout<'_, F> {
    LazyTimeout { fut, system, limit, stage: Stage::First }
}

enum Stage {
    First,
    Yielded,
    Armed(Pin<Box<Sleep>>),
    Expired,
}

pub(crate) struct LazyTimeout<'a, F> {
    fut: F,
    system: &'a Weak<SystemShared>,
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
                    this.stage = match sleep(this.system, this.limit) {
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
