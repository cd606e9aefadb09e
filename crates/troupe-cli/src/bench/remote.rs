//! `troupe bench remote`: two nodes in two OS processes on loopback, against raw TCP.
//!
//! The peer is `troupe node --services --raw-listen …` started as a child process; this process
//! runs the sending node. Each benchmark checks what arrived (counts from the peer's sink, echoed
//! bytes) so a broken run cannot report a number.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use troupe::actor::{Actor, ActorRef, ActorResult, Context, Payload, Reply, SendOptions};
use troupe::net::LinkEmulation;
use troupe::{Node, NodeConfig};
use troupe_cli::process::NodeProcess;
use troupe_cli::services::ServiceMsg;

use super::local::Latency;
use super::{per_sec, BenchLine};

const SECRET: &str = "troupe-bench-secret-0123456789";

/// Sizes of one run.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub tells: u64,
    pub asks: u64,
    pub bulk_bytes: u64,
    pub hol_asks: u64,
    pub echo_ops: u64,
}

impl Sizes {
    /// The sizes the issue specifies.
    pub fn full() -> Self {
        Sizes { tells: 5_000_000, asks: 50_000, bulk_bytes: 2 << 30, hol_asks: 300, echo_ops: 2_048 }
    }

    /// A smoke test.
    pub fn quick() -> Self {
        Sizes { tells: 50_000, asks: 500, bulk_bytes: 64 << 20, hol_asks: 30, echo_ops: 128 }
    }
}

/// Round-trip time of the emulated link in `echo20ms`.
const ECHO_RTT_MS: f64 = 20.0;

/// Starts the peer process listening on `listen`, advertising `advertise`.
fn start_peer(listen: &str, advertise: Option<&str>, default_parallelism: u16) -> anyhow::Result<NodeProcess> {
    start_peer_with(listen, advertise, default_parallelism, &[])
}

