//! The simulator at 1,000 nodes with fixed seeds: HyParView with Plumtree meets the goals of the
//! seven scenarios, and a run is a function of its seed.

use std::time::Duration;

use troupe_overlay::sim::{run_scenario, Scenario, ScenarioParams, ScenarioResult, Sim, SimConfig};
use troupe_overlay::{HyParView, HyParViewConfig, Membership};

const NODES: usize = 1000;

fn run(scenario: Scenario, seed: u64) -> ScenarioResult {
    let params = ScenarioParams::new(NODES, seed);
    run_scenario(scenario, &params, Box::new(|m, s| HyParView::new(m, HyParViewConfig::with_seed(s)).expect("config")))
}

#[test]
fn stable_overlay_delivers_every_broadcast_to_everyone() {
    let r = run(Scenario::Stable, 11);
    assert_eq!(r.live, NODES);
    assert_eq!(r.components, 1, "{r:?}");
    assert_eq!(r.isolated, 0);
    assert_eq!(r.reliability, 1.0, "{:?}", r.per_period);
    assert!(r.redundancy >= 0.0 && r.redundancy < 2.0, "redundancy {}", r.redundancy);
    assert!(r.last_hop >= 3, "a 1000-node tree of degree <= 6 has depth >= 3: {}", r.last_hop);
    // Views within bounds: nobody above active_max, most nodes full.
    assert!(r.degree_histogram.len() <= 7, "{:?}", r.degree_histogram);
    assert!(r.degree_histogram[6] > NODES * 8 / 10, "{:?}", r.degree_histogram);
}

#[test]
fn mass_join_through_one_seed_leaves_no_isolated_node_and_no_island() {
    let r = run(Scenario::MassJoin, 12);
    assert_eq!(r.live, NODES);
    assert_eq!(r.isolated, 0, "{r:?}");
    assert_eq!(r.components, 1, "{:?}", r.per_period);
    assert!(r.rounds_to_recover.is_some_and(|p| p <= 5), "{:?}", r.per_period);
    assert!(r.reliability >= 0.99);
    // The timeline saw the join happen: not everyone was connected from the start.
    assert!(r.timeline.first().is_some_and(|s| s.connectivity.largest < NODES), "{:?}", r.timeline.first());
}

#[test]
fn recovers_from_20_and_50_percent_failures_within_five_shuffle_periods() {
    for (pct, seed) in [(20, 13), (50, 14)] {
        let r = run(Scenario::Fail(pct), seed);
        assert_eq!(r.live, NODES - NODES * pct as usize / 100);
        let p = r.rounds_to_recover.unwrap_or_else(|| panic!("fail{pct} never recovered: {:?}", r.per_period));
        assert!(p <= 5, "fail{pct}: {p} periods");
        assert_eq!(r.components, 1);
        assert!(r.reliability >= 0.99, "fail{pct}: {}", r.reliability);
        assert!(r.reliability_after_failure.is_some());
    }
}

#[test]
fn recovers_from_80_percent_failures() {
    let r = run(Scenario::Fail(80), 15);
    assert_eq!(r.live, NODES / 5);
    // Right after the crash the overlay is in pieces.
    assert!(r.per_period[0].connectivity.components > 1, "{:?}", r.per_period[0]);
    assert!(r.rounds_to_recover.is_some_and(|p| p <= 5), "{:?}", r.per_period);
    assert!(r.per_period.iter().filter(|s| s.period <= 5).any(|s| s.batch.reliability >= 0.90));
    assert_eq!(r.isolated, 0);
}

#[test]
fn same_seed_same_json_other_seed_other_run() {
    let small = |seed| {
        let mut p = ScenarioParams::new(300, seed);
        p.periods = 2;
        p.sim.loss = 0.0005;
        let r = run_scenario(
            Scenario::Fail(50),
            &p,
            Box::new(|m, s| HyParView::new(m, HyParViewConfig::with_seed(s)).expect("config")),
        );
        serde_json::to_string(&r).expect("json")
    };
    let a = small(21);
    assert_eq!(a, small(21));
    assert_ne!(a, small(22));
}

#[test]
fn churn_of_5_percent_per_period_keeps_broadcasts_reaching_everyone() {
    let r = run(Scenario::Churn, 16);
    let p = ScenarioParams::new(NODES, 16);
    // 50 nodes replaced per period for 6 periods: the population stays at 1,000.
    assert_eq!(r.churned, Some(300));
    assert_eq!(r.disturbed_periods, Some(p.periods));
    assert_eq!(r.live, NODES);
    assert_eq!(r.per_period.len(), 2 * p.periods as usize + 1);
    assert_eq!(r.components, 1, "{:?}", r.per_period);
    assert_eq!(r.isolated, 0);
    assert!(r.reliability >= 0.99, "final {}", r.reliability);
    let worst = r.worst_reliability.expect("worst reliability during the churn");
    assert!(worst >= 0.95, "worst during the churn {worst}: {:?}", r.per_period);
    assert!(r.rounds_to_recover.is_some_and(|p| p <= 5), "{:?}", r.per_period);
    assert!(r.redundancy >= 0.0 && r.redundancy < 2.0, "redundancy {}", r.redundancy);
}

