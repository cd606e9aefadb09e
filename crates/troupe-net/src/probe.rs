//! Indirect probes (as in SWIM) before a failure notice: a node that loses its connection to a
//! peer asks a few other peers whether they still hear from it, and tells the cluster the peer is
//! lost only if none does. Without this, one broken link (a flaky route, a half-open connection,
//! a partition between two nodes only) would get a live node declared dead on every node that
//! reaches it only through the overlay.
//!
//! The asker sends [`Control::ProbeAt`] (to a helper of protocol version 1, [`Control::Probe`],
//! without them) to at most [`PROBE_HELPERS`] peers it is connected to, with the lost node's
//! listen addresses. A helper answers [`Control::ProbeReply`] with whether it heard from the node
//! within [`PING_WAIT_MAX`]:
//! - over the working connection it has to the node, if any: it pings it and waits for the Pong
//!   (at most its own ping timeout, if shorter);
//! - else, unless it is configured to reach other nodes only through the overlay
//!   (`reach = "relay"`), it dials the node for the probe alone ([`ConnPurpose::PROBE`]), at the
//!   addresses it knows for it and the asker's, all at once: a handshake, which proves the
//!   node's identity and incarnation, then one Pong frame from the node, and the connection
//!   closes. No peer is created for the probe, so a dial that fails is only a "not heard", never
//!   the helper's own loss of the node with all its consequences. A node that answers is then
//!   connected to for real, at the address it answered on: the helper vouches that the node is
//!   reachable, so it becomes a way to reach it (nodes that relay through the overlay get
//!   through it) and watches it for as long as the connection lasts. With partial views
//!   (HyParView), a helper is usually not connected to the node, so this is the case that
//!   matters there.
//!
//! When an overlay runs, the asker also pings the lost node itself through the overlay
//! ([`Control::RelayPing`], relayed like any frame for a node it is not connected to; the node
//! answers [`Control::RelayPong`] the same way, usually back along the ping's path, see
//! `routes`). A node reachable that way is not lost, even when none of the helpers is connected
//! to it and none may dial it (helpers set to `reach = "relay"`, with partial views).
//!
//! An overlay may release a connection it did not ask for once idle, so a helper's word is not
//! a promise to keep watching: the asker, while it has no connection of its own to the node,
//! probes again every [`RECHECK`] until the node is back, reported by someone, or heard by nobody
//! (then it reports it; see [`NodeShared::loss_to_report`], which makes the whole decision).
//!
//! A node of protocol version 1 answers only the probe without addresses, and takes a probe
//! connection for an ordinary one (it makes a peer for it; the handshake alone then counts as the
//! answer).
//!
//! The price is latency: a real loss is reported [`PING_WAIT_MAX`] plus half a second later than
//! without probes (a dead node does not answer the ping through the overlay, so the asker waits
//! out the whole probe).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use std::net::SocketAddr;

use rand::seq::IndexedRandom;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use troupe_actor::NodeId;
use troupe_wire::{encode_frame, ConnPurpose, Control, FrameDecoder, FrameKind, NodeInfo, HEADER_LEN};

use crate::config::Reach;
use crate::conn::Opened;
use crate::core::NodeShared;
use crate::peer::Peer;

/// How many peers a node asks before it reports a loss.
pub(crate) const PROBE_HELPERS: usize = 3;

/// The longest a helper waits for the probed node to answer its ping (its configured ping
/// timeout, if shorter). The asker waits this long plus [`ANSWER_MARGIN`], whatever its own
/// settings, so every helper's answer arrives in time.
const PING_WAIT_MAX: Duration = Duration::from_secs(1);

/// How often a node that withheld a loss probes again while it has no connection to the node:
/// the helpers that vouched may not stay connected to it (an overlay releases connections it did
/// not ask for once idle), so the asker remains its failure detector.
const RECHECK: Duration = Duration::from_secs(5);

/// What the asker allows on top of [`PING_WAIT_MAX`] for the round trips to its helpers.
const ANSWER_MARGIN: Duration = Duration::from_millis(500);

/// The most probes a node answers at once; beyond that (a burst of losses) it answers "not
/// heard" at once instead of pinging.
const ANSWERING_MAX: usize = 64;

/// The most probes from one peer a node answers at once, so one peer cannot take every slot.
const ANSWERING_PER_ASKER: usize = 4;

/// The most addresses of the node in question a helper dials (a probe names at most these).
const PROBE_ADDRS: usize = 4;

/// The most bytes a probe dial reads after the handshake while waiting for the Pong.
const PROBE_READ_MAX: usize = 4096;

