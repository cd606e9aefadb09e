//! Handshake scenarios: success, authentication failures, mismatches, tampering, replay, and
//! arbitrary frames fed to both state machines.

use hmac::{Hmac, Mac};
use proptest::prelude::*;
use serde::Serialize;
use sha2::Sha256;
use troupe_wire::*;

const SECRET: &[u8] = b"correct horse battery staple";

fn config(name: &str, incarnation: u64, cluster: &str, secret: &[u8]) -> HandshakeConfig {
    HandshakeConfig {
        cluster: cluster.to_string(),
        secret: secret.to_vec(),
        me: NodeInfo { name: name.to_string(), incarnation, listen: vec![format!("127.0.0.1:{}", 7000 + incarnation)] },
        max_frame: 1 << 20 | incarnation as usize,
    }
}

fn alice() -> HandshakeConfig {
    config("alice", 1, "prod", SECRET)
}

fn bob() -> HandshakeConfig {
    config("bob", 2, "prod", SECRET)
}

const PURPOSE: ConnPurpose = ConnPurpose { channel: 3, lane: 7 };

/// Decodes exactly one frame from `bytes`.
fn one_frame(bytes: &[u8]) -> Frame<'_> {
    let (frame, consumed) = FrameDecoder::new(MAX_HANDSHAKE_PAYLOAD).decode(bytes).unwrap().unwrap();
    assert_eq!(consumed, bytes.len(), "one whole frame");
    assert_eq!((frame.header.channel, frame.header.flags), (0, 0), "handshake frames use channel 0, flags 0");
    frame
}

fn sent(step: HandshakeStep) -> Vec<u8> {
    match step {
        HandshakeStep::Send(bytes) => bytes,
        other => panic!("expected Send, got {other:?}"),
    }
}

fn failed(step: HandshakeStep) -> (Vec<u8>, HandshakeError) {
    match step {
        HandshakeStep::Fail(bytes, error) => (bytes, error),
        other => panic!("expected Fail, got {other:?}"),
    }
}

/// Asserts `bytes` is a Reject frame and returns its reason.
fn reject_reason(bytes: &[u8]) -> String {
    let frame = one_frame(bytes);
    assert_eq!(frame.header.kind, FrameKind::Reject);
    decode_reject(frame.payload)
}

/// The outcome of a handshake run to completion between two machines.
#[derive(Debug)]
struct Outcome {
    initiator: Result<Established, HandshakeError>,
    responder: Result<Established, HandshakeError>,
}

/// Runs a whole handshake, shuttling frames between the two machines.
fn run(initiator: HandshakeConfig, responder: HandshakeConfig) -> Outcome {
    let (mut init, hello) = Initiator::start(initiator, PURPOSE, [1; 32]);
    let mut resp = Responder::new(responder, [2; 32]);
    let mut to_responder = hello;
    let mut init_result = None;
    let mut resp_result = None;
    for _ in 0..4 {
        if to_responder.is_empty() {
            break;
        }
        let to_initiator = match resp.receive(one_frame(&to_responder)) {
            HandshakeStep::Send(b) => b,
            HandshakeStep::Done(b, e) => {
                resp_result = Some(Ok(e));
                b
            }
            HandshakeStep::Fail(b, e) => {
                resp_result = Some(Err(e));
                b
            }
        };
        if to_initiator.is_empty() {
            break;
        }
        to_responder = match init.receive(one_frame(&to_initiator)) {
            HandshakeStep::Send(b) => b,
            HandshakeStep::Done(b, e) => {
                init_result = Some(Ok(e));
                b
            }
            HandshakeStep::Fail(b, e) => {
                init_result = Some(Err(e));
                b
            }
        };
    }
    Outcome { initiator: init_result.expect("initiator finished"), responder: resp_result.expect("responder finished") }
}

/// Computes a proof the way the module documentation specifies it.
fn documented_proof(secret: &[u8], label: &[u8], hello: &[u8], core: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap();
    mac.update(b"troupe-handshake-v1\0");
    mac.update(label);
    mac.update(&(hello.len() as u64).to_le_bytes());
    mac.update(hello);
    mac.update(&(core.len() as u64).to_le_bytes());
    mac.update(core);
    mac.finalize().into_bytes().into()
}

/// Mirror of the documented Challenge core layout.
#[derive(Serialize)]
struct ChallengeCore {
    version: u16,
    node: NodeInfo,
    nonce: [u8; 32],
    max_frame: u64,
}

