//! Max-int: an integer register that only grows.

use crate::error::UpdateError;
use crate::max::Max;
use crate::traits::{Lattice, Mutate, ReplicaId};
use serde::{Deserialize, Serialize};

/// Max-int (Lasp's `max_int`): the join is the maximum.
pub type MaxInt = Max<u64>;

/// Operations of a [`MaxInt`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MaxIntOp {
    /// Add one.
    Increment,
    /// Raise to at least this value.
    Raise(u64),
}

impl<R: ReplicaId> Mutate<R> for Max<u64> {
    type Op = MaxIntOp;

    fn delta_mutate(&self, op: MaxIntOp, _replica: &R) -> Result<Self, UpdateError> {
        let current = *self.get();
        let next = match op {
            MaxIntOp::Increment => current.saturating_add(1),
            MaxIntOp::Raise(n) => n,
        };
        Ok(if next > current { Max::new(next) } else { Self::bottom() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_is_the_maximum() {
        let mut a = MaxInt::default();
        a.apply(MaxIntOp::Raise(7), &1u8).expect("ok");
        let mut b = MaxInt::default();
        b.apply(MaxIntOp::Increment, &2u8).expect("ok");
        assert_eq!(*a.join(&b).get(), 7);
    }
}
