//! The dashboard end to end: its HTTP endpoints over raw TCP, and the page driven by headless
//! Chromium (Debian's `chromium`, which `.ci/run` installs) against a synthetic cluster picture.
//!
//! [`assert_page_shows_nodes`] is the reusable check: point it at any dashboard URL with the names
//! of the cluster's nodes.

use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use troupe_cli::dashboard::{
    serve, serve_with, ClusterPicture, DashboardConfig, DashboardError, EdgeKind, EdgeView, FnSource, NodeView,
    PictureFuture, PictureSource,
};

// ------------------------------------------------------------------------------------------------
// A synthetic cluster

/// A HyParView-like picture of `n` nodes named `node-00`, `node-01`, ...: a ring plus seeded
/// chords as symmetric active links, three passive entries per node, and counters that grow at
/// known rates: node `i` receives `10 * (i + 1)` messages per second and sends `5 * (i + 1)`; each
/// active link carries `i + 1` messages per second from node `i`.
fn synthetic_picture(n: usize, seconds: u64, with_tree: bool) -> ClusterPicture {
    let id = |i: usize| format!("{:016x}", (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let nodes = (0..n)
        .map(|i| {
            let k = i as u64 + 1;
            NodeView {
                id: id(i),
                name: format!("node-{i:02}"),
                addr: format!("127.0.0.1:{}", 7000 + i),
                role: None,
                up: true,
                msgs_in: 10 * k * seconds,
                msgs_out: 5 * k * seconds,
                bytes_in: 640 * k * seconds,
                bytes_out: 320 * k * seconds,
            }
        })
        .collect();
    let mut pairs = BTreeSet::new();
    let mut lcg = 0x853c_49e6_748f_ea9b_u64;
    let mut next = |bound: usize| {
        lcg = lcg.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((lcg >> 33) as usize) % bound
    };
    if n > 1 {
        for i in 0..n {
            pairs.insert((i.min((i + 1) % n), i.max((i + 1) % n)));
            if n > 8 {
                let j = next(n);
                if j != i {
                    pairs.insert((i.min(j), i.max(j)));
                }
            }
        }
    }
    let mut edges = Vec::new();
    for &(a, b) in &pairs {
        for (from, to) in [(a, b), (b, a)] {
            let msgs = (from as u64 + 1) * seconds;
            edges.push(EdgeView { from: id(from), to: id(to), kind: EdgeKind::Active, msgs });
        }
    }
    if with_tree {
        // Plumtree's eager links: the ring's first half.
        for &(a, b) in pairs.iter().filter(|(a, b)| b - a == 1 && *a < n / 2) {
            edges.push(EdgeView { from: id(a), to: id(b), kind: EdgeKind::Tree, msgs: 0 });
        }
    }
    for i in 0..n {
        for _ in 0..3 {
            let j = next(n);
            if j != i && !pairs.contains(&(i.min(j), i.max(j))) {
                edges.push(EdgeView { from: id(i), to: id(j), kind: EdgeKind::Passive, msgs: 0 });
            }
        }
    }
    ClusterPicture {
        observer: "node-00".into(),
        overlay: "hyparview".into(),
        taken_at_ms: 1_700_000_000_000 + seconds * 1000,
        nodes,
        edges,
    }
}

/// A source whose clock advances one second per picture, so the page's rates are exact.
struct Ticking {
    n: usize,
    calls: AtomicU64,
}

impl PictureSource for Ticking {
    fn picture(&self) -> PictureFuture<'_> {
        let seconds = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let picture = synthetic_picture(self.n, seconds, false);
        Box::pin(async move { picture })
    }
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("node-{i:02}")).collect()
}

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().expect("valid address")
}

/// No caching, so every poll of the page gets the next second of the synthetic clock.
fn uncached() -> DashboardConfig {
    DashboardConfig { picture_ttl: Duration::ZERO, ..DashboardConfig::default() }
}

// ------------------------------------------------------------------------------------------------
// Headless Chromium and the dumped DOM

/// The Chromium binary: `TROUPE_CHROMIUM`, else Debian's `/usr/bin/chromium`.
fn chromium() -> PathBuf {
    let path = std::env::var_os("TROUPE_CHROMIUM").map(PathBuf::from).unwrap_or_else(|| "/usr/bin/chromium".into());
    assert!(
        path.exists(),
        "{} not found: install Debian's chromium (`apt-get install -y --no-install-recommends chromium`; \
         .ci/run does) or set TROUPE_CHROMIUM",
        path.display()
    );
    path
}

