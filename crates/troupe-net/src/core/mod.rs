//! The state every task of a node shares: peers, exported actors, remote proxies, pending asks,
//! and the tasks that move frames (listener, lanes, readers). It implements
//! [`troupe_actor::Transport`], which is how remote `ActorRef`s reach the network.
//!
//! This module holds [`NodeShared`]'s state and the definitions several of its parts use
//! (settings, limits, small helpers); its behaviour is split by concern, one `impl NodeShared`
//! per file, each with the types and limits only it uses:
//! - `connections`: making peers, each lane's dial-and-serve loop, the listener, one connection;
//! - `receive`: a connection's read loop and the dispatch of frames to actors;
//! - `send`: encoding frames, acknowledged delivery, the send path;
//! - `transport`: the [`troupe_actor::Transport`] implementation over `send`;
//! - `asks`: timing the asks that wait on other nodes, one sweeper for all of them;
//! - `control`: control messages in and out, signals fenced behind messages;
//! - `relay`: frames relayed along the overlay;
//! - `departure`: a peer lost, gone or quarantined, and what that means for proxies, asks and
//!   watches;
//! - `membership`: the overlay driver's news, the directory of known nodes, connecting on demand,
//!   releasing idle peers, stats, shutdown.

mod asks;
mod connections;
mod control;
mod departure;
mod membership;
mod receive;
mod relay;
mod send;
mod transport;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use tokio::io::AsyncReadExt;
use tokio::sync::{broadcast, oneshot};
use troupe_actor::{
    ActorId, ActorSystem, BodyEncoder, DeliverLater, Delivery, ExitReason, FlushRest, Inbound, InboundBatch, NodeId,
    PendingReply, Refusal, RemoteControl, RemoteProxy, ReplyOutcome, SendFailure, SendOptions, Transport, UntypedRef,
};
use troupe_wire::{
    begin_frame, decode_acks, encode_acks, encode_frame, finish_frame, finish_frame_attached, flags, reject,
    split_attached, write_attached_trailer, ConnPurpose, Control, Envelope, FrameDecoder, FrameHeader, FrameKind,
    HandshakeConfig, HandshakeError, NodeInfo, ReplyHeader, ReplyStatus, Signal, WireActorId, WireExit,
    ATTACHED_TRAILER_LEN, HEADER_LEN,
};

use crate::acks::{AckState, Arrival};
use crate::config::{OverlayKind, Reach};
use crate::conn::{self, ConnectError, Opened, ReadHalf};
use crate::deadline::ReadDeadline;
use crate::fault::{Faults, MessageInfo, Verdict};
use crate::fence::{self, About, Admitted};
use crate::framebuf::FrameBuf;
use crate::framepool::FramePool;
use crate::idmap::{id_map, IdMap};
use crate::membership::{DriverHandle, DriverInput};
use crate::peer::{default_key, Peer};
use crate::peer_map::PeerMap;
use crate::queue::{QueueRefusal, SendQueue};
use crate::stats::{Counters, NodeStats};
use crate::tls::TlsContext;
use crate::NodeEvent;

/// Settings the running node needs, resolved from its configuration.
pub(crate) struct Settings {
    pub(crate) name: String,
    pub(crate) cluster: String,
    pub(crate) secret: Vec<u8>,
    /// Channel names and (parallelism, monotonic), index 0 = control, 1 = default.
    pub(crate) channels: Vec<(String, u16, bool)>,
    pub(crate) max_frame: usize,
    pub(crate) queue_bytes: usize,
    pub(crate) connect_timeout: Duration,
    pub(crate) handshake_timeout: Duration,
    pub(crate) idle_ping: Duration,
    pub(crate) ping_timeout: Duration,
    pub(crate) ping_attempts: u32,
    pub(crate) ack_retransmit: Duration,
    pub(crate) reconnect_min: Duration,
    pub(crate) reconnect_max: Duration,
    /// How to reach a node that is not connected.
    pub(crate) reach: Reach,
    /// Hops a relayed message may take.
    pub(crate) relay_ttl: u8,
    /// Link emulation applied to what this node reads from each connection (`None` = none).
    pub(crate) link: Option<crate::emulation::LinkConfig>,
}

/// A snapshot request waiting for its answer: the node asked, and where the answer goes.
pub(crate) type ViewRequest = (NodeId, oneshot::Sender<Vec<u8>>);

/// How long a failure notice heard keeps this node from sending its own for the same node (a
/// node lost again later, after coming back, is reported again).
const NOTICE_MEMORY: Duration = Duration::from_secs(60);

