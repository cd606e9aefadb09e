//! Overlays over real loopback TCP, several nodes in one process: every overlay joins through one
//! seed and carries Plumtree broadcasts; relay reaches a node that is not a neighbour; a node
//! that leaves is reported; watches survive the release of idle connections.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use troupe_actor::{Actor, ActorRef, ActorResult, Context, Message, RemoteMessage, Reply};
use troupe_net::{Node, NodeConfig, NodeEvent, OverlayKind, Reach, Role, Topic};

const SECRET: &str = "a test secret of enough bytes";

fn config(name: &str, overlay: OverlayKind, seeds: &[&Node]) -> NodeConfig {
    NodeConfig {
        name: name.into(),
        secret: Some(SECRET.into()),
        workers: Some(1),
        overlay,
        seeds: seeds.iter().map(|n| n.local_addr().to_string()).collect(),
        ..NodeConfig::default()
    }
}

/// Pings an idle connection every 100 ms and gives up on it after two unanswered ones, so a
/// partitioned peer is declared down within about half a second.
fn fast_failure_detection(mut c: NodeConfig) -> NodeConfig {
    c.idle_ping_ms = 100;
    c.ping_timeout_ms = 100;
    c.ping_attempts = 2;
    c
}

/// Polls `done` every 50 ms; fails the test with `what` after 10 s.
async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether `x` has a working connection to the node named `name`.
fn connected(x: &Node, name: &str) -> bool {
    x.peers().iter().any(|p| p.name == name && p.up)
}

/// Starts `n` nodes joining through the first one.
async fn cluster(overlay: OverlayKind, n: usize, servers: usize) -> Vec<Node> {
    let mut first = config("n0", overlay, &[]);
    first.role = Role::Server;
    let seed = Node::start(first).await.expect("seed");
    let mut nodes = vec![seed];
    for i in 1..n {
        let mut c = config(&format!("n{i}"), overlay, &[&nodes[0]]);
        c.role = if i < servers { Role::Server } else { Role::Client };
        nodes.push(Node::start(c).await.expect("node"));
    }
    nodes
}

/// Waits until every node has a neighbour and the neighbour graph is connected (and, with
/// `full`, everyone is everyone's neighbour).
async fn wait_converged(nodes: &[Node], full: bool, within: Duration) {
    assert!(converges(nodes, full, within).await, "the overlay did not converge in {within:?}");
}

