//! `FullMesh`: Partisan's default peer service. Every node knows every member and keeps a
//! connection to each.
//!
//! - **Membership** is the [`MemberSet`] CRDT (see [`state`] for its semantics and how its
//!   tombstones are bounded). A node joins by sending its state to its contacts, which answer with
//!   theirs; every change is pushed at once to the connected members, and every `gossip_interval`
//!   the whole state goes to `gossip_fanout` random members (anti-entropy).
//! - **Connections**: the node dials every alive member it is not connected to, with capped
//!   exponential backoff.
//! - **Failure detection**: heartbeats every `heartbeat_interval` over each connection feed a
//!   phi-accrual detector; a member suspected for `suspect_grace`, or without a connection for
//!   `unreachable_timeout` (the link failed and could not be re-made), is removed from the set.
//! - **Refutation**: a node that finds itself removed while alive writes itself back at a higher
//!   generation. A removed member's connection is kept for `stray_timeout` so it hears about it.
//! - **Partition healing**: every `probe_interval` the node dials one removed (not left)
//!   incarnation it still has a tombstone for; if it answers, the two exchange states, both
//!   refute, and the sides merge again. A node left alone asks the driver for contacts.
//! - **Leave**: the node marks itself `Left`, pushes that to everyone, and after `leave_linger`
//!   closes its connections and stops.
//!
//! Events: `MemberUp`/`MemberDown` follow the alive entries of the set (this node excluded);
//! `NeighborUp`/`NeighborDown` follow the alive members with a live connection.

pub mod state;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::failure::{Backoff, BackoffConfig, PhiAccrualConfig, PhiAccrualDetector};
use crate::member::{Member, PeerId};
use crate::membership::{Command, Input, Membership, MembershipEvent, ViewSnapshot};

pub use state::{Change, Entry, MemberSet, Record, Status};

/// Settings of a [`FullMesh`].
#[derive(Clone, Debug, PartialEq)]
pub struct FullMeshConfig {
    /// How often the driver ticks.
    pub tick_interval: Duration,
    /// How often a heartbeat goes to every connected peer.
    pub heartbeat_interval: Duration,
    /// How often the whole state goes to `gossip_fanout` random members.
    pub gossip_interval: Duration,
    /// How many members receive each periodic gossip.
    pub gossip_fanout: usize,
    /// The failure detector; `first_heartbeat_estimate` should match `heartbeat_interval`.
    pub detector: PhiAccrualConfig,
    /// A connected member whose phi stays at or above the threshold this long is removed.
    pub suspect_grace: Duration,
    /// A member without a connection this long (the link failed and redialing did not work) is
    /// removed.
    pub unreachable_timeout: Duration,
    /// Redial backoff.
    pub backoff: BackoffConfig,
    /// Tombstones are dropped this long after this node learned them.
    pub tombstone_ttl: Duration,
    /// At most this many tombstones are kept (the oldest go first).
    pub max_tombstones: usize,
    /// At most this many alive members (this node included); others are not admitted.
    pub max_members: usize,
    /// Connections to peers that are not alive members are closed after this long.
    pub stray_timeout: Duration,
    /// How often one removed incarnation is dialed to heal a partition.
    pub probe_interval: Duration,
    /// How long a leaving node waits for its goodbye to go out before closing connections.
    pub leave_linger: Duration,
    /// Minimum time between two [`Command::NeedContacts`].
    pub need_contacts_interval: Duration,
    /// A lost connection that lasted this long is redialed at once; one that dropped sooner
    /// counts as a failed dial (backoff), so a peer that accepts and closes is not hammered.
    pub stable_after: Duration,
    /// Seed of the protocol's RNG (gossip targets, probes, backoff jitter).
    pub seed: u64,
}

