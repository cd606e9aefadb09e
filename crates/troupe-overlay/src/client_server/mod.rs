//! `ClientServer`: Partisan's client-server peer service.
//!
//! A node's [`Role`] comes from its config (`TAG=client|server` in Partisan).
//!
//! - **Servers** form a full mesh among themselves: each server runs a [`FullMesh`] whose members
//!   are the servers only (join, gossip, failure detection, removal and refutation are the full
//!   mesh's). Around it, a server accepts clients, heartbeats them (phi-accrual), and announces
//!   the clients attached to it to the other servers (`Clients` messages, one versioned entry per
//!   server, pushed on change and every `announce_interval`). Every server thus knows, for every
//!   client, which servers reach it.
//! - **Clients** connect only to servers: to at most `max_servers_per_client` of the servers they
//!   know (default 3; `usize::MAX` means all), starting from their contacts, which must be
//!   servers. Servers tell their clients the current server list; a client redials lost servers
//!   with backoff, replaces servers that stay unreachable, and asks the driver for contacts when it
//!   knows none.
//!
//! An inbound connection's role is unknown until its first message: a full-mesh message makes it a
//! server link, a `Hello` a client; unidentified connections are closed after `pending_timeout`.
//!
//! Events: on a server, members are the alive servers plus every client attached to some server;
//! on a client, members are the servers it knows. Neighbours are the live connections (for a
//! server: connected servers and its own clients; for a client: its connected servers).
//!
//! Relaying client-to-client traffic is the driver's job; [`ClientServer::route`] gives it the
//! next hop.

mod client;
mod server;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::full_mesh::{FullMesh, FullMeshConfig, FullMeshMessage};
use crate::member::{Member, PeerId};
use crate::membership::{Command, Input, Membership, ViewSnapshot};

use client::Client;
use server::Server;

/// What a node is in a client-server cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Connects only to servers.
    Client,
    /// Meshes with the other servers and serves clients.
    Server,
}

/// Settings of a [`ClientServer`] node.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientServerConfig {
    /// This node's role.
    pub role: Role,
    /// The servers' mesh; its timing, detector and backoff settings also apply to client links.
    pub mesh: FullMeshConfig,
    /// A client keeps connections to at most this many servers.
    pub max_servers_per_client: usize,
    /// A server accepts at most this many clients.
    pub max_clients_per_server: usize,
    /// At most this many inbound connections of unknown role at once.
    pub max_pending: usize,
    /// Inbound connections that have not said what they are by then are closed.
    pub pending_timeout: Duration,
    /// How often a server re-announces its clients to the servers and the server list to its
    /// clients (changes go out at once).
    pub announce_interval: Duration,
}

impl Default for ClientServerConfig {
    fn default() -> Self {
        ClientServerConfig {
            role: Role::Client,
            mesh: FullMeshConfig::default(),
            max_servers_per_client: 3,
            max_clients_per_server: 4096,
            max_pending: 256,
            pending_timeout: Duration::from_secs(10),
            announce_interval: Duration::from_secs(5),
        }
    }
}

/// Messages of the client-server overlay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientServerMessage {
    /// The servers' full mesh.
    Mesh(FullMeshMessage),
    /// Client to server, first message on a connection: "I am a client".
    Hello,
    /// Server to client: the alive servers.
    Servers(Vec<Member>),
    /// Server to server: the clients attached to the sender, at the sender's version.
    Clients {
        /// Raised by the sender at each change.
        version: u64,
        /// Its clients.
        clients: Vec<Member>,
    },
    /// Liveness signal between a client and a server.
    Heartbeat,
}

type Out = Vec<Command<ClientServerMessage>>;

#[derive(Debug)]
enum Node {
    Client(Box<Client>),
    Server(Box<Server>),
}

/// The client-server overlay. See the [module docs](self).
#[derive(Debug)]
pub struct ClientServer {
    node: Node,
}

impl ClientServer {
    /// A node `me` with the role from `config`, idle until [`Input::Join`].
    pub fn new(me: Member, config: ClientServerConfig) -> Self {
        let node = match config.role {
            Role::Client => Node::Client(Box::new(Client::new(me, config))),
            Role::Server => Node::Server(Box::new(Server::new(me, config))),
        };
        ClientServer { node }
    }

    /// This node's role.
    pub fn role(&self) -> Role {
        match self.node {
            Node::Client(_) => Role::Client,
            Node::Server(_) => Role::Server,
        }
    }

    /// The next hop towards `to`: `to` itself when connected to it; on a client, one of its
    /// servers; on a server, a connected server that announced `to` as its client. `None` when
    /// this node knows no way (or `to` is this node).
    pub fn route(&self, to: PeerId) -> Option<PeerId> {
        match &self.node {
            Node::Client(c) => c.route(to),
            Node::Server(s) => s.route(to),
        }
    }

    /// The alive servers this node knows (itself excluded).
    pub fn servers(&self) -> Vec<Member> {
        match &self.node {
            Node::Client(c) => c.servers(),
            Node::Server(s) => s.mesh().members(),
        }
    }

    /// The clients this node knows: every announced client on a server, none on a client.
    pub fn clients(&self) -> Vec<Member> {
        match &self.node {
            Node::Client(_) => Vec::new(),
            Node::Server(s) => s.clients(),
        }
    }

    /// The servers that announced `client` as theirs (known on servers only).
    pub fn servers_of(&self, client: PeerId) -> Vec<PeerId> {
        match &self.node {
            Node::Client(_) => Vec::new(),
            Node::Server(s) => s.servers_of(client),
        }
    }

    /// The servers' mesh, on a server.
    pub fn mesh(&self) -> Option<&FullMesh> {
        match &self.node {
            Node::Client(_) => None,
            Node::Server(s) => Some(s.mesh()),
        }
    }
}

impl Membership for ClientServer {
    type Message = ClientServerMessage;

    fn handle(&mut self, input: Input<ClientServerMessage>, now: Duration, out: &mut Out) {
        match &mut self.node {
            Node::Client(c) => c.handle(input, now, out),
            Node::Server(s) => s.handle(input, now, out),
        }
    }

    fn me(&self) -> &Member {
        match &self.node {
            Node::Client(c) => c.me(),
            Node::Server(s) => s.mesh().me(),
        }
    }

    fn neighbors(&self) -> Vec<PeerId> {
        match &self.node {
            Node::Client(c) => c.neighbors(),
            Node::Server(s) => s.neighbors(),
        }
    }

    fn snapshot(&self) -> ViewSnapshot {
        match &self.node {
            Node::Client(c) => c.snapshot(),
            Node::Server(s) => s.snapshot(),
        }
    }

    fn next_hop(&self, to: PeerId) -> Option<PeerId> {
        self.route(to)
    }

    fn tick_interval(&self) -> Duration {
        match &self.node {
            Node::Client(c) => c.tick_interval(),
            Node::Server(s) => s.mesh().tick_interval(),
        }
    }
}
