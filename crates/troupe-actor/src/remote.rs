//! The seam between local actors and the network.
//!
//! The actor runtime knows nothing of sockets. A transport (troupe-net's `Node`) implements
//! [`Transport`]; this module gives it what it needs to make [`ActorRef`] location transparent:
//!
//! - [`RemoteMessage`]: a message type that can cross the network, with a stable name whose
//!   [`type_tag`] travels in every envelope so the receiver can check what it decodes.
//! - [`RemoteProxy`]: the local stand-in for an actor on another node. Remote refs share one
//!   proxy per actor; watching a remote actor registers with the proxy, which asks the actor's
//!   node to report the exit, and the transport calls [`RemoteProxy::exited`] when the Down
//!   arrives or the node is lost.
//! - [`Inbound`]: a local actor exported to the network, decoding and delivering message bodies.
//! - A codec context: while the transport encodes or decodes a message body inside
//!   [`with_codec_context`], the `ActorRef`s and [`Reply`](crate::Reply) ports inside it
//!   serialize to wire names and resolve on arrival.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context as TaskContext, Poll};
use std::time::Instant;

use bytes::Bytes;
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::cell::{CellControl, Lifecycle, Watcher};
use crate::error::{SendFailure, TrySendError};
use crate::exit::ExitReason;
use crate::id::{ActorId, NodeId};
use crate::message::Message;
use crate::reference::{ActorRef, UntypedRef};
use crate::system_msg::SystemMsg;

/// A message type that can cross the network.
///
/// `TYPE_NAME` must be the same on every node and unique among the message types of a cluster;
/// a hash of it ([`type_tag`]) travels with every message so a receiver never decodes bytes as
/// the wrong type.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use troupe_actor::{Message, RemoteMessage};
///
/// #[derive(Serialize, Deserialize)]
/// enum Ping { Ping(u64) }
/// impl Message for Ping {}
/// impl RemoteMessage for Ping { const TYPE_NAME: &'static str = "example.Ping"; }
/// ```
pub trait RemoteMessage: Message + Serialize + DeserializeOwned {
    /// The stable, cluster-wide name of the type.
    const TYPE_NAME: &'static str;
}

macro_rules! remote_primitives {
    ($($t:ty),*) => { $(impl RemoteMessage for $t { const TYPE_NAME: &'static str = stringify!($t); })* };
}
remote_primitives!((), bool, char, u8, u16, u32, u64, u128, i8, i16, i32, i64, i128, f32, f64, String);

/// The stable 64-bit tag of a type name (FNV-1a 64 over its UTF-8 bytes), as carried in message
/// envelopes.
///
/// ```
/// const TAG: u64 = troupe_actor::type_tag("");
/// assert_eq!(TAG, 0xcbf2_9ce4_8422_2325);
/// assert_eq!(troupe_actor::type_tag("foobar"), 0x8594_4171_f739_67e8);
/// assert_ne!(troupe_actor::type_tag("Ping"), troupe_actor::type_tag("Pong"));
/// ```
pub const fn type_tag(name: &str) -> u64 {
    let bytes = name.as_bytes();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}

/// How a message travels to a remote actor. Ignored for local actors.
///
/// Build it with the methods and attach it to a ref with
/// [`ActorRef::with_options`](crate::ActorRef::with_options).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct SendOptions {
    /// The named channel (None: the default channel).
    pub channel: Option<Arc<str>>,
    /// Picks the connection within the channel (None: derived from the target actor, which keeps
    /// messages from one sender to one actor in order).
    pub partition_key: Option<u64>,
    /// Acknowledged delivery: retransmitted across connection loss until the receiving node
    /// confirms it, and delivered once.
    pub ack: bool,
}

impl SendOptions {
    /// The defaults: default channel, key from the target, at-most-once.
    pub fn new() -> Self {
        SendOptions::default()
    }

    /// Sends on the named channel.
    pub fn channel(mut self, name: &str) -> Self {
        self.channel = Some(Arc::from(name));
        self
    }

    /// Sends with an explicit partition key.
    pub fn partition_key(mut self, key: u64) -> Self {
        self.partition_key = Some(key);
        self
    }

    /// Asks for acknowledged delivery.
    pub fn ack(mut self) -> Self {
        self.ack = true;
        self
    }
}

/// A request about a remote actor other than a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteControl {
    /// Stop it after its queued messages.
    Stop,
    /// Kill it.
    Kill,
    /// Report its exit to this node.
    Watch,
    /// The local actor `from` linked itself to it: its node makes it fail when `from` fails or
    /// this node is lost (the node calls [`RemoteProxy::accept_link`]).
    Link {
        /// The local actor.
        from: ActorId,
    },
    /// The local actor `from` removed its link to it ([`RemoteProxy::drop_link`] there).
    Unlink {
        /// The local actor.
        from: ActorId,
    },
}

/// Appends a message body to the transport's buffer, and the large [`Payload`](crate::Payload)s
/// it carries to the list of attachments (which the transport sends after the body, uncopied).
pub type BodyEncoder<'a> = &'a mut dyn FnMut(&mut Vec<u8>, &mut Vec<Bytes>) -> Result<(), SendFailure>;

/// Why a transport did not take a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The send queue is full; wait with [`Transport::poll_ready`] and retry.
    Full,
    /// The message cannot be sent.
    Failed(SendFailure),
}