/// Whether, within `within`, every node has a neighbour and the neighbour graph is connected
/// (and, with `full`, everyone is everyone's neighbour).
async fn converges(nodes: &[Node], full: bool, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        let mut ok = true;
        let mut reached: HashSet<u64> = HashSet::from([nodes[0].id().0]);
        let mut edges = Vec::new();
        for node in nodes {
            let state = node.overlay_state().await.expect("an overlay runs");
            let active = state.views.active;
            if active.is_empty() || (full && active.len() + 1 < nodes.len()) {
                ok = false;
            }
            edges.extend(active.iter().map(|m| (node.id().0, m.id.0)));
        }
        for _ in 0..nodes.len() {
            for (a, b) in &edges {
                if reached.contains(a) || reached.contains(b) {
                    reached.insert(*a);
                    reached.insert(*b);
                }
            }
        }
        if ok && nodes.iter().all(|n| reached.contains(&n.id().0)) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Broadcasts from `from` and checks every node delivers it exactly once.
async fn broadcast_reaches_all(nodes: &[Node], from: usize, text: &str) {
    let topic = Topic(7);
    let mut receivers: Vec<_> = nodes.iter().map(|n| n.broadcasts()).collect();
    let id = nodes[from].broadcast(topic, Bytes::from(text.to_string())).await.expect("broadcast");
    for (i, rx) in receivers.iter_mut().enumerate() {
        let got = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let d = rx.recv().await.expect("delivery");
                if d.id == id {
                    return d;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("node {i} did not deliver the broadcast"));
        assert_eq!(got.payload, Bytes::from(text.to_string()));
        assert_eq!(got.topic, topic);
        assert_eq!(got.hops == 0, i == from, "hops 0 only at the origin");
    }
}

async fn overlay_joins_and_broadcasts(overlay: OverlayKind, servers: usize) {
    let nodes = cluster(overlay, 5, servers).await;
    wait_converged(&nodes, overlay == OverlayKind::Full, Duration::from_secs(20)).await;
    broadcast_reaches_all(&nodes, 3, "hello from n3").await;
    broadcast_reaches_all(&nodes, 0, "hello from n0").await;
    for node in &nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_overlay_joins_and_broadcasts() {
    overlay_joins_and_broadcasts(OverlayKind::Static, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_mesh_joins_and_broadcasts() {
    overlay_joins_and_broadcasts(OverlayKind::Full, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_server_joins_and_broadcasts() {
    overlay_joins_and_broadcasts(OverlayKind::ClientServer, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hyparview_joins_and_broadcasts() {
    overlay_joins_and_broadcasts(OverlayKind::Hyparview, 5).await;
}

#[derive(Serialize, Deserialize)]
enum CounterMsg {
    Add(u64),
    Get(Reply<u64>),
}
impl Message for CounterMsg {}
impl RemoteMessage for CounterMsg {
    const TYPE_NAME: &'static str = "test.overlay.Counter";
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
        }
        Ok(())
    }
}

/// A chain a - b - c on a static overlay, every node relaying, joined; `tweak_c` adjusts c's
/// configuration. a and c are not connected.
async fn relay_chain(tweak_c: impl FnOnce(&mut NodeConfig)) -> (Node, Node, Node) {
    let relay = |mut c: NodeConfig| {
        c.reach = Reach::Relay;
        c
    };
    let b = Node::start(relay(config("b", OverlayKind::Static, &[]))).await.unwrap();
    let a = Node::start(relay(config("a", OverlayKind::Static, &[&b]))).await.unwrap();
    let mut c_config = relay(config("c", OverlayKind::Static, &[&b]));
    tweak_c(&mut c_config);
    let c = Node::start(c_config).await.unwrap();
    wait_converged(&[a.clone(), b.clone(), c.clone()], false, Duration::from_secs(10)).await;
    assert!(a.peers().iter().all(|p| p.name != "c"), "a and c must not be connected");
    (a, b, c)
}

/// A chain a - b - c (static overlay): a reaches an actor on c through b, and c's reply comes
/// back the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_reaches_a_node_that_is_not_a_neighbour() {
    let (a, b, c) = relay_chain(|_| {}).await;

    let counter = c.system().spawn(Counter(0));
    // Registering exports it (as sending its ref in a message would).
    c.register("counter", &counter).expect("register");
    let far = a.actor_ref::<CounterMsg>(counter.id());
    for _ in 0..10 {
        far.tell(CounterMsg::Add(1)).await.expect("relayed tell");
    }
    let total = far.ask(CounterMsg::Get).await.expect("relayed ask");
    assert_eq!(total, 10);
    assert!(b.stats().relayed >= 11, "b passed the messages on: {:?}", b.stats());
    assert!(a.peers().iter().all(|p| p.name != "c"), "still no direct connection");
    for node in [a, b, c] {
        node.shutdown().await;
    }
}

#[derive(Serialize, Deserialize)]
struct Blob(Vec<u8>);
impl Message for Blob {}
impl RemoteMessage for Blob {
    const TYPE_NAME: &'static str = "test.overlay.Blob";
}

/// Counts blobs; the first one holds its handler until the gate opens.
struct GatedSink {
    gate: Option<tokio::sync::oneshot::Receiver<()>>,
    received: std::sync::Arc<std::sync::atomic::AtomicU64>,
}
impl Actor for GatedSink {
    type Msg = Blob;
    async fn handle(&mut self, _blob: Blob, _ctx: &mut Context<Self>) -> ActorResult {
        if let Some(gate) = self.gate.take() {
            let _ = gate.await;
        }
        self.received.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}

/// A [`GatedSink`] with a mailbox of one on `on`, addressed from `from`: (the ref `from` uses,
/// its count of blobs handled, the sender that opens its gate).
fn gated_sink(
    on: &Node,
    from: &Node,
) -> (ActorRef<Blob>, std::sync::Arc<std::sync::atomic::AtomicU64>, tokio::sync::oneshot::Sender<()>) {
    let received = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (open, gate) = tokio::sync::oneshot::channel();
    let sink = on
        .system()
        .spawn(troupe_actor::Props::new(GatedSink { gate: Some(gate), received: received.clone() }).capacity(1));
    // Registering exports it (as sending its ref in a message would).
    on.register(&format!("sink-{}", sink.id().serial), &sink).expect("register");
    (from.actor_ref::<Blob>(sink.id()), received, open)
}

/// Relayed messages for an actor whose mailbox is full cannot hold up the neighbour's control
/// connection they came on, so they wait for room on tasks of their own: bounded (four send
/// queues' worth of bytes, 256 KiB here, and a quarter of that per actor), past which they are
/// dropped and counted, where they used to pile up without limit. Every message is either
/// delivered or counted dropped, and an actor that never takes its messages does not starve
/// another one of its share.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_messages_waiting_for_a_full_mailbox_are_bounded() {
    let (a, b, c) = relay_chain(|c| c.send_queue_bytes = 64 << 10).await;
    let blob = || Blob(vec![7; 16 << 10]);
    // Every message sent so far has reached c (in a mailbox, waiting for room, or dropped).
    let settled = |sent: u64| {
        let s = c.stats();
        s.messages_in + s.relay_waiting + s.relay_dropped == sent
    };
    let per_actor_most = 2 + (64 << 10) / (16 << 10);

    // The first sink stays blocked: its waits hold its share for the whole test.
    let (stuck, _, stuck_gate) = gated_sink(&c, &a);
    for _ in 0..100 {
        stuck.tell(blob()).await.expect("relayed tell");
    }
    wait_until("the relayed messages never all reached c", || settled(100)).await;
    assert!(c.stats().relay_dropped > 0, "c dropped nothing: {:?}", c.stats());
    let waiting = c.stats().relay_waiting;
    assert!(waiting >= 1 && waiting + 2 <= per_actor_most, "{waiting} waiting for one actor");

    // A second blocked sink still gets waits of its own.
    let in_before = c.stats().messages_in;
    let (second, received, open) = gated_sink(&c, &a);
    for _ in 0..100 {
        second.tell(blob()).await.expect("relayed tell");
    }
    wait_until("the relayed messages never all reached c", || settled(200)).await;
    let _ = open.send(());
    let dropped_before = c.stats().relay_dropped;
    let delivered = || received.load(std::sync::atomic::Ordering::SeqCst);
    wait_until("the second sink's waits never drained", || c.stats().relay_waiting == waiting).await;
    let handed_over = c.stats().messages_in - in_before;
    wait_until("relayed messages lost", || delivered() == handed_over).await;
    assert!(delivered() > 2, "the stuck actor's waits starved the second one: {} delivered", delivered());
    assert!(delivered() <= per_actor_most, "{} delivered: its waits were not bounded", delivered());
    assert_eq!(c.stats().relay_dropped, dropped_before, "a wait was dropped after it was admitted");
    assert_eq!(a.stats().relay_dropped + b.stats().relay_dropped, 0, "dropped on the way, not at c");
    drop(stuck_gate);
    for node in [a, b, c] {
        node.shutdown().await;
    }
}

/// Relayed traffic teaches the nodes it passes the way back to its origin. Static overlay, every
/// node relaying: o - h, h - x1 .. x4, x1 - t. A frame from o for t reaches h, which has no route
/// of its own to t and passes it to a random neighbour; x2 .. x4 are dead ends that return it,
/// and h tries once more with the hops left, so about one walk in two reaches t. Once one ask
/// has got through, t's reply follows the request's path back (x1 learned o's way from it),
/// teaching h the way to t, so every later ask gets through. Without learned routes, twenty asks
/// in a row would all get through with odds of about one in a million.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_traffic_teaches_the_way_back() {
    let relay = |name: &str, seeds: &[&Node]| {
        let mut c = config(name, OverlayKind::Static, seeds);
        c.reach = Reach::Relay;
        c
    };
    let h = Node::start(relay("h", &[])).await.unwrap();
    let mut spokes = Vec::new();
    for i in 1..=4 {
        spokes.push(Node::start(relay(&format!("x{i}"), &[&h])).await.unwrap());
    }
    let t = Node::start(relay("t", &[&spokes[0]])).await.unwrap();
    let o = Node::start(relay("o", &[&h])).await.unwrap();
    wait_until("the star never formed", || {
        connected(&o, "h") && connected(&t, "x1") && (1..=4).all(|i| connected(&h, &format!("x{i}")))
    })
    .await;

    let counter = t.system().spawn(Counter(0));
    t.register("counter", &counter).expect("register");
    let far = o.actor_ref::<CounterMsg>(counter.id());
    let mut walks = 0;
    while far.ask_timeout(CounterMsg::Get, Duration::from_millis(500)).await.is_err() {
        walks += 1;
        assert!(walks < 40, "no random walk reached t");
    }
    for i in 0..20 {
        far.tell(CounterMsg::Add(1)).await.expect("relayed tell");
        let total = far.ask_timeout(CounterMsg::Get, Duration::from_secs(2)).await;
        assert_eq!(total.ok(), Some(i + 1), "ask {i} after the first did not follow the learned route");
    }
    assert!(!connected(&o, "t"), "o reached t without the overlay");
    for node in [o, h, t].into_iter().chain(spokes) {
        node.shutdown().await;
    }
}

/// A node that leaves a full mesh is reported Left by the others and disappears from their views.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_leaves_is_removed() {
    let nodes = cluster(OverlayKind::Full, 3, 3).await;
    wait_converged(&nodes, true, Duration::from_secs(20)).await;
    let mut events = nodes[0].events();
    let leaving = nodes[2].id();
    nodes[2].shutdown().await;
    let left = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            if let Ok(NodeEvent::Left { node, .. }) = events.recv().await {
                if node == leaving {
                    return;
                }
            }
        }
    })
    .await;
    assert!(left.is_ok(), "n0 never saw n2 leave");
    let view = nodes[0].overlay_state().await.unwrap().views;
    assert!(view.active.iter().all(|m| m.id.0 != leaving.0), "n2 still in n0's view");
    for node in &nodes[..2] {
        node.shutdown().await;
    }
}

