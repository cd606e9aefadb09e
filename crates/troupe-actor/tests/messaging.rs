//! Messaging semantics: FIFO, ask, backpressure, timers, async handlers, registry.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use troupe_actor::prelude::*;
use troupe_actor::{AskError, RegistryError, TimerHandle, TrySendError};

fn system() -> ActorSystem {
    ActorSystem::builder().workers(2).build().expect("system starts")
}

/// Records, per sender, that sequence numbers arrive in order.
struct Recorder {
    next: Vec<u64>,
    violations: u64,
    received: u64,
}

enum RecorderMsg {
    Item { sender: usize, seq: u64 },
    Report(Reply<(u64, u64)>),
}
impl Message for RecorderMsg {}

impl Actor for Recorder {
    type Msg = RecorderMsg;
    async fn handle(&mut self, msg: RecorderMsg, _ctx: &mut Context<Self>) -> ActorResult {
        match msg {
            RecorderMsg::Item { sender, seq } => {
                if self.next[sender] != seq {
                    self.violations += 1;
                }
                self.next[sender] = seq + 1;
                self.received += 1;
            }
            RecorderMsg::Report(reply) => {
                reply.send((self.received, self.violations));
            }
        }
        Ok(())
    }
}

/// Sends `count` numbered messages to a target when told to go.
struct Sender {
    index: usize,
    count: u64,
    target: ActorRef<RecorderMsg>,
}

impl Actor for Sender {
    type Msg = Reply<()>;
    async fn handle(&mut self, done: Reply<()>, _ctx: &mut Context<Self>) -> ActorResult {
        for seq in 0..self.count {
            self.target.tell(RecorderMsg::Item { sender: self.index, seq }).await?;
        }
        done.send(());
        Ok(())
    }
}

#[test]
fn fifo_per_sender_receiver_pair_under_concurrency() {
    let system = system();
    system.block_on(async {
        const SENDERS: usize = 8;
        const EACH: u64 = 20_000;
        let recorder =
            system.spawn(Props::new(Recorder { next: vec![0; SENDERS], violations: 0, received: 0 }).capacity(64));
        let senders: Vec<_> =
            (0..SENDERS).map(|index| system.spawn(Sender { index, count: EACH, target: recorder.clone() })).collect();
        let mut waits = Vec::new();
        for s in &senders {
            let s = s.clone();
            waits.push(tokio::spawn(async move { s.ask_timeout(|r| r, Duration::from_secs(30)).await }));
        }
        for w in waits {
            w.await.expect("join").expect("sender finished");
        }
        let (received, violations) = recorder.ask(RecorderMsg::Report).await.expect("report");
        assert_eq!(received, SENDERS as u64 * EACH);
        assert_eq!(violations, 0, "messages from one sender arrived out of order");
        system.shutdown().await;
    });
}

/// Replies after an optional delay, or never, or drops the port.
struct Echo;
enum EchoMsg {
    Now(u32, Reply<u32>),
    After(Duration, u32, Reply<u32>),
    Never(Reply<u32>),
    Drop(Reply<u32>),
}
impl Message for EchoMsg {}

impl Actor for Echo {
    type Msg = EchoMsg;
    async fn handle(&mut self, msg: EchoMsg, _ctx: &mut Context<Self>) -> ActorResult {
        match msg {
            EchoMsg::Now(v, r) => {
                r.send(v);
            }
            EchoMsg::After(d, v, r) => {
                tokio::time::sleep(d).await;
                r.send(v);
            }
            EchoMsg::Never(r) => std::mem::forget(r),
            EchoMsg::Drop(r) => drop(r),
        }
        Ok(())
    }
}

