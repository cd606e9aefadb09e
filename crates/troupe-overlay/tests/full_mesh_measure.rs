//! Measurements, not checks: run with
//! `cargo test -p troupe-overlay --release --test full_mesh_measure -- --ignored --nocapture`.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{ms, secs, Cluster};
use troupe_overlay::{
    ClientServer, ClientServerConfig, FullMesh, FullMeshConfig, FullMeshMessage, Member, Membership, PeerId, Role,
};

fn mesh(n: usize, seed: u64) -> Cluster<FullMesh> {
    Cluster::new(n, seed, |m, s| FullMesh::new(m, FullMeshConfig { seed: s, ..FullMeshConfig::default() }))
}

fn converged(c: &Cluster<FullMesh>) -> bool {
    let up: BTreeSet<PeerId> = c.up_slots().into_iter().map(|s| c.id(s)).collect();
    c.up_slots().into_iter().all(|s| {
        let p = c.proto(s).expect("up");
        p.members().len() + 1 == up.len() && p.neighbors().len() + 1 == up.len()
    })
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

#[test]
#[ignore]
fn measure_full_mesh() {
    for n in [16usize, 64, 128, 200] {
        let wall = Instant::now();
        let mut c = mesh(n, 42);
        for s in 0..n {
            c.start(s);
        }
        let join = c.run_until_cond(secs(120), ms(100), converged);
        // Steady state: count messages over 10 s.
        c.capture = true;
        let before = c.delivered;
        c.run_for(secs(10));
        let per_node_s = (c.delivered - before) as f64 / n as f64 / 10.0;
        let state_bytes = c
            .captured
            .iter()
            .filter_map(|m| match &m.msg {
                FullMeshMessage::State { entries, .. } if entries.len() == n => {
                    Some(postcard::to_stdvec(&m.msg).expect("encode").len())
                }
                _ => None,
            })
            .max();
        println!(
            "full mesh n={n}: mass join through one seed converged in {join:?}; steady {per_node_s:.1} msgs/node/s; full state {state_bytes:?} bytes; wall {:?}",
            wall.elapsed()
        );
    }
    for noisy in [true, false] {
        let mut times = Vec::new();
        for seed in 0..20 {
            let mut c = mesh(16, seed);
            for s in 0..16 {
                c.start(s);
            }
            c.run_until_cond(secs(30), ms(100), converged).expect("converged");
            let victim = c.id(5);
            c.crash(5, noisy);
            let t = c
                .run_until_cond(secs(60), ms(50), |c| {
                    c.up_slots().into_iter().all(|s| !c.proto(s).expect("up").is_member(&victim))
                })
                .expect("removed");
            times.push(t);
        }
        println!(
            "full mesh crash removal (noisy {noisy}, 16 nodes, 20 seeds): min {:?} p50 {:?} max {:?}",
            percentile(&mut times, 0.0),
            percentile(&mut times, 0.5),
            percentile(&mut times, 1.0)
        );
    }
}

#[test]
#[ignore]
fn measure_client_server() {
    let (servers, clients) = (8usize, 400usize);
    let wall = Instant::now();
    let mut c = Cluster::new(servers + clients, 7, move |m: Member, s| {
        let slot: usize = m.name[1..].parse().expect("slot");
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
    }
    c.run_for(secs(2));
    c.seeds = vec![0, 1];
    for s in servers..servers + clients {
        c.start(s);
    }
    let all_known = |c: &Cluster<ClientServer>| {
        (0..servers)
            .all(|s| c.proto(s).is_some_and(|p| p.clients().len() == clients && p.servers().len() == servers - 1))
            && (servers..servers + clients).all(|s| c.proto(s).is_some_and(|p| p.neighbors().len() == 3))
    };
    let join = c.run_until_cond(secs(60), ms(100), all_known);
    let before = c.delivered;
    c.run_for(secs(10));
    let rate = (c.delivered - before) as f64 / 10.0;
    c.crash(3, true);
    let repair = c.run_until_cond(secs(60), ms(100), |c| {
        (0..servers)
            .filter(|s| *s != 3)
            .all(|s| c.proto(s).is_some_and(|p| p.servers().len() == servers - 2 && p.clients().len() == clients))
            && (servers..servers + clients).all(|s| c.proto(s).is_some_and(|p| p.neighbors().len() == 3))
    });
    println!(
        "client-server {servers} servers + {clients} clients: all attached and announced in {join:?}; steady {rate:.0} msgs/s in total; server crash repaired in {repair:?}; wall {:?}",
        wall.elapsed()
    );
}