/// Seeds from a DNS name: every address `localhost` resolves to is dialled (the IPv6 one, where
/// nothing listens, fails and is skipped) and the node joins through the one that answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeds_come_from_a_dns_name() {
    let a = Node::start(config("a", OverlayKind::Full, &[])).await.unwrap();
    let mut c = config("b", OverlayKind::Full, &[]);
    c.seed_dns = vec![format!("localhost:{}", a.local_addr().port())];
    let b = Node::start(c).await.unwrap();
    wait_converged(&[a.clone(), b.clone()], true, Duration::from_secs(10)).await;
    for node in [a, b] {
        node.shutdown().await;
    }
}

/// Client-server with `reach = "relay"`: a client reaches an actor on another client through the
/// servers (clients never connect to each other).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_relay_between_clients() {
    let with = |name: &str, role: Role, seeds: &[&Node]| {
        let mut c = config(name, OverlayKind::ClientServer, seeds);
        c.role = role;
        c.reach = Reach::Relay;
        c
    };
    let s0 = Node::start(with("s0", Role::Server, &[])).await.unwrap();
    let s1 = Node::start(with("s1", Role::Server, &[&s0])).await.unwrap();
    let c0 = Node::start(with("c0", Role::Client, &[&s0])).await.unwrap();
    let c1 = Node::start(with("c1", Role::Client, &[&s1])).await.unwrap();
    let all = [s0.clone(), s1.clone(), c0.clone(), c1.clone()];
    wait_converged(&all, false, Duration::from_secs(20)).await;
    let counter = c1.system().spawn(Counter(0));
    c1.register("counter", &counter).expect("register");
    let far = c0.actor_ref::<CounterMsg>(counter.id());
    for _ in 0..5 {
        far.tell(CounterMsg::Add(2)).await.expect("relayed tell");
    }
    assert_eq!(far.ask(CounterMsg::Get).await.expect("relayed ask"), 10);
    assert!(c0.peers().iter().all(|p| p.name != "c1"), "clients never connect to each other");
    assert!(s0.stats().relayed + s1.stats().relayed >= 6, "the servers passed the messages on");
    for node in all {
        node.shutdown().await;
    }
}

