//! The discrete-event engine: nodes, links, the event queue and the driver contract.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::config::SimConfig;
use super::metrics::{BatchStats, Connectivity, SideStats, SimStats, Tracker};
use crate::member::{Member, PeerId};
use crate::membership::{Command, Input, Membership, MembershipEvent};
use crate::plumtree::{Plumtree, PlumtreeConfig, PlumtreeInput, PlumtreeMessage, PlumtreeOutput, Topic};

/// A node's index in the simulation (dense, from 0, in creation order).
pub type NodeIdx = usize;

/// Builds one node's membership protocol from its identity and a seed derived from the
/// simulation's seed.
pub type MakeMembership<M> = Box<dyn FnMut(Member, u64) -> M>;

/// One end of a connection, as a node holds it.
#[derive(Clone, Copy, Debug)]
struct ConnEnd {
    peer: u32,
    epoch: u64,
    /// The link broke (loss, partition, crashed peer); the end learns it at its `Closed` event.
    broken: bool,
    /// Arrival time of the last message sent on this end (keeps the link FIFO under jitter).
    out_arrival: u64,
}

/// What travels on a link: the overlay's own traffic and Plumtree's, as on one real connection.
#[derive(Clone, Debug)]
enum Wire<MM> {
    Membership(MM),
    Plumtree(PlumtreeMessage),
}

enum Ev<MM> {
    Deliver { to: u32, from: u32, epoch: u64, msg: Wire<MM> },
    LinkUp { a: u32, b: u32, epoch: u64 },
    Answer { node: u32, peer: u32, ok: bool },
    Closed { node: u32, peer: u32, epoch: u64 },
    Tick { node: u32 },
    PlumtreeTick { node: u32 },
    Join { node: u32, contacts: Vec<u32> },
    Broadcast { node: u32, topic: Topic, payload: Bytes },
    Crash { node: u32 },
    Leave { node: u32 },
    Sample,
}

struct Entry<MM> {
    at: u64,
    seq: u64,
    ev: Ev<MM>,
}

