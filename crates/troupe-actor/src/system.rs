//! The actor system: one node's actors, scheduler, registry and supervision root.

use std::any::Any;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use parking_lot::Mutex;

use crate::actor::Actor;
use crate::cell::{ActorCell, CellControl};
use crate::context::Context;
use crate::error::{ActorResult, RegistryError, SystemError};
use crate::exit::ExitReason;
use crate::id::{ActorId, NodeId};
use crate::message::Message;
use crate::props::Props;
use crate::reference::{ActorRef, UntypedRef};
use crate::registry::Registry;
use crate::runner::{run_actor, Life};
use crate::sched::StagePool;
use crate::system_msg::SystemMsg;
use crate::time::TimerRuntime;

const DEFAULT_ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// Settings of an actor system.
#[derive(Debug, Clone)]
pub struct SystemConfig {
    /// A name for logs and thread names.
    pub name: String,
    /// This node incarnation's id (random by default).
    pub node_id: NodeId,
    /// Actor worker threads.
    pub workers: usize,
    /// Default mailbox capacity in messages.
    pub mailbox_capacity: usize,
    /// Default `ask` timeout.
    pub ask_timeout: Duration,
    /// How long `shutdown` waits for the supervision tree to stop before killing what is left.
    pub shutdown_timeout: Duration,
    /// How long a stopping parent waits for each child before killing it.
    pub child_shutdown_timeout: Duration,
}

impl Default for SystemConfig {
    fn default() -> Self {
        SystemConfig {
            name: "troupe".into(),
            node_id: NodeId::random(),
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            mailbox_capacity: 1024,
            ask_timeout: DEFAULT_ASK_TIMEOUT,
            shutdown_timeout: Duration::from_secs(10),
            child_shutdown_timeout: Duration::from_secs(5),
        }
    }
}

/// Builds an [`ActorSystem`].
#[derive(Debug, Default)]
pub struct SystemBuilder {
    config: SystemConfig,
    tokio: Option<tokio::runtime::Handle>,
    tokio_owner: Option<Weak<dyn Any + Send + Sync>>,
}

impl SystemBuilder {
    /// Name used in logs and thread names.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// Fixes the node id (otherwise random).
    pub fn node_id(mut self, id: NodeId) -> Self {
        self.config.node_id = id;
        self
    }

    /// Number of actor worker threads (default: the number of cores).
    pub fn workers(mut self, n: usize) -> Self {
        self.config.workers = n;
        self
    }

    /// Default mailbox capacity (default 1024).
    pub fn mailbox_capacity(mut self, n: usize) -> Self {
        self.config.mailbox_capacity = n;
        self
    }

    /// Default `ask` timeout (default 5 s).
    pub fn ask_timeout(mut self, timeout: Duration) -> Self {
        self.config.ask_timeout = timeout;
        self
    }

    /// How long `shutdown` waits before killing what is left (default 10 s).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.config.shutdown_timeout = timeout;
        self
    }

    /// Use this tokio runtime for timers and I/O instead of starting a small one. It must outlive
    /// the system, unless [`tokio_owner`](Self::tokio_owner) says when it goes.
    pub fn tokio_handle(mut self, handle: tokio::runtime::Handle) -> Self {
        self.tokio = Some(handle);
        self
    }

    /// The runtime given to [`tokio_handle`](Self::tokio_handle) shuts down when `owner` is
    /// dropped, and never while `owner` can still be upgraded (a node's network runtime goes with
    /// the node). From then on the system times asks, shutdowns and actor timers, and runs
    /// [`block_on`](ActorSystem::block_on), on a small runtime of its own (timers only), started
    /// then, so a system that outlives its runtime keeps working instead of panicking in tokio's
    /// timers. Handler code that uses tokio directly still finds the old runtime gone. Ignored
    /// without `tokio_handle`.
    pub fn tokio_owner(mut self, owner: Weak<dyn Any + Send + Sync>) -> Self {
        self.tokio_owner = Some(owner);
        self
    }

    /// Starts the system.
    pub fn build(self) -> Result<ActorSystem, SystemError> {
        let config = self.config;
        if config.workers == 0 || config.workers > 1024 {
            return Err(SystemError::Config(format!("workers must be in 1..=1024, got {}", config.workers)));
        }
        if config.mailbox_capacity == 0 {
            return Err(SystemError::Config("mailbox_capacity must be at least 1".into()));
        }
        let (tokio, own_runtime, tokio_owner) = match self.tokio {
            Some(handle) => (handle, None, self.tokio_owner),
            None => {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name(format!("{}-io", config.name))
                    .enable_all()
                    .build()?;
                (runtime.handle().clone(), Some(runtime), None)
            }
        };
        let timers = TimerRuntime::new(&config.name, tokio.clone(), tokio_owner);
        let pool = StagePool::new(&format!("{}-actor", config.name), config.workers, Some(tokio.clone()));
        let shared = Arc::new(SystemShared {
            config,
            tokio,
            own_runtime: Mutex::new(own_runtime),
            timers,
            pool,
            next_serial: AtomicU64::new(1),
            registry: Registry::default(),
            guardian: OnceLock::new(),
            stopped: AtomicBool::new(false),
            spawned: AtomicU64::new(0),
            exited: AtomicU64::new(0),
            dead_letters: AtomicU64::new(0),
        });
        let system = ActorSystem { shared };
        let (guardian, start) = system.prepare(Props::new(Guardian), None);
        let _ = system.shared.guardian.set(guardian.untyped());
        start.start();
        Ok(system)
    }
}

