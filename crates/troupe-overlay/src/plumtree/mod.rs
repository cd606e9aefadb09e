//! Plumtree epidemic broadcast trees (Leitão, Pereira, Rodrigues, SRDS 2007) as Partisan uses
//! them, as a sans-IO state machine over whatever neighbours the membership overlay provides.
//!
//! # How it works
//! Every neighbour starts in the *eager* set. A payload is pushed in full (`Gossip`) to eager
//! peers and announced by id (`IHave`, batched every `lazy_tick`) to *lazy* peers. A node that
//! receives a payload twice moves the second sender to its lazy set and tells it (`Prune`), so
//! the eager links shrink to a spanning tree and a broadcast costs about `n - 1` payload
//! messages. A node that hears `IHave` for a message it lacks waits `graft_timeout` for the eager
//! copy, then asks the announcer for it (`Graft`, which also makes that link eager), then the
//! next announcer after `graft_retry_timeout`, and so on (at most `max_graft_attempts` grafts,
//! announcers taken in turn): the tree repairs itself where it broke. A grafted message is
//! usually missing from a whole subtree whose nodes all graft it at about the same time; it is
//! passed on as `Repair` (below) so that those copies meeting inside the subtree prune nothing
//! (pruning there would cut the subtree apart); the extra graft links are pruned by the next
//! regular broadcast instead.
//!
//! When a lazy peer announces a message we received over a path at least
//! `optimization_threshold` hops longer, the link through it is grafted and the old eager one
//! pruned (the paper's optimisation; off by default, see
//! [`PlumtreeConfig::optimization_threshold`]).
//!
//! Every `anti_entropy_interval` a node sends one neighbour (a shuffled round-robin) a digest
//! of its cached message ids (runs per origin), leaving out messages younger than
//! `anti_entropy_min_age` that the tree is still delivering. The neighbour answers with the ids
//! it lacks and a digest of its own cache; each side then pushes what the other lacks as
//! `Repair` messages, which spread from there along the tree like `Gossip` but never change it
//! (and the first tree copy arriving after a repair prunes nothing either). So messages lost in
//! a partition, or broadcast before a neighbour existed, still arrive, as long as some
//! neighbour's cache holds them. A new node therefore receives up to the whole cache of recent
//! broadcasts.
//!
//! # Bounds and old messages
//! Messages carry their age (time held by nodes, a lower bound). A message older than
//! `message_ttl` (5 minutes by default) is neither delivered, forwarded, cached nor repaired:
//! after a partition longer than that, or more than `cache_max_messages` broadcasts during one,
//! the missed messages are lost for good (the application needs its own state transfer, as
//! CRDT anti-entropy does). The cache is bounded by count, bytes and age (module `cache`); the
//! seen-set by origins and open gaps (module `seen`, which explains why no message is delivered
//! twice); lazy queues, missing-message timers, every batch and every reply by the limits in
//! [`PlumtreeConfig`]. Lost `IHave`s are not re-sent (Partisan re-sends outstanding ones until
//! acknowledged): anti-entropy covers them.
//!
//! # Driving it
//! Feed [`PlumtreeInput`]s with the current time, collect [`PlumtreeOutput`]s, call
//! [`PlumtreeInput::Tick`] every [`Plumtree::tick_interval`]. Neighbour up/down events come from
//! the membership overlay's `MembershipEvent::NeighborUp`/`NeighborDown`, so Plumtree works over
//! any overlay (full mesh, static, client-server, HyParView). Messages from peers that are not
//! neighbours are ignored, except payloads, which are delivered but do not touch the tree.

mod cache;
mod config;
mod message;
mod missing;
mod seen;
mod stats;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::member::PeerId;

use cache::{CacheLimits, Cached, MessageCache};
pub use config::{PlumtreeConfig, PlumtreeError};
pub use message::{Announcement, IdRange, MessageId, PlumtreeInput, PlumtreeMessage, PlumtreeOutput, Topic};
use missing::Missing;
use seen::{SeenLimits, SeenSet};
pub use stats::PlumtreeStats;

