//! troupe's transport: nodes, secure connections, channels with parallel connections, remote refs.
//!
//! A [`Node`] is an actor system reachable over TCP (optionally TLS). Nodes authenticate each
//! other with an HMAC challenge over the cluster secret, then open one connection per lane:
//! every named channel has `parallelism` lanes, and a message's partition key (by default its
//! target actor) picks the lane, so a large message on one channel never delays a small one on
//! another (Partisan's answer to head-of-line blocking). Remote actors are reached through the
//! same [`troupe_actor::ActorRef`] as local ones.
//!
//! Delivery is at-most-once by default; [`troupe_actor::SendOptions::ack`] gives acknowledged
//! delivery (retransmitted across reconnects, deduplicated on arrival). Send queues are bounded
//! in bytes: `tell` waits and `try_tell` fails when a lane is full.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod acks;
pub mod config;
mod conn;
mod core;
mod deadline;
#[cfg(test)]
mod departure_tests;
pub mod emulation;
mod fault;
mod fence;
mod framebuf;
mod framepool;
mod idmap;
mod membership;
mod node;
mod overlays;
mod peer;
mod peer_map;
mod probe;
mod queue;
#[cfg(test)]
mod release_tests;
mod routes;
mod snapshot;
mod stats;
pub mod tls;

pub use config::{
    ChannelConfig, ConfigError, HyParViewSettings, LinkEmulation, NodeConfig, OverlayKind, Reach, Role, TlsConfig,
};
pub use conn::ConnectError;
pub use fault::{Interposer, MessageInfo, Verdict};
pub use membership::{Delivered, OverlayState, NODE_LOST_TOPIC};
pub use node::{BroadcastError, LookupError, Node, NodeError, NodeEvent, PeerInfo};
pub use overlays::BROADCAST_CHANNEL;
pub use snapshot::NodeSnapshot;
pub use stats::NodeStats;
pub use troupe_overlay::{Member, MessageId, PeerId, Topic, ViewSnapshot};