/// Probes in flight on one node.
#[derive(Default)]
pub(crate) struct Probes {
    /// Requests sent, by id: who answers (a helper, or the lost node itself for a ping through
    /// the overlay) and where the answer goes.
    waiting: HashMap<u64, (Answerer, mpsc::UnboundedSender<bool>)>,
    /// Probes being answered now, per asker.
    answering: HashMap<NodeId, usize>,
    /// Lost nodes this node is deciding about (probing, or probing again later), each with
    /// whether it was lost again meanwhile: one decision per node at a time, however often its
    /// connections fail, and a decision that finds the node back looks again if it was.
    deciding: HashMap<NodeId, bool>,
    /// Lost nodes that a peer with a smaller id asked this node about while this node was
    /// deciding on them too: that peer reports the loss first (see [`STEP_ASIDE`]).
    asked_by_smaller: HashSet<NodeId>,
}

/// How long a node deciding to report a loss waits before it does, when a peer with a smaller
/// id that lost the same node asked it meanwhile (so is deciding too): that peer's notice
/// usually arrives within it, and this node then stays quiet. Two nodes that lose a node at
/// the same moment otherwise both report it when their probes overlap (seen under load).
const STEP_ASIDE: Duration = Duration::from_secs(1);

/// Who answers a probe request.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Answerer {
    /// A peer asked whether it hears from the node; its loss ends the request unanswered.
    Helper(NodeId),
    /// The lost node itself, pinged through the overlay.
    Node(NodeId),
}

impl Answerer {
    fn id(self) -> NodeId {
        match self {
            Answerer::Helper(id) | Answerer::Node(id) => id,
        }
    }
}

/// The decision about one lost node under way (see [`NodeShared::loss_to_report`]); ends when
/// dropped, or when [`Deciding::lost_again`] says so.
struct Deciding {
    shared: Weak<NodeShared>,
    node: NodeId,
    ended: bool,
}

impl Deciding {
    /// The decision found the node back: true if it was lost again meanwhile (decide again),
    /// else the decision ends here, atomically with that check.
    fn lost_again(&mut self) -> bool {
        let Some(shared) = self.shared.upgrade() else { return false };
        let mut probes = shared.probes.lock();
        match probes.deciding.get_mut(&self.node) {
            Some(again) if *again => {
                *again = false;
                true
            }
            _ => {
                probes.deciding.remove(&self.node);
                probes.asked_by_smaller.remove(&self.node);
                self.ended = true;
                false
            }
        }
    }
}

impl Drop for Deciding {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        if let Some(shared) = self.shared.upgrade() {
            let mut probes = shared.probes.lock();
            probes.deciding.remove(&self.node);
            probes.asked_by_smaller.remove(&self.node);
        }
    }
}

impl NodeShared {
    /// This node lost `node` (its listen addresses `addrs`, `None` when it said goodbye): after
    /// `pause`, whether to tell the cluster. Not if somebody did already, or it came back, or
    /// (unless it said goodbye) another peer still hears from it: then the loss is withheld
    /// (counted in `failure_notices_withheld`) and this node asks again every [`RECHECK`] while
    /// it has no connection of its own. One such decision per node at a time.
    pub(crate) async fn loss_to_report(
        me: &Weak<NodeShared>,
        node: NodeId,
        addrs: Option<Vec<SocketAddr>>,
        pause: Duration,
    ) -> bool {
        let mut deciding = match &addrs {
            Some(_) => match me.upgrade().and_then(|shared| shared.deciding_loss(node)) {
                Some(deciding) => Some(deciding),
                None => return false, // decided by the decision under way
            },
            None => None,
        };
        tokio::time::sleep(pause).await;
        let mut withheld = false;
        loop {
            let Some(shared) = me.upgrade() else { return false };
            if shared.loss_reported(node) {
                return false; // someone told the cluster already
            }
            if shared.peer(node).is_some_and(|p| p.is_working()) {
                // It came back: nothing to tell, unless it was lost once more meanwhile (then
                // look again).
                if !deciding.as_mut().is_some_and(Deciding::lost_again) {
                    return false;
                }
                continue;
            }
            let Some(addrs) = &addrs else { return true };
            if !shared.reached_by_others(node, addrs).await {
                // Unless it came back while we probed (the next round sees to that).
                if shared.peer(node).is_some_and(|p| p.is_working()) {
                    continue;
                }
                if shared.probes.lock().asked_by_smaller.remove(&node) {
                    drop(shared);
                    tokio::time::sleep(STEP_ASIDE).await;
                    // `ReportLoss` looks again whether somebody reported it meanwhile.
                }
                return true;
            }
            // Still reached by another peer, which may not keep its connection (see the module
            // docs): ask again later. Counted and logged once per decision.
            if withheld {
                tracing::debug!(node = %shared.settings.name, peer = %node, "others still reach a lost peer");
            } else {
                withheld = true;
                shared.counters.failure_notices_withheld.fetch_add(1, Ordering::Relaxed);
                tracing::info!(node = %shared.settings.name, peer = %node, "lost a peer that others still reach; not reporting it");
            }
            drop(shared);
            tokio::time::sleep(RECHECK).await;
        }
    }

