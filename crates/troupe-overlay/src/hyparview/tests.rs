//! Unit tests of single HyParView nodes fed by hand.

use std::net::{Ipv4Addr, SocketAddr};

use super::*;

fn member(i: u64) -> Member {
    Member { id: PeerId(i), name: format!("n{i}"), addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 9000 + i as u16)) }
}

fn node(i: u64) -> HyParView {
    HyParView::new(member(i), HyParViewConfig::with_seed(i)).expect("valid config")
}

const T: Duration = Duration::from_millis(10);

fn step(n: &mut HyParView, input: Input<HyParViewMessage>) -> Out {
    step_at(n, input, T)
}

fn step_at(n: &mut HyParView, input: Input<HyParViewMessage>, now: Duration) -> Out {
    let mut out = Vec::new();
    n.handle(input, now, &mut out);
    out
}

fn sends(out: &Out) -> Vec<(PeerId, HyParViewMessage)> {
    out.iter()
        .filter_map(|c| match c {
            Command::Send { to, msg } => Some((*to, msg.clone())),
            _ => None,
        })
        .collect()
}

/// Joins through `contact`, which accepts.
fn join_through(n: &mut HyParView, contact: u64) {
    step(n, Input::Join(vec![member(contact)]));
    step(n, Input::Connected(member(contact)));
    let reply = HyParViewMessage::NeighborReply { member: member(contact), accepted: true };
    step(n, Input::Message { from: PeerId(contact), msg: reply });
    assert_eq!(n.neighbors(), vec![PeerId(contact)]);
}

#[test]
fn invalid_configs_are_refused() {
    let bad = HyParViewConfig { active_min: 7, ..HyParViewConfig::default() };
    assert!(matches!(HyParView::new(member(1), bad), Err(ConfigError::MinAboveMax { min: 7, max: 6 })));
    let bad = HyParViewConfig { active_max: 0, active_min: 0, ..HyParViewConfig::default() };
    assert!(matches!(HyParView::new(member(1), bad), Err(ConfigError::NoActiveView)));
    let bad = HyParViewConfig { tick_interval: Duration::ZERO, ..HyParViewConfig::default() };
    assert!(matches!(HyParView::new(member(1), bad), Err(ConfigError::ZeroInterval("tick_interval"))));
}

#[test]
fn join_connects_first_then_sends_join_and_activates_the_contact() {
    let mut n = node(1);
    let out = step(&mut n, Input::Join(vec![member(2)]));
    assert_eq!(out, vec![Command::Connect(member(2))]);
    assert!(n.neighbors().is_empty());
    let out = step(&mut n, Input::Connected(member(2)));
    assert_eq!(sends(&out), vec![(PeerId(2), HyParViewMessage::Join { member: member(1) })]);
    assert!(n.neighbors().is_empty());
    let reply = HyParViewMessage::NeighborReply { member: member(2), accepted: true };
    let out = step(&mut n, Input::Message { from: PeerId(2), msg: reply });
    assert_eq!(n.neighbors(), vec![PeerId(2)]);
    assert!(out.contains(&Command::Event(MembershipEvent::NeighborUp(member(2)))));
    assert!(out.contains(&Command::Event(MembershipEvent::MemberUp(member(2)))));
}

#[test]
fn contact_accepts_join_and_forwards_it_to_its_other_neighbours() {
    let mut c = node(1);
    for i in 2..=4 {
        step(&mut c, Input::Connected(member(i)));
        step(&mut c, Input::Message { from: PeerId(i), msg: HyParViewMessage::Join { member: member(i) } });
    }
    assert_eq!(c.neighbors().len(), 3);
    step(&mut c, Input::Connected(member(5)));
    let out = step(&mut c, Input::Message { from: PeerId(5), msg: HyParViewMessage::Join { member: member(5) } });
    let mut fwd: Vec<PeerId> = sends(&out)
        .into_iter()
        .filter(|(_, m)| matches!(m, HyParViewMessage::ForwardJoin { member, ttl: 6 } if member.id == PeerId(5)))
        .map(|(to, _)| to)
        .collect();
    fwd.sort();
    assert_eq!(fwd, vec![PeerId(2), PeerId(3), PeerId(4)]);
    assert!(c.neighbors().contains(&PeerId(5)));
}