pub(crate) struct SystemShared {
    pub(crate) config: SystemConfig,
    pub(crate) tokio: tokio::runtime::Handle,
    own_runtime: Mutex<Option<tokio::runtime::Runtime>>,
    /// Where asks, shutdowns and actor timers are timed.
    pub(crate) timers: TimerRuntime,
    pub(crate) pool: StagePool,
    next_serial: AtomicU64,
    pub(crate) registry: Registry,
    guardian: OnceLock<UntypedRef>,
    stopped: AtomicBool,
    spawned: AtomicU64,
    exited: AtomicU64,
    dead_letters: AtomicU64,
}

impl SystemShared {
    pub(crate) fn actor_exited(&self, undelivered: u64) {
        self.exited.fetch_add(1, Ordering::Relaxed);
        if undelivered > 0 {
            self.dead_letters.fetch_add(undelivered, Ordering::Relaxed);
        }
    }
}

impl Drop for SystemShared {
    fn drop(&mut self) {
        self.pool.shutdown();
        if let Some(runtime) = self.own_runtime.lock().take() {
            runtime.shutdown_background();
        }
    }
}

/// Counters describing a system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SystemStats {
    /// Actors spawned since start (including the guardian).
    pub spawned: u64,
    /// Actors that have stopped for good.
    pub exited: u64,
    /// Messages that reached a stopped actor's mailbox and were never handled.
    pub dead_letters: u64,
}

impl SystemStats {
    /// Actors currently alive.
    pub fn alive(&self) -> u64 {
        self.spawned.saturating_sub(self.exited)
    }
}

/// One node's actors: spawn them, name them, shut them down in order.
///
/// Cloning is cheap (a shared handle). Call [`shutdown`](ActorSystem::shutdown) when done: actors
/// keep the system alive until then.
#[derive(Clone)]
pub struct ActorSystem {
    pub(crate) shared: Arc<SystemShared>,
}

impl std::fmt::Debug for ActorSystem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActorSystem")
            .field("name", &self.shared.config.name)
            .field("node", &self.shared.config.node_id)
            .finish()
    }
}

/// Starts an actor once everything that must know about it is in place.
pub(crate) struct Starter {
    /// The new actor's task waker: waking it schedules the task's first run.
    waker: Option<std::task::Waker>,
}

impl Starter {
    /// False when the actor never runs (the node was shutting down): it is already gone, and no
    /// supervisor may wait for it to stop.
    pub(crate) fn runs(&self) -> bool {
        self.waker.is_some()
    }

    pub(crate) fn start(self) {
        if let Some(waker) = self.waker {
            waker.wake();
        }
    }
}

impl ActorSystem {
    /// A builder with default settings.
    pub fn builder() -> SystemBuilder {
        SystemBuilder::default()
    }

    /// A system with default settings.
    pub fn new() -> Result<Self, SystemError> {
        Self::builder().build()
    }

    /// The settings in force.
    pub fn config(&self) -> &SystemConfig {
        &self.shared.config
    }

    /// This node incarnation's id.
    pub fn node_id(&self) -> NodeId {
        self.shared.config.node_id
    }

    /// The scheduler running the actors (resizable while running).
    pub fn scheduler(&self) -> &StagePool {
        &self.shared.pool
    }

    /// The tokio runtime used for timers and I/O.
    pub fn tokio_handle(&self) -> &tokio::runtime::Handle {
        &self.shared.tokio
    }

    /// Spawns a top-level actor, supervised by the node's root guardian (one-for-one).
    pub fn spawn<A: Actor>(&self, props: impl Into<Props<A>>) -> ActorRef<A::Msg> {
        let guardian = self.shared.guardian.get().cloned();
        let (actor, start) = self.prepare(props.into(), guardian.clone());
        if let Some(guardian) = guardian.filter(|_| start.runs()) {
            guardian.0.send_system(SystemMsg::Adopt(actor.untyped()));
        }
        start.start();
        actor
    }