/// One node's Plumtree instance. See the module documentation.
#[derive(Debug)]
pub struct Plumtree {
    me: PeerId,
    config: PlumtreeConfig,
    rng: StdRng,
    eager: BTreeSet<PeerId>,
    lazy: BTreeSet<PeerId>,
    lazy_queue: BTreeMap<PeerId, VecDeque<Announcement>>,
    lazy_queued: usize,
    missing: Missing,
    seen: SeenSet,
    cache: MessageCache,
    last_seq: u64,
    next_lazy_flush: Option<Duration>,
    next_anti_entropy: Option<Duration>,
    /// Neighbours still to visit in this anti-entropy cycle (a shuffled round-robin).
    anti_entropy_order: Vec<PeerId>,
    stats: PlumtreeStats,
}

/// A payload on its way through [`Plumtree::accept_payload`].
struct Incoming {
    id: MessageId,
    topic: Topic,
    hops: u32,
    age_ms: u64,
    payload: Bytes,
    repair: bool,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Plumtree {
    /// A new instance for node `me`. Invalid config values are replaced by defaults (see
    /// [`PlumtreeConfig::validate`] to report them instead); `seed` drives every random choice.
    pub fn new(me: PeerId, config: PlumtreeConfig, seed: u64) -> Self {
        let config = config.sanitized();
        let seen = SeenSet::new(
            me,
            SeenLimits {
                max_origins: config.max_origins,
                max_intervals: config.max_seen_intervals,
                max_intervals_per_origin: config.max_intervals_per_origin,
                ttl: config.message_ttl,
                origin_idle_ttl: config.origin_idle_ttl,
            },
        );
        let cache = MessageCache::new(CacheLimits {
            max_messages: config.cache_max_messages,
            max_bytes: config.cache_max_bytes,
            ttl_ms: millis(config.message_ttl),
        });
        Plumtree {
            me,
            missing: Missing::new(config.max_missing, config.max_announcers, config.max_graft_attempts),
            config,
            rng: StdRng::seed_from_u64(seed),
            eager: BTreeSet::new(),
            lazy: BTreeSet::new(),
            lazy_queue: BTreeMap::new(),
            lazy_queued: 0,
            seen,
            cache,
            last_seq: 0,
            next_lazy_flush: None,
            next_anti_entropy: None,
            anti_entropy_order: Vec::new(),
            stats: PlumtreeStats::default(),
        }
    }

    /// This node.
    pub fn me(&self) -> PeerId {
        self.me
    }

    /// The configuration in use (after sanitizing).
    pub fn config(&self) -> &PlumtreeConfig {
        &self.config
    }

    /// How often the driver should feed [`PlumtreeInput::Tick`].
    pub fn tick_interval(&self) -> Duration {
        self.config.tick_interval
    }

    /// Peers that get payloads pushed (the tree links).
    pub fn eager_peers(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.eager.iter().copied()
    }

    /// Peers that get `IHave` announcements only.
    pub fn lazy_peers(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.lazy.iter().copied()
    }

    /// Counters and current sizes.
    pub fn stats(&self) -> PlumtreeStats {
        let mut s = self.stats;
        s.seen_forced_closes = self.seen.forced_closes;
        s.seen_forced_evictions = self.seen.forced_evictions;
        s.eager = self.eager.len() as u64;
        s.lazy = self.lazy.len() as u64;
        s.cache_messages = self.cache.len() as u64;
        s.cache_bytes = self.cache.bytes() as u64;
        s.seen_origins = self.seen.origins() as u64;
        s.seen_intervals = self.seen.intervals() as u64;
        s.missing = self.missing.len() as u64;
        s.lazy_queued = self.lazy_queued as u64;
        s
    }

    /// Whether this message id counts as seen here (delivered, or too old to be delivered).
    pub fn has_seen(&self, id: &MessageId) -> bool {
        self.seen.contains(id)
    }

    /// Handles one input at time `now`, appending what to do to `out`.
    pub fn handle(&mut self, input: PlumtreeInput, now: Duration, out: &mut Vec<PlumtreeOutput>) {
        match input {
            PlumtreeInput::NeighborUp(p) => self.neighbor_up(p),
            PlumtreeInput::NeighborDown(p) => self.neighbor_down(p),
            PlumtreeInput::Message { from, msg } => self.on_message(from, msg, now, out),
            PlumtreeInput::Broadcast { topic, payload } => {
                // Refusals are counted in the stats.
                let _ = self.broadcast(topic, payload, now, out);
            }
            PlumtreeInput::Tick => self.on_tick(now, out),
        }
    }

    /// Broadcasts a payload: delivers it here (hops 0) and spreads it. Returns its id.
    pub fn broadcast(
        &mut self,
        topic: Topic,
        payload: Bytes,
        now: Duration,
        out: &mut Vec<PlumtreeOutput>,
    ) -> Result<MessageId, PlumtreeError> {
        if payload.len() > self.config.max_payload {
            self.stats.broadcasts_refused += 1;
            return Err(PlumtreeError::PayloadTooLarge { size: payload.len(), max: self.config.max_payload });
        }
        self.last_seq += 1;
        let id = MessageId { origin: self.me, seq: self.last_seq };
        self.stats.broadcasts += 1;
        self.seen.insert(id, now);
        self.deliver(id, topic, payload.clone(), 0, out);
        self.cache.insert(
            id,
            Cached {
                topic,
                payload: payload.clone(),
                hops: 0,
                age_at_receipt_ms: 0,
                received_at: now,
                eager_from: None,
                via_repair: false,
            },
        );
        self.forward(id, topic, 0, 0, &payload, None, false, out);
        Ok(id)
    }

    fn is_neighbor(&self, p: PeerId) -> bool {
        self.eager.contains(&p) || self.lazy.contains(&p)
    }

    fn make_eager(&mut self, p: PeerId) {
        if self.lazy.remove(&p) || !self.eager.contains(&p) {
            self.eager.insert(p);
        }
    }

    fn make_lazy(&mut self, p: PeerId) {
        if self.eager.remove(&p) || !self.lazy.contains(&p) {
            self.lazy.insert(p);
        }
    }

    fn neighbor_up(&mut self, p: PeerId) {
        if p == self.me || self.is_neighbor(p) {
            return;
        }
        if self.eager.len() + self.lazy.len() >= self.config.max_neighbors {
            self.stats.neighbors_refused += 1;
            return;
        }
        self.eager.insert(p);
    }

    fn neighbor_down(&mut self, p: PeerId) {
        self.eager.remove(&p);
        self.lazy.remove(&p);
        if let Some(q) = self.lazy_queue.remove(&p) {
            self.lazy_queued = self.lazy_queued.saturating_sub(q.len());
        }
        self.missing.peer_down(p);
    }

    fn deliver(&mut self, id: MessageId, topic: Topic, payload: Bytes, hops: u32, out: &mut Vec<PlumtreeOutput>) {
        self.stats.delivered += 1;
        out.push(PlumtreeOutput::Deliver { topic, id, payload, hops });
    }

    fn send(&mut self, to: PeerId, msg: PlumtreeMessage, out: &mut Vec<PlumtreeOutput>) {
        match &msg {
            PlumtreeMessage::Gossip { .. } => self.stats.gossip_sent += 1,
            PlumtreeMessage::IHave { ids } => {
                self.stats.ihave_sent += 1;
                self.stats.ihave_ids_sent += ids.len() as u64;
            }
            PlumtreeMessage::Graft { .. } => self.stats.graft_sent += 1,
            PlumtreeMessage::Prune => self.stats.prune_sent += 1,
            PlumtreeMessage::Repair { .. } => self.stats.repair_sent += 1,
            PlumtreeMessage::Digest { .. } | PlumtreeMessage::DigestReply { .. } | PlumtreeMessage::Request { .. } => {}
        }
        out.push(PlumtreeOutput::Send { to, msg });
    }

    /// Pushes a payload to the eager peers and queues announcements for the lazy ones.
    #[allow(clippy::too_many_arguments)]
    fn forward(
        &mut self,
        id: MessageId,
        topic: Topic,
        hops: u32,
        age_ms: u64,
        payload: &Bytes,
        except: Option<PeerId>,
        repair: bool,
        out: &mut Vec<PlumtreeOutput>,
    ) {
        let eager: Vec<PeerId> = self.eager.iter().copied().filter(|p| Some(*p) != except).collect();
        for p in eager {
            let msg = if repair {
                PlumtreeMessage::Repair { id, topic, hops, age_ms, payload: payload.clone() }
            } else {
                PlumtreeMessage::Gossip { id, topic, hops, age_ms, payload: payload.clone() }
            };
            self.send(p, msg, out);
        }
        let lazy: Vec<PeerId> = self.lazy.iter().copied().filter(|p| Some(*p) != except).collect();
        for p in lazy {
            self.queue_announcement(p, Announcement { id, hops });
        }
    }

    fn queue_announcement(&mut self, p: PeerId, a: Announcement) {
        let q = self.lazy_queue.entry(p).or_default();
        if q.len() >= self.config.max_lazy_queue {
            q.pop_front();
            self.stats.lazy_queue_dropped += 1;
        } else {
            self.lazy_queued += 1;
        }
        q.push_back(a);
    }

    fn on_message(&mut self, from: PeerId, msg: PlumtreeMessage, now: Duration, out: &mut Vec<PlumtreeOutput>) {
        if from == self.me {
            self.stats.ignored += 1;
            return;
        }
        match msg {
            PlumtreeMessage::Gossip { id, topic, hops, age_ms, payload } => {
                self.stats.gossip_received += 1;
                let m = Incoming { id, topic, hops, age_ms, payload, repair: false };
                self.accept_payload(from, m, now, out);
            }
            PlumtreeMessage::Repair { id, topic, hops, age_ms, payload } => {
                self.stats.repair_received += 1;
                let m = Incoming { id, topic, hops, age_ms, payload, repair: true };
                self.accept_payload(from, m, now, out);
            }
            PlumtreeMessage::IHave { ids } => self.on_ihave(from, &ids, now, out),
            PlumtreeMessage::Graft { ids } => self.on_graft(from, &ids, now, out),
            PlumtreeMessage::Prune => {
                self.stats.prune_received += 1;
                if self.is_neighbor(from) {
                    self.make_lazy(from);
                } else {
                    self.stats.ignored += 1;
                }
            }
            PlumtreeMessage::Digest { ranges } => self.on_digest(from, &ranges, now, out),
            PlumtreeMessage::DigestReply { want, have } => {
                if !self.is_neighbor(from) {
                    self.stats.ignored += 1;
                    return;
                }
                self.send_repairs(from, &want, now, out);
                let ids = self.unseen_in(&have);
                if !ids.is_empty() {
                    self.send(from, PlumtreeMessage::Request { ids }, out);
                }
            }
            PlumtreeMessage::Request { ids } => {
                if !self.is_neighbor(from) {
                    self.stats.ignored += 1;
                    return;
                }
                self.send_repairs(from, &ids, now, out);
            }
        }
    }

    /// A `Gossip` or `Repair` arrived.
    fn accept_payload(&mut self, from: PeerId, m: Incoming, now: Duration, out: &mut Vec<PlumtreeOutput>) {
        if m.payload.len() > self.config.max_payload {
            self.stats.ignored += 1;
            return;
        }
        let neighbor = self.is_neighbor(from);
        if self.seen.contains(&m.id) {
            self.stats.duplicates += 1;
            if m.repair || !neighbor {
                return;
            }
            // The first tree copy of a message anti-entropy brought first says nothing about
            // redundant links: keep the sender as the eager parent it is.
            if let Some(c) = self.cache.get_mut(&m.id).filter(|c| c.via_repair) {
                c.via_repair = false;
                c.eager_from = Some(from);
                self.make_eager(from);
                return;
            }
            self.make_lazy(from);
            self.send(from, PlumtreeMessage::Prune, out);
            return;
        }
        if m.id.origin == self.me {
            // Claims to be ours but is not one we sent: forged or corrupt.
            self.stats.ignored += 1;
            return;
        }
        if m.age_ms > millis(self.config.message_ttl) {
            self.stats.expired += 1;
            return;
        }
        self.seen.insert(m.id, now);
        let grafted = self.missing.remove(&m.id);
        let hops = m.hops.saturating_add(1);
        let tree_link = !m.repair && neighbor;
        if tree_link {
            self.make_eager(from);
        }
        if m.repair {
            self.stats.repaired += 1;
        } else if grafted {
            self.stats.recovered_by_graft += 1;
        }
        // A message that had to be grafted is usually missing from a whole subtree, whose
        // nodes graft it at about the same time; their copies meet inside the subtree. Sent on
        // as `Repair`, those meetings prune nothing (pruning there would cut the subtree into
        // pieces); the extra graft links are pruned by the next regular broadcast instead.
        let forward_as_repair = m.repair || grafted;
        self.deliver(m.id, m.topic, m.payload.clone(), hops, out);
        self.cache.insert(
            m.id,
            Cached {
                topic: m.topic,
                payload: m.payload.clone(),
                hops,
                age_at_receipt_ms: m.age_ms,
                received_at: now,
                eager_from: tree_link.then_some(from),
                via_repair: m.repair,
            },
        );
        self.forward(m.id, m.topic, hops, m.age_ms, &m.payload, Some(from), forward_as_repair, out);
    }

    fn on_ihave(&mut self, from: PeerId, ids: &[Announcement], now: Duration, out: &mut Vec<PlumtreeOutput>) {
        self.stats.ihave_received += 1;
        if !self.is_neighbor(from) {
            self.stats.ignored += 1;
            return;
        }
        let deadline = now.saturating_add(self.config.graft_timeout);
        let mut optimized = false;
        for a in ids.iter().take(self.config.max_batch) {
            if self.seen.contains(&a.id) {
                if !optimized {
                    optimized = self.maybe_optimize(from, a, out);
                }
                continue;
            }
            if a.id.origin == self.me {
                continue;
            }
            if !self.missing.announce(a.id, from, a.hops, deadline) {
                self.stats.missing_dropped += 1;
            }
        }
    }

    /// The paper's optimisation: a lazy peer offers a much shorter path than our eager parent.
    fn maybe_optimize(&mut self, from: PeerId, a: &Announcement, out: &mut Vec<PlumtreeOutput>) -> bool {
        let Some(threshold) = self.config.optimization_threshold else {
            return false;
        };
        if !self.lazy.contains(&from) {
            return false;
        }
        let Some(cached) = self.cache.get_mut(&a.id) else {
            return false;
        };
        let Some(parent) = cached.eager_from else {
            return false;
        };
        let through_announcer = a.hops.saturating_add(1);
        if parent == from || cached.hops.saturating_sub(through_announcer) < threshold.max(1) {
            return false;
        }
        // Act once per message.
        cached.eager_from = None;
        if !self.eager.contains(&parent) {
            return false;
        }
        self.stats.optimization_grafts += 1;
        self.make_eager(from);
        self.send(from, PlumtreeMessage::Graft { ids: Vec::new() }, out);
        self.make_lazy(parent);
        self.send(parent, PlumtreeMessage::Prune, out);
        true
    }

    fn on_graft(&mut self, from: PeerId, ids: &[MessageId], now: Duration, out: &mut Vec<PlumtreeOutput>) {
        self.stats.graft_received += 1;
        if !self.is_neighbor(from) {
            self.stats.ignored += 1;
            return;
        }
        self.make_eager(from);
        self.send_cached(from, ids, now, out, |id, topic, hops, age_ms, payload| PlumtreeMessage::Gossip {
            id,
            topic,
            hops,
            age_ms,
            payload,
        });
    }

    fn on_digest(&mut self, from: PeerId, ranges: &[IdRange], now: Duration, out: &mut Vec<PlumtreeOutput>) {
        if !self.is_neighbor(from) {
            self.stats.ignored += 1;
            return;
        }
        let want = self.unseen_in(ranges);
        let have = self.digest(now);
        self.send(from, PlumtreeMessage::DigestReply { want, have }, out);
    }

    /// The ids in these runs we have not seen, bounded by the digest limits.
    fn unseen_in(&self, ranges: &[IdRange]) -> Vec<MessageId> {
        let mut budget = self.config.max_digest_ids;
        let mut want = Vec::new();
        'ranges: for r in ranges.iter().take(self.config.max_digest_ranges) {
            if r.first == 0 || r.first > r.last || r.origin == self.me {
                continue;
            }
            let mut seq = r.first;
            loop {
                if budget == 0 || want.len() >= self.config.max_batch {
                    break 'ranges;
                }
                budget -= 1;
                let id = MessageId { origin: r.origin, seq };
                if !self.seen.contains(&id) {
                    want.push(id);
                }
                if seq == r.last {
                    break;
                }
                seq += 1;
            }
        }
        want
    }