/// Links itself to `0` when it starts.
struct Linker(troupe_actor::ActorRef<CounterMsg>);
impl Actor for Linker {
    type Msg = CounterMsg;
    async fn started(&mut self, ctx: &mut Context<Self>) -> ActorResult {
        ctx.link(self.0.clone());
        Ok(())
    }
    async fn handle(&mut self, msg: CounterMsg, _ctx: &mut Context<Self>) -> ActorResult {
        if let CounterMsg::Get(reply) = msg {
            reply.send(0);
        }
        Ok(())
    }
}

/// Two clients of one server (client-server overlay) reach each other only through it: a watch
/// or a link between their actors travels the same way, and never reports a false exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_and_links_reach_a_node_only_relayed_to() {
    use troupe_actor::ExitReason;
    let nodes = cluster(OverlayKind::ClientServer, 3, 1).await;
    wait_converged(&nodes, false, Duration::from_secs(20)).await;
    let (a, c) = (&nodes[1], &nodes[2]);
    let relayed = |what: &str| assert!(a.peers().iter().all(|p| p.name != "n2"), "{what}: a and c are connected");
    relayed("before");
    let within = |d| Duration::from_secs(d);

    // A watch: no false exit while the actor lives, its real exit when it stops.
    let counter = c.system().spawn(Counter(0));
    c.register("counter", &counter).expect("register");
    let far = a.actor_ref::<CounterMsg>(counter.id());
    far.tell(CounterMsg::Add(1)).await.expect("relayed tell");
    assert_eq!(far.ask(CounterMsg::Get).await.expect("relayed ask"), 1);
    let watched = far.untyped();
    let exit = tokio::spawn(async move { watched.wait_for_exit().await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!exit.is_finished(), "a watch over the relay reported an exit of a live actor");
    counter.stop();
    let reason = tokio::time::timeout(within(10), exit).await.expect("the relayed Down never came").unwrap();
    assert_eq!(reason, ExitReason::Normal);

    // A link, failing from c's side, then from a's side.
    for remote_fails in [true, false] {
        let target = c.system().spawn(Counter(0));
        c.register(if remote_fails { "t1" } else { "t2" }, &target).expect("register");
        let linker = a.system().spawn(Linker(a.actor_ref::<CounterMsg>(target.id())));
        assert_eq!(linker.ask(CounterMsg::Get).await.expect("linker started"), 0);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(linker.is_alive() && target.is_alive(), "a link over the relay failed a live actor");
        let (fails, follows) =
            if remote_fails { (target.untyped(), linker.untyped()) } else { (linker.untyped(), target.untyped()) };
        fails.kill();
        let reason = tokio::time::timeout(within(10), follows.wait_for_exit()).await.expect("the link never fired");
        assert_eq!(reason, ExitReason::LinkFailed(fails.id()));
    }
    relayed("after");
    for node in &nodes {
        node.shutdown().await;
    }
}

/// A counter spawned and registered on `home`, `from`'s ref to it (checked with an ask), and a
/// task that ends with the counter's exit as `from` hears of it.
async fn counter_watched_from(
    home: &Node,
    from: &Node,
) -> (
    troupe_actor::ActorRef<CounterMsg>,
    troupe_actor::ActorRef<CounterMsg>,
    tokio::task::JoinHandle<troupe_actor::ExitReason>,
) {
    let counter = home.system().spawn(Counter(0));
    home.register("counter", &counter).expect("register");
    let far = from.actor_ref::<CounterMsg>(counter.id());
    assert_eq!(far.ask(CounterMsg::Get).await.expect("the counter answers"), 0);
    let watched = far.untyped();
    let exit = tokio::spawn(async move { watched.wait_for_exit().await });
    (counter, far, exit)
}

/// A node that reaches another only through the overlay hears of its loss from the nodes that
/// were connected to it (a failure notice broadcast to every node): its watches and links fire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loss_of_a_node_reached_only_by_relay_reaches_its_watchers() {
    use troupe_actor::ExitReason;
    let quick = |name: &str, role: Role, seeds: &[&Node]| {
        let mut c = fast_failure_detection(config(name, OverlayKind::ClientServer, seeds));
        c.role = role;
        c
    };
    let b = Node::start(quick("b", Role::Server, &[])).await.unwrap();
    let a = Node::start(quick("a", Role::Client, &[&b])).await.unwrap();
    let c = Node::start(quick("c", Role::Client, &[&b])).await.unwrap();
    wait_converged(&[a.clone(), b.clone(), c.clone()], false, Duration::from_secs(10)).await;

    let (counter, far, exit) = counter_watched_from(&c, &a).await;
    let linker = a.system().spawn(Linker(far.clone()));
    assert_eq!(linker.ask(CounterMsg::Get).await.expect("linker started"), 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!exit.is_finished() && linker.is_alive(), "a false exit before c was lost");
    assert!(a.peers().iter().all(|p| p.name != "c"), "a and c must not be connected");

    // c is cut off from everyone: b declares it down and tells everyone (a, asked first,
    // cannot reach c either).
    for (x, y) in [(&b, &c), (&c, &b), (&a, &c), (&c, &a)] {
        x.partition(y.id(), true);
    }
    let reason = tokio::time::timeout(Duration::from_secs(10), exit).await.expect("a never heard c was lost").unwrap();
    assert_eq!(reason, ExitReason::NodeDown);
    let reason = tokio::time::timeout(Duration::from_secs(10), linker.untyped().wait_for_exit()).await.expect("link");
    assert_eq!(reason, ExitReason::LinkFailed(counter.id()));
    assert!(far.ask(CounterMsg::Get).await.is_err(), "asks to the lost node fail");
    for node in [a, b, c] {
        node.shutdown().await;
    }
}

