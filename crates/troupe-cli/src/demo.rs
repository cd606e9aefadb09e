//! `troupe demo`: what troupe can do today, on one node.
//!
//! A supervision tree of thousands of actors serves requests from client actors while a chaos
//! monkey crashes workers at random. Supervisors restart them in place (same reference, mailbox
//! kept), so no request is lost; the summary shows throughput, latency, restarts and an orderly
//! shutdown of the whole tree.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use troupe::prelude::*;

use crate::rng::XorShift;

/// Demo settings.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Supervised teams.
    #[arg(long, default_value_t = 50)]
    pub teams: usize,
    /// Workers per team.
    #[arg(long, default_value_t = 100)]
    pub team_size: usize,
    /// Client actors generating load.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// How long to run the load, in seconds.
    #[arg(long, default_value_t = 8)]
    pub seconds: u64,
    /// Worker crashes injected per second.
    #[arg(long, default_value_t = 40)]
    pub crashes_per_sec: u64,
    /// Seconds of traffic in the three-node cluster part (0 skips it).
    #[arg(long, default_value_t = 4)]
    pub cluster_seconds: u64,
    /// The cluster's membership overlay: static, full, client-server or hyparview.
    #[arg(long, env = "TROUPE_OVERLAY", default_value = "hyparview")]
    pub overlay: troupe::net::OverlayKind,
    /// Where the cluster's live dashboard listens (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub dashboard: std::net::SocketAddr,
    /// Keep the cluster (and its dashboard) up this many seconds after the demo, to look at it.
    #[arg(long, default_value_t = 0)]
    pub linger: u64,
}

#[derive(Default)]
struct Counters {
    worker_starts: AtomicU64,
    requests_ok: AtomicU64,
    requests_failed: AtomicU64,
    crashes_sent: AtomicU64,
}

// ---------------------------------------------------------------------------------------------

struct Worker {
    counters: Arc<Counters>,
}

enum WorkerMsg {
    /// Compute the Collatz path length of `n`.
    Job { n: u64, reply: Reply<u64> },
    /// Panic (the chaos monkey's doing).
    Crash,
}
impl Message for WorkerMsg {}

fn collatz_steps(mut n: u64) -> u64 {
    let mut steps = 0;
    while n > 1 {
        n = if n % 2 == 0 { n / 2 } else { 3 * n + 1 };
        steps += 1;
    }
    steps
}

