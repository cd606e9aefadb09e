//! Fault injection by interposition (Partisan's interposition functions): a test or an
//! experiment can drop or delay messages chosen by a predicate, and partition nodes.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use troupe_actor::{ActorId, NodeId};

/// A message passing through a node, as seen by an interposition function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageInfo {
    /// The node on the other side (receiver for sends, sender for receives).
    pub peer: NodeId,
    /// The actor the message is for.
    pub target: ActorId,
    /// The channel index (0 control, 1 default, then named channels in name order).
    pub channel: usize,
    /// The message type's tag (`troupe_actor::type_tag` of its name).
    pub type_tag: u64,
    /// Whether it asked for acknowledged delivery.
    pub acked: bool,
}

/// What to do with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Let it through.
    Pass,
    /// Drop it silently.
    Drop,
    /// Let it through after a delay (sends only; receives treat it as `Pass`).
    Delay(Duration),
}

/// A predicate deciding the fate of messages.
pub type Interposer = Arc<dyn Fn(&MessageInfo) -> Verdict + Send + Sync>;

/// The interposition state of a node.
#[derive(Default)]
pub(crate) struct Faults {
    pub(crate) send: RwLock<Option<Interposer>>,
    pub(crate) receive: RwLock<Option<Interposer>>,
    /// Nodes cut off: nothing is sent to or accepted from them, handshakes included.
    pub(crate) partitioned: RwLock<HashSet<NodeId>>,
    /// Message loss probability from the node's `[link]` configuration.
    pub(crate) loss: f64,
    /// True when any of the above is set (the send path checks only this).
    armed: AtomicBool,
}

impl Faults {
    pub(crate) fn on_send(&self, info: &MessageInfo) -> Verdict {
        if self.is_partitioned(info.peer) {
            return Verdict::Drop;
        }
        if self.loss > 0.0 && rand::random::<f64>() < self.loss {
            return Verdict::Drop;
        }
        match &*self.send.read() {
            Some(f) => f(info),
            None => Verdict::Pass,
        }
    }

    pub(crate) fn on_receive(&self, info: &MessageInfo) -> Verdict {
        match &*self.receive.read() {
            Some(f) => match f(info) {
                Verdict::Drop => Verdict::Drop,
                _ => Verdict::Pass,
            },
            None => Verdict::Pass,
        }
    }

    /// Whether this node cut itself off from `peer`. Cheap when no fault is armed (one atomic
    /// load): the read and write paths ask it for every batch.
    pub(crate) fn is_partitioned(&self, peer: NodeId) -> bool {
        if !self.active() {
            return false;
        }
        let p = self.partitioned.read();
        !p.is_empty() && p.contains(&peer)
    }

    pub(crate) fn with_loss(loss: f64) -> Faults {
        Faults { loss, armed: AtomicBool::new(loss > 0.0), ..Faults::default() }
    }

    /// True when any send-side interposition is active (the hot path skips the checks otherwise).
    pub(crate) fn active(&self) -> bool {
        self.armed.load(Ordering::Relaxed)
    }

    pub(crate) fn set_send(&self, f: Option<Interposer>) {
        *self.send.write() = f;
        self.rearm();
    }

    pub(crate) fn set_receive(&self, f: Option<Interposer>) {
        *self.receive.write() = f;
        self.rearm();
    }

    pub(crate) fn set_partitioned(&self, peer: NodeId, on: bool) {
        if on {
            self.partitioned.write().insert(peer);
        } else {
            self.partitioned.write().remove(&peer);
        }
        self.rearm();
    }

    fn rearm(&self) {
        let armed = self.loss > 0.0
            || self.send.read().is_some()
            || self.receive.read().is_some()
            || !self.partitioned.read().is_empty();
        self.armed.store(armed, Ordering::Relaxed);
    }
}
