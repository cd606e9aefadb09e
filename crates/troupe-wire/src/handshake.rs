//! The connection handshake, as two sans-IO state machines.
//!
//! The dialer ([`Initiator`]) sends Hello; the acceptor ([`Responder`]) answers Challenge (or Reject);
//! the initiator answers Proof (or Reject); the responder answers Welcome (or Reject):
//!
//! ```text
//! initiator                                   responder
//!   Hello     [MAGIC][min: u16][max: u16][postcard HelloBody]  ->
//!          <-  Challenge [postcard ChallengeCore][responder proof: 32]
//!   Proof     [initiator proof: 32]                            ->
//!          <-  Welcome   (empty payload)
//! ```
//!
//! `HelloBody` is `{ cluster: String, node: NodeInfo, purpose: ConnPurpose, max_frame: u64, nonce: [u8; 32] }`
//! and `ChallengeCore` is `{ version: u16, node: NodeInfo, nonce: [u8; 32], max_frame: u64 }`. A Reject
//! payload is a postcard `String` (see [`reject`] for the reasons this crate sends). All handshake frames
//! use channel 0 and flags 0 (the machines ignore both on receipt).
//!
//! Both peers prove knowledge of the shared cluster secret with HMAC-SHA256; the secret never crosses
//! the wire. Each proof is the MAC, keyed by the secret, of
//!
//! ```text
//! "troupe-handshake-v1\0" || role label || len(hello): u64 LE || hello payload || len(core): u64 LE || core
//! ```
//!
//! where the role label is `"troupe-responder"` for the Challenge's proof and `"troupe-initiator"` for the
//! Proof frame, `hello payload` is the whole Hello payload as sent and `core` the Challenge payload
//! without its trailing proof. The proofs therefore bind the whole transcript (magic, both version
//! ranges, the chosen version, the cluster name, both node infos and incarnations, the purpose, both
//! maximum frame sizes and both nonces): a proof cannot be replayed on another connection (the other
//! side's nonce differs) nor reflected to the other role (the label differs). Proofs are checked in
//! constant time ([`hmac::Mac::verify_slice`]).
//!
//! The handshake authenticates the peer; it does not protect the frames that follow. Use TLS where the
//! network is not trusted.

use std::fmt;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::frame::{begin_frame, finish_frame, Frame, FrameKind, WireError, HEADER_LEN};
use crate::{MAGIC, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};

type HmacSha256 = Hmac<Sha256>;

/// The largest handshake payload the state machines accept; longer handshake frames fail the handshake.
///
/// The transport may decode handshake frames with a `FrameDecoder::new(MAX_HANDSHAKE_PAYLOAD)` to bound
/// what an unauthenticated peer can make it buffer.
pub const MAX_HANDSHAKE_PAYLOAD: usize = 64 * 1024;

/// Length of an HMAC-SHA256 proof.
const PROOF_LEN: usize = 32;

/// Domain separation prefix of the proofs' transcript.
const DOMAIN: &[u8] = b"troupe-handshake-v1\0";
const INITIATOR_LABEL: &[u8] = b"troupe-initiator";
const RESPONDER_LABEL: &[u8] = b"troupe-responder";

/// The reasons this crate puts in the Reject frames it sends.
pub mod reject {
    /// The Hello did not start with [`MAGIC`](crate::MAGIC).
    pub const BAD_MAGIC: &str = "bad magic";
    /// The version ranges do not overlap, or the responder chose a version outside the initiator's range.
    pub const VERSION_MISMATCH: &str = "no common protocol version";
    /// The peers are configured for different clusters.
    pub const CLUSTER_MISMATCH: &str = "cluster mismatch";
    /// A node dialled itself (same incarnation on both ends).
    pub const SELF_CONNECTION: &str = "self connection";
    /// The peer's proof of the cluster secret did not verify.
    pub const BAD_PROOF: &str = "bad proof";
    /// A handshake frame could not be decoded.
    pub const MALFORMED: &str = "malformed handshake frame";
    /// A handshake frame was longer than [`MAX_HANDSHAKE_PAYLOAD`](crate::MAX_HANDSHAKE_PAYLOAD).
    pub const TOO_LARGE: &str = "handshake frame too large";
    /// A frame of the wrong kind arrived during the handshake.
    pub const UNEXPECTED: &str = "unexpected frame";
    /// The responder will not serve this (authenticated) peer: it cut itself off from it.
    pub const PARTITIONED: &str = "partitioned";
    /// The responder is shutting down.
    pub const SHUTTING_DOWN: &str = "shutting down";
    /// The responder dropped this peer for misbehaving (it did not read what it asked for) and
    /// will not take it back for a while.
    pub const QUARANTINED: &str = "quarantined";