    /// Sends cached messages as `Repair`s, within the per-answer budget.
    fn send_repairs(&mut self, to: PeerId, ids: &[MessageId], now: Duration, out: &mut Vec<PlumtreeOutput>) {
        self.send_cached(to, ids, now, out, |id, topic, hops, age_ms, payload| PlumtreeMessage::Repair {
            id,
            topic,
            hops,
            age_ms,
            payload,
        });
    }

    /// Sends the cached messages among `ids`, each made into a message by `make`, within the
    /// per-answer budget (`max_repair_messages`, `max_repair_bytes`, `max_batch`).
    fn send_cached(
        &mut self,
        to: PeerId,
        ids: &[MessageId],
        now: Duration,
        out: &mut Vec<PlumtreeOutput>,
        make: impl Fn(MessageId, Topic, u32, u64, Bytes) -> PlumtreeMessage,
    ) {
        let (mut left_msgs, mut left_bytes) = (self.config.max_repair_messages, self.config.max_repair_bytes);
        for id in ids.iter().take(self.config.max_batch) {
            let Some(c) = self.cache.get(id, now) else {
                continue;
            };
            if left_msgs == 0 || c.payload.len() > left_bytes {
                break;
            }
            left_msgs -= 1;
            left_bytes -= c.payload.len();
            let msg = make(*id, c.topic, c.hops, c.age_ms(now), c.payload.clone());
            self.send(to, msg, out);
        }
    }