    /// Whether another peer still hears from lost node `node` (listening at `addrs`, for
    /// helpers that are not connected to it), or the node answers through the overlay: asks up
    /// to [`PROBE_HELPERS`] peers and pings the node around the lost connection.
    async fn reached_by_others(self: &Arc<Self>, node: NodeId, addrs: &[SocketAddr]) -> bool {
        let helpers: Vec<Arc<Peer>> = {
            let peers = self.peers.read();
            let candidates: Vec<&Arc<Peer>> = peers.values().filter(|p| p.id != node && p.is_working()).collect();
            candidates.choose_multiple(&mut rand::rng(), PROBE_HELPERS).map(|p| Arc::clone(p)).collect()
        };
        let addrs: Vec<String> = addrs.iter().take(PROBE_ADDRS).map(SocketAddr::to_string).collect();
        let (tx, mut answers) = mpsc::unbounded_channel();
        let mut requests = Vec::with_capacity(helpers.len() + 1);
        // Registers a request `answerer` answers, sent by `send`; when it cannot go, no answer
        // is coming and the entry goes again.
        let mut ask = |answerer: Answerer, send: &dyn Fn(u64) -> bool| {
            let request = self.next_request.fetch_add(1, Ordering::Relaxed);
            self.probes.lock().waiting.insert(request, (answerer, tx.clone()));
            requests.push(request);
            if !send(request) {
                self.probes.lock().waiting.remove(&request);
            }
        };
        // The node itself, through the overlay (never over what is left of our own connection
        // to it): a node reachable that way is not lost, even when no helper is connected to it
        // (partial views) or may dial it (helpers set to reach nodes only through the overlay).
        // A dead node does not answer, so a real loss waits out the whole probe.
        ask(Answerer::Node(node), &|request| self.relay_control_around(node, &Control::RelayPing { request }));
        for helper in &helpers {
            // A helper of protocol version 1 knows only the probe without addresses.
            let version = helper.version.load(Ordering::Relaxed);
            ask(Answerer::Helper(helper.id), &|request| {
                let probe = match version {
                    1 => Control::Probe { request, node: node.0 },
                    _ => Control::ProbeAt { request, node: node.0, addrs: addrs.clone() },
                };
                self.send_control(helper.id, &probe)
            });
        }
        drop(tx);
        // An answer, or the end of all answers (each one drops its sender; so does a helper
        // lost meanwhile, see `helper_lost`), or the end of the wait (the ping through the
        // overlay ends only with an answer or with this).
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
        let mut probes = self.probes.lock();
        for request in requests {
            probes.waiting.remove(&request);
        }
        reached
    }

    /// Starts deciding whether to report lost node `node`, unless that is under way already
    /// (then the decision under way hears that the node was lost again).
    fn deciding_loss(self: &Arc<Self>, node: NodeId) -> Option<Deciding> {
        let mut probes = self.probes.lock();
        match probes.deciding.get_mut(&node) {
            Some(again) => {
                *again = true;
                None
            }
            None => {
                probes.deciding.insert(node, false);
                Some(Deciding { shared: Arc::downgrade(self), node, ended: false })
            }
        }
    }

    /// Peer `gone` is lost: the probes it was asked to answer get no answer from it.
    pub(crate) fn helper_lost(&self, gone: NodeId) {
        self.probes.lock().waiting.retain(|_, (answerer, _)| *answerer != Answerer::Helper(gone));
    }

