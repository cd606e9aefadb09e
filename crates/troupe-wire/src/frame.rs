//! Frames: the unit of transmission on a troupe connection.
//!
//! Layout (8-byte header, then the payload):
//!
//! ```text
//! [len: u32 LE = payload length][kind: u8][flags: u8][channel: u16 LE][payload: len bytes]
//! ```

/// Length of a frame header in bytes.
pub const HEADER_LEN: usize = 8;

/// Default maximum payload length of a frame (64 MiB).
pub const DEFAULT_MAX_FRAME: usize = 64 * 1024 * 1024;

/// The largest payload the 32-bit length field can describe.
const LEN_FIELD_MAX: usize = u32::MAX as usize;

/// Frame flag bits (the `flags` byte of the header).
pub mod flags {
    /// On a Message frame: the envelope carries a sequence number and the receiver must answer with an
    /// Ack frame listing it. On a Control frame (protocol version 6): the payload is a sequence number
    /// then the control message ([`Control::decode_numbered`](crate::Control::decode_numbered)),
    /// numbered and acknowledged like an acknowledged message, from the same sequence.
    pub const ACK_REQUESTED: u8 = 1;
    /// On a Message or Reply frame: the body carries attached payloads after its postcard part
    /// (see [`split_attached`](crate::split_attached)).
    pub const ATTACHED: u8 = 2;
}

/// Errors of the frame and payload codecs.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum WireError {
    /// A frame's payload is longer than the allowed maximum.
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// Payload length of the offending frame.
        len: usize,
        /// The maximum payload length in force.
        max: usize,
    },
    /// The kind byte of a frame header names no known [`FrameKind`].
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    /// A structure ended before all its fixed-size fields were present.
    #[error("truncated {what}: need {need} bytes, have {have}")]
    Truncated {
        /// What was being decoded.
        what: &'static str,
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// Bytes that do not form a valid structure.
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// What was being decoded.
        what: &'static str,
        /// Why it is invalid.
        detail: String,
    },
}

/// The kind of a frame (its header's kind byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    /// Handshake: the initiator's greeting.
    Hello = 1,
    /// Handshake: the responder's answer with its nonce and proof.
    Challenge = 2,
    /// Handshake: the initiator's proof.
    Proof = 3,
    /// Handshake: the responder accepts the connection.
    Welcome = 4,
    /// Handshake: the connection is refused (payload: a reason).
    Reject = 5,
    /// An actor message (payload: an [`Envelope`](crate::Envelope) then the body).
    Message = 16,
    /// A reply to a request (payload: a [`ReplyHeader`](crate::ReplyHeader) then the body).
    Reply = 17,
    /// Acknowledged sequence numbers (payload: [`encode_acks`](crate::encode_acks)).
    Ack = 18,
    /// A control message (payload: a [`Control`](crate::Control)).
    Control = 19,
    /// Liveness probe.
    Ping = 20,
    /// Answer to a Ping.
    Pong = 21,
    /// Orderly close of the connection.
    Close = 22,
}

impl FrameKind {
    /// Every frame kind, in numeric order.
    pub const ALL: [FrameKind; 12] = [
        FrameKind::Hello,
        FrameKind::Challenge,
        FrameKind::Proof,
        FrameKind::Welcome,
        FrameKind::Reject,
        FrameKind::Message,
        FrameKind::Reply,
        FrameKind::Ack,
        FrameKind::Control,
        FrameKind::Ping,
        FrameKind::Pong,
        FrameKind::Close,
    ];

    /// The frame kind with this kind byte, if any.
    pub fn from_u8(b: u8) -> Option<FrameKind> {
        Some(match b {
            1 => FrameKind::Hello,
            2 => FrameKind::Challenge,
            3 => FrameKind::Proof,
            4 => FrameKind::Welcome,
            5 => FrameKind::Reject,
            16 => FrameKind::Message,
            17 => FrameKind::Reply,
            18 => FrameKind::Ack,
            19 => FrameKind::Control,
            20 => FrameKind::Ping,
            21 => FrameKind::Pong,
            22 => FrameKind::Close,
            _ => return None,
        })
    }

    /// Whether this kind belongs to the connection handshake.
    pub fn is_handshake(self) -> bool {
        (self as u8) < FrameKind::Message as u8
    }
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The frame kind.
    pub kind: FrameKind,
    /// Flag bits (see [`flags`]).
    pub flags: u8,
    /// The channel the frame belongs to.
    pub channel: u16,
    /// Payload length in bytes.
    pub len: u32,
}

impl FrameHeader {
    /// The 8 header bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let len = self.len.to_le_bytes();
        let channel = self.channel.to_le_bytes();
        [len[0], len[1], len[2], len[3], self.kind as u8, self.flags, channel[0], channel[1]]
    }
}

/// A whole frame borrowed from a receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The header.
    pub header: FrameHeader,
    /// The payload (`header.len` bytes).
    pub payload: &'a [u8],
}

