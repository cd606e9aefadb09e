//! Control messages: handling those that arrive (membership news, watches, links, lookups) and
//! sending them, directly or through the overlay, including signals fenced behind the messages
//! sent before them; and a registry lookup on another node.

use super::*;

impl NodeShared {
    pub(super) fn on_control(&self, peer: &Arc<Peer>, control: Control) {
        let control = match self.admit_signal(peer, control) {
            Ok(()) => return,
            Err(other) => other,
        };
        match control {
            Control::Lookup { request, name } => {
                let found = self.named.read().get(&name).map(|i| (wire_id(i.id()), i.type_name().to_string()));
                self.send_control(peer.id, &Control::LookupReply { request, found });
            }
            Control::LookupReply { request, found } => {
                if let Some(tx) = self.answered(&self.lookups, request, (peer.id, &peer.name), "lookup") {
                    let _ = tx.send(found.map(|(id, ty)| (actor_id(&id), ty)));
                }
            }
            Control::Goodbye => self.peer_leaving(peer),
            Control::AckFloor { next } => peer.acks.advance_to(next),
            Control::Overlay { payload } => {
                self.tell_membership(DriverInput::Overlay { from: troupe_overlay::PeerId(peer.id.0), payload });
            }
            // Only from the peer in the map: one already released (this frame read from its old
            // connections to their end) must not release its successor.
            Control::Release if self.peer(peer.id).is_some_and(|current| Arc::ptr_eq(&current, peer)) => {
                // Our acknowledged messages still outstanding go on a new connection once the
                // old ones are through (see `release_peer`).
                if self.release_peer(peer.id, false) {
                    self.tell_membership(DriverInput::PeerLost(troupe_overlay::PeerId(peer.id.0)));
                }
            }
            Control::Release => {}
            Control::Relay { origin, to, ttl, frame } => self.on_relay(peer, NodeId(origin), NodeId(to), ttl, frame),
            Control::Broadcast { payload } => {
                self.tell_membership(DriverInput::Plumtree { from: troupe_overlay::PeerId(peer.id.0), payload });
            }
            Control::ViewRequest { request } => self.answer_view_request(peer.id, request),
            Control::ViewReply { request, payload } => {
                if let Some(tx) = self.answered(&self.view_requests, request, (peer.id, &peer.name), "view request") {
                    let _ = tx.send(payload);
                }
            }
            Control::Probe { request, node } => {
                if let Some(me) = self.me.upgrade() {
                    me.on_probe(peer.id, request, NodeId(node), &[]);
                }
            }
            Control::ProbeAt { request, node, addrs } => {
                if let Some(me) = self.me.upgrade() {
                    me.on_probe(peer.id, request, NodeId(node), &addrs);
                }
            }
            Control::ProbeReply { request, reachable } => self.on_probe_reply(peer.id, request, reachable),
            Control::Marker { marker } => peer.fence.note_marker(marker),
            Control::RelayPing { .. } | Control::RelayPong { .. } => {
                // Only meaningful through the overlay (see `on_relay`).
                self.counters.bad_frames.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(peer = %peer.name, "relay ping or pong on a direct connection; ignored");
            }
            // Handled by `on_actor_control`.
            Control::Watch { .. }
            | Control::Unwatch { .. }
            | Control::Down { .. }
            | Control::Stop { .. }
            | Control::After { .. }
            | Control::AfterAll { .. }
            | Control::Kill { .. }
            | Control::Link { .. }
            | Control::Unlink { .. } => {}
        }
    }

    /// The request `request` waiting in `waiting` for the answer of node `from` (`name`), taken
    /// out. An answer from another node than the one asked (a guess or a forgery) is a bad frame,
    /// logged, and the request keeps waiting for its own node's answer.
    pub(super) fn answered<T, S: std::hash::BuildHasher>(
        &self,
        waiting: &Mutex<HashMap<u64, (NodeId, T), S>>,
        request: u64,
        (from, name): (NodeId, &str),
        what: &str,
    ) -> Option<T> {
        let mut waiting = waiting.lock();
        match waiting.get(&request) {
            Some((asked, _)) if *asked != from => {
                drop(waiting);
                self.counters.bad_frames.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(peer = %name, request, what, "answer to a request sent to another node ignored");
                None
            }
            _ => waiting.remove(&request).map(|(_, value)| value),
        }
    }

