//! FullMesh under the test driver: joins, crashes, leaves, rejoins, stale gossip, partitions,
//! refutation, garbage, bounded tombstones.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{check_views, ms, secs, Cluster};
use troupe_overlay::full_mesh::{Entry, Record, Status};
use troupe_overlay::{FullMesh, FullMeshConfig, FullMeshMessage, Member, Membership, MembershipEvent, PeerId};

fn cluster(n: usize, seed: u64) -> Cluster<FullMesh> {
    cluster_with(n, seed, FullMeshConfig::default())
}

fn cluster_with(n: usize, seed: u64, config: FullMeshConfig) -> Cluster<FullMesh> {
    Cluster::new(n, seed, move |m, s| FullMesh::new(m, FullMeshConfig { seed: s, ..config.clone() }))
}

fn records(entries: Vec<Entry>) -> Vec<Record> {
    entries.into_iter().map(|entry| Record { entry, age_ms: 0 }).collect()
}

fn up_ids(c: &Cluster<FullMesh>) -> BTreeSet<PeerId> {
    c.up_slots().into_iter().map(|s| c.id(s)).collect()
}

/// Every running, active node lists exactly the other running, active nodes (members, events and
/// connections all agree).
fn converged(c: &Cluster<FullMesh>) -> bool {
    let active: Vec<usize> = c.up_slots().into_iter().filter(|s| c.proto(*s).is_some_and(|p| p.is_active())).collect();
    let all: BTreeSet<PeerId> = active.iter().map(|s| c.id(*s)).collect();
    active.iter().all(|s| {
        let p = c.proto(*s).expect("up");
        let mut want = all.clone();
        want.remove(&c.id(*s));
        let members: BTreeSet<PeerId> = p.members().iter().map(|m| m.id).collect();
        let neighbors: BTreeSet<PeerId> = p.neighbors().into_iter().collect();
        members == want && neighbors == want && c.reported_members(*s) == want
    })
}

fn start_all(c: &mut Cluster<FullMesh>, gap: Duration) {
    for s in 0..c.len() {
        c.start(s);
        c.run_for(gap);
    }
}

#[test]
fn join_of_n_nodes_converges() {
    let mut c = cluster(24, 1);
    start_all(&mut c, ms(20));
    let took = c.run_until_cond(secs(20), ms(100), converged);
    assert!(took.is_some(), "24 nodes did not converge in 20 s");
    check_views(&c).expect("views");
    // The set is the same everywhere and holds no tombstone.
    for s in c.up_slots() {
        let p = c.proto(s).expect("up");
        assert_eq!(p.member_set().alive_len(), 24);
        assert_eq!(p.member_set().tombstones(), 0);
        assert_eq!(p.generation(), 1, "no node had to refute anything");
    }
}

#[test]
fn mass_join_through_one_seed_converges() {
    let mut c = cluster(40, 2);
    start_all(&mut c, Duration::ZERO);
    let took = c.run_until_cond(secs(30), ms(100), converged).expect("40 nodes converge");
    assert!(took <= secs(10), "took {took:?}");
    check_views(&c).expect("views");
}

fn removed_everywhere(c: &Cluster<FullMesh>, gone: PeerId) -> bool {
    c.up_slots().into_iter().all(|s| {
        let p = c.proto(s).expect("up");
        !p.is_member(&gone) && !c.reported_members(s).contains(&gone) && !p.neighbors().contains(&gone)
    })
}

#[test]
fn crash_is_detected_and_removed_everywhere_within_a_bound() {
    for noisy in [true, false] {
        let mut c = cluster(12, 3);
        start_all(&mut c, ms(10));
        c.run_until_cond(secs(20), ms(100), converged).expect("converged");
        let victim = c.id(7);
        c.crash(7, noisy);
        let took = c.run_until_cond(secs(30), ms(50), |c| removed_everywhere(c, victim));
        let took = took.unwrap_or_else(|| panic!("crash (noisy: {noisy}) not removed within 30 s"));
        // Noisy: redial fails until `unreachable_timeout` (10 s). Silent: phi-accrual with a 3 s
        // acceptable pause and 1 s grace.
        let bound = if noisy { secs(12) } else { secs(9) };
        assert!(took <= bound, "noisy {noisy}: removal took {took:?}");
        assert!(converged(&c), "the others still agree with each other");
        for s in c.up_slots() {
            let down = c.member_events(s, victim);
            assert!(matches!(down.last(), Some(MembershipEvent::MemberDown { .. })), "slot {s} reported the removal");
            assert_eq!(c.proto(s).expect("up").member_set().get(&victim).map(|e| e.status), Some(Status::Removed));
        }
    }
}

