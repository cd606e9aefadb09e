//! `troupe node`: one node as an OS process.

use std::path::PathBuf;
use std::time::Duration;

use troupe::{Node, NodeConfig, NodeEvent};

/// Arguments of `troupe node`.
#[derive(clap::Args, Debug)]
pub struct NodeArgs {
    /// TOML config file (every key can be overridden by a TROUPE_… environment variable).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Start the diagnostic services ("sink" and "echo" actors) used by benchmarks and tests.
    #[arg(long)]
    pub services: bool,
    /// Also serve the raw-TCP baseline on this address (benchmarks).
    #[arg(long)]
    pub raw_listen: Option<String>,
    /// Stop after this many seconds (default: run until killed or stdin closes).
    #[arg(long)]
    pub seconds: Option<u64>,
    /// Serve the live cluster dashboard on this address (for example 127.0.0.1:8080).
    #[arg(long)]
    pub dashboard: Option<std::net::SocketAddr>,
}

/// Runs a node until it is killed, its stdin closes, or `--seconds` pass. Prints one line
/// `READY <name> <listen-addr> [raw=<addr>]` on stdout once it listens, then one line per
/// event: `UP`/`DOWN <name> [reason]` for connections, `JOINED`/`LEFT <name> [reason]` for
/// overlay membership.
pub fn run(args: NodeArgs) -> anyhow::Result<()> {
    let config = NodeConfig::load(args.config.as_deref())?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    rt.block_on(async move {
        let node = Node::start(config).await?;
        if args.services {
            crate::services::start(&node)?;
        }
        let mut raw = String::new();
        if let Some(addr) = &args.raw_listen {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            raw = format!(" raw={}", listener.local_addr()?);
            tokio::spawn(crate::services::raw_server(listener));
        }
        let mut dash = String::new();
        let _dashboard = match args.dashboard {
            Some(addr) => {
                let source = std::sync::Arc::new(crate::dashboard::NodeSource::new(node.clone(), 2048));
                let d = crate::dashboard::serve(addr, source).await?;
                dash = format!(" dashboard={}", d.url());
                Some(d)
            }
            None => None,
        };
        say(&format!("READY {} {}{raw}{dash}", node.name(), node.local_addr()));
        let mut events = node.events();
        // Seeds are dialed while the node starts: report the peers already up.
        for peer in node.peers().into_iter().filter(|p| p.up) {
            say(&format!("UP {}", peer.name));
        }
        let watch_events = async {
            while let Ok(event) = events.recv().await {
                match event {
                    NodeEvent::Up { name, .. } => say(&format!("UP {name}")),
                    NodeEvent::Down { name, reason, .. } => say(&format!("DOWN {name} {reason}")),
                    NodeEvent::Joined { name, .. } => say(&format!("JOINED {name}")),
                    NodeEvent::Left { name, reason, .. } => say(&format!("LEFT {name} {reason}")),
                }
            }
        };
        let stdin_closed = tokio::task::spawn_blocking(|| {
            let mut sink = String::new();
            while std::io::stdin().read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
                sink.clear();
            }
        });
        let deadline = tokio::time::sleep(Duration::from_secs(args.seconds.unwrap_or(u64::MAX / 4)));
        tokio::select! {
            _ = watch_events => {}
            _ = stdin_closed => {}
            _ = deadline => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        node.shutdown().await;
        anyhow::Ok(())
    })
}

/// One line on stdout; a reader that went away is not an error for the node.
fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
