//! Single-node behaviour, driven input by input.

use super::*;
use proptest::prelude::*;

const ME: PeerId = PeerId(1);
const A: PeerId = PeerId(2);
const B: PeerId = PeerId(3);
const C: PeerId = PeerId(4);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn node(peers: &[PeerId]) -> Plumtree {
    let mut p = Plumtree::new(ME, PlumtreeConfig::default(), 7);
    let mut out = Vec::new();
    for &q in peers {
        p.handle(PlumtreeInput::NeighborUp(q), ms(0), &mut out);
    }
    assert!(out.is_empty());
    p
}

fn run(p: &mut Plumtree, input: PlumtreeInput, now: Duration) -> Vec<PlumtreeOutput> {
    let mut out = Vec::new();
    p.handle(input, now, &mut out);
    out
}

fn gossip(origin: PeerId, seq: u64, hops: u32) -> PlumtreeMessage {
    PlumtreeMessage::Gossip {
        id: MessageId { origin, seq },
        topic: Topic(5),
        hops,
        age_ms: 0,
        payload: Bytes::from_static(b"hi"),
    }
}

fn sends(out: &[PlumtreeOutput]) -> Vec<(PeerId, &'static str)> {
    out.iter()
        .filter_map(|o| match o {
            // Anti-entropy rounds start at a random phase: leave them out.
            PlumtreeOutput::Send { msg: PlumtreeMessage::Digest { .. }, .. } => None,
            PlumtreeOutput::Send { to, msg } => Some((*to, msg.kind())),
            PlumtreeOutput::Deliver { .. } => None,
        })
        .collect()
}

fn delivered(out: &[PlumtreeOutput]) -> Vec<(MessageId, u32)> {
    out.iter()
        .filter_map(|o| match o {
            PlumtreeOutput::Deliver { id, hops, .. } => Some((*id, *hops)),
            PlumtreeOutput::Send { .. } => None,
        })
        .collect()
}

#[test]
fn broadcast_delivers_locally_and_pushes_eagerly() {
    let mut p = node(&[A, B]);
    let out = run(&mut p, PlumtreeInput::Broadcast { topic: Topic(1), payload: Bytes::from_static(b"x") }, ms(0));
    assert_eq!(delivered(&out), vec![(MessageId { origin: ME, seq: 1 }, 0)]);
    assert_eq!(sends(&out), vec![(A, "gossip"), (B, "gossip")]);
    assert_eq!(p.stats().broadcasts, 1);
}

#[test]
fn duplicate_prunes_the_sender_and_prune_makes_lazy() {
    let mut p = node(&[A, B, C]);
    let out = run(&mut p, PlumtreeInput::Message { from: A, msg: gossip(C, 1, 0) }, ms(0));
    assert_eq!(delivered(&out), vec![(MessageId { origin: C, seq: 1 }, 1)]);
    // Forwarded to the other eager peers, not back to the sender.
    assert_eq!(sends(&out), vec![(B, "gossip"), (C, "gossip")]);
    let out = run(&mut p, PlumtreeInput::Message { from: B, msg: gossip(C, 1, 0) }, ms(1));
    assert!(delivered(&out).is_empty());
    assert_eq!(sends(&out), vec![(B, "prune")]);
    assert_eq!(p.lazy_peers().collect::<Vec<_>>(), vec![B]);
    run(&mut p, PlumtreeInput::Message { from: C, msg: PlumtreeMessage::Prune }, ms(2));
    assert_eq!(p.eager_peers().collect::<Vec<_>>(), vec![A]);
    // The next message goes eagerly to A only, and lazily to B and C on the lazy tick.
    let out = run(&mut p, PlumtreeInput::Broadcast { topic: Topic(1), payload: Bytes::from_static(b"y") }, ms(3));
    assert_eq!(sends(&out), vec![(A, "gossip")]);
    let out = run(&mut p, PlumtreeInput::Tick, ms(10));
    assert!(sends(&out).is_empty(), "lazy tick not due yet");
    let out = run(&mut p, PlumtreeInput::Tick, ms(1010));
    assert_eq!(sends(&out), vec![(B, "ihave"), (C, "ihave")]);
    let s = p.stats();
    assert_eq!((s.duplicates, s.prune_sent, s.prune_received), (1, 1, 1));
}