fn frame_bytes(kind: FrameKind, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(&mut out, kind, 0, 0, payload, MAX_HANDSHAKE_PAYLOAD).unwrap();
    out
}

#[test]
fn success_both_ways() {
    let outcome = run(alice(), bob());
    let a = outcome.initiator.unwrap();
    let b = outcome.responder.unwrap();
    assert_eq!(
        a,
        Established { peer: bob().me, version: PROTOCOL_VERSION, purpose: PURPOSE, peer_max_frame: bob().max_frame }
    );
    assert_eq!(
        b,
        Established {
            peer: alice().me,
            version: PROTOCOL_VERSION,
            purpose: PURPOSE,
            peer_max_frame: alice().max_frame
        }
    );

    // And the other way round.
    let outcome = run(bob(), alice());
    assert_eq!(outcome.initiator.unwrap().peer, alice().me);
    assert_eq!(outcome.responder.unwrap().peer, bob().me);
}

#[test]
fn step_by_step_frames() {
    let (mut init, hello) = Initiator::start(alice(), PURPOSE, [1; 32]);
    let hello_frame = one_frame(&hello);
    assert_eq!(hello_frame.header.kind, FrameKind::Hello);
    assert_eq!(&hello_frame.payload[..4], &MAGIC);
    assert_eq!(&hello_frame.payload[4..8], &[MIN_PROTOCOL_VERSION as u8, 0, PROTOCOL_VERSION as u8, 0]);
    let mut resp = Responder::new(bob(), [2; 32]);
    let challenge = sent(resp.receive(hello_frame));
    assert_eq!(one_frame(&challenge).header.kind, FrameKind::Challenge);
    let proof = sent(init.receive(one_frame(&challenge)));
    assert_eq!(one_frame(&proof).header.kind, FrameKind::Proof);
    assert_eq!(one_frame(&proof).payload.len(), 32);
    let HandshakeStep::Done(welcome, established) = resp.receive(one_frame(&proof)) else {
        panic!("responder not done")
    };
    assert_eq!(established.peer, alice().me);
    assert!(resp.is_finished());
    let HandshakeStep::Done(nothing, established) = init.receive(one_frame(&welcome)) else {
        panic!("initiator not done")
    };
    assert!(nothing.is_empty());
    assert_eq!(established.peer, bob().me);
    assert!(init.is_finished());

    // Anything after completion fails, and sends nothing.
    let (bytes, error) = failed(init.receive(one_frame(&welcome)));
    assert!(bytes.is_empty());
    assert!(matches!(error, HandshakeError::Unexpected { got: FrameKind::Welcome, .. }));
    let (bytes, error) = failed(resp.receive(one_frame(&proof)));
    assert!(bytes.is_empty());
    assert!(matches!(error, HandshakeError::Unexpected { got: FrameKind::Proof, .. }));
}

#[test]
fn proofs_follow_the_documented_transcript() {
    let (_, hello) = Initiator::start(alice(), PURPOSE, [1; 32]);
    let hello_payload = one_frame(&hello).payload.to_vec();
    let mut resp = Responder::new(bob(), [2; 32]);
    let challenge = sent(resp.receive(one_frame(&hello)));
    let payload = one_frame(&challenge).payload;
    let (core, tag) = payload.split_at(payload.len() - 32);
    let expected_core = postcard::to_allocvec(&ChallengeCore {
        version: PROTOCOL_VERSION,
        node: bob().me,
        nonce: [2; 32],
        max_frame: bob().max_frame as u64,
    })
    .unwrap();
    assert_eq!(core, &expected_core[..]);
    assert_eq!(tag, documented_proof(SECRET, b"troupe-responder", &hello_payload, core));
    // A proof computed independently from the documentation is accepted.
    let proof = documented_proof(SECRET, b"troupe-initiator", &hello_payload, core);
    assert!(matches!(resp.receive(one_frame(&frame_bytes(FrameKind::Proof, &proof))), HandshakeStep::Done(..)));
}

#[test]
fn responder_with_wrong_secret_is_detected_by_the_initiator() {
    let outcome = run(alice(), config("bob", 2, "prod", b"wrong"));
    assert_eq!(outcome.initiator.unwrap_err(), HandshakeError::BadProof);
    assert_eq!(outcome.responder.unwrap_err(), HandshakeError::Rejected(reject::BAD_PROOF.to_string()));
}

