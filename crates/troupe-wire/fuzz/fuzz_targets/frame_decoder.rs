//! Decodes every frame it can from arbitrary bytes, then runs the payload decoders on each payload and
//! checks that whatever decodes re-encodes to an equivalent value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use troupe_wire::*;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the decoder's limit, so TooLarge paths are exercised too.
    let Some((&limit, data)) = data.split_first() else { return };
    let max = if limit == 0xff { DEFAULT_MAX_FRAME } else { usize::from(limit) * 4 };
    let decoder = FrameDecoder::new(max);
    let mut rest = data;
    loop {
        match decoder.decode(rest) {
            Ok(Some((frame, consumed))) => {
                assert!(consumed >= HEADER_LEN && consumed <= rest.len());
                assert_eq!(frame.payload.len(), frame.header.len as usize);
                assert!(frame.payload.len() <= max);
                let mut again = Vec::new();
                frame.write(&mut again);
                assert_eq!(&again[..], &rest[..consumed]);
                check_payload(frame);
                rest = &rest[consumed..];
            }
            Ok(None) => {
                // Need more bytes: the header or the payload is incomplete.
                let header = decoder.decode_header(rest).expect("header decoded before");
                assert!(header.is_none_or(|h| rest.len() < HEADER_LEN + h.len as usize));
                break;
            }
            Err(_) => break,
        }
    }
    // The payload decoders must also be total on the raw input.
    check_payload(Frame {
        header: FrameHeader { kind: FrameKind::Message, flags: 0, channel: 0, len: 0 },
        payload: data,
    });
});

fn check_payload(frame: Frame<'_>) {
    let payload = frame.payload;
    for acked in [false, true] {
        if let Ok((env, body)) = Envelope::read(payload, acked) {
            assert_eq!(env.seq.is_some(), acked);
            let mut out = Vec::new();
            env.write(&mut out);
            out.extend_from_slice(body);
            assert_eq!(&out[..], payload);
        }
    }
    if let Ok((header, body)) = ReplyHeader::read(payload) {
        let mut out = Vec::new();
        header.write(&mut out);
        out.extend_from_slice(body);
        assert_eq!(&out[..], payload);
    }
    if let Ok(seqs) = decode_acks(payload) {
        assert!(seqs.len() <= MAX_ACKS);
        let mut out = Vec::new();
        encode_acks(&mut out, &seqs);
        assert_eq!(decode_acks(&out).as_ref(), Ok(&seqs));
    }
    if let Ok(control) = Control::decode(payload) {
        let mut out = Vec::new();
        control.encode(&mut out).expect("control messages encode");
        assert_eq!(Control::decode(&out).as_ref(), Ok(&control));
    }
    if let Ok((postcard, attached)) = split_attached(payload) {
        assert_eq!(postcard.len() + attached.len() + ATTACHED_TRAILER_LEN, payload.len());
        let mut out = payload[..attached.end].to_vec();
        write_attached_trailer(&mut out, postcard.len() as u32);
        assert_eq!(&out[..], payload);
    }
    let _ = decode_reject(payload);
}
