//! Several `troupe node` processes and an in-process node over real loopback TCP: tell and ask,
//! refs travelling inside messages between three processes, watches across processes (a remote
//! stop, a SIGKILLed node), acknowledged delivery across severed connections, and bounded send
//! queues against a SIGSTOPped peer.

mod common;

use std::time::{Duration, Instant};

use common::{
    config, connect, count, echo_roundtrip, eventually, free_port, sink, spawn_node, start, wait_count, ChildNode,
    PATIENCE,
};
use tokio::sync::oneshot;
use troupe::net::emulation::{LinkConfig, LinkProxy};
use troupe::{
    Actor, ActorRef, ActorResult, AskError, Context, Down, ExitReason, Node, NodeEvent, Payload, SendOptions,
};
use troupe::{TrySendError, UntypedRef};
use troupe_cli::services::{Service, ServiceMsg};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_tell_ask() {
    let b = spawn_node("b", &[]).await;
    let a = start(config("a")).await;
    connect(&a, &b.addr).await;
    let remote = sink(&a, "b").await;
    assert!(!remote.is_local());
    for i in 0..10_000u32 {
        remote.tell(ServiceMsg::Data(vec![i as u8; 64].into())).await.expect("tell");
    }
    // One sender, one receiver: the Count ask arrives after every Data, so no polling.
    assert_eq!(count(&remote).await.expect("count"), (10_000, 640_000));
    echo_roundtrip(&remote, 100_000).await;
    let echo = a.lookup::<ServiceMsg>("b", "echo").await.expect("lookup echo");
    echo_roundtrip(&echo, 1).await;
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refs_in_messages_three_processes() {
    let c = spawn_node("c", &[]).await;
    let b = spawn_node("b", &[("TROUPE_SEEDS", &c.addr)]).await;
    // C's own line, not B's: B may miss the Up of its seed (see `seeded_node_prints_up_for_its_seed`).
    // C dials B back only after B's connection to it is up.
    c.wait_line("UP b").await;
    let a = start(config("a")).await;
    connect(&a, &b.addr).await;
    connect(&a, &c.addr).await;
    let on_b = sink(&a, "b").await;
    let on_c = sink(&a, "c").await;

    // A ref to C's sink travels A -> B; B sends to C over its own connection.
    for _ in 0..10 {
        on_b.tell(ServiceMsg::Forward { to: on_c.clone(), bytes: vec![3; 100].into() }).await.expect("forward to c");
    }
    wait_count(&on_c, (10, 1000)).await;
    assert_eq!(count(&on_b).await.expect("b count"), (0, 0), "B must not count what it forwards");

    // A ref to an actor of A (never registered) is exported when it travels, and B uses it.
    let local = a.system().spawn(Service::default());
    for _ in 0..3 {
        local.tell(ServiceMsg::Data(vec![1; 10].into())).await.expect("local tell");
    }
    for _ in 0..5 {
        on_b.tell(ServiceMsg::Forward { to: local.clone(), bytes: vec![2; 7].into() }).await.expect("forward to a");
    }
    wait_count(&local, (8, 65)).await;

    // B asks both refs it received for their counts: one on C, one on A.
    let of = vec![on_c.clone(), local.clone()];
    let total = on_b
        .ask_timeout(|reply| ServiceMsg::CountOf { of, reply }, Duration::from_secs(5))
        .await
        .expect("CountOf via b");
    assert_eq!(total, 10 + 8);
    a.shutdown().await;
}

/// Watches `target`; reports once it watches and when the Down arrives.
struct Watcher {
    target: ActorRef<ServiceMsg>,
    watching: Option<oneshot::Sender<()>>,
    down: Option<oneshot::Sender<Down>>,
}

impl Actor for Watcher {
    type Msg = ();

    async fn started(&mut self, ctx: &mut Context<Self>) -> ActorResult {
        ctx.watch(&self.target);
        if let Some(tx) = self.watching.take() {
            let _ = tx.send(());
        }
        Ok(())
    }

    async fn handle(&mut self, _: (), _ctx: &mut Context<Self>) -> ActorResult {
        Ok(())
    }

    async fn on_down(&mut self, down: Down, _ctx: &mut Context<Self>) -> ActorResult {
        if let Some(tx) = self.down.take() {
            let _ = tx.send(down);
        }
        Ok(())
    }
}

/// Spawns a [`Watcher`] of `target` on `node` and returns once the watch is requested.
async fn watch(node: &Node, target: &ActorRef<ServiceMsg>) -> oneshot::Receiver<Down> {
    let (watching, is_watching) = oneshot::channel();
    let (down, downed) = oneshot::channel();
    node.system().spawn(Watcher { target: target.clone(), watching: Some(watching), down: Some(down) });
    tokio::time::timeout(PATIENCE, is_watching).await.expect("watcher started").expect("watcher alive");
    downed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_across_processes() {
    let b = spawn_node("b", &[]).await;
    let a = start(troupe::NodeConfig { reconnect_min_ms: 50, ..config("a") }).await;
    connect(&a, &b.addr).await;
    let on_b = sink(&a, "b").await;
    let downed = watch(&a, &on_b).await;
    on_b.stop();
    let down = tokio::time::timeout(Duration::from_secs(5), downed).await.expect("Down in time").expect("watcher");
    assert_eq!(down.id, on_b.id());
    assert_eq!(down.reason, ExitReason::Normal);
    assert!(count(&on_b).await.is_err(), "a stopped sink must not answer");

    // A second process, SIGKILLed: its actors' watchers get NodeDown, user code a Down event,
    // and asks fail promptly instead of hanging.
    let mut c = spawn_node("c", &[]).await;
    connect(&a, &c.addr).await;
    let on_c = sink(&a, "c").await;
    echo_roundtrip(&on_c, 10).await;
    let downed = watch(&a, &on_c).await;
    let mut events = a.events();
    let killed = Instant::now();
    c.kill9();
    // Asked right away: failed when the node is declared down (or refused once it is).
    let asked = tokio::time::timeout(Duration::from_secs(5), on_c.ask_timeout(ServiceMsg::Count, PATIENCE * 3))
        .await
        .expect("an ask to a killed node must fail promptly, not hang");
    assert!(!matches!(asked, Err(AskError::Timeout { .. })), "{asked:?}");
    assert!(asked.is_err(), "{asked:?}");
    let down = tokio::time::timeout(Duration::from_secs(5), downed).await.expect("Down in time").expect("watcher");
    assert_eq!(down.id, on_c.id());
    assert_eq!(down.reason, ExitReason::NodeDown);
    let event = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match events.recv().await {
                Ok(NodeEvent::Down { name, reason, .. }) if name == "c" => return reason,
                Ok(_) => {}
                Err(e) => panic!("events: {e}"),
            }
        }
    })
    .await
    .expect("NodeEvent::Down for c");
    eprintln!("c declared down after {:?} ({event})", killed.elapsed());
    // Once down: an immediate error.
    let started = Instant::now();
    let asked = tokio::time::timeout(Duration::from_secs(1), on_c.ask_timeout(ServiceMsg::Count, PATIENCE * 3))
        .await
        .expect("an ask to a down node must fail at once");
    assert!(asked.is_err() && !matches!(asked, Err(AskError::Timeout { .. })), "{asked:?}");
    assert!(started.elapsed() < Duration::from_millis(500));
    assert!(on_c.tell(ServiceMsg::Data(vec![].into())).await.is_err(), "a tell to a down node must fail");
    assert!(!UntypedRef::from(&on_c).is_alive());
    // B is not affected.
    assert!(a.peers().iter().any(|p| p.name == "b" && p.up));
    echo_roundtrip(&a.lookup::<ServiceMsg>("b", "echo").await.expect("b echo"), 10).await;
    a.shutdown().await;
}