/// How long a peer dropped for not reading what it asked for is refused: long enough for it to
/// fail its redials and find this node down too (two failed control dials, about 100 ms apart),
/// so both sides agree it was lost and its watchers hear of it; well under the 10 s after which
/// a full-mesh overlay removes a member it cannot connect to, so the cluster does not remove
/// either of them on the other's word. Direct connections only: relayed traffic still passes.
const QUARANTINE: Duration = Duration::from_secs(3);

/// One actor's relayed messages waiting for its mailbox may take at most this share of the
/// node's bound on such waits, so one actor that never takes its messages cannot starve others.
const RELAYED_WAIT_TARGET_SHARE: usize = 4;

/// Relayed messages waiting for room in full mailboxes: what they are charged, in bytes.
#[derive(Default)]
struct RelayWaits(Mutex<RelayWaitState>);

#[derive(Default)]
struct RelayWaitState {
    bytes: usize,
    messages: usize,
    /// Bytes charged per target actor (entries at zero are removed).
    per_target: HashMap<ActorId, usize>,
    /// Whether a drop at the bound was logged since the waits last drained.
    logged: bool,
}

impl RelayWaits {
    /// Charges a wait for `target` against both bounds; `Err(log)` when past either (`log`:
    /// the first drop since the waits last drained). A wait is always admitted when none is
    /// charged (to the node, or to that target), however large: the bounds are then one frame
    /// over.
    fn charge(&self, target: ActorId, charge: usize, limit: usize) -> Result<(), bool> {
        let mut state = self.0.lock();
        let mine = state.per_target.get(&target).copied().unwrap_or(0);
        let fits_node = state.bytes == 0 || state.bytes.saturating_add(charge) <= limit;
        let fits_target = mine == 0 || mine.saturating_add(charge) <= limit / RELAYED_WAIT_TARGET_SHARE;
        if !(fits_node && fits_target) {
            return Err(!std::mem::replace(&mut state.logged, true));
        }
        state.bytes += charge;
        state.messages += 1;
        *state.per_target.entry(target).or_insert(0) += charge;
        Ok(())
    }

    fn release(&self, target: ActorId, charge: usize) {
        let mut state = self.0.lock();
        state.bytes -= charge;
        state.messages -= 1;
        if let Some(mine) = state.per_target.get_mut(&target) {
            *mine -= charge;
            if *mine == 0 {
                state.per_target.remove(&target);
            }
        }
        if state.bytes == 0 {
            state.logged = false;
        }
    }

    fn messages(&self) -> usize {
        self.0.lock().messages
    }
}

/// A pending registry lookup on another node.
type LookupReply = Option<(ActorId, String)>;

/// An ask waiting for its reply: the asker's side, and when it stops waiting if this node times
/// it (see `asks.rs`).
struct Waiting {
    pending: Box<dyn PendingReply>,
    deadline: Option<Instant>,
}

/// Asks waiting for replies, with the node each request went to.
type PendingReplies = IdMap<u64, (NodeId, Waiting)>;

