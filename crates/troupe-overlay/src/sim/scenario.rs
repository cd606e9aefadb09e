//! The standard scenarios (`stable`, `massjoin`, `fail20`, `fail50`, `fail80`, `churn`,
//! `partition`) and their report.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::config::SimConfig;
use super::engine::{mix, MakeMembership, Sim};
use super::metrics::{BatchStats, Connectivity, SideStats, SimStats};
use crate::membership::Membership;
use crate::plumtree::PlumtreeConfig;

/// A standard scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// Every node joined (one after the other, each through a random earlier node) and the
    /// overlay settled; then broadcasts.
    Stable,
    /// All nodes join through one seed within [`ScenarioParams::massjoin_window`].
    MassJoin,
    /// From the stable state, this percentage of the nodes crashes at once.
    Fail(u32),
    /// From the stable state, for [`ScenarioParams::periods`] periods, every period a fraction
    /// [`ScenarioParams::churn`] of the live nodes leaves or crashes (half each) and as many new
    /// nodes join through random live nodes, all at random times within the period; then the
    /// churn stops and recovery is measured for [`ScenarioParams::periods`] more periods.
    Churn,
    /// From the stable state, the live nodes are split into two random halves for
    /// [`ScenarioParams::partition_periods`] periods; then the partition heals and recovery is
    /// measured for [`ScenarioParams::periods`] periods.
    Partition,
}

impl Scenario {
    /// The standard scenarios, in report order.
    pub const ALL: [Scenario; 7] = [
        Scenario::Stable,
        Scenario::MassJoin,
        Scenario::Fail(20),
        Scenario::Fail(50),
        Scenario::Fail(80),
        Scenario::Churn,
        Scenario::Partition,
    ];

    /// The scenario's name in reports (`stable`, `massjoin`, `fail50` ...).
    pub fn name(&self) -> String {
        match self {
            Scenario::Stable => "stable".into(),
            Scenario::MassJoin => "massjoin".into(),
            Scenario::Fail(p) => format!("fail{p}"),
            Scenario::Churn => "churn".into(),
            Scenario::Partition => "partition".into(),
        }
    }

    /// Parses a name given by [`Scenario::name`].
    pub fn parse(name: &str) -> Option<Scenario> {
        match name {
            "stable" => Some(Scenario::Stable),
            "massjoin" => Some(Scenario::MassJoin),
            "churn" => Some(Scenario::Churn),
            "partition" => Some(Scenario::Partition),
            _ => name.strip_prefix("fail")?.parse().ok().filter(|p| *p <= 100).map(Scenario::Fail),
        }
    }

    /// The reliability the scenario must reach (with one component) to count as recovered:
    /// 100% when stable, 99% after a mass join, churn, a partition or up to 50% failures, 90%
    /// after more.
    pub fn reliability_goal(&self) -> f64 {
        match self {
            Scenario::Stable => 1.0,
            Scenario::MassJoin | Scenario::Churn | Scenario::Partition => 0.99,
            Scenario::Fail(p) if *p <= 50 => 0.99,
            Scenario::Fail(_) => 0.90,
        }
    }
}

/// How a scenario runs.
#[derive(Clone, Debug, PartialEq)]
pub struct ScenarioParams {
    /// Number of nodes.
    pub nodes: usize,
    /// Broadcasts per measurement batch.
    pub broadcasts: usize,
    /// The network.
    pub sim: SimConfig,
    /// Plumtree's settings.
    pub plumtree: PlumtreeConfig,
    /// The membership protocol's shuffle period: the unit of `rounds_to_recover`.
    pub period: Duration,
    /// Periods measured after the failure or the mass join; periods of churn, and periods
    /// measured after the churn stops or the partition heals.
    pub periods: u32,
    /// Fraction of the live nodes replaced per period in the churn scenario.
    pub churn: f64,
    /// Periods the partition scenario keeps the network split.
    pub partition_periods: u32,
    /// Time between two joins while building the stable overlay.
    pub join_spacing: Duration,
    /// Quiet time after the last join before the stable overlay is measured or failed.
    pub settle: Duration,
    /// The mass join spreads its joins uniformly over this window.
    pub massjoin_window: Duration,
    /// Time between the broadcasts of a batch.
    pub broadcast_spacing: Duration,
    /// How long after a batch's last broadcast deliveries are counted.
    pub broadcast_settle: Duration,
    /// Interval of the connectivity timeline.
    pub sample_every: Duration,
}

