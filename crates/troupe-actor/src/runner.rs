//! The life of one actor: incarnations, message loop, system messages, supervision, shutdown.
//!
//! Each actor is one future (`run_actor`) polled by the scheduler. Handler futures are awaited in
//! place, so an `async` handler costs no allocation, and a handler that never awaits costs no more
//! than a function call.

use std::any::Any;
use std::future::{poll_fn, Future};
use std::ops::Bound;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use crate::actor::Actor;
use crate::cell::{notify_watcher, ActorCell, CellControl};
use crate::context::Context;
use crate::error::ActorResult;
use crate::exit::ExitReason;
use crate::id::ActorId;
use crate::mailbox::Receiver;
use crate::props::Recipe;
use crate::reference::UntypedRef;
use crate::sched::task::YieldNow;
use crate::supervision::{StrategyKind, SupervisionStrategy};
use crate::system_msg::SystemMsg;

/// Messages handled per scheduling turn before the actor yields its worker.
const BUDGET: u32 = 64;

/// How an incarnation ended.
enum Ended {
    Exit(ExitReason),
    /// Ended with this reason (perhaps a failure) after a stop was asked for: restarted only if a
    /// normal stop would be (`Restart::Permanent`), never as a failure.
    Stopping(ExitReason),
    /// A sibling failed and the supervisor restarts this actor too.
    RestartRequested,
}

impl Ended {
    /// The same end, now that a stop was asked for (while the incarnation wound down).
    fn stopping(self, stop: ExitReason) -> Ended {
        match self {
            Ended::Exit(reason) | Ended::Stopping(reason) => Ended::Stopping(reason),
            Ended::RestartRequested => Ended::Stopping(stop),
        }
    }
}

/// System messages that reached an actor between two incarnations (while its children stopped,
/// or while it waited for its supervisor's answer) and that belong to whoever comes next: the
/// next incarnation, or `finalize`. They are put back in front of the system queue, in order.
type Deferred = Vec<SystemMsg>;

/// What the actor does after an incarnation.
enum Next {
    Restart,
    Terminate(ExitReason),
}

/// Everything an actor's task owns across incarnations.
pub(crate) struct Life<A: Actor> {
    cell: Arc<ActorCell<A::Msg>>,
    recipe: Recipe<A>,
    ctx: Context<A>,
    rx: Receiver<A::Msg>,
    finished: bool,
}

impl<A: Actor> Life<A> {
    pub(crate) fn new(cell: Arc<ActorCell<A::Msg>>, recipe: Recipe<A>, ctx: Context<A>) -> Self {
        Life { cell, recipe, ctx, rx: Receiver::new(), finished: false }
    }
}

/// If an actor's future is dropped before it finished (its node's scheduler was shut down, or a
/// panic escaped every handler guard and the scheduler ended the task), the actor still ends the
/// ordinary way, as killed: children killed, messages refused, watchers and parent told, names
/// freed, counted as exited.
impl<A: Actor> Drop for Life<A> {
    fn drop(&mut self) {
        if !self.finished {
            // Its children would outlive it with nobody to supervise or stop them.
            self.ctx.kill_children();
            finalize(&self.cell, &mut self.rx, &self.ctx, ExitReason::Killed);
        }
    }
}

/// The actor's whole life, as one future. Written as a plain function returning an `async move`
/// block that borrows its captured state in place: an `async fn` taking `mut life` would keep two
/// copies of it in the future (rust-lang/rust#62958), which every idle actor would pay for.
///
/// The same goes for what the future keeps across its awaits: a `match` scrutinee lives to the
/// end of the `match`, so a value matched on before an await is written as a `let … else` whose
/// temporary ends with the statement (here the `Result` from `create`, and the next message in
/// the message loop). Together with `run_incarnation` written the same way, this took the future
/// of a small actor from 456 to 352 bytes; `size_probe` guards it.
pub(crate) fn run_actor<A: Actor>(life: Life<A>) -> impl Future<Output = ()> + Send {
    let mut life = life;
    async move {
        let life = &mut life;
        loop {
            let (ended, deferred) = 'incarnation: {
                let mut actor = match create(&mut life.recipe, life.cell.id) {
                    Ok(actor) => actor,
                    Err(reason) => break 'incarnation (Ended::Exit(reason), Deferred::new()),
                };
                let ended = run_incarnation(&mut actor, &mut life.ctx, &life.cell, &mut life.rx).await;
                // Everything after an incarnation is rare and slow: boxed, so it does not grow
                // every actor's future (its idle memory).
                Box::pin(wind_down(actor, ended, &mut life.ctx, &life.cell)).await
            };
            let next = Box::pin(after_incarnation(ended, &mut life.recipe, &life.ctx, &life.cell, deferred)).await;
            match next {
                Next::Restart => {
                    life.ctx.stop_requested = false;
                    life.cell.kill_requested.store(false, Ordering::SeqCst);
                    life.cell.mailbox.reopen();
                    tracing::debug!(actor = %life.cell.id, "actor restarting");
                }
                Next::Terminate(reason) => {
                    finalize(&life.cell, &mut life.rx, &life.ctx, reason);
                    life.finished = true;
                    return;
                }
            }
        }
    }
}