    /// Peer `asker` asks whether this node hears from `node` (listening at `addrs`, as far as
    /// the asker knows): pings or dials it and answers.
    pub(crate) fn on_probe(self: &Arc<Self>, asker: NodeId, request: u64, node: NodeId, addrs: &[String]) {
        let addrs: Vec<SocketAddr> = addrs.iter().take(PROBE_ADDRS).filter_map(|a| a.parse().ok()).collect();
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
            if asker < self.id && probes.deciding.contains_key(&node) {
                probes.asked_by_smaller.insert(node);
            }
        }
        let answering = Answering { shared: Arc::clone(self), asker };
        self.runtime.spawn(async move {
            let reachable = answering.shared.hears_from(node, &addrs).await;
            let shared = Arc::clone(&answering.shared);
            drop(answering);
            shared.send_control(asker, &Control::ProbeReply { request, reachable });
        });
    }

    /// An answer to one of this node's probes, from `from` (a helper's reply, or the lost node's
    /// pong through the overlay).
    pub(crate) fn on_probe_reply(&self, from: NodeId, request: u64, reachable: bool) {
        let mut probes = self.probes.lock();
        match probes.waiting.get(&request) {
            Some((answerer, _)) if answerer.id() == from => {
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

    /// Whether `node` answers within a ping's wait: a Pong over the working connection this node
    /// has to it, or, without one, a probe dial to one of `addrs` (see the module docs).
    async fn hears_from(&self, node: NodeId, addrs: &[SocketAddr]) -> bool {
        if node == self.id {
            return true;
        }
        let Some(peer) = self.peer(node).filter(|p| p.is_working()) else {
            // Only a node that may connect to any node (not one told to go through the
            // overlay) dials one: what it vouches for is that its messages get through.
            return self.settings.reach == Reach::Direct && self.answers_probe_dial(node, addrs).await;
        };
        // Listening before the ping and before looking at `down`, so neither a quick pong nor
        // the peer going down in between is missed.
        let ponged = peer.pong.notified();
        let stopped = peer.stop.notified();
        tokio::pin!(ponged, stopped);
        ponged.as_mut().enable();
        stopped.as_mut().enable();
        if peer.is_down() {
            return false;
        }
        peer.control_lane().queue.push_frame(FrameKind::Ping, 0, &[]);
        tokio::select! {
            _ = ponged => true,
            _ = stopped => false,
            _ = tokio::time::sleep(self.settings.ping_timeout.min(PING_WAIT_MAX)) => false,
        }
    }

    /// Dials `node` for a probe at the addresses this node knows for it and at `offered` (the
    /// asker's), all at once, within [`PING_WAIT_MAX`]; if one answers as this incarnation of the
    /// node, connects to it for real (see the module docs).
    async fn answers_probe_dial(&self, node: NodeId, offered: &[SocketAddr]) -> bool {
        if self.faults.is_partitioned(node) {
            return false;
        }
        let Some(me) = self.me.upgrade() else { return false };
        // Its own first: the asker's are only as good as what the asker was told.
        let mut addrs = self.known_addrs(node);
        for addr in offered {
            if !addrs.contains(addr) {
                addrs.push(*addr);
            }
        }
        // All at once: an address that silently drops the dial must not use up the time the
        // others need.
        let mut dials = tokio::task::JoinSet::new();
        for addr in addrs.into_iter().take(PROBE_ADDRS) {
            let me = Arc::clone(&me);
            dials.spawn(async move { (addr, me.probe_dial(node, addr).await) });
        }
        let answered = tokio::time::timeout(PING_WAIT_MAX, async {
            while let Some(done) = dials.join_next().await {
                match done {
                    Ok((addr, Ok(info))) => return Some((addr, info)),
                    Ok((addr, Err(why))) => {
                        tracing::debug!(node = %self.settings.name, probed = %node, %addr, %why, "probe dial not answered");
                    }
                    Err(_) => {} // the dial task panicked or was aborted: no answer from it
                }
            }
            None
        })
        .await
        .ok()
        .flatten();
        // The dials still under way finish on their own (each within the dial and handshake
        // timeouts) rather than being cut off mid-handshake, which the probed node would log as
        // a rejected connection.
        dials.detach_all();
        let Some((addr, mut info)) = answered else { return false };
        // Where it answered first, then what it says of itself.
        let at = addr.to_string();
        info.listen.retain(|a| *a != at);
        info.listen.insert(0, at);
        self.connect_vouched(info);
        true
    }

    /// One probe dial: the handshake must name `node`'s incarnation, and the first frame after
    /// it must be a Pong (from a node of protocol version 2; for version 1 the handshake is the
    /// answer). Returns the node's account of itself from the handshake.
    async fn probe_dial(&self, node: NodeId, addr: SocketAddr) -> Result<NodeInfo, String> {
        let Opened { mut reader, established, leftover, .. } =
            self.dial(addr, ConnPurpose::PROBE).await.map_err(|e| e.to_string())?;
        if established.peer.incarnation != node.0 {
            return Err(format!("another incarnation ({}) listens there", NodeId(established.peer.incarnation)));
        }
        if established.version < 2 {
            return Ok(established.peer);
        }
        let decoder = FrameDecoder::new(0);
        let mut buf = leftover;
        loop {
            match decoder.decode(&buf) {
                Ok(Some((frame, _))) if frame.header.kind == FrameKind::Pong => return Ok(established.peer),
                Ok(Some((frame, _))) => return Err(format!("a {:?} frame instead of a Pong", frame.header.kind)),
                Ok(None) if buf.len() < PROBE_READ_MAX => {}
                Ok(None) => return Err("no whole frame in the first bytes".into()),
                Err(error) => return Err(format!("bad frame: {error}")),
            }
            match reader.read_buf(&mut buf).await {
                Ok(0) => return Err("closed without a Pong".into()),
                Ok(_) => {}
                Err(error) => return Err(format!("read failed: {error}")),
            }
        }
    }

    /// Serves a connection dialled for a probe ([`ConnPurpose::PROBE`]): one Pong, then close;
    /// no Pong from a node that is shutting down (it is leaving, whatever it still answers).
    pub(crate) async fn answer_probe_connection(&self, opened: Opened, from: SocketAddr) {
        if self.shutting_down.load(Ordering::Acquire) {
            return;
        }
        let mut pong = Vec::with_capacity(HEADER_LEN);
        if encode_frame(&mut pong, FrameKind::Pong, 0, 0, &[], 0).is_err() {
            return; // an empty payload always fits
        }
        let Opened { mut writer, established, .. } = opened;
        let answer = async {
            writer.write_all(&pong).await?;
            writer.shutdown().await;
            std::io::Result::Ok(())
        };
        let result = tokio::time::timeout(self.settings.handshake_timeout, answer).await;
        tracing::debug!(node = %self.settings.name, prober = %established.peer.name, %from, ?result, "answered a probe connection");
    }
}

/// One probe being answered: counted in `Probes::answering` until dropped (also if the answering
/// task panics or is dropped with the runtime).
struct Answering {
    shared: Arc<NodeShared>,
    asker: NodeId,
}

impl Drop for Answering {
    fn drop(&mut self) {
        let mut probes = self.shared.probes.lock();
        if let Some(count) = probes.answering.get_mut(&self.asker) {
            *count -= 1;
            if *count == 0 {
                probes.answering.remove(&self.asker);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Node, NodeConfig};

    fn config(name: &str) -> NodeConfig {
        NodeConfig {
            name: name.into(),
            secret: Some("a probe test secret, long enough".into()),
            ..NodeConfig::default()
        }
    }

    /// One decision per lost node: a second loss during it is noted, not decided in parallel, and
    /// a decision that finds the node back looks again if so; once ended, a loss starts a new one.
    #[tokio::test]
    async fn a_loss_during_a_decision_is_decided_by_it() {
        let x = Node::start(config("x")).await.expect("x");
        let lost = NodeId(42);
        let mut first = x.shared().deciding_loss(lost).expect("the first loss starts a decision");
        assert!(x.shared().deciding_loss(lost).is_none(), "no second decision in parallel");
        assert!(first.lost_again(), "the decision hears of the second loss");
        assert!(!first.lost_again(), "and ends once nothing new happened");
        let second = x.shared().deciding_loss(lost).expect("a loss after it starts a new decision");
        drop(first); // the ended decision's guard leaves the new one alone
        assert!(x.shared().deciding_loss(lost).is_none(), "the new decision is still under way");
        drop(second);
        assert!(x.shared().deciding_loss(lost).is_some(), "dropping a decision ends it");
        x.shutdown().await;
    }

    /// A probe connection gets its Pong from the node it names and leaves no peer on either side;
    /// it fails for another incarnation at that address and where nobody listens. A probe that
    /// hears the node (at whichever address answers) then connects to it for real.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_probe_dial_hears_the_named_incarnation_and_leaves_no_peer() {
        let x = Node::start(config("x")).await.expect("x");
        let y = Node::start(config("y")).await.expect("y");
        let at = y.local_addr();
        x.shared().probe_dial(y.id(), at).await.expect("y answers a probe dial");
        let other = NodeId(y.id().0 ^ 1);
        let refused = x.shared().probe_dial(other, at).await.expect_err("y is not that incarnation");
        assert!(refused.contains("another incarnation"), "{refused}");
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
        assert!(!x.shared().answers_probe_dial(y.id(), &[closed]).await, "nobody listens there");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(x.peers().is_empty() && y.peers().is_empty(), "a probe dial made a peer");

        assert!(x.shared().answers_probe_dial(y.id(), &[closed, at]).await, "the second address answers");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !x.peers().iter().any(|p| p.name == "y" && p.up) {
            assert!(std::time::Instant::now() < deadline, "x never connected to the node it vouched for");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        x.shutdown().await;
        y.shutdown().await;
    }
}
