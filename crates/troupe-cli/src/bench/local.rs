//! `troupe bench local`: the local runtime against plain tokio tasks and channels.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use troupe::prelude::*;
use troupe::UntypedRef;

use super::{baseline, paired_medians, per_sec, BenchLine};
use crate::rng::XorShift;

/// Mailbox / channel capacity used by both sides.
pub const MAILBOX: usize = 1024;

/// Sizes of one run of the suite.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub tell: u64,
    pub pingpong: u64,
    pub ring_actors: usize,
    pub ring_hops: u64,
    pub spawn: usize,
    pub ask: u64,
    pub big_actors: usize,
    pub big_pings: u64,
    pub idle_actors: usize,
    pub runs: usize,
}

impl Sizes {
    /// The sizes the issue specifies.
    pub fn full() -> Self {
        Sizes {
            tell: 2_000_000,
            pingpong: 1_000_000,
            ring_actors: 100,
            ring_hops: 1_000_000,
            spawn: 100_000,
            ask: 200_000,
            big_actors: 120,
            big_pings: 20_000,
            idle_actors: 1_000_000,
            runs: 3,
        }
    }

    /// Small sizes for a smoke test.
    pub fn quick() -> Self {
        Sizes {
            tell: 20_000,
            pingpong: 10_000,
            ring_actors: 100,
            ring_hops: 10_000,
            spawn: 2_000,
            ask: 2_000,
            big_actors: 20,
            big_pings: 200,
            idle_actors: 20_000,
            runs: 1,
        }
    }
}

/// Latency percentiles of a run.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub p50_ns: f64,
    pub p99_ns: f64,
}

impl Latency {
    pub fn from_histogram(hist: &Histogram<u64>) -> Self {
        Latency { p50_ns: hist.value_at_quantile(0.5) as f64, p99_ns: hist.value_at_quantile(0.99) as f64 }
    }
}

fn system(workers: usize) -> ActorSystem {
    ActorSystem::builder()
        .name("bench")
        .workers(workers)
        .mailbox_capacity(MAILBOX)
        .ask_timeout(Duration::from_secs(60))
        .build()
        .expect("actor system")
}

/// Runs `body` against a fresh system of `workers` workers, then shuts the system down.
fn with_system<T>(workers: usize, body: impl AsyncFnOnce(&ActorSystem) -> T) -> T {
    let system = system(workers);
    let out = system.block_on(body(&system));
    system.shutdown_blocking();
    out
}

// ---------------------------------------------------------------------------------------------
// Actors used by the benchmarks.

struct Counter(u64);

enum CounterMsg {
    Add(u64),
    Get(Reply<u64>),
}
impl Message for CounterMsg {}

impl Actor for Counter {
    type Msg = CounterMsg;
    async fn handle(&mut self, msg: CounterMsg, _ctx: &mut Context<Self>) -> ActorResult {
        match msg {
            CounterMsg::Add(n) => self.0 += n,
            CounterMsg::Get(reply) => {
                reply.send(self.0);
            }
        }
        Ok(())
    }
}

/// Sends `n` tells to a counter, then confirms with an ask.
struct Blaster {
    target: ActorRef<CounterMsg>,
}

impl Actor for Blaster {
    type Msg = (u64, Reply<u64>);
    async fn handle(&mut self, (n, done): (u64, Reply<u64>), _ctx: &mut Context<Self>) -> ActorResult {
        for _ in 0..n {
            self.target.tell(CounterMsg::Add(1)).await?;
        }
        done.send(self.target.ask(CounterMsg::Get).await?);
        Ok(())
    }
}

/// Ping side of ping-pong.
struct Pinger {
    pong: ActorRef<PongMsg>,
    rounds: u64,
    target: u64,
    done: Option<Reply<u64>>,
}

enum PingMsg {
    Start(u64, Reply<u64>),
    Ball(u64),
}
impl Message for PingMsg {}

impl Actor for Pinger {
    type Msg = PingMsg;
    async fn handle(&mut self, msg: PingMsg, _ctx: &mut Context<Self>) -> ActorResult {
        match msg {
            PingMsg::Start(n, done) => {
                self.target = n;
                self.rounds = 0;
                self.done = Some(done);
                self.pong.tell(PongMsg::Ball(0)).await?;
            }
            PingMsg::Ball(v) => {
                self.rounds += 1;
                if self.rounds == self.target {
                    if let Some(done) = self.done.take() {
                        done.send(v);
                    }
                } else {
                    self.pong.tell(PongMsg::Ball(v + 1)).await?;
                }
            }
        }
        Ok(())
    }
}