/// Ends an incarnation: stops the children, cancels timers, runs the `stopped` hook (unless
/// killed). A stop asked for meanwhile is remembered in the result; other system messages that
/// arrive meanwhile are returned with it, for [`after_incarnation`].
async fn wind_down<A: Actor>(
    mut actor: A,
    ended: Ended,
    ctx: &mut Context<A>,
    cell: &ActorCell<A::Msg>,
) -> (Ended, Deferred) {
    let killed_before = matches!(ended, Ended::Exit(ExitReason::Killed) | Ended::Stopping(ExitReason::Killed));
    let mut deferred = Deferred::new();
    let wound = stop_children(ctx, cell, killed_before, &mut deferred).await;
    ctx.cancel_timers();
    let ended = match wound.stop {
        Some(stop) => ended.stopping(stop),
        None => ended,
    };
    if wound.killed {
        let ended = match ended {
            Ended::Stopping(_) => Ended::Stopping(ExitReason::Killed),
            _ => Ended::Exit(ExitReason::Killed),
        };
        return (ended, deferred);
    }
    let reason = match &ended {
        Ended::Exit(reason) | Ended::Stopping(reason) => reason.clone(),
        Ended::RestartRequested => ExitReason::Shutdown,
    };
    let stopped = async {
        actor.stopped(&reason, ctx).await;
        Ok(())
    };
    let _ = guarded(stopped, &cell.kill_requested, &cell.id, Hook::Stopped).await;
    (ended, deferred)
}

fn create<A: Actor>(props: &mut Recipe<A>, id: ActorId) -> Result<A, ExitReason> {
    match catch_unwind(AssertUnwindSafe(|| props.create())) {
        Ok(Some(actor)) => Ok(actor),
        Ok(None) => Err(ExitReason::Failed("actor spawned from a value cannot be re-created".into())),
        Err(panic) => {
            let message = panic_message(&*panic);
            tracing::error!(actor = %id, "actor factory panicked: {message}");
            Err(ExitReason::Panicked(message))
        }
    }
}

