//! [`Node`]: an actor system reachable over the network.

use std::any::Any;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use tokio::sync::broadcast;
use troupe_actor::{ActorRef, ActorSystem, NodeId, RegistryError, RemoteMessage, SendOptions, SystemError};
use troupe_wire::ConnPurpose;

use crate::config::{ConfigError, LinkEmulation, NodeConfig, OverlayKind};
use crate::conn::ConnectError;
use crate::core::{NodeShared, Settings};
use crate::fault::Interposer;
use crate::membership::{Delivered, DriverInput, OverlayState};
use crate::snapshot::NodeSnapshot;
use crate::stats::NodeStats;
use crate::tls::{TlsContext, TlsError, TlsFiles};
use bytes::Bytes;
use troupe_overlay::{MessageId, Topic};

/// Membership news for user code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEvent {
    /// A node's control connection is up.
    Up {
        /// Its incarnation.
        node: NodeId,
        /// Its name.
        name: String,
    },
    /// A node was lost (it left, crashed, or cannot be reached); its actors' watchers got Down.
    Down {
        /// Its incarnation.
        node: NodeId,
        /// Its name.
        name: String,
        /// Why it is considered down.
        reason: String,
    },
    /// The membership overlay counts a node as a member (what that means depends on the overlay:
    /// every node in a full mesh, the neighbours in HyParView).
    Joined {
        /// Its incarnation.
        node: NodeId,
        /// Its name.
        name: String,
    },
    /// The membership overlay no longer counts a node as a member.
    Left {
        /// Its incarnation.
        node: NodeId,
        /// Its name.
        name: String,
        /// Why.
        reason: String,
    },
}

/// A peer as listed by [`Node::peers`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// Its incarnation.
    pub id: NodeId,
    /// Its name.
    pub name: String,
    /// Whether its control connection is up.
    pub up: bool,
}

/// Errors of node setup and operations.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// TLS material could not be loaded.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The network runtime could not start.
    #[error("cannot start the network runtime: {0}")]
    Runtime(std::io::Error),
    /// The actor system could not start.
    #[error(transparent)]
    System(#[from] SystemError),
    /// A connection could not be made.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address.
        addr: String,
        /// Why.
        source: ConnectError,
    },
    /// An address did not resolve.
    #[error("cannot resolve {0}")]
    Resolve(String),
}

/// Errors of [`Node::broadcast`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BroadcastError {
    /// The node runs no overlay (`overlay = "none"`).
    #[error("broadcast needs an overlay; this node runs none")]
    NoOverlay,
    /// The broadcast layer refused the payload (too large).
    #[error("broadcast refused: {0}")]
    Refused(String),
    /// The node is stopping.
    #[error("the node is stopping")]
    Stopped,
}

/// Errors of [`Node::lookup`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// No connected node has that name.
    #[error("no connected node is named {0:?}")]
    UnknownNode(String),
    /// The node has no actor registered under that name (or did not answer in time).
    #[error("node {node:?} has no actor registered as {name:?}")]
    NotFound {
        /// The node asked.
        node: String,
        /// The name.
        name: String,
    },
    /// The actor takes another message type.
    #[error("actor {name:?} takes {actual}, not {expected}")]
    WrongType {
        /// The name.
        name: String,
        /// Its message type.
        actual: String,
        /// The type asked for.
        expected: &'static str,
    },
}

/// Owns the network runtime: when the last [`Node`] handle drops without
/// [`shutdown`](Node::shutdown), sends to other nodes fail from then on (nothing would write
/// them), watchers of remote actors get `NodeDown`, and the runtime shuts down without
/// blocking, wherever that drop happens. The actor system, if someone
/// keeps it, goes on locally: it was told that this runtime goes with this value
/// ([`SystemBuilder::tokio_owner`](troupe_actor::SystemBuilder::tokio_owner)).
struct NetRuntime {
    runtime: Option<tokio::runtime::Runtime>,
    node: OnceLock<Weak<NodeShared>>,
}

impl NetRuntime {
    fn new(runtime: Option<tokio::runtime::Runtime>) -> Arc<Self> {
        Arc::new(NetRuntime { runtime, node: OnceLock::new() })
    }

