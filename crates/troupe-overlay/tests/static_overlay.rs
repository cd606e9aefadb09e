//! StaticOverlay: exactly the configured contacts, reconnection with bounded backoff, restarts.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{check_views, ms, secs, Cluster};
use troupe_overlay::{BackoffConfig, Input, Member, Membership, PeerId, StaticConfig, StaticOverlay};

fn cluster(n: usize, seed: u64, config: StaticConfig) -> Cluster<StaticOverlay> {
    let mut c = Cluster::new(n, seed, move |m, s| StaticOverlay::new(m, StaticConfig { seed: s, ..config.clone() }));
    c.dial_by_address = true;
    c
}

/// Starts a line: node i's only contact is node i-1 (the edge works both ways).
fn start_line(c: &mut Cluster<StaticOverlay>) {
    for s in 0..c.len() {
        c.seeds = if s == 0 { vec![0] } else { vec![s - 1] };
        c.start(s);
        c.run_for(ms(50));
    }
}

fn line_neighbors(c: &Cluster<StaticOverlay>, s: usize) -> BTreeSet<PeerId> {
    let mut want = BTreeSet::new();
    if s > 0 {
        want.insert(c.id(s - 1));
    }
    if s + 1 < c.len() {
        want.insert(c.id(s + 1));
    }
    want
}

fn is_line(c: &Cluster<StaticOverlay>) -> bool {
    (0..c.len()).all(|s| {
        let p = c.proto(s).expect("up");
        let got: BTreeSet<PeerId> = p.neighbors().into_iter().collect();
        got == line_neighbors(c, s) && c.reported_members(s) == got
    })
}

#[test]
fn neighbours_are_exactly_the_contacts() {
    let mut c = cluster(6, 1, StaticConfig::default());
    start_line(&mut c);
    c.run_for(secs(2));
    assert!(is_line(&c));
    check_views(&c).expect("views");
    // No gossip: nothing but connections happened.
    assert_eq!(c.delivered, 0);
}

#[test]
fn failed_contact_is_redialed_with_bounded_backoff_and_picked_up_after_restart() {
    let config = StaticConfig {
        backoff: BackoffConfig { initial: ms(500), max: secs(8), max_attempts: None },
        ..StaticConfig::default()
    };
    let mut c = cluster(3, 2, config);
    start_line(&mut c);
    c.run_for(secs(1));
    assert!(is_line(&c));
    // Node 0 (node 1's contact) goes away.
    let old = c.id(0);
    c.crash(0, true);
    c.run_for(secs(60));
    let p = c.proto(1).expect("up");
    assert!(!p.neighbors().contains(&old));
    assert!(!c.reported_members(1).contains(&old), "MemberDown was reported");
    // 0.5, 1, 2, 4, 8, 8, ... seconds (jittered to the upper half): a bounded number of dials.
    let failures = p.failures(&c.member(0).addr).expect("contact");
    assert!((7..=20).contains(&failures), "{failures} failed dials in 60 s");
    check_views(&c).expect("views");
    // It restarts (new incarnation, same address) with no contacts of its own: node 1's redial
    // finds it.
    c.seeds = vec![0];
    c.restart(0);
    let took = c.run_until_cond(secs(20), ms(100), is_line).expect("reconnected");
    assert!(took <= secs(9), "reconnect took {took:?} (backoff capped at 8 s)");
    assert_eq!(
        c.proto(1).expect("up").contacts().iter().find(|m| m.addr == c.member(0).addr).map(|m| m.id),
        Some(c.id(0))
    );
}

#[test]
fn attempts_limit_gives_up_and_asks_for_contacts() {
    let config = StaticConfig {
        backoff: BackoffConfig { initial: ms(100), max: secs(1), max_attempts: Some(3) },
        ..StaticConfig::default()
    };
    let mut c = cluster(2, 3, config);
    start_line(&mut c);
    c.run_for(secs(1));
    c.crash(0, true);
    c.run_for(secs(20));
    assert_eq!(c.proto(1).expect("up").failures(&c.member(0).addr), Some(3));
    assert!(c.need_contacts[1] >= 1, "a node whose contacts all gave up asks the driver");
}

