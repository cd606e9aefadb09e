//! Node configuration: TOML file, `TROUPE_*` environment overrides, validation, secrets, channel table.

use std::collections::BTreeMap;
use std::path::PathBuf;

use proptest::prelude::*;
use troupe_net::config::{
    ChannelConfig, ConfigError, HyParViewSettings, LinkEmulation, NodeConfig, OverlayKind, Reach, Role, TlsConfig,
};

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn load(text: &str, pairs: &[(&str, &str)]) -> Result<NodeConfig, ConfigError> {
    NodeConfig::load_from(Some(text), "node.toml", env(pairs))
}

fn load_env(pairs: &[(&str, &str)]) -> Result<NodeConfig, ConfigError> {
    NodeConfig::load_from(None, "defaults", env(pairs))
}

/// Asserts an `Env` error for `var` mapped to `key`, and returns its message.
#[track_caller]
fn expect_env_error(result: Result<NodeConfig, ConfigError>, var: &str, key: &str) -> String {
    match result {
        Err(error @ ConfigError::Env { .. }) => {
            let ConfigError::Env { var: v, key: k, message } = &error else { unreachable!() };
            assert_eq!((v.as_str(), k.as_str()), (var, key), "{error}");
            assert!(error.to_string().contains(var), "{error}");
            message.clone()
        }
        other => panic!("expected an Env error for {var}, got {other:?}"),
    }
}

/// Asserts an `Invalid` error naming `key`, and returns its message.
#[track_caller]
fn expect_invalid(result: Result<NodeConfig, ConfigError>, key: &str) -> String {
    match result {
        Err(ConfigError::Invalid { key: k, message }) => {
            assert_eq!(k, key, "message: {message}");
            message
        }
        other => panic!("expected an Invalid error for `{key}`, got {other:?}"),
    }
}

/// Asserts a `Parse` error from `source` whose message contains every needle.
#[track_caller]
fn expect_parse(result: Result<NodeConfig, ConfigError>, source: &str, needles: &[&str]) {
    match result {
        Err(ConfigError::Parse { source_name, message }) => {
            assert_eq!(source_name, source);
            for needle in needles {
                assert!(message.contains(needle), "{needle:?} not in {message}");
            }
        }
        other => panic!("expected a Parse error, got {other:?}"),
    }
}

const FULL: &str = r#"
name = "n1"
cluster = "prod"
secret = "0123456789abcdef0123"
listen = ["0.0.0.0:7000", "[::1]:7001"]
advertise = ["10.0.0.5:7000", "n1.example.com:7000"]
seeds = ["10.0.0.4:7000"]
max_frame_bytes = 1048576
send_queue_bytes = 65536
connect_timeout_ms = 1000
handshake_timeout_ms = 2000
idle_ping_ms = 3000
ping_timeout_ms = 4000
ping_attempts = 3
ack_retransmit_ms = 500
reconnect_min_ms = 50
reconnect_max_ms = 5000
workers = 4
net_threads = 2
overlay = "client-server"
role = "client"
reach = "relay"
relay_ttl = 3
seed_dns = ["seeds.example.com:7000"]
release_idle_ms = 1000

[hyparview]
active_max = 5
shuffle_ms = 2000

[channels.default]
parallelism = 4

[channels.bulk]
parallelism = 16

[channels.gossip]
monotonic = true

[tls]
cert = "node.pem"
key = "node.key"
ca = "ca.pem"
server_name = "troupe"

[link]
one_way_delay_ms = 10
inflight_bytes = 1000000
loss = 0.01
"#;

fn full_expected() -> NodeConfig {
    NodeConfig {
        name: "n1".into(),
        cluster: "prod".into(),
        secret: Some("0123456789abcdef0123".into()),
        secret_file: None,
        listen: vec!["0.0.0.0:7000".into(), "[::1]:7001".into()],
        advertise: vec!["10.0.0.5:7000".into(), "n1.example.com:7000".into()],
        seeds: vec!["10.0.0.4:7000".into()],
        max_frame_bytes: 1 << 20,
        send_queue_bytes: 64 << 10,
        connect_timeout_ms: 1000,
        handshake_timeout_ms: 2000,
        idle_ping_ms: 3000,
        ping_timeout_ms: 4000,
        ping_attempts: 3,
        ack_retransmit_ms: 500,
        reconnect_min_ms: 50,
        reconnect_max_ms: 5000,
        workers: Some(4),
        net_threads: 2,
        overlay: OverlayKind::ClientServer,
        role: Role::Client,
        reach: Reach::Relay,
        relay_ttl: 3,
        seed_dns: vec!["seeds.example.com:7000".into()],
        release_idle_ms: 1000,
        hyparview: HyParViewSettings { active_max: 5, shuffle_ms: 2000, ..HyParViewSettings::default() },
        channels: BTreeMap::from([
            ("default".to_owned(), ChannelConfig { parallelism: 4, monotonic: false }),
            ("bulk".to_owned(), ChannelConfig { parallelism: 16, monotonic: false }),
            ("gossip".to_owned(), ChannelConfig { parallelism: 1, monotonic: true }),
        ]),
        tls: Some(TlsConfig {
            cert: "node.pem".into(),
            key: "node.key".into(),
            ca: "ca.pem".into(),
            require_client_cert: true,
            server_name: Some("troupe".into()),
        }),
        link: Some(LinkEmulation { one_way_delay_ms: 10.0, inflight_bytes: Some(1_000_000), loss: 0.01 }),
    }
}

