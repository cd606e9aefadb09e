//! Receiving: a connection's read loop, dispatching frames to actors (batched, with
//! backpressure from full mailboxes), acknowledged arrivals and replies.

use super::*;

/// A read that brought at most this many small frames is a short exchange (asks, replies): the
/// actors it woke run on the network thread if the actor scheduler is idle, which saves waking a
/// worker. A read that brought more, or a large frame, is a stream: its actors run on the workers,
/// in parallel with the next read.
const INLINE_FRAMES: u64 = 4;

/// Frames at least this long (header included) are read into a buffer of their own.
const BIG_FRAME: usize = 64 * 1024;

/// The most one read of a large frame takes from the socket.
const BIG_READ: usize = 256 * 1024;

/// A large frame up to this long is read to its end without letting other connections' readers
/// have the thread between two reads (a read that has to wait still does). With a yield after
/// every read, 16 connections each bringing 512 KiB echoes were read interleaved: every frame
/// finished late, replies came in bursts and each node sat idle while the other worked through
/// one (echo20ms at parallelism 16: 2.6-2.9 k ops/s with a yield after every read, 3.4-3.6 k
/// without). Longer frames (a stream of 8 MiB messages, say) still yield after every read, so
/// a small message on another connection waits behind at most one read.
const UNINTERRUPTED_FRAME: usize = 1 << 20;

/// What one connection's reader keeps between frames.
struct ConnState {
    /// Sequence numbers to acknowledge after this read.
    acks: Vec<u64>,
    /// The exported actor the last message went to, with its id and type tag (read once, not
    /// through its vtable for every message).
    cache: Option<CachedTarget>,
    /// Messages handed to actors since the counters were last updated.
    delivered: u64,
    /// Where messages still held when the reader is dropped are delivered from.
    runtime: tokio::runtime::Handle,
    /// Whether a message numbered out of the window was logged (once per connection: its
    /// retransmissions would flood the log).
    warned_window: bool,
}

/// Whether our backlog on a connection is draining: bytes went into its socket since `moved`
/// (updated) while frames still wait in `queue` or its writer is busy with some, so the socket's
/// buffer had been full and the other side took bytes off it. Our own small frames (pings)
/// written into an idle socket do not count: a dead peer's socket takes those too.
fn draining(queue: &SendQueue, moved: &mut u64) -> bool {
    let now = queue.moved.load(Ordering::Relaxed);
    let progressed = now != *moved && queue.has_backlog();
    *moved = now;
    progressed
}

impl Drop for ConnState {
    /// A reader cancelled (its connection stopped) while it held messages it had read and
    /// accepted, acknowledged ones included, hands them over on its way out: they are not lost.
    fn drop(&mut self) {
        let Some(batch) = self.cache.as_mut().and_then(|cached| cached.batch.as_mut()) else { return };
        if let Some(FlushRest::Full { wait, .. }) = batch.flush().rest {
            self.runtime.spawn(wait);
        }
    }
}

/// A wait for mailbox room that, if the reader awaiting it is cancelled, goes on by itself: the
/// messages it holds were read and accepted (acknowledged ones are never sent again), so they
/// must still be delivered. (They may then interleave with messages from the same sender that
/// arrive over a new connection meanwhile; losing them would be worse.)
struct FinishOnDrop {
    wait: Option<DeliverLater>,
    runtime: tokio::runtime::Handle,
}

impl std::future::Future for FinishOnDrop {
    type Output = u64;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<u64> {
        let Some(wait) = self.wait.as_mut() else { return std::task::Poll::Ready(0) };
        let delivered = std::task::ready!(wait.as_mut().poll(cx));
        self.wait = None;
        std::task::Poll::Ready(delivered)
    }
}

impl Drop for FinishOnDrop {
    fn drop(&mut self) {
        if let Some(wait) = self.wait.take() {
            self.runtime.spawn(wait);
        }
    }
}

/// An exported actor a connection's reader delivered to last.
struct CachedTarget {
    id: ActorId,
    type_tag: u64,
    inbound: Arc<dyn Inbound>,
    /// Messages for it read after the first of a series of consecutive ones, waiting to go into
    /// its mailbox together (made when first needed, kept while cached). The first message of a
    /// series goes to the mailbox directly, so traffic that switches actor at every frame, or
    /// sends one message per read (an ask), never uses one.
    batch: Option<Box<dyn InboundBatch>>,
    /// A message for it was read since the batch was last handed over: the next one joins it.
    in_batch: bool,
}

