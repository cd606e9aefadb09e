//! Actor signals from one peer (stop, watch, link, Down ...), each applied no earlier than the
//! messages its sender sent before it, and in arrival order per actor.
//!
//! A signal travels on the control connection, the messages on the data connections: a
//! [`Control::After`] or [`Control::AfterAll`] names the [`Control::Marker`]s that follow those
//! messages on their connections, and the signal is held until the readers of those connections
//! got to every marker. A signal about an actor that arrives while another about the same actor
//! is held waits behind it, whether it waits for markers or not (a Down "no such actor" must not
//! overtake the held Down that says how the actor really ended); signals about other actors do
//! not wait. What the fence holds when the peer goes away takes effect before the departure does.
//!
//! The fence only keeps state; the node applies what it hands out, one applier at a time (see
//! [`SignalFence::applying`]), and runs one task per peer that waits for markers
//! ([`SignalFence::admit`] says when to start it) and gives up on them in time
//! ([`SignalFence::give_up`]).
//!
//! [`Control::After`]: troupe_wire::Control::After
//! [`Control::AfterAll`]: troupe_wire::Control::AfterAll
//! [`Control::Marker`]: troupe_wire::Control::Marker

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Instant;

use parking_lot::{Mutex, MutexGuard};
use troupe_wire::{Control, WireActorId};

/// How many markers a fence keeps that no held signal waits for yet (a marker can arrive before
/// the signal that waits for it; one whose signal was lost or gave up is forgotten eventually).
const MARKERS_KEPT: usize = 4096;

/// The most markers one signal may wait for: one per connection of the default channel.
pub(crate) const MAX_MARKERS: usize = crate::config::MAX_CHANNEL_PARALLELISM as usize;

/// The actor signals of one peer waiting for their markers or for earlier signals about the same
/// actor, and the markers its connections' readers got to.
#[derive(Default)]
pub(crate) struct SignalFence {
    state: Mutex<FenceState>,
    /// Held by whoever applies signals from this fence (the waiting task, the reader applying a
    /// signal at once, the peer's departure), so that they take effect in the order they left
    /// the fence.
    applying: Mutex<()>,
    /// Notified (all waiters: there is one task per peer) when a marker a held signal waits for
    /// arrives.
    pub(crate) marker_seen: tokio::sync::Notify,
}

#[derive(Default)]
struct FenceState {
    /// Markers seen that no held signal waited for, oldest first. `seen` may also hold markers
    /// since claimed (not in `seen_set`), dropped as they come up.
    seen: VecDeque<u64>,
    seen_set: HashSet<u64>,
    /// For each marker a held signal waits for, that signal's number.
    awaited: HashMap<u64, u64>,
    /// Signals held, in arrival order (increasing numbers).
    held: VecDeque<Held>,
    next_number: u64,
    /// Whether a task waits for the held signals' markers.
    waiting_task: bool,
    /// The peer went away: nothing is held any more.
    drained: bool,
}

struct Held {
    number: u64,
    /// The actor it is about: it waits behind earlier signals about the same actor.
    about: WireActorId,
    /// The markers it still waits for.
    markers: Vec<u64>,
    admitted: Instant,
    control: Control,
}

/// What [`SignalFence::admit`] decided.
#[derive(Debug)]
pub(crate) enum Admitted {
    /// Nothing to wait for: apply it now (under [`SignalFence::applying`]).
    ApplyNow(Control),
    /// Held; start the waiting task if `start_task`.
    Held {
        /// No task waits for this fence's markers yet: start one.
        start_task: bool,
    },
}