// ----------------------------------------------------------------------------------------------------------
// Defaults and files

#[test]
fn defaults_are_valid_and_documented() {
    let config = NodeConfig::default();
    config.validate().unwrap();
    assert_eq!(config.name, "node");
    assert_eq!(config.cluster, "troupe");
    assert_eq!(config.listen, vec!["127.0.0.1:0".to_owned()]);
    assert!(config.advertise.is_empty() && config.seeds.is_empty());
    assert_eq!(config.max_frame_bytes, 64 << 20);
    assert_eq!(config.send_queue_bytes, 4 << 20);
    assert_eq!((config.connect_timeout_ms, config.handshake_timeout_ms), (5000, 5000));
    assert_eq!((config.idle_ping_ms, config.ping_timeout_ms, config.ping_attempts), (20_000, 10_000, 5));
    assert_eq!(config.ack_retransmit_ms, 1000);
    assert_eq!((config.reconnect_min_ms, config.reconnect_max_ms), (100, 10_000));
    assert_eq!((config.workers, config.net_threads), (None, 1));
    assert!(config.channels.is_empty() && config.tls.is_none() && config.link.is_none());
    assert_eq!(config.secret_bytes().unwrap(), None);
    assert_eq!(ChannelConfig::default(), ChannelConfig { parallelism: 1, monotonic: false });
    assert_eq!(LinkEmulation::default(), LinkEmulation { one_way_delay_ms: 0.0, inflight_bytes: None, loss: 0.0 });
}

#[test]
fn empty_sources_give_defaults() {
    assert_eq!(NodeConfig::from_toml_str("").unwrap(), NodeConfig::default());
    assert_eq!(load_env(&[]).unwrap(), NodeConfig::default());
}

#[test]
fn full_file_parses() {
    assert_eq!(NodeConfig::from_toml_str(FULL).unwrap(), full_expected());
}

#[test]
fn partial_tables_take_defaults() {
    let config =
        NodeConfig::from_toml_str("[tls]\ncert = \"c\"\nkey = \"k\"\nca = \"a\"\n[link]\nloss = 0.5\n").unwrap();
    assert!(config.tls.as_ref().unwrap().require_client_cert);
    assert_eq!(config.tls.unwrap().server_name, None);
    assert_eq!(config.link, Some(LinkEmulation { loss: 0.5, ..LinkEmulation::default() }));
}

#[test]
fn serialized_config_round_trips() {
    let text = toml::to_string(&full_expected()).unwrap();
    assert_eq!(NodeConfig::from_toml_str(&text).unwrap(), full_expected());
    let text = toml::to_string(&NodeConfig::default()).unwrap();
    assert_eq!(NodeConfig::from_toml_str(&text).unwrap(), NodeConfig::default());
}

#[test]
fn unknown_key_in_file_is_named_with_its_line() {
    expect_parse(
        NodeConfig::from_toml_str("name = \"a\"\nlisten_addr = \"x\"\n"),
        "config",
        &["listen_addr", "line 2"],
    );
    expect_parse(load("[channels.bulk]\nparalelism = 2\n", &[]), "node.toml", &["paralelism", "line 2"]);
    expect_parse(load("[tls]\ncert = \"c\"\nkey = \"k\"\nca = \"a\"\nkye = 1\n", &[]), "node.toml", &["kye"]);
    expect_parse(load("[link]\ndelay = 1\n", &[]), "node.toml", &["delay"]);
}

#[test]
fn file_errors_keep_their_line_when_env_overrides_are_present() {
    expect_parse(load("bogus = 1\n", &[("TROUPE_NAME", "x")]), "node.toml", &["bogus", "line 1"]);
}