/// Three nodes on a static overlay, each connected to the other two, with fast failure detection.
async fn triangle() -> (Node, Node, Node) {
    let quick = |name: &str, seeds: &[&Node]| fast_failure_detection(config(name, OverlayKind::Static, seeds));
    let c = Node::start(quick("c", &[])).await.unwrap();
    let b = Node::start(quick("b", &[&c])).await.unwrap();
    let a = Node::start(quick("a", &[&b, &c])).await.unwrap();
    wait_until("the triangle never formed", || connected(&a, "b") && connected(&a, "c") && connected(&b, "c")).await;
    (a, b, c)
}

/// Cuts the link between `x` and `y`, both ways (see `Node::partition`).
fn cut(x: &Node, y: &Node) {
    x.partition(y.id(), true);
    y.partition(x.id(), true);
}

/// After `asker` lost a node that others still reach: waits until it has withheld its failure
/// notice, then half a second more, and checks that none of `nodes` reported any node.
async fn expect_loss_withheld(asker: &Node, nodes: &[&Node]) {
    let what = format!("{} never withheld its loss", asker.name());
    wait_until(&what, || asker.stats().failure_notices_withheld > 0).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for node in nodes {
        assert_eq!(node.stats().failure_notices_sent, 0, "{} reported a node others still reach", node.name());
    }
}

/// One broken link does not get a live node reported lost: b loses its connection to c, asks a
/// (an indirect probe), a still hears from c, so b withholds its failure notice, and d, which
/// reaches c only through a (relayed), keeps its watch on c's actor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_link_does_not_get_a_live_node_reported_lost() {
    let (a, b, c) = triangle().await;
    let mut relayed = fast_failure_detection(config("d", OverlayKind::Static, &[&a]));
    relayed.reach = Reach::Relay;
    let d = Node::start(relayed).await.unwrap();
    wait_until("d never joined a", || connected(&d, "a")).await;
    let (_counter, from_d, exit) = counter_watched_from(&c, &d).await;
    assert!(!connected(&d, "c"), "d must reach c only through the overlay");

    cut(&b, &c);
    expect_loss_withheld(&b, &[&a, &b, &c, &d]).await;
    assert!(connected(&a, "c"), "a gave up a node it still reaches");
    assert!(!exit.is_finished(), "d's watch on c's actor fired while c lives");
    assert_eq!(from_d.ask(CounterMsg::Get).await.expect("c still answers d"), 0);
    for node in [a, b, c, d] {
        node.shutdown().await;
    }
}

/// Four nodes on a static line d - a - b - c with fast failure detection; d reaches every node
/// through the overlay (`reach = "relay"`), the others connect directly to nodes whose address
/// they know.
async fn static_line() -> (Node, Node, Node, Node) {
    let line = |name: &str, seeds: &[&Node]| fast_failure_detection(config(name, OverlayKind::Static, seeds));
    let c = Node::start(line("c", &[])).await.unwrap();
    let b = Node::start(line("b", &[&c])).await.unwrap();
    let a = Node::start(line("a", &[&b])).await.unwrap();
    let mut relayed = line("d", &[&a]);
    relayed.reach = Reach::Relay;
    let d = Node::start(relayed).await.unwrap();
    wait_until("the line never formed", || connected(&d, "a") && connected(&a, "b") && connected(&b, "c")).await;
    (d, a, b, c)
}

/// A helper that has no connection of its own to the lost node dials it for the probe (as with
/// HyParView's partial views, where a node's neighbours are rarely each other's): on a static line
/// d - a - b - c, a reaches c only by relay through b (it does not know c's address) and d, set
/// to reach every node through the overlay, only through a and b. b loses c and asks a; a dials
/// c (a probe connection), hears it, and b withholds its notice, so d's watch on c's actor does
/// not fire; and a, having vouched for c, connects to it, so d's relayed ask gets through a.
/// Without the probe dial, a would answer "not heard" and d would be told c is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_helper_without_a_connection_dials_the_lost_node_for_the_probe() {
    let (d, a, b, c) = static_line().await;
    let (_counter, from_d, exit) = counter_watched_from(&c, &d).await;
    assert!(!connected(&a, "c") && !connected(&d, "c"), "a and d must reach c only through b");

    cut(&b, &c);
    expect_loss_withheld(&b, &[&a, &b, &d]).await;
    wait_until("a never connected to the node it vouched for", || connected(&a, "c")).await;
    assert!(!exit.is_finished(), "d's watch on c's actor fired while c lives");
    assert_eq!(from_d.ask(CounterMsg::Get).await.expect("c still answers d, through a"), 0);
    assert!(!connected(&d, "c"), "d reached c without the overlay");

    // Now nobody reaches c: its loss is reported after all (by a, which loses the connection it
    // made, or by b, probing again), and d's watch fires.
    cut(&a, &c);
    let reason = tokio::time::timeout(Duration::from_secs(15), exit).await.expect("d never heard c was lost");
    assert_eq!(reason.expect("watch"), troupe_actor::ExitReason::NodeDown);
    for node in [a, b, c, d] {
        node.shutdown().await;
    }
}

