//! A set of positive integers stored as sorted, disjoint, non-adjacent inclusive runs.
//!
//! This is the per-replica part of a [`CausalContext`](super::CausalContext): the first run
//! `1..=max` is the contiguous prefix, every later run is part of the "cloud" of dots seen out of
//! order. Encoded as gap/length pairs, so a contiguous history costs two varints whatever its size.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Sorted, disjoint, non-adjacent inclusive runs of counters (all `>= 1`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct Ranges(Vec<(u64, u64)>);

impl Ranges {
    /// Runs from a sorted, deduplicated iterator of counters.
    pub(crate) fn from_sorted(counters: impl IntoIterator<Item = u64>) -> Self {
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for c in counters {
            match runs.last_mut() {
                Some((_, hi)) if hi.checked_add(1) == Some(c) => *hi = c,
                _ => runs.push((c, c)),
            }
        }
        Ranges(runs)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of counters in the set.
    pub(crate) fn len(&self) -> u64 {
        self.0.iter().fold(0u64, |n, &(lo, hi)| n.saturating_add(hi - lo + 1))
    }

    /// Largest counter, if any.
    pub(crate) fn max(&self) -> Option<u64> {
        self.0.last().map(|&(_, hi)| hi)
    }

    pub(crate) fn runs(&self) -> &[(u64, u64)] {
        &self.0
    }

    pub(crate) fn contains(&self, c: u64) -> bool {
        // Index of the first run whose end is >= c.
        let i = self.0.partition_point(|&(_, hi)| hi < c);
        self.0.get(i).is_some_and(|&(lo, _)| lo <= c)
    }

    pub(crate) fn insert(&mut self, c: u64) {
        self.insert_run(c, c);
    }

    /// Inserts the run `lo..=hi`, coalescing with overlapping or adjacent runs.
    pub(crate) fn insert_run(&mut self, lo: u64, hi: u64) {
        debug_assert!(1 <= lo && lo <= hi);
        // First run that could touch [lo, hi]: its end + 1 >= lo.
        let start = self.0.partition_point(|&(_, h)| h.saturating_add(1) < lo);
        // One past the last run that could touch: its start <= hi + 1.
        let end = self.0.partition_point(|&(l, _)| l <= hi.saturating_add(1));
        if start >= end {
            self.0.insert(start, (lo, hi));
            return;
        }
        let new_lo = lo.min(self.0[start].0);
        let new_hi = hi.max(self.0[end - 1].1);
        self.0.splice(start..end, std::iter::once((new_lo, new_hi)));
    }

    pub(crate) fn union(&mut self, other: &Ranges) {
        if other.0.len() <= 2 {
            for &(lo, hi) in &other.0 {
                self.insert_run(lo, hi);
            }
            return;
        }
        let mut all: Vec<(u64, u64)> = Vec::with_capacity(self.0.len() + other.0.len());
        all.extend_from_slice(&self.0);
        all.extend_from_slice(&other.0);
        all.sort_unstable();
        let mut out: Vec<(u64, u64)> = Vec::with_capacity(all.len());
        for (lo, hi) in all {
            match out.last_mut() {
                Some((_, h)) if h.saturating_add(1) >= lo => *h = (*h).max(hi),
                _ => out.push((lo, hi)),
            }
        }
        self.0 = out;
    }

    /// `self ⊆ other`.
    pub(crate) fn is_subset(&self, other: &Ranges) -> bool {
        let mut j = 0;
        for &(lo, hi) in &self.0 {
            while j < other.0.len() && other.0[j].1 < lo {
                j += 1;
            }
            match other.0.get(j) {
                Some(&(olo, ohi)) if olo <= lo && hi <= ohi => {}
                _ => return false,
            }
        }
        true
    }

    /// `self \ other`.
    pub(crate) fn difference(&self, other: &Ranges) -> Ranges {
        let mut out = Vec::with_capacity(self.0.len());
        let mut j = 0;
        for &(lo, hi) in &self.0 {
            while j < other.0.len() && other.0[j].1 < lo {
                j += 1;
            }
            // `cur` is the smallest counter of lo..=hi not yet classified.
            let mut cur = lo;
            let mut covered_to_end = false;
            for &(olo, ohi) in other.0[j..].iter().take_while(|&&(olo, _)| olo <= hi) {
                if olo > cur {
                    out.push((cur, olo - 1));
                }
                if ohi >= hi {
                    covered_to_end = true;
                    break;
                }
                cur = ohi + 1;
            }
            if !covered_to_end {
                out.push((cur, hi));
            }
        }
        Ranges(out)
    }

    /// `|self ∩ other|`.
    pub(crate) fn intersection_len(&self, other: &Ranges) -> u64 {
        let (mut i, mut j, mut n) = (0, 0, 0u64);
        while i < self.0.len() && j < other.0.len() {
            let (a_lo, a_hi) = self.0[i];
            let (b_lo, b_hi) = other.0[j];
            let lo = a_lo.max(b_lo);
            let hi = a_hi.min(b_hi);
            if lo <= hi {
                n = n.saturating_add(hi - lo + 1);
            }
            if a_hi < b_hi {
                i += 1;
            } else {
                j += 1;
            }
        }
        n
    }

    /// Every counter, ascending.
    pub(crate) fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.0.iter().flat_map(|&(lo, hi)| lo..=hi)
    }
}

