//! Control messages (payload of Control frames) and acknowledgement lists (payload of Ack frames).

use serde::{Deserialize, Serialize};

use crate::frame::WireError;

/// The most sequence numbers one Ack frame may carry; [`decode_acks`] rejects more.
pub const MAX_ACKS: usize = 1 << 20;

/// An actor id on the wire: the node's incarnation id and the actor's serial number on it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WireActorId {
    /// The node (incarnation id).
    pub node: u64,
    /// The actor's serial number on that node.
    pub serial: u64,
}

/// Why an actor stopped, as reported in a [`Control::Down`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireExit {
    /// It finished normally.
    Normal,
    /// It was stopped.
    Stopped,
    /// It was killed.
    Killed,
    /// It failed (panic or handler error), with a description.
    Failed(String),
    /// There was no such actor.
    NoActor,
    /// Its node went down or became unreachable.
    NodeDown,
    /// Any other reason.
    Other(String),
}

/// A control message: the payload of a Control frame, encoded with postcard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Control {
    /// The sender wants a [`Control::Down`] when `target` stops.
    Watch {
        /// The watched actor (on the receiving node).
        target: WireActorId,
    },
    /// The sender no longer wants a Down for `target`.
    Unwatch {
        /// The actor that was watched.
        target: WireActorId,
    },
    /// `target` (on the sending node) stopped.
    Down {
        /// The actor that stopped.
        target: WireActorId,
        /// Why.
        reason: WireExit,
    },
    /// Stop `target` (on the receiving node) in an orderly way.
    Stop {
        /// The actor to stop.
        target: WireActorId,
    },
    /// Kill `target` (on the receiving node) immediately.
    Kill {
        /// The actor to kill.
        target: WireActorId,
    },
    /// Look `name` up in the receiving node's registry.
    Lookup {
        /// Request id, echoed in the [`Control::LookupReply`].
        request: u64,
        /// The registered name.
        name: String,
    },
    /// Answer to a [`Control::Lookup`].
    LookupReply {
        /// The request id of the lookup.
        request: u64,
        /// The actor and the name of its message type, if the name is registered.
        found: Option<(WireActorId, String)>,
    },
    /// The sending node is shutting down in an orderly way.
    Goodbye,
    /// Every acknowledged message the sender numbered below `next` was either acknowledged or
    /// abandoned and will never be sent: the receiver may forget the numbers below it.
    AckFloor {
        /// The lowest number that may still arrive.
        next: u64,
    },
    /// A membership-overlay message (the overlay's own encoding; opaque to the transport).
    Overlay {
        /// The encoded overlay message.
        payload: Vec<u8>,
    },
    /// A broadcast-layer (Plumtree) message, opaque to the transport.
    Broadcast {
        /// The encoded broadcast message.
        payload: Vec<u8>,
    },
    /// The sender closes its connections to the receiver on purpose (the overlay no longer needs
    /// them): not a failure, so the receiver closes its side quietly instead of redialling.
    Release,
    /// A message for a node the sender is not connected to, passed along the overlay.
    Relay {
        /// The node that sent the inner frame.
        origin: u64,
        /// The node it is for.
        to: u64,
        /// Hops it may still take.
        ttl: u8,
        /// The whole inner frame (a Message or Reply frame, header included).
        frame: Vec<u8>,
    },
    /// Ask the receiver for its overlay views (for the cluster picture).
    ViewRequest {
        /// Request id, echoed in the [`Control::ViewReply`].
        request: u64,
    },
    /// Answer to a [`Control::ViewRequest`].
    ViewReply {
        /// The request id.
        request: u64,
        /// The encoded views (the overlay's own encoding).
        payload: Vec<u8>,
    },
    /// `from` (on the sending node) linked itself to `target` (on the receiving node): the
    /// receiver makes `target` fail when `from` fails or the sending node is lost. (That
    /// `from` fails when `target` does, the sender arranges with a [`Control::Watch`].)
    Link {
        /// The linked actor on the receiving node.
        target: WireActorId,
        /// The actor on the sending node that linked itself.
        from: WireActorId,
    },
    /// Cancels a [`Control::Link`].
    Unlink {
        /// The linked actor on the receiving node.
        target: WireActorId,
        /// The actor on the sending node that unlinked itself.
        from: WireActorId,
    },
    /// The sender lost its connection to `node` and asks, before it tells the cluster `node` is
    /// lost, whether the receiver still reaches it (an indirect probe, as in SWIM): one broken
    /// link must not get a live node declared dead everywhere.
    Probe {
        /// Request id, echoed in the [`Control::ProbeReply`].
        request: u64,
        /// The node in question (incarnation id).
        node: u64,
    },
    /// Answer to a [`Control::Probe`].
    ProbeReply {
        /// The request id of the probe.
        request: u64,
        /// Whether the receiver heard from the node while probing it.
        reachable: bool,
    },
    /// A [`Control::Probe`] with the node's listen addresses as the sender knows them, for a
    /// receiver that does not know them itself: without a connection of its own to the node, it
    /// dials one for the probe (see [`ConnPurpose::PROBE`]). Protocol version 2: a node of
    /// version 1 cannot decode it, so it gets the [`Control::Probe`] instead.
    ///
    /// [`ConnPurpose::PROBE`]: crate::ConnPurpose::PROBE
    ProbeAt {
        /// Request id, echoed in the [`Control::ProbeReply`].
        request: u64,
        /// The node in question (incarnation id).
        node: u64,
        /// Its listen addresses (`host:port`).
        addrs: Vec<String>,
    },
    /// Sent through the overlay (inside a [`Control::Relay`]) to a node the sender lost its
    /// connection to, before it tells the cluster that node is lost: if the node answers
    /// [`Control::RelayPong`] the same way, it is alive and reachable through the overlay.
    /// Protocol version 3; a node of an earlier version cannot decode it and does not answer.
    RelayPing {
        /// Request id, echoed in the [`Control::RelayPong`].
        request: u64,
    },
    /// Answer to a [`Control::RelayPing`], sent through the overlay to the ping's origin.
    RelayPong {
        /// The request id of the ping.
        request: u64,
    },
    /// Sent on the connection a target actor's messages take: the receiver notes it once its
    /// reader gets to it, every message before it handed to its mailbox (see
    /// [`Control::After`]). Protocol version 4.
    Marker {
        /// The marker's number (unique per sending node).
        marker: u64,
    },
    /// An actor signal that takes effect once the receiver has seen [`Control::Marker`]
    /// `marker`, which travels behind the messages sent before the signal (or after a while
    /// without it, should it be lost with its connection). Protocol version 4; a node of an
    /// earlier version gets the signal itself.
    After {
        /// The marker to wait for.
        marker: u64,
        /// What then takes effect.
        signal: Signal,
    },
    /// An actor signal that takes effect once the receiver has seen every one of `markers`:
    /// one [`Control::Marker`] behind the messages sent before the signal on each connection of
    /// the default channel that carried any (or after a while without them, should some be lost
    /// with their connection). Protocol version 5; a node of an earlier version gets the signal
    /// itself.
    AfterAll {
        /// The markers to wait for.
        markers: Vec<u64>,
        /// What then takes effect.
        signal: Signal,
    },
}

