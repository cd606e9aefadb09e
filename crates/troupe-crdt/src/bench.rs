//! CRDT benchmarks, run by `troupe bench crdt --json`.
//!
//! For AW-Set and AW-Map (of MV-Registers) at two sizes, across 16 replicas with random 64-bit
//! ids: operation throughput, merge time, encoded bytes per element, the size of one add's
//! delta, and the bytes needed to re-converge two replicas that diverged by 1% with
//! `delta(state, digest)` (digests counted) versus shipping full states. Every measurement
//! checks its own result and panics if the run is wrong, so a broken build cannot report a good
//! number.

use crate::codec::Encode;
use crate::map::{AwMap, AwMapOp};
use crate::register::{MvRegister, MvRegisterOp};
use crate::set::{AwSet, AwSetOp};
use crate::traits::{DeltaSync, Mutate};
use serde::Serialize;
use serde_json::{Map, Value};
use std::hint::black_box;
use std::time::Instant;

/// One benchmark result line.
#[derive(Debug, Clone, Serialize)]
pub struct BenchLine {
    /// Always `"crdt"`.
    pub suite: &'static str,
    /// What was measured, e.g. `add_ops_per_sec` or `sync_saving`; the CRDT is in `extra["type"]`.
    pub bench: String,
    /// Unit of `value`.
    pub unit: &'static str,
    /// The measurement.
    pub value: f64,
    /// Parameters and side measurements (`elements`, `replicas`, byte counts, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Replicas in every benchmark.
pub const REPLICAS: usize = 16;

/// Run all CRDT benchmarks. `quick` shrinks sizes for a smoke test.
pub fn run(quick: bool) -> Vec<BenchLine> {
    let sizes: [usize; 2] = if quick { [2_000, 8_000] } else { [10_000, 100_000] };
    // Warm up the allocator and caches so the first measurement is not penalised.
    suite::<AwSet<u64, u64>>(1_000, &mut Vec::new());
    let mut lines = Vec::new();
    for n in sizes {
        suite::<AwSet<u64, u64>>(n, &mut lines);
        suite::<AwMap<u64, MvRegister<u64, u64>, u64>>(n, &mut lines);
    }
    lines
}

/// What the benchmarks need from a type: keyed adds and removes.
trait Subject: Mutate<u64> + DeltaSync + Encode {
    const NAME: &'static str;
    fn add(key: u64) -> Self::Op;
    fn remove(key: u64) -> Self::Op;
    fn size(&self) -> usize;
    fn has(&self, key: u64) -> bool;
}

impl Subject for AwSet<u64, u64> {
    const NAME: &'static str = "awset";
    fn add(key: u64) -> AwSetOp<u64> {
        AwSetOp::Add(key)
    }
    fn remove(key: u64) -> AwSetOp<u64> {
        AwSetOp::Remove(key)
    }
    fn size(&self) -> usize {
        self.len()
    }
    fn has(&self, key: u64) -> bool {
        self.contains(&key)
    }
}

impl Subject for AwMap<u64, MvRegister<u64, u64>, u64> {
    const NAME: &'static str = "awmap";
    fn add(key: u64) -> Self::Op {
        AwMapOp::Apply(key, MvRegisterOp::Write(key.wrapping_mul(7)))
    }
    fn remove(key: u64) -> Self::Op {
        AwMapOp::Remove(key)
    }
    fn size(&self) -> usize {
        self.len()
    }
    fn has(&self, key: u64) -> bool {
        self.contains_key(&key)
    }
}

/// The `i`-th element: distinct for distinct `i` (an odd multiplier is a bijection mod 2^32),
/// scattered over 32 bits like real ids.
fn element(i: usize) -> u64 {
    (i as u64).wrapping_mul(0x9E37_79B1) & 0xFFFF_FFFF
}

/// Replica ids: 64-bit, as random node ids would be.
fn replica(i: usize) -> u64 {
    let mut z = (i as u64).wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z ^ (z >> 31)
}

fn apply<S: Subject>(state: &mut S, op: S::Op, at: usize) -> S {
    match state.apply(op, &replica(at)) {
        Ok(delta) => delta,
        Err(e) => panic!("{}: operation refused: {e}", S::NAME),
    }
}

fn bytes<T: Encode>(value: &T) -> usize {
    match value.encoded_len() {
        Ok(n) => n,
        Err(e) => panic!("encoding failed: {e}"),
    }
}

struct Out<'a> {
    lines: &'a mut Vec<BenchLine>,
    name: &'static str,
    n: usize,
}

impl Out<'_> {
    fn push(&mut self, bench: &str, unit: &'static str, value: f64, extra: &[(&str, Value)]) {
        let mut map = Map::new();
        map.insert("type".into(), self.name.into());
        map.insert("elements".into(), self.n.into());
        map.insert("replicas".into(), REPLICAS.into());
        for (k, v) in extra {
            map.insert((*k).into(), v.clone());
        }
        self.lines.push(BenchLine { suite: "crdt", bench: bench.to_string(), unit, value, extra: map });
    }
}

