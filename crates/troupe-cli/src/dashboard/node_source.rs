//! The picture of a real cluster, as one node sees it: its own views plus every node reachable
//! through the overlay's views (each asked over the network for its snapshot).

use std::collections::{HashMap, HashSet};
use std::time::{SystemTime, UNIX_EPOCH};

use troupe::net::{Node, NodeSnapshot};

use super::model::{ClusterPicture, EdgeKind, EdgeView, NodeView};
use super::source::{PictureFuture, PictureSource};

/// Pictures of the cluster `node` belongs to, crawling at most `max_nodes` nodes.
pub struct NodeSource {
    node: Node,
    max_nodes: usize,
}

impl NodeSource {
    /// A source for `node`'s cluster.
    pub fn new(node: Node, max_nodes: usize) -> Self {
        NodeSource { node, max_nodes }
    }
}

impl PictureSource for NodeSource {
    fn picture(&self) -> PictureFuture<'_> {
        Box::pin(async move {
            let snapshots = self.node.cluster_snapshot(self.max_nodes).await;
            picture_of(self.node.name(), self.node.overlay().as_str(), &snapshots)
        })
    }
}

fn hex(id: u64) -> String {
    format!("{id:016x}")
}

/// Builds the picture from the nodes' snapshots; nodes named in a view that did not answer are
/// shown down.
pub fn picture_of(observer: &str, overlay: &str, snapshots: &[NodeSnapshot]) -> ClusterPicture {
    let taken_at_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let answered: HashSet<u64> = snapshots.iter().map(|s| s.id.0).collect();
    let mut nodes: Vec<NodeView> = snapshots
        .iter()
        .map(|s| NodeView {
            id: hex(s.id.0),
            name: s.name.clone(),
            addr: s.addr.clone(),
            role: s.role.clone(),
            up: true,
            msgs_in: s.msgs_in,
            msgs_out: s.msgs_out,
            bytes_in: s.bytes_in,
            bytes_out: s.bytes_out,
        })
        .collect();
    let mut silent: HashMap<u64, NodeView> = HashMap::new();
    let mut edges = Vec::new();
    for s in snapshots {
        let traffic: HashMap<u64, u64> = s.traffic.iter().map(|(p, n)| (p.0, *n)).collect();
        let mut add = |to: u64, kind: EdgeKind| {
            edges.push(EdgeView { from: hex(s.id.0), to: hex(to), kind, msgs: traffic.get(&to).copied().unwrap_or(0) })
        };
        for m in &s.active {
            add(m.id.0, EdgeKind::Active);
        }
        for m in &s.passive {
            add(m.id.0, EdgeKind::Passive);
        }
        for p in &s.tree {
            add(p.0, EdgeKind::Tree);
        }
        for m in s.active.iter().chain(&s.passive) {
            if !answered.contains(&m.id.0) {
                silent.entry(m.id.0).or_insert_with(|| NodeView {
                    id: hex(m.id.0),
                    name: m.name.clone(),
                    addr: m.addr.to_string(),
                    up: false,
                    ..NodeView::default()
                });
            }
        }
    }
    nodes.extend(silent.into_values());
    ClusterPicture { observer: observer.to_string(), overlay: overlay.to_string(), taken_at_ms, nodes, edges }
}
