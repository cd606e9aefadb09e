//! Property tests: the decoders are total on arbitrary input (they may fail, never panic).

use proptest::prelude::*;
use troupe_wire::*;

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

/// Bytes that often look like frames: a plausible header followed by random bytes.
fn framish() -> impl Strategy<Value = Vec<u8>> {
    (proptest::sample::select(FrameKind::ALL.to_vec()), any::<u8>(), any::<u16>(), bytes(200), 0u32..260).prop_map(
        |(kind, flags, channel, payload, len)| {
            let mut out = FrameHeader { kind, flags, channel, len }.to_bytes().to_vec();
            out.extend_from_slice(&payload);
            out
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn frame_decoder_is_total(buf in prop_oneof![bytes(300), framish()], max in prop_oneof![Just(DEFAULT_MAX_FRAME), 0usize..300]) {
        let decoder = FrameDecoder::new(max);
        let mut rest = &buf[..];
        while let Ok(Some((frame, consumed))) = decoder.decode(rest) {
            prop_assert!(consumed >= HEADER_LEN && consumed <= rest.len());
            prop_assert_eq!(frame.payload.len(), frame.header.len as usize);
            prop_assert!(frame.payload.len() <= max);
            rest = &rest[consumed..];
        }
    }

    #[test]
    fn payload_decoders_are_total(payload in bytes(300)) {
        let _ = Envelope::read(&payload, false);
        let _ = Envelope::read(&payload, true);
        let _ = ReplyHeader::read(&payload);
        if let Ok((postcard, attached)) = split_attached(&payload) {
            prop_assert!(postcard.len() + attached.len() + ATTACHED_TRAILER_LEN == payload.len());
            prop_assert!(attached.start == postcard.len());
        }
        if let Ok(seqs) = decode_acks(&payload) {
            prop_assert!(seqs.len() <= MAX_ACKS);
        }
        if let Ok(c) = Control::decode(&payload) {
            // Whatever decodes must re-encode to something that decodes to the same value.
            let mut out = Vec::new();
            c.encode(&mut out).unwrap();
            prop_assert_eq!(Control::decode(&out).unwrap(), c);
        }
        let _ = decode_reject(&payload);
    }

    #[test]
    fn ack_decoder_is_total_on_varint_soup(payload in proptest::collection::vec(prop_oneof![Just(0x80u8), Just(0xffu8), Just(0u8), Just(1u8), any::<u8>()], 0..40)) {
        if let Ok(seqs) = decode_acks(&payload) {
            prop_assert!(seqs.len() <= MAX_ACKS);
            let mut out = Vec::new();
            encode_acks(&mut out, &seqs);
            prop_assert_eq!(decode_acks(&out).unwrap(), seqs);
        }
    }
}
