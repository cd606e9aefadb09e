//! User-space emulation of long network links.
//!
//! Kernel `tc netem` is not available on our machines, so tests and benchmarks put a [`LinkProxy`] between
//! two nodes: a loopback TCP proxy that forwards every accepted connection to an upstream address and, in each
//! direction independently, delays every byte by a one-way delay, bounds the bytes "on the wire" (the
//! bandwidth-delay limit of a real long link, which is what makes many parallel connections beat one) and
//! optionally limits the bandwidth. It can also cut connections ([`LinkProxy::sever_all`]) and refuse them
//! ([`LinkProxy::set_partitioned`]) to emulate link failures and partitions.
//!
//! How a direction works: a reader task reads chunks of up to 64 KiB from the sending socket and stamps each
//! with its due time (`now + one_way_delay`, plus serialization time when a bandwidth is set); a writer task
//! writes the chunks, in order, to the receiving socket once they are due. Delivery is never early. Tokio's
//! timer rounds deadlines up to whole milliseconds (a 20 ms RTT measured 22.3 ms with it), so the writers wait
//! on a small shared timer thread with sub-millisecond precision instead. The bytes read but not yet
//! acknowledged are bounded by [`LinkConfig::inflight_cap`]: a chunk counts from the moment it is read until
//! one more one-way delay after it was written (the time a real receiver's acknowledgement takes to travel
//! back and open the sender's window), so one connection carries at most `inflight_cap / RTT` bytes per
//! second, as a real TCP connection with that send window does. Once the cap is reached the reader stops
//! reading, the kernel buffers fill up and TCP backpressure reaches the sender.
//!
//! A node can also emulate the link in its own transport, without a proxy: with `[link]` set in its
//! [`NodeConfig`](crate::NodeConfig) (`one_way_delay_ms`, `inflight_bytes`), everything it reads from each
//! connection goes through a [`DelayedReader`], which applies the same delay and window to that receiving
//! direction. Configure both nodes alike for a symmetric link. This costs one memory copy per byte instead of
//! two more TCP hops, which matters when the CPU, not the emulated link, would otherwise be the bottleneck.
//!
//! ```no_run
//! # async fn example(node_b: std::net::SocketAddr) -> std::io::Result<()> {
//! use std::time::Duration;
//! use troupe_net::emulation::{LinkConfig, LinkProxy};
//!
//! let proxy = LinkProxy::start("127.0.0.1:0".parse().unwrap(), node_b, LinkConfig::rtt(Duration::from_millis(20)))
//!     .await?;
//! // Node A now dials `proxy.local_addr()` instead of `node_b`.
//! # let _ = proxy.local_addr();
//! # Ok(())
//! # }
//! ```

use std::cmp::Ordering as CmpOrdering;
use std::collections::{BinaryHeap, VecDeque};
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use parking_lot::{Condvar, Mutex};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::{JoinHandle, JoinSet};

/// The default [`LinkConfig::inflight_cap`]: 4 MiB, Linux's default maximum send buffer, which is what
/// Partisan's `tc netem` experiments effectively had.
pub const DEFAULT_INFLIGHT_CAP: usize = 4 << 20;

/// Largest chunk a reader takes from a socket at once.
const MAX_CHUNK: usize = 64 << 10;
/// Smallest chunk size used when a bandwidth limit makes chunks smaller than [`MAX_CHUNK`].
const MIN_CHUNK: usize = 4 << 10;

/// Properties of an emulated link, applied to each direction independently.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkConfig {
    /// One-way delay added to every byte (RTT = 2 x this).
    pub one_way_delay: Duration,
    /// Bytes that may be unacknowledged per direction per connection: read from one side and not yet
    /// delivered to the other, or delivered less than one one-way delay ago (their acknowledgement is still
    /// on its way back). This is the send window of a real long link, so one connection moves at most
    /// `inflight_cap / round_trip` bytes per second. When reached, the proxy stops reading from the sender, so
    /// TCP backpressure reaches it. Partisan's experiments correspond to 4 MiB (Linux's default
    /// max send buffer, [`DEFAULT_INFLIGHT_CAP`]). A cap of 0 is treated as 1 byte.
    pub inflight_cap: usize,
    /// Optional bandwidth limit per direction per connection in bytes/s (None = unlimited). `Some(0)` is
    /// treated as unlimited.
    pub bandwidth: Option<u64>,
}

