//! The demo's cluster part: three nodes (two OS processes and this one) on loopback join the
//! configured overlay, serve the live dashboard, exchange messages (tells with acknowledged
//! delivery, asks, refs passed inside messages) and a Plumtree broadcast; then one node is killed
//! with SIGKILL, the others notice and the overlay repairs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use hdrhistogram::Histogram;
use std::net::SocketAddr;
use troupe::actor::{Actor, ActorRef, ActorResult, Context, Down, Payload, SendOptions};
use troupe::net::{OverlayKind, Topic};
use troupe::{Node, NodeConfig, NodeEvent};
use troupe_cli::process::NodeProcess;
use troupe_cli::services::ServiceMsg;

const SECRET: &str = "troupe-demo-cluster-secret";

/// A named node process.
struct Process {
    name: &'static str,
    node: NodeProcess,
}

/// What the cluster part runs.
pub struct ClusterArgs {
    /// Seconds of traffic.
    pub seconds: u64,
    /// The overlay every node runs.
    pub overlay: OverlayKind,
    /// Where corinth serves the dashboard.
    pub dashboard: SocketAddr,
    /// Seconds to keep the cluster up at the end.
    pub linger: u64,
}

fn spawn_node(name: &'static str, seed: Option<&str>, overlay: OverlayKind) -> anyhow::Result<Process> {
    let mut env = vec![
        ("TROUPE_OVERLAY", overlay.as_str().to_string()),
        ("TROUPE_NAME", name.to_string()),
        ("TROUPE_SECRET", SECRET.to_string()),
        ("TROUPE_LISTEN", "127.0.0.1:0".to_string()),
        ("TROUPE_WORKERS", "1".to_string()),
        ("TROUPE_CHANNELS__BULK__PARALLELISM", "4".to_string()),
    ];
    if let Some(seed) = seed {
        env.push(("TROUPE_SEEDS", seed.to_string()));
    }
    Ok(Process { name, node: NodeProcess::spawn(&std::env::current_exe()?, &[], &env)? })
}

/// Watches one remote actor and records when its Down arrives.
struct Watcher {
    target: ActorRef<ServiceMsg>,
    downs: Arc<parking_lot::Mutex<Vec<(Down, Instant)>>>,
}

impl Actor for Watcher {
    type Msg = ();

    async fn started(&mut self, ctx: &mut Context<Self>) -> ActorResult {
        ctx.watch(&self.target);
        Ok(())
    }

    async fn handle(&mut self, _: (), _ctx: &mut Context<Self>) -> ActorResult {
        Ok(())
    }

    async fn on_down(&mut self, down: Down, _ctx: &mut Context<Self>) -> ActorResult {
        self.downs.lock().push((down, Instant::now()));
        Ok(())
    }
}

/// Prints the overlay as corinth's crawl of every node's views sees it.
async fn show_overlay(node: &Node, when: &str) -> usize {
    let snaps = node.cluster_snapshot(64).await;
    let views: Vec<String> = snaps
        .iter()
        .map(|s| format!("{} -> [{}]", s.name, s.active.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", ")))
        .collect();
    println!("cluster: overlay {when}: {}", views.join("; "));
    snaps.len()
}

