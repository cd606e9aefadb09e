//! Timing the asks that wait on other nodes. An asker on this node whose request went to another
//! node hands its deadline over with its reply port (`Transport::register_reply`); one sweeper
//! task sleeps until the earliest deadline and expires what is due, instead of a tokio timer
//! per ask (arming and cancelling one cost ~2 µs of a 33 µs remote round trip on our 2-core VM).
//! The deadlines wait in a heap, so a wake costs the sweeper only the asks that are due.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::*;

/// The deadlines of the asks a node times, earliest first, with their request numbers. An ask
/// answered in time leaves its entry here until the entry's deadline comes (then it is found
/// gone from the map of waiting asks and skipped) or the heap is rebuilt from that map, once
/// it holds more than twice as many entries as asks wait (plus some).
pub(super) type Deadlines = BinaryHeap<Reverse<(Instant, u64)>>;

impl NodeShared {
    /// Times ask `request`, just put in `replies` (whose lock the caller holds) with
    /// `deadline`: the sweeper wakes by then.
    pub(super) fn time_ask(&self, replies: &PendingReplies, request: u64, deadline: Instant) {
        let mut deadlines = self.ask_deadlines.lock();
        if deadlines.len() >= 2 * replies.len() + 1024 {
            *deadlines = replies
                .iter()
                .filter_map(|(request, (_, waiting))| waiting.deadline.map(|deadline| Reverse((deadline, *request))))
                .collect();
        } else {
            deadlines.push(Reverse((deadline, request)));
        }
        let sooner = deadlines.peek() == Some(&Reverse((deadline, request)));
        drop(deadlines);
        if sooner {
            self.ask_sweep_sooner.notify_one();
        }
    }

    /// Expires the asks whose deadline has passed (their askers hear they timed out), then
    /// sleeps until the next deadline or an earlier one comes in. Runs until the node stops
    /// ([`fail_waiting_asks`](Self::fail_waiting_asks)), so asks go on timing out while it
    /// shuts down.
    pub(crate) async fn ask_sweeper(self: Arc<Self>) {
        loop {
            if self.asks_stopped.load(Ordering::Acquire) {
                return;
            }
            let due = self.ask_deadlines.lock().peek().map(|Reverse((deadline, _))| *deadline);
            let sleep = async {
                match due {
                    Some(due) => tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = sleep => {}
                _ = self.ask_sweep_sooner.notified() => continue,
            }
            // tokio's clock, which the deadlines were taken from (it may be paused in tests).
            let now = tokio::time::Instant::now().into_std();
            let mut due = Vec::new();
            {
                let mut deadlines = self.ask_deadlines.lock();
                while let Some(&Reverse((deadline, request))) = deadlines.peek() {
                    if deadline > now {
                        break;
                    }
                    deadlines.pop();
                    due.push(request);
                }
            }
            // Those answered meanwhile are gone from the map.
            let expired: Vec<Box<dyn PendingReply>> = {
                let mut replies = self.replies.lock();
                due.iter().filter_map(|request| replies.remove(request)).map(|(_, waiting)| waiting.pending).collect()
            };
            for pending in expired {
                pending.expire();
            }
        }
    }

    /// The asks still waiting on other nodes get no answer: this node stops (the end of
    /// `shutdown` and of `stop_now`). An ask registered after this is failed by its registration
    /// (see `register_reply`), and the sweeper ends.
    pub(crate) fn fail_waiting_asks(&self) {
        self.asks_stopped.store(true, Ordering::Release);
        let waiting: Vec<Waiting> = self.replies.lock().drain().map(|(_, (_, waiting))| waiting).collect();
        for waiting in waiting {
            waiting.pending.complete(ReplyOutcome::NoReply, &[], None);
        }
        self.ask_deadlines.lock().clear();
        self.ask_sweep_sooner.notify_one();
    }
}