impl Default for FullMeshConfig {
    fn default() -> Self {
        FullMeshConfig {
            tick_interval: Duration::from_millis(250),
            heartbeat_interval: Duration::from_secs(1),
            gossip_interval: Duration::from_secs(1),
            gossip_fanout: 3,
            detector: PhiAccrualConfig::default(),
            suspect_grace: Duration::from_secs(1),
            unreachable_timeout: Duration::from_secs(10),
            backoff: BackoffConfig {
                initial: Duration::from_millis(250),
                max: Duration::from_secs(4),
                max_attempts: None,
            },
            tombstone_ttl: Duration::from_secs(600),
            max_tombstones: 4096,
            max_members: 1024,
            stray_timeout: Duration::from_secs(10),
            probe_interval: Duration::from_secs(5),
            leave_linger: Duration::from_millis(500),
            need_contacts_interval: Duration::from_secs(10),
            stable_after: Duration::from_secs(5),
            seed: 0,
        }
    }
}

/// Messages of the full mesh.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FullMeshMessage {
    /// Membership entries: the whole state or a delta. With `reply`, the receiver answers with its
    /// whole state (joins and probes).
    State {
        /// The entries, with the ages of tombstones.
        entries: Vec<Record>,
        /// Whether the sender wants the receiver's state back.
        reply: bool,
    },
    /// Liveness signal for the failure detector.
    Heartbeat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Created, waiting for [`Input::Join`].
    Idle,
    /// Taking part.
    Active,
    /// Left; closes its connections at the deadline.
    Leaving(Duration),
    /// Done; ignores every input.
    Stopped,
}

/// Per alive member: redial backoff and failure-detection clocks.
#[derive(Clone, Debug)]
struct Link {
    backoff: Backoff,
    /// Since when the member has had no connection (`None` while connected).
    down_since: Option<Duration>,
    /// Since when its phi has been at or above the threshold.
    suspect_since: Option<Duration>,
}

/// The full-mesh membership protocol. See the [module docs](self).
#[derive(Debug)]
pub struct FullMesh {
    me: Member,
    config: FullMeshConfig,
    rng: StdRng,
    phase: Phase,
    set: MemberSet,
    /// Live connections (members or not) and since when.
    connected: BTreeMap<PeerId, (Member, Duration)>,
    /// Outstanding [`Command::Connect`]s.
    dialing: BTreeSet<PeerId>,
    links: BTreeMap<PeerId, Link>,
    detector: PhiAccrualDetector<PeerId>,
    next_heartbeat: Duration,
    next_gossip: Duration,
    next_probe: Duration,
    last_need_contacts: Option<Duration>,
    had_peers: bool,
}

/// Upper bound on entries accepted in one message.
fn max_entries(config: &FullMeshConfig) -> usize {
    config.max_members.saturating_add(config.max_tombstones)
}

impl FullMesh {
    /// A node `me`, idle until [`Input::Join`].
    pub fn new(me: Member, config: FullMeshConfig) -> Self {
        let mut set = MemberSet::new();
        set.update(Entry::alive(me.clone()), Duration::ZERO);
        FullMesh {
            rng: StdRng::seed_from_u64(config.seed),
            detector: PhiAccrualDetector::new(config.detector.clone()),
            me,
            config,
            phase: Phase::Idle,
            set,
            connected: BTreeMap::new(),
            dialing: BTreeSet::new(),
            links: BTreeMap::new(),
            next_heartbeat: Duration::ZERO,
            next_gossip: Duration::ZERO,
            next_probe: Duration::ZERO,
            last_need_contacts: None,
            had_peers: false,
        }
    }

    /// The settings.
    pub fn config(&self) -> &FullMeshConfig {
        &self.config
    }

    /// The replicated set, tombstones included.
    pub fn member_set(&self) -> &MemberSet {
        &self.set
    }

    /// The alive members other than this node, by id.
    pub fn members(&self) -> Vec<Member> {
        self.set.alive().filter(|m| m.id != self.me.id).cloned().collect()
    }

    /// Whether `id` is an alive member (this node included).
    pub fn is_member(&self, id: &PeerId) -> bool {
        self.set.is_alive(id)
    }

    /// Whether a connection to `id` is up.
    pub fn is_connected(&self, id: &PeerId) -> bool {
        self.connected.contains_key(id)
    }

    /// Whether this node has joined and not left.
    pub fn is_active(&self) -> bool {
        self.phase == Phase::Active
    }

    /// This node's current generation (raised each time it refutes a removal).
    pub fn generation(&self) -> u64 {
        self.set.get(&self.me.id).map_or(0, |e| e.generation)
    }

