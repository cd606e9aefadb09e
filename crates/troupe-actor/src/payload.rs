//! [`Payload`]: bytes that cross the network without being copied by troupe.
//!
//! A `Vec<u8>` inside a remote message is copied into the connection's send buffer when the
//! message is encoded and copied out of the receive buffer when it is decoded. A `Payload` of at
//! least [`ATTACH_MIN`] bytes is *attached* instead: the encoder writes only its length into the
//! message body and hands the bytes themselves to the transport, which sends them straight from
//! the payload's memory (a vectored write); the receiver reads a large frame into a buffer of its
//! own and gives each attached payload out as a slice of that buffer. Cloning a large `Payload`
//! is a reference-count increment, so the same bytes can be sent to many actors, or echoed back,
//! for free.
//!
//! A payload of at most [`INLINE_MAX`] bytes (Erlang's limit for binaries kept on the process
//! heap) is kept inside the `Payload` value itself, like a small array: cloning, decoding and
//! dropping it touch no reference count and no allocator. A reference count changed by two
//! threads (a node's network thread decoding, an actor's worker dropping) costs more than copying
//! these few bytes: on tell64 the count of the block that small payloads shared was ~11% of the
//! receiving network thread's samples.
//!
//! A longer small payload (up to 256 bytes) received from the network is copied out of the
//! receive buffer into a 2 KiB block it shares with the small payloads decoded after it, so a
//! stream of small messages costs one allocation per block rather than one per message. A
//! payload keeps its block alive: an actor that stores a few of many such payloads for a long
//! time should store [`Payload::detached`] copies.
//!
//! Outside a node's codec (for example with `serde_json`) a `Payload` serializes as plain bytes.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Payloads at least this long travel attached (out of the message body) when a node encodes
/// them; shorter ones are copied inline, which is cheaper than an extra piece to write.
pub const ATTACH_MIN: usize = 4096;

/// Payloads at most this long are held inside the [`Payload`] value (no allocation, no
/// reference count); longer ones in a shared [`Bytes`].
pub const INLINE_MAX: usize = 64;

/// An immutable, cheaply cloned byte buffer for message contents: a few bytes held in place, or
/// a shared [`Bytes`].
///
/// ```
/// use troupe_actor::Payload;
/// let blob = Payload::from(vec![7u8; 1 << 20]);
/// let again = blob.clone(); // no copy
/// assert_eq!(again.len(), 1 << 20);
/// assert_eq!(&blob[..2], &[7, 7]);
/// ```
#[derive(Clone)]
pub struct Payload(Repr);

/// Where a payload's bytes are.
#[derive(Clone)]
enum Repr {
    /// Up to [`INLINE_MAX`] bytes in place: the first `len` of `bytes`.
    Inline { len: u8, bytes: [u8; INLINE_MAX] },
    /// Anywhere else.
    Shared(Bytes),
}

impl Payload {
    /// An empty payload.
    pub const fn new() -> Self {
        Payload(Repr::Inline { len: 0, bytes: [0; INLINE_MAX] })
    }

    /// A payload of static bytes (no allocation).
    pub const fn from_static(bytes: &'static [u8]) -> Self {
        Payload(Repr::Shared(Bytes::from_static(bytes)))
    }

    /// A payload holding a copy of `bytes`.
    pub fn copy_from_slice(bytes: &[u8]) -> Self {
        Self::inline(bytes).unwrap_or_else(|| Payload(Repr::Shared(Bytes::copy_from_slice(bytes))))
    }

    /// `bytes` held in place, if they are few enough.
    fn inline(bytes: &[u8]) -> Option<Self> {
        let len = u8::try_from(bytes.len()).ok().filter(|&len| len as usize <= INLINE_MAX)?;
        let mut inline = [0; INLINE_MAX];
        inline[..bytes.len()].copy_from_slice(bytes);
        Some(Payload(Repr::Inline { len, bytes: inline }))
    }

    /// A copy in memory of its own: for keeping a small payload received from the network
    /// without keeping alive the block it shares with others.
    pub fn detached(&self) -> Self {
        Self::copy_from_slice(self)
    }

    /// The bytes, as a [`Bytes`] (no copy unless the payload is held in place).
    pub fn into_bytes(self) -> Bytes {
        match self.0 {
            Repr::Inline { len, bytes } => Bytes::copy_from_slice(&bytes[..len as usize]),
            Repr::Shared(bytes) => bytes,
        }
    }

