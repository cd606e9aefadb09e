//! PN-Counter: counter with increments and decrements.

use super::{clamp_i64, GCounter};
use crate::error::UpdateError;
use crate::macros::newtype_lattice;
use crate::pair::Pair;
use crate::traits::{Lattice, Mutate, Query, ReplicaId};
use serde::{Deserialize, Serialize};

/// Positive-negative counter: a G-Counter of increments and one of decrements.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent, bound = "R: ReplicaId")]
pub struct PnCounter<R>(Pair<GCounter<R>, GCounter<R>>);

newtype_lattice!([R: ReplicaId] PnCounter<R>, Pair<GCounter<R>, GCounter<R>>);

/// Operations of a [`PnCounter`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PnCounterOp {
    /// Add an amount.
    Increment(u64),
    /// Subtract an amount.
    Decrement(u64),
}

impl<R: ReplicaId> Default for PnCounter<R> {
    fn default() -> Self {
        Self::bottom()
    }
}

impl<R: ReplicaId> PnCounter<R> {
    /// A zero counter.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value: increments minus decrements.
    pub fn value(&self) -> i64 {
        clamp_i64(i128::from(self.0 .0.value()) - i128::from(self.0 .1.value()))
    }

    /// Increments made by `replica`.
    pub fn increments(&self, replica: &R) -> u64 {
        self.0 .0.get(replica)
    }

    /// Decrements made by `replica`.
    pub fn decrements(&self, replica: &R) -> u64 {
        self.0 .1.get(replica)
    }
}

impl<R: ReplicaId> Query for PnCounter<R> {
    type Value = i64;

    fn query(&self) -> i64 {
        self.value()
    }
}

impl<R: ReplicaId> Mutate<R> for PnCounter<R> {
    type Op = PnCounterOp;

    fn delta_mutate(&self, op: PnCounterOp, replica: &R) -> Result<Self, UpdateError> {
        let Pair(p, n) = &self.0;
        Ok(PnCounter(match op {
            PnCounterOp::Increment(k) => Pair(p.increment_delta(k, replica), GCounter::bottom()),
            PnCounterOp::Decrement(k) => Pair(GCounter::bottom(), n.increment_delta(k, replica)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increments_and_decrements_from_several_replicas() {
        let mut a = PnCounter::<u8>::new();
        let mut b = PnCounter::<u8>::new();
        a.apply(PnCounterOp::Increment(5), &1).expect("ok");
        b.apply(PnCounterOp::Decrement(7), &2).expect("ok");
        assert_eq!(a.join(&b).value(), -2);
    }
}
