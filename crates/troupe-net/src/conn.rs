//! One connection's I/O: dialing and accepting (TCP, optionally TLS), the handshake, and the
//! writer loop that drains a lane's send queue. The reader loop, which dispatches frames, lives
//! in `core`.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use troupe_wire::{
    ConnPurpose, Established, FrameDecoder, HandshakeConfig, HandshakeError, HandshakeStep, Initiator, Responder,
    MAX_HANDSHAKE_PAYLOAD,
};

use crate::framebuf::{FrameBuf, QUIET_SHRINK};
use crate::queue::{SendQueue, Taken};
use crate::tls::TlsContext;

/// The read half of a connection.
pub(crate) type ReadHalf = Box<dyn AsyncRead + Unpin + Send>;
/// The write half of a connection.
pub(crate) enum WriteHalf {
    /// Plain TCP: shared, so senders can write an urgent frame themselves when the lane is idle
    /// (see [`SendQueue::push_now`]).
    Tcp(Arc<OwnedWriteHalf>),
    /// Any other stream (TLS): written by the lane's writer task only.
    Stream(Box<dyn AsyncWrite + Unpin + Send>),
}

impl WriteHalf {
    pub(crate) async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            WriteHalf::Tcp(socket) => {
                let mut buf = FrameBuf::default();
                buf.inline().extend_from_slice(bytes);
                buf.write_tcp(socket, &AtomicU64::new(0)).await.map(drop)
            }
            WriteHalf::Stream(stream) => {
                stream.write_all(bytes).await?;
                stream.flush().await
            }
        }
    }

    pub(crate) async fn shutdown(&mut self) {
        match self {
            // The socket's write side shuts when its last handle is dropped.
            WriteHalf::Tcp(_) => {}
            WriteHalf::Stream(stream) => {
                let _ = stream.shutdown().await;
            }
        }
    }
}

