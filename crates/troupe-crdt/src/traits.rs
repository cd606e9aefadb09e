//! The trait family every CRDT implements.
//!
//! * [`Lattice`]: bottom, merge (join), order (`leq`, `is_inflation`, `is_strict_inflation`) and an
//!   irredundant join decomposition.
//! * [`DeltaSync`]: a digest of a state and `delta(state, digest)`, the part of the state the
//!   digest's owner lacks.
//! * [`Query`]: the value a user reads.
//! * [`Mutate`]: operations as delta mutators.
//! * [`Crdt`]: all of the above plus serde, implemented automatically.
//!
//! Encoded size comes from [`Encode`](crate::codec::Encode), implemented for every serde type.

use crate::error::UpdateError;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;
use std::hash::Hash;

/// Identity of a replica, chosen by the user of the library (a `u64` node id, say).
///
/// Keep it small: it appears in every dot, although compact encodings store each id once per state.
pub trait ReplicaId: Ord + Clone + Hash + Serialize + DeserializeOwned + Debug + Send + Sync + 'static {}

impl<T> ReplicaId for T where T: Ord + Clone + Hash + Serialize + DeserializeOwned + Debug + Send + Sync + 'static {}

/// What set elements, map keys and register values must be: ordered, cloneable, serde.
pub trait Element: Ord + Clone + Debug + Serialize + DeserializeOwned + Send + Sync + 'static {}

impl<T> Element for T where T: Ord + Clone + Debug + Serialize + DeserializeOwned + Send + Sync + 'static {}

/// A join-semilattice with a bottom element. States are kept in a canonical form, so `==` is
/// equality of lattice elements.
pub trait Lattice: Clone + PartialEq + Debug {
    /// The least element: the state of a freshly declared variable.
    fn bottom() -> Self;

    /// Whether `self` is the bottom element.
    fn is_bottom(&self) -> bool {
        *self == Self::bottom()
    }

    /// Joins `other` into `self` (least upper bound). Commutative, associative, idempotent.
    fn merge(&mut self, other: &Self);

    /// The join of `self` and `other` as a new state.
    fn join(&self, other: &Self) -> Self {
        let mut out = self.clone();
        out.merge(other);
        out
    }

    /// The lattice order: `self ⊑ other`, i.e. `self ⊔ other == other`.
    fn leq(&self, other: &Self) -> bool;

    /// Whether `next` is an inflation of `self` (`self ⊑ next`).
    fn is_inflation(&self, next: &Self) -> bool {
        self.leq(next)
    }

    /// Whether `next` is a strict inflation of `self` (`self ⊏ next`).
    fn is_strict_inflation(&self, next: &Self) -> bool {
        self.leq(next) && !next.leq(self)
    }

    /// An irredundant join decomposition: join-irreducible states whose join is `self`, none of
    /// which is below the join of the others. Empty for bottom.
    fn join_decomposition(&self) -> Vec<Self>;
}

/// Digest-driven synchronisation: one side sends `digest()`, the other answers with
/// `delta(&digest)`, the part of its state the first side lacks:
/// `a.delta(&b.digest()).join(&b) == a.join(&b)`.
pub trait DeltaSync: Lattice {
    /// A summary of a state, as small as the type allows (a causal context for dot-based types).
    type Digest: Clone + Debug + PartialEq + Serialize + DeserializeOwned;

    /// The summary of `self` to send to a peer.
    fn digest(&self) -> Self::Digest;

    /// What the owner of `digest` lacks from `self`. Always `⊑ self`.
    fn delta(&self, digest: &Self::Digest) -> Self;
}

/// The value a user reads.
pub trait Query {
    /// The user-visible value (a number, a set of elements, ...).
    type Value;

    /// Reads the current value.
    fn query(&self) -> Self::Value;
}

/// Operations as delta mutators, made by replica `R`.
pub trait Mutate<R: ReplicaId>: Lattice {
    /// The operations of the type (`Add(x)`, `Increment(n)`, ...).
    type Op: Clone + Debug;

    /// The delta of `op` at `replica`: a small state such that `self ⊔ delta` is the state after
    /// the operation. A no-op yields bottom.
    fn delta_mutate(&self, op: Self::Op, replica: &R) -> Result<Self, UpdateError>;

    /// Applies `op` in place and returns its delta (to disseminate). Equal to
    /// `self.merge(&self.delta_mutate(op, replica)?)`; some types do it without a full join.
    fn apply(&mut self, op: Self::Op, replica: &R) -> Result<Self, UpdateError> {
        let delta = self.delta_mutate(op, replica)?;
        self.merge(&delta);
        Ok(delta)
    }
}

/// Everything a replicated variable needs: lattice, delta sync, query, delta mutators, serde.
pub trait Crdt<R: ReplicaId>:
    Lattice + DeltaSync + Query + Mutate<R> + Serialize + DeserializeOwned + Send + Sync + 'static
{
}

impl<R: ReplicaId, T> Crdt<R> for T where
    T: Lattice + DeltaSync + Query + Mutate<R> + Serialize + DeserializeOwned + Send + Sync + 'static
{
}
