//! OR-Set: observed-remove set with tombstones.

use crate::causal::{DotMap, DotSet, DotStore};
use crate::codec::ReplicaTable;
use crate::context::{CausalContext, Dot};
use crate::error::{CodecError, UpdateError};
use crate::traits::{DeltaSync, Element, Lattice, Mutate, Query, ReplicaId};
use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeSet;

/// Observed-remove set with tombstones (Lasp's `orset`): every add creates a unique token (a
/// dot); a remove marks the tokens it observed as removed; an element is present while one of
/// its tokens is not. Concurrent add and remove: the add wins. Unlike [`AwSet`](crate::AwSet)
/// every token stays forever (removed ones as tombstones), so the state only grows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrSet<T, R> {
    /// Every token of every element.
    tokens: DotMap<T, DotSet<R>>,
    /// The dots of `tokens`, compressed (derived; gives each replica its next token).
    seen: CausalContext<R>,
    /// The removed tokens (tombstones), a subset of `seen`.
    removed: CausalContext<R>,
}

/// Operations of an [`OrSet`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrSetOp<T> {
    /// Add an element (a new token).
    Add(T),
    /// Remove an element: tombstone its tokens observed so far.
    Remove(T),
}

/// Digest of an [`OrSet`]: the tokens seen and the tokens removed, both compressed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "R: ReplicaId")]
pub struct OrSetDigest<R> {
    /// Every token seen.
    pub seen: CausalContext<R>,
    /// Every token removed.
    pub removed: CausalContext<R>,
}

impl<T, R> Default for OrSet<T, R> {
    fn default() -> Self {
        OrSet { tokens: DotMap::default(), seen: CausalContext::default(), removed: CausalContext::default() }
    }
}

impl<T: Element, R: ReplicaId> OrSet<T, R> {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    fn from_tokens(tokens: DotMap<T, DotSet<R>>, removed_of: &CausalContext<R>) -> Self {
        let seen = tokens.dots();
        let removed = seen.dots().filter(|d| removed_of.contains(d)).collect();
        OrSet { tokens, seen, removed }
    }

    /// Whether `element` is in the set.
    pub fn contains(&self, element: &T) -> bool {
        self.tokens.get(element).is_some_and(|ts| ts.iter().any(|t| !self.removed.contains(t)))
    }

    /// Number of tombstoned tokens.
    pub fn tombstones(&self) -> u64 {
        self.removed.len()
    }
}

impl<T: Element, R: ReplicaId> Lattice for OrSet<T, R> {
    fn bottom() -> Self {
        Self::default()
    }

    fn is_bottom(&self) -> bool {
        self.seen.is_empty()
    }

    fn merge(&mut self, other: &Self) {
        // Tokens only grow: their join is the union (a causal join with empty contexts).
        let none = CausalContext::new();
        self.tokens.join(&none, &other.tokens, &none, false);
        self.seen.merge(&other.seen);
        self.removed.merge(&other.removed);
    }

    fn leq(&self, other: &Self) -> bool {
        self.seen.is_subset(&other.seen) && self.removed.is_subset(&other.removed)
    }

    /// One state per token, tombstoned or not.
    fn join_decomposition(&self) -> Vec<Self> {
        self.tokens.split().into_iter().map(|(_, tokens)| Self::from_tokens(tokens, &self.removed)).collect()
    }
}

impl<T: Element, R: ReplicaId> DeltaSync for OrSet<T, R> {
    type Digest = OrSetDigest<R>;

    fn digest(&self) -> OrSetDigest<R> {
        OrSetDigest { seen: self.seen.clone(), removed: self.removed.clone() }
    }

    /// Tokens the peer has not seen, and tombstones it lacks.
    fn delta(&self, digest: &OrSetDigest<R>) -> Self {
        let mut tokens = self.tokens.clone();
        tokens.retain_dots(&mut |t| {
            !digest.seen.contains(t) || (self.removed.contains(t) && !digest.removed.contains(t))
        });
        Self::from_tokens(tokens, &self.removed)
    }
}

impl<T: Element, R: ReplicaId> Query for OrSet<T, R> {
    type Value = BTreeSet<T>;

    fn query(&self) -> BTreeSet<T> {
        self.tokens.keys().filter(|e| self.contains(e)).cloned().collect()
    }
}

impl<T: Element, R: ReplicaId> Mutate<R> for OrSet<T, R> {
    type Op = OrSetOp<T>;

    fn delta_mutate(&self, op: OrSetOp<T>, replica: &R) -> Result<Self, UpdateError> {
        Ok(match op {
            OrSetOp::Add(e) => {
                let token: Dot<R> = self.seen.next_dot(replica);
                let seen: CausalContext<R> = std::iter::once(token.clone()).collect();
                OrSet { tokens: DotMap::single(e, DotSet::single(token)), seen, removed: CausalContext::new() }
            }
            OrSetOp::Remove(e) => {
                let live: DotSet<R> = self
                    .tokens
                    .get(&e)
                    .into_iter()
                    .flat_map(|ts| ts.iter())
                    .filter(|t| !self.removed.contains(t))
                    .cloned()
                    .collect();
                let dots = live.dots();
                OrSet { tokens: DotMap::single(e, live), seen: dots.clone(), removed: dots }
            }
        })
    }
}

impl<T: Element, R: ReplicaId> Serialize for OrSet<T, R> {
    /// `(seen, removed, tokens)`, tokens as indexes into `seen`'s replicas.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let table = ReplicaTable::new(self.seen.replicas());
        let tokens = self.tokens.to_wire(&table).map_err(S::Error::custom)?;
        (&self.seen, &self.removed, tokens).serialize(s)
    }
}

impl<'de, T: Element, R: ReplicaId> Deserialize<'de> for OrSet<T, R> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        type Wire<T, R> = (CausalContext<R>, CausalContext<R>, <DotMap<T, DotSet<R>> as DotStore<R>>::Wire);
        let (seen, removed, wire): Wire<T, R> = Deserialize::deserialize(d)?;
        let replicas: Vec<R> = seen.replicas().cloned().collect();
        let tokens = DotMap::from_wire(wire, &replicas).map_err(D::Error::custom)?;
        if tokens.dot_count() as u64 != seen.len() || tokens.dots() != seen {
            return Err(D::Error::custom(CodecError::Invalid("OR-Set tokens do not match their context")));
        }
        if !removed.is_subset(&seen) {
            return Err(D::Error::custom(CodecError::Invalid("OR-Set tombstone for an unknown token")));
        }
        Ok(OrSet { tokens, seen, removed })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_wins_and_tombstones_stay() {
        let mut a = OrSet::<char, u8>::new();
        a.apply(OrSetOp::Add('x'), &1).expect("ok");
        let mut b = a.clone();
        a.apply(OrSetOp::Remove('x'), &1).expect("ok");
        b.apply(OrSetOp::Add('x'), &2).expect("ok");
        let j = a.join(&b);
        assert!(j.contains(&'x'));
        assert_eq!(j.tombstones(), 1);
        let mut k = j.clone();
        k.apply(OrSetOp::Remove('x'), &3).expect("ok");
        assert!(!k.contains(&'x'));
        assert_eq!(k.tombstones(), 2, "removed tokens are kept");
    }
}
