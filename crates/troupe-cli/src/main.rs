//! The `troupe` command: demo, node, benchmarks.

mod bench;
mod demo;
mod demo_cluster;
mod rng;
mod sim;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "troupe", version, about = "troupe: a distributed actor runtime")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a supervision tree of thousands of actors under load and chaos, and report.
    Demo(demo::DemoArgs),
    /// Run one node (config from a TOML file and TROUPE_… environment variables).
    Node(troupe_cli::node::NodeArgs),
    /// Simulate the overlay (HyParView + Plumtree) on thousands of nodes; JSON lines and SVG plots.
    Sim(sim::SimArgs),
    /// Run benchmarks and print one result per line.
    Bench {
        #[command(subcommand)]
        suite: BenchSuite,
    },
}

#[derive(Subcommand)]
enum BenchSuite {
    /// The local runtime against plain tokio tasks and channels.
    Local {
        /// Print JSON lines.
        #[arg(long)]
        json: bool,
        /// Small sizes (a smoke test, not a measurement).
        #[arg(long)]
        quick: bool,
        /// Worker threads for both sides (default: the number of cores).
        #[arg(long)]
        workers: Option<usize>,
        /// Run only these benchmarks, comma-separated (tell, pingpong, ring, spawn, ask, big, idle_actor_bytes, cores).
        #[arg(long)]
        only: Option<String>,
    },
    /// Remote messaging between two OS processes on loopback against raw TCP.
    Remote {
        /// Print JSON lines.
        #[arg(long)]
        json: bool,
        /// Small sizes (a smoke test, not a measurement).
        #[arg(long)]
        quick: bool,
        /// Run only these benchmarks, comma-separated (tell64, ask64, bulk512k, hol, echo20ms).
        #[arg(long)]
        only: Option<String>,
    },
    /// Many real nodes in one process join an overlay, then broadcast (join time, delivery, cost per node).
    Scale(bench::scale::ScaleArgs),
    /// CRDTs: AW-Set and AW-Map throughput, merge time, encoding size, delta sync savings.
    Crdt {
        /// Print JSON lines.
        #[arg(long)]
        json: bool,
        /// Small sizes (a smoke test, not a measurement).
        #[arg(long)]
        quick: bool,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Logs go to stderr; RUST_LOG overrides the default (warnings, or nothing for the demo, whose
    // injected panics are expected and counted in its summary).
    let default_filter = if matches!(cli.command, Command::Demo(_)) { "off" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    match cli.command {
        Command::Demo(args) => demo::run(args)?,
        Command::Node(args) => troupe_cli::node::run(args)?,
        Command::Sim(args) => sim::run(args)?,
        Command::Bench { suite: BenchSuite::Local { json, quick, workers, only } } => {
            let sizes = if quick { bench::local::Sizes::quick() } else { bench::local::Sizes::full() };
            let workers = workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
            bench::local::run(sizes, workers, only.as_deref(), |line| line.print(json));
        }
        Command::Bench { suite: BenchSuite::Remote { json, quick, only } } => {
            let sizes = if quick { bench::remote::Sizes::quick() } else { bench::remote::Sizes::full() };
            bench::remote::run(sizes, only.as_deref(), |line| line.print(json))?;
        }
        Command::Bench { suite: BenchSuite::Scale(args) } => {
            bench::scale::run(args)?;
        }
        Command::Bench { suite: BenchSuite::Crdt { json, quick } } => {
            for line in troupe::crdt::bench::run(quick) {
                if json {
                    bench::emit(&serde_json::to_string(&line)?);
                } else {
                    let extra = serde_json::to_string(&line.extra)?;
                    bench::emit(&format!(
                        "{:<6} {:<24} {:>16.1} {:<10} {extra}",
                        line.suite, line.bench, line.value, line.unit
                    ));
                }
            }
        }
    }
    Ok(())
}
