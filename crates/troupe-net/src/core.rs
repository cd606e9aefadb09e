//! The state every task of a node shares: peers, exported actors, remote proxies, pending asks,
//! and the tasks that move frames (listener, lanes, readers). It implements
//! [`troupe_actor::Transport`], which is how remote `ActorRef`s reach the network.

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

/// A read that brought at most this many small frames is a short exchange (asks, replies): the
/// actors it woke run on the network thread if the actor scheduler is idle, which saves waking a
/// worker. A read that brought more, or a large frame, is a stream: its actors run on the workers,
/// in parallel with the next read.
const INLINE_FRAMES: u64 = 4;

/// Frames at least this long (header included) are read into a buffer of their own.
const BIG_FRAME: usize = 64 * 1024;
/// The most one read of a large frame takes from the socket.
const BIG_READ: usize = 256 * 1024;

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

/// The least a relayed message waiting for mailbox room is charged against the bound, in bytes:
/// its task and boxed future cost memory however small its frame.
const RELAYED_WAIT_MIN_CHARGE: usize = 256;

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

/// One wait's charge, given back however the wait ends.
struct Charged(Arc<RelayWaits>, ActorId, usize);

impl Drop for Charged {
    fn drop(&mut self) {
        self.0.release(self.1, self.2);
    }
}

/// What one connection's reader keeps between frames.
struct ConnState {
    /// Sequence numbers to acknowledge after this read.
    acks: Vec<u64>,
    /// The exported actor the last message went to, with its id and type tag (read once, not
    /// through its vtable for every message).
    cache: Option<CachedTarget>,
    /// Messages handed to actors since the counters were last updated.
    delivered: u64,
    /// Where messages still held when the reader is dropped are delivered from.
    runtime: tokio::runtime::Handle,
    /// Whether a message numbered out of the window was logged (once per connection: its
    /// retransmissions would flood the log).
    warned_window: bool,
}

/// Whether our backlog on a connection is draining: bytes went into its socket since `moved`
/// (updated) while frames still wait in `queue` or its writer is busy with some, so the socket's
/// buffer had been full and the other side took bytes off it. Our own small frames (pings)
/// written into an idle socket do not count: a dead peer's socket takes those too.
fn draining(queue: &SendQueue, moved: &mut u64) -> bool {
    let now = queue.moved.load(Ordering::Relaxed);
    let progressed = now != *moved && queue.has_backlog();
    *moved = now;
    progressed
}

impl Drop for ConnState {
    /// A reader cancelled (its connection stopped) while it held messages it had read and
    /// accepted, acknowledged ones included, hands them over on its way out: they are not lost.
    fn drop(&mut self) {
        let Some(batch) = self.cache.as_mut().and_then(|cached| cached.batch.as_mut()) else { return };
        if let Some(FlushRest::Full { wait, .. }) = batch.flush().rest {
            self.runtime.spawn(wait);
        }
    }
}

/// A wait for mailbox room that, if the reader awaiting it is cancelled, goes on by itself: the
/// messages it holds were read and accepted (acknowledged ones are never sent again), so they
/// must still be delivered. (They may then interleave with messages from the same sender that
/// arrive over a new connection meanwhile; losing them would be worse.)
struct FinishOnDrop {
    wait: Option<DeliverLater>,
    runtime: tokio::runtime::Handle,
}

impl std::future::Future for FinishOnDrop {
    type Output = u64;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<u64> {
        let Some(wait) = self.wait.as_mut() else { return std::task::Poll::Ready(0) };
        let delivered = std::task::ready!(wait.as_mut().poll(cx));
        self.wait = None;
        std::task::Poll::Ready(delivered)
    }
}

impl Drop for FinishOnDrop {
    fn drop(&mut self) {
        if let Some(wait) = self.wait.take() {
            self.runtime.spawn(wait);
        }
    }
}

/// An exported actor a connection's reader delivered to last.
struct CachedTarget {
    id: ActorId,
    type_tag: u64,
    inbound: Arc<dyn Inbound>,
    /// Messages for it read after the first of a series of consecutive ones, waiting to go into
    /// its mailbox together (made when first needed, kept while cached). The first message of a
    /// series goes to the mailbox directly, so traffic that switches actor at every frame, or
    /// sends one message per read (an ask), never uses one.
    batch: Option<Box<dyn InboundBatch>>,
    /// A message for it was read since the batch was last handed over: the next one joins it.
    in_batch: bool,
}

/// What became of one frame (or of a batch of messages handed over).
enum Dispatched {
    Done,
    /// A message went into a mailbox.
    Delivered,
    /// The mailbox is full: await `wait` to deliver `count` messages, in order; it yields how
    /// many were delivered.
    Full {
        wait: DeliverLater,
        count: u64,
    },
    /// The connection must close, for this reason.
    Close(String),
}

/// How a run of buffered frames ended (see `NodeShared::dispatch_run`).
enum Run {
    /// No whole frame is left in the buffer.
    Drained,
    /// Something needs awaiting (a full mailbox: the frame's own message, or the batch handed
    /// over before the frame, which then stays unread) or closes the connection.
    Wait(Dispatched),
    /// A malformed frame: the connection closes for this reason.
    BadFrame(String),
}

/// A pending registry lookup on another node.
type LookupReply = Option<(ActorId, String)>;

/// Asks waiting for replies, with the node each request went to.
type PendingReplies = IdMap<u64, (NodeId, Box<dyn PendingReply>)>;

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
    lookups: Mutex<HashMap<u64, (NodeId, oneshot::Sender<LookupReply>)>>,
    pub(crate) next_request: AtomicU64,
    pub(crate) faults: Faults,
    pub(crate) counters: Arc<Counters>,
    pub(crate) events: broadcast::Sender<NodeEvent>,
    pub(crate) shutting_down: AtomicBool,
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