impl<MM> PartialEq for Entry<MM> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl<MM> Eq for Entry<MM> {}
impl<MM> PartialOrd for Entry<MM> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<MM> Ord for Entry<MM> {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

struct Node<M> {
    member: Member,
    proto: M,
    tree: Plumtree,
    started: bool,
    alive: bool,
    group: u32,
    conns: Vec<ConnEnd>,
}

impl<M> Node<M> {
    fn end(&self, peer: u32) -> Option<usize> {
        self.conns.iter().position(|c| c.peer == peer)
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// SplitMix64: derives independent seeds and per-link constants from the simulation seed.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A deterministic simulation of many nodes running membership protocol `M` with Plumtree on
/// top, driven exactly as the network driver drives them (see [`crate::membership`]).
pub struct Sim<M: Membership> {
    cfg: SimConfig,
    plumtree: PlumtreeConfig,
    make: MakeMembership<M>,
    rng: StdRng,
    now: u64,
    seq: u64,
    next_epoch: u64,
    queue: BinaryHeap<Reverse<Entry<M::Message>>>,
    nodes: Vec<Node<M>>,
    index: HashMap<PeerId, u32>,
    pending: HashMap<(u32, u32), u64>,
    ticks_paused: bool,
    mbuf: Vec<Command<M::Message>>,
    pbuf: Vec<PlumtreeOutput>,
    stats: SimStats,
    tracker: Option<Tracker>,
    next_topic: u32,
    seeds: Vec<u32>,
    sampling: Option<u64>,
    sample_queued: bool,
    timeline: Vec<(Duration, Connectivity)>,
}

impl<M: Membership> Sim<M> {
    /// An empty simulation.
    pub fn new(cfg: SimConfig, plumtree: PlumtreeConfig, make: MakeMembership<M>) -> Self {
        Sim {
            rng: StdRng::seed_from_u64(mix(cfg.seed)),
            cfg,
            plumtree,
            make,
            now: 0,
            seq: 0,
            next_epoch: 1,
            queue: BinaryHeap::new(),
            nodes: Vec::new(),
            index: HashMap::new(),
            pending: HashMap::new(),
            ticks_paused: false,
            mbuf: Vec::new(),
            pbuf: Vec::new(),
            stats: SimStats::default(),
            tracker: None,
            next_topic: 1,
            seeds: Vec::new(),
            sampling: None,
            sample_queued: false,
            timeline: Vec::new(),
        }
    }

    /// The simulated time.
    pub fn now(&self) -> Duration {
        Duration::from_micros(self.now)
    }

    /// The network parameters.
    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }

    /// Number of nodes ever created (alive or not).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether no node was created yet.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Counters since the start.
    pub fn stats(&self) -> &SimStats {
        &self.stats
    }

    /// A node's membership protocol.
    pub fn membership(&self, node: NodeIdx) -> &M {
        &self.nodes[node].proto
    }

    /// A node's Plumtree instance.
    pub fn plumtree(&self, node: NodeIdx) -> &Plumtree {
        &self.nodes[node].tree
    }

    /// A node's identity.
    pub fn member(&self, node: NodeIdx) -> &Member {
        &self.nodes[node].member
    }

    /// The node with this id.
    pub fn node_of(&self, id: PeerId) -> Option<NodeIdx> {
        self.index.get(&id).map(|i| *i as NodeIdx)
    }

    /// Whether the node was started and has not crashed.
    pub fn is_alive(&self, node: NodeIdx) -> bool {
        self.nodes[node].alive
    }

    /// The nodes that are alive.
    pub fn live_nodes(&self) -> Vec<NodeIdx> {
        (0..self.nodes.len()).filter(|i| self.nodes[*i].alive).collect()
    }

    /// Open connection ends of a node (for tests: connections only exist between live nodes).
    pub fn connections(&self, node: NodeIdx) -> Vec<NodeIdx> {
        self.nodes[node].conns.iter().filter(|c| !c.broken).map(|c| c.peer as NodeIdx).collect()
    }

    /// Creates a node (not started: connections to it are refused until it joins).
    pub fn add_node(&mut self) -> NodeIdx {
        let i = self.nodes.len();
        let mut raw = mix(self.cfg.seed ^ mix(i as u64));
        while self.index.contains_key(&PeerId(raw)) {
            raw = mix(raw);
        }
        let id = PeerId(raw);
        let ip = Ipv4Addr::new(10, (i >> 16) as u8, (i >> 8) as u8, i as u8);
        let member = Member { id, name: format!("n{i}"), addr: SocketAddr::from((ip, 7000)) };
        let seed = mix(raw ^ 0x5eed);
        let proto = (self.make)(member.clone(), seed);
        let tree = Plumtree::new(id, self.plumtree.clone(), mix(seed));
        self.index.insert(id, i as u32);
        self.nodes.push(Node { member, proto, tree, started: false, alive: false, group: 0, conns: Vec::new() });
        i
    }

    /// Starts `node` (if not started) at time `at` and feeds it `Input::Join` with these
    /// contacts. A crashed node stays down.
    pub fn join_at(&mut self, node: NodeIdx, at: Duration, contacts: &[NodeIdx]) {
        let contacts = contacts.iter().map(|c| *c as u32).collect();
        self.push(micros(at).max(self.now), Ev::Join { node: node as u32, contacts });
    }

    /// The configured seeds: `Command::NeedContacts` is answered with the live ones (or, when
    /// none is alive, with random live nodes, as if the seed name were re-pointed).
    pub fn set_seeds(&mut self, seeds: &[NodeIdx]) {
        self.seeds = seeds.iter().map(|s| *s as u32).collect();
    }

    /// Records [`Sim::connectivity`] every `every` from now on (`None` stops); see
    /// [`Sim::take_timeline`].
    pub fn sample_connectivity(&mut self, every: Option<Duration>) {
        self.sampling = every.map(|d| micros(d).max(1));
        if let (Some(d), false) = (self.sampling, self.sample_queued) {
            self.sample_queued = true;
            self.push(self.now + d, Ev::Sample);
        }
    }

    /// The connectivity samples recorded so far (time, shape), emptied.
    pub fn take_timeline(&mut self) -> Vec<(Duration, Connectivity)> {
        std::mem::take(&mut self.timeline)
    }

    /// Crashes a node now: it stops at once; its peers notice after the detection delay.
    pub fn crash(&mut self, node: NodeIdx) {
        let n = &mut self.nodes[node];
        if !n.alive {
            return;
        }
        n.alive = false;
        let conns = std::mem::take(&mut n.conns);
        for c in conns {
            let peer = c.peer as usize;
            if let Some(k) = self.nodes[peer].end(node as u32) {
                let end = &mut self.nodes[peer].conns[k];
                if end.epoch == c.epoch && !end.broken {
                    end.broken = true;
                    let d = micros(self.cfg.detect);
                    let at = self.now + d + self.rng.random_range(0..=d);
                    self.push(at, Ev::Closed { node: c.peer, peer: node as u32, epoch: c.epoch });
                }
            }
        }
    }

    /// Makes a node leave in an orderly way now (`Input::Leave`), then stops it.
    pub fn leave(&mut self, node: NodeIdx) {
        self.feed_membership(node, Input::Leave);
        // Whatever it did not close itself breaks like a crash.
        self.crash(node);
    }

    /// [`Sim::crash`] at time `at` (now if `at` is past).
    pub fn crash_at(&mut self, node: NodeIdx, at: Duration) {
        self.push(micros(at).max(self.now), Ev::Crash { node: node as u32 });
    }

    /// [`Sim::leave`] at time `at` (now if `at` is past).
    pub fn leave_at(&mut self, node: NodeIdx, at: Duration) {
        self.push(micros(at).max(self.now), Ev::Leave { node: node as u32 });
    }

    /// The partition group of a node (0 unless [`Sim::partition`] put it elsewhere).
    pub fn group(&self, node: NodeIdx) -> u32 {
        self.nodes[node].group
    }

    /// Splits the network: nodes in different groups cannot reach each other. Connections
    /// across groups break (both ends notice after `loss_detect`).
    pub fn partition(&mut self, group_of: impl Fn(NodeIdx) -> u32) {
        for (i, n) in self.nodes.iter_mut().enumerate() {
            n.group = group_of(i);
        }
        for i in 0..self.nodes.len() {
            let crossing: Vec<u32> = self.nodes[i]
                .conns
                .iter()
                .filter(|c| !c.broken && self.nodes[c.peer as usize].group != self.nodes[i].group)
                .map(|c| c.peer)
                .collect();
            for j in crossing {
                self.break_link(i as u32, j);
            }
        }
    }

    /// Ends any partition.
    pub fn heal(&mut self) {
        for n in &mut self.nodes {
            n.group = 0;
        }
    }

    /// Stops (or resumes) feeding `Input::Tick` to protocols: with ticks paused nothing
    /// periodic happens, so the system becomes quiet once the messages in flight are handled.
    pub fn pause_ticks(&mut self, paused: bool) {
        self.ticks_paused = paused;
    }

    /// Asks `node`'s Plumtree to broadcast now.
    pub fn broadcast(&mut self, node: NodeIdx, topic: Topic, payload: Bytes) {
        self.push(self.now, Ev::Broadcast { node: node as u32, topic, payload });
    }

    /// Runs every event up to time `t` (included) and sets the clock to `t`.
    pub fn run_until(&mut self, t: Duration) {
        let t = micros(t);
        while self.queue.peek().is_some_and(|Reverse(e)| e.at <= t) {
            let Some(Reverse(e)) = self.queue.pop() else { break };
            self.now = e.at;
            self.stats.events += 1;
            self.process(e.ev);
        }
        self.now = self.now.max(t);
    }

    /// Runs for `d` more.
    pub fn run_for(&mut self, d: Duration) {
        self.run_until(self.now() + d);
    }

    // ---- metrics -----------------------------------------------------------------------------

    /// Connected components of the active-view graph (edges in either direction) among live
    /// nodes.
    pub fn connectivity(&self) -> Connectivity {
        let n = self.nodes.len();
        let mut parent: Vec<usize> = (0..n).collect();
        fn find(p: &mut [usize], mut x: usize) -> usize {
            while p[x] != x {
                p[x] = p[p[x]];
                x = p[x];
            }
            x
        }
        let mut isolated = 0;
        for (i, node) in self.nodes.iter().enumerate().filter(|(_, n)| n.alive) {
            let nb = node.proto.neighbors();
            if nb.is_empty() {
                isolated += 1;
            }
            for id in nb {
                if let Some(j) = self.node_of(id).filter(|j| self.nodes[*j].alive) {
                    let (a, b) = (find(&mut parent, i), find(&mut parent, j));
                    if a != b {
                        parent[a] = b;
                    }
                }
            }
        }
        let mut size = vec![0usize; n];
        let mut live = 0;
        for i in 0..n {
            if self.nodes[i].alive {
                live += 1;
                let r = find(&mut parent, i);
                size[r] += 1;
            }
        }
        let components = size.iter().filter(|s| **s > 0).count();
        let largest = size.iter().copied().max().unwrap_or(0);
        Connectivity { live, components, largest, isolated }
    }

    /// How many live nodes have 0, 1, 2, ... neighbours.
    pub fn degree_histogram(&self) -> Vec<usize> {
        let mut h = Vec::new();
        for n in self.nodes.iter().filter(|n| n.alive) {
            let d = n.proto.neighbors().len();
            if h.len() <= d {
                h.resize(d + 1, 0);
            }
            h[d] += 1;
        }
        h
    }

    /// Active-view edges a→b between live nodes where b does not have a.
    pub fn asymmetric_edges(&self) -> usize {
        let mut count = 0;
        for n in self.nodes.iter().filter(|n| n.alive) {
            for id in n.proto.neighbors() {
                if let Some(j) = self.node_of(id).filter(|j| self.nodes[*j].alive) {
                    if !self.nodes[j].proto.neighbors().contains(&n.member.id) {
                        count += 1;
                    }
                }
            }
        }
        count
    }

    /// Broadcasts from `k` distinct random live nodes, `spacing` apart, runs `settle` past the
    /// last one, and measures what arrived among the nodes alive from the batch's start to its
    /// end (nodes that join or fail meanwhile do not count).
    pub fn broadcast_batch(&mut self, k: usize, spacing: Duration, settle: Duration) -> BatchStats {
        self.broadcast_batch_by_side(k, spacing, settle).0
    }

    /// [`Sim::broadcast_batch`], also measuring each broadcast within its origin's side of the
    /// partition (the live nodes in the origin's group: all of them when there is no partition).
    pub fn broadcast_batch_by_side(
        &mut self,
        k: usize,
        spacing: Duration,
        settle: Duration,
    ) -> (BatchStats, SideStats) {
        let mut live = self.live_nodes();
        let k = k.min(live.len());
        let mut senders = Vec::with_capacity(k);
        for _ in 0..k {
            let i = self.rng.random_range(0..live.len());
            senders.push(live.swap_remove(i));
        }
        let topic = Topic(self.next_topic);
        self.next_topic += 1;
        let origins = senders.iter().map(|s| (self.nodes[*s].member.id, *s)).collect();
        let alive_at_start = self.nodes.iter().map(|n| n.alive).collect();
        self.tracker = Some(Tracker::new(topic, origins, alive_at_start));
        let start = self.now;
        for (n, s) in senders.iter().enumerate() {
            let payload = Bytes::from(format!("{}:{n}", topic.0));
            let at = start + n as u64 * micros(spacing);
            self.push(at, Ev::Broadcast { node: *s as u32, topic, payload });
        }
        let end = start + k.saturating_sub(1) as u64 * micros(spacing) + micros(settle);
        self.run_until(Duration::from_micros(end));
        let alive: Vec<bool> = self.nodes.iter().map(|n| n.alive).collect();
        let group: Vec<u32> = self.nodes.iter().map(|n| n.group).collect();
        self.tracker.take().map(|t| t.finish(&alive, &group)).unwrap_or_default()
    }

    // ---- the driver --------------------------------------------------------------------------

    fn push(&mut self, at: u64, ev: Ev<M::Message>) {
        self.seq += 1;
        self.queue.push(Reverse(Entry { at, seq: self.seq, ev }));
    }

    fn base_delay(&self, a: u32, b: u32) -> u64 {
        let (lo, hi) = if a < b { (a, b) } else { (b, a) };
        let h = mix(self.cfg.seed ^ mix(((lo as u64) << 32) | hi as u64));
        let frac = (h >> 11) as f64 / (1u64 << 53) as f64;
        (micros(self.cfg.latency) as f64 * (0.5 + frac)) as u64
    }

    fn jitter(&mut self) -> u64 {
        let j = micros(self.cfg.jitter);
        if j == 0 {
            0
        } else {
            self.rng.random_range(0..j)
        }
    }

    fn process(&mut self, ev: Ev<M::Message>) {
        match ev {
            Ev::Deliver { to, from, epoch, msg } => {
                let n = &self.nodes[to as usize];
                let ok = n.alive && n.end(from).is_some_and(|k| n.conns[k].epoch == epoch && !n.conns[k].broken);
                if !ok {
                    return;
                }
                let from_id = self.nodes[from as usize].member.id;
                match msg {
                    Wire::Membership(msg) => {
                        self.stats.membership_messages += 1;
                        self.feed_membership(to as usize, Input::Message { from: from_id, msg });
                    }
                    Wire::Plumtree(msg) => {
                        self.stats.plumtree_messages += 1;
                        if msg.carries_payload() {
                            self.stats.payload_messages += 1;
                            if let Some(t) = &mut self.tracker {
                                t.payload_received(&msg);
                            }
                        }
                        self.feed_plumtree(to as usize, PlumtreeInput::Message { from: from_id, msg });
                    }
                }
            }
            Ev::LinkUp { a, b, epoch } => self.link_up(a, b, epoch),
            Ev::Answer { node, peer, ok } => {
                let n = &self.nodes[node as usize];
                if !n.alive {
                    return;
                }
                let connected = n.end(peer).is_some_and(|k| !n.conns[k].broken);
                if ok && connected {
                    let m = self.nodes[peer as usize].member.clone();
                    self.feed_membership(node as usize, Input::Connected(m));
                } else {
                    self.stats.connect_failures += 1;
                    let id = self.nodes[peer as usize].member.id;
                    self.feed_membership(node as usize, Input::ConnectFailed(id));
                }
            }
            Ev::Closed { node, peer, epoch } => {
                let n = &mut self.nodes[node as usize];
                if !n.alive {
                    return;
                }
                if let Some(k) = n.end(peer).filter(|k| n.conns[*k].epoch == epoch) {
                    n.conns.swap_remove(k);
                    let id = self.nodes[peer as usize].member.id;
                    self.feed_membership(node as usize, Input::Disconnected(id));
                }
            }
            Ev::Tick { node } => {
                if !self.nodes[node as usize].alive {
                    return;
                }
                if !self.ticks_paused {
                    self.feed_membership(node as usize, Input::Tick);
                }
                let every = micros(self.nodes[node as usize].proto.tick_interval()).max(1);
                self.push(self.now + every, Ev::Tick { node });
            }
            Ev::PlumtreeTick { node } => {
                if !self.nodes[node as usize].alive {
                    return;
                }
                if !self.ticks_paused {
                    self.feed_plumtree(node as usize, PlumtreeInput::Tick);
                }
                let every = micros(self.nodes[node as usize].tree.tick_interval()).max(1);
                self.push(self.now + every, Ev::PlumtreeTick { node });
            }
            Ev::Join { node, contacts } => {
                let i = node as usize;
                if !self.nodes[i].started {
                    self.nodes[i].started = true;
                    self.nodes[i].alive = true;
                    let every = micros(self.nodes[i].proto.tick_interval()).max(1);
                    let phase = self.rng.random_range(0..every);
                    self.push(self.now + phase, Ev::Tick { node });
                    let every = micros(self.nodes[i].tree.tick_interval()).max(1);
                    let phase = self.rng.random_range(0..every);
                    self.push(self.now + phase, Ev::PlumtreeTick { node });
                }
                let members = contacts.iter().map(|c| self.nodes[*c as usize].member.clone()).collect();
                self.feed_membership(i, Input::Join(members));
            }
            Ev::Sample => {
                self.sample_queued = false;
                if let Some(every) = self.sampling {
                    let c = self.connectivity();
                    self.timeline.push((Duration::from_micros(self.now), c));
                    self.sample_queued = true;
                    self.push(self.now + every, Ev::Sample);
                }
            }
            Ev::Broadcast { node, topic, payload } => {
                if self.nodes[node as usize].alive {
                    self.feed_plumtree(node as usize, PlumtreeInput::Broadcast { topic, payload });
                }
            }
            Ev::Crash { node } => self.crash(node as usize),
            Ev::Leave { node } => {
                if self.nodes[node as usize].alive {
                    self.leave(node as usize);
                }
            }
        }
    }

    fn link_up(&mut self, a: u32, b: u32, epoch: u64) {
        let key = (a.min(b), a.max(b));
        if self.pending.get(&key) == Some(&epoch) {
            self.pending.remove(&key);
        }
        if !self.nodes[a as usize].alive {
            return;
        }
        if !self.nodes[b as usize].alive || self.nodes[a as usize].group != self.nodes[b as usize].group {
            self.stats.connect_failures += 1;
            let id = self.nodes[b as usize].member.id;
            self.feed_membership(a as usize, Input::ConnectFailed(id));
            return;
        }
        // A half-open old connection (closed by the other side, not noticed yet) ends first.
        for (x, y) in [(a, b), (b, a)] {
            if let Some(k) = self.nodes[x as usize].end(y) {
                self.nodes[x as usize].conns.swap_remove(k);
                let id = self.nodes[y as usize].member.id;
                self.feed_membership(x as usize, Input::Disconnected(id));
            }
        }
        let now = self.now;
        self.nodes[a as usize].conns.push(ConnEnd { peer: b, epoch, broken: false, out_arrival: now });
        self.nodes[b as usize].conns.push(ConnEnd { peer: a, epoch, broken: false, out_arrival: now });
        let (ma, mb) = (self.nodes[a as usize].member.clone(), self.nodes[b as usize].member.clone());
        self.feed_membership(a as usize, Input::Connected(mb));
        self.feed_membership(b as usize, Input::Connected(ma));
    }

    fn break_link(&mut self, a: u32, b: u32) {
        let Some(ka) = self.nodes[a as usize].end(b) else { return };
        let epoch = self.nodes[a as usize].conns[ka].epoch;
        self.nodes[a as usize].conns[ka].broken = true;
        if let Some(kb) = self.nodes[b as usize].end(a).filter(|k| self.nodes[b as usize].conns[*k].epoch == epoch) {
            self.nodes[b as usize].conns[kb].broken = true;
        }
        self.stats.broken_links += 1;
        let at = self.now + micros(self.cfg.loss_detect);
        self.push(at, Ev::Closed { node: a, peer: b, epoch });
        self.push(at, Ev::Closed { node: b, peer: a, epoch });
    }

    fn transmit(&mut self, from: usize, to: PeerId, msg: Wire<M::Message>) {
        let Some(j) = self.index.get(&to).copied() else {
            self.stats.dropped_sends += 1;
            return;
        };
        let Some(k) = self.nodes[from].end(j).filter(|k| !self.nodes[from].conns[*k].broken) else {
            self.stats.dropped_sends += 1;
            return;
        };
        if self.cfg.loss > 0.0 && self.rng.random_bool(self.cfg.loss.min(1.0)) {
            self.break_link(from as u32, j);
            return;
        }
        let base = self.base_delay(from as u32, j);
        let jit = self.jitter();
        let end = &mut self.nodes[from].conns[k];
        let at = (self.now + base + jit).max(end.out_arrival + 1);
        end.out_arrival = at;
        let epoch = end.epoch;
        self.push(at, Ev::Deliver { to: j, from: from as u32, epoch, msg });
    }

    fn connect(&mut self, from: usize, to: &Member) {
        self.stats.connects += 1;
        let a = from as u32;
        let Some(b) = self.index.get(&to.id).copied() else {
            // Every member a protocol can learn of is a simulated node; an unknown one is a bug.
            self.stats.dropped_sends += 1;
            return;
        };
        if a == b {
            self.push(self.now, Ev::Answer { node: a, peer: b, ok: false });
            return;
        }
        if self.nodes[from].end(b).is_some_and(|k| !self.nodes[from].conns[k].broken) {
            self.push(self.now, Ev::Answer { node: a, peer: b, ok: true });
            return;
        }
        let key = (a.min(b), a.max(b));
        if self.pending.contains_key(&key) {
            return; // the link coming up answers both ends
        }
        let rtt = 2 * self.base_delay(a, b);
        if !self.nodes[b as usize].alive {
            self.push(self.now + rtt, Ev::Answer { node: a, peer: b, ok: false });
            return;
        }
        if self.nodes[b as usize].group != self.nodes[from].group {
            let at = self.now + micros(self.cfg.connect_timeout);
            self.push(at, Ev::Answer { node: a, peer: b, ok: false });
            return;
        }
        let epoch = self.next_epoch;
        self.next_epoch += 1;
        self.pending.insert(key, epoch);
        let at = self.now + rtt + self.jitter();
        self.push(at, Ev::LinkUp { a, b, epoch });
    }

    fn close(&mut self, from: usize, peer: PeerId) {
        let Some(j) = self.index.get(&peer).copied() else { return };
        let Some(k) = self.nodes[from].end(j) else { return };
        let end = self.nodes[from].conns.swap_remove(k);
        if end.broken {
            return; // the other end learns from the break
        }
        let at = (self.now + self.base_delay(from as u32, j)).max(end.out_arrival + 1);
        self.push(at, Ev::Closed { node: j, peer: from as u32, epoch: end.epoch });
    }

    fn need_contacts(&mut self, node: usize) {
        self.stats.need_contacts += 1;
        let mut contacts: Vec<u32> = self
            .seeds
            .iter()
            .copied()
            .filter(|s| *s as usize != node && self.nodes[*s as usize].alive)
            .take(self.cfg.contacts)
            .collect();
        if !contacts.is_empty() {
            let at = self.now + micros(self.cfg.contacts_delay);
            self.push(at, Ev::Join { node: node as u32, contacts });
            return;
        }
        let n = self.nodes.len();
        for _ in 0..64 {
            if contacts.len() >= self.cfg.contacts {
                break;
            }
            let c = self.rng.random_range(0..n);
            if c != node && self.nodes[c].alive && !contacts.contains(&(c as u32)) {
                contacts.push(c as u32);
            }
        }
        let at = self.now + micros(self.cfg.contacts_delay);
        self.push(at, Ev::Join { node: node as u32, contacts });
    }

    fn feed_membership(&mut self, node: usize, input: Input<M::Message>) {
        if !self.nodes[node].alive {
            return;
        }
        let mut out = std::mem::take(&mut self.mbuf);
        self.nodes[node].proto.handle(input, Duration::from_micros(self.now), &mut out);
        for cmd in out.drain(..) {
            match cmd {
                Command::Send { to, msg } => self.transmit(node, to, Wire::Membership(msg)),
                Command::Connect(m) => self.connect(node, &m),
                Command::Disconnect(id) => self.close(node, id),
                Command::NeedContacts => self.need_contacts(node),
                Command::Event(ev) => match ev {
                    MembershipEvent::NeighborUp(m) => self.feed_plumtree(node, PlumtreeInput::NeighborUp(m.id)),
                    MembershipEvent::NeighborDown(id) => self.feed_plumtree(node, PlumtreeInput::NeighborDown(id)),
                    MembershipEvent::MemberUp(_) => self.stats.member_up += 1,
                    MembershipEvent::MemberDown { .. } => self.stats.member_down += 1,
                },
            }
        }
        self.mbuf = out;
    }

    fn feed_plumtree(&mut self, node: usize, input: PlumtreeInput) {
        let mut out = std::mem::take(&mut self.pbuf);
        self.nodes[node].tree.handle(input, Duration::from_micros(self.now), &mut out);
        for o in out.drain(..) {
            match o {
                PlumtreeOutput::Send { to, msg } => self.transmit(node, to, Wire::Plumtree(msg)),
                PlumtreeOutput::Deliver { topic, id, hops, .. } => {
                    self.stats.deliveries += 1;
                    if let Some(t) = &mut self.tracker {
                        t.delivered(topic, id, node, hops);
                    }
                }
            }
        }
        self.pbuf = out;
    }
}
