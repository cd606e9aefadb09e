//! Keeping caught actor panics out of stderr.
//!
//! A panic in a handler is caught by the runtime, logged through `tracing` with the actor's id,
//! and handled by supervision. Rust's default panic hook still prints every one of them (with a
//! backtrace when `RUST_BACKTRACE` is set) before the runtime sees it. Programs that expect
//! actor failures can install [`quiet_actor_panics`] to leave the reporting to the runtime.

use std::sync::Once;

/// Installs a panic hook that stays silent for panics in actor code (on troupe's worker threads,
/// or run inline by a network thread; the runtime logs them) and defers to the previous hook everywhere else. Idempotent.
pub fn quiet_actor_panics() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !crate::sched::running_tasks() {
                previous(info);
            }
        }));
    });
}