#[test]
fn partition_in_two_halves_delivers_within_each_side_and_heals() {
    let r = run(Scenario::Partition, 17);
    let p = ScenarioParams::new(NODES, 17);
    let split = p.partition_periods as usize;
    assert_eq!(r.disturbed_periods, Some(p.partition_periods));
    assert_eq!(r.live, NODES);
    // While split: two components of 500, each broadcast reaches its own side and only it.
    for s in &r.per_period[1..split] {
        assert_eq!(s.connectivity.components, 2, "{s:?}");
        assert_eq!(s.connectivity.largest, NODES / 2, "{s:?}");
        assert!(s.batch.reliability <= 0.5 + 1e-9, "{s:?}");
    }
    assert!(r.per_period[..split].iter().all(|s| s.side.is_some()));
    assert!(r.per_period[split..].iter().all(|s| s.side.is_none()));
    let side = r.side_reliability.expect("side reliability");
    assert!(side >= 0.99, "within the side: {side}");
    // Healed: one component, everyone reached, within five shuffle periods.
    assert!(r.rounds_to_recover.is_some_and(|p| p <= 5), "{:?}", r.per_period);
    assert_eq!(r.components, 1);
    assert_eq!(r.isolated, 0);
    assert!(r.reliability >= 0.99, "{}", r.reliability);
}

#[test]
fn a_long_partition_heals_too() {
    // After 100 s every active view is full of its own side and nobody promotes: only the probes
    // of neighbours lost to the split (HyParViewConfig::heal_interval) reconnect the halves.
    let mut p = ScenarioParams::new(NODES, 18);
    p.partition_periods = 10;
    p.periods = 3;
    let r = run_scenario(
        Scenario::Partition,
        &p,
        Box::new(|m, s| HyParView::new(m, HyParViewConfig::with_seed(s)).expect("config")),
    );
    let last_split = &r.per_period[9];
    assert_eq!(last_split.connectivity.components, 2, "{last_split:?}");
    assert!(r.rounds_to_recover.is_some_and(|p| p <= 3), "{:?}", r.per_period);
    assert_eq!(r.components, 1);
    assert!(r.reliability >= 0.99, "{}", r.reliability);
}

#[test]
fn churn_and_partition_runs_are_functions_of_their_seed() {
    let small = |scenario, seed| {
        let mut p = ScenarioParams::new(300, seed);
        p.periods = 2;
        p.partition_periods = 1;
        p.sim.loss = 0.0005;
        let r = run_scenario(
            scenario,
            &p,
            Box::new(|m, s| HyParView::new(m, HyParViewConfig::with_seed(s)).expect("config")),
        );
        serde_json::to_string(&r).expect("json")
    };
    for scenario in [Scenario::Churn, Scenario::Partition] {
        let a = small(scenario, 23);
        assert_eq!(a, small(scenario, 23), "{scenario:?}");
        assert_ne!(a, small(scenario, 24), "{scenario:?}");
    }
}

#[test]
fn scenario_names_round_trip() {
    for s in Scenario::ALL {
        assert_eq!(Scenario::parse(&s.name()), Some(s));
    }
    assert_eq!(Scenario::ALL.len(), 7);
    assert_eq!(Scenario::parse("churn"), Some(Scenario::Churn));
    assert_eq!(Scenario::parse("partition"), Some(Scenario::Partition));
    assert_eq!(Scenario::parse("churn5"), None);
}

#[test]
fn lossy_links_and_a_healed_partition_end_in_one_component() {
    let cfg = SimConfig { seed: 31, loss: 0.0005, ..SimConfig::default() };
    let mut sim: Sim<HyParView> = Sim::new(
        cfg,
        Default::default(),
        Box::new(|m, s| HyParView::new(m, HyParViewConfig::with_seed(s)).expect("config")),
    );
    let n = 200;
    for _ in 0..n {
        sim.add_node();
    }
    sim.set_seeds(&[0]);
    sim.join_at(0, Duration::ZERO, &[]);
    for i in 1..n {
        sim.join_at(i, Duration::from_millis(10 * i as u64), &[i / 2]);
    }
    sim.run_until(Duration::from_secs(30));
    assert_eq!(sim.connectivity().components, 1);
    assert!(sim.stats().broken_links > 0, "loss broke no connection: {:?}", sim.stats());
    // Cut in two halves: no connection survives across.
    sim.partition(|i| (i % 2) as u32);
    sim.run_for(Duration::from_secs(30));
    for i in sim.live_nodes() {
        for j in sim.connections(i) {
            assert_eq!(i % 2, j % 2, "connection {i}-{j} across the partition");
        }
        for id in sim.membership(i).neighbors() {
            assert_eq!(sim.node_of(id).map(|j| j % 2), Some(i % 2), "neighbour across the partition");
        }
    }
    assert!(sim.connectivity().components >= 2);
    sim.heal();
    // Passive views still name nodes of the other half: promotions and shuffles reconnect them.
    sim.run_for(Duration::from_secs(120));
    let c = sim.connectivity();
    assert_eq!(c.components, 1, "{c:?}");
    assert_eq!(c.isolated, 0);
    let b = sim.broadcast_batch(5, Duration::from_millis(50), Duration::from_secs(9));
    assert!(b.reliability >= 0.99, "{b:?}");
}
