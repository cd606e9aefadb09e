//! The server side: a [`FullMesh`] of servers plus attached clients and the client directory.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::failure::PhiAccrualDetector;
use crate::full_mesh::{FullMesh, FullMeshMessage};
use crate::member::{Member, PeerId};
use crate::membership::{Command, Input, Membership, MembershipEvent, ViewSnapshot};

use super::{ClientServerConfig, ClientServerMessage, Out};

#[derive(Clone, Debug)]
struct Attached {
    member: Member,
    suspect_since: Option<Duration>,
}

/// A server node.
#[derive(Debug)]
pub(super) struct Server {
    config: ClientServerConfig,
    mesh: FullMesh,
    mesh_out: Vec<Command<FullMeshMessage>>,
    /// Outstanding mesh dials (their answers go to the mesh whatever the peer's status).
    mesh_dials: BTreeSet<PeerId>,
    /// Inbound connections whose role is not known yet.
    pending: BTreeMap<PeerId, (Member, Duration)>,
    /// Clients attached here.
    clients: BTreeMap<PeerId, Attached>,
    detector: PhiAccrualDetector<PeerId>,
    /// Version of this server's own client list.
    version: u64,
    /// Other servers' client lists.
    directory: BTreeMap<PeerId, (u64, Vec<Member>)>,
    /// Every client known (here or announced), for MemberUp/Down.
    known: BTreeMap<PeerId, Member>,
    next_heartbeat: Duration,
    next_announce: Duration,
    stopped: bool,
}

impl Server {
    pub(super) fn new(me: Member, config: ClientServerConfig) -> Self {
        Server {
            mesh: FullMesh::new(me, config.mesh.clone()),
            detector: PhiAccrualDetector::new(config.mesh.detector.clone()),
            config,
            mesh_out: Vec::new(),
            mesh_dials: BTreeSet::new(),
            pending: BTreeMap::new(),
            clients: BTreeMap::new(),
            version: 0,
            directory: BTreeMap::new(),
            known: BTreeMap::new(),
            next_heartbeat: Duration::ZERO,
            next_announce: Duration::ZERO,
            stopped: false,
        }
    }

    pub(super) fn mesh(&self) -> &FullMesh {
        &self.mesh
    }

    pub(super) fn clients(&self) -> Vec<Member> {
        self.known.values().cloned().collect()
    }

    pub(super) fn servers_of(&self, client: PeerId) -> Vec<PeerId> {
        let mut out: Vec<PeerId> =
            self.directory.iter().filter(|(_, (_, cs))| cs.iter().any(|c| c.id == client)).map(|(s, _)| *s).collect();
        if self.clients.contains_key(&client) {
            out.push(self.mesh.me().id);
        }
        out.sort();
        out
    }

    pub(super) fn route(&self, to: PeerId) -> Option<PeerId> {
        if to == self.mesh.me().id {
            return None;
        }
        if self.clients.contains_key(&to) || self.mesh.neighbors().contains(&to) {
            return Some(to);
        }
        self.directory
            .iter()
            .filter(|(s, (_, cs))| self.mesh.is_connected(s) && cs.iter().any(|c| c.id == to))
            .map(|(s, _)| *s)
            .next()
    }

    /// Feeds the mesh and translates what it says; mesh membership changes update the directory.
    fn mesh_input(&mut self, input: Input<FullMeshMessage>, now: Duration, out: &mut Out) {
        let mut cmds = std::mem::take(&mut self.mesh_out);
        self.mesh.handle(input, now, &mut cmds);
        let mut directory_changed = false;
        let mut new_servers = Vec::new();
        for cmd in cmds.drain(..) {
            match cmd {
                Command::Send { to, msg } => out.push(Command::Send { to, msg: ClientServerMessage::Mesh(msg) }),
                Command::Connect(m) => {
                    self.mesh_dials.insert(m.id);
                    out.push(Command::Connect(m));
                }
                Command::Disconnect(id) => out.push(Command::Disconnect(id)),
                Command::NeedContacts => out.push(Command::NeedContacts),
                Command::Event(ev) => {
                    match &ev {
                        MembershipEvent::MemberDown { id, .. } => {
                            directory_changed |= self.directory.remove(id).is_some();
                        }
                        MembershipEvent::NeighborUp(m) => new_servers.push(m.id),
                        _ => {}
                    }
                    out.push(Command::Event(ev));
                }
            }
        }
        self.mesh_out = cmds;
        if directory_changed {
            self.recompute_known(out);
        }
        if !new_servers.is_empty() {
            // A server that just became reachable learns our clients and (through the periodic
            // announcement) our clients learn about it.
            for id in new_servers {
                out.push(Command::Send { to: id, msg: self.clients_msg() });
            }
            self.announce_servers(out);
        }
    }

