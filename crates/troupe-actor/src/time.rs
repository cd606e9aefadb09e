//! Timeouts that work from any thread: inside a tokio runtime they use it, elsewhere they use the
//! actor system's own I/O runtime.

use std::future::Future;
use std::sync::Weak;
use std::time::Duration;

use crate::system::SystemShared;

/// Runs `fut` for at most `limit`. `None` means it timed out.
pub(crate) async fn timeout<F: Future>(system: &Weak<SystemShared>, limit: Duration, fut: F) -> Option<F::Output> {
    let timed = match tokio::runtime::Handle::try_current() {
        Ok(_) => tokio::time::timeout(limit, fut),
        Err(_) => match system.upgrade() {
            Some(system) => {
                let _entered = system.tokio.enter();
                tokio::time::timeout(limit, fut)
            }
            // No runtime anywhere: the system is gone, so nothing can answer.
            None => return None,
        },
    };
    timed.await.ok()
}
