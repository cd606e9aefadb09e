//! Flags: enable-wins, disable-wins, and the monotonic boolean.

mod boolean;
mod dwflag;
mod ewflag;

pub use boolean::{Boolean, BooleanOp};
pub use dwflag::{DwFlag, DwFlagKind};
pub use ewflag::{EwFlag, EwFlagKind};

use serde::{Deserialize, Serialize};

/// Operations of [`EwFlag`] and [`DwFlag`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FlagOp {
    /// Set the flag to true.
    Enable,
    /// Set the flag to false.
    Disable,
}