fn suite<S: Subject>(n: usize, lines: &mut Vec<BenchLine>) {
    let mut out = Out { lines, name: S::NAME, n };

    // 1. Build: 16 replicas each add n/16 distinct elements locally.
    let per = n / REPLICAS;
    let n = per * REPLICAS;
    let started = Instant::now();
    let replicas: Vec<S> = (0..REPLICAS)
        .map(|r| {
            let mut s = S::bottom();
            for i in 0..per {
                black_box(apply(&mut s, S::add(element(r * per + i)), r));
            }
            s
        })
        .collect();
    let secs = started.elapsed().as_secs_f64();
    let built: usize = replicas.iter().map(S::size).sum();
    assert_eq!(built, n, "{}: build lost elements", S::NAME);
    out.push("add_ops_per_sec", "ops/s", n as f64 / secs, &[]);

    // 2. Merge the 16 replicas into one.
    let started = Instant::now();
    let mut full = S::bottom();
    for r in &replicas {
        full.merge(r);
    }
    let ms = started.elapsed().as_secs_f64() * 1e3;
    assert_eq!(full.size(), n, "{}: merge lost elements", S::NAME);
    out.push("merge_16_replicas_ms", "ms", ms, &[]);

    // 3. Mixed updates on the full state: n/10 ops, alternately add a new element and remove
    //    an existing one, at rotating replicas.
    let ops = n / 10 / 2 * 2; // even: as many adds as removes
    let mut mixed = full.clone();
    let started = Instant::now();
    for i in 0..ops {
        let op = if i % 2 == 0 { S::add(element(n + i)) } else { S::remove(element(i)) };
        black_box(apply(&mut mixed, op, i % REPLICAS));
    }
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(mixed.size(), n, "{}: mixed ops miscounted", S::NAME);
    assert!(mixed.has(element(n)) && !mixed.has(element(1)));
    out.push("mixed_ops_per_sec", "ops/s", ops as f64 / secs, &[]);

    // 4. Encoded size of the full state.
    let full_bytes = bytes(&full);
    out.push("bytes_per_element", "bytes", full_bytes as f64 / n as f64, &[("state_bytes", full_bytes.into())]);

    // 5. The delta of one add: constant, whatever the size of the set.
    let mut grown = full.clone();
    let delta = apply(&mut grown, S::add(element(n + ops + 1)), 3);
    let mut other = full.clone();
    other.merge(&delta);
    assert!(other == grown && other.has(element(n + ops + 1)), "{}: add delta does not carry the add", S::NAME);
    out.push("add_delta_bytes", "bytes", bytes(&delta) as f64, &[]);

    // 6. Two replicas diverge by 1% (each: 80% adds of new elements, 20% removes of old ones),
    //    then re-converge: digest + delta(state, digest) each way, versus full states each way.
    let diverge = (n / 100).max(1);
    let mut a = full.clone();
    let mut b = full;
    for i in 0..diverge {
        let (op_a, op_b) = if i % 5 == 4 {
            (S::remove(element(2 * i)), S::remove(element(2 * i + 1)))
        } else {
            (S::add(element(2 * n + 2 * i)), S::add(element(2 * n + 2 * i + 1)))
        };
        apply(&mut a, op_a, 0);
        apply(&mut b, op_b, 1);
    }
    let started = Instant::now();
    let merged = a.join(&b);
    let merge_ms = started.elapsed().as_secs_f64() * 1e3;
    let (digest_a, digest_b) = (a.digest(), b.digest());
    let (to_b, to_a) = (a.delta(&digest_b), b.delta(&digest_a));
    assert!(b.join(&to_b) == merged && a.join(&to_a) == merged, "{}: delta sync did not converge", S::NAME);
    let digest_bytes = bytes(&digest_a) + bytes(&digest_b);
    let delta_bytes = bytes(&to_a) + bytes(&to_b) + digest_bytes;
    let state_bytes = bytes(&a) + bytes(&b);
    out.push("merge_diverged_ms", "ms", merge_ms, &[]);
    out.push(
        "sync_saving",
        "x",
        state_bytes as f64 / delta_bytes as f64,
        &[
            ("full_bytes", state_bytes.into()),
            ("delta_bytes", delta_bytes.into()),
            ("digest_bytes", digest_bytes.into()),
            ("diverged_ops_per_replica", diverge.into()),
        ],
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_run_is_well_formed_and_delta_sync_pays() {
        let lines = run(true);
        assert_eq!(lines.len(), 2 * 2 * 7);
        for line in &lines {
            assert_eq!(line.suite, "crdt");
            assert!(line.value.is_finite() && line.value > 0.0, "{line:?}");
            let json = serde_json::to_value(line).expect("serializable");
            assert!(json.get("elements").is_some() && json.get("bench").is_some());
        }
        for line in lines.iter().filter(|l| l.bench == "sync_saving") {
            assert!(line.value >= 20.0, "{line:?}");
        }
        // One add's delta does not grow with the set.
        for name in ["awset", "awmap"] {
            let sizes: Vec<f64> = lines
                .iter()
                .filter(|l| l.bench == "add_delta_bytes" && l.extra["type"] == name)
                .map(|l| l.value)
                .collect();
            assert_eq!(sizes.len(), 2);
            assert!(sizes[1] <= sizes[0] + 2.0, "{name}: {sizes:?}");
        }
    }
}
