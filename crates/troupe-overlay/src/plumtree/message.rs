//! What flows into, out of and between Plumtree instances.

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::member::PeerId;
use crate::membership::MembershipEvent;

/// A broadcast topic: lets several users share one Plumtree instance and tells the receiver whom
/// a delivered payload is for. Plumtree itself keeps no per-topic state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Topic(pub u32);

/// The identity of one broadcast: who sent it first and its sequence number at that origin.
///
/// Sequence numbers start at 1 and grow by one per broadcast of the origin incarnation, which is
/// what lets the seen-set summarise an origin as a high-water mark plus a few intervals.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MessageId {
    /// The node that broadcast the message.
    pub origin: PeerId,
    /// Its sequence number at the origin (1, 2, 3, ...).
    pub seq: u64,
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.origin, self.seq)
    }
}

/// One entry of an [`PlumtreeMessage::IHave`]: a message the sender has and how far it travelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement {
    /// The message.
    pub id: MessageId,
    /// The announcer's hop count for it (0 at the origin).
    pub hops: u32,
}

/// A run of consecutive sequence numbers of one origin, `first..=last`: the unit of an
/// anti-entropy digest (a node's cache of one origin is usually one or a few runs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRange {
    /// The origin.
    pub origin: PeerId,
    /// First sequence number of the run.
    pub first: u64,
    /// Last sequence number of the run (inclusive; `last >= first` in a well-formed range).
    pub last: u64,
}

/// A message between two Plumtree instances (serialized by the driver).
///
/// Every field may come from a faulty or hostile peer: the receiver bounds how much of each list
/// it looks at and ignores anything malformed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PlumtreeMessage {
    /// Eager push of a payload along the tree (also the answer to a [`PlumtreeMessage::Graft`]).
    Gossip {
        /// The message.
        id: MessageId,
        /// Its topic.
        topic: Topic,
        /// The sender's hop count (0 when the sender is the origin).
        hops: u32,
        /// How long the message has existed, in milliseconds, as the sum of the times nodes held
        /// it (time on the wire is not counted, so this is a lower bound). Messages older than
        /// the configured `message_ttl` are neither delivered nor forwarded.
        age_ms: u64,
        /// The payload.
        payload: Bytes,
    },
    /// Lazy push: "I have these messages" (batched, sent on the lazy tick to lazy peers).
    IHave {
        /// The announced messages.
        ids: Vec<Announcement>,
    },
    /// "Send me these messages and make the link between us eager." An empty list only repairs
    /// the tree (the hop-count optimisation).
    Graft {
        /// The messages wanted.
        ids: Vec<MessageId>,
    },
    /// "I got a duplicate from you: make the link between us lazy."
    Prune,
    /// Anti-entropy, step 1: the sender's cached messages as runs of ids.
    Digest {
        /// The runs (capped by the sender's `max_digest_ranges`).
        ranges: Vec<IdRange>,
    },
    /// Anti-entropy, step 2: what the digest's receiver lacks, and what it has cached itself.
    DigestReply {
        /// Messages from the digest that the replier has not seen.
        want: Vec<MessageId>,
        /// The replier's own cached messages, for the digest's sender to check.
        have: Vec<IdRange>,
    },
    /// Anti-entropy, step 3: the digest's sender asks for messages from the reply's `have`.
    Request {
        /// The messages wanted.
        ids: Vec<MessageId>,
    },
    /// A payload sent by anti-entropy, and forwarded along the tree from there. Unlike
    /// [`PlumtreeMessage::Gossip`] it never changes the tree: a duplicate `Repair` causes no prune.
    Repair {
        /// The message.
        id: MessageId,
        /// Its topic.
        topic: Topic,
        /// The sender's hop count.
        hops: u32,
        /// The message's age in milliseconds (see [`PlumtreeMessage::Gossip`]).
        age_ms: u64,
        /// The payload.
        payload: Bytes,
    },
}

impl PlumtreeMessage {
    /// A short name of the message kind, for logs, counters and fault injection in tests.
    pub fn kind(&self) -> &'static str {
        match self {
            PlumtreeMessage::Gossip { .. } => "gossip",
            PlumtreeMessage::IHave { .. } => "ihave",
            PlumtreeMessage::Graft { .. } => "graft",
            PlumtreeMessage::Prune => "prune",
            PlumtreeMessage::Digest { .. } => "digest",
            PlumtreeMessage::DigestReply { .. } => "digest_reply",
            PlumtreeMessage::Request { .. } => "request",
            PlumtreeMessage::Repair { .. } => "repair",
        }
    }

    /// Whether the message carries a payload (`Gossip` or `Repair`).
    pub fn carries_payload(&self) -> bool {
        matches!(self, PlumtreeMessage::Gossip { .. } | PlumtreeMessage::Repair { .. })
    }
}

/// Something that happened, as Plumtree sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlumtreeInput {
    /// The membership overlay made this peer a neighbour (it starts in the eager set).
    NeighborUp(PeerId),
    /// This peer is no longer a neighbour.
    NeighborDown(PeerId),
    /// A message from a peer.
    Message {
        /// The sender.
        from: PeerId,
        /// The message.
        msg: PlumtreeMessage,
    },
    /// Broadcast a payload to every node (including a local delivery with hops 0). A payload over
    /// the configured limit is refused and counted; use [`super::Plumtree::broadcast`] to get the
    /// error and the message id.
    Broadcast {
        /// Its topic.
        topic: Topic,
        /// The payload.
        payload: Bytes,
    },
    /// Time passed: flush lazy announcements, fire graft timers, run anti-entropy, prune caches.
    /// Feed it every [`super::Plumtree::tick_interval`].
    Tick,
}

impl PlumtreeInput {
    /// The Plumtree input for a membership event, if it concerns Plumtree (neighbour changes do;
    /// member changes do not): lets a driver wire any overlay to Plumtree in one line.
    pub fn from_membership_event(event: &MembershipEvent) -> Option<PlumtreeInput> {
        match event {
            MembershipEvent::NeighborUp(m) => Some(PlumtreeInput::NeighborUp(m.id)),
            MembershipEvent::NeighborDown(p) => Some(PlumtreeInput::NeighborDown(*p)),
            MembershipEvent::MemberUp(_) | MembershipEvent::MemberDown { .. } => None,
        }
    }
}

/// What Plumtree asks its driver to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlumtreeOutput {
    /// Send `msg` to a neighbour (dropped by the driver if the peer is not connected).
    Send {
        /// The receiver.
        to: PeerId,
        /// The message.
        msg: PlumtreeMessage,
    },
    /// Hand a broadcast to the local application. Happens at most once per [`MessageId`].
    Deliver {
        /// Its topic.
        topic: Topic,
        /// Its id.
        id: MessageId,
        /// The payload.
        payload: Bytes,
        /// How many links it crossed to get here (0 for a local broadcast).
        hops: u32,
    },
}
