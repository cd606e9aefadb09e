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

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::time::Duration;

use parking_lot::{Mutex, MutexGuard};
use tokio::time::Instant;
use troupe_wire::{Control, WireActorId};

/// How long a signal waits for its markers while no message arrives from their sender and no
/// reader of its connections waits for mailbox room: after that, they were lost with their
/// connection (see [`give_up_before`]).
pub(crate) const MARKER_WAIT: Duration = Duration::from_secs(5);

/// The longest a signal waits for its markers, however busy the connections.
pub(crate) const MARKER_WAIT_MAX: Duration = Duration::from_secs(60);

/// When the waiting task looks again if no marker comes: when the oldest waiting signal
/// (admitted at `oldest`) has waited [`MARKER_WAIT`] since then and since the last progress
/// (`progress_at`), but no later than when it has waited [`MARKER_WAIT_MAX`].
pub(crate) fn next_check(oldest: Instant, progress_at: Instant) -> Instant {
    (oldest + MARKER_WAIT).max(progress_at + MARKER_WAIT).min(oldest + MARKER_WAIT_MAX)
}

/// At `now`, with the last progress at `progress_at`: signals admitted at or before the result
/// give up on their markers (see [`SignalFence::give_up`]).
pub(crate) fn give_up_before(now: Instant, progress_at: Instant) -> Option<Instant> {
    let waited = if progress_at + MARKER_WAIT <= now { MARKER_WAIT } else { MARKER_WAIT_MAX };
    now.checked_sub(waited)
}

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
    /// Signals held, by number (numbers increase in arrival order).
    held: BTreeMap<u64, Held>,
    /// The numbers of the held signals that still wait for markers.
    waiting: BTreeSet<u64>,
    /// For each actor some held signal is about, those signals' numbers in arrival order: only
    /// the first of each can take effect.
    lines: HashMap<WireActorId, VecDeque<u64>>,
    /// Held signals that may have become ready (their markers are in, or one before them left).
    candidates: Vec<u64>,
    next_number: u64,
    /// Whether a task waits for the held signals' markers.
    waiting_task: bool,
    /// The peer went away: nothing is held any more.
    drained: bool,
}

struct Held {
    /// The actors it is about: it waits behind earlier signals about any of them.
    about: About,
    /// The markers it still waits for.
    markers: Vec<u64>,
    admitted: Instant,
    control: Control,
}

/// The actors a signal is about: its target, and for a link or an unlink the linking actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct About(pub(crate) WireActorId, pub(crate) Option<WireActorId>);

impl About {
    fn actors(&self) -> impl Iterator<Item = &WireActorId> {
        std::iter::once(&self.0).chain(self.1.as_ref())
    }
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
            let done = state.held.get_mut(&number).is_some_and(|held| {
                held.markers.retain(|&m| m != marker);
                held.markers.is_empty()
            });
            if done {
                state.waiting.remove(&number);
                state.candidates.push(number);
                drop(state);
                self.marker_seen.notify_waiters();
            }
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

    /// Takes in `control`, a signal about the actors `about`, to take effect once the readers got
    /// to every one of `markers` and after every held signal about any of the same actors. Call
    /// under [`applying`](Self::applying), and apply an [`Admitted::ApplyNow`] before letting go
    /// of it.
    pub(crate) fn admit(&self, about: About, mut markers: Vec<u64>, control: Control, now: Instant) -> Admitted {
        let mut state = self.state.lock();
        if state.drained {
            return Admitted::ApplyNow(control);
        }
        markers.sort_unstable();
        markers.dedup();
        markers.retain(|marker| !state.seen_set.remove(marker));
        if markers.is_empty() && !about.actors().any(|actor| state.lines.contains_key(actor)) {
            return Admitted::ApplyNow(control);
        }
        let number = state.next_number;
        state.next_number += 1;
        for &marker in &markers {
            state.awaited.insert(marker, number);
        }
        if !markers.is_empty() {
            state.waiting.insert(number);
        }
        for actor in about.actors() {
            state.lines.entry(actor.clone()).or_default().push_back(number);
        }
        state.held.insert(number, Held { about, markers, admitted: now, control });
        let start_task = !std::mem::replace(&mut state.waiting_task, true);
        Admitted::Held { start_task }
    }

    /// The held signals that can take effect now: all their markers are in, and no earlier
    /// signal about any of their actors is still held. Apply them, in this order, under
    /// [`applying`](Self::applying).
    pub(crate) fn take_ready(&self) -> Vec<Control> {
        let mut state = self.state.lock();
        let FenceState { held, lines, candidates, .. } = &mut *state;
        let mut ready = Vec::new();
        while let Some(number) = candidates.pop() {
            let Some(signal) = held.get(&number) else { continue };
            let first_in_line =
                signal.about.actors().all(|actor| lines.get(actor).and_then(|l| l.front()) == Some(&number));
            if !signal.markers.is_empty() || !first_in_line {
                continue;
            }
            let Some(signal) = held.remove(&number) else { continue };
            for actor in signal.about.actors() {
                if let Some(line) = lines.get_mut(actor) {
                    line.pop_front();
                    match line.front() {
                        Some(&next) => candidates.push(next),
                        None => {
                            lines.remove(actor);
                        }
                    }
                }
            }
            ready.push(signal.control);
        }
        ready
    }