    /// Handles a control message about actors from node `from` (`name`), which arrived over a
    /// connection with it or relayed along the overlay; answers go back the way actor control
    /// goes ([`send_actor_control`](Self::send_actor_control)). Hands any other message back.
    pub(super) fn on_actor_control(&self, from: NodeId, name: &str, control: Control) -> Result<(), Control> {
        match control {
            Control::Watch { target } => {
                let id = actor_id(&target);
                match self.exported_local(id) {
                    Some(actor) => {
                        if !self.remote_watches.lock().insert((from, id)) {
                            return Ok(());
                        }
                        let (me, still) = (self.me.clone(), self.me.clone());
                        let watcher = from;
                        // Dropped unrun once the watch is forgotten (its node gone for good), so
                        // a long-lived actor does not keep one per watching node that ever was.
                        let wanted = move || {
                            still.upgrade().is_some_and(|shared| shared.remote_watches.lock().contains(&(watcher, id)))
                        };
                        actor.untyped().on_exit_while(wanted, move |reason| {
                            let Some(shared) = me.upgrade() else { return };
                            // Not when the watcher's node was lost meanwhile (nobody to tell),
                            // nor twice when it came back and asked again.
                            if shared.remote_watches.lock().remove(&(watcher, id)) {
                                let down = Signal::Down { target: wire_id(id), reason: wire_exit(reason) };
                                shared.send_after_messages(watcher, down);
                            }
                        });
                    }
                    None => {
                        self.send_actor_control(from, &Control::Down { target, reason: WireExit::NoActor });
                    }
                }
            }
            Control::Unwatch { .. } => {}
            Control::Link { target, from: linker } => {
                self.on_link(from, name, actor_id(&target), actor_id(&linker), true)
            }
            Control::Unlink { target, from: linker } => {
                self.on_link(from, name, actor_id(&target), actor_id(&linker), false)
            }
            Control::Down { target, reason } => {
                let target = actor_id(&target);
                if !self.speaks_for(from, name, target.node) {
                    // Only an actor's own node reports its exit: a Down from anyone else would
                    // let one buggy or hostile member end every watch in the cluster.
                    self.counters.bad_frames.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(node = %self.settings.name, peer = %name, %target, "Down for another node's actor ignored");
                    return Ok(());
                }
                let proxy = self.proxies.lock().get(&target).and_then(Weak::upgrade);
                if let Some(proxy) = proxy {
                    proxy.exited(exit_reason(reason));
                }
            }
            Control::Stop { target } => {
                if let Some(actor) = self.exported_local(actor_id(&target)) {
                    actor.untyped().stop();
                }
            }
            // Relayed: no connection of ours carried the messages before it (a direct one goes
            // through `admit_signal`).
            Control::After { signal, .. } | Control::AfterAll { signal, .. } => {
                return self.on_actor_control(from, name, signal.into_control())
            }
            Control::Kill { target } => {
                if let Some(actor) = self.exported_local(actor_id(&target)) {
                    actor.untyped().kill();
                }
            }
            other => return Err(other),
        }
        Ok(())
    }

    /// Whether node `from` (named `from_name`) may report on the actors of node `node`: it is
    /// that node, or `node` is an earlier incarnation of it (a restarted node answers for refs to
    /// its previous life with NoActor).
    fn speaks_for(&self, from: NodeId, from_name: &str, node: NodeId) -> bool {
        node == from || self.name_of(node).is_some_and(|name| name == from_name)
    }

