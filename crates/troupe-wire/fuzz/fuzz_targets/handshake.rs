//! Feeds frames decoded from arbitrary bytes to both handshake state machines, from several starting
//! points (fresh, after a genuine Hello, after a genuine Challenge, after completion).
#![no_main]

use libfuzzer_sys::fuzz_target;
use troupe_wire::*;

fn config(name: &str, incarnation: u64) -> HandshakeConfig {
    HandshakeConfig {
        cluster: "fuzz".to_string(),
        secret: b"fuzz secret".to_vec(),
        me: NodeInfo { name: name.to_string(), incarnation, listen: vec!["127.0.0.1:4000".to_string()] },
        max_frame: DEFAULT_MAX_FRAME,
    }
}

const PURPOSE: ConnPurpose = ConnPurpose { channel: 0, lane: 0 };

fn frame(bytes: &[u8]) -> Frame<'_> {
    FrameDecoder::new(MAX_HANDSHAKE_PAYLOAD).decode(bytes).ok().flatten().expect("machines emit whole frames").0
}

fn expect_send(step: HandshakeStep) -> Vec<u8> {
    match step {
        HandshakeStep::Send(bytes) => bytes,
        other => panic!("genuine handshake step failed: {other:?}"),
    }
}

/// Checks what a machine emitted is well formed.
fn check(step: HandshakeStep) {
    match step {
        HandshakeStep::Send(bytes) => assert!(!bytes.is_empty()),
        HandshakeStep::Done(bytes, _) => {
            if !bytes.is_empty() {
                assert_eq!(frame(&bytes).header.kind, FrameKind::Welcome);
            }
        }
        HandshakeStep::Fail(bytes, _) => {
            if !bytes.is_empty() {
                assert_eq!(frame(&bytes).header.kind, FrameKind::Reject);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, data)) = data.split_first() else { return };
    let (mut init, hello) = Initiator::start(config("alice", 1), PURPOSE, [1; 32]);
    let mut resp = Responder::new(config("bob", 2), [2; 32]);
    match mode % 4 {
        0 => {}
        1 => {
            // The responder has seen a genuine Hello and waits for the Proof.
            expect_send(resp.receive(frame(&hello)));
        }
        2 => {
            // The initiator has sent its Proof and waits for Welcome.
            let challenge = expect_send(resp.receive(frame(&hello)));
            expect_send(init.receive(frame(&challenge)));
        }
        _ => {
            // Both are done.
            let challenge = expect_send(resp.receive(frame(&hello)));
            let proof = expect_send(init.receive(frame(&challenge)));
            let HandshakeStep::Done(welcome, _) = resp.receive(frame(&proof)) else { panic!("responder not done") };
            let HandshakeStep::Done(_, _) = init.receive(frame(&welcome)) else { panic!("initiator not done") };
        }
    }
    let decoder = FrameDecoder::new(MAX_HANDSHAKE_PAYLOAD);
    let mut rest = data;
    while let Ok(Some((f, consumed))) = decoder.decode(rest) {
        check(resp.receive(f));
        check(init.receive(f));
        rest = &rest[consumed..];
    }
});