/// One incarnation's message loop. A plain function returning an `async move` block, like
/// [`run_actor`]: an `async fn` would keep a second copy of its four reference arguments.
#[allow(clippy::manual_async_fn)] // on purpose, see above
fn run_incarnation<'a, A: Actor>(
    actor: &'a mut A,
    ctx: &'a mut Context<A>,
    cell: &'a ActorCell<A::Msg>,
    rx: &'a mut Receiver<A::Msg>,
) -> impl Future<Output = Ended> + Send + 'a {
    async move {
        // `started` and system messages are rare next to user messages: boxing them keeps every
        // actor's future (its idle memory) small.
        if let Err(reason) = Box::pin(guarded(actor.started(ctx), &cell.kill_requested, &cell.id, Hook::Started)).await
        {
            return Ended::Exit(reason);
        }
        // Set once a stop was requested: finish the accepted messages, then end with this reason.
        // Not boxed, though that would save 24 bytes: boxed, pingpong and ring ran 8-10% slower
        // (three A/B pairs on 2026-12-04), a layout effect not chased further.
        let mut draining: Option<ExitReason> = None;
        let mut budget = BUDGET;
        loop {
            while cell.mailbox.has_system() {
                let Some(msg) = cell.mailbox.pop_system() else { break };
                match Box::pin(handle_system(msg, actor, ctx, cell)).await {
                    Flow::Continue => {}
                    Flow::Drain(reason) => draining = Some(reason),
                    Flow::End(ended) => {
                        return match draining {
                            Some(stop) => ended.stopping(stop),
                            None => ended,
                        }
                    }
                }
            }
            if ctx.stop_requested {
                return Ended::Exit(ExitReason::Normal);
            }
            let Some(msg) = rx.next(&cell.mailbox, draining.is_none()) else {
                if let Some(reason) = draining.take() {
                    return Ended::Exit(reason);
                }
                if !cell.mailbox.has_system() {
                    // Woken by the next push or system message.
                    park().await;
                }
                budget = BUDGET;
                continue;
            };
            if let Err(reason) = guarded(actor.handle(msg, ctx), &cell.kill_requested, &cell.id, Hook::Handle).await {
                // A failure while draining after a stop ends the actor as the stop would have.
                return match draining {
                    Some(_) => Ended::Stopping(reason),
                    None => Ended::Exit(reason),
                };
            }
            budget -= 1;
            if budget == 0 {
                budget = BUDGET;
                YieldNow::new().await;
            }
        }
    }
}

enum Flow {
    Continue,
    Drain(ExitReason),
    End(Ended),
}

async fn handle_system<A: Actor>(
    msg: SystemMsg,
    actor: &mut A,
    ctx: &mut Context<A>,
    cell: &ActorCell<A::Msg>,
) -> Flow {
    match msg {
        SystemMsg::Stop => {
            cell.mailbox.close_for_senders();
            Flow::Drain(ExitReason::Normal)
        }
        SystemMsg::Shutdown => {
            cell.mailbox.close_for_senders();
            Flow::Drain(ExitReason::Shutdown)
        }
        SystemMsg::Kill => Flow::End(Ended::Exit(ExitReason::Killed)),
        SystemMsg::Down(down) => {
            match guarded(actor.on_down(down, ctx), &cell.kill_requested, &cell.id, Hook::OnDown).await {
                Ok(()) => Flow::Continue,
                Err(reason) => Flow::End(Ended::Exit(reason)),
            }
        }
        SystemMsg::LinkExit { from, reason } => {
            tracing::info!(actor = %cell.id, linked = %from, %reason, "linked actor failed");
            Flow::End(Ended::Exit(ExitReason::LinkFailed(from)))
        }
        SystemMsg::ChildFailed { child, reason } => {
            // The strategy is user code run outside any handler: its panic fails this supervisor
            // (which then stops its children and is supervised in turn).
            match catch_unwind(AssertUnwindSafe(|| actor.supervision())) {
                Ok(strategy) => supervise(strategy, ctx, child, reason),
                Err(panic) => {
                    let message = panic_message(&*panic);
                    tracing::error!(actor = %cell.id, "supervision strategy panicked: {message}");
                    child.0.send_system(SystemMsg::Terminate);
                    Flow::End(Ended::Exit(ExitReason::Panicked(message)))
                }
            }
        }
        SystemMsg::ChildTerminated { id } => {
            ctx.children.remove(&id);
            if let Some(history) = &mut ctx.restarts {
                history.forget_child(id);
            }
            Flow::Continue
        }
        SystemMsg::Adopt(child) => {
            ctx.children.insert(child.id(), child);
            Flow::Continue
        }
        SystemMsg::RestartNow => Flow::End(Ended::RestartRequested),
        // Directives only mean something to an actor waiting for one.
        SystemMsg::Restart { .. } | SystemMsg::Terminate => Flow::Continue,
    }
}

