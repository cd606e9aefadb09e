//! Indirect probes (as in SWIM) before a failure notice: a node that loses its connection to a
//! peer asks a few other peers whether they still hear from it, and tells the cluster the peer is
//! lost only if none does. Without this, one broken link (a flaky route, a half-open connection,
//! a partition between two nodes only) would get a live node declared dead on every node that
//! reaches it only through the overlay.
//!
//! The asker sends [`Control::Probe`] to at most [`PROBE_HELPERS`] peers it is connected to. A
//! helper that is connected to the node in question (or, where this node reaches non-neighbours
//! directly, can connect to it) pings it and answers [`Control::ProbeReply`] with whether anything
//! arrived from it in time. Two nodes that lose the same peer at once and probe each other would
//! both go on to report it; the one with the larger id leaves the report to the other.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::seq::IndexedRandom;
use tokio::sync::mpsc;
use troupe_actor::NodeId;
use troupe_wire::{Control, FrameKind};

use crate::core::NodeShared;
use crate::peer::Peer;

/// How many peers a node asks before it reports a loss.
pub(crate) const PROBE_HELPERS: usize = 3;

/// The longest a helper waits for the probed node to answer its ping (its configured ping
/// timeout, if shorter).
const PING_WAIT_MAX: Duration = Duration::from_secs(1);

/// The longest a helper waits for a connection it opened for the probe (its configured connect
/// timeout, if shorter).
const CONNECT_WAIT_MAX: Duration = Duration::from_secs(2);

/// How often a helper looks whether the probed node answered.
const POLL: Duration = Duration::from_millis(10);

/// The most probes a node answers at once; beyond that (a burst of losses, or a peer flooding
/// probes) it answers "not heard" at once instead of pinging.
const ANSWERING_MAX: usize = 64;

/// Probes in flight on one node.
#[derive(Default)]
pub(crate) struct Probes {
    /// Requests sent, by id: the helper asked and where its answer goes.
    waiting: std::collections::HashMap<u64, (NodeId, mpsc::UnboundedSender<bool>)>,
    /// Peers this node lost and has not yet reported or cleared.
    pending: HashSet<NodeId>,
    /// Probes from other nodes being answered now.
    answering: usize,
}

impl NodeShared {
    /// How long a helper may take to answer a probe: a ping's wait plus a connection's.
    fn probe_wait(&self) -> Duration {
        self.settings.ping_timeout.min(PING_WAIT_MAX) + self.settings.connect_timeout.min(CONNECT_WAIT_MAX)
    }

    /// This node lost its connection to `node`: true if another peer still hears from it, in
    /// which case the loss is not reported (counted in `failure_notices_withheld`). Also false
    /// when a peer with a smaller id lost it at the same time and will report it.
    pub(crate) async fn reached_by_others(self: &Arc<Self>, node: NodeId) -> bool {
        let helpers: Vec<Arc<Peer>> = {
            let peers = self.peers.read();
            let candidates: Vec<&Arc<Peer>> =
                peers.values().filter(|p| p.id != node && p.up.load(Ordering::Acquire) && !p.is_down()).collect();
            candidates.choose_multiple(&mut rand::rng(), PROBE_HELPERS).map(|p| Arc::clone(p)).collect()
        };
        if helpers.is_empty() {
            return false;
        }
        let (tx, mut answers) = mpsc::unbounded_channel();
        let mut requests = Vec::with_capacity(helpers.len());
        for helper in &helpers {
            let request = self.next_request.fetch_add(1, Ordering::Relaxed);
            self.probes.lock().waiting.insert(request, (helper.id, tx.clone()));
            requests.push(request);
            self.send_control(helper.id, &Control::Probe { request, node: node.0 });
        }
        drop(tx);
        // A helper's answer, or the end of all answers (each one drops its sender).
        let wait = self.probe_wait() + Duration::from_millis(500);
        let reached = tokio::time::timeout(wait, async {
            while let Some(reachable) = answers.recv().await {
                if reachable {
                    return true;
                }
            }
            false
        })
        .await
        .unwrap_or(false);
        {
            let mut probes = self.probes.lock();
            for request in requests {
                probes.waiting.remove(&request);
            }
        }
        if reached {
            self.counters.failure_notices_withheld.fetch_add(1, Ordering::Relaxed);
            tracing::info!(node = %self.settings.name, peer = %node, "lost a peer that others still reach; not reporting it");
        }
        reached
    }

    /// Marks `node` as lost here and about to be reported (see [`reached_by_others`]).
    pub(crate) fn loss_pending(&self, node: NodeId, pending: bool) {
        let mut probes = self.probes.lock();
        if pending {
            probes.pending.insert(node);
        } else {
            probes.pending.remove(&node);
        }
    }

    /// Peer `asker` asks whether this node hears from `node`: pings it and answers.
    pub(crate) fn on_probe(self: &Arc<Self>, asker: NodeId, request: u64, node: NodeId) {
        {
            let mut probes = self.probes.lock();
            // Both lost it: the one with the smaller id reports it, the other takes that as said.
            let both_lost = probes.pending.contains(&node);
            if both_lost || probes.answering >= ANSWERING_MAX {
                drop(probes);
                if both_lost && asker.0 < self.id.0 {
                    self.note_loss_reported(node);
                }
                self.send_control(asker, &Control::ProbeReply { request, reachable: false });
                return;
            }
            probes.answering += 1;
        }
        let me = Arc::clone(self);
        self.runtime.spawn(async move {
            let reachable = me.hears_from(node).await;
            me.probes.lock().answering -= 1;
            me.send_control(asker, &Control::ProbeReply { request, reachable });
        });
    }

    /// An answer to one of this node's probes, from `from`.
    pub(crate) fn on_probe_reply(&self, from: NodeId, request: u64, reachable: bool) {
        let mut probes = self.probes.lock();
        match probes.waiting.get(&request) {
            Some((helper, _)) if *helper == from => {
                if let Some((_, answer)) = probes.waiting.remove(&request) {
                    let _ = answer.send(reachable);
                }
            }
            Some(_) => {
                self.counters.bad_frames.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(node = %self.settings.name, %from, "probe answer from a peer that was not asked; ignored");
            }
            None => {} // answered after the asker stopped waiting
        }
    }

    /// Whether anything arrives from `node` within a ping's wait after pinging it, over the
    /// connection this node has or (where non-neighbours are reached directly) opens for it.
    async fn hears_from(&self, node: NodeId) -> bool {
        if node == self.id {
            return true;
        }
        let (peer, connecting) = match self.peer(node) {
            Some(peer) => (peer, false),
            None if !self.must_relay(node) => match self.peer_on_demand(node) {
                Some(peer) => (peer, true),
                None => return false,
            },
            None => return false,
        };
        let before = peer.heard.load(Ordering::Acquire);
        // Queued until the control lane's connection is up, then answered with a Pong.
        peer.control_lane().queue.push_frame(FrameKind::Ping, 0, &[]);
        let mut wait = self.settings.ping_timeout.min(PING_WAIT_MAX);
        if connecting {
            wait += self.settings.connect_timeout.min(CONNECT_WAIT_MAX);
        }
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if peer.heard.load(Ordering::Acquire) != before {
                return true;
            }
            if peer.is_down() {
                return false;
            }
            tokio::time::sleep(POLL).await;
        }
        false
    }
}
