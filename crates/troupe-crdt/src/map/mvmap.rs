//! MV-Map: map from keys to multi-value registers.

use crate::causal::{overwrite, remove_all, Causal, CausalKind, DotFun, DotMap};
use crate::context::CausalContext;
use crate::traits::{Element, ReplicaId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::marker::PhantomData;

/// Map from keys to multi-value registers (Lasp's `mvmap`): setting a key replaces the values
/// observed at it, concurrent sets are all kept, removing a key removes what was observed.
/// Equivalent to `AwMap<K, MvRegister<V, R>, R>` with a flatter API.
pub type MvMap<K, V, R> = Causal<MvMapKind<K, V>, R>;

/// The [`CausalKind`] of [`MvMap`].
#[derive(Debug)]
pub struct MvMapKind<K, V>(PhantomData<fn() -> (K, V)>);

/// Operations of an [`MvMap`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MvMapOp<K, V> {
    /// Set the value at a key.
    Set(K, V),
    /// Remove a key.
    Remove(K),
}

impl<K: Element, V: Element, R: ReplicaId> CausalKind<R> for MvMapKind<K, V> {
    type Store = DotMap<K, DotFun<R, V>>;
    type Op = MvMapOp<K, V>;
    type Value = BTreeMap<K, BTreeSet<V>>;

    fn delta_mutate(
        store: &Self::Store,
        ctx: &CausalContext<R>,
        op: &Self::Op,
        replica: &R,
    ) -> (Self::Store, CausalContext<R>) {
        match op {
            MvMapOp::Set(key, value) => {
                let (child, context) =
                    overwrite(store.get(key), ctx, replica, |dot| DotFun::single(dot, value.clone()));
                (DotMap::single(key.clone(), child), context)
            }
            MvMapOp::Remove(key) => remove_all(store.get(key)),
        }
    }

    fn target(op: &Self::Op) -> Option<&K> {
        match op {
            MvMapOp::Set(key, _) | MvMapOp::Remove(key) => Some(key),
        }
    }

    fn query(store: &Self::Store) -> Self::Value {
        store.iter().map(|(k, values)| (k.clone(), values.iter().map(|(_, v)| v.clone()).collect())).collect()
    }
}

impl<K: Element, V: Element, R: ReplicaId> Causal<MvMapKind<K, V>, R> {
    /// The values at `key` (several after concurrent sets).
    pub fn get(&self, key: &K) -> BTreeSet<V> {
        self.store().get(key).map(|values| values.iter().map(|(_, v)| v.clone()).collect()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traits::Lattice;

    #[test]
    fn concurrent_sets_are_kept_then_replaced() {
        let mut a = MvMap::<char, u32, u8>::new();
        let mut b = a.clone();
        a.update(MvMapOp::Set('k', 1), &1);
        b.update(MvMapOp::Set('k', 2), &2);
        let mut j = a.join(&b);
        assert_eq!(j.get(&'k'), BTreeSet::from([1, 2]));
        j.update(MvMapOp::Set('k', 3), &1);
        assert_eq!(j.join(&b).get(&'k'), BTreeSet::from([3]));
    }
}