    /// When the oldest signal still waiting for markers was admitted.
    pub(crate) fn oldest_waiting(&self) -> Option<Instant> {
        let state = self.state.lock();
        state.waiting.first().and_then(|number| state.held.get(number)).map(|held| held.admitted)
    }

    /// Stops waiting for the markers of the signals admitted at or before `before` (they were
    /// lost with their connection, or the signal waited long enough); they are then ready once
    /// no earlier signal about their actors is held.
    pub(crate) fn give_up(&self, before: Instant) {
        let mut state = self.state.lock();
        let FenceState { held, waiting, awaited, candidates, .. } = &mut *state;
        while let Some(&number) = waiting.first() {
            let Some(signal) = held.get_mut(&number) else {
                waiting.pop_first();
                continue;
            };
            if signal.admitted > before {
                break;
            }
            for marker in signal.markers.drain(..) {
                awaited.remove(&marker);
            }
            waiting.pop_first();
            candidates.push(number);
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
        state.waiting.clear();
        state.lines.clear();
        state.candidates.clear();
        if close {
            state.seen.clear();
            state.seen_set.clear();
        }
        std::mem::take(&mut state.held).into_values().map(|held| held.control).collect()
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

    fn about(serial: u64) -> About {
        About(actor(serial), None)
    }

    fn admit(fence: &SignalFence, serial: u64, markers: Vec<u64>, reason: WireExit) -> Admitted {
        fence.admit(about(serial), markers, down(serial, reason), Instant::now())
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
        fence.admit(about(1), vec![1], down(1, WireExit::Normal), start);
        fence.admit(about(1), vec![], down(1, WireExit::NoActor), start);
        fence.admit(about(2), vec![2], down(2, WireExit::Normal), start + Duration::from_secs(3));
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
    fn a_signal_gives_up_after_a_quiet_wait_or_the_longest_one() {
        let t0 = Instant::now() + MARKER_WAIT_MAX;
        let secs = Duration::from_secs;
        // No progress since it arrived: it gives up MARKER_WAIT after arriving.
        assert_eq!(next_check(t0, t0 - secs(1)), t0 + MARKER_WAIT);
        assert_eq!(give_up_before(t0 + MARKER_WAIT, t0 - secs(1)), Some(t0));
        // Progress 3 s after it arrived: it waits MARKER_WAIT from then, no less.
        assert_eq!(next_check(t0, t0 + secs(3)), t0 + secs(3) + MARKER_WAIT);
        assert!(give_up_before(t0 + MARKER_WAIT, t0 + secs(3)).is_some_and(|cutoff| cutoff < t0));
        assert_eq!(give_up_before(t0 + secs(3) + MARKER_WAIT, t0 + secs(3)), Some(t0 + secs(3)));
        // Progress all along: it gives up after MARKER_WAIT_MAX.
        let late = t0 + MARKER_WAIT_MAX;
        assert_eq!(next_check(t0, late - secs(1)), late);
        assert_eq!(give_up_before(late, late - secs(1)), Some(t0));
    }

    #[test]
    fn signals_about_either_actor_of_a_link_wait_behind_it() {
        let fence = SignalFence::default();
        let link = Control::Link { target: actor(1), from: actor(2) };
        assert!(matches!(
            fence.admit(About(actor(1), Some(actor(2))), vec![1], link.clone(), Instant::now()),
            Admitted::Held { .. }
        ));
        assert!(matches!(admit(&fence, 2, vec![], WireExit::Normal), Admitted::Held { .. }));
        assert!(fence.take_ready().is_empty());
        fence.note_marker(1);
        assert_eq!(fence.take_ready(), [link, down(2, WireExit::Normal)]);
        assert!(fence.task_done());
    }

    #[test]
    fn claimed_markers_leave_the_seen_ones_in_time() {
        let fence = SignalFence::default();
        for marker in 0..(2 * MARKERS_KEPT as u64) {
            fence.note_marker(marker);
            // Claimed at once by a signal that was waiting for it.
            applied_now(admit(&fence, marker, vec![marker], WireExit::Normal));
        }
        fence.note_marker(u64::MAX);
        let state = fence.state.lock();
        assert_eq!(state.seen_set.len(), 1);
        // Compacted once the claimed ones made it twice the bound.
        assert_eq!(state.seen.len(), 1);
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
