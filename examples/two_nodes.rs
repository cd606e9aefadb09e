//! Two nodes in one process, talking over real loopback TCP: a remote actor found by name, tell
//! and ask across nodes, a watch and a link that span both nodes, and what a watcher hears when
//! the other node goes away.
//!
//! cargo run --release -p troupe-examples --example two_nodes

use std::time::Duration;

use serde::{Deserialize, Serialize};
use troupe::prelude::*;
use troupe::{Down, Node, NodeConfig, RemoteMessage};

/// Messages that cross the network: serde, plus a name that is stable across the cluster.
#[derive(Serialize, Deserialize)]
enum CounterMsg {
    Add(u64),
    Get(Reply<u64>),
    /// Makes the counter fail (to show what a link does).
    Fail,
}
impl Message for CounterMsg {}
impl RemoteMessage for CounterMsg {
    const TYPE_NAME: &'static str = "example.Counter";
}

struct Counter(u64);
impl Actor for Counter {
    type Msg = CounterMsg;
    async fn handle(&mut self, msg: CounterMsg, _ctx: &mut Context<Self>) -> ActorResult {
        match msg {
            CounterMsg::Add(n) => self.0 += n,
            CounterMsg::Get(reply) => {
                reply.send(self.0);
            }
            CounterMsg::Fail => return Err("asked to fail".into()),
        }
        Ok(())
    }
}

/// Watches (or links to) a remote actor and reports what it hears.
struct Observer {
    target: ActorRef<CounterMsg>,
    link: bool,
}
impl Actor for Observer {
    type Msg = ();
    async fn started(&mut self, ctx: &mut Context<Self>) -> ActorResult {
        if self.link {
            ctx.link(&self.target);
        } else {
            ctx.watch(&self.target);
        }
        Ok(())
    }
    async fn handle(&mut self, _: (), _ctx: &mut Context<Self>) -> ActorResult {
        Ok(())
    }
    async fn on_down(&mut self, down: Down, _ctx: &mut Context<Self>) -> ActorResult {
        println!("watcher on a: {} is down ({})", down.id, down.reason);
        Ok(())
    }
}

fn config(name: &str) -> NodeConfig {
    NodeConfig {
        name: name.into(),
        // Every node of a cluster shares the secret; it never crosses the wire.
        secret: Some("an example secret, at least 16 bytes".into()),
        listen: vec!["127.0.0.1:0".into()],
        ..NodeConfig::default()
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let b = Node::start(config("b")).await?;
    let a = Node::start(config("a")).await?;
    a.connect(&b.local_addr().to_string()).await?;

    // A named actor on b, found and used from a through the same ActorRef type as a local one.
    b.register("counter", &b.system().spawn(Counter(0)))?;
    let counter: ActorRef<CounterMsg> = a.lookup("b", "counter").await?;
    for _ in 0..1000 {
        counter.tell(CounterMsg::Add(1)).await?;
    }
    println!("counter on b, asked from a: {}", counter.ask(CounterMsg::Get).await?);

    // A link across nodes: when the actor on b fails, the linked one on a fails too.
    let linked = a.system().spawn(Observer { target: counter.clone(), link: true });
    tokio::time::sleep(Duration::from_millis(100)).await;
    counter.tell(CounterMsg::Fail).await?;
    let reason = linked.untyped().wait_for_exit().await;
    println!("the actor on a that linked to b's counter exited: {reason}");

    // A watch across nodes: when b goes away, the watcher hears it.
    b.register("second", &b.system().spawn(Counter(0)))?;
    let second: ActorRef<CounterMsg> = a.lookup("b", "second").await?;
    a.system().spawn(Observer { target: second.clone(), link: false });
    tokio::time::sleep(Duration::from_millis(100)).await;
    b.shutdown().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    match second.ask_timeout(CounterMsg::Get, Duration::from_secs(1)).await {
        Ok(n) => println!("b still answers?! {n}"),
        Err(error) => println!("an ask to b after its shutdown: {error}"),
    }
    a.shutdown().await;
    Ok(())
}