    /// Whether `reason` says the responder chose not to serve the peer for now (a decision,
    /// not a failure of the handshake): it is leaving, cut off from the peer, or has
    /// quarantined it.
    pub fn is_refusal(reason: &str) -> bool {
        reason == PARTITIONED || reason == SHUTTING_DOWN || reason == QUARANTINED
    }
}

/// A node's identity, as exchanged in the handshake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Human-readable node name.
    pub name: String,
    /// Random id of this incarnation of the node (the `node` part of actor ids).
    pub incarnation: u64,
    /// Advertised listen addresses.
    pub listen: Vec<String>,
}

/// What a connection is for: the channel index and the connection ("lane") index within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConnPurpose {
    /// Channel index.
    pub channel: u16,
    /// Parallel connection index within the channel.
    pub lane: u16,
}

impl ConnPurpose {
    /// A connection that only shows its acceptor is alive, for an indirect probe: after the
    /// handshake (which proves the acceptor's identity and incarnation) the acceptor sends one
    /// Pong frame and closes. It creates no peer on either side and carries nothing else.
    /// Protocol version 2: an acceptor of version 1 serves it as a connection of an unknown
    /// channel.
    pub const PROBE: ConnPurpose = ConnPurpose { channel: u16::MAX, lane: u16::MAX };
}

/// Configuration of one side of a handshake.
#[derive(Clone)]
pub struct HandshakeConfig {
    /// Cluster name; both peers must agree.
    pub cluster: String,
    /// Shared cluster secret (the HMAC key). Never sent.
    pub secret: Vec<u8>,
    /// This node.
    pub me: NodeInfo,
    /// The largest frame payload this node accepts (advertised to the peer).
    pub max_frame: usize,
}

impl fmt::Debug for HandshakeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandshakeConfig")
            .field("cluster", &self.cluster)
            .field("secret", &"<redacted>")
            .field("me", &self.me)
            .field("max_frame", &self.max_frame)
            .finish()
    }
}

/// Result of a successful handshake, on both sides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Established {
    /// The peer node.
    pub peer: NodeInfo,
    /// The negotiated protocol version.
    pub version: u16,
    /// What the connection is for (chosen by the initiator).
    pub purpose: ConnPurpose,
    /// The largest frame payload the peer accepts: do not send it bigger frames.
    pub peer_max_frame: usize,
}

