//! Pictures of the cluster: what one node says about itself (its views, broadcast tree and
//! traffic), and a crawl that collects those from every node reachable through the views.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use troupe_overlay::{Member, PeerId};

use crate::core::NodeShared;
use crate::membership::DriverInput;

/// What one node reports about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSnapshot {
    /// The node.
    pub id: PeerId,
    /// Its name.
    pub name: String,
    /// Where it listens.
    pub addr: String,
    /// Its overlay (`"full"`, `"hyparview"`, ...).
    pub overlay: String,
    /// Its role, for overlays with roles.
    pub role: Option<String>,
    /// Peers it keeps connections with for the overlay.
    pub active: Vec<Member>,
    /// Peers it knows without a connection.
    pub passive: Vec<Member>,
    /// Its broadcast-tree (eager) peers.
    pub tree: Vec<PeerId>,
    /// Actor messages exchanged with each connected peer (sent + received), cumulative.
    pub traffic: Vec<(PeerId, u64)>,
    /// Actor messages received from other nodes, cumulative.
    pub msgs_in: u64,
    /// Actor messages sent to other nodes, cumulative.
    pub msgs_out: u64,
    /// Bytes read from sockets, cumulative.
    pub bytes_in: u64,
    /// Bytes written to sockets, cumulative.
    pub bytes_out: u64,
}

impl NodeShared {
    /// This node's own snapshot.
    pub(crate) async fn own_snapshot(&self) -> NodeSnapshot {
        let state = match self.membership.get() {
            Some(_) => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                self.tell_membership(DriverInput::Views(tx));
                rx.await.unwrap_or_default()
            }
            None => Default::default(),
        };
        let stats = self.stats();
        NodeSnapshot {
            id: PeerId(self.id.0),
            name: self.settings.name.clone(),
            addr: self.advertised.read().first().cloned().unwrap_or_default(),
            overlay: self.overlay.as_str().to_string(),
            role: self.role.map(|r| format!("{r:?}").to_lowercase()),
            active: state.views.active,
            passive: state.views.passive,
            tree: state.eager,
            traffic: self.peer_traffic().into_iter().map(|(id, n)| (PeerId(id.0), n)).collect(),
            msgs_in: stats.messages_in,
            msgs_out: stats.messages_out,
            bytes_in: stats.bytes_in,
            bytes_out: stats.bytes_out,
        }
    }

    /// Answers a peer's view request.
    pub(crate) fn answer_view_request(&self, to: troupe_actor::NodeId, request: u64) {
        let Some(shared) = self.me.upgrade() else { return };
        self.runtime.spawn(async move {
            let snapshot = shared.own_snapshot().await;
            match postcard::to_stdvec(&snapshot) {
                Ok(payload) => {
                    shared.send_control(to, &troupe_wire::Control::ViewReply { request, payload });
                }
                Err(error) => tracing::warn!(%error, "cannot encode a view snapshot"),
            }
        });
    }

    /// Asks one node for its snapshot (connecting to it if needed).
    async fn snapshot_of(&self, member: &Member) -> Option<NodeSnapshot> {
        let id = troupe_actor::NodeId(member.id.0);
        self.remember(member);
        self.connect_member(member)?;
        let request = self.next_request.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.view_requests.lock().insert(request, (id, tx));
        if !self.send_control(id, &troupe_wire::Control::ViewRequest { request }) {
            self.view_requests.lock().remove(&request);
            return None;
        }
        let answer = tokio::time::timeout(Duration::from_secs(2), rx).await;
        self.view_requests.lock().remove(&request);
        let payload = answer.ok()?.ok()?;
        match postcard::from_bytes::<NodeSnapshot>(&payload) {
            Ok(s) if s.id == member.id => Some(s),
            Ok(_) => None,
            Err(error) => {
                tracing::warn!(peer = %member.name, %error, "undecodable view snapshot");
                None
            }
        }
    }

    /// Snapshots of this node and every node reachable through the views, at most `max`
    /// nodes, asked `parallel` at a time.
    pub(crate) async fn crawl(&self, max: usize) -> Vec<NodeSnapshot> {
        let own = self.own_snapshot().await;
        let mut seen: HashSet<PeerId> = HashSet::from([own.id]);
        let mut queue: VecDeque<Member> = VecDeque::new();
        let push = |s: &NodeSnapshot, seen: &mut HashSet<PeerId>, queue: &mut VecDeque<Member>| {
            for m in s.active.iter().chain(&s.passive) {
                if seen.insert(m.id) {
                    queue.push_back(m.clone());
                }
            }
        };
        push(&own, &mut seen, &mut queue);
        let mut all = vec![own];
        while !queue.is_empty() && all.len() < max {
            let batch: Vec<Member> = (0..16).filter_map(|_| queue.pop_front()).collect();
            let answers = futures_util::future::join_all(batch.iter().map(|m| self.snapshot_of(m))).await;
            for snapshot in answers.into_iter().flatten() {
                push(&snapshot, &mut seen, &mut queue);
                if all.len() < max {
                    all.push(snapshot);
                }
            }
        }
        all
    }
}
