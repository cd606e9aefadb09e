//! G-Counter: grow-only counter.

use crate::error::UpdateError;
use crate::macros::newtype_lattice;
use crate::map::GMap;
use crate::max::Max;
use crate::threshold::MonotoneQuery;
use crate::traits::{Lattice, Mutate, Query, ReplicaId};
use serde::{Deserialize, Serialize};

/// Grow-only counter: one monotonic count per replica; the value is their sum.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent, bound = "R: ReplicaId")]
pub struct GCounter<R>(GMap<R, Max<u64>>);

newtype_lattice!([R: ReplicaId] GCounter<R>, GMap<R, Max<u64>>);

/// Operations of a [`GCounter`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GCounterOp {
    /// Add a (non-negative) amount.
    Increment(u64),
}

impl<R: ReplicaId> Default for GCounter<R> {
    fn default() -> Self {
        Self::bottom()
    }
}

impl<R: ReplicaId> GCounter<R> {
    /// A zero counter.
    pub fn new() -> Self {
        Self::default()
    }

    /// The count contributed by `replica`.
    pub fn get(&self, replica: &R) -> u64 {
        self.0.get(replica).map_or(0, |m| *m.get())
    }

    /// The value: the sum of all replicas' counts (saturating).
    pub fn value(&self) -> u64 {
        self.0.iter().fold(0u64, |sum, (_, m)| sum.saturating_add(*m.get()))
    }

    /// The delta adding `amount` at `replica` (bottom for 0, or once the count saturates).
    pub(crate) fn increment_delta(&self, amount: u64, replica: &R) -> Self {
        let current = self.get(replica);
        let next = current.saturating_add(amount);
        if next == current {
            return Self::bottom();
        }
        GCounter(GMap::singleton(replica.clone(), Max::new(next)))
    }
}

impl<R: ReplicaId> Query for GCounter<R> {
    type Value = u64;

    fn query(&self) -> u64 {
        self.value()
    }
}

impl<R: ReplicaId> MonotoneQuery for GCounter<R> {
    fn value_leq(a: &u64, b: &u64) -> bool {
        a <= b
    }
}

impl<R: ReplicaId> Mutate<R> for GCounter<R> {
    type Op = GCounterOp;

    fn delta_mutate(&self, GCounterOp::Increment(n): GCounterOp, replica: &R) -> Result<Self, UpdateError> {
        Ok(self.increment_delta(n, replica))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_increments_add_up() {
        let mut a = GCounter::<u8>::new();
        let mut b = GCounter::<u8>::new();
        a.apply(GCounterOp::Increment(2), &1).expect("ok");
        b.apply(GCounterOp::Increment(3), &2).expect("ok");
        b.apply(GCounterOp::Increment(1), &2).expect("ok");
        assert_eq!(a.join(&b).value(), 6);
        assert_eq!(a.join(&b).join(&a).value(), 6, "idempotent: no double counting");
    }
}