#[test]
fn ihave_then_graft_in_turn_then_eager_answer() {
    let mut p = node(&[A, B]);
    run(&mut p, PlumtreeInput::Tick, ms(0));
    let id = MessageId { origin: C, seq: 4 };
    for from in [A, B] {
        let msg = PlumtreeMessage::IHave { ids: vec![Announcement { id, hops: 2 }] };
        run(&mut p, PlumtreeInput::Message { from, msg }, ms(100));
    }
    let out = run(&mut p, PlumtreeInput::Tick, ms(1000));
    assert!(sends(&out).iter().all(|(_, k)| *k != "graft"), "graft timeout not over");
    let out = run(&mut p, PlumtreeInput::Tick, ms(1100));
    let grafts: Vec<_> =
        out.iter().filter(|o| matches!(o, PlumtreeOutput::Send { msg: PlumtreeMessage::Graft { .. }, .. })).collect();
    assert_eq!(grafts, vec![&PlumtreeOutput::Send { to: A, msg: PlumtreeMessage::Graft { ids: vec![id] } }]);
    // A is down before it answers: the graft falls to B at the retry timeout.
    run(&mut p, PlumtreeInput::NeighborDown(A), ms(1200));
    let out = run(&mut p, PlumtreeInput::Tick, ms(1600));
    assert_eq!(sends(&out), vec![(B, "graft")]);
    assert!(p.eager_peers().any(|q| q == B));
    let out = run(&mut p, PlumtreeInput::Message { from: B, msg: gossip(C, 4, 2) }, ms(1700));
    assert_eq!(delivered(&out), vec![(id, 3)]);
    assert_eq!(p.stats().missing, 0);
}

#[test]
fn graft_is_answered_from_the_cache() {
    let mut p = node(&[A]);
    run(&mut p, PlumtreeInput::Message { from: A, msg: PlumtreeMessage::Prune }, ms(0));
    assert_eq!(p.lazy_peers().count(), 1);
    let id = p.broadcast(Topic(9), Bytes::from_static(b"z"), ms(0), &mut Vec::new()).expect("small payload");
    let msg = PlumtreeMessage::Graft { ids: vec![id, MessageId { origin: C, seq: 1 }] };
    let out = run(&mut p, PlumtreeInput::Message { from: A, msg }, ms(10));
    assert_eq!(sends(&out), vec![(A, "gossip")]);
    assert_eq!(p.eager_peers().collect::<Vec<_>>(), vec![A]);
}

#[test]
fn oversized_and_expired_payloads_are_refused() {
    let config = PlumtreeConfig { max_payload: 4, ..PlumtreeConfig::default() };
    let mut p = Plumtree::new(ME, config, 1);
    let err = p.broadcast(Topic(0), Bytes::from_static(b"12345"), ms(0), &mut Vec::new());
    assert_eq!(err, Err(PlumtreeError::PayloadTooLarge { size: 5, max: 4 }));
    run(&mut p, PlumtreeInput::NeighborUp(A), ms(0));
    let big = PlumtreeMessage::Gossip {
        id: MessageId { origin: C, seq: 1 },
        topic: Topic(0),
        hops: 0,
        age_ms: 0,
        payload: Bytes::from_static(b"12345"),
    };
    assert!(run(&mut p, PlumtreeInput::Message { from: A, msg: big }, ms(0)).is_empty());
    let old = PlumtreeMessage::Gossip {
        id: MessageId { origin: C, seq: 2 },
        topic: Topic(0),
        hops: 0,
        age_ms: 301_000,
        payload: Bytes::from_static(b"1"),
    };
    assert!(run(&mut p, PlumtreeInput::Message { from: A, msg: old }, ms(0)).is_empty());
    let s = p.stats();
    assert_eq!((s.broadcasts_refused, s.ignored, s.expired, s.delivered), (1, 1, 1, 0));
}

#[test]
fn hop_count_optimisation_swaps_parent() {
    let config = PlumtreeConfig { optimization_threshold: Some(3), ..PlumtreeConfig::default() };
    let mut p = Plumtree::new(ME, config, 7);
    run(&mut p, PlumtreeInput::NeighborUp(A), ms(0));
    run(&mut p, PlumtreeInput::NeighborUp(B), ms(0));
    // B is lazy; the message came from A after 6 hops.
    run(&mut p, PlumtreeInput::Message { from: B, msg: PlumtreeMessage::Prune }, ms(0));
    run(&mut p, PlumtreeInput::Message { from: A, msg: gossip(C, 1, 5) }, ms(0));
    // B announces it at hop 1: through B it would have been 2 hops, 4 fewer.
    let msg = PlumtreeMessage::IHave { ids: vec![Announcement { id: MessageId { origin: C, seq: 1 }, hops: 1 }] };
    let out = run(&mut p, PlumtreeInput::Message { from: B, msg: msg.clone() }, ms(10));
    assert_eq!(sends(&out), vec![(B, "graft"), (A, "prune")]);
    assert_eq!(p.eager_peers().collect::<Vec<_>>(), vec![B]);
    assert_eq!(p.lazy_peers().collect::<Vec<_>>(), vec![A]);
    assert_eq!(p.stats().optimization_grafts, 1);
    // Only once per message.
    run(&mut p, PlumtreeInput::Message { from: A, msg: PlumtreeMessage::Prune }, ms(11));
    let out = run(&mut p, PlumtreeInput::Message { from: B, msg }, ms(12));
    assert!(sends(&out).is_empty());
}

