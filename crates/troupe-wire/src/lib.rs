//! troupe's wire format: frames, message envelopes, acknowledgements, control messages and the
//! connection handshake.
//!
//! This crate is pure code: no I/O, no async runtime, no clocks and no randomness. The transport
//! (`troupe-net`) reads bytes from sockets into a buffer, hands the buffer to a [`FrameDecoder`], and
//! writes whatever the encoders and the handshake state machines ([`Initiator`], [`Responder`]) produce.
//! Every decoder is total: it returns an error on malformed input and never panics (the crate is fuzzed,
//! see `fuzz/`).
//!
//! # Layouts (all integers little-endian)
//!
//! | what | bytes |
//! |---|---|
//! | frame | `[len: u32][kind: u8][flags: u8][channel: u16][payload: len bytes]` |
//! | Message payload | `[target_node: u64][target_serial: u64][type_tag: u64]([seq: u64] if ACK_REQUESTED)[body]` |
//! | Reply payload | `[request: u64][status: u8][body]` |
//! | body | postcard; with the ATTACHED flag `[postcard: n bytes][attached payloads][n: u32]` |
//! | Ack payload | runs of consecutive sequence numbers, LEB128 varints (see [`encode_acks`]) |
//! | Control payload | postcard of [`Control`] |
//! | handshake payloads | see [`handshake`] |

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod control;
pub mod envelope;
pub mod frame;
pub mod handshake;

pub use control::{decode_acks, encode_acks, Control, Signal, WireActorId, WireExit, MAX_ACKS};
pub use envelope::{
    split_attached, write_attached_trailer, Envelope, ReplyHeader, ReplyStatus, ATTACHED_TRAILER_LEN, ENVELOPE_LEN,
    REPLY_HEADER_LEN, SEQ_LEN,
};
pub use frame::{
    begin_frame, encode_frame, finish_frame, finish_frame_attached, flags, Frame, FrameDecoder, FrameHeader, FrameKind,
    FrameStart, WireError, DEFAULT_MAX_FRAME, HEADER_LEN,
};
pub use handshake::{
    decode_reject, encode_reject, reject, ConnPurpose, Established, HandshakeConfig, HandshakeError, HandshakeStep,
    Initiator, NodeInfo, Responder, MAX_HANDSHAKE_PAYLOAD,
};

/// The wire protocol version this build speaks (the highest it accepts).
///
/// - 1: everything up to indirect probes over existing connections.
/// - 2: probe connections ([`ConnPurpose::PROBE`]) and [`Control::ProbeAt`]. A node of version 1
///   treats a probe connection as any other and cannot decode a `ProbeAt`; the handshake settles
///   on the highest version both speak, and a version-2 node adapts (see troupe-net's `probe`).
/// - 3: [`Control::RelayPing`] and [`Control::RelayPong`], which travel through the overlay, end
///   to end (the nodes on the way pass them on without decoding them). A node of an earlier
///   version cannot decode the ping (it logs and counts a bad frame) and does not answer it,
///   which counts as "not heard", as before.
/// - 4: [`Control::Marker`] and [`Control::After`]: a remote stop waits for the messages sent
///   before it. A version-4 node sends a version-3 node the plain [`Control::Stop`].
/// - 5: [`Control::AfterAll`] and [`Signal::Down`]: a stop, and a Down, wait for the messages
///   sent before them on every connection of the default channel. A version-5 node sends older
///   nodes the plain signal, and still applies a version-4 node's [`Control::After`].
/// - 6: numbered control frames ([`flags::ACK_REQUESTED`] on a Control frame, see
///   [`Control::decode_numbered`]): actor signals (watch, down, stop, kill, link, unlink) are
///   acknowledged and sent again after a lost connection, like acknowledged messages. A version-6
///   node sends older nodes the plain frame.
pub const PROTOCOL_VERSION: u16 = 6;

/// The oldest wire protocol version this build accepts.
pub const MIN_PROTOCOL_VERSION: u16 = 1;

/// The four bytes at the start of every Hello payload: they identify a troupe peer.
pub const MAGIC: [u8; 4] = *b"TRP\x01";