/// A child's incarnation ended and it asks what to do: apply the strategy.
fn supervise<A: Actor>(
    strategy: SupervisionStrategy,
    ctx: &mut Context<A>,
    child: UntypedRef,
    reason: ExitReason,
) -> Flow {
    if !ctx.children.contains_key(&child.id()) {
        child.0.send_system(SystemMsg::Terminate);
        return Flow::Continue;
    }
    let history = ctx.restarts.get_or_insert_with(Default::default);
    // The root guardian has nobody to give up to: giving up would stop every top-level actor and
    // leave those spawned later unsupervised, so it counts each one's restarts on its own and
    // stops for good only the one past its limit.
    let root = ctx.parent.is_none();
    let recorded = match root {
        true => history.record_child(child.id(), &strategy, Instant::now()),
        false => history.record(&strategy, Instant::now()),
    };
    let Some(recent) = recorded else {
        if root {
            tracing::error!(
                child = %child.id(), %reason,
                "restart intensity exceeded ({} in {:?}); the top-level actor stays stopped", strategy.max_restarts, strategy.within
            );
            child.0.send_system(SystemMsg::Terminate);
            return Flow::Continue;
        }
        tracing::error!(
            supervisor = %ctx.id(), child = %child.id(), %reason,
            "restart intensity exceeded ({} in {:?}); supervisor gives up", strategy.max_restarts, strategy.within
        );
        return Flow::End(Ended::Exit(ExitReason::RestartLimit));
    };
    let delay = strategy.backoff.delay(recent);
    tracing::info!(supervisor = %ctx.id(), child = %child.id(), %reason, ?delay, "restarting child");
    child.0.send_system(SystemMsg::Restart { delay });
    let siblings: Box<dyn Iterator<Item = &UntypedRef>> = match strategy.kind {
        StrategyKind::OneForOne => Box::new(std::iter::empty()),
        StrategyKind::OneForAll => Box::new(ctx.children.values()),
        StrategyKind::RestForOne => {
            Box::new(ctx.children.range((Bound::Excluded(child.id()), Bound::Unbounded)).map(|(_, c)| c))
        }
    };
    for sibling in siblings.filter(|s| s.id() != child.id()) {
        sibling.0.send_system(SystemMsg::RestartNow);
    }
    Flow::Continue
}

/// What happened while an incarnation's children stopped.
struct Wound {
    /// The actor was killed meanwhile (or before).
    killed: bool,
    /// A stop (`Normal`) or shutdown (`Shutdown`) was asked for meanwhile.
    stop: Option<ExitReason>,
}

/// Stops the children, last-spawned first, each before the next. System messages for the actor
/// that arrive meanwhile are not lost: a stop is remembered, a kill ends the waiting, the rest
/// are kept in `deferred`.
async fn stop_children<A: Actor>(
    ctx: &mut Context<A>,
    cell: &ActorCell<A::Msg>,
    kill: bool,
    deferred: &mut Deferred,
) -> Wound {
    let mut wound = Wound { killed: kill, stop: None };
    if kill {
        ctx.kill_children();
        return wound;
    }
    let grace = ctx.system.shared.config.child_shutdown_timeout;
    while let Some((_, child)) = ctx.children.pop_last() {
        child.0.send_system(SystemMsg::Shutdown);
        let mut deadline = Instant::now() + grace;
        let mut kill_sent = false;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match next_system_within(cell, left).await {
                Some(SystemMsg::ChildTerminated { id }) if id == child.id() => break,
                Some(SystemMsg::ChildTerminated { id }) => {
                    ctx.children.remove(&id);
                }
                Some(SystemMsg::ChildFailed { child: failed, .. }) => {
                    failed.0.send_system(SystemMsg::Terminate);
                }
                Some(SystemMsg::Adopt(orphan)) => {
                    orphan.0.send_system(SystemMsg::Shutdown);
                    ctx.children.insert(orphan.id(), orphan);
                }
                Some(SystemMsg::Kill) => {
                    child.kill();
                    ctx.kill_children();
                    wound.killed = true;
                    return wound;
                }
                Some(SystemMsg::Stop) => {
                    wound.stop.get_or_insert(ExitReason::Normal);
                }
                Some(SystemMsg::Shutdown) => wound.stop = Some(ExitReason::Shutdown),
                Some(msg @ (SystemMsg::Down(_) | SystemMsg::LinkExit { .. })) => deferred.push(msg),
                // The actor is being replaced or ending already; directives are for an actor
                // waiting for its supervisor's answer.
                Some(SystemMsg::RestartNow | SystemMsg::Restart { .. } | SystemMsg::Terminate) => {}
                None if !kill_sent => {
                    tracing::warn!(parent = %ctx.id(), child = %child.id(), "child did not stop within {grace:?}; killing it");
                    child.kill();
                    kill_sent = true;
                    deadline = Instant::now() + grace;
                }
                None => {
                    tracing::error!(parent = %ctx.id(), child = %child.id(), "child did not stop even when killed; abandoning it");
                    break;
                }
            }
        }
    }
    wound
}

