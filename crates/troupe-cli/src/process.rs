//! A `troupe node` child process, for the demo, the benchmarks and the multi-process tests.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};

use anyhow::{bail, Context as _};

/// A running `troupe node --services` process. Killed (SIGKILL) and reaped on drop.
pub struct NodeProcess {
    /// The OS process.
    pub child: Child,
    /// Its listen address, from its `READY` line.
    pub addr: String,
    /// Its raw-TCP baseline address, when started with `--raw-listen`.
    pub raw: Option<String>,
    /// The rest of its stdout (`UP`/`DOWN` lines), unread.
    pub stdout: BufReader<ChildStdout>,
}

impl NodeProcess {
    /// Starts `exe node --services <extra args>` with the given `TROUPE_*` environment and waits
    /// for its `READY` line. Its stdin is a pipe: the node exits when the pipe closes.
    pub fn spawn(exe: &std::path::Path, extra_args: &[&str], env: &[(&str, String)]) -> anyhow::Result<NodeProcess> {
        let mut command = Command::new(exe);
        command.args(["node", "--services"]).args(extra_args);
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting a troupe node process")?;
        let mut stdout = BufReader::new(child.stdout.take().context("node stdout")?);
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() != Some(&"READY") || words.len() < 3 {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the node process did not start: {line:?}");
        }
        let raw = words.get(3).map(|w| w.trim_start_matches("raw=").to_string());
        Ok(NodeProcess { child, addr: words[2].to_string(), raw, stdout })
    }

    /// Kills it with SIGKILL (no goodbye) and reaps it.
    pub fn kill(&mut self) -> std::io::Result<()> {
        self.child.kill()?;
        self.child.wait().map(|_| ())
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
