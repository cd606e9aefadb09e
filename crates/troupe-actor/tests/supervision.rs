//! Failure handling: panic isolation, supervision strategies, intensity limits, watch and link,
//! graceful shutdown order.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use troupe_actor::prelude::*;
use troupe_actor::{Backoff, StrategyKind};

fn system() -> ActorSystem {
    ActorSystem::builder().workers(2).build().expect("system starts")
}

/// A worker that counts its starts and fails on request.
struct Worker {
    starts: Arc<AtomicU32>,
}

enum WorkerMsg {
    Panic,
    Fail,
    Ping(Reply<u32>),
}
impl Message for WorkerMsg {}

impl Actor for Worker {
    type Msg = WorkerMsg;
    async fn started(&mut self, _ctx: &mut Context<Self>) -> ActorResult {
        self.starts.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    async fn handle(&mut self, msg: WorkerMsg, _ctx: &mut Context<Self>) -> ActorResult {
        match msg {
            WorkerMsg::Panic => panic!("worker asked to panic"),
            WorkerMsg::Fail => Err("worker asked to fail".into()),
            WorkerMsg::Ping(r) => {
                r.send(self.starts.load(Ordering::SeqCst));
                Ok(())
            }
        }
    }
}

/// A supervisor with three workers under a given strategy.
struct Supervisor {
    strategy: SupervisionStrategy,
    starts: Vec<Arc<AtomicU32>>,
}

enum SupMsg {
    Children(Reply<Vec<ActorRef<WorkerMsg>>>),
}
impl Message for SupMsg {}

impl Actor for Supervisor {
    type Msg = SupMsg;
    async fn handle(&mut self, msg: SupMsg, ctx: &mut Context<Self>) -> ActorResult {
        match msg {
            SupMsg::Children(reply) => {
                let children = self
                    .starts
                    .iter()
                    .map(|starts| {
                        let starts = starts.clone();
                        ctx.spawn(Props::factory(move || Worker { starts: starts.clone() }))
                    })
                    .collect();
                reply.send(children);
            }
        }
        Ok(())
    }
    fn supervision(&self) -> SupervisionStrategy {
        self.strategy
    }
}

async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn supervised(
    system: &ActorSystem,
    strategy: SupervisionStrategy,
) -> (Vec<Arc<AtomicU32>>, Vec<ActorRef<WorkerMsg>>) {
    let starts: Vec<_> = (0..3).map(|_| Arc::new(AtomicU32::new(0))).collect();
    let sup = system.spawn(Supervisor { strategy, starts: starts.clone() });
    let children = sup.ask(SupMsg::Children).await.expect("children");
    wait_for("children to start", || starts.iter().all(|s| s.load(Ordering::SeqCst) == 1)).await;
    (starts, children)
}

fn counts(starts: &[Arc<AtomicU32>]) -> Vec<u32> {
    starts.iter().map(|s| s.load(Ordering::SeqCst)).collect()
}

#[test]
fn panic_is_isolated_and_one_for_one_restarts_only_the_failed_child() {
    let system = system();
    system.block_on(async {
        let (starts, children) = supervised(&system, SupervisionStrategy::one_for_one()).await;
        children[1].tell(WorkerMsg::Panic).await.expect("tell");
        wait_for("restart", || starts[1].load(Ordering::SeqCst) == 2).await;
        // Same reference, new incarnation; the others untouched.
        assert_eq!(children[1].ask(WorkerMsg::Ping).await, Ok(2));
        assert_eq!(counts(&starts), vec![1, 2, 1]);
        children[0].tell(WorkerMsg::Fail).await.expect("tell");
        wait_for("restart after error", || starts[0].load(Ordering::SeqCst) == 2).await;
        assert_eq!(children[2].ask(WorkerMsg::Ping).await, Ok(1));
        system.shutdown().await;
    });
}

#[test]
fn one_for_all_restarts_every_child() {
    let system = system();
    system.block_on(async {
        let (starts, children) = supervised(&system, SupervisionStrategy::one_for_all()).await;
        children[1].tell(WorkerMsg::Panic).await.expect("tell");
        wait_for("all restarted", || counts(&starts) == vec![2, 2, 2]).await;
        for child in &children {
            assert_eq!(child.ask(WorkerMsg::Ping).await, Ok(2));
        }
        system.shutdown().await;
    });
}

#[test]
fn rest_for_one_restarts_the_failed_child_and_later_siblings() {
    let system = system();
    system.block_on(async {
        let (starts, children) = supervised(&system, SupervisionStrategy::rest_for_one()).await;
        children[1].tell(WorkerMsg::Panic).await.expect("tell");
        wait_for("rest restarted", || counts(&starts) == vec![1, 2, 2]).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(counts(&starts), vec![1, 2, 2], "earlier sibling must not restart");
        system.shutdown().await;
    });
}

#[test]
fn restart_intensity_exhaustion_escalates() {
    let system = system();
    system.block_on(async {
        let strategy = SupervisionStrategy::one_for_one().intensity(2, Duration::from_secs(10));
        assert_eq!(strategy.kind, StrategyKind::OneForOne);
        let starts: Vec<_> = (0..3).map(|_| Arc::new(AtomicU32::new(0))).collect();
        let sup = system.spawn(Supervisor { strategy, starts: starts.clone() });
        let children = sup.ask(SupMsg::Children).await.expect("children");
        let sup_exit = {
            let sup = sup.clone();
            tokio::spawn(async move { sup.wait_for_exit().await })
        };
        for expected in 2..=3 {
            children[0].tell(WorkerMsg::Panic).await.expect("tell");
            wait_for("restart", || starts[0].load(Ordering::SeqCst) == expected).await;
        }
        // The third failure within the window exceeds max_restarts = 2.
        children[0].tell(WorkerMsg::Panic).await.expect("tell");
        let reason =
            tokio::time::timeout(Duration::from_secs(5), sup_exit).await.expect("supervisor exits").expect("join");
        assert_eq!(reason, ExitReason::RestartLimit);
        for child in &children {
            let exit = child.wait_for_exit().await;
            assert!(!child.is_alive(), "child {:?} survived its supervisor ({exit})", child.id());
        }
        system.shutdown().await;
    });
}

#[test]
fn backoff_delays_restarts() {
    let system = system();
    system.block_on(async {
        let strategy = SupervisionStrategy::one_for_one()
            .backoff(Backoff::exponential(Duration::from_millis(100), Duration::from_secs(1)));
        let (starts, children) = supervised(&system, strategy).await;
        let failed_at = Instant::now();
        children[2].tell(WorkerMsg::Panic).await.expect("tell");
        wait_for("restart", || starts[2].load(Ordering::SeqCst) == 2).await;
        assert!(failed_at.elapsed() >= Duration::from_millis(100), "restarted before the backoff delay");
        system.shutdown().await;
    });
}

/// Records Down notifications.
struct Watcher {
    downs: Arc<Mutex<Vec<Down>>>,
}
enum WatchMsg {
    Watch(ActorRef<WorkerMsg>),
    Link(ActorRef<WorkerMsg>),
    Unlink(ActorRef<WorkerMsg>),
    Fail,
}
impl Message for WatchMsg {}

impl Actor for Watcher {
    type Msg = WatchMsg;
    async fn handle(&mut self, msg: WatchMsg, ctx: &mut Context<Self>) -> ActorResult {
        match msg {
            WatchMsg::Watch(target) => ctx.watch(&target),
            WatchMsg::Link(target) => ctx.link(&target),
            WatchMsg::Unlink(target) => ctx.unwatch(&target),
            WatchMsg::Fail => return Err("watcher asked to fail".into()),
        }
        Ok(())
    }
    async fn on_down(&mut self, down: Down, _ctx: &mut Context<Self>) -> ActorResult {
        self.downs.lock().push(down);
        Ok(())
    }
}

#[test]
fn watch_delivers_down_for_stop_panic_and_kill() {
    let system = system();
    system.block_on(async {
        let downs = Arc::new(Mutex::new(Vec::new()));
        let watcher = system.spawn(Watcher { downs: downs.clone() });
        let spawn_worker = || system.spawn(Worker { starts: Arc::new(AtomicU32::new(0)) });
        let (a, b, c) = (spawn_worker(), spawn_worker(), spawn_worker());
        for w in [&a, &b, &c] {
            watcher.tell(WatchMsg::Watch(w.clone())).await.expect("watch");
        }
        // Make sure the watches are in place before the targets stop.
        assert_eq!(a.ask(WorkerMsg::Ping).await, Ok(1));
        tokio::time::sleep(Duration::from_millis(20)).await;
        a.stop();
        b.tell(WorkerMsg::Panic).await.expect("tell");
        c.kill();
        wait_for("three downs", || downs.lock().len() == 3).await;
        let mut got: Vec<_> = downs.lock().iter().map(|d| (d.id, d.reason.clone())).collect();
        got.sort_by_key(|(id, _)| *id);
        assert_eq!(got[0], (a.id(), ExitReason::Normal));
        assert_eq!(got[1], (b.id(), ExitReason::Panicked("worker asked to panic".into())));
        assert_eq!(got[2], (c.id(), ExitReason::Killed));
        // Watching an actor that is already gone delivers Down at once.
        watcher.tell(WatchMsg::Watch(a.clone())).await.expect("watch");
        wait_for("late down", || downs.lock().len() == 4).await;
        assert_eq!(downs.lock()[3].reason, ExitReason::Normal);
        assert!(watcher.is_alive(), "the watcher is unaffected");
        system.shutdown().await;
    });
}

#[test]
fn links_propagate_failures_but_not_normal_stops() {
    let system = system();
    system.block_on(async {
        let downs = Arc::new(Mutex::new(Vec::new()));
        let linked = system.spawn(Watcher { downs: downs.clone() });
        let worker = system.spawn(Worker { starts: Arc::new(AtomicU32::new(0)) });
        linked.tell(WatchMsg::Link(worker.clone())).await.expect("link");
        tokio::time::sleep(Duration::from_millis(20)).await;
        worker.tell(WorkerMsg::Fail).await.expect("tell");
        let reason = tokio::time::timeout(Duration::from_secs(5), linked.wait_for_exit()).await.expect("linked exits");
        assert_eq!(reason, ExitReason::LinkFailed(worker.id()));

        let survivor = system.spawn(Watcher { downs });
        let worker = system.spawn(Worker { starts: Arc::new(AtomicU32::new(0)) });
        survivor.tell(WatchMsg::Link(worker.clone())).await.expect("link");
        tokio::time::sleep(Duration::from_millis(20)).await;
        worker.stop();
        worker.wait_for_exit().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(survivor.is_alive(), "a normal stop must not propagate over a link");
        system.shutdown().await;
    });
}

#[test]
fn unlinking_ends_the_link_both_ways() {
    let system = system();
    system.block_on(async {
        let downs = Arc::new(Mutex::new(Vec::new()));
        let linker = system.spawn(Watcher { downs });
        let worker = system.spawn(Worker { starts: Arc::new(AtomicU32::new(0)) });
        linker.tell(WatchMsg::Link(worker.clone())).await.expect("link");
        linker.tell(WatchMsg::Unlink(worker.clone())).await.expect("unlink");
        linker.tell(WatchMsg::Fail).await.expect("tell");
        let reason = tokio::time::timeout(Duration::from_secs(5), linker.wait_for_exit()).await.expect("linker exits");
        assert!(matches!(reason, ExitReason::Failed(_)), "{reason:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(worker.is_alive(), "the unlinked worker was taken down");
        assert_eq!(worker.ask(WorkerMsg::Ping).await, Ok(1));
        system.shutdown().await;
    });
}

/// A node of a tree that records when it stops.
struct TreeNode {
    name: String,
    depth: u32,
    log: Arc<Mutex<Vec<String>>>,
}

impl Actor for TreeNode {
    type Msg = ();
    async fn started(&mut self, ctx: &mut Context<Self>) -> ActorResult {
        if self.depth < 2 {
            for i in 0..3 {
                ctx.spawn(TreeNode {
                    name: format!("{}.{i}", self.name),
                    depth: self.depth + 1,
                    log: self.log.clone(),
                });
            }
        }
        Ok(())
    }
    async fn handle(&mut self, _msg: (), _ctx: &mut Context<Self>) -> ActorResult {
        Ok(())
    }
    async fn stopped(&mut self, reason: &ExitReason, _ctx: &mut Context<Self>) {
        assert_eq!(*reason, ExitReason::Shutdown);
        self.log.lock().push(self.name.clone());
    }
}

#[test]
fn graceful_shutdown_stops_children_first_last_spawned_first() {
    let system = system();
    system.block_on(async {
        let log = Arc::new(Mutex::new(Vec::new()));
        for root in ["a", "b"] {
            system.spawn(TreeNode { name: root.into(), depth: 0, log: log.clone() });
        }
        let expected_alive = 1 + 2 * (1 + 3 + 9);
        wait_for("tree to start", || system.stats().alive() == expected_alive).await;
        let reason = system.shutdown().await;
        assert_eq!(reason, ExitReason::Shutdown);
        let log = log.lock().clone();
        assert_eq!(log.len(), 26);
        let position = |name: &str| log.iter().position(|n| n == name).expect("logged");
        // Last-spawned root first, each subtree before its root, children in reverse order.
        assert!(position("b") < position("a.2.2"));
        for root in ["a", "b"] {
            for i in 0..3 {
                let child = format!("{root}.{i}");
                assert!(position(&child) < position(root), "{child} stopped after its parent");
                for j in 0..3 {
                    assert!(position(&format!("{child}.{j}")) < position(&child));
                }
                if i > 0 {
                    assert!(position(&child) < position(&format!("{root}.{}", i - 1)), "not last-spawned first");
                }
            }
        }
        assert_eq!(system.stats().alive(), 0, "every actor stopped");
    });
}