    /// The suspicion level of a member at `now`.
    pub fn phi(&self, id: &PeerId, now: Duration) -> f64 {
        self.detector.phi(id, now)
    }

    fn is_neighbor(&self, id: &PeerId) -> bool {
        *id != self.me.id && self.connected.contains_key(id) && self.set.is_alive(id)
    }

    fn send_state(&self, to: PeerId, reply: bool, now: Duration, out: &mut Vec<Command<FullMeshMessage>>) {
        out.push(Command::Send { to, msg: FullMeshMessage::State { entries: self.set.records(now), reply } });
    }

    /// Pushes entries this node just wrote to every connected alive member.
    fn push(&self, entries: Vec<Entry>, out: &mut Vec<Command<FullMeshMessage>>) {
        if entries.is_empty() {
            return;
        }
        let entries: Vec<Record> = entries.into_iter().map(|entry| Record { entry, age_ms: 0 }).collect();
        for id in self.connected.keys().filter(|id| self.set.is_alive(id) && **id != self.me.id) {
            out.push(Command::Send { to: *id, msg: FullMeshMessage::State { entries: entries.clone(), reply: false } });
        }
    }

    fn dial(&mut self, member: Member, out: &mut Vec<Command<FullMeshMessage>>) {
        if member.id == self.me.id || self.connected.contains_key(&member.id) || !self.dialing.insert(member.id) {
            return;
        }
        out.push(Command::Connect(member));
    }

    /// Reacts to one change of the set: events, connections, refutation. Returns the entry to
    /// push to the others when this node wrote something itself.
    fn on_change(&mut self, change: Change, now: Duration, out: &mut Vec<Command<FullMeshMessage>>) -> Option<Entry> {
        let id = change.new.member.id;
        if id == self.me.id {
            if !change.new.is_alive() && self.phase == Phase::Active {
                let refute = Entry {
                    member: self.me.clone(),
                    generation: change.new.generation.saturating_add(1),
                    status: Status::Alive,
                };
                self.set.update(refute.clone(), now);
                return Some(refute);
            }
            return None;
        }
        let was = change.old.as_ref().is_some_and(Entry::is_alive);
        let is = change.new.is_alive();
        if !was && is {
            self.had_peers = true;
            out.push(Command::Event(MembershipEvent::MemberUp(change.new.member.clone())));
            let connected = self.connected.contains_key(&id);
            self.links.insert(
                id,
                Link { backoff: Backoff::new(), down_since: (!connected).then_some(now), suspect_since: None },
            );
            if connected {
                self.detector.heartbeat(&id, now);
                out.push(Command::Event(MembershipEvent::NeighborUp(change.new.member.clone())));
            } else {
                self.dial(change.new.member, out);
            }
        } else if was && !is {
            let reason = match change.new.status {
                Status::Left => "left",
                _ => "removed",
            };
            self.forget(id, reason, out);
            if change.new.status == Status::Left {
                if self.connected.remove(&id).is_some() {
                    out.push(Command::Disconnect(id));
                }
            } else if let Some((_, since)) = self.connected.get_mut(&id) {
                // Tell it, so that it can refute if it is alive; the connection is closed as a
                // stray if it does not come back within `stray_timeout`.
                *since = now;
                self.send_state(id, false, now, out);
            }
        }
        None
    }

    /// Member `id` stopped being alive: events and local state.
    fn forget(&mut self, id: PeerId, reason: &str, out: &mut Vec<Command<FullMeshMessage>>) {
        if self.connected.contains_key(&id) {
            out.push(Command::Event(MembershipEvent::NeighborDown(id)));
        }
        out.push(Command::Event(MembershipEvent::MemberDown { id, reason: reason.to_string() }));
        self.links.remove(&id);
        self.dialing.remove(&id);
        self.detector.remove(&id);
    }

    /// This node decides that member `id` failed.
    fn remove(&mut self, id: PeerId, reason: &str, now: Duration, out: &mut Vec<Command<FullMeshMessage>>) {
        let Some(entry) = self.set.get(&id).filter(|e| e.is_alive()).cloned() else { return };
        let removed = Entry { status: Status::Removed, ..entry };
        if self.set.update(removed.clone(), now).is_none() {
            return;
        }
        self.forget(id, reason, out);
        if self.connected.remove(&id).is_some() {
            out.push(Command::Disconnect(id));
        }
        self.push(vec![removed], out);
    }