impl Frame<'_> {
    /// Appends this frame (header and payload) at the end of `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.header.to_bytes());
        out.extend_from_slice(self.payload);
    }
}

fn effective_max(max: usize) -> usize {
    max.min(LEN_FIELD_MAX)
}

fn check_len(len: usize, max: usize) -> Result<u32, WireError> {
    let max = effective_max(max);
    if len > max {
        return Err(WireError::TooLarge { len, max });
    }
    u32::try_from(len).map_err(|_| WireError::TooLarge { len, max })
}

/// Writes a whole frame (header and payload) at the end of `out`.
///
/// Fails with [`WireError::TooLarge`] (writing nothing) if `payload` is longer than `max` (or than
/// `u32::MAX`).
pub fn encode_frame(
    out: &mut Vec<u8>,
    kind: FrameKind,
    flags: u8,
    channel: u16,
    payload: &[u8],
    max: usize,
) -> Result<(), WireError> {
    let len = check_len(payload.len(), max)?;
    out.reserve(HEADER_LEN + payload.len());
    out.extend_from_slice(&FrameHeader { kind, flags, channel, len }.to_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

/// A frame being written in place: returned by [`begin_frame`], consumed by [`finish_frame`].
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a begun frame must be finished with finish_frame"]
pub struct FrameStart {
    offset: usize,
}

impl FrameStart {
    /// Offset in the buffer where the frame's header begins.
    pub fn offset(&self) -> usize {
        self.offset
    }
}

/// Begins a frame at the end of `out`: writes a header with a zero length and returns where it starts.
///
/// Append the payload to `out`, then call [`finish_frame`] to patch the length.
pub fn begin_frame(out: &mut Vec<u8>, kind: FrameKind, flags: u8, channel: u16) -> FrameStart {
    let offset = out.len();
    out.extend_from_slice(&FrameHeader { kind, flags, channel, len: 0 }.to_bytes());
    FrameStart { offset }
}

/// Finishes a frame begun with [`begin_frame`]: everything after its header is its payload.
///
/// On [`WireError::TooLarge`] it truncates `out` back to where the frame began, so nothing
/// half-written stays. If `out` was truncated below the frame's header in the meantime it fails with
/// [`WireError::Malformed`] (and leaves `out` unchanged).
pub fn finish_frame(out: &mut Vec<u8>, start: FrameStart, max: usize) -> Result<(), WireError> {
    let payload_at = start.offset.checked_add(HEADER_LEN).filter(|&at| at <= out.len()).ok_or_else(|| {
        WireError::Malformed { what: "frame", detail: "buffer truncated below the frame's header".to_string() }
    })?;
    let len = match check_len(out.len() - payload_at, max) {
        Ok(len) => len,
        Err(e) => {
            out.truncate(start.offset);
            return Err(e);
        }
    };
    out[start.offset..start.offset + 4].copy_from_slice(&len.to_le_bytes());
    Ok(())
}

/// Finishes a frame begun with [`begin_frame`] whose payload continues with `attached` more bytes
/// that the caller sends after what is in `out` (attached payloads and the body trailer, see
/// [`split_attached`](crate::split_attached)); sets [`flags::ATTACHED`].
///
/// Errors as [`finish_frame`] does, counting the attached bytes in the length.
pub fn finish_frame_attached(
    out: &mut Vec<u8>,
    start: FrameStart,
    attached: usize,
    max: usize,
) -> Result<(), WireError> {
    let payload_at = start.offset.checked_add(HEADER_LEN).filter(|&at| at <= out.len()).ok_or_else(|| {
        WireError::Malformed { what: "frame", detail: "buffer truncated below the frame's header".to_string() }
    })?;
    let total = (out.len() - payload_at).saturating_add(attached);
    let len = match check_len(total, max) {
        Ok(len) => len,
        Err(e) => {
            out.truncate(start.offset);
            return Err(e);
        }
    };
    out[start.offset..start.offset + 4].copy_from_slice(&len.to_le_bytes());
    out[start.offset + 5] |= flags::ATTACHED;
    Ok(())
}

/// Incremental frame decoder over a byte buffer that the caller fills from a socket.
///
/// The decoder keeps no state besides its limit: call [`decode`](FrameDecoder::decode) on the unread
/// part of the buffer, and drop the `consumed` bytes it reports.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    max_payload: usize,
}

impl Default for FrameDecoder {
    /// A decoder accepting payloads up to [`DEFAULT_MAX_FRAME`].
    fn default() -> Self {
        FrameDecoder::new(DEFAULT_MAX_FRAME)
    }
}

impl FrameDecoder {
    /// A decoder that rejects payloads longer than `max_payload` bytes.
    pub fn new(max_payload: usize) -> Self {
        FrameDecoder { max_payload }
    }

    /// The largest payload accepted.
    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// Decodes the header at the start of `buf`, if its 8 bytes are present.
    ///
    /// Checks the kind byte and the length against the maximum.
    pub fn decode_header(&self, buf: &[u8]) -> Result<Option<FrameHeader>, WireError> {
        let Some(h) = buf.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let kind = FrameKind::from_u8(h[4]).ok_or(WireError::UnknownKind(h[4]))?;
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        let max = effective_max(self.max_payload);
        if len as usize > max {
            return Err(WireError::TooLarge { len: len as usize, max });
        }
        Ok(Some(FrameHeader { kind, flags: h[5], channel: u16::from_le_bytes([h[6], h[7]]), len }))
    }

    /// Decodes one frame from the start of `buf`.
    ///
    /// - `Ok(None)`: more bytes are needed (the header or the payload is incomplete);
    /// - `Ok(Some((frame, consumed)))`: a whole frame occupies the first `consumed` bytes of `buf`;
    /// - `Err(_)`: the stream is corrupt (unknown kind, or a length above the maximum, detected as soon
    ///   as the 8 header bytes are present, before the payload arrives). The connection should be closed.
    ///
    /// Never panics, whatever the input.
    pub fn decode<'a>(&self, buf: &'a [u8]) -> Result<Option<(Frame<'a>, usize)>, WireError> {
        let Some(header) = self.decode_header(buf)? else {
            return Ok(None);
        };
        let end = HEADER_LEN + header.len as usize;
        match buf.get(HEADER_LEN..end) {
            Some(payload) => Ok(Some((Frame { header, payload }, end))),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_bytes_round_trip() {
        for kind in FrameKind::ALL {
            assert_eq!(FrameKind::from_u8(kind as u8), Some(kind));
        }
        let known = (0..=255u8).filter(|&b| FrameKind::from_u8(b).is_some()).count();
        assert_eq!(known, FrameKind::ALL.len());
        assert!(FrameKind::Reject.is_handshake());
        assert!(!FrameKind::Message.is_handshake());
    }

    #[test]
    fn header_layout() {
        let mut out = Vec::new();
        encode_frame(&mut out, FrameKind::Message, flags::ACK_REQUESTED, 0x0302, b"xyz", 100).unwrap();
        assert_eq!(out, [3, 0, 0, 0, 16, 1, 2, 3, b'x', b'y', b'z']);
    }

    #[test]
    fn too_large_from_header_alone() {
        let dec = FrameDecoder::new(1024);
        let header = FrameHeader { kind: FrameKind::Message, flags: 0, channel: 0, len: 1025 }.to_bytes();
        assert_eq!(dec.decode(&header), Err(WireError::TooLarge { len: 1025, max: 1024 }));
        assert_eq!(dec.decode(&header[..7]), Ok(None));
        let ok = FrameHeader { kind: FrameKind::Message, flags: 0, channel: 0, len: 1024 }.to_bytes();
        assert_eq!(dec.decode(&ok), Ok(None));
    }

    #[test]
    fn unknown_kind() {
        let dec = FrameDecoder::new(1024);
        assert_eq!(dec.decode(&[0, 0, 0, 0, 99, 0, 0, 0]), Err(WireError::UnknownKind(99)));
    }

    #[test]
    fn encode_rejects_too_large() {
        let mut out = vec![7];
        let err = encode_frame(&mut out, FrameKind::Ping, 0, 0, &[0; 11], 10).unwrap_err();
        assert_eq!(err, WireError::TooLarge { len: 11, max: 10 });
        assert_eq!(out, [7]);
    }

    #[test]
    fn finish_frame_attached_counts_what_follows_and_sets_the_flag() {
        let mut out = Vec::new();
        let start = begin_frame(&mut out, FrameKind::Reply, flags::ACK_REQUESTED, 1);
        out.extend_from_slice(&[0; 10]);
        finish_frame_attached(&mut out, start, 100, 110).unwrap();
        let header = FrameDecoder::new(110).decode_header(&out).unwrap().unwrap();
        assert_eq!(header.len, 110);
        assert_eq!(header.flags, flags::ACK_REQUESTED | flags::ATTACHED);
        let mut out = vec![5];
        let start = begin_frame(&mut out, FrameKind::Reply, 0, 1);
        out.extend_from_slice(&[0; 10]);
        assert_eq!(finish_frame_attached(&mut out, start, 101, 110), Err(WireError::TooLarge { len: 111, max: 110 }));
        assert_eq!(out, [5], "nothing half-written stays");
    }

    #[test]
    fn finish_frame_truncates_on_too_large() {
        let mut out = vec![1, 2, 3];
        let start = begin_frame(&mut out, FrameKind::Message, 0, 5);
        out.extend_from_slice(&[0; 20]);
        assert_eq!(finish_frame(&mut out, start, 19), Err(WireError::TooLarge { len: 20, max: 19 }));
        assert_eq!(out, [1, 2, 3]);
    }

    #[test]
    fn finish_frame_on_truncated_buffer_errors() {
        let mut out = vec![1, 2, 3];
        let start = begin_frame(&mut out, FrameKind::Message, 0, 5);
        out.truncate(5);
        assert!(matches!(finish_frame(&mut out, start, 100), Err(WireError::Malformed { .. })));
    }
}
