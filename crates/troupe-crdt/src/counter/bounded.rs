//! Bounded counter: a counter that never goes below zero, without coordination.

use super::{clamp_i64, PnCounter, PnCounterOp};
use crate::error::UpdateError;
use crate::macros::newtype_lattice;
use crate::map::GMap;
use crate::max::Max;
use crate::pair::Pair;
use crate::traits::{Lattice, Mutate, Query, ReplicaId};
use serde::{Deserialize, Serialize};

/// Bounded counter (Balegas et al., Lasp's `bcounter`): a PN-Counter plus a grow-only map of
/// rights transferred between replicas. A replica may only decrement (or transfer) the rights it
/// holds: its increments, minus its decrements, plus transfers received, minus transfers sent.
/// Only the holder spends its rights, so the value never drops below zero even under
/// concurrency, in every state that includes the causal past of its updates (full states, or
/// deltas delivered in causal order). A lone transfer delta that arrives before the increments
/// backing it can show a transiently negative value until those arrive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent, bound = "R: ReplicaId")]
pub struct BoundedCounter<R>(Pair<PnCounter<R>, Transfers<R>>);

/// Rights transferred, per `(from, to)`: a grow-only total.
type Transfers<R> = GMap<(R, R), Max<u64>>;

newtype_lattice!([R: ReplicaId] BoundedCounter<R>, Pair<PnCounter<R>, Transfers<R>>);

/// Operations of a [`BoundedCounter`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BoundedCounterOp<R> {
    /// Add an amount (creating rights at this replica).
    Increment(u64),
    /// Subtract an amount, spending this replica's rights.
    Decrement(u64),
    /// Give some of this replica's rights to another replica.
    Transfer {
        /// The receiving replica.
        to: R,
        /// How many rights.
        amount: u64,
    },
}

impl<R: ReplicaId> Default for BoundedCounter<R> {
    fn default() -> Self {
        Self::bottom()
    }
}

impl<R: ReplicaId> BoundedCounter<R> {
    /// A zero counter.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value (never negative for states built by operations).
    pub fn value(&self) -> i64 {
        self.0 .0.value()
    }

    /// Total transferred from `from` to `to`.
    pub fn transferred(&self, from: &R, to: &R) -> u64 {
        self.0 .1.get(&(from.clone(), to.clone())).map_or(0, |m| *m.get())
    }

    /// Rights held by `replica`: what it may still decrement or transfer.
    pub fn rights(&self, replica: &R) -> u64 {
        let Pair(counts, transfers) = &self.0;
        let mut rights = i128::from(counts.increments(replica)) - i128::from(counts.decrements(replica));
        for ((from, to), amount) in transfers.iter() {
            let amount = i128::from(*amount.get());
            if to == replica {
                rights += amount;
            }
            if from == replica {
                rights -= amount;
            }
        }
        u64::try_from(rights.max(0)).unwrap_or(u64::MAX)
    }

    fn check_rights(&self, replica: &R, requested: u64) -> Result<(), UpdateError> {
        let available = self.rights(replica);
        if requested > available {
            return Err(UpdateError::OutOfRights { requested, available });
        }
        Ok(())
    }
}

impl<R: ReplicaId> Query for BoundedCounter<R> {
    type Value = i64;

    fn query(&self) -> i64 {
        clamp_i64(i128::from(self.value()))
    }
}

impl<R: ReplicaId> Mutate<R> for BoundedCounter<R> {
    type Op = BoundedCounterOp<R>;

    fn delta_mutate(&self, op: BoundedCounterOp<R>, replica: &R) -> Result<Self, UpdateError> {
        let Pair(counts, _) = &self.0;
        let counts_delta = |op| counts.delta_mutate(op, replica);
        Ok(BoundedCounter(match op {
            BoundedCounterOp::Increment(n) => Pair(counts_delta(PnCounterOp::Increment(n))?, GMap::bottom()),
            BoundedCounterOp::Decrement(n) => {
                self.check_rights(replica, n)?;
                Pair(counts_delta(PnCounterOp::Decrement(n))?, GMap::bottom())
            }
            BoundedCounterOp::Transfer { to, amount } => {
                self.check_rights(replica, amount)?;
                if to == *replica || amount == 0 {
                    return Ok(Self::bottom());
                }
                let total = self.transferred(replica, &to).saturating_add(amount);
                Pair(PnCounter::bottom(), GMap::singleton((replica.clone(), to), Max::new(total)))
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decrement_needs_rights_and_transfers_move_them() {
        let mut a = BoundedCounter::<u8>::new();
        a.apply(BoundedCounterOp::Increment(10), &1).expect("ok");
        let mut b = a.clone();
        assert_eq!(
            b.apply(BoundedCounterOp::Decrement(1), &2),
            Err(UpdateError::OutOfRights { requested: 1, available: 0 })
        );
        a.apply(BoundedCounterOp::Transfer { to: 2, amount: 4 }, &1).expect("ok");
        b.merge(&a);
        assert_eq!(b.rights(&2), 4);
        assert_eq!(b.rights(&1), 6);
        b.apply(BoundedCounterOp::Decrement(4), &2).expect("ok");
        // Concurrently replica 1 spends all of its own rights: the value stays >= 0.
        a.apply(BoundedCounterOp::Decrement(6), &1).expect("ok");
        let mut j = a.join(&b);
        assert_eq!(j.value(), 0);
        assert!(j.apply(BoundedCounterOp::Decrement(1), &1).is_err());
    }
}
