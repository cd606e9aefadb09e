//! Sending: encoding messages into frames, acknowledged delivery (numbering, keeping,
//! retransmitting) and the send path behind `Transport::try_send`.

use super::*;

impl NodeShared {
    /// Re-queues acknowledged messages that were not acknowledged in time.
    pub(super) async fn retransmit_loop(self: Arc<Self>, peer: Arc<Peer>) {
        /// Every how many rounds the floor is told again.
        const FLOOR_REPEAT: u64 = 8;
        let period = self.settings.ack_retransmit;
        let mut tick = 0u64;
        loop {
            tick += 1;
            tokio::select! {
                _ = tokio::time::sleep(period / 2) => {}
                _ = peer.stop.notified() => return,
            }
            if peer.is_down() || self.shutting_down.load(Ordering::Acquire) {
                return;
            }
            if peer.lanes.iter().flatten().any(|lane| lane.queue.overflowed()) {
                // Answers, acks and control messages for it piled up to many times a queue's
                // bound: it keeps asking and does not read.
                self.drop_for_overflow(&peer);
                return;
            }
            // Which lanes are idle, for `AckState::due` (a lane's oldest frame waits while its
            // queue holds frames: the original, or an earlier copy, may be among them).
            // Read before `due`, which holds the acknowledgement lock: a sender holds a queue's
            // lock while it reserves a number, so taking a queue's lock under it would deadlock.
            // Idle: nothing queued, and nothing taken by a writer that may still be waiting for
            // room in its socket (a queue's length does not count what its writer holds).
            let idle: Vec<Vec<bool>> =
                peer.lanes.iter().map(|lanes| lanes.iter().map(|lane| !lane.queue.has_backlog()).collect()).collect();
            let idle =
                |(channel, lane): (usize, usize)| idle.get(channel).and_then(|l| l.get(lane)).copied().unwrap_or(true);
            for (lane, frame) in peer.acks.due(Instant::now(), period, idle) {
                self.counters.retransmits.fetch_add(1, Ordering::Relaxed);
                peer.lane(lane).queue.push_raw(&frame);
            }
            if let Some(next) = peer.acks.new_floor() {
                self.send_control(peer.id, &Control::AckFloor { next });
            } else if tick % FLOOR_REPEAT == 0 {
                // Again now and then: one lost with its connection would leave the receiver
                // below a gap for good.
                if let Some(next) = peer.acks.floor_to_repeat() {
                    self.send_control(peer.id, &Control::AckFloor { next });
                }
            }
        }
    }

    /// Queues the unacknowledged frames of `peer`'s `lane` in front of its queue (see
    /// `AckState::unacked_on`), counted as retransmissions.
    pub(super) fn requeue_unacked(&self, peer: &Peer, lane: (usize, usize)) {
        let now = Instant::now();
        let queued = peer.lane(lane).queue.push_front_with(|| peer.acks.unacked_on(lane, now));
        self.counters.retransmits.fetch_add(queued as u64, Ordering::Relaxed);
    }

    /// Encodes an acknowledged message into `buf` under a fresh sequence number and keeps a copy
    /// until it is acknowledged. `Full` when the unacknowledged frames are at their bound.
    fn write_acked(
        &self,
        peer: &Peer,
        buf: &mut FrameBuf,
        lane: (usize, usize),
        target: ActorId,
        tag: u64,
        body: BodyEncoder<'_>,
    ) -> Result<(), Refusal> {
        let seq = peer.acks.reserve(lane).ok_or(Refusal::Full)?;
        // Given up unless filled, even if encoding panics (a user's Serialize): a number
        // reserved for ever would hold the floor down.
        let reserved = crate::acks::Reserved::new(&peer.acks, seq);
        let mut frame = FrameBuf::default();
        let written = self.write_message(&mut frame, target, tag, Some(seq), lane.0, body, peer.max_frame());
        if written.is_ok() {
            buf.append(&frame);
            reserved.fill(frame);
        }
        written
    }