#[test]
fn full_contact_takes_the_joiner_by_dropping_a_neighbour() {
    let mut c = node(1);
    for i in 2..=7 {
        step(&mut c, Input::Connected(member(i)));
        step(&mut c, Input::Message { from: PeerId(i), msg: HyParViewMessage::Join { member: member(i) } });
    }
    step(&mut c, Input::Connected(member(8)));
    let out = step(&mut c, Input::Message { from: PeerId(8), msg: HyParViewMessage::Join { member: member(8) } });
    assert!(c.neighbors().contains(&PeerId(8)));
    assert_eq!(c.neighbors().len(), 6);
    let s = sends(&out);
    assert!(s.contains(&(PeerId(8), HyParViewMessage::NeighborReply { member: member(1), accepted: true })));
    assert_eq!(s.iter().filter(|(_, m)| *m == HyParViewMessage::Disconnect).count(), 1);
    // Forwarded to the five neighbours left.
    assert_eq!(s.iter().filter(|(_, m)| matches!(m, HyParViewMessage::ForwardJoin { .. })).count(), 5);
}

#[test]
fn full_view_rejects_low_priority_and_accepts_high_priority_by_dropping_one() {
    let mut c = node(1);
    for i in 2..=7 {
        step(&mut c, Input::Connected(member(i)));
        step(&mut c, Input::Message { from: PeerId(i), msg: HyParViewMessage::Join { member: member(i) } });
    }
    assert_eq!(c.neighbors().len(), 6);
    step(&mut c, Input::Connected(member(8)));
    let low = HyParViewMessage::Neighbor { member: member(8), priority: Priority::Low };
    let out = step(&mut c, Input::Message { from: PeerId(8), msg: low });
    assert_eq!(sends(&out), vec![(PeerId(8), HyParViewMessage::NeighborReply { member: member(1), accepted: false })]);
    assert!(!c.neighbors().contains(&PeerId(8)));

    let high = HyParViewMessage::Neighbor { member: member(8), priority: Priority::High };
    let out = step(&mut c, Input::Message { from: PeerId(8), msg: high });
    assert!(c.neighbors().contains(&PeerId(8)));
    assert_eq!(c.neighbors().len(), 6);
    // The dropped neighbour got DISCONNECT, then its connection closed, and is now a backup.
    let dropped: Vec<PeerId> =
        sends(&out).into_iter().filter(|(_, m)| *m == HyParViewMessage::Disconnect).map(|(to, _)| to).collect();
    assert_eq!(dropped.len(), 1);
    assert!(out.contains(&Command::Disconnect(dropped[0])));
    assert!(c.passive_ids().contains(&dropped[0]));
}

#[test]
fn failure_of_a_neighbour_promotes_a_backup_with_high_priority_when_alone() {
    let mut n = node(1);
    join_through(&mut n, 2);
    step(&mut n, Input::Message { from: PeerId(2), msg: HyParViewMessage::ShuffleReply { members: vec![member(3)] } });
    assert_eq!(n.passive_ids(), vec![PeerId(3)]);
    let out = step(&mut n, Input::Disconnected(PeerId(2)));
    assert!(out.contains(&Command::Event(MembershipEvent::NeighborDown(PeerId(2)))));
    assert!(out.contains(&Command::Connect(member(3))));
    let out = step(&mut n, Input::Connected(member(3)));
    assert_eq!(
        sends(&out),
        vec![(PeerId(3), HyParViewMessage::Neighbor { member: member(1), priority: Priority::High })]
    );
    let out = step(
        &mut n,
        Input::Message { from: PeerId(3), msg: HyParViewMessage::NeighborReply { member: member(3), accepted: true } },
    );
    assert_eq!(n.neighbors(), vec![PeerId(3)]);
    assert!(out.contains(&Command::Event(MembershipEvent::NeighborUp(member(3)))));
}

#[test]
fn unreachable_candidates_are_dropped_and_an_isolated_node_rejoins_then_asks_for_contacts() {
    let mut n = node(1);
    join_through(&mut n, 2);
    step(&mut n, Input::Message { from: PeerId(2), msg: HyParViewMessage::ShuffleReply { members: vec![member(3)] } });
    let t = Duration::from_secs(10); // past the join grace
    step_at(&mut n, Input::Disconnected(PeerId(2)), t);
    let out = step_at(&mut n, Input::ConnectFailed(PeerId(3)), t);
    assert!(n.passive_ids().is_empty());
    // No backup left: re-join through the contact.
    assert!(out.contains(&Command::Connect(member(2))), "{out:?}");
    let out = step_at(&mut n, Input::ConnectFailed(PeerId(2)), t);
    assert!(out.contains(&Command::NeedContacts), "{out:?}");
    // Rate-limited: not asked again at once.
    let out = step_at(&mut n, Input::Tick, t + Duration::from_secs(1));
    assert!(!out.contains(&Command::NeedContacts));
}