/// How a peer went away.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Departure {
    /// Its connections failed, or it came back as a new incarnation.
    Lost,
    /// It said goodbye.
    Left,
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
            lookups: Mutex::new(HashMap::new()),
            next_request: AtomicU64::new(1),
            faults: Faults::with_loss(loss),
            counters: Arc::default(),
            events: broadcast::channel(1024).0,
            shutting_down: AtomicBool::new(false),
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

    // -----------------------------------------------------------------------------------------
    // Peers and lanes

    /// The peer for an established handshake, created (and its lanes started) on first sight.
    /// `first` is a connection already open for one of its lanes (a connect we initiated).
    pub(crate) fn ensure_peer(&self, info: &NodeInfo, first: Option<(ConnPurpose, Opened)>) -> Option<Arc<Peer>> {
        let id = NodeId(info.incarnation);
        if self.shutting_down.load(Ordering::Acquire) || id == self.id || self.is_quarantined(id) {
            return None;
        }
        let (peer, created) = {
            let mut peers = self.peers.write();
            // Again under the lock: a stop that cleared the map meanwhile must not find a new peer
            // in it (its lanes would start on a runtime that is going away), nor a drop for
            // overflow that removed the node's old peer (`quarantined` is never held with
            // `peers`, so taking it here cannot deadlock).
            if self.shutting_down.load(Ordering::Acquire) || self.is_quarantined(id) {
                return None;
            }
            match peers.get(&id) {
                Some(peer) => (peer.clone(), false),
                None => {
                    self.directory.write().insert(id, info.clone());
                    let addrs: Vec<SocketAddr> = info.listen.iter().filter_map(|a| a.parse().ok()).collect();
                    let channels: Vec<(u16, bool)> = self.settings.channels.iter().map(|(_, p, m)| (*p, *m)).collect();
                    let acks = {
                        let mut states = self.acks.lock();
                        let state =
                            states.entry(id).or_insert_with(|| Arc::new(AckState::new(self.settings.queue_bytes * 4)));
                        // Counted under the map's lock (see `forget_acks_later`).
                        state.peer_made();
                        state.clone()
                    };
                    let peer = Arc::new(Peer::new(
                        id,
                        info.name.clone(),
                        addrs,
                        &channels,
                        self.settings.queue_bytes,
                        acks,
                        // Its limit, when it comes with a connection (else ours until a
                        // handshake tells: see `run_connection`).
                        first
                            .as_ref()
                            .map_or(self.settings.max_frame, |(_, opened)| self.frame_limit(&opened.established)),
                    ));
                    // A node reached again after it was declared down keeps its acknowledgement
                    // state: what is still unacknowledged goes first on each lane, before
                    // anything sent from now on (no sender sees this peer yet).
                    for (channel, lanes) in peer.lanes.iter().enumerate() {
                        for index in 0..lanes.len() {
                            self.requeue_unacked(&peer, (channel, index));
                        }
                    }
                    if let Some(old) = self.released.lock().get(&id).and_then(Weak::upgrade) {
                        if !old.is_down() {
                            peer.follow(&old);
                        }
                    }
                    peers.insert(id, peer.clone());
                    (peer, true)
                }
            }
        };
        if created {
            tracing::debug!(node = %self.settings.name, peer = %info.name, id = %id, "new peer");
            let mut first = first;
            for channel in 0..peer.lanes.len() {
                for lane in 0..peer.lanes[channel].len() {
                    let purpose = ConnPurpose { channel: channel as u16, lane: lane as u16 };
                    let opened = match &first {
                        Some((p, _)) if *p == purpose => first.take().map(|(_, o)| o),
                        _ => None,
                    };
                    let shared = self.me.upgrade()?;
                    let peer = peer.clone();
                    self.runtime.spawn(async move { shared.lane_loop(peer, purpose, opened).await });
                }
            }
            let shared = self.me.upgrade()?;
            let retransmit_peer = peer.clone();
            self.runtime.spawn(async move { shared.retransmit_loop(retransmit_peer).await });
        } else if let Some((_, opened)) = first {
            // The peer appeared meanwhile: serve this connection beside its lanes.
            let shared = self.me.upgrade()?;
            let extra = peer.clone();
            self.runtime.spawn(async move { shared.serve_extra(extra, opened).await });
        }
        Some(peer)
    }

    /// Keeps one lane connected: dial, run, redial with backoff and jitter. Two failed dials in
    /// a row of the control lane after it had been connected mean the node is down.
    async fn lane_loop(self: Arc<Self>, peer: Arc<Peer>, purpose: ConnPurpose, mut opened: Option<Opened>) {
        let control = purpose.channel == 0;
        let mut backoff = self.settings.reconnect_min;
        let mut failures = 0u32;
        let mut connected_before = false;
        if purpose.channel == 1 && opened.is_none() {
            // Default-channel connections are made when first needed: in a large overlay most
            // peers only ever exchange control traffic, and every connection is a descriptor.
            let queue = peer.lane((1, purpose.lane as usize)).queue.clone();
            while queue.len() == 0 {
                tokio::select! {
                    _ = queue.ready.notified() => {}
                    _ = peer.stop.notified() => return,
                }
                if peer.is_down() {
                    return;
                }
            }
        }
        if opened.is_none() {
            // The other side could take a connection made before it handled the release for one
            // of the old peer's, and read it beside them (a signal on it would overtake messages
            // still on the old connections). A data lane waits until the released predecessor's
            // connections are read to their end; the control lane only until the predecessor's
            // control connection has ended (the other side ends it once it handled the release,
            // about a round trip): the node must not look unreachable for longer (it is `up`
            // once that lane connects).
            if control {
                peer.after_predecessor_control(SUCCESSOR_WAIT).await;
            } else {
                peer.after_predecessor(SUCCESSOR_WAIT).await;
            }
        }
        let lane_queue = peer.lane((purpose.channel as usize, purpose.lane as usize)).queue.clone();
        // A released peer's lane still dials once for frames a sender queued before the release
        // finished the queue: they are written, then the connection ends (see `release_peer`).
        let flushing = || peer.releasing.load(Ordering::Acquire) && !peer.is_down() && lane_queue.has_backlog();
        loop {
            if (peer.ending() && !flushing()) || self.shutting_down.load(Ordering::Acquire) {
                return;
            }
            if lane_queue.overflowed() {
                // Its reader closed the connection for it: no redial, the peer goes.
                self.drop_for_overflow(&peer);
                return;
            }
            let attempt = match opened.take() {
                Some(o) => Ok(o),
                None => self.dial_peer(&peer, purpose).await,
            };
            match attempt {
                Ok(o) if o.established.peer.incarnation != peer.id.0 => {
                    // Someone else answers at that address now: the node restarted.
                    let info = o.established.peer.clone();
                    self.peer_down(&peer, "restarted with a new incarnation");
                    self.ensure_peer(&info, Some((purpose, o)));
                    return;
                }
                Ok(o) => {
                    failures = 0;
                    backoff = self.settings.reconnect_min;
                    let lane_index = (purpose.channel as usize, purpose.lane as usize);
                    let lane = peer.lane(lane_index);
                    if connected_before {
                        // What the last connection may have lost goes first, in order, before
                        // what was queued after it (copies of frames still queued are
                        // duplicates the receiver drops).
                        self.requeue_unacked(&peer, lane_index);
                    }
                    connected_before = true;
                    lane.connected.store(true, Ordering::Release);
                    if control && !peer.up.swap(true, Ordering::AcqRel) {
                        tracing::info!(node = %self.settings.name, peer = %peer.name, "node up");
                        let _ = self.events.send(NodeEvent::Up { node: peer.id, name: peer.name.clone() });
                    }
                    self.announce(&peer);
                    let queue = lane.queue.clone();
                    let reason = self.clone().run_connection(peer.clone(), o, queue).await;
                    lane.connected.store(false, Ordering::Release);
                    tracing::debug!(node = %self.settings.name, peer = %peer.name, ?purpose, %reason, "lane disconnected");
                    if peer.ending() || self.shutting_down.load(Ordering::Acquire) {
                        return;
                    }
                    if control && self.faults.is_partitioned(peer.id) {
                        failures += 1;
                    }
                    continue; // redial at once
                }
                Err(error) => {
                    failures += 1;
                    tracing::debug!(node = %self.settings.name, peer = %peer.name, ?purpose, %error, "dial failed");
                    if peer.ending() {
                        // A released peer's last dial (see `flushing`): no retry, and no Down.
                        return;
                    }
                    if control && failures >= 2 {
                        self.peer_down(&peer, "unreachable");
                        return;
                    }
                }
            }
            let jitter = rand::random::<f64>() * 0.5 + 0.75;
            let wait = backoff.mul_f64(jitter);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = peer.stop.notified() => return,
            }
            backoff = (backoff * 2).min(self.settings.reconnect_max);
        }
    }

    async fn dial_peer(&self, peer: &Peer, purpose: ConnPurpose) -> Result<Opened, ConnectError> {
        if self.faults.is_partitioned(peer.id) {
            return Err(ConnectError::Handshake(HandshakeError::Rejected(reject::PARTITIONED.into())));
        }
        let mut last = ConnectError::Closed;
        for addr in &peer.addrs {
            match self.dial(*addr, purpose).await {
                Ok(o) => return Ok(o),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    pub(crate) async fn dial(&self, addr: SocketAddr, purpose: ConnPurpose) -> Result<Opened, ConnectError> {
        let result = conn::dial(
            addr,
            self.tls.as_ref(),
            self.handshake_config(),
            purpose,
            self.settings.connect_timeout,
            self.settings.handshake_timeout,
        )
        .await;
        match &result {
            Err(ConnectError::Handshake(HandshakeError::Rejected(reason))) if reason == reject::QUARANTINED => {
                tracing::warn!(node = %self.settings.name, %addr, "the peer dropped this node for not reading what it asked for, and refuses it for a while");
            }
            Err(ConnectError::Handshake(HandshakeError::Rejected(reason))) if reject::is_refusal(reason) => {
                // The peer is leaving, or cut itself off from us: a failed dial, not a fault.
                tracing::debug!(node = %self.settings.name, %addr, reason, "peer refused the connection");
            }
            Err(ConnectError::Handshake(e)) => {
                self.counters.handshakes_failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(node = %self.settings.name, %addr, error = %e, "handshake with peer failed");
            }
            _ => {}
        }
        result
    }

    /// Accepts connections until the node stops.
    pub(crate) async fn listen(self: Arc<Self>, listener: tokio::net::TcpListener) {
        // Registered before the flag is read, so a stop that comes while a connection is being
        // handed over is not missed (`notify_waiters` keeps no permit): the listener closes.
        let mut stopped = std::pin::pin!(self.stop.notified());
        stopped.as_mut().enable();
        if self.shutting_down.load(Ordering::Acquire) {
            return;
        }
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = stopped.as_mut() => return,
            };
            let (tcp, from) = match accepted {
                Ok(a) => a,
                Err(error) => {
                    tracing::warn!(node = %self.settings.name, %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let shared = self.clone();
            self.runtime.spawn(async move { shared.serve_inbound(tcp, from).await });
        }
    }

    async fn serve_inbound(self: Arc<Self>, tcp: tokio::net::TcpStream, from: SocketAddr) {
        // A peer that proved itself but that this node will not serve is told so in the
        // handshake, so it counts a failed dial and backs off (a one-sided partition looks like
        // an unreachable node to the other side, as a real one would).
        let refuse = |established: &troupe_wire::Established| {
            if self.faults.is_partitioned(NodeId(established.peer.incarnation)) {
                Some(reject::PARTITIONED)
            } else if self.shutting_down.load(Ordering::Acquire) {
                Some(reject::SHUTTING_DOWN)
            } else if self.is_quarantined(NodeId(established.peer.incarnation)) {
                Some(reject::QUARANTINED)
            } else {
                None
            }
        };
        let opened = match conn::accept(
            tcp,
            self.tls.as_ref(),
            self.handshake_config(),
            self.settings.handshake_timeout,
            refuse,
        )
        .await
        {
            Ok(o) => o,
            Err(ConnectError::Refused(reason)) => {
                tracing::debug!(node = %self.settings.name, %from, reason, "refused an authenticated peer");
                return;
            }
            Err(error) => {
                self.counters.handshakes_rejected.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(node = %self.settings.name, %from, %error, "rejected an inbound connection");
                return;
            }
        };
        let info = opened.established.peer.clone();
        if self.faults.is_partitioned(NodeId(info.incarnation)) {
            // Cut off during the handshake's last write.
            return;
        }
        let purpose = opened.established.purpose;
        if purpose == ConnPurpose::PROBE {
            self.answer_probe_connection(opened, from).await;
            return;
        }
        if purpose == (ConnPurpose { channel: 0, lane: 0 }) && self.peer(NodeId(info.incarnation)).is_none() {
            // A node we have no connection with dialled our control lane: that one connection
            // carries control traffic both ways (half the descriptors of a large overlay).
            self.ensure_peer(&info, Some((purpose, opened)));
            return;
        }
        let Some(peer) = self.ensure_peer(&info, None) else { return };
        self.serve_extra(peer, opened).await;
    }

    /// Serves a connection the peer dialled for one of its lanes: we read its frames and send
    /// back only acks and pongs (our own traffic goes on our lanes).
    async fn serve_extra(self: Arc<Self>, peer: Arc<Peer>, opened: Opened) {
        // The overlay hears of the peer before any message read from this connection.
        self.announce(&peer);
        let name = peer.name.clone();
        let queue = Arc::new(SendQueue::new(self.settings.queue_bytes, false));
        let reading = peer.reading_inbound();
        let reason = self.clone().run_connection(peer.clone(), opened, queue.clone()).await;
        drop(reading);
        if queue.overflowed() {
            // The peer's lane asks (acks, pings) and does not read the answers.
            self.drop_for_overflow(&peer);
        }
        queue.close();
        tracing::debug!(node = %self.settings.name, peer = %name, %reason, "inbound connection closed");
    }

    /// Runs one connection: the writer drains `queue`, the reader dispatches frames. Returns
    /// when either side ends; says why.
    async fn run_connection(self: Arc<Self>, peer: Arc<Peer>, opened: Opened, queue: Arc<SendQueue>) -> String {
        let Opened { reader, writer, established, leftover } = opened;
        peer.version.store(established.version, Ordering::Relaxed);
        // Frames larger than it takes would end the connection: senders get `TooLarge` instead.
        let max_frame = self.frame_limit(&established);
        peer.max_frame.store(max_frame, Ordering::Relaxed);
        peer.acks.remember_handshake(established.version, max_frame);
        let (reader, leftover) = match self.settings.link {
            // Everything read from here on, including what the handshake read ahead, crosses the emulated link.
            Some(link) => {
                let ahead = std::io::Cursor::new(leftover);
                let delayed: ReadHalf = Box::new(crate::emulation::DelayedReader::new(ahead.chain(reader), link));
                (delayed, Vec::new())
            }
            None => (reader, leftover),
        };
        let channel = established.purpose.channel as usize;
        let stop = Arc::new(tokio::sync::Notify::new());
        let (shared, node) = (self.clone(), self.clone());
        let peer_id = peer.id;
        let mut write = self.runtime.spawn(conn::write_loop(
            writer,
            queue.clone(),
            stop.clone(),
            move |n| {
                shared.counters.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
            },
            // Nothing goes to a peer we cut ourselves off from, not even retransmissions or
            // acknowledgement floors, which kept its side of the connection looking alive: the
            // writer ends the connection the first time it has something for it.
            move || node.faults.is_partitioned(peer_id),
        ));
        let read = self.clone().read_loop(peer.clone(), reader, leftover, queue.clone(), channel);
        tokio::pin!(read);
        // Registered now, so a stop notified while one side of a released connection is waited
        // for below is not missed (`notify_waiters` keeps no permit).
        let peer_down = peer.stop.notified();
        let node_stopping = self.stop.notified();
        tokio::pin!(peer_down, node_stopping);
        peer_down.as_mut().enable();
        node_stopping.as_mut().enable();
        let releasing = || peer.releasing.load(Ordering::Acquire);
        let reason = tokio::select! {
            r = &mut read => {
                if releasing() {
                    // Released, and the other side ended its sending side (or the read failed):
                    // ours ends once it has written what it still has, so the other side reads
                    // that too. (A lane's queue is finished by the release already; the queue
                    // of a connection the other side dialled is finished here.)
                    queue.finish();
                    let _ = released_wait(&mut write, &peer, peer_down.as_mut(), node_stopping.as_mut()).await;
                }
                r
            }
            w = &mut write => match w {
                Ok(Ok(())) if releasing() => {
                    // Released: our side wrote all it had and ended its sending side. What the
                    // other side wrote before it heard of the release is still read, until it
                    // ends its own side (it releases too).
                    released_wait(&mut read, &peer, peer_down.as_mut(), node_stopping.as_mut()).await.unwrap_or_else(str::to_string)
                }
                Ok(Ok(())) => "writer finished".to_string(),
                Ok(Err(e)) => format!("write failed: {e}"),
                Err(e) => format!("writer task: {e}"),
            },
            _ = peer_down.as_mut() => "peer down".to_string(),
            _ = node_stopping.as_mut() => "node stopping".to_string(),
        };
        stop.notify_one();
        if !write.is_finished() {
            // Give the writer a moment to flush what is queued (a Goodbye, acks), then drop it.
            if tokio::time::timeout(Duration::from_millis(200), &mut write).await.is_err() {
                write.abort();
            }
        }
        reason
    }

    // -----------------------------------------------------------------------------------------
    // Receiving

    /// Reads and dispatches frames until the connection fails; pings an idle connection and
    /// gives up on it after the configured attempts.
    ///
    /// Small frames are read many at a time into one buffer. A frame of [`BIG_FRAME`] bytes or
    /// more is read into a buffer of its own, in reads of at most [`BIG_READ`] bytes, so its
    /// attached payloads reach the actor as slices of that buffer (never copied again), and other
    /// connections' readers get the thread between two reads.
    async fn read_loop(
        self: Arc<Self>,
        peer: Arc<Peer>,
        mut reader: ReadHalf,
        leftover: Vec<u8>,
        reply_queue: Arc<SendQueue>,
        channel: usize,
    ) -> String {
        let Some(transport) = self.transport() else { return "node gone".into() };
        // Nothing from this peer is handed on before what its released predecessor's
        // connections still carry.
        peer.after_predecessor(SUCCESSOR_WAIT).await;
        let decoder = FrameDecoder::new(self.settings.max_frame);
        let mut conn = ConnState {
            acks: Vec::new(),
            cache: None,
            delivered: 0,
            runtime: self.runtime.clone(),
            warned_window: false,
        };
        let mut buf = leftover;
        let mut start = 0usize;
        let mut unanswered = 0u32;
        // What our side got into this connection's socket. While that moves with a backlog still
        // queued (so the socket's buffer was full: the other side took bytes off it), the other
        // side is reading, however slowly, and its silence is no sign of death: our pings wait
        // behind the backlog it is working through.
        let mut moved = reply_queue.moved.load(Ordering::Relaxed);
        // Counted per read, not per frame: the counters are shared by every connection.
        let mut frames = 0u64;
        // Actors woken by this read's frames: run here if the scheduler is idle and the read was
        // a short exchange (see `INLINE_FRAMES`), else queued for the workers.
        let mut woken = troupe_actor::Woken::default();
        // When a read has waited too long (see `idle_ping`, `ping_timeout`).
        let mut deadline = ReadDeadline::default();
        loop {
            // Dispatch every whole frame in the buffer, in runs of frames that need no waiting
            // (one wake-up collection for each run, not one per frame).
            loop {
                let before = frames;
                let run = troupe_actor::collect_wakeups(&mut woken, || {
                    self.dispatch_run(
                        &decoder,
                        &buf,
                        &mut start,
                        &mut frames,
                        (&transport, &peer, &reply_queue, channel),
                        &mut conn,
                    )
                });
                // Frames of a peer we cut ourselves off from (`Node::partition`) were dropped
                // unread: they say nothing about the connection.
                if frames > before && !self.faults.is_partitioned(peer.id) {
                    unanswered = 0;
                }
                let step = match run {
                    Run::Drained => break,
                    Run::BadFrame(reason) => return reason,
                    Run::Wait(step) => step,
                };
                if matches!(step, Dispatched::Full { .. }) {
                    // We are about to wait for the target to make room: it must run elsewhere.
                    woken.release();
                    // And the sender hears now of what this node took in so far (acknowledged
                    // means taken in, as for a message waiting in a mailbox): held back for as
                    // long as a slow actor takes, acknowledgements would look lost.
                    flush_acks(&mut conn, &reply_queue, channel);
                }
                if let Err(reason) = self.finish_dispatch(step, &peer, &mut conn).await {
                    return reason;
                }
            }
            if frames <= INLINE_FRAMES {
                woken.run_here();
            } else {
                woken.release();
            }
            flush_acks(&mut conn, &reply_queue, channel);
            self.counters.frames_in.fetch_add(std::mem::take(&mut frames), Ordering::Relaxed);
            if conn.delivered > 0 {
                peer.received.fetch_add(conn.delivered, Ordering::Relaxed);
            }
            self.counters.messages_in.fetch_add(std::mem::take(&mut conn.delivered), Ordering::Relaxed);
            if reply_queue.overflowed() {
                // What it asked for (answers, acks, pongs) piled up unread: see `SendQueue`'s
                // overflow mark. Its peer is dropped too when this is one of the peer's lanes.
                return "the other side does not read what it asks for".into();
            }
            // Compact, then read more.
            if start > 0 {
                buf.drain(..start);
                start = 0;
            }
            if let Ok(Some(header)) = decoder.decode_header(&buf) {
                let total = HEADER_LEN + header.len as usize;
                if total >= BIG_FRAME && buf.len() < total {
                    // A large frame has begun: the rest of it goes into a buffer of its own.
                    let mut big = self.frame_pool.lock().take(total);
                    big.extend_from_slice(&buf);
                    buf.clear();
                    while big.len() < total {
                        let want = (total - big.len()).min(BIG_READ) as u64;
                        let wait = if unanswered == 0 { self.settings.idle_ping } else { self.settings.ping_timeout };
                        match deadline.run(wait, (&mut reader).take(want).read_buf(&mut big)).await {
                            Some(Ok(0)) => return "closed by peer".into(),
                            Some(Ok(n)) => {
                                unanswered = 0;
                                self.counters.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
                                peer.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
                            }
                            Some(Err(e)) => return format!("read failed: {e}"),
                            None => {
                                if draining(&reply_queue, &mut moved) {
                                    unanswered = 0;
                                }
                                if unanswered >= self.settings.ping_attempts {
                                    tracing::info!(node = %self.settings.name, peer = %peer.name, "connection silent; closing it");
                                    return "idle ping unanswered".into();
                                }
                                unanswered += 1;
                                reply_queue.push_frame(FrameKind::Ping, channel as u16, &[]);
                            }
                        }
                        // Let the other connections' readers (small messages) have the thread.
                        tokio::task::yield_now().await;
                    }
                    let capacity = big.capacity();
                    let frame = big.freeze();
                    // The guard goes at the end of the statement, the evicted buffers after it.
                    let evicted = self.frame_pool.lock().keep(&frame, capacity, Instant::now());
                    drop(evicted);
                    frames += 1;
                    let step = troupe_actor::collect_wakeups(&mut woken, || {
                        troupe_actor::with_codec_context(&transport, peer.id, || {
                            // The buffered frames before it were dispatched and their batch handed
                            // over: this message starts a series, so it goes to the mailbox directly.
                            self.dispatch(
                                &transport,
                                &peer,
                                header,
                                &frame[HEADER_LEN..],
                                Some(&frame),
                                &reply_queue,
                                channel,
                                &mut conn,
                            )
                        })
                    });
                    // A large message is bulk work (its handler may copy or write it again): the
                    // workers take it, in parallel with this thread's next read.
                    woken.release();
                    if matches!(step, Dispatched::Full { .. }) {
                        flush_acks(&mut conn, &reply_queue, channel);
                    }
                    if let Err(reason) = self.finish_dispatch(step, &peer, &mut conn).await {
                        return reason;
                    }
                    continue;
                }
            }
            if buf.capacity() - buf.len() < 32 * 1024 {
                buf.reserve(64 * 1024);
            }
            if buf.is_empty() && buf.capacity() > 1 << 20 {
                buf = Vec::with_capacity(64 * 1024);
            }
            let wait = if unanswered == 0 { self.settings.idle_ping } else { self.settings.ping_timeout };
            match deadline.run(wait, reader.read_buf(&mut buf)).await {
                Some(Ok(0)) => return "closed by peer".into(),
                Some(Ok(n)) => {
                    self.counters.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
                    peer.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
                }
                Some(Err(e)) => return format!("read failed: {e}"),
                None => {
                    let aged = self.frame_pool.lock().trim(Instant::now()); // idle: give them back
                    drop(aged);
                    if draining(&reply_queue, &mut moved) {
                        unanswered = 0;
                    }
                    if unanswered >= self.settings.ping_attempts {
                        tracing::info!(node = %self.settings.name, peer = %peer.name, "connection silent; closing it");
                        return "idle ping unanswered".into();
                    }
                    unanswered += 1;
                    // (To a peer we cut ourselves off from, the writer drops it.)
                    reply_queue.push_frame(FrameKind::Ping, channel as u16, &[]);
                }
            }
        }
    }

    /// Dispatches the whole frames of `buf` from `start` (advanced past each, `frames` counted)
    /// until one needs waiting for ([`Run::Wait`]), the buffer holds no whole frame more, or a
    /// frame is malformed (counted and logged; the connection must close). The batch of messages
    /// for one actor is handed over before any frame that is not a message and before returning.
    fn dispatch_run(
        &self,
        decoder: &FrameDecoder,
        buf: &[u8],
        start: &mut usize,
        frames: &mut u64,
        (transport, peer, reply_queue, channel): (&Arc<dyn Transport>, &Arc<Peer>, &SendQueue, usize),
        conn: &mut ConnState,
    ) -> Run {
        // One codec context for the whole run: refs and reply ports in these frames are `peer`'s.
        troupe_actor::with_codec_context(transport, peer.id, || loop {
            let decoded = decoder.decode(&buf[*start..]);
            // The batch of messages for one actor read so far goes to its mailbox before anything
            // that is not another message: a control frame (a stop must not overtake the
            // messages before it), the end of what was read, a malformed frame. When it must
            // wait for room, this frame stays unread until it has.
            if !matches!(&decoded, Ok(Some((frame, _))) if frame.header.kind == FrameKind::Message) {
                match self.flush_batch(peer, conn) {
                    Dispatched::Done => {}
                    step => return Run::Wait(step),
                }
            }
            let (header, payload_range, used) = match decoded {
                Ok(None) => return Run::Drained,
                Ok(Some((frame, used))) => {
                    let offset = *start + (used - frame.payload.len());
                    (frame.header, offset..*start + used, used)
                }
                Err(error) => {
                    self.counters.bad_frames.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(node = %self.settings.name, peer = %peer.name, %error, "bad frame; closing the connection");
                    return Run::BadFrame(format!("bad frame: {error}"));
                }
            };
            *start += used;
            *frames += 1;
            match self.dispatch(transport, peer, header, &buf[payload_range], None, reply_queue, channel, conn) {
                Dispatched::Done => {}
                Dispatched::Delivered => conn.delivered += 1,
                step => return Run::Wait(step),
            }
        })
    }

    /// Handles one frame read from `peer`. `frame` is the whole frame when it has a buffer of its
    /// own (its attached payloads are then sliced from it, not copied).
    #[allow(clippy::too_many_arguments)]
    fn dispatch(
        &self,
        transport: &Arc<dyn Transport>,
        peer: &Arc<Peer>,
        header: FrameHeader,
        payload: &[u8],
        frame: Option<&Bytes>,
        reply_queue: &SendQueue,
        channel: usize,
        conn: &mut ConnState,
    ) -> Dispatched {
        if self.faults.is_partitioned(peer.id) {
            return Dispatched::Done;
        }
        match header.kind {
            FrameKind::Message => self.on_message(peer, header, payload, frame, conn),
            FrameKind::Reply => {
                self.complete_reply(transport, peer.id, &peer.name, header, payload, frame);
                Dispatched::Done
            }
            FrameKind::Ack => {
                match decode_acks(payload) {
                    Ok(seqs) => peer.acks.acked(&seqs),
                    Err(error) => tracing::warn!(peer = %peer.name, %error, "bad ack frame"),
                }
                Dispatched::Done
            }
            FrameKind::Control => {
                let numbered = header.flags & flags::ACK_REQUESTED != 0;
                let decoded = match numbered {
                    true => Control::decode_numbered(payload).map(|(seq, control)| (Some(seq), control)),
                    false => Control::decode(payload).map(|control| (None, control)),
                };
                match decoded {
                    Ok((seq, control)) => {
                        if seq.is_none_or(|seq| self.first_arrival(peer, seq, conn)) {
                            self.on_control(peer, control);
                        }
                    }
                    Err(error) => {
                        self.counters.bad_frames.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(peer = %peer.name, %error, "bad control frame");
                    }
                }
                Dispatched::Done
            }
            FrameKind::Ping => {
                reply_queue.push_frame(FrameKind::Pong, channel as u16, &[]);
                Dispatched::Done
            }
            FrameKind::Pong => {
                // Evidence of life for probes (a partitioned peer's frames never get here).
                peer.pong.notify_waiters();
                Dispatched::Done
            }
            FrameKind::Close => Dispatched::Close("peer closed the connection".into()),
            other => {
                self.counters.bad_frames.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(peer = %peer.name, kind = ?other, "handshake frame on an open connection");
                Dispatched::Close("protocol violation".into())
            }
        }
    }

    /// Waits out a delivery into a full mailbox (backpressure reaches the connection), counts
    /// it; `Err` says why the connection must close.
    async fn finish_dispatch(&self, step: Dispatched, peer: &Peer, conn: &mut ConnState) -> Result<(), String> {
        match step {
            Dispatched::Done => {}
            Dispatched::Delivered => conn.delivered += 1,
            Dispatched::Full { wait, count } => {
                let _waiting = peer.waiting_for_room();
                let delivered = FinishOnDrop { wait: Some(wait), runtime: self.runtime.clone() }.await;
                conn.delivered += delivered;
                self.counters.dead_letters.fetch_add(count.saturating_sub(delivered), Ordering::Relaxed);
            }
            Dispatched::Close(reason) => return Err(reason),
        }
        Ok(())
    }

    /// Delivers one Message frame. The first message of a series of consecutive messages for one
    /// actor goes to its mailbox at once (`Delivered`, or `Full` to wait for room); the next ones
    /// join the connection's batch for that actor ([`CachedTarget::batch`]), handed over by
    /// [`flush_batch`](Self::flush_batch) when the series ends. When this message switches to
    /// another actor, the previous actor's batch is handed over first, and if that must wait,
    /// the wait is returned and this message starts the new actor's batch.
    fn on_message(
        &self,
        peer: &Peer,
        header: FrameHeader,
        payload: &[u8],
        frame: Option<&Bytes>,
        conn: &mut ConnState,
    ) -> Dispatched {
        let Some((target, type_tag, body, attached)) = self.read_message(peer, header, payload, frame, conn) else {
            return Dispatched::Done;
        };
        let mut ended = Dispatched::Done;
        if !matches!(&conn.cache, Some(c) if c.id == target) {
            ended = self.flush_batch(peer, conn);
            conn.cache = self.exported_local(target).map(|inbound| CachedTarget {
                id: target,
                type_tag: inbound.type_tag(),
                inbound,
                batch: None,
                in_batch: false,
            });
        }
        let Some(cached) = &mut conn.cache else {
            self.dead_letters(peer, target, 1);
            return ended;
        };
        if !self.check_type(&*cached.inbound, cached.type_tag, &peer.name, (target, type_tag)) {
            return ended;
        }
        let starts_batch = !std::mem::replace(&mut cached.in_batch, true);
        if starts_batch && matches!(ended, Dispatched::Done) {
            return match self.deliver_checked(&*cached.inbound, &peer.name, target, body, attached) {
                Some(Delivery::Accepted) => Dispatched::Delivered,
                Some(Delivery::Full(wait)) => Dispatched::Full { wait, count: 1 },
                Some(Delivery::Closed) => {
                    self.dead_letters(peer, target, 1);
                    Dispatched::Done
                }
                None => Dispatched::Done,
            };
        }
        let batch = cached.batch.get_or_insert_with(|| cached.inbound.batch());
        if let Err(error) = batch.add(body, attached) {
            self.counters.decode_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(peer = %peer.name, %target, %error, "undecodable message dropped");
        }
        ended
    }

    /// Hands the connection's batch of messages for its cached actor to that actor's mailbox
    /// (counted as delivered); returns the wait when the mailbox has no room for all of them.
    fn flush_batch(&self, peer: &Peer, conn: &mut ConnState) -> Dispatched {
        let Some(cached) = &mut conn.cache else { return Dispatched::Done };
        cached.in_batch = false;
        let Some(batch) = cached.batch.as_mut().filter(|batch| !batch.is_empty()) else { return Dispatched::Done };
        let flushed = batch.flush();
        conn.delivered += flushed.accepted;
        match flushed.rest {
            None => Dispatched::Done,
            Some(FlushRest::Full { wait, count }) => Dispatched::Full { wait, count },
            Some(FlushRest::Closed(count)) => {
                let target = cached.id;
                self.dead_letters(peer, target, count);
                Dispatched::Done
            }
        }
    }

    /// Reads a Message frame's envelope and body: `None` when it is not for an actor here (a
    /// duplicate, injected loss, a malformed frame; counted and logged), else its target, type
    /// tag, postcard body and attached payloads.
    fn read_message<'a>(
        &self,
        peer: &Peer,
        header: FrameHeader,
        payload: &'a [u8],
        frame: Option<&Bytes>,
        conn: &mut ConnState,
    ) -> Option<(ActorId, u64, &'a [u8], Option<Bytes>)> {
        let acked = header.flags & flags::ACK_REQUESTED != 0;
        let channel = header.channel as usize;
        let (env, body) = match Envelope::read(payload, acked) {
            Ok(x) => x,
            Err(error) => {
                self.counters.bad_frames.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(peer = %peer.name, %error, "bad message envelope");
                return None;
            }
        };
        let target = ActorId { node: NodeId(env.target_node), serial: env.target_serial };
        // Injected loss happens "on the wire": before the message is acknowledged.
        if self.faults.active() {
            let info = MessageInfo { peer: peer.id, target, channel, type_tag: env.type_tag, acked };
            if self.faults.on_receive(&info) == Verdict::Drop {
                return None;
            }
        }
        if env.seq.is_some_and(|seq| !self.first_arrival(peer, seq, conn)) {
            return None;
        }
        let (body, attached) = self.split_body(&peer.name, header, body, frame)?;
        Some((target, env.type_tag, body, attached))
    }

    /// A numbered frame (an acknowledged message, or a numbered control message) numbered `seq`
    /// arrived from `peer`: true the first time, when it is to be handled. Its acknowledgement
    /// goes with the connection's next batch, the first time and for every copy (the sender
    /// missed the earlier acknowledgement); copies are counted as duplicates.
    fn first_arrival(&self, peer: &Peer, seq: u64, conn: &mut ConnState) -> bool {
        match peer.acks.arrival(seq) {
            Arrival::First => {
                conn.acks.push(seq);
                true
            }
            Arrival::Duplicate => {
                conn.acks.push(seq);
                self.counters.duplicates.fetch_add(1, Ordering::Relaxed);
                false
            }
            Arrival::OutOfWindow => {
                // No honest sender gets this far ahead: neither recorded nor acknowledged.
                self.counters.bad_frames.fetch_add(1, Ordering::Relaxed);
                if !std::mem::replace(&mut conn.warned_window, true) {
                    tracing::warn!(peer = %peer.name, seq, "acknowledged frame numbered far ahead; dropped (logged once per connection)");
                }
                false
            }
        }
    }

    /// A body's postcard part and its attached payloads: sliced from `frame` when the frame has a
    /// buffer of its own, else copied out of the shared read buffer. `None` (counted, logged) when
    /// the body is malformed.
    fn split_body<'a>(
        &self,
        from: &str,
        header: FrameHeader,
        body: &'a [u8],
        frame: Option<&Bytes>,
    ) -> Option<(&'a [u8], Option<Bytes>)> {
        if header.flags & flags::ATTACHED == 0 {
            return Some((body, None));
        }
        match split_attached(body) {
            Ok((postcard, range)) => {
                let region = &body[range];
                let attached = match frame {
                    Some(frame) => frame.slice_ref(region),
                    None => Bytes::copy_from_slice(region),
                };
                Some((postcard, Some(attached)))
            }
            Err(error) => {
                self.counters.bad_frames.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(peer = %from, %error, "bad attached body");
                None
            }
        }
    }

    /// Hands a message body from node `from_name` to the local actor `inbound` (with its type
    /// tag): checks the tag and decodes. `None` when the message is of the wrong type or does not
    /// decode (counted and logged).
    ///
    /// The caller has made the sending node the codec context ([`troupe_actor::with_codec_context`]):
    /// a reader sets it once for a whole run of frames rather than once per message.
    fn deliver_local(
        &self,
        (inbound, inbound_tag): (&dyn Inbound, u64),
        from_name: &str,
        (target, type_tag): (ActorId, u64),
        body: &[u8],
        attached: Option<Bytes>,
    ) -> Option<Delivery> {
        if !self.check_type(inbound, inbound_tag, from_name, (target, type_tag)) {
            return None;
        }
        self.deliver_checked(inbound, from_name, target, body, attached)
    }

    /// False (counted and logged) when a message of type `type_tag` is not what `inbound`, whose
    /// tag is `inbound_tag`, takes.
    fn check_type(
        &self,
        inbound: &dyn Inbound,
        inbound_tag: u64,
        from_name: &str,
        (target, type_tag): (ActorId, u64),
    ) -> bool {
        if inbound_tag != type_tag {
            self.counters.decode_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(peer = %from_name, %target, expected = inbound.type_name(), "message of the wrong type dropped");
            return false;
        }
        true
    }

    /// [`deliver_local`](Self::deliver_local) once the type is known to match.
    fn deliver_checked(
        &self,
        inbound: &dyn Inbound,
        from_name: &str,
        target: ActorId,
        body: &[u8],
        attached: Option<Bytes>,
    ) -> Option<Delivery> {
        match inbound.deliver(body, attached) {
            Ok(delivery) => Some(delivery),
            Err(error) => {
                self.counters.decode_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(peer = %from_name, %target, %error, "undecodable message dropped");
                None
            }
        }
    }

    /// The exported actor `id`, if it is on this node (this incarnation) and still exported.
    fn exported_local(&self, id: ActorId) -> Option<Arc<dyn Inbound>> {
        if id.node != self.id {
            return None;
        }
        self.exported.read().get(&id.serial).cloned()
    }

    /// `count` messages for an actor that is gone (or a ref to an earlier incarnation of this node):
    /// counted, and the sender's node is told so its watchers hear of it and its further sends
    /// fail at once.
    fn dead_letters(&self, peer: &Peer, target: ActorId, count: u64) {
        self.counters.dead_letters.fetch_add(count, Ordering::Relaxed);
        tracing::debug!(node = %self.settings.name, %target, "message for an unknown actor dropped");
        self.send_actor_control(peer.id, &Control::Down { target: wire_id(target), reason: WireExit::NoActor });
    }

    /// Completes the ask a Reply frame from node `from` answers.
    fn complete_reply(
        &self,
        transport: &Arc<dyn Transport>,
        from: NodeId,
        name: &str,
        frame_header: FrameHeader,
        payload: &[u8],
        frame: Option<&Bytes>,
    ) {
        let (header, body) = match ReplyHeader::read(payload) {
            Ok(x) => x,
            Err(error) => {
                self.counters.bad_frames.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(peer = %name, %error, "bad reply frame");
                return;
            }
        };
        if let Some(pending) = self.answered(&self.replies, header.request, (from, name), "ask") {
            let outcome = match header.status {
                ReplyStatus::Ok => ReplyOutcome::Answered,
                _ => ReplyOutcome::NoReply,
            };
            let (body, attached) = match self.split_body(name, frame_header, body, frame) {
                Some(split) => split,
                None => (&[][..], None),
            };
            troupe_actor::with_codec_context(transport, from, || pending.complete(outcome, body, attached));
        }
    }

    fn on_control(&self, peer: &Arc<Peer>, control: Control) {
        let control = match self.admit_signal(peer, control) {
            Ok(()) => return,
            Err(other) => other,
        };
        match control {
            Control::Lookup { request, name } => {
                let found = self.named.read().get(&name).map(|i| (wire_id(i.id()), i.type_name().to_string()));
                self.send_control(peer.id, &Control::LookupReply { request, found });
            }
            Control::LookupReply { request, found } => {
                if let Some(tx) = self.answered(&self.lookups, request, (peer.id, &peer.name), "lookup") {
                    let _ = tx.send(found.map(|(id, ty)| (actor_id(&id), ty)));
                }
            }
            Control::Goodbye => self.peer_leaving(peer),
            Control::AckFloor { next } => peer.acks.advance_to(next),
            Control::Overlay { payload } => {
                self.tell_membership(DriverInput::Overlay { from: troupe_overlay::PeerId(peer.id.0), payload });
            }
            // Only from the peer in the map: one already released (this frame read from its old
            // connections to their end) must not release its successor.
            Control::Release if self.peer(peer.id).is_some_and(|current| Arc::ptr_eq(&current, peer)) => {
                // Our acknowledged messages still outstanding go on a new connection once the
                // old ones are through (see `release_peer`).
                if self.release_peer(peer.id, false) {
                    self.tell_membership(DriverInput::PeerLost(troupe_overlay::PeerId(peer.id.0)));
                }
            }
            Control::Release => {}
            Control::Relay { origin, to, ttl, frame } => self.on_relay(peer, NodeId(origin), NodeId(to), ttl, frame),
            Control::Broadcast { payload } => {
                self.tell_membership(DriverInput::Plumtree { from: troupe_overlay::PeerId(peer.id.0), payload });
            }
            Control::ViewRequest { request } => self.answer_view_request(peer.id, request),
            Control::ViewReply { request, payload } => {
                if let Some(tx) = self.answered(&self.view_requests, request, (peer.id, &peer.name), "view request") {
                    let _ = tx.send(payload);
                }
            }
            Control::Probe { request, node } => {
                if let Some(me) = self.me.upgrade() {
                    me.on_probe(peer.id, request, NodeId(node), &[]);
                }
            }
            Control::ProbeAt { request, node, addrs } => {
                if let Some(me) = self.me.upgrade() {
                    me.on_probe(peer.id, request, NodeId(node), &addrs);
                }
            }
            Control::ProbeReply { request, reachable } => self.on_probe_reply(peer.id, request, reachable),
            Control::Marker { marker } => peer.fence.note_marker(marker),
            Control::RelayPing { .. } | Control::RelayPong { .. } => {
                // Only meaningful through the overlay (see `on_relay`).
                self.counters.bad_frames.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(peer = %peer.name, "relay ping or pong on a direct connection; ignored");
            }
            // Handled by `on_actor_control`.
            Control::Watch { .. }
            | Control::Unwatch { .. }
            | Control::Down { .. }
            | Control::Stop { .. }
            | Control::After { .. }
            | Control::AfterAll { .. }
            | Control::Kill { .. }
            | Control::Link { .. }
            | Control::Unlink { .. } => {}
        }
    }

    /// The request `request` waiting in `waiting` for the answer of node `from` (`name`), taken
    /// out. An answer from another node than the one asked (a guess or a forgery) is a bad frame,
    /// logged, and the request keeps waiting for its own node's answer.
    fn answered<T, S: std::hash::BuildHasher>(
        &self,
        waiting: &Mutex<HashMap<u64, (NodeId, T), S>>,
        request: u64,
        (from, name): (NodeId, &str),
        what: &str,
    ) -> Option<T> {
        let mut waiting = waiting.lock();
        match waiting.get(&request) {
            Some((asked, _)) if *asked != from => {
                drop(waiting);
                self.counters.bad_frames.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(peer = %name, request, what, "answer to a request sent to another node ignored");
                None
            }
            _ => waiting.remove(&request).map(|(_, value)| value),
        }
    }

    /// Handles a control message about actors from node `from` (`name`), which arrived over a
    /// connection with it or relayed along the overlay; answers go back the way actor control
    /// goes ([`send_actor_control`](Self::send_actor_control)). Hands any other message back.
    fn on_actor_control(&self, from: NodeId, name: &str, control: Control) -> Result<(), Control> {
        match control {
            Control::Watch { target } => {
                let id = actor_id(&target);
                match self.exported_local(id) {
                    Some(actor) => {
                        if !self.remote_watches.lock().insert((from, id)) {
                            return Ok(());
                        }
                        let (me, still) = (self.me.clone(), self.me.clone());
                        let watcher = from;
                        // Dropped unrun once the watch is forgotten (its node gone for good), so
                        // a long-lived actor does not keep one per watching node that ever was.
                        let wanted = move || {
                            still.upgrade().is_some_and(|shared| shared.remote_watches.lock().contains(&(watcher, id)))
                        };
                        actor.untyped().on_exit_while(wanted, move |reason| {
                            let Some(shared) = me.upgrade() else { return };
                            // Not when the watcher's node was lost meanwhile (nobody to tell),
                            // nor twice when it came back and asked again.
                            if shared.remote_watches.lock().remove(&(watcher, id)) {
                                let down = Signal::Down { target: wire_id(id), reason: wire_exit(reason) };
                                shared.send_after_messages(watcher, down);
                            }
                        });
                    }
                    None => {
                        self.send_actor_control(from, &Control::Down { target, reason: WireExit::NoActor });
                    }
                }
            }
            Control::Unwatch { .. } => {}
            Control::Link { target, from: linker } => {
                self.on_link(from, name, actor_id(&target), actor_id(&linker), true)
            }
            Control::Unlink { target, from: linker } => {
                self.on_link(from, name, actor_id(&target), actor_id(&linker), false)
            }
            Control::Down { target, reason } => {
                let target = actor_id(&target);
                if !self.speaks_for(from, name, target.node) {
                    // Only an actor's own node reports its exit: a Down from anyone else would
                    // let one buggy or hostile member end every watch in the cluster.
                    self.counters.bad_frames.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(node = %self.settings.name, peer = %name, %target, "Down for another node's actor ignored");
                    return Ok(());
                }
                let proxy = self.proxies.lock().get(&target).and_then(Weak::upgrade);
                if let Some(proxy) = proxy {
                    proxy.exited(exit_reason(reason));
                }
            }
            Control::Stop { target } => {
                if let Some(actor) = self.exported_local(actor_id(&target)) {
                    actor.untyped().stop();
                }
            }
            // Relayed: no connection of ours carried the messages before it (a direct one goes
            // through `admit_signal`).
            Control::After { signal, .. } | Control::AfterAll { signal, .. } => {
                return self.on_actor_control(from, name, signal.into_control())
            }
            Control::Kill { target } => {
                if let Some(actor) = self.exported_local(actor_id(&target)) {
                    actor.untyped().kill();
                }
            }
            other => return Err(other),
        }
        Ok(())
    }

    /// Whether node `from` (named `from_name`) may report on the actors of node `node`: it is
    /// that node, or `node` is an earlier incarnation of it (a restarted node answers for refs to
    /// its previous life with NoActor).
    fn speaks_for(&self, from: NodeId, from_name: &str, node: NodeId) -> bool {
        node == from || self.name_of(node).is_some_and(|name| name == from_name)
    }

    /// The actor `from` on node `node` (`name`) linked itself to our actor `target` (`link`), or
    /// removed that link. `target` then fails when `from` does (its node reports `from`'s exit
    /// as a Down) or when that node is lost; a link to an actor that is not here fails `from`
    /// at once.
    fn on_link(&self, node: NodeId, name: &str, target: ActorId, from: ActorId, link: bool) {
        if from.node != node {
            self.counters.bad_frames.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(node = %self.settings.name, peer = %name, %from, "link request for another node's actor ignored");
            return;
        }
        match (self.exported_local(target), link) {
            (Some(actor), true) => Transport::proxy(self, from).accept_link(&actor.untyped()),
            (Some(actor), false) => Transport::proxy(self, from).drop_link(&actor.untyped()),
            (None, true) => {
                self.send_actor_control(node, &Control::Down { target: wire_id(target), reason: WireExit::NoActor });
            }
            (None, false) => {}
        }
    }

    // -----------------------------------------------------------------------------------------
    // Sending helpers

    /// Queues a control message on the peer's control lane.
    pub(crate) fn send_control(&self, to: NodeId, control: &Control) -> bool {
        self.send_control_on(to, 0, control)
    }

    /// Queues a control message about actors (watch, down, stop, kill, link): like
    /// [`send_control`](Self::send_control), but it reaches a node the way an actor message
    /// does: relayed along the overlay when that is how the node is reached, else over a
    /// connection made on demand (so a watcher still hears of a Down from a node whose
    /// connections the overlay released). False when it cannot go anywhere.
    pub(crate) fn send_actor_control(&self, to: NodeId, control: &Control) -> bool {
        for _ in 0..RELEASED_RETRIES {
            let peer = match self.peer(to) {
                Some(peer) => peer,
                None if to != self.id && self.must_relay(to) => return self.relay_control(to, control),
                None => match self.peer_on_demand(to) {
                    Some(peer) => peer,
                    None => return false,
                },
            };
            if peer.push_actor_control(control) {
                return true;
            }
            if !peer.is_released() {
                return false;
            }
            // Released after we took it (see `refused_by_release`): the node's next peer takes it.
        }
        false
    }

    /// Sends actor signal `signal` to node `to` so that it takes effect after the messages this
    /// node sent there before it: a [`Control::Marker`] goes behind them on every connection of
    /// the default channel that carried any (a message takes the one its target's key picks, or
    /// its explicit partition key's), and [`Control::AfterAll`] on the control connection, like
    /// every other actor signal, so signals keep their order. Messages on named channels are not
    /// waited for. A node of protocol version 4 gets [`Control::After`] with one marker where its
    /// target's messages go (a stop; a Down it could not decode); older nodes, and nodes reached
    /// only through the overlay, get the signal itself.
    fn send_after_messages(&self, to: NodeId, signal: Signal) -> bool {
        let version = |p: &Arc<Peer>| p.version.load(Ordering::Relaxed);
        let peer = match self.peer(to) {
            Some(peer) if version(&peer) >= 5 => peer,
            Some(peer) if version(&peer) == 4 => {
                if let Signal::Stop { target } = &signal {
                    let lane = peer.pick(1, default_key(actor_id(target)), true);
                    return self.send_marked(&peer, [lane].into_iter(), signal);
                }
                return self.send_actor_control(to, &signal.into_control());
            }
            _ => return self.send_actor_control(to, &signal.into_control()),
        };
        let lanes = peer.lanes.get(1).map_or(0, Vec::len);
        self.send_marked(&peer, (0..lanes).map(|index| (1, index)), signal)
    }

    /// [`send_after_messages`](Self::send_after_messages) to `peer`, with a marker on each of
    /// `lanes` that carried messages.
    fn send_marked(&self, peer: &Arc<Peer>, lanes: impl Iterator<Item = (usize, usize)>, signal: Signal) -> bool {
        let mut markers = Vec::new();
        // Lanes that never carried a message (their connection may not even be open) have
        // nothing to wait for.
        for lane in lanes.filter(|&lane| peer.lane(lane).queue.messages() > 0) {
            let marker = self.next_request.fetch_add(1, Ordering::Relaxed);
            if !peer.push_control(lane, &Control::Marker { marker }) {
                return self.send_actor_control(peer.id, &signal.into_control());
            }
            markers.push(marker);
        }
        // On the control lane of the same peer the markers went to (a new one for the node
        // would never see them).
        let plain = signal.clone().into_control();
        let control = match markers.as_slice() {
            [] => signal.into_control(),
            [marker] if peer.version.load(Ordering::Relaxed) == 4 => Control::After { marker: *marker, signal },
            _ => Control::AfterAll { markers, signal },
        };
        peer.push_actor_control(&control) || self.send_actor_control(peer.id, &plain)
    }

    /// Takes in an actor signal (or any control message about actors) that arrived on a
    /// connection with `peer`: applied once the messages `peer` sent before it are in, and after
    /// the signals about the same actor that arrived before it (see
    /// [`SignalFence`](crate::fence::SignalFence)). A kill takes effect at once. Hands any other
    /// message back.
    fn admit_signal(&self, peer: &Arc<Peer>, control: Control) -> Result<(), Control> {
        let (markers, control) = match control {
            Control::After { marker, signal } => (vec![marker], signal.into_control()),
            Control::AfterAll { markers, signal } => {
                if markers.len() > crate::fence::MAX_MARKERS {
                    // More connections than a channel can have: wait for none of them.
                    self.counters.bad_frames.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(node = %self.settings.name, peer = %peer.name, markers = markers.len(), "signal waiting for too many markers; applied at once");
                    (Vec::new(), signal.into_control())
                } else {
                    (markers, signal.into_control())
                }
            }
            kill @ Control::Kill { .. } => {
                self.apply_signal(peer, kill);
                return Ok(());
            }
            other => (Vec::new(), other),
        };
        let about = match &control {
            Control::Watch { target }
            | Control::Unwatch { target }
            | Control::Down { target, .. }
            | Control::Stop { target } => About(target.clone(), None),
            Control::Link { target, from } | Control::Unlink { target, from } => {
                About(target.clone(), Some(from.clone()))
            }
            _ => return Err(control),
        };
        let _applying = peer.fence.applying();
        match peer.fence.admit(about, markers, control, tokio::time::Instant::now()) {
            Admitted::ApplyNow(control) => self.apply_signal(peer, control),
            Admitted::Held { start_task: true } => {
                if let Some(me) = self.me.upgrade() {
                    self.runtime.spawn(me.wait_for_markers(peer.clone()));
                }
            }
            Admitted::Held { start_task: false } => {}
        }
        Ok(())
    }

    /// Applies the signals `peer`'s fence holds as their markers come in, and gives up on
    /// markers lost with their connection (see [`fence::give_up_before`]): a signal waits
    /// [`MARKER_WAIT`] from its arrival and from the last progress (a message from `peer`, a
    /// reader of its connections waiting for mailbox room), and at most [`MARKER_WAIT_MAX`].
    /// When `peer` goes away, everything held takes effect at once. Ends when nothing is held.
    ///
    /// [`MARKER_WAIT`]: fence::MARKER_WAIT
    /// [`MARKER_WAIT_MAX`]: fence::MARKER_WAIT_MAX
    async fn wait_for_markers(self: Arc<Self>, peer: Arc<Peer>) {
        use tokio::time::Instant;
        let mut received = peer.received.load(Ordering::Relaxed);
        let mut progress_at = Instant::now();
        loop {
            let seen = peer.fence.marker_seen.notified();
            let gone = peer.stop.notified();
            tokio::pin!(seen, gone);
            seen.as_mut().enable();
            gone.as_mut().enable();
            if peer.is_down() {
                return self.drain_signals(&peer, true);
            }
            let now = Instant::now();
            let now_received = peer.received.load(Ordering::Relaxed);
            if now_received != received || peer.is_waiting_for_room() {
                received = now_received;
                progress_at = now;
            }
            {
                let _applying = peer.fence.applying();
                if let Some(cutoff) = fence::give_up_before(now, progress_at) {
                    peer.fence.give_up(cutoff);
                }
                for control in peer.fence.take_ready() {
                    self.apply_signal(&peer, control);
                }
                if peer.fence.task_done() {
                    return;
                }
            }
            let check = match peer.fence.oldest_waiting() {
                Some(oldest) => fence::next_check(oldest, progress_at),
                // Held only behind signals that wait: a marker wakes this task.
                None => now + fence::MARKER_WAIT,
            };
            tokio::select! {
                _ = seen => {}
                _ = gone => return self.drain_signals(&peer, true),
                _ = tokio::time::sleep_until(check.max(now)) => {}
            }
        }
    }

    /// Applies, in arrival order, every signal `peer`'s fence still holds: `peer` was given up
    /// for lost, or (`closed`) went away, and nothing is held from it any more. What it
    /// signalled before comes before what follows. From a node that went away, a watch is
    /// dropped, and so is a link to an actor that is not here: their only effect would be an
    /// answer to the node that is gone (dialling it again).
    fn drain_signals(&self, peer: &Arc<Peer>, closed: bool) {
        let _applying = peer.fence.applying();
        for control in peer.fence.take_all(closed) {
            let answers_only = closed
                && match &control {
                    Control::Watch { .. } => true,
                    Control::Link { target, .. } => self.exported_local(actor_id(target)).is_none(),
                    _ => false,
                };
            if !answers_only {
                self.apply_signal(peer, control);
            }
        }
    }

    /// Applies an actor signal from `peer`. A panic in what it runs (a watcher's exit callback)
    /// is caught and logged: the signals after it still take effect.
    fn apply_signal(&self, peer: &Peer, control: Control) {
        let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.on_actor_control(peer.id, &peer.name, control)
        }));
        match applied {
            Ok(Ok(())) => {}
            Ok(Err(other)) => tracing::debug!(peer = %peer.name, ?other, "not an actor signal"),
            Err(_) => {
                tracing::error!(node = %self.settings.name, peer = %peer.name, "applying an actor signal panicked")
            }
        }
    }

    /// Sends a control message to `to` through the overlay (see [`relay`](Self::relay)).
    pub(crate) fn relay_control(&self, to: NodeId, control: &Control) -> bool {
        self.control_frame(control).is_some_and(|frame| self.relay(self.id, to, self.settings.relay_ttl, frame, None))
    }

    /// Sends a control message to `to` through the overlay's other nodes, never straight to it,
    /// even if a peer for it is still about (a probe of a node whose connection was lost: what is
    /// left of it may be a dead or redialling connection). False when no overlay runs.
    pub(crate) fn relay_control_around(&self, to: NodeId, control: &Control) -> bool {
        let Some(frame) = self.control_frame(control) else { return false };
        if self.membership.get().is_none() {
            return false;
        }
        let ttl = self.settings.relay_ttl;
        self.tell_membership(DriverInput::Relay { origin: self.id, to, ttl, frame, from: None });
        true
    }

    /// A whole Control frame carrying `control` (on the control channel).
    fn control_frame(&self, control: &Control) -> Option<Vec<u8>> {
        let mut payload = Vec::new();
        let mut frame = Vec::new();
        let encoded = control.encode(&mut payload).is_ok()
            && encode_frame(&mut frame, FrameKind::Control, 0, 0, &payload, self.settings.max_frame).is_ok();
        encoded.then_some(frame)
    }

    /// Queues a control message on the first lane of `channel` to the peer.
    pub(crate) fn send_control_on(&self, to: NodeId, channel: u16, control: &Control) -> bool {
        self.peer(to).is_some_and(|peer| peer.push_control(((channel as usize).min(peer.lanes.len() - 1), 0), control))
    }

    /// Re-queues acknowledged messages that were not acknowledged in time.
    async fn retransmit_loop(self: Arc<Self>, peer: Arc<Peer>) {
        /// Every how many rounds the floor is told again.
        const FLOOR_REPEAT: u64 = 8;
        let period = self.settings.ack_retransmit;
        let mut tick = 0u64;
        loop {
            tick += 1;
            tokio::select! {
                _ = tokio::time::sleep(period / 2) => {}
                _ = peer.stop.notified() => return,
            }
            if peer.is_down() || self.shutting_down.load(Ordering::Acquire) {
                return;
            }
            if peer.lanes.iter().flatten().any(|lane| lane.queue.overflowed()) {
                // Answers, acks and control messages for it piled up to many times a queue's
                // bound: it keeps asking and does not read.
                self.drop_for_overflow(&peer);
                return;
            }
            // Which lanes are idle, for `AckState::due` (a lane's oldest frame waits while its
            // queue holds frames: the original, or an earlier copy, may be among them).
            // Read before `due`, which holds the acknowledgement lock: a sender holds a queue's
            // lock while it reserves a number, so taking a queue's lock under it would deadlock.
            // Idle: nothing queued, and nothing taken by a writer that may still be waiting for
            // room in its socket (a queue's length does not count what its writer holds).
            let idle: Vec<Vec<bool>> =
                peer.lanes.iter().map(|lanes| lanes.iter().map(|lane| !lane.queue.has_backlog()).collect()).collect();
            let idle =
                |(channel, lane): (usize, usize)| idle.get(channel).and_then(|l| l.get(lane)).copied().unwrap_or(true);
            for (lane, frame) in peer.acks.due(Instant::now(), period, idle) {
                self.counters.retransmits.fetch_add(1, Ordering::Relaxed);
                peer.lane(lane).queue.push_raw(&frame);
            }
            if let Some(next) = peer.acks.new_floor() {
                self.send_control(peer.id, &Control::AckFloor { next });
            } else if tick % FLOOR_REPEAT == 0 {
                // Again now and then: one lost with its connection would leave the receiver
                // below a gap for good.
                if let Some(next) = peer.acks.floor_to_repeat() {
                    self.send_control(peer.id, &Control::AckFloor { next });
                }
            }
        }
    }

    /// Drops a peer that keeps asking and does not read the answers (a send queue past its
    /// overflow mark), and refuses its handshakes for [`QUARANTINE`]: otherwise it would redial at
    /// once, be taken back, and never learn that it was dropped, while its watchers here were
    /// told it was lost.
    fn drop_for_overflow(&self, peer: &Arc<Peer>) {
        if peer.is_down() {
            return;
        }
        self.counters.bad_frames.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(node = %self.settings.name, peer = %peer.name, quarantine = ?QUARANTINE, "peer does not read what it asks for; dropped");
        {
            let mut quarantined = self.quarantined.lock();
            let now = Instant::now();
            quarantined.retain(|_, until| *until > now);
            quarantined.insert(peer.id, now + QUARANTINE);
        }
        self.peer_down(peer, "does not read what it asks for");
    }

    /// Whether node `id` is refused for now (see [`drop_for_overflow`](Self::drop_for_overflow)).
    /// Takes only its own lock, briefly.
    fn is_quarantined(&self, id: NodeId) -> bool {
        self.quarantined.lock().get(&id).is_some_and(|until| *until > Instant::now())
    }

    /// Marks a peer down: stops its lanes, fails what waits on it, tells watchers and user code.
    pub(crate) fn peer_down(&self, peer: &Arc<Peer>, why: &str) {
        self.peer_gone(peer, why, Departure::Lost);
    }

    /// The peer said goodbye: what it sent before, on the connections it dialled for its lanes,
    /// is read to the end (it closes them once it has written everything) before it counts as
    /// gone, for at most [`LEAVE_DRAIN`]. The goodbye comes on the control connection, which
    /// overtakes the data of a busy lane.
    fn peer_leaving(&self, peer: &Arc<Peer>) {
        let Some(shared) = self.me.upgrade() else { return };
        // Said on connections we released, while a newer peer for the node is in the map: that
        // one is the peer that leaves (reporting both would say it twice), once what the
        // released one's connections still carry is read and its held signals applied.
        let (peer, released) = match self.peer(peer.id) {
            Some(current) if peer.releasing.load(Ordering::Acquire) && !Arc::ptr_eq(&current, peer) => {
                (current, Some(peer.clone()))
            }
            _ => (peer.clone(), None),
        };
        // Its listener is closing: our lanes must not redial it meanwhile (two failed dials of
        // the control lane would report it lost instead of gone), and sends to it fail now
        // rather than queue for lanes that will not come back. Nothing is relayed through it.
        if peer.leaving.swap(true, Ordering::AcqRel) {
            return;
        }
        self.relay_routes.lock().forget_via(peer.id);
        self.runtime.spawn(async move {
            if let Some(released) = released {
                let deadline = Instant::now() + LEAVE_DRAIN;
                while Instant::now() < deadline && !released.is_down() && released.has_connections() {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                shared.drain_signals(&released, true);
            }
            peer.inbound_drained(LEAVE_DRAIN).await;
            shared.peer_gone(&peer, "left the cluster", Departure::Left);
        });
    }

    /// [`peer_down`](Self::peer_down), saying whether the peer told us it left (then nobody is
    /// asked whether they still reach it before the cluster is told).
    fn peer_gone(&self, peer: &Arc<Peer>, why: &str, departure: Departure) {
        if peer.down.swap(true, Ordering::AcqRel) {
            return;
        }
        // Closed before it leaves the map: a sender still holding it fills no frame into its
        // queues once a new peer for the same node (see `ensure_peer`) may have taken its
        // snapshot of the unacknowledged frames.
        peer.close_lanes();
        {
            // Only this peer: a newer one for the same node may have taken its place.
            let mut peers = self.peers.write();
            let newer = peers.get(&peer.id).is_some_and(|p| !Arc::ptr_eq(p, peer));
            if !newer {
                // Its signals not yet acknowledged that start something (a watch, a link, a
                // stop) are void: its actors' watchers and links hear of its loss now, and must
                // not be watched, linked or stopped by them should the node be reached again.
                // Given up under the map's lock, so no newer peer (see `ensure_peer`) queues
                // them again; and not at all when a newer peer (a released one's successor)
                // owns them now.
                peer.acks.abandon_void();
                peers.remove(&peer.id);
            }
        }
        self.relay_routes.lock().forget_via(peer.id);
        self.counters.messages_out.fetch_add(peer.messages_sent(), Ordering::Relaxed);
        // Only on our own evidence (not a released peer, nor a failure notice about a node we
        // have no connection to, which may be alive): forgetting the numbering of a live node on
        // one side only would make the other drop or repeat acknowledged messages. A released
        // node that dies unseen leaves its (empty: see `release_peer`) state behind.
        self.forget_acks_later(peer.id);
        tracing::info!(node = %self.settings.name, peer = %peer.name, why, "node down");
        // What it signalled before it went (an actor's exit, say) comes before its departure.
        self.drain_signals(peer, true);
        self.node_gone(peer.id);
        let _ = self.events.send(NodeEvent::Down { node: peer.id, name: peer.name.clone(), reason: why.to_string() });
        self.tell_membership(DriverInput::PeerLost(troupe_overlay::PeerId(peer.id.0)));
        // Nodes that reach it only through the overlay (relayed, or over connections since
        // released) learn of it from us: a failure notice to every node, unless other peers
        // still reach it (see `probe`; a node that said goodbye may still answer while it
        // flushes its last frames, so it is not probed).
        self.helper_lost(peer.id);
        let probe = match departure {
            Departure::Lost => Some(peer.addrs.clone()),
            Departure::Left => {
                self.forget_remote_watches_of(peer.id);
                None
            }
        };
        self.tell_membership(DriverInput::NodeLost(peer.id, probe));
    }

    /// What follows from the loss of node `id`, however we learned of it: its actors' proxies
    /// exit with NodeDown (watchers and links hear of it), asks waiting on it fail, lookups
    /// from it are dropped, and its address is forgotten.
    fn node_gone(&self, id: NodeId) {
        self.nodes_gone(|node| node == id);
        self.directory.write().remove(&id);
    }

    /// The actors, asks and lookups of every node `gone` says is gone: proxies exit with
    /// NodeDown, asks get NoReply, lookups are dropped.
    fn nodes_gone(&self, gone: impl Fn(NodeId) -> bool) {
        let proxies: Vec<Arc<RemoteProxy>> = {
            let proxies = self.proxies.lock();
            proxies.iter().filter(|(actor, _)| gone(actor.node)).filter_map(|(_, p)| p.upgrade()).collect()
        };
        for proxy in proxies {
            proxy.exited(ExitReason::NodeDown);
        }
        let failed: Vec<Box<dyn PendingReply>> = {
            let mut replies = self.replies.lock();
            let ids: Vec<u64> = replies.iter().filter(|(_, (to, _))| gone(*to)).map(|(k, _)| *k).collect();
            ids.into_iter().filter_map(|k| replies.remove(&k)).map(|(_, p)| p).collect()
        };
        for pending in failed {
            pending.complete(ReplyOutcome::NoReply, &[], None);
        }
        self.lookups.lock().retain(|_, (to, _)| !gone(*to));
    }

    /// Node `id` is gone for good (it said goodbye, or was not reached again for a long while):
    /// the watches it held on our actors go. (Not on a mere loss: a node we take for lost may
    /// be alive and still waiting for a Down.)
    fn forget_remote_watches_of(&self, id: NodeId) {
        self.remote_watches.lock().retain(|(watcher, _)| *watcher != id);
    }

    /// Whether a failure notice for `id` reached this node within [`NOTICE_MEMORY`].
    pub(crate) fn loss_reported(&self, id: NodeId) -> bool {
        self.lost_notices.lock().get(&id).is_some_and(|at| at.elapsed() < NOTICE_MEMORY)
    }

    /// Another node reports that node `id` was lost. Believed unless we still have a working
    /// connection to it (then our own failure detection speaks for it).
    pub(crate) fn node_lost_notice(&self, id: NodeId) {
        {
            let mut heard = self.lost_notices.lock();
            if heard.len() >= 4096 {
                heard.retain(|_, at| at.elapsed() < NOTICE_MEMORY);
            }
            heard.insert(id, Instant::now());
        }
        if id == self.id || self.peer(id).is_some_and(|p| p.is_working()) {
            return;
        }
        tracing::debug!(node = %self.settings.name, lost = %id, "failure notice");
        if let Some(peer) = self.peer(id) {
            self.drain_signals(&peer, false);
        }
        self.node_gone(id);
    }

    /// Drops the acknowledged-delivery state of a lost incarnation if it has not come back
    /// within ten reconnect periods (its unacknowledged messages are then given up). Not if it
    /// was reached again meanwhile, even if that peer is gone again by then (released while
    /// idle, say): the node kept its record of what it was given, and numbering from 1 again
    /// would make it drop our next messages as copies.
    fn forget_acks_later(&self, id: NodeId) {
        let Some(shared) = self.me.upgrade() else { return };
        let Some(made) = self.acks.lock().get(&id).map(|state| state.peers_made()) else { return };
        let grace = (self.settings.reconnect_max * 10).max(Duration::from_secs(60));
        self.runtime.spawn(async move {
            tokio::time::sleep(grace).await;
            if shared.peer(id).is_none() && forget_acks_if_not_reached_since(&mut shared.acks.lock(), id, made) {
                shared.forget_remote_watches_of(id);
            }
        });
    }

    /// Asks `peer` for the actor registered as `name`.
    pub(crate) async fn lookup(&self, peer: NodeId, name: &str) -> Option<(ActorId, String)> {
        let request = self.next_request.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.lookups.lock().insert(request, (peer, tx));
        if !self.send_control(peer, &Control::Lookup { request, name: name.to_string() }) {
            self.lookups.lock().remove(&request);
            return None;
        }
        let answer = tokio::time::timeout(self.settings.handshake_timeout, rx).await;
        self.lookups.lock().remove(&request);
        answer.ok().and_then(Result::ok).flatten()
    }

    // -----------------------------------------------------------------------------------------
    // Membership

    /// Hands news to the membership driver, if an overlay runs.
    pub(crate) fn tell_membership(&self, input: DriverInput) {
        if let Some(driver) = self.membership.get() {
            driver.send(input);
        }
    }

    /// Whether a message for `node` (not connected) goes along the overlay: always with
    /// `reach = "relay"`; with `"direct"` when the node's address is unknown (a ref received from
    /// a third node) and an overlay runs.
    fn must_relay(&self, node: NodeId) -> bool {
        match self.settings.reach {
            Reach::Relay => true,
            Reach::Direct => self.overlay != OverlayKind::None && !self.directory.read().contains_key(&node),
        }
    }

    /// Passes a frame for `to` along the overlay: straight to it when connected, else the
    /// overlay driver picks the next hop, one hop less (the overlay's route if it knows one, else
    /// the way frames from `to` came in, else a random neighbour; see `routes`). False when it
    /// cannot go anywhere.
    pub(crate) fn relay(&self, origin: NodeId, to: NodeId, ttl: u8, frame: Vec<u8>, from: Option<NodeId>) -> bool {
        if self.shutting_down.load(Ordering::Acquire) {
            return false;
        }
        if self.peer(to).is_some() {
            return self.relay_via(to, origin, to, ttl, frame);
        }
        if self.membership.get().is_none() || ttl <= 1 {
            self.counters.relay_dropped.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(node = %self.settings.name, %to, ttl, "relayed message dropped: no route");
            return false;
        }
        self.tell_membership(DriverInput::Relay { origin, to, ttl, frame, from });
        true
    }

    /// Sends a relayed frame to the connected peer `next` (`to` itself, or a hop towards it).
    pub(crate) fn relay_via(&self, next: NodeId, origin: NodeId, to: NodeId, ttl: u8, frame: Vec<u8>) -> bool {
        let Some(peer) = self.peer(next) else {
            self.counters.relay_dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        let ttl = if next == to { ttl } else { ttl.saturating_sub(1) };
        let control = Control::Relay { origin: origin.0, to: to.0, ttl, frame };
        let mut payload = Vec::new();
        if control.encode(&mut payload).is_err() {
            return false;
        }
        if HEADER_LEN + payload.len() > peer.max_frame() {
            // It would end the next hop's connection, and everything in flight on it.
            self.counters.relay_dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(node = %self.settings.name, next = %peer.name, len = payload.len(), max = peer.max_frame(), "relayed frame larger than the next hop takes; dropped");
            return false;
        }
        // Relayed traffic goes on the default channel, not the control channel, so it cannot
        // delay membership traffic.
        // Bounded like any actor message: a relay hop whose lane is full drops the message
        // (relaying is at-most-once) rather than buffering without limit.
        let lane = peer.lane(peer.pick(1, to.0, true));
        if !lane.queue.try_push_frame(FrameKind::Control, 1, &payload) {
            self.counters.relay_dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        self.counters.relayed.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// A relayed message found its actor's mailbox full. It cannot hold up the connection it
    /// came on (the control connection of the neighbour that relayed it), so it waits on a task
    /// of its own; those waits are bounded in bytes like a send queue, and a message past the
    /// bound is dropped (relaying is at-most-once), so a flood relayed towards a slow actor
    /// cannot grow this node without limit.
    ///
    /// A wait is charged its frame's length, at least [`RELAYED_WAIT_MIN_CHARGE`] (a task and a
    /// boxed future cost memory too), against the node's bound (4 × `send_queue_bytes`) and
    /// against its target's share of it ([`RELAYED_WAIT_TARGET_SHARE`]): an actor that never
    /// takes its messages holds at most its share until it stops.
    fn wait_for_room_relayed(&self, target: ActorId, frame_len: usize, wait: DeliverLater) {
        let charge = frame_len.max(RELAYED_WAIT_MIN_CHARGE);
        let limit = self.settings.queue_bytes.saturating_mul(4);
        if let Err(log) = self.relay_waits.charge(target, charge, limit) {
            self.counters.relay_dropped.fetch_add(1, Ordering::Relaxed);
            if log {
                tracing::warn!(node = %self.settings.name, %target, limit, "relayed messages for full mailboxes past the bound are dropped (logged again after the waits drain)");
            }
            return;
        }
        let charged = Charged(self.relay_waits.clone(), target, charge);
        let counters = self.counters.clone();
        self.runtime.spawn(async move {
            let delivered = wait.await;
            counters.messages_in.fetch_add(delivered, Ordering::Relaxed);
            counters.dead_letters.fetch_add(1 - delivered.min(1), Ordering::Relaxed);
            drop(charged);
        });
    }

    /// A relayed frame arrived from `via`: deliver it here or pass it on.
    fn on_relay(&self, via: &Arc<Peer>, origin: NodeId, to: NodeId, ttl: u8, frame: Vec<u8>) {
        // No frame may travel further than this node would send one.
        let ttl = ttl.min(self.settings.relay_ttl);
        if origin != self.id {
            // Frames for `origin` go back this way (see `routes`).
            self.relay_routes.lock().learn(origin, via.id, ttl, Instant::now());
        }
        if to != self.id {
            self.relay(origin, to, ttl, frame, Some(via.id));
            return;
        }
        let Some(transport) = self.transport() else { return };
        let decoder = FrameDecoder::new(self.settings.max_frame);
        let (header, payload) = match decoder.decode(&frame) {
            Ok(Some((f, used))) if used == frame.len() => (f.header, f.payload),
            _ => {
                self.counters.bad_frames.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(node = %self.settings.name, peer = %via.name, "bad relayed frame dropped");
                return;
            }
        };
        match header.kind {
            FrameKind::Message => {
                let (env, body) = match Envelope::read(payload, false) {
                    Ok(x) => x,
                    Err(error) => {
                        self.counters.bad_frames.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(peer = %via.name, %error, "bad relayed envelope");
                        return;
                    }
                };
                let target = ActorId { node: NodeId(env.target_node), serial: env.target_serial };
                let Some(inbound) = self.exported_local(target) else {
                    self.counters.dead_letters.fetch_add(1, Ordering::Relaxed);
                    return;
                };
                let Some((body, attached)) = self.split_body(&via.name, header, body, None) else { return };
                let delivery = troupe_actor::with_codec_context(&transport, origin, || {
                    self.deliver_local(
                        (&*inbound, inbound.type_tag()),
                        &via.name,
                        (target, env.type_tag),
                        body,
                        attached,
                    )
                });
                match delivery {
                    Some(Delivery::Accepted) => {
                        self.counters.messages_in.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(Delivery::Full(wait)) => self.wait_for_room_relayed(target, frame.len(), wait),
                    Some(Delivery::Closed) => {
                        self.counters.dead_letters.fetch_add(1, Ordering::Relaxed);
                    }
                    None => {}
                }
            }
            FrameKind::Reply => self.complete_reply(&transport, origin, &via.name, header, payload, None),
            // Actor control (watch, down, link ...) from a node we reach only through the overlay,
            // and pings of a node that lost its connection to us.
            FrameKind::Control => {
                let name = self.name_of(origin).unwrap_or_else(|| origin.to_string());
                let refused = match Control::decode(payload) {
                    // Answered back the way the ping came (not over a connection to the origin we
                    // may still have: the ping says the origin lost it), unless we are leaving.
                    Ok(Control::RelayPing { request }) => {
                        if !self.shutting_down.load(Ordering::Acquire) {
                            if let Some(frame) = self.control_frame(&Control::RelayPong { request }) {
                                self.relay_via(via.id, self.id, origin, self.settings.relay_ttl, frame);
                            }
                        }
                        None
                    }
                    Ok(Control::RelayPong { request }) => {
                        self.on_probe_reply(origin, request, true);
                        None
                    }
                    Ok(control) => self.on_actor_control(origin, &name, control).err().map(|c| format!("{c:?}")),
                    Err(error) => Some(error.to_string()),
                };
                if let Some(what) = refused {
                    self.counters.bad_frames.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(peer = %via.name, %origin, %what, "relayed control message dropped");
                }
            }
            other => {
                self.counters.bad_frames.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(peer = %via.name, kind = ?other, "relayed frame of the wrong kind dropped");
            }
        }
    }

    /// Tells the overlay a peer is connected, the first time a connection with it (either
    /// direction) completes its handshake.
    fn announce(&self, peer: &Peer) {
        if !peer.announced.swap(true, Ordering::AcqRel) {
            if let Some(member) = peer.member() {
                self.tell_membership(DriverInput::PeerUp(member));
            }
        }
    }

    /// Records where a member can be reached.
    pub(crate) fn remember(&self, member: &troupe_overlay::Member) {
        let id = NodeId(member.id.0);
        if id == self.id {
            return;
        }
        self.directory.write().entry(id).or_insert_with(|| NodeInfo {
            name: member.name.clone(),
            incarnation: member.id.0,
            listen: vec![member.addr.to_string()],
        });
    }

    /// The listen addresses this node knows for node `id` (from its handshake or the overlay).
    pub(crate) fn known_addrs(&self, id: NodeId) -> Vec<SocketAddr> {
        let from_peer = self.peer(id).map(|p| p.addrs.clone()).unwrap_or_default();
        if !from_peer.is_empty() {
            return from_peer;
        }
        self.directory
            .read()
            .get(&id)
            .map(|i| i.listen.iter().filter_map(|a| a.parse().ok()).collect())
            .unwrap_or_default()
    }

    /// A node this node vouched for after a probe dial (see `probe`): connected to for real, so
    /// it is reached through this node and watched by its failure detection. Not if its loss was
    /// reported meanwhile (the report stands; a connection would only race it).
    pub(crate) fn connect_vouched(&self, info: NodeInfo) {
        let id = NodeId(info.incarnation);
        if id == self.id || self.loss_reported(id) {
            return;
        }
        if self.peer(id).is_none() {
            self.ensure_peer(&info, None);
        }
    }

    /// The name of a node this node has heard of.
    pub(crate) fn name_of(&self, id: NodeId) -> Option<String> {
        self.directory.read().get(&id).map(|i| i.name.clone())
    }

    /// Opens connections to `member` for the overlay: `Some(true)` if its control connection is
    /// already up, `Some(false)` if dialling (the driver hears `PeerUp` or `PeerLost`), `None` if
    /// it cannot be reached at all (itself, quarantined, or this node is stopping).
    pub(crate) fn connect_member(&self, member: &troupe_overlay::Member) -> Option<bool> {
        let info =
            NodeInfo { name: member.name.clone(), incarnation: member.id.0, listen: vec![member.addr.to_string()] };
        let peer = self.ensure_peer(&info, None)?;
        Some(peer.announced.load(Ordering::Acquire))
    }

    /// A peer for a node with no connections yet, made from what the overlay told us about it
    /// (its lanes start dialling; messages queue meanwhile).
    fn peer_on_demand(&self, id: NodeId) -> Option<Arc<Peer>> {
        let info = self.directory.read().get(&id).cloned()?;
        self.ensure_peer(&info, None)
    }

    /// Closes this node's connections to a peer on purpose (not a failure: no Down events, its
    /// acknowledged-delivery state is kept while the node lives). With `tell` (we decided), the
    /// peer is told first so it releases its side too instead of redialling; without, the peer
    /// told us. Nothing either side wrote on them is lost: queued messages are written (a lane
    /// with frames but no connection dials once more), then each side ends its sending side and
    /// reads the other's to its end (see [`RELEASE_READ_OUT`]); a new peer for the node waits for
    /// that before it hands anything on (`Peer::after_predecessor`). With `tell`, false (nothing done) while
    /// acknowledged messages to the peer wait for their acknowledgement; told, the release goes
    /// ahead, and a new connection takes what is still unacknowledged once it is done.
    pub(crate) fn release_peer(&self, id: NodeId, tell: bool) -> bool {
        let Some(peer) = self.peer(id) else { return true };
        if peer.is_leaving() {
            // It said goodbye and is being read to the end; it goes by itself.
            return true;
        }
        if tell && peer.acks.unacked() > 0 {
            // Acknowledged messages wait for an answer, and only a peer's connections
            // retransmit them: kept until they are through (the caller asks again later; when
            // the other side lets go first, these lanes redial).
            tracing::debug!(node = %self.settings.name, peer = %peer.name, "release deferred: acknowledged messages outstanding");
            return false;
        }
        // Its lanes must not redial once their connections close.
        peer.releasing.store(true, Ordering::Release);
        if tell {
            self.send_control(id, &Control::Release);
        }
        // Out of the map at once: whatever is sent from now on (a new overlay connection, an
        // actor message) makes a new peer, while this one flushes what it already queued.
        {
            let mut peers = self.peers.write();
            if peers.get(&peer.id).is_some_and(|p| Arc::ptr_eq(p, &peer)) {
                peers.remove(&peer.id);
                self.released.lock().insert(peer.id, Arc::downgrade(&peer));
            }
        }
        self.relay_routes.lock().forget_via(peer.id);
        let Some(shared) = self.me.upgrade() else { return true };
        self.runtime.spawn(async move {
            // Its lanes write what they have (a lane with frames but no connection dials for
            // them once more) and end their sending side; each reader goes on until the other
            // side, released too, ends its own: neither loses what the other wrote before it
            // heard of the release. Not marked down before that: signals held for messages still
            // being read (see `fence`) must keep waiting for them. Whatever is still open after
            // `RELEASE_READ_OUT` without progress is closed.
            peer.finish_lanes();
            let (mut progress, mut since) = (peer.progress(), Instant::now());
            while since.elapsed() < RELEASE_READ_OUT && !peer.is_down() && (peer.has_connections() || peer.has_backlog()) {
                tokio::time::sleep(Duration::from_millis(5)).await;
                if peer.still_moving(progress) {
                    (progress, since) = (peer.progress(), Instant::now());
                }
            }
            {
                let mut released = shared.released.lock();
                if released.get(&peer.id).is_some_and(|p| std::ptr::eq(p.as_ptr(), Arc::as_ptr(&peer))) {
                    released.remove(&peer.id);
                }
            }
            if peer.is_leaving() {
                // Its Goodbye was read on these connections: it leaves the cluster, and
                // `peer_leaving` reports it so once they are read.
                return;
            }
            if peer.down.swap(true, Ordering::AcqRel) {
                // Gone meanwhile (`peer_gone` closed it).
                return;
            }
            shared.counters.messages_out.fetch_add(peer.messages_sent(), Ordering::Relaxed);
            peer.close_lanes();
            // Its acknowledged-delivery state stays while the node lives: both sides keep
            // theirs, so a later connection numbers on where this one left off.
            tracing::debug!(node = %shared.settings.name, peer = %peer.name, "connections released");
            // A sender that took this peer before it left the map can have queued an
            // acknowledged message or signal after the check above; its acknowledgement may
            // never have come back, and only a peer's lanes send it again: a new peer does.
            if peer.acks.unacked() > 0 && shared.peer(peer.id).is_none() && !shared.shutting_down.load(Ordering::Acquire) {
                tracing::debug!(node = %shared.settings.name, peer = %peer.name, "acknowledged frames left after the release; reconnecting");
                shared.peer_on_demand(peer.id);
            }
        });
        true
    }

    /// Messages exchanged with each current peer so far (both directions).
    pub(crate) fn peer_traffic(&self) -> Vec<(NodeId, u64)> {
        self.peers.read().values().map(|p| (p.id, p.traffic())).collect()
    }

    /// Messages exchanged with one peer so far, if it has connections.
    pub(crate) fn peer_traffic_of(&self, id: NodeId) -> Option<u64> {
        self.peer(id).map(|p| p.traffic())
    }

    /// Dials the seeds again and hands whoever answers to the overlay as contacts.
    pub(crate) async fn rejoin_through_seeds(self: Arc<Self>) {
        let mut contacts = Vec::new();
        let (plain, dns): (Vec<String>, Vec<String>) = self.seeds.iter().cloned().partition(|s| !s.starts_with("dns:"));
        let dns: Vec<String> = dns.iter().map(|s| s.trim_start_matches("dns:").to_string()).collect();
        let seeds = crate::node::resolve_seeds(&plain, &dns).await;
        let mine = self.advertised.read().clone();
        for seed in seeds.iter().filter(|s| !mine.contains(s)) {
            match crate::node::dial_seed(&self, seed).await {
                Ok(member) => contacts.push(member),
                Err(error) => tracing::debug!(node = %self.settings.name, %seed, %error, "seed not reached"),
            }
        }
        if contacts.is_empty() {
            tracing::warn!(node = %self.settings.name, "no seed reachable; the node stays alone for now");
        }
        self.tell_membership(DriverInput::Join(contacts));
    }

    /// The node's counters, with what live peers count themselves added in.
    pub(crate) fn stats(&self) -> NodeStats {
        let mut stats = self.counters.snapshot();
        stats.frame_pool_bytes = self.frame_pool.lock().bytes() as u64;
        stats.relay_waiting = self.relay_waits.messages() as u64;
        stats.remote_watches = self.remote_watches.lock().len() as u64;
        for peer in self.peers.read().values() {
            stats.unacked += peer.acks.unacked() as u64;
            stats.messages_out += peer.messages_sent();
            stats.monotonic_replaced += peer.lanes.iter().flatten().map(|l| l.queue.replaced()).sum::<u64>();
        }
        stats
    }

    /// Sends Goodbye to every peer and stops all tasks.
    pub(crate) async fn shutdown(&self) {
        if self.shutting_down.swap(true, Ordering::AcqRel) {
            return;
        }
        let peers: Vec<Arc<Peer>> = self.peers.read().values().cloned().collect();
        // What `tell` accepted goes out first (for at most `SHUTDOWN_FLUSH`): the lanes' writers
        // drain their queues into the sockets. The goodbye follows; each peer reads our lanes to
        // their end before it takes us for gone.
        // Only the lanes of peers that are up (connected) and not gone or going: a lane still
        // dialling, as a data lane is until its first message, connects and writes in time; a
        // peer that cannot be reached would only hold the shutdown for the whole wait.
        let deadline = Instant::now() + SHUTDOWN_FLUSH;
        let writing = |p: &Arc<Peer>| {
            !p.ending() && p.up.load(Ordering::Acquire) && p.lanes.iter().flatten().any(|lane| lane.queue.has_backlog())
        };
        while Instant::now() < deadline && peers.iter().any(writing) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for peer in &peers {
            self.send_control(peer.id, &Control::Goodbye);
        }
        // Let the writers flush the goodbyes.
        let deadline = Instant::now() + Duration::from_millis(500);
        while Instant::now() < deadline && peers.iter().any(|p| p.control_lane().queue.len() > 0) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.close_all_peers();
    }
}

impl NodeShared {
    /// The node's runtime is going away without [`shutdown`](Self::shutdown) (its last handle
    /// dropped): no goodbyes, but every peer is closed and sends fail from now on, instead of
    /// queueing for writers that are gone.
    ///
    /// Unlike `shutdown`, the actor system may go on, so what waits on other nodes is told now:
    /// watchers of remote actors get `NodeDown`, asks waiting for a remote answer `NoReply`. That
    /// runs on the actor scheduler, not in whatever code dropped the node. Also finishes a
    /// `shutdown` that was cut short (it may have set the flag and not yet closed the peers).
    pub(crate) fn stop_now(self: &Arc<Self>) {
        self.shutting_down.store(true, Ordering::Release);
        let closed = self.close_all_peers();
        tracing::debug!(node = %self.settings.name, peers = closed, "node dropped without shutdown");
        let shared = self.clone();
        self.system.scheduler().spawn(async move { shared.nodes_gone(|_| true) });
    }

    /// Takes every peer out of the map, marks it down and closes its lanes, and tells the
    /// node's tasks to stop (the end of `shutdown` and of `stop_now`). How many there were.
    fn close_all_peers(&self) -> usize {
        let peers: Vec<Arc<Peer>> = self.peers.write().drain().map(|(_, peer)| peer).collect();
        for peer in &peers {
            peer.down.store(true, Ordering::Release);
            peer.close_lanes();
        }
        self.stop.notify_waiters();
        peers.len()
    }

    /// Queues the unacknowledged frames of `peer`'s `lane` in front of its queue (see
    /// `AckState::unacked_on`), counted as retransmissions.
    fn requeue_unacked(&self, peer: &Peer, lane: (usize, usize)) {
        let now = Instant::now();
        let queued = peer.lane(lane).queue.push_front_with(|| peer.acks.unacked_on(lane, now));
        self.counters.retransmits.fetch_add(queued as u64, Ordering::Relaxed);
    }
}

impl NodeShared {
    /// Encodes an acknowledged message into `buf` under a fresh sequence number and keeps a copy
    /// until it is acknowledged. `Full` when the unacknowledged frames are at their bound.
    fn write_acked(
        &self,
        peer: &Peer,
        buf: &mut FrameBuf,
        lane: (usize, usize),
        target: ActorId,
        tag: u64,
        body: BodyEncoder<'_>,
    ) -> Result<(), Refusal> {
        let seq = peer.acks.reserve(lane).ok_or(Refusal::Full)?;
        // Given up unless filled, even if encoding panics (a user's Serialize): a number
        // reserved for ever would hold the floor down.
        let reserved = crate::acks::Reserved::new(&peer.acks, seq);
        let mut frame = FrameBuf::default();
        let written = self.write_message(&mut frame, target, tag, Some(seq), lane.0, body, peer.max_frame());
        if written.is_ok() {
            buf.append(&frame);
            reserved.fill(frame);
        }
        written
    }
}

impl NodeShared {
    /// `Transport::try_send` through `peer`, the peer for `target`'s node.
    fn try_send_to(
        &self,
        peer: &Arc<Peer>,
        target: ActorId,
        opts: &SendOptions,
        tag: u64,
        body: BodyEncoder<'_>,
    ) -> Result<(), Refusal> {
        if peer.is_leaving() {
            return Err(Refusal::Failed(SendFailure::Unreachable(target.node)));
        }
        let channel = self.channel_index(opts.channel.as_deref());
        let key = opts.partition_key.unwrap_or_else(|| default_key(target));
        let lane_ix = peer.pick(channel, key, !opts.ack);
        if self.faults.active() {
            let info = MessageInfo { peer: peer.id, target, channel: lane_ix.0, type_tag: tag, acked: opts.ack };
            match self.faults.on_send(&info) {
                Verdict::Pass => {}
                Verdict::Drop => {
                    self.counters.dropped_by_faults.fetch_add(1, Ordering::Relaxed);
                    if opts.ack {
                        // Lost on the way, as a real link loses it: numbered and kept like any
                        // acknowledged frame, so the retransmit round sends it again.
                        let mut frame = FrameBuf::default();
                        self.write_acked(peer, &mut frame, lane_ix, target, tag, body)?;
                    }
                    return Ok(());
                }
                Verdict::Delay(delay) => {
                    let mut frame = FrameBuf::default();
                    if opts.ack {
                        self.write_acked(peer, &mut frame, lane_ix, target, tag, body)?;
                    } else {
                        self.write_message(&mut frame, target, tag, None, lane_ix.0, body, peer.max_frame())?;
                    }
                    let queue = peer.lane(lane_ix).queue.clone();
                    self.runtime.spawn(async move {
                        tokio::time::sleep(delay).await;
                        queue.push_raw(&frame);
                    });
                    return Ok(());
                }
            }
        }
        let lane = peer.lane(lane_ix);
        let monotonic = self.settings.channels[lane_ix.0].2;
        let write = |buf: &mut FrameBuf| {
            if !opts.ack {
                return self.write_message(buf, target, tag, None, lane_ix.0, body, peer.max_frame());
            }
            // The number is reserved only once the queue has room, and kept or given up here.
            self.write_acked(peer, buf, lane_ix, target, tag, body)
        };
        let pushed = match (monotonic, opts.ack) {
            (true, false) => lane.queue.push(Some(target), write).map(|result| (result, 0)),
            // An acknowledged send is never replaced by a newer one (its retransmission would
            // deliver it after the newer state): it goes in order, superseding older state
            // queued for the target.
            (true, true) => lane.queue.push_superseding(target, write).map(|result| (result, 0)),
            (false, _) => {
                // An ask (its reply port registers while the body encodes) is written at once.
                ASKING.set(false);
                lane.queue.push_now(true, write, || ASKING.replace(false))
            }
        };
        match pushed {
            Ok((result, inline)) => {
                self.count_inline(inline);
                result
            }
            Err(QueueRefusal::Full) => Err(Refusal::Full),
            Err(QueueRefusal::Closed) => Err(Refusal::Failed(SendFailure::Unreachable(target.node))),
        }
    }
}

impl Transport for NodeShared {
    fn local_node(&self) -> NodeId {
        self.id
    }

    fn try_send(&self, target: ActorId, opts: &SendOptions, tag: u64, body: BodyEncoder<'_>) -> Result<(), Refusal> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let mut released = false;
            let result = self.peers.with(target.node, |peer| match peer {
                Some(peer) => {
                    let result = self.try_send_to(peer, target, opts, tag, &mut *body);
                    released = refused_by_release(peer, &result);
                    result
                }
                // A stopped node has no peers left and makes none (`ensure_peer`), and relays nothing.
                None if !opts.ack && target.node != self.id && self.must_relay(target.node) => {
                    let mut frame = FrameBuf::default();
                    self.write_message(&mut frame, target, tag, None, 1, &mut *body, self.relayed_max_frame())?;
                    match self.relay(self.id, target.node, self.settings.relay_ttl, frame.to_vec(), None) {
                        true => Ok(()),
                        false => Err(Refusal::Failed(SendFailure::Unreachable(target.node))),
                    }
                }
                None => match self.peer_on_demand(target.node) {
                    Some(peer) => {
                        let result = self.try_send_to(&peer, target, opts, tag, &mut *body);
                        released = refused_by_release(&peer, &result);
                        result
                    }
                    None => Err(Refusal::Failed(if target.node == self.id {
                        SendFailure::NotRunning
                    } else {
                        SendFailure::Unreachable(target.node)
                    })),
                },
            });
            // The peer was released after this send took it: the node's next peer takes it.
            if !released || attempts == RELEASED_RETRIES {
                return result;
            }
        }
    }

    fn poll_ready(
        &self,
        target: ActorId,
        opts: &SendOptions,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Result<(), SendFailure>> {
        let peer = match self.peer(target.node) {
            Some(peer) => Some(peer),
            None if !opts.ack && target.node != self.id && self.must_relay(target.node) => return Poll::Ready(Ok(())),
            None => self.peer_on_demand(target.node),
        };
        let Some(peer) = peer else {
            return Poll::Ready(Err(SendFailure::Unreachable(target.node)));
        };
        if opts.ack && !peer.acks.poll_room(cx.waker()) {
            return Poll::Pending;
        }
        let channel = self.channel_index(opts.channel.as_deref());
        let key = opts.partition_key.unwrap_or_else(|| default_key(target));
        let lane = peer.lane(peer.pick(channel, key, !opts.ack));
        match lane.queue.poll_room(cx.waker()) {
            Ok(true) => Poll::Ready(Ok(())),
            Ok(false) => Poll::Pending,
            // Released after we took it: the send goes to the node's next peer (`try_send`).
            Err(_) if peer.is_released() => Poll::Ready(Ok(())),
            Err(_) => Poll::Ready(Err(SendFailure::Unreachable(target.node))),
        }
    }

    fn control(&self, target: ActorId, control: RemoteControl) {
        let wire = wire_id(target);
        let message = match control {
            RemoteControl::Stop => Control::Stop { target: wire },
            RemoteControl::Kill => Control::Kill { target: wire },
            RemoteControl::Watch => Control::Watch { target: wire },
            RemoteControl::Link { from } => Control::Link { target: wire, from: wire_id(from) },
            RemoteControl::Unlink { from } => Control::Unlink { target: wire, from: wire_id(from) },
        };
        let sent = match message {
            Control::Stop { target: wire } => self.send_after_messages(target.node, Signal::Stop { target: wire }),
            message => self.send_actor_control(target.node, &message),
        };
        if !sent && control == RemoteControl::Watch {
            // Nobody to ask: the node is gone (or was never reached).
            self.proxy(target).exited(ExitReason::NodeDown);
        }
    }

    fn report_exit(&self, to: NodeId, actor: ActorId, reason: &ExitReason) {
        // Not sent when the node is gone: it has nobody left to tell.
        self.send_after_messages(to, Signal::Down { target: wire_id(actor), reason: wire_exit(reason) });
    }

    fn export(&self, actor: Arc<dyn Inbound>) {
        let serial = actor.id().serial;
        if self.exported.read().contains_key(&serial) {
            return;
        }
        let untyped = actor.untyped();
        if self.exported.write().insert(serial, actor).is_none() {
            let me = self.me.clone();
            untyped.on_exit(move |_| {
                if let Some(shared) = me.upgrade() {
                    shared.exported.write().remove(&serial);
                }
            });
        }
    }

    fn proxy(&self, id: ActorId) -> Arc<RemoteProxy> {
        let mut proxies = self.proxies.lock();
        if let Some(proxy) = proxies.get(&id).and_then(Weak::upgrade) {
            // A proxy marked dead because its node was lost is stale once the node is back; one
            // whose actor stopped stays dead.
            let node_back = self.peer(id.node).is_some_and(|p| !p.is_down());
            if !(node_back && proxy.exit_reason() == Some(ExitReason::NodeDown)) {
                return proxy;
            }
        }
        let transport = self.transport().expect("a node's transport outlives its calls");
        let proxy = RemoteProxy::new(id, transport);
        proxies.insert(id, Arc::downgrade(&proxy));
        if self.proxies_since_sweep.fetch_add(1, Ordering::Relaxed) >= 1024 {
            self.proxies_since_sweep.store(0, Ordering::Relaxed);
            proxies.retain(|_, p| p.strong_count() > 0);
        }
        proxy
    }

    fn local_actor(&self, serial: u64) -> Option<UntypedRef> {
        self.exported_local(ActorId { node: self.id, serial }).map(|i| i.untyped())
    }

    fn register_reply(&self, to: NodeId, pending: Box<dyn PendingReply>) -> u64 {
        ASKING.set(true);
        let request = self.next_request.fetch_add(1, Ordering::Relaxed);
        let mut replies = self.replies.lock();
        if replies.len() >= 4096 && request % 1024 == 0 {
            replies.retain(|_, (_, p)| !p.is_closed());
        }
        replies.insert(request, (to, pending));
        request
    }

    fn send_reply(&self, to: NodeId, request: u64, outcome: ReplyOutcome, body: BodyEncoder<'_>) -> bool {
        let status = match outcome {
            ReplyOutcome::Answered => ReplyStatus::Ok,
            ReplyOutcome::NoReply => ReplyStatus::NoReply,
        };
        if to == self.id {
            // Never for an honest port: a port is its sender's own, and one naming this node is
            // refused when decoded (a port that goes out and comes back is a new port each hop).
            return false;
        }
        if self.faults.is_partitioned(to) {
            // Cut off (`Node::partition`): a reply written inline would bypass the writer.
            return false;
        }
        let header = ReplyHeader { request, status };
        for _ in 0..RELEASED_RETRIES {
            let peer = match self.peer(to) {
                Some(peer) => peer,
                None if self.must_relay(to) => {
                    let mut frame = FrameBuf::default();
                    let max = self.relayed_max_frame();
                    let write =
                        self.write_frame(&mut frame, FrameKind::Reply, 0, 1, |buf| header.write(buf), body, max);
                    return write.is_ok() && self.relay(self.id, to, self.settings.relay_ttl, frame.to_vec(), None);
                }
                None => match self.peer_on_demand(to) {
                    Some(peer) => peer,
                    None => return false,
                },
            };
            if peer.is_leaving() {
                return false;
            }
            let lane = peer.lane(peer.pick(1, request, true));
            let pushed = lane.queue.push_now(
                false,
                |buf| {
                    let max = peer.max_frame();
                    self.write_frame(buf, FrameKind::Reply, 0, 1, |buf| header.write(buf), &mut *body, max)
                },
                || true,
            );
            match pushed {
                Ok((result, inline)) => {
                    self.count_inline(inline);
                    return result.is_ok();
                }
                // Released after we took it (see `refused_by_release`): the node's next peer takes it.
                Err(QueueRefusal::Closed) if peer.is_released() => {}
                Err(_) => return false,
            }
        }
        false
    }

    fn system(&self) -> &ActorSystem {
        &self.system
    }
}

thread_local! {
    /// Set when a reply port registers, which happens while an ask's body is encoded: the send
    /// then writes the ask at once (`SendQueue::push_now`).
    static ASKING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl NodeShared {
    /// The largest frame to send a peer that shook hands as `established`: the smaller of its
    /// limit and ours.
    fn frame_limit(&self, established: &troupe_wire::Established) -> usize {
        established.peer_max_frame.min(self.settings.max_frame)
    }

    /// The largest message frame to relay: room is left for the relay wrapping (origin,
    /// destination, TTL, length), which must fit each hop's limit too.
    fn relayed_max_frame(&self) -> usize {
        self.settings.max_frame.saturating_sub(RELAY_OVERHEAD)
    }

    /// Counts bytes a sender wrote to a socket itself.
    fn count_inline(&self, bytes: usize) {
        if bytes > 0 {
            self.counters.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
        }
    }

    /// Writes one whole Message frame.
    #[allow(clippy::too_many_arguments)] // the frame's fields, spelled out at each call
    fn write_message(
        &self,
        buf: &mut FrameBuf,
        target: ActorId,
        tag: u64,
        seq: Option<u64>,
        channel: usize,
        body: BodyEncoder<'_>,
        max: usize,
    ) -> Result<(), Refusal> {
        let envelope = Envelope { target_node: target.node.0, target_serial: target.serial, type_tag: tag, seq };
        self.write_frame(
            buf,
            FrameKind::Message,
            envelope.frame_flags(),
            channel as u16,
            |buf| envelope.write(buf),
            body,
            max,
        )
        .map_err(Refusal::Failed)
    }

    /// Appends one whole frame: header, `head` (envelope or reply header), then the body, whose
    /// large payloads are attached after it uncopied (with the trailer that says where the body's
    /// postcard part ends). On failure the buffer is left as it was.
    #[allow(clippy::too_many_arguments)] // the frame's fields, spelled out at each call
    fn write_frame(
        &self,
        buf: &mut FrameBuf,
        kind: FrameKind,
        flags: u8,
        channel: u16,
        head: impl FnOnce(&mut Vec<u8>),
        body: BodyEncoder<'_>,
        max: usize,
    ) -> Result<(), SendFailure> {
        let mut attached = Vec::new();
        let inline = buf.inline();
        let start = begin_frame(inline, kind, flags, channel);
        let offset = start.offset();
        head(inline);
        let body_at = inline.len();
        // The buffer may be a lane's queue, shared by every sender: a `Serialize` that panics
        // must not leave half a frame there for the next frame to follow (the receiver would
        // misread everything after it). The panic goes on once the buffer is as it was.
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&mut *inline, &mut attached))) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                inline.truncate(offset);
                return Err(e);
            }
            Err(panic) => {
                inline.truncate(offset);
                std::panic::resume_unwind(panic);
            }
        }
        if attached.is_empty() {
            let len = inline.len() - offset;
            return finish_frame(inline, start, max).map_err(|_| SendFailure::TooLarge { len, max });
        }
        let postcard_len = inline.len() - body_at;
        let extra = attached.iter().map(Bytes::len).sum::<usize>() + ATTACHED_TRAILER_LEN;
        let len = inline.len() - offset + extra;
        let Ok(postcard_len) = u32::try_from(postcard_len) else {
            inline.truncate(offset);
            return Err(SendFailure::TooLarge { len, max });
        };
        finish_frame_attached(inline, start, extra, max).map_err(|_| SendFailure::TooLarge { len, max })?;
        for piece in attached {
            buf.attach(piece);
        }
        write_attached_trailer(buf.inline(), postcard_len);
        Ok(())
    }
}