/// What became of one frame (or of a batch of messages handed over).
enum Dispatched {
    Done,
    /// A message went into a mailbox.
    Delivered,
    /// The mailbox is full: await `wait` to deliver `count` messages, in order; it yields how
    /// many were delivered.
    Full {
        wait: DeliverLater,
        count: u64,
    },
    /// The connection must close, for this reason.
    Close(String),
}

/// How a run of buffered frames ended (see `NodeShared::dispatch_run`).
enum Run {
    /// No whole frame is left in the buffer.
    Drained,
    /// Something needs awaiting (a full mailbox: the frame's own message, or the batch handed
    /// over before the frame, which then stays unread) or closes the connection.
    Wait(Dispatched),
    /// A malformed frame: the connection closes for this reason.
    BadFrame(String),
}

/// Sends the acknowledgements a connection's reader collected, if any.
fn flush_acks(conn: &mut ConnState, reply_queue: &SendQueue, channel: usize) {
    if !conn.acks.is_empty() {
        let mut payload = Vec::with_capacity(conn.acks.len() * 2 + 4);
        encode_acks(&mut payload, &conn.acks);
        reply_queue.push_frame(FrameKind::Ack, channel as u16, &payload);
        conn.acks.clear();
    }
}

impl NodeShared {
    /// Reads and dispatches frames until the connection fails; pings an idle connection and
    /// gives up on it after the configured attempts.
    ///
    /// Small frames are read many at a time into one buffer. A frame of [`BIG_FRAME`] bytes or
    /// more is read into a buffer of its own, in reads of at most [`BIG_READ`] bytes, so its
    /// attached payloads reach the actor as slices of that buffer (never copied again); other
    /// connections' readers get the thread between two reads of a frame longer than
    /// [`UNINTERRUPTED_FRAME`].
    pub(super) async fn read_loop(
        self: Arc<Self>,
        peer: Arc<Peer>,
        mut reader: ReadHalf,
        leftover: Vec<u8>,
        reply_queue: Arc<SendQueue>,
        channel: usize,
    ) -> String {
        let Some(transport) = self.transport() else { return "node gone".into() };
        // Nothing from this peer is handed on before what its released predecessor's
        // connections still carry.
        peer.after_predecessor(SUCCESSOR_WAIT).await;
        let decoder = FrameDecoder::new(self.settings.max_frame);
        let mut conn = ConnState {
            acks: Vec::new(),
            cache: None,
            delivered: 0,
            runtime: self.runtime.clone(),
            warned_window: false,
        };
        let mut buf = leftover;
        let mut start = 0usize;
        let mut unanswered = 0u32;
        // What our side got into this connection's socket. While that moves with a backlog still
        // queued (so the socket's buffer was full: the other side took bytes off it), the other
        // side is reading, however slowly, and its silence is no sign of death: our pings wait
        // behind the backlog it is working through.
        let mut moved = reply_queue.moved.load(Ordering::Relaxed);
        // Counted per read, not per frame: the counters are shared by every connection.
        let mut frames = 0u64;
        // Actors woken by this read's frames: run here if the scheduler is idle and the read was
        // a short exchange (see `INLINE_FRAMES`), else queued for the workers.
        let mut woken = troupe_actor::Woken::default();
        // When a read has waited too long (see `idle_ping`, `ping_timeout`).
        let mut deadline = ReadDeadline::default();
        loop {
            // Dispatch every whole frame in the buffer, in runs of frames that need no waiting
            // (one wake-up collection for each run, not one per frame).
            loop {
                let before = frames;
                let run = troupe_actor::collect_wakeups(&mut woken, || {
                    self.dispatch_run(
                        &decoder,
                        &buf,
                        &mut start,
                        &mut frames,
                        (&transport, &peer, &reply_queue, channel),
                        &mut conn,
                    )
                });
                // Frames of a peer we cut ourselves off from (`Node::partition`) were dropped
                // unread: they say nothing about the connection.
                if frames > before && !self.faults.is_partitioned(peer.id) {
                    unanswered = 0;
                }
                let step = match run {
                    Run::Drained => break,
                    Run::BadFrame(reason) => return reason,
                    Run::Wait(step) => step,
                };
                if matches!(step, Dispatched::Full { .. }) {
                    // We are about to wait for the target to make room: it must run elsewhere.
                    woken.release();
                    // And the sender hears now of what this node took in so far (acknowledged
                    // means taken in, as for a message waiting in a mailbox): held back for as
                    // long as a slow actor takes, acknowledgements would look lost.
                    flush_acks(&mut conn, &reply_queue, channel);
                }
                if let Err(reason) = self.finish_dispatch(step, &peer, &mut conn).await {
                    return reason;
                }
            }
            if frames <= INLINE_FRAMES {
                woken.run_here();
            } else {
                woken.release();
            }
            flush_acks(&mut conn, &reply_queue, channel);
            self.counters.frames_in.fetch_add(std::mem::take(&mut frames), Ordering::Relaxed);
            if conn.delivered > 0 {
                peer.received.fetch_add(conn.delivered, Ordering::Relaxed);
            }
            self.counters.messages_in.fetch_add(std::mem::take(&mut conn.delivered), Ordering::Relaxed);
            if reply_queue.overflowed() {
                // What it asked for (answers, acks, pongs) piled up unread: see `SendQueue`'s
                // overflow mark. Its peer is dropped too when this is one of the peer's lanes.
                return "the other side does not read what it asks for".into();
            }
            // Compact, then read more.
            if start > 0 {
                buf.drain(..start);
                start = 0;
            }
            if let Ok(Some(header)) = decoder.decode_header(&buf) {
                let total = HEADER_LEN + header.len as usize;
                if total >= BIG_FRAME && buf.len() < total {
                    // A large frame has begun: the rest of it goes into a buffer of its own.
                    let mut big = self.frame_pool.lock().take(total);
                    big.extend_from_slice(&buf);
                    buf.clear();
                    while big.len() < total {
                        let want = (total - big.len()).min(BIG_READ) as u64;
                        let wait = self.read_wait(unanswered);
                        match deadline.run(wait, (&mut reader).take(want).read_buf(&mut big)).await {
                            Some(Ok(0)) => return "closed by peer".into(),
                            Some(Ok(n)) => {
                                unanswered = 0;
                                self.counters.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
                                peer.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
                            }
                            Some(Err(e)) => return format!("read failed: {e}"),
                            None => {
                                if let Err(reason) =
                                    self.on_silence(&peer, &reply_queue, channel, &mut moved, &mut unanswered)
                                {
                                    return reason;
                                }
                            }
                        }
                        if total > UNINTERRUPTED_FRAME {
                            // Let the other connections' readers (small messages) have the thread.
                            tokio::task::yield_now().await;
                        }
                    }
                    let capacity = big.capacity();
                    let frame = big.freeze();
                    // The guard goes at the end of the statement, the evicted buffers after it.
                    let evicted = self.frame_pool.lock().keep(&frame, capacity, Instant::now());
                    drop(evicted);
                    frames += 1;
                    let step = troupe_actor::collect_wakeups(&mut woken, || {
                        troupe_actor::with_codec_context(&transport, peer.id, || {
                            // The buffered frames before it were dispatched and their batch handed
                            // over: this message starts a series, so it goes to the mailbox directly.
                            self.dispatch(
                                &transport,
                                &peer,
                                header,
                                &frame[HEADER_LEN..],
                                Some(&frame),
                                &reply_queue,
                                channel,
                                &mut conn,
                            )
                        })
                    });
                    // A large message is bulk work (its handler may copy or write it again): the
                    // workers take it, in parallel with this thread's next read.
                    woken.release();
                    if matches!(step, Dispatched::Full { .. }) {
                        flush_acks(&mut conn, &reply_queue, channel);
                    }
                    if let Err(reason) = self.finish_dispatch(step, &peer, &mut conn).await {
                        return reason;
                    }
                    continue;
                }
            }
            if buf.capacity() - buf.len() < 32 * 1024 {
                buf.reserve(64 * 1024);
            }
            if buf.is_empty() && buf.capacity() > 1 << 20 {
                buf = Vec::with_capacity(64 * 1024);
            }
            let wait = self.read_wait(unanswered);
            match deadline.run(wait, reader.read_buf(&mut buf)).await {
                Some(Ok(0)) => return "closed by peer".into(),
                Some(Ok(n)) => {
                    self.counters.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
                    peer.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
                }
                Some(Err(e)) => return format!("read failed: {e}"),
                None => {
                    let aged = self.frame_pool.lock().trim(Instant::now()); // idle: give them back
                    drop(aged);
                    if let Err(reason) = self.on_silence(&peer, &reply_queue, channel, &mut moved, &mut unanswered) {
                        return reason;
                    }
                }
            }
        }
    }