#[test]
fn anti_entropy_exchanges_what_each_side_lacks() {
    // Two nodes that never saw each other's messages.
    let mut x = Plumtree::new(A, PlumtreeConfig::default(), 1);
    let mut y = Plumtree::new(B, PlumtreeConfig::default(), 2);
    let mut sink = Vec::new();
    for i in 0..3u8 {
        x.broadcast(Topic(0), Bytes::from(vec![i]), ms(0), &mut sink).expect("ok");
    }
    y.broadcast(Topic(0), Bytes::from_static(b"y"), ms(0), &mut sink).expect("ok");
    x.handle(PlumtreeInput::NeighborUp(B), ms(0), &mut sink);
    y.handle(PlumtreeInput::NeighborUp(A), ms(0), &mut sink);
    // Tick x until its first anti-entropy round (random phase within 10 s).
    let mut digest = None;
    for t in 0..=40 {
        let out = run(&mut x, PlumtreeInput::Tick, ms(t * 250));
        digest = out.into_iter().find_map(|o| match o {
            PlumtreeOutput::Send { to, msg: msg @ PlumtreeMessage::Digest { .. } } => Some((to, msg)),
            _ => None,
        });
        if digest.is_some() {
            break;
        }
    }
    let (to, digest) = digest.expect("an anti-entropy round within one interval");
    assert_eq!(to, B);
    // Route messages back and forth until quiet.
    let mut in_flight = vec![(A, B, digest)];
    let (mut got_x, mut got_y) = (0, 0);
    while let Some((from, to, msg)) = in_flight.pop() {
        let node = if to == A { &mut x } else { &mut y };
        for o in run(node, PlumtreeInput::Message { from, msg }, ms(10_000)) {
            match o {
                PlumtreeOutput::Send { to: dest, msg } => in_flight.push((to, dest, msg)),
                PlumtreeOutput::Deliver { .. } if to == A => got_x += 1,
                PlumtreeOutput::Deliver { .. } => got_y += 1,
            }
        }
    }
    assert_eq!((got_x, got_y), (1, 3));
    assert_eq!(x.stats().repaired, 1);
    assert!(y.has_seen(&MessageId { origin: A, seq: 3 }));
}

#[test]
fn neighbours_are_bounded_and_self_is_not_one() {
    let config = PlumtreeConfig { max_neighbors: 2, ..PlumtreeConfig::default() };
    let mut p = Plumtree::new(ME, config, 1);
    for q in [ME, A, B, C] {
        run(&mut p, PlumtreeInput::NeighborUp(q), ms(0));
    }
    assert_eq!(p.eager_peers().collect::<Vec<_>>(), vec![A, B]);
    assert_eq!(p.stats().neighbors_refused, 1);
}

/// Found by the garbage proptest: a peer sending a message under our own origin id must not
/// make us skip (or deliver twice) our own next broadcast.
#[test]
fn forged_own_ids_are_ignored() {
    let mut p = node(&[A]);
    let forged = PlumtreeMessage::Repair {
        id: MessageId { origin: ME, seq: 1 },
        topic: Topic(0),
        hops: 0,
        age_ms: 0,
        payload: Bytes::new(),
    };
    assert!(delivered(&run(&mut p, PlumtreeInput::Message { from: A, msg: forged }, ms(0))).is_empty());
    let ihave = PlumtreeMessage::IHave { ids: vec![Announcement { id: MessageId { origin: ME, seq: 2 }, hops: 0 }] };
    run(&mut p, PlumtreeInput::Message { from: A, msg: ihave }, ms(0));
    assert_eq!(p.stats().missing, 0);
    let mut out = Vec::new();
    let id = p.broadcast(Topic(0), Bytes::from_static(b"mine"), ms(1), &mut out).expect("ok");
    assert_eq!(id.seq, 1);
    assert_eq!(delivered(&out), vec![(id, 0)]);
}

#[test]
fn membership_events_map_to_neighbour_inputs() {
    use crate::member::Member;
    use crate::membership::MembershipEvent;
    let m = Member { id: A, name: "a".into(), addr: "127.0.0.1:1".parse().expect("addr") };
    assert_eq!(
        PlumtreeInput::from_membership_event(&MembershipEvent::NeighborUp(m.clone())),
        Some(PlumtreeInput::NeighborUp(A))
    );
    assert_eq!(
        PlumtreeInput::from_membership_event(&MembershipEvent::NeighborDown(A)),
        Some(PlumtreeInput::NeighborDown(A))
    );
    assert_eq!(PlumtreeInput::from_membership_event(&MembershipEvent::MemberUp(m)), None);
}

