//! ClientServer: servers mesh, clients attach to servers, every server knows which server
//! reaches each client, routes work, failures are repaired.

mod common;

use std::collections::BTreeSet;

use common::{check_views, ms, secs, Cluster};
use proptest::prelude::*;
use troupe_overlay::{
    ClientServer, ClientServerConfig, ClientServerMessage, FullMeshConfig, Input, Member, Membership, PeerId, Role,
};

/// Slots `0..servers` are servers, the rest clients; servers join through slot 0, clients
/// through slots 0 and 1.
fn cluster(servers: usize, clients: usize, seed: u64) -> Cluster<ClientServer> {
    let mut c = Cluster::new(servers + clients, seed, move |m: Member, s| {
        let slot: usize = m.name[1..].parse().expect("name n<slot>");
        let role = if slot < servers { Role::Server } else { Role::Client };
        ClientServer::new(
            m,
            ClientServerConfig {
                role,
                mesh: FullMeshConfig { seed: s, ..FullMeshConfig::default() },
                ..ClientServerConfig::default()
            },
        )
    });
    c.seeds = vec![0];
    for s in 0..servers {
        c.start(s);
        c.run_for(ms(20));
    }
    c.seeds = if servers > 1 { vec![0, 1] } else { vec![0] };
    for s in servers..servers + clients {
        c.start(s);
        c.run_for(ms(5));
    }
    c
}

fn ids(members: Vec<Member>) -> BTreeSet<PeerId> {
    members.into_iter().map(|m| m.id).collect()
}

/// Follows `route` hop by hop from `from` to `to` over live connections.
fn path(c: &Cluster<ClientServer>, from: usize, to: PeerId) -> Option<Vec<PeerId>> {
    let mut hop = c.id(from);
    let mut hops = vec![hop];
    for _ in 0..4 {
        let next = c.proto(c.slot_of(hop)?)?.route(to)?;
        if !c.connected(hop, next) {
            return None;
        }
        hops.push(next);
        if next == to {
            return Some(hops);
        }
        hop = next;
    }
    None
}

fn converged(c: &Cluster<ClientServer>, servers: usize) -> bool {
    let up = c.up_slots();
    let server_ids: BTreeSet<PeerId> = up.iter().filter(|s| **s < servers).map(|s| c.id(*s)).collect();
    let client_ids: BTreeSet<PeerId> = up.iter().filter(|s| **s >= servers).map(|s| c.id(*s)).collect();
    let attach = 3.min(server_ids.len());
    up.iter().all(|s| {
        let p = c.proto(*s).expect("up");
        let me = c.id(*s);
        if *s < servers {
            let mut others = server_ids.clone();
            others.remove(&me);
            let mut members = others.clone();
            members.extend(client_ids.iter().copied());
            ids(p.servers()) == others
                && ids(p.clients()) == client_ids
                && c.reported_members(*s) == members
                && client_ids.iter().all(|cl| !p.servers_of(*cl).is_empty())
        } else {
            ids(p.servers()) == server_ids && p.neighbors().len() == attach && c.reported_members(*s) == server_ids
        }
    })
}

fn all_routes(c: &Cluster<ClientServer>) -> Result<(), String> {
    for from in c.up_slots() {
        for to in c.up_slots().into_iter().filter(|t| *t != from) {
            let hops = path(c, from, c.id(to)).ok_or_else(|| format!("no route from slot {from} to slot {to}"))?;
            if hops.len() > 4 {
                return Err(format!("{from} -> {to} takes {} hops", hops.len() - 1));
            }
        }
    }
    Ok(())
}