    fn on_tick(&mut self, now: Duration, out: &mut Vec<PlumtreeOutput>) {
        let next_lazy = *self.next_lazy_flush.get_or_insert(now.saturating_add(self.config.lazy_tick));
        if self.next_anti_entropy.is_none() {
            // A random phase, so that nodes started together do not exchange in lockstep.
            let interval = millis(self.config.anti_entropy_interval).max(1);
            let phase = Duration::from_millis(self.rng.random_range(0..interval));
            self.next_anti_entropy = Some(now.saturating_add(phase));
        }
        self.fire_graft_timers(now, out);
        if now >= next_lazy {
            self.flush_lazy(out);
            self.cache.prune(now);
            self.next_lazy_flush = Some(now.saturating_add(self.config.lazy_tick));
        }
        if self.next_anti_entropy.is_some_and(|t| now >= t) {
            self.anti_entropy(now, out);
            // Walks every origin: often enough at the anti-entropy pace, since gaps live for
            // minutes.
            self.seen.prune(now);
            self.next_anti_entropy = Some(now.saturating_add(self.config.anti_entropy_interval));
        }
    }

    fn fire_graft_timers(&mut self, now: Duration, out: &mut Vec<PlumtreeOutput>) {
        let expired = self.missing.expire(now, self.config.graft_retry_timeout);
        self.stats.grafts_given_up += expired.given_up;
        let mut per_peer: BTreeMap<PeerId, Vec<MessageId>> = BTreeMap::new();
        for (peer, id) in expired.grafts {
            if self.is_neighbor(peer) {
                per_peer.entry(peer).or_default().push(id);
            }
        }
        for (peer, ids) in per_peer {
            self.make_eager(peer);
            for chunk in ids.chunks(self.config.max_batch) {
                self.send(peer, PlumtreeMessage::Graft { ids: chunk.to_vec() }, out);
            }
        }
    }