/// A node that loses its link to another pings it through the overlay before reporting it: in
/// a static square a - b - c - d - a where every node reaches others only through the overlay
/// (`reach = "relay"`), no helper can vouch for b when the link a - b breaks (d, a's only other
/// peer, is not connected to b and may not dial it), but b answers a's ping relayed through d
/// and c, so a withholds its notice and d's watch on b's actor holds. Once nobody reaches b, it
/// is reported after all and the watch fires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_reachable_through_the_overlay_is_not_reported_lost() {
    let node = |name: &str, seeds: &[&Node]| {
        let mut c = fast_failure_detection(config(name, OverlayKind::Static, seeds));
        c.reach = Reach::Relay;
        c
    };
    let a = Node::start(node("a", &[])).await.unwrap();
    let b = Node::start(node("b", &[&a])).await.unwrap();
    let c = Node::start(node("c", &[&b])).await.unwrap();
    let d = Node::start(node("d", &[&c, &a])).await.unwrap();
    wait_until("the square never formed", || {
        connected(&a, "b") && connected(&b, "c") && connected(&c, "d") && connected(&d, "a")
    })
    .await;
    let (_counter, from_d, exit) = counter_watched_from(&b, &d).await;
    assert!(!connected(&a, "c") && !connected(&b, "d"), "the square has no diagonals");

    cut(&a, &b);
    expect_loss_withheld(&a, &[&a, &b, &c, &d]).await;
    assert!(!exit.is_finished(), "d's watch on b's actor fired while b lives");
    assert_eq!(from_d.ask(CounterMsg::Get).await.expect("b still answers d"), 0);

    // Now nobody reaches b: it is reported after all (a pings it again every 5 s).
    cut(&b, &c);
    let reason = tokio::time::timeout(Duration::from_secs(15), exit).await.expect("d never heard b was lost");
    assert_eq!(reason.expect("watch"), troupe_actor::ExitReason::NodeDown);
    for n in [a, b, c, d] {
        n.shutdown().await;
    }
}

/// Six nodes with the configuration `quick` makes, joining through the first, once their
/// neighbour graph is connected. Small HyParView views can leave racing joins in two components
/// for good (each node keeps a neighbour, so none promotes): the cluster is built again then, up
/// to three times.
async fn six_joined(quick: impl Fn(&str, &[&Node]) -> NodeConfig) -> Vec<Node> {
    for attempt in 1..=3 {
        let mut nodes = vec![Node::start(quick("n0", &[])).await.unwrap()];
        for i in 1..6 {
            let seed = nodes[0].clone();
            nodes.push(Node::start(quick(&format!("n{i}"), &[&seed])).await.unwrap());
        }
        if converges(&nodes, false, Duration::from_secs(10)).await {
            return nodes;
        }
        assert!(attempt < 3, "the overlay did not converge in three attempts");
        for node in nodes {
            node.shutdown().await;
        }
    }
    unreachable!("the third attempt returns or fails")
}

/// HyParView with small views: one broken link between two neighbours gets neither reported
/// lost. Each asks its other neighbours, which are usually not connected to the other node (the
/// case probe dials exist for), and they dial it; no node sends a failure notice, and the other
/// nodes' watches on both ends' actors hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hyparview_does_not_report_the_ends_of_a_broken_link() {
    let quick = |name: &str, seeds: &[&Node]| {
        let mut c = fast_failure_detection(config(name, OverlayKind::Hyparview, seeds));
        c.hyparview.active_max = 3;
        c.hyparview.active_min = 1;
        c.release_idle_ms = 300;
        c
    };
    let nodes = six_joined(quick).await;
    let x = nodes[0].clone();
    let state = x.overlay_state().await.expect("an overlay runs");
    let y_id = state.views.active.first().expect("n0 has a neighbour").id.0;
    let y = nodes.iter().find(|n| n.id().0 == y_id).expect("the neighbour is one of the nodes").clone();
    let mut watches = Vec::new();
    for end in [&x, &y] {
        let counter = end.system().spawn(Counter(0));
        end.register("watched", &counter).expect("register");
        // The two ends lose each other themselves: their own watches on each other fire.
        for from in nodes.iter().filter(|n| n.id() != x.id() && n.id() != y.id()) {
            // Only a failure notice (or the node's own loss of the actor's node) ends these:
            // the actors never stop.
            let watched = from.actor_ref::<CounterMsg>(counter.id()).untyped();
            watches.push(tokio::spawn(async move { watched.wait_for_exit().await }));
        }
    }

    // The connections the watches opened go once idle, so the other nodes are connected to the
    // two ends only where the overlay wants it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    cut(&x, &y);
    wait_until("neither end probed its loss of the other", || {
        x.stats().failure_notices_withheld + y.stats().failure_notices_withheld > 0
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    for node in &nodes {
        assert_eq!(node.stats().failure_notices_sent, 0, "{} reported a node others still reach", node.name());
    }
    for watch in watches.iter_mut() {
        if watch.is_finished() {
            let reason = watch.await;
            panic!("a watch fired while both ends of the broken link live: {reason:?}");
        }
    }
    for watch in watches {
        watch.abort();
    }
    for node in nodes {
        node.shutdown().await;
    }
}

/// A node that says goodbye is reported without a probe: it may still answer one while it
/// flushes its last frames, which must not keep its departure from the nodes that reach it only
/// through the overlay. The same line; c leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_says_goodbye_is_reported_without_a_probe() {
    let (d, a, b, c) = static_line().await;
    let (_counter, _from_d, exit) = counter_watched_from(&c, &d).await;

    c.shutdown().await;
    tokio::time::timeout(Duration::from_secs(10), exit).await.expect("d never heard c left").unwrap();
    wait_until("b never reported c's departure", || b.stats().failure_notices_sent == 1).await;
    assert_eq!(b.stats().failure_notices_withheld, 0, "b probed a node that said goodbye");
    for node in [a, b, d] {
        node.shutdown().await;
    }
}