    fn clients_msg(&self) -> ClientServerMessage {
        ClientServerMessage::Clients {
            version: self.version,
            clients: self.clients.values().map(|a| a.member.clone()).collect(),
        }
    }

    fn servers_msg(&self) -> ClientServerMessage {
        let mut servers = self.mesh.members();
        servers.push(self.mesh.me().clone());
        servers.truncate(self.config.mesh.max_members);
        ClientServerMessage::Servers(servers)
    }

    fn announce_clients(&self, out: &mut Out) {
        for id in self.mesh.neighbors() {
            out.push(Command::Send { to: id, msg: self.clients_msg() });
        }
    }

    fn announce_servers(&self, out: &mut Out) {
        if self.clients.is_empty() {
            return;
        }
        let msg = self.servers_msg();
        for id in self.clients.keys() {
            out.push(Command::Send { to: *id, msg: msg.clone() });
        }
    }

    /// Recomputes the set of known clients and reports the differences.
    fn recompute_known(&mut self, out: &mut Out) {
        let mut now_known: BTreeMap<PeerId, Member> =
            self.clients.values().map(|a| (a.member.id, a.member.clone())).collect();
        for (_, cs) in self.directory.values() {
            for c in cs {
                if c.id != self.mesh.me().id {
                    now_known.entry(c.id).or_insert_with(|| c.clone());
                }
            }
        }
        for (id, _) in self.known.iter().filter(|(id, _)| !now_known.contains_key(id)) {
            out.push(Command::Event(MembershipEvent::MemberDown { id: *id, reason: "client gone".to_string() }));
        }
        for m in now_known.values().filter(|m| !self.known.contains_key(&m.id)) {
            out.push(Command::Event(MembershipEvent::MemberUp(m.clone())));
        }
        self.known = now_known;
    }

    fn attach(&mut self, member: Member, now: Duration, out: &mut Out) {
        if self.clients.len() >= self.config.max_clients_per_server {
            out.push(Command::Disconnect(member.id));
            return;
        }
        let id = member.id;
        self.detector.heartbeat(&id, now);
        self.clients.insert(id, Attached { member: member.clone(), suspect_since: None });
        self.version += 1;
        out.push(Command::Event(MembershipEvent::NeighborUp(member)));
        out.push(Command::Send { to: id, msg: self.servers_msg() });
        self.announce_clients(out);
        self.recompute_known(out);
    }

    fn detach(&mut self, id: PeerId, close: bool, out: &mut Out) {
        if self.clients.remove(&id).is_none() {
            return;
        }
        self.detector.remove(&id);
        self.version += 1;
        out.push(Command::Event(MembershipEvent::NeighborDown(id)));
        if close {
            out.push(Command::Disconnect(id));
        }
        self.announce_clients(out);
        self.recompute_known(out);
    }

    fn on_message(&mut self, from: PeerId, msg: ClientServerMessage, now: Duration, out: &mut Out) {
        if let Some((member, _)) = self.pending.get(&from).cloned() {
            match msg {
                ClientServerMessage::Mesh(m) => {
                    self.pending.remove(&from);
                    self.mesh_input(Input::Connected(member), now, out);
                    self.mesh_input(Input::Message { from, msg: m }, now, out);
                }
                ClientServerMessage::Hello => {
                    self.pending.remove(&from);
                    self.attach(member, now, out);
                }
                _ => {}
            }
            return;
        }
        if self.clients.contains_key(&from) {
            if msg == ClientServerMessage::Heartbeat {
                self.detector.heartbeat(&from, now);
            }
            return;
        }
        match msg {
            ClientServerMessage::Mesh(m) => self.mesh_input(Input::Message { from, msg: m }, now, out),
            ClientServerMessage::Clients { version, clients } => {
                if !self.mesh.is_member(&from) || !self.mesh.is_connected(&from) {
                    return;
                }
                if clients.len() > self.config.max_clients_per_server {
                    return;
                }
                let newer = self.directory.get(&from).is_none_or(|(v, _)| version > *v);
                if newer {
                    self.directory.insert(from, (version, clients));
                    self.recompute_known(out);
                }
            }
            _ => {}
        }
    }

