//! Plumtree across many instances: a tiny in-test network that routes outputs between N nodes
//! with seeded latency (so reordering), optional loss of chosen message kinds, silent partitions,
//! crashes and late joins.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use troupe_overlay::plumtree::{
    MessageId, Plumtree, PlumtreeConfig, PlumtreeInput, PlumtreeMessage, PlumtreeOutput, PlumtreeStats, Topic,
};
use troupe_overlay::PeerId;

fn pid(i: usize) -> PeerId {
    PeerId(1000 + i as u64)
}

fn idx(p: PeerId) -> usize {
    (p.0 - 1000) as usize
}

enum Event {
    Deliver { from: usize, to: usize, msg: PlumtreeMessage },
    Tick,
}

struct Net {
    nodes: Vec<Plumtree>,
    alive: Vec<bool>,
    adj: Vec<BTreeSet<usize>>,
    /// Partition group per node; messages between groups are dropped silently.
    group: Vec<u8>,
    events: BinaryHeap<Reverse<(Duration, u64)>>,
    payloads: HashMap<u64, Event>,
    next_event: u64,
    now: Duration,
    rng: StdRng,
    latency_ms: (u64, u64),
    /// Drop probability per message kind.
    loss: HashMap<&'static str, f64>,
    /// Deliveries per node: id -> how many times.
    delivered: Vec<HashMap<MessageId, u32>>,
    /// Payload messages (gossip + repair) sent per message id.
    payload_sends: HashMap<MessageId, u64>,
    tick: Duration,
    sent_by_kind: HashMap<&'static str, u64>,
    trace: Option<(usize, usize)>,
}

impl Net {
    fn new(n: usize, config: PlumtreeConfig, seed: u64) -> Net {
        let tick = config.tick_interval;
        let nodes = (0..n)
            .map(|i| Plumtree::new(pid(i), config.clone(), seed.wrapping_mul(7919).wrapping_add(i as u64)))
            .collect();
        let mut net = Net {
            nodes,
            alive: vec![true; n],
            adj: vec![BTreeSet::new(); n],
            group: vec![0; n],
            events: BinaryHeap::new(),
            payloads: HashMap::new(),
            next_event: 0,
            now: Duration::ZERO,
            rng: StdRng::seed_from_u64(seed),
            latency_ms: (1, 30),
            loss: HashMap::new(),
            delivered: vec![HashMap::new(); n],
            payload_sends: HashMap::new(),
            tick,
            sent_by_kind: HashMap::new(),
            trace: None,
        };
        net.schedule(tick, Event::Tick);
        net
    }

    fn schedule(&mut self, at: Duration, ev: Event) {
        let k = self.next_event;
        self.next_event += 1;
        self.events.push(Reverse((at, k)));
        self.payloads.insert(k, ev);
    }

    fn connect(&mut self, a: usize, b: usize) {
        if a == b || self.adj[a].contains(&b) {
            return;
        }
        self.adj[a].insert(b);
        self.adj[b].insert(a);
        self.input(a, PlumtreeInput::NeighborUp(pid(b)));
        self.input(b, PlumtreeInput::NeighborUp(pid(a)));
    }

    fn disconnect(&mut self, a: usize, b: usize) {
        if !self.adj[a].remove(&b) {
            return;
        }
        self.adj[b].remove(&a);
        self.input(a, PlumtreeInput::NeighborDown(pid(b)));
        self.input(b, PlumtreeInput::NeighborDown(pid(a)));
    }

    /// The node crashes: its neighbours see its links go down.
    fn crash(&mut self, a: usize) {
        let peers: Vec<usize> = self.adj[a].iter().copied().collect();
        for b in peers {
            self.disconnect(a, b);
        }
        self.alive[a] = false;
    }

    fn input(&mut self, i: usize, input: PlumtreeInput) {
        if !self.alive[i] {
            return;
        }
        let mut out = Vec::new();
        self.nodes[i].handle(input, self.now, &mut out);
        for o in out {
            match o {
                PlumtreeOutput::Deliver { id, .. } => *self.delivered[i].entry(id).or_default() += 1,
                PlumtreeOutput::Send { to, msg } => self.send(i, idx(to), msg),
            }
        }
    }

