//! What the simulator measures.

use std::collections::HashMap;

use serde::Serialize;

use crate::member::PeerId;
use crate::plumtree::{MessageId, PlumtreeMessage, Topic};

/// The shape of the active-view graph among live nodes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Connectivity {
    /// Live nodes.
    pub live: usize,
    /// Connected components (edges in either direction).
    pub components: usize,
    /// Size of the largest component.
    pub largest: usize,
    /// Live nodes with an empty active view.
    pub isolated: usize,
}

/// Counters of a whole run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SimStats {
    /// Events processed.
    pub events: u64,
    /// Membership messages delivered.
    pub membership_messages: u64,
    /// Plumtree messages delivered.
    pub plumtree_messages: u64,
    /// Plumtree messages delivered that carried a payload.
    pub payload_messages: u64,
    /// Application deliveries (all nodes, all broadcasts).
    pub deliveries: u64,
    /// Sends dropped because the peer was not connected.
    pub dropped_sends: u64,
    /// `Command::Connect`s.
    pub connects: u64,
    /// Connects answered with `Input::ConnectFailed`.
    pub connect_failures: u64,
    /// Links broken by loss or partitions.
    pub broken_links: u64,
    /// `Command::NeedContacts`.
    pub need_contacts: u64,
    /// `MemberUp` events.
    pub member_up: u64,
    /// `MemberDown` events.
    pub member_down: u64,
}

/// What a batch of broadcasts achieved.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct BatchStats {
    /// Broadcasts sent.
    pub broadcasts: usize,
    /// Mean over the broadcasts of the fraction of live nodes that delivered it.
    pub reliability: f64,
    /// The worst broadcast's fraction.
    pub min_reliability: f64,
    /// Payload messages received / (delivering nodes - 1) - 1, over the batch.
    pub redundancy: f64,
    /// Largest hop count of a delivery.
    pub last_hop: u32,
    /// Payload messages received.
    pub payload_messages: u64,
}

/// What a batch of broadcasts achieved within each origin's side of a partition.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SideStats {
    /// Mean over the broadcasts of the fraction of the origin's side (the live nodes in the
    /// origin's partition group) that delivered it.
    pub reliability: f64,
    /// The worst broadcast's fraction of its side.
    pub min_reliability: f64,
}

/// Follows one batch of broadcasts (one topic, one message per origin).
pub(crate) struct Tracker {
    topic: Topic,
    slots: HashMap<PeerId, usize>,
    /// Each origin's node index.
    origins: Vec<usize>,
    /// Nodes alive when the batch started (only they count: a node that joins during the batch
    /// may have missed a broadcast sent before it existed).
    alive_at_start: Vec<bool>,
    delivered: Vec<Vec<bool>>,
    last_hop: u32,
    payload: u64,
}

impl Tracker {
    /// `origins`: each broadcast's origin (id and node index); `alive_at_start`: per node.
    pub(crate) fn new(topic: Topic, origins: Vec<(PeerId, usize)>, alive_at_start: Vec<bool>) -> Self {
        let delivered = vec![vec![false; alive_at_start.len()]; origins.len()];
        let slots = origins.iter().enumerate().map(|(i, (o, _))| (*o, i)).collect();
        let origins = origins.into_iter().map(|(_, n)| n).collect();
        Tracker { topic, slots, origins, alive_at_start, delivered, last_hop: 0, payload: 0 }
    }

    pub(crate) fn payload_received(&mut self, msg: &PlumtreeMessage) {
        let topic = match msg {
            PlumtreeMessage::Gossip { topic, .. } | PlumtreeMessage::Repair { topic, .. } => *topic,
            _ => return,
        };
        if topic == self.topic {
            self.payload += 1;
        }
    }

    pub(crate) fn delivered(&mut self, topic: Topic, id: MessageId, node: usize, hops: u32) {
        if topic != self.topic {
            return;
        }
        if let Some(slot) = self.slots.get(&id.origin) {
            if let Some(d) = self.delivered[*slot].get_mut(node) {
                *d = true;
                self.last_hop = self.last_hop.max(hops);
            }
        }
    }

    /// The batch's results among the nodes alive from its start to its end (`alive`: at the
    /// end), overall and within each origin's partition group (`group`: per node).
    pub(crate) fn finish(self, alive: &[bool], group: &[u32]) -> (BatchStats, SideStats) {
        let counted: Vec<bool> = alive.iter().zip(&self.alive_at_start).map(|(e, s)| *e && *s).collect();
        let live = counted.iter().filter(|a| **a).count().max(1);
        let (mut sum, mut side_sum) = (0.0, 0.0);
        let (mut min, mut side_min) = (1.0f64, 1.0f64);
        let mut edges = 0u64;
        for (d, origin) in self.delivered.iter().zip(&self.origins) {
            let got = d.iter().zip(&counted).filter(|(d, a)| **d && **a).count();
            let r = got as f64 / live as f64;
            sum += r;
            min = min.min(r);
            let g = group.get(*origin).copied().unwrap_or(0);
            let on_side = |i: &usize| counted[*i] && group.get(*i).copied().unwrap_or(0) == g;
            let side = (0..counted.len()).filter(on_side).count().max(1);
            let side_got = (0..counted.len()).filter(|i| on_side(i) && d[*i]).count();
            let sr = side_got as f64 / side as f64;
            side_sum += sr;
            side_min = side_min.min(sr);
            edges += d.iter().filter(|d| **d).count().saturating_sub(1) as u64;
        }
        let n = self.delivered.len();
        let mean = |s: f64| if n == 0 { 0.0 } else { s / n as f64 };
        let least = |m: f64| if n == 0 { 0.0 } else { m };
        let batch = BatchStats {
            broadcasts: n,
            reliability: mean(sum),
            min_reliability: least(min),
            redundancy: if edges == 0 { 0.0 } else { self.payload as f64 / edges as f64 - 1.0 },
            last_hop: self.last_hop,
            payload_messages: self.payload,
        };
        (batch, SideStats { reliability: mean(side_sum), min_reliability: least(side_min) })
    }
}