    /// The actor `from` on node `node` (`name`) linked itself to our actor `target` (`link`), or
    /// removed that link. `target` then fails when `from` does (its node reports `from`'s exit
    /// as a Down) or when that node is lost; a link to an actor that is not here fails `from`
    /// at once.
    fn on_link(&self, node: NodeId, name: &str, target: ActorId, from: ActorId, link: bool) {
        if from.node != node {
            self.counters.bad_frames.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(node = %self.settings.name, peer = %name, %from, "link request for another node's actor ignored");
            return;
        }
        match (self.exported_local(target), link) {
            (Some(actor), true) => Transport::proxy(self, from).accept_link(&actor.untyped()),
            (Some(actor), false) => Transport::proxy(self, from).drop_link(&actor.untyped()),
            (None, true) => {
                self.send_actor_control(node, &Control::Down { target: wire_id(target), reason: WireExit::NoActor });
            }
            (None, false) => {}
        }
    }

    /// Queues a control message on the peer's control lane.
    pub(crate) fn send_control(&self, to: NodeId, control: &Control) -> bool {
        self.send_control_on(to, 0, control)
    }

    /// Queues a control message about actors (watch, down, stop, kill, link): like
    /// [`send_control`](Self::send_control), but it reaches a node the way an actor message
    /// does: relayed along the overlay when that is how the node is reached, else over a
    /// connection made on demand (so a watcher still hears of a Down from a node whose
    /// connections the overlay released). False when it cannot go anywhere.
    pub(crate) fn send_actor_control(&self, to: NodeId, control: &Control) -> bool {
        for _ in 0..RELEASED_RETRIES {
            let peer = match self.peer(to) {
                Some(peer) => peer,
                None if to != self.id && self.must_relay(to) => return self.relay_control(to, control),
                None => match self.peer_on_demand(to) {
                    Some(peer) => peer,
                    None => return false,
                },
            };
            if peer.push_actor_control(control) {
                return true;
            }
            if !peer.is_released() {
                return false;
            }
            // Released after we took it (see `refused_by_release`): the node's next peer takes it.
        }
        false
    }

    /// Sends actor signal `signal` to node `to` so that it takes effect after the messages this
    /// node sent there before it: a [`Control::Marker`] goes behind them on every connection of
    /// the default channel that carried any (a message takes the one its target's key picks, or
    /// its explicit partition key's), and [`Control::AfterAll`] on the control connection, like
    /// every other actor signal, so signals keep their order. Messages on named channels are not
    /// waited for. A node of protocol version 4 gets [`Control::After`] with one marker where its
    /// target's messages go (a stop; a Down it could not decode); older nodes, and nodes reached
    /// only through the overlay, get the signal itself.
    pub(super) fn send_after_messages(&self, to: NodeId, signal: Signal) -> bool {
        let version = |p: &Arc<Peer>| p.version.load(Ordering::Relaxed);
        let peer = match self.peer(to) {
            Some(peer) if version(&peer) >= 5 => peer,
            Some(peer) if version(&peer) == 4 => {
                if let Signal::Stop { target } = &signal {
                    let lane = peer.pick(1, default_key(actor_id(target)), true);
                    return self.send_marked(&peer, [lane].into_iter(), signal);
                }
                return self.send_actor_control(to, &signal.into_control());
            }
            _ => return self.send_actor_control(to, &signal.into_control()),
        };
        let lanes = peer.lanes.get(1).map_or(0, Vec::len);
        self.send_marked(&peer, (0..lanes).map(|index| (1, index)), signal)
    }

    /// [`send_after_messages`](Self::send_after_messages) to `peer`, with a marker on each of
    /// `lanes` that carried messages.
    fn send_marked(&self, peer: &Arc<Peer>, lanes: impl Iterator<Item = (usize, usize)>, signal: Signal) -> bool {
        let mut markers = Vec::new();
        // Lanes that never carried a message (their connection may not even be open) have
        // nothing to wait for.
        for lane in lanes.filter(|&lane| peer.lane(lane).queue.messages() > 0) {
            let marker = self.next_request.fetch_add(1, Ordering::Relaxed);
            if !peer.push_control(lane, &Control::Marker { marker }) {
                return self.send_actor_control(peer.id, &signal.into_control());
            }
            markers.push(marker);
        }
        // On the control lane of the same peer the markers went to (a new one for the node
        // would never see them).
        let plain = signal.clone().into_control();
        let control = match markers.as_slice() {
            [] => signal.into_control(),
            [marker] if peer.version.load(Ordering::Relaxed) == 4 => Control::After { marker: *marker, signal },
            _ => Control::AfterAll { markers, signal },
        };
        peer.push_actor_control(&control) || self.send_actor_control(peer.id, &plain)
    }

