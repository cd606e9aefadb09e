//! Peers and their connections: making a peer on first handshake, each lane's dial-and-serve
//! loop, the listener, and running one connection (reader and writer) to its end.

use super::*;

/// Waits for one side of a released connection to end (see `run_connection`) while the peer's
/// connections make progress ([`Peer::progress`]), a reader waits for mailbox room or its
/// readers wait for a predecessor: gives up after [`RELEASE_READ_OUT`] of none of these, or when
/// the peer or the node stops; says why.
async fn released_wait<T>(
    side: impl std::future::Future<Output = T>,
    peer: &Peer,
    mut peer_down: std::pin::Pin<&mut tokio::sync::futures::Notified<'_>>,
    mut node_stopping: std::pin::Pin<&mut tokio::sync::futures::Notified<'_>>,
) -> Result<T, &'static str> {
    tokio::pin!(side);
    loop {
        let before = peer.progress();
        tokio::select! {
            ended = &mut side => return Ok(ended),
            _ = tokio::time::sleep(RELEASE_READ_OUT) => {
                if !peer.still_moving(before) {
                    return Err("released; the other side did not end its side");
                }
            }
            _ = peer_down.as_mut() => return Err("peer down"),
            _ = node_stopping.as_mut() => return Err("node stopping"),
        }
    }
}

impl NodeShared {
    /// The peer for an established handshake, created (and its lanes started) on first sight.
    /// `first` is a connection already open for one of its lanes (a connect we initiated).
    pub(crate) fn ensure_peer(&self, info: &NodeInfo, first: Option<(ConnPurpose, Opened)>) -> Option<Arc<Peer>> {
        let id = NodeId(info.incarnation);
        if self.shutting_down.load(Ordering::Acquire) || id == self.id || self.is_quarantined(id) {
            return None;
        }
        let (peer, created) = {
            let mut peers = self.peers.write();
            // Again under the lock: a stop that cleared the map meanwhile must not find a new peer
            // in it (its lanes would start on a runtime that is going away), nor a drop for
            // overflow that removed the node's old peer (`quarantined` is never held with
            // `peers`, so taking it here cannot deadlock).
            if self.shutting_down.load(Ordering::Acquire) || self.is_quarantined(id) {
                return None;
            }
            match peers.get(&id) {
                Some(peer) => (peer.clone(), false),
                None => {
                    self.directory.write().insert(id, info.clone());
                    let addrs: Vec<SocketAddr> = info.listen.iter().filter_map(|a| a.parse().ok()).collect();
                    let channels: Vec<(u16, bool)> = self.settings.channels.iter().map(|(_, p, m)| (*p, *m)).collect();
                    let acks = {
                        let mut states = self.acks.lock();
                        let state =
                            states.entry(id).or_insert_with(|| Arc::new(AckState::new(self.settings.queue_bytes * 4)));
                        // Counted under the map's lock (see `forget_acks_later`).
                        state.peer_made();
                        state.clone()
                    };
                    let peer = Arc::new(Peer::new(
                        id,
                        info.name.clone(),
                        addrs,
                        &channels,
                        self.settings.queue_bytes,
                        acks,
                        // Its limit, when it comes with a connection (else ours until a
                        // handshake tells: see `run_connection`).
                        first
                            .as_ref()
                            .map_or(self.settings.max_frame, |(_, opened)| self.frame_limit(&opened.established)),
                    ));
                    // A node reached again after it was declared down keeps its acknowledgement
                    // state: what is still unacknowledged goes first on each lane, before
                    // anything sent from now on (no sender sees this peer yet).
                    for (channel, lanes) in peer.lanes.iter().enumerate() {
                        for index in 0..lanes.len() {
                            self.requeue_unacked(&peer, (channel, index));
                        }
                    }
                    if let Some(old) = self.released.lock().get(&id).and_then(Weak::upgrade) {
                        if !old.is_down() {
                            peer.follow(&old);
                        }
                    }
                    peers.insert(id, peer.clone());
                    (peer, true)
                }
            }
        };
        if created {
            tracing::debug!(node = %self.settings.name, peer = %info.name, id = %id, "new peer");
            let mut first = first;
            for channel in 0..peer.lanes.len() {
                for lane in 0..peer.lanes[channel].len() {
                    let purpose = ConnPurpose { channel: channel as u16, lane: lane as u16 };
                    let opened = match &first {
                        Some((p, _)) if *p == purpose => first.take().map(|(_, o)| o),
                        _ => None,
                    };
                    let shared = self.me.upgrade()?;
                    let peer = peer.clone();
                    self.runtime.spawn(async move { shared.lane_loop(peer, purpose, opened).await });
                }
            }
            let shared = self.me.upgrade()?;
            let retransmit_peer = peer.clone();
            self.runtime.spawn(async move { shared.retransmit_loop(retransmit_peer).await });
        } else if let Some((_, opened)) = first {
            // The peer appeared meanwhile: serve this connection beside its lanes.
            let shared = self.me.upgrade()?;
            let extra = peer.clone();
            self.runtime.spawn(async move { shared.serve_extra(extra, opened).await });
        }
        Some(peer)
    }