pub(crate) struct NodeShared {
    pub(crate) me: Weak<NodeShared>,
    pub(crate) id: NodeId,
    pub(crate) settings: Settings,
    pub(crate) system: ActorSystem,
    pub(crate) runtime: tokio::runtime::Handle,
    pub(crate) tls: Option<TlsContext>,
    pub(crate) advertised: RwLock<Vec<String>>,
    pub(crate) peers: PeerMap,
    /// Released peers whose connections are still being read to their end, by node: a new peer
    /// for the node follows its predecessor (see `Peer::after_predecessor`).
    released: Mutex<IdMap<NodeId, Weak<Peer>>>,
    exported: RwLock<IdMap<u64, Arc<dyn Inbound>>>,
    pub(crate) named: RwLock<HashMap<String, Arc<dyn Inbound>>>,
    proxies: Mutex<HashMap<ActorId, Weak<RemoteProxy>>>,
    /// Watches other nodes hold on this node's actors, as (watcher's node, watched actor): one
    /// exit callback each, however often that node asks again (a proxy dropped and made anew
    /// asks again); an entry goes when its Down is sent or its node is gone for good.
    remote_watches: Mutex<HashSet<(NodeId, ActorId)>>,
    proxies_since_sweep: AtomicU64,
    /// Nodes reported lost by failure notices, with when: a node that detects a loss someone
    /// reported within [`NOTICE_MEMORY`] does not report it again.
    lost_notices: Mutex<HashMap<NodeId, Instant>>,
    /// Peers dropped for not reading what they asked for, and until when their handshakes are
    /// refused (see [`QUARANTINE`]).
    quarantined: Mutex<HashMap<NodeId, Instant>>,
    /// Acknowledged-delivery state per remote incarnation; it outlives the `Peer` so a node
    /// declared down and reached again keeps its numbering and gets its unacked messages.
    acks: Mutex<HashMap<NodeId, Arc<AckState>>>,
    replies: Mutex<PendingReplies>,
    /// The deadlines of the asks this node times, earliest first (see `asks.rs`).
    ask_deadlines: Mutex<asks::Deadlines>,
    /// Wakes the ask sweeper when an ask with an earlier deadline comes in, or the node stops.
    ask_sweep_sooner: tokio::sync::Notify,
    /// Set when the node stopped and failed the asks waiting on other nodes.
    asks_stopped: AtomicBool,
    lookups: Mutex<HashMap<u64, (NodeId, oneshot::Sender<LookupReply>)>>,
    pub(crate) next_request: AtomicU64,
    pub(crate) faults: Faults,
    pub(crate) counters: Arc<Counters>,
    pub(crate) events: broadcast::Sender<NodeEvent>,
    pub(crate) shutting_down: AtomicBool,
    /// The node is leaving the cluster (`Node::shutdown`, from before it tells its overlay): it
    /// no longer releases connections on its own (they are kept for its goodbye, which closes
    /// them next), and one a peer releases carries its goodbye first (see `release_peer`). Released without one, each
    /// peer would take the node for merely idle: no Down, what it holds for the node (numbering,
    /// watches that node holds on its actors) kept for good, and its departure known only if
    /// another node happened to report it. (Stays set if `Node::shutdown` is cancelled.)
    pub(crate) leaving: AtomicBool,
    pub(crate) stop: Arc<tokio::sync::Notify>,
    /// The membership driver, when an overlay runs.
    pub(crate) membership: OnceLock<DriverHandle>,
    /// Where to reach nodes the overlay told us about (used to connect on demand).
    directory: RwLock<HashMap<NodeId, NodeInfo>>,
    /// Seed addresses (`host:port`), dialled again when the overlay has lost every contact.
    pub(crate) seeds: Vec<String>,
    /// The overlay this node runs.
    pub(crate) overlay: OverlayKind,
    /// Snapshot requests waiting for their answer, with the node asked.
    pub(crate) view_requests: Mutex<HashMap<u64, ViewRequest>>,
    /// This node's role in a client-server overlay.
    pub(crate) role: Option<troupe_overlay::Role>,
    /// Broadcasts delivered here, for subscribers.
    pub(crate) broadcasts: broadcast::Sender<crate::membership::Delivered>,
    /// Buffers of large frames read from any connection, for reuse (bounded node-wide).
    frame_pool: Mutex<FramePool>,
    /// Indirect probes in flight (see `probe`).
    pub(crate) probes: Mutex<crate::probe::Probes>,
    /// Relayed messages waiting for room in full mailboxes (see `wait_for_room_relayed`).
    relay_waits: Arc<RelayWaits>,
    /// Which neighbour relayed frames from each origin came through (see `routes`).
    pub(crate) relay_routes: Mutex<crate::routes::RouteCache>,
}