    /// Takes in an actor signal (or any control message about actors) that arrived on a
    /// connection with `peer`: applied once the messages `peer` sent before it are in, and after
    /// the signals about the same actor that arrived before it (see
    /// [`SignalFence`](crate::fence::SignalFence)). A kill takes effect at once. Hands any other
    /// message back.
    fn admit_signal(&self, peer: &Arc<Peer>, control: Control) -> Result<(), Control> {
        let (markers, control) = match control {
            Control::After { marker, signal } => (vec![marker], signal.into_control()),
            Control::AfterAll { markers, signal } => {
                if markers.len() > crate::fence::MAX_MARKERS {
                    // More connections than a channel can have: wait for none of them.
                    self.counters.bad_frames.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(node = %self.settings.name, peer = %peer.name, markers = markers.len(), "signal waiting for too many markers; applied at once");
                    (Vec::new(), signal.into_control())
                } else {
                    (markers, signal.into_control())
                }
            }
            kill @ Control::Kill { .. } => {
                self.apply_signal(peer, kill);
                return Ok(());
            }
            other => (Vec::new(), other),
        };
        let about = match &control {
            Control::Watch { target }
            | Control::Unwatch { target }
            | Control::Down { target, .. }
            | Control::Stop { target } => About(target.clone(), None),
            Control::Link { target, from } | Control::Unlink { target, from } => {
                About(target.clone(), Some(from.clone()))
            }
            _ => return Err(control),
        };
        let _applying = peer.fence.applying();
        match peer.fence.admit(about, markers, control, tokio::time::Instant::now()) {
            Admitted::ApplyNow(control) => self.apply_signal(peer, control),
            Admitted::Held { start_task: true } => {
                if let Some(me) = self.me.upgrade() {
                    self.runtime.spawn(me.wait_for_markers(peer.clone()));
                }
            }
            Admitted::Held { start_task: false } => {}
        }
        Ok(())
    }

    /// Applies the signals `peer`'s fence holds as their markers come in, and gives up on
    /// markers lost with their connection (see [`fence::give_up_before`]): a signal waits
    /// [`MARKER_WAIT`] from its arrival and from the last progress (a message from `peer`, a
    /// reader of its connections waiting for mailbox room), and at most [`MARKER_WAIT_MAX`].
    /// When `peer` goes away, everything held takes effect at once. Ends when nothing is held.
    ///
    /// [`MARKER_WAIT`]: fence::MARKER_WAIT
    /// [`MARKER_WAIT_MAX`]: fence::MARKER_WAIT_MAX
    async fn wait_for_markers(self: Arc<Self>, peer: Arc<Peer>) {
        use tokio::time::Instant;
        let mut received = peer.received.load(Ordering::Relaxed);
        let mut progress_at = Instant::now();
        loop {
            let seen = peer.fence.marker_seen.notified();
            let gone = peer.stop.notified();
            tokio::pin!(seen, gone);
            seen.as_mut().enable();
            gone.as_mut().enable();
            if peer.is_down() {
                return self.drain_signals(&peer, true);
            }
            let now = Instant::now();
            let now_received = peer.received.load(Ordering::Relaxed);
            if now_received != received || peer.is_waiting_for_room() {
                received = now_received;
                progress_at = now;
            }
            {
                let _applying = peer.fence.applying();
                if let Some(cutoff) = fence::give_up_before(now, progress_at) {
                    peer.fence.give_up(cutoff);
                }
                for control in peer.fence.take_ready() {
                    self.apply_signal(&peer, control);
                }
                if peer.fence.task_done() {
                    return;
                }
            }
            let check = match peer.fence.oldest_waiting() {
                Some(oldest) => fence::next_check(oldest, progress_at),
                // Held only behind signals that wait: a marker wakes this task.
                None => now + fence::MARKER_WAIT,
            };
            tokio::select! {
                _ = seen => {}
                _ = gone => return self.drain_signals(&peer, true),
                _ = tokio::time::sleep_until(check.max(now)) => {}
            }
        }
    }