/// Outcome of a reply that came back over the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyOutcome {
    /// The body holds the answer.
    Answered,
    /// The replier dropped the reply port, failed to decode the request, or its node was lost.
    NoReply,
}

/// A pending `ask` waiting for a reply from the network.
pub trait PendingReply: Send + 'static {
    /// True when the asker no longer waits (the entry can be dropped).
    fn is_closed(&self) -> bool;
    /// Completes the ask with the reply's body and its attached payloads. Called inside a codec
    /// context for the replying node.
    fn complete(self: Box<Self>, outcome: ReplyOutcome, body: &[u8], attached: Option<Bytes>);
    /// The deadline given with [`Transport::register_reply`] passed: the asker hears that its
    /// ask timed out. (By default it is dropped, and the asker hears there is no answer.)
    fn expire(self: Box<Self>) {}
}

/// What the actor runtime needs from a network transport.
pub trait Transport: Send + Sync + 'static {
    /// This node's id.
    fn local_node(&self) -> NodeId;

    /// Queues a message for `target`; `body` appends its encoded body.
    fn try_send(&self, target: ActorId, opts: &SendOptions, tag: u64, body: BodyEncoder<'_>) -> Result<(), Refusal>;

    /// Ready when a send to `target` with `opts` may be accepted; registers the waker otherwise.
    fn poll_ready(
        &self,
        target: ActorId,
        opts: &SendOptions,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Result<(), SendFailure>>;

    /// Sends a control request about a remote actor.
    fn control(&self, target: ActorId, control: RemoteControl);

    /// Makes a local actor reachable from the network (idempotent).
    fn export(&self, actor: Arc<dyn Inbound>);

    /// The one proxy for the remote actor `id`.
    fn proxy(&self, id: ActorId) -> Arc<RemoteProxy>;

    /// The exported local actor with this serial, if any.
    fn local_actor(&self, serial: u64) -> Option<UntypedRef>;

    /// Registers a pending ask whose request travels to `to`; returns the request number. With
    /// a `deadline`, the transport times the ask: it must [expire](PendingReply::expire) the
    /// entry once the deadline has passed (the asker arms no timer of its own), and complete it
    /// (with `NoReply`) when it stops.
    fn register_reply(&self, to: NodeId, pending: Box<dyn PendingReply>, deadline: Option<Instant>) -> u64;

    /// Tells node `to` that the local actor `actor` ended with `reason` (an actor there is linked
    /// to it; the node handles it as the exit of a watched actor).
    fn report_exit(&self, to: NodeId, actor: ActorId, reason: &ExitReason);

    /// Sends the answer to request `request` of node `to`. False when it cannot be sent.
    fn send_reply(&self, to: NodeId, request: u64, outcome: ReplyOutcome, body: BodyEncoder<'_>) -> bool;

    /// The local actor system: it times asks to remote actors.
    fn system(&self) -> &crate::ActorSystem;
}

// ---------------------------------------------------------------------------------------------
// Codec context

#[derive(Clone)]
struct CodecContext {
    transport: Arc<dyn Transport>,
    peer: NodeId,
}

/// A thread's codec context. The last one used stays here, inactive, when its scope ends: the
/// next scope for the same transport and peer (nearly every scope, on a node's threads) only
/// flips `active`, with no reference count touched. The transport is held weakly so a stopped
/// node is not kept alive by a thread that once coded for it; the weak reference also keeps
/// its allocation, so an equal address always means the same transport.
struct CodecState {
    transport: Option<Weak<dyn Transport>>,
    peer: NodeId,
    active: bool,
}

impl CodecState {
    fn is(&self, transport: &Arc<dyn Transport>, peer: NodeId) -> bool {
        self.peer == peer
            && self.transport.as_ref().is_some_and(|w| std::ptr::addr_eq(w.as_ptr(), Arc::as_ptr(transport)))
    }
}

thread_local! {
    static CODEC: RefCell<CodecState> =
        const { RefCell::new(CodecState { transport: None, peer: NodeId(0), active: false }) };
}

/// What a scope puts back when it ends.
enum Restore {
    /// The scope activated the sticky context: deactivate it.
    Deactivate,
    /// The same context was already active (a nested scope): nothing.
    Keep,
    /// The scope replaced an active context: put it back.
    Previous(CodecState),
}

/// Undoes a scope's [`Restore`] when the scope ends, unwinding included.
struct RestoreGuard(Restore);

impl Drop for RestoreGuard {
    fn drop(&mut self) {
        match std::mem::replace(&mut self.0, Restore::Keep) {
            Restore::Keep => {}
            Restore::Deactivate => CODEC.with(|c| c.borrow_mut().active = false),
            Restore::Previous(previous) => CODEC.with(|c| *c.borrow_mut() = previous),
        }
    }
}

/// Runs `f` with `transport` as the codec context for messages exchanged with node `peer`:
/// refs and reply ports serialized or deserialized inside `f` use it.
pub fn with_codec_context<R>(transport: &Arc<dyn Transport>, peer: NodeId, f: impl FnOnce() -> R) -> R {
    let restore = CODEC.with(|c| {
        let mut state = c.borrow_mut();
        if state.is(transport, peer) {
            return if std::mem::replace(&mut state.active, true) { Restore::Keep } else { Restore::Deactivate };
        }
        let mine = CodecState { transport: Some(Arc::downgrade(transport)), peer, active: true };
        let previous = std::mem::replace(&mut *state, mine);
        // An inactive context needs no restoring: the new one stays behind instead.
        if previous.active {
            Restore::Previous(previous)
        } else {
            Restore::Deactivate
        }
    });
    let _restore = RestoreGuard(restore);
    f()
}

fn current_context() -> Option<CodecContext> {
    CODEC.with(|c| {
        let state = c.borrow();
        if !state.active {
            return None;
        }
        let transport = state.transport.as_ref()?.upgrade()?;
        Some(CodecContext { transport, peer: state.peer })
    })
}

/// Encodes a message body with postcard; large payloads go to `attached` instead of `out`.
pub(crate) fn encode_body<T: Serialize>(
    value: &T,
    out: &mut Vec<u8>,
    attached: &mut Vec<Bytes>,
) -> Result<(), SendFailure> {
    crate::payload::collecting_attachments(attached, || postcard::to_io(value, out))
        .map(|_| ())
        .map_err(|e| SendFailure::Encode(e.to_string()))
}

/// Decodes a message body with postcard, taking attached payloads from `attached` (the bytes a
/// frame carries after the body). Trailing or unclaimed bytes are an error.
pub fn decode_body<T: DeserializeOwned>(body: &[u8], attached: Option<Bytes>) -> Result<T, String> {
    crate::payload::with_attachments(attached, || match postcard::take_from_bytes::<T>(body) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(format!("{} trailing bytes", rest.len())),
        Err(e) => Err(e.to_string()),
    })
}

// ---------------------------------------------------------------------------------------------
// Wire names of refs and reply ports

#[derive(Serialize, Deserialize)]
struct WireRef {
    node: u64,
    serial: u64,
}

impl<M: RemoteMessage> Serialize for ActorRef<M> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let id = self.id();
        if let (Some(context), Some(local)) = (current_context(), self.local_ref()) {
            context.transport.export(Arc::new(Exported(local)));
        }
        WireRef { node: id.node.0, serial: id.serial }.serialize(serializer)
    }
}

