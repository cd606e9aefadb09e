//! The node in its cluster: news for the overlay driver, what it knows of other nodes,
//! connecting and releasing peers, statistics, and stopping (gracefully or at once).

use super::*;

/// How long a shutting-down node waits for its lanes to write what they hold before it says
/// goodbye.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(2);

impl NodeShared {
    /// Hands news to the membership driver, if an overlay runs.
    pub(crate) fn tell_membership(&self, input: DriverInput) {
        if let Some(driver) = self.membership.get() {
            driver.send(input);
        }
    }

    /// Tells the overlay a peer is connected, the first time a connection with it (either
    /// direction) completes its handshake.
    pub(super) fn announce(&self, peer: &Peer) {
        if !peer.announced.swap(true, Ordering::AcqRel) {
            if let Some(member) = peer.member() {
                self.tell_membership(DriverInput::PeerUp(member));
            }
        }
    }

    /// Records where a member can be reached.
    pub(crate) fn remember(&self, member: &troupe_overlay::Member) {
        let id = NodeId(member.id.0);
        if id == self.id {
            return;
        }
        self.directory.write().entry(id).or_insert_with(|| NodeInfo {
            name: member.name.clone(),
            incarnation: member.id.0,
            listen: vec![member.addr.to_string()],
        });
    }

    /// The listen addresses this node knows for node `id` (from its handshake or the overlay).
    pub(crate) fn known_addrs(&self, id: NodeId) -> Vec<SocketAddr> {
        let from_peer = self.peer(id).map(|p| p.addrs.clone()).unwrap_or_default();
        if !from_peer.is_empty() {
            return from_peer;
        }
        self.directory
            .read()
            .get(&id)
            .map(|i| i.listen.iter().filter_map(|a| a.parse().ok()).collect())
            .unwrap_or_default()
    }

    /// A node this node vouched for after a probe dial (see `probe`): connected to for real, so
    /// it is reached through this node and watched by its failure detection. Not if its loss was
    /// reported meanwhile (the report stands; a connection would only race it).
    pub(crate) fn connect_vouched(&self, info: NodeInfo) {
        let id = NodeId(info.incarnation);
        if id == self.id || self.loss_reported(id) {
            return;
        }
        if self.peer(id).is_none() {
            self.ensure_peer(&info, None);
        }
    }

    /// The name of a node this node has heard of.
    pub(crate) fn name_of(&self, id: NodeId) -> Option<String> {
        self.directory.read().get(&id).map(|i| i.name.clone())
    }

    /// Opens connections to `member` for the overlay: `Some(true)` if its control connection is
    /// already up, `Some(false)` if dialling (the driver hears `PeerUp` or `PeerLost`), `None` if
    /// it cannot be reached at all (itself, quarantined, or this node is stopping).
    pub(crate) fn connect_member(&self, member: &troupe_overlay::Member) -> Option<bool> {
        let info =
            NodeInfo { name: member.name.clone(), incarnation: member.id.0, listen: vec![member.addr.to_string()] };
        let peer = self.ensure_peer(&info, None)?;
        Some(peer.announced.load(Ordering::Acquire))
    }

    /// A peer for a node with no connections yet, made from what the overlay told us about it
    /// (its lanes start dialling; messages queue meanwhile).
    pub(super) fn peer_on_demand(&self, id: NodeId) -> Option<Arc<Peer>> {
        let info = self.directory.read().get(&id).cloned()?;
        self.ensure_peer(&info, None)
    }