/// A node cut off from everyone is reported once: a and b lose c at the same moment, probe each
/// other (neither hears from c), and the first to report it keeps the other quiet (its random
/// pause, then the notice heard).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loss_is_reported_once() {
    let (a, b, c) = triangle().await;

    for (x, y) in [(&a, &c), (&b, &c), (&c, &a), (&c, &b)] {
        x.partition(y.id(), true);
    }
    let sent = || a.stats().failure_notices_sent + b.stats().failure_notices_sent;
    wait_until("nobody reported c lost", || sent() > 0).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(sent(), 1, "c's loss was reported more than once");
    assert_eq!(a.stats().failure_notices_withheld + b.stats().failure_notices_withheld, 0);
    for node in [a, b, c] {
        node.shutdown().await;
    }
}

/// Six HyParView nodes with small views, frozen once joined (no shuffles, no random promotions),
/// fast failure detection and idle connections released after 300 ms (`tune` may change more);
/// and two of them, a and c, that are not neighbours but where a knew c's address (from the
/// overlay's views) and asked an actor on c, over a connection of their own.
async fn talking_strangers(tune: impl Fn(&mut NodeConfig)) -> (Vec<Node>, Node, Node) {
    let quick = |name: &str, seeds: &[&Node]| {
        let mut c = fast_failure_detection(config(name, OverlayKind::Hyparview, seeds));
        c.release_idle_ms = 300;
        // Some pairs of the six nodes are not neighbours, and stay so for the test.
        c.hyparview.active_max = 3;
        c.hyparview.active_min = 1;
        c.hyparview.shuffle_ms = 600_000;
        c.hyparview.promotion_ms = 600_000;
        tune(&mut c);
        c
    };
    // With promotions frozen, racing joins are likelier to split the nodes (see `six_joined`).
    let nodes = six_joined(quick).await;
    for (x, y) in nodes.iter().flat_map(|x| nodes.iter().map(move |y| (x, y))) {
        if x.id() == y.id() || connected(x, y.name()) || connected(y, x.name()) {
            continue;
        }
        let probe = y.system().spawn(Counter(0));
        y.register(&format!("probe-{}", x.name()), &probe).expect("register");
        assert_eq!(x.actor_ref::<CounterMsg>(probe.id()).ask(CounterMsg::Get).await.expect("probe"), 0);
        // The answer may come over the new data connection before the control connection (which
        // marks the peer up) is through: on a loaded machine, every pair once looked relayed.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while !connected(x, y.name()) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if connected(x, y.name()) {
            let (a, c) = (x.clone(), y.clone());
            return (nodes, a, c);
        }
    }
    panic!("no node knew the address of a node that is not its neighbour");
}

/// HyParView with small, frozen views: two nodes that are not neighbours but know each other's
/// address talk over a connection the overlay does not want, released once idle. A watch made
/// over it still hears the actor's exit (its node reconnects to report it), and the node's loss
/// after the release (a failure notice from its neighbours), which the watching node then checks
/// itself (it keeps state for the node since their connection).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_outlives_the_release_of_its_idle_connection() {
    use troupe_actor::ExitReason;
    let (nodes, a, c) = talking_strangers(|_| {}).await;
    // Each round: a watch over an on-demand connection, which is then released.
    let watch_after_release = |name: &'static str| {
        let (a, c) = (a.clone(), c.clone());
        async move {
            let counter = c.system().spawn(Counter(0));
            c.register(name, &counter).expect("register");
            let far = a.actor_ref::<CounterMsg>(counter.id());
            assert_eq!(far.ask(CounterMsg::Get).await.expect("ask"), 0);
            assert!(connected(&a, c.name()), "a reached c without a connection of its own");
            let watched = far.untyped();
            let exit = tokio::spawn(async move { watched.wait_for_exit().await });
            wait_until("the idle connection was never released", || {
                !connected(&a, c.name()) && !connected(&c, a.name())
            })
            .await;
            assert!(!exit.is_finished(), "releasing the connection ended the watch");
            (counter, exit)
        }
    };

    let (counter, exit) = watch_after_release("first").await;
    counter.stop();
    let reason = tokio::time::timeout(Duration::from_secs(10), exit).await.expect("the Down never came").unwrap();
    assert_eq!(reason, ExitReason::Normal);

    let (_counter, exit) = watch_after_release("second").await;
    let mut events = a.events();
    // c is cut off from everyone (its neighbours report it).
    for node in &nodes {
        if node.id() != c.id() {
            node.partition(c.id(), true);
            c.partition(node.id(), true);
        }
    }
    let reason = tokio::time::timeout(Duration::from_secs(10), exit).await.expect("a never heard c was lost").unwrap();
    assert_eq!(reason, ExitReason::NodeDown);
    // What a keeps for c since their connection (its acknowledged-delivery state) goes only on a's
    // own evidence: a tries c again, fails, and reports c down itself, as for a lost connection.
    down_reported(&mut events, c.id(), Duration::from_secs(10))
        .await
        .expect("a never checked c itself after the failure notice");
    for node in &nodes {
        node.shutdown().await;
    }
}

