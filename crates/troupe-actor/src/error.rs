//! Errors of the actor runtime.

use std::time::Duration;

use crate::id::ActorId;

/// The error type actor handlers and hooks return; any `std::error::Error` converts with `?`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What handlers and hooks return: an error fails the actor (and its supervisor decides).
pub type ActorResult = Result<(), BoxError>;

/// `tell` failed: the actor no longer accepts messages. The message comes back.
#[derive(thiserror::Error)]
#[error("actor {id} is not running; message not delivered")]
pub struct SendError<M> {
    /// The actor the message was for.
    pub id: ActorId,
    /// The message that was not delivered.
    pub message: M,
}

/// `try_tell` failed. The message comes back.
#[derive(thiserror::Error)]
pub enum TrySendError<M> {
    /// The mailbox is at capacity.
    #[error("mailbox of actor {id} is full")]
    Full {
        /// The actor the message was for.
        id: ActorId,
        /// The message that was not delivered.
        message: M,
    },
    /// The actor no longer accepts messages.
    #[error("actor {id} is not running; message not delivered")]
    Closed {
        /// The actor the message was for.
        id: ActorId,
        /// The message that was not delivered.
        message: M,
    },
}

impl<M> TrySendError<M> {
    /// The message that was not delivered.
    pub fn into_message(self) -> M {
        match self {
            TrySendError::Full { message, .. } | TrySendError::Closed { message, .. } => message,
        }
    }
}

// Debug without requiring the message to be Debug, so `?` and `expect` work for any message.
impl<M> std::fmt::Debug for SendError<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendError").field("id", &self.id).field("message", &std::any::type_name::<M>()).finish()
    }
}

impl<M> std::fmt::Debug for TrySendError<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (kind, id) = match self {
            TrySendError::Full { id, .. } => ("Full", id),
            TrySendError::Closed { id, .. } => ("Closed", id),
        };
        f.debug_struct(kind).field("id", id).field("message", &std::any::type_name::<M>()).finish()
    }
}

/// An `ask` did not produce an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AskError {
    /// The actor was not running when asked.
    #[error("actor {0} is not running")]
    NotRunning(ActorId),
    /// The actor dropped the reply port without answering (it stopped, failed, or ignored it).
    #[error("actor {0} stopped or dropped the request without replying")]
    NoReply(ActorId),
    /// No answer within the timeout.
    #[error("actor {id} did not reply within {timeout:?}")]
    Timeout {
        /// The actor that was asked.
        id: ActorId,
        /// How long the asker waited.
        timeout: Duration,
    },
}

/// Errors of the named registry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// The name is taken by a running actor.
    #[error("the name {name:?} is already registered to actor {holder}")]
    NameTaken {
        /// The name.
        name: String,
        /// Who holds it.
        holder: ActorId,
    },
    /// No actor is registered under the name.
    #[error("no actor is registered as {0:?}")]
    NotFound(String),
    /// The actor registered under the name takes a different message type.
    #[error("actor {name:?} takes messages of type {actual}, not {expected}")]
    WrongType {
        /// The name.
        name: String,
        /// The message type asked for.
        expected: &'static str,
        /// The message type the actor takes.
        actual: &'static str,
    },
    /// The actor to register is not running.
    #[error("actor {0} is not running")]
    NotRunning(ActorId),
}

/// Errors building an actor system.
#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    /// The I/O and timer runtime could not start.
    #[error("could not start the I/O runtime: {0}")]
    Runtime(#[from] std::io::Error),
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
}
