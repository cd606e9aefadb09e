//! HyParView (Leitão, Pereira, Rodrigues, DSN 2007): a small active view of neighbours with open
//! connections, a larger passive view of backups, random walks to join and to shuffle.
//!
//! How the paper maps onto the sans-IO [`Membership`] contract:
//! - The **active view** is the set of peers this node has a connection with *and* has agreed to
//!   be neighbours with. To add a peer the node first asks the driver for a connection
//!   ([`Command::Connect`]) and only sends the request (JOIN or NEIGHBOR) once
//!   [`Input::Connected`] arrives; a peer dropped from the active view gets a DISCONNECT message
//!   followed by [`Command::Disconnect`].
//! - Other connections (a shuffle reply to a node outside the active view, a rejected NEIGHBOR
//!   request, a JOIN in flight) are *transient*: closed after
//!   [`HyParViewConfig::transient_linger`] of idleness, at most
//!   [`HyParViewConfig::max_transient`] of them.
//! - [`Input::Disconnected`] of an active peer is a failure: it is dropped (not kept as a backup)
//!   and replaced from the passive view with NEIGHBOR requests, high priority when the active view
//!   is empty and low otherwise; a candidate that cannot be reached is dropped from the passive
//!   view and the next one is tried.
//!
//! Repair of the islands a mass join can leave (Partisan issue #75):
//! - every [`HyParViewConfig::promotion_interval`] a node below `active_max` neighbours promotes a
//!   random passive peer;
//! - a node whose active view is empty and which has no candidate left re-joins through one of
//!   its contacts (the members given with [`Input::Join`]) and, when none answers, asks the driver
//!   for fresh ones with [`Command::NeedContacts`].
//!
//! Repair of healed partitions (not in the paper or Partisan): while a network is split, failed
//! connects remove the other side from the passive views and both sides refill their active views
//! from their own side; once every view is full nobody promotes, and after the partition heals
//! the overlay stays split (the simulator shows it after 100 s of partition at 1,000 nodes). So a
//! node remembers the last [`HyParViewConfig::max_suspects`] neighbours it lost to a *failure*
//! (the connection lost without DISCONNECT) and every
//! [`HyParViewConfig::heal_interval`] tries to reconnect to one of them, in turn. A suspect that
//! answers was behind a partition (or restarted): it is asked to be a neighbour with high
//! priority, which, as a JOIN, it accepts even with a full view. Crashed suspects cost one refused
//! connect per interval and nothing else; a node that left in an orderly way is never a suspect.
//!
//! Events: [`MembershipEvent::NeighborUp`]/[`MembershipEvent::NeighborDown`] report changes of the
//! active view. Like Partisan's HyParView peer service, the members this overlay reports with
//! [`MembershipEvent::MemberUp`]/[`MembershipEvent::MemberDown`] are the active view too: a node
//! of a partial-view overlay does not know the whole cluster, and reporting passive entries would
//! announce peers nobody checks are alive.

mod config;
mod message;
mod view;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub use config::{ConfigError, HyParViewConfig};
pub use message::{HyParViewMessage, Priority};
use view::View;

use crate::member::{Member, PeerId};
use crate::membership::{Command, Input, Membership, MembershipEvent, ViewSnapshot};

type Out = Vec<Command<HyParViewMessage>>;

/// An open connection as this node sees it.
#[derive(Clone, Debug)]
struct Conn {
    member: Member,
    last_used: Duration,
}

/// Messages waiting for a connection to come up.
#[derive(Clone, Debug)]
struct Outbox {
    msgs: Vec<HyParViewMessage>,
    since: Duration,
}

/// Why a NEIGHBOR request is under way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AttemptKind {
    /// Promoting a passive peer (after a failure, a disconnect or on the promotion timer).
    Promote,
    /// Ending a FORWARD_JOIN walk: taking the new node as a neighbour (always high priority).
    ForwardJoin,
    /// Reconnecting to a suspect (always high priority: it may be across a healed partition).
    Heal,
}

/// A NEIGHBOR request under way.
#[derive(Clone, Debug)]
struct Attempt {
    kind: AttemptKind,
    sent: bool,
    since: Duration,
}