#[test]
fn wrong_type_and_bad_syntax_in_file() {
    expect_parse(load("max_frame_bytes = \"big\"\n", &[]), "node.toml", &["max_frame_bytes", "line 1"]);
    expect_parse(load("[channels.bulk]\nparallelism = 70000\n", &[]), "node.toml", &["parallelism"]);
    expect_parse(load("name = \n", &[]), "node.toml", &["line 1"]);
    expect_parse(load("[tls]\ncert = \"c\"\n", &[]), "node.toml", &["key"]);
    let error = load("name = [1]\n", &[]).unwrap_err().to_string();
    assert!(error.starts_with("node.toml: "), "{error}");
}

#[test]
fn load_reads_a_file_and_reports_missing_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.toml");
    std::fs::write(&path, FULL).unwrap();
    // The process environment of the test runner carries no TROUPE_ config keys.
    assert_eq!(NodeConfig::load(Some(&path)).unwrap(), full_expected());

    std::fs::write(&path, "nope = 1\n").unwrap();
    match NodeConfig::load(Some(&path)) {
        Err(ConfigError::Parse { source_name, .. }) => assert_eq!(source_name, path.display().to_string()),
        other => panic!("{other:?}"),
    }

    let missing = dir.path().join("missing.toml");
    match NodeConfig::load(Some(&missing)) {
        Err(error @ ConfigError::Read { .. }) => assert!(error.to_string().contains("missing.toml"), "{error}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(NodeConfig::load(None).unwrap(), NodeConfig::default());
}

// ----------------------------------------------------------------------------------------------------------
// Environment overrides

#[test]
fn env_scalar_overrides_beat_the_file() {
    let config = load(
        FULL,
        &[
            ("TROUPE_NAME", "n2"),
            ("TROUPE_SEND_QUEUE_BYTES", "8192"),
            ("TROUPE_PING_ATTEMPTS", "9"),
            ("TROUPE_SECRET", "another-secret-of-enough-length"),
            ("TROUPE_WORKERS", "8"),
        ],
    )
    .unwrap();
    assert_eq!(config.name, "n2");
    assert_eq!(config.send_queue_bytes, 8192);
    assert_eq!(config.ping_attempts, 9);
    assert_eq!(config.secret.as_deref(), Some("another-secret-of-enough-length"));
    assert_eq!(config.workers, Some(8));
    assert_eq!(config.cluster, "prod", "keys not overridden keep the file's value");
}

#[test]
fn env_lists_are_comma_separated() {
    let config = load(
        FULL,
        &[("TROUPE_LISTEN", "127.0.0.1:7000, 127.0.0.1:7001"), ("TROUPE_SEEDS", ""), ("TROUPE_ADVERTISE", "a:1")],
    )
    .unwrap();
    assert_eq!(config.listen, vec!["127.0.0.1:7000".to_owned(), "127.0.0.1:7001".to_owned()]);
    assert!(config.seeds.is_empty(), "an empty value empties a list");
    assert_eq!(config.advertise, vec!["a:1".to_owned()]);
}

#[test]
fn env_channels_override_and_create() {
    let config = load(
        FULL,
        &[
            ("TROUPE_CHANNELS__BULK__PARALLELISM", "32"),
            ("TROUPE_CHANNELS__Events__MONOTONIC", "true"),
            ("TROUPE_CHANNELS__DEFAULT__PARALLELISM", "8"),
        ],
    )
    .unwrap();
    assert_eq!(config.channels["bulk"], ChannelConfig { parallelism: 32, monotonic: false });
    assert_eq!(config.channels["events"], ChannelConfig { parallelism: 1, monotonic: true }, "lower-cased, created");
    assert_eq!(config.channels["default"].parallelism, 8);
    assert_eq!(config.channels["gossip"], ChannelConfig { parallelism: 1, monotonic: true });

    let config = load_env(&[("TROUPE_CHANNELS__BULK__PARALLELISM", "16")]).unwrap();
    assert_eq!(
        config.channels,
        BTreeMap::from([("bulk".to_owned(), ChannelConfig { parallelism: 16, monotonic: false })])
    );
}

#[test]
fn env_tls_overrides_and_creates() {
    let config =
        load(FULL, &[("TROUPE_TLS__CERT", "/etc/other.pem"), ("TROUPE_TLS__REQUIRE_CLIENT_CERT", "false")]).unwrap();
    let tls = config.tls.unwrap();
    assert_eq!(tls.cert, PathBuf::from("/etc/other.pem"));
    assert_eq!(tls.key, PathBuf::from("node.key"));
    assert!(!tls.require_client_cert);

    let config =
        load_env(&[("TROUPE_TLS__CERT", "c.pem"), ("TROUPE_TLS__KEY", "k.pem"), ("TROUPE_TLS__CA", "ca.pem")]).unwrap();
    assert_eq!(
        config.tls,
        Some(TlsConfig {
            cert: "c.pem".into(),
            key: "k.pem".into(),
            ca: "ca.pem".into(),
            require_client_cert: true,
            server_name: None
        })
    );

    // Part of the TLS table in the file, the rest (say, the key path) from the environment.
    let config = load("[tls]\ncert = \"c\"\nca = \"a\"\n", &[("TROUPE_TLS__KEY", "k")]).unwrap();
    assert_eq!(config.tls.unwrap().key, PathBuf::from("k"));

    let message = expect_env_error(load_env(&[("TROUPE_TLS__CERT", "c.pem")]), "TROUPE_TLS__CERT", "tls.key");
    assert!(message.contains("TROUPE_TLS__KEY"), "{message}");
}

#[test]
fn env_link_emulation() {
    let config = load_env(&[("TROUPE_LINK__ONE_WAY_DELAY_MS", "10"), ("TROUPE_LINK__LOSS", "0.25")]).unwrap();
    assert_eq!(config.link, Some(LinkEmulation { one_way_delay_ms: 10.0, inflight_bytes: None, loss: 0.25 }));
    let config = load(FULL, &[("TROUPE_LINK__INFLIGHT_BYTES", "4096")]).unwrap();
    assert_eq!(config.link.unwrap().inflight_bytes, Some(4096));
}

#[test]
fn empty_env_value_unsets_optional_keys() {
    let config = load(
        FULL,
        &[
            ("TROUPE_WORKERS", ""),
            ("TROUPE_SECRET", ""),
            ("TROUPE_TLS__SERVER_NAME", ""),
            ("TROUPE_LINK__INFLIGHT_BYTES", ""),
        ],
    )
    .unwrap();
    assert_eq!(config.workers, None);
    assert_eq!(config.secret, None);
    assert_eq!(config.tls.unwrap().server_name, None);
    assert_eq!(config.link.unwrap().inflight_bytes, None);
    // Unsetting below an absent table does not create the table.
    assert_eq!(load_env(&[("TROUPE_TLS__SERVER_NAME", "")]).unwrap().tls, None);
}

#[test]
fn unknown_env_vars_are_errors_naming_the_var() {
    expect_env_error(load_env(&[("TROUPE_NAMEE", "x")]), "TROUPE_NAMEE", "namee");
    expect_env_error(load_env(&[("TROUPE_TLS__CERTIFICATE", "x")]), "TROUPE_TLS__CERTIFICATE", "tls.certificate");
    expect_env_error(load_env(&[("TROUPE_LINK__JITTER", "1")]), "TROUPE_LINK__JITTER", "link.jitter");
    expect_env_error(
        load_env(&[("TROUPE_CHANNELS__BULK__COMPRESSION", "1")]),
        "TROUPE_CHANNELS__BULK__COMPRESSION",
        "channels.bulk.compression",
    );
    let message =
        expect_env_error(load_env(&[("TROUPE_CHANNELS__BULK", "16")]), "TROUPE_CHANNELS__BULK", "channels.bulk");
    assert!(message.contains("TROUPE_CHANNELS__BULK__PARALLELISM"), "{message}");
    let message = expect_env_error(load_env(&[("TROUPE_TLS", "on")]), "TROUPE_TLS", "tls");
    assert!(message.contains("table"), "{message}");
    expect_env_error(load_env(&[("TROUPE_", "x")]), "TROUPE_", "");
    expect_env_error(load_env(&[("TROUPE_NAME__", "x")]), "TROUPE_NAME__", "name.");
    expect_env_error(load_env(&[("TROUPE_NAME__X", "x")]), "TROUPE_NAME__X", "name.x");
    let message = expect_env_error(load_env(&[("TROUPE_SEED", "a:1")]), "TROUPE_SEED", "seed");
    assert!(message.contains("TROUPE_SEEDS"), "the message lists the known variables: {message}");
}

#[test]
fn reserved_and_foreign_env_vars_are_ignored() {
    let config = load(
        FULL,
        &[
            ("TROUPE_LOG", "debug"),
            ("TROUPE_CONFIG", "/etc/troupe.toml"),
            ("PATH", "/bin"),
            ("troupe_name", "lower-case prefix is not ours"),
            ("PEER_SERVICE", "x"),
        ],
    )
    .unwrap();
    assert_eq!(config, full_expected());
}

#[test]
fn hyparview_settings_are_checked_and_overridable() {
    let config = load(FULL, &[("TROUPE_HYPARVIEW__PASSIVE_MAX", "40")]).unwrap();
    assert_eq!(config.hyparview.passive_max, 40);
    assert_eq!(config.hyparview.active_max, 5, "the file's value stays");
    let error = load(FULL, &[("TROUPE_HYPARVIEW__ACTIVE_MAX", "0")]).unwrap_err().to_string();
    assert!(error.contains("hyparview"), "{error}");
    let error = load(FULL, &[("TROUPE_HYPARVIEW__FANOUT", "3")]).unwrap_err().to_string();
    assert!(error.contains("TROUPE_HYPARVIEW__ACTIVE_MAX"), "the message lists the keys: {error}");
}

#[test]
fn overlay_and_role_come_from_the_environment() {
    let config = load(FULL, &[("TROUPE_OVERLAY", "hyparview"), ("TROUPE_ROLE", "server")]).unwrap();
    assert_eq!(config.overlay, OverlayKind::Hyparview);
    assert_eq!(config.role, Role::Server);
    let error = load(FULL, &[("TROUPE_OVERLAY", "ring")]).unwrap_err().to_string();
    assert!(error.contains("overlay") && error.contains("ring"), "{error}");
}

#[test]
fn bad_env_values_name_var_and_key() {
    let message = expect_env_error(
        load_env(&[("TROUPE_SEND_QUEUE_BYTES", "4MiB")]),
        "TROUPE_SEND_QUEUE_BYTES",
        "send_queue_bytes",
    );
    assert!(message.contains("4MiB"), "{message}");
    expect_env_error(load_env(&[("TROUPE_PING_ATTEMPTS", "-1")]), "TROUPE_PING_ATTEMPTS", "ping_attempts");
    expect_env_error(
        load_env(&[("TROUPE_CHANNELS__BULK__PARALLELISM", "70000")]),
        "TROUPE_CHANNELS__BULK__PARALLELISM",
        "channels.bulk.parallelism",
    );
    expect_env_error(
        load_env(&[("TROUPE_CHANNELS__BULK__MONOTONIC", "sometimes")]),
        "TROUPE_CHANNELS__BULK__MONOTONIC",
        "channels.bulk.monotonic",
    );
    expect_env_error(load_env(&[("TROUPE_LINK__LOSS", "lots")]), "TROUPE_LINK__LOSS", "link.loss");
    expect_env_error(
        load_env(&[("TROUPE_LINK__ONE_WAY_DELAY_MS", "inf")]),
        "TROUPE_LINK__ONE_WAY_DELAY_MS",
        "link.one_way_delay_ms",
    );
    expect_env_error(load_env(&[("TROUPE_WORKERS", "many")]), "TROUPE_WORKERS", "workers");
    let error = load_env(&[("TROUPE_NET_THREADS", "x")]).unwrap_err().to_string();
    assert!(error.contains("TROUPE_NET_THREADS") && error.contains("`net_threads`"), "{error}");
}

#[test]
fn env_value_that_breaks_a_rule_is_invalid_with_dotted_key() {
    expect_invalid(load_env(&[("TROUPE_CHANNELS__BULK__PARALLELISM", "0")]), "channels.bulk.parallelism");
    expect_invalid(load_env(&[("TROUPE_LISTEN", "")]), "listen");
    expect_invalid(load_env(&[("TROUPE_NAME", "")]), "name");
}

#[test]
fn env_cannot_descend_into_a_non_table() {
    expect_env_error(load("tls = 5\n", &[("TROUPE_TLS__CERT", "c")]), "TROUPE_TLS__CERT", "tls.cert");
}

#[test]
fn two_vars_for_one_key_are_an_error() {
    let message = expect_env_error(
        load_env(&[("TROUPE_CHANNELS__bulk__PARALLELISM", "2"), ("TROUPE_CHANNELS__BULK__PARALLELISM", "3")]),
        "TROUPE_CHANNELS__bulk__PARALLELISM",
        "channels.bulk.parallelism",
    );
    assert!(message.contains("TROUPE_CHANNELS__BULK__PARALLELISM"), "{message}");
}

// ----------------------------------------------------------------------------------------------------------
// Validation

#[test]
fn names_follow_the_charset_rule() {
    for key in ["name", "cluster"] {
        let set = |value: &str| load(&format!("{key} = {value:?}\n"), &[]);
        expect_invalid(set(""), key);
        expect_invalid(set("a b"), key);
        expect_invalid(set("ünï"), key);
        expect_invalid(set(&"a".repeat(65)), key);
        set(&"a".repeat(64)).unwrap();
        set("Node-1.eu_west").unwrap();
    }
}

#[test]
fn secret_rules() {
    expect_invalid(load("secret = \"short\"\n", &[]), "secret");
    load("secret = \"0123456789abcdef\"\n", &[]).unwrap();
    let message = expect_invalid(load("secret = \"0123456789abcdef\"\nsecret_file = \"/s\"\n", &[]), "secret_file");
    assert!(message.contains("not both"), "{message}");
    expect_invalid(load("secret_file = \"\"\n", &[]), "secret_file");
    let error = load("secret = \"tiny\"\n", &[]).unwrap_err().to_string();
    assert!(!error.contains("tiny"), "the secret must not appear in messages: {error}");
}

#[test]
fn address_rules() {
    let message = expect_invalid(load("listen = [\"127.0.0.1:1\", \"localhost:7000\"]\n", &[]), "listen");
    assert!(message.contains("localhost:7000"), "{message}");
    expect_invalid(load("listen = [\"127.0.0.1\"]\n", &[]), "listen");
    expect_invalid(load("listen = []\n", &[]), "listen");
    expect_invalid(load("advertise = [\"10.0.0.1:0\"]\n", &[]), "advertise");
    expect_invalid(load("advertise = [\"10.0.0.1\"]\n", &[]), "advertise");
    expect_invalid(load("seeds = [\"::1:7000\"]\n", &[]), "seeds");
    expect_invalid(load("seeds = [\"host:port\"]\n", &[]), "seeds");
    load("seeds = [\"[::1]:7000\", \"seed.example.com:7000\", \"10.1.2.3:9\"]\n", &[]).unwrap();
}

#[test]
fn size_rules() {
    expect_invalid(load("max_frame_bytes = 1023\n", &[]), "max_frame_bytes");
    expect_invalid(load("max_frame_bytes = 1073741825\n", &[]), "max_frame_bytes");
    load("max_frame_bytes = 1024\n", &[]).unwrap();
    load("max_frame_bytes = 1073741824\n", &[]).unwrap();
    expect_invalid(load("send_queue_bytes = 4095\n", &[]), "send_queue_bytes");
    load("send_queue_bytes = 4096\n", &[]).unwrap();
}

#[test]
fn timing_rules() {
    for key in [
        "connect_timeout_ms",
        "handshake_timeout_ms",
        "idle_ping_ms",
        "ping_timeout_ms",
        "ping_attempts",
        "ack_retransmit_ms",
        "reconnect_min_ms",
    ] {
        expect_invalid(load(&format!("{key} = 0\n"), &[]), key);
    }
    let message = expect_invalid(load("reconnect_min_ms = 500\nreconnect_max_ms = 499\n", &[]), "reconnect_max_ms");
    assert!(message.contains("500"), "{message}");
    load("reconnect_min_ms = 500\nreconnect_max_ms = 500\n", &[]).unwrap();
}

#[test]
fn thread_rules() {
    expect_invalid(load("workers = 0\n", &[]), "workers");
    expect_invalid(load("net_threads = 0\n", &[]), "net_threads");
    expect_invalid(load_env(&[("TROUPE_WORKERS", "0")]), "workers");
    load("workers = 1\nnet_threads = 1\n", &[]).unwrap();
}

#[test]
fn channel_rules() {
    expect_invalid(load("[channels.bulk]\nparallelism = 0\n", &[]), "channels.bulk.parallelism");
    expect_invalid(load("[channels.bulk]\nparallelism = 257\n", &[]), "channels.bulk.parallelism");
    load("[channels.bulk]\nparallelism = 256\n", &[]).unwrap();
    expect_invalid(load("[channels.control]\nparallelism = 2\n", &[]), "channels.control.parallelism");
    expect_invalid(load("[channels.control]\nmonotonic = true\n", &[]), "channels.control.monotonic");
    expect_invalid(load("[channels.default]\nmonotonic = true\n", &[]), "channels.default.monotonic");
    load("[channels.control]\nparallelism = 1\n[channels.default]\nparallelism = 16\n", &[]).unwrap();
    expect_invalid(load("[channels.Bulk]\n", &[]), "channels.Bulk");
    expect_invalid(load("[channels.\"a b\"]\n", &[]), "channels.a b");
    expect_invalid(load("[channels.\"\"]\n", &[]), "channels.");
    expect_invalid(load(&format!("[channels.{}]\n", "c".repeat(65)), &[]), &format!("channels.{}", "c".repeat(65)));
}

#[test]
fn tls_rules() {
    expect_invalid(load("[tls]\ncert = \"\"\nkey = \"k\"\nca = \"a\"\n", &[]), "tls.cert");
    expect_invalid(load("[tls]\ncert = \"c\"\nkey = \"k\"\nca = \"\"\n", &[]), "tls.ca");
    expect_invalid(load("[tls]\ncert = \"c\"\nkey = \"k\"\nca = \"a\"\nserver_name = \"\"\n", &[]), "tls.server_name");
}

#[test]
fn link_rules() {
    expect_invalid(load("[link]\nloss = 1.5\n", &[]), "link.loss");
    expect_invalid(load("[link]\nloss = -0.1\n", &[]), "link.loss");
    expect_invalid(load("[link]\nloss = nan\n", &[]), "link.loss");
    load("[link]\nloss = 1.0\n", &[]).unwrap();
    expect_invalid(load("[link]\none_way_delay_ms = -1\n", &[]), "link.one_way_delay_ms");
    expect_invalid(load("[link]\none_way_delay_ms = inf\n", &[]), "link.one_way_delay_ms");
    expect_invalid(load("[link]\ninflight_bytes = 0\n", &[]), "link.inflight_bytes");
    expect_invalid(load_env(&[("TROUPE_LINK__LOSS", "2")]), "link.loss");
}

#[test]
fn validate_works_on_hand_built_configs() {
    let mut config = full_expected();
    config.validate().unwrap();
    config.channels.insert("bad name".into(), ChannelConfig::default());
    assert!(matches!(config.validate(), Err(ConfigError::Invalid { key, .. }) if key == "channels.bad name"));
}

#[test]
fn debug_output_hides_the_secret() {
    let text = format!("{:?}", full_expected());
    assert!(!text.contains("0123456789abcdef0123"), "{text}");
    assert!(text.contains("n1") && text.contains("<redacted>"), "{text}");
}

// ----------------------------------------------------------------------------------------------------------
// Secrets

#[test]
fn secret_from_the_config() {
    let config = load("secret = \"0123456789abcdef\"\n", &[]).unwrap();
    assert_eq!(config.secret_bytes().unwrap(), Some(b"0123456789abcdef".to_vec()));
}

#[test]
fn secret_file_is_read_and_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secret");
    let config = load_env(&[("TROUPE_SECRET_FILE", path.to_str().unwrap())]).unwrap();
    assert_eq!(config.secret_file.as_deref(), Some(path.as_path()));

    std::fs::write(&path, "a secret of 24 bytes ok\n").unwrap();
    assert_eq!(config.secret_bytes().unwrap(), Some(b"a secret of 24 bytes ok".to_vec()));
    std::fs::write(&path, "windows line ending 1234\r\n").unwrap();
    assert_eq!(config.secret_bytes().unwrap(), Some(b"windows line ending 1234".to_vec()));
    std::fs::write(&path, "  spaces are kept 123456  ").unwrap();
    assert_eq!(config.secret_bytes().unwrap(), Some(b"  spaces are kept 123456  ".to_vec()));

    std::fs::write(&path, "too short\n").unwrap();
    expect_invalid(config.secret_bytes().map(|_| NodeConfig::default()), "secret_file");

    std::fs::remove_file(&path).unwrap();
    assert!(matches!(config.secret_bytes(), Err(ConfigError::Read { path: p, .. }) if p == path));
}

