//! A map from keys to nested dot stores: the store of add-wins sets and maps.

use super::store::DotStore;
use crate::codec::ReplicaTable;
use crate::context::{CausalContext, Dot};
use crate::error::CodecError;
use crate::traits::{Element, ReplicaId};
use std::collections::BTreeMap;

/// Keys mapped to non-empty child stores. A key is present exactly while its child holds a dot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DotMap<K, S>(BTreeMap<K, S>);

impl<K, S> Default for DotMap<K, S> {
    fn default() -> Self {
        DotMap(BTreeMap::new())
    }
}

impl<K: Element, S> DotMap<K, S> {
    /// The map holding `child` at `key`, or the empty map if `child` is empty.
    pub fn single<R: ReplicaId>(key: K, child: S) -> Self
    where
        S: DotStore<R>,
    {
        let mut map = BTreeMap::new();
        if !child.is_empty() {
            map.insert(key, child);
        }
        DotMap(map)
    }

    /// The child at `key`.
    pub fn get(&self, key: &K) -> Option<&S> {
        self.0.get(key)
    }

    /// Whether `key` has a child.
    pub fn contains_key(&self, key: &K) -> bool {
        self.0.contains_key(key)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is no key.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `(key, child)` pairs, ascending by key.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&K, &S)> + '_ {
        self.0.iter()
    }

    /// The keys, ascending.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &K> + '_ {
        self.0.keys()
    }
}

impl<K: Element, S> DotMap<K, S> {
    /// Joins `theirs` (the child of `other` at `key`) into the child at `key`.
    fn join_child<R: ReplicaId>(
        &mut self,
        key: &K,
        ctx: &CausalContext<R>,
        theirs: &S,
        other_ctx: &CausalContext<R>,
        scan: bool,
    ) where
        S: DotStore<R>,
    {
        match self.0.get_mut(key) {
            Some(mine) => {
                mine.join(ctx, theirs, other_ctx, scan);
                if mine.is_empty() {
                    self.0.remove(key);
                }
            }
            None => {
                // Nothing here to remove: keep their dots this side has not seen.
                let mut child = theirs.clone();
                child.retain_dots(&mut |d| !ctx.contains(d));
                if !child.is_empty() {
                    self.0.insert(key.clone(), child);
                }
            }
        }
    }
}

impl<R: ReplicaId, K: Element, S: DotStore<R>> DotStore<R> for DotMap<K, S> {
    type Key = K;
    type Wire = Vec<(K, S::Wire)>;

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn for_each_dot(&self, f: &mut dyn FnMut(&Dot<R>)) {
        for child in self.0.values() {
            child.for_each_dot(f);
        }
    }

    fn join(&mut self, ctx: &CausalContext<R>, other: &Self, other_ctx: &CausalContext<R>, scan: bool) {
        if scan {
            // Children `other` does not mention lose the dots `other` has seen (and removed).
            self.0.retain(|k, child| {
                if !other.0.contains_key(k) {
                    child.retain_dots(&mut |d| !other_ctx.contains(d));
                }
                !child.is_empty()
            });
        }
        for (k, theirs) in &other.0 {
            self.join_child(k, ctx, theirs, other_ctx, scan);
        }
    }

    fn join_at(&mut self, key: Option<&K>, ctx: &CausalContext<R>, other: &Self, other_ctx: &CausalContext<R>) {
        let Some(key) = key else {
            return self.join(ctx, other, other_ctx, true);
        };
        let empty = S::default();
        self.join_child(key, ctx, other.0.get(key).unwrap_or(&empty), other_ctx, true);
        for (k, theirs) in other.0.iter().filter(|(k, _)| *k != key) {
            self.join_child(k, ctx, theirs, other_ctx, false);
        }
    }

    fn retain_dots(&mut self, keep: &mut dyn FnMut(&Dot<R>) -> bool) {
        self.0.retain(|_, child| {
            child.retain_dots(keep);
            !child.is_empty()
        });
    }

    fn split(&self) -> Vec<(Dot<R>, Self)> {
        self.0
            .iter()
            .flat_map(|(k, child)| {
                child.split().into_iter().map(move |(d, c)| (d, DotMap(BTreeMap::from([(k.clone(), c)]))))
            })
            .collect()
    }

    fn to_wire(&self, table: &ReplicaTable<'_, R>) -> Result<Self::Wire, CodecError> {
        self.0.iter().map(|(k, child)| Ok((k.clone(), child.to_wire(table)?))).collect()
    }

    fn from_wire(wire: Self::Wire, replicas: &[R]) -> Result<Self, CodecError> {
        let mut map = BTreeMap::new();
        for (k, w) in wire {
            let child = S::from_wire(w, replicas)?;
            if child.is_empty() {
                return Err(CodecError::Invalid("empty child in dot map"));
            }
            if map.last_key_value().is_some_and(|(last, _)| *last >= k) {
                return Err(CodecError::Invalid("dot map keys not strictly ascending"));
            }
            map.insert(k, child);
        }
        Ok(DotMap(map))
    }
}