    /// What the actor system watches to learn that the runtime is gone.
    fn owner(self: &Arc<Self>) -> Weak<dyn Any + Send + Sync> {
        let weak: Weak<Self> = Arc::downgrade(self);
        weak
    }
}

impl Drop for NetRuntime {
    fn drop(&mut self) {
        if let Some(node) = self.node.get().and_then(Weak::upgrade) {
            node.stop_now();
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// An actor system reachable over the network: listener, connections to peers, remote refs.
///
/// ```no_run
/// # async fn demo() -> Result<(), troupe_net::NodeError> {
/// use troupe_net::{Node, NodeConfig};
/// let mut config = NodeConfig::default();
/// config.name = "a".into();
/// config.secret = Some("a cluster secret of 16+ bytes".into());
/// let node = Node::start(config).await?;
/// node.connect("127.0.0.1:7001").await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Node {
    shared: Arc<NodeShared>,
    /// Owned, not used: the network runtime lives as long as a handle to the node.
    _runtime: Arc<NetRuntime>,
    local_addrs: Arc<Vec<SocketAddr>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("name", &self.name()).field("id", &self.id()).finish()
    }
}

impl Node {
    /// Starts a node: validates `config`, starts its actor system and network runtime, binds
    /// its listeners and connects to its seeds (in the background).
    pub async fn start(config: NodeConfig) -> Result<Node, NodeError> {
        config.validate()?;
        let threads = config.net_threads.max(1);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name(format!("{}-net", config.name))
            .enable_all()
            .build()
            .map_err(NodeError::Runtime)?;
        let handle = runtime.handle().clone();
        let runtime = NetRuntime::new(Some(runtime));
        let started = handle.spawn(Self::start_on(config, handle.clone(), Some(runtime.owner())));
        let (shared, local_addrs) = match started.await {
            Ok(result) => result?,
            Err(e) => return Err(NodeError::Runtime(std::io::Error::other(e.to_string()))),
        };
        let _ = runtime.node.set(Arc::downgrade(&shared));
        Ok(Node { shared, _runtime: runtime, local_addrs: Arc::new(local_addrs) })
    }

    /// Starts a node on an existing tokio runtime instead of a runtime of its own: for many
    /// nodes in one process (experiments, `troupe bench scale`). The runtime must outlive the
    /// node's use. Dropping the last handle without [`shutdown`](Self::shutdown) stops the
    /// node as with [`start`](Self::start): its listeners close, its connections are dropped
    /// and sends to other nodes fail (the runtime itself is the caller's and goes on).
    pub async fn start_on_runtime(config: NodeConfig, handle: tokio::runtime::Handle) -> Result<Node, NodeError> {
        config.validate()?;
        let started = handle.spawn(Self::start_on(config, handle.clone(), None));
        let (shared, local_addrs) = match started.await {
            Ok(result) => result?,
            Err(e) => return Err(NodeError::Runtime(std::io::Error::other(e.to_string()))),
        };
        let runtime = NetRuntime::new(None);
        let _ = runtime.node.set(Arc::downgrade(&shared));
        Ok(Node { shared, _runtime: runtime, local_addrs: Arc::new(local_addrs) })
    }

    /// [`start`](Self::start) for synchronous code (a `main` without a runtime).
    pub fn start_blocking(config: NodeConfig) -> Result<Node, NodeError> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(NodeError::Runtime)?;
        rt.block_on(Self::start(config))
    }