impl Actor for Worker {
    type Msg = WorkerMsg;
    async fn started(&mut self, _ctx: &mut Context<Self>) -> ActorResult {
        self.counters.worker_starts.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
    async fn handle(&mut self, msg: WorkerMsg, _ctx: &mut Context<Self>) -> ActorResult {
        match msg {
            WorkerMsg::Job { n, reply } => {
                reply.send(collatz_steps(n));
                Ok(())
            }
            WorkerMsg::Crash => panic!("chaos monkey strikes"),
        }
    }
}

struct Team {
    size: usize,
    strategy: SupervisionStrategy,
    counters: Arc<Counters>,
}

enum TeamMsg {
    Workers(Reply<Vec<ActorRef<WorkerMsg>>>),
}
impl Message for TeamMsg {}

impl Actor for Team {
    type Msg = TeamMsg;
    async fn handle(&mut self, msg: TeamMsg, ctx: &mut Context<Self>) -> ActorResult {
        match msg {
            TeamMsg::Workers(reply) => {
                let workers = (0..self.size)
                    .map(|_| {
                        let counters = self.counters.clone();
                        ctx.spawn(Props::factory(move || Worker { counters: counters.clone() }))
                    })
                    .collect();
                reply.send(workers);
            }
        }
        Ok(())
    }
    fn supervision(&self) -> SupervisionStrategy {
        self.strategy
    }
}

/// Sends requests to random workers until told to stop, recording latencies.
struct Client {
    workers: Arc<Vec<ActorRef<WorkerMsg>>>,
    counters: Arc<Counters>,
    rng: XorShift,
    latencies: Histogram<u64>,
    stop_at: Instant,
}

struct RunClient(Reply<Histogram<u64>>);
impl Message for RunClient {}

impl Actor for Client {
    type Msg = RunClient;
    async fn handle(&mut self, RunClient(done): RunClient, _ctx: &mut Context<Self>) -> ActorResult {
        while Instant::now() < self.stop_at {
            let worker = &self.workers[self.rng.below(self.workers.len() as u64) as usize];
            let n = 1 + self.rng.below(1_000_000);
            let started = Instant::now();
            let answer = worker.ask_timeout(|reply| WorkerMsg::Job { n, reply }, Duration::from_secs(2)).await;
            match answer {
                Ok(steps) if steps == collatz_steps(n) => {
                    self.counters.requests_ok.fetch_add(1, Ordering::Relaxed);
                    let _ = self.latencies.record(started.elapsed().as_nanos() as u64);
                }
                Ok(_) | Err(_) => {
                    self.counters.requests_failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        done.send(self.latencies.clone());
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------

/// Runs the demo and prints what happened.
pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    troupe::quiet_actor_panics();
    let system = ActorSystem::builder().name("demo").build()?;
    println!("troupe demo: node {} with {} worker threads", system.node_id(), system.scheduler().max_workers());
    let result = system.block_on(drive(&system, &args));
    let shutdown_started = Instant::now();
    let alive_before = system.stats().alive();
    let reason = system.shutdown_blocking();
    let stats = system.stats();
    println!("(RUST_LOG=info shows every failure and restart as the supervisors log them)");
    println!(
        "shutdown: {alive_before} actors stopped children-first in {:.0} ms ({reason}); {} still alive",
        shutdown_started.elapsed().as_secs_f64() * 1e3,
        stats.alive()
    );
    result?;
    if args.cluster_seconds > 0 {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
        let cluster = crate::demo_cluster::ClusterArgs {
            seconds: args.cluster_seconds,
            overlay: args.overlay,
            dashboard: args.dashboard,
            linger: args.linger,
        };
        rt.block_on(crate::demo_cluster::run(cluster))?;
    }
    Ok(())
}

async fn drive(system: &ActorSystem, args: &DemoArgs) -> anyhow::Result<()> {
    let counters = Arc::new(Counters::default());
    let strategies = [
        ("one-for-one", SupervisionStrategy::one_for_one()),
        ("rest-for-one", SupervisionStrategy::rest_for_one()),
        ("one-for-all", SupervisionStrategy::one_for_all()),
    ];

    // 1. Build the tree.
    let built = Instant::now();
    let mut workers = Vec::with_capacity(args.teams * args.team_size);
    for t in 0..args.teams {
        let (_, strategy) = strategies[t % strategies.len()];
        let strategy = strategy.intensity(1_000, Duration::from_secs(10));
        let team = system.spawn(Team { size: args.team_size, strategy, counters: counters.clone() });
        system.register(format!("team-{t}"), &team)?;
        workers.extend(team.ask(TeamMsg::Workers).await?);
    }
    let workers = Arc::new(workers);
    let total_actors = system.stats().alive();
    println!(
        "built a supervision tree: {} teams ({}) x {} workers = {} actors in {:.0} ms",
        args.teams,
        strategies.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(", "),
        args.team_size,
        total_actors,
        built.elapsed().as_secs_f64() * 1e3
    );

    // 2. Load and chaos.
    let stop_at = Instant::now() + Duration::from_secs(args.seconds);
    let clients: Vec<_> = (0..args.clients)
        .map(|i| {
            system.spawn(Client {
                workers: workers.clone(),
                counters: counters.clone(),
                rng: XorShift::new(1000 + i as u64),
                latencies: Histogram::new(3).expect("histogram"),
                stop_at,
            })
        })
        .collect();
    let runs: Vec<_> = clients
        .iter()
        .map(|c| {
            let c = c.clone();
            let limit = Duration::from_secs(args.seconds + 30);
            tokio::spawn(async move { c.ask_timeout(RunClient, limit).await })
        })
        .collect();

    let chaos = {
        let workers = workers.clone();
        let counters = counters.clone();
        let period = Duration::from_micros(1_000_000 / args.crashes_per_sec.max(1));
        let enabled = args.crashes_per_sec > 0;
        tokio::spawn(async move {
            let mut rng = XorShift::new(7);
            let mut tick = tokio::time::interval(period);
            while enabled && Instant::now() < stop_at {
                tick.tick().await;
                let victim = &workers[rng.below(workers.len() as u64) as usize];
                if victim.try_tell(WorkerMsg::Crash).is_ok() {
                    counters.crashes_sent.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    let bar = ProgressBar::new(args.seconds * 10);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    while Instant::now() < stop_at {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let restarts = counters.worker_starts.load(Ordering::Relaxed).saturating_sub(workers.len() as u64);
        bar.set_position((started.elapsed().as_millis() / 100) as u64);
        bar.set_message(format!(
            "{} requests served, {} crashes injected, {} restarts",
            counters.requests_ok.load(Ordering::Relaxed),
            counters.crashes_sent.load(Ordering::Relaxed),
            restarts
        ));
    }
    bar.finish_and_clear();
    chaos.await?;

    let mut latencies = Histogram::<u64>::new(3)?;
    for run in runs {
        latencies.add(run.await??)?;
    }
    let elapsed = started.elapsed();

    // 3. Summary.
    let ok = counters.requests_ok.load(Ordering::Relaxed);
    let failed = counters.requests_failed.load(Ordering::Relaxed);
    let crashes = counters.crashes_sent.load(Ordering::Relaxed);
    let restarts = counters.worker_starts.load(Ordering::Relaxed).saturating_sub(workers.len() as u64);
    println!("load: {} clients asked random workers for {:.1} s", args.clients, elapsed.as_secs_f64());
    println!("  {ok} requests answered correctly ({:.0}/s), {failed} failed", ok as f64 / elapsed.as_secs_f64());
    println!(
        "  latency p50 {:.1} us, p99 {:.1} us, max {:.1} us",
        latencies.value_at_quantile(0.5) as f64 / 1e3,
        latencies.value_at_quantile(0.99) as f64 / 1e3,
        latencies.max() as f64 / 1e3
    );
    println!(
        "chaos: {crashes} worker panics injected -> {restarts} restarts by supervisors \
         (one-for-all teams restart whole teams); node kept serving"
    );
    let alive_workers = workers.iter().filter(|w| w.is_alive()).count();
    println!("  {alive_workers}/{} workers alive after the storm, same references as before", workers.len());
    let stats = system.stats();
    println!(
        "node: {} actors spawned, {} alive, {} dead letters; registry holds {} names",
        stats.spawned,
        stats.alive(),
        stats.dead_letters,
        system.registered_names().len()
    );
    if failed > 0 {
        anyhow::bail!("{failed} requests failed");
    }
    if alive_workers != workers.len() {
        anyhow::bail!("{} workers did not come back", workers.len() - alive_workers);
    }
    Ok(())
}
