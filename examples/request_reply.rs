//! A key-value service: typed requests and replies, timeouts, a named actor, errors that say
//! what went wrong.
//!
//! cargo run --release -p troupe-examples --example request_reply

use std::collections::HashMap;
use std::time::Duration;

use troupe::prelude::*;
use troupe::AskError;

/// The service's protocol: each request carries the port its typed answer goes to.
enum KvMsg {
    Put {
        key: String,
        value: String,
        reply: Reply<Option<String>>,
    },
    Get {
        key: String,
        reply: Reply<Option<String>>,
    },
    Len(Reply<usize>),
    /// Takes a while: shows ask timeouts.
    Slow(Reply<()>),
}
impl Message for KvMsg {}

#[derive(Default)]
struct Kv {
    entries: HashMap<String, String>,
}

impl Actor for Kv {
    type Msg = KvMsg;

    async fn handle(&mut self, msg: KvMsg, _ctx: &mut Context<Self>) -> ActorResult {
        match msg {
            KvMsg::Put { key, value, reply } => {
                reply.send(self.entries.insert(key, value));
            }
            KvMsg::Get { key, reply } => {
                reply.send(self.entries.get(&key).cloned());
            }
            KvMsg::Len(reply) => {
                reply.send(self.entries.len());
            }
            KvMsg::Slow(reply) => {
                // An async handler: awaits without blocking other actors.
                tokio::time::sleep(Duration::from_millis(500)).await;
                reply.send(());
            }
        }
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let system = ActorSystem::new()?;
    system.block_on(async {
        let service = system.spawn(Kv::default());
        system.register("kv", &service)?;
        // Anyone on the node can now find the service by name (a wrong message type is an error).
        let kv = system.lookup::<KvMsg>("kv")?;

        let old = kv.ask(|reply| KvMsg::Put { key: "lang".into(), value: "rust".into(), reply }).await?;
        println!("put lang=rust (previous: {old:?})");
        let value = kv.ask(|reply| KvMsg::Get { key: "lang".into(), reply }).await?;
        println!("get lang -> {value:?}");
        println!("entries: {}", kv.ask(KvMsg::Len).await?);

        match kv.ask_timeout(KvMsg::Slow, Duration::from_millis(100)).await {
            Err(e @ AskError::Timeout { .. }) => println!("slow request: {e}"),
            other => println!("unexpected: {other:?}"),
        }

        kv.stop();
        kv.wait_for_exit().await;
        match kv.ask(KvMsg::Len).await {
            Err(e) => println!("after stop: {e}"),
            Ok(n) => println!("unexpected answer after stop: {n}"),
        }
        system.shutdown().await;
        Ok(())
    })
}
