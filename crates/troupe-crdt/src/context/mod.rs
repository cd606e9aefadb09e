//! Dots and causal contexts.
//!
//! A [`Dot`] names one event: the `counter`-th update made by `replica`. A [`CausalContext`] is a
//! set of dots, stored per replica as a contiguous prefix `1..=max` plus a "cloud" of dots seen out
//! of order, both as runs (see `ranges.rs`). A replica that only ever receives its peers' updates in
//! order therefore keeps one run per replica, however many updates it has seen.

mod ranges;

pub(crate) use ranges::Ranges;

use crate::traits::ReplicaId;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;

/// One update event: the `counter`-th update made by `replica` (counters start at 1).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Dot<R> {
    /// The replica that made the update.
    pub replica: R,
    /// Its per-replica sequence number, starting at 1.
    pub counter: u64,
}

impl<R> Dot<R> {
    /// The `counter`-th update of `replica`.
    pub fn new(replica: R, counter: u64) -> Self {
        Dot { replica, counter }
    }
}

/// A set of dots, compressed per replica into runs.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CausalContext<R> {
    map: BTreeMap<R, Ranges>,
}

impl<R> Default for CausalContext<R> {
    fn default() -> Self {
        CausalContext { map: BTreeMap::new() }
    }
}

impl<R: std::fmt::Debug> std::fmt::Debug for CausalContext<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.map.iter().map(|(r, ranges)| (r, ranges.runs()))).finish()
    }
}

impl<R: ReplicaId> CausalContext<R> {
    /// The empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// True when no dot has been seen.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Number of dots in the context (saturating).
    pub fn len(&self) -> u64 {
        self.map.values().fold(0u64, |n, r| n.saturating_add(r.len()))
    }

    /// Whether `dot` has been seen.
    pub fn contains(&self, dot: &Dot<R>) -> bool {
        self.map.get(&dot.replica).is_some_and(|r| r.contains(dot.counter))
    }

    /// Adds one dot.
    pub fn insert(&mut self, dot: Dot<R>) {
        self.map.entry(dot.replica).or_default().insert(dot.counter);
    }

    /// Highest counter seen from `replica` (0 if none).
    pub fn max_counter(&self, replica: &R) -> u64 {
        self.map.get(replica).and_then(Ranges::max).unwrap_or(0)
    }

    /// The dot `replica` uses for its next update: one past the highest counter it has issued.
    ///
    /// A replica must keep its state (or use a fresh id) across restarts, otherwise dots repeat.
    pub fn next_dot(&self, replica: &R) -> Dot<R> {
        Dot::new(replica.clone(), self.max_counter(replica).saturating_add(1))
    }

    /// Adds every dot of `other` (set union, the join of contexts).
    pub fn merge(&mut self, other: &Self) {
        for (r, ranges) in &other.map {
            match self.map.get_mut(r) {
                Some(mine) => mine.union(ranges),
                None => {
                    self.map.insert(r.clone(), ranges.clone());
                }
            }
        }
    }

    /// `self ⊆ other`.
    pub fn is_subset(&self, other: &Self) -> bool {
        self.map.iter().all(|(r, mine)| other.map.get(r).is_some_and(|theirs| mine.is_subset(theirs)))
    }

    /// The dots of `self` that `other` lacks.
    pub fn difference(&self, other: &Self) -> Self {
        let map = self
            .map
            .iter()
            .filter_map(|(r, mine)| {
                let rest = match other.map.get(r) {
                    Some(theirs) => mine.difference(theirs),
                    None => mine.clone(),
                };
                (!rest.is_empty()).then(|| (r.clone(), rest))
            })
            .collect();
        CausalContext { map }
    }

    /// Number of dots in both contexts.
    pub fn intersection_len(&self, other: &Self) -> u64 {
        self.map
            .iter()
            .filter_map(|(r, mine)| other.map.get(r).map(|t| mine.intersection_len(t)))
            .fold(0u64, u64::saturating_add)
    }