struct Ponger {
    ping: Option<ActorRef<PingMsg>>,
}

enum PongMsg {
    Ball(u64),
    SetPing(ActorRef<PingMsg>),
}
impl Message for PongMsg {
    fn visit_refs(&self, visit: &mut dyn FnMut(UntypedRef)) {
        if let PongMsg::SetPing(r) = self {
            r.visit_refs(visit);
        }
    }
}

impl Actor for Ponger {
    type Msg = PongMsg;
    async fn handle(&mut self, msg: PongMsg, _ctx: &mut Context<Self>) -> ActorResult {
        match msg {
            PongMsg::SetPing(r) => self.ping = Some(r),
            PongMsg::Ball(v) => {
                if let Some(ping) = &self.ping {
                    ping.tell(PingMsg::Ball(v)).await?;
                }
            }
        }
        Ok(())
    }
}

/// One member of the token ring.
struct RingMember {
    next: Option<ActorRef<RingMsg>>,
    done: Arc<parking_lot::Mutex<Option<tokio::sync::oneshot::Sender<u64>>>>,
    hops: u64,
}

enum RingMsg {
    Next(ActorRef<RingMsg>),
    Token(u64),
}
impl Message for RingMsg {}

impl Actor for RingMember {
    type Msg = RingMsg;
    async fn handle(&mut self, msg: RingMsg, _ctx: &mut Context<Self>) -> ActorResult {
        match msg {
            RingMsg::Next(next) => self.next = Some(next),
            RingMsg::Token(0) => {
                if let Some(tx) = self.done.lock().take() {
                    let _ = tx.send(self.hops);
                }
            }
            RingMsg::Token(left) => {
                if let Some(next) = &self.next {
                    next.tell(RingMsg::Token(left - 1)).await?;
                }
            }
        }
        Ok(())
    }
}

/// Asks a counter `n` times in sequence, recording each latency.
struct Asker {
    target: ActorRef<CounterMsg>,
}

struct AskRun(u64, Reply<Histogram<u64>>);
impl Message for AskRun {}

impl Actor for Asker {
    type Msg = AskRun;
    async fn handle(&mut self, AskRun(n, done): AskRun, _ctx: &mut Context<Self>) -> ActorResult {
        let mut hist = Histogram::<u64>::new(3)?;
        for _ in 0..n {
            let t = Instant::now();
            let v = self.target.ask(CounterMsg::Get).await?;
            if v != 0 {
                return Err("wrong reply".into());
            }
            hist.record(t.elapsed().as_nanos() as u64)?;
        }
        done.send(hist);
        Ok(())
    }
}

/// One actor of Savina's Big.
struct BigActor {
    index: usize,
    /// The first index and the number of the actors it pings (all of them, in Savina's Big).
    group: (usize, usize),
    peers: Arc<Vec<ActorRef<BigMsg>>>,
    rng: XorShift,
    left: u64,
    done: Option<tokio::sync::mpsc::UnboundedSender<usize>>,
}

enum BigMsg {
    /// Every actor gets the peer list before anyone starts pinging.
    Setup(Arc<Vec<ActorRef<BigMsg>>>, Reply<()>),
    Start(u64, tokio::sync::mpsc::UnboundedSender<usize>),
    Ping(usize),
    Pong,
}
impl Message for BigMsg {}

impl BigActor {
    async fn ping_someone(&mut self) -> ActorResult {
        let (first, n) = self.group;
        let mut target = first + self.rng.below(n as u64) as usize;
        if target == self.index {
            target = first + (target - first + 1) % n;
        }
        self.left -= 1;
        self.peers[target].tell(BigMsg::Ping(self.index)).await?;
        Ok(())
    }
}