/// Why a handshake failed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum HandshakeError {
    /// The peer's proof of the cluster secret did not verify.
    #[error("peer failed to prove the cluster secret")]
    BadProof,
    /// The peer belongs to another cluster.
    #[error("peer is in cluster {theirs:?}, we are in {ours:?}")]
    ClusterMismatch {
        /// Our cluster name.
        ours: String,
        /// The peer's cluster name.
        theirs: String,
    },
    /// The peers have no protocol version in common.
    #[error("no common protocol version (ours {ours_min}..={ours_max}, theirs {theirs_min}..={theirs_max})")]
    VersionMismatch {
        /// Oldest version we accept.
        ours_min: u16,
        /// Newest version we speak.
        ours_max: u16,
        /// Oldest version the peer accepts (the version it chose, for a responder).
        theirs_min: u16,
        /// Newest version the peer speaks (the version it chose, for a responder).
        theirs_max: u16,
    },
    /// The peer sent a Reject frame with this reason (see [`reject`] for the reasons troupe sends).
    #[error("peer rejected us: {0}")]
    Rejected(String),
    /// A frame of the wrong kind arrived.
    #[error("unexpected {got:?} frame during handshake (expected {expected})")]
    Unexpected {
        /// The kind received.
        got: FrameKind,
        /// What was expected.
        expected: &'static str,
    },
    /// The Hello did not start with [`MAGIC`].
    #[error("bad magic: not a troupe peer")]
    BadMagic,
    /// The peer is this very node incarnation.
    #[error("connected to ourselves")]
    SelfConnection,
    /// A handshake frame could not be decoded.
    #[error(transparent)]
    Wire(#[from] WireError),
}

impl HandshakeError {
    /// Whether the handshake failed because a node connected to itself, detected on either side
    /// ([`HandshakeError::SelfConnection`], or a Reject with reason [`reject::SELF_CONNECTION`]).
    pub fn is_self_connection(&self) -> bool {
        match self {
            HandshakeError::SelfConnection => true,
            HandshakeError::Rejected(reason) => reason == reject::SELF_CONNECTION,
            _ => false,
        }
    }
}

/// What to do after feeding a frame to a handshake state machine.
#[derive(Debug)]
pub enum HandshakeStep {
    /// Write these bytes (one whole frame) and wait for the next frame.
    Send(Vec<u8>),
    /// Write these bytes (may be empty) and the connection is established.
    Done(Vec<u8>, Established),
    /// Write these bytes (a Reject frame, may be empty) then close: the handshake failed.
    Fail(Vec<u8>, HandshakeError),
}

#[derive(Serialize, Deserialize)]
struct HelloBody {
    cluster: String,
    node: NodeInfo,
    purpose: ConnPurpose,
    max_frame: u64,
    nonce: [u8; 32],
}

#[derive(Serialize, Deserialize)]
struct ChallengeCore {
    version: u16,
    node: NodeInfo,
    nonce: [u8; 32],
    max_frame: u64,
}

/// Writes one handshake frame (channel 0, flags 0) with `write` producing its payload.
fn handshake_frame(kind: FrameKind, write: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + 64);
    let start = begin_frame(&mut out, kind, 0, 0);
    write(&mut out);
    // Only fails beyond 4 GiB of payload, which handshake messages never reach; `out` is then emptied.
    let _ = finish_frame(&mut out, start, usize::MAX);
    out
}

/// Appends the postcard encoding of `value` (serializing these types into a `Vec` cannot fail).
fn put_postcard<T: Serialize>(out: &mut Vec<u8>, value: &T) {
    let _ = postcard::to_io(value, out);
}

/// The bytes of a Reject frame carrying `reason`.
pub fn encode_reject(reason: &str) -> Vec<u8> {
    handshake_frame(FrameKind::Reject, |out| put_postcard(out, &reason))
}

/// The reason carried by a Reject frame's payload (a lossy rendering if it is not a postcard string).
pub fn decode_reject(payload: &[u8]) -> String {
    match postcard::take_from_bytes::<String>(payload) {
        Ok((reason, _)) => reason,
        Err(_) => String::from_utf8_lossy(&payload[..payload.len().min(256)]).into_owned(),
    }
}

fn malformed(what: &'static str, detail: impl fmt::Display) -> HandshakeError {
    HandshakeError::Wire(WireError::Malformed { what, detail: detail.to_string() })
}