impl LinkConfig {
    /// A link with the given round-trip time: one-way delay `rtt / 2`, in-flight cap
    /// [`DEFAULT_INFLIGHT_CAP`] (4 MiB), no bandwidth limit.
    pub fn rtt(rtt: Duration) -> Self {
        LinkConfig { one_way_delay: rtt / 2, inflight_cap: DEFAULT_INFLIGHT_CAP, bandwidth: None }
    }

    /// This config with another in-flight cap (bytes per direction per connection).
    pub fn with_inflight_cap(self, inflight_cap: usize) -> Self {
        LinkConfig { inflight_cap, ..self }
    }

    /// This config with a bandwidth limit in bytes/s per direction per connection.
    pub fn with_bandwidth(self, bytes_per_sec: u64) -> Self {
        LinkConfig { bandwidth: Some(bytes_per_sec), ..self }
    }

    /// The round-trip time of this link (2 x the one-way delay).
    pub fn round_trip(&self) -> Duration {
        self.one_way_delay * 2
    }
}

impl Default for LinkConfig {
    /// No delay, the default 4 MiB in-flight cap, no bandwidth limit.
    fn default() -> Self {
        LinkConfig::rtt(Duration::ZERO)
    }
}

/// Counters of a [`LinkProxy`], since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Connections accepted and forwarded upstream (connections refused during a partition are not counted).
    pub connections: u64,
    /// Bytes delivered from the connecting side to the upstream side.
    pub bytes_up: u64,
    /// Bytes delivered from the upstream side back to the connecting side.
    pub bytes_down: u64,
}

/// What the connections watch: every change means "cut yourself".
#[derive(Debug, Clone, Copy, Default)]
struct Signal {
    /// Bumped by every sever (including partitions).
    epoch: u64,
    /// Set when the proxy is dropped.
    closed: bool,
}

/// State shared by the proxy handle, its accept loop and its connections.
struct Shared {
    config: Mutex<LinkConfig>,
    partitioned: AtomicBool,
    signal: watch::Sender<Signal>,
    connections: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
}

impl Shared {
    fn new(config: LinkConfig) -> Self {
        let (signal, _) = watch::channel(Signal::default());
        Shared {
            config: Mutex::new(config),
            partitioned: AtomicBool::new(false),
            signal,
            connections: AtomicU64::new(0),
            bytes_up: AtomicU64::new(0),
            bytes_down: AtomicU64::new(0),
        }
    }

    fn config(&self) -> LinkConfig {
        *self.config.lock()
    }

    fn sever(&self) {
        self.signal.send_modify(|s| s.epoch += 1);
    }
}

/// A loopback TCP proxy emulating a long network link between a client and an upstream server.
///
/// Every connection accepted on [`local_addr`](LinkProxy::local_addr) is forwarded through a fresh connection
/// to the upstream address, with the [`LinkConfig`] applied to both directions. Dropping the proxy stops the
/// listener and cuts all its connections.
pub struct LinkProxy {
    local_addr: SocketAddr,
    upstream: SocketAddr,
    shared: Arc<Shared>,
    accept_task: JoinHandle<()>,
}

impl fmt::Debug for LinkProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkProxy")
            .field("local_addr", &self.local_addr)
            .field("upstream", &self.upstream)
            .field("config", &self.shared.config())
            .field("partitioned", &self.shared.partitioned.load(Ordering::SeqCst))
            .field("stats", &self.stats())
            .finish()
    }
}

