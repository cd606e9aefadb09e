//! Actor references.
//!
//! An [`ActorRef<M>`] names one actor that takes messages of type `M`. It is cheap to clone, can
//! be sent inside messages, and stays valid after the actor stops (sends then fail with a clear
//! error). Today every ref points at a local actor; the remote transport and migration extend the
//! same type, so code written against it does not change when actors move off-node.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::cell::{ActorCell, CellControl, Watcher};
use crate::error::{AskError, SendError, SendFailure, TrySendError};
use crate::exit::ExitReason;
use crate::id::ActorId;
use crate::mailbox::Refused;
use crate::message::Message;
use crate::remote::{Refusal, RemoteMessage, RemoteProxy, RemoteTarget, SendOptions};
use crate::reply::{Answer, Expired, Reply};
use crate::time::Clock;

/// A typed reference to an actor taking messages of type `M`, on this node or another.
pub struct ActorRef<M> {
    target: Target<M>,
}

enum Target<M> {
    Local(Arc<ActorCell<M>>),
    Remote(Arc<RemoteTarget<M>>),
}

impl<M> Clone for ActorRef<M> {
    fn clone(&self) -> Self {
        let target = match &self.target {
            Target::Local(cell) => Target::Local(cell.clone()),
            Target::Remote(remote) => Target::Remote(remote.clone()),
        };
        ActorRef { target }
    }
}

impl<M> ActorRef<M> {
    /// The actor's cluster-wide id.
    pub fn id(&self) -> ActorId {
        match &self.target {
            Target::Local(cell) => cell.id,
            Target::Remote(remote) => remote.proxy.id(),
        }
    }

    /// True when the actor lives on this node.
    pub fn is_local(&self) -> bool {
        matches!(self.target, Target::Local(_))
    }
}

impl<M> std::fmt::Debug for ActorRef<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ActorRef({})", self.id())
    }
}

impl<M> PartialEq for ActorRef<M> {
    fn eq(&self, other: &Self) -> bool {
        self.id() == other.id()
    }
}

impl<M> Eq for ActorRef<M> {}

impl<M> std::hash::Hash for ActorRef<M> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.id().hash(state);
    }
}

impl<M: RemoteMessage> ActorRef<M> {
    /// A ref to a remote actor through its proxy (used by transports).
    pub fn remote(proxy: Arc<RemoteProxy>, opts: SendOptions) -> Self {
        ActorRef { target: Target::Remote(Arc::new(RemoteTarget::new(proxy, opts))) }
    }

    /// The same actor, with `opts` deciding how messages travel when it is remote (channel,
    /// partition key, acknowledged delivery). A local ref is returned unchanged.
    pub fn with_options(&self, opts: SendOptions) -> Self {
        match &self.target {
            Target::Local(_) => self.clone(),
            Target::Remote(remote) => ActorRef::remote(remote.proxy.clone(), opts),
        }
    }
}

impl<M: Message> ActorRef<M> {
    pub(crate) fn from_cell(cell: Arc<ActorCell<M>>) -> Self {
        ActorRef { target: Target::Local(cell) }
    }

    /// The local ref, when the actor is local.
    pub(crate) fn local_ref(&self) -> Option<ActorRef<M>> {
        match &self.target {
            Target::Local(cell) => Some(ActorRef::from_cell(cell.clone())),
            Target::Remote(_) => None,
        }
    }

