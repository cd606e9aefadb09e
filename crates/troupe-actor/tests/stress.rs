//! 100,000 actors message each other at random; every message must arrive exactly once.

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
