//! A small deterministic driver for the overlay tests: N protocol instances, a discrete-event
//! queue, explicit connections following the driver contract of `membership.rs`, FIFO links with
//! random latency, crashes (noisy or silent), restarts, leaves, silent partitions and message
//! capture/replay. Everything random comes from one seed.
//!
//! The real simulator lives in `troupe_overlay::sim` (written elsewhere); this one is only big
//! enough for these tests.
#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use troupe_overlay::{Command, Input, Member, Membership, MembershipEvent, PeerId};

/// Something that happens at a time.
#[derive(Debug)]
enum Ev<M> {
    Tick { to: PeerId },
    Input { to: PeerId, input: Input<M> },
    Message { from: PeerId, to: PeerId, link: u64, msg: M },
    Establish { from: PeerId, to: Member },
    Rejoin { to: PeerId },
}

struct Slot<P> {
    proto: Option<P>,
    member: Member,
}

/// One logged membership event.
#[derive(Clone, Debug)]
pub struct Logged {
    pub at: Duration,
    pub slot: usize,
    pub node: PeerId,
    pub event: MembershipEvent,
}

/// One message seen on the wire (when capture is on).
#[derive(Clone, Debug)]
pub struct Captured<M> {
    pub at: Duration,
    pub from: PeerId,
    pub to: PeerId,
    pub msg: M,
}

type Make<P> = Box<dyn FnMut(Member, u64) -> P>;

/// The test cluster.
pub struct Cluster<P: Membership> {
    pub now: Duration,
    rng: StdRng,
    slots: Vec<Slot<P>>,
    by_id: BTreeMap<PeerId, usize>,
    queue: BinaryHeap<Reverse<(Duration, u64)>>,
    pending: BTreeMap<u64, Ev<P::Message>>,
    seq: u64,
    /// Live connections: unordered pair -> link number.
    links: BTreeMap<(PeerId, PeerId), u64>,
    next_link: u64,
    fifo: BTreeMap<(PeerId, PeerId), Duration>,
    groups: Vec<u32>,
    make: Make<P>,
    /// Seed slots used when a node asks for contacts.
    pub seeds: Vec<usize>,
    pub min_latency: Duration,
    pub max_latency: Duration,
    /// Delay before the peers of a crashed node see its links fail (noisy crashes).
    pub detect_delay: Duration,
    pub log: Vec<Logged>,
    pub need_contacts: Vec<u32>,
    pub capture: bool,
    /// Dial addresses like a real driver: a dial of a dead incarnation reaches whoever now
    /// listens at its address (answered with that node's `Connected`). Otherwise a dial names an
    /// incarnation and fails if it is dead.
    pub dial_by_address: bool,
    pub captured: Vec<Captured<P::Message>>,
    /// Messages delivered, for cost accounting.
    pub delivered: u64,
    out: Vec<Command<P::Message>>,
}

fn ordered(a: PeerId, b: PeerId) -> (PeerId, PeerId) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