    /// How long a read may wait for data: `idle_ping` on a connection that answers, then
    /// `ping_timeout` while pings go unanswered.
    fn read_wait(&self, unanswered: u32) -> Duration {
        if unanswered == 0 {
            self.settings.idle_ping
        } else {
            self.settings.ping_timeout
        }
    }

    /// A read waited [`read_wait`](Self::read_wait) for nothing: pings the other side, or gives
    /// up on the connection once `ping_attempts` pings went unanswered (not while the other side
    /// is still taking in our backlog: see `draining`).
    fn on_silence(
        &self,
        peer: &Peer,
        reply_queue: &SendQueue,
        channel: usize,
        moved: &mut u64,
        unanswered: &mut u32,
    ) -> Result<(), String> {
        if draining(reply_queue, moved) {
            *unanswered = 0;
        }
        if *unanswered >= self.settings.ping_attempts {
            tracing::info!(node = %self.settings.name, peer = %peer.name, "connection silent; closing it");
            return Err("idle ping unanswered".into());
        }
        *unanswered += 1;
        // (To a peer we cut ourselves off from, the writer drops it.)
        reply_queue.push_frame(FrameKind::Ping, channel as u16, &[]);
        Ok(())
    }

    /// Dispatches the whole frames of `buf` from `start` (advanced past each, `frames` counted)
    /// until one needs waiting for ([`Run::Wait`]), the buffer holds no whole frame more, or a
    /// frame is malformed (counted and logged; the connection must close). The batch of messages
    /// for one actor is handed over before any frame that is not a message and before returning.
    fn dispatch_run(
        &self,
        decoder: &FrameDecoder,
        buf: &[u8],
        start: &mut usize,
        frames: &mut u64,
        (transport, peer, reply_queue, channel): (&Arc<dyn Transport>, &Arc<Peer>, &SendQueue, usize),
        conn: &mut ConnState,
    ) -> Run {
        // One codec context for the whole run: refs and reply ports in these frames are `peer`'s.
        troupe_actor::with_codec_context(transport, peer.id, || loop {
            let decoded = decoder.decode(&buf[*start..]);
            // The batch of messages for one actor read so far goes to its mailbox before anything
            // that is not another message: a control frame (a stop must not overtake the
            // messages before it), the end of what was read, a malformed frame. When it must
            // wait for room, this frame stays unread until it has.
            if !matches!(&decoded, Ok(Some((frame, _))) if frame.header.kind == FrameKind::Message) {
                match self.flush_batch(peer, conn) {
                    Dispatched::Done => {}
                    step => return Run::Wait(step),
                }
            }
            let (header, payload_range, used) = match decoded {
                Ok(None) => return Run::Drained,
                Ok(Some((frame, used))) => {
                    let offset = *start + (used - frame.payload.len());
                    (frame.header, offset..*start + used, used)
                }
                Err(error) => {
                    self.counters.bad_frames.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(node = %self.settings.name, peer = %peer.name, %error, "bad frame; closing the connection");
                    return Run::BadFrame(format!("bad frame: {error}"));
                }
            };
            *start += used;
            *frames += 1;
            match self.dispatch(transport, peer, header, &buf[payload_range], None, reply_queue, channel, conn) {
                Dispatched::Done => {}
                Dispatched::Delivered => conn.delivered += 1,
                step => return Run::Wait(step),
            }
        })
    }