#[test]
fn join_converges_and_every_node_routes_to_every_node() {
    let mut c = cluster(4, 12, 1);
    let took = c.run_until_cond(secs(20), ms(100), |c| converged(c, 4)).expect("converged");
    assert!(took <= secs(8), "took {took:?}");
    check_views(&c).expect("views");
    all_routes(&c).expect("routes");
    // Clients only ever connect to servers.
    for cl in 4..16 {
        for other in 4..16 {
            assert!(!c.connected(c.id(cl), c.id(other)), "client-client link");
        }
        let p = c.proto(cl).expect("up");
        assert_eq!(p.role(), Role::Client);
        assert!(p.neighbors().iter().all(|n| c.slot_of(*n).is_some_and(|s| s < 4)));
    }
    // Client-to-client goes client -> server (-> server) -> client.
    let hops = path(&c, 5, c.id(9)).expect("route");
    assert!((3..=4).contains(&hops.len()), "{hops:?}");
}

#[test]
fn server_crash_is_repaired() {
    let mut c = cluster(4, 10, 2);
    c.run_until_cond(secs(20), ms(100), |c| converged(c, 4)).expect("converged");
    let dead = c.id(1);
    c.crash(1, true);
    let took = c.run_until_cond(secs(40), ms(100), |c| converged(c, 4)).expect("repaired");
    assert!(took <= secs(15), "repair took {took:?}");
    for s in c.up_slots() {
        let p = c.proto(s).expect("up");
        assert!(!ids(p.servers()).contains(&dead));
        assert!(!p.neighbors().contains(&dead));
        for cl in 4..14 {
            assert!(!p.servers_of(c.id(cl)).contains(&dead));
        }
    }
    all_routes(&c).expect("routes");
    check_views(&c).expect("views");
}

#[test]
fn client_crash_is_removed_from_every_server_and_a_restart_is_a_new_client() {
    for noisy in [true, false] {
        let mut c = cluster(3, 6, 3);
        c.run_until_cond(secs(20), ms(100), |c| converged(c, 3)).expect("converged");
        let old = c.id(5);
        c.crash(5, noisy);
        let gone = |c: &Cluster<ClientServer>| {
            (0..3).all(|s| {
                !ids(c.proto(s).expect("up").clients()).contains(&old) && !c.reported_members(s).contains(&old)
            })
        };
        let took = c.run_until_cond(secs(30), ms(100), gone).expect("client removed");
        assert!(took <= secs(8), "noisy {noisy}: took {took:?}");
        c.restart(5);
        c.run_until_cond(secs(20), ms(100), |c| converged(c, 3)).expect("the new incarnation attaches");
        assert!(gone(&c));
        assert!((0..3).all(|s| ids(c.proto(s).expect("up").clients()).contains(&c.id(5))));
    }
}

#[test]
fn server_partition_heals() {
    let mut c = cluster(4, 8, 4);
    c.run_until_cond(secs(20), ms(100), |c| converged(c, 4)).expect("converged");
    // Servers 0,1 and half the clients against servers 2,3 and the other half.
    c.partition(|s| u32::from(if s < 4 { s >= 2 } else { s >= 8 }));
    c.run_for(secs(30));
    check_views(&c).expect("views while split");
    c.heal();
    let took = c.run_until_cond(secs(60), ms(100), |c| converged(c, 4)).expect("healed");
    assert!(took <= secs(30), "healing took {took:?}");
    all_routes(&c).expect("routes");
}