    /// The bytes, as a [`Bytes`] (no copy unless the payload is held in place).
    pub fn to_bytes(&self) -> Bytes {
        self.clone().into_bytes()
    }

    /// The bytes in a `Vec` (copies unless this is the only reference to a whole `Vec`).
    pub fn into_vec(self) -> Vec<u8> {
        match self.0 {
            Repr::Inline { len, bytes } => bytes[..len as usize].to_vec(),
            Repr::Shared(bytes) => Vec::from(bytes),
        }
    }
}

impl Default for Payload {
    fn default() -> Self {
        Payload::new()
    }
}

impl Deref for Payload {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, bytes } => &bytes[..*len as usize],
            Repr::Shared(bytes) => bytes,
        }
    }
}

impl AsRef<[u8]> for Payload {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for Payload {}

impl PartialOrd for Payload {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Payload {
    fn cmp(&self, other: &Self) -> Ordering {
        (**self).cmp(&**other)
    }
}

impl Hash for Payload {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (**self).hash(state)
    }
}

impl From<Bytes> for Payload {
    /// Keeps `bytes` as they are (no copy), however short.
    fn from(bytes: Bytes) -> Self {
        Payload(Repr::Shared(bytes))
    }
}

impl From<Vec<u8>> for Payload {
    fn from(bytes: Vec<u8>) -> Self {
        Self::inline(&bytes).unwrap_or_else(|| Payload(Repr::Shared(Bytes::from(bytes))))
    }
}

impl From<&'static [u8]> for Payload {
    fn from(bytes: &'static [u8]) -> Self {
        Payload::from_static(bytes)
    }
}

impl From<Payload> for Bytes {
    fn from(payload: Payload) -> Self {
        payload.into_bytes()
    }
}

impl crate::message::Message for Payload {}

impl crate::remote::RemoteMessage for Payload {
    const TYPE_NAME: &'static str = "troupe.Payload";
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Payload({} bytes)", self.len())
    }
}

// ---------------------------------------------------------------------------------------------
// Attachments while a node encodes or decodes a message body

thread_local! {
    /// While a node encodes a body: the payloads attached so far.
    static ATTACH_OUT: RefCell<Option<Vec<Bytes>>> = const { RefCell::new(None) };
    /// While a node decodes a body: the attached bytes and how far they have been taken.
    static ATTACH_IN: RefCell<Option<(Bytes, usize)>> = const { RefCell::new(None) };
}

/// Decoded payloads up to this long are copied into a shared block (see [`small_copy`]).
const SMALL_MAX: usize = 256;
/// The size of the blocks small decoded payloads share.
const SMALL_BLOCK: usize = 2048;

thread_local! {
    /// The rest of this thread's current block for small decoded payloads.
    static SMALL_BLOCK_LEFT: RefCell<bytes::BytesMut> = RefCell::new(bytes::BytesMut::new());
}

/// A copy of `bytes` (at most [`SMALL_MAX`] long) carved from the decoding thread's current
/// [`SMALL_BLOCK`]-byte block: one allocation (and, on the actor's thread, one free) per block
/// instead of per payload. The price is that a kept payload keeps its whole block alive;
/// [`Payload::detached`] gives it memory of its own.
fn small_copy(bytes: &[u8]) -> Bytes {
    SMALL_BLOCK_LEFT.with(|left| {
        let mut left = left.borrow_mut();
        if left.capacity() < bytes.len() {
            *left = bytes::BytesMut::with_capacity(SMALL_BLOCK);
        }
        left.extend_from_slice(bytes);
        left.split().freeze()
    })
}

/// Runs `encode` collecting the payloads it attaches into `attached` (in serialization order).
/// Also when `encode` panics (a user's `Serialize`): the thread's collecting state is put back
/// as it was, or the thread would go on attaching payloads that are never sent.
pub(crate) fn collecting_attachments<R>(attached: &mut Vec<Bytes>, encode: impl FnOnce() -> R) -> R {
    /// Puts the outer collection back when the encoding ends, unwinding included.
    struct Restore<'a> {
        previous: Option<Vec<Bytes>>,
        attached: &'a mut Vec<Bytes>,
    }
    impl Drop for Restore<'_> {
        fn drop(&mut self) {
            let previous = self.previous.take();
            let collected = ATTACH_OUT.with(|a| std::mem::replace(&mut *a.borrow_mut(), previous));
            *self.attached = collected.unwrap_or_default();
        }
    }
    let previous = ATTACH_OUT.with(|a| a.borrow_mut().replace(std::mem::take(attached)));
    let _restore = Restore { previous, attached };
    encode()
}

