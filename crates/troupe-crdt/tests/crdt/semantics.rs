//! Concurrency semantics that hold across types and histories (the per-type scenarios live in
//! each module's unit tests).

use crate::common::*;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use std::collections::BTreeSet;
use troupe_crdt::*;

/// Histories without lone deltas: operations, full-state syncs and digest syncs only, so every
/// state includes the causal past of its updates.
fn causal_run<S: Subject>(raw: &[RawAction]) -> Run<S> {
    run::<S>(&decode::<S>(raw, true))
}

/// A bounded counter never reads below zero when states travel whole (or as digest deltas).
#[test]
fn bounded_counter_never_negative() {
    property(160, raw_actions(40), &|raw| {
        let run = causal_run::<BoundedCounter<Rep>>(&raw);
        for s in &run.states {
            prop_assert!(s.value() >= 0, "{:?}", s);
        }
        Ok(())
    });
}

/// AW-Set (dots, no tombstones) and OR-Set (tombstones) are both add-wins: the same history
/// gives the same value at every replica.
#[test]
fn awset_and_orset_agree() {
    property(160, raw_actions(40), &|raw| {
        let aw = causal_run::<AwSet<u8, Rep>>(&raw);
        let or = causal_run::<OrSet<u8, Rep>>(&raw);
        for (a, o) in aw.replicas.iter().zip(&or.replicas) {
            prop_assert_eq!(a.query(), o.query());
        }
        Ok(())
    });
}

/// No tombstones: an AW-Set stores exactly its elements, and a causally complete context is
/// one run per replica however many operations happened.
#[test]
fn awset_keeps_no_tombstones() {
    property(160, raw_actions(40), &|raw| {
        let run = causal_run::<AwSet<u8, Rep>>(&raw);
        let all = run.replicas.iter().fold(AwSet::bottom(), |acc, r| acc.join(r));
        prop_assert_eq!(all.store().len(), all.query().len());
        prop_assert!(all.context().runs() <= REPLICAS);
        Ok(())
    });
}

/// A met threshold stays met: states only grow.
#[test]
fn thresholds_stay_met() {
    property(160, (raw_actions(40), 0u64..8).boxed(), &|(raw, t)| {
        let run = causal_run::<GCounter<Rep>>(&raw);
        let threshold = Threshold::Reached(t);
        for s in run.states.iter().filter(|s| s.value_reached(&threshold)) {
            for r in &run.replicas {
                prop_assert!(s.join(r).value_reached(&threshold));
            }
        }
        Ok(())
    });
}

/// Shipping only deltas, each exactly once but delayed and reordered, converges to the join of
/// all deltas, which is also what full-state shipping gives.
#[test]
fn deltas_alone_converge() {
    type M = AwMap<u8, AwSet<u8, Rep>, Rep>;
    let ops = proptest::collection::vec((0..REPLICAS, any::<u32>(), any::<prop::sample::Index>()), 1..40);
    property(160, ops.boxed(), &|ops| -> Result<(), TestCaseError> {
        let mut nodes: Vec<M> = (0..REPLICAS).map(|_| M::new()).collect();
        let mut in_flight: Vec<(usize, M)> = Vec::new();
        let mut all = M::new();
        for (i, code, pick) in ops {
            let delta = nodes[i].update(M::op(code), &(i as Rep));
            in_flight.extend((0..REPLICAS).filter(|&j| j != i).map(|j| (j, delta.clone())));
            all.merge(&delta);
            // Deliver one random in-flight delta.
            let (to, d) = in_flight.swap_remove(pick.index(in_flight.len()));
            nodes[to].merge(&d);
        }
        for (to, d) in in_flight {
            nodes[to].merge(&d);
        }
        let full = nodes.iter().fold(M::new(), |acc, n| acc.join(n));
        prop_assert_eq!(&full, &all);
        for node in &nodes {
            prop_assert_eq!(node, &all);
        }
        Ok(())
    });
}

#[test]
fn add_wins_versus_remove_wins() {
    // The same concurrent add / remove: AW-Set keeps the element, 2P-Set drops it.
    let mut aw_a = AwSet::<u8, Rep>::new();
    aw_a.add(1, &0);
    let mut aw_b = aw_a.clone();
    aw_a.add(1, &0);
    aw_b.remove(1, &1);
    assert_eq!(aw_a.join(&aw_b).query(), BTreeSet::from([1]));

    let mut tp_a = TwoPSet::<u8>::new();
    tp_a.apply(TwoPSetOp::Add(1), &0).expect("ok");
    let mut tp_b = tp_a.clone();
    tp_a.apply(TwoPSetOp::Add(1), &0).expect("ok");
    tp_b.apply(TwoPSetOp::Remove(1), &1).expect("ok");
    assert!(tp_a.join(&tp_b).query().is_empty());
}

#[test]
fn gmap_joins_nested_values_per_key() {
    let mut a = GMap::<u8, PnCounter<Rep>>::new();
    let mut b = a.clone();
    a.apply(GMapOp::Apply(1, PnCounterOp::Increment(2)), &0).expect("ok");
    b.apply(GMapOp::Apply(1, PnCounterOp::Decrement(5)), &1).expect("ok");
    b.apply(GMapOp::Apply(2, PnCounterOp::Increment(1)), &1).expect("ok");
    let j = a.join(&b);
    assert_eq!(j.get(&1).map(PnCounter::value), Some(-3));
    assert_eq!(j.get(&2).map(PnCounter::value), Some(1));
}

#[test]
fn pair_updates_each_side_independently() {
    let mut p = Pair::<GCounter<Rep>, Boolean>::bottom();
    p.apply(PairOp::First(GCounterOp::Increment(2)), &0).expect("ok");
    let q = Pair::<GCounter<Rep>, Boolean>::bottom().delta_mutate(PairOp::Second(BooleanOp::True), &1).expect("ok");
    assert_eq!(p.join(&q).query(), (2, true));
}

#[test]
fn replica_ids_are_stored_once_per_state() {
    // 64-bit node ids cost their bytes once, not once per element.
    let ids = [u64::MAX - 1, u64::MAX - 2];
    let mut s = AwSet::<u32, u64>::new();
    for e in 0..1000u32 {
        s.add(e, &ids[(e % 2) as usize]);
    }
    let len = s.encoded_len().expect("encode");
    assert!(len < 1000 * 8, "{len} bytes for 1000 elements");
}