    fn send(&mut self, from: usize, to: usize, msg: PlumtreeMessage) {
        *self.sent_by_kind.entry(msg.kind()).or_default() += 1;
        if let PlumtreeMessage::Gossip { id, .. } | PlumtreeMessage::Repair { id, .. } = &msg {
            *self.payload_sends.entry(*id).or_default() += 1;
        }
        // A send to a non-neighbour is dropped, like the real driver does.
        if to >= self.nodes.len() || !self.adj[from].contains(&to) {
            return;
        }
        let lost = self.loss.get(msg.kind()).is_some_and(|p| self.rng.random_bool(*p));
        if let Some((a, b)) = self.trace {
            if (from, to) == (a, b) || (from, to) == (b, a) {
                eprintln!("{:?} {from}->{to} lost={lost} {:?}", self.now, msg);
            }
        }
        if lost {
            return;
        }
        let lat = self.rng.random_range(self.latency_ms.0..=self.latency_ms.1);
        let at = self.now + Duration::from_millis(lat);
        self.schedule(at, Event::Deliver { from, to, msg });
    }

    fn broadcast(&mut self, i: usize, payload: &'static [u8]) -> MessageId {
        let mut out = Vec::new();
        let id = self.nodes[i]
            .broadcast(Topic(1), Bytes::from_static(payload), self.now, &mut out)
            .expect("payload within limits");
        for o in out {
            match o {
                PlumtreeOutput::Deliver { id, .. } => *self.delivered[i].entry(id).or_default() += 1,
                PlumtreeOutput::Send { to, msg } => self.send(i, idx(to), msg),
            }
        }
        id
    }

    /// Runs every event up to `until`.
    fn run_until(&mut self, until: Duration) {
        while let Some(Reverse((at, k))) = self.events.peek().copied() {
            if at > until {
                break;
            }
            self.events.pop();
            self.now = at;
            let Some(ev) = self.payloads.remove(&k) else { continue };
            match ev {
                Event::Deliver { from, to, msg } => {
                    if self.alive[to] && self.group[from] == self.group[to] && self.adj[to].contains(&from) {
                        self.input(to, PlumtreeInput::Message { from: pid(from), msg });
                    }
                }
                Event::Tick => {
                    for i in 0..self.nodes.len() {
                        self.input(i, PlumtreeInput::Tick);
                    }
                    let next = at + self.tick;
                    self.schedule(next, Event::Tick);
                }
            }
        }
        self.now = until;
    }

    fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    fn assert_no_duplicates(&self) {
        for (i, d) in self.delivered.iter().enumerate() {
            for (id, n) in d {
                assert_eq!(*n, 1, "node {i} delivered {id} {n} times");
            }
        }
    }

    /// Nodes that did not deliver `id`, among the live ones.
    fn missing(&self, id: &MessageId) -> Vec<usize> {
        (0..self.nodes.len()).filter(|&i| self.alive[i] && !self.delivered[i].contains_key(id)).collect()
    }

    fn total(&self) -> PlumtreeStats {
        let mut t = PlumtreeStats::default();
        for n in &self.nodes {
            let s = n.stats();
            t.graft_sent += s.graft_sent;
            t.repaired += s.repaired;
            t.duplicates += s.duplicates;
            t.prune_sent += s.prune_sent;
            t.optimization_grafts += s.optimization_grafts;
            t.gossip_sent += s.gossip_sent;
        }
        t
    }

    /// Connected components of the eager graph (links both ends consider eager) among live nodes.
    fn eager_components(&self) -> usize {
        let eager: Vec<BTreeSet<usize>> = self.nodes.iter().map(|p| p.eager_peers().map(idx).collect()).collect();
        let mut seen = vec![false; self.nodes.len()];
        let mut comps = 0;
        for s in 0..self.nodes.len() {
            if seen[s] || !self.alive[s] {
                continue;
            }
            comps += 1;
            seen[s] = true;
            let mut q = VecDeque::from([s]);
            while let Some(x) = q.pop_front() {
                for &y in &eager[x] {
                    if self.alive[y] && eager[y].contains(&x) && !seen[y] {
                        seen[y] = true;
                        q.push_back(y);
                    }
                }
            }
        }
        comps
    }