#[test]
fn initiator_with_wrong_secret_is_detected() {
    // A genuine initiator with the wrong secret notices first (the responder proves first) ...
    let outcome = run(config("alice", 1, "prod", b"wrong"), bob());
    assert_eq!(outcome.initiator.unwrap_err(), HandshakeError::BadProof);
    assert_eq!(outcome.responder.unwrap_err(), HandshakeError::Rejected(reject::BAD_PROOF.to_string()));
}

#[test]
fn responder_detects_an_initiator_without_the_secret() {
    // ... so play an initiator that skips verification and proves with the wrong secret.
    let (_, hello) = Initiator::start(config("mallory", 9, "prod", b"wrong"), PURPOSE, [1; 32]);
    let hello_payload = one_frame(&hello).payload.to_vec();
    let mut resp = Responder::new(bob(), [2; 32]);
    let challenge = sent(resp.receive(one_frame(&hello)));
    let payload = one_frame(&challenge).payload;
    let core = &payload[..payload.len() - 32];
    let forged = documented_proof(b"wrong", b"troupe-initiator", &hello_payload, core);
    let (bytes, error) = failed(resp.receive(one_frame(&frame_bytes(FrameKind::Proof, &forged))));
    assert_eq!(error, HandshakeError::BadProof);
    assert_eq!(reject_reason(&bytes), reject::BAD_PROOF);

    // Reflecting the responder's own proof back fails too (role labels differ).
    let mut resp = Responder::new(bob(), [2; 32]);
    let challenge = sent(resp.receive(one_frame(&hello)));
    let payload = one_frame(&challenge).payload;
    let reflected = &payload[payload.len() - 32..];
    let (_, error) = failed(resp.receive(one_frame(&frame_bytes(FrameKind::Proof, reflected))));
    assert_eq!(error, HandshakeError::BadProof);

    // A proof of the wrong length is malformed.
    let mut resp = Responder::new(bob(), [2; 32]);
    sent(resp.receive(one_frame(&hello)));
    let (bytes, error) = failed(resp.receive(one_frame(&frame_bytes(FrameKind::Proof, &[0; 31]))));
    assert!(matches!(error, HandshakeError::Wire(WireError::Malformed { .. })));
    assert_eq!(reject_reason(&bytes), reject::MALFORMED);
}

#[test]
fn cluster_mismatch() {
    let outcome = run(alice(), config("bob", 2, "staging", SECRET));
    assert_eq!(
        outcome.responder.unwrap_err(),
        HandshakeError::ClusterMismatch { ours: "staging".into(), theirs: "prod".into() }
    );
    assert_eq!(outcome.initiator.unwrap_err(), HandshakeError::Rejected(reject::CLUSTER_MISMATCH.into()));
}

/// A Hello from alice with its version range patched.
fn hello_with_range(min: u16, max: u16) -> Vec<u8> {
    let (_, mut hello) = Initiator::start(alice(), PURPOSE, [1; 32]);
    hello[HEADER_LEN + 4..HEADER_LEN + 6].copy_from_slice(&min.to_le_bytes());
    hello[HEADER_LEN + 6..HEADER_LEN + 8].copy_from_slice(&max.to_le_bytes());
    hello
}

#[test]
fn no_common_version() {
    for (min, max) in [(PROTOCOL_VERSION + 1, PROTOCOL_VERSION + 5), (0, MIN_PROTOCOL_VERSION - 1), (5, 2)] {
        let mut resp = Responder::new(bob(), [2; 32]);
        let (bytes, error) = failed(resp.receive(one_frame(&hello_with_range(min, max))));
        assert_eq!(
            error,
            HandshakeError::VersionMismatch {
                ours_min: MIN_PROTOCOL_VERSION,
                ours_max: PROTOCOL_VERSION,
                theirs_min: min,
                theirs_max: max
            }
        );
        assert_eq!(reject_reason(&bytes), reject::VERSION_MISMATCH);
    }
}

#[test]
fn overlapping_version_range_picks_the_highest_common() {
    let mut resp = Responder::new(bob(), [2; 32]);
    let challenge = sent(resp.receive(one_frame(&hello_with_range(0, PROTOCOL_VERSION + 10))));
    let payload = one_frame(&challenge).payload;
    let version = postcard::take_from_bytes::<u16>(payload).unwrap().0;
    assert_eq!(version, PROTOCOL_VERSION);
}