impl LinkProxy {
    /// Listens on `listen` (tests pass `127.0.0.1:0`) and forwards every accepted connection to `upstream`
    /// through a fresh upstream connection, applying `config` to both directions. Runs on the current tokio
    /// runtime (panics outside one, like `tokio::spawn`).
    ///
    /// Fails only if binding `listen` fails; an unreachable upstream shows up as accepted connections that are
    /// closed at once.
    pub async fn start(listen: SocketAddr, upstream: SocketAddr, config: LinkConfig) -> io::Result<LinkProxy> {
        let listener = TcpListener::bind(listen).await?;
        let local_addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(config));
        let accept_task = tokio::spawn(accept_loop(listener, upstream, shared.clone()));
        tracing::debug!(%local_addr, %upstream, ?config, "link proxy started");
        Ok(LinkProxy { local_addr, upstream, shared, accept_task })
    }

    /// The address the proxy listens on: dial this instead of the upstream address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address every connection is forwarded to.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// The current config.
    pub fn config(&self) -> LinkConfig {
        self.shared.config()
    }

    /// Changes the config for new bytes on all connections (existing queued bytes keep their due time).
    pub fn set_config(&self, config: LinkConfig) {
        tracing::debug!(local_addr = %self.local_addr, ?config, "link proxy config changed");
        *self.shared.config.lock() = config;
    }

    /// Cuts every current connection (both sides see a reset/EOF) — to emulate a link failure. New connections
    /// still work.
    pub fn sever_all(&self) {
        tracing::debug!(local_addr = %self.local_addr, "link proxy severing all connections");
        self.shared.sever();
    }

    /// While true, new connections are refused (accepted then closed immediately) and existing ones are
    /// severed: a partition.
    pub fn set_partitioned(&self, on: bool) {
        tracing::debug!(local_addr = %self.local_addr, on, "link proxy partition");
        // Set the flag before severing: a connection accepted concurrently either sees the flag or the sever.
        self.shared.partitioned.store(on, Ordering::SeqCst);
        if on {
            self.shared.sever();
        }
    }

    /// Whether the proxy is currently partitioned.
    pub fn is_partitioned(&self) -> bool {
        self.shared.partitioned.load(Ordering::SeqCst)
    }

    /// Counters: connections accepted, bytes forwarded each way.
    pub fn stats(&self) -> LinkStats {
        LinkStats {
            connections: self.shared.connections.load(Ordering::Relaxed),
            bytes_up: self.shared.bytes_up.load(Ordering::Relaxed),
            bytes_down: self.shared.bytes_down.load(Ordering::Relaxed),
        }
    }
}

impl Drop for LinkProxy {
    /// Stops the listener and all its connections.
    fn drop(&mut self) {
        self.accept_task.abort();
        self.shared.signal.send_modify(|s| s.closed = true);
    }
}

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, shared: Arc<Shared>) {
    loop {
        let (client, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // E.g. out of file descriptors: back off instead of spinning.
                tracing::debug!(error = %e, "link proxy accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        // Subscribe before checking the partition flag (see `set_partitioned`).
        let signal = shared.signal.subscribe();
        if shared.partitioned.load(Ordering::SeqCst) || signal.borrow().closed {
            tracing::debug!(%peer, "link proxy refusing connection (partitioned)");
            drop(client);
            continue;
        }
        shared.connections.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(run_connection(client, peer, upstream, shared.clone(), signal));
    }
}

/// Which way a direction carries bytes, for the counters.
#[derive(Debug, Clone, Copy)]
enum Way {
    Up,
    Down,
}

async fn run_connection(
    client: TcpStream,
    peer: SocketAddr,
    upstream: SocketAddr,
    shared: Arc<Shared>,
    mut signal: watch::Receiver<Signal>,
) {
    let server = tokio::select! {
        res = TcpStream::connect(upstream) => match res {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(%peer, %upstream, error = %e, "link proxy cannot reach upstream");
                return;
            }
        },
        _ = signal.changed() => {
            tracing::debug!(%peer, "link proxy connection severed while connecting upstream");
            return;
        }
    };
    // The proxy forwards chunks as soon as they are due: Nagle's algorithm would add delay on top.
    for s in [&client, &server] {
        if let Err(e) = s.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "link proxy cannot set TCP_NODELAY");
        }
    }
    let (client_r, client_w) = client.into_split();
    let (server_r, server_w) = server.into_split();

    let mut tasks = JoinSet::new();
    spawn_direction(&mut tasks, client_r, server_w, shared.clone(), Way::Up);
    spawn_direction(&mut tasks, server_r, client_w, shared, Way::Down);

    loop {
        tokio::select! {
            res = tasks.join_next() => match res {
                None => {
                    tracing::debug!(%peer, "link proxy connection closed");
                    return;
                }
                Some(Ok(Ok(()))) => {}
                Some(Ok(Err(e))) => {
                    tracing::debug!(%peer, error = %e, "link proxy connection failed; tearing it down");
                    return; // Dropping `tasks` aborts the rest and closes both sockets.
                }
                Some(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "link proxy task died; tearing the connection down");
                    return;
                }
            },
            _ = signal.changed() => {
                tracing::debug!(%peer, "link proxy connection severed");
                return;
            }
        }
    }
}

/// Bytes read from one side and not yet acknowledged (written to the other, plus the ack's way back).
struct Flow {
    inflight: AtomicUsize,
    /// Signalled whenever acknowledged bytes leave the window.
    drained: Notify,
}

impl Flow {
    /// `n` bytes were acknowledged: they leave the window and a waiting reader may go on.
    fn acknowledge(&self, n: usize) {
        self.inflight.fetch_sub(n, Ordering::AcqRel);
        self.drained.notify_one();
    }
}

