//! Failure handling shared by the overlays: a phi-accrual failure detector and a bounded
//! reconnection backoff. Both are sans-IO: time comes in as `now`, randomness from the caller's
//! seeded RNG.

mod backoff;
mod phi;

pub use backoff::{Backoff, BackoffConfig};
pub use phi::{HeartbeatHistory, PhiAccrualConfig, PhiAccrualDetector};
