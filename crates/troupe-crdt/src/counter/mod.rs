//! Counters: grow-only, positive-negative, bounded, lexicographic, and max-int.

mod bounded;
mod gcounter;
mod lex;
mod maxint;
mod pncounter;

pub use bounded::{BoundedCounter, BoundedCounterOp};
pub use gcounter::{GCounter, GCounterOp};
pub use lex::{LexCounter, LexCounterOp, LexPair};
pub use maxint::{MaxInt, MaxIntOp};
pub use pncounter::{PnCounter, PnCounterOp};

/// Clamps a wide signed sum into `i64`.
fn clamp_i64(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}
