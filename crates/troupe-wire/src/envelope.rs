//! Message envelopes and reply headers: fixed little-endian layouts on the hot path.
//!
//! Message frame payload:
//!
//! ```text
//! [target_node: u64][target_serial: u64][type_tag: u64]([seq: u64] if the frame has ACK_REQUESTED)[body]
//! ```
//!
//! Reply frame payload:
//!
//! ```text
//! [request: u64][status: u8][body]
//! ```
//!
//! A body is postcard bytes. When the frame has [`flags::ATTACHED`], large byte payloads travel
//! outside the postcard part, so the sender never copies them into its buffer and the receiver
//! can hand out slices of the frame:
//!
//! ```text
//! [postcard: n bytes][attached payloads, in serialization order][n: u32]
//! ```

use crate::frame::{flags, WireError};

/// Length of an envelope without a sequence number.
pub const ENVELOPE_LEN: usize = 24;

/// Extra envelope bytes when the frame has [`flags::ACK_REQUESTED`] (the sequence number).
pub const SEQ_LEN: usize = 8;

/// Length of a [`ReplyHeader`].
pub const REPLY_HEADER_LEN: usize = 9;

/// Reads a little-endian u64 at `at`; the caller checked the length.
fn u64_at(buf: &[u8], at: usize) -> Option<u64> {
    let bytes = buf.get(at..at + 8)?;
    let mut le = [0u8; 8];
    le.copy_from_slice(bytes);
    Some(u64::from_le_bytes(le))
}

/// The addressing header of a Message frame's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope {
    /// The node (incarnation id) of the target actor.
    pub target_node: u64,
    /// The target actor's serial number on that node.
    pub target_serial: u64,
    /// Tag of the message type (the actor layer's `troupe_actor::type_tag` of its name), checked by
    /// the receiver before decoding the body. Opaque to this crate.
    pub type_tag: u64,
    /// Sequence number to acknowledge; present exactly when the frame has [`flags::ACK_REQUESTED`].
    pub seq: Option<u64>,
}

impl Envelope {
    /// Number of bytes [`write`](Envelope::write) appends.
    pub fn encoded_len(&self) -> usize {
        ENVELOPE_LEN + if self.seq.is_some() { SEQ_LEN } else { 0 }
    }

    /// The frame flags matching this envelope: [`flags::ACK_REQUESTED`] if it carries a sequence number.
    pub fn frame_flags(&self) -> u8 {
        if self.seq.is_some() {
            flags::ACK_REQUESTED
        } else {
            0
        }
    }

    /// Appends the envelope bytes (the sequence number only if `seq` is `Some`).
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.target_node.to_le_bytes());
        out.extend_from_slice(&self.target_serial.to_le_bytes());
        out.extend_from_slice(&self.type_tag.to_le_bytes());
        if let Some(seq) = self.seq {
            out.extend_from_slice(&seq.to_le_bytes());
        }
    }

    /// Parses an envelope from a Message frame payload; `acked` says whether the frame's
    /// [`flags::ACK_REQUESTED`] flag was set. Returns the envelope and the message body that follows it.
    pub fn read(payload: &[u8], acked: bool) -> Result<(Envelope, &[u8]), WireError> {
        let need = ENVELOPE_LEN + if acked { SEQ_LEN } else { 0 };
        let truncated = || WireError::Truncated { what: "envelope", need, have: payload.len() };
        if payload.len() < need {
            return Err(truncated());
        }
        let field = |at| u64_at(payload, at).ok_or_else(truncated);
        let envelope = Envelope {
            target_node: field(0)?,
            target_serial: field(8)?,
            type_tag: field(16)?,
            seq: if acked { Some(field(24)?) } else { None },
        };
        Ok((envelope, &payload[need..]))
    }
}

/// Length of the trailer of a body with attached payloads.
pub const ATTACHED_TRAILER_LEN: usize = 4;

/// Splits a body with attached payloads (a frame with [`flags::ATTACHED`]) into its postcard part
/// and the range of `body` the attached payloads occupy.
pub fn split_attached(body: &[u8]) -> Result<(&[u8], std::ops::Range<usize>), WireError> {
    let Some(end) = body.len().checked_sub(ATTACHED_TRAILER_LEN) else {
        return Err(WireError::Truncated { what: "attached body", need: ATTACHED_TRAILER_LEN, have: body.len() });
    };
    let mut trailer = [0u8; ATTACHED_TRAILER_LEN];
    trailer.copy_from_slice(&body[end..]);
    let postcard = u32::from_le_bytes(trailer) as usize;
    if postcard > end {
        return Err(WireError::Malformed {
            what: "attached body",
            detail: format!("postcard part of {postcard} bytes in a body of {}", body.len()),
        });
    }
    Ok((&body[..postcard], postcard..end))
}

