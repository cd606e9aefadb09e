//! Messages announced by `IHave` but not received yet, with their graft timers.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use crate::member::PeerId;

use super::message::MessageId;

#[derive(Debug)]
struct Pending {
    deadline: Duration,
    /// Announcers in the order they announced (with their hop counts), rotated as they are
    /// grafted, so a graft whose answer was lost is retried with the next one in turn.
    announcers: VecDeque<(PeerId, u32)>,
    /// Grafts sent so far.
    attempts: u32,
}

/// What [`Missing::expire`] decided.
#[derive(Debug, Default)]
pub(crate) struct Expired {
    /// Graft these: (announcer, message).
    pub grafts: Vec<(PeerId, MessageId)>,
    /// Messages dropped because no announcer is left or every attempt was used.
    pub given_up: u64,
}

/// The missing-message tracker (bounded by entries and announcers per entry).
#[derive(Debug)]
pub(crate) struct Missing {
    entries: BTreeMap<MessageId, Pending>,
    max_entries: usize,
    max_announcers: usize,
    max_attempts: u32,
}

impl Missing {
    pub(crate) fn new(max_entries: usize, max_announcers: usize, max_attempts: u32) -> Self {
        Missing { entries: BTreeMap::new(), max_entries, max_announcers, max_attempts }
    }

    /// Records that `from` announced `id` with `hops`; a first announcement starts the timer
    /// (due at `deadline`). Returns `false` if the message could not be tracked (table full).
    pub(crate) fn announce(&mut self, id: MessageId, from: PeerId, hops: u32, deadline: Duration) -> bool {
        if let Some(p) = self.entries.get_mut(&id) {
            if p.announcers.len() < self.max_announcers && !p.announcers.iter().any(|(a, _)| *a == from) {
                p.announcers.push_back((from, hops));
            }
            return true;
        }
        if self.entries.len() >= self.max_entries {
            return false;
        }
        let mut announcers = VecDeque::new();
        announcers.push_back((from, hops));
        self.entries.insert(id, Pending { deadline, announcers, attempts: 0 });
        true
    }

    /// The message arrived: stop waiting for it. Returns whether it had been grafted.
    pub(crate) fn remove(&mut self, id: &MessageId) -> bool {
        self.entries.remove(id).is_some_and(|p| p.attempts > 0)
    }

    /// A neighbour is gone: its announcements cannot be grafted any more.
    pub(crate) fn peer_down(&mut self, peer: PeerId) {
        for p in self.entries.values_mut() {
            p.announcers.retain(|(a, _)| *a != peer);
        }
    }

    /// Fires the timers due at `now`: each due message is grafted from its next announcer (in
    /// turn, starting again from the first when all were tried) and waits `retry` more; one with
    /// no announcer left or no attempt left is dropped (anti-entropy may still bring it).
    pub(crate) fn expire(&mut self, now: Duration, retry: Duration) -> Expired {
        let mut out = Expired::default();
        let max_attempts = self.max_attempts;
        self.entries.retain(|id, p| {
            if p.deadline > now {
                return true;
            }
            if p.attempts >= max_attempts {
                out.given_up += 1;
                return false;
            }
            match p.announcers.pop_front() {
                Some(a) => {
                    out.grafts.push((a.0, *id));
                    p.announcers.push_back(a);
                    p.attempts += 1;
                    p.deadline = now.saturating_add(retry);
                    true
                }
                None => {
                    out.given_up += 1;
                    false
                }
            }
        });
        out
    }

    /// Number of messages waited for.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(seq: u64) -> MessageId {
        MessageId { origin: PeerId(1), seq }
    }

    #[test]
    fn grafts_announcers_in_turn_then_gives_up() {
        let mut m = Missing::new(2, 2, 3);
        let s = Duration::from_secs;
        assert!(m.announce(id(1), PeerId(10), 3, s(1)));
        assert!(m.announce(id(1), PeerId(11), 2, s(5)));
        assert!(m.announce(id(1), PeerId(12), 2, s(5)), "tracked, announcer beyond cap ignored");
        assert!(m.announce(id(2), PeerId(10), 1, s(1)));
        assert!(!m.announce(id(3), PeerId(10), 1, s(1)), "table full");
        assert!(m.expire(s(0), s(1)).grafts.is_empty());
        m.remove(&id(2));
        let e = m.expire(s(1), s(1));
        assert_eq!(e.grafts, vec![(PeerId(10), id(1))]);
        let e = m.expire(s(2), s(1));
        assert_eq!(e.grafts, vec![(PeerId(11), id(1))]);
        // Both tried: back to the first; then out of attempts.
        let e = m.expire(s(3), s(1));
        assert_eq!(e.grafts, vec![(PeerId(10), id(1))]);
        let e = m.expire(s(4), s(1));
        assert!(e.grafts.is_empty());
        assert_eq!(e.given_up, 1);
        assert_eq!(m.len(), 0);
        // An entry whose announcers all went down is dropped at its deadline.
        m.announce(id(5), PeerId(10), 1, s(5));
        m.peer_down(PeerId(10));
        let e = m.expire(s(5), s(1));
        assert_eq!((e.grafts.len(), e.given_up), (0, 1));
    }
}
