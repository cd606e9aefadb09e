//! The client side: connections to a bounded number of servers.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::failure::{Backoff, PhiAccrualDetector};
use crate::member::{Member, PeerId};
use crate::membership::{Command, Input, MembershipEvent, ViewSnapshot};

use super::{ClientServerConfig, ClientServerMessage, Out};

#[derive(Clone, Debug)]
struct ServerLink {
    member: Member,
    up: bool,
    dialing: bool,
    backoff: Backoff,
    /// Since when we have wanted a connection and had none.
    down_since: Option<Duration>,
    suspect_since: Option<Duration>,
    /// The server list it last sent.
    list: Option<BTreeSet<PeerId>>,
}

impl ServerLink {
    fn new(member: Member) -> Self {
        ServerLink {
            member,
            up: false,
            dialing: false,
            backoff: Backoff::new(),
            down_since: None,
            suspect_since: None,
            list: None,
        }
    }
}

/// A client node.
#[derive(Debug)]
pub(super) struct Client {
    me: Member,
    config: ClientServerConfig,
    rng: StdRng,
    joined: bool,
    stopped: bool,
    servers: BTreeMap<PeerId, ServerLink>,
    detector: PhiAccrualDetector<PeerId>,
    next_heartbeat: Duration,
    last_need_contacts: Option<Duration>,
}

impl Client {
    pub(super) fn new(me: Member, config: ClientServerConfig) -> Self {
        Client {
            rng: StdRng::seed_from_u64(config.mesh.seed),
            detector: PhiAccrualDetector::new(config.mesh.detector.clone()),
            me,
            config,
            joined: false,
            stopped: false,
            servers: BTreeMap::new(),
            next_heartbeat: Duration::ZERO,
            last_need_contacts: None,
        }
    }

    pub(super) fn me(&self) -> &Member {
        &self.me
    }

    pub(super) fn tick_interval(&self) -> Duration {
        self.config.mesh.tick_interval
    }

    pub(super) fn servers(&self) -> Vec<Member> {
        self.servers.values().map(|l| l.member.clone()).collect()
    }

    pub(super) fn route(&self, to: PeerId) -> Option<PeerId> {
        if to == self.me.id {
            return None;
        }
        if self.servers.get(&to).is_some_and(|l| l.up) {
            return Some(to);
        }
        self.servers.values().find(|l| l.up).map(|l| l.member.id)
    }

    pub(super) fn neighbors(&self) -> Vec<PeerId> {
        self.servers.values().filter(|l| l.up).map(|l| l.member.id).collect()
    }

    pub(super) fn snapshot(&self) -> ViewSnapshot {
        let (active, passive): (Vec<&ServerLink>, Vec<&ServerLink>) = self.servers.values().partition(|l| l.up);
        ViewSnapshot {
            active: active.into_iter().map(|l| l.member.clone()).collect(),
            passive: passive.into_iter().map(|l| l.member.clone()).collect(),
        }
    }

    /// Adds a server to the table (MemberUp) if there is room.
    fn learn(&mut self, member: Member, out: &mut Out) -> bool {
        if member.id == self.me.id {
            return false;
        }
        if self.servers.contains_key(&member.id) {
            return true;
        }
        if self.servers.len() >= self.config.mesh.max_members {
            return false;
        }
        out.push(Command::Event(MembershipEvent::MemberUp(member.clone())));
        self.servers.insert(member.id, ServerLink::new(member));
        true
    }

    fn drop_server(&mut self, id: PeerId, reason: &str, out: &mut Out) {
        let Some(link) = self.servers.remove(&id) else { return };
        self.detector.remove(&id);
        if link.up {
            out.push(Command::Event(MembershipEvent::NeighborDown(id)));
            out.push(Command::Disconnect(id));
        }
        out.push(Command::Event(MembershipEvent::MemberDown { id, reason: reason.to_string() }));
    }

    fn link_up(&mut self, member: Member, now: Duration, out: &mut Out) {
        let id = member.id;
        let Some(link) = self.servers.get_mut(&id) else { return };
        link.dialing = false;
        if link.up {
            return;
        }
        link.up = true;
        link.backoff.succeeded();
        link.down_since = None;
        link.suspect_since = None;
        self.detector.heartbeat(&id, now);
        out.push(Command::Event(MembershipEvent::NeighborUp(link.member.clone())));
        out.push(Command::Send { to: id, msg: ClientServerMessage::Hello });
    }

    fn link_down(&mut self, id: PeerId, now: Duration, out: &mut Out) {
        let Some(link) = self.servers.get_mut(&id) else { return };
        if !link.up {
            return;
        }
        link.up = false;
        link.list = None;
        link.down_since = Some(now);
        self.detector.remove(&id);
        out.push(Command::Event(MembershipEvent::NeighborDown(id)));
    }

