//! G-Map: grow-only map of nested CRDTs, joined per key.

use crate::error::{CodecError, UpdateError};
use crate::threshold::MonotoneQuery;
use crate::traits::{DeltaSync, Element, Lattice, Mutate, Query, ReplicaId};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Grow-only map: keys are never removed, values (any CRDT) are joined per key. Bottom values
/// are not stored, so a key is present once its value has left bottom.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    try_from = "BTreeMap<K, V>",
    bound(serialize = "K: Serialize, V: Serialize", deserialize = "K: Element, V: Lattice + DeserializeOwned")
)]
pub struct GMap<K, V>(BTreeMap<K, V>);

/// Operations of a [`GMap`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GMapOp<K, O> {
    /// Apply an operation to the value at a key (created from bottom if absent).
    Apply(K, O),
}

impl<K, V> Default for GMap<K, V> {
    fn default() -> Self {
        GMap(BTreeMap::new())
    }
}

impl<K: Element, V: Lattice> TryFrom<BTreeMap<K, V>> for GMap<K, V> {
    type Error = CodecError;

    fn try_from(map: BTreeMap<K, V>) -> Result<Self, CodecError> {
        if map.values().any(Lattice::is_bottom) {
            return Err(CodecError::Invalid("bottom value stored in a G-Map"));
        }
        Ok(GMap(map))
    }
}

impl<K: Element, V: Lattice> GMap<K, V> {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value at `key`.
    pub fn get(&self, key: &K) -> Option<&V> {
        self.0.get(key)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the map has no key.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `(key, value)` pairs, ascending by key.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&K, &V)> + '_ {
        self.0.iter()
    }

    /// The map holding `value` at `key` (empty if `value` is bottom).
    pub fn singleton(key: K, value: V) -> Self {
        let mut map = BTreeMap::new();
        if !value.is_bottom() {
            map.insert(key, value);
        }
        GMap(map)
    }
}

impl<K: Element, V: Lattice> Lattice for GMap<K, V> {
    fn bottom() -> Self {
        Self::default()
    }

    fn is_bottom(&self) -> bool {
        self.0.is_empty()
    }

    fn merge(&mut self, other: &Self) {
        for (k, theirs) in &other.0 {
            match self.0.get_mut(k) {
                Some(mine) => mine.merge(theirs),
                None => {
                    self.0.insert(k.clone(), theirs.clone());
                }
            }
        }
    }

    fn leq(&self, other: &Self) -> bool {
        self.0.iter().all(|(k, mine)| match other.0.get(k) {
            Some(theirs) => mine.leq(theirs),
            None => mine.is_bottom(),
        })
    }

    fn join_decomposition(&self) -> Vec<Self> {
        self.0
            .iter()
            .flat_map(|(k, v)| {
                v.join_decomposition().into_iter().map(move |part| GMap(BTreeMap::from([(k.clone(), part)])))
            })
            .collect()
    }
}

impl<K: Element, V: DeltaSync> DeltaSync for GMap<K, V> {
    /// Each key with its value's digest.
    type Digest = BTreeMap<K, V::Digest>;

    fn digest(&self) -> Self::Digest {
        self.0.iter().map(|(k, v)| (k.clone(), v.digest())).collect()
    }

    fn delta(&self, digest: &Self::Digest) -> Self {
        let map = self
            .0
            .iter()
            .filter_map(|(k, v)| {
                let part = match digest.get(k) {
                    Some(d) => v.delta(d),
                    None => v.clone(),
                };
                (!part.is_bottom()).then(|| (k.clone(), part))
            })
            .collect();
        GMap(map)
    }
}

impl<K: Element, V: Query> Query for GMap<K, V> {
    type Value = BTreeMap<K, V::Value>;

    fn query(&self) -> Self::Value {
        self.0.iter().map(|(k, v)| (k.clone(), v.query())).collect()
    }
}

impl<K: Element, V: MonotoneQuery> MonotoneQuery for GMap<K, V> {
    /// Every key of `a` is in `b` with a value at least as large.
    fn value_leq(a: &Self::Value, b: &Self::Value) -> bool {
        a.iter().all(|(k, va)| b.get(k).is_some_and(|vb| V::value_leq(va, vb)))
    }
}

impl<R: ReplicaId, K: Element, V: Mutate<R>> Mutate<R> for GMap<K, V> {
    type Op = GMapOp<K, V::Op>;

    fn delta_mutate(&self, GMapOp::Apply(key, op): Self::Op, replica: &R) -> Result<Self, UpdateError> {
        let delta = match self.0.get(&key) {
            Some(v) => v.delta_mutate(op, replica)?,
            None => V::bottom().delta_mutate(op, replica)?,
        };
        Ok(GMap::singleton(key, delta))
    }

    /// Applies the operation to the value in place (no full join).
    fn apply(&mut self, GMapOp::Apply(key, op): Self::Op, replica: &R) -> Result<Self, UpdateError> {
        let mut value = self.0.remove(&key).unwrap_or_else(V::bottom);
        let result = value.apply(op, replica);
        if !value.is_bottom() {
            self.0.insert(key.clone(), value);
        }
        Ok(GMap::singleton(key, result?))
    }
}