impl Actor for BigActor {
    type Msg = BigMsg;
    async fn handle(&mut self, msg: BigMsg, _ctx: &mut Context<Self>) -> ActorResult {
        match msg {
            BigMsg::Setup(peers, ready) => {
                self.peers = peers;
                ready.send(());
            }
            BigMsg::Start(pings, done) => {
                self.left = pings;
                self.done = Some(done);
                self.ping_someone().await?;
            }
            BigMsg::Ping(from) => self.peers[from].tell(BigMsg::Pong).await?,
            BigMsg::Pong => {
                if self.left == 0 {
                    if let Some(done) = self.done.take() {
                        let _ = done.send(self.index);
                    }
                } else {
                    self.ping_someone().await?;
                }
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The troupe side of each benchmark.

fn troupe_tell(workers: usize, n: u64) -> Duration {
    with_system(workers, async |system| {
        let counter = system.spawn(Counter(0));
        let blaster = system.spawn(Blaster { target: counter });
        let start = Instant::now();
        let count = blaster.ask(|r| (n, r)).await.expect("blaster finished");
        let elapsed = start.elapsed();
        assert_eq!(count, n, "troupe tell lost messages");
        elapsed
    })
}

fn troupe_pingpong(workers: usize, n: u64) -> Duration {
    with_system(workers, async |system| {
        let ponger = system.spawn(Ponger { ping: None });
        let pinger = system.spawn(Pinger { pong: ponger.clone(), rounds: 0, target: 0, done: None });
        ponger.tell(PongMsg::SetPing(pinger.clone())).await.expect("setup");
        let start = Instant::now();
        let last = pinger.ask(|r| PingMsg::Start(n, r)).await.expect("pingpong finished");
        let elapsed = start.elapsed();
        assert_eq!(last, n - 1, "troupe pingpong lost the ball");
        elapsed
    })
}

fn troupe_ring(workers: usize, size: usize, hops: u64) -> Duration {
    with_system(workers, async |system| {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let done = Arc::new(parking_lot::Mutex::new(Some(tx)));
        let members: Vec<_> =
            (0..size).map(|_| system.spawn(RingMember { next: None, done: done.clone(), hops })).collect();
        for (i, m) in members.iter().enumerate() {
            m.tell(RingMsg::Next(members[(i + 1) % size].clone())).await.expect("setup");
        }
        let start = Instant::now();
        members[0].tell(RingMsg::Token(hops)).await.expect("token");
        let got = rx.await.expect("ring finished");
        let elapsed = start.elapsed();
        assert_eq!(got, hops);
        elapsed
    })
}

fn troupe_spawn(workers: usize, n: usize) -> Duration {
    with_system(workers, async |system| {
        let alive_before = system.stats().alive();
        let start = Instant::now();
        let mut actors = Vec::with_capacity(n);
        for _ in 0..n {
            let actor = system.spawn(Counter(0));
            actor.tell(CounterMsg::Add(1)).await.expect("tell");
            actors.push(actor);
        }
        for actor in &actors {
            assert_eq!(actor.ask(CounterMsg::Get).await.expect("ask"), 1);
        }
        for actor in &actors {
            actor.stop();
        }
        while system.stats().alive() > alive_before {
            // Sleep rather than spin: a spinning waiter would take a core from the workers.
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        let elapsed = start.elapsed();
        assert!(actors.iter().all(|a| !a.is_alive()));
        elapsed
    })
}

fn troupe_ask(workers: usize, n: u64) -> Latency {
    with_system(workers, async |system| {
        let counter = system.spawn(Counter(0));
        let asker = system.spawn(Asker { target: counter });
        let hist = asker.ask(|r| AskRun(n, r)).await.expect("asks finished");
        assert_eq!(hist.len(), n, "not every ask was recorded");
        Latency::from_histogram(&hist)
    })
}

/// Savina's Big, with the actors split into `groups` equal groups (the last takes the rest), each
/// actor pinging only actors of its own group; one group is Savina's Big.
fn troupe_big(workers: usize, actors: usize, pings: u64, groups: usize) -> (Duration, u64) {
    let groups = groups.max(1);
    let per_group = (actors / groups).max(2);
    let group_of = move |index: usize| {
        let group = (index / per_group).min(groups - 1);
        let first = group * per_group;
        (first, if group == groups - 1 { actors - first } else { per_group })
    };
    with_system(workers, async |system| {
        let refs: Vec<_> = (0..actors)
            .map(|index| {
                system.spawn(BigActor {
                    index,
                    group: group_of(index),
                    peers: Arc::new(Vec::new()),
                    rng: XorShift::new(index as u64),
                    left: 0,
                    done: None,
                })
            })
            .collect();
        let peers = Arc::new(refs);
        for r in peers.iter() {
            r.ask(|ready| BigMsg::Setup(peers.clone(), ready)).await.expect("setup");
        }
        let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
        let start = Instant::now();
        for r in peers.iter() {
            r.tell(BigMsg::Start(pings, done_tx.clone())).await.expect("start");
        }
        let mut finished = vec![false; actors];
        for _ in 0..actors {
            // A failed actor would leave this waiting forever: bound the wait.
            let index = tokio::time::timeout(Duration::from_secs(120), done_rx.recv())
                .await
                .expect("Big did not finish within 120 s")
                .expect("done");
            assert!(!finished[index], "actor {index} finished twice");
            finished[index] = true;
        }
        (start.elapsed(), actors as u64 * pings * 2)
    })
}

/// How long a cache line takes to go from one core to another and back, in ns (median of 5 runs): two
/// threads bounce a counter. `cores` depends on it more than on anything troupe does: on this project's VMs
/// it is ~90 ns in some runs and 200-500 ns in others (the host places the two vCPUs differently), and Big
/// on two workers runs at ~10 M msg/s in the first case and ~5.5 M msg/s in the second.
/// `None` on a machine with one core, where the two threads would take turns instead.
pub fn core_to_core_roundtrip_ns() -> Option<f64> {
    use std::sync::atomic::{AtomicU64, Ordering};
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        return None;
    }
    const ROUNDS: u64 = 100_000;
    /// Each sample stops after this long even if not all rounds are done (a busy machine).
    const BUDGET: Duration = Duration::from_millis(50);
    const STOP: u64 = u64::MAX;
    /// Spins between yields, so two threads sharing one core still make progress.
    fn wait_until(flag: &AtomicU64, done: impl Fn(u64) -> bool) -> u64 {
        let mut spins = 0u32;
        loop {
            let v = flag.load(Ordering::Acquire);
            if done(v) {
                return v;
            }
            spins += 1;
            if spins % 1024 == 0 {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }
    let mut samples: Vec<f64> = (0..5)
        .map(|_| {
            let flag = Arc::new(AtomicU64::new(0));
            let other = {
                let flag = flag.clone();
                std::thread::spawn(move || loop {
                    // Answer every odd value with the next even one, until told to stop.
                    let v = wait_until(&flag, |v| v == STOP || v % 2 == 1);
                    if v == STOP {
                        return;
                    }
                    flag.store(v + 1, Ordering::Release);
                })
            };
            let start = Instant::now();
            let mut rounds = 0;
            while rounds < ROUNDS && (rounds % 1024 != 0 || start.elapsed() < BUDGET) {
                flag.store(2 * rounds + 1, Ordering::Release);
                wait_until(&flag, |v| v == 2 * rounds + 2);
                rounds += 1;
            }
            let ns = start.elapsed().as_nanos() as f64 / rounds.max(1) as f64;
            flag.store(STOP, Ordering::Release);
            other.join().expect("bouncing thread");
            ns
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    Some(samples[samples.len() / 2])
}

/// Resident memory of this process in bytes.
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0);
    pages * 4096
}

/// Bytes of resident memory per idle actor: spawn `n` actors, have each handle one message, wait
/// until they are idle, and divide the growth of the resident set by `n`.
fn troupe_idle_bytes(workers: usize, n: usize) -> f64 {
    with_system(workers, async |system| {
        let mut actors = Vec::with_capacity(n);
        let before = rss_bytes();
        for _ in 0..n {
            actors.push(system.spawn(Counter(0)));
        }
        for actor in &actors {
            actor.tell(CounterMsg::Add(1)).await.expect("tell");
        }
        // Every actor has handled its message once the last one answers an ask with 1 (FIFO per
        // sender), and a sample of the others agree.
        for actor in actors.iter().rev().step_by((n / 100).max(1)) {
            assert_eq!(actor.ask(CounterMsg::Get).await.expect("ask"), 1);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let after = rss_bytes();
        assert_eq!(system.stats().alive() as usize, n + 1, "actors died");
        after.saturating_sub(before) as f64 / n as f64
    })
}

/// Runs the suite and returns one line per benchmark.
pub fn run(sizes: Sizes, workers: usize, only: Option<&str>, mut on_line: impl FnMut(&BenchLine)) -> Vec<BenchLine> {
    let runs = sizes.runs;
    let mut lines = Vec::new();
    let mut emit = |line: BenchLine| {
        on_line(&line);
        lines.push(line);
    };
    let wanted = |name: &str| super::wanted(only, name);

    if wanted("tell") {
        let (ours, base) = paired_medians(
            runs,
            || per_sec(sizes.tell, troupe_tell(workers, sizes.tell)),
            || per_sec(sizes.tell, baseline::tell(workers, sizes.tell)),
        );
        emit(BenchLine::new("local", "tell", "msg/s", ours, Some(base)));
    }

    if wanted("pingpong") {
        let (ours, base) = paired_medians(
            runs,
            || per_sec(sizes.pingpong, troupe_pingpong(workers, sizes.pingpong)),
            || per_sec(sizes.pingpong, baseline::pingpong(workers, sizes.pingpong)),
        );
        emit(BenchLine::new("local", "pingpong", "roundtrips/s", ours, Some(base)));
    }

    if wanted("ring") {
        let (ours, base) = paired_medians(
            runs,
            || per_sec(sizes.ring_hops, troupe_ring(workers, sizes.ring_actors, sizes.ring_hops)),
            || per_sec(sizes.ring_hops, baseline::ring(workers, sizes.ring_actors, sizes.ring_hops)),
        );
        emit(BenchLine::new("local", "ring", "hops/s", ours, Some(base)));
    }

    if wanted("spawn") {
        let (ours, base) = paired_medians(
            runs,
            || per_sec(sizes.spawn as u64, troupe_spawn(workers, sizes.spawn)),
            || per_sec(sizes.spawn as u64, baseline::spawn(workers, sizes.spawn)),
        );
        emit(BenchLine::new("local", "spawn", "actors/s", ours, Some(base)));
    }

    if wanted("ask") {
        let (mut ours, mut base) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            ours.push(troupe_ask(workers, sizes.ask));
            base.push(baseline::ask(workers, sizes.ask));
        }
        let ours = median_latency(ours);
        let base = median_latency(base);
        emit(
            BenchLine::new("local", "ask", "ns", ours.p50_ns, Some(base.p50_ns))
                .with("p99", ours.p99_ns)
                .with("baseline_p99", base.p99_ns),
        );
    }

    let big_base = |w: usize| {
        let (elapsed, msgs) = baseline::big(w, sizes.big_actors, sizes.big_pings);
        per_sec(msgs, elapsed)
    };
    let big_ours = |w: usize| {
        let (elapsed, msgs) = troupe_big(w, sizes.big_actors, sizes.big_pings, 1);
        per_sec(msgs, elapsed)
    };
    // One group of actors per worker, each pinging only within its group.
    let big_grouped = |w: usize| {
        let (elapsed, msgs) = troupe_big(w, sizes.big_actors, sizes.big_pings, workers);
        per_sec(msgs, elapsed)
    };
    if wanted("big") {
        let (ours, base) = paired_medians(runs, || big_ours(workers), || big_base(workers));
        emit(BenchLine::new("local", "big", "msg/s", ours, Some(base)));
    }

    if wanted("cores") {
        // All workers against one worker, alternated like the pairs above.
        let (ours_all, ours_one) = paired_medians(runs, || big_ours(workers), || big_ours(1));
        // The same for the tokio baseline, as context: how much the extra workers give plain tokio
        // tasks on this machine (1.28x from one to two on the project's 2-vCPU VMs).
        let (base_all, base_one) = paired_medians(runs, || big_base(workers), || big_base(1));
        // And troupe's scaling when the actors that talk to each other are few enough to share a
        // core (what ActOp's partitioning arranges between nodes): Big in one group per worker.
        // Savina's Big sends every ping to a uniformly random actor, so on two workers half of
        // its messages go to an actor whose state is in the other core's cache.
        let (grouped_all, grouped_one) = paired_medians(runs, || big_grouped(workers), || big_grouped(1));
        let mut line = BenchLine::new("local", "cores", "ratio", ours_all / ours_one, None)
            .with("workers", workers)
            .with("all_workers_msg_s", ours_all)
            .with("one_worker_msg_s", ours_one)
            .with("baseline_all_vs_one", base_all / base_one)
            .with("grouped_all_vs_one", grouped_all / grouped_one)
            .with("grouped_all_workers_msg_s", grouped_all);
        if let Some(ns) = core_to_core_roundtrip_ns() {
            line = line.with("core_to_core_roundtrip_ns", ns);
        }
        emit(line);
    }

    // Last: a million actors leave a gigabyte of freed, fragmented heap behind. Benchmarks run after it
    // measured that heap's state, not the runtime (cores fell from ~1.2 to ~0.45 in half the runs on this
    // project's VMs, with the same profile, only slower memory).
    if wanted("idle_actor_bytes") {
        let idle = troupe_idle_bytes(workers, sizes.idle_actors);
        emit(BenchLine::new("local", "idle_actor_bytes", "bytes", idle, None).with("actors", sizes.idle_actors));
    }
    lines
}

fn median_latency(mut runs: Vec<Latency>) -> Latency {
    runs.sort_by(|a, b| a.p50_ns.total_cmp(&b.p50_ns));
    runs[runs.len() / 2]
}