/// Spawns the reader and writer tasks of one direction.
fn spawn_direction(
    tasks: &mut JoinSet<io::Result<()>>,
    from: OwnedReadHalf,
    to: OwnedWriteHalf,
    shared: Arc<Shared>,
    way: Way,
) {
    let flow = Arc::new(Flow { inflight: AtomicUsize::new(0), drained: Notify::new() });
    // Unbounded, but the reader never queues more than the in-flight cap.
    let (tx, rx) = mpsc::unbounded_channel();
    // Acknowledgements on their way back: (when they arrive, bytes).
    let (ack_tx, ack_rx) = mpsc::unbounded_channel();
    tasks.spawn(read_side(from, tx, shared.clone(), flow.clone()));
    tasks.spawn(write_side(to, rx, ack_tx, shared.clone(), flow.clone(), way));
    tasks.spawn(ack_side(ack_rx, flow));
}

/// Takes delivered bytes out of the window once their acknowledgement has travelled back.
async fn ack_side(mut acks: mpsc::UnboundedReceiver<(Instant, usize)>, flow: Arc<Flow>) -> io::Result<()> {
    while let Some((due, n)) = acks.recv().await {
        if due > Instant::now() {
            sleep_until(due).await;
        }
        flow.acknowledge(n);
    }
    Ok(())
}

/// Reads chunks, stamps them with their due time and queues them, respecting the in-flight cap. Returns at EOF
/// (dropping the queue's sender, which makes the writer shut its side down after the queued bytes).
async fn read_side(
    mut from: OwnedReadHalf,
    queue: mpsc::UnboundedSender<(Instant, Bytes)>,
    shared: Arc<Shared>,
    flow: Arc<Flow>,
) -> io::Result<()> {
    let mut buf = BytesMut::with_capacity(4 * MAX_CHUNK);
    // When the emulated wire is free again (bandwidth limit only).
    let mut wire_free = Instant::now();
    loop {
        let limits = shared.config();
        let cap = limits.inflight_cap.max(1);
        let inflight = flow.inflight.load(Ordering::Acquire);
        if inflight >= cap {
            // `notify_one` stores a permit, so a drain between the load and here is not lost.
            flow.drained.notified().await;
            continue;
        }
        let max_chunk = match limits.bandwidth.filter(|&b| b > 0) {
            // About 2 ms worth of bytes per chunk, so slow links deliver smoothly.
            Some(b) => usize::try_from(b / 500).unwrap_or(MAX_CHUNK).clamp(MIN_CHUNK, MAX_CHUNK),
            None => MAX_CHUNK,
        };
        let want = max_chunk.min(cap - inflight);
        if buf.capacity() < want {
            buf.reserve(want.max(MAX_CHUNK));
        }
        let n = from.read_buf(&mut (&mut buf).limit(want)).await?;
        if n == 0 {
            return Ok(());
        }
        let now = Instant::now();
        // The config may have changed while waiting for bytes: new bytes get the new config.
        let config = shared.config();
        let due = match config.bandwidth.filter(|&b| b > 0) {
            Some(b) => {
                let start = wire_free.max(now);
                wire_free = start + Duration::from_secs_f64(n as f64 / b as f64);
                wire_free + config.one_way_delay
            }
            None => now + config.one_way_delay,
        };
        flow.inflight.fetch_add(n, Ordering::AcqRel);
        if queue.send((due, buf.split().freeze())).is_err() {
            // The writer is gone: it failed, and the connection is being torn down.
            return Ok(());
        }
    }
}

