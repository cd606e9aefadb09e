//! A `troupe node` process refuses nodes with the wrong secret, cluster or TLS identity, and
//! connections that send garbage, oversized frames or nothing; after each attempt it still serves
//! a good node.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{config, connect, count, echo_roundtrip, eventually, sink, spawn_node, start, ChildNode, PATIENCE};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use troupe::net::TlsConfig;
use troupe::{Node, NodeConfig};
use troupe_cli::services::ServiceMsg;
use troupe_wire::{encode_frame, ConnPurpose, FrameDecoder, FrameKind, HandshakeConfig, Initiator, NodeInfo};

/// A node with `config` must fail to connect to `b`, with an error and within [`PATIENCE`].
async fn refused(config: NodeConfig, b: &ChildNode) {
    let name = config.name.clone();
    let node = start(config).await;
    let started = Instant::now();
    let result = tokio::time::timeout(PATIENCE, node.connect(&b.addr))
        .await
        .unwrap_or_else(|_| panic!("{name} connecting to {} hung instead of failing", b.name));
    match result {
        Ok(peer) => panic!("{name} was let in by {}: {peer:?}", b.name),
        Err(e) => eprintln!("{name} refused after {:?}: {e}", started.elapsed()),
    }
    assert!(node.peers().iter().all(|p| !p.up), "{name} has a peer up: {:?}", node.peers());
    assert!(!b.lines().contains(&format!("UP {name}")), "{} let {name} in", b.name);
    node.shutdown().await;
}

/// A fresh good node (built from `config`) connects to `b`, tells and asks its sink.
async fn serves(config: NodeConfig, b: &ChildNode) {
    let node = start(config).await;
    connect(&node, &b.addr).await;
    let remote = sink(&node, &b.name).await;
    let (before, _) = count(&remote).await.expect("count");
    remote.tell(ServiceMsg::Data(vec![9; 64].into())).await.expect("tell");
    assert_eq!(count(&remote).await.expect("count").0, before + 1);
    echo_roundtrip(&remote, 1000).await;
    node.shutdown().await;
}

