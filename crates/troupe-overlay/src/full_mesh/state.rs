//! The replicated membership set of the full mesh: a small state CRDT.
//!
//! One [`Entry`] per node incarnation ([`PeerId`]), ordered by `(generation, status)` with
//! `Alive < Removed < Left`; the merge keeps the greater entry per id (a map of max-registers, so
//! merge is commutative, associative and idempotent). Only the incarnation itself ever raises its
//! generation, which gives the add-wins behaviour of an observed-remove set without a causal
//! context:
//!
//! - anyone may *remove* an incarnation by writing `Removed` at the generation it observed; a
//!   stale state that still says `Alive` at that generation (or an older one) loses the merge, so
//!   delayed gossip never re-admits it;
//! - a node that leaves writes `Left`, which nothing but a higher generation beats, and a node that
//!   left never writes again;
//! - a node that was removed while alive sees `Removed` on its own entry and *refutes* by writing
//!   `Alive` at the next generation (SWIM's incarnation bump), which beats the removal;
//! - a restarted node is a new incarnation (a new id), so it joins as a new entry.
//!
//! This is the OR-Set in which only the element's owner adds it: the generation plays the part of
//! the owner's dot counter and `Removed`/`Left` of the dots seen in the causal context.
//!
//! **Bounding the state.** Removed entries (tombstones) are what stops stale gossip; they cannot
//! live forever. [`MemberSet::expire`] drops a tombstone once it is older than a time-to-live
//! counted from when *this* node learned it, and drops the oldest ones beyond a count cap. The
//! guarantee is therefore: a state that left its sender less than `tombstone_ttl` before the
//! tombstone expired here cannot resurrect a removed incarnation. Every live member removes a dead
//! incarnation by itself within its failure-detection bound (seconds), so states that still list
//! it as alive stop existing long before the default ttl (10 minutes); should an ancient state
//! still arrive, the resurrected dead incarnation is removed again by failure detection. Live
//! entries are bounded by a member cap (entries beyond it are not admitted).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::member::{Member, PeerId};

/// Longest member name admitted from the network, in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// The liveness of an incarnation as recorded in the set; the order is the merge order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Status {
    /// A member.
    Alive,
    /// Removed by some node (failure detection); the node may refute with a higher generation.
    Removed,
    /// Left on its own; final.
    Left,
}

/// One incarnation's record.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Entry {
    /// The incarnation and its address.
    pub member: Member,
    /// Raised only by the incarnation itself, to refute a removal.
    pub generation: u64,
    /// Its liveness at this generation.
    pub status: Status,
}

impl Entry {
    /// A fresh alive entry at generation 1.
    pub fn alive(member: Member) -> Self {
        Entry { member, generation: 1, status: Status::Alive }
    }

    /// Whether the incarnation is a member according to this entry.
    pub fn is_alive(&self) -> bool {
        self.status == Status::Alive
    }

    /// Whether `self` strictly dominates `other` in the merge order (the member fields only break
    /// ties between conflicting records of one id, which honest nodes never produce).
    pub fn dominates(&self, other: &Entry) -> bool {
        let key = |e: &Entry| (e.generation, e.status);
        match key(self).cmp(&key(other)) {
            std::cmp::Ordering::Greater => true,
            std::cmp::Ordering::Less => false,
            std::cmp::Ordering::Equal => {
                (&self.member.name, self.member.addr) > (&other.member.name, other.member.addr)
            }
        }
    }

    /// Whether the entry is acceptable from the network.
    pub fn is_valid(&self) -> bool {
        self.member.name.len() <= MAX_NAME_LEN && self.generation > 0
    }
}

/// An entry as it travels: the entry and, for a tombstone, how long ago the sender learned it.
/// Ages travel so that a tombstone expires about `tombstone_ttl` after the *first* node learned
/// it, everywhere: a node that dropped it and hears it again from a node that learned it later
/// takes the sender's age instead of restarting the clock (without this, tombstones would
/// ping-pong between nodes forever).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Record {
    /// The entry.
    pub entry: Entry,
    /// Milliseconds since the sender learned the tombstone (0 for alive entries).
    pub age_ms: u64,
}

/// What a merge changed for one id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The entry before (`None`: the id was unknown).
    pub old: Option<Entry>,
    /// The entry now.
    pub new: Entry,
}

/// Why an entry was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// The entry is malformed (name too long, generation 0).
    #[error("malformed entry")]
    Invalid,
    /// The set already holds as many live members as allowed.
    #[error("member set full")]
    Full,
}