fn to_usize(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

/// The MAC over the transcript for one role, ready to finalize or verify.
fn transcript_mac(secret: &[u8], label: &[u8], hello: &[u8], core: &[u8]) -> Result<HmacSha256, HandshakeError> {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(secret)
        .map_err(|e| malformed("cluster secret", format!("unusable as an HMAC key: {e}")))?;
    mac.update(DOMAIN);
    mac.update(label);
    mac.update(&(hello.len() as u64).to_le_bytes());
    mac.update(hello);
    mac.update(&(core.len() as u64).to_le_bytes());
    mac.update(core);
    Ok(mac)
}

fn proof(secret: &[u8], label: &[u8], hello: &[u8], core: &[u8]) -> Result<[u8; PROOF_LEN], HandshakeError> {
    Ok(transcript_mac(secret, label, hello, core)?.finalize().into_bytes().into())
}

fn verify(secret: &[u8], label: &[u8], hello: &[u8], core: &[u8], tag: &[u8]) -> Result<(), HandshakeError> {
    transcript_mac(secret, label, hello, core)?.verify_slice(tag).map_err(|_| HandshakeError::BadProof)
}

/// The Reject reason sent for a local failure.
fn reason_for(error: &HandshakeError) -> &'static str {
    match error {
        HandshakeError::BadProof => reject::BAD_PROOF,
        HandshakeError::ClusterMismatch { .. } => reject::CLUSTER_MISMATCH,
        HandshakeError::VersionMismatch { .. } => reject::VERSION_MISMATCH,
        HandshakeError::BadMagic => reject::BAD_MAGIC,
        HandshakeError::SelfConnection => reject::SELF_CONNECTION,
        HandshakeError::Unexpected { .. } => reject::UNEXPECTED,
        HandshakeError::Wire(WireError::TooLarge { .. }) => reject::TOO_LARGE,
        HandshakeError::Wire(_) | HandshakeError::Rejected(_) => reject::MALFORMED,
    }
}

/// Fails with a Reject frame telling the peer why.
fn fail(error: HandshakeError) -> HandshakeStep {
    HandshakeStep::Fail(encode_reject(reason_for(&error)), error)
}

fn check_size(frame: &Frame<'_>) -> Result<(), HandshakeError> {
    if frame.payload.len() > MAX_HANDSHAKE_PAYLOAD {
        return Err(WireError::TooLarge { len: frame.payload.len(), max: MAX_HANDSHAKE_PAYLOAD }.into());
    }
    Ok(())
}

/// The common handling of Reject frames, wrong kinds and frames after the end.
fn not_expected(frame: &Frame<'_>, expected: &'static str, finished: bool) -> HandshakeStep {
    let error = HandshakeError::Unexpected { got: frame.header.kind, expected };
    if finished {
        HandshakeStep::Fail(Vec::new(), error)
    } else if frame.header.kind == FrameKind::Reject {
        HandshakeStep::Fail(Vec::new(), HandshakeError::Rejected(decode_reject(frame.payload)))
    } else {
        fail(error)
    }
}

const FINISHED: &str = "no frame (handshake finished)";

enum InitiatorState {
    AwaitChallenge,
    AwaitWelcome(Box<Established>),
    Finished,
}

/// The dialing side of a handshake.
pub struct Initiator {
    config: HandshakeConfig,
    purpose: ConnPurpose,
    hello: Vec<u8>,
    state: InitiatorState,
}

impl fmt::Debug for Initiator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            InitiatorState::AwaitChallenge => "AwaitChallenge",
            InitiatorState::AwaitWelcome(_) => "AwaitWelcome",
            InitiatorState::Finished => "Finished",
        };
        f.debug_struct("Initiator")
            .field("config", &self.config)
            .field("purpose", &self.purpose)
            .field("state", &state)
            .finish()
    }
}

impl Initiator {
    /// Starts a handshake: returns the machine and the Hello frame bytes to write first.
    ///
    /// `nonce` must be 32 fresh random bytes.
    pub fn start(config: HandshakeConfig, purpose: ConnPurpose, nonce: [u8; 32]) -> (Initiator, Vec<u8>) {
        let body = HelloBody {
            cluster: config.cluster.clone(),
            node: config.me.clone(),
            purpose,
            max_frame: config.max_frame as u64,
            nonce,
        };
        let frame = handshake_frame(FrameKind::Hello, |out| {
            out.extend_from_slice(&MAGIC);
            out.extend_from_slice(&MIN_PROTOCOL_VERSION.to_le_bytes());
            out.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
            put_postcard(out, &body);
        });
        let hello = frame.get(HEADER_LEN..).unwrap_or_default().to_vec();
        (Initiator { config, purpose, hello, state: InitiatorState::AwaitChallenge }, frame)
    }