    /// Sends `msg`, waiting while the mailbox (or, for a remote actor, the connection's send
    /// queue) is full: backpressure.
    ///
    /// Messages from one sender to one receiver arrive in the order sent. Fails when the actor
    /// no longer accepts messages or cannot be reached; the message is returned in the error.
    pub fn tell(&self, msg: M) -> Tell<'_, M> {
        Tell { target: &self.target, msg: Some(msg) }
    }

    /// Sends `msg` if the mailbox (or send queue) has room, without waiting.
    pub fn try_tell(&self, msg: M) -> Result<(), TrySendError<M>> {
        match &self.target {
            Target::Local(cell) => match cell.mailbox.push(msg, None) {
                Ok(pushed) => {
                    if pushed.wake_actor {
                        cell.wake();
                    }
                    Ok(())
                }
                Err((Refused::Full, message)) => Err(TrySendError::Full { id: cell.id, message }),
                Err((Refused::Closed, message)) => Err(TrySendError::Closed { id: cell.id, message }),
            },
            Target::Remote(remote) => match remote.try_send(&msg) {
                Ok(()) => Ok(()),
                Err(Refusal::Full) => Err(TrySendError::Full { id: self.id(), message: msg }),
                Err(Refusal::Failed(SendFailure::NotRunning)) => {
                    Err(TrySendError::Closed { id: self.id(), message: msg })
                }
                Err(Refusal::Failed(reason)) => Err(TrySendError::Failed { id: self.id(), message: msg, reason }),
            },
        }
    }

    /// Sends as many of `msgs` (from the front, in order) as the mailbox has room for, in one
    /// step: what a network reader does with a batch of messages for one local actor. The messages
    /// not sent stay in `msgs`; `Err` when none was sent. A remote actor takes them one at a
    /// time.
    pub(crate) fn try_tell_many(&self, msgs: &mut std::collections::VecDeque<M>) -> Result<(), Refused> {
        match &self.target {
            Target::Local(cell) => {
                if cell.mailbox.push_many(msgs)?.wake_actor {
                    cell.wake();
                }
                Ok(())
            }
            Target::Remote(_) => {
                let mut sent = 0usize;
                while let Some(msg) = msgs.pop_front() {
                    match self.try_tell(msg) {
                        Ok(()) => sent += 1,
                        Err(error) => {
                            let refused = match &error {
                                TrySendError::Full { .. } => Refused::Full,
                                _ => Refused::Closed,
                            };
                            msgs.push_front(error.into_message());
                            return if sent > 0 { Ok(()) } else { Err(refused) };
                        }
                    }
                }
                Ok(())
            }
        }
    }

    fn ask_timeout_default(&self) -> Duration {
        match &self.target {
            Target::Local(cell) => cell.ask_timeout(),
            Target::Remote(_) => DEFAULT_REMOTE_ASK_TIMEOUT,
        }
    }

    fn clock(&self) -> Clock<'_> {
        match &self.target {
            Target::Local(cell) => Clock::System(&cell.system),
            Target::Remote(remote) => Clock::Alive(&remote.proxy.transport().system().shared),
        }
    }

    /// Sends a request built around a fresh [`Reply`] port and waits for the answer, up to the
    /// system's default ask timeout (5 s for a remote actor).
    ///
    /// ```ignore
    /// let total = counter.ask(CounterMsg::Get).await?;
    /// let sum = adder.ask(|reply| AdderMsg::Add { a: 1, b: 2, reply }).await?;
    /// ```
    pub async fn ask<R, F>(&self, make: F) -> Result<R, AskError>
    where
        R: Send + 'static,
        F: FnOnce(Reply<R>) -> M,
    {
        self.ask_timeout(make, self.ask_timeout_default()).await
    }

    /// Like [`ask`](Self::ask) with an explicit timeout (which also covers waiting for mailbox
    /// room). The timeout is never shorter than `timeout`; it may run over by one scheduling turn.
    ///
    /// The [`Reply`] given to `make` must travel in the message it builds (dropped, it ends the
    /// ask with `NoReply`): an ask to another node is timed by that node's transport, which
    /// learns of the ask from the port it sends.
    pub async fn ask_timeout<R, F>(&self, make: F, timeout: Duration) -> Result<R, AskError>
    where
        R: Send + 'static,
        F: FnOnce(Reply<R>) -> M,
    {
        let id = self.id();
        let (tx, rx) = oneshot::channel();
        let clock = self.clock();
        // Asking another node: the port carries the deadline to the transport, which times the
        // ask with the other asks waiting on it (a tokio timer per ask cost ~2 µs of a 33 µs
        // remote round trip on our 2-core VM). The request is encoded before `try_tell` returns
        // `Ok`, so then the port (or its absence, as NoReply) is in the transport's hands.
        let remote = matches!(self.target, Target::Remote(_));
        let deadline = remote.then(|| crate::time::deadline_after(timeout).into_std());
        let answered = |answer: Result<Answer<R>, oneshot::error::RecvError>| match answer {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(Expired)) => Err(AskError::Timeout { id, timeout }),
            Err(_) => Err(AskError::NoReply(id)),
        };
        match self.try_tell(make(Reply::new(tx, deadline))) {
            Ok(()) => {}
            Err(TrySendError::Closed { .. }) => return Err(AskError::NotRunning(id)),
            Err(TrySendError::Failed { reason, .. }) => return Err(AskError::Failed { id, reason }),
            Err(TrySendError::Full { message, .. }) => {
                // Slow path: wait for room and for the answer under one timer.
                let exchange = async move {
                    self.tell(message).await.map_err(|e| match e.reason {
                        SendFailure::NotRunning => AskError::NotRunning(id),
                        reason => AskError::Failed { id, reason },
                    })?;
                    answered(rx.await)
                };
                return crate::time::timeout(clock, timeout, exchange)
                    .await
                    .unwrap_or(Err(AskError::Timeout { id, timeout }));
            }
        }
        if remote {
            return answered(rx.await);
        }
        match crate::time::lazy_timeout(clock, timeout, rx).await {
            Some(answer) => answered(answer),
            None => Err(AskError::Timeout { id, timeout }),
        }
    }

    /// Asks the actor to stop once it has handled the messages already in its mailbox. New
    /// messages are refused from now on.
    ///
    /// For a remote actor, the messages this node sent it before (on the default channel, with
    /// no partition key of their own) are handled first too, and new messages are refused once
    /// its node applies the stop.
    pub fn stop(&self) {
        self.untyped().stop();
    }

    /// Stops the actor at once: its running handler is abandoned at its next await point and its
    /// queued messages are dropped. The `stopped` hook does not run.
    pub fn kill(&self) {
        self.untyped().kill();
    }

    /// False once the actor is known to have stopped for good.
    pub fn is_alive(&self) -> bool {
        self.untyped().is_alive()
    }

    /// User messages accepted and not yet handled (0 for a remote actor).
    pub fn mailbox_len(&self) -> usize {
        match &self.target {
            Target::Local(cell) => cell.mailbox.len(),
            Target::Remote(_) => 0,
        }
    }

    /// The mailbox capacity (0 for a remote actor).
    pub fn mailbox_capacity(&self) -> usize {
        match &self.target {
            Target::Local(cell) => cell.mailbox.capacity(),
            Target::Remote(_) => 0,
        }
    }

    /// Waits until the actor has stopped for good and returns why. For a remote actor this
    /// watches it through its node; losing the node ends the wait with `ExitReason::NodeDown`.
    pub async fn wait_for_exit(&self) -> ExitReason {
        self.untyped().wait_for_exit().await
    }

    /// A reference that forgets the message type (for watching, stopping, collections).
    pub fn untyped(&self) -> UntypedRef {
        match &self.target {
            Target::Local(cell) => UntypedRef(cell.clone()),
            Target::Remote(remote) => UntypedRef(remote.proxy.clone()),
        }
    }
}