    /// Nodes reachable from `a` over live links.
    fn component(&self, a: usize) -> BTreeSet<usize> {
        let mut seen = BTreeSet::from([a]);
        let mut q = VecDeque::from([a]);
        while let Some(x) = q.pop_front() {
            for &y in &self.adj[x] {
                if self.alive[y] && seen.insert(y) {
                    q.push_back(y);
                }
            }
        }
        seen
    }
}

#[derive(Clone, Copy, Debug)]
enum Shape {
    /// A random spanning tree plus random extra links (HyParView-like partial views).
    Random { extra_per_node: usize },
    /// Everyone linked to everyone (full mesh).
    FullMesh,
    /// A ring (a static overlay at its sparsest with cycles).
    Ring,
    /// Clients linked to one of a few meshed servers (client-server).
    ClientServer { servers: usize },
}

fn build(net: &mut Net, shape: Shape, rng: &mut StdRng) {
    let n = net.nodes.len();
    match shape {
        Shape::Random { extra_per_node } => {
            for i in 1..n {
                let j = rng.random_range(0..i);
                net.connect(i, j);
            }
            for _ in 0..extra_per_node * n / 2 {
                let (a, b) = (rng.random_range(0..n), rng.random_range(0..n));
                net.connect(a, b);
            }
        }
        Shape::FullMesh => {
            for a in 0..n {
                for b in a + 1..n {
                    net.connect(a, b);
                }
            }
        }
        Shape::Ring => {
            for a in 0..n {
                net.connect(a, (a + 1) % n);
            }
        }
        Shape::ClientServer { servers } => {
            let servers = servers.clamp(1, n);
            for a in 0..servers {
                for b in a + 1..servers {
                    net.connect(a, b);
                }
            }
            for c in servers..n {
                let s = rng.random_range(0..servers);
                net.connect(c, s);
            }
        }
    }
}