    /// Whether the machine finished (successfully or not): it accepts no more frames.
    pub fn is_finished(&self) -> bool {
        matches!(self.state, InitiatorState::Finished)
    }

    /// Feeds the next frame received from the responder.
    pub fn receive(&mut self, frame: Frame<'_>) -> HandshakeStep {
        match std::mem::replace(&mut self.state, InitiatorState::Finished) {
            InitiatorState::AwaitChallenge if frame.header.kind == FrameKind::Challenge => {
                match check_size(&frame).and_then(|()| self.on_challenge(frame.payload)) {
                    Ok((reply, established)) => {
                        self.state = InitiatorState::AwaitWelcome(Box::new(established));
                        HandshakeStep::Send(reply)
                    }
                    Err(error) => fail(error),
                }
            }
            InitiatorState::AwaitChallenge => not_expected(&frame, "Challenge", false),
            InitiatorState::AwaitWelcome(established) if frame.header.kind == FrameKind::Welcome => {
                HandshakeStep::Done(Vec::new(), *established)
            }
            InitiatorState::AwaitWelcome(_) => not_expected(&frame, "Welcome", false),
            InitiatorState::Finished => not_expected(&frame, FINISHED, true),
        }
    }

    fn on_challenge(&self, payload: &[u8]) -> Result<(Vec<u8>, Established), HandshakeError> {
        let core_len = payload.len().checked_sub(PROOF_LEN).ok_or(WireError::Truncated {
            what: "challenge",
            need: PROOF_LEN,
            have: payload.len(),
        })?;
        let (core_bytes, tag) = payload.split_at(core_len);
        let (core, _) =
            postcard::take_from_bytes::<ChallengeCore>(core_bytes).map_err(|e| malformed("challenge", e))?;
        verify(&self.config.secret, RESPONDER_LABEL, &self.hello, core_bytes, tag)?;
        if !(MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&core.version) {
            return Err(HandshakeError::VersionMismatch {
                ours_min: MIN_PROTOCOL_VERSION,
                ours_max: PROTOCOL_VERSION,
                theirs_min: core.version,
                theirs_max: core.version,
            });
        }
        if core.node.incarnation == self.config.me.incarnation {
            return Err(HandshakeError::SelfConnection);
        }
        let tag = proof(&self.config.secret, INITIATOR_LABEL, &self.hello, core_bytes)?;
        let reply = handshake_frame(FrameKind::Proof, |out| out.extend_from_slice(&tag));
        let established = Established {
            peer: core.node,
            version: core.version,
            purpose: self.purpose,
            peer_max_frame: to_usize(core.max_frame),
        };
        Ok((reply, established))
    }
}

enum ResponderState {
    AwaitHello,
    AwaitProof { hello: Vec<u8>, core: Vec<u8>, established: Box<Established> },
    Finished,
}

/// The accepting side of a handshake.
pub struct Responder {
    config: HandshakeConfig,
    nonce: [u8; 32],
    state: ResponderState,
}

impl fmt::Debug for Responder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            ResponderState::AwaitHello => "AwaitHello",
            ResponderState::AwaitProof { .. } => "AwaitProof",
            ResponderState::Finished => "Finished",
        };
        f.debug_struct("Responder").field("config", &self.config).field("state", &state).finish()
    }
}

impl Responder {
    /// A responder waiting for a Hello. `nonce` must be 32 fresh random bytes.
    pub fn new(config: HandshakeConfig, nonce: [u8; 32]) -> Responder {
        Responder { config, nonce, state: ResponderState::AwaitHello }
    }