impl<'de, M: RemoteMessage> Deserialize<'de> for ActorRef<M> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let wire = WireRef::deserialize(deserializer)?;
        let id = ActorId { node: NodeId(wire.node), serial: wire.serial };
        let context = current_context().ok_or_else(|| D::Error::custom("actor refs decode only inside a node"))?;
        if id.node == context.transport.local_node() {
            if let Some(local) = context.transport.local_actor(id.serial) {
                return local.downcast::<M>().ok_or_else(|| {
                    D::Error::custom(format!("actor {id} takes {}, not {}", local.message_type(), M::TYPE_NAME))
                });
            }
        }
        Ok(ActorRef::remote(context.transport.proxy(id), SendOptions::default()))
    }
}

#[derive(Serialize, Deserialize)]
pub(crate) struct WireReply {
    pub(crate) node: u64,
    pub(crate) request: u64,
}

/// The current codec context, for reply ports.
pub(crate) fn reply_context() -> Option<(Arc<dyn Transport>, NodeId)> {
    current_context().map(|c| (c.transport, c.peer))
}

// ---------------------------------------------------------------------------------------------
// Exported local actors

/// What became of a message body handed to an exported actor.
pub enum Delivery {
    /// In the mailbox.
    Accepted,
    /// The mailbox is full: await this to deliver with backpressure (it yields 1 when
    /// delivered, 0 when the actor stopped meanwhile).
    Full(DeliverLater),
    /// The actor no longer accepts messages.
    Closed,
}

