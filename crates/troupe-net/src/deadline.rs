//! [`ReadDeadline`]: "give up on this read after a while" without a timer operation per read.
//!
//! `tokio::time::timeout` around every read of a busy connection inserts a timer into the runtime's
//! wheel when the read has to wait and removes it when the read completes: a lock of the time
//! driver and a clock read each way, on every read of a request-response exchange. A reader
//! keeps one [`ReadDeadline`] instead. Its timer stays armed across reads; when it fires, it is
//! checked against the deadline of the read in progress and, if that lies later (reads completed
//! meanwhile), moved there. So a connection that is read continuously touches the timer wheel
//! about once per `wait`, not once per read.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// Stands in for a deadline that does not fit in an `Instant`: about 30 years.
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// One reader's deadline for its reads (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct ReadDeadline {
    /// Armed on the first read that has to wait; never dropped between reads.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl ReadDeadline {
    /// Runs `read` to completion, or gives up once `wait` has passed from now: as
    /// `tokio::time::timeout(wait, read)`, with `None` for a timeout.
    pub(crate) async fn run<F: Future>(&mut self, wait: Duration, read: F) -> Option<F::Output> {
        let now = Instant::now();
        // A configured wait too long to add (as tokio's `timeout` does): no deadline, in effect.
        let deadline = now.checked_add(wait).unwrap_or_else(|| now + FAR_FUTURE);
        let sleep = match &mut self.sleep {
            Some(sleep) => {
                // Armed for a later time (a longer wait before): bring it forward. An earlier time
                // is fine: it is moved on when it fires.
                if sleep.deadline() > deadline {
                    sleep.as_mut().reset(deadline);
                }
                sleep
            }
            None => self.sleep.insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        tokio::pin!(read);
        loop {
            tokio::select! {
                // The read first: a read that can complete never looks at the timer.
                biased;
                out = &mut read => return Some(out),
                () = sleep.as_mut() => {
                    if Instant::now() >= deadline {
                        return None;
                    }
                    sleep.as_mut().reset(deadline);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_read_that_completes_in_time_is_returned() {
        let mut deadline = ReadDeadline::default();
        let read = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            7
        };
        assert_eq!(deadline.run(Duration::from_millis(100), read).await, Some(7));
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_that_does_not_complete_times_out_after_its_own_wait() {
        let mut deadline = ReadDeadline::default();
        // Many quick reads first: the timer armed by the first stays in place.
        for _ in 0..100 {
            let read = async {
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            assert!(deadline.run(Duration::from_millis(100), read).await.is_some());
        }
        // 2 s later, a read that never completes gives up 100 ms after it began, not earlier
        // (the timer fired long ago, for the first read) and not later.
        let began = Instant::now();
        assert_eq!(deadline.run(Duration::from_millis(100), std::future::pending::<()>()).await, None);
        assert_eq!(began.elapsed(), Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_too_long_for_an_instant_means_no_deadline() {
        let mut deadline = ReadDeadline::default();
        assert_eq!(deadline.run(Duration::MAX, async { 3 }).await, Some(3));
        let read = async {
            tokio::time::sleep(Duration::from_secs(86_400 * 365)).await;
            4
        };
        assert_eq!(deadline.run(Duration::MAX, read).await, Some(4));
    }

    #[tokio::test(start_paused = true)]
    async fn a_shorter_wait_than_the_last_one_is_honoured() {
        let mut deadline = ReadDeadline::default();
        assert_eq!(deadline.run(Duration::from_secs(60), async { 1 }).await, Some(1));
        let read = async {
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert!(deadline.run(Duration::from_secs(60), read).await.is_some());
        // Armed for a minute from now; this read may wait 30 ms only.
        let began = Instant::now();
        assert_eq!(deadline.run(Duration::from_millis(30), std::future::pending::<()>()).await, None);
        assert_eq!(began.elapsed(), Duration::from_millis(30));
    }
}
