//! Maps: grow-only (nested CRDTs of any kind), add-wins (nested causal CRDTs) and multi-value.

mod awmap;
mod gmap;
mod mvmap;

pub use awmap::{AwMap, AwMapKind, AwMapOp};
pub use gmap::{GMap, GMapOp};
pub use mvmap::{MvMap, MvMapKind, MvMapOp};
