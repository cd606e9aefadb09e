//! LWW-Register: last-writer-wins register.

use crate::error::UpdateError;
use crate::macros::newtype_lattice;
use crate::max::Max;
use crate::traits::{Element, Lattice, Mutate, Query, ReplicaId};
use serde::{Deserialize, Serialize};

/// A value with the timestamp and replica of its write, ordered by `(timestamp, replica, value)`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Stamped<V, R> {
    /// The writer's timestamp (any clock; supplied by the caller, the library has none).
    pub timestamp: u64,
    /// The writing replica: breaks timestamp ties (the greater id wins).
    pub replica: R,
    /// The value written.
    pub value: V,
}

/// Last-writer-wins register: the write with the greatest timestamp wins; equal timestamps are
/// broken by the greater replica id, then (same replica, same timestamp) by the greater value, so
/// the join is a total order and every replica picks the same winner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent, bound(deserialize = "V: Element, R: ReplicaId"))]
pub struct LwwRegister<V, R>(Max<Option<Stamped<V, R>>>);

newtype_lattice!([V: Element, R: ReplicaId] LwwRegister<V, R>, Max<Option<Stamped<V, R>>>);

/// Operations of an [`LwwRegister`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LwwOp<V> {
    /// Write `value` at `timestamp` (ignored if an observed write is newer).
    Set {
        /// The value.
        value: V,
        /// The writer's clock reading.
        timestamp: u64,
    },
}

impl<V: Element, R: ReplicaId> Default for LwwRegister<V, R> {
    fn default() -> Self {
        Self::bottom()
    }
}

impl<V: Element, R: ReplicaId> LwwRegister<V, R> {
    /// An unset register.
    pub fn new() -> Self {
        Self::default()
    }

    /// The winning write, if any.
    pub fn winner(&self) -> Option<&Stamped<V, R>> {
        self.0.get().as_ref()
    }

    /// The timestamp of the winning write (0 if unset): a caller without a clock can write at
    /// `latest_timestamp() + 1`.
    pub fn latest_timestamp(&self) -> u64 {
        self.winner().map_or(0, |w| w.timestamp)
    }
}

impl<V: Element, R: ReplicaId> Query for LwwRegister<V, R> {
    type Value = Option<V>;

    fn query(&self) -> Option<V> {
        self.winner().map(|w| w.value.clone())
    }
}

impl<V: Element, R: ReplicaId> Mutate<R> for LwwRegister<V, R> {
    type Op = LwwOp<V>;

    fn delta_mutate(&self, LwwOp::Set { value, timestamp }: LwwOp<V>, replica: &R) -> Result<Self, UpdateError> {
        let write = Some(Stamped { timestamp, replica: replica.clone(), value });
        Ok(if write > *self.0.get() { LwwRegister(Max::new(write)) } else { Self::bottom() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_timestamp_wins_and_ties_go_to_the_greater_replica() {
        let set = |v, t| LwwOp::Set { value: v, timestamp: t };
        let mut a = LwwRegister::<char, u8>::new();
        let mut b = LwwRegister::<char, u8>::new();
        a.apply(set('a', 5), &1).expect("ok");
        b.apply(set('b', 4), &2).expect("ok");
        assert_eq!(a.join(&b).query(), Some('a'));
        b.apply(set('c', 5), &2).expect("ok");
        assert_eq!(a.join(&b).query(), Some('c'), "tie on 5: replica 2 > 1");
        assert_eq!(b.join(&a).query(), Some('c'));
        // An older write is ignored.
        assert!(a.join(&b).delta_mutate(set('o', 1), &9).expect("ok").is_bottom());
    }
}
