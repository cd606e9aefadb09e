//! Convergence: random operations at several replicas, disseminated as full states, delta
//! groups and digest-driven deltas through a network that loses, duplicates and reorders
//! messages (all sent as bytes); after a final round of anti-entropy every replica is equal, to
//! the join of everything, with no update lost.

use crate::common::*;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use troupe_crdt::*;

const NODES: usize = 4;

#[derive(Clone, Debug)]
enum Event<O> {
    /// Node performs an operation.
    Op(usize, O),
    /// Node `.0` sends its full state to `.1`.
    SendState(usize, usize),
    /// Node `.0` sends `.1` the join of the deltas it made since its last send to `.1`.
    SendDeltas(usize, usize),
    /// Node `.0` sends its digest to `.1`, which will answer with a delta.
    SendDigest(usize, usize),
    /// The network delivers one queued message.
    Deliver(prop::sample::Index),
    /// The network loses one.
    Drop(prop::sample::Index),
    /// The network duplicates one.
    Duplicate(prop::sample::Index),
}

#[derive(Clone, Debug)]
enum Payload {
    /// A state or delta, to merge.
    Merge(Vec<u8>),
    /// A digest from `from`, to answer.
    Digest { from: usize, bytes: Vec<u8> },
}

/// An event before decoding: `(kind, node, node, operation code, message pick)`.
type RawEvent = (u8, u8, u8, u32, prop::sample::Index);

fn raw_events() -> BoxedStrategy<Vec<RawEvent>> {
    proptest::collection::vec(any::<RawEvent>(), 1..90).boxed()
}

/// Decodes raw events; operations are the most frequent, then deliveries.
fn decode_events<S: Subject>(raw: &[RawEvent]) -> Vec<Event<S::Op>> {
    let n = |x: u8| usize::from(x) % NODES;
    raw.iter()
        .map(|&(kind, i, j, code, ix)| match kind % 22 {
            0..=7 => Event::Op(n(i), S::op(code)),
            8 => Event::SendState(n(i), n(j)),
            9..=11 => Event::SendDeltas(n(i), n(j)),
            12 => Event::SendDigest(n(i), n(j)),
            13..=18 => Event::Deliver(ix),
            19 | 20 => Event::Drop(ix),
            _ => Event::Duplicate(ix),
        })
        .collect()
}

fn bytes<T: Encode>(value: &T) -> Result<Vec<u8>, TestCaseError> {
    value.to_bytes().map_err(|e| TestCaseError::fail(e.to_string()))
}

fn decode<T: Encode>(b: &[u8]) -> Result<T, TestCaseError> {
    T::from_bytes(b).map_err(|e| TestCaseError::fail(e.to_string()))
}

fn converges<S: Subject>(raw: &[RawEvent]) -> Result<(), TestCaseError> {
    let script = decode_events::<S>(raw);
    context(run_script::<S>(script.clone()), &script)
}

fn run_script<S: Subject>(script: Vec<Event<S::Op>>) -> Result<(), TestCaseError> {
    let mut nodes: Vec<S> = (0..NODES).map(|_| S::bottom()).collect();
    // buffers[i][j]: deltas node i made that it has not yet sent to j.
    let mut buffers: Vec<Vec<S>> = (0..NODES).map(|_| (0..NODES).map(|_| S::bottom()).collect()).collect();
    let mut all_deltas = S::bottom();
    let mut net: Vec<(usize, Payload)> = Vec::new();

    for event in script {
        match event {
            Event::Op(i, op) => {
                let replica = Rep::try_from(i).expect("few nodes");
                if let Ok(delta) = nodes[i].apply(op, &replica) {
                    for buffer in &mut buffers[i] {
                        buffer.merge(&delta);
                    }
                    all_deltas.merge(&delta);
                }
            }
            Event::SendState(i, j) => net.push((j, Payload::Merge(bytes(&nodes[i])?))),
            Event::SendDeltas(i, j) => {
                let group = std::mem::replace(&mut buffers[i][j], S::bottom());
                if !group.is_bottom() {
                    net.push((j, Payload::Merge(bytes(&group)?)));
                }
            }
            Event::SendDigest(i, j) => net.push((j, Payload::Digest { from: i, bytes: bytes(&nodes[i].digest())? })),
            Event::Deliver(ix) if !net.is_empty() => {
                let (to, payload) = net.remove(ix.index(net.len()));
                match payload {
                    Payload::Merge(b) => {
                        let before = nodes[to].clone();
                        nodes[to].merge(&decode::<S>(&b)?);
                        prop_assert!(before.is_inflation(&nodes[to]));
                    }
                    Payload::Digest { from, bytes: b } => {
                        let digest: S::Digest = decode(&b)?;
                        net.push((from, Payload::Merge(bytes(&nodes[to].delta(&digest))?)));
                    }
                }
            }
            Event::Drop(ix) if !net.is_empty() => {
                net.remove(ix.index(net.len()));
            }
            Event::Duplicate(ix) if !net.is_empty() => {
                let copy = net[ix.index(net.len())].clone();
                net.push(copy);
            }
            Event::Deliver(_) | Event::Drop(_) | Event::Duplicate(_) => {}
        }
    }

    // Quiescence: pairwise digest-driven anti-entropy, twice around.
    let everything = nodes.iter().fold(S::bottom(), |acc, n| acc.join(n));
    for _ in 0..2 {
        for i in 0..NODES {
            for j in 0..NODES {
                let reply: S = decode(&bytes(&nodes[i].delta(&nodes[j].digest()))?)?;
                nodes[j].merge(&reply);
            }
        }
    }
    for node in &nodes {
        prop_assert_eq!(node, &everything, "converged to the join of all replicas");
        prop_assert!(S::same_value(&node.query(), &everything.query()));
    }
    prop_assert!(all_deltas.leq(&everything), "no update lost");
    Ok(())
}

macro_rules! convergence {
    ($($name:ident: $ty:ty,)*) => {$(
        #[test]
        fn $name() {
            property(128, raw_events(), &|raw| converges::<$ty>(&raw));
        }
    )*};
}

convergence! {
    gcounter: GCounter<Rep>,
    pncounter: PnCounter<Rep>,
    bounded_counter: BoundedCounter<Rep>,
    lexcounter: LexCounter<Rep>,
    maxint: MaxInt,
    gset: GSet<u8>,
    twopset: TwoPSet<u8>,
    orset: OrSet<u8, Rep>,
    awset: AwSet<u8, Rep>,
    lww_register: LwwRegister<u8, Rep>,
    mv_register: MvRegister<u8, Rep>,
    ivar: IVar<u8>,
    ewflag: EwFlag<Rep>,
    dwflag: DwFlag<Rep>,
    boolean: Boolean,
    pair: Pair<GCounter<Rep>, AwSet<u8, Rep>>,
    gmap_of_counters: GMap<u8, PnCounter<Rep>>,
    awmap_of_sets: AwMap<u8, AwSet<u8, Rep>, Rep>,
    awmap_of_maps: AwMap<u8, AwMap<u8, EwFlag<Rep>, Rep>, Rep>,
    mvmap: MvMap<u8, u8, Rep>,
}
