//! HyParView's invariants under random schedules (joins, crashes, leaves, partitions, lossy
//! links), driven by the deterministic simulator.

use std::collections::BTreeSet;
use std::time::Duration;

use proptest::prelude::*;
use troupe_overlay::sim::{Sim, SimConfig};
use troupe_overlay::{HyParView, HyParViewConfig, Membership};

#[derive(Clone, Debug)]
enum Op {
    Run(u64),
    Join(usize),
    Crash(usize),
    Leave(usize),
    Partition(u64),
    Heal,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (50u64..8_000).prop_map(Op::Run),
        3 => any::<usize>().prop_map(Op::Join),
        2 => any::<usize>().prop_map(Op::Crash),
        1 => any::<usize>().prop_map(Op::Leave),
        1 => any::<u64>().prop_map(Op::Partition),
        1 => Just(Op::Heal),
    ]
}

fn check_views(sim: &Sim<HyParView>) -> Result<(), TestCaseError> {
    for i in sim.live_nodes() {
        let h = sim.membership(i);
        let me = h.me().id;
        let active = h.active_ids();
        let passive = h.passive_ids();
        let a: BTreeSet<_> = active.iter().copied().collect();
        let p: BTreeSet<_> = passive.iter().copied().collect();
        prop_assert_eq!(a.len(), active.len(), "duplicate in the active view of n{}", i);
        prop_assert_eq!(p.len(), passive.len(), "duplicate in the passive view of n{}", i);
        prop_assert!(!a.contains(&me) && !p.contains(&me), "n{} lists itself", i);
        prop_assert!(a.is_disjoint(&p), "n{}: active and passive overlap", i);
        prop_assert!(active.len() <= h.config().active_max, "n{}: active view too big", i);
        prop_assert!(passive.len() <= h.config().passive_max, "n{}: passive view too big", i);
        prop_assert!(h.connection_count() >= active.len(), "n{}: a neighbour without a connection", i);
        prop_assert!(
            h.connection_count() <= h.config().active_max + h.config().max_transient,
            "n{}: too many connections",
            i
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn views_stay_well_formed_and_become_symmetric_when_quiet(
        seed in any::<u64>(),
        initial in 8usize..40,
        lossy in any::<bool>(),
        ops in proptest::collection::vec(op(), 1..25),
    ) {
        let cfg = SimConfig { seed, loss: if lossy { 0.001 } else { 0.0 }, ..SimConfig::default() };
        let mut sim: Sim<HyParView> = Sim::new(
            cfg,
            Default::default(),
            Box::new(|m, s| HyParView::new(m, HyParViewConfig::with_seed(s)).expect("config")),
        );
        for _ in 0..initial {
            sim.add_node();
        }
        sim.set_seeds(&[0]);
        sim.join_at(0, Duration::ZERO, &[]);
        for i in 1..initial {
            sim.join_at(i, Duration::from_millis(20 * i as u64), &[(i * 31 + seed as usize) % i]);
        }
        for op in ops {
            let live = sim.live_nodes();
            match op {
                Op::Run(ms) => sim.run_for(Duration::from_millis(ms)),
                Op::Join(k) => {
                    let n = sim.add_node();
                    // Before anyone started, the seed (node 0) is the contact.
                    let contacts = if live.is_empty() { vec![0] } else { vec![live[k % live.len()]] };
                    let now = sim.now();
                    sim.join_at(n, now, &contacts);
                }
                Op::Crash(k) if live.len() > 2 => sim.crash(live[k % live.len()]),
                Op::Leave(k) if live.len() > 2 => sim.leave(live[k % live.len()]),
                Op::Partition(bits) => sim.partition(|i| ((bits >> (i % 64)) & 1) as u32),
                Op::Heal => sim.heal(),
                _ => {}
            }
            sim.run_for(Duration::from_millis(10));
            check_views(&sim)?;
        }
        // Repair, then let every request in flight finish with nothing periodic going on.
        sim.heal();
        sim.run_for(Duration::from_secs(60));
        check_views(&sim)?;
        sim.pause_ticks(true);
        sim.run_for(Duration::from_secs(30));
        check_views(&sim)?;
        prop_assert_eq!(sim.asymmetric_edges(), 0, "asymmetric active views once quiet");
        // With loss the last links may break while quiet; without, every live node that was
        // given a contact has a neighbour. (Node 0 started alone: if every join through it
        // failed, the others can fill their views among themselves and never learn of it.)
        if !lossy {
            for i in sim.live_nodes().into_iter().filter(|i| *i != 0) {
                prop_assert!(!sim.membership(i).neighbors().is_empty(), "n{} isolated", i);
            }
        }
    }
}