    fn merge_entries(&mut self, records: Vec<Record>, now: Duration, out: &mut Vec<Command<FullMeshMessage>>) {
        if records.len() > max_entries(&self.config) {
            return;
        }
        let mut mine = Vec::new();
        for Record { entry, age_ms } in records {
            let age = if entry.is_alive() { Duration::ZERO } else { Duration::from_millis(age_ms) };
            // A tombstone that expired everywhere by now is not taken back in for an unknown id.
            if age >= self.config.tombstone_ttl && self.set.get(&entry.member.id).is_none() {
                continue;
            }
            if let Ok(Some(change)) = self.set.merge(entry, now.saturating_sub(age), self.config.max_members) {
                if let Some(own) = self.on_change(change, now, out) {
                    mine.push(own);
                }
            }
        }
        self.push(mine, out);
        if self.set.tombstones() > self.config.max_tombstones {
            self.set.expire(now, self.config.tombstone_ttl, self.config.max_tombstones);
        }
    }

    fn on_join(&mut self, contacts: Vec<Member>, now: Duration, out: &mut Vec<Command<FullMeshMessage>>) {
        if matches!(self.phase, Phase::Leaving(_) | Phase::Stopped) {
            return;
        }
        if self.phase == Phase::Idle {
            self.phase = Phase::Active;
            self.next_heartbeat = now;
            self.next_gossip = now + self.config.gossip_interval;
            self.next_probe = now + self.config.probe_interval;
        }
        for contact in contacts.into_iter().take(self.config.max_members) {
            if contact.id == self.me.id {
                continue;
            }
            self.had_peers = true;
            self.dialing.remove(&contact.id);
            let id = contact.id;
            if let std::collections::btree_map::Entry::Vacant(slot) = self.connected.entry(id) {
                slot.insert((contact.clone(), now));
                // A contact this node already counts alive (a rejoin that found the seed known
                // again meanwhile) is a neighbour from now on, as if it had connected.
                self.link_up(contact, now, out);
            }
            self.send_state(id, true, now, out);
        }
    }

    /// An alive member's connection is up (it is a neighbour from now on): its link and
    /// failure detector start afresh, and `NeighborUp` says so. Nothing for one not alive.
    fn link_up(&mut self, member: Member, now: Duration, out: &mut Vec<Command<FullMeshMessage>>) {
        let id = member.id;
        if let Some(link) = self.links.get_mut(&id) {
            link.down_since = None;
            link.suspect_since = None;
            self.detector.heartbeat(&id, now);
            let m = self.set.get(&id).map_or(member, |e| e.member.clone());
            out.push(Command::Event(MembershipEvent::NeighborUp(m)));
        }
    }

    fn on_connected(&mut self, member: Member, now: Duration, out: &mut Vec<Command<FullMeshMessage>>) {
        if member.id == self.me.id {
            return;
        }
        self.dialing.remove(&member.id);
        self.settle_dial_by_addr(&member, now);
        if self.connected.contains_key(&member.id) {
            return;
        }
        let bound = self.config.max_members.saturating_add(self.config.max_members / 4);
        if self.connected.len() >= bound && !self.set.is_alive(&member.id) {
            out.push(Command::Disconnect(member.id));
            return;
        }
        let id = member.id;
        self.connected.insert(id, (member.clone(), now));
        if self.phase != Phase::Active {
            return;
        }
        self.link_up(member, now, out);
        // Exchange states on every new connection; probes of removed incarnations ask for an
        // answer so that both sides notice and refute.
        let probe = self.set.get(&id).is_some_and(|e| !e.is_alive());
        self.send_state(id, probe, now, out);
    }

    /// A driver that dials addresses may answer a dial of an old incarnation with the new one
    /// living at that address: count it as a failed dial of the old one.
    fn settle_dial_by_addr(&mut self, member: &Member, now: Duration) {
        let stale: Vec<PeerId> = self
            .dialing
            .iter()
            .copied()
            .filter(|id| self.set.get(id).is_some_and(|e| e.member.addr == member.addr))
            .collect();
        for id in stale {
            self.on_connect_failed(id, now);
        }
    }

