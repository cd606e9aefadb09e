//! IVar: single-assignment variable.

use crate::error::UpdateError;
use crate::max::Max;
use crate::traits::{Element, Lattice, Mutate, ReplicaId};
use serde::{Deserialize, Serialize};

/// Single-assignment variable (Lasp's `ivar`): unset, then set once. Setting it again to the
/// same value is a no-op; to a different value, an [`UpdateError::AlreadyAssigned`]. Two replicas
/// that assign different values *concurrently* cannot be stopped without coordination; the join
/// then keeps the greater value so that all replicas still agree.
pub type IVar<V> = Max<Option<V>>;

/// Operations of an [`IVar`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum IVarOp<V> {
    /// Assign the value.
    Set(V),
}

impl<V: Element, R: ReplicaId> Mutate<R> for Max<Option<V>> {
    type Op = IVarOp<V>;

    fn delta_mutate(&self, IVarOp::Set(value): IVarOp<V>, _replica: &R) -> Result<Self, UpdateError> {
        match self.get() {
            None => Ok(Max::new(Some(value))),
            Some(current) if *current == value => Ok(Self::bottom()),
            Some(_) => Err(UpdateError::AlreadyAssigned),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traits::Query;

    #[test]
    fn assigns_once() {
        let mut v = IVar::<u32>::default();
        assert_eq!(v.query(), None);
        v.apply(IVarOp::Set(4), &1u8).expect("first assignment");
        assert!(v.apply(IVarOp::Set(4), &2u8).expect("same value").is_bottom());
        assert_eq!(v.apply(IVarOp::Set(5), &2u8), Err(UpdateError::AlreadyAssigned));
        assert_eq!(v.query(), Some(4));
    }

    #[test]
    fn concurrent_assignments_converge() {
        let mut a = IVar::<u32>::default();
        let mut b = IVar::<u32>::default();
        a.apply(IVarOp::Set(1), &1u8).expect("ok");
        b.apply(IVarOp::Set(2), &2u8).expect("ok");
        assert_eq!(a.join(&b), b.join(&a));
        assert_eq!(a.join(&b).query(), Some(2));
    }
}