/// How long an `ask` to a remote actor waits by default.
const DEFAULT_REMOTE_ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// The future returned by [`ActorRef::tell`].
#[must_use = "a tell does nothing unless awaited"]
pub struct Tell<'a, M> {
    target: &'a Target<M>,
    msg: Option<M>,
}

impl<M> Unpin for Tell<'_, M> {}

impl<M: Message> Future for Tell<'_, M> {
    type Output = Result<(), SendError<M>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(msg) = self.msg.take() else {
            panic!("`Tell` polled after completion");
        };
        match self.target {
            Target::Local(cell) => match cell.mailbox.push(msg, Some(cx.waker())) {
                Ok(pushed) => {
                    if pushed.wake_actor {
                        cell.wake();
                    }
                    Poll::Ready(Ok(()))
                }
                Err((Refused::Full, msg)) => {
                    self.msg = Some(msg);
                    Poll::Pending
                }
                Err((Refused::Closed, message)) => {
                    Poll::Ready(Err(SendError { id: cell.id, message, reason: SendFailure::NotRunning }))
                }
            },
            Target::Remote(remote) => {
                let id = remote.proxy.id();
                loop {
                    match remote.try_send(&msg) {
                        Ok(()) => return Poll::Ready(Ok(())),
                        Err(Refusal::Failed(reason)) => {
                            return Poll::Ready(Err(SendError { id, message: msg, reason }))
                        }
                        Err(Refusal::Full) => {}
                    }
                    match remote.proxy.transport().poll_ready(id, &remote.opts, cx) {
                        Poll::Ready(Ok(())) => continue,
                        Poll::Ready(Err(reason)) => return Poll::Ready(Err(SendError { id, message: msg, reason })),
                        Poll::Pending => {
                            self.msg = Some(msg);
                            return Poll::Pending;
                        }
                    }
                }
            }
        }
    }
}