impl ScenarioParams {
    /// Defaults for `nodes` nodes: 10 broadcasts per batch 50 ms apart counted 9 s after the last
    /// one (Plumtree's trees reach 100+ hops at 10,000 nodes and a lazy repair takes a few
    /// seconds), 10 s periods, 6 periods after the event, joins 5 ms apart, 30 s to settle, the
    /// mass join within 1 s, 5% churn per period, partitions of 3 periods.
    pub fn new(nodes: usize, seed: u64) -> Self {
        ScenarioParams {
            nodes,
            broadcasts: 10,
            sim: SimConfig { seed, ..SimConfig::default() },
            plumtree: PlumtreeConfig::default(),
            period: Duration::from_secs(10),
            periods: 6,
            churn: 0.05,
            partition_periods: 3,
            join_spacing: Duration::from_millis(5),
            settle: Duration::from_secs(30),
            massjoin_window: Duration::from_secs(1),
            broadcast_spacing: Duration::from_millis(50),
            broadcast_settle: Duration::from_secs(9),
            sample_every: Duration::from_secs(1),
        }
    }
}

/// One measurement: the overlay's shape and a batch of broadcasts.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PeriodSample {
    /// Periods since the event (0 = right after it).
    pub period: u32,
    /// Simulated seconds since the event.
    pub t_s: f64,
    /// The overlay's shape when the batch started.
    #[serde(flatten)]
    pub connectivity: Connectivity,
    /// What the batch achieved.
    pub batch: BatchStats,
    /// What the batch achieved within each origin's side (partition scenario, while split).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub side: Option<SideStats>,
}

/// One point of the connectivity timeline.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TimelineSample {
    /// Simulated seconds since the event (the failure or the first join).
    pub t_s: f64,
    /// The overlay's shape.
    #[serde(flatten)]
    pub connectivity: Connectivity,
}

/// A scenario's report (one JSON object).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScenarioResult {
    /// The scenario's name.
    pub bench: String,
    /// Nodes at the start (the churn scenario creates `churned` more).
    pub nodes: usize,
    /// The simulation seed.
    pub seed: u64,
    /// Live nodes at the end.
    pub live: usize,
    /// Fraction of live nodes that delivered a broadcast (mean over the last batch).
    pub reliability: f64,
    /// The last batch's worst broadcast.
    pub min_reliability: f64,
    /// Components of the active-view graph among live nodes at the end.
    pub components: usize,
    /// The largest component at the end.
    pub largest: usize,
    /// Live nodes with an empty active view at the end.
    pub isolated: usize,
    /// Relative message redundancy of the last batch.
    pub redundancy: f64,
    /// Largest hop count of a delivery in the last batch.
    pub last_hop: u32,
    /// Shuffle periods after the event until one component and the reliability goal held
    /// (0 = at once); `None` if they never did within the periods measured.
    pub rounds_to_recover: Option<u32>,
    /// The reliability goal of this scenario.
    pub reliability_goal: f64,
    /// Reliability of the batch sent right after the failure (failure scenarios).
    pub reliability_after_failure: Option<f64>,
    /// The lowest batch reliability during the churn (churn scenario).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worst_reliability: Option<f64>,
    /// Fraction of the live nodes replaced per period (churn scenario).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub churn: Option<f64>,
    /// Nodes that left or crashed during the churn (as many joined) (churn scenario).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub churned: Option<usize>,
    /// Fraction of the origin's side that delivered a broadcast, mean over the batches sent
    /// while the network was split (partition scenario).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub side_reliability: Option<f64>,
    /// The worst broadcast's fraction of its side while split (partition scenario).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub side_min_reliability: Option<f64>,
    /// The periods of churn or of partition at the start of `per_period`; `rounds_to_recover`
    /// counts from their end (churn and partition scenarios).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disturbed_periods: Option<u32>,
    /// Simulated seconds in total.
    pub sim_seconds: f64,
    /// How many live nodes have 0, 1, 2, ... neighbours at the end.
    pub degree_histogram: Vec<usize>,
    /// Measurements after the event, one per period.
    pub per_period: Vec<PeriodSample>,
    /// Connectivity over time after the event.
    pub timeline: Vec<TimelineSample>,
    /// The simulator's counters.
    pub stats: SimStats,
}

