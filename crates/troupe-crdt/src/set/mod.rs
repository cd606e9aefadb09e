//! Sets: grow-only, two-phase, observed-remove with tombstones, add-wins without tombstones.

mod awset;
mod gset;
mod orset;
mod twopset;

pub use awset::{AwSet, AwSetKind, AwSetOp};
pub use gset::{GSet, GSetOp};
pub use orset::{OrSet, OrSetDigest, OrSetOp};
pub use twopset::{TwoPSet, TwoPSetOp};