/// Runs headless Chromium on `url` and returns the DOM after `budget_ms` of virtual time.
/// Fails if the page's script threw (Chromium logs uncaught errors as console messages).
fn dump_dom(url: &str, budget_ms: u64) -> String {
    let profile = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,800",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--virtual-time-budget={budget_ms}"))
        .arg("--dump-dom")
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let log = std::thread::spawn(move || {
        let mut log = String::new();
        let _ = stderr.read_to_string(&mut log);
        log
    });
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut dom = String::new();
        let _ = stdout.read_to_string(&mut dom);
        dom
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        match child.try_wait().expect("wait for chromium") {
            Some(_) => break,
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("chromium did not finish within 90 s on {url}");
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    let log = log.join().expect("log thread");
    let errors: Vec<&str> = log.lines().filter(|l| l.contains(":CONSOLE") && l.contains("Uncaught")).collect();
    assert!(errors.is_empty(), "the page's script failed on {url}:\n{}", errors.join("\n"));
    reader.join().expect("reader thread")
}

/// One start tag of the dumped DOM, with the text it encloses.
#[derive(Debug)]
struct Tag {
    name: String,
    attrs: HashMap<String, String>,
    text: String,
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

/// The start tags of an HTML serialization, in order (enough for Chromium's own `--dump-dom`).
fn tags(html: &str) -> Vec<Tag> {
    let mut out = Vec::new();
    let bytes = html.as_bytes();
    let mut i = 0;
    while let Some(off) = html[i..].find('<') {
        let start = i + off + 1;
        i = start;
        if start >= bytes.len() || !bytes[start].is_ascii_alphabetic() {
            continue;
        }
        let mut j = start;
        while j < bytes.len() && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'-') {
            j += 1;
        }
        let name = html[start..j].to_ascii_lowercase();
        let mut attrs = HashMap::new();
        loop {
            while j < bytes.len() && bytes[j].is_ascii_whitespace() {
                j += 1;
            }
            if j >= bytes.len() || bytes[j] == b'>' || bytes[j] == b'/' {
                break;
            }
            let a = j;
            while j < bytes.len() && !matches!(bytes[j], b'=' | b'>' | b' ' | b'/') && !bytes[j].is_ascii_whitespace() {
                j += 1;
            }
            let key = html[a..j].to_ascii_lowercase();
            let mut value = String::new();
            if j < bytes.len() && bytes[j] == b'=' && j + 1 < bytes.len() && bytes[j + 1] == b'"' {
                let v = j + 2;
                let end = html[v..].find('"').map(|e| v + e).unwrap_or(bytes.len());
                value = unescape(&html[v..end]);
                j = (end + 1).min(bytes.len());
            }
            attrs.insert(key, value);
        }
        while j < bytes.len() && bytes[j] != b'>' {
            j += 1;
        }
        let text_start = (j + 1).min(bytes.len());
        // The text inside, up to the first closing tag of the same name, tags stripped.
        let close = format!("</{name}>");
        let text_end = html[text_start..].find(&close).map(|e| text_start + e).unwrap_or(text_start);
        let mut text = String::new();
        let mut in_tag = false;
        for c in html[text_start..text_end].chars() {
            match c {
                '<' => in_tag = true,
                '>' => in_tag = false,
                c if !in_tag => text.push(c),
                _ => {}
            }
        }
        out.push(Tag { name, attrs, text: unescape(&text) });
        i = text_start;
    }
    out
}

/// What the page showed, read from its DOM.
#[derive(Debug, Default)]
pub struct PageDom {
    /// Node circle name -> (cx, cy).
    pub circles: HashMap<String, (f64, f64)>,
    /// Drawn links as (from name, to name, kind).
    pub edges: Vec<(String, String, String)>,
    /// Member-table rows: name -> column (`in`, `out`, `status`, ...) -> text.
    pub rows: HashMap<String, HashMap<String, String>>,
    /// Header figures by element id (`s-nodes`, `s-overlay`, ...).
    pub stats: HashMap<String, String>,
    /// Names on selected circles and rows (class `sel`), in document order.
    pub selected: Vec<String>,
    /// The name shown in the details panel, if a node is shown there.
    pub details: Option<String>,
}