/// Runs one scenario with membership protocol `M` (built by `make` for each node).
pub fn run_scenario<M: Membership>(scenario: Scenario, p: &ScenarioParams, make: MakeMembership<M>) -> ScenarioResult {
    let mut sim = Sim::new(p.sim.clone(), p.plumtree.clone(), make);
    sim.set_seeds(&[0]);
    let tag = match scenario {
        Scenario::Stable => 1,
        Scenario::MassJoin => 2,
        Scenario::Fail(x) => 3 + x as u64,
        Scenario::Churn => 1_000,
        Scenario::Partition => 1_001,
    };
    let mut rng = StdRng::seed_from_u64(mix(p.sim.seed ^ mix(tag)));
    let nodes = p.nodes.max(1);
    let mut per_period = Vec::new();
    let mut timeline = Vec::new();
    let mut after_failure = None;
    let mut t_event = Duration::ZERO;
    // Periods of churn or partition at the start of `per_period` (recovery counts after them).
    let mut disturbed = 0;
    let mut churned = 0;
    let goal = scenario.reliability_goal();
    match scenario {
        Scenario::Stable => {
            build_stable(&mut sim, nodes, p, &mut rng);
            let t0 = sim.now();
            per_period.push(measure(&mut sim, p, 0, t0));
        }
        Scenario::MassJoin => {
            for _ in 0..nodes {
                sim.add_node();
            }
            sim.join_at(0, Duration::ZERO, &[]);
            let window = p.massjoin_window.as_micros().max(1) as u64;
            for i in 1..nodes {
                let at = Duration::from_micros(1_000 + rng.random_range(0..window));
                sim.join_at(i, at, &[0]);
            }
            let t0 = Duration::ZERO;
            sim.sample_connectivity(Some(p.sample_every));
            for k in 1..=p.periods {
                sim.run_until(t0 + p.period * k);
                per_period.push(measure(&mut sim, p, k, t0));
            }
        }
        Scenario::Fail(x) => {
            build_stable(&mut sim, nodes, p, &mut rng);
            let mut live = sim.live_nodes();
            let crash = (live.len() as u64 * x.min(100) as u64 / 100) as usize;
            for _ in 0..crash {
                let i = rng.random_range(0..live.len());
                sim.crash(live.swap_remove(i));
            }
            let t0 = sim.now();
            t_event = t0;
            timeline.push(TimelineSample { t_s: 0.0, connectivity: sim.connectivity() });
            sim.sample_connectivity(Some(p.sample_every));
            let first = measure(&mut sim, p, 0, t0);
            after_failure = Some(first.batch.reliability);
            per_period.push(first);
            for k in 1..=p.periods {
                sim.run_until(t0 + p.period * k);
                per_period.push(measure(&mut sim, p, k, t0));
            }
        }
        Scenario::Churn => {
            build_stable(&mut sim, nodes, p, &mut rng);
            let t0 = sim.now();
            t_event = t0;
            timeline.push(TimelineSample { t_s: 0.0, connectivity: sim.connectivity() });
            sim.sample_connectivity(Some(p.sample_every));
            disturbed = p.periods;
            for k in 0..p.periods {
                sim.run_until(t0 + p.period * k);
                churned += schedule_churn(&mut sim, p, t0 + p.period * k, &mut rng);
                // Measured while the churn goes on.
                per_period.push(measure(&mut sim, p, k, t0));
            }
            for k in 0..=p.periods {
                sim.run_until(t0 + p.period * (disturbed + k));
                per_period.push(measure(&mut sim, p, disturbed + k, t0));
            }
        }
        Scenario::Partition => {
            build_stable(&mut sim, nodes, p, &mut rng);
            let mut live = sim.live_nodes();
            let mut group = vec![0u32; sim.len()];
            for _ in 0..live.len() / 2 {
                let i = rng.random_range(0..live.len());
                group[live.swap_remove(i)] = 1;
            }
            sim.partition(|i| group.get(i).copied().unwrap_or(0));
            let t0 = sim.now();
            t_event = t0;
            timeline.push(TimelineSample { t_s: 0.0, connectivity: sim.connectivity() });
            sim.sample_connectivity(Some(p.sample_every));
            disturbed = p.partition_periods;
            for k in 0..p.partition_periods {
                sim.run_until(t0 + p.period * k);
                let t_s = sim.now().saturating_sub(t0).as_secs_f64();
                let connectivity = sim.connectivity();
                let (batch, side) = sim.broadcast_batch_by_side(p.broadcasts, p.broadcast_spacing, p.broadcast_settle);
                per_period.push(PeriodSample { period: k, t_s, connectivity, batch, side: Some(side) });
            }
            sim.run_until(t0 + p.period * disturbed);
            sim.heal();
            for k in 0..=p.periods {
                sim.run_until(t0 + p.period * (disturbed + k));
                per_period.push(measure(&mut sim, p, disturbed + k, t0));
            }
        }
    }
    sim.sample_connectivity(None);
    let t0 = if scenario == Scenario::MassJoin { Duration::ZERO } else { t_event };
    timeline.extend(
        sim.take_timeline()
            .into_iter()
            .map(|(t, connectivity)| TimelineSample { t_s: t.saturating_sub(t0).as_secs_f64(), connectivity }),
    );
    let rounds_to_recover = per_period
        .iter()
        .filter(|s| s.period >= disturbed)
        .find(|s| s.connectivity.components == 1 && s.batch.reliability >= goal - 1e-12)
        .map(|s| s.period - disturbed);
    let during = &per_period[..per_period.len().min(disturbed as usize)];
    let worst_reliability =
        (scenario == Scenario::Churn).then(|| during.iter().map(|s| s.batch.reliability).fold(1.0f64, f64::min));
    let sides: Vec<&SideStats> = during.iter().filter_map(|s| s.side.as_ref()).collect();
    let (side_reliability, side_min_reliability) = if sides.is_empty() {
        (None, None)
    } else {
        let mean = sides.iter().map(|s| s.reliability).sum::<f64>() / sides.len() as f64;
        (Some(mean), Some(sides.iter().map(|s| s.min_reliability).fold(1.0f64, f64::min)))
    };
    let disturbing = matches!(scenario, Scenario::Churn | Scenario::Partition);
    let last = per_period.last().cloned().unwrap_or_default();
    let end = sim.connectivity();
    ScenarioResult {
        bench: scenario.name(),
        nodes,
        seed: p.sim.seed,
        live: end.live,
        reliability: last.batch.reliability,
        min_reliability: last.batch.min_reliability,
        components: end.components,
        largest: end.largest,
        isolated: end.isolated,
        redundancy: last.batch.redundancy,
        last_hop: last.batch.last_hop,
        rounds_to_recover,
        reliability_goal: goal,
        reliability_after_failure: after_failure,
        worst_reliability,
        churn: (scenario == Scenario::Churn).then_some(p.churn),
        churned: (scenario == Scenario::Churn).then_some(churned),
        side_reliability,
        side_min_reliability,
        disturbed_periods: disturbing.then_some(disturbed),
        sim_seconds: sim.now().as_secs_f64(),
        degree_histogram: sim.degree_histogram(),
        per_period,
        timeline,
        stats: sim.stats().clone(),
    }
}

