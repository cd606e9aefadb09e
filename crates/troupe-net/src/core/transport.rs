//! [`Transport`] for [`NodeShared`]: how remote `ActorRef`s reach the network.

use super::*;

impl Transport for NodeShared {
    fn local_node(&self) -> NodeId {
        self.id
    }

    fn try_send(&self, target: ActorId, opts: &SendOptions, tag: u64, body: BodyEncoder<'_>) -> Result<(), Refusal> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let mut released = false;
            let result = self.peers.with(target.node, |peer| match peer {
                Some(peer) => {
                    let result = self.try_send_to(peer, target, opts, tag, &mut *body);
                    released = refused_by_release(peer, &result);
                    result
                }
                // A stopped node has no peers left and makes none (`ensure_peer`), and relays nothing.
                None if !opts.ack && target.node != self.id && self.must_relay(target.node) => {
                    let mut frame = FrameBuf::default();
                    self.write_message(&mut frame, target, tag, None, 1, &mut *body, self.relayed_max_frame())?;
                    match self.relay(self.id, target.node, self.settings.relay_ttl, frame.to_vec(), None) {
                        true => Ok(()),
                        false => Err(Refusal::Failed(SendFailure::Unreachable(target.node))),
                    }
                }
                None => match self.peer_on_demand(target.node) {
                    Some(peer) => {
                        let result = self.try_send_to(&peer, target, opts, tag, &mut *body);
                        released = refused_by_release(&peer, &result);
                        result
                    }
                    None => Err(Refusal::Failed(if target.node == self.id {
                        SendFailure::NotRunning
                    } else {
                        SendFailure::Unreachable(target.node)
                    })),
                },
            });
            // The peer was released after this send took it: the node's next peer takes it.
            if !released || attempts == RELEASED_RETRIES {
                return result;
            }
        }
    }

    fn poll_ready(
        &self,
        target: ActorId,
        opts: &SendOptions,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Result<(), SendFailure>> {
        let peer = match self.peer(target.node) {
            Some(peer) => Some(peer),
            None if !opts.ack && target.node != self.id && self.must_relay(target.node) => return Poll::Ready(Ok(())),
            None => self.peer_on_demand(target.node),
        };
        let Some(peer) = peer else {
            return Poll::Ready(Err(SendFailure::Unreachable(target.node)));
        };
        if opts.ack && !peer.acks.poll_room(cx.waker()) {
            return Poll::Pending;
        }
        let channel = self.channel_index(opts.channel.as_deref());
        let key = opts.partition_key.unwrap_or_else(|| default_key(target));
        let lane = peer.lane(peer.pick(channel, key, !opts.ack));
        match lane.queue.poll_room(cx.waker()) {
            Ok(true) => Poll::Ready(Ok(())),
            Ok(false) => Poll::Pending,
            // Released after we took it: the send goes to the node's next peer (`try_send`).
            Err(_) if peer.is_released() => Poll::Ready(Ok(())),
            Err(_) => Poll::Ready(Err(SendFailure::Unreachable(target.node))),
        }
    }

    fn control(&self, target: ActorId, control: RemoteControl) {
        let wire = wire_id(target);
        let message = match control {
            RemoteControl::Stop => Control::Stop { target: wire },
            RemoteControl::Kill => Control::Kill { target: wire },
            RemoteControl::Watch => Control::Watch { target: wire },
            RemoteControl::Link { from } => Control::Link { target: wire, from: wire_id(from) },
            RemoteControl::Unlink { from } => Control::Unlink { target: wire, from: wire_id(from) },
        };
        let sent = match message {
            Control::Stop { target: wire } => self.send_after_messages(target.node, Signal::Stop { target: wire }),
            message => self.send_actor_control(target.node, &message),
        };
        if !sent && control == RemoteControl::Watch {
            // Nobody to ask: the node is gone (or was never reached).
            self.proxy(target).exited(ExitReason::NodeDown);
        }
    }

    fn report_exit(&self, to: NodeId, actor: ActorId, reason: &ExitReason) {
        // Not sent when the node is gone: it has nobody left to tell.
        self.send_after_messages(to, Signal::Down { target: wire_id(actor), reason: wire_exit(reason) });
    }

    fn export(&self, actor: Arc<dyn Inbound>) {
        let serial = actor.id().serial;
        if self.exported.read().contains_key(&serial) {
            return;
        }
        let untyped = actor.untyped();
        if self.exported.write().insert(serial, actor).is_none() {
            let me = self.me.clone();
            untyped.on_exit(move |_| {
                if let Some(shared) = me.upgrade() {
                    shared.exported.write().remove(&serial);
                }
            });
        }
    }

    fn proxy(&self, id: ActorId) -> Arc<RemoteProxy> {
        let mut proxies = self.proxies.lock();
        if let Some(proxy) = proxies.get(&id).and_then(Weak::upgrade) {
            // A proxy marked dead because its node was lost is stale once the node is back; one
            // whose actor stopped stays dead.
            let node_back = self.peer(id.node).is_some_and(|p| !p.is_down());
            if !(node_back && proxy.exit_reason() == Some(ExitReason::NodeDown)) {
                return proxy;
            }
        }
        let transport = self.transport().expect("a node's transport outlives its calls");
        let proxy = RemoteProxy::new(id, transport);
        proxies.insert(id, Arc::downgrade(&proxy));
        if self.proxies_since_sweep.fetch_add(1, Ordering::Relaxed) >= 1024 {
            self.proxies_since_sweep.store(0, Ordering::Relaxed);
            proxies.retain(|_, p| p.strong_count() > 0);
        }
        proxy
    }

    fn local_actor(&self, serial: u64) -> Option<UntypedRef> {
        self.exported_local(ActorId { node: self.id, serial }).map(|i| i.untyped())
    }

    fn register_reply(&self, to: NodeId, pending: Box<dyn PendingReply>, deadline: Option<Instant>) -> u64 {
        ASKING.set(true);
        let request = self.next_request.fetch_add(1, Ordering::Relaxed);
        {
            let mut replies = self.replies.lock();
            if replies.len() >= 4096 && request % 1024 == 0 {
                replies.retain(|_, (_, waiting)| !waiting.pending.is_closed());
            }
            replies.insert(request, (to, Waiting { pending, deadline }));
            if let Some(deadline) = deadline {
                self.time_ask(&replies, request, deadline);
            }
        }
        if self.asks_stopped.load(Ordering::Acquire) {
            // The node stopped while this was encoded: no answer can come, and nothing would
            // time it.
            self.fail_waiting_asks();
        }
        request
    }

    fn send_reply(&self, to: NodeId, request: u64, outcome: ReplyOutcome, body: BodyEncoder<'_>) -> bool {
        let status = match outcome {
            ReplyOutcome::Answered => ReplyStatus::Ok,
            ReplyOutcome::NoReply => ReplyStatus::NoReply,
        };
        if to == self.id {
            // Never for an honest port: a port is its sender's own, and one naming this node is
            // refused when decoded (a port that goes out and comes back is a new port each hop).
            return false;
        }
        if self.faults.is_partitioned(to) {
            // Cut off (`Node::partition`): a reply written inline would bypass the writer.
            return false;
        }
        let header = ReplyHeader { request, status };
        for _ in 0..RELEASED_RETRIES {
            let peer = match self.peer(to) {
                Some(peer) => peer,
                None if self.must_relay(to) => {
                    let mut frame = FrameBuf::default();
                    let max = self.relayed_max_frame();
                    let write =
                        self.write_frame(&mut frame, FrameKind::Reply, 0, 1, |buf| header.write(buf), body, max);
                    return write.is_ok() && self.relay(self.id, to, self.settings.relay_ttl, frame.to_vec(), None);
                }
                None => match self.peer_on_demand(to) {
                    Some(peer) => peer,
                    None => return false,
                },
            };
            if peer.is_leaving() {
                return false;
            }
            let lane = peer.lane(peer.pick(1, request, true));
            let pushed = lane.queue.push_now(
                false,
                |buf| {
                    let max = peer.max_frame();
                    self.write_frame(buf, FrameKind::Reply, 0, 1, |buf| header.write(buf), &mut *body, max)
                },
                || true,
            );
            match pushed {
                Ok((result, inline)) => {
                    self.count_inline(inline);
                    return result.is_ok();
                }
                // Released after we took it (see `refused_by_release`): the node's next peer takes it.
                Err(QueueRefusal::Closed) if peer.is_released() => {}
                Err(_) => return false,
            }
        }
        false
    }

    fn system(&self) -> &ActorSystem {
        &self.system
    }
}