#[test]
fn tampered_hello_is_detected() {
    // A man in the middle widens alice's version range: bob answers, but alice sees the transcript changed.
    let (mut init, _) = Initiator::start(alice(), PURPOSE, [1; 32]);
    let mut resp = Responder::new(bob(), [2; 32]);
    let challenge = sent(resp.receive(one_frame(&hello_with_range(0, PROTOCOL_VERSION + 10))));
    let (bytes, error) = failed(init.receive(one_frame(&challenge)));
    assert_eq!(error, HandshakeError::BadProof);
    assert_eq!(reject_reason(&bytes), reject::BAD_PROOF);
}

#[test]
fn initiator_rejects_a_version_outside_its_range() {
    let (mut init, hello) = Initiator::start(alice(), PURPOSE, [1; 32]);
    let hello_payload = one_frame(&hello).payload.to_vec();
    let core = postcard::to_allocvec(&ChallengeCore {
        version: PROTOCOL_VERSION + 1,
        node: bob().me,
        nonce: [2; 32],
        max_frame: 1024,
    })
    .unwrap();
    let mut payload = core.clone();
    payload.extend_from_slice(&documented_proof(SECRET, b"troupe-responder", &hello_payload, &core));
    let (bytes, error) = failed(init.receive(one_frame(&frame_bytes(FrameKind::Challenge, &payload))));
    assert!(matches!(error, HandshakeError::VersionMismatch { theirs_min, .. } if theirs_min == PROTOCOL_VERSION + 1));
    assert_eq!(reject_reason(&bytes), reject::VERSION_MISMATCH);
}

#[test]
fn bad_magic() {
    let (_, mut hello) = Initiator::start(alice(), PURPOSE, [1; 32]);
    hello[HEADER_LEN] ^= 0xff;
    let mut resp = Responder::new(bob(), [2; 32]);
    let (bytes, error) = failed(resp.receive(one_frame(&hello)));
    assert_eq!(error, HandshakeError::BadMagic);
    assert_eq!(reject_reason(&bytes), reject::BAD_MAGIC);
    let mut resp = Responder::new(bob(), [2; 32]);
    let (_, error) = failed(resp.receive(one_frame(&frame_bytes(FrameKind::Hello, b"TR"))));
    assert_eq!(error, HandshakeError::BadMagic);
}

#[test]
fn self_connection() {
    let me = alice();
    let outcome = run(me.clone(), me);
    let responder_error = outcome.responder.unwrap_err();
    assert_eq!(responder_error, HandshakeError::SelfConnection);
    let initiator_error = outcome.initiator.unwrap_err();
    assert_eq!(initiator_error, HandshakeError::Rejected(reject::SELF_CONNECTION.into()));
    assert!(responder_error.is_self_connection() && initiator_error.is_self_connection());
    assert!(!HandshakeError::BadProof.is_self_connection());
}

#[test]
fn initiator_detects_a_self_connection_too() {
    // A relay that points alice's dial back at alice's own responder, which (hypothetically) did not check.
    let (mut init, hello) = Initiator::start(alice(), PURPOSE, [1; 32]);
    let hello_payload = one_frame(&hello).payload.to_vec();
    let core = postcard::to_allocvec(&ChallengeCore {
        version: PROTOCOL_VERSION,
        node: alice().me,
        nonce: [2; 32],
        max_frame: 1024,
    })
    .unwrap();
    let mut payload = core.clone();
    payload.extend_from_slice(&documented_proof(SECRET, b"troupe-responder", &hello_payload, &core));
    let (bytes, error) = failed(init.receive(one_frame(&frame_bytes(FrameKind::Challenge, &payload))));
    assert_eq!(error, HandshakeError::SelfConnection);
    assert_eq!(reject_reason(&bytes), reject::SELF_CONNECTION);
}

#[test]
fn every_tampered_challenge_byte_fails() {
    let (_, hello) = Initiator::start(alice(), PURPOSE, [1; 32]);
    let challenge = sent(Responder::new(bob(), [2; 32]).receive(one_frame(&hello)));
    for i in HEADER_LEN..challenge.len() {
        for bit in [0x01, 0x80] {
            let mut tampered = challenge.clone();
            tampered[i] ^= bit;
            let (mut init, _) = Initiator::start(alice(), PURPOSE, [1; 32]);
            let (bytes, _) = failed(init.receive(one_frame(&tampered)));
            let reason = reject_reason(&bytes);
            assert!(
                [reject::BAD_PROOF, reject::MALFORMED, reject::VERSION_MISMATCH].contains(&reason.as_str()),
                "byte {i}: {reason}"
            );
        }
    }
}

