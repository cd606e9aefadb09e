//! Typed errors: a refused update, or bytes that do not decode to a valid state.

use thiserror::Error;

/// Why an update was refused. The state is unchanged when an update fails.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UpdateError {
    /// A bounded counter replica tried to decrement or transfer more than it holds rights for.
    #[error("bounded counter: {requested} rights needed but only {available} held by this replica")]
    OutOfRights {
        /// Rights the operation needs.
        requested: u64,
        /// Rights the replica holds.
        available: u64,
    },
    /// An IVar (single-assignment variable) already holds a different value.
    #[error("ivar already assigned a different value")]
    AlreadyAssigned,
}

/// Encoding or decoding failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CodecError {
    /// The value could not be serialized (a state violating its own invariants).
    #[error("encode: {0}")]
    Encode(postcard::Error),
    /// The bytes are not a valid encoding (truncated, malformed, or an inconsistent state).
    #[error("decode: {0}")]
    Decode(postcard::Error),
    /// A valid value was followed by extra bytes.
    #[error("decode: {0} trailing bytes")]
    TrailingBytes(usize),
    /// The bytes decode but describe a state that breaks an invariant of its type.
    #[error("invalid state: {0}")]
    Invalid(&'static str),
}