    fn flush_lazy(&mut self, out: &mut Vec<PlumtreeOutput>) {
        let queues = std::mem::take(&mut self.lazy_queue);
        self.lazy_queued = 0;
        for (peer, q) in queues {
            if !self.is_neighbor(peer) {
                continue;
            }
            let all: Vec<Announcement> = q.into_iter().collect();
            for chunk in all.chunks(self.config.max_batch) {
                self.send(peer, PlumtreeMessage::IHave { ids: chunk.to_vec() }, out);
            }
        }
    }

    /// One exchange with the next neighbour of a shuffled round-robin: every link is visited
    /// once per `degree` rounds, with no unlucky streak leaving one out for long.
    fn anti_entropy(&mut self, now: Duration, out: &mut Vec<PlumtreeOutput>) {
        let peer = loop {
            match self.anti_entropy_order.pop() {
                Some(p) if self.is_neighbor(p) => break p,
                Some(_) => continue,
                None => {
                    let mut order: Vec<PeerId> = self.eager.iter().chain(self.lazy.iter()).copied().collect();
                    if order.is_empty() {
                        return;
                    }
                    order.shuffle(&mut self.rng);
                    self.anti_entropy_order = order;
                }
            }
        };
        self.stats.anti_entropy_rounds += 1;
        let ranges = self.digest(now);
        self.send(peer, PlumtreeMessage::Digest { ranges }, out);
    }

    /// The cached messages offered to anti-entropy.
    fn digest(&self, now: Duration) -> Vec<IdRange> {
        self.cache.ranges(now, millis(self.config.anti_entropy_min_age), self.config.max_digest_ranges)
    }
}

#[cfg(test)]
mod tests;