#[test]
fn ask_replies_times_out_and_reports_stopped_actors() {
    let system = system();
    system.block_on(async {
        let echo = system.spawn(Echo);
        assert_eq!(echo.ask(|r| EchoMsg::Now(7, r)).await, Ok(7));
        let started = Instant::now();
        let err = echo.ask_timeout(EchoMsg::Never, Duration::from_millis(100)).await.unwrap_err();
        assert!(matches!(err, AskError::Timeout { .. }), "{err:?}");
        assert!(started.elapsed() >= Duration::from_millis(100));
        assert_eq!(echo.ask(EchoMsg::Drop).await, Err(AskError::NoReply(echo.id())));
        // An async handler that awaits: the reply still arrives.
        assert_eq!(echo.ask(|r| EchoMsg::After(Duration::from_millis(20), 9, r)).await, Ok(9));

        let (p1, p2) = (orphan_reply(&system).await, orphan_reply(&system).await);
        echo.stop();
        assert_eq!(echo.wait_for_exit().await, ExitReason::Normal);
        assert!(!echo.is_alive());
        let err = echo.ask(|r| EchoMsg::Now(1, r)).await.unwrap_err();
        assert_eq!(err, AskError::NotRunning(echo.id()));
        assert!(err.to_string().contains("not running"), "clear message: {err}");
        assert!(matches!(echo.try_tell(EchoMsg::Never(p1)), Err(TrySendError::Closed { .. })));
        assert!(echo.tell(EchoMsg::Never(p2)).await.is_err());
        system.shutdown().await;
    });
}

/// Keeps a reply port so a test can get one whose asker is gone.
struct Keep(Option<Reply<u32>>);
enum KeepMsg {
    Put(Reply<u32>),
    Take(Reply<Option<Reply<u32>>>),
}
impl Message for KeepMsg {}
impl Actor for Keep {
    type Msg = KeepMsg;
    async fn handle(&mut self, msg: KeepMsg, _ctx: &mut Context<Self>) -> ActorResult {
        match msg {
            KeepMsg::Put(r) => self.0 = Some(r),
            KeepMsg::Take(r) => {
                r.send(self.0.take());
            }
        }
        Ok(())
    }
}

async fn orphan_reply(system: &ActorSystem) -> Reply<u32> {
    let keep = system.spawn(Keep(None));
    let _ = keep.ask_timeout(KeepMsg::Put, Duration::from_millis(1)).await;
    keep.ask(KeepMsg::Take).await.expect("take").expect("port kept")
}

/// Blocks in its handler until a gate opens, so its mailbox fills up.
struct Gated {
    gate: Option<tokio::sync::oneshot::Receiver<()>>,
    handled: Arc<AtomicU64>,
}