    fn on_link_lost(&mut self, id: PeerId, now: Duration, out: &mut Vec<Command<FullMeshMessage>>) {
        let Some((_, since)) = self.connected.remove(&id) else { return };
        if self.phase != Phase::Active {
            return;
        }
        if let Some(link) = self.links.get_mut(&id) {
            link.down_since = Some(now);
            link.suspect_since = None;
            self.detector.remove(&id);
            out.push(Command::Event(MembershipEvent::NeighborDown(id)));
            if now.saturating_sub(since) < self.config.stable_after {
                link.backoff.failed(now, &self.config.backoff, &mut self.rng);
            } else {
                link.backoff.succeeded();
                if let Some(member) = self.set.get(&id).map(|e| e.member.clone()) {
                    self.dial(member, out);
                }
            }
        }
    }

    fn on_connect_failed(&mut self, id: PeerId, now: Duration) {
        if !self.dialing.remove(&id) {
            return;
        }
        if let Some(link) = self.links.get_mut(&id) {
            link.backoff.failed(now, &self.config.backoff, &mut self.rng);
        }
    }

    fn on_message(
        &mut self,
        from: PeerId,
        msg: FullMeshMessage,
        now: Duration,
        out: &mut Vec<Command<FullMeshMessage>>,
    ) {
        if self.phase != Phase::Active || from == self.me.id || !self.connected.contains_key(&from) {
            return;
        }
        match msg {
            FullMeshMessage::Heartbeat => {
                if self.links.contains_key(&from) {
                    self.detector.heartbeat(&from, now);
                }
            }
            FullMeshMessage::State { entries, reply } => {
                self.merge_entries(entries, now, out);
                let sender_removed = self.set.get(&from).is_some_and(|e| !e.is_alive());
                if reply || sender_removed {
                    self.send_state(from, false, now, out);
                }
            }
        }
    }

    fn on_leave(&mut self, now: Duration, out: &mut Vec<Command<FullMeshMessage>>) {
        match self.phase {
            Phase::Idle => {
                self.phase = Phase::Stopped;
                return;
            }
            Phase::Active => {}
            Phase::Leaving(_) | Phase::Stopped => return,
        }
        let gen = self.generation();
        let left = Entry { member: self.me.clone(), generation: gen, status: Status::Left };
        self.set.update(left.clone(), now);
        let record = Record { entry: left, age_ms: 0 };
        for id in self.connected.keys() {
            out.push(Command::Send {
                to: *id,
                msg: FullMeshMessage::State { entries: vec![record.clone()], reply: false },
            });
        }
        let members: Vec<PeerId> = self.set.alive().map(|m| m.id).filter(|id| *id != self.me.id).collect();
        for id in members {
            self.forget(id, "this node left", out);
        }
        self.phase = Phase::Leaving(now + self.config.leave_linger);
    }

    fn on_tick(&mut self, now: Duration, out: &mut Vec<Command<FullMeshMessage>>) {
        match self.phase {
            Phase::Leaving(until) if now >= until => {
                for id in std::mem::take(&mut self.connected).into_keys() {
                    out.push(Command::Disconnect(id));
                }
                self.dialing.clear();
                self.phase = Phase::Stopped;
                return;
            }
            Phase::Active => {}
            _ => return,
        }
        self.detect_failures(now, out);
        if now >= self.next_heartbeat {
            self.next_heartbeat = now + self.config.heartbeat_interval;
            for id in self.connected.keys() {
                out.push(Command::Send { to: *id, msg: FullMeshMessage::Heartbeat });
            }
        }
        if now >= self.next_gossip {
            self.next_gossip = now + self.config.gossip_interval;
            let mut targets: Vec<PeerId> = self.connected.keys().copied().filter(|id| self.is_neighbor(id)).collect();
            targets.shuffle(&mut self.rng);
            for id in targets.into_iter().take(self.config.gossip_fanout) {
                self.send_state(id, false, now, out);
            }
        }
        if now >= self.next_probe {
            self.next_probe = now + self.config.probe_interval;
            let candidates: Vec<Member> = self
                .set
                .entries()
                .filter(|e| e.status == Status::Removed)
                .filter(|e| !self.connected.contains_key(&e.member.id) && !self.dialing.contains(&e.member.id))
                .map(|e| e.member.clone())
                .collect();
            if let Some(m) = candidates.choose(&mut self.rng).cloned() {
                self.dial(m, out);
            }
        }
        let strays: Vec<PeerId> = self
            .connected
            .iter()
            .filter(|(id, (_, since))| {
                !self.set.is_alive(id) && now.saturating_sub(*since) >= self.config.stray_timeout
            })
            .map(|(id, _)| *id)
            .collect();
        for id in strays {
            self.connected.remove(&id);
            out.push(Command::Disconnect(id));
        }
        self.set.expire(now, self.config.tombstone_ttl, self.config.max_tombstones);
        self.maybe_need_contacts(now, out);
    }

