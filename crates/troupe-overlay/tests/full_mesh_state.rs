//! The full mesh's member set is a lattice: merge is commutative, associative and idempotent,
//! and removals are never undone by older states.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use proptest::prelude::*;
use troupe_overlay::full_mesh::{Entry, MemberSet, Status};
use troupe_overlay::{Member, PeerId};

fn member(id: u64) -> Member {
    Member { id: PeerId(id), name: format!("n{id}"), addr: SocketAddr::from(([10, 0, 0, id as u8], 7000)) }
}

fn entry() -> impl Strategy<Value = Entry> {
    (0u64..6, 1u64..4, 0u8..3).prop_map(|(id, generation, s)| Entry {
        member: member(id),
        generation,
        status: [Status::Alive, Status::Removed, Status::Left][s as usize],
    })
}

fn set_of(entries: &[Entry]) -> MemberSet {
    let mut s = MemberSet::new();
    for e in entries {
        s.merge(e.clone(), Duration::ZERO, usize::MAX).expect("valid");
    }
    s
}

fn content(s: &MemberSet) -> BTreeMap<PeerId, Entry> {
    s.entries().map(|e| (e.member.id, e.clone())).collect()
}

fn join(a: &MemberSet, b: &MemberSet) -> MemberSet {
    let mut r = a.clone();
    for e in b.entries() {
        r.merge(e.clone(), Duration::ZERO, usize::MAX).expect("valid");
    }
    r
}

proptest! {
    #[test]
    fn merge_is_a_join(a in prop::collection::vec(entry(), 0..12), b in prop::collection::vec(entry(), 0..12), c in prop::collection::vec(entry(), 0..12)) {
        let (a, b, c) = (set_of(&a), set_of(&b), set_of(&c));
        prop_assert_eq!(content(&join(&a, &b)), content(&join(&b, &a)));
        prop_assert_eq!(content(&join(&join(&a, &b), &c)), content(&join(&a, &join(&b, &c))));
        prop_assert_eq!(content(&join(&a, &a)), content(&a));
        // Counts stay consistent.
        let j = join(&a, &b);
        prop_assert_eq!(j.alive_len() + j.tombstones(), j.len());
        prop_assert_eq!(j.alive_len(), j.entries().filter(|e| e.is_alive()).count());
    }

    /// Any order of delivery of any entries gives the same set.
    #[test]
    fn order_does_not_matter(entries in prop::collection::vec(entry(), 0..20), seed in any::<u64>()) {
        let mut shuffled = entries.clone();
        let mut x = seed | 1;
        for i in (1..shuffled.len()).rev() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            shuffled.swap(i, (x % (i as u64 + 1)) as usize);
        }
        prop_assert_eq!(content(&set_of(&entries)), content(&set_of(&shuffled)));
    }

    /// Once an incarnation is removed at generation g, no state from generation g or older
    /// brings it back.
    #[test]
    fn removal_is_sticky(generation in 1u64..5, stale in prop::collection::vec((1u64..5, any::<bool>()), 0..10)) {
        let mut s = MemberSet::new();
        s.merge(Entry { member: member(1), generation, status: Status::Removed }, Duration::ZERO, usize::MAX).expect("valid");
        for (g, _) in stale.iter().filter(|(g, _)| *g <= generation) {
            s.merge(Entry { member: member(1), generation: *g, status: Status::Alive }, Duration::ZERO, usize::MAX).expect("valid");
        }
        prop_assert!(!s.is_alive(&PeerId(1)));
        // Only the incarnation itself, refuting at a higher generation, comes back.
        s.merge(Entry { member: member(1), generation: generation + 1, status: Status::Alive }, Duration::ZERO, usize::MAX).expect("valid");
        prop_assert!(s.is_alive(&PeerId(1)));
    }
}

#[test]
fn left_beats_removed_and_alive_at_the_same_generation() {
    let mut s = MemberSet::new();
    for status in [Status::Left, Status::Removed, Status::Alive] {
        s.merge(Entry { member: member(2), generation: 3, status }, Duration::ZERO, usize::MAX).expect("valid");
    }
    assert_eq!(s.get(&PeerId(2)).map(|e| e.status), Some(Status::Left));
}

#[test]
fn expiry_keeps_the_earliest_learning_time() {
    let mut s = MemberSet::new();
    let tomb = Entry { member: member(3), generation: 1, status: Status::Removed };
    s.merge(tomb.clone(), Duration::from_secs(50), usize::MAX).expect("valid");
    // The same tombstone heard again, from a node that learned it earlier.
    s.merge(tomb, Duration::from_secs(10), usize::MAX).expect("valid");
    assert_eq!(s.tombstoned_at(&PeerId(3)), Some(Duration::from_secs(10)));
    assert_eq!(s.expire(Duration::from_secs(65), Duration::from_secs(60), 100), 0);
    assert_eq!(s.expire(Duration::from_secs(71), Duration::from_secs(60), 100), 1);
    assert!(s.is_empty());
}

#[test]
fn tombstone_cap_drops_the_oldest() {
    let mut s = MemberSet::new();
    for i in 0..10u64 {
        s.merge(
            Entry { member: member(i), generation: 1, status: Status::Removed },
            Duration::from_secs(i),
            usize::MAX,
        )
        .expect("valid");
    }
    s.merge(Entry::alive(member(20)), Duration::ZERO, usize::MAX).expect("valid");
    assert_eq!(s.expire(Duration::from_secs(10), Duration::from_secs(600), 4), 6);
    let left: Vec<u64> = s.entries().filter(|e| !e.is_alive()).map(|e| e.member.id.0).collect();
    assert_eq!(left, vec![6, 7, 8, 9]);
    assert!(s.is_alive(&PeerId(20)), "alive entries are never expired");
}

#[test]
fn member_cap_refuses_new_alive_ids_but_not_tombstones() {
    let mut s = MemberSet::new();
    for i in 0..3u64 {
        s.merge(Entry::alive(member(i)), Duration::ZERO, 3).expect("room");
    }
    assert!(s.merge(Entry::alive(member(9)), Duration::ZERO, 3).is_err());
    assert!(s.merge(Entry { member: member(9), generation: 1, status: Status::Removed }, Duration::ZERO, 3).is_ok());
    assert!(s.merge(Entry { generation: 0, ..Entry::alive(member(8)) }, Duration::ZERO, 10).is_err());
}