#[test]
fn lone_first_node_does_not_ask_for_contacts() {
    let mut n = node(1);
    assert!(step(&mut n, Input::Join(vec![])).is_empty());
    assert!(!step(&mut n, Input::Tick).contains(&Command::NeedContacts));
}

#[test]
fn malformed_and_stale_messages_are_ignored() {
    let mut n = node(1);
    // From an unknown peer, claiming to be someone else, or naming this node itself.
    let msgs = [
        (PeerId(9), HyParViewMessage::Join { member: member(9) }),
        (PeerId(9), HyParViewMessage::Neighbor { member: member(8), priority: Priority::High }),
        (PeerId(9), HyParViewMessage::NeighborReply { member: member(9), accepted: false }),
        (PeerId(9), HyParViewMessage::Disconnect),
        (PeerId(9), HyParViewMessage::ForwardJoin { member: member(1), ttl: u32::MAX }),
        (PeerId(9), HyParViewMessage::Shuffle { origin: member(1), ttl: 3, members: vec![member(1)] }),
        (PeerId(1), HyParViewMessage::Join { member: member(1) }),
    ];
    for (from, msg) in msgs {
        step(&mut n, Input::Message { from, msg });
    }
    assert!(n.neighbors().is_empty());
    assert!(!n.passive_ids().contains(&PeerId(1)));
    // A huge shuffle is cut to the configured length.
    let members: Vec<Member> = (10..1000).map(member).collect();
    step(
        &mut n,
        Input::Message { from: PeerId(9), msg: HyParViewMessage::Shuffle { origin: member(9), ttl: 1, members } },
    );
    assert!(n.passive_ids().len() <= n.config().shuffle_len());
}

#[test]
fn leave_disconnects_everyone_and_then_ignores_input() {
    let mut n = node(1);
    join_through(&mut n, 2);
    let out = step(&mut n, Input::Leave);
    assert!(sends(&out).contains(&(PeerId(2), HyParViewMessage::Disconnect)));
    assert!(out.contains(&Command::Disconnect(PeerId(2))));
    assert!(n.has_left());
    assert!(step(&mut n, Input::Connected(member(3))).is_empty());
}

#[test]
fn a_neighbour_lost_to_a_failure_is_probed_later_with_high_priority() {
    let mut n = node(1);
    for i in 2..=7 {
        step(&mut n, Input::Connected(member(i)));
        step(&mut n, Input::Message { from: PeerId(i), msg: HyParViewMessage::Join { member: member(i) } });
    }
    assert_eq!(n.neighbors().len(), 6);
    // 2 fails (its connection is lost); 3 leaves in an orderly way (DISCONNECT first).
    step(&mut n, Input::Disconnected(PeerId(2)));
    step(&mut n, Input::Message { from: PeerId(3), msg: HyParViewMessage::Disconnect });
    step(&mut n, Input::Disconnected(PeerId(3)));
    assert_eq!(n.neighbors().len(), 4);
    let mut connects = Vec::new();
    for s in 1..=65 {
        let now = Duration::from_secs(s);
        for c in step_at(&mut n, Input::Tick, now) {
            if let Command::Connect(m) = c {
                connects.push((s, m.id));
                // Nothing answers: 2 is still down, 3 is gone.
                step_at(&mut n, Input::ConnectFailed(m.id), now);
            }
        }
    }
    // The suspect is probed once per heal interval, and stays a suspect while it fails.
    let probes: Vec<u64> = connects.iter().filter(|(_, id)| *id == PeerId(2)).map(|(s, _)| *s).collect();
    assert_eq!(probes.len(), 3, "{connects:?}");
    assert!(probes.windows(2).all(|w| w[1] - w[0] == 30), "{probes:?}");
    // 3 (orderly) was tried from the passive view, failed once and was dropped: never probed again.
    assert_eq!(connects.iter().filter(|(_, id)| *id == PeerId(3)).count(), 1, "{connects:?}");
    // 2 comes back: the next probe connects and asks with high priority (a full peer across a
    // healed partition takes it).
    let t = Duration::from_secs(probes[2] + 30);
    let out = step_at(&mut n, Input::Tick, t);
    assert!(out.contains(&Command::Connect(member(2))), "{out:?}");
    let out = step_at(&mut n, Input::Connected(member(2)), t);
    let msg = HyParViewMessage::Neighbor { member: member(1), priority: Priority::High };
    assert_eq!(sends(&out), vec![(PeerId(2), msg)]);
    let reply = HyParViewMessage::NeighborReply { member: member(2), accepted: true };
    step_at(&mut n, Input::Message { from: PeerId(2), msg: reply }, t);
    assert!(n.neighbors().contains(&PeerId(2)));
}