/// Appends the trailer of a body with attached payloads: the length of its postcard part.
pub fn write_attached_trailer(out: &mut Vec<u8>, postcard_len: u32) {
    out.extend_from_slice(&postcard_len.to_le_bytes());
}

/// Outcome carried by a Reply frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ReplyStatus {
    /// The body is the encoded reply value.
    Ok = 0,
    /// The request was dropped without a reply (the actor stopped, or dropped its reply handle).
    NoReply = 1,
    /// The receiver could not decode the request.
    DecodeFailed = 2,
}

impl ReplyStatus {
    /// The status with this byte, if any.
    pub fn from_u8(b: u8) -> Option<ReplyStatus> {
        match b {
            0 => Some(ReplyStatus::Ok),
            1 => Some(ReplyStatus::NoReply),
            2 => Some(ReplyStatus::DecodeFailed),
            _ => None,
        }
    }
}

/// The header of a Reply frame's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyHeader {
    /// The request id this answers.
    pub request: u64,
    /// The outcome.
    pub status: ReplyStatus,
}

impl ReplyHeader {
    /// Appends the header bytes ([`REPLY_HEADER_LEN`] of them).
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.request.to_le_bytes());
        out.push(self.status as u8);
    }

    /// Parses a Reply frame payload into its header and the body that follows.
    pub fn read(payload: &[u8]) -> Result<(ReplyHeader, &[u8]), WireError> {
        let truncated = || WireError::Truncated { what: "reply header", need: REPLY_HEADER_LEN, have: payload.len() };
        let request = u64_at(payload, 0).ok_or_else(truncated)?;
        let status_byte = *payload.get(8).ok_or_else(truncated)?;
        let status = ReplyStatus::from_u8(status_byte).ok_or_else(|| WireError::Malformed {
            what: "reply header",
            detail: format!("unknown reply status {status_byte}"),
        })?;
        Ok((ReplyHeader { request, status }, &payload[REPLY_HEADER_LEN..]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_layout() {
        let env = Envelope { target_node: 1, target_serial: 2, type_tag: 3, seq: Some(4) };
        let mut out = Vec::new();
        env.write(&mut out);
        assert_eq!(out.len(), env.encoded_len());
        assert_eq!(out[0], 1);
        assert_eq!(out[8], 2);
        assert_eq!(out[16], 3);
        assert_eq!(out[24], 4);
        out.extend_from_slice(b"body");
        assert_eq!(Envelope::read(&out, true), Ok((env, &b"body"[..])));
        // Without the flag, the sequence number is part of the body.
        let (plain, body) = Envelope::read(&out, false).unwrap();
        assert_eq!(plain.seq, None);
        assert_eq!(body.len(), 12);
    }

    #[test]
    fn envelope_truncated() {
        assert_eq!(Envelope::read(&[0; 30], true), Err(WireError::Truncated { what: "envelope", need: 32, have: 30 }));
        assert!(Envelope::read(&[0; 23], false).is_err());
    }

    #[test]
    fn attached_body_splits() {
        let mut body = b"post".to_vec();
        body.extend_from_slice(b"ATTACHED");
        write_attached_trailer(&mut body, 4);
        let (postcard, attached) = split_attached(&body).unwrap();
        assert_eq!(postcard, b"post");
        assert_eq!(&body[attached], b"ATTACHED");
        assert!(split_attached(&[1, 2, 3]).is_err(), "shorter than the trailer");
        assert!(split_attached(&[9, 0, 0, 0]).is_err(), "postcard part longer than the body");
        let (empty, none) = split_attached(&[0, 0, 0, 0]).unwrap();
        assert!(empty.is_empty() && none.is_empty());
    }

    #[test]
    fn reply_header() {
        let h = ReplyHeader { request: 0x0102, status: ReplyStatus::DecodeFailed };
        let mut out = Vec::new();
        h.write(&mut out);
        assert_eq!(out, [2, 1, 0, 0, 0, 0, 0, 0, 2]);
        assert_eq!(ReplyHeader::read(&out), Ok((h, &[][..])));
        out[8] = 3;
        assert!(matches!(ReplyHeader::read(&out), Err(WireError::Malformed { .. })));
        assert!(matches!(ReplyHeader::read(&out[..8]), Err(WireError::Truncated { .. })));
    }
}