#[test]
fn secret_and_secret_file_together_are_an_error() {
    let config = NodeConfig {
        secret: Some("0123456789abcdef".into()),
        secret_file: Some("/nonexistent".into()),
        ..NodeConfig::default()
    };
    expect_invalid(config.validate().map(|()| NodeConfig::default()), "secret_file");
    expect_invalid(config.secret_bytes().map(|_| NodeConfig::default()), "secret_file");
    expect_invalid(load("secret = \"0123456789abcdef\"\n", &[("TROUPE_SECRET_FILE", "/s")]), "secret_file");
}

// ----------------------------------------------------------------------------------------------------------
// Channel table

#[test]
fn channel_table_order() {
    let names = |config: &NodeConfig| config.channel_table().into_iter().map(|(name, _)| name).collect::<Vec<_>>();
    let default = NodeConfig::default();
    assert_eq!(
        default.channel_table(),
        vec![("control".to_owned(), ChannelConfig::default()), ("default".to_owned(), ChannelConfig::default())]
    );

    let config = load(
        "[channels.zeta]\n[channels.control]\nparallelism = 1\n[channels.alpha]\nparallelism = 16\n\
         [channels.default]\nparallelism = 4\n[channels.mid]\nmonotonic = true\n",
        &[],
    )
    .unwrap();
    assert_eq!(names(&config), ["control", "default", "alpha", "mid", "zeta"]);
    let table = config.channel_table();
    assert_eq!(table[0].1, ChannelConfig { parallelism: 1, monotonic: false });
    assert_eq!(table[1].1, ChannelConfig { parallelism: 4, monotonic: false });
    assert_eq!(table[2].1.parallelism, 16);
    assert!(table[3].1.monotonic);
}

