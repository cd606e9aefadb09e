//! Runs the configured membership overlay (a sans-IO state machine from `troupe-overlay`) over
//! this node's real connections.
//!
//! One task per node owns the protocol. The transport feeds it connection news (a peer's control
//! connection came up, a peer was lost or released its connections) and the overlay's messages;
//! the task executes what the protocol answers: it sends messages on the control channel, opens
//! connections (creating the peer, whose lanes then dial), releases connections the overlay no
//! longer wants, and turns membership events into [`NodeEvent`]s.
//!
//! Connections the overlay did not ask for (an actor messaging a node that is not a neighbour,
//! the first contact with a seed) stay open while they carry traffic; a sweep releases those
//! idle for longer than `release_idle`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use troupe_actor::NodeId;
use troupe_overlay::plumtree::PlumtreeError;
use troupe_overlay::{
    Command, Input, Member, Membership, MembershipEvent, MessageId, PeerId, Plumtree, PlumtreeInput, PlumtreeMessage,
    PlumtreeOutput, PlumtreeStats, Topic, ViewSnapshot,
};
use troupe_wire::Control;

use crate::core::NodeShared;
use crate::NodeEvent;

/// Most overlay messages waiting for the driver; more are dropped (and counted) rather than
/// buffered without bound.
const MAX_BACKLOG: usize = 65_536;

/// What the transport and the node API tell the driver.
pub(crate) enum DriverInput {
    /// Join through these contacts (seeds already connected).
    Join(Vec<Member>),
    /// Leave the cluster; answered once the overlay has said goodbye.
    Leave(oneshot::Sender<()>),
    /// A peer's control connection is up.
    PeerUp(Member),
    /// A peer was lost (failure) or released its connections to us.
    PeerLost(PeerId),
    /// An overlay message from a peer.
    Overlay {
        /// The sender.
        from: PeerId,
        /// Its encoding.
        payload: Vec<u8>,
    },
    /// A broadcast-layer message from a peer.
    Plumtree {
        /// The sender.
        from: PeerId,
        /// Its encoding.
        payload: Vec<u8>,
    },
    /// Broadcast a payload to every node.
    Broadcast {
        /// Its topic.
        topic: Topic,
        /// The payload.
        payload: Bytes,
        /// Where to say what became of it.
        done: oneshot::Sender<Result<MessageId, PlumtreeError>>,
    },
    /// A request for the current views and broadcast tree.
    Views(oneshot::Sender<OverlayState>),
    /// This node lost its connection to a node for good: tell every node (a failure notice on
    /// [`NODE_LOST_TOPIC`]), so those that reach it only through the overlay hear of it too;
    /// after a random pause of up to [`NOTICE_JITTER`], only if nobody else reported it
    /// meanwhile (its other neighbours usually notice at the same moment), and only if no peer
    /// asked still hears from it (an indirect probe, see `probe`; the addresses are its listen
    /// addresses, `None` when it said goodbye and is not probed).
    NodeLost(NodeId, Option<Vec<std::net::SocketAddr>>),
    /// The pause of a [`DriverInput::NodeLost`] is over.
    ReportLoss(NodeId),
    /// A frame for a node that is not connected: pick the next hop.
    Relay {
        /// The node that sent it first.
        origin: NodeId,
        /// The node it is for.
        to: NodeId,
        /// Hops it may still take.
        ttl: u8,
        /// The whole inner frame.
        frame: Vec<u8>,
        /// The peer it came from (not sent back there).
        from: Option<NodeId>,
    },
}

/// What the overlay and the broadcast layer look like from one node.
#[derive(Debug, Clone, Default)]
pub struct OverlayState {
    /// The membership views.
    pub views: ViewSnapshot,
    /// Broadcast-tree neighbours (eager push).
    pub eager: Vec<PeerId>,
    /// Broadcast neighbours that only get announcements (lazy push).
    pub lazy: Vec<PeerId>,
    /// Broadcast counters.
    pub broadcast: PlumtreeStats,
}

/// The broadcast topic the transport keeps for itself: failure notices (a lost node's id, 8
/// bytes little-endian). Its deliveries are not passed to [`Node::broadcasts`](crate::Node::broadcasts),
/// and applications may not broadcast on it.
pub const NODE_LOST_TOPIC: Topic = Topic(u32::MAX);

