//! Two actors bounce a ball; the first reports when the rally is over.
//!
//! cargo run --release -p troupe-examples --example ping_pong

use troupe::prelude::*;

enum PingMsg {
    Start { rounds: u32, done: Reply<u32> },
    Ball(u32),
}
impl Message for PingMsg {}

enum PongMsg {
    Ball { n: u32, back: ActorRef<PingMsg> },
}
impl Message for PongMsg {}

struct Ping {
    pong: ActorRef<PongMsg>,
    rounds: u32,
    done: Option<Reply<u32>>,
}

impl Actor for Ping {
    type Msg = PingMsg;

    async fn handle(&mut self, msg: PingMsg, ctx: &mut Context<Self>) -> ActorResult {
        match msg {
            PingMsg::Start { rounds, done } => {
                self.rounds = rounds;
                self.done = Some(done);
                self.pong.tell(PongMsg::Ball { n: 1, back: ctx.myself() }).await?;
            }
            PingMsg::Ball(n) if n >= self.rounds => {
                if let Some(done) = self.done.take() {
                    done.send(n);
                }
            }
            PingMsg::Ball(n) => self.pong.tell(PongMsg::Ball { n: n + 1, back: ctx.myself() }).await?,
        }
        Ok(())
    }
}

struct Pong;

impl Actor for Pong {
    type Msg = PongMsg;

    async fn handle(&mut self, PongMsg::Ball { n, back }: PongMsg, _ctx: &mut Context<Self>) -> ActorResult {
        // A reference that arrived inside a message is used like any other.
        back.tell(PingMsg::Ball(n)).await?;
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let system = ActorSystem::new()?;
    system.block_on(async {
        let pong = system.spawn(Pong);
        let ping = system.spawn(Ping { pong, rounds: 0, done: None });
        let started = std::time::Instant::now();
        let rounds = ping.ask(|done| PingMsg::Start { rounds: 100_000, done }).await?;
        println!("{rounds} round trips in {:?}", started.elapsed());
        system.shutdown().await;
        Ok(())
    })
}
