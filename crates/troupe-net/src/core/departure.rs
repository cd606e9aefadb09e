//! How a node stops being a peer: lost (our own failure detection or another node's notice),
//! gone (it said goodbye), or dropped and quarantined for a while because it does not read what
//! it asks for; what that means for its actors' proxies, asks and watches.

use super::*;

/// How a peer went away.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Departure {
    /// Its connections failed, or it came back as a new incarnation.
    Lost,
    /// It said goodbye.
    Left,
}

/// How long a node whose peer said goodbye keeps reading the connections that peer dialled (to
/// their end: the peer closes them once written) before it takes the peer for gone.
const LEAVE_DRAIN: Duration = Duration::from_secs(5);

/// Forgets node `id`'s acknowledgement state unless a peer was made with it since `made` peers
/// had been (under the map's lock, which a new peer takes to get the state: no peer can be made
/// in between).
fn forget_acks_if_not_reached_since(acks: &mut HashMap<NodeId, Arc<AckState>>, id: NodeId, made: u64) -> bool {
    if acks.get(&id).is_some_and(|state| state.peers_made() == made) {
        acks.remove(&id);
        return true;
    }
    false
}

impl NodeShared {
    /// Whether node `id` is refused for now (see [`drop_for_overflow`](Self::drop_for_overflow)).
    /// Takes only its own lock, briefly.
    pub(super) fn is_quarantined(&self, id: NodeId) -> bool {
        self.quarantined.lock().get(&id).is_some_and(|until| *until > Instant::now())
    }

    /// Marks a peer down: stops its lanes, fails what waits on it, tells watchers and user code.
    pub(crate) fn peer_down(&self, peer: &Arc<Peer>, why: &str) {
        self.peer_gone(peer, why, Departure::Lost);
    }

