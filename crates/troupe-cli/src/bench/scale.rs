//! `troupe bench scale`: N real nodes in one process (each with its own loopback listener and
//! real TCP connections) join an overlay through one seed, then carry Plumtree broadcasts.
//!
//! It reports how long the join took to converge, the fraction of (broadcast, node) pairs
//! delivered, broadcast-layer messages per broadcast, and resident memory and file descriptors
//! per node. With `--sweep` it doubles the cluster from 32 nodes up to `--nodes` and stops at the
//! first size that fails (join not converged in time, or a broadcast not delivered everywhere):
//! that is how the largest cluster an overlay sustains on this machine is found.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Serialize;
use troupe::net::{Node, NodeConfig, OverlayKind, Role, Topic};

/// Arguments of `troupe bench scale`.
#[derive(clap::Args, Debug, Clone)]
pub struct ScaleArgs {
    /// The overlay: static, full, client-server or hyparview.
    #[arg(long, default_value = "hyparview")]
    pub overlay: OverlayKind,
    /// Nodes (with --sweep: the largest size tried).
    #[arg(long, default_value_t = 128)]
    pub nodes: usize,
    /// Broadcasts after the join.
    #[arg(long, default_value_t = 1000)]
    pub broadcasts: usize,
    /// Give up on the join after this many seconds.
    #[arg(long, default_value_t = 180)]
    pub join_timeout: u64,
    /// Client-server: how many of the nodes are servers.
    #[arg(long, default_value_t = 4)]
    pub servers: usize,
    /// Double the size from 32 up to --nodes, stopping at the first failure.
    #[arg(long)]
    pub sweep: bool,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
    /// After the join, watch the cluster for this many seconds (descriptors and connections
    /// every 5 s on stderr) before broadcasting: shows whether the steady state holds.
    #[arg(long, default_value_t = 0)]
    pub hold: u64,
}

/// One measured cluster.
#[derive(Debug, Clone, Serialize)]
pub struct ScaleResult {
    pub suite: &'static str,
    pub bench: &'static str,
    pub overlay: String,
    pub nodes: usize,
    /// Delivered (broadcast, node) pairs over broadcasts x nodes.
    pub delivery: f64,
    /// Seconds from the first node's start until the overlay converged; `None` if it did not.
    pub join_secs: Option<f64>,
    /// Broadcast-layer messages sent (gossip, announcements, grafts, prunes, repairs) per broadcast.
    pub msgs_per_broadcast: f64,
    /// `None` when it could not be read (the process was out of descriptors at that moment).
    pub rss_bytes_per_node: Option<u64>,
    /// `None` when it could not be read (the process was out of descriptors at that moment).
    pub fds_per_node: Option<f64>,
    pub broadcasts: usize,
    /// Seconds the broadcasts took until the last delivery (or the give-up time).
    pub broadcast_secs: f64,
    /// Whether the run met its own bar: converged, and every broadcast reached every node.
    pub ok: bool,
}

/// Runs the benchmark (or the sweep) and prints one line per cluster size.
pub fn run(args: ScaleArgs) -> anyhow::Result<Vec<ScaleResult>> {
    let overlay = args.overlay;
    anyhow::ensure!(overlay != OverlayKind::None, "bench scale needs an overlay");
    anyhow::ensure!(args.nodes >= 2, "--nodes must be at least 2");
    raise_fd_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let sizes: Vec<usize> = if args.sweep {
        let mut sizes: Vec<usize> =
            std::iter::successors(Some(32usize), |n| n.checked_mul(2)).take_while(|n| *n < args.nodes).collect();
        sizes.push(args.nodes);
        sizes
    } else {
        vec![args.nodes]
    };
    let mut results = Vec::new();
    for nodes in sizes {
        let result = runtime.block_on(measure(&args, overlay, nodes))?;
        print(&result, args.json);
        let ok = result.ok;
        results.push(result);
        if !ok && args.sweep {
            break;
        }
    }
    runtime.shutdown_timeout(Duration::from_secs(2));
    Ok(results)
}