/// Decides what follows an incarnation ([`decide`]); then `deferred` (system messages kept while
/// the incarnation wound down), and what was kept the same way while deciding, go back in front
/// of the system queue, for the next incarnation or for `finalize`.
// `props` is only read, but taken `&mut`: `&Recipe<A>` would be `Send` only for `Sync` actors,
// and the actor's future must be `Send`.
async fn after_incarnation<A: Actor>(
    ended: Ended,
    props: &mut Recipe<A>,
    ctx: &Context<A>,
    cell: &ActorCell<A::Msg>,
    mut deferred: Deferred,
) -> Next {
    let next = decide(ended, props, ctx, cell, &mut deferred).await;
    cell.mailbox.requeue_system(deferred);
    next
}

/// Restart or terminate: by the restart type, the reason and whether a stop was asked for, and,
/// for a restart after a failure, by the supervisor's answer (waiting out its backoff).
async fn decide<A: Actor>(
    ended: Ended,
    props: &mut Recipe<A>,
    ctx: &Context<A>,
    cell: &ActorCell<A::Msg>,
    deferred: &mut Deferred,
) -> Next {
    let (reason, stopping) = match ended {
        Ended::RestartRequested if props.restartable() => return Next::Restart,
        Ended::RestartRequested => return Next::Terminate(ExitReason::Shutdown),
        Ended::Exit(reason) => (reason, false),
        Ended::Stopping(reason) => (reason, true),
    };
    if reason == ExitReason::Shutdown || !props.wants_restart(stopping || reason.is_normal()) {
        return Next::Terminate(reason);
    }
    let Some(parent) = &ctx.parent else {
        return Next::Terminate(reason);
    };
    if reason == ExitReason::Killed {
        // A kill that ended a handler at an await point (see `Guarded`) left its message queued;
        // it must not count as a second kill while the supervisor decides on a restart.
        cell.mailbox.discard_system(|m| matches!(m, SystemMsg::Kill));
    }
    let asked = parent.0.send_system(SystemMsg::ChildFailed { child: ctx.untyped_me(), reason: reason.clone() });
    if !asked {
        return Next::Terminate(reason);
    }
    loop {
        match next_system_within(cell, Duration::MAX).await {
            Some(SystemMsg::Restart { delay }) => {
                return if wait_out(cell, delay, deferred).await { Next::Restart } else { Next::Terminate(reason) };
            }
            Some(SystemMsg::RestartNow) => return Next::Restart,
            Some(SystemMsg::Terminate | SystemMsg::Stop | SystemMsg::Shutdown) => return Next::Terminate(reason),
            Some(SystemMsg::Kill) => return Next::Terminate(ExitReason::Killed),
            Some(msg) => keep_between_incarnations(msg, deferred),
            None => {}
        }
    }
}

/// Waits `delay` before a restart. False when told to stop meanwhile.
async fn wait_out<M: Send + 'static>(cell: &ActorCell<M>, delay: Duration, deferred: &mut Deferred) -> bool {
    let deadline = Instant::now() + delay;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        match next_system_within(cell, left).await {
            None => return true,
            Some(SystemMsg::Terminate | SystemMsg::Stop | SystemMsg::Shutdown | SystemMsg::Kill) => return false,
            Some(SystemMsg::Restart { .. } | SystemMsg::RestartNow) => {}
            Some(msg) => keep_between_incarnations(msg, deferred),
        }
    }
}

/// A system message that reached an actor waiting for its supervisor. A child of the incarnation
/// that ended asking what to do is told to terminate (its parent stopped it and has no record of
/// it any more); everything else is kept for the next incarnation or `finalize`.
fn keep_between_incarnations(msg: SystemMsg, deferred: &mut Deferred) {
    match msg {
        SystemMsg::ChildFailed { child, .. } => {
            child.0.send_system(SystemMsg::Terminate);
        }
        other => deferred.push(other),
    }
}

