//! The shared part of a local actor: its mailbox, its waker and its lifecycle record.
//!
//! Every [`ActorRef`](crate::ActorRef) to a local actor points at one cell. The cell outlives the
//! actor (refs may be kept after it stops), so everything it holds is small.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock, Weak};
use std::task::Waker;

use parking_lot::Mutex;

use crate::exit::{Down, ExitReason};
use crate::id::ActorId;
use crate::mailbox::Mailbox;
use crate::rare_list::RareList;
use crate::system::SystemShared;
use crate::system_msg::SystemMsg;

/// Who wants to know when the actor stops.
pub(crate) enum Watcher {
    /// Gets a `Down` system message.
    Monitor(Arc<dyn CellControl>),
    /// Fails (or hears of it) when this actor fails.
    Link(Arc<dyn CellControl>),
    /// A non-actor waiter (`ActorRef::wait_for_exit`, system shutdown).
    Signal(tokio::sync::oneshot::Sender<ExitReason>),
    /// A function to call (`UntypedRef::on_exit`; the transport reports exits to remote watchers),
    /// and, for `UntypedRef::on_exit_while`, whether it is still wanted.
    Callback(Box<dyn FnOnce(&ExitReason) + Send>, Option<Box<dyn Fn() -> bool + Send>>),
}

impl Watcher {
    /// False for an entry nobody will hear any more: its watcher has terminated, its waiter gave
    /// up, or its callback is no longer wanted. (Checked while the watched actor's lifecycle lock
    /// is held, so it takes no lifecycle lock itself.)
    fn may_listen(&self) -> bool {
        match self {
            Watcher::Monitor(c) | Watcher::Link(c) => !c.is_gone(),
            Watcher::Signal(tx) => !tx.is_closed(),
            Watcher::Callback(_, wanted) => wanted.as_ref().is_none_or(|wanted| wanted()),
        }
    }
}

/// What an actor's watchers and the registry need; one per actor, so every field is one word.
#[derive(Default)]
pub(crate) struct Lifecycle {
    pub(crate) watchers: RareList<Watcher>,
    /// Set once, when the actor is gone for good (boxed: most actors never need it).
    pub(crate) exit: Option<Box<ExitReason>>,
    /// Registry names to remove when the actor is gone.
    pub(crate) names: RareList<String>,
}

