//! Typed replies for `ask`.

use crossbeam_utils::atomic::AtomicCell;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::remote::{self, PendingReply, ReplyOutcome, WireReply};

/// The port through which an actor answers an [`ask`](crate::ActorRef::ask).
///
/// An ask builds the request around a `Reply<T>`; the actor answers with [`send`](Reply::send).
/// Dropping a `Reply` without answering tells the asker `AskError::NoReply`. A reply port can
/// travel to another node inside a message (when `T` is serializable); the answer then travels
/// back over the network.
///
/// It is one pointer wide: a port arriving from another node is a local port whose answer a
/// small task forwards to the asker's node.
pub struct Reply<T> {
    /// Taken when answered or when the port moves to another node (serialization only has
    /// `&self`, hence the atomic cell; a pointer-sized cell is a plain atomic swap).
    tx: AtomicCell<Option<oneshot::Sender<T>>>,
}

impl<T> std::fmt::Debug for Reply<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reply")
    }
}

impl<T: Send + 'static> Reply<T> {
    pub(crate) fn new(tx: oneshot::Sender<T>) -> Self {
        Reply { tx: AtomicCell::new(Some(tx)) }
    }

    /// Answers the ask. Returns false when the asker stopped waiting (it timed out or went away)
    /// or the port was already used.
    pub fn send(self, value: T) -> bool {
        match self.tx.take() {
            Some(tx) => tx.send(value).is_ok(),
            None => false,
        }
    }

    /// True when the asker no longer waits for the answer.
    pub fn is_closed(&self) -> bool {
        let tx = self.tx.take();
        let closed = tx.as_ref().is_none_or(|tx| tx.is_closed());
        self.tx.store(tx);
        closed
    }
}

/// An ask from this node whose request went to another node.
struct LocalPending<T> {
    tx: oneshot::Sender<T>,
}

impl<T: DeserializeOwned + Send + 'static> PendingReply for LocalPending<T> {
    fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    fn complete(self: Box<Self>, outcome: ReplyOutcome, body: &[u8], attached: Option<bytes::Bytes>) {
        if outcome != ReplyOutcome::Answered {
            return;
        }
        match remote::decode_body::<T>(body, attached) {
            Ok(value) => {
                let _ = self.tx.send(value);
            }
            Err(error) => {
                tracing::warn!(%error, ty = std::any::type_name::<T>(), "undecodable reply dropped");
            }
        }
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> Serialize for Reply<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        let (transport, peer) =
            remote::reply_context().ok_or_else(|| S::Error::custom("reply ports encode only inside a node"))?;
        let tx = self.tx.take().ok_or_else(|| S::Error::custom("reply port already used"))?;
        let request = transport.register_reply(peer, Box::new(LocalPending { tx }));
        WireReply { node: transport.local_node().0, request }.serialize(serializer)
    }
}

impl<'de, T: Serialize + DeserializeOwned + Send + 'static> Deserialize<'de> for Reply<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let wire = WireReply::deserialize(deserializer)?;
        let (transport, sender) =
            remote::reply_context().ok_or_else(|| D::Error::custom("reply ports decode only inside a node"))?;
        // A port is always the sending node's own (it registers the ask and forwards the answer
        // on): one naming another node would send our answer to an ask someone else is waiting on.
        if wire.node != sender.0 {
            return Err(D::Error::custom("a reply port naming another node than its sender"));
        }
        let (tx, rx) = oneshot::channel::<T>();
        let node = crate::id::NodeId(wire.node);
        let request = wire.request;
        // Forward the answer (or its absence) to the asker's node.
        transport.clone().spawn(Box::pin(async move {
            let answer = rx.await;
            remote::with_codec_context(&transport, node, || match answer {
                Ok(value) => transport.send_reply(node, request, ReplyOutcome::Answered, &mut |out, attached| {
                    remote::encode_body(&value, out, attached)
                }),
                Err(_) => transport.send_reply(node, request, ReplyOutcome::NoReply, &mut |_, _| Ok(())),
            });
        }));
        Ok(Reply::new(tx))
    }
}
