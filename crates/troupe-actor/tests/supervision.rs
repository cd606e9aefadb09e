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
                let children =
                    self.starts.iter().map(|starts| ctx.spawn(counting(starts, |starts| Worker { starts }))).collect();
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
fn a_top_level_actor_past_its_restart_limit_stops_alone() {
    let system = system();
    system.block_on(async {
        let worker = |starts: &Arc<AtomicU32>| counting(starts, |starts| Worker { starts });
        let (flapping_starts, steady_starts) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
        let flapping = system.spawn(worker(&flapping_starts));
        let steady = system.spawn(worker(&steady_starts));
        // The root guardian's default: 10 restarts within 10 s.
        for expected in 2..=11 {
            flapping.tell(WorkerMsg::Panic).await.expect("tell");
            wait_for("restart", || flapping_starts.load(Ordering::SeqCst) == expected).await;
        }
        flapping.tell(WorkerMsg::Panic).await.expect("tell");
        let reason = tokio::time::timeout(Duration::from_secs(5), flapping.wait_for_exit()).await.expect("it ends");
        assert!(matches!(reason, ExitReason::Panicked(_)), "{reason}");
        // The others go on, and their restarts are their own.
        assert_eq!(steady.ask(WorkerMsg::Ping).await.expect("steady answers"), 1);
        steady.tell(WorkerMsg::Panic).await.expect("tell");
        wait_for("steady restarted", || steady_starts.load(Ordering::SeqCst) == 2).await;
        // A top-level actor spawned now is supervised and stopped by the shutdown.
        let later_starts = Arc::new(AtomicU32::new(0));
        let later = system.spawn(worker(&later_starts));
        later.tell(WorkerMsg::Panic).await.expect("tell");
        wait_for("later restarted", || later_starts.load(Ordering::SeqCst) == 2).await;
        assert_eq!(system.shutdown().await, ExitReason::Shutdown);
        assert!(!later.is_alive() && !steady.is_alive());
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

/// A supervisor of one restartable child of any kind: `spawn` makes it, returns its ref.
struct Holder<C: Actor> {
    strategy: SupervisionStrategy,
    make: Arc<dyn Fn() -> Props<C> + Send + Sync>,
}

impl<C: Actor> Actor for Holder<C> {
    type Msg = Reply<ActorRef<C::Msg>>;
    async fn handle(&mut self, reply: Self::Msg, ctx: &mut Context<Self>) -> ActorResult {
        reply.send(ctx.spawn((self.make)()));
        Ok(())
    }
    fn supervision(&self) -> SupervisionStrategy {
        self.strategy
    }
}

/// Spawns a [`Holder`] under `strategy` and has it spawn one child from `make`.
/// Props that make a new actor with `make` at each (re)start, handing it a clone of `starts`
/// (the counters it records its starts in).
fn counting<C: Actor, T: Clone + Send + Sync + 'static>(starts: &T, make: fn(T) -> C) -> Props<C> {
    let starts = starts.clone();
    Props::factory(move || make(starts.clone()))
}

async fn held<C: Actor>(
    system: &ActorSystem,
    strategy: SupervisionStrategy,
    make: impl Fn() -> Props<C> + Send + Sync + 'static,
) -> ActorRef<C::Msg> {
    let holder = system.spawn(Holder { strategy, make: Arc::new(make) });
    holder.ask(|r| r).await.expect("the holder spawns its child")
}

async fn exits_within(actor: &ActorRef<impl Message>, limit: Duration) -> Option<ExitReason> {
    tokio::time::timeout(limit, actor.wait_for_exit()).await.ok()
}

#[test]
fn killing_a_supervisor_that_is_restarted_later_ends_its_restartable_children() {
    let system = system();
    system.block_on(async {
        // The supervisor's own supervisor restarts it after a backoff; meanwhile its killed
        // children (restartable) ask it what to do. They used to wait for an answer for ever.
        let strategy = SupervisionStrategy::one_for_one()
            .backoff(Backoff::exponential(Duration::from_millis(300), Duration::from_secs(1)));
        let starts: Vec<_> = (0..3).map(|_| Arc::new(AtomicU32::new(0))).collect();
        let for_factory = starts.clone();
        let sup = held(&system, strategy, move || {
            counting(&for_factory, |starts| Supervisor { strategy: SupervisionStrategy::one_for_one(), starts })
        })
        .await;
        let children = sup.ask(SupMsg::Children).await.expect("children");
        wait_for("children to start", || counts(&starts) == vec![1, 1, 1]).await;
        sup.kill();
        for child in &children {
            let exit = exits_within(child, Duration::from_secs(3)).await;
            assert_eq!(exit, Some(ExitReason::Killed), "a child of the killed supervisor was left waiting");
        }
        wait_for("the supervisor to come back", || sup.is_alive()).await;
        assert_eq!(counts(&starts), vec![1, 1, 1], "the old children were restarted");
        system.shutdown().await;
    });
}

/// A worker whose handler can wait for ever.
struct Hanger {
    starts: Arc<AtomicU32>,
}

impl Actor for Hanger {
    type Msg = Reply<u32>;
    async fn started(&mut self, _ctx: &mut Context<Self>) -> ActorResult {
        self.starts.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    async fn handle(&mut self, started: Reply<u32>, _ctx: &mut Context<Self>) -> ActorResult {
        started.send(self.starts.load(Ordering::SeqCst));
        std::future::pending::<()>().await;
        Ok(())
    }
}

#[test]
fn a_restartable_actor_killed_inside_an_awaiting_handler_is_restarted() {
    let system = system();
    system.block_on(async {
        let starts = Arc::new(AtomicU32::new(0));
        let for_factory = starts.clone();
        let hanger = held(&system, SupervisionStrategy::one_for_one(), move || {
            counting(&for_factory, |starts| Hanger { starts })
        })
        .await;
        // The handler answers, then waits for ever: the kill ends it at that await.
        assert_eq!(hanger.ask(|r| r).await, Ok(1));
        hanger.kill();
        wait_for("the restart", || starts.load(Ordering::SeqCst) == 2).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(hanger.is_alive(), "killed in a handler, a transient actor ended instead of restarting");
        system.shutdown().await;
    });
}

/// A child whose `stopped` hook takes a while.
struct SlowToStop;

impl Actor for SlowToStop {
    type Msg = ();
    async fn handle(&mut self, _: (), _ctx: &mut Context<Self>) -> ActorResult {
        Ok(())
    }
    async fn stopped(&mut self, _reason: &ExitReason, _ctx: &mut Context<Self>) {
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Spawns a [`SlowToStop`] child when started; fails on request.
struct Failing {
    starts: Arc<AtomicU32>,
}

impl Actor for Failing {
    type Msg = ();
    async fn started(&mut self, ctx: &mut Context<Self>) -> ActorResult {
        self.starts.fetch_add(1, Ordering::SeqCst);
        ctx.spawn(SlowToStop);
        Ok(())
    }
    async fn handle(&mut self, _: (), _ctx: &mut Context<Self>) -> ActorResult {
        Err("asked to fail".into())
    }
}

#[test]
fn a_stop_asked_for_while_a_failed_actor_stops_its_children_is_not_lost() {
    let system = system();
    system.block_on(async {
        let starts = Arc::new(AtomicU32::new(0));
        let for_factory = starts.clone();
        let failing = held(&system, SupervisionStrategy::one_for_one(), move || {
            counting(&for_factory, |starts| Failing { starts })
        })
        .await;
        wait_for("the start", || starts.load(Ordering::SeqCst) == 1).await;
        failing.tell(()).await.expect("tell");
        // It failed and waits for its child's slow `stopped` hook; the stop arrives meanwhile.
        tokio::time::sleep(Duration::from_millis(100)).await;
        failing.stop();
        let exit = exits_within(&failing, Duration::from_secs(3)).await;
        assert_eq!(exit, Some(ExitReason::Failed("asked to fail".into())), "the stop was forgotten");
        assert_eq!(starts.load(Ordering::SeqCst), 1, "restarted although asked to stop");
        system.shutdown().await;
    });
}

/// Watches `target` from `started`; fails on request.
struct StartWatcher {
    target: ActorRef<WorkerMsg>,
    downs: Arc<AtomicU32>,
    starts: Arc<AtomicU32>,
}

impl Actor for StartWatcher {
    type Msg = ();
    async fn started(&mut self, ctx: &mut Context<Self>) -> ActorResult {
        self.starts.fetch_add(1, Ordering::SeqCst);
        ctx.watch(&self.target);
        Ok(())
    }
    async fn handle(&mut self, _: (), _ctx: &mut Context<Self>) -> ActorResult {
        Err("asked to fail".into())
    }
    async fn on_down(&mut self, _down: Down, _ctx: &mut Context<Self>) -> ActorResult {
        self.downs.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[test]
fn a_watch_renewed_by_a_restarted_actor_delivers_one_down() {
    let system = system();
    system.block_on(async {
        let target = system.spawn(Worker { starts: Arc::new(AtomicU32::new(0)) });
        let (downs, starts) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
        let (for_factory, watched) = ((downs.clone(), starts.clone()), target.clone());
        let watcher = held(&system, SupervisionStrategy::one_for_one(), move || {
            let (downs, starts, target) = (for_factory.0.clone(), for_factory.1.clone(), watched.clone());
            Props::factory(move || StartWatcher {
                target: target.clone(),
                downs: downs.clone(),
                starts: starts.clone(),
            })
        })
        .await;
        wait_for("the start", || starts.load(Ordering::SeqCst) == 1).await;
        watcher.tell(()).await.expect("tell");
        wait_for("the restart", || starts.load(Ordering::SeqCst) == 2).await;
        target.stop();
        wait_for("the down", || downs.load(Ordering::SeqCst) >= 1).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(downs.load(Ordering::SeqCst), 1, "one stop, several Downs");
        system.shutdown().await;
    });
}

/// Fails whenever asked; its strategy panics.
struct BadStrategy;

impl Actor for BadStrategy {
    type Msg = Reply<ActorRef<WorkerMsg>>;
    async fn handle(&mut self, reply: Self::Msg, ctx: &mut Context<Self>) -> ActorResult {
        reply.send(ctx.spawn(Props::factory(|| Worker { starts: Arc::new(AtomicU32::new(0)) })));
        Ok(())
    }
    fn supervision(&self) -> SupervisionStrategy {
        panic!("no strategy today")
    }
}

/// Sends its own interval ticks through a factory that panics.
struct BadInterval;

impl Actor for BadInterval {
    type Msg = Reply<()>;
    async fn started(&mut self, ctx: &mut Context<Self>) -> ActorResult {
        ctx.interval(Duration::from_millis(1), || panic!("no tick today"));
        Ok(())
    }
    async fn handle(&mut self, reply: Reply<()>, _ctx: &mut Context<Self>) -> ActorResult {
        reply.send(());
        Ok(())
    }
}

#[test]
fn panics_in_user_code_outside_handlers_leave_the_node_serving() {
    // One worker: a panic that took the worker thread with it would stop everything.
    let system = ActorSystem::builder().workers(1).build().expect("system starts");
    system.block_on(async {
        let ticking = system.spawn(BadInterval);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(ticking.ask(|r| r).await, Ok(()), "the actor whose interval panicked");

        let sup = system.spawn(BadStrategy);
        let child = sup.ask(|r| r).await.expect("child");
        child.tell(WorkerMsg::Panic).await.expect("tell");
        let exit = exits_within(&sup, Duration::from_secs(3)).await;
        assert_eq!(exit, Some(ExitReason::Panicked("no strategy today".into())));
        assert!(exits_within(&child, Duration::from_secs(3)).await.is_some(), "the child outlived its supervisor");

        let other = system.spawn(Worker { starts: Arc::new(AtomicU32::new(0)) });
        assert_eq!(other.ask(WorkerMsg::Ping).await, Ok(1), "the node stopped serving");
        system.shutdown().await;
    });
}

/// Spawns a child in a handler that is still running when the node shuts down.
struct LateSpawner {
    stopped: Arc<AtomicU32>,
}

impl Actor for LateSpawner {
    type Msg = ();
    async fn handle(&mut self, _: (), ctx: &mut Context<Self>) -> ActorResult {
        std::thread::sleep(Duration::from_millis(200));
        ctx.spawn(Worker { starts: Arc::new(AtomicU32::new(0)) });
        Ok(())
    }
    async fn stopped(&mut self, _reason: &ExitReason, _ctx: &mut Context<Self>) {
        self.stopped.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn a_child_spawned_while_the_node_shuts_down_does_not_hold_up_the_shutdown() {
    let system = system();
    system.block_on(async {
        let stopped = Arc::new(AtomicU32::new(0));
        let spawner = system.spawn(LateSpawner { stopped: stopped.clone() });
        spawner.tell(()).await.expect("tell");
        // The handler is sleeping when the shutdown begins; its child never starts, and its
        // parent used to wait for it to stop (5 s, then 5 s more after killing it).
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = Instant::now();
        system.shutdown().await;
        assert!(started.elapsed() < Duration::from_secs(2), "shutdown took {:?}", started.elapsed());
        assert_eq!(stopped.load(Ordering::SeqCst), 1, "the spawner's stopped hook did not run");
    });
}