/// Finds the last captured full state sent by a node other than `about` that lists `about` as
/// alive; returns its sender and the message.
fn stale_state(c: &Cluster<FullMesh>, about: PeerId) -> (PeerId, FullMeshMessage) {
    c.captured
        .iter()
        .rev()
        .filter(|m| m.from != about)
        .find(|m| match &m.msg {
            FullMeshMessage::State { entries, .. } => {
                entries.iter().any(|r| r.entry.member.id == about && r.entry.is_alive())
            }
            FullMeshMessage::Heartbeat => false,
        })
        .map(|m| (m.from, m.msg.clone()))
        .expect("a captured state listing the node")
}

/// Delivers `msg` to every running node but `from`, as if `from` sent it now.
fn replay(c: &mut Cluster<FullMesh>, from: PeerId, msg: &FullMeshMessage) {
    for s in c.up_slots() {
        let to = c.id(s);
        if to != from {
            c.inject(from, to, msg.clone());
        }
    }
}

fn ups_after(c: &Cluster<FullMesh>, about: PeerId, after: Duration) -> usize {
    c.log
        .iter()
        .filter(|l| l.at > after)
        .filter(|l| matches!(&l.event, MembershipEvent::MemberUp(m) if m.id == about))
        .count()
}

#[test]
fn leave_then_rejoin_as_new_incarnation_and_stale_gossip_never_resurrects() {
    let mut c = cluster(8, 4);
    c.capture = true;
    start_all(&mut c, ms(10));
    c.run_until_cond(secs(20), ms(100), converged).expect("converged");
    let old = c.id(5);
    let (a, stale) = stale_state(&c, old);
    assert!(c.slot_of(a).is_some(), "the stale state comes from a live member");
    let b = c.id(if c.id(2) == a { 3 } else { 2 });
    let stale_from_leaver = c
        .captured
        .iter()
        .rev()
        .find(|m| m.from == old && matches!(m.msg, FullMeshMessage::State { .. }))
        .map(|m| m.msg.clone())
        .expect("the leaver's own state");

    c.feed(5, troupe_overlay::Input::Leave);
    let left_at = c.now;
    c.run_for(secs(1));
    c.crash(5, true); // the process exits after leaving
    c.run_until_cond(secs(5), ms(50), |c| removed_everywhere(c, old)).expect("leave spreads within 5 s");
    for s in c.up_slots() {
        assert_eq!(c.proto(s).expect("up").member_set().get(&old).map(|e| e.status), Some(Status::Left));
    }

    // Old gossip arrives late, from a live connected member and (replayed) from the leaver.
    replay(&mut c, a, &stale);
    c.inject(old, b, stale_from_leaver.clone());
    c.run_for(secs(5));
    assert!(removed_everywhere(&c, old), "stale gossip resurrected the node that left");

    // The node comes back: same name and address, new incarnation.
    c.restart(5);
    let new = c.id(5);
    assert_ne!(new, old);
    c.run_until_cond(secs(20), ms(100), converged).expect("the new incarnation joins");
    // And stale gossip once more, after the rejoin.
    replay(&mut c, a, &stale);
    c.run_for(secs(5));
    assert!(converged(&c));
    assert!(removed_everywhere(&c, old), "the old incarnation came back");
    assert_eq!(ups_after(&c, old, left_at), 0, "nobody ever reported the old incarnation up again");
    for s in c.up_slots() {
        let p = c.proto(s).expect("up");
        assert!(p.is_member(&new));
        assert_eq!(p.member_set().get(&new).map(|e| e.member.name.clone()), Some("n5".to_string()));
    }
    check_views(&c).expect("views");
}

