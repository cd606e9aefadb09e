//! Typed replies for `ask`.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use crossbeam_utils::atomic::AtomicCell;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::error::SendFailure;
use crate::id::NodeId;
use crate::remote::{self, PendingReply, ReplyOutcome, Transport, WireReply};

/// The port through which an actor answers an [`ask`](crate::ActorRef::ask).
///
/// An ask builds the request around a `Reply<T>`; the actor answers with [`send`](Reply::send).
/// Dropping a `Reply` without answering tells the asker `AskError::NoReply`. A reply port can
/// travel to another node inside a message (when `T` is serializable); the answer then travels
/// back over the network, encoded and sent by `send` itself.
pub struct Reply<T> {
    /// The asker, on this node. Taken when answered or when the port moves to another node
    /// (serialization only has `&self`, hence the atomic cells; a pointer-sized cell is a plain
    /// atomic swap).
    tx: AtomicCell<Option<oneshot::Sender<Answer<T>>>>,
    /// Or the asker's node, for a port that arrived from there.
    remote: AtomicCell<Option<Box<RemotePort<T>>>>,
    /// When the asker on this node stops waiting, if it asked another node: the port's transport
    /// times the ask, so the asker needs no timer of its own.
    deadline: Option<Instant>,
}

/// What an asker on this node receives: the answer, or word that its deadline passed.
pub(crate) type Answer<T> = Result<T, Expired>;

/// The deadline of an ask timed by the transport passed.
#[derive(Debug)]
pub(crate) struct Expired;

impl<T> std::fmt::Debug for Reply<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reply")
    }
}

impl<T: Send + 'static> Reply<T> {
    /// A port for an asker on this node; with a `deadline` when it asks another node (see
    /// [`Transport::register_reply`]).
    pub(crate) fn new(tx: oneshot::Sender<Answer<T>>, deadline: Option<Instant>) -> Self {
        Reply { tx: AtomicCell::new(Some(tx)), remote: AtomicCell::new(None), deadline }
    }

    /// Answers the ask. Returns false when the asker stopped waiting (it timed out or went away;
    /// for an asker on another node: when the answer could not be sent there) or the port was
    /// already used.
    pub fn send(self, value: T) -> bool {
        if let Some(tx) = self.tx.take() {
            return tx.send(Ok(value)).is_ok();
        }
        match self.remote.take() {
            Some(port) => (*port).answer(value),
            None => false,
        }
    }

    /// True when the asker no longer waits for the answer (always false for an asker on
    /// another node: only its node knows).
    pub fn is_closed(&self) -> bool {
        let Some(tx) = self.tx.take() else {
            let remote = self.remote.take();
            let closed = remote.is_none();
            self.remote.store(remote);
            return closed;
        };
        let closed = tx.is_closed();
        self.tx.store(Some(tx));
        closed
    }
}

/// Encodes an answer of type `T` into a reply body (and its attached payloads).
type Encoder<T> = fn(&T, &mut Vec<u8>, &mut Vec<Bytes>) -> Result<(), SendFailure>;

/// The asker of a port that arrived from another node: where its answer goes. Dropped
/// unanswered, it tells the asker's node there will be no answer.
struct RemotePort<T> {
    transport: Arc<dyn Transport>,
    node: NodeId,
    request: u64,
    /// `T`'s encoder, taken where `T: Serialize` is known (the port's decoding).
    encode: Encoder<T>,
    /// Set once an answer (or its absence) was sent.
    done: bool,
}

impl<T> RemotePort<T> {
    /// Sends `value` to the asker's node: encoded right here, on the answering actor's thread, in
    /// the codec context of that node (refs in the answer are resolved by it). False when it
    /// could not be sent.
    fn answer(mut self, value: T) -> bool {
        let encode = self.encode;
        let sent = remote::with_codec_context(&self.transport, self.node, || {
            self.transport.send_reply(self.node, self.request, ReplyOutcome::Answered, &mut |out, attached| {
                encode(&value, out, attached)
            })
        });
        // Not sent (the answer did not encode, or is larger than a frame may be; or the
        // asker's node is out of reach, and then so is a NoReply): the drop sends a NoReply, so
        // the asker does not wait out its timeout. As when encoding panicked.
        self.done = sent;
        sent
    }
}

