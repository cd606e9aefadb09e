//! Compact binary encoding with postcard, for every serde type, plus the replica-interning table
//! used by dot-based states.
//!
//! Dot-based states encode their causal context first; its replicas, in ascending order, form a
//! table, and every dot in the store is written as `(index, counter)` with varints, so a 64-bit
//! replica id costs its bytes once per state rather than once per element.

use crate::context::Dot;
use crate::error::CodecError;
use crate::traits::ReplicaId;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// postcard encoding for any serde type: `to_bytes`, `from_bytes` (rejecting trailing bytes) and
/// `encoded_len`.
pub trait Encode: Serialize + DeserializeOwned {
    /// The postcard encoding.
    fn to_bytes(&self) -> Result<Vec<u8>, CodecError> {
        postcard::to_allocvec(self).map_err(CodecError::Encode)
    }

    /// Decodes a value that fills `bytes` exactly.
    fn from_bytes(bytes: &[u8]) -> Result<Self, CodecError> {
        let (value, rest) = postcard::take_from_bytes(bytes).map_err(CodecError::Decode)?;
        if rest.is_empty() {
            Ok(value)
        } else {
            Err(CodecError::TrailingBytes(rest.len()))
        }
    }

    /// Size in bytes of the encoding, computed without allocating it.
    fn encoded_len(&self) -> Result<usize, CodecError> {
        postcard::serialize_with_flavor(self, postcard::ser_flavors::Size::default()).map_err(CodecError::Encode)
    }
}

impl<T: Serialize + DeserializeOwned> Encode for T {}

/// A dot with its replica replaced by an index into the replica table.
pub type WireDot = (u32, u64);

/// Replica ids of a state, ascending, giving each a small index.
#[derive(Debug)]
pub struct ReplicaTable<'a, R> {
    replicas: Vec<&'a R>,
}

impl<'a, R: ReplicaId> ReplicaTable<'a, R> {
    /// A table over ascending, distinct replicas.
    pub fn new(replicas: impl Iterator<Item = &'a R>) -> Self {
        ReplicaTable { replicas: replicas.collect() }
    }

    /// The compact form of `dot`, or an error if its replica is not in the table.
    pub fn encode(&self, dot: &Dot<R>) -> Result<WireDot, CodecError> {
        let index = self
            .replicas
            .binary_search(&&dot.replica)
            .map_err(|_| CodecError::Invalid("dot outside the causal context"))?;
        let index = u32::try_from(index).map_err(|_| CodecError::Invalid("too many replicas"))?;
        Ok((index, dot.counter))
    }
}

/// Turns a compact dot back into a dot, checking the index and the counter.
pub fn decode_dot<R: ReplicaId>((index, counter): WireDot, replicas: &[R]) -> Result<Dot<R>, CodecError> {
    let replica = usize::try_from(index)
        .ok()
        .and_then(|i| replicas.get(i))
        .ok_or(CodecError::Invalid("replica index out of range"))?;
    if counter == 0 {
        return Err(CodecError::Invalid("dot counter 0"));
    }
    Ok(Dot::new(replica.clone(), counter))
}
