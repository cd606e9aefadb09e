//! Helpers shared by the multi-process tests: `troupe node` child processes (killed when dropped)
//! and in-process nodes that talk to their diagnostic services.
#![allow(dead_code)] // each test file uses its own subset

use std::future::Future;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use troupe::{ActorRef, AskError, Node, NodeConfig, Payload};
use troupe_cli::services::ServiceMsg;

/// The cluster secret of every test node (unless a test says otherwise).
pub const SECRET: &str = "a multi-process test secret";

/// How long a test waits for something that should happen promptly: a hang is a failure.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A `troupe node --services` child process. Dropping it kills the process.
pub struct ChildNode {
    /// Its node name.
    pub name: String,
    /// The address it listens on (from its `READY` line).
    pub addr: String,
    child: Child,
    /// Kept open: the node exits when its stdin closes.
    _stdin: Option<ChildStdin>,
    lines: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
}

/// Starts `troupe node --services` named `name` with the default test environment (secret,
/// 127.0.0.1:0, one worker) overridden by `envs`, and waits for its `READY` line.
pub async fn spawn_node(name: &str, envs: &[(&str, &str)]) -> ChildNode {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_troupe"));
    cmd.args(["node", "--services"]);
    // Nothing from the test's own environment may configure the child.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("TROUPE_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("TROUPE_NAME", name)
        .env("TROUPE_SECRET", SECRET)
        .env("TROUPE_LISTEN", "127.0.0.1:0")
        .env("TROUPE_WORKERS", "1")
        .env("RUST_LOG", "warn");
    for (key, value) in envs {
        cmd.env(key, value);
    }
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn `troupe node`");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let stdout = child.stdout.take().expect("child stdout");
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            match line {
                Ok(line) => sink.lock().unwrap().push(line),
                Err(_) => return,
            }
        }
    });
    let stderr = Arc::new(Mutex::new(String::new()));
    let mut err = child.stderr.take().expect("child stderr");
    let sink = stderr.clone();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n @ 1..) = err.read(&mut chunk) {
            let mut s = sink.lock().unwrap();
            // Keep the end of a chatty log; the start is rarely what explains a failure.
            if s.len() > 64 << 10 {
                let cut = s.len() - (32 << 10);
                let cut = (cut..s.len()).find(|&i| s.is_char_boundary(i)).unwrap_or(s.len());
                s.drain(..cut);
            }
            s.push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    });
    let stdin = child.stdin.take();
    let mut node = ChildNode { name: name.to_string(), addr: String::new(), child, _stdin: stdin, lines, stderr };
    let deadline = Instant::now() + PATIENCE;
    loop {
        let ready = node.lines().iter().find_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("READY") && words.next() == Some(name)).then(|| words.next().map(str::to_string))
        });
        if let Some(addr) = ready {
            node.addr = addr.expect("READY line with an address");
            return node;
        }
        if let Ok(Some(status)) = node.child.try_wait() {
            panic!("node {name} exited before READY ({status}); stderr:\n{}", node.stderr());
        }
        assert!(Instant::now() < deadline, "node {name} not READY in {PATIENCE:?}; stderr:\n{}", node.stderr());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

impl ChildNode {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The lines printed on stdout so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// What the process wrote on stderr (its log), at most the last few dozen KiB.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until the process prints the line `line`.
    pub async fn wait_line(&self, line: &str) {
        let deadline = Instant::now() + PATIENCE;
        while !self.lines().iter().any(|l| l == line) {
            assert!(
                Instant::now() < deadline,
                "{} did not print {line:?} in {PATIENCE:?}; stdout: {:?}; stderr:\n{}",
                self.name,
                self.lines(),
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Sends a signal (`"STOP"`, `"CONT"`, …) with kill(1) (no libc in this crate).
    pub fn signal(&self, signal: &str) {
        let status =
            Command::new("kill").args([format!("-{signal}"), self.pid().to_string()]).status().expect("run kill(1)");
        assert!(status.success(), "kill -{signal} {} failed: {status}", self.pid());
    }

    /// Closes its stdin (the node shuts down in an orderly way: it leaves the overlay) and
    /// waits for it to exit.
    pub fn stop(&mut self) {
        self._stdin = None;
        let deadline = Instant::now() + PATIENCE;
        while self.child.try_wait().ok().flatten().is_none() {
            assert!(Instant::now() < deadline, "{} did not exit after its stdin closed", self.name);
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL, and reaps the process.
    pub fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL the child");
        self.child.wait().expect("reap the child");
    }
}

impl Drop for ChildNode {
    fn drop(&mut self) {
        // SIGKILL also ends a SIGSTOPped process.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free port on 127.0.0.1 (bound then released; a race with other programs is possible but rare).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

/// The config of an in-process test node: test secret, 127.0.0.1:0, one worker.
pub fn config(name: &str) -> NodeConfig {
    NodeConfig {
        name: name.into(),
        secret: Some(SECRET.into()),
        listen: vec!["127.0.0.1:0".into()],
        workers: Some(1),
        ..NodeConfig::default()
    }
}

/// Starts an in-process node.
pub async fn start(config: NodeConfig) -> Node {
    let name = config.name.clone();
    Node::start(config).await.unwrap_or_else(|e| panic!("start node {name}: {e}"))
}

/// Connects `node` to `addr`, which must succeed within [`PATIENCE`].
pub async fn connect(node: &Node, addr: &str) -> troupe::net::PeerInfo {
    tokio::time::timeout(PATIENCE, node.connect(addr))
        .await
        .unwrap_or_else(|_| panic!("{} connecting to {addr} hung", node.name()))
        .unwrap_or_else(|e| panic!("{} cannot connect to {addr}: {e}", node.name()))
}

/// The "sink" service of the node named `on`, looked up from `node` (retried for [`PATIENCE`]).
pub async fn sink(node: &Node, on: &str) -> ActorRef<ServiceMsg> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match node.lookup::<ServiceMsg>(on, "sink").await {
            Ok(found) => return found,
            Err(e) if Instant::now() >= deadline => panic!("lookup of {on}/sink from {}: {e}", node.name()),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// `Count` of a service: (messages, bytes).
pub async fn count(service: &ActorRef<ServiceMsg>) -> Result<(u64, u64), AskError> {
    service.ask_timeout(ServiceMsg::Count, Duration::from_secs(2)).await
}

/// Polls `check` every few milliseconds until it returns `Some`, for at most `limit`; panics
/// with `what` and the last observation otherwise.
pub async fn eventually<T, O, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    O: std::fmt::Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, O>>,
{
    let deadline = Instant::now() + limit;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => panic!("{what}: not reached in {limit:?}; last: {last:?}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// Polls a service's `Count` until it is exactly `expected`.
pub async fn wait_count(service: &ActorRef<ServiceMsg>, expected: (u64, u64)) {
    eventually(&format!("count of {:?} == {expected:?}", service.id()), PATIENCE, || async {
        match count(service).await {
            Ok(c) if c == expected => Ok(()),
            other => Err(other),
        }
    })
    .await
}

/// Echo ask with a recognisable payload; panics unless the same bytes come back.
pub async fn echo_roundtrip(service: &ActorRef<ServiceMsg>, len: usize) {
    let payload: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
    let sent = Payload::from(payload.clone());
    let back = service
        .ask_timeout(|reply| ServiceMsg::Echo(sent, reply), Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| panic!("echo ask to {:?}: {e}", service.id()));
    assert_eq!(back.len(), payload.len());
    assert!(back[..] == payload[..], "echo returned different bytes");
}