/// Messages that did not fit in a full mailbox, being delivered with backpressure, in order;
/// yields how many were delivered (fewer when the actor stopped meanwhile).
pub type DeliverLater = Pin<Box<dyn Future<Output = u64> + Send>>;

/// Delivers `messages` to `actor` in order, waiting for room (see [`DeliverLater`]).
fn deliver_later<M: Message, I>(actor: ActorRef<M>, messages: I) -> DeliverLater
where
    I: IntoIterator<Item = M> + Send + 'static,
    I::IntoIter: Send,
{
    Box::pin(async move {
        let mut delivered = 0;
        for message in messages {
            if actor.tell(message).await.is_err() {
                break;
            }
            delivered += 1;
        }
        delivered
    })
}

/// What [`InboundBatch::flush`] did with the messages it held.
pub struct Flushed {
    /// Messages that went into the mailbox.
    pub accepted: u64,
    /// What became of the rest, if any was left.
    pub rest: Option<FlushRest>,
}

/// The messages of a batch that did not fit in the mailbox at once.
pub enum FlushRest {
    /// The mailbox is full: await this to deliver them, in order, with backpressure; it yields
    /// how many were delivered of `count`.
    Full {
        /// Delivers the rest.
        wait: DeliverLater,
        /// How many messages it holds.
        count: u64,
    },
    /// The actor no longer accepts messages: this many were dropped.
    Closed(u64),
}

/// A local actor reachable from the network.
pub trait Inbound: Send + Sync + 'static {
    /// The actor.
    fn id(&self) -> ActorId;
    /// The tag of the message type it takes.
    fn type_tag(&self) -> u64;
    /// The name of the message type it takes.
    fn type_name(&self) -> &'static str;
    /// Decodes a body and its attached payloads (inside a codec context) and delivers it.
    fn deliver(&self, body: &[u8], attached: Option<Bytes>) -> Result<Delivery, String>;
    /// The untyped ref, for control requests and watches.
    fn untyped(&self) -> UntypedRef;
    /// An empty batch of messages for this actor: a network reader decodes consecutive messages
    /// for one actor into it and hands them to the mailbox together ([`InboundBatch::flush`]), one
    /// lock and at most one wake-up for the lot.
    fn batch(&self) -> Box<dyn InboundBatch>;
}

/// Messages for one exported actor, decoded and waiting to be handed over together.
pub trait InboundBatch: Send {
    /// Decodes a body and its attached payloads (inside a codec context) and queues it behind
    /// the others.
    fn add(&mut self, body: &[u8], attached: Option<Bytes>) -> Result<(), String>;
    /// True when no message is queued.
    fn is_empty(&self) -> bool;
    /// Hands the queued messages to the mailbox, in order, as many as fit at once; the rest are
    /// returned as a future that delivers them with backpressure (or counted as dropped when the
    /// actor is gone). Leaves the batch empty.
    fn flush(&mut self) -> Flushed;
}

