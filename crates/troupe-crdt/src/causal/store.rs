//! The dot-store abstraction shared by every dot-based CRDT.

use crate::codec::ReplicaTable;
use crate::context::{CausalContext, Dot};
use crate::error::CodecError;
use crate::traits::ReplicaId;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;

/// The payload of a dot-based CRDT, read against a causal context: a dot present in the context
/// but absent from the store has been removed.
///
/// Implemented by [`DotSet`](super::DotSet) (flags), [`DotFun`](super::DotFun) (multi-value
/// registers) and [`DotMap`](super::DotMap) (sets and maps, nestable). Invariant: every dot
/// appears at most once in a store, and every dot of a store is in its context.
pub trait DotStore<R: ReplicaId>: Clone + PartialEq + Eq + Debug + Default + Send + Sync + 'static {
    /// What addresses a child store (`()` for stores without children).
    type Key: Ord + Clone + Debug;
    /// The compact encoding, with replicas replaced by indexes into a [`ReplicaTable`].
    type Wire: Serialize + DeserializeOwned;

    /// Whether the store holds no dot.
    fn is_empty(&self) -> bool;

    /// Calls `f` on every dot of the store.
    fn for_each_dot(&self, f: &mut dyn FnMut(&Dot<R>));

    /// The join of `(self, ctx)` and `(other, other_ctx)`, store part: a dot survives if both
    /// stores hold it, or one store holds it and the other context has not seen it. `ctx` is
    /// `self`'s context before the join.
    ///
    /// With `scan == false` the caller promises that every dot of `self` seen by `other_ctx`
    /// is also in `other`, so the parts of `self` that `other` does not mention are left alone
    /// (this makes joining a small delta into a large state cost the size of the delta).
    fn join(&mut self, ctx: &CausalContext<R>, other: &Self, other_ctx: &CausalContext<R>, scan: bool);

    /// Like [`join`](Self::join) with `scan == true`, but the caller promises that the dots of
    /// `self` that `other_ctx` may remove all live under `key` (a delta made by a local
    /// operation on `key`). `None` joins the whole store.
    fn join_at(&mut self, key: Option<&Self::Key>, ctx: &CausalContext<R>, other: &Self, other_ctx: &CausalContext<R>) {
        let _ = key;
        self.join(ctx, other, other_ctx, true);
    }

    /// Keeps only the dots for which `keep` returns true (dropping children left empty).
    fn retain_dots(&mut self, keep: &mut dyn FnMut(&Dot<R>) -> bool);

    /// Splits the store into single-dot stores, one per dot.
    fn split(&self) -> Vec<(Dot<R>, Self)>;

    /// The compact encoding.
    fn to_wire(&self, table: &ReplicaTable<'_, R>) -> Result<Self::Wire, CodecError>;

    /// Decodes and validates the compact encoding; `replicas` is the decoded replica table.
    fn from_wire(wire: Self::Wire, replicas: &[R]) -> Result<Self, CodecError>;

    /// The dots of the store as a causal context.
    fn dots(&self) -> CausalContext<R> {
        let mut dots = Vec::new();
        self.for_each_dot(&mut |d| dots.push(d.clone()));
        dots.into_iter().collect()
    }

    /// Number of dots in the store.
    fn dot_count(&self) -> usize {
        let mut n = 0;
        self.for_each_dot(&mut |_| n += 1);
        n
    }
}