#[test]
fn every_tampered_proof_byte_fails() {
    let (mut init, hello) = Initiator::start(alice(), PURPOSE, [1; 32]);
    let challenge = sent(Responder::new(bob(), [2; 32]).receive(one_frame(&hello)));
    let proof = sent(init.receive(one_frame(&challenge)));
    for i in HEADER_LEN..proof.len() {
        let mut tampered = proof.clone();
        tampered[i] ^= 0x01;
        let mut resp = Responder::new(bob(), [2; 32]);
        sent(resp.receive(one_frame(&hello)));
        let (bytes, error) = failed(resp.receive(one_frame(&tampered)));
        assert_eq!(error, HandshakeError::BadProof, "byte {i}");
        assert_eq!(reject_reason(&bytes), reject::BAD_PROOF);
    }
    // The untampered proof is accepted.
    let mut resp = Responder::new(bob(), [2; 32]);
    sent(resp.receive(one_frame(&hello)));
    assert!(matches!(resp.receive(one_frame(&proof)), HandshakeStep::Done(..)));
}

#[test]
fn replayed_proof_fails_against_a_new_nonce() {
    // Record a whole successful session.
    let (mut init, hello) = Initiator::start(alice(), PURPOSE, [1; 32]);
    let mut resp = Responder::new(bob(), [2; 32]);
    let challenge = sent(resp.receive(one_frame(&hello)));
    let proof = sent(init.receive(one_frame(&challenge)));
    assert!(matches!(resp.receive(one_frame(&proof)), HandshakeStep::Done(..)));

    // Replay the recorded Hello and Proof against bob with a fresh nonce.
    let mut resp = Responder::new(bob(), [3; 32]);
    sent(resp.receive(one_frame(&hello)));
    let (bytes, error) = failed(resp.receive(one_frame(&proof)));
    assert_eq!(error, HandshakeError::BadProof);
    assert_eq!(reject_reason(&bytes), reject::BAD_PROOF);

    // Replaying the recorded Challenge to a new dial (fresh initiator nonce) fails as well.
    let (mut init, _) = Initiator::start(alice(), PURPOSE, [4; 32]);
    assert_eq!(failed(init.receive(one_frame(&challenge))).1, HandshakeError::BadProof);
}

#[test]
fn reject_at_any_point_fails_with_the_reason() {
    let reject = encode_reject("go away");
    let (mut init, hello) = Initiator::start(alice(), PURPOSE, [1; 32]);
    let (bytes, error) = failed(init.receive(one_frame(&reject)));
    assert!(bytes.is_empty());
    assert_eq!(error, HandshakeError::Rejected("go away".into()));

    let mut resp = Responder::new(bob(), [2; 32]);
    let (bytes, error) = failed(resp.receive(one_frame(&reject)));
    assert!(bytes.is_empty());
    assert_eq!(error, HandshakeError::Rejected("go away".into()));

    // After the Proof, waiting for Welcome.
    let (mut init, _) = Initiator::start(alice(), PURPOSE, [1; 32]);
    let mut resp = Responder::new(bob(), [2; 32]);
    let challenge = sent(resp.receive(one_frame(&hello)));
    sent(init.receive(one_frame(&challenge)));
    assert_eq!(failed(init.receive(one_frame(&reject))).1, HandshakeError::Rejected("go away".into()));
    // Waiting for the Proof.
    assert_eq!(failed(resp.receive(one_frame(&reject))).1, HandshakeError::Rejected("go away".into()));
}

#[test]
fn unexpected_frames_fail_with_a_reject() {
    let (mut init, hello) = Initiator::start(alice(), PURPOSE, [1; 32]);
    let (bytes, error) = failed(init.receive(one_frame(&hello)));
    assert_eq!(error, HandshakeError::Unexpected { got: FrameKind::Hello, expected: "Challenge" });
    assert_eq!(reject_reason(&bytes), reject::UNEXPECTED);
    // The machine is finished: later frames fail without sending anything.
    assert!(failed(init.receive(one_frame(&hello))).0.is_empty());

    let mut resp = Responder::new(bob(), [2; 32]);
    let ping = frame_bytes(FrameKind::Ping, &[]);
    let (bytes, error) = failed(resp.receive(one_frame(&ping)));
    assert_eq!(error, HandshakeError::Unexpected { got: FrameKind::Ping, expected: "Hello" });
    assert_eq!(reject_reason(&bytes), reject::UNEXPECTED);
}

