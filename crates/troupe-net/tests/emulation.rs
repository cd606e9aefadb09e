//! Tests of the user-space link emulation (`troupe_net::emulation`): the proxy and the transport's delayed reader, all on 127.0.0.1.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use troupe_net::emulation::{DelayedReader, LinkConfig, LinkProxy, LinkStats};

const LOCAL: &str = "127.0.0.1:0";
/// How long a test waits for something that should happen promptly.
const PATIENCE: Duration = Duration::from_secs(5);

/// Held by the tests that measure time or move a lot of data, so they do not disturb each other's timing (the
/// test harness runs tests in parallel; our machines have 2 cores).
static TIMING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn local() -> SocketAddr {
    LOCAL.parse().expect("valid address")
}

/// An echo server; reports to `closed` (if given) how each of its connections ended: `Ok(())` for EOF.
async fn echo_server(closed: Option<mpsc::UnboundedSender<io::Result<()>>>) -> SocketAddr {
    let listener = TcpListener::bind(local()).await.expect("bind echo server");
    let addr = listener.local_addr().expect("echo server address");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let closed = closed.clone();
            tokio::spawn(async move {
                let _ = s.set_nodelay(true);
                let mut buf = vec![0u8; 64 << 10];
                let end = loop {
                    match s.read(&mut buf).await {
                        Ok(0) => break Ok(()),
                        Ok(n) => {
                            if let Err(e) = s.write_all(&buf[..n]).await {
                                break Err(e);
                            }
                        }
                        Err(e) => break Err(e),
                    }
                };
                if let Some(closed) = closed {
                    let _ = closed.send(end);
                }
            });
        }
    });
    addr
}

async fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).await.expect("connect through proxy");
    s.set_nodelay(true).expect("nodelay");
    s
}

/// One 1-byte ping-pong through an echo server; returns the round-trip time.
async fn ping(s: &mut TcpStream) -> Duration {
    let start = Instant::now();
    s.write_all(&[42]).await.expect("ping write");
    let mut b = [0u8; 1];
    s.read_exact(&mut b).await.expect("pong read");
    assert_eq!(b[0], 42);
    start.elapsed()
}

async fn median_rtt(s: &mut TcpStream, n: usize) -> Duration {
    let mut rtts = Vec::with_capacity(n);
    for _ in 0..n {
        rtts.push(ping(s).await);
    }
    rtts.sort();
    eprintln!("rtts: {rtts:?}");
    rtts[n / 2]
}