// ----------------------------------------------------------------------------------------------------------
// Properties

fn arb_name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._-]{1,64}"
}

fn arb_config() -> impl Strategy<Value = NodeConfig> {
    let basics = (
        arb_name(),
        arb_name(),
        proptest::option::of("[ -~]{16,40}"),
        proptest::collection::vec((any::<[u8; 4]>(), any::<u16>()), 1..3),
        proptest::collection::vec(("[a-z][a-z0-9-]{0,10}(\\.[a-z]{2,5})?", 1u16..), 0..3),
        1024usize..=(1 << 30),
        4096usize..(1 << 40),
        (1u64..100_000, 1u64..100_000, 1u32..20),
    );
    let more = (
        (1u64..100_000, 0u64..100_000),
        proptest::option::of(1usize..1024),
        1usize..64,
        proptest::collection::btree_map("[a-z0-9._-]{1,12}", (1u16..=256, any::<bool>()), 0..5),
        proptest::option::of(("[a-z/._]{1,20}", any::<bool>(), proptest::option::of("[a-z.]{1,10}"))),
        proptest::option::of((0.0f64..10_000.0, proptest::option::of(1usize..1 << 30), 0.0f64..=1.0)),
    );
    (basics, more).prop_map(|(basics, more)| {
        let (name, cluster, secret, listen, seeds, max_frame, queue, (t1, t2, attempts)) = basics;
        let ((rmin, rextra), workers, net_threads, channels, tls, link) = more;
        NodeConfig {
            name,
            cluster,
            secret,
            secret_file: None,
            listen: listen.iter().map(|(ip, port)| format!("{}:{port}", std::net::Ipv4Addr::from(*ip))).collect(),
            advertise: Vec::new(),
            seeds: seeds.iter().map(|(host, port)| format!("{host}:{port}")).collect(),
            max_frame_bytes: max_frame,
            send_queue_bytes: queue,
            connect_timeout_ms: t1,
            handshake_timeout_ms: t2,
            idle_ping_ms: t1 + t2,
            ping_timeout_ms: t2,
            ping_attempts: attempts,
            ack_retransmit_ms: t1,
            reconnect_min_ms: rmin,
            reconnect_max_ms: rmin + rextra,
            workers,
            net_threads,
            overlay: OverlayKind::None,
            role: Role::Server,
            reach: Reach::Direct,
            relay_ttl: 5,
            seed_dns: Vec::new(),
            release_idle_ms: 30_000,
            hyparview: HyParViewSettings::default(),
            channels: channels
                .into_iter()
                .map(|(name, (parallelism, monotonic))| {
                    let reserved = name == "control" || name == "default";
                    let parallelism = if name == "control" { 1 } else { parallelism };
                    (name, ChannelConfig { parallelism, monotonic: monotonic && !reserved })
                })
                .collect(),
            tls: tls.map(|(path, require_client_cert, server_name)| TlsConfig {
                cert: format!("{path}.pem").into(),
                key: format!("{path}.key").into(),
                ca: "ca.pem".into(),
                require_client_cert,
                server_name,
            }),
            link: link.map(|(one_way_delay_ms, inflight_bytes, loss)| LinkEmulation {
                one_way_delay_ms,
                inflight_bytes,
                loss,
            }),
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any valid config written as TOML reads back identical.
    #[test]
    fn valid_configs_round_trip_through_toml(config in arb_config()) {
        config.validate().unwrap();
        let text = toml::to_string(&config).unwrap();
        prop_assert_eq!(NodeConfig::from_toml_str(&text).unwrap(), config);
    }

    /// Arbitrary TROUPE_ variables and values never panic the loader, and a successful load is valid.
    #[test]
    fn arbitrary_env_never_panics(
        vars in proptest::collection::vec(
            (
                prop_oneof![
                    Just("NAME".to_owned()),
                    Just("LISTEN".to_owned()),
                    Just("MAX_FRAME_BYTES".to_owned()),
                    Just("WORKERS".to_owned()),
                    Just("CHANNELS__X__PARALLELISM".to_owned()),
                    Just("LINK__LOSS".to_owned()),
                    Just("TLS__CERT".to_owned()),
                    "[A-Z_]{0,20}",
                ],
                ".{0,20}",
            ),
            0..4,
        )
    ) {
        let env: Vec<(String, String)> = vars.into_iter().map(|(k, v)| (format!("TROUPE_{k}"), v)).collect();
        if let Ok(config) = NodeConfig::load_from(Some(FULL), "node.toml", env) {
            prop_assert!(config.validate().is_ok());
        }
    }
}
