//! Registers: last-writer-wins, multi-value, and single-assignment (IVar).

mod ivar;
mod lww;
mod mv;

pub use ivar::{IVar, IVarOp};
pub use lww::{LwwOp, LwwRegister, Stamped};
pub use mv::{MvRegister, MvRegisterKind, MvRegisterOp};