    fn on_tick(&mut self, now: Duration, out: &mut Out) {
        self.mesh_input(Input::Tick, now, out);
        if !self.mesh.is_active() {
            return;
        }
        // Unidentified inbound connections.
        let stale: Vec<PeerId> = self
            .pending
            .iter()
            .filter(|(_, (_, since))| now.saturating_sub(*since) >= self.config.pending_timeout)
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            self.pending.remove(&id);
            out.push(Command::Disconnect(id));
        }
        // Clients' liveness.
        let grace = self.config.mesh.suspect_grace;
        let mut failed = Vec::new();
        for (id, a) in &mut self.clients {
            if self.detector.is_available(id, now) {
                a.suspect_since = None;
            } else if now.saturating_sub(*a.suspect_since.get_or_insert(now)) >= grace {
                failed.push(*id);
            }
        }
        for id in failed {
            self.detach(id, true, out);
        }
        if now >= self.next_heartbeat {
            self.next_heartbeat = now + self.config.mesh.heartbeat_interval;
            for id in self.clients.keys() {
                out.push(Command::Send { to: *id, msg: ClientServerMessage::Heartbeat });
            }
        }
        if now >= self.next_announce {
            self.next_announce = now + self.config.announce_interval;
            self.announce_clients(out);
            self.announce_servers(out);
        }
    }

    fn on_leave(&mut self, now: Duration, out: &mut Out) {
        self.mesh_input(Input::Leave, now, out);
        for id in std::mem::take(&mut self.clients).into_keys() {
            out.push(Command::Event(MembershipEvent::NeighborDown(id)));
            out.push(Command::Disconnect(id));
        }
        for id in std::mem::take(&mut self.pending).into_keys() {
            out.push(Command::Disconnect(id));
        }
        for id in std::mem::take(&mut self.known).into_keys() {
            out.push(Command::Event(MembershipEvent::MemberDown { id, reason: "this node left".to_string() }));
        }
        self.directory.clear();
        self.stopped = true;
    }

    pub(super) fn handle(&mut self, input: Input<ClientServerMessage>, now: Duration, out: &mut Out) {
        if self.stopped {
            // The mesh still lingers to close its connections.
            if input == Input::Tick {
                self.mesh_input(Input::Tick, now, out);
            }
            return;
        }
        match input {
            Input::Join(contacts) => {
                for c in &contacts {
                    self.pending.remove(&c.id);
                }
                self.mesh_input(Input::Join(contacts), now, out);
            }
            Input::Leave => self.on_leave(now, out),
            Input::Tick => self.on_tick(now, out),
            Input::Connected(m) => {
                if m.id == self.mesh.me().id {
                    return;
                }
                if self.mesh_dials.remove(&m.id) || self.mesh.is_member(&m.id) {
                    self.mesh_input(Input::Connected(m), now, out);
                } else if !self.clients.contains_key(&m.id) && !self.pending.contains_key(&m.id) {
                    if self.pending.len() >= self.config.max_pending {
                        out.push(Command::Disconnect(m.id));
                    } else {
                        self.pending.insert(m.id, (m, now));
                    }
                }
            }
            Input::Disconnected(id) => {
                if self.pending.remove(&id).is_some() {
                    return;
                }
                if self.clients.contains_key(&id) {
                    self.detach(id, false, out);
                    return;
                }
                self.mesh_input(Input::Disconnected(id), now, out);
            }
            Input::ConnectFailed(id) => {
                self.mesh_dials.remove(&id);
                self.mesh_input(Input::ConnectFailed(id), now, out);
            }
            Input::Message { from, msg } => self.on_message(from, msg, now, out),
        }
    }

    pub(super) fn neighbors(&self) -> Vec<PeerId> {
        let mut ids = self.mesh.neighbors();
        ids.extend(self.clients.keys().copied());
        ids.sort();
        ids
    }

    pub(super) fn snapshot(&self) -> ViewSnapshot {
        let mut snap = self.mesh.snapshot();
        if !self.stopped {
            snap.active.extend(self.clients.values().map(|a| a.member.clone()));
        }
        snap
    }
}