fn print(r: &ScaleResult, json: bool) {
    if json {
        println!("{}", serde_json::to_string(r).unwrap_or_default());
    } else {
        println!(
            "scale {:<14} nodes {:>5}  join {:>8}  delivery {:.4}  msgs/bcast {:>8.1}  rss/node {:>8} B  fds/node {:>5}  {}",
            r.overlay,
            r.nodes,
            r.join_secs.map_or("timeout".to_string(), |s| format!("{s:.1} s")),
            r.delivery,
            r.msgs_per_broadcast,
            r.rss_bytes_per_node.map_or("?".into(), |v| v.to_string()),
            r.fds_per_node.map_or("?".into(), |v| format!("{v:.1}")),
            if r.ok { "ok" } else { "FAILED" }
        );
    }
}

fn node_config(i: usize, overlay: OverlayKind, servers: usize, seed: Option<String>) -> NodeConfig {
    NodeConfig {
        name: format!("n{i:05}"),
        cluster: "scale".into(),
        secret: Some("scale-benchmark-secret".into()),
        overlay,
        workers: Some(1),
        role: if overlay == OverlayKind::ClientServer && i >= servers { Role::Client } else { Role::Server },
        seeds: seed.into_iter().collect(),
        ..NodeConfig::default()
    }
}

