//! Releasing a peer's connections (the overlay lets an idle one go) while both sides send: what
//! either side wrote on the released connections is read before they close, and before what it
//! wrote on the new ones.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use troupe_actor::{Actor, ActorRef, ActorResult, Context, Message, RemoteMessage, Reply};

use crate::{Node, NodeConfig};

#[derive(Serialize, Deserialize)]
enum SeqMsg {
    /// The sender's next number.
    Next(u64),
    /// (numbers received, how many came out of order).
    Get(Reply<(u64, u64)>),
}
impl Message for SeqMsg {}
impl RemoteMessage for SeqMsg {
    const TYPE_NAME: &'static str = "release_tests.Seq";
}

/// Counts the numbers of one sender and how many did not come in order.
#[derive(Default)]
struct InOrder {
    received: u64,
    out_of_order: u64,
}
impl Actor for InOrder {
    type Msg = SeqMsg;
    async fn handle(&mut self, msg: SeqMsg, _ctx: &mut Context<Self>) -> ActorResult {
        match msg {
            SeqMsg::Next(n) => {
                if n != self.received {
                    self.out_of_order += 1;
                }
                self.received += 1;
            }
            SeqMsg::Get(reply) => {
                reply.send((self.received, self.out_of_order));
            }
        }
        Ok(())
    }
}

fn config(name: &str) -> NodeConfig {
    NodeConfig { name: name.into(), secret: Some("a release test secret, long enough".into()), ..NodeConfig::default() }
}

/// Sends numbers from 0 to `to` until `stop`; how many it sent.
fn stream(to: ActorRef<SeqMsg>, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut sent = 0u64;
        while !stop.load(Ordering::Relaxed) {
            to.tell(SeqMsg::Next(sent)).await.expect("tell");
            sent += 1;
        }
        sent
    })
}

/// a and b each stream numbered tells to a counter on the other; a releases its connections to
/// b in the middle of it. What each wrote on the old connections before it heard of the
/// release is read before they close, and before what it wrote on the new ones: every number
/// arrives, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_connection_loses_and_reorders_nothing() {
    let a = Node::start(config("a")).await.expect("a");
    let b = Node::start(config("b")).await.expect("b");
    let on_a = a.system().spawn(InOrder::default());
    let on_b = b.system().spawn(InOrder::default());
    a.register("seq", &on_a).expect("register");
    b.register("seq", &on_b).expect("register");
    b.connect(&a.local_addr().to_string()).await.expect("connect");
    let to_a = b.lookup::<SeqMsg>("a", "seq").await.expect("lookup");
    let to_b = a.lookup::<SeqMsg>("b", "seq").await.expect("lookup");
    let stop = Arc::new(AtomicBool::new(false));
    let (from_b, from_a) = (stream(to_a, stop.clone()), stream(to_b, stop.clone()));
    let received = |at: &ActorRef<SeqMsg>| {
        let at = at.clone();
        async move { at.ask(SeqMsg::Get).await.expect("ask") }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while received(&on_a).await.0 < 10_000 || received(&on_b).await.0 < 10_000 {
        assert!(tokio::time::Instant::now() < deadline, "the streams never got going");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let old = a.shared().peer(b.id()).expect("a's peer for b");
    assert!(a.shared().release_peer(b.id(), true), "nothing acknowledged is outstanding");
    // The streams go on over new connections for a while.
    while a.shared().peer(b.id()).is_none_or(|new| Arc::ptr_eq(&new, &old)) {
        assert!(tokio::time::Instant::now() < deadline, "b never came back on new connections");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::Relaxed);
    let senders = tokio::time::timeout(Duration::from_secs(10), async { (from_b.await, from_a.await) });
    let (sent_by_b, sent_by_a) = senders.await.expect("a sender is stuck");
    let (sent_by_b, sent_by_a) = (sent_by_b.expect("b's sender"), sent_by_a.expect("a's sender"));
    for (at, sent, name) in [(&on_a, sent_by_b, "a"), (&on_b, sent_by_a, "b")] {
        let mut last = received(at).await;
        while last.0 < sent && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
            last = received(at).await;
        }
        assert_eq!(last.0, sent, "tells to {name} lost when the connection was released");
        assert_eq!(last.1, 0, "tells to {name} out of order across the release");
    }
    a.shutdown().await;
    b.shutdown().await;
}

/// A node that is leaving (its overlay letting go of its neighbours, its goodbye not yet sent)
/// and is asked to release a connection says goodbye on it first: the side that released it
/// hears that the node left (a Down, "left the cluster") instead of taking it for merely idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaving_node_asked_to_release_says_goodbye_first() {
    let a = Node::start(config("a")).await.expect("a");
    let b = Node::start(config("b")).await.expect("b");
    b.connect(&a.local_addr().to_string()).await.expect("connect");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !a.shared().peer(b.id()).is_some_and(|p| p.is_working()) {
        assert!(tokio::time::Instant::now() < deadline, "a never had b up");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut events = a.events();
    b.shared().leaving.store(true, Ordering::Release);
    assert!(a.shared().release_peer(b.id(), true), "nothing acknowledged is outstanding");
    let down = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match events.recv().await {
                Ok(crate::NodeEvent::Down { node, reason, .. }) if node == b.id() => return reason,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => panic!("a's events ended"),
            }
        }
    });
    assert_eq!(down.await.expect("a took b for merely idle"), "left the cluster");
    a.shutdown().await;
    b.shutdown().await;
}
