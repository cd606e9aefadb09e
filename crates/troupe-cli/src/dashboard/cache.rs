//! The latest picture as JSON, shared by every request: the source is asked at most once at a
//! time and at most once per time-to-live, however many pages poll.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use tokio::sync::Mutex;

use super::source::PictureSource;

/// Why no picture could be had.
#[derive(Clone, Debug, thiserror::Error)]
pub(crate) enum PictureError {
    /// The source did not answer within the timeout.
    #[error("the cluster picture took longer than {0:?}")]
    TimedOut(Duration),
    /// Too many requests are already waiting for a picture.
    #[error("too many requests are waiting for a picture")]
    Busy,
    /// The picture could not be encoded.
    #[error("the cluster picture could not be encoded: {0}")]
    Encode(String),
}

/// A single-flight, time-limited cache in front of a [`PictureSource`].
pub(crate) struct PictureCache {
    source: Arc<dyn PictureSource>,
    ttl: Duration,
    timeout: Duration,
    /// When the last answer (or failure) was had, and what it was.
    slot: Mutex<Option<(Instant, Result<Bytes, PictureError>)>>,
}

impl PictureCache {
    /// A cache that keeps an answer for `ttl` and waits at most `timeout` for the source (and
    /// for another request's call to the source).
    pub(crate) fn new(source: Arc<dyn PictureSource>, ttl: Duration, timeout: Duration) -> Self {
        Self { source, ttl, timeout, slot: Mutex::new(None) }
    }

    /// The current picture as JSON.
    pub(crate) async fn json(&self) -> Result<Bytes, PictureError> {
        let mut slot = tokio::time::timeout(self.timeout, self.slot.lock()).await.map_err(|_| PictureError::Busy)?;
        if let Some((at, answer)) = slot.as_ref() {
            // A failure is remembered too, so requests queued behind a hung source fail fast
            // instead of each waiting out its own timeout.
            if at.elapsed() < self.ttl || (answer.is_err() && at.elapsed() < self.timeout.min(Duration::from_secs(1))) {
                return answer.clone();
            }
        }
        let answer = match tokio::time::timeout(self.timeout, self.source.picture()).await {
            Ok(picture) => {
                serde_json::to_vec(&picture).map(Bytes::from).map_err(|e| PictureError::Encode(e.to_string()))
            }
            Err(_) => Err(PictureError::TimedOut(self.timeout)),
        };
        *slot = Some((Instant::now(), answer.clone()));
        answer
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::super::model::ClusterPicture;
    use super::super::source::PictureFuture;
    use super::*;

    /// Counts calls; each picture carries its call number; optionally never answers.
    struct Counting {
        calls: AtomicU64,
        hang: bool,
    }

    impl PictureSource for Counting {
        fn picture(&self) -> PictureFuture<'_> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            let hang = self.hang;
            Box::pin(async move {
                if hang {
                    std::future::pending::<()>().await;
                }
                ClusterPicture { taken_at_ms: n, ..ClusterPicture::default() }
            })
        }
    }

    fn taken_at(json: &Bytes) -> u64 {
        serde_json::from_slice::<ClusterPicture>(json).expect("valid json").taken_at_ms
    }

    #[tokio::test]
    async fn concurrent_requests_share_one_call_within_the_ttl() {
        let source = Arc::new(Counting { calls: AtomicU64::new(0), hang: false });
        let cache = Arc::new(PictureCache::new(source.clone(), Duration::from_secs(60), Duration::from_secs(5)));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let cache = cache.clone();
            tasks.push(tokio::spawn(async move { cache.json().await }));
        }
        for task in tasks {
            assert_eq!(taken_at(&task.await.expect("joins").expect("answers")), 1);
        }
        assert_eq!(source.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_zero_ttl_asks_every_time() {
        let source = Arc::new(Counting { calls: AtomicU64::new(0), hang: false });
        let cache = PictureCache::new(source.clone(), Duration::ZERO, Duration::from_secs(5));
        for expected in 1..=3 {
            assert_eq!(taken_at(&cache.json().await.expect("answers")), expected);
        }
    }

    #[tokio::test]
    async fn a_hung_source_times_out_and_queued_requests_fail_fast() {
        let source = Arc::new(Counting { calls: AtomicU64::new(0), hang: true });
        let cache = Arc::new(PictureCache::new(source.clone(), Duration::ZERO, Duration::from_millis(300)));
        let mut tasks = Vec::new();
        for _ in 0..5 {
            let cache = cache.clone();
            tasks.push(tokio::spawn(async move { cache.json().await }));
        }
        for task in tasks {
            let err = task.await.expect("joins").expect_err("no picture from a hung source");
            assert!(matches!(err, PictureError::TimedOut(_) | PictureError::Busy), "{err}");
        }
        assert_eq!(source.calls.load(Ordering::SeqCst), 1, "queued requests reused the failure");
    }
}