    /// The peer said goodbye: what it sent before, on the connections it dialled for its lanes,
    /// is read to the end (it closes them once it has written everything) before it counts as
    /// gone, for at most [`LEAVE_DRAIN`]. The goodbye comes on the control connection, which
    /// overtakes the data of a busy lane.
    pub(super) fn peer_leaving(&self, peer: &Arc<Peer>) {
        let Some(shared) = self.me.upgrade() else { return };
        // Said on connections we released, while a newer peer for the node is in the map: that
        // one is the peer that leaves (reporting both would say it twice), once what the
        // released one's connections still carry is read and its held signals applied.
        let (peer, released) = match self.peer(peer.id) {
            Some(current) if peer.releasing.load(Ordering::Acquire) && !Arc::ptr_eq(&current, peer) => {
                (current, Some(peer.clone()))
            }
            _ => (peer.clone(), None),
        };
        // Its listener is closing: our lanes must not redial it meanwhile (two failed dials of
        // the control lane would report it lost instead of gone), and sends to it fail now
        // rather than queue for lanes that will not come back. Nothing is relayed through it.
        if peer.leaving.swap(true, Ordering::AcqRel) {
            return;
        }
        self.relay_routes.lock().forget_via(peer.id);
        self.runtime.spawn(async move {
            if let Some(released) = released {
                let deadline = Instant::now() + LEAVE_DRAIN;
                while Instant::now() < deadline && !released.is_down() && released.has_connections() {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                shared.drain_signals(&released, true);
            }
            peer.inbound_drained(LEAVE_DRAIN).await;
            shared.peer_gone(&peer, "left the cluster", Departure::Left);
        });
    }

    /// [`peer_down`](Self::peer_down), saying whether the peer told us it left (then nobody is
    /// asked whether they still reach it before the cluster is told).
    fn peer_gone(&self, peer: &Arc<Peer>, why: &str, departure: Departure) {
        if peer.down.swap(true, Ordering::AcqRel) {
            return;
        }
        // Closed before it leaves the map: a sender still holding it fills no frame into its
        // queues once a new peer for the same node (see `ensure_peer`) may have taken its
        // snapshot of the unacknowledged frames.
        peer.close_lanes();
        {
            // Only this peer: a newer one for the same node may have taken its place.
            let mut peers = self.peers.write();
            let newer = peers.get(&peer.id).is_some_and(|p| !Arc::ptr_eq(p, peer));
            if !newer {
                // Its signals not yet acknowledged that start something (a watch, a link, a
                // stop) are void: its actors' watchers and links hear of its loss now, and must
                // not be watched, linked or stopped by them should the node be reached again.
                // Given up under the map's lock, so no newer peer (see `ensure_peer`) queues
                // them again; and not at all when a newer peer (a released one's successor)
                // owns them now.
                peer.acks.abandon_void();
                peers.remove(&peer.id);
            }
        }
        self.relay_routes.lock().forget_via(peer.id);
        self.counters.messages_out.fetch_add(peer.messages_sent(), Ordering::Relaxed);
        // Only on our own evidence (not a released peer, nor a failure notice about a node we
        // have no connection to, which may be alive): forgetting the numbering of a live node on
        // one side only would make the other drop or repeat acknowledged messages. A released
        // node reported lost by others gets a peer to find out while we still have its address
        // (see `node_lost_notice`); one that dies unseen and unreported leaves its (empty: see
        // `release_peer`) state behind.
        self.forget_acks_later(peer.id);
        tracing::info!(node = %self.settings.name, peer = %peer.name, why, "node down");
        // What it signalled before it went (an actor's exit, say) comes before its departure.
        self.drain_signals(peer, true);
        self.node_gone(peer.id);
        let _ = self.events.send(NodeEvent::Down { node: peer.id, name: peer.name.clone(), reason: why.to_string() });
        self.tell_membership(DriverInput::PeerLost(troupe_overlay::PeerId(peer.id.0)));
        // Nodes that reach it only through the overlay (relayed, or over connections since
        // released) learn of it from us: a failure notice to every node, unless other peers
        // still reach it (see `probe`; a node that said goodbye may still answer while it
        // flushes its last frames, so it is not probed).
        self.helper_lost(peer.id);
        let probe = match departure {
            Departure::Lost => Some(peer.addrs.clone()),
            Departure::Left => {
                self.forget_remote_watches_of(peer.id);
                None
            }
        };
        self.tell_membership(DriverInput::NodeLost(peer.id, probe));
    }

    /// What follows from the loss of node `id`, however we learned of it: its actors' proxies
    /// exit with NodeDown (watchers and links hear of it), asks waiting on it fail, lookups
    /// from it are dropped, and its address is forgotten.
    fn node_gone(&self, id: NodeId) {
        // The address first: failing an ask drops the reply port it held, and a port from that
        // very node (passed on to us and back) sends it a NoReply, which must not dial it again.
        self.directory.write().remove(&id);
        self.nodes_gone(|node| node == id);
    }

    /// The actors, asks and lookups of every node `gone` says is gone: proxies exit with
    /// NodeDown, asks get NoReply, lookups are dropped.
    pub(super) fn nodes_gone(&self, gone: impl Fn(NodeId) -> bool) {
        let proxies: Vec<Arc<RemoteProxy>> = {
            let proxies = self.proxies.lock();
            proxies.iter().filter(|(actor, _)| gone(actor.node)).filter_map(|(_, p)| p.upgrade()).collect()
        };
        for proxy in proxies {
            proxy.exited(ExitReason::NodeDown);
        }
        let failed: Vec<Box<dyn PendingReply>> = {
            let mut replies = self.replies.lock();
            let ids: Vec<u64> = replies.iter().filter(|(_, (to, _))| gone(*to)).map(|(k, _)| *k).collect();
            ids.into_iter().filter_map(|k| replies.remove(&k)).map(|(_, waiting)| waiting.pending).collect()
        };
        for pending in failed {
            pending.complete(ReplyOutcome::NoReply, &[], None);
        }
        self.lookups.lock().retain(|_, (to, _)| !gone(*to));
    }

    /// Node `id` is gone for good (it said goodbye, or was not reached again for a long while):
    /// the watches it held on our actors go. (Not on a mere loss: a node we take for lost may
    /// be alive and still waiting for a Down.)
    fn forget_remote_watches_of(&self, id: NodeId) {
        self.remote_watches.lock().retain(|(watcher, _)| *watcher != id);
    }

    /// Whether a failure notice for `id` reached this node within [`NOTICE_MEMORY`].
    pub(crate) fn loss_reported(&self, id: NodeId) -> bool {
        self.lost_notices.lock().get(&id).is_some_and(|at| at.elapsed() < NOTICE_MEMORY)
    }

    /// Another node reports that node `id` was lost. Believed unless we still have a working
    /// connection to it (then our own failure detection speaks for it). When we only had
    /// connections to it that were since released, a peer is made to check it ourselves (not
    /// when this node reaches others only through the overlay).
    pub(crate) fn node_lost_notice(&self, id: NodeId) {
        {
            let mut heard = self.lost_notices.lock();
            if heard.len() >= 4096 {
                heard.retain(|_, at| at.elapsed() < NOTICE_MEMORY);
            }
            heard.insert(id, Instant::now());
        }
        if id == self.id || self.peer(id).is_some_and(|p| p.is_working()) {
            return;
        }
        tracing::debug!(node = %self.settings.name, lost = %id, "failure notice");
        match self.peer(id) {
            Some(peer) => self.drain_signals(&peer, false),
            // We had connections to it, released since: it keeps acknowledged-delivery state
            // here, and may hold watches of our actors, which go only on our own evidence (see
            // `forget_acks_later`). A peer made for it now finds out: its dials reach the node
            // (the notice was wrong for us) or fail and report it lost as for any peer, with a
            // Down event for user code and that state forgotten in time (its actors' watchers
            // here hear of the loss from the notice already: `node_gone` below). Made before
            // `node_gone` forgets the node's address, so not again once it has (a later notice,
            // or our own loss of it, came first); and not when this node reaches others only
            // through the overlay (`reach = "relay"`): a dial that fails there may say only that
            // the node cannot be dialled, so such a node keeps that state as before.
            None if self.settings.reach == Reach::Direct && self.acks.lock().contains_key(&id) => {
                self.peer_on_demand(id);
            }
            None => {}
        }
        self.node_gone(id);
    }

    /// Drops the acknowledged-delivery state of a lost incarnation if it has not come back
    /// within ten reconnect periods (its unacknowledged messages are then given up). Not if it
    /// was reached again meanwhile, even if that peer is gone again by then (released while
    /// idle, say): the node kept its record of what it was given, and numbering from 1 again
    /// would make it drop our next messages as copies.
    fn forget_acks_later(&self, id: NodeId) {
        let Some(shared) = self.me.upgrade() else { return };
        let Some(made) = self.acks.lock().get(&id).map(|state| state.peers_made()) else { return };
        let grace = (self.settings.reconnect_max * 10).max(Duration::from_secs(60));
        self.runtime.spawn(async move {
            tokio::time::sleep(grace).await;
            if shared.peer(id).is_none() && forget_acks_if_not_reached_since(&mut shared.acks.lock(), id, made) {
                shared.forget_remote_watches_of(id);
            }
        });
    }

    /// Drops a peer that keeps asking and does not read the answers (a send queue past its
    /// overflow mark), and refuses its handshakes for [`QUARANTINE`]: otherwise it would redial at
    /// once, be taken back, and never learn that it was dropped, while its watchers here were
    /// told it was lost.
    pub(super) fn drop_for_overflow(&self, peer: &Arc<Peer>) {
        if peer.is_down() {
            return;
        }
        self.counters.bad_frames.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(node = %self.settings.name, peer = %peer.name, quarantine = ?QUARANTINE, "peer does not read what it asks for; dropped");
        {
            let mut quarantined = self.quarantined.lock();
            let now = Instant::now();
            quarantined.retain(|_, until| *until > now);
            quarantined.insert(peer.id, now + QUARANTINE);
        }
        self.peer_down(peer, "does not read what it asks for");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_nodes_ack_state_is_forgotten_only_if_it_was_not_reached_again() {
        let id = NodeId(7);
        let mut acks = HashMap::new();
        let state = Arc::new(AckState::new(1 << 20));
        state.peer_made();
        acks.insert(id, state.clone());
        // Lost with one peer made; reached again (a second peer), then released: keep.
        let made = state.peers_made();
        state.peer_made();
        assert!(!forget_acks_if_not_reached_since(&mut acks, id, made));
        assert!(acks.contains_key(&id), "the state of a node that came back was forgotten");
        // Lost again and not reached since: forget.
        let made = state.peers_made();
        assert!(forget_acks_if_not_reached_since(&mut acks, id, made));
        assert!(!acks.contains_key(&id));
        assert!(!forget_acks_if_not_reached_since(&mut acks, id, made), "nothing left to forget");
    }
}