/// Makes `actor` an [`Inbound`] (what [`Transport::export`] receives).
pub fn inbound<M: RemoteMessage>(actor: ActorRef<M>) -> Arc<dyn Inbound> {
    Arc::new(Exported(actor))
}

struct Exported<M>(ActorRef<M>);

impl<M: RemoteMessage> Inbound for Exported<M> {
    fn id(&self) -> ActorId {
        self.0.id()
    }

    fn type_tag(&self) -> u64 {
        const { type_tag(M::TYPE_NAME) }
    }

    fn type_name(&self) -> &'static str {
        M::TYPE_NAME
    }

    fn deliver(&self, body: &[u8], attached: Option<Bytes>) -> Result<Delivery, String> {
        let message: M = decode_body(body, attached)?;
        Ok(match self.0.try_tell(message) {
            Ok(()) => Delivery::Accepted,
            Err(TrySendError::Full { message, .. }) => Delivery::Full(deliver_later(self.0.clone(), [message])),
            Err(_) => Delivery::Closed,
        })
    }

    fn untyped(&self) -> UntypedRef {
        self.0.untyped()
    }

    fn batch(&self) -> Box<dyn InboundBatch> {
        Box::new(ExportedBatch { actor: self.0.clone(), queued: std::collections::VecDeque::new() })
    }
}

struct ExportedBatch<M> {
    actor: ActorRef<M>,
    queued: std::collections::VecDeque<M>,
}

impl<M: RemoteMessage> InboundBatch for ExportedBatch<M> {
    fn add(&mut self, body: &[u8], attached: Option<Bytes>) -> Result<(), String> {
        self.queued.push_back(decode_body(body, attached)?);
        Ok(())
    }

    fn is_empty(&self) -> bool {
        self.queued.is_empty()
    }

    fn flush(&mut self) -> Flushed {
        let queued = self.queued.len() as u64;
        if queued == 0 {
            return Flushed { accepted: 0, rest: None };
        }
        let result = self.actor.try_tell_many(&mut self.queued);
        let count = self.queued.len() as u64;
        let rest = match result {
            Err(crate::mailbox::Refused::Closed) => {
                self.queued.clear();
                Some(FlushRest::Closed(count))
            }
            _ if count == 0 => None,
            _ => {
                let wait = deliver_later(self.actor.clone(), std::mem::take(&mut self.queued));
                Some(FlushRest::Full { wait, count })
            }
        };
        Flushed { accepted: queued - count, rest }
    }
}

// ---------------------------------------------------------------------------------------------
// Remote proxies

/// The local stand-in for an actor on another node: where its watchers wait.
pub struct RemoteProxy {
    id: ActorId,
    transport: Arc<dyn Transport>,
    life: Mutex<Lifecycle>,
    watch_requested: AtomicBool,
    /// Set with the exit: sends to a known-dead actor fail at once.
    gone: AtomicBool,
}

impl RemoteProxy {
    /// A proxy for remote actor `id` reached through `transport`.
    pub fn new(id: ActorId, transport: Arc<dyn Transport>) -> Arc<RemoteProxy> {
        Arc::new(RemoteProxy {
            id,
            transport,
            life: Mutex::new(Lifecycle::default()),
            watch_requested: AtomicBool::new(false),
            gone: AtomicBool::new(false),
        })
    }

    /// The remote actor.
    pub fn id(&self) -> ActorId {
        self.id
    }

