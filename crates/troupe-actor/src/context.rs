//! The [`Context`] an actor's handlers receive.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::task::Poll;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::actor::Actor;
use crate::cell::Watcher;
use crate::error::RegistryError;
use crate::id::ActorId;
use crate::message::Message;
use crate::props::Props;
use crate::reference::{ActorRef, UntypedRef};
use crate::supervision::RestartHistory;
use crate::system::ActorSystem;

/// An actor's view of the runtime: its own reference, its children, timers, watches.
pub struct Context<A: Actor> {
    /// This actor's cell (not an `ActorRef`: one pointer, where a ref is two words).
    pub(crate) cell: std::sync::Arc<crate::cell::ActorCell<A::Msg>>,
    pub(crate) system: ActorSystem,
    pub(crate) parent: Option<UntypedRef>,
    /// Children by id; ids grow with spawn order, so this is spawn order too.
    pub(crate) children: BTreeMap<ActorId, UntypedRef>,
    pub(crate) timers: Vec<Arc<TimerState>>,
    pub(crate) stop_requested: bool,
    /// Restart history, created when a child first fails.
    pub(crate) restarts: Option<Box<RestartHistory>>,
}

/// A running timer; [`cancel`](TimerHandle::cancel) stops it. Timers also stop with their actor.
#[derive(Debug)]
pub struct TimerHandle(Arc<TimerState>);

impl TimerHandle {
    /// Stops the timer; a message it has not sent yet is not sent.
    pub fn cancel(&self) {
        self.0.cancel();
    }
}

/// The shortest `interval` period: tokio's timers have millisecond resolution.
const MIN_PERIOD: Duration = Duration::from_millis(1);

/// What a timer task and its handles share.
#[derive(Debug, Default)]
pub(crate) struct TimerState {
    cancelled: AtomicBool,
    finished: AtomicBool,
    /// Wakes the task when cancelled (a stored permit if it is not waiting yet).
    wake: Notify,
}

impl TimerState {
    fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    /// Sleeps until `deadline` on the system's timers. False if cancelled first, or if nothing
    /// can time it (the system is gone): the timer then ends.
    async fn sleep_until(&self, system: &Weak<crate::system::SystemShared>, deadline: Instant) -> bool {
        let mut timer = crate::time::Timer::until(deadline);
        let expired = std::future::poll_fn(|cx| timer.poll_expired(crate::time::Clock::System(system), cx));
        self.unless_cancelled(expired).await == Some(true)
    }

    /// Runs `work` (a sleep, or a tell that may wait for mailbox room) unless the timer is
    /// cancelled first: `None` then, and what `work` held (a message) is dropped.
    async fn unless_cancelled<T>(&self, work: impl Future<Output = T>) -> Option<T> {
        let mut work = std::pin::pin!(work);
        let mut cancelled = std::pin::pin!(self.wake.notified());
        std::future::poll_fn(|cx| {
            if self.is_cancelled() || cancelled.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
            work.as_mut().poll(cx).map(|out| (!self.is_cancelled()).then_some(out))
        })
        .await
    }
}

impl<A: Actor> Context<A> {
    pub(crate) fn new(
        cell: std::sync::Arc<crate::cell::ActorCell<A::Msg>>,
        system: ActorSystem,
        parent: Option<UntypedRef>,
    ) -> Self {
        Context {
            cell,
            system,
            parent,
            children: BTreeMap::new(),
            timers: Vec::new(),
            stop_requested: false,
            restarts: None,
        }
    }

    /// This actor as an untyped ref.
    pub(crate) fn untyped_me(&self) -> UntypedRef {
        UntypedRef(self.cell.clone())
    }

    /// This actor's own reference.
    pub fn myself(&self) -> ActorRef<A::Msg> {
        ActorRef::from_cell(self.cell.clone())
    }

    /// This actor's id.
    pub fn id(&self) -> ActorId {
        self.cell.id
    }

    /// The actor system (node) this actor runs on.
    pub fn system(&self) -> &ActorSystem {
        &self.system
    }

    /// The supervising parent (`None` only for the node's root guardian).
    pub fn parent(&self) -> Option<&UntypedRef> {
        self.parent.as_ref()
    }

    /// The running children, in spawn order.
    pub fn children(&self) -> impl Iterator<Item = &UntypedRef> {
        self.children.values()
    }

    /// Spawns a child supervised by this actor. The child stops before this actor does.
    pub fn spawn<C: Actor>(&mut self, props: impl Into<Props<C>>) -> ActorRef<C::Msg> {
        let (child, start) = self.system.prepare(props.into(), Some(self.untyped_me()));
        if start.runs() {
            self.children.insert(child.id(), child.untyped());
        }
        start.start();
        child
    }

    /// Stops this actor after the current handler returns (queued messages are not handled).
    pub fn stop(&mut self) {
        self.stop_requested = true;
    }