/// Runs the cluster part.
pub async fn run(args: ClusterArgs) -> anyhow::Result<()> {
    let seconds = args.seconds;
    println!();
    println!(
        "cluster: starting nodes athens and sparta as separate processes; this process is corinth; overlay {}",
        args.overlay.as_str()
    );
    let athens = spawn_node("athens", None, args.overlay)?;
    let sparta = spawn_node("sparta", Some(&athens.node.addr), args.overlay)?;
    let mut config = NodeConfig {
        name: "corinth".into(),
        secret: Some(SECRET.into()),
        listen: vec!["127.0.0.1:0".into()],
        workers: Some(1),
        reconnect_min_ms: 50,
        overlay: args.overlay,
        seeds: vec![athens.node.addr.clone()],
        ..NodeConfig::default()
    };
    config.channels.insert("bulk".into(), troupe::net::ChannelConfig { parallelism: 4, monotonic: false });
    let node = Node::start(config).await?;
    let mut events = node.events();
    for p in [&athens, &sparta] {
        node.connect(&p.node.addr).await.with_context(|| format!("connecting to {}", p.name))?;
    }
    let sinks: Vec<ActorRef<ServiceMsg>> =
        vec![node.lookup("athens", "sink").await?, node.lookup("sparta", "sink").await?];
    let echoes: Vec<ActorRef<ServiceMsg>> =
        vec![node.lookup("athens", "echo").await?, node.lookup("sparta", "echo").await?];
    println!(
        "cluster: corinth connected to {} ({}); control + default + bulk(4) channels",
        node.peers().iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", "),
        node.peers().len()
    );
    let source = Arc::new(troupe_cli::dashboard::NodeSource::new(node.clone(), 256));
    let dashboard = troupe_cli::dashboard::serve(args.dashboard, source).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while node.cluster_snapshot(64).await.iter().filter(|s| !s.active.is_empty()).count() < 3
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    show_overlay(&node, "joined").await;
    println!("cluster: live dashboard of the cluster at {} (open it in a browser)", dashboard.url());

    // A Plumtree broadcast from corinth: every node's overlay delivers it.
    let topic = Topic(1);
    let mut deliveries = node.broadcasts();
    let id = node.broadcast(topic, bytes::Bytes::from_static(b"hello, cluster")).await?;
    let here = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match deliveries.recv().await {
                Ok(d) if d.id == id => return true,
                Ok(_) => continue,
                Err(_) => return false,
            }
        }
    })
    .await
    .unwrap_or(false);
    let mut there = Vec::new();
    for (name, echo) in ["athens", "sparta"].iter().zip(&echoes) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut seen = 0;
        while seen == 0 && Instant::now() < deadline {
            seen = echo.ask(ServiceMsg::Broadcasts).await?;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        there.push(format!("{name} {}", if seen > 0 { "yes" } else { "NO" }));
    }
    println!(
        "cluster: Plumtree broadcast from corinth delivered: corinth {}, {}",
        if here { "yes" } else { "NO" },
        there.join(", ")
    );

    // Traffic: 8 clients tell with acknowledged delivery and ask the echoes.
    let sent = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let asks = Arc::new(parking_lot::Mutex::new(Histogram::<u64>::new(3)?));
    let stop_at = Instant::now() + Duration::from_secs(seconds);
    let mut clients = Vec::new();
    for c in 0..8u64 {
        let sinks: Vec<_> = sinks.iter().map(|s| s.with_options(SendOptions::new().ack())).collect();
        let echoes = echoes.clone();
        let sent = sent.clone();
        let asks = asks.clone();
        clients.push(tokio::spawn(async move {
            let mut i = c;
            while Instant::now() < stop_at {
                let to = (i % 2) as usize;
                if sinks[to].tell(ServiceMsg::Data(vec![c as u8; 256].into())).await.is_ok() {
                    sent[to].fetch_add(1, Ordering::Relaxed);
                }
                if i % 16 == 0 {
                    let start = Instant::now();
                    if echoes[to].ask(|r| ServiceMsg::Echo(vec![1; 64].into(), r)).await.is_ok() {
                        asks.lock().record(start.elapsed().as_nanos() as u64).ok();
                    }
                }
                i += 1;
            }
        }));
    }
    // Meanwhile, a ref travels: athens's sink forwards to sparta's sink.
    sinks[0]
        .tell(ServiceMsg::Forward { to: sinks[1].clone(), bytes: Payload::from_static(b"hello from athens") })
        .await?;
    for client in clients {
        client.await?;
    }
    let mut counts = [0u64; 2];
    for (i, sink) in sinks.iter().enumerate() {
        // Acknowledged messages arrive exactly once; wait until the counts settle.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            counts[i] = sink.ask(ServiceMsg::Count).await?.0;
            let expected = sent[i].load(Ordering::Relaxed) + u64::from(i == 1);
            if counts[i] >= expected || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let hist = asks.lock().clone();
    println!(
        "cluster: {} acked tells to athens, {} counted there; {} to sparta (+1 forwarded by athens through a ref), {} counted",
        sent[0].load(Ordering::Relaxed),
        counts[0],
        sent[1].load(Ordering::Relaxed),
        counts[1]
    );
    println!(
        "cluster: {} remote asks, p50 {:.0} µs, p99 {:.0} µs",
        hist.len(),
        hist.value_at_quantile(0.5) as f64 / 1e3,
        hist.value_at_quantile(0.99) as f64 / 1e3
    );

    // Failure: kill -9 sparta while corinth watches its sink, and while an actor on sparta is
    // linked to one here (the link was made on sparta's side).
    let downs = Arc::new(parking_lot::Mutex::new(Vec::new()));
    node.system().spawn(Watcher { target: sinks[1].clone(), downs: downs.clone() });
    let linked_here = node.system().spawn(troupe_cli::services::Service::default());
    let to = linked_here.clone();
    let linked_there = sinks[1].ask(|reply| ServiceMsg::SpawnLinked { to, reply }).await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut sparta = sparta;
    let killed = Instant::now();
    sparta.node.kill()?;
    let event = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match events.recv().await {
                Ok(NodeEvent::Down { name, reason, .. }) if name == "sparta" => return Some((reason, Instant::now())),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    })
    .await
    .ok()
    .flatten();
    match event {
        Some((reason, at)) => println!(
            "cluster: sparta killed with SIGKILL; corinth saw it down after {:.0} ms ({reason})",
            (at - killed).as_secs_f64() * 1e3
        ),
        None => println!("cluster: sparta killed with SIGKILL; corinth did NOT notice within 10 s"),
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    if let Some((down, _)) = downs.lock().first() {
        println!("cluster: the watcher of sparta's sink got Down({})", down.reason);
    }
    let linked_exit = tokio::time::timeout(Duration::from_secs(5), linked_here.untyped().wait_for_exit()).await;
    match linked_exit {
        Ok(reason) => println!(
            "cluster: the actor on corinth that {} on sparta had linked to exited with it ({reason})",
            linked_there.id()
        ),
        Err(_) => println!("cluster: the actor on corinth that one on sparta had linked to is still running"),
    }
    let failed = sinks[1].ask_timeout(ServiceMsg::Count, Duration::from_secs(2)).await;
    println!(
        "cluster: an ask to sparta now fails at once: {}",
        failed.err().map(|e| e.to_string()).unwrap_or_else(|| "it answered?!".into())
    );
    let still = sinks[0].ask(ServiceMsg::Count).await?.0;
    println!("cluster: athens still serves (count {still})");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let snaps = node.cluster_snapshot(64).await;
        let repaired = snaps.len() == 2 && snaps.iter().all(|s| s.active.iter().all(|m| m.name != "sparta"));
        if repaired || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    show_overlay(&node, "after the kill").await;
    if args.linger > 0 {
        println!("cluster: keeping the cluster up for {} s; dashboard at {}", args.linger, dashboard.url());
        tokio::time::sleep(Duration::from_secs(args.linger)).await;
    }
    dashboard.shutdown().await;
    let stats = node.stats();
    println!(
        "cluster: corinth sent {} messages ({} MB), retransmits {}, dead letters {}",
        stats.messages_out,
        stats.bytes_out / 1_000_000,
        stats.retransmits,
        stats.dead_letters
    );
    node.shutdown().await;
    drop(athens);
    if counts[0] != sent[0].load(Ordering::Relaxed) {
        bail!("athens counted {} of {} acknowledged messages", counts[0], sent[0].load(Ordering::Relaxed));
    }
    Ok(())
}
