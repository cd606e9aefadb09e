//! AW-Map: add-wins map whose values are nested causal CRDTs.

use crate::causal::{remove_all, Causal, CausalKind, DotMap, DotStore};
use crate::context::CausalContext;
use crate::traits::{Element, ReplicaId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::marker::PhantomData;

/// Add-wins map from keys to nested causal CRDTs (`V` is an [`AwSet`](crate::AwSet),
/// [`MvRegister`](crate::MvRegister), [`EwFlag`](crate::EwFlag), another `AwMap`, ...). All
/// values share the map's causal context. A key is present while its value holds a dot: removing
/// a key removes the updates observed so far, and an update concurrent with the removal survives
/// (alone).
pub type AwMap<K, V, R> = Causal<AwMapKind<K, V>, R>;

/// The [`CausalKind`] of [`AwMap`]; `V` is the value type, itself a [`Causal`].
#[derive(Debug)]
pub struct AwMapKind<K, V>(PhantomData<fn() -> (K, V)>);

/// Operations of an [`AwMap`]: `O` is the value type's operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AwMapOp<K, O> {
    /// Apply an operation to the value at a key (creating it from bottom if absent).
    Apply(K, O),
    /// Remove a key: the updates of its value observed so far.
    Remove(K),
}

impl<K: Element, VK: CausalKind<R>, R: ReplicaId> CausalKind<R> for AwMapKind<K, Causal<VK, R>> {
    type Store = DotMap<K, VK::Store>;
    type Op = AwMapOp<K, VK::Op>;
    type Value = BTreeMap<K, VK::Value>;

    fn delta_mutate(
        store: &Self::Store,
        ctx: &CausalContext<R>,
        op: &Self::Op,
        replica: &R,
    ) -> (Self::Store, CausalContext<R>) {
        match op {
            AwMapOp::Apply(key, inner) => {
                let empty = VK::Store::default();
                let child = store.get(key).unwrap_or(&empty);
                let (child, context) = VK::delta_mutate(child, ctx, inner, replica);
                (DotMap::single(key.clone(), child), context)
            }
            AwMapOp::Remove(key) => remove_all(store.get(key)),
        }
    }

    fn target(op: &Self::Op) -> Option<&K> {
        match op {
            AwMapOp::Apply(key, _) | AwMapOp::Remove(key) => Some(key),
        }
    }

    fn query(store: &Self::Store) -> Self::Value {
        store.iter().map(|(k, child)| (k.clone(), VK::query(child))).collect()
    }
}

impl<K: Element, VK: CausalKind<R>, R: ReplicaId> Causal<AwMapKind<K, Causal<VK, R>>, R> {
    /// Number of keys.
    pub fn len(&self) -> usize {
        self.store().len()
    }

    /// Whether the map has no key.
    pub fn is_empty(&self) -> bool {
        self.store().is_empty()
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &K) -> bool {
        self.store().contains_key(key)
    }

    /// The value at `key`, read.
    pub fn get(&self, key: &K) -> Option<VK::Value> {
        self.store().get(key).map(VK::query)
    }

    /// The number of dots held under `key` (0 if absent): how many concurrent updates it keeps.
    pub fn dots_at(&self, key: &K) -> usize {
        self.store().get(key).map_or(0, DotStore::dot_count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::set::{AwSet, AwSetOp};
    use crate::traits::{Lattice, Query};
    use std::collections::BTreeSet;

    type Map = AwMap<char, AwSet<u32, u8>, u8>;

    #[test]
    fn update_concurrent_with_remove_survives_alone() {
        let mut a = Map::new();
        a.update(AwMapOp::Apply('k', AwSetOp::Add(1)), &1);
        let mut b = a.clone();
        a.update(AwMapOp::Remove('k'), &1);
        b.update(AwMapOp::Apply('k', AwSetOp::Add(2)), &2);
        let j = a.join(&b);
        assert_eq!(j.get(&'k'), Some(BTreeSet::from([2])));
        assert_eq!(j, b.join(&a));
    }

    #[test]
    fn emptied_value_removes_its_key() {
        let mut a = Map::new();
        a.update(AwMapOp::Apply('k', AwSetOp::Add(1)), &1);
        a.update(AwMapOp::Apply('k', AwSetOp::Remove(1)), &1);
        assert!(a.is_empty());
        assert!(a.query().is_empty());
    }

    #[test]
    fn nested_maps_merge_per_key() {
        type Nested = AwMap<u8, AwMap<u8, AwSet<u8, u8>, u8>, u8>;
        let mut a = Nested::new();
        let mut b = Nested::new();
        a.update(AwMapOp::Apply(1, AwMapOp::Apply(1, AwSetOp::Add(1))), &1);
        b.update(AwMapOp::Apply(1, AwMapOp::Apply(2, AwSetOp::Add(2))), &2);
        let j = a.join(&b);
        let inner = j.get(&1).expect("key 1");
        assert_eq!(inner.len(), 2);
    }
}
