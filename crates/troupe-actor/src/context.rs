//! The [`Context`] an actor's handlers receive.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::task::AbortHandle;

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
    pub(crate) timers: Vec<AbortHandle>,
    pub(crate) stop_requested: bool,
    /// Restart history, created when a child first fails.
    pub(crate) restarts: Option<Box<RestartHistory>>,
}

/// A running timer; [`cancel`](TimerHandle::cancel) stops it. Timers also stop with their actor.
#[derive(Debug)]
pub struct TimerHandle(AbortHandle);

impl TimerHandle {
    /// Stops the timer; a message it has not sent yet is not sent.
    pub fn cancel(&self) {
        self.0.abort();
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
        self.children.insert(child.id(), child.untyped());
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
        self.start_timer(async move {
            tokio::time::sleep(delay).await;
            let _ = me.tell(msg).await;
        })
    }

    /// Sends `make()` to this actor every `period` (first after one period). A tick that finds the
    /// mailbox full is skipped rather than queued.
    pub fn interval(&mut self, period: Duration, mut make: impl FnMut() -> A::Msg + Send + 'static) -> TimerHandle {
        let me = self.myself();
        self.start_timer(async move {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                ticks.tick().await;
                if let Err(crate::error::TrySendError::Closed { .. }) = me.try_tell(make()) {
                    return;
                }
            }
        })
    }

    fn start_timer(&mut self, timer: impl std::future::Future<Output = ()> + Send + 'static) -> TimerHandle {
        self.timers.retain(|t| !t.is_finished());
        let handle = self.system.shared.tokio.spawn(timer).abort_handle();
        self.timers.push(handle.clone());
        TimerHandle(handle)
    }

    pub(crate) fn cancel_timers(&mut self) {
        for timer in self.timers.drain(..) {
            timer.abort();
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