/// [`start_peer`] with more `TROUPE_*` settings.
fn start_peer_with(
    listen: &str,
    advertise: Option<&str>,
    default_parallelism: u16,
    extra: &[(&'static str, String)],
) -> anyhow::Result<NodeProcess> {
    let mut env = vec![
        ("TROUPE_NAME", "peer".to_string()),
        ("TROUPE_SECRET", SECRET.to_string()),
        ("TROUPE_LISTEN", listen.to_string()),
        ("TROUPE_WORKERS", "1".to_string()),
        ("TROUPE_NET_THREADS", "1".to_string()),
        ("TROUPE_CHANNELS__BULK__PARALLELISM", "16".to_string()),
        ("TROUPE_CHANNELS__DEFAULT__PARALLELISM", default_parallelism.to_string()),
        ("TROUPE_SEND_QUEUE_BYTES", (16 << 20).to_string()),
    ];
    if let Some(a) = advertise {
        env.push(("TROUPE_ADVERTISE", a.to_string()));
    }
    env.extend(extra.iter().cloned());
    NodeProcess::spawn(&std::env::current_exe()?, &["--raw-listen", "127.0.0.1:0"], &env)
}

fn node_config(name: &str, bulk_parallelism: Option<u16>, default_parallelism: u16) -> NodeConfig {
    let mut channels = std::collections::BTreeMap::new();
    if let Some(p) = bulk_parallelism {
        channels.insert("bulk".to_string(), troupe::net::ChannelConfig { parallelism: p, monotonic: false });
    }
    channels.insert(
        "default".to_string(),
        troupe::net::ChannelConfig { parallelism: default_parallelism, monotonic: false },
    );
    NodeConfig {
        name: name.into(),
        secret: Some(SECRET.into()),
        listen: vec!["127.0.0.1:0".into()],
        workers: Some(1),
        net_threads: 1,
        send_queue_bytes: 16 << 20,
        channels,
        ..NodeConfig::default()
    }
}

async fn count(sink: &ActorRef<ServiceMsg>) -> anyhow::Result<(u64, u64)> {
    Ok(sink.ask_timeout(ServiceMsg::Count, Duration::from_secs(120)).await?)
}

/// Rounds tell64 alternates between troupe and raw TCP, so a drift of the machine's speed (large
/// on our shared VMs) affects both sides alike.
const TELL_ROUNDS: u64 = 5;

/// tell64: `n` small tells to the sink and `n` raw length-prefixed frames on one tokio TCP
/// connection, alternating in [`TELL_ROUNDS`] rounds, each round confirmed by the receiver's
/// count; (troupe msg/s, raw msg/s) over the summed round times.
async fn tell64(sink: &ActorRef<ServiceMsg>, raw: &str, n: u64) -> anyhow::Result<(f64, f64)> {
    let tcp = tokio::net::TcpStream::connect(raw).await?;
    tcp.set_nodelay(true)?;
    let (mut r, w) = tcp.into_split();
    let mut w = BufWriter::with_capacity(64 * 1024, w);
    let payload = Payload::from(vec![7u8; 64]);
    let raw_payload = [7u8; 64];
    let per_round = (n / TELL_ROUNDS).max(1);
    let (mut ours, mut base) = (Duration::ZERO, Duration::ZERO);
    let mut raw_sent = 0u64;
    for _ in 0..TELL_ROUNDS {
        let (before, _) = count(sink).await?;
        let start = Instant::now();
        for _ in 0..per_round {
            sink.tell(ServiceMsg::Data(payload.clone())).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        let (after, _) = count(sink).await?;
        ours += start.elapsed();
        if after - before != per_round {
            bail!("tell64: the sink counted {} of {per_round}", after - before);
        }

        let start = Instant::now();
        for _ in 0..per_round {
            w.write_all(&64u32.to_le_bytes()).await?;
            w.write_all(&raw_payload).await?;
        }
        w.write_all(&0u32.to_le_bytes()).await?;
        w.flush().await?;
        let frames = r.read_u64_le().await?;
        let _bytes = r.read_u64_le().await?;
        base += start.elapsed();
        raw_sent += per_round;
        if frames != raw_sent {
            bail!("raw tell64: the server counted {frames} of {raw_sent}");
        }
    }
    let total = per_round * TELL_ROUNDS;
    Ok((per_sec(total, ours), per_sec(total, base)))
}

/// ask64's asker: an actor that, for each message, asks the echo service once and answers with
/// how long that took (ns), or what went wrong.
struct Asker {
    echo: ActorRef<ServiceMsg>,
    payload: Payload,
}

impl Actor for Asker {
    type Msg = Reply<Result<u64, String>>;
    async fn handle(&mut self, done: Self::Msg, _ctx: &mut Context<Self>) -> ActorResult {
        done.send(timed_echo(&self.echo, &self.payload).await.map_err(|e| e.to_string()));
        Ok(())
    }
}

/// One echo ask of `payload`, checked; how long it took (ns).
async fn timed_echo(echo: &ActorRef<ServiceMsg>, payload: &Payload) -> anyhow::Result<u64> {
    let start = Instant::now();
    let echoed = echo.ask(|r| ServiceMsg::Echo(payload.clone(), r)).await?;
    let ns = start.elapsed().as_nanos() as u64;
    if echoed != *payload {
        bail!("ask64: wrong echo");
    }
    Ok(ns)
}

/// One ask64 series: troupe's asks and the raw ping-pongs paired with them.
struct AskSeries {
    troupe: Latency,
    raw: Latency,
}

/// ask64: `n` sequential echo asks from an actor, each paired with one raw TCP ping-pong (the
/// bench's value and baseline: `bench local`'s `ask` is one actor asking another too), then `n / 5`
/// asks from a plain tokio task paired the same way (reported alongside). Within a pair the two
/// take turns going first; each series starts with a warm-up of a tenth as many pairs.
///
/// Paired, not in rounds: on our 2-vCPU VMs a ping-pong's latency depends on what ran in the last
/// tens of milliseconds (a vCPU's wake-up is fast while the host still polls it, slow once it
/// has gone back to sleep). Right after switching from one kind of ping-pong to another, each
/// kind ran at 24-31 µs for ~1,500 round trips, then usually settled near 65 µs (raw alone: 62-69
/// µs). In rounds of 5,000 the baseline was often measured mostly in that fast phase (27-31 µs
/// against troupe's 64-74). Paired, both sides see the same history.
async fn ask64(node: &Node, echo: &ActorRef<ServiceMsg>, raw: &str, n: u64) -> anyhow::Result<(AskSeries, AskSeries)> {
    let payload = Payload::from(vec![3u8; 64]);
    let mut tcp = tokio::net::TcpStream::connect(raw).await?;
    tcp.set_nodelay(true)?;
    let mut frame = Vec::with_capacity(68);
    frame.extend_from_slice(&64u32.to_le_bytes());
    frame.push(1);
    frame.extend_from_slice(&[3u8; 63]);
    let mut back = vec![0u8; 68];
    let mut raw_ping = async || -> anyhow::Result<u64> {
        let start = Instant::now();
        tcp.write_all(&frame).await?;
        tcp.read_exact(&mut back).await?;
        let ns = start.elapsed().as_nanos() as u64;
        if back != frame {
            bail!("raw ask64: wrong echo");
        }
        Ok(ns)
    };

    let asker = node.system().spawn(Asker { echo: echo.clone(), payload: payload.clone() });
    let from_actor = async || -> anyhow::Result<u64> {
        asker.ask(|r| r).await?.map_err(|e| anyhow::anyhow!("ask64 from an actor: {e}"))
    };
    let from_actor = paired(n, from_actor, &mut raw_ping).await;
    asker.stop();
    let from_actor = from_actor?;

    let from_task = async || timed_echo(echo, &payload).await;
    let from_task = paired((n / 5).max(1), from_task, &mut raw_ping).await?;
    Ok((from_actor, from_task))
}

/// Runs `n` pairs of `ours` and `raw` (plus a warm-up of a tenth as many), taking turns at going
/// first; each returns the ns it measured.
async fn paired(
    n: u64,
    mut ours: impl AsyncFnMut() -> anyhow::Result<u64>,
    raw: &mut impl AsyncFnMut() -> anyhow::Result<u64>,
) -> anyhow::Result<AskSeries> {
    let mut troupe = Histogram::<u64>::new(3)?;
    let mut base = Histogram::<u64>::new(3)?;
    let warm_up = (n / 10).max(1);
    for i in 0..warm_up + n {
        let (a, b) = if i % 2 == 0 {
            let a = ours().await?;
            (a, raw().await?)
        } else {
            let b = raw().await?;
            (ours().await?, b)
        };
        if i >= warm_up {
            troupe.record(a)?;
            base.record(b)?;
        }
    }
    Ok(AskSeries { troupe: Latency::from_histogram(&troupe), raw: Latency::from_histogram(&base) })
}

/// bulk512k: 512 KiB messages; MB/s.
async fn bulk(sink: &ActorRef<ServiceMsg>, total: u64) -> anyhow::Result<f64> {
    let size = 512 * 1024;
    let n = total / size as u64;
    let template = Payload::from(vec![9u8; size]);
    let (m0, b0) = count(sink).await?;
    let start = Instant::now();
    for _ in 0..n {
        sink.tell(ServiceMsg::Data(template.clone())).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let (m1, b1) = count(sink).await?;
    let elapsed = start.elapsed();
    if m1 - m0 != n || b1 - b0 != n * size as u64 {
        bail!("bulk: the sink counted {} messages of {n}", m1 - m0);
    }
    Ok((n * size as u64) as f64 / elapsed.as_secs_f64() / 1e6)
}

async fn raw_bulk(raw: &str, total: u64) -> anyhow::Result<f64> {
    let size = 512 * 1024;
    let n = total / size as u64;
    let tcp = tokio::net::TcpStream::connect(raw).await?;
    tcp.set_nodelay(true)?;
    let (mut r, mut w) = tcp.into_split();
    let mut frame = Vec::with_capacity(size + 4);
    frame.extend_from_slice(&(size as u32).to_le_bytes());
    frame.extend_from_slice(&vec![9u8; size]);
    let start = Instant::now();
    for _ in 0..n {
        w.write_all(&frame).await?;
    }
    w.write_all(&0u32.to_le_bytes()).await?;
    let frames = r.read_u64_le().await?;
    let _ = r.read_u64_le().await?;
    let elapsed = start.elapsed();
    if frames != n {
        bail!("raw bulk: {frames} of {n}");
    }
    Ok((n * size as u64) as f64 / elapsed.as_secs_f64() / 1e6)
}

/// How long hol's stream runs before the asks are timed.
///
/// The first few hundred milliseconds of a stream of 8 MiB messages are a start-up transient:
/// the receiver faults in a fresh buffer for each connection's first frames (16 connections x
/// two or three frames x 8 MiB, some 65,000 page faults), which saturates both cores of our
/// machines. Timed after 200 ms, the asks fell into that transient in 4 of 6 runs (p99 3-4 ms:
/// threads woken on a saturated core wait out the running thread's slice); after 1 s, 34 of 38
/// runs had p99 0.24-0.62 ms (the other four 1.3-4.1 ms). The baseline gets the same warm-up.
const HOL_WARM_UP: Duration = Duration::from_secs(1);

/// hol: p99 of small asks on the default channel while 8 MiB messages stream to another actor
/// (on the bulk channel when `bulk` is set), timed after [`HOL_WARM_UP`].
async fn hol(node: &Node, bulk_channel: bool, asks: u64) -> anyhow::Result<(f64, f64)> {
    let echo: ActorRef<ServiceMsg> = node.lookup("peer", "echo").await?;
    let sink: ActorRef<ServiceMsg> = node.lookup("peer", "sink").await?;
    let sink = if bulk_channel { sink.with_options(SendOptions::new().channel("bulk")) } else { sink };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let streamer = {
        let stop = stop.clone();
        let sink = sink.clone();
        tokio::spawn(async move {
            let big = Payload::from(vec![1u8; 8 << 20]);
            let mut sent = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if sink.tell(ServiceMsg::Data(big.clone())).await.is_err() {
                    break;
                }
                sent += 1;
            }
            sent
        })
    };
    tokio::time::sleep(HOL_WARM_UP).await;
    let mut hist = Histogram::<u64>::new(3)?;
    let payload = Payload::from(vec![5u8; 64]);
    for _ in 0..asks {
        let start = Instant::now();
        let back = echo.ask_timeout(|r| ServiceMsg::Echo(payload.clone(), r), Duration::from_secs(60)).await?;
        hist.record(start.elapsed().as_nanos() as u64)?;
        if back != payload {
            bail!("hol: wrong echo");
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = streamer.await?;
    if sent == 0 {
        bail!("hol: no large message was sent");
    }
    // Let the stream drain before the next benchmark: the count ask queues behind it.
    count(&sink).await?;
    Ok((hist.value_at_quantile(0.99) as f64, sent as f64))
}

/// Partisan's echo over an emulated 20 ms RTT link with a 4 MiB window per connection and direction:
/// 128 askers, 512 KiB payloads, `parallelism` connections on the default channel. Both nodes emulate the
/// link in their transport (each delays what it receives by 10 ms and keeps the window), so every byte
/// crosses one real TCP connection: through a `LinkProxy`, each byte would cross two more, and on a 2-core
/// machine this would measure the proxy's CPU use rather than the link.
async fn echo_link(parallelism: u16, ops: u64) -> anyhow::Result<f64> {
    const ACTORS: u64 = 128;
    let link = LinkEmulation {
        one_way_delay_ms: ECHO_RTT_MS / 2.0,
        inflight_bytes: Some(troupe::net::emulation::DEFAULT_INFLIGHT_CAP),
        loss: 0.0,
    };
    let peer_env = [
        ("TROUPE_LINK__ONE_WAY_DELAY_MS", link.one_way_delay_ms.to_string()),
        ("TROUPE_LINK__INFLIGHT_BYTES", troupe::net::emulation::DEFAULT_INFLIGHT_CAP.to_string()),
    ];
    let peer = start_peer_with("127.0.0.1:0", None, parallelism, &peer_env)?;
    let mut config = node_config("bench", None, parallelism);
    config.link = Some(link);
    let node = Node::start(config).await?;
    node.connect(&peer.addr).await?;
    let echo: ActorRef<ServiceMsg> = node.lookup("peer", "echo").await?;
    let payload = Payload::from(vec![4u8; 512 * 1024]);
    let per_actor = ops.div_ceil(ACTORS);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for a in 0..ACTORS {
        // Each asker gets its own partition key, as Partisan's echo actors do.
        let echo = echo.with_options(SendOptions::new().partition_key(a));
        let payload = payload.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..per_actor {
                let back = echo.ask_timeout(|r| ServiceMsg::Echo(payload.clone(), r), Duration::from_secs(120)).await?;
                if back.len() != payload.len() {
                    anyhow::bail!("echo: wrong length");
                }
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let elapsed = start.elapsed();
    node.shutdown().await;
    Ok(per_sec(per_actor * ACTORS, elapsed))
}

/// Runs the suite.
pub fn run(sizes: Sizes, only: Option<&str>, mut on_line: impl FnMut(&BenchLine)) -> anyhow::Result<()> {
    let wanted = |name: &str| super::wanted(only, name);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    rt.block_on(async {
        let peer = start_peer("127.0.0.1:0", None, 1)?;
        let node = Node::start(node_config("bench", Some(16), 1)).await?;
        node.connect(&peer.addr).await?;
        let sink: ActorRef<ServiceMsg> = node.lookup("peer", "sink").await?;
        let echo: ActorRef<ServiceMsg> = node.lookup("peer", "echo").await?;
        if wanted("tell64") {
            let raw = peer.raw.clone().context("the peer has no raw listener")?;
            let (ours, base) = tell64(&sink, &raw, sizes.tells).await?;
            on_line(&BenchLine::new("remote", "tell64", "msg/s", ours, Some(base)).with("messages", sizes.tells));
        }
        if wanted("ask64") {
            let (actor, task) = ask64(&node, &echo, peer.raw.as_deref().context("raw")?, sizes.asks).await?;
            on_line(
                &BenchLine::new("remote", "ask64", "ns", actor.troupe.p50_ns, Some(actor.raw.p50_ns))
                    .with("p99", actor.troupe.p99_ns)
                    .with("baseline_p99", actor.raw.p99_ns)
                    .with("asks", sizes.asks)
                    .with("from_task_p50", task.troupe.p50_ns)
                    .with("from_task_p99", task.troupe.p99_ns)
                    .with("from_task_baseline_p50", task.raw.p50_ns)
                    .with("from_task_asks", (sizes.asks / 5).max(1)),
            );
        }
        if wanted("bulk512k") {
            let ours = bulk(&sink, sizes.bulk_bytes).await?;
            let base = raw_bulk(peer.raw.as_deref().context("raw")?, sizes.bulk_bytes).await?;
            on_line(&BenchLine::new("remote", "bulk512k", "MB/s", ours, Some(base)).with("bytes", sizes.bulk_bytes));
        }
        if wanted("hol") {
            let (ours, sent) = hol(&node, true, sizes.hol_asks).await?;
            let single = Node::start(node_config("bench-single", None, 1)).await?;
            single.connect(&peer.addr).await?;
            let (base, base_sent) = hol(&single, false, sizes.hol_asks).await?;
            single.shutdown().await;
            on_line(
                &BenchLine::new("remote", "hol", "ns", ours, Some(base))
                    .with("asks", sizes.hol_asks)
                    .with("large_messages", sent)
                    .with("baseline_large_messages", base_sent),
            );
        }
        node.shutdown().await;
        drop(peer);
        if wanted("echo20ms") {
            let ours = echo_link(16, sizes.echo_ops).await?;
            let base = echo_link(1, sizes.echo_ops / 4).await?;
            on_line(
                &BenchLine::new("remote", "echo20ms", "ops/s", ours, Some(base))
                    .with("parallelism", 16)
                    .with("baseline_parallelism", 1)
                    .with("actors", 128),
            );
        }
        anyhow::Ok(())
    })
}
