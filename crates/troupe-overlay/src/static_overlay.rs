//! `StaticOverlay`: explicit connections only (Partisan's static peer service).
//!
//! The neighbours are exactly the configured contacts, which the driver passes in
//! [`Input::Join`] (once connected to them). The overlay keeps a connection to each and, when one
//! fails, redials it with capped exponential backoff (optionally giving up after
//! `backoff.max_attempts` consecutive failures). Contacts are keyed by address, so a contact that
//! restarts (a new incarnation at the same address) is picked up when either side reconnects.
//! Inbound connections from peers that are not contacts are accepted as neighbours while they
//! last (so an edge configured on one side only works both ways) but never redialed; set
//! `accept_inbound = false` to refuse them.
//!
//! No gossip, no messages of its own: failure detection is the connection's. `MemberUp`/`Down`
//! and `NeighborUp`/`Down` both follow the live connections.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::failure::{Backoff, BackoffConfig};
use crate::member::{Member, PeerId};
use crate::membership::{Command, Input, Membership, MembershipEvent, ViewSnapshot};

/// Settings of a [`StaticOverlay`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticConfig {
    /// How often the driver ticks (redials happen on ticks).
    pub tick_interval: Duration,
    /// Redial backoff.
    pub backoff: BackoffConfig,
    /// Whether inbound connections from non-contacts are kept as neighbours.
    pub accept_inbound: bool,
    /// At most this many inbound non-contact neighbours.
    pub max_inbound: usize,
    /// At most this many contacts.
    pub max_contacts: usize,
    /// Minimum time between two [`Command::NeedContacts`] (emitted when every contact gave up).
    pub need_contacts_interval: Duration,
    /// A connection that lasted this long counts as a success (the next loss is redialed at
    /// once); one that dropped sooner counts as a failed attempt (backoff), so a peer that
    /// accepts and immediately closes is not hammered.
    pub stable_after: Duration,
    /// Seed of the backoff jitter.
    pub seed: u64,
}

impl Default for StaticConfig {
    fn default() -> Self {
        StaticConfig {
            tick_interval: Duration::from_millis(250),
            backoff: BackoffConfig::default(),
            accept_inbound: true,
            max_inbound: 256,
            max_contacts: 1024,
            need_contacts_interval: Duration::from_secs(10),
            stable_after: Duration::from_secs(5),
            seed: 0,
        }
    }
}

/// The static overlay sends no messages of its own; this type has no values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StaticMessage {}

#[derive(Clone, Debug)]
struct Contact {
    member: Member,
    up: bool,
    up_since: Duration,
    dialing: bool,
    backoff: Backoff,
}

/// The static overlay. See the [module docs](self).
#[derive(Debug)]
pub struct StaticOverlay {
    me: Member,
    config: StaticConfig,
    rng: StdRng,
    joined: bool,
    stopped: bool,
    contacts: BTreeMap<SocketAddr, Contact>,
    inbound: BTreeMap<PeerId, Member>,
    last_need_contacts: Option<Duration>,
}

type Out = Vec<Command<StaticMessage>>;

fn up(member: &Member, out: &mut Out) {
    out.push(Command::Event(MembershipEvent::MemberUp(member.clone())));
    out.push(Command::Event(MembershipEvent::NeighborUp(member.clone())));
}

fn down(id: PeerId, reason: &str, out: &mut Out) {
    out.push(Command::Event(MembershipEvent::NeighborDown(id)));
    out.push(Command::Event(MembershipEvent::MemberDown { id, reason: reason.to_string() }));
}

impl StaticOverlay {
    /// A node `me` with no contacts until [`Input::Join`].
    pub fn new(me: Member, config: StaticConfig) -> Self {
        StaticOverlay {
            rng: StdRng::seed_from_u64(config.seed),
            me,
            config,
            joined: false,
            stopped: false,
            contacts: BTreeMap::new(),
            inbound: BTreeMap::new(),
            last_need_contacts: None,
        }
    }

    /// The configured contacts (latest known incarnation of each).
    pub fn contacts(&self) -> Vec<Member> {
        self.contacts.values().map(|c| c.member.clone()).collect()
    }

    /// Consecutive failed dials of the contact at `addr`.
    pub fn failures(&self, addr: &SocketAddr) -> Option<u32> {
        self.contacts.get(addr).map(|c| c.backoff.failures())
    }

    fn on_join(&mut self, contacts: Vec<Member>, now: Duration, out: &mut Out) {
        self.joined = true;
        for m in contacts {
            if m.id == self.me.id || m.addr == self.me.addr {
                continue;
            }
            if !self.contacts.contains_key(&m.addr) && self.contacts.len() >= self.config.max_contacts {
                continue;
            }
            // The driver is connected to it: it may already be up as an inbound peer.
            let was_inbound = self.inbound.remove(&m.id).is_some();
            let entry = self.contacts.entry(m.addr).or_insert_with(|| Contact {
                member: m.clone(),
                up: false,
                up_since: Duration::ZERO,
                dialing: false,
                backoff: Backoff::new(),
            });
            if entry.up && entry.member.id == m.id {
                continue;
            }
            if entry.up {
                let old = entry.member.id;
                down(old, "restarted", out);
                out.push(Command::Disconnect(old));
            }
            entry.member = m.clone();
            entry.up = true;
            entry.up_since = now;
            if !was_inbound {
                up(&m, out);
            }
        }
    }