    fn on_servers(&mut self, from: PeerId, list: Vec<Member>, out: &mut Out) {
        if list.len() > self.config.mesh.max_members {
            return;
        }
        let ids: BTreeSet<PeerId> = list.iter().map(|m| m.id).collect();
        for m in list {
            self.learn(m, out);
        }
        if let Some(link) = self.servers.get_mut(&from) {
            link.list = Some(ids);
        }
        // Servers that no connected server lists any more are gone (unless we reach them).
        let lists: Vec<&BTreeSet<PeerId>> =
            self.servers.values().filter(|l| l.up).filter_map(|l| l.list.as_ref()).collect();
        if lists.is_empty() {
            return;
        }
        let gone: Vec<PeerId> = self
            .servers
            .values()
            .filter(|l| !l.up && !lists.iter().any(|ids| ids.contains(&l.member.id)))
            .map(|l| l.member.id)
            .collect();
        for id in gone {
            self.drop_server(id, "no longer a server", out);
        }
    }

    fn on_tick(&mut self, now: Duration, out: &mut Out) {
        if !self.joined {
            return;
        }
        let grace = self.config.mesh.suspect_grace;
        let unreachable = self.config.mesh.unreachable_timeout;
        let mut suspected = Vec::new();
        let mut dead = Vec::new();
        for (id, link) in &mut self.servers {
            if link.up {
                if self.detector.is_available(id, now) {
                    link.suspect_since = None;
                } else if now.saturating_sub(*link.suspect_since.get_or_insert(now)) >= grace {
                    suspected.push(*id);
                }
            } else if link.down_since.is_some_and(|t| now.saturating_sub(t) >= unreachable) && !link.dialing {
                dead.push(*id);
            }
        }
        for id in suspected {
            self.link_down(id, now, out);
            out.push(Command::Disconnect(id));
        }
        for id in dead {
            self.drop_server(id, "unreachable", out);
        }
        // Keep up to `max_servers_per_client` connections.
        let busy = self.servers.values().filter(|l| l.up || l.dialing).count();
        let want = self.config.max_servers_per_client.saturating_sub(busy);
        if want > 0 {
            let mut ready: Vec<PeerId> = self
                .servers
                .values()
                .filter(|l| !l.up && !l.dialing && l.backoff.ready(now, &self.config.mesh.backoff))
                .map(|l| l.member.id)
                .collect();
            ready.shuffle(&mut self.rng);
            for id in ready.into_iter().take(want) {
                if let Some(link) = self.servers.get_mut(&id) {
                    link.dialing = true;
                    link.down_since.get_or_insert(now);
                    out.push(Command::Connect(link.member.clone()));
                }
            }
        }
        if now >= self.next_heartbeat {
            self.next_heartbeat = now + self.config.mesh.heartbeat_interval;
            for link in self.servers.values().filter(|l| l.up) {
                out.push(Command::Send { to: link.member.id, msg: ClientServerMessage::Heartbeat });
            }
        }
        if self.servers.is_empty()
            && self.last_need_contacts.is_none_or(|t| now.saturating_sub(t) >= self.config.mesh.need_contacts_interval)
        {
            self.last_need_contacts = Some(now);
            out.push(Command::NeedContacts);
        }
    }

    pub(super) fn handle(&mut self, input: Input<ClientServerMessage>, now: Duration, out: &mut Out) {
        if self.stopped {
            return;
        }
        match input {
            Input::Join(contacts) => {
                self.joined = true;
                for m in contacts {
                    if self.learn(m.clone(), out) {
                        self.link_up(m, now, out);
                    }
                }
            }
            Input::Leave => {
                for id in std::mem::take(&mut self.servers).into_keys().collect::<Vec<_>>() {
                    out.push(Command::Disconnect(id));
                    out.push(Command::Event(MembershipEvent::NeighborDown(id)));
                    out.push(Command::Event(MembershipEvent::MemberDown { id, reason: "this node left".to_string() }));
                }
                self.stopped = true;
            }
            Input::Tick => self.on_tick(now, out),
            Input::Connected(m) => {
                if self.servers.contains_key(&m.id) {
                    self.link_up(m, now, out);
                } else if m.id != self.me.id {
                    // A driver dialing addresses may answer a dial of an old server incarnation
                    // with the new one: that dial failed.
                    let config = self.config.mesh.backoff.clone();
                    for link in self.servers.values_mut().filter(|l| l.dialing && l.member.addr == m.addr) {
                        link.dialing = false;
                        link.backoff.failed(now, &config, &mut self.rng);
                    }
                    // Nobody but our servers has business connecting to a client. Before the
                    // join, though, this is the seed the driver dialled (the contract lets its
                    // Connected come before the Join that names it): keep it for the Join.
                    if self.joined {
                        out.push(Command::Disconnect(m.id));
                    }
                }
            }
            Input::Disconnected(id) => self.link_down(id, now, out),
            Input::ConnectFailed(id) => {
                let config = self.config.mesh.backoff.clone();
                if let Some(link) = self.servers.get_mut(&id).filter(|l| l.dialing) {
                    link.dialing = false;
                    link.down_since.get_or_insert(now);
                    link.backoff.failed(now, &config, &mut self.rng);
                }
            }
            Input::Message { from, msg } => {
                if !self.servers.get(&from).is_some_and(|l| l.up) {
                    return;
                }
                match msg {
                    ClientServerMessage::Heartbeat => self.detector.heartbeat(&from, now),
                    ClientServerMessage::Servers(list) => self.on_servers(from, list, out),
                    _ => {}
                }
            }
        }
    }
}