#[test]
fn stale_gossip_does_not_resurrect_a_crashed_node() {
    let mut c = cluster(6, 5);
    c.capture = true;
    start_all(&mut c, ms(10));
    c.run_until_cond(secs(20), ms(100), converged).expect("converged");
    let victim = c.id(3);
    let (a, stale) = stale_state(&c, victim);
    let crashed_at = c.now;
    c.crash(3, true);
    c.run_until_cond(secs(30), ms(50), |c| removed_everywhere(c, victim)).expect("removed");
    replay(&mut c, a, &stale);
    c.run_for(secs(10));
    assert!(removed_everywhere(&c, victim));
    // Up events for the victim after the crash: none at all.
    assert_eq!(ups_after(&c, victim, crashed_at), 0);
}

#[test]
fn a_node_wrongly_removed_while_alive_refutes_and_comes_back() {
    let mut c = cluster(6, 6);
    start_all(&mut c, ms(10));
    c.run_until_cond(secs(20), ms(100), converged).expect("converged");
    let target = c.id(4);
    let gen = c.proto(4).expect("up").generation();
    // Node 1 receives (from node 2) a removal of node 4, as if someone had falsely suspected it.
    let entry = c.proto(1).expect("up").member_set().get(&target).cloned().expect("known");
    let removal =
        FullMeshMessage::State { entries: records(vec![Entry { status: Status::Removed, ..entry }]), reply: false };
    let t0 = c.now;
    c.inject(c.id(2), c.id(1), removal);
    // The removal took effect at node 1 ...
    assert!(!c.proto(1).expect("up").is_member(&target));
    assert!(matches!(c.member_events(1, target).last(), Some(MembershipEvent::MemberDown { .. })));
    // ... and then node 4 refutes with a higher generation and everyone lists it again.
    let took = c.run_until_cond(secs(10), ms(50), converged).expect("re-converged");
    assert!(took <= secs(3), "refutation took {took:?}");
    assert!(c.proto(4).expect("up").generation() > gen);
    for s in c.up_slots().into_iter().filter(|s| *s != 4) {
        let e = c.proto(s).expect("up").member_set().get(&target).cloned().expect("entry");
        assert!(e.is_alive() && e.generation > gen, "slot {s}: {e:?}");
    }
    assert!(ups_after(&c, target, t0) >= 1);
    check_views(&c).expect("views");
}

#[test]
fn partition_removes_the_other_side_then_heals() {
    let mut c = cluster(10, 7);
    start_all(&mut c, ms(10));
    c.run_until_cond(secs(20), ms(100), converged).expect("converged");
    c.partition(|s| u32::from(s >= 5));
    let sides = |c: &Cluster<FullMesh>| {
        c.up_slots().into_iter().all(|s| {
            let p = c.proto(s).expect("up");
            let want: BTreeSet<PeerId> =
                (0..10).filter(|t| (*t >= 5) == (s >= 5) && *t != s).map(|t| c.id(t)).collect();
            p.members().iter().map(|m| m.id).collect::<BTreeSet<_>>() == want
        })
    };
    c.run_until_cond(secs(30), ms(100), sides).expect("each side removes the other");
    check_views(&c).expect("views while split");
    c.heal();
    let took = c.run_until_cond(secs(60), ms(100), converged).expect("the partition heals");
    assert!(took <= secs(30), "healing took {took:?}");
    assert_eq!(up_ids(&c).len(), 10);
    check_views(&c).expect("views after healing");
}