fn neighbor_ups(c: &Cluster<StaticOverlay>, slot: usize, about: PeerId) -> usize {
    c.log
        .iter()
        .filter(|l| l.slot == slot)
        .filter(|l| matches!(&l.event, troupe_overlay::MembershipEvent::NeighborUp(m) if m.id == about))
        .count()
}

#[test]
fn inbound_from_non_contacts_can_be_refused() {
    let mut c = cluster(3, 4, StaticConfig { accept_inbound: false, ..StaticConfig::default() });
    start_line(&mut c);
    c.run_for(secs(60));
    // Node 0 has no contacts and refuses node 1; node 1 refuses node 2: nobody ever takes the
    // other end as a neighbour.
    assert_eq!(neighbor_ups(&c, 0, c.id(1)), 0);
    assert_eq!(neighbor_ups(&c, 1, c.id(2)), 0);
    // The refused side keeps redialing, but with backoff: a connection refused right after it
    // opened counts as a failure (0.5 s doubling to 30 s: under 12 attempts in a minute).
    let attempts = neighbor_ups(&c, 2, c.id(1));
    assert!((3..12).contains(&attempts), "{attempts} redials in 60 s");
    check_views(&c).expect("views");
}

#[test]
fn leave_closes_everything_and_ignores_the_rest() {
    let mut c = cluster(3, 5, StaticConfig::default());
    start_line(&mut c);
    c.run_for(secs(1));
    c.feed(1, Input::Leave);
    c.run_for(secs(1));
    assert!(c.proto(1).expect("up").neighbors().is_empty());
    assert!(c.reported_members(1).is_empty());
    assert!(!c.connected(c.id(0), c.id(1)));
    // Node 2 keeps redialing its contact, which refuses: it never stays a neighbour for long.
    c.run_for(secs(30));
    assert!(neighbor_ups(&c, 1, c.id(2)) >= 1, "node 1 was node 2's neighbour before leaving");
    assert!(!c.proto(2).expect("up").neighbors().contains(&c.id(1)) || c.connected(c.id(1), c.id(2)));
    // Inputs after leaving are ignored.
    let stranger = Member { id: PeerId(9), name: "x".into(), addr: "10.1.1.1:1".parse().expect("addr") };
    let mut out = Vec::new();
    let mut p = StaticOverlay::new(c.member(1).clone(), StaticConfig::default());
    p.handle(Input::Leave, Duration::ZERO, &mut out);
    out.clear();
    p.handle(Input::Tick, secs(5), &mut out);
    p.handle(Input::Disconnected(PeerId(9)), secs(5), &mut out);
    assert!(out.is_empty(), "{out:?}");
    p.handle(Input::Connected(stranger), Duration::ZERO, &mut out);
    assert_eq!(out, vec![troupe_overlay::Command::Disconnect(PeerId(9))], "a stopped node refuses connections");
}

#[test]
fn self_and_duplicate_contacts_are_ignored() {
    let me = Member { id: PeerId(1), name: "me".into(), addr: "10.0.0.1:7000".parse().expect("addr") };
    let other = Member { id: PeerId(2), name: "o".into(), addr: "10.0.0.2:7000".parse().expect("addr") };
    let mut p = StaticOverlay::new(me.clone(), StaticConfig::default());
    let mut out = Vec::new();
    p.handle(Input::Join(vec![me.clone(), other.clone(), other.clone()]), Duration::ZERO, &mut out);
    assert_eq!(p.neighbors(), vec![PeerId(2)]);
    assert!(p.snapshot().active.iter().chain(p.snapshot().passive.iter()).all(|m| m.id != me.id));
    p.handle(Input::Disconnected(PeerId(77)), Duration::ZERO, &mut out);
    p.handle(Input::ConnectFailed(PeerId(77)), Duration::ZERO, &mut out);
    assert_eq!(p.neighbors(), vec![PeerId(2)]);
}