impl<P: Membership> Cluster<P> {
    /// `n` node slots (not started), built by `make(member, seed)`.
    pub fn new(n: usize, seed: u64, make: impl FnMut(Member, u64) -> P + 'static) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let slots = (0..n)
            .map(|i| Slot {
                proto: None,
                member: Member {
                    id: PeerId(rng.random()),
                    name: format!("n{i}"),
                    addr: SocketAddr::V4(SocketAddrV4::new(
                        Ipv4Addr::new(10, 0, (i / 250) as u8, (i % 250) as u8 + 1),
                        7000,
                    )),
                },
            })
            .collect();
        Cluster {
            now: Duration::ZERO,
            rng,
            slots,
            by_id: BTreeMap::new(),
            queue: BinaryHeap::new(),
            pending: BTreeMap::new(),
            seq: 0,
            links: BTreeMap::new(),
            next_link: 0,
            fifo: BTreeMap::new(),
            groups: vec![0; n],
            make: Box::new(make),
            seeds: vec![0],
            min_latency: Duration::from_millis(1),
            max_latency: Duration::from_millis(20),
            detect_delay: Duration::from_millis(50),
            log: Vec::new(),
            need_contacts: vec![0; n],
            capture: false,
            dial_by_address: false,
            captured: Vec::new(),
            delivered: 0,
            out: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn member(&self, slot: usize) -> &Member {
        &self.slots[slot].member
    }

    pub fn id(&self, slot: usize) -> PeerId {
        self.slots[slot].member.id
    }

    pub fn proto(&self, slot: usize) -> Option<&P> {
        self.slots[slot].proto.as_ref()
    }

    pub fn is_up(&self, slot: usize) -> bool {
        self.slots[slot].proto.is_some()
    }

    pub fn up_slots(&self) -> Vec<usize> {
        (0..self.slots.len()).filter(|s| self.is_up(*s)).collect()
    }

    pub fn slot_of(&self, id: PeerId) -> Option<usize> {
        self.by_id.get(&id).copied()
    }

    pub fn connected(&self, a: PeerId, b: PeerId) -> bool {
        self.links.contains_key(&ordered(a, b))
    }

    fn latency(&mut self) -> Duration {
        let lo = self.min_latency.as_micros() as u64;
        let hi = self.max_latency.as_micros() as u64;
        Duration::from_micros(self.rng.random_range(lo..=hi.max(lo)))
    }

    fn schedule(&mut self, at: Duration, ev: Ev<P::Message>) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq)));
        self.pending.insert(self.seq, ev);
    }

    fn reachable(&self, a: PeerId, b: PeerId) -> bool {
        match (self.by_id.get(&a), self.by_id.get(&b)) {
            (Some(x), Some(y)) => self.groups[*x] == self.groups[*y],
            _ => false,
        }
    }

    /// Starts the protocol in `slot` for the first time and joins it through the seeds that are
    /// up (none: it starts alone). Use [`Cluster::restart`] for a new incarnation.
    pub fn start(&mut self, slot: usize) {
        if self.slots[slot].proto.is_some() {
            return;
        }
        let member = self.slots[slot].member.clone();
        let seed = self.rng.random();
        let proto = (self.make)(member.clone(), seed);
        let phase = Duration::from_micros(self.rng.random_range(0..proto.tick_interval().as_micros() as u64));
        self.slots[slot].proto = Some(proto);
        self.by_id.insert(member.id, slot);
        self.schedule(self.now + phase, Ev::Tick { to: member.id });
        self.join(slot);
    }

    /// Connects `slot` to the reachable seeds and feeds it `Join` with them. Half of the time (at
    /// random) the joiner also gets `Connected` for each contact before `Join`, the other half
    /// only the contacts see `Connected`: the contract allows both.
    pub fn join(&mut self, slot: usize) {
        let me = self.id(slot);
        let seeds: Vec<usize> = self.seeds.iter().copied().filter(|s| *s != slot && self.is_up(*s)).collect();
        let mut contacts = Vec::new();
        let both = self.rng.random_bool(0.5);
        for s in seeds {
            let peer = self.slots[s].member.clone();
            if !self.reachable(me, peer.id) {
                continue;
            }
            if !self.connected(me, peer.id) {
                self.next_link += 1;
                self.links.insert(ordered(me, peer.id), self.next_link);
                let me_member = self.slots[slot].member.clone();
                self.feed(s, Input::Connected(me_member));
                if both {
                    self.feed(slot, Input::Connected(peer.clone()));
                }
            }
            contacts.push(peer);
        }
        if contacts.is_empty() && !self.seeds.is_empty() && !self.seeds.contains(&slot) {
            // A real driver keeps dialing its seeds: try again later.
            let me = self.id(slot);
            self.schedule(self.now + Duration::from_secs(1), Ev::Rejoin { to: me });
            return;
        }
        self.feed(slot, Input::Join(contacts));
    }

    /// Feeds one input to `slot` now and executes the commands.
    pub fn feed(&mut self, slot: usize, input: Input<P::Message>) {
        let Some(proto) = self.slots[slot].proto.as_mut() else { return };
        let mut out = std::mem::take(&mut self.out);
        proto.handle(input, self.now, &mut out);
        let me = self.slots[slot].member.id;
        for cmd in out.drain(..) {
            self.execute(slot, me, cmd);
        }
        self.out = out;
    }

    fn execute(&mut self, slot: usize, me: PeerId, cmd: Command<P::Message>) {
        match cmd {
            Command::Send { to, msg } => {
                let Some(link) = self.links.get(&ordered(me, to)).copied() else { return };
                if !self.reachable(me, to) {
                    return;
                }
                if self.capture {
                    self.captured.push(Captured { at: self.now, from: me, to, msg: msg.clone() });
                }
                let lat = self.latency();
                let last = self.fifo.get(&(me, to)).copied().unwrap_or_default();
                let at = (self.now + lat).max(last);
                self.fifo.insert((me, to), at);
                self.schedule(at, Ev::Message { from: me, to, link, msg });
            }
            Command::Connect(m) => {
                let lat = self.latency();
                if self.connected(me, m.id) {
                    let peer = self.slot_of(m.id).map(|s| self.slots[s].member.clone()).unwrap_or(m);
                    self.schedule(self.now + lat, Ev::Input { to: me, input: Input::Connected(peer) });
                } else {
                    self.schedule(self.now + lat, Ev::Establish { from: me, to: m });
                }
            }
            Command::Disconnect(p) => {
                if self.links.remove(&ordered(me, p)).is_some() {
                    let lat = self.latency();
                    self.schedule(self.now + lat, Ev::Input { to: p, input: Input::Disconnected(me) });
                }
            }
            Command::NeedContacts => {
                self.need_contacts[slot] += 1;
                let lat = self.latency();
                self.schedule(self.now + lat, Ev::Rejoin { to: me });
            }
            Command::Event(event) => self.log.push(Logged { at: self.now, slot, node: me, event }),
        }
    }

    fn deliver(&mut self, ev: Ev<P::Message>) {
        match ev {
            Ev::Tick { to } => {
                let Some(slot) = self.slot_of(to) else { return };
                let interval = self.slots[slot].proto.as_ref().map(|p| p.tick_interval()).unwrap_or_default();
                self.feed(slot, Input::Tick);
                self.schedule(self.now + interval, Ev::Tick { to });
            }
            Ev::Rejoin { to } => {
                if let Some(slot) = self.slot_of(to) {
                    self.join(slot);
                }
            }
            Ev::Input { to, input } => {
                if let Some(slot) = self.slot_of(to) {
                    self.feed(slot, input);
                }
            }
            Ev::Message { from, to, link, msg } => {
                if self.links.get(&ordered(from, to)) != Some(&link) || !self.reachable(from, to) {
                    return;
                }
                if let Some(slot) = self.slot_of(to) {
                    self.delivered += 1;
                    self.feed(slot, Input::Message { from, msg });
                }
            }
            Ev::Establish { from, to } => {
                let Some(a) = self.slot_of(from) else { return };
                let target = match self.slot_of(to.id) {
                    Some(b) => Some(b),
                    None if self.dial_by_address => {
                        (0..self.slots.len()).find(|s| self.is_up(*s) && self.slots[*s].member.addr == to.addr)
                    }
                    None => None,
                };
                match target {
                    Some(b) if self.reachable(from, self.id(b)) => {
                        let (ma, mb) = (self.slots[a].member.clone(), self.slots[b].member.clone());
                        if !self.connected(from, mb.id) {
                            self.next_link += 1;
                            self.links.insert(ordered(from, mb.id), self.next_link);
                            self.feed(b, Input::Connected(ma));
                        }
                        self.feed(a, Input::Connected(mb));
                    }
                    _ => self.feed(a, Input::ConnectFailed(to.id)),
                }
            }
        }
    }

    /// Runs until `until` (absolute sim time).
    pub fn run_until(&mut self, until: Duration) {
        while let Some(Reverse((at, seq))) = self.queue.peek().copied() {
            if at > until {
                break;
            }
            self.queue.pop();
            self.now = at;
            if let Some(ev) = self.pending.remove(&seq) {
                self.deliver(ev);
            }
        }
        self.now = until;
    }

    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    /// Runs in steps of `step` until `cond` holds (returns the time it took) or `limit` passed.
    pub fn run_until_cond(
        &mut self,
        limit: Duration,
        step: Duration,
        mut cond: impl FnMut(&Self) -> bool,
    ) -> Option<Duration> {
        let start = self.now;
        while self.now - start <= limit {
            if cond(self) {
                return Some(self.now - start);
            }
            self.run_for(step);
        }
        None
    }

    /// Stops the node in `slot` abruptly. With `noisy`, its peers see its links fail after
    /// `detect_delay` (the OS closed the sockets); otherwise they hear nothing.
    pub fn crash(&mut self, slot: usize, noisy: bool) {
        let id = self.id(slot);
        self.slots[slot].proto = None;
        self.by_id.remove(&id);
        let gone: Vec<(PeerId, PeerId)> = self.links.keys().filter(|(a, b)| *a == id || *b == id).copied().collect();
        for pair in gone {
            self.links.remove(&pair);
            let peer = if pair.0 == id { pair.1 } else { pair.0 };
            if noisy {
                let at = self.now + self.detect_delay;
                self.schedule(at, Ev::Input { to: peer, input: Input::Disconnected(id) });
            }
        }
    }

    /// Restarts the node in `slot` as a new incarnation (same name and address).
    pub fn restart(&mut self, slot: usize) {
        if self.is_up(slot) {
            self.crash(slot, true);
        }
        self.slots[slot].member.id = PeerId(self.rng.random());
        let member = self.slots[slot].member.clone();
        let seed = self.rng.random();
        let proto = (self.make)(member.clone(), seed);
        self.slots[slot].proto = Some(proto);
        self.by_id.insert(member.id, slot);
        self.schedule(self.now, Ev::Tick { to: member.id });
        self.join(slot);
    }

    /// Splits the cluster: `group[slot]` says which side each node is on. Links across sides stay
    /// but carry nothing; new connections across fail.
    pub fn partition(&mut self, group: impl Fn(usize) -> u32) {
        self.groups = (0..self.slots.len()).map(group).collect();
    }

    pub fn heal(&mut self) {
        self.groups = vec![0; self.slots.len()];
    }

    /// Delivers `msg` to `to` as if `from` had sent it now (replay of captured traffic).
    pub fn inject(&mut self, from: PeerId, to: PeerId, msg: P::Message) {
        if let Some(slot) = self.slot_of(to) {
            self.feed(slot, Input::Message { from, msg });
        }
    }

    /// The last MemberUp/MemberDown state of `about` at `slot`'s current incarnation.
    pub fn member_events(&self, slot: usize, about: PeerId) -> Vec<&MembershipEvent> {
        let node = self.id(slot);
        self.log
            .iter()
            .filter(|l| l.node == node)
            .map(|l| &l.event)
            .filter(|e| match e {
                MembershipEvent::MemberUp(m) => m.id == about,
                MembershipEvent::MemberDown { id, .. } => *id == about,
                _ => false,
            })
            .collect()
    }

    /// Replays each current incarnation's MemberUp/Down log into the set of members it reports.
    pub fn reported_members(&self, slot: usize) -> BTreeSet<PeerId> {
        let node = self.id(slot);
        let mut set = BTreeSet::new();
        for l in self.log.iter().filter(|l| l.node == node) {
            match &l.event {
                MembershipEvent::MemberUp(m) => {
                    set.insert(m.id);
                }
                MembershipEvent::MemberDown { id, .. } => {
                    set.remove(id);
                }
                _ => {}
            }
        }
        set
    }

    /// Replays the NeighborUp/Down log of `slot` into the set of neighbours it reports.
    pub fn reported_neighbors(&self, slot: usize) -> BTreeSet<PeerId> {
        let node = self.id(slot);
        let mut set = BTreeSet::new();
        for l in self.log.iter().filter(|l| l.node == node) {
            match &l.event {
                MembershipEvent::NeighborUp(m) => {
                    set.insert(m.id);
                }
                MembershipEvent::NeighborDown(id) => {
                    set.remove(id);
                }
                _ => {}
            }
        }
        set
    }
}

