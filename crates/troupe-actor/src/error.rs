//! Errors of the actor runtime.

use std::time::Duration;

use crate::id::ActorId;

/// The error type actor handlers and hooks return; any `std::error::Error` converts with `?`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What handlers and hooks return: an error fails the actor (and its supervisor decides).
pub type ActorResult = Result<(), BoxError>;

/// Why a message could not be handed over for delivery.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendFailure {
    /// The actor no longer accepts messages.
    #[error("the actor is not running")]
    NotRunning,
    /// The actor's node is not connected (it left, failed, or was never reached).
    #[error("node {0} is unreachable")]
    Unreachable(crate::id::NodeId),
    /// The message could not be serialized for the network.
    #[error("the message could not be encoded: {0}")]
    Encode(String),
    /// The encoded message is larger than the transport's frame limit.
    #[error("the encoded message ({len} bytes) exceeds the frame limit of {max} bytes")]
    TooLarge {
        /// Encoded size.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// `tell` failed: the message cannot be delivered. The message comes back.
#[derive(thiserror::Error)]
#[error("message to actor {id} not delivered: {reason}")]
pub struct SendError<M> {
    /// The actor the message was for.
    pub id: ActorId,
    /// The message that was not delivered.
    pub message: M,
    /// Why.
    pub reason: SendFailure,
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
    /// The message cannot be delivered for another reason (an unreachable node, an encoding error).
    #[error("message to actor {id} not delivered: {reason}")]
    Failed {
        /// The actor the message was for.
        id: ActorId,
        /// The message that was not delivered.
        message: M,
        /// Why.
        reason: SendFailure,
    },
}

impl<M> TrySendError<M> {
    /// The message that was not delivered.
    pub fn into_message(self) -> M {
        match self {
            TrySendError::Full { message, .. }
            | TrySendError::Closed { message, .. }
            | TrySendError::Failed { message, .. } => message,
        }
    }
}

// Debug without requiring the message to be Debug, so `?` and `expect` work for any message.
impl<M> std::fmt::Debug for SendError<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendError")
            .field("id", &self.id)
            .field("message", &std::any::type_name::<M>())
            .field("reason", &self.reason)
            .finish()
    }
}

impl<M> std::fmt::Debug for TrySendError<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (kind, id) = match self {
            TrySendError::Full { id, .. } => ("Full", id),
            TrySendError::Closed { id, .. } => ("Closed", id),
            TrySendError::Failed { id, .. } => ("Failed", id),
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
    /// The request could not be sent (an unreachable node, an encoding error).
    #[error("request to actor {id} not sent: {reason}")]
    Failed {
        /// The actor that was asked.
        id: ActorId,
        /// Why.
        reason: SendFailure,
    },
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
