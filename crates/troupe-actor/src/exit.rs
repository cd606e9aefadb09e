//! Why an actor stopped, and the notification watchers receive.

use serde::{Deserialize, Serialize};

use crate::id::ActorId;

/// Why an actor (or one incarnation of it) ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExitReason {
    /// It stopped itself or was asked to stop.
    Normal,
    /// Its parent or its node shut down.
    Shutdown,
    /// It was killed.
    Killed,
    /// A handler or hook panicked; the panic message.
    Panicked(String),
    /// A handler or hook returned an error; the error's message.
    Failed(String),
    /// An actor it was linked to failed.
    LinkFailed(ActorId),
    /// It supervised children that failed more often than its restart intensity allows.
    RestartLimit,
    /// The actor was not running when watched, and why it stopped is no longer known.
    NoActor,
    /// The actor's node was lost (connection failure, crash, or it left the cluster).
    NodeDown,
}

impl ExitReason {
    /// True for the reasons that are not failures (`Normal`, `Shutdown`).
    pub fn is_normal(&self) -> bool {
        matches!(self, ExitReason::Normal | ExitReason::Shutdown)
    }
}

impl std::fmt::Display for ExitReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitReason::Normal => write!(f, "normal"),
            ExitReason::Shutdown => write!(f, "shutdown"),
            ExitReason::Killed => write!(f, "killed"),
            ExitReason::Panicked(m) => write!(f, "panicked: {m}"),
            ExitReason::Failed(m) => write!(f, "failed: {m}"),
            ExitReason::LinkFailed(id) => write!(f, "linked actor {id} failed"),
            ExitReason::RestartLimit => write!(f, "restart intensity exceeded"),
            ExitReason::NoActor => write!(f, "no such actor"),
            ExitReason::NodeDown => write!(f, "its node is down"),
        }
    }
}

/// Delivered to a watcher when a watched actor stops.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Down {
    /// The actor that stopped.
    pub id: ActorId,
    /// Why.
    pub reason: ExitReason,
}
