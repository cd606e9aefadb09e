//! Dot-based ("causal") CRDTs: a dot store plus a causal context, with the lattice, delta sync and
//! encoding written once for all of them.
//!
//! Each causal type is [`Causal<K, R>`] for a *kind* `K` that says which dot store it uses, what
//! its operations do and what a user reads: [`AwSet`](crate::AwSet), [`EwFlag`](crate::EwFlag),
//! [`DwFlag`](crate::DwFlag), [`MvRegister`](crate::MvRegister), [`AwMap`](crate::AwMap) and
//! [`MvMap`](crate::MvMap). There are no tombstones: a removal is a dot in the context that the
//! store no longer holds.

mod dotfun;
mod dotmap;
mod dotset;
mod store;

pub use dotfun::DotFun;
pub use dotmap::DotMap;
pub use dotset::DotSet;
pub use store::DotStore;

use crate::codec::ReplicaTable;
use crate::context::{CausalContext, Dot};
use crate::error::{CodecError, UpdateError};
use crate::traits::{DeltaSync, Lattice, Mutate, Query, ReplicaId};
use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::HashSet;
use std::fmt::Debug;

/// What makes a causal CRDT one type rather than another: its store, operations and value.
pub trait CausalKind<R: ReplicaId>: Send + Sync + 'static {
    /// The dot store.
    type Store: DotStore<R>;
    /// The operations.
    type Op: Clone + Debug;
    /// The value a user reads.
    type Value;

    /// The delta of `op` on the state `(store, ctx)` at `replica`, as `(store, context)`: new
    /// dots in the store, and in the context both the new dots and the dots the op overwrites.
    fn delta_mutate(
        store: &Self::Store,
        ctx: &CausalContext<R>,
        op: &Self::Op,
        replica: &R,
    ) -> (Self::Store, CausalContext<R>);

    /// The key of the store that `op` touches (`None`: the whole store). Lets a local update be
    /// applied without visiting the rest of the store.
    fn target(op: &Self::Op) -> Option<&<Self::Store as DotStore<R>>::Key>;

    /// The value of `store`.
    fn query(store: &Self::Store) -> Self::Value;
}

/// The delta that replaces `old` (if any) by `make(dot)` for a fresh dot of `replica`: the new
/// store, and a context holding the fresh dot and the overwritten ones.
pub(crate) fn overwrite<R: ReplicaId, S: DotStore<R>>(
    old: Option<&S>,
    ctx: &CausalContext<R>,
    replica: &R,
    make: impl FnOnce(Dot<R>) -> S,
) -> (S, CausalContext<R>) {
    let dot = ctx.next_dot(replica);
    let mut context = old.map(S::dots).unwrap_or_default();
    context.insert(dot.clone());
    (make(dot), context)
}

/// The delta that removes every dot of `old`: an empty store whose context holds those dots.
pub(crate) fn remove_all<R: ReplicaId, S: DotStore<R>, T: DotStore<R>>(old: Option<&S>) -> (T, CausalContext<R>) {
    (T::default(), old.map(S::dots).unwrap_or_default())
}

/// A dot store with its causal context: the state of every dot-based CRDT.
pub struct Causal<K: CausalKind<R>, R: ReplicaId> {
    store: K::Store,
    context: CausalContext<R>,
}

impl<K: CausalKind<R>, R: ReplicaId> Causal<K, R> {
    /// A fresh (bottom) state.
    pub fn new() -> Self {
        Self::bottom()
    }

    fn from_parts((store, context): (K::Store, CausalContext<R>)) -> Self {
        Causal { store, context }
    }

    /// The dot store.
    pub fn store(&self) -> &K::Store {
        &self.store
    }

    /// Every dot this state has seen, live or removed.
    pub fn context(&self) -> &CausalContext<R> {
        &self.context
    }

    /// The delta of `op` at `replica` (causal operations never fail).
    pub fn delta_of(&self, op: &K::Op, replica: &R) -> Self {
        Self::from_parts(K::delta_mutate(&self.store, &self.context, op, replica))
    }

    /// Applies `op` at `replica` and returns its delta. The delta is joined only where the
    /// operation acts, so a local update costs `O(log n)` whatever the size of the state.
    pub fn update(&mut self, op: K::Op, replica: &R) -> Self {
        let delta = self.delta_of(&op, replica);
        self.store.join_at(K::target(&op), &self.context, &delta.store, &delta.context);
        self.context.merge(&delta.context);
        delta
    }

    /// Whether joining `other` may remove dots of `self` that `other`'s store does not mention:
    /// some dot both contexts have seen is missing from `other`'s store. When not, the join only
    /// visits `other` (a delta of adds joins in time proportional to its own size).
    fn needs_scan(&self, other: &Self) -> bool {
        let seen_by_both = self.context.intersection_len(&other.context);
        if seen_by_both == 0 {
            return false;
        }
        let mut in_other_store = 0u64;
        other.store.for_each_dot(&mut |d| {
            if self.context.contains(d) {
                in_other_store += 1;
            }
        });
        in_other_store != seen_by_both
    }
}

