//! Pair: the product of two lattices.

use crate::error::UpdateError;
use crate::threshold::MonotoneQuery;
use crate::traits::{DeltaSync, Lattice, Mutate, Query, ReplicaId};
use serde::{Deserialize, Serialize};

/// Two CRDTs side by side, ordered componentwise (Lasp's `pair`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Pair<A, B>(pub A, pub B);

/// Operations of a [`Pair`]: an operation on one component.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PairOp<A, B> {
    /// Operate on the first component.
    First(A),
    /// Operate on the second component.
    Second(B),
}

impl<A: Lattice, B: Lattice> Lattice for Pair<A, B> {
    fn bottom() -> Self {
        Pair(A::bottom(), B::bottom())
    }

    fn is_bottom(&self) -> bool {
        self.0.is_bottom() && self.1.is_bottom()
    }

    fn merge(&mut self, other: &Self) {
        self.0.merge(&other.0);
        self.1.merge(&other.1);
    }

    fn leq(&self, other: &Self) -> bool {
        self.0.leq(&other.0) && self.1.leq(&other.1)
    }

    fn join_decomposition(&self) -> Vec<Self> {
        let firsts = self.0.join_decomposition().into_iter().map(|a| Pair(a, B::bottom()));
        let seconds = self.1.join_decomposition().into_iter().map(|b| Pair(A::bottom(), b));
        firsts.chain(seconds).collect()
    }
}

impl<A: DeltaSync, B: DeltaSync> DeltaSync for Pair<A, B> {
    type Digest = (A::Digest, B::Digest);

    fn digest(&self) -> Self::Digest {
        (self.0.digest(), self.1.digest())
    }

    fn delta(&self, (a, b): &Self::Digest) -> Self {
        Pair(self.0.delta(a), self.1.delta(b))
    }
}

impl<A: Query, B: Query> Query for Pair<A, B> {
    type Value = (A::Value, B::Value);

    fn query(&self) -> Self::Value {
        (self.0.query(), self.1.query())
    }
}

impl<A: MonotoneQuery, B: MonotoneQuery> MonotoneQuery for Pair<A, B> {
    fn value_leq((a1, b1): &Self::Value, (a2, b2): &Self::Value) -> bool {
        A::value_leq(a1, a2) && B::value_leq(b1, b2)
    }
}

impl<R: ReplicaId, A: Mutate<R>, B: Mutate<R>> Mutate<R> for Pair<A, B> {
    type Op = PairOp<A::Op, B::Op>;

    fn delta_mutate(&self, op: Self::Op, replica: &R) -> Result<Self, UpdateError> {
        Ok(match op {
            PairOp::First(op) => Pair(self.0.delta_mutate(op, replica)?, B::bottom()),
            PairOp::Second(op) => Pair(A::bottom(), self.1.delta_mutate(op, replica)?),
        })
    }

    fn apply(&mut self, op: Self::Op, replica: &R) -> Result<Self, UpdateError> {
        Ok(match op {
            PairOp::First(op) => Pair(self.0.apply(op, replica)?, B::bottom()),
            PairOp::Second(op) => Pair(A::bottom(), self.1.apply(op, replica)?),
        })
    }
}