async fn serves_plain(name: &str, b: &ChildNode) {
    serves(config(name), b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_rejected() {
    let b = spawn_node("b", &[]).await;
    refused(NodeConfig { secret: Some("another secret, long enough".into()), ..config("intruder") }, &b).await;
    refused(NodeConfig { secret: None, ..config("no-secret") }, &b).await;
    serves_plain("good", &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_cluster_rejected() {
    let b = spawn_node("b", &[("TROUPE_CLUSTER", "blue")]).await;
    refused(NodeConfig { cluster: "green".into(), ..config("stranger") }, &b).await;
    // The default cluster name is not "blue" either.
    refused(config("default-cluster"), &b).await;
    serves(NodeConfig { cluster: "blue".into(), ..config("good") }, &b).await;
}

/// Waits until the other side closes `stream` (a read returns 0 or fails); returns how long it took.
async fn closed_by_peer(mut stream: TcpStream, what: &str) -> Duration {
    let started = Instant::now();
    let mut buf = vec![0u8; 4096];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {} // e.g. a Reject frame before the close
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "{what}: the node did not close the connection within 5 s");
    started.elapsed()
}

/// Deterministic pseudo-random bytes (xorshift64*), so a failure can be replayed.
fn garbage(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed >> 12;
            seed ^= seed << 25;
            seed ^= seed >> 27;
            (seed.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_oversized_rejected() {
    let b = spawn_node("b", &[("TROUPE_HANDSHAKE_TIMEOUT_MS", "500")]).await;

    let mut noise = TcpStream::connect(&b.addr).await.expect("connect");
    noise.write_all(&garbage(1024, 0x5eed_1234_abcd_0001)).await.expect("send garbage");

    // A Hello header announcing a 4 GiB payload (kind 1 = Hello), then a little of it.
    let mut huge = TcpStream::connect(&b.addr).await.expect("connect");
    let mut frame = Vec::new();
    frame.extend_from_slice(&u32::MAX.to_le_bytes());
    frame.extend_from_slice(&[1, 0, 0, 0]);
    frame.extend_from_slice(&[0xab; 64]);
    huge.write_all(&frame).await.expect("send oversized header");

    // A Hello header whose payload never comes, and a connection that says nothing at all.
    let mut truncated = TcpStream::connect(&b.addr).await.expect("connect");
    truncated.write_all(&[200, 0, 0, 0, 1, 0, 0, 0, 7, 7]).await.expect("send a partial frame");
    let silent = TcpStream::connect(&b.addr).await.expect("connect");

    let (noise, huge, truncated, silent) = tokio::join!(
        closed_by_peer(noise, "1 KiB of garbage"),
        closed_by_peer(huge, "a 4 GiB frame header"),
        closed_by_peer(truncated, "a truncated Hello"),
        closed_by_peer(silent, "a silent connection"),
    );
    eprintln!("closed after: garbage {noise:?}, oversized {huge:?}, truncated {truncated:?}, silent {silent:?}");
    // Malformed bytes are refused at once, not after the handshake timeout; the silent ones wait
    // for it.
    assert!(noise < Duration::from_millis(400) && huge < Duration::from_millis(400));
    assert!(silent >= Duration::from_millis(400), "a silent connection closed before the handshake timeout");

    // Many at once do not wear the node down either.
    let mut floods = Vec::new();
    for seed in 0..32u64 {
        let addr = b.addr.clone();
        floods.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(&addr).await.expect("connect");
            let _ = s.write_all(&garbage(512, seed + 1)).await;
            closed_by_peer(s, "flood").await
        }));
    }
    for flood in floods {
        flood.await.expect("flood task");
    }
    serves_plain("good", &b).await;
}

/// Reads one whole frame (kind, payload) from `stream`, or `None` when it is closed first.
async fn read_frame(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(FrameKind, Vec<u8>)> {
    let decoder = FrameDecoder::new(troupe_wire::MAX_HANDSHAKE_PAYLOAD);
    loop {
        if let Some((frame, used)) = decoder.decode(buf).expect("a well-formed frame from the node") {
            let out = (frame.header.kind, frame.payload.to_vec());
            buf.drain(..used);
            return Some(out);
        }
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk)).await.expect("node answers") {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_proof_rejected() {
    // A real node without the secret gives up at the Challenge (B's proof does not verify), so B's
    // check of the initiator's proof is only reached by a client that answers anyway.
    let b = spawn_node("b", &[]).await;
    for attempt in 0..3u64 {
        let mut tcp = TcpStream::connect(&b.addr).await.expect("connect");
        let config = HandshakeConfig {
            cluster: "troupe".into(),
            secret: b"not the secret, but long enough".to_vec(),
            me: NodeInfo { name: format!("forger{attempt}"), incarnation: 0xf0f0 + attempt, listen: vec![] },
            max_frame: 1 << 20,
        };
        let (_machine, hello) = Initiator::start(config, ConnPurpose { channel: 0, lane: 0 }, [attempt as u8; 32]);
        tcp.write_all(&hello).await.expect("send Hello");
        let mut buf = Vec::new();
        let (kind, _) = read_frame(&mut tcp, &mut buf).await.expect("a Challenge");
        assert_eq!(kind, FrameKind::Challenge);
        // Attempt 0: a random proof; 1: all zeros; 2: a proof of the right length plus junk.
        let forged: Vec<u8> = match attempt {
            0 => garbage(32, 77),
            1 => vec![0; 32],
            _ => garbage(48, 78),
        };
        let mut proof = Vec::new();
        encode_frame(&mut proof, FrameKind::Proof, 0, 0, &forged, 1 << 16).expect("encode Proof");
        tcp.write_all(&proof).await.expect("send the forged Proof");
        match read_frame(&mut tcp, &mut buf).await {
            None => {}
            Some((FrameKind::Reject, reason)) => {
                eprintln!("forged proof {attempt}: rejected with {:?}", troupe_wire::decode_reject(&reason));
                closed_by_peer(tcp, "after a Reject").await;
            }
            Some((kind, _)) => panic!("a forged proof was answered with {kind:?}"),
        }
    }
    assert!(!b.lines().iter().any(|l| l.starts_with("UP forger")), "{:?}", b.lines());
    serves_plain("good", &b).await;
}

/// A fresh CA and certificates for `names` (SANs: 127.0.0.1, localhost and the name) as PEM files
/// in `dir`: `ca.pem`, `<name>.pem`, `<name>.key`. Returns (cert, key) per name and the CA file.
fn gen_cluster(dir: &Path, names: &[&str]) -> (Vec<(PathBuf, PathBuf)>, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_name = format!("troupe test CA {}", dir.file_name().unwrap().to_string_lossy());
    ca_params.distinguished_name.push(DnType::CommonName, ca_name);
    ca_params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, ca_cert.pem()).unwrap();
    let nodes = names
        .iter()
        .map(|name| {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(vec!["localhost".to_owned(), (*name).to_owned()]).unwrap();
            params.subject_alt_names.push(rcgen::SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
            params.distinguished_name.push(DnType::CommonName, *name);
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
            let cert = params.signed_by(&key, &ca_cert, &ca_key).unwrap();
            let cert_path = dir.join(format!("{name}.pem"));
            let key_path = dir.join(format!("{name}.key"));
            std::fs::write(&cert_path, cert.pem()).unwrap();
            std::fs::write(&key_path, key.serialize_pem()).unwrap();
            (cert_path, key_path)
        })
        .collect();
    (nodes, ca_path)
}

fn tls_config(name: &str, (cert, key): &(PathBuf, PathBuf), ca: &Path) -> NodeConfig {
    let tls = TlsConfig {
        cert: cert.clone(),
        key: key.clone(),
        ca: ca.to_path_buf(),
        require_client_cert: true,
        server_name: None,
    };
    NodeConfig { tls: Some(tls), ..config(name) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_between_two_processes() {
    let dir = tempfile::tempdir().unwrap();
    let (certs, ca) = gen_cluster(&dir.path().join("cluster"), &["b", "a", "bare"]);
    let (other, other_ca) = gen_cluster(&dir.path().join("elsewhere"), &["mallory", "eve"]);
    let path = |p: &Path| p.to_str().expect("a UTF-8 temp path").to_owned();
    let (b_cert, b_key, b_ca) = (path(&certs[0].0), path(&certs[0].1), path(&ca));
    let b =
        spawn_node("b", &[("TROUPE_TLS__CERT", &b_cert), ("TROUPE_TLS__KEY", &b_key), ("TROUPE_TLS__CA", &b_ca)]).await;

    // Same CA: tell and ask work, and B dials back over TLS too (its lanes to A).
    let a: Node = start(tls_config("a", &certs[1], &ca)).await;
    connect(&a, &b.addr).await;
    b.wait_line("UP a").await;
    let remote = sink(&a, "b").await;
    for _ in 0..100 {
        remote.tell(ServiceMsg::Data(vec![1; 100].into())).await.expect("tell over TLS");
    }
    assert_eq!(count(&remote).await.expect("count over TLS"), (100, 10_000));
    echo_roundtrip(&remote, 200_000).await;
    a.shutdown().await;

    // No TLS at all.
    refused(config("bare"), &b).await;
    // A certificate from another CA, trusting only that CA.
    refused(tls_config("mallory", &other[0], &other_ca), &b).await;
    // A certificate from another CA but trusting B's CA: B must refuse the client certificate.
    refused(tls_config("eve", &other[1], &ca), &b).await;
    // A good certificate but the wrong cluster secret: TLS is not a substitute for the secret.
    refused(NodeConfig { secret: Some("not the cluster secret!".into()), ..tls_config("bare", &certs[2], &ca) }, &b)
        .await;

    serves(tls_config("a", &certs[1], &ca), &b).await;
}

/// Over TLS with backpressure: a 32 MiB message to a slow reader (an emulated link with a 64 KiB
/// window on `b`) arrives whole although nothing follows it (and idle pings are two minutes
/// apart). The TLS layer keeps the records that did not fit in a full socket until it is
/// flushed; the writer flushes after every batch. (The socket rarely fills exactly at the end of
/// the message, so this passed without the flush too; `conn`'s unit test
/// `a_buffering_stream_is_flushed_after_each_batch` fails without it every time.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_sends_the_end_of_a_burst_with_nothing_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let (certs, ca) = gen_cluster(&dir.path().join("cluster"), &["a", "b"]);
    let quiet = |config: NodeConfig| NodeConfig { idle_ping_ms: 120_000, ..config };
    let mut b_config = quiet(tls_config("b", &certs[1], &ca));
    b_config.link =
        Some(troupe::net::LinkEmulation { one_way_delay_ms: 1.0, inflight_bytes: Some(64 << 10), loss: 0.0 });
    let b = start(b_config).await;
    troupe_cli::services::start(&b).expect("services");
    let a = start(quiet(tls_config("a", &certs[0], &ca))).await;
    connect(&a, &b.local_addr().to_string()).await;
    let remote = sink(&a, "b").await;
    // Counted on b itself: an ask from a would write, and so flush, a's connection.
    let local = sink(&b, "b").await;
    let (before, _) = count(&local).await.expect("count");
    remote.tell(ServiceMsg::Data(vec![5u8; 32 << 20].into())).await.expect("tell");
    eventually("the whole message on b", Duration::from_secs(20), || async {
        match count(&local).await {
            Ok((n, _)) if n == before + 1 => Ok(()),
            other => Err(other),
        }
    })
    .await;
    a.shutdown().await;
    b.shutdown().await;
}
