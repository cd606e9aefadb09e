//! A supervisor restarts a crashing worker in place; callers keep the same reference and the
//! worker's queued messages survive the restart. After too many crashes the supervisor gives up
//! and its own watcher is told why.
//!
//! cargo run --release -p troupe-examples --example supervision

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use troupe::prelude::*;
use troupe::Backoff;

enum WorkerMsg {
    Work { n: u64, reply: Reply<u64> },
    Crash,
}
impl Message for WorkerMsg {}

struct Worker {
    incarnation: u32,
}

impl Actor for Worker {
    type Msg = WorkerMsg;

    async fn started(&mut self, ctx: &mut Context<Self>) -> ActorResult {
        println!("  worker {} started (incarnation {})", ctx.id(), self.incarnation);
        Ok(())
    }

    async fn handle(&mut self, msg: WorkerMsg, _ctx: &mut Context<Self>) -> ActorResult {
        match msg {
            WorkerMsg::Work { n, reply } => {
                reply.send(n * n);
                Ok(())
            }
            WorkerMsg::Crash => Err("simulated failure".into()),
        }
    }
}

enum SupMsg {
    Worker(Reply<ActorRef<WorkerMsg>>),
}
impl Message for SupMsg {}

struct Supervisor;

impl Actor for Supervisor {
    type Msg = SupMsg;

    async fn handle(&mut self, SupMsg::Worker(reply): SupMsg, ctx: &mut Context<Self>) -> ActorResult {
        let incarnations = Arc::new(AtomicU32::new(0));
        let worker =
            ctx.spawn(Props::factory(move || Worker { incarnation: incarnations.fetch_add(1, Ordering::SeqCst) + 1 }));
        reply.send(worker);
        Ok(())
    }

    fn supervision(&self) -> SupervisionStrategy {
        // At most 3 restarts in 5 s, 10 ms backoff doubling up to 100 ms.
        SupervisionStrategy::one_for_one()
            .intensity(3, Duration::from_secs(5))
            .backoff(Backoff::exponential(Duration::from_millis(10), Duration::from_millis(100)))
    }
}

/// Watches the supervisor and reports how it ended.
struct Observer;

impl Actor for Observer {
    type Msg = ActorRef<SupMsg>;

    async fn handle(&mut self, target: ActorRef<SupMsg>, ctx: &mut Context<Self>) -> ActorResult {
        ctx.watch(&target);
        Ok(())
    }

    async fn on_down(&mut self, down: Down, _ctx: &mut Context<Self>) -> ActorResult {
        println!("observer: supervisor {} is down: {}", down.id, down.reason);
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    troupe::quiet_actor_panics();
    let system = ActorSystem::new()?;
    system.block_on(async {
        let supervisor = system.spawn(Supervisor);
        let observer = system.spawn(Observer);
        observer.tell(supervisor.clone()).await?;
        let worker = supervisor.ask(SupMsg::Worker).await?;

        println!("7 squared = {}", worker.ask(|reply| WorkerMsg::Work { n: 7, reply }).await?);
        for round in 1..=4 {
            println!("crash #{round}");
            worker.tell(WorkerMsg::Crash).await?;
            // Queued behind the crash: handled by the next incarnation, not lost.
            match worker.ask(|reply| WorkerMsg::Work { n: round, reply }).await {
                Ok(v) => println!("  same reference still answers: {round} squared = {v}"),
                Err(e) => println!("  {e}"),
            }
        }
        let reason = supervisor.wait_for_exit().await;
        println!("supervisor ended: {reason}");
        std::thread::sleep(Duration::from_millis(50));
        system.shutdown().await;
        Ok(())
    })
}