/// An actor signal that can wait for a [`Control::Marker`] ([`Control::After`]). Not a nested
/// [`Control`], so a frame cannot nest signals to any depth.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Signal {
    /// [`Control::Stop`].
    Stop {
        /// The actor to stop.
        target: WireActorId,
    },
    /// [`Control::Down`]. Protocol version 5.
    Down {
        /// The actor that ended.
        target: WireActorId,
        /// Why.
        reason: WireExit,
    },
}

impl Signal {
    /// The control message that carries this signal without waiting.
    pub fn into_control(self) -> Control {
        match self {
            Signal::Stop { target } => Control::Stop { target },
            Signal::Down { target, reason } => Control::Down { target, reason },
        }
    }
}

impl Control {
    /// Appends the postcard encoding of this message to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        postcard::to_io(self, out)
            .map(|_| ())
            .map_err(|e| WireError::Malformed { what: "control message", detail: e.to_string() })
    }

    /// Appends the payload of a numbered Control frame (protocol version 6; the frame carries
    /// [`flags::ACK_REQUESTED`](crate::flags::ACK_REQUESTED)): `seq` as a postcard varint, then
    /// this message.
    pub fn encode_numbered(&self, seq: u64, out: &mut Vec<u8>) -> Result<(), WireError> {
        postcard::to_io(&(seq, self), out)
            .map(|_| ())
            .map_err(|e| WireError::Malformed { what: "numbered control message", detail: e.to_string() })
    }

    /// Decodes the payload of a numbered Control frame into its sequence number and message.
    /// Trailing bytes are an error.
    pub fn decode_numbered(payload: &[u8]) -> Result<(u64, Control), WireError> {
        let malformed = |detail: String| WireError::Malformed { what: "numbered control message", detail };
        let (numbered, rest) = postcard::take_from_bytes(payload).map_err(|e| malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(malformed(format!("{} trailing bytes", rest.len())));
        }
        Ok(numbered)
    }

    /// Decodes a Control frame payload. Trailing bytes are an error.
    pub fn decode(payload: &[u8]) -> Result<Control, WireError> {
        let malformed = |detail: String| WireError::Malformed { what: "control message", detail };
        let (control, rest) = postcard::take_from_bytes(payload).map_err(|e| malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(malformed(format!("{} trailing bytes", rest.len())));
        }
        Ok(control)
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads an LEB128 varint from the front of `buf`, advancing it.
fn take_varint(buf: &mut &[u8]) -> Result<u64, WireError> {
    let mut value = 0u64;
    for i in 0..10 {
        let Some((&byte, rest)) = buf.split_first() else {
            return Err(WireError::Truncated { what: "ack list", need: i + 1, have: i });
        };
        *buf = rest;
        let bits = u64::from(byte & 0x7f);
        if i == 9 && bits > 1 {
            break;
        }
        value |= bits << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(WireError::Malformed { what: "ack list", detail: "varint overflows 64 bits".to_string() })
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Appends the Ack frame payload listing `seqs`, preserving their order.
///
/// Encoding: the number of runs (LEB128 varint), then for each run of consecutive ascending sequence
/// numbers `start, start+1, …, start+n-1`: the zigzag varint of `start - expected` (wrapping, where
/// `expected` is one past the end of the previous run, initially 0), then the varint `n - 1`. A
/// contiguous batch of acks therefore costs a few bytes whatever its size.
///
/// Receivers reject lists of more than [`MAX_ACKS`] entries: split bigger lists over several frames.
pub fn encode_acks(out: &mut Vec<u8>, seqs: &[u64]) {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for &seq in seqs {
        match runs.last_mut() {
            Some((start, extra)) if start.wrapping_add(*extra).checked_add(1) == Some(seq) => *extra += 1,
            _ => runs.push((seq, 0)),
        }
    }
    put_varint(out, runs.len() as u64);
    let mut expected = 0u64;
    for (start, extra) in runs {
        put_varint(out, zigzag(start.wrapping_sub(expected) as i64));
        put_varint(out, extra);
        expected = start.wrapping_add(extra).wrapping_add(1);
    }
}

/// Decodes an Ack frame payload written by [`encode_acks`].
///
/// Rejects more than [`MAX_ACKS`] entries (before allocating them), runs that overflow `u64`, and
/// trailing bytes.
pub fn decode_acks(payload: &[u8]) -> Result<Vec<u64>, WireError> {
    let too_many = || WireError::Malformed { what: "ack list", detail: format!("more than {MAX_ACKS} entries") };
    let mut buf = payload;
    let runs = take_varint(&mut buf)?;
    if runs > MAX_ACKS as u64 {
        return Err(too_many());
    }
    let mut seqs = Vec::with_capacity((runs as usize).min(1024));
    let mut expected = 0u64;
    for _ in 0..runs {
        let start = expected.wrapping_add(unzigzag(take_varint(&mut buf)?) as u64);
        let extra = take_varint(&mut buf)?;
        if extra >= (MAX_ACKS - seqs.len()) as u64 {
            return Err(too_many());
        }
        let last = start.checked_add(extra).ok_or_else(|| WireError::Malformed {
            what: "ack list",
            detail: format!("run of {} from {start} overflows u64", extra.saturating_add(1)),
        })?;
        seqs.extend(start..=last);
        expected = last.wrapping_add(1);
    }
    if !buf.is_empty() {
        return Err(WireError::Malformed { what: "ack list", detail: format!("{} trailing bytes", buf.len()) });
    }
    Ok(seqs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints() {
        for v in [0, 1, 127, 128, 300, u64::MAX / 2, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            let mut buf = &out[..];
            assert_eq!(take_varint(&mut buf), Ok(v));
            assert!(buf.is_empty());
        }
        let mut overlong: &[u8] = &[0xff; 11];
        assert!(take_varint(&mut overlong).is_err());
        let mut too_big: &[u8] = &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert!(take_varint(&mut too_big).is_err());
    }

    #[test]
    fn zigzag_round_trip() {
        for v in [0, 1, -1, i64::MAX, i64::MIN, 12345, -12345] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
    }

    #[test]
    fn contiguous_acks_are_compact() {
        let seqs: Vec<u64> = (1_000_000..1_100_000).collect();
        let mut out = Vec::new();
        encode_acks(&mut out, &seqs);
        assert!(out.len() <= 8, "{} bytes", out.len());
        assert_eq!(decode_acks(&out).unwrap(), seqs);
    }

    #[test]
    fn acks_keep_order_and_duplicates() {
        let seqs = [5, 6, 7, 3, 4, 4, u64::MAX, 0, 1, u64::MAX - 1, u64::MAX];
        let mut out = Vec::new();
        encode_acks(&mut out, &seqs);
        assert_eq!(decode_acks(&out).unwrap(), seqs);
    }

    #[test]
    fn acks_bounded() {
        // One run of MAX_ACKS + 1 entries, from 0.
        let mut out = Vec::new();
        put_varint(&mut out, 1);
        put_varint(&mut out, 0);
        put_varint(&mut out, MAX_ACKS as u64);
        assert!(decode_acks(&out).is_err());
        // Exactly MAX_ACKS is fine.
        let seqs: Vec<u64> = (0..MAX_ACKS as u64).collect();
        let mut out = Vec::new();
        encode_acks(&mut out, &seqs);
        assert_eq!(decode_acks(&out).unwrap().len(), MAX_ACKS);
        // A huge run count is rejected up front.
        let mut out = Vec::new();
        put_varint(&mut out, u64::MAX);
        assert!(decode_acks(&out).is_err());
        // Runs overflowing u64.
        let mut out = Vec::new();
        put_varint(&mut out, 1);
        put_varint(&mut out, zigzag(-1));
        put_varint(&mut out, 1);
        assert!(decode_acks(&out).is_err());
    }

    #[test]
    fn control_trailing_bytes_rejected() {
        let mut out = Vec::new();
        Control::Goodbye.encode(&mut out).unwrap();
        assert_eq!(Control::decode(&out), Ok(Control::Goodbye));
        out.push(0);
        assert!(Control::decode(&out).is_err());
        assert!(Control::decode(&[]).is_err());
    }
}