async fn measure(args: &ScaleArgs, overlay: OverlayKind, n: usize) -> anyhow::Result<ScaleResult> {
    let handle = tokio::runtime::Handle::current();
    let rss_before = rss_bytes();
    let fds_before = open_fds();
    let started = Instant::now();
    let seed = Node::start_on_runtime(node_config(0, overlay, args.servers, None), handle.clone())
        .await
        .context("starting the seed node")?;
    let seed_addr = seed.local_addr().to_string();
    let mut nodes = vec![seed];
    // Servers first (client-server: clients need a server to join through), in batches.
    for batch in (1..n).collect::<Vec<_>>().chunks(32) {
        let mut starting = Vec::new();
        for &i in batch {
            let config = node_config(i, overlay, args.servers, Some(seed_addr.clone()));
            starting.push(tokio::spawn(Node::start_on_runtime(config, handle.clone())));
        }
        for s in starting {
            nodes.push(s.await?.context("starting a node")?);
        }
    }
    let join_deadline = started + Duration::from_secs(args.join_timeout);
    let mut join_secs = None;
    while Instant::now() < join_deadline {
        if converged(&nodes, overlay).await {
            join_secs = Some(started.elapsed().as_secs_f64());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let hold_until = Instant::now() + Duration::from_secs(args.hold);
    while Instant::now() < hold_until {
        let peers: usize = nodes.iter().map(|n| n.peers().len()).sum();
        let up: usize = nodes.iter().map(|n| n.peers().iter().filter(|p| p.up).count()).sum();
        let mut active = 0;
        for n in &nodes {
            active += n.overlay_state().await.map_or(0, |s| s.views.active.len());
        }
        eprintln!(
            "hold: {:?} descriptors, {} peer entries ({} up), {} active-view entries over {} nodes",
            open_fds(),
            peers,
            up,
            active,
            nodes.len()
        );
        tokio::time::sleep(Duration::from_secs(5).min(hold_until - Instant::now())).await;
    }

    // Broadcasts: every node counts what it receives on the benchmark topic.
    let topic = Topic(0x5ca1e);
    let counts: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let mut counters = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let mut rx = node.broadcasts();
        let counts = counts.clone();
        counters.push(tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(d) if d.topic == topic => {
                        counts[i].fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => return,
                }
            }
        }));
    }
    let sent_before = broadcast_messages(&nodes).await;
    let bcast_start = Instant::now();
    let mut rng = crate::rng::XorShift::new(n as u64);
    for b in 0..args.broadcasts {
        let from = &nodes[rng.below(n as u64) as usize];
        let payload = bytes::Bytes::from(format!("broadcast {b}").into_bytes());
        from.broadcast(topic, payload).await.context("broadcast")?;
        if b % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let expected = (args.broadcasts * n) as u64;
    let give_up = Instant::now() + Duration::from_secs(30);
    let delivered = loop {
        let total: u64 = counts.iter().map(|c| c.load(Ordering::Relaxed)).sum();
        if total >= expected || Instant::now() > give_up {
            break total;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let broadcast_secs = bcast_start.elapsed().as_secs_f64();
    let sent_after = broadcast_messages(&nodes).await;
    let rss = rss_bytes().zip(rss_before).map(|(after, before)| after.saturating_sub(before));
    let fds = open_fds().zip(fds_before).map(|(after, before)| after.saturating_sub(before));
    for c in counters {
        c.abort();
    }
    for node in &nodes {
        node.shutdown().await;
    }
    let delivery = delivered as f64 / expected as f64;
    Ok(ScaleResult {
        suite: "scale",
        bench: "scale",
        overlay: overlay.as_str().to_string(),
        nodes: n,
        delivery,
        join_secs,
        msgs_per_broadcast: sent_after.saturating_sub(sent_before) as f64 / args.broadcasts.max(1) as f64,
        rss_bytes_per_node: rss.map(|r| r / n as u64),
        fds_per_node: fds.map(|f| f as f64 / n as f64),
        broadcasts: args.broadcasts,
        broadcast_secs,
        ok: join_secs.is_some() && delivered == expected,
    })
}

/// Converged: every node has a neighbour, the neighbour graph is one component, and in a full
/// mesh every node is connected to every other.
async fn converged(nodes: &[Node], overlay: OverlayKind) -> bool {
    let index: HashMap<u64, usize> = nodes.iter().enumerate().map(|(i, n)| (n.id().0, i)).collect();
    let mut parent: Vec<usize> = (0..nodes.len()).collect();
    fn find(p: &mut [usize], mut x: usize) -> usize {
        while p[x] != x {
            p[x] = p[p[x]];
            x = p[x];
        }
        x
    }
    let debug = std::env::var_os("TROUPE_SCALE_DEBUG").is_some();
    for (i, node) in nodes.iter().enumerate() {
        let Some(state) = node.overlay_state().await else { return false };
        let active = &state.views.active;
        if debug {
            eprintln!(
                "{} active {} passive {} peers {}",
                node.name(),
                active.len(),
                state.views.passive.len(),
                node.peers().len()
            );
        }
        if active.is_empty() || (overlay == OverlayKind::Full && active.len() + 1 < nodes.len()) {
            return false;
        }
        for m in active {
            if let Some(&j) = index.get(&m.id.0) {
                let (a, b) = (find(&mut parent, i), find(&mut parent, j));
                parent[a] = b;
            }
        }
    }
    let root = find(&mut parent, 0);
    (0..nodes.len()).all(|i| find(&mut parent, i) == root)
}

/// Broadcast-layer messages sent by all nodes so far.
async fn broadcast_messages(nodes: &[Node]) -> u64 {
    let mut total = 0;
    for node in nodes {
        if let Some(s) = node.overlay_state().await {
            let b = s.broadcast;
            total += b.gossip_sent + b.ihave_sent + b.graft_sent + b.prune_sent + b.repair_sent;
        }
    }
    total
}

fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn open_fds() -> Option<u64> {
    std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count() as u64)
}

/// Raises the open-file limit to the hard limit: a thousand nodes in one process hold tens of
/// thousands of sockets.
fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer.
    unsafe {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return;
        }
        let wanted = libc::rlimit { rlim_cur: 1 << 20, rlim_max: 1 << 20 };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) != 0 {
            limit.rlim_cur = limit.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