/// One node's HyParView state machine.
#[derive(Debug)]
pub struct HyParView {
    me: Member,
    cfg: HyParViewConfig,
    rng: StdRng,
    active: View,
    passive: View,
    conns: BTreeMap<PeerId, Conn>,
    connecting: BTreeSet<PeerId>,
    outbox: BTreeMap<PeerId, Outbox>,
    attempts: BTreeMap<PeerId, Attempt>,
    /// Candidates tried since the last promotion tick (not asked again before it).
    tried: BTreeSet<PeerId>,
    contacts: Vec<Member>,
    contacts_tried: BTreeSet<PeerId>,
    /// Peers lost to a failure, oldest first (see the module documentation).
    suspects: Vec<Member>,
    next_heal: Option<Duration>,
    joining: Option<(PeerId, Duration)>,
    /// When the last JOIN went out over its connection.
    last_join: Option<Duration>,
    /// When a node below `active_min` last re-joined.
    last_rejoin: Option<Duration>,
    /// Whether this node ever had contacts or neighbours (a lone first node does not ask for
    /// contacts).
    joined: bool,
    last_need_contacts: Option<Duration>,
    last_shuffle: Vec<PeerId>,
    next_shuffle: Option<Duration>,
    next_promotion: Option<Duration>,
    left: bool,
}