#[test]
fn oversized_handshake_frame_fails() {
    let mut resp = Responder::new(bob(), [2; 32]);
    let big = frame_bytes(FrameKind::Hello, &vec![0; MAX_HANDSHAKE_PAYLOAD]);
    assert!(matches!(failed(resp.receive(one_frame(&big))).1, HandshakeError::BadMagic));
    let mut too_big = Vec::new();
    encode_frame(&mut too_big, FrameKind::Hello, 0, 0, &vec![0; MAX_HANDSHAKE_PAYLOAD + 1], usize::MAX).unwrap();
    let (frame, _) = FrameDecoder::default().decode(&too_big).unwrap().unwrap();
    let mut resp = Responder::new(bob(), [2; 32]);
    let (bytes, error) = failed(resp.receive(frame));
    assert!(matches!(error, HandshakeError::Wire(WireError::TooLarge { .. })));
    assert_eq!(reject_reason(&bytes), reject::TOO_LARGE);
}

#[test]
fn debug_does_not_leak_the_secret() {
    let text = format!("{:?} {:?}", alice(), Responder::new(alice(), [0; 32]));
    assert!(!text.contains("correct horse"), "{text}");
    let (init, _) = Initiator::start(alice(), PURPOSE, [0; 32]);
    assert!(!format!("{init:?}").contains("correct horse"));
    let secret_bytes = format!("{:?}", SECRET.to_vec());
    assert!(!text.contains(&secret_bytes[1..20]));
}

fn arbitrary_frame() -> impl Strategy<Value = (FrameKind, u8, u16, Vec<u8>)> {
    (
        proptest::sample::select(FrameKind::ALL.to_vec()),
        any::<u8>(),
        any::<u16>(),
        proptest::collection::vec(any::<u8>(), 0..200),
    )
}

fn feed(frames: &[(FrameKind, u8, u16, Vec<u8>)], mut receive: impl FnMut(Frame<'_>) -> HandshakeStep) {
    for (kind, flags, channel, payload) in frames {
        let header = FrameHeader { kind: *kind, flags: *flags, channel: *channel, len: payload.len() as u32 };
        match receive(Frame { header, payload }) {
            HandshakeStep::Send(bytes) | HandshakeStep::Done(bytes, _) => {
                assert!(!bytes.is_empty() || *kind == FrameKind::Welcome)
            }
            HandshakeStep::Fail(bytes, _) => {
                assert!(bytes.is_empty() || one_frame(&bytes).header.kind == FrameKind::Reject)
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn machines_never_panic_on_arbitrary_frames(frames in proptest::collection::vec(arbitrary_frame(), 0..6), genuine_hello: bool) {
        let mut resp = Responder::new(bob(), [2; 32]);
        let (mut init, hello) = Initiator::start(alice(), PURPOSE, [1; 32]);
        if genuine_hello {
            sent(resp.receive(one_frame(&hello)));
        }
        feed(&frames, |f| resp.receive(f));
        feed(&frames, |f| init.receive(f));
    }

    #[test]
    fn machines_never_panic_on_mutated_genuine_frames(index in any::<prop::sample::Index>(), xor in 1u8..=255) {
        let (mut init, hello) = Initiator::start(alice(), PURPOSE, [1; 32]);
        let mut resp = Responder::new(bob(), [2; 32]);
        let mut hello = hello;
        let i = HEADER_LEN + index.index(hello.len() - HEADER_LEN);
        hello[i] ^= xor;
        match resp.receive(one_frame(&hello)) {
            HandshakeStep::Send(challenge) => {
                // Either the mutation is harmless to the responder, but the initiator catches it.
                let (bytes, _) = failed(init.receive(one_frame(&challenge)));
                prop_assert_eq!(one_frame(&bytes).header.kind, FrameKind::Reject);
            }
            HandshakeStep::Fail(bytes, _) => prop_assert_eq!(one_frame(&bytes).header.kind, FrameKind::Reject),
            HandshakeStep::Done(..) => prop_assert!(false, "done after a Hello"),
        }
    }
}