fn quiet_config() -> PlumtreeConfig {
    PlumtreeConfig::default()
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn shape_strategy() -> impl Strategy<Value = Shape> {
    prop_oneof![
        (0usize..5).prop_map(|e| Shape::Random { extra_per_node: e }),
        Just(Shape::FullMesh),
        Just(Shape::Ring),
        (1usize..4).prop_map(|s| Shape::ClientServer { servers: s }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    /// Every broadcast reaches every node of a connected graph exactly once, whatever the shape,
    /// with reordering (random latency) and concurrent broadcasts from several origins.
    #[test]
    fn every_broadcast_reaches_every_node(seed in any::<u64>(), n in 2usize..40, shape in shape_strategy()) {
        let n = if matches!(shape, Shape::FullMesh) { n.min(16) } else { n };
        let mut net = Net::new(n, quiet_config(), seed);
        every_broadcast_arrives_within(&mut net, seed, n, shape)?;
    }
}

/// Eight broadcasts from random origins, half of them overlapping in flight: each reaches every
/// node exactly once within [`REPAIR_BOUND`].
fn every_broadcast_arrives_within(net: &mut Net, seed: u64, n: usize, shape: Shape) -> Result<(), TestCaseError> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0xabcdef);
    build(net, shape, &mut rng);
    let mut ids = Vec::new();
    for round in 0..8 {
        let origin = rng.random_range(0..n);
        ids.push(net.broadcast(origin, b"payload"));
        // Half the broadcasts overlap in flight.
        if round % 2 == 1 {
            net.run_for(Duration::from_millis(200));
        }
    }
    net.run_for(REPAIR_BOUND);
    for id in &ids {
        prop_assert!(net.missing(id).is_empty(), "{} missing at {:?} ({:?})", id, net.missing(id), shape);
    }
    net.assert_no_duplicates();
    Ok(())
}

/// How long a lossless network may take to deliver everything. Concurrent broadcasts from
/// several origins share one tree, and two nodes that forward the same message to each other at
/// once prune each other: such prunes can cut off a subtree several hops deep, which the lazy
/// path repairs one hop at a time (a lazy tick, then the graft timeout: ~2 s per hop with the
/// defaults). 5 s was too short for seed 14530671149286854892 (`cut_off_subtree_is_repaired`).
const REPAIR_BOUND: Duration = Duration::from_secs(20);

/// The case that showed 5 s was too short: node 27 (neighbours 11 and 26) was cut off with
/// neighbour 11, and got the last five broadcasts only after ~6.3 s.
#[test]
fn cut_off_subtree_is_repaired() {
    let (seed, n) = (14530671149286854892u64, 37usize);
    let mut net = Net::new(n, quiet_config(), seed);
    every_broadcast_arrives_within(&mut net, seed, n, Shape::Random { extra_per_node: 4 }).expect("all delivered");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    /// Every kind of message may be lost (10-20%) and reordered: the lazy path and
    /// anti-entropy still bring every broadcast to every node, exactly once. Where there are no
    /// lazy links (a bare tree, a star) repair rests on anti-entropy alone: each exchange visits
    /// one link every 10 s and loses one of its three steps up to half the time, so the test
    /// gives it 20 simulated minutes (and a cache that keeps messages that long).
    #[test]
    fn every_broadcast_arrives_despite_loss_of_any_message(
        seed in any::<u64>(),
        n in 2usize..30,
        shape in shape_strategy(),
        loss in 0.1f64..0.2,
    ) {
        let n = if matches!(shape, Shape::FullMesh) { n.min(12) } else { n };
        let config = PlumtreeConfig {
            message_ttl: secs(1800),
            origin_idle_ttl: secs(3600),
            ..PlumtreeConfig::default()
        };
        let mut net = Net::new(n, config, seed);
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
        build(&mut net, shape, &mut rng);
        net.latency_ms = (1, 200);
        for kind in ["gossip", "ihave", "graft", "prune", "digest", "digest_reply", "request", "repair"] {
            net.loss.insert(kind, loss);
        }
        let mut ids = Vec::new();
        for _ in 0..10 {
            ids.push(net.broadcast(rng.random_range(0..n), b"lossy"));
            net.run_for(Duration::from_millis(150));
        }
        net.run_for(secs(1200));
        for id in &ids {
            prop_assert!(net.missing(id).is_empty(), "{} missing at {:?} ({:?})", id, net.missing(id), shape);
        }
        net.assert_no_duplicates();
    }
}

/// Payload messages per broadcast once the tree has formed, over `n - 1` (the minimum).
fn redundancy(n: usize, extra: usize, broadcasts: usize, optimization: Option<u32>, seed: u64) -> (f64, f64) {
    let config = PlumtreeConfig { optimization_threshold: optimization, ..PlumtreeConfig::default() };
    let mut net = Net::new(n, config, seed);
    let mut rng = StdRng::seed_from_u64(seed);
    build(&mut net, Shape::Random { extra_per_node: extra }, &mut rng);
    let mut ids = Vec::new();
    for _ in 0..broadcasts {
        let origin = rng.random_range(0..n);
        ids.push(net.broadcast(origin, b"x"));
        net.run_for(Duration::from_millis(300));
    }
    net.run_for(secs(5));
    for id in &ids {
        assert!(net.missing(id).is_empty(), "{id} missing");
    }
    net.assert_no_duplicates();
    let per = |ids: &[MessageId]| {
        let total: u64 = ids.iter().map(|id| net.payload_sends.get(id).copied().unwrap_or(0)).sum();
        total as f64 / ids.len() as f64 / (n - 1) as f64
    };
    let first = per(&ids[..1]);
    let last = per(&ids[ids.len() - 100..]);
    (first, last)
}

/// The tree prunes itself: the first broadcast floods every link, later ones cost about
/// `n - 1` payload messages.
#[test]
fn redundancy_drops_to_near_zero_once_the_tree_forms() {
    let n = 60;
    let (first, last) = redundancy(n, 4, 300, None, 11);
    eprintln!("n={n} degree~5: payload msgs per broadcast / (n-1): first {first:.3}, last 100 {last:.3}");
    assert!(first > 2.0, "the first broadcast should flood (got {first})");
    assert!(last < 1.02, "redundancy after stabilising should be near 0 (got {last})");
    // The hop-count optimisation (off by default) keeps delivering everything exactly once,
    // but swaps links all the time with many origins; measured, not required to be efficient.
    let (first, last) = redundancy(n, 4, 300, Some(3), 11);
    eprintln!("  with optimization_threshold=3: first {first:.3}, last 100 {last:.3}");
}

/// With 20% of Gossip messages lost, IHAVE/GRAFT recovers every message (anti-entropy is off,
/// so only the lazy path can do it).
#[test]
fn lost_gossip_is_recovered_by_ihave_and_graft() {
    let config = PlumtreeConfig { anti_entropy_interval: secs(100_000), ..PlumtreeConfig::default() };
    let n = 40;
    let mut net = Net::new(n, config, 5);
    let mut rng = StdRng::seed_from_u64(5);
    build(&mut net, Shape::Random { extra_per_node: 4 }, &mut rng);
    net.loss.insert("gossip", 0.2);
    let mut ids = Vec::new();
    for _ in 0..100 {
        let origin = rng.random_range(0..n);
        ids.push(net.broadcast(origin, b"lossy"));
        net.run_for(Duration::from_millis(100));
    }
    net.run_for(secs(20));
    for id in &ids {
        assert!(net.missing(id).is_empty(), "{id} missing at {:?}", net.missing(id));
    }
    net.assert_no_duplicates();
    let t = net.total();
    eprintln!("20% gossip loss, n={n}, 100 broadcasts: grafts sent {}", t.graft_sent);
    assert!(t.graft_sent > 0);
    assert!(!net.sent_by_kind.contains_key("digest"), "anti-entropy must not have run");
}

/// Messages broadcast on both sides of a partition reach the other side after it heals, through
/// anti-entropy (the lazy announcements were lost in the partition too).
#[test]
fn anti_entropy_repairs_a_healed_partition() {
    let n = 30;
    let mut net = Net::new(n, quiet_config(), 9);
    let mut rng = StdRng::seed_from_u64(9);
    build(&mut net, Shape::Random { extra_per_node: 3 }, &mut rng);
    for _ in 0..10 {
        net.broadcast(rng.random_range(0..n), b"before");
        net.run_for(Duration::from_millis(300));
    }
    for i in n / 2..n {
        net.group[i] = 1;
    }
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(net.broadcast(rng.random_range(0..n), b"during"));
        net.run_for(Duration::from_millis(500));
    }
    net.run_for(secs(5));
    let missed: usize = ids.iter().map(|id| net.missing(id).len()).sum();
    assert!(missed > 0, "the partition should have cut something off");
    net.group = vec![0; n];
    net.run_for(secs(60));
    for id in &ids {
        assert!(net.missing(id).is_empty(), "{id} missing at {:?}", net.missing(id));
    }
    net.assert_no_duplicates();
    let t = net.total();
    eprintln!("partition: {missed} (node, message) pairs missed; after heal repaired by anti-entropy: {}", t.repaired);
    assert!(t.repaired > 0);
}

