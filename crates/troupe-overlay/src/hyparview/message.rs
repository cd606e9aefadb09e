//! HyParView's wire messages.

use serde::{Deserialize, Serialize};

use crate::member::Member;

/// How strongly a NEIGHBOR request asks to be taken into the active view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Priority {
    /// The sender has no neighbour left: always accepted (the receiver drops a random neighbour
    /// if its view is full).
    High,
    /// The sender wants one more neighbour: accepted only if the receiver's view has room.
    Low,
}

/// A HyParView message. Every message that may put a node into a view carries its [`Member`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HyParViewMessage {
    /// The sender joins the overlay through the receiver (its contact).
    Join {
        /// The joining node (the sender).
        member: Member,
    },
    /// A random walk announcing a new node.
    ForwardJoin {
        /// The joining node.
        member: Member,
        /// Remaining hops.
        ttl: u32,
    },
    /// The sender asks to become the receiver's neighbour.
    Neighbor {
        /// The sender.
        member: Member,
        /// How strongly it asks.
        priority: Priority,
    },
    /// The answer to [`HyParViewMessage::Neighbor`] and to [`HyParViewMessage::Join`] (always
    /// accepted).
    NeighborReply {
        /// The sender.
        member: Member,
        /// Whether the sender took the requester into its active view.
        accepted: bool,
    },
    /// The sender removed the receiver from its active view (and closes the connection).
    Disconnect,
    /// A random walk exchanging view samples.
    Shuffle {
        /// The node that started the shuffle; the reply goes to it.
        origin: Member,
        /// Remaining hops.
        ttl: u32,
        /// The origin, some of its active and some of its passive view.
        members: Vec<Member>,
    },
    /// The answer to a [`HyParViewMessage::Shuffle`]: a sample of the receiver's passive view.
    ShuffleReply {
        /// The sample.
        members: Vec<Member>,
    },
}