/// Nodes join one after the other, each through a random node that joined before; then the
/// overlay settles.
fn build_stable<M: Membership>(sim: &mut Sim<M>, nodes: usize, p: &ScenarioParams, rng: &mut StdRng) {
    for _ in 0..nodes {
        sim.add_node();
    }
    sim.join_at(0, Duration::ZERO, &[]);
    for i in 1..nodes {
        let contact = rng.random_range(0..i);
        sim.join_at(i, p.join_spacing * i as u32, &[contact]);
    }
    let end = p.join_spacing * nodes as u32 + p.settle;
    sim.run_until(end);
    // A first batch builds Plumtree's tree (its first broadcast is flooded and pruned); the
    // stable state is the one with a tree.
    sim.broadcast_batch(p.broadcasts, p.broadcast_spacing, p.broadcast_settle);
}

fn measure<M: Membership>(sim: &mut Sim<M>, p: &ScenarioParams, period: u32, t0: Duration) -> PeriodSample {
    let t_s = sim.now().saturating_sub(t0).as_secs_f64();
    let connectivity = sim.connectivity();
    let batch = sim.broadcast_batch(p.broadcasts, p.broadcast_spacing, p.broadcast_settle);
    PeriodSample { period, t_s, connectivity, batch, side: None }
}

/// Schedules one period of churn from `start`: a fraction `p.churn` of the live nodes leaves or
/// crashes (alternately, in random order) at random times within the period, and as many new
/// nodes join at random times, each through a random live node that stays this period. Returns
/// how many nodes go.
fn schedule_churn<M: Membership>(sim: &mut Sim<M>, p: &ScenarioParams, start: Duration, rng: &mut StdRng) -> usize {
    let mut live = sim.live_nodes();
    let wanted = (live.len() as f64 * p.churn.clamp(0.0, 1.0)).round() as usize;
    // At least one node stays, as a contact for the joiners.
    let n = wanted.min(live.len().saturating_sub(1));
    let period = p.period.as_micros().max(1) as u64;
    let at = |rng: &mut StdRng| start + Duration::from_micros(rng.random_range(0..period));
    for j in 0..n {
        let victim = live.swap_remove(rng.random_range(0..live.len()));
        let t = at(rng);
        if j % 2 == 0 {
            sim.leave_at(victim, t);
        } else {
            sim.crash_at(victim, t);
        }
    }
    for _ in 0..n {
        let node = sim.add_node();
        let t = at(rng);
        let contact = live[rng.random_range(0..live.len())];
        sim.join_at(node, t, &[contact]);
    }
    n
}
