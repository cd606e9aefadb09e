//! Lexicographic counter.

use super::clamp_i64;
use crate::error::UpdateError;
use crate::macros::newtype_lattice;
use crate::map::GMap;
use crate::max::Max;
use crate::traits::{Lattice, Mutate, Query, ReplicaId};
use serde::{Deserialize, Serialize};

/// One replica's entry in a [`LexCounter`], ordered lexicographically: a decrement bumps the
/// epoch, so the entry still grows in the lattice while its value shrinks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LexPair {
    /// Bumped by every decrement.
    pub epoch: u64,
    /// The replica's contribution to the value.
    pub value: i64,
}

/// Lexicographic counter (Lasp's `lexcounter`): per replica a `(epoch, value)` pair joined by
/// lexicographic maximum; the value is the sum of the replicas' values. Unlike the PN-Counter it
/// keeps one number per replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent, bound = "R: ReplicaId")]
pub struct LexCounter<R>(GMap<R, Max<LexPair>>);

newtype_lattice!([R: ReplicaId] LexCounter<R>, GMap<R, Max<LexPair>>);

/// Operations of a [`LexCounter`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LexCounterOp {
    /// Add an amount.
    Increment(u64),
    /// Subtract an amount.
    Decrement(u64),
}

impl<R: ReplicaId> Default for LexCounter<R> {
    fn default() -> Self {
        Self::bottom()
    }
}

impl<R: ReplicaId> LexCounter<R> {
    /// A zero counter.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value: the sum of the replicas' values.
    pub fn value(&self) -> i64 {
        clamp_i64(self.0.iter().map(|(_, p)| i128::from(p.get().value)).sum())
    }
}

impl<R: ReplicaId> Query for LexCounter<R> {
    type Value = i64;

    fn query(&self) -> i64 {
        self.value()
    }
}

impl<R: ReplicaId> Mutate<R> for LexCounter<R> {
    type Op = LexCounterOp;

    fn delta_mutate(&self, op: LexCounterOp, replica: &R) -> Result<Self, UpdateError> {
        let current = self.0.get(replica).map(|m| *m.get()).unwrap_or_default();
        let amount = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let next = match op {
            LexCounterOp::Increment(n) => {
                LexPair { epoch: current.epoch, value: current.value.saturating_add(amount(n)) }
            }
            LexCounterOp::Decrement(0) => current,
            LexCounterOp::Decrement(n) => {
                LexPair { epoch: current.epoch.saturating_add(1), value: current.value.saturating_sub(amount(n)) }
            }
        };
        if next <= current {
            return Ok(Self::bottom());
        }
        Ok(LexCounter(GMap::singleton(replica.clone(), Max::new(next))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decrements_win_by_epoch() {
        let mut a = LexCounter::<u8>::new();
        a.apply(LexCounterOp::Increment(5), &1).expect("ok");
        let old = a.clone();
        a.apply(LexCounterOp::Decrement(3), &1).expect("ok");
        let mut b = LexCounter::<u8>::new();
        b.apply(LexCounterOp::Increment(1), &2).expect("ok");
        // The stale entry of replica 1 loses to the newer epoch whatever the order.
        assert_eq!(old.join(&a).join(&b).value(), 3);
        assert_eq!(b.join(&a).join(&old).value(), 3);
    }
}