#[test]
fn garbage_is_ignored() {
    let mut c = cluster(2, 2, 5);
    c.run_until_cond(secs(20), ms(100), |c| converged(c, 2)).expect("converged");
    let fake = Member { id: PeerId(99), name: "fake".into(), addr: "10.9.9.9:1".parse().expect("addr") };
    let (s0, s1, c2, c3) = (c.id(0), c.id(1), c.id(2), c.id(3));
    // A client claims to serve clients; a stranger talks to everyone; a server is told to be a
    // client's server list.
    c.inject(c2, s0, ClientServerMessage::Clients { version: 100, clients: vec![fake.clone()] });
    c.inject(PeerId(7), s0, ClientServerMessage::Clients { version: 100, clients: vec![fake.clone()] });
    c.inject(PeerId(7), c2, ClientServerMessage::Servers(vec![fake.clone()]));
    c.inject(c3, c2, ClientServerMessage::Servers(vec![fake.clone()]));
    c.inject(s1, s0, ClientServerMessage::Servers(vec![fake.clone()]));
    c.inject(s0, c2, ClientServerMessage::Hello);
    c.inject(s0, c2, ClientServerMessage::Clients { version: 1, clients: vec![fake.clone()] });
    c.run_for(secs(5));
    for s in 0..4 {
        let p = c.proto(s).expect("up");
        assert!(!ids(p.servers()).contains(&fake.id) && !ids(p.clients()).contains(&fake.id), "slot {s}");
        assert!(p.route(fake.id).is_none_or(|hop| hop != fake.id));
    }
    assert!(converged(&c, 2));
}

#[test]
fn a_client_knows_its_servers_only_and_attaches_to_a_bounded_number() {
    let mut c = cluster(6, 3, 6);
    c.run_until_cond(secs(20), ms(100), |c| converged(c, 6)).expect("converged");
    for s in 6..9 {
        let p = c.proto(s).expect("up");
        assert_eq!(p.neighbors().len(), 3, "max_servers_per_client");
        assert_eq!(p.servers().len(), 6, "but knows every server");
        assert!(p.clients().is_empty());
        assert_eq!(p.snapshot().passive.len(), 3);
    }
    // Each client is announced by exactly the servers it is attached to.
    for s in 6..9 {
        let attached: BTreeSet<PeerId> = c.proto(s).expect("up").neighbors().into_iter().collect();
        for srv in 0..6 {
            let said: BTreeSet<PeerId> = c.proto(srv).expect("up").servers_of(c.id(s)).into_iter().collect();
            assert_eq!(said, attached, "server {srv} about client {s}");
        }
    }
}

#[test]
fn leaving_client_and_server() {
    let mut c = cluster(3, 4, 7);
    c.run_until_cond(secs(20), ms(100), |c| converged(c, 3)).expect("converged");
    let (client, server) = (c.id(4), c.id(2));
    c.feed(4, Input::Leave);
    c.feed(2, Input::Leave);
    c.run_for(secs(1));
    c.crash(4, true);
    c.crash(2, true);
    let took = c.run_until_cond(secs(30), ms(100), |c| converged(c, 3)).expect("converged without them");
    assert!(took <= secs(5), "{took:?}");
    for s in c.up_slots() {
        let p = c.proto(s).expect("up");
        assert!(!ids(p.servers()).contains(&server) && !ids(p.clients()).contains(&client));
    }
}

#[derive(Clone, Debug)]
enum Op {
    Crash(usize, bool),
    Restart(usize),
    Wait(u64),
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn converges_after_random_churn(
        seed in any::<u64>(),
        ops in prop::collection::vec(prop_oneof![
            (1usize..12, any::<bool>()).prop_map(|(s, n)| Op::Crash(s, n)),
            (1usize..12).prop_map(Op::Restart),
            (1u64..10).prop_map(Op::Wait),
        ], 1..10),
    ) {
        let mut c = cluster(4, 8, seed);
        c.dial_by_address = seed % 2 == 1;
        c.run_for(secs(3));
        for op in ops {
            match op {
                Op::Crash(s, noisy) => if c.is_up(s) { c.crash(s, noisy) },
                Op::Restart(s) => c.restart(s),
                Op::Wait(t) => c.run_for(secs(t)),
            }
            c.run_for(ms(300));
            prop_assert!(check_views(&c).is_ok(), "{:?}", check_views(&c));
        }
        for s in 0..12 {
            if !c.is_up(s) {
                c.restart(s);
            }
        }
        prop_assert!(c.run_until_cond(secs(60), ms(250), |c| converged(c, 4)).is_some(), "no convergence");
        prop_assert!(all_routes(&c).is_ok(), "{:?}", all_routes(&c));
    }
}