/// A node that joins after messages were broadcast gets them by anti-entropy.
#[test]
fn a_late_joiner_catches_up() {
    let n = 12;
    let mut net = Net::new(n, quiet_config(), 21);
    let mut rng = StdRng::seed_from_u64(21);
    for i in 1..n - 1 {
        let j = rng.random_range(0..i);
        net.connect(i, j);
    }
    let ids: Vec<MessageId> = (0..15).map(|k| net.broadcast(k % (n - 1), b"early")).collect();
    net.run_for(secs(3));
    assert_eq!(net.delivered[n - 1].len(), 0);
    net.connect(n - 1, 0);
    net.connect(n - 1, 5);
    net.run_for(secs(30));
    for id in &ids {
        assert!(net.delivered[n - 1].contains_key(id), "late joiner lacks {id}");
    }
    net.assert_no_duplicates();
}

/// Crashed nodes and flapping links: every broadcast still reaches the live nodes connected to
/// its origin, and nothing is delivered twice.
#[test]
fn crashes_and_link_churn() {
    let n = 50;
    let mut net = Net::new(n, quiet_config(), 33);
    let mut rng = StdRng::seed_from_u64(33);
    build(&mut net, Shape::Random { extra_per_node: 4 }, &mut rng);
    net.loss.insert("gossip", 0.05);
    net.loss.insert("ihave", 0.05);
    let mut checks: Vec<(MessageId, usize)> = Vec::new();
    for round in 0..200 {
        if round % 20 == 10 {
            let victim = rng.random_range(0..n);
            net.crash(victim);
        }
        if round % 7 == 3 {
            let a = rng.random_range(0..n);
            if let Some(&b) = net.adj[a].iter().next() {
                net.disconnect(a, b);
                net.run_for(Duration::from_millis(50));
                let c = rng.random_range(0..n);
                if net.alive[a] && net.alive[c] {
                    net.connect(a, c);
                }
            }
        }
        let origin = rng.random_range(0..n);
        if net.alive[origin] {
            checks.push((net.broadcast(origin, b"churn"), origin));
        }
        net.run_for(Duration::from_millis(200));
    }
    net.run_for(secs(30));
    // Checked against the final topology: a node cut off since then may legitimately miss it.
    let mut reached = 0;
    for (id, origin) in &checks {
        if !net.alive[*origin] {
            continue;
        }
        let comp = net.component(*origin);
        for &i in &comp {
            assert!(net.delivered[i].contains_key(id), "node {i} lacks {id}");
            reached += 1;
        }
    }
    assert!(reached > 1000);
    net.assert_no_duplicates();
}