    async fn start_on(
        config: NodeConfig,
        handle: tokio::runtime::Handle,
        runtime_owner: Option<Weak<dyn Any + Send + Sync>>,
    ) -> Result<(Arc<NodeShared>, Vec<SocketAddr>), NodeError> {
        let secret = config.secret_bytes()?.unwrap_or_default();
        let tls = match &config.tls {
            None => None,
            Some(t) => Some(TlsContext::load(&TlsFiles {
                cert: t.cert.clone(),
                key: t.key.clone(),
                ca: t.ca.clone(),
                require_client_cert: t.require_client_cert,
                server_name: t.server_name.clone(),
            })?),
        };
        let mut system = ActorSystem::builder().name(config.name.clone()).tokio_handle(handle.clone());
        if let Some(owner) = runtime_owner {
            system = system.tokio_owner(owner);
        }
        if let Some(workers) = config.workers {
            system = system.workers(workers);
        }
        let system = system.build()?;
        let channels =
            config.channel_table().into_iter().map(|(name, c)| (name, c.parallelism.max(1), c.monotonic)).collect();
        let ms = Duration::from_millis;
        let settings = Settings {
            name: config.name.clone(),
            cluster: config.cluster.clone(),
            secret,
            channels,
            max_frame: config.max_frame_bytes,
            queue_bytes: config.send_queue_bytes,
            connect_timeout: ms(config.connect_timeout_ms),
            handshake_timeout: ms(config.handshake_timeout_ms),
            idle_ping: ms(config.idle_ping_ms),
            ping_timeout: ms(config.ping_timeout_ms),
            ping_attempts: config.ping_attempts,
            ack_retransmit: ms(config.ack_retransmit_ms),
            reconnect_min: ms(config.reconnect_min_ms),
            reconnect_max: ms(config.reconnect_max_ms),
            reach: config.reach,
            relay_ttl: u8::try_from(config.relay_ttl).unwrap_or(u8::MAX),
            link: config.link.as_ref().and_then(LinkEmulation::link_config),
        };
        let loss = config.link.as_ref().map_or(0.0, |l| l.loss);
        let mut seeds = config.seeds.clone();
        seeds.extend(config.seed_dns.iter().map(|name| format!("dns:{name}")));
        let role = (config.overlay == OverlayKind::ClientServer).then_some(config.role);
        let shared = NodeShared::new(settings, system, handle.clone(), tls, loss, seeds, config.overlay, role);
        let mut bound = Vec::new();
        for addr in &config.listen {
            let listener = tokio::net::TcpListener::bind(addr.as_str())
                .await
                .map_err(|source| NodeError::Bind { addr: addr.clone(), source })?;
            let local = listener.local_addr().map_err(|source| NodeError::Bind { addr: addr.clone(), source })?;
            bound.push(local);
            handle.spawn(shared.clone().listen(listener));
        }
        let advertised: Vec<String> = if config.advertise.is_empty() {
            bound.iter().map(|a| a.to_string()).collect()
        } else {
            config.advertise.clone()
        };
        *shared.advertised.write() = advertised;
        tracing::info!(node = %config.name, id = %shared.id, listen = ?bound, overlay = config.overlay.as_str(), "node started");
        if config.overlay == OverlayKind::None {
            for seed in config.seeds.clone() {
                let shared = shared.clone();
                handle.spawn(async move {
                    if let Err(error) = connect_to(&shared, &seed).await {
                        tracing::warn!(node = %shared.settings.name, %seed, %error, "seed not reached");
                    }
                });
            }
        } else {
            let me = troupe_overlay::Member {
                id: troupe_overlay::PeerId(shared.id.0),
                name: config.name.clone(),
                addr: advertised_socket(&shared, &bound)?,
            };
            let driver = crate::overlays::start(&shared, &config, me)?;
            let _ = shared.membership.set(driver);
            let joining = shared.clone();
            handle.spawn(async move { joining.rejoin_through_seeds().await });
        }
        // Last: a start that failed above leaves no sweeper holding the node.
        handle.spawn(shared.clone().ask_sweeper());
        Ok((shared, bound))
    }

    /// This node's incarnation.
    pub fn id(&self) -> NodeId {
        self.shared.id
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.shared.settings.name
    }

    /// The node's actor system: spawn actors here.
    pub fn system(&self) -> &ActorSystem {
        &self.shared.system
    }

    /// The node's shared state, for in-crate tests.
    #[cfg(test)]
    pub(crate) fn shared(&self) -> &Arc<NodeShared> {
        &self.shared
    }

