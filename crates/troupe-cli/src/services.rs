//! Diagnostic services a node started with `troupe node --services` offers, for benchmarks and
//! multi-process tests: a sink that counts what it receives, an echo, and raw-TCP baselines.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use troupe::actor::{Actor, ActorRef, ActorResult, Context, Message, Payload, RemoteMessage, Reply};

/// Messages of the sink and echo services.
#[derive(Serialize, Deserialize)]
pub enum ServiceMsg {
    /// Counted (and the bytes added up), nothing else.
    Data(Payload),
    /// Answers with the count of `Data` messages and their total bytes.
    Count(Reply<(u64, u64)>),
    /// Answers with the same bytes.
    Echo(Payload, Reply<Payload>),
    /// Sends `Data(bytes)` to `to` (a ref that travelled here inside a message).
    Forward {
        /// Where to send.
        to: ActorRef<ServiceMsg>,
        /// What.
        bytes: Payload,
    },
    /// Answers the sum of the `Count` of every ref in `of` (refs inside a message, asked from here).
    CountOf {
        /// The actors to ask.
        of: Vec<ActorRef<ServiceMsg>>,
        /// The answer port.
        reply: Reply<u64>,
    },
    /// Answers how many overlay broadcasts this node has delivered (every topic).
    Broadcasts(Reply<u64>),
    /// Spawns a new service (not supervised) linked to `to` and answers its ref: for tests of
    /// links across nodes.
    SpawnLinked {
        /// The actor the new one links itself to.
        to: ActorRef<ServiceMsg>,
        /// The answer port.
        reply: Reply<ActorRef<ServiceMsg>>,
    },
    /// Fails the service (its handler returns an error).
    Fail,
    /// The next number of an ordered stream: counted (apart from `Count`, which counts only
    /// `Data`), and checked to follow the previous one.
    Seq(u64),
    /// Answers how many `Seq` messages arrived and how many did not follow the previous one.
    SeqReport(Reply<(u64, u64)>),
}
impl Message for ServiceMsg {}
impl RemoteMessage for ServiceMsg {
    const TYPE_NAME: &'static str = "troupe.services.ServiceMsg";
}

/// Counts `Data` and `Seq` (checking that `Seq` numbers follow each other); answers `Count`,
/// `SeqReport`, `Echo`, `Forward`, `CountOf`, `Broadcasts`, `SpawnLinked`; fails on `Fail`.
#[derive(Default)]
pub struct Service {
    messages: u64,
    bytes: u64,
    /// Broadcasts delivered on the node (counted by a task [`start`] runs).
    broadcasts: Arc<AtomicU64>,
    /// An actor to link to when started (see [`ServiceMsg::SpawnLinked`]).
    link_to: Option<ActorRef<ServiceMsg>>,
    /// `Seq` messages received, the number expected next, and those that were not it.
    seq_received: u64,
    seq_next: u64,
    seq_out_of_order: u64,
}

impl Actor for Service {
    type Msg = ServiceMsg;

    async fn handle(&mut self, msg: ServiceMsg, ctx: &mut Context<Self>) -> ActorResult {
        match msg {
            ServiceMsg::Data(bytes) => {
                self.messages += 1;
                self.bytes += bytes.len() as u64;
            }
            ServiceMsg::Count(reply) => {
                reply.send((self.messages, self.bytes));
            }
            ServiceMsg::Echo(bytes, reply) => {
                reply.send(bytes);
            }
            ServiceMsg::Forward { to, bytes } => {
                // A service outlives the failures of the actors it is pointed at.
                if let Err(error) = to.tell(ServiceMsg::Data(bytes)).await {
                    tracing::warn!(%error, "forward failed");
                }
            }
            ServiceMsg::CountOf { of, reply } => {
                let mut total = 0;
                for r in of {
                    match r.ask(ServiceMsg::Count).await {
                        Ok((n, _)) => total += n,
                        Err(error) => tracing::warn!(%error, "count of a ref failed"),
                    }
                }
                reply.send(total);
            }
            ServiceMsg::Broadcasts(reply) => {
                reply.send(self.broadcasts.load(Ordering::Relaxed));
            }
            ServiceMsg::SpawnLinked { to, reply } => {
                let linked = ctx.system().spawn(Service { link_to: Some(to), ..Service::default() });
                // Answered once the link is made: the new actor links itself as it starts.
                let _ = linked.ask(ServiceMsg::Count).await;
                reply.send(linked);
            }
            ServiceMsg::Fail => return Err("asked to fail".into()),
            ServiceMsg::Seq(n) => {
                self.seq_received += 1;
                if n != self.seq_next {
                    self.seq_out_of_order += 1;
                }
                self.seq_next = n + 1;
            }
            ServiceMsg::SeqReport(reply) => {
                reply.send((self.seq_received, self.seq_out_of_order));
            }
        }
        Ok(())
    }

    async fn started(&mut self, ctx: &mut Context<Self>) -> ActorResult {
        if let Some(to) = self.link_to.take() {
            ctx.link(&to);
        }
        Ok(())
    }
}

/// Starts the services on `node`: "sink" and "echo" (both [`Service`]).
pub fn start(node: &troupe::Node) -> anyhow::Result<()> {
    let broadcasts = Arc::new(AtomicU64::new(0));
    let mut deliveries = node.broadcasts();
    let counter = broadcasts.clone();
    tokio::spawn(async move {
        loop {
            match deliveries.recv().await {
                Ok(_) => {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    counter.fetch_add(n, Ordering::Relaxed);
                }
                Err(_) => return,
            }
        }
    });
    for name in ["sink", "echo"] {
        let actor = node.system().spawn(Service { broadcasts: broadcasts.clone(), ..Service::default() });
        node.register(name, &actor)?;
    }
    Ok(())
}

/// Raw-TCP baseline servers on `listener`: each connection reads length-prefixed frames
/// (`u32` little-endian length, then the payload). A frame of length 0 is a "count" request:
/// the server answers with the number of frames and bytes seen on that connection (two `u64`).
/// Any other frame whose first payload byte is 1 is echoed back whole.
pub async fn raw_server(listener: tokio::net::TcpListener) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else { continue };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(async move {
            let (mut r, mut w) = tcp.into_split();
            let mut r = tokio::io::BufReader::with_capacity(256 * 1024, &mut r);
            let (mut frames, mut bytes) = (0u64, 0u64);
            let mut payload = Vec::new();
            loop {
                let Ok(len) = r.read_u32_le().await else { return };
                if len == 0 {
                    let mut answer = [0u8; 16];
                    answer[..8].copy_from_slice(&frames.to_le_bytes());
                    answer[8..].copy_from_slice(&bytes.to_le_bytes());
                    if w.write_all(&answer).await.is_err() {
                        return;
                    }
                    continue;
                }
                payload.resize(len as usize, 0);
                if r.read_exact(&mut payload).await.is_err() {
                    return;
                }
                frames += 1;
                bytes += len as u64;
                if payload[0] == 1 {
                    let mut out = Vec::with_capacity(4 + payload.len());
                    out.extend_from_slice(&len.to_le_bytes());
                    out.extend_from_slice(&payload);
                    if w.write_all(&out).await.is_err() {
                        return;
                    }
                }
            }
        });
    }
}