impl Serialize for Ranges {
    /// Each run as `(gap since the previous run's end, length - 1)`, both varints.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut prev = 0u64;
        s.collect_seq(self.0.iter().map(|&(lo, hi)| {
            let gap = lo - prev - 1;
            prev = hi;
            (gap, hi - lo)
        }))
    }
}

impl<'de> Deserialize<'de> for Ranges {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let pairs = Vec::<(u64, u64)>::deserialize(d)?;
        let mut runs: Vec<(u64, u64)> = Vec::with_capacity(pairs.len());
        let mut prev = 0u64;
        for (gap, len) in pairs {
            let lo = prev
                .checked_add(gap)
                .and_then(|x| x.checked_add(1))
                .ok_or_else(|| D::Error::custom("dot counter overflow"))?;
            let hi = lo.checked_add(len).ok_or_else(|| D::Error::custom("dot counter overflow"))?;
            match runs.last_mut() {
                // gap 0 after a run is adjacent: coalesce to keep the canonical form.
                Some((_, h)) if *h + 1 == lo => *h = hi,
                _ => runs.push((lo, hi)),
            }
            prev = hi;
        }
        Ok(Ranges(runs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn from_set(s: &BTreeSet<u64>) -> Ranges {
        Ranges::from_sorted(s.iter().copied())
    }

    fn arb_set() -> impl Strategy<Value = BTreeSet<u64>> {
        proptest::collection::btree_set(1u64..40, 0..25)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn matches_a_btreeset(a in arb_set(), b in arb_set(), probe in 0u64..45) {
            let (ra, rb) = (from_set(&a), from_set(&b));
            prop_assert_eq!(ra.contains(probe), a.contains(&probe));
            prop_assert_eq!(ra.len(), a.len() as u64);
            let mut u = ra.clone();
            u.union(&rb);
            prop_assert_eq!(&u, &from_set(&a.union(&b).copied().collect()));
            let mut u2 = ra.clone();
            for x in &b { u2.insert(*x); }
            prop_assert_eq!(&u2, &u);
            prop_assert_eq!(ra.difference(&rb), from_set(&a.difference(&b).copied().collect()));
            prop_assert_eq!(ra.intersection_len(&rb), a.intersection(&b).count() as u64);
            prop_assert_eq!(ra.is_subset(&rb), a.is_subset(&b));
            prop_assert_eq!(ra.iter().collect::<BTreeSet<_>>(), a.clone());
            let bytes = postcard::to_allocvec(&ra).expect("encode");
            prop_assert_eq!(postcard::from_bytes::<Ranges>(&bytes).expect("decode"), ra);
        }
    }

    #[test]
    fn contiguous_history_is_tiny() {
        let r = Ranges::from_sorted(1..=100_000);
        let bytes = postcard::to_allocvec(&r).expect("encode");
        assert!(bytes.len() <= 5, "{} bytes", bytes.len());
    }
}