/// Type-erased control of a cell, used by supervision, watches and the registry.
pub(crate) trait CellControl: Send + Sync + 'static {
    fn id(&self) -> ActorId;
    /// Queues a system message and wakes the actor. False when the actor is gone.
    fn send_system(&self, msg: SystemMsg) -> bool;
    fn lifecycle(&self) -> &Mutex<Lifecycle>;
    /// Stops the actor at once, even in the middle of an awaiting handler.
    fn kill(&self);
    fn message_type(&self) -> &'static str;
    fn as_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync>;
    /// True once the actor has terminated for good. Takes no lifecycle lock: it is asked about
    /// watchers while the watched actor's lifecycle lock is held.
    fn is_gone(&self) -> bool;

    fn is_alive(&self) -> bool {
        self.lifecycle().lock().exit.is_none()
    }

    /// Adds a watcher. If the actor is already gone the watcher is told at once.
    fn add_watcher(&self, watcher: Watcher) {
        if self.queue_watcher(watcher) {
            self.watcher_added();
        }
    }

    /// Queues a watcher without [`watcher_added`](Self::watcher_added); if the actor is already
    /// gone the watcher is told at once. True when it was queued. An actor watches (or links to)
    /// another at most once: a second `watch` of the same actor, say from `started` after a
    /// restart, changes nothing, so one exit means one `Down`.
    fn queue_watcher(&self, watcher: Watcher) -> bool {
        let mut life = self.lifecycle().lock();
        match life.exit.clone() {
            None => {
                let duplicate = match &watcher {
                    Watcher::Monitor(c) => {
                        life.watchers.iter().any(|w| matches!(w, Watcher::Monitor(o) if o.id() == c.id()))
                    }
                    Watcher::Link(c) => life.watchers.iter().any(|w| matches!(w, Watcher::Link(o) if o.id() == c.id())),
                    Watcher::Signal(_) | Watcher::Callback(..) => false,
                };
                if duplicate {
                    return false;
                }
                // Watchers that terminated before this actor (short-lived actors watching a
                // long-lived one, `wait_for_exit` calls that timed out) are dropped now and then,
                // or the list would grow with every one of them.
                life.watchers.push_pruning(watcher, Watcher::may_listen);
                true
            }
            Some(reason) => {
                drop(life);
                notify_watcher(self.id(), watcher, &reason);
                false
            }
        }
    }

    /// Called after a watcher was queued (a remote proxy asks the actor's node to report the exit).
    fn watcher_added(&self) {}

    /// Removes this actor's link to `linked` (the entry that makes `linked` hear of its failure).
    fn remove_link(&self, linked: ActorId) {
        self.lifecycle().lock().watchers.retain(|w| !matches!(w, Watcher::Link(c) if c.id() == linked));
    }

    /// The actor `from`, linked to this one, ended with `reason`: a failure makes this one fail,
    /// a normal stop just ends the link. (A remote proxy passes the news on to its node.)
    fn link_ended(&self, from: ActorId, reason: &ExitReason) {
        // `from` is gone: this actor's half of the link would only keep its cell alive.
        self.remove_link(from);
        if !reason.is_normal() {
            self.send_system(SystemMsg::LinkExit { from, reason: reason.clone() });
        }
    }

    /// Removes the monitors and links held by `watcher_id`.
    fn remove_watcher(&self, watcher_id: ActorId) {
        self.lifecycle().lock().watchers.retain(|w| match w {
            Watcher::Monitor(c) | Watcher::Link(c) => c.id() != watcher_id,
            Watcher::Signal(_) | Watcher::Callback(..) => true,
        });
    }

    /// Records the final exit reason; returns the watchers to notify and the names to unregister.
    fn mark_exited(&self, reason: &ExitReason) -> (Vec<Watcher>, Vec<String>) {
        let mut life = self.lifecycle().lock();
        life.exit = Some(Box::new(reason.clone()));
        (life.watchers.take(), life.names.take())
    }
}

// `repr(C)` keeps the mailbox (whose first bytes are what every send touches) at the front,
// next to the waker a send uses when the actor was idle: on two workers a message often comes
// from the other core, and each separate cache line it touches is a transfer between cores.
#[repr(C)]
pub(crate) struct ActorCell<M> {
    pub(crate) mailbox: Mailbox<M>,
    waker: OnceLock<Waker>,
    pub(crate) id: ActorId,
    pub(crate) kill_requested: AtomicBool,
    /// The system's default `ask` timeout, copied at spawn so an ask needs no trip to the
    /// (shared, contended) system. In nanoseconds (up to 584 years): a `Duration` is two words.
    ask_timeout_ns: u64,
    life: Mutex<Lifecycle>,
    pub(crate) system: Weak<SystemShared>,
}

impl<M: Send + 'static> ActorCell<M> {
    pub(crate) fn new(
        id: ActorId,
        capacity: usize,
        ask_timeout: std::time::Duration,
        system: Weak<SystemShared>,
    ) -> Self {
        ActorCell {
            id,
            mailbox: Mailbox::new(capacity),
            waker: OnceLock::new(),
            kill_requested: AtomicBool::new(false),
            ask_timeout_ns: u64::try_from(ask_timeout.as_nanos()).unwrap_or(u64::MAX),
            life: Mutex::new(Lifecycle::default()),
            system,
        }
    }

    /// The default `ask` timeout of the actor's system.
    pub(crate) fn ask_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.ask_timeout_ns)
    }

    /// Installs the waker of the actor's task (once, before the task first runs).
    pub(crate) fn set_waker(&self, waker: Waker) {
        let _ = self.waker.set(waker);
    }

    /// Schedules the actor's task.
    #[inline]
    pub(crate) fn wake(&self) {
        if let Some(waker) = self.waker.get() {
            waker.wake_by_ref();
        }
    }
}

