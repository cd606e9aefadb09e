//! Threshold reads: has a state (or its value) reached a threshold?
//!
//! Lasp's `read(id, threshold)` blocks until the variable's state is an inflation of the
//! threshold, or a strict inflation for `{strict, threshold}`. Because states only grow, once a
//! threshold is met it stays met, which makes the read safe without coordination.

use crate::traits::{Lattice, Query};
use serde::{Deserialize, Serialize};

/// A threshold on states (`T` = the CRDT) or on values (`T` = its query value).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Threshold<T> {
    /// Met when the current state/value is at least the threshold (`⊑`).
    Reached(T),
    /// Met when the current state/value is strictly above the threshold (`⊏`).
    Strict(T),
}

impl<S: Lattice> Threshold<S> {
    /// Whether `current` (a state) has reached this state threshold.
    pub fn is_met(&self, current: &S) -> bool {
        match self {
            Threshold::Reached(t) => t.is_inflation(current),
            Threshold::Strict(t) => t.is_strict_inflation(current),
        }
    }
}

/// Types whose value only grows along with the state (counters, grow-only sets, max-int, ...),
/// so a threshold can be put on the value rather than on a state.
pub trait MonotoneQuery: Query {
    /// The order on values, compatible with the lattice: `s ⊑ t` implies
    /// `value_leq(s.query(), t.query())`.
    fn value_leq(a: &Self::Value, b: &Self::Value) -> bool;

    /// Whether the current value has reached `threshold`.
    fn value_reached(&self, threshold: &Threshold<Self::Value>) -> bool {
        let v = self.query();
        match threshold {
            Threshold::Reached(t) => Self::value_leq(t, &v),
            Threshold::Strict(t) => Self::value_leq(t, &v) && !Self::value_leq(&v, t),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counter::{GCounter, GCounterOp};
    use crate::set::{AwSet, AwSetOp};
    use crate::traits::Mutate;

    #[test]
    fn counter_value_threshold() {
        let mut c = GCounter::<u8>::new();
        let t = Threshold::Reached(3);
        assert!(!c.value_reached(&t));
        c.apply(GCounterOp::Increment(3), &1).expect("ok");
        assert!(c.value_reached(&t));
        assert!(!c.value_reached(&Threshold::Strict(3)));
        c.apply(GCounterOp::Increment(1), &2).expect("ok");
        assert!(c.value_reached(&Threshold::Strict(3)));
    }

    #[test]
    fn state_threshold_strict_and_plain() {
        let mut s = AwSet::<u8, u8>::new();
        s.add(1, &1);
        let snapshot = s.clone();
        assert!(Threshold::Reached(snapshot.clone()).is_met(&s));
        assert!(!Threshold::Strict(snapshot.clone()).is_met(&s));
        s.apply(AwSetOp::Remove(1), &1).expect("ok");
        // A removal is still an inflation of the state.
        assert!(Threshold::Strict(snapshot).is_met(&s));
    }
}
