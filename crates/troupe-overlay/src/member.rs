//! Who a member is: a node incarnation and where to reach it.

use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// A node incarnation: the random id a node draws at each start (troupe's `NodeId`).
///
/// A restarted node has a new id, so gossip about its old incarnation can never re-admit it by
/// mistake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PeerId(pub u64);

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A member as overlays exchange it: identity, name and the address others dial.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Member {
    /// Its incarnation.
    pub id: PeerId,
    /// Its human-readable name (unique per cluster by convention, not enforced).
    pub name: String,
    /// The address it listens on for other nodes.
    pub addr: SocketAddr,
}