    fn on_connected(&mut self, m: Member, now: Duration, out: &mut Out) {
        if m.id == self.me.id {
            return;
        }
        if let Some(c) = self.contacts.get_mut(&m.addr) {
            if c.up && c.member.id == m.id {
                c.dialing = false;
                return;
            }
            if c.up {
                let old = c.member.id;
                down(old, "restarted", out);
                out.push(Command::Disconnect(old));
            }
            c.member = m.clone();
            c.up = true;
            c.up_since = now;
            c.dialing = false;
            up(&m, out);
            return;
        }
        if self.inbound.contains_key(&m.id) {
            return;
        }
        if self.config.accept_inbound && self.inbound.len() < self.config.max_inbound {
            up(&m, out);
            self.inbound.insert(m.id, m);
        } else {
            out.push(Command::Disconnect(m.id));
        }
    }

    fn on_disconnected(&mut self, id: PeerId, now: Duration, out: &mut Out) {
        if self.inbound.remove(&id).is_some() {
            down(id, "connection closed", out);
            return;
        }
        let (joined, stable, config) = (self.joined, self.config.stable_after, self.config.backoff.clone());
        let Some(addr) = self.contacts.iter().find(|(_, c)| c.member.id == id && c.up).map(|(a, _)| *a) else {
            return;
        };
        let Some(c) = self.contacts.get_mut(&addr) else { return };
        c.up = false;
        down(id, "connection closed", out);
        if now.saturating_sub(c.up_since) >= stable {
            // A connection that held: redial at once.
            c.backoff.succeeded();
            if joined && !c.dialing {
                c.dialing = true;
                out.push(Command::Connect(c.member.clone()));
            }
        } else {
            c.backoff.failed(now, &config, &mut self.rng);
        }
    }

    fn on_connect_failed(&mut self, id: PeerId, now: Duration) {
        let config = self.config.backoff.clone();
        let Some(addr) = self.contacts.iter().find(|(_, c)| c.member.id == id && c.dialing).map(|(a, _)| *a) else {
            return;
        };
        if let Some(c) = self.contacts.get_mut(&addr) {
            c.dialing = false;
            c.backoff.failed(now, &config, &mut self.rng);
        }
    }

    fn on_tick(&mut self, now: Duration, out: &mut Out) {
        if !self.joined {
            return;
        }
        for c in self.contacts.values_mut() {
            if !c.up && !c.dialing && c.backoff.ready(now, &self.config.backoff) {
                c.dialing = true;
                out.push(Command::Connect(c.member.clone()));
            }
        }
        let stuck = !self.contacts.is_empty()
            && self.inbound.is_empty()
            && self.contacts.values().all(|c| !c.up && !c.dialing && c.backoff.exhausted(&self.config.backoff));
        if stuck && self.last_need_contacts.is_none_or(|t| now.saturating_sub(t) >= self.config.need_contacts_interval)
        {
            self.last_need_contacts = Some(now);
            out.push(Command::NeedContacts);
        }
    }

    fn on_leave(&mut self, out: &mut Out) {
        for c in self.contacts.values_mut() {
            if c.up {
                down(c.member.id, "this node left", out);
                out.push(Command::Disconnect(c.member.id));
            }
            c.up = false;
        }
        for id in std::mem::take(&mut self.inbound).into_keys() {
            down(id, "this node left", out);
            out.push(Command::Disconnect(id));
        }
        self.stopped = true;
    }
}

impl Membership for StaticOverlay {
    type Message = StaticMessage;

    fn handle(&mut self, input: Input<StaticMessage>, now: Duration, out: &mut Out) {
        if self.stopped {
            if let Input::Connected(m) = input {
                out.push(Command::Disconnect(m.id));
            }
            return;
        }
        match input {
            Input::Join(contacts) => self.on_join(contacts, now, out),
            Input::Leave => self.on_leave(out),
            Input::Tick => self.on_tick(now, out),
            Input::Connected(m) => self.on_connected(m, now, out),
            Input::Disconnected(id) => self.on_disconnected(id, now, out),
            Input::ConnectFailed(id) => self.on_connect_failed(id, now),
            Input::Message { msg, .. } => match msg {},
        }
    }

    fn me(&self) -> &Member {
        &self.me
    }

    fn neighbors(&self) -> Vec<PeerId> {
        let mut ids: Vec<PeerId> =
            self.contacts.values().filter(|c| c.up).map(|c| c.member.id).chain(self.inbound.keys().copied()).collect();
        ids.sort();
        ids
    }

    fn snapshot(&self) -> ViewSnapshot {
        let mut active: Vec<Member> = self.contacts.values().filter(|c| c.up).map(|c| c.member.clone()).collect();
        active.extend(self.inbound.values().cloned());
        let passive = self.contacts.values().filter(|c| !c.up).map(|c| c.member.clone()).collect();
        ViewSnapshot { active, passive }
    }

    fn tick_interval(&self) -> Duration {
        self.config.tick_interval
    }
}