/// The longest a node waits before it reports a lost peer (see [`DriverInput::NodeLost`]).
const NOTICE_JITTER: Duration = Duration::from_millis(300);

/// A broadcast delivered on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// Its topic.
    pub topic: Topic,
    /// Its id (origin node and sequence number).
    pub id: MessageId,
    /// The payload.
    pub payload: Bytes,
    /// Links it crossed to get here (0 when broadcast here).
    pub hops: u32,
}

/// The transport's handle on the driver task.
pub(crate) struct DriverHandle {
    tx: mpsc::UnboundedSender<DriverInput>,
    backlog: Arc<AtomicUsize>,
}

impl DriverHandle {
    /// Queues an input; overlay messages beyond [`MAX_BACKLOG`] are dropped and logged.
    pub(crate) fn send(&self, input: DriverInput) {
        let from_network =
            matches!(input, DriverInput::Overlay { .. } | DriverInput::Plumtree { .. } | DriverInput::Relay { .. });
        if from_network && self.backlog.load(Ordering::Relaxed) >= MAX_BACKLOG {
            tracing::warn!("membership driver overloaded; overlay message dropped");
            return;
        }
        self.backlog.fetch_add(1, Ordering::Relaxed);
        if self.tx.send(input).is_err() {
            self.backlog.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Settings of the driver.
pub(crate) struct DriverSettings {
    /// Release a connection the overlay does not use after this long without traffic.
    pub(crate) release_idle: Duration,
    /// The channel broadcast traffic goes on.
    pub(crate) broadcast_channel: u16,
}

/// Starts the driver task for `protocol` on the node's runtime.
pub(crate) fn start<M: Membership + Send + 'static>(
    shared: &Arc<NodeShared>,
    protocol: M,
    plumtree: Plumtree,
    settings: DriverSettings,
) -> DriverHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    let backlog = Arc::new(AtomicUsize::new(0));
    let driver = Driver {
        shared: Arc::downgrade(shared),
        protocol,
        plumtree,
        settings,
        origin: Instant::now(),
        out: Vec::new(),
        plum_out: Vec::new(),
        pending_connects: HashSet::new(),
        activity: HashMap::new(),
        backlog: backlog.clone(),
    };
    shared.runtime.spawn(driver.run(rx, shared.stop.clone()));
    DriverHandle { tx, backlog }
}

struct Driver<M: Membership> {
    shared: std::sync::Weak<NodeShared>,
    protocol: M,
    plumtree: Plumtree,
    settings: DriverSettings,
    origin: Instant,
    out: Vec<Command<M::Message>>,
    plum_out: Vec<PlumtreeOutput>,
    /// Peers we asked the transport to connect to and owe the protocol an answer about.
    pending_connects: HashSet<PeerId>,
    /// Per peer: the actor-message count last seen and since when it has not changed.
    activity: HashMap<NodeId, (u64, Instant)>,
    backlog: Arc<AtomicUsize>,
}

impl<M: Membership> Driver<M> {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<DriverInput>, stop: Arc<tokio::sync::Notify>) {
        // Registered before the node's state is read, so a stop that comes while an input is
        // being handled is not missed (`notify_waiters` keeps no permit).
        let mut stopped = std::pin::pin!(stop.notified());
        stopped.as_mut().enable();
        if self.shared.upgrade().is_none_or(|shared| shared.shutting_down.load(Ordering::Acquire)) {
            return;
        }
        let mut tick = tokio::time::interval(self.protocol.tick_interval());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut plum_tick = tokio::time::interval(self.plumtree.tick_interval());
        plum_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                input = rx.recv() => match input {
                    Some(input) => {
                        self.backlog.fetch_sub(1, Ordering::Relaxed);
                        self.on_input(input);
                    }
                    None => return,
                },
                _ = tick.tick() => {
                    self.feed(Input::Tick);
                    self.sweep_idle();
                }
                _ = plum_tick.tick() => self.feed_plumtree(PlumtreeInput::Tick),
                _ = stopped.as_mut() => return,
            }
        }
    }

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    /// Decodes a `what` message from `from`; an undecodable one is counted, logged and `None`.
    fn decode<T: serde::de::DeserializeOwned>(&self, from: PeerId, payload: &[u8], what: &str) -> Option<T> {
        match postcard::from_bytes::<T>(payload) {
            Ok(msg) => Some(msg),
            Err(error) => {
                if let Some(shared) = self.shared.upgrade() {
                    shared.counters.bad_frames.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(node = %shared.settings.name, peer = %from, %error,
                        "undecodable {what} message (do both nodes run the same overlay?)");
                }
                None
            }
        }
    }

    fn on_input(&mut self, input: DriverInput) {
        match input {
            DriverInput::Join(contacts) => self.feed(Input::Join(contacts)),
            DriverInput::Leave(done) => {
                // The protocol says goodbye to its neighbours and lets go of them; their
                // connections stay for the node's own goodbye (see `release_peer`).
                self.feed(Input::Leave);
                let _ = done.send(());
            }
            DriverInput::PeerUp(member) => {
                self.pending_connects.remove(&member.id);
                self.feed(Input::Connected(member));
            }
            DriverInput::PeerLost(id) => {
                if self.pending_connects.remove(&id) {
                    self.feed(Input::ConnectFailed(id));
                } else {
                    self.feed(Input::Disconnected(id));
                }
            }
            DriverInput::Overlay { from, payload } => {
                if let Some(msg) = self.decode::<M::Message>(from, &payload, "overlay") {
                    self.feed(Input::Message { from, msg });
                }
            }
            DriverInput::Plumtree { from, payload } => {
                if let Some(msg) = self.decode::<PlumtreeMessage>(from, &payload, "broadcast") {
                    self.feed_plumtree(PlumtreeInput::Message { from, msg });
                }
            }
            DriverInput::Broadcast { topic, payload, done } => {
                let now = self.now();
                let mut out = std::mem::take(&mut self.plum_out);
                let result = self.plumtree.broadcast(topic, payload, now, &mut out);
                self.execute_plumtree(&mut out);
                self.plum_out = out;
                let _ = done.send(result);
            }
            DriverInput::Relay { origin, to, ttl, frame, from } => self.relay(origin, to, ttl, frame, from),
            DriverInput::NodeLost(node, addrs) => {
                let Some(shared) = self.shared.upgrade() else { return };
                let pause = NOTICE_JITTER.mul_f64(rand::random::<f64>());
                let me = self.shared.clone();
                shared.runtime.spawn(async move {
                    if NodeShared::loss_to_report(&me, node, addrs, pause).await {
                        if let Some(shared) = me.upgrade() {
                            shared.tell_membership(DriverInput::ReportLoss(node));
                        }
                    }
                });
            }
            DriverInput::ReportLoss(node) => {
                let Some(shared) = self.shared.upgrade() else { return };
                if shared.loss_reported(node) {
                    return;
                }
                let now = self.now();
                let mut out = std::mem::take(&mut self.plum_out);
                let notice = Bytes::copy_from_slice(&node.0.to_le_bytes());
                match self.plumtree.broadcast(NODE_LOST_TOPIC, notice, now, &mut out) {
                    Ok(_) => {
                        shared.counters.failure_notices_sent.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(error) => tracing::warn!(%error, "failure notice not broadcast"),
                }
                self.execute_plumtree(&mut out);
                self.plum_out = out;
            }
            DriverInput::Views(reply) => {
                let _ = reply.send(OverlayState {
                    views: self.protocol.snapshot(),
                    eager: self.plumtree.eager_peers().collect(),
                    lazy: self.plumtree.lazy_peers().collect(),
                    broadcast: self.plumtree.stats(),
                });
            }
        }
    }

    /// Hands one input to the protocol and carries out what it asks.
    fn feed(&mut self, input: Input<M::Message>) {
        let now = self.now();
        let mut out = std::mem::take(&mut self.out);
        if tracing::enabled!(tracing::Level::TRACE) && !matches!(input, Input::Tick) {
            tracing::trace!(node = %self.protocol.me().name, ?input, "overlay input");
        }
        self.protocol.handle(input, now, &mut out);
        if tracing::enabled!(tracing::Level::TRACE) {
            for command in &out {
                tracing::trace!(node = %self.protocol.me().name, ?command, "overlay command");
            }
        }
        let mut follow_ups = Vec::new();
        for command in out.drain(..) {
            self.execute(command, &mut follow_ups);
        }
        self.out = out;
        for input in follow_ups {
            self.feed(input);
        }
    }

    /// Passes a relayed frame on: along the overlay's route when it knows one, else the way
    /// frames from its target came in (see `routes`), else to a random neighbour that is neither
    /// where it came from nor its origin; at a dead end, back where it came from.
    fn relay(&mut self, origin: NodeId, to: NodeId, ttl: u8, frame: Vec<u8>, from: Option<NodeId>) {
        let Some(shared) = self.shared.upgrade() else { return };
        let connected = |id: &NodeId| shared.peer(*id).is_some();
        // Not `to` itself either: a frame for it gets here only when the direct way is not to be
        // taken (not connected, or a probe going around a lost connection).
        let usable = |n: &NodeId| connected(n) && Some(*n) != from && *n != origin && *n != to;
        let learned = {
            let mut routes = shared.relay_routes.lock();
            if let Some(from) = from {
                // Sent back by the neighbour our route points at: the route leads nowhere.
                routes.returned(to, from);
            }
            routes.via(to, Instant::now())
        };
        let routed =
            self.protocol.next_hop(PeerId(to.0)).map(|p| NodeId(p.0)).filter(usable).or(learned.filter(usable));
        let next = routed.or_else(|| {
            let candidates: Vec<NodeId> =
                self.protocol.neighbors().into_iter().map(|p| NodeId(p.0)).filter(usable).collect();
            (!candidates.is_empty()).then(|| candidates[rand::random_range(0..candidates.len())])
        });
        // A dead end returns the frame, so the hop before tries another way (and drops a route
        // that led here).
        let next = next.or(from.filter(|f| connected(f) && *f != to));
        match next {
            Some(next) => {
                shared.relay_via(next, origin, to, ttl, frame);
            }
            None => {
                shared.counters.relay_dropped.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(node = %shared.settings.name, %to, "relayed message dropped: no neighbour to pass it to");
            }
        }
    }

    /// Hands one input to the broadcast layer and carries out what it asks.
    fn feed_plumtree(&mut self, input: PlumtreeInput) {
        let now = self.now();
        let mut out = std::mem::take(&mut self.plum_out);
        self.plumtree.handle(input, now, &mut out);
        self.execute_plumtree(&mut out);
        self.plum_out = out;
    }

    fn execute_plumtree(&mut self, out: &mut Vec<PlumtreeOutput>) {
        let Some(shared) = self.shared.upgrade() else {
            out.clear();
            return;
        };
        for output in out.drain(..) {
            match output {
                PlumtreeOutput::Send { to, msg } => {
                    send_encoded(&shared, to, self.settings.broadcast_channel, &msg, |payload| Control::Broadcast {
                        payload,
                    });
                }
                PlumtreeOutput::Deliver { topic: NODE_LOST_TOPIC, payload, .. } => {
                    match <[u8; 8]>::try_from(&payload[..]) {
                        Ok(bytes) => shared.node_lost_notice(NodeId(u64::from_le_bytes(bytes))),
                        Err(_) => tracing::warn!(len = payload.len(), "malformed failure notice dropped"),
                    }
                }
                PlumtreeOutput::Deliver { topic, id, payload, hops } => {
                    let _ = shared.broadcasts.send(Delivered { topic, id, payload, hops });
                }
            }
        }
    }

    fn execute(&mut self, command: Command<M::Message>, follow_ups: &mut Vec<Input<M::Message>>) {
        let Some(shared) = self.shared.upgrade() else { return };
        match command {
            Command::Send { to, msg } => {
                send_encoded(&shared, to, 0, &msg, |payload| Control::Overlay { payload });
            }
            Command::Connect(member) => match shared.connect_member(&member) {
                Some(true) => follow_ups.push(Input::Connected(member)),
                Some(false) => {
                    self.pending_connects.insert(member.id);
                }
                None => follow_ups.push(Input::ConnectFailed(member.id)),
            },
            Command::Disconnect(peer) => {
                self.pending_connects.remove(&peer);
                // The overlay is done with the peer; the connection goes unless actors still use
                // it (then the idle sweep closes it later).
                let id = NodeId(peer.0);
                if !self.recently_used(&shared, id) {
                    // Deferred while acknowledged messages to it are outstanding (the idle sweep
                    // closes it later), and while this node is leaving (its goodbye closes it).
                    let _ = shared.release_peer(id, true);
                }
            }
            Command::NeedContacts => {
                let shared = shared.clone();
                shared.runtime.clone().spawn(async move { shared.rejoin_through_seeds().await });
            }
            Command::Event(event) => self.on_event(&shared, event),
        }
    }

    fn on_event(&mut self, shared: &Arc<NodeShared>, event: MembershipEvent) {
        match event {
            MembershipEvent::NeighborUp(member) => {
                shared.remember(&member);
                self.feed_plumtree(PlumtreeInput::NeighborUp(member.id));
            }
            MembershipEvent::NeighborDown(id) => {
                self.feed_plumtree(PlumtreeInput::NeighborDown(id));
            }
            MembershipEvent::MemberUp(member) => {
                shared.remember(&member);
                tracing::info!(node = %shared.settings.name, member = %member.name, "member joined");
                let _ = shared.events.send(NodeEvent::Joined { node: NodeId(member.id.0), name: member.name });
            }
            MembershipEvent::MemberDown { id, reason } => {
                let name = shared.name_of(NodeId(id.0)).unwrap_or_else(|| id.to_string());
                tracing::info!(node = %shared.settings.name, member = %name, %reason, "member left");
                let _ = shared.events.send(NodeEvent::Left { node: NodeId(id.0), name, reason });
            }
        }
    }

    /// Whether actors exchanged messages with this peer within `release_idle`.
    fn recently_used(&mut self, shared: &NodeShared, id: NodeId) -> bool {
        let Some(count) = shared.peer_traffic_of(id) else { return false };
        let now = Instant::now();
        match self.activity.get(&id) {
            Some(&(seen, since)) if seen == count => now.duration_since(since) < self.settings.release_idle,
            _ => {
                self.activity.insert(id, (count, now));
                count > 0
            }
        }
    }

    /// Releases connections the overlay does not use once actors have not used them for
    /// `release_idle`, and tells the protocol they are gone.
    fn sweep_idle(&mut self) {
        let Some(shared) = self.shared.upgrade() else { return };
        let now = Instant::now();
        let traffic = shared.peer_traffic();
        self.activity.retain(|id, _| traffic.iter().any(|(p, _)| p == id));
        // Peers the protocol uses: its neighbours and its active view.
        let mut used: HashSet<PeerId> = self.protocol.neighbors().into_iter().collect();
        used.extend(self.protocol.snapshot().active.into_iter().map(|m| m.id));
        let mut released = Vec::new();
        for (id, count) in traffic {
            let entry = self.activity.entry(id).or_insert((count, now));
            if entry.0 != count {
                *entry = (count, now);
                continue;
            }
            let peer = PeerId(id.0);
            if used.contains(&peer) || self.pending_connects.contains(&peer) {
                continue;
            }
            // One that never came up is still finding out whether the node is there (it comes
            // up, or its failed dials report the node down): released, it would stop dialling
            // with no verdict (a failure notice's check relies on one: see `node_lost_notice`).
            if !shared.peer(id).is_some_and(|p| p.up.load(Ordering::Acquire)) {
                continue;
            }
            // Not released while acknowledged messages to it are outstanding: asked again at the
            // next sweep.
            if now.duration_since(entry.1) >= self.settings.release_idle && shared.release_peer(id, true) {
                tracing::debug!(node = %shared.settings.name, peer = %id, "released an idle connection");
                released.push(peer);
            }
        }
        for peer in released {
            self.activity.remove(&NodeId(peer.0));
            self.feed(Input::Disconnected(peer));
        }
    }
}

/// Encodes `msg` and queues it, wrapped by `wrap`, as a control frame on `channel` to `to`
/// (dropped if `to` is not connected, as the driver contract says).
fn send_encoded<T: serde::Serialize>(
    shared: &NodeShared,
    to: PeerId,
    channel: u16,
    msg: &T,
    wrap: impl FnOnce(Vec<u8>) -> Control,
) {
    match postcard::to_stdvec(msg) {
        Ok(payload) => {
            shared.send_control_on(NodeId(to.0), channel, &wrap(payload));
        }
        Err(error) => tracing::warn!(%error, "cannot encode an overlay or broadcast message"),
    }
}