    /// Closes this node's connections to a peer on purpose (not a failure: no Down events, its
    /// acknowledged-delivery state is kept while the node lives). With `tell` (we decided), the
    /// peer is told first so it releases its side too instead of redialling; without, the peer
    /// told us. Nothing either side wrote on them is lost: queued messages are written (a lane
    /// with frames but no connection dials once more), then each side ends its sending side and
    /// reads the other's to its end (see [`RELEASE_READ_OUT`]); a new peer for the node waits for
    /// that before it hands anything on (`Peer::after_predecessor`). With `tell`, false (nothing done) while
    /// acknowledged messages to the peer wait for their acknowledgement; told, the release goes
    /// ahead, and a new connection takes what is still unacknowledged once it is done.
    ///
    /// While this node is leaving (see `leaving`), with `tell` nothing is done (false): the
    /// node's goodbye closes the connections next. Told, the release goes ahead with the goodbye
    /// written first, so the peer, which reads our side to its end, hears that we left.
    pub(crate) fn release_peer(&self, id: NodeId, tell: bool) -> bool {
        let Some(peer) = self.peer(id) else { return true };
        if peer.is_leaving() {
            // It said goodbye and is being read to the end; it goes by itself.
            return true;
        }
        if self.leaving.load(Ordering::Acquire) {
            if tell {
                return false;
            }
            peer.say_goodbye();
        }
        if tell && peer.acks.unacked() > 0 {
            // Acknowledged messages wait for an answer, and only a peer's connections
            // retransmit them: kept until they are through (the caller asks again later; when
            // the other side lets go first, these lanes redial).
            tracing::debug!(node = %self.settings.name, peer = %peer.name, "release deferred: acknowledged messages outstanding");
            return false;
        }
        // Its lanes must not redial once their connections close.
        peer.releasing.store(true, Ordering::Release);
        if tell {
            self.send_control(id, &Control::Release);
        }
        // Out of the map at once: whatever is sent from now on (a new overlay connection, an
        // actor message) makes a new peer, while this one flushes what it already queued.
        {
            let mut peers = self.peers.write();
            if peers.get(&peer.id).is_some_and(|p| Arc::ptr_eq(p, &peer)) {
                peers.remove(&peer.id);
                self.released.lock().insert(peer.id, Arc::downgrade(&peer));
            }
        }
        self.relay_routes.lock().forget_via(peer.id);
        let Some(shared) = self.me.upgrade() else { return true };
        self.runtime.spawn(async move {
            // Its lanes write what they have (a lane with frames but no connection dials for
            // them once more) and end their sending side; each reader goes on until the other
            // side, released too, ends its own: neither loses what the other wrote before it
            // heard of the release. Not marked down before that: signals held for messages still
            // being read (see `fence`) must keep waiting for them. Whatever is still open after
            // `RELEASE_READ_OUT` without progress is closed.
            peer.finish_lanes();
            let (mut progress, mut since) = (peer.progress(), Instant::now());
            while since.elapsed() < RELEASE_READ_OUT && !peer.is_down() && (peer.has_connections() || peer.has_backlog()) {
                tokio::time::sleep(Duration::from_millis(5)).await;
                if peer.still_moving(progress) {
                    (progress, since) = (peer.progress(), Instant::now());
                }
            }
            {
                let mut released = shared.released.lock();
                if released.get(&peer.id).is_some_and(|p| std::ptr::eq(p.as_ptr(), Arc::as_ptr(&peer))) {
                    released.remove(&peer.id);
                }
            }
            if peer.is_leaving() {
                // Its Goodbye was read on these connections: it leaves the cluster, and
                // `peer_leaving` reports it so once they are read.
                return;
            }
            if peer.down.swap(true, Ordering::AcqRel) {
                // Gone meanwhile (`peer_gone` closed it).
                return;
            }
            shared.counters.messages_out.fetch_add(peer.messages_sent(), Ordering::Relaxed);
            peer.close_lanes();
            // Its acknowledged-delivery state stays while the node lives: both sides keep
            // theirs, so a later connection numbers on where this one left off.
            tracing::debug!(node = %shared.settings.name, peer = %peer.name, "connections released");
            // A sender that took this peer before it left the map can have queued an
            // acknowledged message or signal after the check above; its acknowledgement may
            // never have come back, and only a peer's lanes send it again: a new peer does.
            if peer.acks.unacked() > 0 && shared.peer(peer.id).is_none() && !shared.shutting_down.load(Ordering::Acquire) {
                tracing::debug!(node = %shared.settings.name, peer = %peer.name, "acknowledged frames left after the release; reconnecting");
                shared.peer_on_demand(peer.id);
            }
        });
        true
    }

    /// Messages exchanged with each current peer so far (both directions).
    pub(crate) fn peer_traffic(&self) -> Vec<(NodeId, u64)> {
        self.peers.read().values().map(|p| (p.id, p.traffic())).collect()
    }

    /// Messages exchanged with one peer so far, if it has connections.
    pub(crate) fn peer_traffic_of(&self, id: NodeId) -> Option<u64> {
        self.peer(id).map(|p| p.traffic())
    }

