//! FullMesh under random schedules of crashes, restarts, leaves and partitions: once the faults
//! stop and the network heals, every running node lists exactly the running incarnations, and the
//! views keep their invariants all along.

mod common;

use std::collections::BTreeSet;

use common::{check_views, ms, secs, Cluster};
use proptest::prelude::*;
use troupe_overlay::{FullMesh, FullMeshConfig, Input, Membership, PeerId};

const N: usize = 8;

#[derive(Clone, Debug)]
enum Op {
    Crash { slot: usize, noisy: bool },
    Restart(usize),
    Leave(usize),
    Partition(u8),
    Heal,
    Wait(u64),
}

fn op() -> impl Strategy<Value = Op> {
    // Slot 0 is the seed and stays up (the driver's seed list must name a live node).
    prop_oneof![
        (1..N, any::<bool>()).prop_map(|(slot, noisy)| Op::Crash { slot, noisy }),
        (1..N).prop_map(Op::Restart),
        (1..N).prop_map(Op::Leave),
        any::<u8>().prop_map(Op::Partition),
        Just(Op::Heal),
        (1u64..15).prop_map(Op::Wait),
    ]
}

fn converged(c: &Cluster<FullMesh>) -> bool {
    let up: BTreeSet<PeerId> = c.up_slots().into_iter().map(|s| c.id(s)).collect();
    c.up_slots().into_iter().all(|s| {
        let p = c.proto(s).expect("up");
        let mut want = up.clone();
        want.remove(&c.id(s));
        let members: BTreeSet<PeerId> = p.members().iter().map(|m| m.id).collect();
        let neighbors: BTreeSet<PeerId> = p.neighbors().into_iter().collect();
        p.is_active() && members == want && neighbors == want && c.reported_members(s) == want
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn converges_after_any_schedule(seed in any::<u64>(), ops in prop::collection::vec(op(), 1..12)) {
        let mut c = Cluster::new(N, seed, |m, s| FullMesh::new(m, FullMeshConfig { seed: s, ..FullMeshConfig::default() }));
        c.dial_by_address = seed % 2 == 0;
        for s in 0..N {
            c.start(s);
            c.run_for(ms(30));
        }
        c.run_for(secs(5));
        for op in ops {
            match op {
                Op::Crash { slot, noisy } => {
                    if c.is_up(slot) {
                        c.crash(slot, noisy);
                    }
                }
                Op::Restart(slot) => c.restart(slot),
                Op::Leave(slot) => {
                    if c.is_up(slot) {
                        c.feed(slot, Input::Leave);
                        c.run_for(secs(1));
                        c.crash(slot, true);
                    }
                }
                Op::Partition(mask) => c.partition(|s| u32::from(mask >> (s % 8) & 1)),
                Op::Heal => c.heal(),
                Op::Wait(s) => c.run_for(secs(s)),
            }
            c.run_for(ms(500));
            prop_assert!(check_views(&c).is_ok(), "{:?}", check_views(&c));
        }
        c.heal();
        for s in 0..N {
            if !c.is_up(s) {
                c.restart(s);
            }
        }
        let took = c.run_until_cond(secs(90), ms(250), converged);
        prop_assert!(took.is_some(), "no convergence within 90 s after healing");
        prop_assert!(check_views(&c).is_ok(), "{:?}", check_views(&c));
        // Every removed incarnation stays removed: nothing but the running ones is alive anywhere.
        let up: BTreeSet<PeerId> = c.up_slots().into_iter().map(|s| c.id(s)).collect();
        for s in c.up_slots() {
            let alive: BTreeSet<PeerId> = c.proto(s).expect("up").member_set().alive().map(|m| m.id).collect();
            prop_assert_eq!(&alive, &up);
        }
    }

    /// Same seed, same run.
    #[test]
    fn runs_are_deterministic(seed in any::<u64>()) {
        let run = |seed| {
            let mut c = Cluster::new(6, seed, |m, s| FullMesh::new(m, FullMeshConfig { seed: s, ..FullMeshConfig::default() }));
            for s in 0..6 {
                c.start(s);
            }
            c.run_for(secs(3));
            c.crash(3, false);
            c.run_for(secs(15));
            c.log.iter().map(|l| format!("{:?} {} {:?}", l.at, l.slot, l.event)).collect::<Vec<_>>()
        };
        prop_assert_eq!(run(seed), run(seed));
    }
}
