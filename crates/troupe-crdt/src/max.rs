//! `Max<T>`: a totally ordered value that only grows. The lattice behind MaxInt, Boolean, IVar,
//! LWW-Register and the entries of counters.

use crate::threshold::MonotoneQuery;
use crate::traits::{DeltaSync, Element, Lattice, Query};
use serde::{Deserialize, Serialize};

/// A value of a total order; join is the maximum, bottom is `T::default()` (which must be the
/// least value the type is used with: `0`, `false`, `None`, ...).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Max<T>(T);

impl<T> Max<T> {
    /// The state holding `value`.
    pub fn new(value: T) -> Self {
        Max(value)
    }

    /// The value.
    pub fn get(&self) -> &T {
        &self.0
    }
}

impl<T: Element + Default> Lattice for Max<T> {
    fn bottom() -> Self {
        Max(T::default())
    }

    fn merge(&mut self, other: &Self) {
        if other.0 > self.0 {
            self.0 = other.0.clone();
        }
    }

    fn leq(&self, other: &Self) -> bool {
        self.0 <= other.0
    }

    fn join_decomposition(&self) -> Vec<Self> {
        if self.is_bottom() {
            Vec::new()
        } else {
            vec![self.clone()]
        }
    }
}

impl<T: Element + Default> DeltaSync for Max<T> {
    /// The value itself (it is its own smallest summary).
    type Digest = T;

    fn digest(&self) -> T {
        self.0.clone()
    }

    fn delta(&self, digest: &T) -> Self {
        if self.0 > *digest {
            self.clone()
        } else {
            Self::bottom()
        }
    }
}

impl<T: Clone> Query for Max<T> {
    type Value = T;

    fn query(&self) -> T {
        self.0.clone()
    }
}

impl<T: Clone + Ord> MonotoneQuery for Max<T> {
    fn value_leq(a: &T, b: &T) -> bool {
        a <= b
    }
}