/// Checks the invariants every overlay keeps: no self entry in any view, and the neighbours it
/// reports through events are the ones it lists.
pub fn check_views<P: Membership>(c: &Cluster<P>) -> Result<(), String> {
    for slot in c.up_slots() {
        let Some(p) = c.proto(slot) else { continue };
        let me = p.me().id;
        let snap = p.snapshot();
        if snap.active.iter().chain(snap.passive.iter()).any(|m| m.id == me) {
            return Err(format!("slot {slot} lists itself in a view"));
        }
        let active: BTreeSet<PeerId> = snap.active.iter().map(|m| m.id).collect();
        if active.len() != snap.active.len() {
            return Err(format!("slot {slot}: duplicate active entries"));
        }
        if snap.passive.iter().any(|m| active.contains(&m.id)) {
            return Err(format!("slot {slot}: active and passive overlap"));
        }
        let neighbors: BTreeSet<PeerId> = p.neighbors().into_iter().collect();
        if neighbors.contains(&me) {
            return Err(format!("slot {slot} is its own neighbour"));
        }
        if neighbors != c.reported_neighbors(slot) {
            return Err(format!(
                "slot {slot}: neighbours {:?} but events say {:?}",
                neighbors,
                c.reported_neighbors(slot)
            ));
        }
    }
    Ok(())
}

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}
