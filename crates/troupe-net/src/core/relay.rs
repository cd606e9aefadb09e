//! Relaying frames along the overlay to nodes this node has no connection to: sending a frame
//! towards its destination, and handling one that arrives relayed (delivered here, with a
//! bounded wait for mailbox room, or passed on).

use super::*;

/// One wait's charge, given back however the wait ends.
struct Charged(Arc<RelayWaits>, ActorId, usize);

impl Drop for Charged {
    fn drop(&mut self) {
        self.0.release(self.1, self.2);
    }
}

/// The least a relayed message waiting for mailbox room is charged against the bound, in bytes:
/// its task and boxed future cost memory however small its frame.
const RELAYED_WAIT_MIN_CHARGE: usize = 256;

/// Bytes a relay wrapping adds to a frame, at most (a control header and tag, two node ids, a
/// TTL and a length, as postcard varints), rounded up.
const RELAY_OVERHEAD: usize = 64;

impl NodeShared {
    /// Whether a message for `node` (not connected) goes along the overlay: always with
    /// `reach = "relay"`; with `"direct"` when the node's address is unknown (a ref received from
    /// a third node) and an overlay runs.
    pub(super) fn must_relay(&self, node: NodeId) -> bool {
        match self.settings.reach {
            Reach::Relay => true,
            Reach::Direct => self.overlay != OverlayKind::None && !self.directory.read().contains_key(&node),
        }
    }

    /// Passes a frame for `to` along the overlay: straight to it when connected, else the
    /// overlay driver picks the next hop, one hop less (the overlay's route if it knows one, else
    /// the way frames from `to` came in, else a random neighbour; see `routes`). False when it
    /// cannot go anywhere.
    pub(crate) fn relay(&self, origin: NodeId, to: NodeId, ttl: u8, frame: Vec<u8>, from: Option<NodeId>) -> bool {
        if self.shutting_down.load(Ordering::Acquire) {
            return false;
        }
        if self.peer(to).is_some() {
            return self.relay_via(to, origin, to, ttl, frame);
        }
        if self.membership.get().is_none() || ttl <= 1 {
            self.counters.relay_dropped.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(node = %self.settings.name, %to, ttl, "relayed message dropped: no route");
            return false;
        }
        self.tell_membership(DriverInput::Relay { origin, to, ttl, frame, from });
        true
    }