    /// Handles one frame read from `peer`. `frame` is the whole frame when it has a buffer of its
    /// own (its attached payloads are then sliced from it, not copied).
    #[allow(clippy::too_many_arguments)]
    fn dispatch(
        &self,
        transport: &Arc<dyn Transport>,
        peer: &Arc<Peer>,
        header: FrameHeader,
        payload: &[u8],
        frame: Option<&Bytes>,
        reply_queue: &SendQueue,
        channel: usize,
        conn: &mut ConnState,
    ) -> Dispatched {
        if self.faults.is_partitioned(peer.id) {
            return Dispatched::Done;
        }
        match header.kind {
            FrameKind::Message => self.on_message(peer, header, payload, frame, conn),
            FrameKind::Reply => {
                self.complete_reply(transport, peer.id, &peer.name, header, payload, frame);
                Dispatched::Done
            }
            FrameKind::Ack => {
                match decode_acks(payload) {
                    Ok(seqs) => peer.acks.acked(&seqs),
                    Err(error) => tracing::warn!(peer = %peer.name, %error, "bad ack frame"),
                }
                Dispatched::Done
            }
            FrameKind::Control => {
                let numbered = header.flags & flags::ACK_REQUESTED != 0;
                let decoded = match numbered {
                    true => Control::decode_numbered(payload).map(|(seq, control)| (Some(seq), control)),
                    false => Control::decode(payload).map(|control| (None, control)),
                };
                match decoded {
                    Ok((seq, control)) => {
                        if seq.is_none_or(|seq| self.first_arrival(peer, seq, conn)) {
                            self.on_control(peer, control);
                        }
                    }
                    Err(error) => {
                        self.counters.bad_frames.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(peer = %peer.name, %error, "bad control frame");
                    }
                }
                Dispatched::Done
            }
            FrameKind::Ping => {
                reply_queue.push_frame(FrameKind::Pong, channel as u16, &[]);
                Dispatched::Done
            }
            FrameKind::Pong => {
                // Evidence of life for probes (a partitioned peer's frames never get here).
                peer.pong.notify_waiters();
                Dispatched::Done
            }
            FrameKind::Close => Dispatched::Close("peer closed the connection".into()),
            other => {
                self.counters.bad_frames.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(peer = %peer.name, kind = ?other, "handshake frame on an open connection");
                Dispatched::Close("protocol violation".into())
            }
        }
    }