    /// The addresses the node listens on.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// The first listen address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addrs[0]
    }

    /// Connects to the node at `addr` (handshake on the control channel, then the other
    /// channels in the background). Returns the peer once its control connection is up.
    pub async fn connect(&self, addr: &str) -> Result<PeerInfo, NodeError> {
        let shared = self.shared.clone();
        let addr = addr.to_string();
        match self.shared.runtime.spawn(async move { connect_to(&shared, &addr).await }).await {
            Ok(result) => result,
            Err(e) => Err(NodeError::Runtime(std::io::Error::other(e.to_string()))),
        }
    }

    /// Waits until a node named `name` is up, for at most `timeout`.
    pub async fn wait_for_peer(&self, name: &str, timeout: Duration) -> Option<NodeId> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut events = self.events();
        loop {
            if let Some(peer) = self.shared.peer_named(name) {
                if peer.up.load(Ordering::Acquire) {
                    return Some(peer.id);
                }
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return None;
            }
            let _ = tokio::time::timeout(left.min(Duration::from_millis(50)), events.recv()).await;
        }
    }

    /// The peers this node knows.
    pub fn peers(&self) -> Vec<PeerInfo> {
        let mut peers: Vec<PeerInfo> = self
            .shared
            .peers
            .read()
            .values()
            .map(|p| PeerInfo { id: p.id, name: p.name.clone(), up: p.up.load(Ordering::Acquire) })
            .collect();
        peers.sort_by(|a, b| a.name.cmp(&b.name));
        peers
    }

    /// Registers `actor` under `name` on this node, visible to [`lookup`](Self::lookup) from
    /// other nodes (and to the local registry).
    pub fn register<M: RemoteMessage>(&self, name: &str, actor: &ActorRef<M>) -> Result<(), RegistryError> {
        self.shared.system.register(name, actor)?;
        let inbound = troupe_actor::inbound(actor.clone());
        troupe_actor::Transport::export(&*self.shared, inbound.clone());
        self.shared.named.write().insert(name.to_string(), inbound);
        let me = Arc::downgrade(&self.shared);
        let key = name.to_string();
        let id = actor.id();
        actor.untyped().on_exit(move |_| {
            if let Some(shared) = me.upgrade() {
                let mut named = shared.named.write();
                if named.get(&key).is_some_and(|i| i.id() == id) {
                    named.remove(&key);
                }
            }
        });
        Ok(())
    }

    /// A ref to the actor `id`, wherever it runs (this node or another). Messages go straight
    /// to its node when connected or when its address is known, else along the overlay.
    pub fn actor_ref<M: RemoteMessage>(&self, id: troupe_actor::ActorId) -> ActorRef<M> {
        let proxy = troupe_actor::Transport::proxy(&*self.shared, id);
        ActorRef::remote(proxy, SendOptions::default())
    }

    /// Finds the actor registered as `name` on the node named `node` (this node included).
    pub async fn lookup<M: RemoteMessage>(&self, node: &str, name: &str) -> Result<ActorRef<M>, LookupError> {
        if node == self.name() {
            return self.shared.system.lookup::<M>(name).map_err(|e| match e {
                RegistryError::WrongType { actual, .. } => LookupError::WrongType {
                    name: name.to_string(),
                    actual: actual.to_string(),
                    expected: M::TYPE_NAME,
                },
                _ => LookupError::NotFound { node: node.to_string(), name: name.to_string() },
            });
        }
        let peer = self.shared.peer_named(node).ok_or_else(|| LookupError::UnknownNode(node.to_string()))?;
        let shared = self.shared.clone();
        let asked = name.to_string();
        let found = self.shared.runtime.spawn(async move { shared.lookup(peer.id, &asked).await }).await.ok().flatten();
        match found {
            None => Err(LookupError::NotFound { node: node.to_string(), name: name.to_string() }),
            Some((_, actual)) if actual != M::TYPE_NAME => {
                Err(LookupError::WrongType { name: name.to_string(), actual, expected: M::TYPE_NAME })
            }
            Some((id, _)) => {
                let proxy = troupe_actor::Transport::proxy(&*self.shared, id);
                Ok(ActorRef::remote(proxy, SendOptions::default()))
            }
        }
    }

    /// Finds the actor registered as `name` on any node: this one first, then the peers in
    /// name order.
    pub async fn lookup_any<M: RemoteMessage>(&self, name: &str) -> Result<ActorRef<M>, LookupError> {
        if let Ok(found) = self.lookup::<M>(self.name(), name).await {
            return Ok(found);
        }
        for peer in self.peers() {
            if let Ok(found) = self.lookup::<M>(&peer.name, name).await {
                return Ok(found);
            }
        }
        Err(LookupError::NotFound { node: "*".into(), name: name.to_string() })
    }

    /// Node up/down events from now on.
    pub fn events(&self) -> broadcast::Receiver<NodeEvent> {
        self.shared.events.subscribe()
    }

    /// Installs (or with `None` removes) a function deciding the fate of every message this node
    /// sends: pass, drop or delay.
    pub fn interpose_send(&self, f: Option<Interposer>) {
        self.shared.faults.set_send(f);
    }

    /// Installs (or removes) a function that may drop messages this node receives.
    pub fn interpose_receive(&self, f: Option<Interposer>) {
        self.shared.faults.set_receive(f);
    }

    /// Cuts this node off from `peer` (nothing sent, not even retransmissions, acknowledgements,
    /// pings or replies: its connections end the first time they would carry something; nothing
    /// accepted; no reconnection) or heals the cut. Acknowledged messages sent
    /// meanwhile are kept and sent again once the cut heals. The peer is declared down when its connections time out; its redials are
    /// refused in the handshake, so it finds this node unreachable too, even if only this side
    /// was cut.
    pub fn partition(&self, peer: NodeId, on: bool) {
        self.shared.faults.set_partitioned(peer, on);
    }

    /// Counters.
    pub fn stats(&self) -> NodeStats {
        self.shared.stats()
    }

    /// Bytes waiting in the send queues to `peer` (all lanes).
    pub fn queued_bytes(&self, peer: NodeId) -> usize {
        self.shared.peer(peer).map_or(0, |p| p.lanes.iter().flatten().map(|l| l.queue.len()).sum())
    }

    /// The overlay's current views from this node (active and passive) and its broadcast
    /// tree, or `None` without an overlay.
    pub async fn overlay_state(&self) -> Option<OverlayState> {
        self.shared.membership.get()?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.shared.tell_membership(DriverInput::Views(tx));
        rx.await.ok()
    }

    /// Broadcasts `payload` on `topic` to every node of the overlay (Plumtree: eager push along
    /// a tree, lazy announcements to the other neighbours, repair by graft and anti-entropy).
    /// It is also delivered here. Needs an overlay; [`NODE_LOST_TOPIC`](crate::NODE_LOST_TOPIC)
    /// is the transport's own.
    pub async fn broadcast(&self, topic: Topic, payload: Bytes) -> Result<MessageId, BroadcastError> {
        if self.shared.membership.get().is_none() {
            return Err(BroadcastError::NoOverlay);
        }
        if topic == crate::NODE_LOST_TOPIC {
            return Err(BroadcastError::Refused(format!("topic {} is reserved for the transport", topic.0)));
        }
        let (done, rx) = tokio::sync::oneshot::channel();
        self.shared.tell_membership(DriverInput::Broadcast { topic, payload, done });
        match rx.await {
            Ok(Ok(id)) => Ok(id),
            Ok(Err(e)) => Err(BroadcastError::Refused(e.to_string())),
            Err(_) => Err(BroadcastError::Stopped),
        }
    }

    /// Broadcasts delivered on this node from now on (every topic; filter on
    /// [`Delivered::topic`]). A subscriber that falls more than 4096 deliveries behind misses
    /// the oldest (and is told so by the receiver).
    pub fn broadcasts(&self) -> broadcast::Receiver<Delivered> {
        self.shared.broadcasts.subscribe()
    }

    /// Snapshots (views, broadcast tree, traffic) of this node and of every node reachable
    /// through the overlay's views, at most `max` nodes: the cluster picture. Nodes are asked
    /// over the network (connecting on demand); one that does not answer within 2 s is left out.
    pub async fn cluster_snapshot(&self, max: usize) -> Vec<NodeSnapshot> {
        let shared = self.shared.clone();
        self.shared.runtime.spawn(async move { shared.crawl(max).await }).await.unwrap_or_default()
    }

    /// Which overlay this node runs.
    pub fn overlay(&self) -> OverlayKind {
        self.shared.overlay
    }

    /// Leaves the cluster: tells the overlay (which says goodbye to its neighbours), then
    /// closes connections and shuts the actor system down.
    pub async fn shutdown(&self) {
        self.shared.leaving.store(true, Ordering::Release);
        if self.shared.membership.get().is_some() {
            let (tx, rx) = tokio::sync::oneshot::channel();
            self.shared.tell_membership(DriverInput::Leave(tx));
            let _ = tokio::time::timeout(Duration::from_secs(1), rx).await;
        }
        let shared = self.shared.clone();
        let _ = self.shared.runtime.spawn(async move { shared.shutdown().await }).await;
        self.shared.system.shutdown().await;
    }
}

