//! 2P-Set: two-phase set (a removed element can never come back).

use super::GSet;
use crate::error::UpdateError;
use crate::macros::newtype_lattice;
use crate::pair::Pair;
use crate::traits::{Element, Lattice, Mutate, Query, ReplicaId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Two-phase set: a G-Set of added elements and a G-Set of removed ones (tombstones). Remove
/// wins, forever: once removed an element cannot be added again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent, bound(deserialize = "T: Element"))]
pub struct TwoPSet<T>(Pair<GSet<T>, GSet<T>>);

newtype_lattice!([T: Element] TwoPSet<T>, Pair<GSet<T>, GSet<T>>);

/// Operations of a [`TwoPSet`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TwoPSetOp<T> {
    /// Add an element (no effect if it was ever removed).
    Add(T),
    /// Remove an element (no effect unless it is present).
    Remove(T),
}

impl<T: Element> Default for TwoPSet<T> {
    fn default() -> Self {
        Self::bottom()
    }
}

impl<T: Element> TwoPSet<T> {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `element` is in the set (added and never removed).
    pub fn contains(&self, element: &T) -> bool {
        self.0 .0.contains(element) && !self.0 .1.contains(element)
    }
}

impl<T: Element> Query for TwoPSet<T> {
    type Value = BTreeSet<T>;

    fn query(&self) -> BTreeSet<T> {
        let Pair(added, removed) = &self.0;
        added.iter().filter(|e| !removed.contains(e)).cloned().collect()
    }
}

impl<T: Element, R: ReplicaId> Mutate<R> for TwoPSet<T> {
    type Op = TwoPSetOp<T>;

    fn delta_mutate(&self, op: TwoPSetOp<T>, _replica: &R) -> Result<Self, UpdateError> {
        let Pair(added, _) = &self.0;
        Ok(match op {
            TwoPSetOp::Add(e) if !added.contains(&e) => TwoPSet(Pair(GSet::from_iter([e]), GSet::bottom())),
            TwoPSetOp::Remove(e) if self.contains(&e) => TwoPSet(Pair(GSet::bottom(), GSet::from_iter([e]))),
            TwoPSetOp::Add(_) | TwoPSetOp::Remove(_) => Self::bottom(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_wins_forever() {
        let mut a = TwoPSet::<u8>::new();
        a.apply(TwoPSetOp::Add(1), &1u8).expect("ok");
        let mut b = a.clone();
        b.apply(TwoPSetOp::Remove(1), &2).expect("ok");
        a.apply(TwoPSetOp::Add(1), &1).expect("ok"); // re-add: no effect, already added
        let mut j = a.join(&b);
        assert!(!j.contains(&1));
        assert!(j.apply(TwoPSetOp::Add(1), &1).expect("ok").is_bottom());
        assert!(!j.contains(&1));
    }
}
