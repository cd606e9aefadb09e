//! The crate's integration tests, in one binary so that the generic harness is compiled once
//! per CRDT type rather than once per test file.
//!
//! * `laws`: lattice, mutator, decomposition, delta-sync and codec laws for every type.
//! * `convergence`: random operations, a lossy/duplicating/reordering network, anti-entropy.
//! * `semantics`: concurrency semantics across types and histories.

#[path = "crdt/common/mod.rs"]
mod common;
#[path = "crdt/convergence.rs"]
mod convergence;
#[path = "crdt/laws.rs"]
mod laws;
#[path = "crdt/semantics.rs"]
mod semantics;