    /// Creates an actor (cell, task, context) without running it yet.
    pub(crate) fn prepare<A: Actor>(&self, props: Props<A>, parent: Option<UntypedRef>) -> (ActorRef<A::Msg>, Starter) {
        let shared = &self.shared;
        let id = ActorId { node: shared.config.node_id, serial: shared.next_serial.fetch_add(1, Ordering::Relaxed) };
        let capacity = props.capacity.unwrap_or(shared.config.mailbox_capacity);
        let cell = Arc::new(ActorCell::new(id, capacity, shared.config.ask_timeout, Arc::downgrade(shared)));
        let actor = ActorRef::from_cell(cell.clone());
        shared.spawned.fetch_add(1, Ordering::Relaxed);
        if shared.stopped.load(Ordering::SeqCst) {
            // The node is shutting down: the actor never starts and refuses messages.
            drop(cell.mailbox.close_and_drain());
            cell.mark_exited(&ExitReason::Shutdown);
            shared.actor_exited(0);
            return (actor, Starter { waker: None });
        }
        let ctx = Context::new(cell.clone(), self.clone(), parent);
        let task = shared.pool.task(run_actor(Life::new(cell.clone(), props.into_recipe(), ctx)));
        let waker = std::task::Waker::from(task);
        cell.set_waker(waker.clone());
        (actor, Starter { waker: Some(waker) })
    }

    /// Registers `actor` under `name` on this node. The name is freed when the actor stops.
    pub fn register<M: Message>(&self, name: impl Into<String>, actor: &ActorRef<M>) -> Result<(), RegistryError> {
        self.shared.registry.register(name.into(), actor.untyped())
    }

    /// The actor registered under `name`, if it takes messages of type `M`.
    pub fn lookup<M: Message>(&self, name: &str) -> Result<ActorRef<M>, RegistryError> {
        self.shared.registry.lookup(name)
    }

    /// The actor registered under `name`, whatever its message type.
    pub fn lookup_untyped(&self, name: &str) -> Option<UntypedRef> {
        self.shared.registry.lookup_untyped(name)
    }

    /// Removes a name; true if it was registered.
    pub fn unregister(&self, name: &str) -> bool {
        self.shared.registry.unregister(name)
    }

    /// Registered names, sorted.
    pub fn registered_names(&self) -> Vec<String> {
        self.shared.registry.names()
    }

    /// Counters: actors spawned and stopped, dead letters.
    pub fn stats(&self) -> SystemStats {
        SystemStats {
            spawned: self.shared.spawned.load(Ordering::Relaxed),
            exited: self.shared.exited.load(Ordering::Relaxed),
            dead_letters: self.shared.dead_letters.load(Ordering::Relaxed),
        }
    }

    /// Runs `future` to completion on the calling thread, with this system's tokio runtime
    /// entered (the timers-only one of [`SystemBuilder::tokio_owner`] once the given runtime is
    /// gone). Must not be called from inside an async context.
    ///
    /// Actors that `future` wakes (by a tell, an ask, a stop) while every worker sleeps run on
    /// the calling thread, as they do on a network thread ([`Woken::run_here`](crate::Woken::run_here)):
    /// an ask from `main` to an idle node is answered without waking a worker and then `main`
    /// (two thread wake-ups, tens of microseconds on a VM). A slow turn sends later ones back to
    /// the workers for a while, so a long handler does not hold the caller. A handler that
    /// blocks its thread (a blocking channel receive, a lock held by the caller) would block the
    /// caller too: as everywhere in troupe, handlers await rather than block.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        self.shared.timers.live_handle().block_on(std::future::poll_fn(|cx| {
            let mut woken = crate::sched::Woken::default();
            let polled = crate::sched::collect_wakeups(&mut woken, || future.as_mut().poll(cx));
            if polled.is_pending() {
                woken.run_here();
            }
            // Dropping `woken` queues on the workers whatever did not run here.
            polled
        }))
    }

    /// Stops every actor, children before parents, last-spawned first, waiting for each; after
    /// the shutdown timeout whatever is left is killed. Then stops the worker threads (unless
    /// called from one of them). Returns how the root guardian ended.
    pub async fn shutdown(&self) -> ExitReason {
        self.shared.stopped.store(true, Ordering::SeqCst);
        let reason = match self.shared.guardian.get() {
            Some(guardian) => {
                guardian.0.send_system(SystemMsg::Shutdown);
                let limit = self.shared.config.shutdown_timeout;
                match crate::time::timeout(
                    crate::time::Clock::System(&Arc::downgrade(&self.shared)),
                    limit,
                    guardian.wait_for_exit(),
                )
                .await
                {
                    Some(reason) => reason,
                    None => {
                        tracing::warn!(node = %self.node_id(), "shutdown did not finish within {limit:?}; killing the rest");
                        guardian.kill();
                        crate::time::timeout(
                            crate::time::Clock::System(&Arc::downgrade(&self.shared)),
                            Duration::from_secs(1),
                            guardian.wait_for_exit(),
                        )
                        .await
                        .unwrap_or(ExitReason::Killed)
                    }
                }
            }
            None => ExitReason::NoActor,
        };
        self.shared.registry.clear();
        self.shared.pool.shutdown();
        reason
    }

    /// [`shutdown`](Self::shutdown) for synchronous code.
    pub fn shutdown_blocking(&self) -> ExitReason {
        self.block_on(self.shutdown())
    }
}

/// The root of every node's supervision tree.
struct Guardian;

impl Actor for Guardian {
    type Msg = ();

    async fn handle(&mut self, _msg: (), _ctx: &mut Context<Self>) -> ActorResult {
        Ok(())
    }
}
