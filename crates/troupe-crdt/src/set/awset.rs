//! AW-Set: add-wins observed-remove set without tombstones.

use crate::causal::{overwrite, remove_all, Causal, CausalKind, DotMap, DotSet};
use crate::context::CausalContext;
use crate::traits::{Element, ReplicaId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::marker::PhantomData;

/// Add-wins set: an element is present while some add of it has not been observed by a remove.
/// A remove concurrent with an add loses. Each element keeps only the dots of its latest adds;
/// removed elements leave nothing but their dots in the causal context.
pub type AwSet<T, R> = Causal<AwSetKind<T>, R>;

/// The [`CausalKind`] of [`AwSet`].
#[derive(Debug)]
pub struct AwSetKind<T>(PhantomData<fn() -> T>);

/// Operations of an [`AwSet`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AwSetOp<T> {
    /// Add an element (again, if present: the new add replaces the observed ones).
    Add(T),
    /// Remove the adds of an element observed so far.
    Remove(T),
}

impl<T: Element, R: ReplicaId> CausalKind<R> for AwSetKind<T> {
    type Store = DotMap<T, DotSet<R>>;
    type Op = AwSetOp<T>;
    type Value = BTreeSet<T>;

    fn delta_mutate(
        store: &Self::Store,
        ctx: &CausalContext<R>,
        op: &AwSetOp<T>,
        replica: &R,
    ) -> (Self::Store, CausalContext<R>) {
        match op {
            AwSetOp::Add(e) => {
                let (dots, context) = overwrite(store.get(e), ctx, replica, DotSet::single);
                (DotMap::single(e.clone(), dots), context)
            }
            AwSetOp::Remove(e) => remove_all(store.get(e)),
        }
    }

    fn target(op: &AwSetOp<T>) -> Option<&T> {
        match op {
            AwSetOp::Add(e) | AwSetOp::Remove(e) => Some(e),
        }
    }

    fn query(store: &Self::Store) -> BTreeSet<T> {
        store.keys().cloned().collect()
    }
}

impl<T: Element, R: ReplicaId> Causal<AwSetKind<T>, R> {
    /// Whether `element` is in the set.
    pub fn contains(&self, element: &T) -> bool {
        self.store().contains_key(element)
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.store().len()
    }

    /// Whether the set has no element.
    pub fn is_empty(&self) -> bool {
        self.store().is_empty()
    }

    /// The elements, ascending.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &T> + '_ {
        self.store().keys()
    }

    /// Adds `element` at `replica`; returns the delta.
    pub fn add(&mut self, element: T, replica: &R) -> Self {
        self.update(AwSetOp::Add(element), replica)
    }

    /// Removes `element` (the adds observed so far); returns the delta.
    pub fn remove(&mut self, element: T, replica: &R) -> Self {
        self.update(AwSetOp::Remove(element), replica)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traits::{Lattice, Mutate, Query};

    #[test]
    fn concurrent_add_wins_over_remove() {
        let mut a = AwSet::<char, u8>::new();
        a.add('x', &1);
        let mut b = a.clone();
        a.remove('x', &1); // observed remove at replica 1
        b.add('x', &2); // concurrent re-add at replica 2
        assert!(a.join(&b).contains(&'x'));
        assert!(b.join(&a).contains(&'x'));
    }

    #[test]
    fn observed_remove_removes_and_leaves_no_tombstone() {
        let mut a = AwSet::<u32, u8>::new();
        a.add(1, &1);
        a.add(2, &1);
        let mut b = a.clone();
        b.remove(1, &2);
        let j = a.join(&b);
        assert_eq!(j.query(), BTreeSet::from([2]));
        assert_eq!(j.store().len(), 1, "no entry kept for the removed element");
        assert_eq!(j.context().len(), 2, "its dot stays in the context");
    }

    #[test]
    fn remove_of_absent_element_is_a_no_op() {
        let a = AwSet::<u32, u8>::new();
        assert!(a.delta_mutate(AwSetOp::Remove(3), &1).expect("ok").is_bottom());
    }
}
