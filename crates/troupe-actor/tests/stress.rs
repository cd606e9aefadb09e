//! Stress: 100,000 actors message each other at random and every message must arrive exactly
//! once; a few busy actors ping each other at random for a long time and none may stall (a lost
//! wake-up leaves an actor idle with messages queued, and the run never finishes).

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use troupe_actor::prelude::*;

const ACTORS: usize = 100_000;
const SENDS_EACH: u64 = 5;

struct Shared {
    /// One slot per message id: how many times it was delivered.
    seen: Vec<AtomicU8>,
    delivered: AtomicU64,
}

struct Node {
    index: u64,
    peers: Arc<Vec<ActorRef<NodeMsg>>>,
    shared: Arc<Shared>,
    rng: u64,
}

enum NodeMsg {
    /// The full peer list (actors need it, and it needs the actors: it comes after spawning).
    Setup(Arc<Vec<ActorRef<NodeMsg>>>),
    Kick,
    Payload(u64),
}
impl Message for NodeMsg {}

impl Node {
    fn next_random(&mut self) -> u64 {
        // xorshift64*: deterministic per actor, no shared RNG state.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

impl Actor for Node {
    type Msg = NodeMsg;
    async fn handle(&mut self, msg: NodeMsg, _ctx: &mut Context<Self>) -> ActorResult {
        match msg {
            NodeMsg::Setup(peers) => self.peers = peers,
            NodeMsg::Kick => {
                for k in 0..SENDS_EACH {
                    let target = (self.next_random() % self.peers.len() as u64) as usize;
                    let id = self.index * SENDS_EACH + k;
                    self.peers[target].tell(NodeMsg::Payload(id)).await?;
                }
            }
            NodeMsg::Payload(id) => {
                self.shared.seen[id as usize].fetch_add(1, Ordering::Relaxed);
                self.shared.delivered.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }
}

#[test]
fn hundred_thousand_actors_every_message_exactly_once() {
    let system = ActorSystem::builder().workers(2).build().expect("system");
    system.block_on(async {
        let total = ACTORS as u64 * SENDS_EACH;
        let shared =
            Arc::new(Shared { seen: (0..total).map(|_| AtomicU8::new(0)).collect(), delivered: AtomicU64::new(0) });
        let empty = Arc::new(Vec::new());
        let refs: Vec<_> = (0..ACTORS as u64)
            .map(|index| {
                system.spawn(Node {
                    index,
                    peers: empty.clone(),
                    shared: shared.clone(),
                    rng: index.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
                })
            })
            .collect();
        let refs = Arc::new(refs);
        for r in refs.iter() {
            r.tell(NodeMsg::Setup(refs.clone())).await.expect("setup");
        }
        for r in refs.iter() {
            r.tell(NodeMsg::Kick).await.expect("kick");
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while shared.delivered.load(Ordering::Relaxed) < total {
            assert!(
                Instant::now() < deadline,
                "only {} of {total} delivered",
                shared.delivered.load(Ordering::Relaxed)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(shared.delivered.load(Ordering::Relaxed), total, "duplicates delivered");
        let wrong = shared.seen.iter().filter(|s| s.load(Ordering::Relaxed) != 1).count();
        assert_eq!(wrong, 0, "{wrong} messages not delivered exactly once");
        system.shutdown().await;
        assert_eq!(system.stats().alive(), 0);
    });
}

/// One actor of a Savina-"Big"-shaped workload: it pings a random peer, waits for the pong, and
/// repeats; it answers every ping it gets with a pong. Every actor is woken over and over by many
/// senders at once, which is where a lost wake-up shows.
struct Pinger {
    index: usize,
    peers: Arc<Vec<ActorRef<PingMsg>>>,
    left: u64,
    rng: u64,
    done: Option<tokio::sync::mpsc::UnboundedSender<usize>>,
}

enum PingMsg {
    /// Sent to every actor before any is started, so no ping overtakes it.
    Setup(Arc<Vec<ActorRef<PingMsg>>>),
    Start(u64, tokio::sync::mpsc::UnboundedSender<usize>),
    Ping(usize),
    Pong,
}
impl Message for PingMsg {}

impl Pinger {
    async fn ping_someone(&mut self) -> ActorResult {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let n = self.peers.len();
        let target = (self.index + 1 + (self.rng % (n as u64 - 1)) as usize) % n;
        self.left -= 1;
        self.peers[target].tell(PingMsg::Ping(self.index)).await?;
        Ok(())
    }
}

impl Actor for Pinger {
    type Msg = PingMsg;
    async fn handle(&mut self, msg: PingMsg, _ctx: &mut Context<Self>) -> ActorResult {
        match msg {
            PingMsg::Setup(peers) => self.peers = peers,
            PingMsg::Start(pings, done) => {
                self.left = pings;
                self.done = Some(done);
                self.ping_someone().await?;
            }
            PingMsg::Ping(from) => self.peers[from].tell(PingMsg::Pong).await?,
            PingMsg::Pong if self.left == 0 => {
                if let Some(done) = self.done.take() {
                    let _ = done.send(self.index);
                }
            }
            PingMsg::Pong => self.ping_someone().await?,
        }
        Ok(())
    }
}

#[test]
fn busy_actors_pinging_at_random_never_stall() {
    const ACTORS: usize = 64;
    const PINGS: u64 = 10_000;
    const ROUNDS: usize = 3;
    let system = ActorSystem::builder().workers(2).build().expect("system");
    system.block_on(async {
        for round in 0..ROUNDS {
            let refs: Vec<_> = (0..ACTORS)
                .map(|index| {
                    system.spawn(Pinger {
                        index,
                        peers: Arc::new(Vec::new()),
                        left: 0,
                        rng: (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
                        done: None,
                    })
                })
                .collect();
            let refs = Arc::new(refs);
            let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
            for r in refs.iter() {
                r.tell(PingMsg::Setup(refs.clone())).await.expect("setup");
            }
            for r in refs.iter() {
                r.tell(PingMsg::Start(PINGS, done_tx.clone())).await.expect("start");
            }
            let mut finished = [false; ACTORS];
            for _ in 0..ACTORS {
                match tokio::time::timeout(Duration::from_secs(30), done_rx.recv()).await {
                    Ok(Some(index)) => {
                        assert!(!finished[index], "actor {index} finished twice");
                        finished[index] = true;
                    }
                    _ => {
                        let stalled: Vec<_> = (0..ACTORS).filter(|&i| !finished[i]).collect();
                        panic!("round {round}: actors {stalled:?} did not finish within 30 s (a lost wake-up?)");
                    }
                }
            }
            for r in refs.iter() {
                r.stop();
            }
        }
        system.shutdown().await;
        assert_eq!(system.stats().alive(), 0);
    });
}
