//! troupe's local actor runtime.
//!
//! Actors with typed messages and typed replies, bounded mailboxes with backpressure, a
//! work-stealing scheduler that runs a woken actor on the waking core, supervision trees with
//! Erlang's strategies, links and monitors, timers, and a named registry.
//!
//! ```
//! use troupe_actor::{Actor, ActorResult, ActorSystem, Context, Message, Reply};
//!
//! struct Counter(u64);
//! enum CounterMsg { Add(u64), Get(Reply<u64>) }
//! impl Message for CounterMsg {}
//!
//! impl Actor for Counter {
//!     type Msg = CounterMsg;
//!     async fn handle(&mut self, msg: CounterMsg, _ctx: &mut Context<Self>) -> ActorResult {
//!         match msg {
//!             CounterMsg::Add(n) => self.0 += n,
//!             CounterMsg::Get(reply) => { reply.send(self.0); }
//!         }
//!         Ok(())
//!     }
//! }
//!
//! let system = ActorSystem::new().unwrap();
//! system.block_on(async {
//!     let counter = system.spawn(Counter(0));
//!     counter.tell(CounterMsg::Add(2)).await.unwrap();
//!     assert_eq!(counter.ask(CounterMsg::Get).await.unwrap(), 2);
//!     system.shutdown().await;
//! });
//! ```
#![deny(missing_docs)]

mod actor;
mod cell;
mod context;
mod error;
mod exit;
mod id;
mod lock;
mod mailbox;
mod message;
mod panic_hook;
mod payload;
mod props;
mod rare_list;
mod reference;
mod registry;
mod remote;
mod reply;
mod runner;
mod sched;
mod supervision;
mod system;
mod system_msg;
mod time;

pub use actor::Actor;
pub use context::{Context, TimerHandle};
pub use error::{ActorResult, AskError, BoxError, RegistryError, SendError, SendFailure, SystemError, TrySendError};
pub use exit::{Down, ExitReason};
pub use id::{ActorId, NodeId};
pub use message::Message;
pub use panic_hook::quiet_actor_panics;
pub use payload::{Payload, ATTACH_MIN, INLINE_MAX};
pub use props::{Props, Restart};
pub use reference::{ActorRef, Tell, UntypedRef};
pub use remote::{
    decode_body, inbound, type_tag, with_codec_context, BodyEncoder, DeliverLater, Delivery, FlushRest, Flushed,
    Inbound, InboundBatch, PendingReply, Refusal, RemoteControl, RemoteMessage, RemoteProxy, ReplyOutcome, SendOptions,
    Transport,
};
pub use reply::Reply;
pub use sched::{collect_wakeups, StagePool, Woken};
pub use supervision::{Backoff, StrategyKind, SupervisionStrategy};
pub use system::{ActorSystem, SystemBuilder, SystemConfig, SystemStats};

/// The names most programs need.
pub mod prelude {
    pub use crate::{
        Actor, ActorRef, ActorResult, ActorSystem, Context, Down, ExitReason, Message, Payload, Props, Reply, Restart,
        SupervisionStrategy,
    };
}
mod size_probe;
