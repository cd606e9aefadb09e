//! troupe: a distributed actor runtime for Rust.
//!
//! This crate is what applications depend on. It re-exports the runtime's layers:
//! - [`actor`]: the local runtime (actors, references, supervision, scheduler);
//! - [`crdt`]: state and delta CRDTs (Lasp's type set) with threshold reads and digest sync;
//! - [`net`]: nodes, secure connections, channels with parallel connections, remote refs;
//!
//! and offers a [`prelude`] with the names most programs need.
#![deny(missing_docs)]

pub use troupe_actor as actor;
pub use troupe_crdt as crdt;
pub use troupe_net as net;
pub use troupe_net::{Node, NodeConfig, NodeEvent};

pub use troupe_actor::{
    quiet_actor_panics, Actor, ActorId, ActorRef, ActorResult, ActorSystem, AskError, Backoff, Context, Down,
    ExitReason, Message, NodeId, Payload, Props, RemoteMessage, Reply, Restart, SendError, SendOptions, StrategyKind,
    SupervisionStrategy, TrySendError, UntypedRef,
};

/// The names most programs need: `use troupe::prelude::*;`.
pub mod prelude {
    pub use troupe_actor::prelude::*;
}