impl<K: CausalKind<R>, R: ReplicaId> Clone for Causal<K, R> {
    fn clone(&self) -> Self {
        Causal { store: self.store.clone(), context: self.context.clone() }
    }
}

impl<K: CausalKind<R>, R: ReplicaId> PartialEq for Causal<K, R> {
    fn eq(&self, other: &Self) -> bool {
        self.store == other.store && self.context == other.context
    }
}

impl<K: CausalKind<R>, R: ReplicaId> Eq for Causal<K, R> {}

impl<K: CausalKind<R>, R: ReplicaId> Debug for Causal<K, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Causal").field("store", &self.store).field("context", &self.context).finish()
    }
}

impl<K: CausalKind<R>, R: ReplicaId> Default for Causal<K, R> {
    fn default() -> Self {
        Causal { store: K::Store::default(), context: CausalContext::new() }
    }
}

impl<K: CausalKind<R>, R: ReplicaId> Lattice for Causal<K, R> {
    fn bottom() -> Self {
        Self::default()
    }

    fn is_bottom(&self) -> bool {
        self.store.is_empty() && self.context.is_empty()
    }

    fn merge(&mut self, other: &Self) {
        let scan = self.needs_scan(other);
        self.store.join(&self.context, &other.store, &other.context, scan);
        self.context.merge(&other.context);
    }

    /// `self ⊑ other` iff `other` has seen every dot `self` has, and holds no dot that `self`
    /// has seen but removed.
    fn leq(&self, other: &Self) -> bool {
        if !self.context.is_subset(&other.context) {
            return false;
        }
        let mut live = HashSet::new();
        self.store.for_each_dot(&mut |d| {
            live.insert(d.clone());
        });
        let mut ok = true;
        other.store.for_each_dot(&mut |d| {
            ok &= !self.context.contains(d) || live.contains(d);
        });
        ok
    }

    /// One state per live dot (that dot's store, with that dot as context) and one per removed
    /// dot (empty store, that dot as context).
    fn join_decomposition(&self) -> Vec<Self> {
        let single = |d| std::iter::once(d).collect::<CausalContext<R>>();
        let mut parts = Vec::new();
        let mut live = HashSet::new();
        for (d, store) in self.store.split() {
            live.insert(d.clone());
            parts.push(Causal { store, context: single(d) });
        }
        for d in self.context.dots().filter(|d| !live.contains(d)) {
            parts.push(Causal { store: K::Store::default(), context: single(d) });
        }
        parts
    }
}

impl<K: CausalKind<R>, R: ReplicaId> DeltaSync for Causal<K, R> {
    /// The causal context: every dot seen, compressed into runs.
    type Digest = CausalContext<R>;

    fn digest(&self) -> CausalContext<R> {
        self.context.clone()
    }

    /// The live dots the peer has not seen, and a context telling it which of the dots it has
    /// seen are removed here: every dot of ours except those live here that it already has.
    fn delta(&self, digest: &CausalContext<R>) -> Self {
        let mut store = self.store.clone();
        store.retain_dots(&mut |d| !digest.contains(d));
        let mut shared_live = Vec::new();
        self.store.for_each_dot(&mut |d| {
            if digest.contains(d) {
                shared_live.push(d.clone());
            }
        });
        let shared_live: CausalContext<R> = shared_live.into_iter().collect();
        Causal { store, context: self.context.difference(&shared_live) }
    }
}

impl<K: CausalKind<R>, R: ReplicaId> Query for Causal<K, R> {
    type Value = K::Value;

    fn query(&self) -> K::Value {
        K::query(&self.store)
    }
}

impl<K: CausalKind<R>, R: ReplicaId> Mutate<R> for Causal<K, R> {
    type Op = K::Op;

    fn delta_mutate(&self, op: K::Op, replica: &R) -> Result<Self, UpdateError> {
        Ok(self.delta_of(&op, replica))
    }

    fn apply(&mut self, op: K::Op, replica: &R) -> Result<Self, UpdateError> {
        Ok(self.update(op, replica))
    }
}

impl<K: CausalKind<R>, R: ReplicaId> Serialize for Causal<K, R> {
    /// `(context, store)`, the store's dots as indexes into the context's replicas.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let table = ReplicaTable::new(self.context.replicas());
        let wire = self.store.to_wire(&table).map_err(S::Error::custom)?;
        (&self.context, wire).serialize(s)
    }
}

impl<'de, K: CausalKind<R>, R: ReplicaId> Deserialize<'de> for Causal<K, R> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (context, wire): (CausalContext<R>, <K::Store as DotStore<R>>::Wire) = Deserialize::deserialize(d)?;
        let replicas: Vec<R> = context.replicas().cloned().collect();
        let store = K::Store::from_wire(wire, &replicas).map_err(D::Error::custom)?;
        let mut covered = true;
        let mut seen = HashSet::new();
        store.for_each_dot(&mut |d| {
            covered &= context.contains(d) && seen.insert(d.clone());
        });
        if !covered {
            return Err(D::Error::custom(CodecError::Invalid("store dot repeated or outside the causal context")));
        }
        Ok(Causal { store, context })
    }
}
