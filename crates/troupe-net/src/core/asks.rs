//! Timing the asks that wait on other nodes. An asker on this node whose request went to another
//! node hands its deadline over with its reply port (`Transport::register_reply`); one sweeper
//! task sleeps until the earliest deadline and expires what is due, instead of a tokio timer
//! per ask (arming and cancelling one cost ~2 µs of a 33 µs remote round trip on our 2-core VM).
//! Deadlines mostly come in later than the one the sweeper sleeps toward (the same timeout,
//! asked later), so an ask costs the sweeper nothing until its deadline, when the sweeper wakes,
//! expires what is due and sleeps toward the next.

use super::*;

impl NodeShared {
    /// Sees that the ask sweeper wakes by `deadline`.
    pub(super) fn sweep_asks_by(&self, deadline: Instant) {
        let mut at = self.ask_sweep_at.lock();
        if at.is_none_or(|at| deadline < at) {
            *at = Some(deadline);
            drop(at);
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
            let due = *self.ask_sweep_at.lock();
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
            let expired: Vec<Box<dyn PendingReply>> = {
                let mut replies = self.replies.lock();
                let due: Vec<u64> = replies
                    .iter()
                    .filter(|(_, (_, waiting))| waiting.deadline.is_some_and(|deadline| deadline <= now))
                    .map(|(request, _)| *request)
                    .collect();
                let expired = due.into_iter().filter_map(|request| replies.remove(&request)).map(|(_, w)| w.pending);
                let expired = expired.collect();
                // Set under the map's lock: an ask registered after this sees the new value in
                // `sweep_asks_by`, and one registered before is counted in it.
                *self.ask_sweep_at.lock() = replies.values().filter_map(|(_, waiting)| waiting.deadline).min();
                expired
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
        self.ask_sweep_sooner.notify_one();
    }
}