    /// Every dot, ordered by replica then counter.
    pub fn dots(&self) -> impl Iterator<Item = Dot<R>> + '_ {
        self.map.iter().flat_map(|(r, ranges)| ranges.iter().map(move |c| Dot::new(r.clone(), c)))
    }

    /// The replicas with at least one dot, ascending. Their positions are the replica indexes used
    /// by compact encodings of stores covered by this context.
    pub fn replicas(&self) -> impl ExactSizeIterator<Item = &R> + '_ {
        self.map.keys()
    }

    /// Number of runs over all replicas (a measure of how fragmented the context is).
    pub fn runs(&self) -> usize {
        self.map.values().map(|r| r.runs().len()).sum()
    }
}

impl<R: ReplicaId> FromIterator<Dot<R>> for CausalContext<R> {
    fn from_iter<I: IntoIterator<Item = Dot<R>>>(iter: I) -> Self {
        let mut per: BTreeMap<R, Vec<u64>> = BTreeMap::new();
        for d in iter {
            per.entry(d.replica).or_default().push(d.counter);
        }
        let map = per
            .into_iter()
            .filter_map(|(r, mut cs)| {
                cs.retain(|&c| c > 0);
                cs.sort_unstable();
                cs.dedup();
                (!cs.is_empty()).then(|| (r, Ranges::from_sorted(cs)))
            })
            .collect();
        CausalContext { map }
    }
}

impl<R: ReplicaId> Serialize for CausalContext<R> {
    /// A sequence of `(replica, runs)`, replicas ascending.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.map.iter())
    }
}

impl<'de, R: ReplicaId> Deserialize<'de> for CausalContext<R> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let entries = Vec::<(R, Ranges)>::deserialize(d)?;
        let mut map = BTreeMap::new();
        for (r, ranges) in entries {
            if ranges.is_empty() {
                return Err(D::Error::custom("empty replica entry in causal context"));
            }
            if map.insert(r, ranges).is_some() {
                return Err(D::Error::custom("duplicate replica in causal context"));
            }
        }
        Ok(CausalContext { map })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Encode;

    #[test]
    fn next_dot_follows_the_highest_counter() {
        let mut c = CausalContext::new();
        assert_eq!(c.next_dot(&7u64), Dot::new(7, 1));
        c.insert(Dot::new(7u64, 1));
        c.insert(Dot::new(7u64, 5));
        assert_eq!(c.next_dot(&7), Dot::new(7, 6));
        assert_eq!(c.runs(), 2);
        assert!(c.contains(&Dot::new(7, 5)));
        assert!(!c.contains(&Dot::new(7, 3)));
    }

    #[test]
    fn round_trips_and_rejects_duplicates() {
        let c: CausalContext<u64> = [Dot::new(1, 1), Dot::new(1, 2), Dot::new(9, 4)].into_iter().collect();
        let bytes = c.to_bytes().expect("encode");
        assert_eq!(CausalContext::<u64>::from_bytes(&bytes).expect("decode"), c);
        // Two entries for replica 1.
        let dup = postcard::to_allocvec(&vec![(1u64, vec![(0u64, 0u64)]), (1u64, vec![(0, 0)])]).expect("encode");
        assert!(CausalContext::<u64>::from_bytes(&dup).is_err());
    }

    #[test]
    fn hostile_counters_do_not_overflow() {
        // Three replicas each claiming every counter up to u64::MAX.
        let all = vec![(0u64, u64::MAX - 1)];
        let bytes = postcard::to_allocvec(&vec![(1u64, all.clone()), (2, all.clone()), (3, all)]).expect("encode");
        let c = CausalContext::<u64>::from_bytes(&bytes).expect("decode");
        assert_eq!(c.len(), u64::MAX);
        assert_eq!(c.intersection_len(&c), u64::MAX);
        assert_eq!(c.next_dot(&1).counter, u64::MAX);
        // A run past u64::MAX is refused.
        let bytes = postcard::to_allocvec(&vec![(1u64, vec![(5u64, u64::MAX)])]).expect("encode");
        assert!(CausalContext::<u64>::from_bytes(&bytes).is_err());
    }
}