/// Writes queued chunks once they are due, in order; shuts its side down once the queue is closed and empty.
async fn write_side(
    mut to: OwnedWriteHalf,
    mut queue: mpsc::UnboundedReceiver<(Instant, Bytes)>,
    acks: mpsc::UnboundedSender<(Instant, usize)>,
    shared: Arc<Shared>,
    flow: Arc<Flow>,
    way: Way,
) -> io::Result<()> {
    let counter = match way {
        Way::Up => &shared.bytes_up,
        Way::Down => &shared.bytes_down,
    };
    while let Some((due, chunk)) = queue.recv().await {
        if due > Instant::now() {
            sleep_until(due).await;
        }
        to.write_all(&chunk).await?;
        let n = chunk.len();
        drop(chunk); // Lets the reader reuse the buffer sooner.
                     // The receiver's acknowledgement takes another one-way delay to reach the sender.
        let back = shared.config().one_way_delay;
        if back.is_zero() || acks.send((Instant::now() + back, n)).is_err() {
            flow.acknowledge(n);
        }
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
    to.shutdown().await
}

/// A reader that sees the bytes of another reader as if they had crossed an emulated link: each byte one
/// one-way delay after it arrived, with at most [`LinkConfig::inflight_cap`] bytes unacknowledged (read, or
/// handed out less than a one-way delay ago: the same window as one direction of a [`LinkProxy`], without a
/// second TCP hop). The transport wraps what it reads from a connection in one when a node is configured with
/// link emulation. While the window is full it does not read, so the kernel buffers fill and TCP backpressure
/// reaches the sender.
///
/// Bytes are stamped when this reader is polled and finds them, so a consumer that is busy for a while adds
/// that while to the delay of the bytes that arrived meanwhile (like a slow receiver on a real link). The
/// bandwidth limit of [`LinkConfig`] is not applied here. Timers run on the process-wide precise link timer.
///
/// The proxy keeps its own reader, writer and acknowledgement tasks for the same rules: it reads eagerly while
/// its writer waits on a slow receiver, and it follows [`LinkProxy::set_config`] and the bandwidth limit. Built
/// on those tasks (through an in-process pipe), this reader cost a second copy of every byte and measured 30%
/// slower in `bench remote` echo20ms (1240 against 1700 ops/s), which is why it does the work inline.
pub struct DelayedReader<R> {
    inner: R,
    config: LinkConfig,
    /// Bytes read from `inner`, not yet handed out, with the time they may be.
    line: VecDeque<(Instant, Bytes)>,
    /// Bytes handed out whose acknowledgement is still on its way back: (when it arrives, bytes).
    acks: VecDeque<(Instant, usize)>,
    /// Bytes in `line` plus bytes in `acks`.
    inflight: usize,
    buf: BytesMut,
    /// How `inner` ended, to report once `line` is empty.
    end: Option<io::Result<()>>,
    /// The deadline a timer wake-up is registered for.
    armed: Option<Instant>,
}

impl<R> fmt::Debug for DelayedReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DelayedReader")
            .field("config", &self.config)
            .field("inflight", &self.inflight)
            .field("queued_chunks", &self.line.len())
            .finish_non_exhaustive()
    }
}

impl<R: AsyncRead + Unpin> DelayedReader<R> {
    /// Delays what is read from `inner` by `config`.
    pub fn new(inner: R, config: LinkConfig) -> Self {
        DelayedReader {
            inner,
            config,
            line: VecDeque::new(),
            acks: VecDeque::new(),
            inflight: 0,
            buf: BytesMut::new(),
            end: None,
            armed: None,
        }
    }

    /// Reads what `inner` has ready while the window has room, stamping it with its due time.
    fn fill(&mut self, cx: &mut Context<'_>) {
        let cap = self.config.inflight_cap.max(1);
        while self.end.is_none() && self.inflight < cap {
            let want = MAX_CHUNK.min(cap - self.inflight);
            if self.buf.capacity() < want {
                self.buf.reserve(want.max(MAX_CHUNK));
            }
            let mut limited = (&mut self.buf).limit(want);
            // Polled once and dropped: tokio's `read_buf` keeps no state between polls.
            let read = std::pin::pin!(self.inner.read_buf(&mut limited));
            match read.poll(cx) {
                Poll::Ready(Ok(0)) => self.end = Some(Ok(())),
                Poll::Ready(Ok(n)) => {
                    self.inflight += n;
                    let due = Instant::now() + self.config.one_way_delay;
                    self.line.push_back((due, self.buf.split().freeze()));
                }
                Poll::Ready(Err(e)) => self.end = Some(Err(e)),
                Poll::Pending => break,
            }
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for DelayedReader<R> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            let now = Instant::now();
            while let Some(&(due, n)) = this.acks.front() {
                if due > now {
                    break;
                }
                this.acks.pop_front();
                this.inflight -= n;
            }
            this.fill(cx);
            if let Some((due, chunk)) = this.line.front_mut() {
                if *due <= now {
                    let n = chunk.len().min(out.remaining());
                    out.put_slice(&chunk[..n]);
                    chunk.advance(n);
                    if chunk.is_empty() {
                        this.line.pop_front();
                    }
                    // The acknowledgement takes another one-way delay to reach the sender.
                    match this.config.one_way_delay {
                        d if d.is_zero() => this.inflight -= n,
                        d => this.acks.push_back((now + d, n)),
                    }
                    return Poll::Ready(Ok(()));
                }
            } else if let Some(end) = this.end.take() {
                // Report an error once; EOF from then on.
                this.end = Some(Ok(()));
                return Poll::Ready(end);
            }
            // Wait for the next due chunk, or (window full) the next acknowledgement; `inner` has our
            // waker if the window has room.
            let window_full = this.inflight >= this.config.inflight_cap.max(1);
            let next_ack = this.acks.front().map(|&(due, _)| due).filter(|_| window_full);
            let wake = match (this.line.front().map(|&(due, _)| due), next_ack) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let Some(wake) = wake else { return Poll::Pending };
            if wake <= Instant::now() {
                continue;
            }
            if this.armed != Some(wake) {
                this.armed = Some(wake);
                match PreciseTimer::get() {
                    Some(timer) => timer.register(wake, cx.waker().clone()),
                    None => {
                        // No timer thread: poll again soon (coarse, but never early).
                        let waker = cx.waker().clone();
                        tokio::spawn(async move {
                            tokio::time::sleep_until(tokio::time::Instant::from_std(wake)).await;
                            waker.wake();
                        });
                    }
                }
            }
            return Poll::Pending;
        }
    }
}