/// Why setting up a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// TCP connect, TLS or socket I/O failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// TLS setup failed.
    #[error("TLS: {0}")]
    Tls(String),
    /// The handshake failed.
    #[error("handshake: {0}")]
    Handshake(#[from] HandshakeError),
    /// The peer did not finish the handshake in time.
    #[error("handshake timed out after {0:?}")]
    Timeout(Duration),
    /// The peer closed the connection during the handshake.
    #[error("connection closed during the handshake")]
    Closed,
    /// This node refused an authenticated peer (it is cut off from it, shutting down, or has
    /// quarantined it) and
    /// told it so in a Reject, instead of accepting the connection and closing it at once.
    #[error("refused: {0}")]
    Refused(&'static str),
}

/// A connection that finished its handshake.
pub(crate) struct Opened {
    pub(crate) reader: ReadHalf,
    pub(crate) writer: WriteHalf,
    pub(crate) established: Established,
    /// Bytes read past the handshake (the start of the first frames).
    pub(crate) leftover: Vec<u8>,
}

fn split_tcp(tcp: TcpStream) -> (ReadHalf, WriteHalf) {
    let (r, w) = tcp.into_split();
    (Box::new(r), WriteHalf::Tcp(Arc::new(w)))
}

fn split_any<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(stream: S) -> (ReadHalf, WriteHalf) {
    let (r, w) = tokio::io::split(stream);
    (Box::new(r), WriteHalf::Stream(Box::new(w)))
}

/// Dials `addr`, sets up TLS if configured, and runs the initiator handshake.
pub(crate) async fn dial(
    addr: SocketAddr,
    tls: Option<&TlsContext>,
    config: HandshakeConfig,
    purpose: ConnPurpose,
    connect_timeout: Duration,
    handshake_timeout: Duration,
) -> Result<Opened, ConnectError> {
    let tcp = tokio::time::timeout(connect_timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| ConnectError::Timeout(connect_timeout))??;
    tcp.set_nodelay(true)?;
    let work = async move {
        let (mut reader, mut writer) = match tls {
            None => split_tcp(tcp),
            Some(tls) => split_any(tls.connect(tcp, addr).await.map_err(|e| ConnectError::Tls(e.to_string()))?),
        };
        let (mut machine, hello) = Initiator::start(config, purpose, rand::random());
        writer.write_all(&hello).await?;
        let (established, leftover) = drive(&mut reader, &mut writer, |f| machine.receive(f), |_| None).await?;
        Ok(Opened { reader, writer, established, leftover })
    };
    tokio::time::timeout(handshake_timeout, work).await.map_err(|_| ConnectError::Timeout(handshake_timeout))?
}

/// Runs the responder handshake on an accepted connection. Once the peer has proved itself,
/// `refuse` may name a reason not to take it: the peer gets a Reject with that reason instead of
/// the Welcome (a failed dial to it, which it backs off from, rather than a connection that
/// closes at once and that it would redial at once).
pub(crate) async fn accept(
    tcp: TcpStream,
    tls: Option<&TlsContext>,
    config: HandshakeConfig,
    handshake_timeout: Duration,
    refuse: impl FnOnce(&Established) -> Option<&'static str> + Send,
) -> Result<Opened, ConnectError> {
    tcp.set_nodelay(true)?;
    let work = async move {
        let (mut reader, mut writer) = match tls {
            None => split_tcp(tcp),
            Some(tls) => split_any(tls.accept(tcp).await.map_err(|e| ConnectError::Tls(e.to_string()))?),
        };
        let mut machine = Responder::new(config, rand::random());
        let (established, leftover) = drive(&mut reader, &mut writer, |f| machine.receive(f), refuse).await?;
        Ok(Opened { reader, writer, established, leftover })
    };
    tokio::time::timeout(handshake_timeout, work).await.map_err(|_| ConnectError::Timeout(handshake_timeout))?
}

/// Feeds handshake frames to a state machine until it finishes. A handshake that succeeds is
/// refused if `refuse` gives a reason: a Reject goes out instead of the machine's last bytes.
async fn drive(
    reader: &mut ReadHalf,
    writer: &mut WriteHalf,
    mut receive: impl FnMut(troupe_wire::Frame<'_>) -> HandshakeStep,
    refuse: impl FnOnce(&Established) -> Option<&'static str>,
) -> Result<(Established, Vec<u8>), ConnectError> {
    let mut refuse = Some(refuse);
    let decoder = FrameDecoder::new(MAX_HANDSHAKE_PAYLOAD);
    let mut buf = Vec::with_capacity(4096);
    loop {
        loop {
            let (step, used) = match decoder.decode(&buf).map_err(HandshakeError::from)? {
                None => break,
                Some((frame, used)) => (receive(frame), used),
            };
            buf.drain(..used);
            match step {
                HandshakeStep::Send(bytes) => writer.write_all(&bytes).await?,
                HandshakeStep::Done(bytes, established) => {
                    if let Some(reason) = refuse.take().and_then(|refuse| refuse(&established)) {
                        let _ = writer.write_all(&troupe_wire::encode_reject(reason)).await;
                        writer.shutdown().await;
                        return Err(ConnectError::Refused(reason));
                    }
                    if !bytes.is_empty() {
                        writer.write_all(&bytes).await?;
                    }
                    return Ok((established, buf));
                }
                HandshakeStep::Fail(bytes, error) => {
                    if !bytes.is_empty() {
                        let _ = writer.write_all(&bytes).await;
                        writer.shutdown().await;
                    }
                    return Err(error.into());
                }
            }
        }
        if buf.len() > MAX_HANDSHAKE_PAYLOAD * 2 {
            return Err(ConnectError::Closed);
        }
        let mut chunk = [0u8; 4096];
        let n = reader.read(&mut chunk).await?;
        if n == 0 {
            return Err(ConnectError::Closed);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Writes everything pushed into `queue` until the queue closes, the connection fails or
/// `stop` fires. Returns the I/O error, if any.
///
/// A plain TCP socket is also offered to the queue for inline writes by senders (attached for
/// as long as this loop runs); the queue makes sure only one party writes at a time.
pub(crate) async fn write_loop(
    mut writer: WriteHalf,
    queue: Arc<SendQueue>,
    stop: Arc<tokio::sync::Notify>,
    written: impl Fn(usize),
    muted: impl Fn() -> bool,
) -> std::io::Result<()> {
    let socket = match &writer {
        WriteHalf::Tcp(socket) => Some(socket.clone()),
        WriteHalf::Stream(_) => None,
    };
    // Detached however this ends (the task may be aborted).
    let attached = Attached { generation: queue.attach(socket), queue: &queue };
    let result = drain(&mut writer, &attached, &stop, written, muted).await;
    drop(attached);
    if result.is_ok() {
        writer.shutdown().await;
    }
    result
}

/// A writer's hold on its queue; withdraws the connection when dropped.
struct Attached<'a> {
    queue: &'a SendQueue,
    generation: u64,
}

impl Drop for Attached<'_> {
    fn drop(&mut self) {
        self.queue.detach(self.generation);
    }
}

async fn drain(
    writer: &mut WriteHalf,
    attached: &Attached<'_>,
    stop: &tokio::sync::Notify,
    written: impl Fn(usize),
    muted: impl Fn() -> bool,
) -> std::io::Result<()> {
    let Attached { queue, generation } = *attached;
    let mut buf = FrameBuf::default();
    loop {
        match queue.take(&mut buf, generation) {
            Taken::Closed => return Ok(()),
            Taken::Nothing => {
                // A large buffer is kept through the pauses of a stream and given back once the
                // lane has stayed quiet for a while.
                let spare = buf.holds_spare();
                tokio::select! {
                    _ = queue.ready.notified() => continue,
                    _ = stop.notified() => return Ok(()),
                    _ = tokio::time::sleep(QUIET_SHRINK), if spare => {
                        buf.shrink_when_quiet();
                        continue;
                    }
                }
            }
            Taken::Frames => {}
        }
        if muted() {
            // Cut off from the other side (`Node::partition`): the connection ends here, as a
            // broken link would, and what was taken is dropped with it (acknowledged frames stay
            // kept for retransmission). Not just dropped on a connection that goes on: a frame
            // cut in half would corrupt the stream should the cut heal.
            buf.clear();
            queue.written(generation);
            return Ok(());
        }
        let result = match writer {
            WriteHalf::Tcp(socket) => buf.write_tcp(socket, &queue.moved).await,
            // A stream may keep what it accepted (TLS keeps the records that did not fit in a
            // full socket) until flushed: with nothing after them, they would wait for the next
            // frame, an idle ping away.
            WriteHalf::Stream(stream) => match buf.write_to(stream, &queue.moved).await {
                Ok(n) => stream.flush().await.map(|()| n),
                Err(e) => Err(e),
            },
        };
        queue.written(generation);
        written(result?);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tokio::io::AsyncWrite;

    /// Keeps what it is given until flushed, as TLS may when the socket is full.
    #[derive(Clone, Default)]
    struct Buffering {
        held: Arc<parking_lot::Mutex<Vec<u8>>>,
        delivered: Arc<parking_lot::Mutex<Vec<u8>>>,
    }

    impl AsyncWrite for Buffering {
        fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, bytes: &[u8]) -> Poll<std::io::Result<usize>> {
            self.held.lock().extend_from_slice(bytes);
            Poll::Ready(Ok(bytes.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            let held = std::mem::take(&mut *self.held.lock());
            self.delivered.lock().extend_from_slice(&held);
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            self.poll_flush(cx)
        }
    }

    #[tokio::test]
    async fn a_buffering_stream_is_flushed_after_each_batch() {
        let stream = Buffering::default();
        let queue = Arc::new(SendQueue::new(1 << 20, false));
        let stop = Arc::new(tokio::sync::Notify::new());
        let writer = tokio::spawn(write_loop(
            WriteHalf::Stream(Box::new(stream.clone())),
            queue.clone(),
            stop.clone(),
            |_| {},
            || false,
        ));
        assert!(queue.push_frame(troupe_wire::FrameKind::Control, 0, b"the only frame"));
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while !stream.delivered.lock().ends_with(b"the only frame") {
            assert!(tokio::time::Instant::now() < deadline, "the frame stayed in the stream's buffer");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        stop.notify_one();
        writer.await.expect("writer task").expect("writer");
    }
}