impl SignalFence {
    /// Locks out other appliers of this fence's signals while the guard lives.
    pub(crate) fn applying(&self) -> MutexGuard<'_, ()> {
        self.applying.lock()
    }

    /// A reader got to marker `marker`.
    pub(crate) fn note_marker(&self, marker: u64) {
        let mut state = self.state.lock();
        if let Some(number) = state.awaited.remove(&marker) {
            if let Ok(at) = state.held.binary_search_by_key(&number, |held| held.number) {
                state.held[at].markers.retain(|&m| m != marker);
            }
            drop(state);
            self.marker_seen.notify_waiters();
            return;
        }
        if state.drained || !state.seen_set.insert(marker) {
            return;
        }
        state.seen.push_back(marker);
        while state.seen_set.len() > MARKERS_KEPT {
            let Some(old) = state.seen.pop_front() else { break };
            state.seen_set.remove(&old);
        }
        if state.seen.len() > 2 * MARKERS_KEPT {
            let FenceState { seen, seen_set, .. } = &mut *state;
            seen.retain(|marker| seen_set.contains(marker));
        }
    }

    /// Takes in `control`, a signal about actor `about`, to take effect once the readers got to
    /// every one of `markers` and after every held signal about the same actor. Call under
    /// [`applying`](Self::applying), and apply an [`Admitted::ApplyNow`] before letting go of it.
    pub(crate) fn admit(&self, about: WireActorId, mut markers: Vec<u64>, control: Control, now: Instant) -> Admitted {
        let mut state = self.state.lock();
        if state.drained {
            return Admitted::ApplyNow(control);
        }
        markers.sort_unstable();
        markers.dedup();
        markers.retain(|marker| !state.seen_set.remove(marker));
        if markers.is_empty() && !state.held.iter().any(|held| held.about == about) {
            return Admitted::ApplyNow(control);
        }
        let number = state.next_number;
        state.next_number += 1;
        for &marker in &markers {
            state.awaited.insert(marker, number);
        }
        state.held.push_back(Held { number, about, markers, admitted: now, control });
        let start_task = !std::mem::replace(&mut state.waiting_task, true);
        Admitted::Held { start_task }
    }

    /// The held signals that can take effect now, in arrival order: all their markers are in,
    /// and no earlier signal about the same actor is still held. Apply them under
    /// [`applying`](Self::applying).
    pub(crate) fn take_ready(&self) -> Vec<Control> {
        let mut state = self.state.lock();
        let mut blocked: Vec<WireActorId> = Vec::new();
        let mut ready = Vec::new();
        let mut kept = VecDeque::with_capacity(state.held.len());
        for held in state.held.drain(..) {
            if held.markers.is_empty() && !blocked.contains(&held.about) {
                ready.push(held.control);
            } else {
                if !blocked.contains(&held.about) {
                    blocked.push(held.about.clone());
                }
                kept.push_back(held);
            }
        }
        state.held = kept;
        ready
    }

    /// When the oldest signal still waiting for markers was admitted.
    pub(crate) fn oldest_waiting(&self) -> Option<Instant> {
        self.state.lock().held.iter().find(|held| !held.markers.is_empty()).map(|held| held.admitted)
    }

    /// Stops waiting for the markers of the signals admitted at or before `before` (they were
    /// lost with their connection, or the signal waited long enough); they are then ready once
    /// no earlier signal about their actor is held.
    pub(crate) fn give_up(&self, before: Instant) {
        let mut state = self.state.lock();
        let FenceState { held, awaited, .. } = &mut *state;
        for held in held.iter_mut().take_while(|held| held.admitted <= before) {
            for marker in held.markers.drain(..) {
                awaited.remove(&marker);
            }
        }
    }

    /// Ends the waiting task's watch if nothing is held; true if it should stop.
    pub(crate) fn task_done(&self) -> bool {
        let mut state = self.state.lock();
        if state.held.is_empty() || state.drained {
            state.waiting_task = false;
            return true;
        }
        false
    }

    /// Everything held, in arrival order, to take effect now (the peer is gone, or is being
    /// given up for lost). With `close`, nothing is held from now on: a signal that still
    /// arrives takes effect at once.
    pub(crate) fn take_all(&self, close: bool) -> Vec<Control> {
        let mut state = self.state.lock();
        state.drained |= close;
        state.awaited.clear();
        if close {
            state.seen.clear();
            state.seen_set.clear();
        }
        state.held.drain(..).map(|held| held.control).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use troupe_wire::WireExit;

    fn actor(serial: u64) -> WireActorId {
        WireActorId { node: 1, serial }
    }

    fn down(serial: u64, reason: WireExit) -> Control {
        Control::Down { target: actor(serial), reason }
    }

    fn admit(fence: &SignalFence, serial: u64, markers: Vec<u64>, reason: WireExit) -> Admitted {
        fence.admit(actor(serial), markers, down(serial, reason), Instant::now())
    }

    fn applied_now(admitted: Admitted) -> Control {
        match admitted {
            Admitted::ApplyNow(control) => control,
            held => panic!("held: {held:?}"),
        }
    }

    #[test]
    fn a_signal_with_nothing_to_wait_for_applies_at_once() {
        let fence = SignalFence::default();
        assert_eq!(applied_now(admit(&fence, 1, vec![], WireExit::Normal)), down(1, WireExit::Normal));
        // A marker can arrive before the signal that waits for it.
        fence.note_marker(7);
        assert_eq!(applied_now(admit(&fence, 2, vec![7], WireExit::Normal)), down(2, WireExit::Normal));
    }

    #[test]
    fn signals_about_one_actor_wait_behind_a_held_one_and_others_do_not() {
        let fence = SignalFence::default();
        assert!(matches!(admit(&fence, 1, vec![1, 2], WireExit::Normal), Admitted::Held { start_task: true }));
        assert!(matches!(admit(&fence, 1, vec![], WireExit::NoActor), Admitted::Held { start_task: false }));
        assert!(matches!(admit(&fence, 2, vec![3], WireExit::Stopped), Admitted::Held { start_task: false }));
        assert_eq!(applied_now(admit(&fence, 3, vec![], WireExit::Killed)), down(3, WireExit::Killed));
        fence.note_marker(3);
        fence.note_marker(1);
        assert_eq!(fence.take_ready(), [down(2, WireExit::Stopped)]);
        fence.note_marker(2);
        assert_eq!(fence.take_ready(), [down(1, WireExit::Normal), down(1, WireExit::NoActor)]);
        assert!(fence.task_done());
    }

    #[test]
    fn duplicate_markers_count_once() {
        let fence = SignalFence::default();
        assert!(matches!(admit(&fence, 1, vec![5, 5, 5], WireExit::Normal), Admitted::Held { .. }));
        fence.note_marker(5);
        assert_eq!(fence.take_ready(), [down(1, WireExit::Normal)]);
    }

    #[test]
    fn signals_given_up_on_take_effect_in_order() {
        let fence = SignalFence::default();
        let start = Instant::now();
        fence.admit(actor(1), vec![1], down(1, WireExit::Normal), start);
        fence.admit(actor(1), vec![], down(1, WireExit::NoActor), start);
        fence.admit(actor(2), vec![2], down(2, WireExit::Normal), start + Duration::from_secs(3));
        assert!(fence.take_ready().is_empty());
        assert_eq!(fence.oldest_waiting(), Some(start));
        fence.give_up(start + Duration::from_secs(1));
        assert_eq!(fence.take_ready(), [down(1, WireExit::Normal), down(1, WireExit::NoActor)]);
        assert_eq!(fence.oldest_waiting(), Some(start + Duration::from_secs(3)));
        // The marker it gave up on comes later: nothing waits for it.
        fence.note_marker(1);
        fence.note_marker(2);
        assert_eq!(fence.take_ready(), [down(2, WireExit::Normal)]);
        assert_eq!(fence.oldest_waiting(), None);
    }

    #[test]
    fn a_closed_fence_holds_nothing() {
        let fence = SignalFence::default();
        admit(&fence, 1, vec![1], WireExit::Normal);
        admit(&fence, 2, vec![], WireExit::Normal);
        assert_eq!(fence.take_all(true), [down(1, WireExit::Normal)]);
        assert!(fence.task_done());
        assert_eq!(applied_now(admit(&fence, 3, vec![9], WireExit::Normal)), down(3, WireExit::Normal));
    }

    #[test]
    fn after_take_all_without_closing_signals_are_held_again() {
        let fence = SignalFence::default();
        admit(&fence, 1, vec![1], WireExit::Normal);
        assert_eq!(fence.take_all(false), [down(1, WireExit::Normal)]);
        assert!(fence.task_done());
        assert!(matches!(admit(&fence, 2, vec![2], WireExit::Normal), Admitted::Held { start_task: true }));
    }

    #[test]
    fn unclaimed_markers_are_bounded() {
        let fence = SignalFence::default();
        for marker in 0..(3 * MARKERS_KEPT as u64) {
            fence.note_marker(marker);
        }
        let state = fence.state.lock();
        assert_eq!(state.seen_set.len(), MARKERS_KEPT);
        assert!(state.seen.len() <= 2 * MARKERS_KEPT);
        assert!(!state.seen_set.contains(&0));
    }
}