    /// `Transport::try_send` through `peer`, the peer for `target`'s node.
    pub(super) fn try_send_to(
        &self,
        peer: &Arc<Peer>,
        target: ActorId,
        opts: &SendOptions,
        tag: u64,
        body: BodyEncoder<'_>,
    ) -> Result<(), Refusal> {
        if peer.is_leaving() {
            return Err(Refusal::Failed(SendFailure::Unreachable(target.node)));
        }
        let channel = self.channel_index(opts.channel.as_deref());
        let key = opts.partition_key.unwrap_or_else(|| default_key(target));
        let lane_ix = peer.pick(channel, key, !opts.ack);
        if self.faults.active() {
            let info = MessageInfo { peer: peer.id, target, channel: lane_ix.0, type_tag: tag, acked: opts.ack };
            match self.faults.on_send(&info) {
                Verdict::Pass => {}
                Verdict::Drop => {
                    self.counters.dropped_by_faults.fetch_add(1, Ordering::Relaxed);
                    if opts.ack {
                        // Lost on the way, as a real link loses it: numbered and kept like any
                        // acknowledged frame, so the retransmit round sends it again.
                        let mut frame = FrameBuf::default();
                        self.write_acked(peer, &mut frame, lane_ix, target, tag, body)?;
                    }
                    return Ok(());
                }
                Verdict::Delay(delay) => {
                    let mut frame = FrameBuf::default();
                    if opts.ack {
                        self.write_acked(peer, &mut frame, lane_ix, target, tag, body)?;
                    } else {
                        self.write_message(&mut frame, target, tag, None, lane_ix.0, body, peer.max_frame())?;
                    }
                    let queue = peer.lane(lane_ix).queue.clone();
                    self.runtime.spawn(async move {
                        tokio::time::sleep(delay).await;
                        queue.push_raw(&frame);
                    });
                    return Ok(());
                }
            }
        }
        let lane = peer.lane(lane_ix);
        let monotonic = self.settings.channels[lane_ix.0].2;
        let write = |buf: &mut FrameBuf| {
            if !opts.ack {
                return self.write_message(buf, target, tag, None, lane_ix.0, body, peer.max_frame());
            }
            // The number is reserved only once the queue has room, and kept or given up here.
            self.write_acked(peer, buf, lane_ix, target, tag, body)
        };
        let pushed = match (monotonic, opts.ack) {
            (true, false) => lane.queue.push(Some(target), write).map(|result| (result, 0)),
            // An acknowledged send is never replaced by a newer one (its retransmission would
            // deliver it after the newer state): it goes in order, superseding older state
            // queued for the target.
            (true, true) => lane.queue.push_superseding(target, write).map(|result| (result, 0)),
            (false, _) => {
                // An ask (its reply port registers while the body encodes) is written at once.
                ASKING.set(false);
                lane.queue.push_now(true, write, || ASKING.replace(false))
            }
        };
        match pushed {
            Ok((result, inline)) => {
                self.count_inline(inline);
                result
            }
            Err(QueueRefusal::Full) => Err(Refusal::Full),
            Err(QueueRefusal::Closed) => Err(Refusal::Failed(SendFailure::Unreachable(target.node))),
        }
    }

    /// The largest frame to send a peer that shook hands as `established`: the smaller of its
    /// limit and ours.
    pub(super) fn frame_limit(&self, established: &troupe_wire::Established) -> usize {
        established.peer_max_frame.min(self.settings.max_frame)
    }

    /// Counts bytes a sender wrote to a socket itself.
    pub(super) fn count_inline(&self, bytes: usize) {
        if bytes > 0 {
            self.counters.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
        }
    }

    /// Writes one whole Message frame.
    #[allow(clippy::too_many_arguments)] // the frame's fields, spelled out at each call
    pub(super) fn write_message(
        &self,
        buf: &mut FrameBuf,
        target: ActorId,
        tag: u64,
        seq: Option<u64>,
        channel: usize,
        body: BodyEncoder<'_>,
        max: usize,
    ) -> Result<(), Refusal> {
        let envelope = Envelope { target_node: target.node.0, target_serial: target.serial, type_tag: tag, seq };
        self.write_frame(
            buf,
            FrameKind::Message,
            envelope.frame_flags(),
            channel as u16,
            |buf| envelope.write(buf),
            body,
            max,
        )
        .map_err(Refusal::Failed)
    }

    /// Appends one whole frame: header, `head` (envelope or reply header), then the body, whose
    /// large payloads are attached after it uncopied (with the trailer that says where the body's
    /// postcard part ends). On failure the buffer is left as it was.
    #[allow(clippy::too_many_arguments)] // the frame's fields, spelled out at each call
    pub(super) fn write_frame(
        &self,
        buf: &mut FrameBuf,
        kind: FrameKind,
        flags: u8,
        channel: u16,
        head: impl FnOnce(&mut Vec<u8>),
        body: BodyEncoder<'_>,
        max: usize,
    ) -> Result<(), SendFailure> {
        let mut attached = Vec::new();
        let inline = buf.inline();
        let start = begin_frame(inline, kind, flags, channel);
        let offset = start.offset();
        head(inline);
        let body_at = inline.len();
        // The buffer may be a lane's queue, shared by every sender: a `Serialize` that panics
        // must not leave half a frame there for the next frame to follow (the receiver would
        // misread everything after it). The panic goes on once the buffer is as it was.
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&mut *inline, &mut attached))) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                inline.truncate(offset);
                return Err(e);
            }
            Err(panic) => {
                inline.truncate(offset);
                std::panic::resume_unwind(panic);
            }
        }
        if attached.is_empty() {
            let len = inline.len() - offset;
            return finish_frame(inline, start, max).map_err(|_| SendFailure::TooLarge { len, max });
        }
        let postcard_len = inline.len() - body_at;
        let extra = attached.iter().map(Bytes::len).sum::<usize>() + ATTACHED_TRAILER_LEN;
        let len = inline.len() - offset + extra;
        let Ok(postcard_len) = u32::try_from(postcard_len) else {
            inline.truncate(offset);
            return Err(SendFailure::TooLarge { len, max });
        };
        finish_frame_attached(inline, start, extra, max).map_err(|_| SendFailure::TooLarge { len, max })?;
        for piece in attached {
            buf.attach(piece);
        }
        write_attached_trailer(buf.inline(), postcard_len);
        Ok(())
    }
}
