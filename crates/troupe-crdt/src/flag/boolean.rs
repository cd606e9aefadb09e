//! Boolean: a flag that can only become true.

use crate::error::UpdateError;
use crate::max::Max;
use crate::traits::{Lattice, Mutate, ReplicaId};
use serde::{Deserialize, Serialize};

/// Monotonic boolean (Lasp's `boolean`): starts false, becomes true, stays true.
pub type Boolean = Max<bool>;

/// Operations of a [`Boolean`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BooleanOp {
    /// Set to true.
    True,
}

impl<R: ReplicaId> Mutate<R> for Max<bool> {
    type Op = BooleanOp;

    fn delta_mutate(&self, BooleanOp::True: BooleanOp, _replica: &R) -> Result<Self, UpdateError> {
        Ok(if *self.get() { Self::bottom() } else { Max::new(true) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traits::Query;

    #[test]
    fn true_wins() {
        let mut a = Boolean::default();
        let b = Boolean::default();
        a.apply(BooleanOp::True, &1u8).expect("ok");
        assert!(a.join(&b).query());
        assert!(b.join(&a).query());
    }
}