    /// The transport that reaches it.
    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.transport
    }

    /// True once the actor is known to be gone.
    pub fn has_exited(&self) -> bool {
        self.gone.load(Ordering::Acquire)
    }

    /// Records that the remote actor is gone and tells its watchers (once; later calls do nothing).
    pub fn exited(&self, reason: ExitReason) {
        if self.gone.swap(true, Ordering::AcqRel) {
            return;
        }
        let (watchers, _) = self.mark_exited(&reason);
        for watcher in watchers {
            crate::cell::notify_watcher(self.id, watcher, &reason);
        }
    }

    /// Why the actor is gone, once it is known to be.
    pub fn exit_reason(&self) -> Option<ExitReason> {
        self.life.lock().exit.as_deref().cloned()
    }

    /// Links the local actor `local` to this remote actor, on request of the remote actor's node
    /// ([`RemoteControl::Link`] there): `local` fails when the remote actor fails or its node is
    /// lost, and the remote node hears of `local`'s exit. No watch is requested: the remote node
    /// reports the remote actor's exit because of its own half of the link.
    pub fn accept_link(self: &Arc<Self>, local: &UntypedRef) {
        if self.queue_watcher(Watcher::Link(local.0.clone())) {
            local.0.add_watcher(Watcher::Link(self.clone()));
        }
    }

    /// Removes a link made by [`accept_link`](Self::accept_link).
    pub fn drop_link(&self, local: &UntypedRef) {
        self.remove_link(local.id());
        local.0.remove_link(self.id);
    }

    /// Asks the remote actor's node to link it to the local actor `from` (see
    /// [`accept_link`](Self::accept_link)).
    pub(crate) fn request_link(&self, from: ActorId) {
        self.transport.control(self.id, RemoteControl::Link { from });
    }

    /// Asks the remote actor's node to remove its half of the link to the local actor `from`.
    pub(crate) fn request_unlink(&self, from: ActorId) {
        self.transport.control(self.id, RemoteControl::Unlink { from });
    }
}

impl CellControl for RemoteProxy {
    fn id(&self) -> ActorId {
        self.id
    }

    fn send_system(&self, msg: SystemMsg) -> bool {
        match msg {
            SystemMsg::Stop => self.transport.control(self.id, RemoteControl::Stop),
            SystemMsg::Kill => self.transport.control(self.id, RemoteControl::Kill),
            // Exits of linked local actors travel through `link_ended`; other system messages
            // mean nothing to a remote actor.
            _ => return false,
        }
        !self.has_exited()
    }

    fn lifecycle(&self) -> &Mutex<Lifecycle> {
        &self.life
    }

    fn kill(&self) {
        self.transport.control(self.id, RemoteControl::Kill);
    }

    fn message_type(&self) -> &'static str {
        "<remote>"
    }

    fn is_gone(&self) -> bool {
        self.has_exited()
    }

    fn as_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync> {
        self
    }

    fn watcher_added(&self) {
        if !self.watch_requested.swap(true, Ordering::AcqRel) {
            self.transport.control(self.id, RemoteControl::Watch);
        }
    }

    fn link_ended(&self, from: ActorId, reason: &ExitReason) {
        // The local actor `from` is linked to the remote one: its node hears of the exit, normal
        // or not (a normal exit ends the link there).
        self.transport.report_exit(self.id.node, from, reason);
    }
}

/// Encodes a message body: postcard into the buffer, large payloads into the attachment list.
type EncodeFn<M> = fn(&M, &mut Vec<u8>, &mut Vec<Bytes>) -> Result<(), SendFailure>;

/// The remote half of an [`ActorRef`]: the proxy, the send options and the body encoder.
pub(crate) struct RemoteTarget<M> {
    pub(crate) proxy: Arc<RemoteProxy>,
    pub(crate) opts: SendOptions,
    pub(crate) tag: u64,
    pub(crate) encode: EncodeFn<M>,
}

impl<M: RemoteMessage> RemoteTarget<M> {
    pub(crate) fn new(proxy: Arc<RemoteProxy>, opts: SendOptions) -> Self {
        RemoteTarget { proxy, opts, tag: const { type_tag(M::TYPE_NAME) }, encode: encode_body::<M> }
    }
}