/// The reason of the first `NodeEvent::Down` for `node` among `events` within `within`.
async fn down_reported(
    events: &mut tokio::sync::broadcast::Receiver<NodeEvent>,
    node: troupe_actor::NodeId,
    within: Duration,
) -> Result<String, tokio::time::error::Elapsed> {
    tokio::time::timeout(within, async {
        loop {
            match events.recv().await {
                Ok(NodeEvent::Down { node: down, reason, .. }) if down == node => return reason,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => panic!("the node's events ended"),
            }
        }
    })
    .await
}

/// Binds a listener at `addr` that never accepts, and fills its accept queue: a connect to it
/// then waits out its timeout, as to a host that is gone (no reset).
async fn black_hole(addr: std::net::SocketAddr) -> (tokio::net::TcpListener, Vec<tokio::net::TcpStream>) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let listener = loop {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_reuseaddr(true).expect("reuseaddr");
        match socket.bind(addr).and_then(|()| socket.listen(1)) {
            Ok(listener) => break listener,
            Err(error) => {
                assert!(Instant::now() < deadline, "could not bind {addr}: {error}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let mut queued = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(stream)) =
            tokio::time::timeout(Duration::from_millis(300), tokio::net::TcpStream::connect(addr)).await
        {
            queued.push(stream);
        }
    }
    (listener, queued)
}

/// The failure-notice check against a node whose address black-holes once it is gone: a node
/// that only had a released connection to it dials it for the check, and each dial waits out the
/// connect timeout (3 s), longer than the idle release (300 ms, swept every second). The
/// checking peer must stay until its dials fail, and then report the node down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_notice_is_checked_also_when_the_nodes_address_black_holes() {
    let (nodes, a, c) = talking_strangers(|c| c.connect_timeout_ms = 3000).await;
    wait_until("the idle connection was never released", || !connected(&a, c.name()) && !connected(&c, a.name())).await;
    let mut events = a.events();
    let addr = c.local_addr();
    // c leaves; its neighbours report it to everyone. Its port then takes no connection.
    c.shutdown().await;
    let _hole = black_hole(addr).await;
    down_reported(&mut events, c.id(), Duration::from_secs(20)).await.expect("a's check of c ended without a verdict");
    for node in nodes.iter().filter(|n| n.id() != c.id()) {
        node.shutdown().await;
    }
}

/// A node that leaves after its connections went idle says goodbye on them, with either
/// overlay: as it leaves, its protocol lets go of its neighbours, and they of it (HyParView on
/// its next round, a full mesh at once); had either side released the idle connections, the
/// neighbours would have taken the node for merely idle (no Down, its state kept for good).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_leaves_over_idle_connections_says_goodbye() {
    for overlay in [OverlayKind::Hyparview, OverlayKind::Full] {
        let quick = |name: &str, seeds: &[&Node]| {
            let mut c = config(name, overlay, seeds);
            c.release_idle_ms = 300;
            c
        };
        let a = Node::start(quick("a", &[])).await.unwrap();
        let b = Node::start(quick("b", &[&a])).await.unwrap();
        let c = Node::start(quick("c", &[&a])).await.unwrap();
        let nodes = [a.clone(), b.clone(), c.clone()];
        wait_converged(&nodes, true, Duration::from_secs(20)).await;
        let (_counter, _far, exit) = counter_watched_from(&c, &a).await;
        // Idle for longer than `release_idle`, the connections still up (the overlay uses them).
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(connected(&a, "c"), "{overlay:?}: a and c are neighbours in a cluster of three");
        let mut events = a.events();
        c.shutdown().await;
        let reason = match tokio::time::timeout(Duration::from_secs(10), exit).await {
            Ok(reason) => reason.unwrap(),
            Err(_) => {
                let mut seen = Vec::new();
                while let Ok(e) = events.try_recv() {
                    seen.push(format!("{e:?}"));
                }
                panic!(
                    "{overlay:?}: the watch never fired; a's events {seen:?}; a's peers {:?}; stats {:?}",
                    a.peers(),
                    a.stats()
                );
            }
        };
        assert_eq!(reason, troupe_actor::ExitReason::NodeDown, "{overlay:?}");
        let down = down_reported(&mut events, c.id(), Duration::from_secs(10)).await;
        assert_eq!(down.expect("a never reported c down"), "left the cluster", "{overlay:?}");
        a.shutdown().await;
        b.shutdown().await;
    }
}