    /// Applies, in arrival order, every signal `peer`'s fence still holds: `peer` was given up
    /// for lost, or (`closed`) went away, and nothing is held from it any more. What it
    /// signalled before comes before what follows. From a node that went away, a watch is
    /// dropped, and so is a link to an actor that is not here: their only effect would be an
    /// answer to the node that is gone (dialling it again).
    pub(super) fn drain_signals(&self, peer: &Arc<Peer>, closed: bool) {
        let _applying = peer.fence.applying();
        for control in peer.fence.take_all(closed) {
            let answers_only = closed
                && match &control {
                    Control::Watch { .. } => true,
                    Control::Link { target, .. } => self.exported_local(actor_id(target)).is_none(),
                    _ => false,
                };
            if !answers_only {
                self.apply_signal(peer, control);
            }
        }
    }

    /// Applies an actor signal from `peer`. A panic in what it runs (a watcher's exit callback)
    /// is caught and logged: the signals after it still take effect.
    fn apply_signal(&self, peer: &Peer, control: Control) {
        let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.on_actor_control(peer.id, &peer.name, control)
        }));
        match applied {
            Ok(Ok(())) => {}
            Ok(Err(other)) => tracing::debug!(peer = %peer.name, ?other, "not an actor signal"),
            Err(_) => {
                tracing::error!(node = %self.settings.name, peer = %peer.name, "applying an actor signal panicked")
            }
        }
    }

    /// Sends a control message to `to` through the overlay (see [`relay`](Self::relay)).
    pub(crate) fn relay_control(&self, to: NodeId, control: &Control) -> bool {
        self.control_frame(control).is_some_and(|frame| self.relay(self.id, to, self.settings.relay_ttl, frame, None))
    }

    /// Sends a control message to `to` through the overlay's other nodes, never straight to it,
    /// even if a peer for it is still about (a probe of a node whose connection was lost: what is
    /// left of it may be a dead or redialling connection). False when no overlay runs.
    pub(crate) fn relay_control_around(&self, to: NodeId, control: &Control) -> bool {
        let Some(frame) = self.control_frame(control) else { return false };
        if self.membership.get().is_none() {
            return false;
        }
        let ttl = self.settings.relay_ttl;
        self.tell_membership(DriverInput::Relay { origin: self.id, to, ttl, frame, from: None });
        true
    }

    /// A whole Control frame carrying `control` (on the control channel).
    pub(super) fn control_frame(&self, control: &Control) -> Option<Vec<u8>> {
        let mut payload = Vec::new();
        let mut frame = Vec::new();
        let encoded = control.encode(&mut payload).is_ok()
            && encode_frame(&mut frame, FrameKind::Control, 0, 0, &payload, self.settings.max_frame).is_ok();
        encoded.then_some(frame)
    }

    /// Queues a control message on the first lane of `channel` to the peer.
    pub(crate) fn send_control_on(&self, to: NodeId, channel: u16, control: &Control) -> bool {
        self.peer(to).is_some_and(|peer| peer.push_control(((channel as usize).min(peer.lanes.len() - 1), 0), control))
    }

    /// Asks `peer` for the actor registered as `name`.
    pub(crate) async fn lookup(&self, peer: NodeId, name: &str) -> Option<(ActorId, String)> {
        let request = self.next_request.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.lookups.lock().insert(request, (peer, tx));
        if !self.send_control(peer, &Control::Lookup { request, name: name.to_string() }) {
            self.lookups.lock().remove(&request);
            return None;
        }
        let answer = tokio::time::timeout(self.settings.handshake_timeout, rx).await;
        self.lookups.lock().remove(&request);
        answer.ok().and_then(Result::ok).flatten()
    }
}
