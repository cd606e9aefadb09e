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
use crate::error::{AskError, SendError, TrySendError};
use crate::exit::ExitReason;
use crate::id::ActorId;
use crate::mailbox::Refused;
use crate::message::Message;
use crate::reply::Reply;

/// A typed reference to an actor taking messages of type `M`.
pub struct ActorRef<M> {
    pub(crate) cell: Arc<ActorCell<M>>,
}

impl<M> Clone for ActorRef<M> {
    fn clone(&self) -> Self {
        ActorRef { cell: self.cell.clone() }
    }
}

impl<M> std::fmt::Debug for ActorRef<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ActorRef({})", self.cell.id)
    }
}

impl<M> PartialEq for ActorRef<M> {
    fn eq(&self, other: &Self) -> bool {
        self.cell.id == other.cell.id
    }
}

impl<M> Eq for ActorRef<M> {}

impl<M> std::hash::Hash for ActorRef<M> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.cell.id.hash(state);
    }
}

impl<M: Message> ActorRef<M> {
    pub(crate) fn from_cell(cell: Arc<ActorCell<M>>) -> Self {
        ActorRef { cell }
    }

    /// The actor's cluster-wide id.
    pub fn id(&self) -> ActorId {
        self.cell.id
    }

    /// Sends `msg`, waiting while the mailbox is full (backpressure).
    ///
    /// Messages from one sender to one receiver arrive in the order sent. Fails only when the
    /// actor no longer accepts messages; the message is returned in the error.
    pub fn tell(&self, msg: M) -> Tell<'_, M> {
        Tell { cell: &self.cell, msg: Some(msg) }
    }

    /// Sends `msg` if the mailbox has room, without waiting.
    pub fn try_tell(&self, msg: M) -> Result<(), TrySendError<M>> {
        match self.cell.mailbox.push(msg, None) {
            Ok(pushed) => {
                if pushed.wake_actor {
                    self.cell.wake();
                }
                Ok(())
            }
            Err((Refused::Full, message)) => Err(TrySendError::Full { id: self.cell.id, message }),
            Err((Refused::Closed, message)) => Err(TrySendError::Closed { id: self.cell.id, message }),
        }
    }

    /// Sends a request built around a fresh [`Reply`] port and waits for the answer, up to the
    /// system's default ask timeout.
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
        self.ask_timeout(make, self.cell.ask_timeout).await
    }

    /// Like [`ask`](Self::ask) with an explicit timeout (which also covers waiting for mailbox
    /// room). The timeout is never shorter than `timeout`; it may run over by one scheduling turn.
    pub async fn ask_timeout<R, F>(&self, make: F, timeout: Duration) -> Result<R, AskError>
    where
        R: Send + 'static,
        F: FnOnce(Reply<R>) -> M,
    {
        let id = self.cell.id;
        let (tx, rx) = oneshot::channel();
        match self.try_tell(make(Reply::new(tx))) {
            Ok(()) => {}
            Err(TrySendError::Closed { .. }) => return Err(AskError::NotRunning(id)),
            Err(TrySendError::Full { message, .. }) => {
                // Slow path: wait for room and for the answer under one timer.
                let exchange = async move {
                    self.tell(message).await.map_err(|_| AskError::NotRunning(id))?;
                    rx.await.map_err(|_| AskError::NoReply(id))
                };
                return crate::time::timeout(&self.cell.system, timeout, exchange)
                    .await
                    .unwrap_or(Err(AskError::Timeout { id, timeout }));
            }
        }
        match crate::time::lazy_timeout(&self.cell.system, timeout, rx).await {
            Some(Ok(answer)) => Ok(answer),
            Some(Err(_)) => Err(AskError::NoReply(id)),
            None => Err(AskError::Timeout { id, timeout }),
        }
    }

    /// Asks the actor to stop once it has handled the messages already in its mailbox. New
    /// messages are refused from now on.
    pub fn stop(&self) {
        self.cell.send_system(crate::system_msg::SystemMsg::Stop);
    }

    /// Stops the actor at once: its running handler is abandoned at its next await point and its
    /// queued messages are dropped. The `stopped` hook does not run.
    pub fn kill(&self) {
        CellControl::kill(&*self.cell);
    }

    /// False once the actor has stopped for good.
    pub fn is_alive(&self) -> bool {
        self.cell.is_alive()
    }

    /// User messages accepted and not yet handled.
    pub fn mailbox_len(&self) -> usize {
        self.cell.mailbox.len()
    }

    /// The mailbox capacity.
    pub fn mailbox_capacity(&self) -> usize {
        self.cell.mailbox.capacity()
    }

    /// Waits until the actor has stopped for good and returns why.
    pub async fn wait_for_exit(&self) -> ExitReason {
        let (tx, rx) = oneshot::channel();
        self.cell.add_watcher(Watcher::Signal(tx));
        rx.await.unwrap_or(ExitReason::NoActor)
    }

    /// A reference that forgets the message type (for watching, stopping, collections).
    pub fn untyped(&self) -> UntypedRef {
        UntypedRef(self.cell.clone())
    }
}

/// The future returned by [`ActorRef::tell`].
#[must_use = "a tell does nothing unless awaited"]
pub struct Tell<'a, M> {
    cell: &'a Arc<ActorCell<M>>,
    msg: Option<M>,
}

impl<M> Unpin for Tell<'_, M> {}

impl<M: Message> Future for Tell<'_, M> {
    type Output = Result<(), SendError<M>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(msg) = self.msg.take() else {
            panic!("`Tell` polled after completion");
        };
        match self.cell.mailbox.push(msg, Some(cx.waker())) {
            Ok(pushed) => {
                if pushed.wake_actor {
                    self.cell.wake();
                }
                Poll::Ready(Ok(()))
            }
            Err((Refused::Full, msg)) => {
                self.msg = Some(msg);
                Poll::Pending
            }
            Err((Refused::Closed, message)) => Poll::Ready(Err(SendError { id: self.cell.id, message })),
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
        UntypedRef(r.cell)
    }
}

impl<M: Message> From<&ActorRef<M>> for UntypedRef {
    fn from(r: &ActorRef<M>) -> Self {
        r.untyped()
    }
}