    /// Sends a relayed frame to the connected peer `next` (`to` itself, or a hop towards it).
    pub(crate) fn relay_via(&self, next: NodeId, origin: NodeId, to: NodeId, ttl: u8, frame: Vec<u8>) -> bool {
        let Some(peer) = self.peer(next) else {
            self.counters.relay_dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        let ttl = if next == to { ttl } else { ttl.saturating_sub(1) };
        let control = Control::Relay { origin: origin.0, to: to.0, ttl, frame };
        let mut payload = Vec::new();
        if control.encode(&mut payload).is_err() {
            return false;
        }
        if HEADER_LEN + payload.len() > peer.max_frame() {
            // It would end the next hop's connection, and everything in flight on it.
            self.counters.relay_dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(node = %self.settings.name, next = %peer.name, len = payload.len(), max = peer.max_frame(), "relayed frame larger than the next hop takes; dropped");
            return false;
        }
        // Relayed traffic goes on the default channel, not the control channel, so it cannot
        // delay membership traffic.
        // Bounded like any actor message: a relay hop whose lane is full drops the message
        // (relaying is at-most-once) rather than buffering without limit.
        let lane = peer.lane(peer.pick(1, to.0, true));
        if !lane.queue.try_push_frame(FrameKind::Control, 1, &payload) {
            self.counters.relay_dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        self.counters.relayed.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// A relayed message found its actor's mailbox full. It cannot hold up the connection it
    /// came on (the control connection of the neighbour that relayed it), so it waits on a task
    /// of its own; those waits are bounded in bytes like a send queue, and a message past the
    /// bound is dropped (relaying is at-most-once), so a flood relayed towards a slow actor
    /// cannot grow this node without limit.
    ///
    /// A wait is charged its frame's length, at least [`RELAYED_WAIT_MIN_CHARGE`] (a task and a
    /// boxed future cost memory too), against the node's bound (4 × `send_queue_bytes`) and
    /// against its target's share of it ([`RELAYED_WAIT_TARGET_SHARE`]): an actor that never
    /// takes its messages holds at most its share until it stops.
    fn wait_for_room_relayed(&self, target: ActorId, frame_len: usize, wait: DeliverLater) {
        let charge = frame_len.max(RELAYED_WAIT_MIN_CHARGE);
        let limit = self.settings.queue_bytes.saturating_mul(4);
        if let Err(log) = self.relay_waits.charge(target, charge, limit) {
            self.counters.relay_dropped.fetch_add(1, Ordering::Relaxed);
            if log {
                tracing::warn!(node = %self.settings.name, %target, limit, "relayed messages for full mailboxes past the bound are dropped (logged again after the waits drain)");
            }
            return;
        }
        let charged = Charged(self.relay_waits.clone(), target, charge);
        let counters = self.counters.clone();
        self.runtime.spawn(async move {
            let delivered = wait.await;
            counters.messages_in.fetch_add(delivered, Ordering::Relaxed);
            counters.dead_letters.fetch_add(1 - delivered.min(1), Ordering::Relaxed);
            drop(charged);
        });
    }

    /// A relayed frame arrived from `via`: deliver it here or pass it on.
    pub(super) fn on_relay(&self, via: &Arc<Peer>, origin: NodeId, to: NodeId, ttl: u8, frame: Vec<u8>) {
        // No frame may travel further than this node would send one.
        let ttl = ttl.min(self.settings.relay_ttl);
        if origin != self.id {
            // Frames for `origin` go back this way (see `routes`).
            self.relay_routes.lock().learn(origin, via.id, ttl, Instant::now());
        }
        if to != self.id {
            self.relay(origin, to, ttl, frame, Some(via.id));
            return;
        }
        let Some(transport) = self.transport() else { return };
        let decoder = FrameDecoder::new(self.settings.max_frame);
        let (header, payload) = match decoder.decode(&frame) {
            Ok(Some((f, used))) if used == frame.len() => (f.header, f.payload),
            _ => {
                self.counters.bad_frames.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(node = %self.settings.name, peer = %via.name, "bad relayed frame dropped");
                return;
            }
        };
        match header.kind {
            FrameKind::Message => {
                let (env, body) = match Envelope::read(payload, false) {
                    Ok(x) => x,
                    Err(error) => {
                        self.counters.bad_frames.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(peer = %via.name, %error, "bad relayed envelope");
                        return;
                    }
                };
                let target = ActorId { node: NodeId(env.target_node), serial: env.target_serial };
                let Some(inbound) = self.exported_local(target) else {
                    self.counters.dead_letters.fetch_add(1, Ordering::Relaxed);
                    return;
                };
                let Some((body, attached)) = self.split_body(&via.name, header, body, None) else { return };
                let delivery = troupe_actor::with_codec_context(&transport, origin, || {
                    self.deliver_local(
                        (&*inbound, inbound.type_tag()),
                        &via.name,
                        (target, env.type_tag),
                        body,
                        attached,
                    )
                });
                match delivery {
                    Some(Delivery::Accepted) => {
                        self.counters.messages_in.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(Delivery::Full(wait)) => self.wait_for_room_relayed(target, frame.len(), wait),
                    Some(Delivery::Closed) => {
                        self.counters.dead_letters.fetch_add(1, Ordering::Relaxed);
                    }
                    None => {}
                }
            }
            FrameKind::Reply => self.complete_reply(&transport, origin, &via.name, header, payload, None),
            // Actor control (watch, down, link ...) from a node we reach only through the overlay,
            // and pings of a node that lost its connection to us.
            FrameKind::Control => {
                let name = self.name_of(origin).unwrap_or_else(|| origin.to_string());
                let refused = match Control::decode(payload) {
                    // Answered back the way the ping came (not over a connection to the origin we
                    // may still have: the ping says the origin lost it), unless we are leaving.
                    Ok(Control::RelayPing { request }) => {
                        if !self.shutting_down.load(Ordering::Acquire) {
                            if let Some(frame) = self.control_frame(&Control::RelayPong { request }) {
                                self.relay_via(via.id, self.id, origin, self.settings.relay_ttl, frame);
                            }
                        }
                        None
                    }
                    Ok(Control::RelayPong { request }) => {
                        self.on_probe_reply(origin, request, true);
                        None
                    }
                    Ok(control) => self.on_actor_control(origin, &name, control).err().map(|c| format!("{c:?}")),
                    Err(error) => Some(error.to_string()),
                };
                if let Some(what) = refused {
                    self.counters.bad_frames.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(peer = %via.name, %origin, %what, "relayed control message dropped");
                }
            }
            other => {
                self.counters.bad_frames.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(peer = %via.name, kind = ?other, "relayed frame of the wrong kind dropped");
            }
        }
    }

    /// The largest message frame to relay: room is left for the relay wrapping (origin,
    /// destination, TTL, length), which must fit each hop's limit too.
    pub(super) fn relayed_max_frame(&self) -> usize {
        self.settings.max_frame.saturating_sub(RELAY_OVERHEAD)
    }
}