/// The actor is gone for good: refuse messages, tell watchers and parent, free its names.
fn finalize<A: Actor>(cell: &ActorCell<A::Msg>, rx: &mut Receiver<A::Msg>, ctx: &Context<A>, reason: ExitReason) {
    let (queued, system_left) = cell.mailbox.close_and_drain();
    let undelivered = queued.len() + rx.drain().len();
    for msg in system_left {
        match msg {
            SystemMsg::ChildFailed { child, .. } => {
                child.0.send_system(SystemMsg::Terminate);
            }
            SystemMsg::Adopt(orphan) => orphan.kill(),
            _ => {}
        }
    }
    let (watchers, names) = cell.mark_exited(&reason);
    let system = &ctx.system.shared;
    system.actor_exited(undelivered as u64);
    system.registry.remove_names(&names, cell.id);
    if undelivered > 0 {
        tracing::debug!(actor = %cell.id, undelivered, "dropped messages of a stopped actor");
    }
    for watcher in watchers {
        notify_watcher(cell.id, watcher, &reason);
    }
    if let Some(parent) = &ctx.parent {
        parent.0.send_system(SystemMsg::ChildTerminated { id: cell.id });
    }
    tracing::debug!(actor = %cell.id, %reason, "actor stopped");
}

/// Which handler or hook a [`Guarded`] runs, for its log lines.
#[derive(Clone, Copy)]
enum Hook {
    Started,
    Handle,
    OnDown,
    Stopped,
}

impl Hook {
    fn name(self) -> &'static str {
        match self {
            Hook::Started => "started",
            Hook::Handle => "handle",
            Hook::OnDown => "on_down",
            Hook::Stopped => "stopped",
        }
    }
}

pin_project_lite::pin_project! {
    /// Runs a handler or hook, turning a panic or an error into an exit reason, and abandoning it
    /// at an await point if the actor is killed. A plain struct rather than an `async fn`, so it
    /// adds a few words to the handler's future instead of copying it (two pointers and a byte:
    /// it sits in every waiting actor's future).
    struct Guarded<'a, F> {
        #[pin]
        fut: F,
        kill: &'a AtomicBool,
        id: &'a ActorId,
        hook: Hook,
    }
}

fn guarded<'a, F>(fut: F, kill: &'a AtomicBool, id: &'a ActorId, hook: Hook) -> Guarded<'a, F>
where
    F: Future<Output = ActorResult>,
{
    Guarded { fut, kill, id, hook }
}

impl<F: Future<Output = ActorResult>> Future for Guarded<'_, F> {
    type Output = Result<(), ExitReason>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let (id, hook) = (*this.id, *this.hook);
        let fut = this.fut;
        match catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(Poll::Ready(Ok(()))) => Poll::Ready(Ok(())),
            Ok(Poll::Ready(Err(error))) => {
                let what = hook.name();
                tracing::warn!(actor = %id, "{what} failed: {error}");
                Poll::Ready(Err(ExitReason::Failed(error.to_string())))
            }
            Ok(Poll::Pending) if this.kill.load(Ordering::Acquire) => Poll::Ready(Err(ExitReason::Killed)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(panic) => {
                let message = panic_message(&*panic);
                let what = hook.name();
                tracing::error!(actor = %id, "{what} panicked: {message}");
                Poll::Ready(Err(ExitReason::Panicked(message)))
            }
        }
    }
}

/// The text of a caught panic.
pub(crate) fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}

/// Returns `Pending` once without arranging a wake-up: the actor's next message or system
/// message wakes its task.
async fn park() {
    let mut parked = false;
    poll_fn(|_| {
        if parked {
            Poll::Ready(())
        } else {
            parked = true;
            Poll::Pending
        }
    })
    .await
}

/// The next system message, or `None` if none arrives within `limit`.
async fn next_system_within<M: Send + 'static>(cell: &ActorCell<M>, limit: Duration) -> Option<SystemMsg> {
    let wait_for_message = poll_fn(|_| match cell.mailbox.pop_system() {
        Some(msg) => Poll::Ready(msg),
        // Every system message wakes the actor.
        None => Poll::Pending,
    });
    if limit == Duration::MAX {
        return Some(wait_for_message.await);
    }
    crate::time::timeout(crate::time::Clock::System(&cell.system), limit, wait_for_message).await
}
