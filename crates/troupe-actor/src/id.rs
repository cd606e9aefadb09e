//! Identities of nodes and actors.
//!
//! An [`ActorId`] is unique across a cluster: it pairs the [`NodeId`] of the node that spawned the
//! actor with a serial number local to that node. A node id is drawn at random when a node starts,
//! so a restarted node never reuses the ids of its previous incarnation.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Identity of one node incarnation in a cluster.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeId(pub u64);

impl NodeId {
    /// A fresh random node id, as drawn at every node start.
    pub fn random() -> Self {
        NodeId(rand::random())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Identity of an actor, unique across the cluster for the life of the cluster.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ActorId {
    /// The node incarnation that spawned the actor.
    pub node: NodeId,
    /// Serial number of the actor on that node (never reused).
    pub serial: u64,
}

impl fmt::Debug for ActorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{:?}.{}>", self.node, self.serial)
    }
}

impl fmt::Display for ActorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_order_and_display() {
        let n = NodeId(0xab);
        let a = ActorId { node: n, serial: 1 };
        let b = ActorId { node: n, serial: 2 };
        assert!(a < b);
        assert_eq!(a.to_string(), "<00000000000000ab.1>");
        assert_ne!(NodeId::random(), NodeId::random());
    }
}
