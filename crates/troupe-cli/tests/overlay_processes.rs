//! Every overlay across real OS processes (`troupe node`, overlay chosen by `TROUPE_OVERLAY`):
//! four processes join through one seed; an in-process observer joins too and crawls everyone's
//! views over the network; kill -9 of a node removes it from every view and the rest stays
//! connected (HyParView repairs from its passive view); a node that leaves and comes back (a new
//! incarnation under the same name) is removed and then joins again.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use common::{spawn_node, ChildNode, SECRET};
use troupe::net::{Node, NodeConfig, NodeSnapshot, OverlayKind, Role};

/// Generous: full-mesh removal of an unreachable node takes its 10 s unreachable timeout.
const WAIT: Duration = Duration::from_secs(30);

async fn spawn(name: &str, overlay: &str, seed: Option<&ChildNode>, role: &str) -> ChildNode {
    let mut env = vec![("TROUPE_OVERLAY", overlay), ("TROUPE_ROLE", role)];
    if let Some(seed) = seed {
        env.push(("TROUPE_SEEDS", seed.addr.as_str()));
    }
    spawn_node(name, &env).await
}

/// Waits until the observer's crawl finds exactly `names` (plus itself) answering, none of
/// them listing a node outside that set as an active neighbour, every one with a neighbour,
/// and the neighbour graph connected.
async fn wait_for_cluster(observer: &Node, names: &[&str]) -> Vec<NodeSnapshot> {
    let deadline = Instant::now() + WAIT;
    let mut want: HashSet<String> = names.iter().map(|s| s.to_string()).collect();
    want.insert(observer.name().to_string());
    loop {
        let snaps = observer.cluster_snapshot(64).await;
        let got: HashSet<String> = snaps.iter().map(|s| s.name.clone()).collect();
        let live: HashSet<u64> = snaps.iter().map(|s| s.id.0).collect();
        let by_id: HashMap<u64, &NodeSnapshot> = snaps.iter().map(|s| (s.id.0, s)).collect();
        let clean = snaps.iter().all(|s| !s.active.is_empty() && s.active.iter().all(|m| live.contains(&m.id.0)));
        let mut reached = HashSet::from([observer.id().0]);
        let mut frontier = vec![observer.id().0];
        while let Some(id) = frontier.pop() {
            for m in by_id.get(&id).map(|s| s.active.as_slice()).unwrap_or(&[]) {
                if reached.insert(m.id.0) {
                    frontier.push(m.id.0);
                }
            }
        }
        // Active views are symmetric once quiet, so reachability from the observer suffices.
        if got == want && clean && reached.len() == snaps.len() {
            return snaps;
        }
        assert!(
            Instant::now() < deadline,
            "cluster did not settle on {want:?} in {WAIT:?}; crawl: {:?}",
            snaps.iter().map(|s| (&s.name, s.active.iter().map(|m| &m.name).collect::<Vec<_>>())).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn observer(overlay: OverlayKind, seed: &ChildNode, role: Role) -> Node {
    Node::start(NodeConfig {
        name: "observer".into(),
        secret: Some(SECRET.into()),
        workers: Some(1),
        overlay,
        role,
        seeds: vec![seed.addr.clone()],
        ..NodeConfig::default()
    })
    .await
    .expect("observer")
}

/// Join, kill -9, leave and rejoin for one overlay. `roles` gives each of the four processes'
/// role (only the client-server overlay reads it); `victim` is killed, `leaver` leaves and
/// comes back.
async fn lifecycle(overlay: OverlayKind, roles: [&str; 4], victim: usize, leaver: usize) {
    let kind = overlay.as_str();
    let seed = spawn("p0", kind, None, roles[0]).await;
    let mut procs = vec![seed];
    for (i, role) in roles.iter().enumerate().skip(1) {
        procs.push(spawn(&format!("p{i}"), kind, Some(&procs[0]), role).await);
    }
    let watcher = observer(overlay, &procs[0], Role::Server).await;
    let mut names: Vec<String> = (0..4).map(|i| format!("p{i}")).collect();
    let as_refs = |v: &Vec<String>| v.iter().map(String::as_str).collect::<Vec<_>>().join(",");
    wait_for_cluster(&watcher, &as_refs(&names).split(',').collect::<Vec<_>>()).await;

    // kill -9: gone from every view, the rest still one connected overlay.
    procs[victim].kill9();
    names.retain(|n| *n != format!("p{victim}"));
    wait_for_cluster(&watcher, &as_refs(&names).split(',').collect::<Vec<_>>()).await;

    // Leave (stdin closes: an orderly shutdown) and come back under the same name (a new
    // incarnation).
    let leaver_name = format!("p{leaver}");
    procs[leaver].stop();
    let without: Vec<String> = names.iter().filter(|n| **n != leaver_name).cloned().collect();
    wait_for_cluster(&watcher, &as_refs(&without).split(',').collect::<Vec<_>>()).await;
    procs[leaver] = spawn(&leaver_name, kind, Some(&procs[0]), roles[leaver]).await;
    wait_for_cluster(&watcher, &as_refs(&names).split(',').collect::<Vec<_>>()).await;
    watcher.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_mesh_across_processes() {
    lifecycle(OverlayKind::Full, ["server"; 4], 2, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hyparview_across_processes() {
    lifecycle(OverlayKind::Hyparview, ["server"; 4], 1, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_server_across_processes() {
    lifecycle(OverlayKind::ClientServer, ["server", "server", "client", "client"], 2, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_overlay_across_processes() {
    // A star around the seed p0: kill a leaf.
    lifecycle(OverlayKind::Static, ["server"; 4], 1, 3).await;
}