/// A future that completes at `due` (never earlier), with sub-millisecond precision, woken by [`PreciseTimer`].
struct SleepUntil {
    due: Instant,
    timer: &'static PreciseTimer,
}

/// Waits until `due`, never returning earlier.
async fn sleep_until(due: Instant) {
    match PreciseTimer::get() {
        Some(timer) => SleepUntil { due, timer }.await,
        None => tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await,
    }
}

impl Future for SleepUntil {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.due {
            return Poll::Ready(());
        }
        // A spurious poll registers again; the stale entry only causes one extra wake-up.
        self.timer.register(self.due, cx.waker().clone());
        Poll::Pending
    }
}

/// One timer thread for the whole process: a heap of deadlines, slept on with a condvar (futex timeouts have
/// nanosecond resolution, plus the kernel's ~50 us timer slack), waking tokio tasks when their deadline passed.
struct PreciseTimer {
    heap: Mutex<BinaryHeap<TimerEntry>>,
    changed: Condvar,
}

struct TimerEntry {
    due: Instant,
    waker: Waker,
}

impl PartialEq for TimerEntry {
    fn eq(&self, other: &Self) -> bool {
        self.due == other.due
    }
}

impl Eq for TimerEntry {}

impl PartialOrd for TimerEntry {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

impl Ord for TimerEntry {
    /// Reversed, so the max-heap pops the earliest deadline first.
    fn cmp(&self, other: &Self) -> CmpOrdering {
        other.due.cmp(&self.due)
    }
}

impl PreciseTimer {
    /// The process-wide timer, started on first use; `None` if its thread cannot be started.
    fn get() -> Option<&'static PreciseTimer> {
        static TIMER: OnceLock<Option<&'static PreciseTimer>> = OnceLock::new();
        *TIMER.get_or_init(|| {
            let timer: &'static PreciseTimer =
                Box::leak(Box::new(PreciseTimer { heap: Mutex::new(BinaryHeap::new()), changed: Condvar::new() }));
            match std::thread::Builder::new().name("troupe-link-timer".into()).spawn(move || timer.run()) {
                Ok(_) => Some(timer),
                Err(e) => {
                    tracing::debug!(error = %e, "cannot start the link timer thread; using tokio's 1 ms timer");
                    None
                }
            }
        })
    }

    fn register(&self, due: Instant, waker: Waker) {
        let mut heap = self.heap.lock();
        let earliest = heap.peek().is_none_or(|top| due < top.due);
        heap.push(TimerEntry { due, waker });
        drop(heap);
        if earliest {
            self.changed.notify_one();
        }
    }

    fn run(&self) {
        let mut due_wakers = Vec::new();
        let mut heap = self.heap.lock();
        loop {
            let now = Instant::now();
            while heap.peek().is_some_and(|top| top.due <= now) {
                if let Some(entry) = heap.pop() {
                    due_wakers.push(entry.waker);
                }
            }
            if !due_wakers.is_empty() {
                // Wake outside the lock: waking may take a while and registrations must not wait for it.
                drop(heap);
                due_wakers.drain(..).for_each(Waker::wake);
                heap = self.heap.lock();
                continue;
            }
            match heap.peek().map(|top| top.due) {
                Some(due) => {
                    self.changed.wait_until(&mut heap, due);
                }
                None => self.changed.wait(&mut heap),
            }
        }
    }
}