    /// Delivers [`on_down`](Actor::on_down) when `target` stops (at once if it already has).
    pub fn watch(&mut self, target: impl Into<UntypedRef>) {
        target.into().0.add_watcher(Watcher::Monitor(self.untyped_me().0));
    }

    /// Cancels [`watch`](Self::watch) and [`link`](Self::link) on `target`.
    pub fn unwatch(&mut self, target: impl Into<UntypedRef>) {
        let target = target.into();
        target.0.remove_watcher(self.id());
        self.untyped_me().0.remove_link(target.id());
        if let Some(proxy) = target.remote_proxy() {
            proxy.request_unlink(self.id());
        }
    }

    /// Links this actor and `target` (Erlang's link): when either fails, the other fails with
    /// `ExitReason::LinkFailed`. A normal stop does not propagate. Works across nodes: a remote
    /// `target` also fails when this actor's node is lost, and this actor when `target`'s is.
    pub fn link(&mut self, target: impl Into<UntypedRef>) {
        let target = target.into();
        self.untyped_me().0.add_watcher(Watcher::Link(target.0.clone()));
        target.0.add_watcher(Watcher::Link(self.untyped_me().0));
        if let Some(proxy) = target.remote_proxy() {
            proxy.request_link(self.id());
        }
    }

    /// Sends `msg` to this actor after `delay`.
    pub fn send_after(&mut self, delay: Duration, msg: A::Msg) -> TimerHandle {
        let me = self.myself();
        let deadline = crate::time::deadline_after(delay);
        self.start_timer(move |state, system| async move {
            if state.sleep_until(&system, deadline).await {
                state
                    .unless_cancelled(async {
                        let _ = me.tell(msg).await;
                    })
                    .await;
            }
        })
    }

    /// Sends `make()` to this actor every `period` (first after one period; a period under a
    /// millisecond, the timers' resolution, is taken as one). A tick that finds the mailbox full
    /// is skipped rather than queued, and so are ticks missed while the system was too busy.
    pub fn interval(&mut self, period: Duration, mut make: impl FnMut() -> A::Msg + Send + 'static) -> TimerHandle {
        let me = self.myself();
        let period = period.max(MIN_PERIOD);
        let first = crate::time::deadline_after(period);
        self.start_timer(move |state, system| async move {
            let mut next = first;
            while state.sleep_until(&system, next).await {
                let msg = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(&mut make)) {
                    Ok(msg) => msg,
                    Err(panic) => {
                        let message = crate::runner::panic_message(&*panic);
                        tracing::error!(actor = %me.id(), "an interval's message factory panicked; the interval stops: {message}");
                        return;
                    }
                };
                if let Err(crate::error::TrySendError::Closed { .. }) = me.try_tell(msg) {
                    return;
                }
                // Ticks missed while the system was busy are skipped, not sent in a burst.
                let now = Instant::now();
                let behind = now.saturating_duration_since(next).as_nanos() / period.as_nanos() + 1;
                next = match u32::try_from(behind).ok().and_then(|n| period.checked_mul(n)) {
                    Some(step) => next.checked_add(step).unwrap_or_else(|| crate::time::deadline_after(period)),
                    None => crate::time::deadline_after(period),
                };
            }
        })
    }

    /// Runs a timer as a task of the actor scheduler. Its sleeps use the system's timers, which
    /// outlive the tokio runtime the system was given.
    fn start_timer<F>(
        &mut self,
        timer: impl FnOnce(Arc<TimerState>, Weak<crate::system::SystemShared>) -> F,
    ) -> TimerHandle
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.timers.retain(|t| !t.finished.load(Ordering::Acquire));
        let state = Arc::new(TimerState::default());
        let run = timer(state.clone(), Arc::downgrade(&self.system.shared));
        let finished = state.clone();
        self.system.scheduler().spawn(async move {
            run.await;
            finished.finished.store(true, Ordering::Release);
        });
        self.timers.push(state.clone());
        TimerHandle(state)
    }

    /// Kills every child at once, forgetting them (they stop without waiting for each other).
    pub(crate) fn kill_children(&mut self) {
        for child in std::mem::take(&mut self.children).into_values() {
            child.kill();
        }
    }

    pub(crate) fn cancel_timers(&mut self) {
        for timer in self.timers.drain(..) {
            timer.cancel();
        }
    }

    /// Registers this actor in its node's registry under `name` (removed when it stops).
    pub fn register(&self, name: impl Into<String>) -> Result<(), RegistryError> {
        self.system.register(name, &self.myself())
    }

    /// Looks up a named actor on this node.
    pub fn lookup<M: Message>(&self, name: &str) -> Result<ActorRef<M>, RegistryError> {
        self.system.lookup(name)
    }
}