/// A reference to an actor of any message type: enough to watch, link, stop or kill it.
#[derive(Clone)]
pub struct UntypedRef(pub(crate) Arc<dyn CellControl>);

impl UntypedRef {
    /// The actor's cluster-wide id.
    pub fn id(&self) -> ActorId {
        self.0.id()
    }

    /// See [`ActorRef::stop`].
    pub fn stop(&self) {
        self.0.send_system(crate::system_msg::SystemMsg::Stop);
    }

    /// See [`ActorRef::kill`].
    pub fn kill(&self) {
        self.0.kill();
    }

    /// False once the actor has stopped for good.
    pub fn is_alive(&self) -> bool {
        self.0.is_alive()
    }

    /// The name of the message type the actor takes.
    pub fn message_type(&self) -> &'static str {
        self.0.message_type()
    }

    /// Recovers the typed reference, if the actor takes messages of type `M`.
    pub fn downcast<M: Message>(&self) -> Option<ActorRef<M>> {
        self.0.clone().as_any().downcast::<ActorCell<M>>().ok().map(ActorRef::from_cell)
    }

    /// Waits until the actor has stopped for good and returns why.
    pub async fn wait_for_exit(&self) -> ExitReason {
        let (tx, rx) = oneshot::channel();
        self.0.add_watcher(Watcher::Signal(tx));
        rx.await.unwrap_or(ExitReason::NoActor)
    }

    /// Calls `f` once when the actor has stopped for good (at once if it already has). `f` runs
    /// on whatever thread notices the exit, so it must be quick; a panic in it is caught and
    /// logged.
    pub fn on_exit(&self, f: impl FnOnce(&ExitReason) + Send + 'static) {
        self.0.add_watcher(Watcher::Callback(Box::new(f), None));
    }

    /// Like [`on_exit`](Self::on_exit), but `f` may be dropped unrun once `wanted` returns false
    /// (asked now and then while the actor lives, when its list of watchers fills up): a
    /// long-lived actor does not keep callbacks nobody needs. `wanted` runs under the actor's
    /// lifecycle lock: it must be quick and must not touch this actor's watchers.
    pub fn on_exit_while(
        &self,
        wanted: impl Fn() -> bool + Send + 'static,
        f: impl FnOnce(&ExitReason) + Send + 'static,
    ) {
        self.0.add_watcher(Watcher::Callback(Box::new(f), Some(Box::new(wanted))));
    }

    /// True when the actor lives on this node.
    pub fn is_local(&self) -> bool {
        self.remote_proxy().is_none()
    }

    /// The proxy of a remote actor (None for a local one).
    pub(crate) fn remote_proxy(&self) -> Option<Arc<RemoteProxy>> {
        self.0.clone().as_any().downcast::<RemoteProxy>().ok()
    }
}

impl std::fmt::Debug for UntypedRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UntypedRef({})", self.id())
    }
}

impl PartialEq for UntypedRef {
    fn eq(&self, other: &Self) -> bool {
        self.id() == other.id()
    }
}

impl Eq for UntypedRef {}

impl<M: Message> From<ActorRef<M>> for UntypedRef {
    fn from(r: ActorRef<M>) -> Self {
        r.untyped()
    }
}

impl<M: Message> From<&ActorRef<M>> for UntypedRef {
    fn from(r: &ActorRef<M>) -> Self {
        r.untyped()
    }
}
