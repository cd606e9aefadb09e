//! Property tests: every encoder's output decodes back to what was encoded.

use proptest::prelude::*;
use troupe_wire::*;

fn kind() -> impl Strategy<Value = FrameKind> {
    proptest::sample::select(FrameKind::ALL.to_vec())
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct OwnedFrame {
    kind: FrameKind,
    flags: u8,
    channel: u16,
    payload: Vec<u8>,
}

fn frame() -> impl Strategy<Value = OwnedFrame> {
    (kind(), any::<u8>(), any::<u16>(), proptest::collection::vec(any::<u8>(), 0..300))
        .prop_map(|(kind, flags, channel, payload)| OwnedFrame { kind, flags, channel, payload })
}

fn encode_all(frames: &[OwnedFrame]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in frames {
        encode_frame(&mut out, f.kind, f.flags, f.channel, &f.payload, DEFAULT_MAX_FRAME).unwrap();
    }
    out
}

/// Feeds `bytes` to a decoder in chunks of the given sizes (cycled), like a socket would, decoding
/// every whole frame as soon as it is buffered.
fn decode_in_chunks(bytes: &[u8], chunks: &[usize]) -> Vec<OwnedFrame> {
    let decoder = FrameDecoder::new(DEFAULT_MAX_FRAME);
    let mut buf = Vec::new();
    let mut frames = Vec::new();
    let mut pos = 0;
    let mut i = 0;
    while pos < bytes.len() {
        let n = chunks[i % chunks.len()].clamp(1, bytes.len() - pos);
        i += 1;
        buf.extend_from_slice(&bytes[pos..pos + n]);
        pos += n;
        while let Some((frame, consumed)) = decoder.decode(&buf).unwrap() {
            assert_eq!(frame.header.len as usize, frame.payload.len());
            frames.push(OwnedFrame {
                kind: frame.header.kind,
                flags: frame.header.flags,
                channel: frame.header.channel,
                payload: frame.payload.to_vec(),
            });
            buf.drain(..consumed);
        }
    }
    assert!(buf.is_empty(), "{} bytes left over", buf.len());
    frames
}

fn wire_actor_id() -> impl Strategy<Value = WireActorId> {
    (any::<u64>(), any::<u64>()).prop_map(|(node, serial)| WireActorId { node, serial })
}

fn signal() -> impl Strategy<Value = Signal> {
    prop_oneof![
        wire_actor_id().prop_map(|target| Signal::Stop { target }),
        (wire_actor_id(), wire_exit()).prop_map(|(target, reason)| Signal::Down { target, reason }),
    ]
}

fn wire_exit() -> impl Strategy<Value = WireExit> {
    prop_oneof![
        Just(WireExit::Normal),
        Just(WireExit::Stopped),
        Just(WireExit::Killed),
        ".*".prop_map(WireExit::Failed),
        Just(WireExit::NoActor),
        Just(WireExit::NodeDown),
        ".*".prop_map(WireExit::Other),
    ]
}

fn control() -> impl Strategy<Value = Control> {
    prop_oneof![
        wire_actor_id().prop_map(|target| Control::Watch { target }),
        wire_actor_id().prop_map(|target| Control::Unwatch { target }),
        (wire_actor_id(), wire_exit()).prop_map(|(target, reason)| Control::Down { target, reason }),
        wire_actor_id().prop_map(|target| Control::Stop { target }),
        wire_actor_id().prop_map(|target| Control::Kill { target }),
        (any::<u64>(), ".*").prop_map(|(request, name)| Control::Lookup { request, name }),
        (any::<u64>(), proptest::option::of((wire_actor_id(), ".*")))
            .prop_map(|(request, found)| Control::LookupReply { request, found }),
        Just(Control::Goodbye),
        any::<u64>().prop_map(|next| Control::AckFloor { next }),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(|payload| Control::Overlay { payload }),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(|payload| Control::Broadcast { payload }),
        Just(Control::Release),
        (any::<u64>(), any::<u64>(), any::<u8>(), proptest::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(origin, to, ttl, frame)| Control::Relay { origin, to, ttl, frame }),
        any::<u64>().prop_map(|request| Control::ViewRequest { request }),
        (any::<u64>(), proptest::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(request, payload)| Control::ViewReply { request, payload }),
        (wire_actor_id(), wire_actor_id()).prop_map(|(target, from)| Control::Link { target, from }),
        (wire_actor_id(), wire_actor_id()).prop_map(|(target, from)| Control::Unlink { target, from }),
        (any::<u64>(), any::<u64>()).prop_map(|(request, node)| Control::Probe { request, node }),
        (any::<u64>(), any::<u64>(), proptest::collection::vec(".{0,24}", 0..3))
            .prop_map(|(request, node, addrs)| Control::ProbeAt { request, node, addrs }),
        (any::<u64>(), any::<bool>()).prop_map(|(request, reachable)| Control::ProbeReply { request, reachable }),
        any::<u64>().prop_map(|request| Control::RelayPing { request }),
        any::<u64>().prop_map(|request| Control::RelayPong { request }),
        any::<u64>().prop_map(|marker| Control::Marker { marker }),
        (any::<u64>(), wire_actor_id())
            .prop_map(|(marker, target)| Control::After { marker, signal: Signal::Stop { target } }),
        (proptest::collection::vec(any::<u64>(), 0..5), signal())
            .prop_map(|(markers, signal)| Control::AfterAll { markers, signal }),
    ]
}

proptest! {
    #[test]
    fn frames_round_trip_whole(frames in proptest::collection::vec(frame(), 0..8)) {
        let bytes = encode_all(&frames);
        prop_assert_eq!(decode_in_chunks(&bytes, &[usize::MAX]), frames);
    }

    #[test]
    fn frames_round_trip_byte_by_byte(frames in proptest::collection::vec(frame(), 0..5)) {
        let bytes = encode_all(&frames);
        prop_assert_eq!(decode_in_chunks(&bytes, &[1]), frames);
    }

    #[test]
    fn frames_round_trip_arbitrary_splits(
        frames in proptest::collection::vec(frame(), 0..8),
        chunks in proptest::collection::vec(1usize..400, 1..20),
    ) {
        let bytes = encode_all(&frames);
        prop_assert_eq!(decode_in_chunks(&bytes, &chunks), frames);
    }

    #[test]
    fn every_prefix_is_incomplete(f in frame()) {
        let bytes = encode_all(std::slice::from_ref(&f));
        let decoder = FrameDecoder::new(DEFAULT_MAX_FRAME);
        for end in 0..bytes.len() {
            prop_assert_eq!(decoder.decode(&bytes[..end]), Ok(None));
        }
        let (frame, consumed) = decoder.decode(&bytes).unwrap().unwrap();
        prop_assert_eq!(consumed, bytes.len());
        let mut again = Vec::new();
        frame.write(&mut again);
        prop_assert_eq!(again, bytes);
    }

    #[test]
    fn begin_finish_equals_encode(prefix in proptest::collection::vec(any::<u8>(), 0..16), f in frame()) {
        let mut a = prefix.clone();
        encode_frame(&mut a, f.kind, f.flags, f.channel, &f.payload, DEFAULT_MAX_FRAME).unwrap();
        let mut b = prefix;
        let start = begin_frame(&mut b, f.kind, f.flags, f.channel);
        b.extend_from_slice(&f.payload);
        finish_frame(&mut b, start, DEFAULT_MAX_FRAME).unwrap();
        prop_assert_eq!(a, b);
    }

    #[test]
    fn too_large_detected_from_the_header(f in frame(), max in 0usize..300) {
        prop_assume!(f.payload.len() > max);
        let mut out = Vec::new();
        let err = encode_frame(&mut out, f.kind, f.flags, f.channel, &f.payload, max).unwrap_err();
        prop_assert_eq!(&err, &WireError::TooLarge { len: f.payload.len(), max });
        prop_assert!(out.is_empty());
        let start = begin_frame(&mut out, f.kind, f.flags, f.channel);
        out.extend_from_slice(&f.payload);
        prop_assert_eq!(finish_frame(&mut out, start, max), Err(err.clone()));
        prop_assert!(out.is_empty());
        let bytes = encode_all(&[f]);
        prop_assert_eq!(FrameDecoder::new(max).decode(&bytes[..HEADER_LEN]), Err(err));
    }

    #[test]
    fn envelope_round_trips(
        target_node: u64, target_serial: u64, tag: u64, seq: Option<u64>,
        body in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let env = Envelope { target_node, target_serial, type_tag: tag, seq };
        let mut payload = Vec::new();
        env.write(&mut payload);
        prop_assert_eq!(payload.len(), env.encoded_len());
        payload.extend_from_slice(&body);
        let acked = env.frame_flags() & flags::ACK_REQUESTED != 0;
        prop_assert_eq!(acked, seq.is_some());
        let (read, rest) = Envelope::read(&payload, acked).unwrap();
        prop_assert_eq!(read, env);
        prop_assert_eq!(rest, &body[..]);
    }

    #[test]
    fn message_frame_round_trips(env_seq: Option<u64>, channel: u16, body in proptest::collection::vec(any::<u8>(), 0..64)) {
        let env = Envelope { target_node: 7, target_serial: 9, type_tag: 0x5eed_f00d, seq: env_seq };
        let mut out = Vec::new();
        let start = begin_frame(&mut out, FrameKind::Message, env.frame_flags(), channel);
        env.write(&mut out);
        out.extend_from_slice(&body);
        finish_frame(&mut out, start, DEFAULT_MAX_FRAME).unwrap();
        let (frame, _) = FrameDecoder::default().decode(&out).unwrap().unwrap();
        let (read, rest) = Envelope::read(frame.payload, frame.header.flags & flags::ACK_REQUESTED != 0).unwrap();
        prop_assert_eq!(read, env);
        prop_assert_eq!(rest, &body[..]);
    }

    #[test]
    fn reply_header_round_trips(request: u64, status in 0u8..3, body in proptest::collection::vec(any::<u8>(), 0..64)) {
        let status = match status { 0 => ReplyStatus::Ok, 1 => ReplyStatus::NoReply, _ => ReplyStatus::DecodeFailed };
        let header = ReplyHeader { request, status };
        let mut payload = Vec::new();
        header.write(&mut payload);
        prop_assert_eq!(payload.len(), REPLY_HEADER_LEN);
        payload.extend_from_slice(&body);
        let (read, rest) = ReplyHeader::read(&payload).unwrap();
        prop_assert_eq!(read, header);
        prop_assert_eq!(rest, &body[..]);
    }

    #[test]
    fn numbered_control_round_trips(seq: u64, c in control(), junk in proptest::collection::vec(any::<u8>(), 1..4)) {
        let mut payload = Vec::new();
        c.encode_numbered(seq, &mut payload).unwrap();
        prop_assert_eq!(Control::decode_numbered(&payload).unwrap(), (seq, c.clone()));
        // Trailing bytes are refused.
        payload.extend_from_slice(&junk);
        prop_assert!(Control::decode_numbered(&payload).is_err());
    }

    #[test]
    fn acks_round_trip(seqs in proptest::collection::vec(any::<u64>(), 0..200)) {
        let mut out = Vec::new();
        encode_acks(&mut out, &seqs);
        prop_assert_eq!(decode_acks(&out).unwrap(), seqs);
    }

    #[test]
    fn ack_runs_round_trip(runs in proptest::collection::vec((any::<u64>(), 0u64..500), 0..20)) {
        let seqs: Vec<u64> = runs.iter().flat_map(|&(start, n)| (0..n).map_while(move |i| start.checked_add(i))).collect();
        let mut out = Vec::new();
        encode_acks(&mut out, &seqs);
        prop_assert!(out.len() <= 1 + runs.len() * 20);
        prop_assert_eq!(decode_acks(&out).unwrap(), seqs);
    }

    #[test]
    fn control_round_trips(c in control()) {
        let mut out = Vec::new();
        c.encode(&mut out).unwrap();
        prop_assert_eq!(Control::decode(&out).unwrap(), c);
    }
}

#[test]
fn every_control_variant_round_trips() {
    let id = WireActorId { node: u64::MAX, serial: 3 };
    let all = [
        Control::Watch { target: id.clone() },
        Control::Unwatch { target: id.clone() },
        Control::Down { target: id.clone(), reason: WireExit::Normal },
        Control::Down { target: id.clone(), reason: WireExit::Stopped },
        Control::Down { target: id.clone(), reason: WireExit::Killed },
        Control::Down { target: id.clone(), reason: WireExit::Failed("boom".into()) },
        Control::Down { target: id.clone(), reason: WireExit::NoActor },
        Control::Down { target: id.clone(), reason: WireExit::NodeDown },
        Control::Down { target: id.clone(), reason: WireExit::Other("why".into()) },
        Control::Stop { target: id.clone() },
        Control::Kill { target: id.clone() },
        Control::Lookup { request: 1, name: "counter".into() },
        Control::LookupReply { request: 1, found: Some((id, "app::CounterMsg".into())) },
        Control::LookupReply { request: 2, found: None },
        Control::Goodbye,
        Control::AckFloor { next: u64::MAX },
        Control::Overlay { payload: vec![1, 2, 3] },
        Control::Broadcast { payload: vec![] },
        Control::Release,
        Control::Relay { origin: 1, to: u64::MAX, ttl: 5, frame: vec![9; 20] },
        Control::ViewRequest { request: 7 },
        Control::ViewReply { request: 7, payload: vec![0; 3] },
        Control::Link { target: WireActorId { node: u64::MAX, serial: 3 }, from: WireActorId { node: 1, serial: 2 } },
        Control::Unlink { target: WireActorId { node: 1, serial: 2 }, from: WireActorId { node: u64::MAX, serial: 3 } },
        Control::Probe { request: 3, node: u64::MAX },
        Control::ProbeAt { request: 4, node: 9, addrs: vec!["127.0.0.1:7000".into()] },
        Control::ProbeReply { request: 3, reachable: true },
        Control::ProbeReply { request: 4, reachable: false },
    ];
    for c in all {
        let mut out = vec![0xAA];
        c.encode(&mut out).unwrap();
        assert_eq!(out[0], 0xAA, "encode appends");
        assert_eq!(Control::decode(&out[1..]).unwrap(), c);
    }
}

#[test]
fn oversized_frame_detected_from_header_alone() {
    let header = FrameHeader { kind: FrameKind::Message, flags: 0, channel: 1, len: u32::MAX }.to_bytes();
    let decoder = FrameDecoder::new(DEFAULT_MAX_FRAME);
    assert_eq!(decoder.decode(&header), Err(WireError::TooLarge { len: u32::MAX as usize, max: DEFAULT_MAX_FRAME }));
    assert_eq!(decoder.decode(&header[..HEADER_LEN - 1]), Ok(None));
    let just_fits =
        FrameHeader { kind: FrameKind::Message, flags: 0, channel: 1, len: DEFAULT_MAX_FRAME as u32 }.to_bytes();
    assert_eq!(decoder.decode(&just_fits), Ok(None));
}