/// Over 10,000 broadcasts (with loss, so the seen-set sees gaps) the cache, the seen-set, the
/// lazy queues and the missing table stay within their limits, and nothing is delivered twice.
#[test]
fn memory_stays_bounded_over_10k_broadcasts() {
    bounded_run(
        PlumtreeConfig {
            cache_max_messages: 4000,
            message_ttl: secs(30),
            origin_idle_ttl: secs(60),
            max_seen_intervals: 256,
            max_intervals_per_origin: 64,
            max_missing: 256,
            max_lazy_queue: 256,
            ..PlumtreeConfig::default()
        },
        true,
    );
}

/// The same with seen-set limits too small for the gaps loss creates: the limits hold by
/// abandoning gaps early (so a few messages are lost), and still nothing is delivered twice.
#[test]
fn tight_seen_limits_hold_and_never_duplicate() {
    bounded_run(
        PlumtreeConfig {
            cache_max_messages: 1000,
            message_ttl: secs(20),
            origin_idle_ttl: secs(40),
            max_seen_intervals: 24,
            max_intervals_per_origin: 4,
            max_missing: 256,
            max_lazy_queue: 256,
            ..PlumtreeConfig::default()
        },
        false,
    );
}

fn bounded_run(config: PlumtreeConfig, expect_all: bool) {
    let limits = config.clone();
    let n = 12;
    let mut net = Net::new(n, config, 77);
    let mut rng = StdRng::seed_from_u64(77);
    build(&mut net, Shape::Random { extra_per_node: 3 }, &mut rng);
    net.loss.insert("gossip", 0.1);
    net.loss.insert("ihave", 0.1);
    let mut max = PlumtreeStats::default();
    for k in 0..10_000u32 {
        net.broadcast(rng.random_range(0..n), b"m");
        net.run_for(Duration::from_millis(10));
        if k % 100 == 0 {
            for node in &net.nodes {
                let s = node.stats();
                max.cache_messages = max.cache_messages.max(s.cache_messages);
                max.seen_intervals = max.seen_intervals.max(s.seen_intervals);
                max.seen_origins = max.seen_origins.max(s.seen_origins);
                max.missing = max.missing.max(s.missing);
                max.lazy_queued = max.lazy_queued.max(s.lazy_queued);
                max.seen_forced_closes = max.seen_forced_closes.max(s.seen_forced_closes);
            }
        }
    }
    net.run_for(secs(30));
    net.assert_no_duplicates();
    eprintln!(
        "10k broadcasts, n={n}: max cache {}, seen intervals {}, origins {}, missing {}, lazy queued {}, forced closes {}",
        max.cache_messages, max.seen_intervals, max.seen_origins, max.missing, max.lazy_queued, max.seen_forced_closes
    );
    assert!(max.cache_messages <= limits.cache_max_messages as u64);
    assert!(max.seen_intervals <= limits.max_seen_intervals as u64);
    assert!(max.seen_origins <= n as u64);
    assert!(max.missing <= limits.max_missing as u64);
    assert!(max.lazy_queued <= (limits.max_lazy_queue * n) as u64);
    let delivered: usize = net.delivered.iter().map(|d| d.len()).sum();
    if expect_all {
        assert_eq!(max.seen_forced_closes, 0);
        assert_eq!(delivered, 10_000 * n, "every node delivers every message");
    } else {
        assert!(max.seen_forced_closes > 0, "the limits should have been hit");
        assert!(delivered as f64 > 0.5 * 10_000.0 * n as f64, "delivered only {delivered}");
    }
    eprintln!("  delivered {delivered} of {}", 10_000 * n);
    // Long after the last broadcast, every entry has aged out of the cache.
    net.run_for(limits.message_ttl);
    assert!(net.nodes.iter().all(|p| p.stats().cache_messages == 0 && p.stats().seen_intervals == 0));
}