    /// Keeps one lane connected: dial, run, redial with backoff and jitter. Two failed dials in
    /// a row of the control lane mean the node is down, also for a peer that was never connected
    /// (a failure notice's check relies on that: see `node_lost_notice`).
    async fn lane_loop(self: Arc<Self>, peer: Arc<Peer>, purpose: ConnPurpose, mut opened: Option<Opened>) {
        let control = purpose.channel == 0;
        let mut backoff = self.settings.reconnect_min;
        let mut failures = 0u32;
        let mut connected_before = false;
        if purpose.channel == 1 && opened.is_none() {
            // Default-channel connections are made when first needed: in a large overlay most
            // peers only ever exchange control traffic, and every connection is a descriptor.
            let queue = peer.lane((1, purpose.lane as usize)).queue.clone();
            while queue.len() == 0 {
                tokio::select! {
                    _ = queue.ready.notified() => {}
                    _ = peer.stop.notified() => return,
                }
                if peer.is_down() {
                    return;
                }
            }
        }
        if opened.is_none() {
            // The other side could take a connection made before it handled the release for one
            // of the old peer's, and read it beside them (a signal on it would overtake messages
            // still on the old connections). A data lane waits until the released predecessor's
            // connections are read to their end; the control lane only until the predecessor's
            // control connection has ended (the other side ends it once it handled the release,
            // about a round trip): the node must not look unreachable for longer (it is `up`
            // once that lane connects).
            if control {
                peer.after_predecessor_control(SUCCESSOR_WAIT).await;
            } else {
                peer.after_predecessor(SUCCESSOR_WAIT).await;
            }
        }
        let lane_queue = peer.lane((purpose.channel as usize, purpose.lane as usize)).queue.clone();
        // A released peer's lane still dials once for frames a sender queued before the release
        // finished the queue: they are written, then the connection ends (see `release_peer`).
        let flushing = || peer.releasing.load(Ordering::Acquire) && !peer.is_down() && lane_queue.has_backlog();
        loop {
            if (peer.ending() && !flushing()) || self.shutting_down.load(Ordering::Acquire) {
                return;
            }
            if lane_queue.overflowed() {
                // Its reader closed the connection for it: no redial, the peer goes.
                self.drop_for_overflow(&peer);
                return;
            }
            let attempt = match opened.take() {
                Some(o) => Ok(o),
                None => self.dial_peer(&peer, purpose).await,
            };
            match attempt {
                Ok(o) if o.established.peer.incarnation != peer.id.0 => {
                    // Someone else answers at that address now: the node restarted.
                    let info = o.established.peer.clone();
                    self.peer_down(&peer, "restarted with a new incarnation");
                    self.ensure_peer(&info, Some((purpose, o)));
                    return;
                }
                Ok(o) => {
                    failures = 0;
                    backoff = self.settings.reconnect_min;
                    let lane_index = (purpose.channel as usize, purpose.lane as usize);
                    let lane = peer.lane(lane_index);
                    if connected_before {
                        // What the last connection may have lost goes first, in order, before
                        // what was queued after it (copies of frames still queued are
                        // duplicates the receiver drops).
                        self.requeue_unacked(&peer, lane_index);
                    }
                    connected_before = true;
                    lane.connected.store(true, Ordering::Release);
                    if control && !peer.up.swap(true, Ordering::AcqRel) {
                        tracing::info!(node = %self.settings.name, peer = %peer.name, "node up");
                        let _ = self.events.send(NodeEvent::Up { node: peer.id, name: peer.name.clone() });
                    }
                    self.announce(&peer);
                    let queue = lane.queue.clone();
                    let reason = self.clone().run_connection(peer.clone(), o, queue).await;
                    lane.connected.store(false, Ordering::Release);
                    tracing::debug!(node = %self.settings.name, peer = %peer.name, ?purpose, %reason, "lane disconnected");
                    if peer.ending() || self.shutting_down.load(Ordering::Acquire) {
                        return;
                    }
                    if control && self.faults.is_partitioned(peer.id) {
                        failures += 1;
                    }
                    continue; // redial at once
                }
                Err(error) => {
                    failures += 1;
                    tracing::debug!(node = %self.settings.name, peer = %peer.name, ?purpose, %error, "dial failed");
                    if peer.ending() {
                        // A released peer's last dial (see `flushing`): no retry, and no Down.
                        return;
                    }
                    if control && failures >= 2 {
                        self.peer_down(&peer, "unreachable");
                        return;
                    }
                }
            }
            let jitter = rand::random::<f64>() * 0.5 + 0.75;
            let wait = backoff.mul_f64(jitter);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = peer.stop.notified() => return,
            }
            backoff = (backoff * 2).min(self.settings.reconnect_max);
        }
    }

    async fn dial_peer(&self, peer: &Peer, purpose: ConnPurpose) -> Result<Opened, ConnectError> {
        if self.faults.is_partitioned(peer.id) {
            return Err(ConnectError::Handshake(HandshakeError::Rejected(reject::PARTITIONED.into())));
        }
        let mut last = ConnectError::Closed;
        for addr in &peer.addrs {
            match self.dial(*addr, purpose).await {
                Ok(o) => return Ok(o),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    pub(crate) async fn dial(&self, addr: SocketAddr, purpose: ConnPurpose) -> Result<Opened, ConnectError> {
        let result = conn::dial(
            addr,
            self.tls.as_ref(),
            self.handshake_config(),
            purpose,
            self.settings.connect_timeout,
            self.settings.handshake_timeout,
        )
        .await;
        match &result {
            Err(ConnectError::Handshake(HandshakeError::Rejected(reason))) if reason == reject::QUARANTINED => {
                tracing::warn!(node = %self.settings.name, %addr, "the peer dropped this node for not reading what it asked for, and refuses it for a while");
            }
            Err(ConnectError::Handshake(HandshakeError::Rejected(reason))) if reject::is_refusal(reason) => {
                // The peer is leaving, or cut itself off from us: a failed dial, not a fault.
                tracing::debug!(node = %self.settings.name, %addr, reason, "peer refused the connection");
            }
            Err(ConnectError::Handshake(e)) => {
                self.counters.handshakes_failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(node = %self.settings.name, %addr, error = %e, "handshake with peer failed");
            }
            _ => {}
        }
        result
    }

    /// Accepts connections until the node stops.
    pub(crate) async fn listen(self: Arc<Self>, listener: tokio::net::TcpListener) {
        // Registered before the flag is read, so a stop that comes while a connection is being
        // handed over is not missed (`notify_waiters` keeps no permit): the listener closes.
        let mut stopped = std::pin::pin!(self.stop.notified());
        stopped.as_mut().enable();
        if self.shutting_down.load(Ordering::Acquire) {
            return;
        }
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = stopped.as_mut() => return,
            };
            let (tcp, from) = match accepted {
                Ok(a) => a,
                Err(error) => {
                    tracing::warn!(node = %self.settings.name, %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let shared = self.clone();
            self.runtime.spawn(async move { shared.serve_inbound(tcp, from).await });
        }
    }

    async fn serve_inbound(self: Arc<Self>, tcp: tokio::net::TcpStream, from: SocketAddr) {
        // A peer that proved itself but that this node will not serve is told so in the
        // handshake, so it counts a failed dial and backs off (a one-sided partition looks like
        // an unreachable node to the other side, as a real one would).
        let refuse = |established: &troupe_wire::Established| {
            if self.faults.is_partitioned(NodeId(established.peer.incarnation)) {
                Some(reject::PARTITIONED)
            } else if self.shutting_down.load(Ordering::Acquire) {
                Some(reject::SHUTTING_DOWN)
            } else if self.is_quarantined(NodeId(established.peer.incarnation)) {
                Some(reject::QUARANTINED)
            } else {
                None
            }
        };
        let opened = match conn::accept(
            tcp,
            self.tls.as_ref(),
            self.handshake_config(),
            self.settings.handshake_timeout,
            refuse,
        )
        .await
        {
            Ok(o) => o,
            Err(ConnectError::Refused(reason)) => {
                tracing::debug!(node = %self.settings.name, %from, reason, "refused an authenticated peer");
                return;
            }
            Err(error) => {
                self.counters.handshakes_rejected.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(node = %self.settings.name, %from, %error, "rejected an inbound connection");
                return;
            }
        };
        let info = opened.established.peer.clone();
        if self.faults.is_partitioned(NodeId(info.incarnation)) {
            // Cut off during the handshake's last write.
            return;
        }
        let purpose = opened.established.purpose;
        if purpose == ConnPurpose::PROBE {
            self.answer_probe_connection(opened, from).await;
            return;
        }
        if purpose == (ConnPurpose { channel: 0, lane: 0 }) && self.peer(NodeId(info.incarnation)).is_none() {
            // A node we have no connection with dialled our control lane: that one connection
            // carries control traffic both ways (half the descriptors of a large overlay).
            self.ensure_peer(&info, Some((purpose, opened)));
            return;
        }
        let Some(peer) = self.ensure_peer(&info, None) else { return };
        self.serve_extra(peer, opened).await;
    }

    /// Serves a connection the peer dialled for one of its lanes: we read its frames and send
    /// back only acks and pongs (our own traffic goes on our lanes).
    async fn serve_extra(self: Arc<Self>, peer: Arc<Peer>, opened: Opened) {
        // The overlay hears of the peer before any message read from this connection.
        self.announce(&peer);
        let name = peer.name.clone();
        let queue = Arc::new(SendQueue::new(self.settings.queue_bytes, false));
        let reading = peer.reading_inbound();
        let reason = self.clone().run_connection(peer.clone(), opened, queue.clone()).await;
        drop(reading);
        if queue.overflowed() {
            // The peer's lane asks (acks, pings) and does not read the answers.
            self.drop_for_overflow(&peer);
        }
        queue.close();
        tracing::debug!(node = %self.settings.name, peer = %name, %reason, "inbound connection closed");
    }

    /// Runs one connection: the writer drains `queue`, the reader dispatches frames. Returns
    /// when either side ends; says why.
    async fn run_connection(self: Arc<Self>, peer: Arc<Peer>, opened: Opened, queue: Arc<SendQueue>) -> String {
        let Opened { reader, writer, established, leftover } = opened;
        peer.version.store(established.version, Ordering::Relaxed);
        // Frames larger than it takes would end the connection: senders get `TooLarge` instead.
        let max_frame = self.frame_limit(&established);
        peer.max_frame.store(max_frame, Ordering::Relaxed);
        peer.acks.remember_handshake(established.version, max_frame);
        let (reader, leftover) = match self.settings.link {
            // Everything read from here on, including what the handshake read ahead, crosses the emulated link.
            Some(link) => {
                let ahead = std::io::Cursor::new(leftover);
                let delayed: ReadHalf = Box::new(crate::emulation::DelayedReader::new(ahead.chain(reader), link));
                (delayed, Vec::new())
            }
            None => (reader, leftover),
        };
        let channel = established.purpose.channel as usize;
        let stop = Arc::new(tokio::sync::Notify::new());
        let (shared, node) = (self.clone(), self.clone());
        let peer_id = peer.id;
        let mut write = self.runtime.spawn(conn::write_loop(
            writer,
            queue.clone(),
            stop.clone(),
            move |n| {
                shared.counters.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
            },
            // Nothing goes to a peer we cut ourselves off from, not even retransmissions or
            // acknowledgement floors, which kept its side of the connection looking alive: the
            // writer ends the connection the first time it has something for it.
            move || node.faults.is_partitioned(peer_id),
        ));
        let read = self.clone().read_loop(peer.clone(), reader, leftover, queue.clone(), channel);
        tokio::pin!(read);
        // Registered now, so a stop notified while one side of a released connection is waited
        // for below is not missed (`notify_waiters` keeps no permit).
        let peer_down = peer.stop.notified();
        let node_stopping = self.stop.notified();
        tokio::pin!(peer_down, node_stopping);
        peer_down.as_mut().enable();
        node_stopping.as_mut().enable();
        let releasing = || peer.releasing.load(Ordering::Acquire);
        let reason = tokio::select! {
            r = &mut read => {
                if releasing() {
                    // Released, and the other side ended its sending side (or the read failed):
                    // ours ends once it has written what it still has, so the other side reads
                    // that too. (A lane's queue is finished by the release already; the queue
                    // of a connection the other side dialled is finished here.)
                    queue.finish();
                    let _ = released_wait(&mut write, &peer, peer_down.as_mut(), node_stopping.as_mut()).await;
                }
                r
            }
            w = &mut write => match w {
                Ok(Ok(())) if releasing() => {
                    // Released: our side wrote all it had and ended its sending side. What the
                    // other side wrote before it heard of the release is still read, until it
                    // ends its own side (it releases too).
                    released_wait(&mut read, &peer, peer_down.as_mut(), node_stopping.as_mut()).await.unwrap_or_else(str::to_string)
                }
                Ok(Ok(())) => "writer finished".to_string(),
                Ok(Err(e)) => format!("write failed: {e}"),
                Err(e) => format!("writer task: {e}"),
            },
            _ = peer_down.as_mut() => "peer down".to_string(),
            _ = node_stopping.as_mut() => "node stopping".to_string(),
        };
        stop.notify_one();
        if !write.is_finished() {
            // Give the writer a moment to flush what is queued (a Goodbye, acks), then drop it.
            if tokio::time::timeout(Duration::from_millis(200), &mut write).await.is_err() {
                write.abort();
            }
        }
        reason
    }
}