/// Runs `decode` with `attached` as the source of attached payloads. Fails (after `decode`) when
/// some attached bytes were left unclaimed: the body and its attachments disagree.
pub(crate) fn with_attachments<T>(
    attached: Option<Bytes>,
    decode: impl FnOnce() -> Result<T, String>,
) -> Result<T, String> {
    /// Puts the outer decode's attachments back when this decode ends, unwinding included (a
    /// user's `Deserialize` may panic): this decode's must not stay for a later one to take.
    struct Restore(Option<(Bytes, usize)>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            ATTACH_IN.with(|a| *a.borrow_mut() = previous);
        }
    }
    let Some(attached) = attached else {
        // No attachments: nothing may be taken from an outer decode's (if this one is nested).
        let previous = ATTACH_IN.with(|a| a.borrow_mut().take());
        if previous.is_none() {
            return decode(); // the common case: nothing to put back
        }
        let _restore = Restore(previous);
        return decode();
    };
    let previous = ATTACH_IN.with(|a| a.borrow_mut().replace((attached, 0)));
    let restore = Restore(previous);
    let result = decode();
    let left = ATTACH_IN.with(|a| a.borrow_mut().take());
    drop(restore);
    let value = result?;
    match left {
        Some((bytes, taken)) if taken != bytes.len() => {
            Err(format!("{} attached bytes not claimed by the message", bytes.len() - taken))
        }
        _ => Ok(value),
    }
}

/// How a payload appears inside a postcard body.
#[derive(Serialize, Deserialize)]
enum Wire<'a> {
    /// The bytes themselves.
    Inline(#[serde(borrow)] InlineBytes<'a>),
    /// The next this-many bytes of the body's attachments.
    Attached(u64),
}

/// Bytes serialized as a byte string (postcard: a length and the bytes), borrowed when the
/// format allows.
struct InlineBytes<'a>(std::borrow::Cow<'a, [u8]>);

impl Serialize for InlineBytes<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for InlineBytes<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = InlineBytes<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_borrowed_bytes<E: serde::de::Error>(self, v: &'de [u8]) -> Result<Self::Value, E> {
                Ok(InlineBytes(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
                Ok(InlineBytes(std::borrow::Cow::Owned(v.to_vec())))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Self::Value, E> {
                Ok(InlineBytes(std::borrow::Cow::Owned(v)))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(InlineBytes(std::borrow::Cow::Owned(out)))
            }
        }
        deserializer.deserialize_bytes(Visitor)
    }
}