/// Waits for one side of a released connection to end (see `run_connection`) while the peer's
/// connections make progress ([`Peer::progress`]), a reader waits for mailbox room or its
/// readers wait for a predecessor: gives up after [`RELEASE_READ_OUT`] of none of these, or when
/// the peer or the node stops; says why.
async fn released_wait<T>(
    side: impl std::future::Future<Output = T>,
    peer: &Peer,
    mut peer_down: std::pin::Pin<&mut tokio::sync::futures::Notified<'_>>,
    mut node_stopping: std::pin::Pin<&mut tokio::sync::futures::Notified<'_>>,
) -> Result<T, &'static str> {
    tokio::pin!(side);
    loop {
        let before = peer.progress();
        tokio::select! {
            ended = &mut side => return Ok(ended),
            _ = tokio::time::sleep(RELEASE_READ_OUT) => {
                if !peer.still_moving(before) {
                    return Err("released; the other side did not end its side");
                }
            }
            _ = peer_down.as_mut() => return Err("peer down"),
            _ = node_stopping.as_mut() => return Err("node stopping"),
        }
    }
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

/// How long a shutting-down node waits for its lanes to write what they hold before it says
/// goodbye.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(2);

/// How long a node whose peer said goodbye keeps reading the connections that peer dialled (to
/// their end: the peer closes them once written) before it takes the peer for gone.
const LEAVE_DRAIN: Duration = Duration::from_secs(5);