impl<M> RemoteTarget<M> {
    /// Hands `msg` to the transport without waiting.
    pub(crate) fn try_send(&self, msg: &M) -> Result<(), Refusal> {
        if self.proxy.has_exited() {
            return Err(Refusal::Failed(SendFailure::NotRunning));
        }
        let transport = &self.proxy.transport;
        let encode = self.encode;
        with_codec_context(transport, self.proxy.id.node, || {
            transport.try_send(self.proxy.id, &self.opts, self.tag, &mut |out, attached| encode(msg, out, attached))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A transport that only has an identity: enough to test codec-context scoping.
    struct Named(u64);

    impl Transport for Named {
        fn local_node(&self) -> NodeId {
            NodeId(self.0)
        }
        fn try_send(&self, _: ActorId, _: &SendOptions, _: u64, _: BodyEncoder<'_>) -> Result<(), Refusal> {
            Err(Refusal::Failed(SendFailure::NotRunning))
        }
        fn poll_ready(&self, _: ActorId, _: &SendOptions, _: &mut TaskContext<'_>) -> Poll<Result<(), SendFailure>> {
            Poll::Ready(Err(SendFailure::NotRunning))
        }
        fn control(&self, _: ActorId, _: RemoteControl) {}
        fn report_exit(&self, _: NodeId, _: ActorId, _: &ExitReason) {}
        fn export(&self, _: Arc<dyn Inbound>) {}
        fn proxy(&self, id: ActorId) -> Arc<RemoteProxy> {
            RemoteProxy::new(id, Arc::new(Named(self.0)))
        }
        fn local_actor(&self, _: u64) -> Option<UntypedRef> {
            None
        }
        fn register_reply(&self, _: NodeId, _: Box<dyn PendingReply>, _: Option<Instant>) -> u64 {
            0
        }
        fn send_reply(&self, _: NodeId, _: u64, _: ReplyOutcome, _: BodyEncoder<'_>) -> bool {
            false
        }
        fn system(&self) -> &crate::ActorSystem {
            unreachable!("the codec-context tests do not ask")
        }
    }

    fn current() -> Option<(u64, NodeId)> {
        reply_context().map(|(t, peer)| (t.local_node().0, peer))
    }

    #[test]
    fn codec_context_is_scoped_nested_and_sticky_only_while_inactive() {
        let a: Arc<dyn Transport> = Arc::new(Named(1));
        let b: Arc<dyn Transport> = Arc::new(Named(2));
        assert_eq!(current(), None, "no context outside a scope");
        with_codec_context(&a, NodeId(10), || {
            assert_eq!(current(), Some((1, NodeId(10))));
            with_codec_context(&b, NodeId(20), || assert_eq!(current(), Some((2, NodeId(20)))));
            assert_eq!(current(), Some((1, NodeId(10))), "the outer context is back");
            with_codec_context(&a, NodeId(11), || assert_eq!(current(), Some((1, NodeId(11)))));
            assert_eq!(current(), Some((1, NodeId(10))), "another peer of the same transport is undone too");
            with_codec_context(&a, NodeId(10), || assert_eq!(current(), Some((1, NodeId(10)))));
            assert_eq!(current(), Some((1, NodeId(10))), "a nested equal scope leaves it active");
        });
        assert_eq!(current(), None, "the sticky context is inactive after its scope");
        with_codec_context(&b, NodeId(20), || assert_eq!(current(), Some((2, NodeId(20)))));
        assert_eq!(current(), None);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            with_codec_context(&a, NodeId(10), || panic!("in the scope"))
        }));
        assert!(result.is_err());
        assert_eq!(current(), None, "unwinding ends the scope");
    }

    #[tokio::test]
    async fn a_reply_port_must_be_its_senders_own() {
        let here: Arc<dyn Transport> = Arc::new(Named(1));
        let port = |node| postcard::to_allocvec(&WireReply { node, request: 5 }).unwrap();
        let decode = |bytes: &[u8]| {
            with_codec_context(&here, NodeId(10), || postcard::from_bytes::<crate::Reply<u32>>(bytes).map(drop))
        };
        // From node 10, a port of node 10: fine.
        assert!(decode(&port(10)).is_ok());
        // From node 10, a port naming node 30, or this node: our answer would complete an ask
        // that someone else is waiting on.
        assert!(decode(&port(30)).is_err());
        assert!(decode(&port(1)).is_err());
    }

    #[test]
    fn a_dropped_transport_is_not_kept_alive_by_the_sticky_context() {
        let a: Arc<dyn Transport> = Arc::new(Named(1));
        with_codec_context(&a, NodeId(10), || assert!(current().is_some()));
        let weak = Arc::downgrade(&a);
        drop(a);
        assert!(weak.upgrade().is_none(), "the thread's last context holds the transport weakly");
        let c: Arc<dyn Transport> = Arc::new(Named(3));
        with_codec_context(&c, NodeId(10), || assert_eq!(current(), Some((3, NodeId(10)))));
    }
}