fn read_page(dom: &str) -> PageDom {
    let mut page = PageDom::default();
    let mut row: Option<String> = None;
    for tag in tags(dom) {
        let class = tag.attrs.get("class").map(String::as_str).unwrap_or("");
        if class.split(' ').any(|c| c == "sel") {
            if let Some(name) = tag.attrs.get("data-node") {
                page.selected.push(name.clone());
            }
        }
        match tag.name.as_str() {
            "circle" => {
                if let Some(name) = tag.attrs.get("data-node") {
                    let coord = |k: &str| tag.attrs.get(k).and_then(|v| v.parse::<f64>().ok()).unwrap_or(f64::NAN);
                    page.circles.insert(name.clone(), (coord("cx"), coord("cy")));
                }
            }
            "line" => {
                if let (Some(from), Some(to), Some(kind)) =
                    (tag.attrs.get("data-from"), tag.attrs.get("data-to"), tag.attrs.get("data-kind"))
                {
                    page.edges.push((from.clone(), to.clone(), kind.clone()));
                }
            }
            "tr" => {
                row = tag.attrs.get("data-node").cloned();
                if let Some(name) = &row {
                    page.rows.insert(name.clone(), HashMap::new());
                }
            }
            "td" => {
                if let (Some(name), Some(col)) = (&row, tag.attrs.get("data-col")) {
                    if let Some(cells) = page.rows.get_mut(name) {
                        cells.insert(col.clone(), tag.text.trim().to_string());
                    }
                }
            }
            "span" if class == "name" => page.details = Some(tag.text.trim().to_string()),
            "span" => {
                if let Some(id) = tag.attrs.get("id").filter(|id| id.starts_with("s-")) {
                    page.stats.insert(id.clone(), tag.text.trim().to_string());
                }
            }
            _ => {}
        }
    }
    page
}

/// Loads the dashboard at `url` in headless Chromium and asserts that it shows every named node:
/// an SVG circle and a member-table row with `data-node="<name>"`, and (for two or more nodes)
/// at least one drawn link touching each of them, between named nodes. Returns what it read.
pub fn assert_page_shows_nodes(url: &str, names: &[String]) -> PageDom {
    let dom = dump_dom(url, 5_000);
    let page = read_page(&dom);
    assert!(
        !page.circles.is_empty(),
        "no node circles on {url}; the page's body: {}",
        dom.split_once("<body").map_or(dom.as_str(), |(_, body)| body).chars().take(2_000).collect::<String>()
    );
    for name in names {
        assert!(page.circles.contains_key(name), "no circle with data-node={name:?} on {url}");
        assert!(page.rows.contains_key(name), "no member row with data-node={name:?} on {url}");
        if names.len() > 1 {
            assert!(
                page.edges.iter().any(|(a, b, _)| a == name || b == name),
                "no link drawn to or from {name:?} on {url}"
            );
        }
    }
    for (a, b, _) in &page.edges {
        assert!(names.contains(a) && names.contains(b), "a link {a} - {b} to a node not in {names:?}");
    }
    page
}

