//! The library behind the `troupe` command: diagnostic services and the node runner, shared by
//! the binary, the benchmarks and the multi-process tests.

pub mod dashboard;
pub mod node;
pub mod process;
pub mod services;
