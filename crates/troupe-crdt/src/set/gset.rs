//! G-Set: grow-only set.

use crate::error::UpdateError;
use crate::threshold::MonotoneQuery;
use crate::traits::{DeltaSync, Element, Lattice, Mutate, Query, ReplicaId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Grow-only set: join is union.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent, bound(deserialize = "T: Element"))]
pub struct GSet<T>(BTreeSet<T>);

/// Operations of a [`GSet`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GSetOp<T> {
    /// Add an element.
    Add(T),
}

impl<T> Default for GSet<T> {
    fn default() -> Self {
        GSet(BTreeSet::new())
    }
}

impl<T: Element> GSet<T> {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `element` is in the set.
    pub fn contains(&self, element: &T) -> bool {
        self.0.contains(element)
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the set has no element.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The elements, ascending.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &T> + '_ {
        self.0.iter()
    }
}

impl<T: Element> FromIterator<T> for GSet<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        GSet(iter.into_iter().collect())
    }
}

impl<T: Element> Lattice for GSet<T> {
    fn bottom() -> Self {
        Self::default()
    }

    fn is_bottom(&self) -> bool {
        self.0.is_empty()
    }

    fn merge(&mut self, other: &Self) {
        self.0.extend(other.0.iter().cloned());
    }

    fn leq(&self, other: &Self) -> bool {
        self.0.is_subset(&other.0)
    }

    fn join_decomposition(&self) -> Vec<Self> {
        self.0.iter().map(|e| GSet(BTreeSet::from([e.clone()]))).collect()
    }
}

impl<T: Element> DeltaSync for GSet<T> {
    /// The set itself: without dots there is nothing smaller that is exact.
    type Digest = BTreeSet<T>;

    fn digest(&self) -> BTreeSet<T> {
        self.0.clone()
    }

    fn delta(&self, digest: &BTreeSet<T>) -> Self {
        GSet(self.0.difference(digest).cloned().collect())
    }
}

impl<T: Element> Query for GSet<T> {
    type Value = BTreeSet<T>;

    fn query(&self) -> BTreeSet<T> {
        self.0.clone()
    }
}

impl<T: Element> MonotoneQuery for GSet<T> {
    fn value_leq(a: &BTreeSet<T>, b: &BTreeSet<T>) -> bool {
        a.is_subset(b)
    }
}

impl<T: Element, R: ReplicaId> Mutate<R> for GSet<T> {
    type Op = GSetOp<T>;

    fn delta_mutate(&self, GSetOp::Add(e): GSetOp<T>, _replica: &R) -> Result<Self, UpdateError> {
        Ok(if self.0.contains(&e) { Self::bottom() } else { GSet(BTreeSet::from([e])) })
    }
}