    /// Waits out a delivery into a full mailbox (backpressure reaches the connection), counts
    /// it; `Err` says why the connection must close.
    async fn finish_dispatch(&self, step: Dispatched, peer: &Peer, conn: &mut ConnState) -> Result<(), String> {
        match step {
            Dispatched::Done => {}
            Dispatched::Delivered => conn.delivered += 1,
            Dispatched::Full { wait, count } => {
                let _waiting = peer.waiting_for_room();
                let delivered = FinishOnDrop { wait: Some(wait), runtime: self.runtime.clone() }.await;
                conn.delivered += delivered;
                self.counters.dead_letters.fetch_add(count.saturating_sub(delivered), Ordering::Relaxed);
            }
            Dispatched::Close(reason) => return Err(reason),
        }
        Ok(())
    }

    /// Delivers one Message frame. The first message of a series of consecutive messages for one
    /// actor goes to its mailbox at once (`Delivered`, or `Full` to wait for room); the next ones
    /// join the connection's batch for that actor ([`CachedTarget::batch`]), handed over by
    /// [`flush_batch`](Self::flush_batch) when the series ends. When this message switches to
    /// another actor, the previous actor's batch is handed over first, and if that must wait,
    /// the wait is returned and this message starts the new actor's batch.
    fn on_message(
        &self,
        peer: &Peer,
        header: FrameHeader,
        payload: &[u8],
        frame: Option<&Bytes>,
        conn: &mut ConnState,
    ) -> Dispatched {
        let Some((target, type_tag, body, attached)) = self.read_message(peer, header, payload, frame, conn) else {
            return Dispatched::Done;
        };
        let mut ended = Dispatched::Done;
        if !matches!(&conn.cache, Some(c) if c.id == target) {
            ended = self.flush_batch(peer, conn);
            conn.cache = self.exported_local(target).map(|inbound| CachedTarget {
                id: target,
                type_tag: inbound.type_tag(),
                inbound,
                batch: None,
                in_batch: false,
            });
        }
        let Some(cached) = &mut conn.cache else {
            self.dead_letters(peer, target, 1);
            return ended;
        };
        if !self.check_type(&*cached.inbound, cached.type_tag, &peer.name, (target, type_tag)) {
            return ended;
        }
        let starts_batch = !std::mem::replace(&mut cached.in_batch, true);
        if starts_batch && matches!(ended, Dispatched::Done) {
            return match self.deliver_checked(&*cached.inbound, &peer.name, target, body, attached) {
                Some(Delivery::Accepted) => Dispatched::Delivered,
                Some(Delivery::Full(wait)) => Dispatched::Full { wait, count: 1 },
                Some(Delivery::Closed) => {
                    self.dead_letters(peer, target, 1);
                    Dispatched::Done
                }
                None => Dispatched::Done,
            };
        }
        let batch = cached.batch.get_or_insert_with(|| cached.inbound.batch());
        if let Err(error) = batch.add(body, attached) {
            self.counters.decode_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(peer = %peer.name, %target, %error, "undecodable message dropped");
        }
        ended
    }