/// The address this node gives the overlay: the first advertised one that is an IP socket
/// address, else the first bound one.
fn advertised_socket(shared: &NodeShared, bound: &[SocketAddr]) -> Result<SocketAddr, NodeError> {
    let advertised = shared.advertised.read();
    advertised
        .iter()
        .find_map(|a| a.parse().ok())
        .or_else(|| bound.first().copied())
        .ok_or_else(|| NodeError::Resolve("no address to advertise to the overlay".into()))
}

/// Dials a seed and describes the member that answered, for the overlay.
pub(crate) async fn dial_seed(shared: &Arc<NodeShared>, addr: &str) -> Result<troupe_overlay::Member, NodeError> {
    let info = connect_to(shared, addr).await?;
    let peer = shared
        .peer(info.id)
        .ok_or_else(|| NodeError::Connect { addr: addr.to_string(), source: ConnectError::Closed })?;
    peer.member().ok_or_else(|| NodeError::Resolve(format!("{addr} (the node advertises no address)")))
}

/// Resolves the configured seeds: the `seeds` as given and every address of each `seed_dns` name.
pub(crate) async fn resolve_seeds(seeds: &[String], seed_dns: &[String]) -> Vec<String> {
    let mut all: Vec<String> = seeds.to_vec();
    for name in seed_dns {
        match tokio::net::lookup_host(name.as_str()).await {
            Ok(addrs) => all.extend(addrs.map(|a| a.to_string())),
            Err(error) => tracing::warn!(%name, %error, "seed DNS name did not resolve"),
        }
    }
    all.dedup();
    all
}

