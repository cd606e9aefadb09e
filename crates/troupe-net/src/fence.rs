//! Actor signals from one peer (stop, kill, watch, link, Down ...), applied in the order they
//! arrived, each no earlier than the messages its sender sent before it.
//!
//! A signal travels on the control connection, the messages on the data connections: a
//! [`Control::After`] or [`Control::AfterAll`] names the [`Control::Marker`]s that follow those
//! messages on their connections, and the signal is held until the readers of those connections
//! got to every marker. A signal that arrives while another is held waits behind it, whether it
//! waits for markers or not (a Down "no such actor" must not overtake the held Down that says how
//! the actor really ended). What the fence holds when the peer goes away takes effect before the
//! departure does.
//!
//! The fence only keeps state; the node applies what it hands out, one applier at a time (see
//! [`SignalFence::applying`]), and runs one task per peer that waits for markers
//! ([`SignalFence::admit`] says when to start it).
//!
//! [`Control::After`]: troupe_wire::Control::After
//! [`Control::AfterAll`]: troupe_wire::Control::AfterAll
//! [`Control::Marker`]: troupe_wire::Control::Marker

use std::collections::{HashSet, VecDeque};

use parking_lot::{Mutex, MutexGuard};
use troupe_wire::Control;

/// How many markers a fence keeps that no held signal has claimed yet (a marker can arrive
/// before the signal that waits for it; one whose signal was lost is forgotten eventually).
const MARKERS_KEPT: usize = 8192;

/// The most markers one signal may wait for: one per connection of the default channel.
pub(crate) const MAX_MARKERS: usize = crate::config::MAX_CHANNEL_PARALLELISM as usize;

/// The actor signals of one peer in arrival order, and the markers its connections' readers got
/// to.
#[derive(Default)]
pub(crate) struct SignalFence {
    state: Mutex<FenceState>,
    /// Held by whoever applies signals from this fence (the waiting task, the reader applying a
    /// signal at once, the peer's departure), so that they take effect in the order they left
    /// the fence.
    applying: Mutex<()>,
    /// Notified (all waiters: there is one task per peer) when a marker arrives.
    pub(crate) marker_seen: tokio::sync::Notify,
}

#[derive(Default)]
struct FenceState {
    /// Markers seen and not yet claimed, oldest first (with `seen_set`, the same markers).
    seen: VecDeque<u64>,
    seen_set: HashSet<u64>,
    /// Signals held, in arrival order, each with the markers it still waits for.
    held: VecDeque<Held>,
    /// Numbers the held signals (see [`Ready::front`]).
    next_number: u64,
    /// Whether a task waits for the held signals' markers.
    waiting_task: bool,
    /// The peer went away: nothing is held any more.
    drained: bool,
}

struct Held {
    number: u64,
    markers: Vec<u64>,
    control: Control,
}

/// What [`SignalFence::admit`] decided.
#[derive(Debug)]
pub(crate) enum Admitted {
    /// Nothing held and nothing to wait for: apply it now (under [`SignalFence::applying`]).
    ApplyNow(Control),
    /// Held; start the waiting task if `start_task`.
    Held {
        /// No task waits for this fence's markers yet: start one.
        start_task: bool,
    },
}

/// What [`SignalFence::take_ready`] hands out.
pub(crate) struct Ready {
    /// Signals to apply now, in order.
    pub(crate) controls: Vec<Control>,
    /// The number of the signal now first in line, if any: the waiting task restarts its clock
    /// when it changes.
    pub(crate) front: Option<u64>,
}

impl SignalFence {
    /// Locks out other appliers of this fence's signals while the guard lives.
    pub(crate) fn applying(&self) -> MutexGuard<'_, ()> {
        self.applying.lock()
    }

    /// A reader got to marker `marker`.
    pub(crate) fn note_marker(&self, marker: u64) {
        {
            let mut state = self.state.lock();
            if state.seen_set.insert(marker) {
                state.seen.push_back(marker);
            }
            while state.seen.len() > MARKERS_KEPT {
                if let Some(old) = state.seen.pop_front() {
                    state.seen_set.remove(&old);
                }
            }
        }
        self.marker_seen.notify_waiters();
    }

    /// Takes in `control`, to take effect once the readers got to every one of `markers` and
    /// after every signal held before it. Call under [`applying`](Self::applying), and apply an
    /// [`Admitted::ApplyNow`] before letting go of it.
    pub(crate) fn admit(&self, mut markers: Vec<u64>, control: Control) -> Admitted {
        let mut state = self.state.lock();
        markers.sort_unstable();
        markers.dedup();
        state.claim(&mut markers);
        if state.drained || (state.held.is_empty() && markers.is_empty()) {
            return Admitted::ApplyNow(control);
        }
        let number = state.next_number;
        state.next_number += 1;
        state.held.push_back(Held { number, markers, control });
        let start_task = !std::mem::replace(&mut state.waiting_task, true);
        Admitted::Held { start_task }
    }

    /// The held signals, from the first, whose markers have all been seen; the waiting task
    /// applies them (under [`applying`](Self::applying)).
    pub(crate) fn take_ready(&self) -> Ready {
        let mut state = self.state.lock();
        let FenceState { held, seen, seen_set, .. } = &mut *state;
        for signal in held.iter_mut() {
            if !signal.markers.is_empty() {
                claim(seen, seen_set, &mut signal.markers);
            }
        }
        let mut controls = Vec::new();
        while held.front().is_some_and(|signal| signal.markers.is_empty()) {
            controls.extend(held.pop_front().map(|signal| signal.control));
        }
        Ready { controls, front: held.front().map(|signal| signal.number) }
    }

    /// The first held signal, whatever it still waits for (its markers were lost with their
    /// connection, or it waited long enough).
    pub(crate) fn take_front(&self) -> Option<Control> {
        self.state.lock().held.pop_front().map(|signal| signal.control)
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

    /// Everything held, in order, for the peer's departure: from now on nothing is held (a signal
    /// that still arrives is applied at once).
    pub(crate) fn drain(&self) -> Vec<Control> {
        let mut state = self.state.lock();
        state.drained = true;
        state.seen.clear();
        state.seen_set.clear();
        state.held.drain(..).map(|signal| signal.control).collect()
    }
}