/// Tells one watcher that actor `id` stopped.
pub(crate) fn notify_watcher(id: ActorId, watcher: Watcher, reason: &ExitReason) {
    match watcher {
        Watcher::Monitor(c) => {
            c.send_system(SystemMsg::Down(Down { id, reason: reason.clone() }));
        }
        Watcher::Link(c) => c.link_ended(id, reason),
        Watcher::Signal(tx) => {
            let _ = tx.send(reason.clone());
        }
        Watcher::Callback(f, _) => {
            // A user's callback: its panic must not keep the other watchers from hearing of the
            // exit, nor unwind through whoever noticed it (a worker, a connection's reader).
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(reason))).is_err() {
                tracing::error!(actor = %id, "an exit callback panicked");
            }
        }
    }
}

impl<M: Send + 'static> CellControl for ActorCell<M> {
    fn id(&self) -> ActorId {
        self.id
    }

    fn send_system(&self, msg: SystemMsg) -> bool {
        let queued = self.mailbox.push_system(msg);
        if queued {
            self.wake();
        }
        queued
    }

    fn lifecycle(&self) -> &Mutex<Lifecycle> {
        &self.life
    }

    fn kill(&self) {
        if self.mailbox.push_kill(&self.kill_requested) {
            self.wake();
        }
    }

    fn message_type(&self) -> &'static str {
        std::any::type_name::<M>()
    }

    fn as_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync> {
        self
    }

    fn is_gone(&self) -> bool {
        self.mailbox.is_gone()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::prelude::*;
    use crate::UntypedRef;

    /// Lives as long as the test.
    struct Target;
    struct Nothing;
    impl Message for Nothing {}
    impl Actor for Target {
        type Msg = Nothing;
        async fn handle(&mut self, _: Nothing, _: &mut Context<Self>) -> ActorResult {
            Ok(())
        }
    }

    /// Watches (or links to) the target when it starts, then stops.
    struct Passer {
        target: UntypedRef,
        link: bool,
    }
    impl Actor for Passer {
        type Msg = Nothing;
        async fn started(&mut self, ctx: &mut Context<Self>) -> ActorResult {
            if self.link {
                ctx.link(self.target.clone());
            } else {
                ctx.watch(self.target.clone());
            }
            ctx.stop();
            Ok(())
        }
        async fn handle(&mut self, _: Nothing, _: &mut Context<Self>) -> ActorResult {
            Ok(())
        }
    }

    #[test]
    fn a_long_lived_actor_keeps_no_entries_for_watchers_that_ended() {
        let system = ActorSystem::builder().workers(2).build().expect("system starts");
        let target = system.spawn(Target).untyped();
        system.block_on(async {
            for i in 0..1_000 {
                let passer = system.spawn(Passer { target: target.clone(), link: i % 2 == 1 });
                assert!(passer.wait_for_exit().await.is_normal());
                // A waiter that gives up leaves an entry behind too, and so does a callback
                // nobody wants any more.
                let _ = tokio::time::timeout(Duration::ZERO, target.wait_for_exit()).await;
                target.on_exit_while(|| false, |_| {});
            }
        });
        let entries = target.0.lifecycle().lock().watchers.len();
        // Links are dropped as their other end stops; monitors, waiters that gave up and
        // unwanted callbacks when the list next fills. 1,000 of each were added.
        assert!(entries <= 64, "the target still holds {entries} watcher entries");
        assert!(target.is_alive());
        system.shutdown_blocking();
    }
}