fn arb_id() -> impl Strategy<Value = MessageId> {
    (0u64..6, 0u64..20).prop_map(|(o, seq)| MessageId { origin: PeerId(o), seq })
}

fn arb_message() -> impl Strategy<Value = PlumtreeMessage> {
    let payload = proptest::collection::vec(any::<u8>(), 0..8).prop_map(Bytes::from);
    prop_oneof![
        (arb_id(), any::<u32>(), any::<u32>(), any::<u64>(), payload.clone()).prop_map(
            |(id, t, hops, age_ms, payload)| {
                PlumtreeMessage::Gossip { id, topic: Topic(t), hops, age_ms: age_ms % 400_000, payload }
            }
        ),
        (arb_id(), any::<u32>(), payload).prop_map(|(id, hops, payload)| PlumtreeMessage::Repair {
            id,
            topic: Topic(0),
            hops,
            age_ms: 0,
            payload
        }),
        proptest::collection::vec((arb_id(), any::<u32>()), 0..6).prop_map(|v| PlumtreeMessage::IHave {
            ids: v.into_iter().map(|(id, hops)| Announcement { id, hops }).collect()
        }),
        proptest::collection::vec(arb_id(), 0..6).prop_map(|ids| PlumtreeMessage::Graft { ids }),
        Just(PlumtreeMessage::Prune),
        proptest::collection::vec((0u64..6, any::<u64>(), any::<u64>()), 0..4).prop_map(|v| PlumtreeMessage::Digest {
            ranges: v.into_iter().map(|(o, first, last)| IdRange { origin: PeerId(o), first, last }).collect()
        }),
        (proptest::collection::vec(arb_id(), 0..6), proptest::collection::vec((0u64..6, 0u64..30, 0u64..30), 0..4))
            .prop_map(|(want, have)| PlumtreeMessage::DigestReply {
                want,
                have: have.into_iter().map(|(o, first, last)| IdRange { origin: PeerId(o), first, last }).collect()
            }),
        proptest::collection::vec(arb_id(), 0..6).prop_map(|ids| PlumtreeMessage::Request { ids }),
    ]
}

fn arb_input() -> impl Strategy<Value = PlumtreeInput> {
    prop_oneof![
        (0u64..6).prop_map(|p| PlumtreeInput::NeighborUp(PeerId(p))),
        (0u64..6).prop_map(|p| PlumtreeInput::NeighborDown(PeerId(p))),
        ((0u64..6), arb_message()).prop_map(|(p, msg)| PlumtreeInput::Message { from: PeerId(p), msg }),
        Just(PlumtreeInput::Broadcast { topic: Topic(0), payload: Bytes::from_static(b"b") }),
        Just(PlumtreeInput::Tick),
    ]
}

proptest! {
    /// Arbitrary inputs, including nonsense from unknown peers, never panic and never deliver a
    /// message id twice; the gauges stay within their limits.
    #[test]
    fn garbage_never_panics_nor_duplicates(inputs in proptest::collection::vec((arb_input(), 0u64..2000), 1..200)) {
        let config = PlumtreeConfig {
            max_digest_ids: 64,
            max_batch: 8,
            cache_max_messages: 16,
            max_missing: 8,
            max_lazy_queue: 4,
            ..PlumtreeConfig::default()
        };
        let mut p = Plumtree::new(ME, config, 3);
        let mut now = Duration::ZERO;
        let mut seen = std::collections::HashSet::new();
        for (input, dt) in inputs {
            now += ms(dt);
            let mut out = Vec::new();
            p.handle(input, now, &mut out);
            for o in out {
                match o {
                    PlumtreeOutput::Deliver { id, .. } => prop_assert!(seen.insert(id), "delivered twice: {}", id),
                    PlumtreeOutput::Send { to, msg } => {
                        prop_assert!(to != ME);
                        if let PlumtreeMessage::IHave { ids } = &msg {
                            prop_assert!(ids.len() <= 8);
                        }
                    }
                }
            }
            let s = p.stats();
            prop_assert!(s.cache_messages <= 16);
            prop_assert!(s.missing <= 8);
            prop_assert!(s.lazy_queued <= 4 * 6);
            prop_assert!(p.eager_peers().all(|q| !p.lazy_peers().any(|l| l == q)), "eager and lazy overlap");
        }
    }

    /// Messages survive a serialization round trip (the driver's job, checked here once).
    #[test]
    fn messages_round_trip(msg in arb_message()) {
        let bytes = postcard::to_allocvec(&msg).expect("serializes");
        let back: PlumtreeMessage = postcard::from_bytes(&bytes).expect("deserializes");
        prop_assert_eq!(back, msg);
    }

    /// Arbitrary bytes decode to an error or a message, never a panic.
    #[test]
    fn garbage_bytes_do_not_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = postcard::from_bytes::<PlumtreeMessage>(&bytes);
    }
}