/// Bytes a relay wrapping adds to a frame, at most (a control header and tag, two node ids, a
/// TTL and a length, as postcard varints), rounded up.
const RELAY_OVERHEAD: usize = 64;

/// Sends the acknowledgements a connection's reader collected, if any.
fn flush_acks(conn: &mut ConnState, reply_queue: &SendQueue, channel: usize) {
    if !conn.acks.is_empty() {
        let mut payload = Vec::with_capacity(conn.acks.len() * 2 + 4);
        encode_acks(&mut payload, &conn.acks);
        reply_queue.push_frame(FrameKind::Ack, channel as u16, &payload);
        conn.acks.clear();
    }
}

/// Forgets node `id`'s acknowledgement state unless a peer was made with it since `made` peers
/// had been (under the map's lock, which a new peer takes to get the state: no peer can be made
/// in between).
fn forget_acks_if_not_reached_since(acks: &mut HashMap<NodeId, Arc<AckState>>, id: NodeId, made: u64) -> bool {
    if acks.get(&id).is_some_and(|state| state.peers_made() == made) {
        acks.remove(&id);
        return true;
    }
    false
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_nodes_ack_state_is_forgotten_only_if_it_was_not_reached_again() {
        let id = NodeId(7);
        let mut acks = HashMap::new();
        let state = Arc::new(AckState::new(1 << 20));
        state.peer_made();
        acks.insert(id, state.clone());
        // Lost with one peer made; reached again (a second peer), then released: keep.
        let made = state.peers_made();
        state.peer_made();
        assert!(!forget_acks_if_not_reached_since(&mut acks, id, made));
        assert!(acks.contains_key(&id), "the state of a node that came back was forgotten");
        // Lost again and not reached since: forget.
        let made = state.peers_made();
        assert!(forget_acks_if_not_reached_since(&mut acks, id, made));
        assert!(!acks.contains_key(&id));
        assert!(!forget_acks_if_not_reached_since(&mut acks, id, made), "nothing left to forget");
    }
}