/// Node B as a process, and node A here connected to it through a proxy emulating `link`: B
/// listens on a port chosen here and advertises the proxy, so every connection A makes to B (all
/// lanes, all redials) goes through the proxy, which cuts them on demand. (proxy, B, A).
async fn behind_a_proxy(link: LinkConfig) -> (LinkProxy, ChildNode, Node) {
    let port = free_port();
    let b_listen = format!("127.0.0.1:{port}");
    let proxy = LinkProxy::start("127.0.0.1:0".parse().unwrap(), b_listen.parse().unwrap(), link).await.expect("proxy");
    let proxy_addr = proxy.local_addr().to_string();
    let b = spawn_node("b", &[("TROUPE_LISTEN", &b_listen), ("TROUPE_ADVERTISE", &proxy_addr)]).await;
    assert_eq!(b.addr, b_listen);
    let a = start(troupe::NodeConfig { ack_retransmit_ms: 200, reconnect_min_ms: 20, ..config("a") }).await;
    connect(&a, &proxy_addr).await;
    (proxy, b, a)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_messages_survive_connection_drops() {
    // A few milliseconds of delay keep bytes "on the wire" when a cut happens: they are lost.
    let (proxy, _b, a) = behind_a_proxy(LinkConfig::rtt(Duration::from_millis(6))).await;
    let plain = sink(&a, "b").await;
    echo_roundtrip(&plain, 10).await;
    let acked = plain.with_options(SendOptions::new().ack());
    const N: u64 = 5000;
    let mut severed = 0;
    for i in 0..N {
        acked.tell(ServiceMsg::Seq(i)).await.expect("acked tell");
        if i % 250 == 249 {
            // Let the batch reach the wire, then (every other batch) cut it mid-flight.
            tokio::time::sleep(Duration::from_millis(2)).await;
            if i % 500 == 499 && i + 1 < N {
                proxy.sever_all();
                severed += 1;
                // Let the lanes redial before the next cut (a cut during the handshake counts as a
                // failed dial, and two in a row declare the node down).
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    assert!(severed >= 5);
    assert!(proxy.stats().connections > 4, "{:?}", proxy.stats());
    let report = || async { plain.ask(ServiceMsg::SeqReport).await.map_err(|e| e.to_string()) };
    eventually("every acked message delivered", PATIENCE, || async {
        match report().await? {
            (n, _) if n >= N => Ok(()),
            (n, _) => Err(format!("{n} of {N}")),
        }
    })
    .await;
    eventually("every acked message acknowledged", PATIENCE, || async {
        match a.stats().unacked {
            0 => Ok(()),
            n => Err(n),
        }
    })
    .await;
    // Two more retransmit periods: nothing is delivered twice.
    tokio::time::sleep(Duration::from_millis(450)).await;
    let (received, out_of_order) = report().await.expect("report");
    assert_eq!(received, N, "acked messages delivered more than once");
    // Each lane sends what its last connection may have lost before anything queued later.
    assert_eq!(out_of_order, 0, "acked messages overtaken by later ones across reconnections");
    let stats = a.stats();
    eprintln!("acked over a severed link: {stats:?}, {:?}", proxy.stats());
    assert!(stats.retransmits > 0, "cuts mid-flight must have caused retransmissions: {stats:?}");
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_cut_off_with_its_connection_is_sent_again() {
    // 100 ms each way keeps the watch on the wire long enough to cut it.
    let (proxy, _b, a) = behind_a_proxy(LinkConfig::rtt(Duration::from_millis(200))).await;
    let on_b = sink(&a, "b").await;
    echo_roundtrip(&on_b, 1).await;
    let connections = proxy.stats().connections;
    let downed = watch(&a, &on_b).await;
    // The watch is written to the proxy, and lost with the connection.
    tokio::time::sleep(Duration::from_millis(20)).await;
    proxy.sever_all();
    // The stop is queued behind the watch: once B has it, B must have had the watch too.
    on_b.stop();
    let down = tokio::time::timeout(PATIENCE, downed).await.expect("Down in time").expect("watcher");
    assert_eq!((down.id, down.reason), (on_b.id(), ExitReason::Normal));
    assert!(proxy.stats().connections > connections, "the lanes must have redialled: {:?}", proxy.stats());
    assert!(a.stats().retransmits > 0, "the watch must have been sent again: {:?}", a.stats());
    a.shutdown().await;
}

/// Resident set size of process `pid` (`"self"` for this one), in bytes.
fn rss_of(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/<pid>/status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status");
    kib * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_send_queue_with_stalled_peer() {
    const QUEUE: usize = 256 << 10;
    const MSG: usize = 64 << 10;
    let b = spawn_node("b", &[]).await;
    let a = start(troupe::NodeConfig { send_queue_bytes: QUEUE, ..config("a") }).await;
    let peer = connect(&a, &b.addr).await;
    let remote = sink(&a, "b").await;
    echo_roundtrip(&remote, 10).await; // the default lane is connected
    let rss_before = rss_of("self");

    b.signal("STOP");
    let payload = Payload::from(vec![5u8; MSG]);
    let mut accepted = 0u64;
    let mut last_accepted = Instant::now();
    let deadline = Instant::now() + PATIENCE;
    // Fill the queue and the socket buffers until the queue stays full: B reads nothing.
    loop {
        match remote.try_tell(ServiceMsg::Data(payload.clone())) {
            Ok(()) => {
                accepted += 1;
                last_accepted = Instant::now();
                assert!(
                    accepted * (MSG as u64) < 64 << 20,
                    "{accepted} messages accepted: the send queue is unbounded"
                );
            }
            Err(TrySendError::Full { .. }) => {
                if last_accepted.elapsed() > Duration::from_millis(300) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            Err(e) => panic!("try_tell: {e}"),
        }
        assert!(Instant::now() < deadline, "the send queue never stayed full");
    }
    let accepted_bytes = accepted * MSG as u64;
    let queued = a.queued_bytes(peer.id);
    let grown = rss_of("self").saturating_sub(rss_before);
    eprintln!("stalled peer: accepted {accepted} x 64 KiB = {accepted_bytes} B, queued {queued} B, RSS +{grown} B");
    assert!(accepted >= (QUEUE / MSG) as u64, "the queue took fewer messages than its bound");
    assert!(queued <= QUEUE + MSG + 4096, "queued {queued} B, bound {QUEUE} B plus one message");
    assert!(grown < 128 << 20, "RSS grew by {grown} B");
    // tell waits for room: backpressure.
    let waited = tokio::time::timeout(Duration::from_millis(200), remote.tell(ServiceMsg::Data(payload.clone()))).await;
    assert!(waited.is_err(), "tell completed while the peer is stalled and the queue full: {waited:?}");

    b.signal("CONT");
    wait_count(&remote, (accepted, accepted_bytes)).await;
    // The abandoned tell did not sneak in later.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(count(&remote).await.expect("count"), (accepted, accepted_bytes));
    a.shutdown().await;
}

/// B behind a proxy that A dials (B advertises it); A has sent 100 acked messages to B's sink.
/// Then A loses B (the proxy refuses A's dials) while B, which dials A directly, never loses A;
/// once the link heals A reconnects to the same incarnation of B. With `gap`, A queues a few acked
/// messages while cut off: they are abandoned when B is declared down.
struct CameBack {
    a: Node,
    b: common::ChildNode,
    proxy: LinkProxy,
    before: troupe::net::PeerInfo,
    after: troupe::net::PeerInfo,
    /// With `keep_a_ref`: a ref to B's sink looked up before B went down.
    kept: Option<ActorRef<ServiceMsg>>,
    /// With `gap`: acked messages of 10 bytes queued while B was cut off (and declared down).
    gap: u64,
}

async fn declared_down_then_back(keep_a_ref: bool, gap: bool) -> CameBack {
    let port = free_port();
    let b_listen = format!("127.0.0.1:{port}");
    let proxy = LinkProxy::start("127.0.0.1:0".parse().unwrap(), b_listen.parse().unwrap(), LinkConfig::default())
        .await
        .expect("proxy");
    let proxy_addr = proxy.local_addr().to_string();
    let b = spawn_node("b", &[("TROUPE_LISTEN", &b_listen), ("TROUPE_ADVERTISE", &proxy_addr)]).await;
    let a = start(troupe::NodeConfig { ack_retransmit_ms: 200, reconnect_min_ms: 20, ..config("a") }).await;
    let mut events = a.events();
    let before = connect(&a, &proxy_addr).await;
    let kept = {
        let acked = sink(&a, "b").await.with_options(SendOptions::new().ack());
        for _ in 0..100 {
            acked.tell(ServiceMsg::Data(vec![1; 10].into())).await.expect("acked tell");
        }
        wait_count(&acked, (100, 1000)).await;
        // Unless kept, every ref is dropped before B goes down: refs made later get fresh proxies.
        keep_a_ref.then_some(acked)
    };
    let acked = sink(&a, "b").await.with_options(SendOptions::new().ack());
    proxy.set_partitioned(true);
    let mut queued = 0;
    if gap {
        queued = (0..10).filter(|_| acked.try_tell(ServiceMsg::Data(vec![1; 10].into())).is_ok()).count() as u64;
        assert!(queued > 0, "nothing queued while cut off");
    }
    drop(acked);
    tokio::time::timeout(PATIENCE, async {
        loop {
            match events.recv().await {
                Ok(NodeEvent::Down { name, .. }) if name == "b" => return,
                Ok(_) => {}
                Err(e) => panic!("events: {e}"),
            }
        }
    })
    .await
    .expect("b declared down");
    proxy.set_partitioned(false);
    let after = eventually("a reconnects to b", PATIENCE, || async {
        match a.connect(&proxy_addr).await {
            Ok(peer) if peer.up => Ok(peer),
            other => Err(other.map_err(|e| e.to_string())),
        }
    })
    .await;
    assert!(!b.lines().iter().any(|l| l.starts_with("DOWN")), "B never lost A: {:?}", b.lines());
    CameBack { a, b, proxy, before, after, kept, gap: queued }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_delivery_after_the_peer_was_declared_down_and_came_back() {
    let CameBack { a, b: _b, proxy: _proxy, before, after, .. } = declared_down_then_back(false, false).await;
    assert_eq!(after.id, before.id, "same process, same incarnation");
    let plain = sink(&a, "b").await;
    let acked = plain.with_options(SendOptions::new().ack());
    for _ in 0..50 {
        acked.tell(ServiceMsg::Data(vec![2; 10].into())).await.expect("acked tell after reconnecting");
    }
    eventually("every acked message acknowledged", PATIENCE, || async {
        match a.stats().unacked {
            0 => Ok(()),
            n => Err(n),
        }
    })
    .await;
    // All 50 were acknowledged by B, so all 50 must have been delivered.
    wait_count(&plain, (150, 1500)).await;
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_after_the_peer_came_back_gives_a_working_ref() {
    let CameBack { a, b: _b, proxy: _proxy, kept, .. } = declared_down_then_back(true, false).await;
    let kept = kept.expect("a ref from before");
    // The ref kept from before stays dead: its watchers were told NodeDown.
    assert!(kept.tell(ServiceMsg::Data(vec![3; 10].into())).await.is_err());
    // A new lookup finds the sink alive on the same incarnation of B: its ref must work.
    let fresh = sink(&a, "b").await;
    fresh.tell(ServiceMsg::Data(vec![3; 10].into())).await.expect("tell through a ref looked up after reconnecting");
    wait_count(&fresh, (101, 1010)).await;
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_messages_queued_while_the_peer_was_down_arrive_once_and_memory_stays_flat() {
    let CameBack { a, b, proxy: _proxy, gap, .. } = declared_down_then_back(false, true).await;
    let plain = sink(&a, "b").await;
    // The acked messages queued while B was cut off are retransmitted to it, once.
    wait_count(&plain, (100 + gap, 1000 + 10 * gap)).await;
    let acked = plain.with_options(SendOptions::new().ack());
    const ROUND: u64 = 100_000;
    let mut rss = Vec::new();
    for round in 1..=5 {
        for _ in 0..ROUND {
            acked.tell(ServiceMsg::Data(Payload::new())).await.expect("acked tell");
        }
        wait_count(&plain, (100 + gap + round * ROUND, 1000 + 10 * gap)).await;
        rss.push(rss_of(&b.pid().to_string()));
    }
    // The first round warms B's allocator up; 400,000 more acked messages must not cost memory
    // (without a gap they cost none; with the gap it was about 21 bytes each, for good).
    let grown = rss[4].saturating_sub(rss[0]);
    assert!(grown < 3 << 20, "B's RSS grew by {grown} B over 400,000 acked messages: {rss:?}");
    a.shutdown().await;
}

/// `troupe node` prints `UP <seed>` even when the seed connection comes up before it subscribes
/// to node events (a race that lost the line about once in 30 starts when the tests ran in parallel).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_node_prints_up_for_its_seed() {
    let c = spawn_node("c", &[]).await;
    for round in 0..15 {
        let name = format!("b{round}");
        let b = spawn_node(&name, &[("TROUPE_SEEDS", &c.addr)]).await;
        c.wait_line(&format!("UP {name}")).await; // the connection is up on both sides by now
        let deadline = Instant::now() + Duration::from_secs(2);
        while !b.lines().iter().any(|l| l == "UP c") {
            assert!(Instant::now() < deadline, "round {round}: {name} never printed UP c: {:?}", b.lines());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Links between an actor here and one in a `troupe node` process: a failure on either side
/// fails the other, and SIGKILLing the process fails the actor here that one there linked to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_across_processes() {
    let mut c = spawn_node("c", &[]).await;
    let a = start(config("a")).await;
    connect(&a, &c.addr).await;
    let sink_c = sink(&a, "c").await;
    let spawn_linked = |to: ActorRef<ServiceMsg>| {
        let sink_c = sink_c.clone();
        async move { sink_c.ask(|reply| ServiceMsg::SpawnLinked { to, reply }).await.expect("spawn a linked actor in c") }
    };
    let exit_of = |actor: UntypedRef| async move {
        tokio::time::timeout(PATIENCE, actor.wait_for_exit()).await.expect("the linked actor never exited")
    };

    // The actor in c fails: the one here fails with it.
    let here = a.system().spawn(Service::default());
    let there = spawn_linked(here.clone()).await;
    there.tell(ServiceMsg::Fail).await.expect("tell");
    assert_eq!(exit_of(UntypedRef::from(&here)).await, ExitReason::LinkFailed(there.id()));

    // The actor here fails: the one in c fails with it.
    let here = a.system().spawn(Service::default());
    let there = spawn_linked(here.clone()).await;
    here.tell(ServiceMsg::Fail).await.expect("tell");
    let reason = exit_of(UntypedRef::from(&there)).await;
    assert!(!reason.is_normal() && reason != ExitReason::NodeDown, "{reason:?}");

    // c is SIGKILLed: the actor here that one in c linked to fails.
    let here = a.system().spawn(Service::default());
    let there = spawn_linked(here.clone()).await;
    // The link is made in `there`'s `started` and travels on c's control connection: an ask of
    // `there` (answered after `started`) and then a lookup (answered on that same connection)
    // make sure it reached a before c dies. (An echo of c's sink alone raced it: its answer comes
    // on another connection, and once in a loaded full run the link lost.)
    echo_roundtrip(&there, 1).await;
    a.lookup::<ServiceMsg>("c", "sink").await.expect("lookup");
    c.kill9();
    assert_eq!(exit_of(UntypedRef::from(&here)).await, ExitReason::LinkFailed(there.id()));
    a.shutdown().await;
}
