//! `troupe sim`: the overlay scenarios in the deterministic simulator, as JSON lines or a table,
//! plus SVG plots.

mod plots;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use troupe_overlay::sim::{run_scenario, Scenario, ScenarioParams, ScenarioResult};
use troupe_overlay::{HyParView, HyParViewConfig};

use crate::bench::emit;

/// Arguments of `troupe sim`.
#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// Simulated nodes.
    #[arg(long, default_value_t = 10_000)]
    pub nodes: usize,
    /// Seed of the whole run (same seed, same results).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Membership overlay to simulate (hyparview).
    #[arg(long, default_value = "hyparview")]
    pub overlay: String,
    /// Mean one-way link delay in milliseconds (each link's base delay is 0.5x to 1.5x this).
    #[arg(long, default_value_t = 20.0)]
    pub latency_ms: f64,
    /// Extra per-message delay, uniform up to this many milliseconds (links stay FIFO).
    #[arg(long, default_value_t = 5.0)]
    pub jitter_ms: f64,
    /// Probability that sending a message breaks its (TCP-like) connection.
    #[arg(long, default_value_t = 0.0)]
    pub loss: f64,
    /// Broadcasts per measurement batch.
    #[arg(long, default_value_t = 10)]
    pub broadcasts: usize,
    /// Shuffle periods measured after a failure or the mass join; periods of churn, and periods
    /// measured after the churn stops or the partition heals.
    #[arg(long, default_value_t = 6)]
    pub periods: u32,
    /// Fraction of the live nodes that leave or crash (half each) per period in the churn
    /// scenario; as many new nodes join.
    #[arg(long, default_value_t = 0.05)]
    pub churn: f64,
    /// Shuffle periods the partition scenario keeps the network split in two halves.
    #[arg(long, default_value_t = 3)]
    pub partition_periods: u32,
    /// Run only these scenarios (comma-separated: stable, massjoin, fail20, fail50, fail80,
    /// churn, partition; failN for any percentage N).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Print one JSON object per scenario.
    #[arg(long)]
    pub json: bool,
    /// Directory for the SVG plots.
    #[arg(long, default_value = "target/sim")]
    pub out: PathBuf,
    /// Do not write plots.
    #[arg(long)]
    pub no_plots: bool,
}

/// Runs the scenarios, prints them and writes the plots.
pub fn run(args: SimArgs) -> anyhow::Result<()> {
    if args.overlay != "hyparview" {
        bail!("unknown overlay {:?} (the simulator runs: hyparview)", args.overlay);
    }
    if !(0.0..=1.0).contains(&args.loss) {
        bail!("--loss must be between 0 and 1");
    }
    if !(0.0..=1.0).contains(&args.churn) {
        bail!("--churn must be between 0 and 1");
    }
    if args.nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    let scenarios: Vec<Scenario> = if args.only.is_empty() {
        Scenario::ALL.to_vec()
    } else {
        args.only
            .iter()
            .map(|n| Scenario::parse(n).with_context(|| format!("unknown scenario {n:?}")))
            .collect::<anyhow::Result<_>>()?
    };
    let mut params = ScenarioParams::new(args.nodes, args.seed);
    params.broadcasts = args.broadcasts.max(1);
    params.periods = args.periods;
    params.churn = args.churn;
    params.partition_periods = args.partition_periods;
    params.sim.latency = Duration::from_secs_f64(args.latency_ms.max(0.0) / 1000.0);
    params.sim.jitter = Duration::from_secs_f64(args.jitter_ms.max(0.0) / 1000.0);
    params.sim.loss = args.loss;
    params.period = HyParViewConfig::default().shuffle_interval;

    if !args.json {
        emit(&format!(
            "{:<9} {:>6} {:>6} {:>11} {:>6} {:>8} {:>10} {:>8} {:>8} {:>11} {:>8}",
            "scenario",
            "nodes",
            "live",
            "reliability",
            "comps",
            "isolated",
            "redundancy",
            "last_hop",
            "recover",
            "disturbed",
            "wall_s"
        ));
    }
    let mut results = Vec::new();
    for scenario in scenarios {
        let started = Instant::now();
        let make = Box::new(|member, seed| {
            HyParView::new(member, HyParViewConfig::with_seed(seed)).expect("the default HyParView config is valid")
        });
        let result = run_scenario(scenario, &params, make);
        let wall = started.elapsed();
        if args.json {
            emit(&json_line(&result, &args.overlay)?);
        } else {
            emit(&table_line(&result, wall));
        }
        results.push(result);
    }
    if !args.no_plots {
        plots::write_all(&args.out, &results).with_context(|| format!("writing plots to {}", args.out.display()))?;
        if !args.json {
            emit(&format!("plots written to {}", args.out.display()));
        }
    }
    Ok(())
}

/// The scenario as one JSON object, with `suite` and `overlay` first.
fn json_line(r: &ScenarioResult, overlay: &str) -> anyhow::Result<String> {
    let mut map = serde_json::Map::new();
    map.insert("suite".into(), "sim".into());
    map.insert("overlay".into(), overlay.into());
    if let serde_json::Value::Object(fields) = serde_json::to_value(r)? {
        map.extend(fields);
    }
    Ok(serde_json::to_string(&map)?)
}

fn table_line(r: &ScenarioResult, wall: Duration) -> String {
    let recover = r.rounds_to_recover.map_or("never".to_string(), |p| p.to_string());
    // Reliability right after the failure, the worst during the churn, or within the origin's side
    // during the partition.
    let disturbed = r.reliability_after_failure.or(r.worst_reliability).or(r.side_reliability);
    let after = disturbed.map_or("-".to_string(), |v| format!("{v:.4}"));
    format!(
        "{:<9} {:>6} {:>6} {:>11.4} {:>6} {:>8} {:>10.3} {:>8} {:>8} {:>11} {:>8.1}",
        r.bench,
        r.nodes,
        r.live,
        r.reliability,
        r.components,
        r.isolated,
        r.redundancy,
        r.last_hop,
        recover,
        after,
        wall.as_secs_f64()
    )
}