    /// Hands the connection's batch of messages for its cached actor to that actor's mailbox
    /// (counted as delivered); returns the wait when the mailbox has no room for all of them.
    fn flush_batch(&self, peer: &Peer, conn: &mut ConnState) -> Dispatched {
        let Some(cached) = &mut conn.cache else { return Dispatched::Done };
        cached.in_batch = false;
        let Some(batch) = cached.batch.as_mut().filter(|batch| !batch.is_empty()) else { return Dispatched::Done };
        let flushed = batch.flush();
        conn.delivered += flushed.accepted;
        match flushed.rest {
            None => Dispatched::Done,
            Some(FlushRest::Full { wait, count }) => Dispatched::Full { wait, count },
            Some(FlushRest::Closed(count)) => {
                let target = cached.id;
                self.dead_letters(peer, target, count);
                Dispatched::Done
            }
        }
    }

    /// Reads a Message frame's envelope and body: `None` when it is not for an actor here (a
    /// duplicate, injected loss, a malformed frame; counted and logged), else its target, type
    /// tag, postcard body and attached payloads.
    fn read_message<'a>(
        &self,
        peer: &Peer,
        header: FrameHeader,
        payload: &'a [u8],
        frame: Option<&Bytes>,
        conn: &mut ConnState,
    ) -> Option<(ActorId, u64, &'a [u8], Option<Bytes>)> {
        let acked = header.flags & flags::ACK_REQUESTED != 0;
        let channel = header.channel as usize;
        let (env, body) = match Envelope::read(payload, acked) {
            Ok(x) => x,
            Err(error) => {
                self.counters.bad_frames.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(peer = %peer.name, %error, "bad message envelope");
                return None;
            }
        };
        let target = ActorId { node: NodeId(env.target_node), serial: env.target_serial };
        // Injected loss happens "on the wire": before the message is acknowledged.
        if self.faults.active() {
            let info = MessageInfo { peer: peer.id, target, channel, type_tag: env.type_tag, acked };
            if self.faults.on_receive(&info) == Verdict::Drop {
                return None;
            }
        }
        if env.seq.is_some_and(|seq| !self.first_arrival(peer, seq, conn)) {
            return None;
        }
        let (body, attached) = self.split_body(&peer.name, header, body, frame)?;
        Some((target, env.type_tag, body, attached))
    }

    /// A numbered frame (an acknowledged message, or a numbered control message) numbered `seq`
    /// arrived from `peer`: true the first time, when it is to be handled. Its acknowledgement
    /// goes with the connection's next batch, the first time and for every copy (the sender
    /// missed the earlier acknowledgement); copies are counted as duplicates.
    fn first_arrival(&self, peer: &Peer, seq: u64, conn: &mut ConnState) -> bool {
        match peer.acks.arrival(seq) {
            Arrival::First => {
                conn.acks.push(seq);
                true
            }
            Arrival::Duplicate => {
                conn.acks.push(seq);
                self.counters.duplicates.fetch_add(1, Ordering::Relaxed);
                false
            }
            Arrival::OutOfWindow => {
                // No honest sender gets this far ahead: neither recorded nor acknowledged.
                self.counters.bad_frames.fetch_add(1, Ordering::Relaxed);
                if !std::mem::replace(&mut conn.warned_window, true) {
                    tracing::warn!(peer = %peer.name, seq, "acknowledged frame numbered far ahead; dropped (logged once per connection)");
                }
                false
            }
        }
    }

    /// A body's postcard part and its attached payloads: sliced from `frame` when the frame has a
    /// buffer of its own, else copied out of the shared read buffer. `None` (counted, logged) when
    /// the body is malformed.
    pub(super) fn split_body<'a>(
        &self,
        from: &str,
        header: FrameHeader,
        body: &'a [u8],
        frame: Option<&Bytes>,
    ) -> Option<(&'a [u8], Option<Bytes>)> {
        if header.flags & flags::ATTACHED == 0 {
            return Some((body, None));
        }
        match split_attached(body) {
            Ok((postcard, range)) => {
                let region = &body[range];
                let attached = match frame {
                    Some(frame) => frame.slice_ref(region),
                    None => Bytes::copy_from_slice(region),
                };
                Some((postcard, Some(attached)))
            }
            Err(error) => {
                self.counters.bad_frames.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(peer = %from, %error, "bad attached body");
                None
            }
        }
    }

    /// Hands a message body from node `from_name` to the local actor `inbound` (with its type
    /// tag): checks the tag and decodes. `None` when the message is of the wrong type or does not
    /// decode (counted and logged).
    ///
    /// The caller has made the sending node the codec context ([`troupe_actor::with_codec_context`]):
    /// a reader sets it once for a whole run of frames rather than once per message.
    pub(super) fn deliver_local(
        &self,
        (inbound, inbound_tag): (&dyn Inbound, u64),
        from_name: &str,
        (target, type_tag): (ActorId, u64),
        body: &[u8],
        attached: Option<Bytes>,
    ) -> Option<Delivery> {
        if !self.check_type(inbound, inbound_tag, from_name, (target, type_tag)) {
            return None;
        }
        self.deliver_checked(inbound, from_name, target, body, attached)
    }

    /// False (counted and logged) when a message of type `type_tag` is not what `inbound`, whose
    /// tag is `inbound_tag`, takes.
    fn check_type(
        &self,
        inbound: &dyn Inbound,
        inbound_tag: u64,
        from_name: &str,
        (target, type_tag): (ActorId, u64),
    ) -> bool {
        if inbound_tag != type_tag {
            self.counters.decode_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(peer = %from_name, %target, expected = inbound.type_name(), "message of the wrong type dropped");
            return false;
        }
        true
    }

    /// [`deliver_local`](Self::deliver_local) once the type is known to match.
    fn deliver_checked(
        &self,
        inbound: &dyn Inbound,
        from_name: &str,
        target: ActorId,
        body: &[u8],
        attached: Option<Bytes>,
    ) -> Option<Delivery> {
        match inbound.deliver(body, attached) {
            Ok(delivery) => Some(delivery),
            Err(error) => {
                self.counters.decode_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(peer = %from_name, %target, %error, "undecodable message dropped");
                None
            }
        }
    }

    /// The exported actor `id`, if it is on this node (this incarnation) and still exported.
    pub(super) fn exported_local(&self, id: ActorId) -> Option<Arc<dyn Inbound>> {
        if id.node != self.id {
            return None;
        }
        self.exported.read().get(&id.serial).cloned()
    }

    /// `count` messages for an actor that is gone (or a ref to an earlier incarnation of this node):
    /// counted, and the sender's node is told so its watchers hear of it and its further sends
    /// fail at once.
    fn dead_letters(&self, peer: &Peer, target: ActorId, count: u64) {
        self.counters.dead_letters.fetch_add(count, Ordering::Relaxed);
        tracing::debug!(node = %self.settings.name, %target, "message for an unknown actor dropped");
        self.send_actor_control(peer.id, &Control::Down { target: wire_id(target), reason: WireExit::NoActor });
    }

    /// Completes the ask a Reply frame from node `from` answers.
    pub(super) fn complete_reply(
        &self,
        transport: &Arc<dyn Transport>,
        from: NodeId,
        name: &str,
        frame_header: FrameHeader,
        payload: &[u8],
        frame: Option<&Bytes>,
    ) {
        let (header, body) = match ReplyHeader::read(payload) {
            Ok(x) => x,
            Err(error) => {
                self.counters.bad_frames.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(peer = %name, %error, "bad reply frame");
                return;
            }
        };
        if let Some(Waiting { pending, .. }) = self.answered(&self.replies, header.request, (from, name), "ask") {
            let outcome = match header.status {
                ReplyStatus::Ok => ReplyOutcome::Answered,
                _ => ReplyOutcome::NoReply,
            };
            let (body, attached) = match self.split_body(name, frame_header, body, frame) {
                Some(split) => split,
                None => (&[][..], None),
            };
            troupe_actor::with_codec_context(transport, from, || pending.complete(outcome, body, attached));
        }
    }
}