impl FenceState {
    fn claim(&mut self, markers: &mut Vec<u64>) {
        claim(&mut self.seen, &mut self.seen_set, markers);
    }
}

/// Removes from `markers` (and from the seen ones) those seen.
fn claim(seen: &mut VecDeque<u64>, seen_set: &mut HashSet<u64>, markers: &mut Vec<u64>) {
    let before = markers.len();
    markers.retain(|marker| !seen_set.remove(marker));
    if markers.len() != before {
        seen.retain(|marker| seen_set.contains(marker));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use troupe_wire::{WireActorId, WireExit};

    fn down(serial: u64, reason: WireExit) -> Control {
        Control::Down { target: WireActorId { node: 1, serial }, reason }
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
        assert_eq!(applied_now(fence.admit(vec![], down(1, WireExit::Normal))), down(1, WireExit::Normal));
        fence.note_marker(7);
        assert_eq!(applied_now(fence.admit(vec![7], down(2, WireExit::Normal))), down(2, WireExit::Normal));
    }

    #[test]
    fn later_signals_wait_behind_a_held_one_and_leave_in_order() {
        let fence = SignalFence::default();
        assert!(matches!(fence.admit(vec![1, 2], down(1, WireExit::Normal)), Admitted::Held { start_task: true }));
        assert!(matches!(fence.admit(vec![], down(1, WireExit::NoActor)), Admitted::Held { start_task: false }));
        assert!(matches!(fence.admit(vec![3], down(2, WireExit::Stopped)), Admitted::Held { start_task: false }));
        fence.note_marker(3);
        fence.note_marker(1);
        assert!(fence.take_ready().controls.is_empty());
        fence.note_marker(2);
        let ready = fence.take_ready();
        assert_eq!(ready.controls, [down(1, WireExit::Normal), down(1, WireExit::NoActor), down(2, WireExit::Stopped)]);
        assert_eq!(ready.front, None);
        assert!(fence.task_done());
    }

    #[test]
    fn duplicate_markers_count_once() {
        let fence = SignalFence::default();
        assert!(matches!(fence.admit(vec![5, 5, 5], down(1, WireExit::Normal)), Admitted::Held { .. }));
        fence.note_marker(5);
        assert_eq!(fence.take_ready().controls, [down(1, WireExit::Normal)]);
    }

    #[test]
    fn the_front_can_be_given_up_on_and_the_rest_follows() {
        let fence = SignalFence::default();
        fence.admit(vec![1], down(1, WireExit::Normal));
        fence.admit(vec![], down(2, WireExit::Normal));
        let ready = fence.take_ready();
        assert!(ready.controls.is_empty());
        assert_eq!(ready.front, Some(0));
        assert_eq!(fence.take_front(), Some(down(1, WireExit::Normal)));
        assert_eq!(fence.take_ready().controls, [down(2, WireExit::Normal)]);
    }

    #[test]
    fn a_drained_fence_holds_nothing() {
        let fence = SignalFence::default();
        fence.admit(vec![1], down(1, WireExit::Normal));
        fence.admit(vec![], down(2, WireExit::Normal));
        assert_eq!(fence.drain(), [down(1, WireExit::Normal), down(2, WireExit::Normal)]);
        assert!(fence.task_done());
        assert_eq!(applied_now(fence.admit(vec![9], down(3, WireExit::Normal))), down(3, WireExit::Normal));
    }

    #[test]
    fn unclaimed_markers_are_bounded() {
        let fence = SignalFence::default();
        for marker in 0..(MARKERS_KEPT as u64 + 10) {
            fence.note_marker(marker);
        }
        let state = fence.state.lock();
        assert_eq!(state.seen.len(), MARKERS_KEPT);
        assert_eq!(state.seen_set.len(), MARKERS_KEPT);
        assert!(!state.seen_set.contains(&0));
    }
}