impl Actor for Gated {
    type Msg = u64;
    async fn handle(&mut self, _msg: u64, _ctx: &mut Context<Self>) -> ActorResult {
        if let Some(gate) = self.gate.take() {
            let _ = gate.await;
        }
        self.handled.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[test]
fn bounded_mailbox_backpressure_and_try_tell_full() {
    let system = system();
    system.block_on(async {
        let (open, gate) = tokio::sync::oneshot::channel();
        let handled = Arc::new(AtomicU64::new(0));
        let actor = system.spawn(Props::new(Gated { gate: Some(gate), handled: handled.clone() }).capacity(4));
        assert_eq!(actor.mailbox_capacity(), 4);
        // The first message is taken by the (blocked) handler; then 4 fill the mailbox.
        actor.tell(0).await.expect("tell");
        tokio::time::sleep(Duration::from_millis(50)).await;
        for i in 1..=4 {
            actor.try_tell(i).expect("room for 4");
        }
        let full = actor.try_tell(5).unwrap_err();
        assert!(matches!(full, TrySendError::Full { .. }), "{full:?}");
        assert_eq!(full.into_message(), 5);
        // `tell` waits while full...
        let blocked = tokio::time::timeout(Duration::from_millis(100), actor.tell(5)).await;
        assert!(blocked.is_err(), "tell must wait while the mailbox is full");
        // ...and completes once the actor makes room.
        let waiter = {
            let actor = actor.clone();
            tokio::spawn(async move { actor.tell(6).await.is_ok() })
        };
        open.send(()).expect("open gate");
        assert!(waiter.await.expect("join"));
        let deadline = Instant::now() + Duration::from_secs(5);
        while handled.load(Ordering::SeqCst) < 6 {
            assert!(Instant::now() < deadline, "messages not handled");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(handled.load(Ordering::SeqCst), 6);
        system.shutdown().await;
    });
}

#[test]
fn system_messages_are_not_blocked_by_a_full_mailbox() {
    let system = system();
    system.block_on(async {
        let (_open, gate) = tokio::sync::oneshot::channel::<()>();
        let handled = Arc::new(AtomicU64::new(0));
        let actor = system.spawn(Props::new(Gated { gate: Some(gate), handled }).capacity(1));
        actor.tell(0).await.expect("tell");
        tokio::time::sleep(Duration::from_millis(20)).await;
        actor.try_tell(1).expect("one slot");
        assert!(actor.try_tell(2).is_err());
        // Kill reaches the actor even though its mailbox is full and its handler is blocked.
        actor.kill();
        let reason = tokio::time::timeout(Duration::from_secs(5), actor.wait_for_exit()).await.expect("exits");
        assert_eq!(reason, ExitReason::Killed);
        system.shutdown().await;
    });
}

/// Counts ticks from timers.
struct Ticker {
    ticks: Arc<AtomicU64>,
    delayed: Arc<AtomicU64>,
}
enum TickMsg {
    Start,
    Tick,
    Delayed(Instant),
}
impl Message for TickMsg {}

impl Actor for Ticker {
    type Msg = TickMsg;
    async fn handle(&mut self, msg: TickMsg, ctx: &mut Context<Self>) -> ActorResult {
        match msg {
            TickMsg::Start => {
                ctx.interval(Duration::from_millis(10), || TickMsg::Tick);
                ctx.send_after(Duration::from_millis(50), TickMsg::Delayed(Instant::now()));
                let cancelled = ctx.send_after(Duration::from_millis(30), TickMsg::Delayed(Instant::now()));
                cancelled.cancel();
            }
            TickMsg::Tick => {
                self.ticks.fetch_add(1, Ordering::SeqCst);
            }
            TickMsg::Delayed(sent) => {
                assert!(sent.elapsed() >= Duration::from_millis(50), "delivered early");
                self.delayed.fetch_add(1, Ordering::SeqCst);
            }
        }
        Ok(())
    }
}

#[test]
fn timers_send_after_interval_and_cancel() {
    let system = system();
    system.block_on(async {
        let ticks = Arc::new(AtomicU64::new(0));
        let delayed = Arc::new(AtomicU64::new(0));
        let ticker = system.spawn(Ticker { ticks: ticks.clone(), delayed: delayed.clone() });
        ticker.tell(TickMsg::Start).await.expect("start");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let seen = ticks.load(Ordering::SeqCst);
        assert!((5..=25).contains(&seen), "interval ticked {seen} times in 200 ms at 10 ms");
        assert_eq!(delayed.load(Ordering::SeqCst), 1, "one delayed message (the other was cancelled)");
        ticker.stop();
        ticker.wait_for_exit().await;
        let after_stop = ticks.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(ticks.load(Ordering::SeqCst), after_stop, "timers stop with their actor");
        system.shutdown().await;
    });
}

/// Waits for a slow reply from another actor without blocking the worker.
struct Waiter {
    slow: ActorRef<EchoMsg>,
}
impl Actor for Waiter {
    type Msg = Reply<u32>;
    async fn handle(&mut self, reply: Reply<u32>, _ctx: &mut Context<Self>) -> ActorResult {
        let v = self.slow.ask(|r| EchoMsg::After(Duration::from_millis(300), 1, r)).await?;
        reply.send(v);
        Ok(())
    }
}

#[test]
fn async_handlers_do_not_block_other_actors() {
    // One worker: if an awaiting handler blocked its thread, nothing else could run.
    let system = ActorSystem::builder().workers(1).build().expect("system");
    system.block_on(async {
        let slow = system.spawn(Echo);
        let waiters: Vec<_> = (0..4).map(|_| system.spawn(Waiter { slow: slow.clone() })).collect();
        let fast = system.spawn(Echo);
        let pending: Vec<_> = waiters
            .iter()
            .map(|w| {
                let w = w.clone();
                tokio::spawn(async move { w.ask(|r| r).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let started = Instant::now();
        assert_eq!(fast.ask(|r| EchoMsg::Now(5, r)).await, Ok(5));
        assert!(started.elapsed() < Duration::from_millis(200), "a fast actor waited for slow handlers");
        for p in pending {
            assert_eq!(p.await.expect("join"), Ok(1));
        }
        system.shutdown().await;
    });
}

#[test]
fn registry_names_lookup_and_cleanup() {
    let system = system();
    system.block_on(async {
        let echo = system.spawn(Echo);
        system.register("echo", &echo).expect("register");
        let other = system.spawn(Echo);
        assert!(matches!(system.register("echo", &other), Err(RegistryError::NameTaken { .. })));
        let found: ActorRef<EchoMsg> = system.lookup("echo").expect("found");
        assert_eq!(found, echo);
        assert_eq!(found.ask(|r| EchoMsg::Now(3, r)).await, Ok(3));
        let wrong = system.lookup::<u64>("echo").unwrap_err();
        assert!(matches!(wrong, RegistryError::WrongType { .. }), "{wrong}");
        assert!(matches!(system.lookup::<EchoMsg>("nobody"), Err(RegistryError::NotFound(_))));
        assert_eq!(system.registered_names(), vec!["echo".to_string()]);
        echo.stop();
        echo.wait_for_exit().await;
        assert!(matches!(system.lookup::<EchoMsg>("echo"), Err(RegistryError::NotFound(_))), "name freed on stop");
        system.register("echo", &other).expect("name reusable");
        system.shutdown().await;
    });
}

#[test]
fn spawn_after_shutdown_gives_a_stopped_actor() {
    let system = system();
    system.block_on(async {
        system.shutdown().await;
        let late = system.spawn(Echo);
        assert!(!late.is_alive());
        assert_eq!(late.ask(|r| EchoMsg::Now(1, r)).await, Err(AskError::NotRunning(late.id())));
    });
}

/// Asks from inside an actor (a worker thread): the lazy timeout must still fire, and slow
/// answers within the limit must still arrive.
struct InnerAsker {
    target: ActorRef<EchoMsg>,
}
enum InnerMsg {
    Never(Reply<Result<u32, AskError>>),
    Slow(Reply<Result<u32, AskError>>),
}
impl Message for InnerMsg {}
impl Actor for InnerAsker {
    type Msg = InnerMsg;
    async fn handle(&mut self, msg: InnerMsg, _ctx: &mut Context<Self>) -> ActorResult {
        match msg {
            InnerMsg::Never(reply) => {
                reply.send(self.target.ask_timeout(EchoMsg::Never, Duration::from_millis(100)).await);
            }
            InnerMsg::Slow(reply) => {
                let answer = self
                    .target
                    .ask_timeout(|r| EchoMsg::After(Duration::from_millis(30), 4, r), Duration::from_secs(2));
                reply.send(answer.await);
            }
        }
        Ok(())
    }
}

#[test]
fn ask_timeouts_fire_between_actors() {
    let system = system();
    system.block_on(async {
        let echo = system.spawn(Echo);
        let asker = system.spawn(InnerAsker { target: echo.clone() });
        let started = Instant::now();
        let result = asker.ask(InnerMsg::Never).await.expect("asker answers");
        assert!(matches!(result, Err(AskError::Timeout { .. })), "{result:?}");
        assert!(started.elapsed() >= Duration::from_millis(100), "timed out early");
        assert_eq!(asker.ask(InnerMsg::Slow).await.expect("asker answers"), Ok(4));
        system.shutdown().await;
    });
}

/// Answers with the thread its handler ran on.
struct WhereAmI;

struct Where(Reply<std::thread::ThreadId>);
impl Message for Where {}

impl Actor for WhereAmI {
    type Msg = Where;
    async fn handle(&mut self, Where(reply): Where, _ctx: &mut Context<Self>) -> ActorResult {
        reply.send(std::thread::current().id());
        Ok(())
    }
}

#[test]
fn block_on_answers_an_ask_on_the_calling_thread_while_the_workers_sleep() {
    let system = system();
    let actor = system.spawn(WhereAmI);
    let here = std::thread::current().id();
    // Idle workers search a little before they sleep, and wake every 100 ms to look around: an
    // ask that meets a searching worker rightly goes to it. Some ask after a pause runs here.
    let ran_here = (0..20).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        let ran_on = system.block_on(actor.ask(Where)).expect("answer");
        ran_on == here
    });
    assert!(ran_here, "every ask from block_on woke a worker although the pool was idle");
    // A burst of asks completes, whoever runs them.
    let answers = system.block_on(async {
        let mut answers = 0;
        for _ in 0..1_000 {
            actor.ask(Where).await.expect("answer");
            answers += 1;
        }
        answers
    });
    assert_eq!(answers, 1_000);
    system.shutdown_blocking();
}

/// An exit callback that panics does not keep the others (or a waiter) from hearing of the exit,
/// and the thread that noticed the exit carries on.
#[test]
fn a_panicking_exit_callback_does_not_silence_the_others() {
    let system = system();
    system.block_on(async {
        let echo = system.spawn(Echo);
        let heard = Arc::new(AtomicU64::new(0));
        echo.untyped().on_exit(|_| panic!("a callback that fails"));
        let counted = heard.clone();
        echo.untyped().on_exit(move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
        });
        echo.stop();
        assert_eq!(echo.wait_for_exit().await, ExitReason::Normal);
        assert_eq!(heard.load(Ordering::SeqCst), 1);
        // The workers still run actors.
        let other = system.spawn(Echo);
        assert_eq!(other.ask(|r| EchoMsg::Now(3, r)).await, Ok(3));
        system.shutdown().await;
    });
}

/// Answers a `Later` request 300 ms after it arrives (through `send_after`), counts `interval`
/// ticks, and keeps `Never` requests unanswered.
struct Deferred {
    waiting: Option<Reply<u32>>,
    kept: Vec<Reply<u32>>,
    ticks: Arc<AtomicU64>,
}
enum DeferredMsg {
    Later(Reply<u32>),
    Never(Reply<u32>),
    Answer,
    Tick,
}
impl Message for DeferredMsg {}

impl Actor for Deferred {
    type Msg = DeferredMsg;
    async fn started(&mut self, ctx: &mut Context<Self>) -> ActorResult {
        ctx.interval(Duration::from_millis(10), || DeferredMsg::Tick);
        Ok(())
    }
    async fn handle(&mut self, msg: DeferredMsg, ctx: &mut Context<Self>) -> ActorResult {
        match msg {
            DeferredMsg::Later(reply) => {
                self.waiting = Some(reply);
                ctx.send_after(Duration::from_millis(300), DeferredMsg::Answer);
            }
            DeferredMsg::Never(reply) => self.kept.push(reply),
            DeferredMsg::Answer => {
                if let Some(reply) = self.waiting.take() {
                    reply.send(2);
                }
            }
            DeferredMsg::Tick => {
                self.ticks.fetch_add(1, Ordering::SeqCst);
            }
        }
        Ok(())
    }
}

/// Owns a runtime and shuts it down without blocking when dropped (as a node owns its own).
struct OwnedRuntime(Option<tokio::runtime::Runtime>);
impl Drop for OwnedRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

#[test]
fn a_system_outlives_the_tokio_runtime_it_was_given() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let handle = runtime.handle().clone();
    let owner = Arc::new(OwnedRuntime(Some(runtime)));
    let weak: std::sync::Weak<OwnedRuntime> = Arc::downgrade(&owner);
    let system = ActorSystem::builder().workers(1).tokio_handle(handle).tokio_owner(weak).build().expect("system");
    let ticks = Arc::new(AtomicU64::new(0));
    let actor = system.spawn(Deferred { waiting: None, kept: Vec::new(), ticks: ticks.clone() });

    // An ask whose timer, and whose answer's send_after, start on the given runtime, which shuts
    // down while they wait: both move to the system's own timers.
    let asker = {
        let (system, actor) = (system.clone(), actor.clone());
        std::thread::spawn(move || {
            let started = Instant::now();
            let answer = system.block_on(actor.ask_timeout(DeferredMsg::Later, Duration::from_secs(5)));
            (answer, started.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    drop(owner);
    let (answer, took) = asker.join().expect("the asking thread does not panic");
    assert_eq!(answer, Ok(2));
    assert!(took >= Duration::from_millis(300), "answered after {took:?}, before its send_after fired");

    // The interval goes on ticking, and a timeout still waits its full time.
    let before = ticks.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(200));
    let ticked = ticks.load(Ordering::SeqCst) - before;
    assert!(ticked >= 5, "the interval ticked {ticked} times in 200 ms at 10 ms after the runtime went");
    let started = Instant::now();
    let unanswered = system.block_on(actor.ask_timeout(DeferredMsg::Never, Duration::from_millis(200)));
    assert!(matches!(unanswered, Err(AskError::Timeout { .. })), "{unanswered:?}");
    assert!(started.elapsed() >= Duration::from_millis(200), "timed out after {:?}", started.elapsed());
    assert_eq!(system.shutdown_blocking(), ExitReason::Shutdown);
}

/// Hands out a `send_after` handle, blocks on a gate, counts what its timer delivers.
struct TimerOwner {
    fired: u64,
}
enum TimerOwnerMsg {
    Arm(tokio::sync::oneshot::Sender<TimerHandle>),
    Block(tokio::sync::oneshot::Receiver<()>),
    Fill,
    Fired,
    Count(Reply<u64>),
}
impl Message for TimerOwnerMsg {}

impl Actor for TimerOwner {
    type Msg = TimerOwnerMsg;
    async fn handle(&mut self, msg: TimerOwnerMsg, ctx: &mut Context<Self>) -> ActorResult {
        match msg {
            TimerOwnerMsg::Arm(out) => {
                let _ = out.send(ctx.send_after(Duration::from_millis(20), TimerOwnerMsg::Fired));
            }
            TimerOwnerMsg::Block(gate) => {
                let _ = gate.await;
            }
            TimerOwnerMsg::Fill => {}
            TimerOwnerMsg::Fired => self.fired += 1,
            TimerOwnerMsg::Count(reply) => {
                reply.send(self.fired);
            }
        }
        Ok(())
    }
}

#[test]
fn a_timer_cancelled_while_its_message_waits_for_room_sends_nothing() {
    let system = system();
    system.block_on(async {
        let actor = system.spawn(Props::new(TimerOwner { fired: 0 }).capacity(1));
        let (out, handle) = tokio::sync::oneshot::channel();
        actor.tell(TimerOwnerMsg::Arm(out)).await.expect("arm");
        let handle = handle.await.expect("the timer's handle");
        let (open, gate) = tokio::sync::oneshot::channel();
        actor.tell(TimerOwnerMsg::Block(gate)).await.expect("block");
        tokio::time::sleep(Duration::from_millis(5)).await;
        actor.try_tell(TimerOwnerMsg::Fill).expect("the one slot");
        // The timer fires at 20 ms and its message waits for room.
        tokio::time::sleep(Duration::from_millis(100)).await;
        handle.cancel();
        let _ = open.send(());
        assert_eq!(actor.ask(TimerOwnerMsg::Count).await, Ok(0), "a cancelled timer's message arrived");
        system.shutdown().await;
    });
}
