//! Indirect probes (as in SWIM) before a failure notice: a node that loses its connection to a
//! peer asks a few other peers whether they still hear from it, and tells the cluster the peer is
//! lost only if none does. Without this, one broken link (a flaky route, a half-open connection,
//! a partition between two nodes only) would get a live node declared dead on every node that
//! reaches it only through the overlay.
//!
//! The asker sends [`Control::Probe`] to at most [`PROBE_HELPERS`] peers it is connected to. A
//! helper that has a working connection to the node in question pings it over that connection and
//! answers [`Control::ProbeReply`] with whether its Pong arrived within
//! [`PING_WAIT_MAX`] (or its own shorter ping timeout). A helper without a connection answers "not
//! heard" at once: it does not connect for the probe, because a connection that fails would make
//! the helper declare the node lost itself, with every consequence of a real loss.
//!
//! The price is latency: a real loss is reported up to [`PING_WAIT_MAX`] plus half a second later
//! than without probes (when a helper's connection to the lost node looks up but is silent).

use std::collections::HashMap;
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
/// timeout, if shorter). The asker waits this long plus [`ANSWER_MARGIN`], whatever its own
/// settings, so every helper's answer arrives in time.
const PING_WAIT_MAX: Duration = Duration::from_secs(1);

/// What the asker allows on top of [`PING_WAIT_MAX`] for the round trips to its helpers.
const ANSWER_MARGIN: Duration = Duration::from_millis(500);

/// How often a helper looks whether the probed node answered.
const POLL: Duration = Duration::from_millis(10);

/// The most probes a node answers at once; beyond that (a burst of losses) it answers "not
/// heard" at once instead of pinging.
const ANSWERING_MAX: usize = 64;

/// The most probes from one peer a node answers at once, so one peer cannot take every slot.
const ANSWERING_PER_ASKER: usize = 4;

/// Probes in flight on one node.
#[derive(Default)]
pub(crate) struct Probes {
    /// Requests sent, by id: the helper asked and where its answer goes.
    waiting: HashMap<u64, (NodeId, mpsc::UnboundedSender<bool>)>,
    /// Probes being answered now, per asker.
    answering: HashMap<NodeId, usize>,
}

impl NodeShared {
    /// This node lost its connection to `node`: true if another peer still hears from it, in
    /// which case the loss is not reported (counted in `failure_notices_withheld`).
    pub(crate) async fn reached_by_others(self: &Arc<Self>, node: NodeId) -> bool {
        let helpers: Vec<Arc<Peer>> = {
            let peers = self.peers.read();
            let candidates: Vec<&Arc<Peer>> = peers.values().filter(|p| p.id != node && p.is_working()).collect();
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
            if !self.send_control(helper.id, &Control::Probe { request, node: node.0 }) {
                self.probes.lock().waiting.remove(&request); // gone meanwhile: no answer coming
            }
        }
        drop(tx);
        // A helper's answer, or the end of all answers (each one drops its sender; so does a
        // helper lost meanwhile, see `helper_lost`).
        let wait = PING_WAIT_MAX + ANSWER_MARGIN;
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

    /// Peer `gone` is lost: the probes it was asked to answer get no answer from it.
    pub(crate) fn helper_lost(&self, gone: NodeId) {
        self.probes.lock().waiting.retain(|_, (helper, _)| *helper != gone);
    }

    /// Peer `asker` asks whether this node hears from `node`: pings it and answers.
    pub(crate) fn on_probe(self: &Arc<Self>, asker: NodeId, request: u64, node: NodeId) {
        {
            let mut probes = self.probes.lock();
            let total: usize = probes.answering.values().sum();
            let mine = probes.answering.get(&asker).copied().unwrap_or(0);
            if total >= ANSWERING_MAX || mine >= ANSWERING_PER_ASKER {
                drop(probes);
                self.send_control(asker, &Control::ProbeReply { request, reachable: false });
                return;
            }
            probes.answering.insert(asker, mine + 1);
        }
        let me = Arc::clone(self);
        self.runtime.spawn(async move {
            let reachable = me.hears_from(node).await;
            {
                let mut probes = me.probes.lock();
                if let Some(count) = probes.answering.get_mut(&asker) {
                    *count -= 1;
                    if *count == 0 {
                        probes.answering.remove(&asker);
                    }
                }
            }
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

    /// Whether `node` answers a ping (a Pong arrives), over the working connection this node has
    /// to it, within a ping's wait. False at once without such a connection.
    async fn hears_from(&self, node: NodeId) -> bool {
        if node == self.id {
            return true;
        }
        let Some(peer) = self.peer(node).filter(|p| p.is_working()) else {
            return false;
        };
        let before = peer.pongs.load(Ordering::Relaxed);
        peer.control_lane().queue.push_frame(FrameKind::Ping, 0, &[]);
        let deadline = Instant::now() + self.settings.ping_timeout.min(PING_WAIT_MAX);
        while Instant::now() < deadline {
            if peer.pongs.load(Ordering::Relaxed) != before {
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
