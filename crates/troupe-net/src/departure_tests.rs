//! A node's loss as a node that had dealings with it sees it: what it still held for the lost
//! node goes without reaching for it again.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use troupe_actor::{Actor, ActorRef, ActorResult, Context, Message, RemoteMessage, Reply};

use crate::{Node, NodeConfig, NodeEvent};

#[derive(Serialize, Deserialize)]
enum KeepMsg {
    /// Kept unanswered.
    Keep(Reply<u64>),
    /// Passed on to the other actor, as a `Keep`.
    Through(ActorRef<KeepMsg>, Reply<u64>),
    /// How many ports are kept.
    Kept(Reply<usize>),
}
impl Message for KeepMsg {}
impl RemoteMessage for KeepMsg {
    const TYPE_NAME: &'static str = "departure_tests.Keep";
}

/// Keeps the reply ports it is given, or passes them on.
#[derive(Default)]
struct Keeper(Vec<Reply<u64>>);
impl Actor for Keeper {
    type Msg = KeepMsg;
    async fn handle(&mut self, msg: KeepMsg, _ctx: &mut Context<Self>) -> ActorResult {
        match msg {
            KeepMsg::Keep(reply) => self.0.push(reply),
            KeepMsg::Through(other, reply) => other.tell(KeepMsg::Keep(reply)).await?,
            KeepMsg::Kept(reply) => {
                reply.send(self.0.len());
            }
        }
        Ok(())
    }
}

fn config(name: &str) -> NodeConfig {
    NodeConfig {
        name: name.into(),
        secret: Some("a departure test secret, long enough".into()),
        ..NodeConfig::default()
    }
}

/// `a` asks an actor on `b` to pass `a`'s reply port back to an actor on `a`, which keeps it: `b`
/// waits for `a`'s answer to pass it on. When `a` leaves, `b` fails that wait, and the port
/// (`a`'s own) tells `a` there is no answer: that must not dial `a` again, which is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_nodes_own_port_does_not_dial_it_again() {
    let a = Node::start(config("a")).await.expect("a");
    let b = Node::start(config("b")).await.expect("b");
    b.connect(&a.local_addr().to_string()).await.expect("connect");
    let keeper = a.system().spawn(Keeper::default());
    b.register("passer", &b.system().spawn(Keeper::default())).expect("register");
    let passer: ActorRef<KeepMsg> = a.lookup("b", "passer").await.expect("lookup");
    let to_keeper = keeper.clone();
    let _asked = tokio::spawn(async move {
        passer.ask_timeout(|reply| KeepMsg::Through(to_keeper, reply), Duration::from_secs(60)).await
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while keeper.ask(KeepMsg::Kept).await.expect("kept") == 0 {
        assert!(tokio::time::Instant::now() < deadline, "the port never came back to a");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let a_id = a.id();
    let mut events = b.events();
    a.shutdown().await;
    let mut downs = 0;
    let watch_until = tokio::time::Instant::now() + Duration::from_secs(3);
    while let Ok(event) = tokio::time::timeout_at(watch_until, events.recv()).await {
        match event {
            Ok(NodeEvent::Down { node, .. }) if node == a_id => downs += 1,
            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
        }
    }
    assert_eq!(downs, 1, "b reported a down {downs} times");
    assert!(b.shared().peer(a_id).is_none(), "b dials a again");
    b.shutdown().await;
}