    /// Dials the seeds again and hands whoever answers to the overlay as contacts.
    pub(crate) async fn rejoin_through_seeds(self: Arc<Self>) {
        let mut contacts = Vec::new();
        let (plain, dns): (Vec<String>, Vec<String>) = self.seeds.iter().cloned().partition(|s| !s.starts_with("dns:"));
        let dns: Vec<String> = dns.iter().map(|s| s.trim_start_matches("dns:").to_string()).collect();
        let seeds = crate::node::resolve_seeds(&plain, &dns).await;
        let mine = self.advertised.read().clone();
        for seed in seeds.iter().filter(|s| !mine.contains(s)) {
            match crate::node::dial_seed(&self, seed).await {
                Ok(member) => contacts.push(member),
                Err(error) => tracing::debug!(node = %self.settings.name, %seed, %error, "seed not reached"),
            }
        }
        if contacts.is_empty() {
            tracing::warn!(node = %self.settings.name, "no seed reachable; the node stays alone for now");
        }
        self.tell_membership(DriverInput::Join(contacts));
    }

    /// The node's counters, with what live peers count themselves added in.
    pub(crate) fn stats(&self) -> NodeStats {
        let mut stats = self.counters.snapshot();
        stats.frame_pool_bytes = self.frame_pool.lock().bytes() as u64;
        stats.relay_waiting = self.relay_waits.messages() as u64;
        stats.remote_watches = self.remote_watches.lock().len() as u64;
        for peer in self.peers.read().values() {
            stats.unacked += peer.acks.unacked() as u64;
            stats.messages_out += peer.messages_sent();
            stats.monotonic_replaced += peer.lanes.iter().flatten().map(|l| l.queue.replaced()).sum::<u64>();
        }
        stats
    }

    /// Sends Goodbye to every peer and stops all tasks.
    pub(crate) async fn shutdown(&self) {
        if self.shutting_down.swap(true, Ordering::AcqRel) {
            return;
        }
        let peers: Vec<Arc<Peer>> = self.peers.read().values().cloned().collect();
        // What `tell` accepted goes out first (for at most `SHUTDOWN_FLUSH`): the lanes' writers
        // drain their queues into the sockets. The goodbye follows; each peer reads our lanes to
        // their end before it takes us for gone.
        // Only the lanes of peers that are up (connected) and not gone or going: a lane still
        // dialling, as a data lane is until its first message, connects and writes in time; a
        // peer that cannot be reached would only hold the shutdown for the whole wait.
        let deadline = Instant::now() + SHUTDOWN_FLUSH;
        let writing = |p: &Arc<Peer>| {
            !p.ending() && p.up.load(Ordering::Acquire) && p.lanes.iter().flatten().any(|lane| lane.queue.has_backlog())
        };
        while Instant::now() < deadline && peers.iter().any(writing) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for peer in &peers {
            peer.say_goodbye();
        }
        // Let the writers flush the goodbyes, also those said on connections released since the
        // node began to leave (see `Control::Release`).
        let released: Vec<Arc<Peer>> = self.released.lock().values().filter_map(Weak::upgrade).collect();
        let deadline = Instant::now() + Duration::from_millis(500);
        while Instant::now() < deadline
            && peers.iter().chain(&released).any(|p| !p.is_down() && p.control_lane().queue.has_backlog())
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.close_all_peers();
        self.fail_waiting_asks();
    }

    /// The node's runtime is going away without [`shutdown`](Self::shutdown) (its last handle
    /// dropped): no goodbyes, but every peer is closed and sends fail from now on, instead of
    /// queueing for writers that are gone.
    ///
    /// Unlike `shutdown`, the actor system may go on, so what waits on other nodes is told now:
    /// asks waiting for a remote answer get `NoReply` at once, and watchers of remote actors get
    /// `NodeDown` on the actor scheduler, not in whatever code dropped the node. Also finishes a
    /// `shutdown` that was cut short (it may have set the flag and not yet closed the peers).
    pub(crate) fn stop_now(self: &Arc<Self>) {
        self.shutting_down.store(true, Ordering::Release);
        let closed = self.close_all_peers();
        // Here, not on the scheduler: the actor system may have been shut down already, and
        // nothing else would end them.
        self.fail_waiting_asks();
        tracing::debug!(node = %self.settings.name, peers = closed, "node dropped without shutdown");
        let shared = self.clone();
        self.system.scheduler().spawn(async move { shared.nodes_gone(|_| true) });
    }

    /// Takes every peer out of the map, marks it down and closes its lanes, and tells the
    /// node's tasks to stop (the end of `shutdown` and of `stop_now`). How many there were.
    fn close_all_peers(&self) -> usize {
        let peers: Vec<Arc<Peer>> = self.peers.write().drain().map(|(_, peer)| peer).collect();
        for peer in &peers {
            peer.down.store(true, Ordering::Release);
            peer.close_lanes();
        }
        self.stop.notify_waiters();
        peers.len()
    }
}