/// The set: entries by id plus, locally, when each tombstone was learned (not replicated).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberSet {
    entries: BTreeMap<PeerId, Entry>,
    tombstoned_at: BTreeMap<PeerId, Duration>,
    alive: usize,
}

impl MemberSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// The entry of `id`.
    pub fn get(&self, id: &PeerId) -> Option<&Entry> {
        self.entries.get(id)
    }

    /// Whether `id` is an alive member.
    pub fn is_alive(&self, id: &PeerId) -> bool {
        self.entries.get(id).is_some_and(Entry::is_alive)
    }

    /// Every entry, tombstones included, by id.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> + '_ {
        self.entries.values()
    }

    /// The alive members, by id.
    pub fn alive(&self) -> impl Iterator<Item = &Member> + '_ {
        self.entries.values().filter(|e| e.is_alive()).map(|e| &e.member)
    }

    /// Number of alive members.
    pub fn alive_len(&self) -> usize {
        self.alive
    }

    /// Number of tombstones (removed or left entries).
    pub fn tombstones(&self) -> usize {
        self.entries.len() - self.alive
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the set has no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every entry with its age at `now`, for sending.
    pub fn records(&self, now: Duration) -> Vec<Record> {
        self.entries
            .values()
            .map(|entry| {
                let age = self.tombstoned_at.get(&entry.member.id).map_or(0, |at| now.saturating_sub(*at).as_millis());
                Record { entry: entry.clone(), age_ms: u64::try_from(age).unwrap_or(u64::MAX) }
            })
            .collect()
    }

    /// When this node considers the tombstone of `id` learned.
    pub fn tombstoned_at(&self, id: &PeerId) -> Option<Duration> {
        self.tombstoned_at.get(id).copied()
    }

    /// Merges one entry whose tombstone (if it is one) was first learned at `learned`; returns
    /// the change, if any. A new alive id is refused when `max_alive` members are already alive.
    pub fn merge(&mut self, entry: Entry, learned: Duration, max_alive: usize) -> Result<Option<Change>, Rejected> {
        if !entry.is_valid() {
            return Err(Rejected::Invalid);
        }
        let id = entry.member.id;
        let old = self.entries.get(&id);
        if let Some(old) = old {
            if !entry.dominates(old) {
                // The same tombstone: keep the earliest learning time.
                if !entry.is_alive() && *old == entry {
                    if let Some(at) = self.tombstoned_at.get_mut(&id) {
                        *at = (*at).min(learned);
                    }
                }
                return Ok(None);
            }
        } else if entry.is_alive() && self.alive >= max_alive {
            return Err(Rejected::Full);
        }
        Ok(Some(self.put(entry, learned)))
    }

    /// Writes `entry` (the caller checked that it dominates), keeping the counts and tombstone
    /// times right.
    fn put(&mut self, entry: Entry, now: Duration) -> Change {
        let id = entry.member.id;
        let old = self.entries.insert(id, entry.clone());
        if old.as_ref().is_some_and(Entry::is_alive) {
            self.alive -= 1;
        }
        if entry.is_alive() {
            self.alive += 1;
            self.tombstoned_at.remove(&id);
        } else {
            self.tombstoned_at.insert(id, now);
        }
        Change { old, new: entry }
    }

    /// A local update that must take effect (the node's own entry, or a removal it decided):
    /// written if it dominates the current entry.
    pub fn update(&mut self, entry: Entry, now: Duration) -> Option<Change> {
        match self.entries.get(&entry.member.id) {
            Some(old) if !entry.dominates(old) => None,
            _ => Some(self.put(entry, now)),
        }
    }

    /// Drops tombstones learned more than `ttl` before `now`, then the oldest ones beyond `max`;
    /// returns how many were dropped.
    pub fn expire(&mut self, now: Duration, ttl: Duration, max: usize) -> usize {
        let mut dropped: Vec<PeerId> =
            self.tombstoned_at.iter().filter(|(_, at)| now.saturating_sub(**at) > ttl).map(|(id, _)| *id).collect();
        let left = self.tombstoned_at.len() - dropped.len();
        if left > max {
            let mut rest: Vec<(Duration, PeerId)> = self
                .tombstoned_at
                .iter()
                .filter(|(_, at)| now.saturating_sub(**at) <= ttl)
                .map(|(id, at)| (*at, *id))
                .collect();
            rest.sort();
            dropped.extend(rest.iter().take(left - max).map(|(_, id)| *id));
        }
        for id in &dropped {
            self.tombstoned_at.remove(id);
            self.entries.remove(id);
        }
        dropped.len()
    }
}