// ------------------------------------------------------------------------------------------------
// The page in Chromium

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_draws_every_node_and_link_and_a_member_row_each() {
    let n = 14;
    let source = Arc::new(Ticking { n, calls: AtomicU64::new(0) });
    let dashboard = serve_with(any_port(), source, uncached()).await.expect("serve");
    let url = dashboard.url();
    let expected = synthetic_picture(n, 1, false);
    let all = names(n);
    let page = tokio::task::spawn_blocking(move || assert_page_shows_nodes(&url, &all)).await.expect("joins");

    // Exactly the picture's links, one line per pair of nodes, kinds preserved.
    let name_of: HashMap<&str, &str> = expected.nodes.iter().map(|v| (v.id.as_str(), v.name.as_str())).collect();
    let mut want = BTreeSet::new();
    for e in &expected.edges {
        let (a, b) = (name_of[e.from.as_str()], name_of[e.to.as_str()]);
        let key = if a < b { (a, b) } else { (b, a) };
        let kind = if e.kind == EdgeKind::Active { "active" } else { "passive" };
        // An active link wins over a passive entry for the same pair.
        if kind == "active" || !want.contains(&(key.0.to_string(), key.1.to_string(), "active".to_string())) {
            want.retain(|(x, y, _): &(String, String, String)| !(x == key.0 && y == key.1));
            want.insert((key.0.to_string(), key.1.to_string(), kind.to_string()));
        }
    }
    let got: BTreeSet<(String, String, String)> = page
        .edges
        .iter()
        .map(|(a, b, k)| if a < b { (a.clone(), b.clone(), k.clone()) } else { (b.clone(), a.clone(), k.clone()) })
        .collect();
    assert_eq!(got.len(), page.edges.len(), "one line per pair");
    assert_eq!(got, want);

    // The layout spread the nodes out: finite positions, no two nodes on top of each other.
    let points: Vec<(f64, f64)> = page.circles.values().copied().collect();
    for (i, p) in points.iter().enumerate() {
        assert!(p.0.is_finite() && p.1.is_finite(), "position {p:?}");
        for q in &points[i + 1..] {
            let d = ((p.0 - q.0).powi(2) + (p.1 - q.1).powi(2)).sqrt();
            assert!(d > 8.0, "two nodes {d:.1} apart: {p:?} {q:?}");
        }
    }
    assert_eq!(page.stats.get("s-overlay").map(String::as_str), Some("hyparview"));
    assert_eq!(page.stats.get("s-observer").map(String::as_str), Some("node-00"));
    assert_eq!(page.stats.get("s-nodes").map(String::as_str), Some("14"));
    dashboard.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_member_table_shows_rates_from_successive_pictures() {
    let n = 6;
    let source = Arc::new(Ticking { n, calls: AtomicU64::new(0) });
    let dashboard = serve_with(any_port(), source.clone(), uncached()).await.expect("serve");
    // A link to one node selects it: circle and row marked, its details shown.
    let url = format!("{}#node=node-03", dashboard.url());
    let all = names(n);
    let page = tokio::task::spawn_blocking(move || assert_page_shows_nodes(&url, &all)).await.expect("joins");
    assert_eq!(page.selected, ["node-03", "node-03"], "circle and row selected");
    assert_eq!(page.details.as_deref(), Some("node-03"));
    assert!(source.calls.load(Ordering::SeqCst) >= 2, "the page polled more than once");
    for i in 0..n {
        let row = &page.rows[&format!("node-{i:02}")];
        let read = |col: &str| row.get(col).and_then(|v| v.parse::<f64>().ok()).unwrap_or(f64::NAN);
        let k = (i + 1) as f64;
        assert_eq!(read("in"), 10.0 * k, "node-{i:02} in: {row:?}");
        assert_eq!(read("out"), 5.0 * k, "node-{i:02} out: {row:?}");
        assert_eq!(row.get("status").map(String::as_str), Some("up"));
    }
    // The header adds them up: 10 * (1 + ... + 6) = 210 msg/s.
    assert_eq!(page.stats.get("s-msgs").map(String::as_str), Some("210/s"));
    dashboard.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_node_cluster_is_drawn_whole() {
    let n = 1000;
    let picture = synthetic_picture(n, 1, true);
    let dashboard = serve(any_port(), Arc::new(FnSource(move || picture.clone()))).await.expect("serve");
    let url = dashboard.url();
    let all: Vec<String> = (0..n).map(|i| format!("node-{i:02}")).collect();
    let started = Instant::now();
    let page = tokio::task::spawn_blocking(move || assert_page_shows_nodes(&url, &all)).await.expect("joins");
    eprintln!("1000 nodes: chromium loaded, laid out and dumped the page in {:?}", started.elapsed());
    assert_eq!(page.circles.len(), n);
    assert_eq!(page.rows.len(), n);
    assert!(page.edges.iter().any(|(_, _, k)| k == "tree"), "tree links drawn");
    let spread = page.circles.values().fold((f64::MAX, f64::MIN), |(lo, hi), p| (lo.min(p.0), hi.max(p.0)));
    assert!(spread.1 - spread.0 > 500.0, "1000 nodes spread over more than 500 units: {spread:?}");
    dashboard.shutdown().await;
}

// ------------------------------------------------------------------------------------------------
// The HTTP endpoints over raw TCP

/// Sends `request` as is and reads until the server closes: (status code, headers, body).
async fn raw(addr: SocketAddr, request: &str) -> (u16, String, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .expect("server answers and closes")
        .expect("read");
    split_response(&response)
}

fn split_response(response: &[u8]) -> (u16, String, Vec<u8>) {
    let end = response.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete head");
    let head = String::from_utf8_lossy(&response[..end]).to_string();
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status code");
    (status, head.to_ascii_lowercase(), response[end + 4..].to_vec())
}

async fn get(addr: SocketAddr, path: &str) -> (u16, String, Vec<u8>) {
    raw(addr, &format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n")).await
}

#[tokio::test]
async fn the_json_endpoint_serves_the_sources_picture() {
    let picture = synthetic_picture(5, 3, true);
    let expected = picture.clone();
    let dashboard = serve(any_port(), Arc::new(FnSource(move || picture.clone()))).await.expect("serve");
    let (status, head, body) = get(dashboard.local_addr(), "/api/picture").await;
    assert_eq!(status, 200);
    assert!(head.contains("content-type: application/json"), "{head}");
    assert!(head.contains("cache-control: no-store"), "{head}");
    let got: ClusterPicture = serde_json::from_slice(&body).expect("valid picture JSON");
    assert_eq!(got, expected);

    let (status, head, body) = get(dashboard.local_addr(), "/").await;
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/html"), "{head}");
    assert!(head.contains("content-security-policy: default-src 'none'"), "{head}");
    let html = String::from_utf8(body).expect("utf-8 page");
    assert!(html.contains("<svg id=\"graph\"") && html.contains("api/picture"), "the page polls the picture");
    dashboard.shutdown().await;
}

#[tokio::test]
async fn bad_requests_get_4xx_and_the_server_keeps_serving() {
    let dashboard = serve(any_port(), Arc::new(FnSource(|| synthetic_picture(3, 1, false)))).await.expect("serve");
    let addr = dashboard.local_addr();
    assert_eq!(get(addr, "/nope").await.0, 404);
    assert_eq!(get(addr, "/api/picture/extra").await.0, 404);
    assert_eq!(get(addr, "/../../etc/passwd").await.0, 404);
    let post = format!("POST /api/picture HTTP/1.1\r\nhost: {addr}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    assert_eq!(raw(addr, &post).await.0, 405);
    assert_eq!(raw(addr, "GARBAGE\r\n\r\n").await.0, 400);
    let huge = format!("GET /{} HTTP/1.1\r\nhost: x\r\n\r\n", "a".repeat(200_000));
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let _ = stream.write_all(huge.as_bytes()).await; // the server may close before taking it all
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await;
    if !response.is_empty() {
        assert!((400..500).contains(&split_response(&response).0), "an oversized head is refused");
    }
    // Still serving.
    assert_eq!(get(addr, "/api/picture").await.0, 200);
    dashboard.shutdown().await;
}

#[tokio::test]
async fn connections_over_the_limit_are_refused_with_503() {
    let config = DashboardConfig { max_connections: 2, ..DashboardConfig::default() };
    let dashboard =
        serve_with(any_port(), Arc::new(FnSource(|| synthetic_picture(3, 1, false))), config).await.expect("serve");
    let addr = dashboard.local_addr();
    let first = TcpStream::connect(addr).await.expect("connect");
    let second = TcpStream::connect(addr).await.expect("connect");
    // Give the server time to accept both (they hold the two permits while idle).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut third = TcpStream::connect(addr).await.expect("connect");
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), third.read_to_end(&mut response))
        .await
        .expect("refused promptly")
        .expect("read");
    assert_eq!(split_response(&response).0, 503);
    drop((first, second));
    // The permits come back once the server sees the two connections close.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, _, _) = get(addr, "/api/picture").await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "connections freed within 5 s (last status {status})");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    dashboard.shutdown().await;
}

#[tokio::test]
async fn a_source_that_hangs_gets_503_not_a_hung_page() {
    struct Hung;
    impl PictureSource for Hung {
        fn picture(&self) -> PictureFuture<'_> {
            Box::pin(async {
                std::future::pending::<()>().await;
                ClusterPicture::default()
            })
        }
    }
    let config = DashboardConfig { picture_timeout: Duration::from_millis(300), ..DashboardConfig::default() };
    let dashboard = serve_with(any_port(), Arc::new(Hung), config).await.expect("serve");
    let started = Instant::now();
    let (status, head, _) = get(dashboard.local_addr(), "/api/picture").await;
    assert_eq!(status, 503);
    assert!(head.contains("retry-after"), "{head}");
    assert!(started.elapsed() < Duration::from_secs(3), "answered after the timeout, not later");
    dashboard.shutdown().await;
}

#[tokio::test]
async fn binding_a_taken_address_is_a_typed_error() {
    let taken = tokio::net::TcpListener::bind(any_port()).await.expect("bind");
    let addr = taken.local_addr().expect("addr");
    match serve(addr, Arc::new(FnSource(ClusterPicture::default))).await {
        Err(DashboardError::Bind { addr: a, .. }) => assert_eq!(a, addr),
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("bound an address that is taken"),
    }
    let bad = DashboardConfig { max_connections: 0, ..DashboardConfig::default() };
    assert!(matches!(
        serve_with(any_port(), Arc::new(FnSource(ClusterPicture::default)), bad).await,
        Err(DashboardError::Config(_))
    ));
}

#[tokio::test]
async fn shutdown_closes_open_connections_and_the_listener() {
    let dashboard = serve(any_port(), Arc::new(FnSource(ClusterPicture::default))).await.expect("serve");
    let addr = dashboard.local_addr();
    let mut idle = TcpStream::connect(addr).await.expect("connect");
    tokio::time::sleep(Duration::from_millis(100)).await;
    tokio::time::timeout(Duration::from_secs(5), dashboard.shutdown()).await.expect("shuts down promptly");
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buf)).await.expect("closed promptly");
    assert!(matches!(read, Ok(0) | Err(_)), "the idle connection was closed: {read:?}");
    assert!(TcpStream::connect(addr).await.is_err(), "nothing listens any more");

    // Dropping works too.
    let dashboard = serve(any_port(), Arc::new(FnSource(ClusterPicture::default))).await.expect("serve");
    let addr = dashboard.local_addr();
    drop(dashboard);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(TcpStream::connect(addr).await.is_err(), "nothing listens after drop");
}