impl HyParView {
    /// A node that has not joined yet (feed it [`Input::Join`]).
    pub fn new(me: Member, config: HyParViewConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(HyParView {
            me,
            rng: StdRng::seed_from_u64(config.seed),
            active: View::new(config.active_max),
            passive: View::new(config.passive_max),
            conns: BTreeMap::new(),
            connecting: BTreeSet::new(),
            outbox: BTreeMap::new(),
            attempts: BTreeMap::new(),
            tried: BTreeSet::new(),
            contacts: Vec::new(),
            contacts_tried: BTreeSet::new(),
            suspects: Vec::new(),
            next_heal: None,
            joining: None,
            last_join: None,
            last_rejoin: None,
            joined: false,
            last_need_contacts: None,
            last_shuffle: Vec::new(),
            next_shuffle: None,
            next_promotion: None,
            left: false,
            cfg: config,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &HyParViewConfig {
        &self.cfg
    }

    /// Ids of the active view.
    pub fn active_ids(&self) -> Vec<PeerId> {
        self.active.ids()
    }

    /// Ids of the passive view.
    pub fn passive_ids(&self) -> Vec<PeerId> {
        self.passive.ids()
    }

    /// How many connections this node holds open (active and transient).
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Whether [`Input::Leave`] was handled (the node ignores everything from then on).
    pub fn has_left(&self) -> bool {
        self.left
    }

    fn start_timers(&mut self, now: Duration) {
        if self.next_shuffle.is_none() {
            // Random phases, so that nodes started together do not shuffle in lockstep.
            let s = self.rng.random_range(0..self.cfg.shuffle_interval.as_micros().max(1) as u64);
            let p = self.rng.random_range(0..self.cfg.promotion_interval.as_micros().max(1) as u64);
            self.next_shuffle = Some(now + Duration::from_micros(s));
            self.next_promotion = Some(now + Duration::from_micros(p));
            // A phase from the id, not the RNG: nodes started together do not probe together.
            let h = self.me.id.0 % self.cfg.heal_interval.as_micros().max(1) as u64;
            self.next_heal = Some(now + Duration::from_micros(h));
        }
    }

    // ---- connections -------------------------------------------------------------------------

    fn send(&mut self, to: PeerId, msg: HyParViewMessage, now: Duration, out: &mut Out) {
        if let Some(c) = self.conns.get_mut(&to) {
            c.last_used = now;
        }
        out.push(Command::Send { to, msg });
    }

    /// Sends now if connected, otherwise connects and queues.
    fn send_or_queue(&mut self, to: &Member, msg: HyParViewMessage, now: Duration, out: &mut Out) {
        if self.conns.contains_key(&to.id) {
            self.send(to.id, msg, now, out);
            return;
        }
        let ob = self.outbox.entry(to.id).or_insert(Outbox { msgs: Vec::new(), since: now });
        if ob.msgs.len() < 8 {
            ob.msgs.push(msg);
        }
        self.connect(to, out);
    }

    fn connect(&mut self, to: &Member, out: &mut Out) {
        if !self.conns.contains_key(&to.id) && self.connecting.insert(to.id) {
            out.push(Command::Connect(to.clone()));
        }
    }

    fn close(&mut self, id: PeerId, out: &mut Out) {
        if self.conns.remove(&id).is_some() {
            out.push(Command::Disconnect(id));
        }
    }

    fn transient_count(&self) -> usize {
        self.conns.len().saturating_sub(self.active.len())
    }

    /// A connection somebody is waiting for (not to be closed as idle or refused as excess).
    fn expected(&self, id: PeerId) -> bool {
        self.outbox.contains_key(&id)
            || self.attempts.contains_key(&id)
            || self.joining.is_some_and(|(j, _)| j == id)
            || self.connecting.contains(&id)
    }

    // ---- views -------------------------------------------------------------------------------

    /// Puts a connected peer into the active view, dropping a random neighbour if it is full.
    fn activate(&mut self, member: Member, now: Duration, out: &mut Out) {
        if member.id == self.me.id || self.active.contains(member.id) || !self.conns.contains_key(&member.id) {
            return;
        }
        if self.active.is_full() {
            let victim = self.active.random(&mut self.rng, |m| m.id != member.id).map(|m| m.id);
            if let Some(victim) = victim {
                self.drop_neighbor(victim, now, out);
            }
        }
        self.passive.remove(member.id);
        self.tried.remove(&member.id);
        self.suspects.retain(|m| m.id != member.id);
        if self.active.push(member.clone()) {
            self.joined = true;
            self.contacts_tried.clear();
            out.push(Command::Event(MembershipEvent::NeighborUp(member.clone())));
            out.push(Command::Event(MembershipEvent::MemberUp(member)));
        }
    }

    /// Removes a neighbour in an orderly way: DISCONNECT, close, keep it as a backup.
    fn drop_neighbor(&mut self, id: PeerId, now: Duration, out: &mut Out) {
        if let Some(m) = self.active.remove(id) {
            self.send(id, HyParViewMessage::Disconnect, now, out);
            self.close(id, out);
            Self::down_events(id, "dropped from the active view", out);
            self.add_passive(m, &[]);
        }
    }

    fn down_events(id: PeerId, reason: &str, out: &mut Out) {
        out.push(Command::Event(MembershipEvent::NeighborDown(id)));
        out.push(Command::Event(MembershipEvent::MemberDown { id, reason: reason.to_string() }));
    }

    /// Adds a backup; when the passive view is full, evicts one of `prefer_evict` if present,
    /// otherwise a random entry.
    fn add_passive(&mut self, member: Member, prefer_evict: &[PeerId]) {
        if member.id == self.me.id || self.active.contains(member.id) || self.passive.contains(member.id) {
            return;
        }
        if self.passive.is_full() {
            let evict = prefer_evict
                .iter()
                .copied()
                .find(|id| self.passive.contains(*id))
                .or_else(|| self.passive.random(&mut self.rng, |_| true).map(|m| m.id));
            if let Some(e) = evict {
                self.passive.remove(e);
            }
        }
        self.passive.push(member);
    }

    // ---- neighbour requests ------------------------------------------------------------------

    fn start_attempt(&mut self, member: Member, kind: AttemptKind, now: Duration, out: &mut Out) {
        let id = member.id;
        if id == self.me.id || self.active.contains(id) || self.attempts.contains_key(&id) {
            return;
        }
        self.attempts.insert(id, Attempt { kind, sent: false, since: now });
        if self.conns.contains_key(&id) {
            self.send_request(id, now, out);
        } else {
            self.connect(&member, out);
        }
    }

    fn send_request(&mut self, id: PeerId, now: Duration, out: &mut Out) {
        let empty = self.active.is_empty();
        let Some(a) = self.attempts.get_mut(&id) else { return };
        if a.sent {
            return;
        }
        a.sent = true;
        let high = matches!(a.kind, AttemptKind::ForwardJoin | AttemptKind::Heal) || empty;
        let priority = if high { Priority::High } else { Priority::Low };
        let msg = HyParViewMessage::Neighbor { member: self.me.clone(), priority };
        self.send(id, msg, now, out);
    }

    /// A request ended without the peer joining the active view.
    fn attempt_failed(&mut self, id: PeerId, unreachable: bool, now: Duration, out: &mut Out) {
        if let Some(a) = self.attempts.remove(&id) {
            self.tried.insert(id);
            if unreachable {
                self.passive.remove(id);
            }
            if a.kind == AttemptKind::Promote {
                self.fill(self.cfg.active_max, now, out);
            }
        }
    }

    fn promotions_in_flight(&self) -> usize {
        self.attempts.values().filter(|a| a.kind == AttemptKind::Promote).count()
    }

    /// Starts promotions from the passive view until the active view plus the requests under way
    /// reach `target`.
    fn fill(&mut self, target: usize, now: Duration, out: &mut Out) {
        let target = target.min(self.cfg.active_max);
        while self.active.len() + self.promotions_in_flight() < target {
            let (tried, attempts) = (&self.tried, &self.attempts);
            let Some(c) =
                self.passive.random(&mut self.rng, |m| !tried.contains(&m.id) && !attempts.contains_key(&m.id))
            else {
                break;
            };
            let c = c.clone();
            self.start_attempt(c, AttemptKind::Promote, now, out);
        }
        self.check_isolated(now, out);
    }

    /// An isolated node (no neighbour, nothing under way, no candidate) re-joins through a
    /// contact, or asks the driver for contacts. A starving node (below `active_min`, nothing
    /// under way, no untried candidate) re-joins through a contact now and then: that is how an
    /// island left by a mass join finds its way back.
    fn check_isolated(&mut self, now: Duration, out: &mut Out) {
        if !self.attempts.is_empty() || self.joining.is_some() {
            return;
        }
        if !self.active.is_empty() {
            self.check_starving(now, out);
            return;
        }
        if self.last_join.is_some_and(|t| now < t + self.cfg.join_grace) {
            return; // FORWARD_JOIN walks are still bringing neighbours
        }
        if !self.passive.is_empty() {
            // High-priority requests are never refused: give every backup another chance.
            self.tried.clear();
            let c = self.passive.random(&mut self.rng, |_| true).cloned();
            if let Some(c) = c {
                self.start_attempt(c, AttemptKind::Promote, now, out);
            }
            return;
        }
        if self.join_a_contact(now, out) {
            return;
        }
        if self.joined && self.last_need_contacts.is_none_or(|t| now >= t + self.cfg.need_contacts_interval) {
            self.last_need_contacts = Some(now);
            self.contacts_tried.clear();
            out.push(Command::NeedContacts);
        }
    }

    fn check_starving(&mut self, now: Duration, out: &mut Out) {
        if self.active.len() >= self.cfg.active_min
            || self.last_rejoin.is_some_and(|t| now < t + self.cfg.starving_rejoin_interval)
        {
            return;
        }
        let (tried, active) = (&self.tried, &self.active);
        if self.passive.iter_any(|m| !tried.contains(&m.id) && !active.contains(m.id)) {
            return;
        }
        let active = &self.active;
        let pool: Vec<Member> = self.contacts.iter().filter(|m| !active.contains(m.id)).cloned().collect();
        if pool.is_empty() {
            return;
        }
        self.last_rejoin = Some(now);
        let c = pool[self.rng.random_range(0..pool.len())].clone();
        self.send_join(c, now, out);
    }

    /// Sends a JOIN to a contact not tried since the last success; says whether there was one.
    fn join_a_contact(&mut self, now: Duration, out: &mut Out) -> bool {
        let (me, tried) = (self.me.id, &self.contacts_tried);
        let pool: Vec<Member> =
            self.contacts.iter().filter(|m| m.id != me && !tried.contains(&m.id)).cloned().collect();
        if pool.is_empty() {
            return false;
        }
        let c = pool[self.rng.random_range(0..pool.len())].clone();
        self.contacts_tried.insert(c.id);
        self.send_join(c, now, out);
        true
    }

    fn send_join(&mut self, contact: Member, now: Duration, out: &mut Out) {
        self.joining = Some((contact.id, now));
        let msg = HyParViewMessage::Join { member: self.me.clone() };
        self.send_or_queue(&contact, msg, now, out);
    }

    // ---- inputs ------------------------------------------------------------------------------

    fn on_join(&mut self, contacts: Vec<Member>, now: Duration, out: &mut Out) {
        let me = self.me.id;
        for c in contacts.into_iter().filter(|c| c.id != me) {
            if let Some(old) = self.contacts.iter_mut().find(|m| m.id == c.id) {
                *old = c;
            } else if self.contacts.len() < self.cfg.max_contacts {
                self.contacts.push(c);
            }
        }
        if self.contacts.is_empty() {
            return;
        }
        self.joined = true;
        self.contacts_tried.clear();
        if self.active.is_empty() && self.joining.is_none() {
            self.check_isolated(now, out);
        }
    }

    fn on_leave(&mut self, now: Duration, out: &mut Out) {
        for id in self.active.ids() {
            self.send(id, HyParViewMessage::Disconnect, now, out);
            Self::down_events(id, "this node left", out);
        }
        for id in std::mem::take(&mut self.conns).into_keys() {
            out.push(Command::Disconnect(id));
        }
        self.active = View::new(self.cfg.active_max);
        self.passive = View::new(self.cfg.passive_max);
        self.outbox.clear();
        self.attempts.clear();
        self.joining = None;
        self.left = true;
    }

    fn on_tick(&mut self, now: Duration, out: &mut Out) {
        let timeout = self.cfg.request_timeout;
        let late: Vec<PeerId> =
            self.attempts.iter().filter(|(_, a)| now >= a.since + timeout).map(|(id, _)| *id).collect();
        for id in late {
            self.attempt_failed(id, true, now, out);
        }
        self.outbox.retain(|_, o| now < o.since + timeout);
        if self.joining.is_some_and(|(_, since)| now >= since + timeout) {
            self.joining = None;
        }
        let linger = self.cfg.transient_linger;
        let idle: Vec<PeerId> = self
            .conns
            .iter()
            .filter(|(id, c)| now >= c.last_used + linger && !self.active.contains(**id) && !self.expected(**id))
            .map(|(id, _)| *id)
            .collect();
        for id in idle {
            self.close(id, out);
        }
        if self.next_shuffle.is_some_and(|t| now >= t) {
            self.next_shuffle = Some(now + self.cfg.shuffle_interval);
            self.shuffle(now, out);
        }
        if self.next_heal.is_some_and(|t| now >= t) {
            self.next_heal = Some(now + self.cfg.heal_interval);
            self.probe_suspect(now, out);
        }
        if self.next_promotion.is_some_and(|t| now >= t) {
            self.next_promotion = Some(now + self.cfg.promotion_interval);
            self.tried.clear();
            if self.active.len() < self.cfg.active_max && self.promotions_in_flight() == 0 {
                self.fill(self.active.len() + 1, now, out);
            }
        }
        self.check_isolated(now, out);
    }

    fn on_connected(&mut self, member: Member, now: Duration, out: &mut Out) {
        let id = member.id;
        if id == self.me.id {
            return;
        }
        self.connecting.remove(&id);
        if let Some(c) = self.conns.get_mut(&id) {
            c.last_used = now;
            c.member = member.clone();
        } else {
            if self.transient_count() >= self.cfg.max_transient && !self.expected(id) {
                out.push(Command::Disconnect(id));
                return;
            }
            self.conns.insert(id, Conn { member: member.clone(), last_used: now });
        }
        if let Some(ob) = self.outbox.remove(&id) {
            for msg in ob.msgs {
                self.send(id, msg, now, out);
            }
        }
        if self.attempts.contains_key(&id) {
            self.send_request(id, now, out);
        }
    }

    fn on_connect_failed(&mut self, id: PeerId, now: Duration, out: &mut Out) {
        self.connecting.remove(&id);
        if self.conns.contains_key(&id) {
            return; // a connection came up the other way
        }
        self.lost(id, now, out);
    }

    /// Remembers a peer lost to a failure (the oldest suspect goes when there are too many).
    fn suspect(&mut self, member: Member) {
        if member.id == self.me.id || self.cfg.max_suspects == 0 {
            return;
        }
        self.suspects.retain(|m| m.id != member.id);
        if self.suspects.len() >= self.cfg.max_suspects {
            self.suspects.remove(0);
        }
        self.suspects.push(member);
    }

    /// Tries to reconnect to the next suspect (it goes to the back of the list).
    fn probe_suspect(&mut self, now: Duration, out: &mut Out) {
        let active = &self.active;
        self.suspects.retain(|m| !active.contains(m.id));
        if self.suspects.is_empty() {
            return;
        }
        let m = self.suspects.remove(0);
        self.suspects.push(m.clone());
        if !self.attempts.contains_key(&m.id) {
            self.start_attempt(m, AttemptKind::Heal, now, out);
        }
    }

    fn on_disconnected(&mut self, id: PeerId, now: Duration, out: &mut Out) {
        self.conns.remove(&id);
        if let Some(m) = self.active.remove(id) {
            // An orderly leave or drop removes the peer from the active view first (DISCONNECT):
            // losing an active connection is a failure.
            self.suspect(m);
            Self::down_events(id, "connection lost", out);
            self.passive.remove(id);
            self.fill(self.cfg.active_max, now, out);
        }
        self.lost(id, now, out);
    }

    /// `id` cannot be reached (a failed connect, or a connection lost outside the active view).
    fn lost(&mut self, id: PeerId, now: Duration, out: &mut Out) {
        let had_outbox = self.outbox.remove(&id).is_some();
        if self.joining.is_some_and(|(j, _)| j == id) {
            self.joining = None;
        }
        if self.attempts.contains_key(&id) {
            self.attempt_failed(id, true, now, out);
        } else if had_outbox {
            self.passive.remove(id);
        }
        self.check_isolated(now, out);
    }

    fn on_message(&mut self, from: PeerId, msg: HyParViewMessage, now: Duration, out: &mut Out) {
        if from == self.me.id {
            return;
        }
        if let Some(c) = self.conns.get_mut(&from) {
            c.last_used = now;
        }
        match msg {
            HyParViewMessage::Join { member } => self.on_join_msg(from, member, now, out),
            HyParViewMessage::ForwardJoin { member, ttl } => self.on_forward_join(from, member, ttl, now, out),
            HyParViewMessage::Neighbor { member, priority } => {
                if member.id != from || !self.conns.contains_key(&from) {
                    return;
                }
                let accepted = self.active.contains(from) || priority == Priority::High || !self.active.is_full();
                if accepted {
                    self.activate(member, now, out);
                }
                let reply = HyParViewMessage::NeighborReply { member: self.me.clone(), accepted };
                self.send(from, reply, now, out);
            }
            HyParViewMessage::NeighborReply { member, accepted } => {
                if member.id != from {
                    return;
                }
                if self.joining.is_some_and(|(j, _)| j == from) {
                    // The answer to our JOIN; either way FORWARD_JOIN walks bring neighbours.
                    self.joining = None;
                    self.last_join = Some(now);
                }
                let asked = self.attempts.remove(&from);
                if accepted {
                    // Also when the request had timed out: the peer now counts us as a neighbour.
                    self.activate(member, now, out);
                } else if let Some(a) = asked {
                    self.tried.insert(from);
                    if a.kind == AttemptKind::Promote {
                        self.fill(self.cfg.active_max, now, out);
                    }
                }
            }
            HyParViewMessage::Disconnect => {
                if let Some(m) = self.active.remove(from) {
                    Self::down_events(from, "disconnected by the peer", out);
                    self.add_passive(m, &[]);
                    self.tried.insert(from);
                    self.fill(self.cfg.active_min, now, out);
                }
            }
            HyParViewMessage::Shuffle { origin, ttl, members } => self.on_shuffle(from, origin, ttl, members, now, out),
            HyParViewMessage::ShuffleReply { mut members } => {
                members.truncate(self.cfg.shuffle_len());
                let sent = std::mem::take(&mut self.last_shuffle);
                for m in members {
                    self.add_passive(m, &sent);
                }
            }
        }
    }

    fn on_join_msg(&mut self, from: PeerId, member: Member, now: Duration, out: &mut Out) {
        if member.id != from || !self.conns.contains_key(&from) {
            return;
        }
        // As in the paper a contact always takes the joiner (dropping a random neighbour if its
        // view is full). Refusing instead was tried: under a mass join through one seed the
        // joiners then depend on walks that all end among the seed's few neighbours, and almost
        // every node stayed isolated.
        self.activate(member.clone(), now, out);
        let reply = HyParViewMessage::NeighborReply { member: self.me.clone(), accepted: true };
        self.send(from, reply, now, out);
        let ttl = self.cfg.arwl;
        for id in self.active.ids() {
            if id != from {
                self.send(id, HyParViewMessage::ForwardJoin { member: member.clone(), ttl }, now, out);
            }
        }
    }

    fn on_forward_join(&mut self, from: PeerId, member: Member, ttl: u32, now: Duration, out: &mut Out) {
        if member.id == self.me.id || self.active.contains(member.id) {
            return;
        }
        let ttl = ttl.min(self.cfg.arwl);
        let busy = self.attempts.len() >= 2 * self.cfg.active_max;
        if ttl == 0 || (self.active.len() <= 1 && !busy) {
            if busy {
                self.add_passive(member, &[]);
            } else {
                self.start_attempt(member, AttemptKind::ForwardJoin, now, out);
            }
            return;
        }
        if ttl == self.cfg.prwl {
            self.add_passive(member.clone(), &[]);
        }
        let next = self.active.random(&mut self.rng, |m| m.id != from && m.id != member.id).map(|m| m.id);
        match next {
            Some(next) => self.send(next, HyParViewMessage::ForwardJoin { member, ttl: ttl - 1 }, now, out),
            None => self.start_attempt(member, AttemptKind::ForwardJoin, now, out),
        }
    }

    fn on_shuffle(
        &mut self,
        from: PeerId,
        origin: Member,
        ttl: u32,
        mut members: Vec<Member>,
        now: Duration,
        out: &mut Out,
    ) {
        if origin.id == self.me.id {
            return;
        }
        members.truncate(self.cfg.shuffle_len());
        let ttl = ttl.min(self.cfg.arwl).saturating_sub(1);
        if ttl > 0 && self.active.len() > 1 {
            let next = self.active.random(&mut self.rng, |m| m.id != from && m.id != origin.id).map(|m| m.id);
            if let Some(next) = next {
                self.send(next, HyParViewMessage::Shuffle { origin, ttl, members }, now, out);
                return;
            }
        }
        let origin_id = origin.id;
        let reply = self.passive.sample(&mut self.rng, members.len(), |m| m.id != origin_id);
        let reply_ids: Vec<PeerId> = reply.iter().map(|m| m.id).collect();
        if self.conns.contains_key(&origin_id) || self.outbox.len() < self.cfg.max_transient {
            self.send_or_queue(&origin, HyParViewMessage::ShuffleReply { members: reply }, now, out);
        }
        for m in members {
            self.add_passive(m, &reply_ids);
        }
    }

    fn shuffle(&mut self, now: Duration, out: &mut Out) {
        let Some(target) = self.active.random(&mut self.rng, |_| true).map(|m| m.id) else { return };
        let mut members = vec![self.me.clone()];
        members.extend(self.active.sample(&mut self.rng, self.cfg.shuffle_active, |m| m.id != target));
        members.extend(self.passive.sample(&mut self.rng, self.cfg.shuffle_passive, |_| true));
        self.last_shuffle = members.iter().skip(1).map(|m| m.id).collect();
        let msg = HyParViewMessage::Shuffle { origin: self.me.clone(), ttl: self.cfg.arwl, members };
        self.send(target, msg, now, out);
    }
}

impl Membership for HyParView {
    type Message = HyParViewMessage;

    fn handle(&mut self, input: Input<HyParViewMessage>, now: Duration, out: &mut Out) {
        if self.left {
            return;
        }
        self.start_timers(now);
        match input {
            Input::Join(contacts) => self.on_join(contacts, now, out),
            Input::Leave => self.on_leave(now, out),
            Input::Tick => self.on_tick(now, out),
            Input::Connected(member) => self.on_connected(member, now, out),
            Input::Disconnected(id) => self.on_disconnected(id, now, out),
            Input::ConnectFailed(id) => self.on_connect_failed(id, now, out),
            Input::Message { from, msg } => self.on_message(from, msg, now, out),
        }
    }

    fn me(&self) -> &Member {
        &self.me
    }

    fn neighbors(&self) -> Vec<PeerId> {
        self.active.ids()
    }

    fn snapshot(&self) -> ViewSnapshot {
        ViewSnapshot { active: self.active.to_vec(), passive: self.passive.to_vec() }
    }

    fn tick_interval(&self) -> Duration {
        self.cfg.tick_interval
    }
}

#[cfg(test)]
mod tests;