impl NodeShared {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        settings: Settings,
        system: ActorSystem,
        runtime: tokio::runtime::Handle,
        tls: Option<TlsContext>,
        loss: f64,
        seeds: Vec<String>,
        overlay: OverlayKind,
        role: Option<troupe_overlay::Role>,
    ) -> Arc<NodeShared> {
        Arc::new_cyclic(|me| NodeShared {
            me: me.clone(),
            id: system.node_id(),
            settings,
            system,
            runtime,
            tls,
            advertised: RwLock::new(Vec::new()),
            peers: PeerMap::default(),
            released: Mutex::new(id_map()),
            exported: RwLock::new(id_map()),
            named: RwLock::new(HashMap::new()),
            proxies: Mutex::new(HashMap::new()),
            remote_watches: Mutex::new(HashSet::new()),
            proxies_since_sweep: AtomicU64::new(0),
            lost_notices: Mutex::new(HashMap::new()),
            quarantined: Mutex::new(HashMap::new()),
            acks: Mutex::new(HashMap::new()),
            replies: Mutex::new(id_map()),
            ask_deadlines: Mutex::new(asks::Deadlines::new()),
            ask_sweep_sooner: tokio::sync::Notify::new(),
            asks_stopped: AtomicBool::new(false),
            lookups: Mutex::new(HashMap::new()),
            next_request: AtomicU64::new(1),
            faults: Faults::with_loss(loss),
            counters: Arc::default(),
            events: broadcast::channel(1024).0,
            shutting_down: AtomicBool::new(false),
            leaving: AtomicBool::new(false),
            stop: Arc::new(tokio::sync::Notify::new()),
            membership: OnceLock::new(),
            directory: RwLock::new(HashMap::new()),
            seeds,
            overlay,
            broadcasts: broadcast::channel(4096).0,
            view_requests: Mutex::new(HashMap::new()),
            role,
            frame_pool: Mutex::new(FramePool::default()),
            probes: Mutex::new(crate::probe::Probes::default()),
            relay_waits: Arc::default(),
            relay_routes: Mutex::new(crate::routes::RouteCache::default()),
        })
    }

    fn transport(&self) -> Option<Arc<dyn Transport>> {
        self.me.upgrade().map(|me| me as Arc<dyn Transport>)
    }

    pub(crate) fn handshake_config(&self) -> HandshakeConfig {
        HandshakeConfig {
            cluster: self.settings.cluster.clone(),
            secret: self.settings.secret.clone(),
            me: NodeInfo {
                name: self.settings.name.clone(),
                incarnation: self.id.0,
                listen: self.advertised.read().clone(),
            },
            max_frame: self.settings.max_frame,
        }
    }

    pub(crate) fn peer(&self, id: NodeId) -> Option<Arc<Peer>> {
        self.peers.get(id)
    }

    pub(crate) fn peer_named(&self, name: &str) -> Option<Arc<Peer>> {
        self.peers.read().values().find(|p| p.name == name && !p.is_down()).cloned()
    }

    fn channel_index(&self, name: Option<&str>) -> usize {
        match name {
            None => 1,
            // The control channel carries the node's own frames, not actor messages.
            Some(name) => self.settings.channels.iter().skip(1).position(|(n, _, _)| n == name).map_or_else(
                || {
                    tracing::warn!(
                        channel = name,
                        "unknown channel (or the reserved control channel); using the default channel"
                    );
                    1
                },
                |index| index + 1,
            ),
        }
    }
}

thread_local! {
    /// Set when a reply port registers, which happens while an ask's body is encoded: the send
    /// then writes the ask at once (`SendQueue::push_now`).
    static ASKING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// How often a send refused by a peer released meanwhile (see [`refused_by_release`]) goes again
/// to the node's next peer: more than once only if that one is released at once too.
const RELEASED_RETRIES: u32 = 3;

/// Whether `result` of a send through `peer` is a refusal because the peer was released (its
/// queues finished) after the sender took it: the message goes to the node's next peer then,
/// which a lookup now finds or makes (a released peer leaves the map before its queues finish).
fn refused_by_release(peer: &Peer, result: &Result<(), Refusal>) -> bool {
    matches!(result, Err(Refusal::Failed(SendFailure::Unreachable(_)))) && peer.is_released()
}

/// How long a released peer's connections may go without progress ([`Peer::progress`]) while
/// they are read to their end, for what the other side wrote before it heard of the release (it
/// ends its own side once that is written, within about a second), before they are closed
/// anyway. Not while one of their readers waits for room in a mailbox: what it holds would be
/// lost, and the actor takes it in time (as on any connection).
const RELEASE_READ_OUT: Duration = Duration::from_secs(10);

/// How long a new peer's connections wait without progress of its released predecessor's
/// ([`Peer::after_predecessor`]): shorter than [`RELEASE_READ_OUT`], so that a predecessor
/// whose reader waits on an actor that waits for an answer coming on the new connections goes
/// on once they stop waiting, before it is closed (its rest would be lost; late is better).
const SUCCESSOR_WAIT: Duration = Duration::from_secs(5);

fn actor_id(w: &WireActorId) -> ActorId {
    ActorId { node: NodeId(w.node), serial: w.serial }
}

fn wire_id(id: ActorId) -> WireActorId {
    WireActorId { node: id.node.0, serial: id.serial }
}

fn wire_exit(reason: &ExitReason) -> WireExit {
    match reason {
        ExitReason::Normal => WireExit::Normal,
        ExitReason::Shutdown => WireExit::Stopped,
        ExitReason::Killed => WireExit::Killed,
        ExitReason::Panicked(m) | ExitReason::Failed(m) => WireExit::Failed(m.clone()),
        ExitReason::NoActor => WireExit::NoActor,
        ExitReason::NodeDown => WireExit::NodeDown,
        other => WireExit::Other(other.to_string()),
    }
}

fn exit_reason(reason: WireExit) -> ExitReason {
    match reason {
        WireExit::Normal => ExitReason::Normal,
        WireExit::Stopped => ExitReason::Shutdown,
        WireExit::Killed => ExitReason::Killed,
        WireExit::Failed(m) => ExitReason::Failed(m),
        WireExit::NoActor => ExitReason::NoActor,
        WireExit::NodeDown => ExitReason::NodeDown,
        WireExit::Other(m) => ExitReason::Failed(m),
    }
}