/// Serves a synthetic cluster for a person to look at (not run by CI):
/// `DASHBOARD_NODES=40 DASHBOARD_SECS=300 cargo test -p troupe-cli --test dashboard -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "serves until DASHBOARD_SECS pass, for screenshots"]
async fn serve_a_synthetic_cluster_for_a_person() {
    let env = |k: &str, d: u64| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let n = env("DASHBOARD_NODES", 40) as usize;
    let port = env("DASHBOARD_PORT", 8099) as u16;
    let calls = AtomicU64::new(0);
    let source = FnSource(move || {
        // One second of the synthetic clock per picture (the page asks once a second).
        let seconds = calls.fetch_add(1, Ordering::SeqCst) + 1;
        let mut picture = synthetic_picture(n, seconds, true);
        if let Some(last) = picture.nodes.last_mut() {
            last.up = false;
        }
        for (i, node) in picture.nodes.iter_mut().enumerate() {
            node.role = Some(if i % 7 == 0 { "seed" } else { "worker" }.into());
        }
        picture
    });
    let dashboard =
        serve_with(SocketAddr::from(([127, 0, 0, 1], port)), Arc::new(source), uncached()).await.expect("serve");
    println!("dashboard at {}", dashboard.url());
    tokio::time::sleep(Duration::from_secs(env("DASHBOARD_SECS", 60))).await;
}

