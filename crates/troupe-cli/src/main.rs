//! The `troupe` command: demo, benchmarks.

mod bench;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "troupe", version, about = "troupe: a distributed actor runtime")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Bench { suite: BenchSuite::Local { json, quick, workers } } => {
            let sizes = if quick { bench::local::Sizes::quick() } else { bench::local::Sizes::full() };
            let workers = workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
            bench::local::run(sizes, workers, |line| line.print(json));
        }
    }
    Ok(())
}
