//! Membership overlays, broadcast and failure detection as sans-IO state machines.
//!
//! Nothing in this crate opens a socket, spawns a task or reads a clock. Each protocol is a plain
//! struct fed [`Input`]s together with the current time (a [`Duration`](std::time::Duration) since
//! an arbitrary origin chosen by the driver) and answering with [`Command`]s: messages to send,
//! connections to open or close, and membership events. Randomness comes from a seeded RNG the
//! protocol owns, so a run is reproducible from its seed.
//!
//! Two drivers run the same code: `troupe-net` over real TCP connections, and the deterministic
//! simulator in this crate for thousands of simulated nodes with latency, loss, partitions and
//! churn.
#![deny(missing_docs)]

pub mod client_server;
pub mod failure;
pub mod full_mesh;
pub mod hyparview;
pub mod member;
pub mod membership;
pub mod plumtree;
pub mod sim;
pub mod static_overlay;

pub use client_server::{ClientServer, ClientServerConfig, ClientServerMessage, Role};
pub use failure::{Backoff, BackoffConfig, PhiAccrualConfig, PhiAccrualDetector};
pub use full_mesh::{FullMesh, FullMeshConfig, FullMeshMessage};
pub use hyparview::{HyParView, HyParViewConfig, HyParViewMessage};
pub use member::{Member, PeerId};
pub use membership::{Command, Input, Membership, MembershipEvent, ViewSnapshot};
pub use plumtree::{
    MessageId, Plumtree, PlumtreeConfig, PlumtreeInput, PlumtreeMessage, PlumtreeOutput, PlumtreeStats, Topic,
};
pub use static_overlay::{StaticConfig, StaticMessage, StaticOverlay};