impl<T> Drop for RemotePort<T> {
    fn drop(&mut self) {
        if !self.done {
            self.done = true;
            self.transport.send_reply(self.node, self.request, ReplyOutcome::NoReply, &mut |_, _| Ok(()));
        }
    }
}

/// The answer a reply from the network carries: none when the replier did not answer or the
/// answer does not decode (logged).
fn answer_in<T: DeserializeOwned>(outcome: ReplyOutcome, body: &[u8], attached: Option<Bytes>) -> Option<T> {
    if outcome != ReplyOutcome::Answered {
        return None;
    }
    remote::decode_body::<T>(body, attached)
        .map_err(|error| tracing::warn!(%error, ty = std::any::type_name::<T>(), "undecodable reply dropped"))
        .ok()
}

/// An ask from this node whose request went to another node.
struct LocalPending<T> {
    tx: oneshot::Sender<Answer<T>>,
}

impl<T: DeserializeOwned + Send + 'static> PendingReply for LocalPending<T> {
    fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    fn complete(self: Box<Self>, outcome: ReplyOutcome, body: &[u8], attached: Option<Bytes>) {
        if let Some(value) = answer_in(outcome, body, attached) {
            let _ = self.tx.send(Ok(value));
        }
    }

    fn expire(self: Box<Self>) {
        let _ = self.tx.send(Err(Expired));
    }
}

/// A port that came from one node and went on to another: that node's answer is passed back to
/// the first (its absence too, as the port's drop).
struct RelayedPending<T> {
    port: Box<RemotePort<T>>,
}

impl<T: DeserializeOwned + Send + 'static> PendingReply for RelayedPending<T> {
    fn is_closed(&self) -> bool {
        false
    }

    fn complete(self: Box<Self>, outcome: ReplyOutcome, body: &[u8], attached: Option<Bytes>) {
        if let Some(value) = answer_in(outcome, body, attached) {
            (*self.port).answer(value);
        }
    }

    // Never registered with a deadline (the asker's node times its own ask): `expire` as by
    // default.
}

impl<T: Serialize + DeserializeOwned + Send + 'static> Serialize for Reply<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        let (transport, peer) =
            remote::reply_context().ok_or_else(|| S::Error::custom("reply ports encode only inside a node"))?;
        let (pending, deadline): (Box<dyn PendingReply>, _) = match (self.tx.take(), self.remote.take()) {
            (Some(tx), _) => (Box::new(LocalPending { tx }), self.deadline),
            (None, Some(port)) => (Box::new(RelayedPending { port }), None),
            (None, None) => return Err(S::Error::custom("reply port already used")),
        };
        let request = transport.register_reply(peer, pending, deadline);
        WireReply { node: transport.local_node().0, request }.serialize(serializer)
    }
}

impl<'de, T: Serialize + DeserializeOwned + Send + 'static> Deserialize<'de> for Reply<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let wire = WireReply::deserialize(deserializer)?;
        let (transport, sender) =
            remote::reply_context().ok_or_else(|| D::Error::custom("reply ports decode only inside a node"))?;
        // A port is always the sending node's own (it registers the ask and takes the answer
        // back): one naming another node would send our answer to an ask someone else is
        // waiting on.
        if wire.node != sender.0 {
            return Err(D::Error::custom("a reply port naming another node than its sender"));
        }
        let port = RemotePort {
            transport,
            node: NodeId(wire.node),
            request: wire.request,
            encode: remote::encode_body::<T>,
            done: false,
        };
        Ok(Reply { tx: AtomicCell::new(None), remote: AtomicCell::new(Some(Box::new(port))), deadline: None })
    }
}