/// Dials `addr` on the control lane and adopts the connection for the peer it reaches.
async fn connect_to(shared: &Arc<NodeShared>, addr: &str) -> Result<PeerInfo, NodeError> {
    let resolved: Vec<SocketAddr> =
        tokio::net::lookup_host(addr).await.map_err(|_| NodeError::Resolve(addr.to_string()))?.collect();
    let target = *resolved.first().ok_or_else(|| NodeError::Resolve(addr.to_string()))?;
    let purpose = ConnPurpose { channel: 0, lane: 0 };
    let opened =
        shared.dial(target, purpose).await.map_err(|source| NodeError::Connect { addr: addr.to_string(), source })?;
    let info = opened.established.peer.clone();
    let id = NodeId(info.incarnation);
    let Some(peer) = shared.ensure_peer(&info, Some((purpose, opened))) else {
        // This node is stopping, or keeps that one out for a while (it did not read its answers).
        let reason = if shared.shutting_down.load(Ordering::Acquire) {
            troupe_wire::reject::SHUTTING_DOWN
        } else {
            troupe_wire::reject::QUARANTINED
        };
        return Err(NodeError::Connect { addr: addr.to_string(), source: ConnectError::Refused(reason) });
    };
    // Wait for its control lane (ours, or the one started from its own dial to us).
    for _ in 0..200 {
        if peer.up.load(Ordering::Acquire) || peer.is_down() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(PeerInfo { id, name: info.name, up: peer.up.load(Ordering::Acquire) })
}