// ------------------------------------------------------------------------------------------------
// A real cluster

/// Four real nodes (HyParView over loopback TCP) join through one seed; the dashboard served by
/// one of them, which crawls the others' views over the network, shows all four in Chromium.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_clusters_dashboard_shows_its_nodes() {
    use troupe::net::{Node, NodeConfig, OverlayKind};
    let config = |name: &str, seed: Option<String>| NodeConfig {
        name: name.into(),
        secret: Some("a dashboard test secret".into()),
        workers: Some(1),
        overlay: OverlayKind::Hyparview,
        seeds: seed.into_iter().collect(),
        ..NodeConfig::default()
    };
    let first = Node::start(config("dash-0", None)).await.expect("seed node");
    let mut nodes = vec![first.clone()];
    for i in 1..4 {
        nodes
            .push(Node::start(config(&format!("dash-{i}"), Some(first.local_addr().to_string()))).await.expect("node"));
    }
    let all: Vec<String> = (0..4).map(|i| format!("dash-{i}")).collect();
    // Wait until the observer's crawl reaches every node.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen = first.cluster_snapshot(64).await;
        if seen.len() == 4 && seen.iter().all(|s| !s.active.is_empty()) {
            break;
        }
        assert!(Instant::now() < deadline, "the crawl saw only {} nodes", seen.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let source = Arc::new(troupe_cli::dashboard::NodeSource::new(first.clone(), 64));
    let dashboard = serve_with(any_port(), source, uncached()).await.expect("serve");
    let url = dashboard.url();
    let page = tokio::task::spawn_blocking(move || assert_page_shows_nodes(&url, &all)).await.expect("joins");
    assert_eq!(page.stats.get("s-overlay").map(String::as_str), Some("hyparview"));
    assert_eq!(page.stats.get("s-observer").map(String::as_str), Some("dash-0"));
    assert_eq!(page.stats.get("s-nodes").map(String::as_str), Some("4"));
    dashboard.shutdown().await;
    for node in nodes {
        node.shutdown().await;
    }
}