    fn detect_failures(&mut self, now: Duration, out: &mut Vec<Command<FullMeshMessage>>) {
        let mut failed = Vec::new();
        let mut redial = Vec::new();
        for (id, link) in &mut self.links {
            if self.connected.contains_key(id) {
                if self.detector.is_available(id, now) {
                    link.suspect_since = None;
                } else {
                    let since = *link.suspect_since.get_or_insert(now);
                    if now.saturating_sub(since) >= self.config.suspect_grace {
                        failed.push((*id, "suspected by the failure detector"));
                    }
                }
            } else {
                let since = *link.down_since.get_or_insert(now);
                if now.saturating_sub(since) >= self.config.unreachable_timeout {
                    failed.push((*id, "unreachable"));
                } else if !self.dialing.contains(id) && link.backoff.ready(now, &self.config.backoff) {
                    redial.push(*id);
                }
            }
        }
        for (id, reason) in failed {
            self.remove(id, reason, now, out);
        }
        for id in redial {
            if let Some(m) = self.set.get(&id).map(|e| e.member.clone()) {
                self.dial(m, out);
            }
        }
    }

    fn maybe_need_contacts(&mut self, now: Duration, out: &mut Vec<Command<FullMeshMessage>>) {
        let alone = self.set.alive_len() <= 1 && self.connected.is_empty() && self.dialing.is_empty();
        if !alone || !self.had_peers {
            return;
        }
        if self.last_need_contacts.is_some_and(|t| now.saturating_sub(t) < self.config.need_contacts_interval) {
            return;
        }
        self.last_need_contacts = Some(now);
        out.push(Command::NeedContacts);
    }
}

impl Membership for FullMesh {
    type Message = FullMeshMessage;

    fn handle(&mut self, input: Input<FullMeshMessage>, now: Duration, out: &mut Vec<Command<FullMeshMessage>>) {
        match input {
            Input::Join(contacts) => self.on_join(contacts, now, out),
            Input::Leave => self.on_leave(now, out),
            Input::Tick => self.on_tick(now, out),
            Input::Connected(member) => {
                if self.phase == Phase::Stopped {
                    // Nothing to talk about any more.
                    out.push(Command::Disconnect(member.id));
                    return;
                }
                self.on_connected(member, now, out);
            }
            Input::Disconnected(id) => self.on_link_lost(id, now, out),
            Input::ConnectFailed(id) => self.on_connect_failed(id, now),
            Input::Message { from, msg } => self.on_message(from, msg, now, out),
        }
    }

    fn me(&self) -> &Member {
        &self.me
    }

    fn neighbors(&self) -> Vec<PeerId> {
        self.connected.keys().copied().filter(|id| self.is_neighbor(id)).collect()
    }

    fn snapshot(&self) -> ViewSnapshot {
        if self.phase == Phase::Stopped || matches!(self.phase, Phase::Leaving(_)) {
            return ViewSnapshot::default();
        }
        let (active, passive) =
            self.set.alive().filter(|m| m.id != self.me.id).cloned().partition(|m| self.connected.contains_key(&m.id));
        ViewSnapshot { active, passive }
    }

    fn tick_interval(&self) -> Duration {
        self.config.tick_interval
    }
}