impl Serialize for Payload {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if let Repr::Shared(bytes) = &self.0 {
            if bytes.len() >= ATTACH_MIN {
                let attached = ATTACH_OUT.with(|a| match a.borrow_mut().as_mut() {
                    Some(list) => {
                        list.push(bytes.clone());
                        true
                    }
                    None => false,
                });
                if attached {
                    return Wire::Attached(bytes.len() as u64).serialize(serializer);
                }
            }
        }
        Wire::Inline(InlineBytes(std::borrow::Cow::Borrowed(self))).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match Wire::deserialize(deserializer)? {
            Wire::Inline(InlineBytes(bytes)) if bytes.len() <= INLINE_MAX => {
                Ok(Payload::inline(&bytes).unwrap_or_default())
            }
            Wire::Inline(InlineBytes(std::borrow::Cow::Borrowed(bytes))) if bytes.len() <= SMALL_MAX => {
                Ok(Payload(Repr::Shared(small_copy(bytes))))
            }
            Wire::Inline(InlineBytes(bytes)) => Ok(Payload(Repr::Shared(Bytes::from(bytes.into_owned())))),
            Wire::Attached(len) => ATTACH_IN.with(|a| {
                let mut source = a.borrow_mut();
                let Some((bytes, taken)) = source.as_mut() else {
                    return Err(D::Error::custom("an attached payload outside a troupe frame"));
                };
                let available = bytes.len() - *taken;
                let len = usize::try_from(len).ok().filter(|&len| len <= available).ok_or_else(|| {
                    D::Error::custom(format!("attached payload of {len} bytes, {available} left in the frame"))
                })?;
                let payload = bytes.slice(*taken..*taken + len);
                *taken += len;
                Ok(Payload(Repr::Shared(payload)))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(value: &impl Serialize) -> (Vec<u8>, Vec<Bytes>) {
        let mut attached = Vec::new();
        let body = collecting_attachments(&mut attached, || postcard::to_stdvec(value).expect("encodes"));
        (body, attached)
    }

    fn decode<T: serde::de::DeserializeOwned>(body: &[u8], attached: Option<Bytes>) -> Result<T, String> {
        with_attachments(attached, || postcard::from_bytes(body).map_err(|e| e.to_string()))
    }

    #[test]
    fn small_decoded_payloads_share_a_block_and_detach_into_their_own() {
        let messages: Vec<Payload> = (0..40u8).map(|i| Payload::from(vec![i; 100])).collect();
        let decoded: Vec<Payload> = messages.iter().map(|p| decode(&encode(p).0, None).expect("decodes")).collect();
        assert_eq!(decoded, messages, "every byte survives");
        let neighbours = decoded.windows(2).filter(|w| w[0].as_ptr() as usize + 100 == w[1].as_ptr() as usize).count();
        assert!(neighbours >= 15, "consecutive small payloads are carved from one block ({neighbours} of 39)");
        let kept = decoded[3].detached();
        assert_eq!(kept, decoded[3]);
        assert_ne!(kept.as_ptr(), decoded[3].as_ptr(), "a detached payload has memory of its own");
        let big: Payload = decode(&encode(&Payload::from(vec![1u8; SMALL_MAX + 1])).0, None).expect("decodes");
        assert_eq!(big.len(), SMALL_MAX + 1);
    }

    /// Whether `payload`'s bytes lie inside the value itself.
    fn held_in_place(payload: &Payload) -> bool {
        let value = payload as *const Payload as usize;
        let bytes = payload.as_ptr() as usize;
        (value..value + std::mem::size_of::<Payload>()).contains(&bytes)
    }

    #[test]
    fn the_fewest_bytes_are_held_in_place_however_they_are_made() {
        let short = vec![9u8; INLINE_MAX];
        let made = [
            Payload::from(short.clone()),
            Payload::copy_from_slice(&short),
            decode(&encode(&Payload::from(short.clone())).0, None).expect("decodes"),
            Payload::from(Bytes::from(short.clone())).detached(),
        ];
        for (i, payload) in made.iter().enumerate() {
            assert_eq!(&payload[..], &short[..], "way {i}");
            assert!(held_in_place(payload), "way {i}");
            let copy = payload.clone();
            assert!(held_in_place(&copy) && copy == *payload, "way {i}: a clone is a copy");
        }
        assert!(!held_in_place(&Payload::from(Bytes::from(short.clone()))), "a Bytes is kept as it is");
        let longer = Payload::from(vec![9u8; INLINE_MAX + 1]);
        assert!(!held_in_place(&longer));
        assert_eq!(longer.to_bytes().len(), INLINE_MAX + 1);
        assert!(Payload::new().is_empty() && Payload::default() == Payload::from(Vec::new()));
        // Equal bytes are equal payloads, hash alike and sort by their bytes, however held.
        let (a, b) = (Payload::from(short.clone()), Payload::from(Bytes::from(short.clone())));
        assert_eq!(a, b);
        let state = std::collections::hash_map::RandomState::new();
        assert_eq!(std::hash::BuildHasher::hash_one(&state, &a), std::hash::BuildHasher::hash_one(&state, &b));
        assert!(Payload::from(vec![1u8]) < Payload::from(Bytes::from_static(&[2u8])));
        assert_eq!(a.clone().into_vec(), short);
        assert_eq!(Bytes::from(a), Bytes::from(short));
    }

    #[test]
    fn small_payloads_stay_inline_and_large_ones_attach() {
        let small = Payload::from(vec![1u8; ATTACH_MIN - 1]);
        let large = Payload::from(vec![2u8; ATTACH_MIN]);
        let (body, attached) = encode(&(small.clone(), large.clone(), 5u8));
        assert_eq!(attached.len(), 1);
        assert_eq!(attached[0].as_ptr(), large.as_ptr(), "attached without a copy");
        assert!(body.len() < ATTACH_MIN + 16, "the large payload is not in the body");
        let region = Bytes::from(attached.concat());
        let base = region.as_ptr() as usize;
        let (s, l, n): (Payload, Payload, u8) = decode(&body, Some(region)).unwrap();
        assert_eq!((s, n), (small, 5));
        assert_eq!(l, large);
        assert_eq!(l.as_ptr() as usize, base, "decoded as a slice of the frame, not a copy");
    }

    #[test]
    fn several_attachments_come_back_in_order() {
        let parts: Vec<Payload> = (0..4u8).map(|i| Payload::from(vec![i; ATTACH_MIN + i as usize])).collect();
        let (body, attached) = encode(&parts);
        assert_eq!(attached.len(), 4);
        let back: Vec<Payload> = decode(&body, Some(Bytes::from(attached.concat()))).unwrap();
        assert_eq!(back, parts);
    }

    #[test]
    fn disagreeing_attachments_are_errors_not_panics() {
        let large = Payload::from(vec![3u8; ATTACH_MIN * 2]);
        let (body, attached) = encode(&large);
        let all = Bytes::from(attached.concat());
        assert!(decode::<Payload>(&body, None).is_err(), "no attachments given");
        assert!(decode::<Payload>(&body, Some(all.slice(..ATTACH_MIN))).is_err(), "too few bytes");
        let mut more = all.to_vec();
        more.push(0);
        let err = decode::<Payload>(&body, Some(Bytes::from(more))).unwrap_err();
        assert!(err.contains("not claimed"), "{err}");
        // A huge claimed length is refused, not allocated.
        let forged = postcard::to_stdvec(&Wire::Attached(u64::MAX)).unwrap();
        assert!(decode::<Payload>(&forged, Some(all)).is_err());
    }

    #[test]
    fn a_panicking_encode_or_decode_leaves_no_attachment_state_behind() {
        use std::panic::{catch_unwind, AssertUnwindSafe};
        struct Boom;
        impl Serialize for Boom {
            fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                panic!("a user's Serialize that panics")
            }
        }
        let large = Payload::from(vec![5u8; ATTACH_MIN * 2]);
        let mut attached = Vec::new();
        let encoded = catch_unwind(AssertUnwindSafe(|| {
            collecting_attachments(&mut attached, || postcard::to_stdvec(&(large.clone(), Boom)))
        }));
        assert!(encoded.is_err());
        let body = postcard::to_stdvec(&large).expect("encodes");
        assert!(body.len() > ATTACH_MIN * 2, "outside a node again, the payload goes in the body");

        let (body, attached) = encode(&large);
        let region = Bytes::from(attached.concat());
        let decoded = catch_unwind(|| with_attachments(Some(region), || -> Result<(), String> { panic!("boom") }));
        assert!(decoded.is_err());
        assert!(
            postcard::from_bytes::<Payload>(&body).is_err(),
            "a decode outside a node took from the attachments a panicked decode left behind"
        );
    }

    #[test]
    fn outside_a_node_payloads_are_plain_bytes() {
        let large = Payload::from(vec![4u8; ATTACH_MIN * 2]);
        let body = postcard::to_stdvec(&large).unwrap();
        assert!(body.len() > ATTACH_MIN * 2, "inline when no node collects attachments");
        assert_eq!(postcard::from_bytes::<Payload>(&body).unwrap(), large);
        let json = serde_json_like_roundtrip(&Payload::from_static(b"hi"));
        assert_eq!(&json[..], b"hi");
    }

    /// A self-describing format that sends bytes as a sequence (as JSON does).
    fn serde_json_like_roundtrip(p: &Payload) -> Payload {
        // postcard is not self-describing; round-trip through the seq path by hand.
        use serde::de::value::{Error, SeqDeserializer};
        let seq: SeqDeserializer<_, Error> = SeqDeserializer::new(p.iter().copied());
        let inline = InlineBytes::deserialize(seq).unwrap();
        Payload::copy_from_slice(&inline.0)
    }
}
