//! The interface every membership protocol implements, and what flows in and out of it.
//!
//! A driver (the network layer or the simulator) owns one protocol value per node and:
//! - feeds it [`Input`]s with the current time, collecting [`Command`]s in a caller-owned `Vec`
//!   (reused across calls, so steady state allocates nothing for the list);
//! - executes the commands: sends messages to connected peers, opens and closes connections, and
//!   hands [`MembershipEvent`]s to whoever listens (Plumtree, user code, the dashboard);
//! - calls [`Input::Tick`] every [`Membership::tick_interval`].
//!
//! Contract between driver and protocol:
//! - [`Input::Connected`] for a peer comes before any [`Input::Message`] from it.
//! - After [`Command::Disconnect`] the driver closes the connection and sends no
//!   [`Input::Disconnected`] for it; a [`Input::Disconnected`] always means the link failed or the
//!   remote side closed it.
//! - [`Command::Send`] to a peer that is not connected is dropped by the driver (the protocol
//!   learns about the lost link from [`Input::Disconnected`]).
//! - Every [`Command::Connect`] is answered by exactly one [`Input::Connected`] or
//!   [`Input::ConnectFailed`] (unless the node itself stops).

use std::fmt::Debug;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::member::{Member, PeerId};

/// Something that happened to a node, as seen by its membership protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input<M> {
    /// Join the cluster through these contacts: members the driver already connected to (it
    /// dialed the configured seed addresses and learned who answered). An empty list means this
    /// node starts alone (it is the first, or a seed waiting for others).
    Join(Vec<Member>),
    /// Leave the cluster in an orderly way: tell the neighbours, then stop taking part.
    Leave,
    /// Time passed; run periodic work (shuffles, promotions, heartbeats, failure detection).
    Tick,
    /// A connection to this member is up (dialed by either side).
    Connected(Member),
    /// The connection to this peer failed or the remote side closed it.
    Disconnected(PeerId),
    /// A [`Command::Connect`] to this peer could not be completed.
    ConnectFailed(PeerId),
    /// A protocol message from a connected peer.
    Message {
        /// The sender.
        from: PeerId,
        /// The message.
        msg: M,
    },
}

/// What a protocol asks its driver to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command<M> {
    /// Send `msg` to a connected peer.
    Send {
        /// The receiver.
        to: PeerId,
        /// The message.
        msg: M,
    },
    /// Connect to this member (a no-op if already connected; the driver still answers).
    Connect(Member),
    /// Close the connection to this peer; no [`Input::Disconnected`] follows.
    Disconnect(PeerId),
    /// The protocol has lost every contact and cannot repair from what it knows: the driver should
    /// resolve the seeds again and feed a fresh [`Input::Join`].
    NeedContacts,
    /// News for the rest of the node.
    Event(MembershipEvent),
}

/// Membership news.
///
/// Neighbours are the peers this node exchanges protocol traffic and broadcasts with (HyParView's
/// active view; every member in a full mesh; the servers of a client). Members are the nodes user
/// code sees as part of the cluster (what `NodeEvent::Up`/`Down` report); what that means for each
/// overlay is documented on the overlay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MembershipEvent {
    /// A peer became a neighbour.
    NeighborUp(Member),
    /// A peer stopped being a neighbour.
    NeighborDown(PeerId),
    /// A node joined the cluster (as this node sees it).
    MemberUp(Member),
    /// A node left, failed or was removed.
    MemberDown {
        /// The node.
        id: PeerId,
        /// Why, for logs and user code.
        reason: String,
    },
}

/// The views of one node, for the cluster picture and for tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ViewSnapshot {
    /// Peers this node keeps connections with (active view / neighbours).
    pub active: Vec<Member>,
    /// Peers this node knows of but is not connected to (passive view; empty for overlays
    /// without one).
    pub passive: Vec<Member>,
}

/// A membership protocol: a sans-IO state machine driven by [`Input`]s.
pub trait Membership {
    /// The protocol's own messages (serialized by the driver).
    type Message: Clone + Debug + Serialize + DeserializeOwned + Send + 'static;

    /// Handles one input at time `now`, appending what to do to `out`.
    fn handle(&mut self, input: Input<Self::Message>, now: Duration, out: &mut Vec<Command<Self::Message>>);

    /// This node.
    fn me(&self) -> &Member;

    /// The current neighbours.
    fn neighbors(&self) -> Vec<PeerId>;

    /// The current views.
    fn snapshot(&self) -> ViewSnapshot;

    /// How often the driver should feed [`Input::Tick`].
    fn tick_interval(&self) -> Duration;

    /// The neighbour to pass a message for `to` (not a neighbour) to, when the overlay knows a
    /// route (client-server: a client's server, or the server that holds a client). `None` (the
    /// default) lets the driver relay through a random neighbour with a hop limit.
    fn next_hop(&self, to: PeerId) -> Option<PeerId> {
        let _ = to;
        None
    }
}