#[test]
fn garbage_and_unknown_peers_are_ignored() {
    let mut c = cluster(4, 8);
    start_all(&mut c, ms(10));
    c.run_until_cond(secs(20), ms(100), converged).expect("converged");
    let stranger = PeerId(0xdead_beef);
    let fake = Member { id: PeerId(42), name: "fake".into(), addr: "10.9.9.9:1".parse().expect("addr") };
    let before: Vec<BTreeSet<PeerId>> =
        (0..4).map(|s| c.proto(s).expect("up").member_set().entries().map(|e| e.member.id).collect()).collect();
    // From a peer that is not connected: ignored entirely.
    c.inject(
        stranger,
        c.id(0),
        FullMeshMessage::State { entries: records(vec![Entry::alive(fake.clone())]), reply: true },
    );
    c.inject(stranger, c.id(0), FullMeshMessage::Heartbeat);
    // From a connected member: malformed entries are dropped.
    let long = Member { name: "x".repeat(10_000), ..fake.clone() };
    let bad = vec![Entry { generation: 0, ..Entry::alive(fake.clone()) }, Entry::alive(long)];
    c.inject(c.id(1), c.id(2), FullMeshMessage::State { entries: records(bad), reply: false });
    // Oversized messages are dropped whole.
    let flood: Vec<Entry> = (0..6000u64)
        .map(|i| Entry::alive(Member { id: PeerId(1_000 + i), name: format!("f{i}"), addr: fake.addr }))
        .collect();
    c.inject(c.id(1), c.id(3), FullMeshMessage::State { entries: records(flood), reply: false });
    c.run_for(secs(3));
    let after: Vec<BTreeSet<PeerId>> =
        (0..4).map(|s| c.proto(s).expect("up").member_set().entries().map(|e| e.member.id).collect()).collect();
    assert_eq!(before, after);
    assert!(converged(&c));
}

#[test]
fn member_cap_bounds_the_set() {
    let config = FullMeshConfig { max_members: 5, ..FullMeshConfig::default() };
    let mut c = cluster_with(8, 9, config);
    start_all(&mut c, ms(10));
    c.run_for(secs(15));
    for s in c.up_slots() {
        let p = c.proto(s).expect("up");
        assert!(p.member_set().alive_len() <= 5, "slot {s} holds {}", p.member_set().alive_len());
    }
}

#[test]
fn tombstones_expire_and_are_capped() {
    let config = FullMeshConfig { tombstone_ttl: secs(30), max_tombstones: 3, ..FullMeshConfig::default() };
    let mut c = cluster_with(6, 10, config);
    start_all(&mut c, ms(10));
    c.run_until_cond(secs(20), ms(100), converged).expect("converged");
    // Churn: five restarts of nodes 1..=5 leave five dead incarnations behind.
    let mut dead = Vec::new();
    for s in 1..=5 {
        dead.push(c.id(s));
        c.restart(s);
        c.run_for(secs(2));
    }
    c.run_until_cond(secs(30), ms(100), converged).expect("re-converged");
    let max_seen = c.up_slots().into_iter().map(|s| c.proto(s).expect("up").member_set().tombstones()).max();
    assert!(max_seen.is_some_and(|t| t <= 3), "cap of 3 tombstones: {max_seen:?}");
    c.run_for(secs(35));
    for s in c.up_slots() {
        let set = c.proto(s).expect("up").member_set();
        assert_eq!(set.tombstones(), 0, "slot {s}: tombstones expire after the ttl");
        assert_eq!(set.len(), 6);
        assert!(dead.iter().all(|d| set.get(d).is_none()));
    }
    assert!(converged(&c));
}

#[test]
fn leaving_node_stops_and_empties_its_views() {
    let mut c = cluster(4, 11);
    start_all(&mut c, ms(10));
    c.run_until_cond(secs(20), ms(100), converged).expect("converged");
    c.feed(2, troupe_overlay::Input::Leave);
    c.run_for(secs(2));
    let p = c.proto(2).expect("still running");
    assert!(!p.is_active());
    assert!(p.neighbors().is_empty());
    assert_eq!(p.snapshot(), Default::default());
    assert!(c.reported_members(2).is_empty());
    // It closed its connections.
    for s in [0, 1, 3] {
        assert!(!c.connected(c.id(2), c.id(s)));
    }
    // The others agree it is gone.
    let id = c.id(2);
    assert!(c.up_slots().into_iter().filter(|s| *s != 2).all(|s| !c.proto(s).expect("up").is_member(&id)));
}
