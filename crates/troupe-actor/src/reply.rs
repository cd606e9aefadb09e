//! Typed replies for `ask`.

use tokio::sync::oneshot;

/// The port through which an actor answers an [`ask`](crate::ActorRef::ask).
///
/// An ask builds the request around a `Reply<T>`; the actor answers with [`send`](Reply::send).
/// Dropping a `Reply` without answering tells the asker `AskError::NoReply`.
#[derive(Debug)]
pub struct Reply<T> {
    tx: oneshot::Sender<T>,
}

impl<T: Send + 'static> Reply<T> {
    pub(crate) fn new(tx: oneshot::Sender<T>) -> Self {
        Reply { tx }
    }

    /// Answers the ask. Returns false when the asker stopped waiting (it timed out or went away).
    pub fn send(self, value: T) -> bool {
        self.tx.send(value).is_ok()
    }

    /// True when the asker no longer waits for the answer.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}
