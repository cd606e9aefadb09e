//! The [`Actor`] trait.

use std::future::Future;

use crate::context::Context;
use crate::error::ActorResult;
use crate::exit::{Down, ExitReason};
use crate::message::Message;
use crate::supervision::SupervisionStrategy;

/// An actor: private state plus a handler for one message type.
///
/// Handlers run one message at a time; they may be `async` and await I/O or other actors'
/// replies without blocking other actors (the actor's later messages wait until the handler
/// returns). An error or a panic in a handler or hook fails the actor; its parent's
/// [`SupervisionStrategy`] decides what happens next.
///
/// ```
/// use troupe_actor::{Actor, ActorResult, Context, Message, Reply};
///
/// struct Counter(u64);
/// enum CounterMsg { Add(u64), Get(Reply<u64>) }
/// impl Message for CounterMsg {}
///
/// impl Actor for Counter {
///     type Msg = CounterMsg;
///     async fn handle(&mut self, msg: CounterMsg, _ctx: &mut Context<Self>) -> ActorResult {
///         match msg {
///             CounterMsg::Add(n) => self.0 += n,
///             CounterMsg::Get(reply) => { reply.send(self.0); }
///         }
///         Ok(())
///     }
/// }
/// ```
pub trait Actor: Send + Sized + 'static {
    /// The messages this actor handles (usually an enum).
    type Msg: Message;

    /// Runs before the first message of each incarnation (after spawn and after each restart).
    fn started(&mut self, ctx: &mut Context<Self>) -> impl Future<Output = ActorResult> + Send {
        let _ = ctx;
        async { Ok(()) }
    }

    /// Handles one message.
    fn handle(&mut self, msg: Self::Msg, ctx: &mut Context<Self>) -> impl Future<Output = ActorResult> + Send;

    /// Runs when an actor watched with [`Context::watch`] stops. The default ignores it.
    fn on_down(&mut self, down: Down, ctx: &mut Context<Self>) -> impl Future<Output = ActorResult> + Send {
        let _ = (down, ctx);
        async { Ok(()) }
    }

    /// Runs when an incarnation ends (stop, failure, restart, shutdown), after its children have
    /// stopped. Not run when the actor is killed.
    fn stopped(&mut self, reason: &ExitReason, ctx: &mut Context<Self>) -> impl Future<Output = ()> + Send {
        let _ = (reason, ctx);
        async {}
    }

    /// How this actor supervises its children. Read at the start of each incarnation.
    fn supervision(&self) -> SupervisionStrategy {
        SupervisionStrategy::default()
    }
}