/// A report, not a check: how the tree evolves over 300 broadcasts (components of the eager
/// graph, payload sends, grafts, prunes) with and without the hop-count optimisation and with
/// loss. Run with `cargo test -p troupe-overlay --release --test plumtree tree_report -- --ignored --nocapture`.
#[test]
#[ignore]
fn tree_report() {
    for (opt, loss) in [(None, 0.0), (Some(3), 0.0), (None, 0.05)] {
        let config = PlumtreeConfig { optimization_threshold: opt, ..PlumtreeConfig::default() };
        let n = 60;
        let mut net = Net::new(n, config, 11);
        let mut rng = StdRng::seed_from_u64(11);
        build(&mut net, Shape::Random { extra_per_node: 4 }, &mut rng);
        net.loss.insert("gossip", loss);
        for k in 0..300 {
            let origin = rng.random_range(0..n);
            let id = net.broadcast(origin, b"x");
            net.run_for(Duration::from_millis(300));
            if k % 30 == 0 {
                let t = net.total();
                let reach = net.delivered.iter().filter(|d| d.contains_key(&id)).count();
                eprintln!(
                    "opt={opt:?} loss={loss} k={k}: eager components {}, reached in 300 ms {reach}/{n}, payload sends {}, \
                     grafts {} (optimisation {}), prunes {}, duplicates {}",
                    net.eager_components(),
                    net.payload_sends.get(&id).copied().unwrap_or(0),
                    t.graft_sent,
                    t.optimization_grafts,
                    t.prune_sent,
                    t.duplicates
                );
            }
        }
        net.run_for(secs(10));
        for d in &net.delivered {
            assert_eq!(d.len(), 300);
        }
    }
}

/// A report, not a check: a 1,000-node random overlay (average degree about 7, like HyParView's
/// active views), 200 broadcasts from random origins. Run with
/// `cargo test -p troupe-overlay --release --test plumtree scale_report -- --ignored --nocapture`.
#[test]
#[ignore]
fn scale_report() {
    let n = 1000;
    let mut net = Net::new(n, PlumtreeConfig::default(), 3);
    let mut rng = StdRng::seed_from_u64(3);
    build(&mut net, Shape::Random { extra_per_node: 6 }, &mut rng);
    let mut ids = Vec::new();
    let started = std::time::Instant::now();
    for _ in 0..200 {
        ids.push(net.broadcast(rng.random_range(0..n), b"scale"));
        net.run_for(Duration::from_millis(500));
    }
    net.run_for(secs(10));
    let wall = started.elapsed();
    for id in &ids {
        assert!(net.missing(id).is_empty());
    }
    net.assert_no_duplicates();
    let per = |ids: &[MessageId]| {
        let total: u64 = ids.iter().map(|id| net.payload_sends.get(id).copied().unwrap_or(0)).sum();
        total as f64 / ids.len() as f64 / (n - 1) as f64
    };
    let links: usize = net.adj.iter().map(|a| a.len()).sum::<usize>() / 2;
    eprintln!(
        "n={n}, {links} links: payload msgs per broadcast / (n-1): first {:.3}, last 100 {:.3}; eager components {}; \
         {} sim-seconds in {wall:?}",
        per(&ids[..1]),
        per(&ids[100..]),
        net.eager_components(),
        net.now.as_secs()
    );
}