/// Asserts that the connection is dead: a read returns EOF or an error (after any echo of bytes sent before).
async fn assert_dead(s: &mut TcpStream) {
    let mut buf = [0u8; 1024];
    let dead = tokio::time::timeout(PATIENCE, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(dead.is_ok(), "connection still alive after {PATIENCE:?}");
}

/// Waits until the proxy's counters reach `expected` (they are updated just after the bytes are written, so a
/// reader may see the bytes a moment before the counters).
async fn assert_stats(proxy: &LinkProxy, expected: LinkStats) {
    let deadline = Instant::now() + PATIENCE;
    while proxy.stats() != expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(proxy.stats(), expected);
}

/// An echo through `proxy` works on a fresh connection.
async fn assert_echo_works(proxy: &LinkProxy) {
    let mut s = connect(proxy.local_addr()).await;
    let rtt = tokio::time::timeout(PATIENCE, ping(&mut s)).await.expect("echo through proxy timed out");
    assert!(rtt < PATIENCE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtt_20ms_measures_20ms() {
    let _timing = TIMING.lock().await;
    let server = echo_server(None).await;
    let proxy =
        LinkProxy::start(local(), server, LinkConfig::rtt(Duration::from_millis(20))).await.expect("start proxy");
    let mut s = connect(proxy.local_addr()).await;
    ping(&mut s).await; // warm up
    let median = median_rtt(&mut s, 10).await;
    eprintln!("RTT 20 ms link: median measured RTT {median:?}");
    assert!(median >= Duration::from_millis(20), "RTT {median:?} below the emulated 20 ms");
    assert!(median <= Duration::from_millis(30), "RTT {median:?} far above the emulated 20 ms");

    // A config change applies to new bytes.
    proxy.set_config(LinkConfig::rtt(Duration::from_millis(40)));
    let rtt = ping(&mut s).await;
    assert!(rtt >= Duration::from_millis(40), "first ping after set_config took {rtt:?}: new bytes use the old delay");
    let median = median_rtt(&mut s, 4).await;
    eprintln!("RTT 40 ms link: median measured RTT {median:?}");
    assert!(median >= Duration::from_millis(40) && median <= Duration::from_millis(50), "RTT {median:?}");

    // 1 + 10 + 5 pings of 1 byte each way.
    assert_stats(&proxy, LinkStats { connections: 1, bytes_up: 16, bytes_down: 16 }).await;
}

/// Checks that moving `total` bytes through a link with `config` took `elapsed` within the window's bound.
///
/// A byte stays in the window until its acknowledgement is back, a whole RTT after it was read, and at most
/// `inflight_cap` bytes are in the window: window k (of total / cap) is read no earlier than k RTTs after the
/// first, and the last one arrives a one-way delay after it is read. So the transfer takes at least
/// (total / cap - 1) RTTs + one one-way delay; more than twice that means the emulation itself is too slow.
fn assert_window_bound(what: &str, config: LinkConfig, total: usize, elapsed: Duration) {
    let windows = (total / config.inflight_cap) as u32;
    let bound = config.round_trip() * (windows - 1) + config.one_way_delay;
    let mbps = total as f64 / elapsed.as_secs_f64() / 1e6;
    let limit = config.inflight_cap as f64 / config.round_trip().as_secs_f64() / 1e6;
    eprintln!("{what}: {elapsed:?} ({mbps:.1} MB/s; limit {limit:.1} MB/s; bound {bound:?})");
    assert!(elapsed >= bound, "{what}: took {elapsed:?}, less than {bound:?}: the window is not enforced");
    assert!(elapsed <= bound * 2, "{what}: took {elapsed:?}, more than twice the {bound:?} bound");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throughput_is_capped_by_inflight_limit() {
    let _timing = TIMING.lock().await;
    const TOTAL: usize = 4 << 20;
    const CAP: usize = 256 << 10;
    let config = LinkConfig::rtt(Duration::from_millis(40)).with_inflight_cap(CAP);

    // A sink that counts bytes until EOF.
    let listener = TcpListener::bind(local()).await.expect("bind sink");
    let sink_addr = listener.local_addr().expect("sink address");
    let sink = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.expect("sink accept");
        let mut buf = vec![0u8; 256 << 10];
        let mut total = 0usize;
        loop {
            match s.read(&mut buf).await.expect("sink read") {
                0 => return (total, Instant::now()),
                n => total += n,
            }
        }
    });

    let proxy = LinkProxy::start(local(), sink_addr, config).await.expect("start proxy");
    let mut s = connect(proxy.local_addr()).await;
    let data = vec![7u8; TOTAL];
    let start = Instant::now();
    s.write_all(&data).await.expect("push");
    s.shutdown().await.expect("shutdown");
    let (received, end) = tokio::time::timeout(PATIENCE, sink).await.expect("transfer timed out").expect("sink");
    let elapsed = end - start;
    assert_eq!(received, TOTAL);

    // 620 ms here; without the cap it would take ~20 ms.
    assert_window_bound("4 MiB through the proxy, RTT 40 ms, cap 256 KiB", config, TOTAL, elapsed);
    assert_stats(&proxy, LinkStats { connections: 1, bytes_up: TOTAL as u64, bytes_down: 0 }).await;
}

fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    StdRng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

/// Sends `out` (in irregular pieces), half-closes, and concurrently reads everything until EOF.
async fn exchange(s: TcpStream, out: Vec<u8>) -> Vec<u8> {
    let (mut r, mut w) = s.into_split();
    let writer = tokio::spawn(async move {
        let mut rng = StdRng::seed_from_u64(out.len() as u64);
        let mut rest = &out[..];
        while !rest.is_empty() {
            let n = (rng.next_u32() as usize % (200 << 10) + 1).min(rest.len());
            w.write_all(&rest[..n]).await.expect("exchange write");
            rest = &rest[n..];
        }
        w.shutdown().await.expect("exchange shutdown");
    });
    let mut got = Vec::new();
    r.read_to_end(&mut got).await.expect("exchange read");
    writer.await.expect("writer");
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_integrity_both_ways() {
    let _timing = TIMING.lock().await;
    const LEN: usize = 8 << 20;
    let up = pseudo_random(1, LEN);
    let down = pseudo_random(2, LEN);

    let listener = TcpListener::bind(local()).await.expect("bind server");
    let server_addr = listener.local_addr().expect("server address");
    let down_clone = down.clone();
    let server = tokio::spawn(async move {
        let (s, _) = listener.accept().await.expect("server accept");
        exchange(s, down_clone).await
    });

    // A small cap and a few ms of delay so the queueing and backpressure paths are exercised.
    let config = LinkConfig::rtt(Duration::from_millis(2)).with_inflight_cap(1 << 20);
    let proxy = LinkProxy::start(local(), server_addr, config).await.expect("start proxy");
    let start = Instant::now();
    let client_got = tokio::time::timeout(PATIENCE, exchange(connect(proxy.local_addr()).await, up.clone()))
        .await
        .expect("exchange timed out");
    let server_got = server.await.expect("server");
    eprintln!("8 MiB each way, RTT 2 ms, cap 1 MiB: {:?}", start.elapsed());
    assert!(client_got == down, "downstream data corrupted (len {} vs {})", client_got.len(), down.len());
    assert!(server_got == up, "upstream data corrupted (len {} vs {})", server_got.len(), up.len());
    assert_stats(&proxy, LinkStats { connections: 1, bytes_up: LEN as u64, bytes_down: LEN as u64 }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlimited_throughput() {
    let _timing = TIMING.lock().await;
    // Not a benchmark, but catches a pathologically slow data path (and prints a number).
    const TOTAL: usize = 256 << 20;
    let listener = TcpListener::bind(local()).await.expect("bind sink");
    let sink_addr = listener.local_addr().expect("sink address");
    let sink = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.expect("sink accept");
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0usize;
        while let n @ 1.. = s.read(&mut buf).await.expect("sink read") {
            total += n;
        }
        total
    });
    let proxy = LinkProxy::start(local(), sink_addr, LinkConfig::rtt(Duration::from_millis(1))).await.expect("start");
    let mut s = connect(proxy.local_addr()).await;
    let chunk = vec![1u8; 1 << 20];
    let start = Instant::now();
    for _ in 0..TOTAL / chunk.len() {
        s.write_all(&chunk).await.expect("push");
    }
    s.shutdown().await.expect("shutdown");
    let received = tokio::time::timeout(Duration::from_secs(20), sink).await.expect("timed out").expect("sink");
    let elapsed = start.elapsed();
    assert_eq!(received, TOTAL);
    let mbps = TOTAL as f64 / elapsed.as_secs_f64() / 1e6;
    eprintln!("256 MiB over RTT 1 ms, cap 4 MiB: {elapsed:?} ({mbps:.0} MB/s)");
    assert!(mbps > 20.0, "proxy throughput {mbps:.0} MB/s is pathologically low");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bandwidth_limit() {
    let _timing = TIMING.lock().await;
    const TOTAL: usize = 1 << 20;
    const BW: u64 = 10 << 20; // 10 MiB/s: 1 MiB takes 100 ms
    let server = echo_server(None).await;
    let config = LinkConfig::rtt(Duration::from_millis(2)).with_bandwidth(BW);
    let proxy = LinkProxy::start(local(), server, config).await.expect("start proxy");
    let s = connect(proxy.local_addr()).await;
    let start = Instant::now();
    let got = tokio::time::timeout(PATIENCE, exchange(s, vec![3u8; TOTAL])).await.expect("timed out");
    let elapsed = start.elapsed();
    assert_eq!(got.len(), TOTAL);
    let bound = Duration::from_secs_f64(TOTAL as f64 / BW as f64);
    eprintln!("1 MiB echoed over 10 MiB/s: {elapsed:?} (bound {bound:?})");
    assert!(elapsed >= bound, "took {elapsed:?}: the bandwidth limit is not enforced");
    assert!(elapsed <= bound * 3, "took {elapsed:?}: far slower than the bandwidth limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sever_all_cuts_both_ends() {
    let (closed_tx, mut closed_rx) = mpsc::unbounded_channel();
    let server = echo_server(Some(closed_tx)).await;
    let proxy =
        LinkProxy::start(local(), server, LinkConfig::rtt(Duration::from_millis(2))).await.expect("start proxy");
    let mut s = connect(proxy.local_addr()).await;
    ping(&mut s).await;

    proxy.sever_all();
    assert_dead(&mut s).await;
    let server_end = tokio::time::timeout(PATIENCE, closed_rx.recv()).await.expect("server never saw the cut");
    eprintln!("server side of the severed connection ended with {server_end:?}");

    // The client can no longer use its connection, even for writing (after the reset comes back).
    let mut write_failed = false;
    for _ in 0..100 {
        if s.write_all(&[1; 1024]).await.is_err() {
            write_failed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(write_failed, "writes to a severed connection keep succeeding");

    assert_echo_works(&proxy).await;
    assert_eq!(proxy.stats().connections, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_refuses_and_heals() {
    let (closed_tx, mut closed_rx) = mpsc::unbounded_channel();
    let server = echo_server(Some(closed_tx)).await;
    let proxy =
        LinkProxy::start(local(), server, LinkConfig::rtt(Duration::from_millis(2))).await.expect("start proxy");
    let mut existing = connect(proxy.local_addr()).await;
    ping(&mut existing).await;

    proxy.set_partitioned(true);
    assert!(proxy.is_partitioned());
    assert_dead(&mut existing).await;
    tokio::time::timeout(PATIENCE, closed_rx.recv()).await.expect("server never saw the partition");

    // New connections fail: the TCP connect may complete (the kernel accepts), but the proxy closes them at once.
    for _ in 0..3 {
        match TcpStream::connect(proxy.local_addr()).await {
            Err(_) => {}
            Ok(mut s) => {
                let _ = s.write_all(&[1]).await;
                assert_dead(&mut s).await;
            }
        }
    }
    assert_eq!(proxy.stats().connections, 1, "refused connections were forwarded");

    proxy.set_partitioned(false);
    assert_echo_works(&proxy).await;
    assert_eq!(proxy.stats().connections, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_stops_listener_and_connections() {
    let server = echo_server(None).await;
    let proxy = LinkProxy::start(local(), server, LinkConfig::default()).await.expect("start proxy");
    let addr = proxy.local_addr();
    let mut s = connect(addr).await;
    ping(&mut s).await;
    drop(proxy);
    assert_dead(&mut s).await;
    // The listener is gone (give the aborted accept task a moment to be dropped).
    let mut refused = false;
    for _ in 0..100 {
        if TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(refused, "the proxy still listens after being dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_upstream_closes_client() {
    // Find a free port and close it again.
    let dead = {
        let l = TcpListener::bind(local()).await.expect("bind");
        l.local_addr().expect("address")
    };
    let proxy = LinkProxy::start(local(), dead, LinkConfig::default()).await.expect("start proxy");
    let mut s = connect(proxy.local_addr()).await;
    assert_dead(&mut s).await;
}

// ---------------------------------------------------------------------------------------------
// DelayedReader: the transport's in-process emulation of a link's receiving direction, over real TCP.

/// A connected pair of loopback sockets.
async fn socket_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind(local()).await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let (dialled, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    (dialled.expect("connect"), accepted.expect("accept").0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_reader_delays_every_byte_by_the_one_way_delay() {
    let _timing = TIMING.lock().await;
    let delay = Duration::from_millis(30);
    let (mut tx, rx) = socket_pair().await;
    let mut rx = DelayedReader::new(rx, LinkConfig::rtt(delay * 2));
    let mut byte = [0u8; 1];
    for round in 0..3u8 {
        let sent = Instant::now();
        tx.write_all(&[round]).await.expect("write");
        rx.read_exact(&mut byte).await.expect("read");
        let took = sent.elapsed();
        assert_eq!(byte[0], round);
        assert!(took >= delay, "byte {round} arrived after {took:?}, before the {delay:?} one-way delay");
        assert!(took < delay + Duration::from_millis(40), "byte {round} took {took:?}");
    }
    // EOF comes through, after the bytes before it.
    tx.write_all(b"end").await.expect("write");
    drop(tx);
    let mut rest = Vec::new();
    rx.read_to_end(&mut rest).await.expect("read to end");
    assert_eq!(rest, b"end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_reader_window_caps_throughput_and_keeps_bytes_intact() {
    let _timing = TIMING.lock().await;
    const TOTAL: usize = 2 << 20;
    const CAP: usize = 128 << 10;
    let config = LinkConfig::rtt(Duration::from_millis(20)).with_inflight_cap(CAP);
    let (mut tx, rx) = socket_pair().await;
    let data = pseudo_random(7, TOTAL);
    let sent = data.clone();
    let start = Instant::now();
    let writer = tokio::spawn(async move {
        tx.write_all(&sent).await.expect("write");
        tx.shutdown().await.expect("shutdown");
    });
    let mut got = Vec::new();
    DelayedReader::new(rx, config).read_to_end(&mut got).await.expect("read");
    let elapsed = start.elapsed();
    writer.await.expect("writer");
    assert!(got == data, "bytes changed on the way");
    assert_window_bound("2 MiB through a DelayedReader, RTT 20 ms, cap 128 KiB", config, TOTAL, elapsed);
}