    /// Whether the machine finished (successfully or not): it accepts no more frames.
    pub fn is_finished(&self) -> bool {
        matches!(self.state, ResponderState::Finished)
    }

    /// Feeds the next frame received from the initiator.
    pub fn receive(&mut self, frame: Frame<'_>) -> HandshakeStep {
        match std::mem::replace(&mut self.state, ResponderState::Finished) {
            ResponderState::AwaitHello if frame.header.kind == FrameKind::Hello => {
                match check_size(&frame).and_then(|()| self.on_hello(frame.payload)) {
                    Ok((reply, state)) => {
                        self.state = state;
                        HandshakeStep::Send(reply)
                    }
                    Err(error) => fail(error),
                }
            }
            ResponderState::AwaitHello => not_expected(&frame, "Hello", false),
            ResponderState::AwaitProof { hello, core, established } if frame.header.kind == FrameKind::Proof => {
                match self.on_proof(frame.payload, &hello, &core) {
                    Ok(()) => HandshakeStep::Done(handshake_frame(FrameKind::Welcome, |_| {}), *established),
                    Err(error) => fail(error),
                }
            }
            ResponderState::AwaitProof { .. } => not_expected(&frame, "Proof", false),
            ResponderState::Finished => not_expected(&frame, FINISHED, true),
        }
    }

    fn on_proof(&self, payload: &[u8], hello: &[u8], core: &[u8]) -> Result<(), HandshakeError> {
        if payload.len() != PROOF_LEN {
            return Err(malformed("proof", format!("{} bytes instead of {PROOF_LEN}", payload.len())));
        }
        verify(&self.config.secret, INITIATOR_LABEL, hello, core, payload)
    }

    fn on_hello(&self, payload: &[u8]) -> Result<(Vec<u8>, ResponderState), HandshakeError> {
        if payload.get(..MAGIC.len()) != Some(&MAGIC[..]) {
            return Err(HandshakeError::BadMagic);
        }
        let Some(&[min_lo, min_hi, max_lo, max_hi]) = payload.get(4..8) else {
            return Err(WireError::Truncated { what: "hello", need: 8, have: payload.len() }.into());
        };
        let (theirs_min, theirs_max) = (u16::from_le_bytes([min_lo, min_hi]), u16::from_le_bytes([max_lo, max_hi]));
        let version = PROTOCOL_VERSION.min(theirs_max);
        if MIN_PROTOCOL_VERSION.max(theirs_min) > version {
            return Err(HandshakeError::VersionMismatch {
                ours_min: MIN_PROTOCOL_VERSION,
                ours_max: PROTOCOL_VERSION,
                theirs_min,
                theirs_max,
            });
        }
        let (body, _) = postcard::take_from_bytes::<HelloBody>(&payload[8..]).map_err(|e| malformed("hello", e))?;
        if body.cluster != self.config.cluster {
            return Err(HandshakeError::ClusterMismatch { ours: self.config.cluster.clone(), theirs: body.cluster });
        }
        if body.node.incarnation == self.config.me.incarnation {
            return Err(HandshakeError::SelfConnection);
        }
        let core = ChallengeCore {
            version,
            node: self.config.me.clone(),
            nonce: self.nonce,
            max_frame: self.config.max_frame as u64,
        };
        let mut core_bytes = Vec::new();
        put_postcard(&mut core_bytes, &core);
        let tag = proof(&self.config.secret, RESPONDER_LABEL, payload, &core_bytes)?;
        let reply = handshake_frame(FrameKind::Challenge, |out| {
            out.extend_from_slice(&core_bytes);
            out.extend_from_slice(&tag);
        });
        let established =
            Established { peer: body.node, version, purpose: body.purpose, peer_max_frame: to_usize(body.max_frame) };
        Ok((
            reply,
            ResponderState::AwaitProof {
                hello: payload.to_vec(),
                core: core_bytes,
                established: Box::new(established),
            },
        ))
    }
}
