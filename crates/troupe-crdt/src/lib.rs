//! State- and delta-based CRDTs: Lasp's set of replicated data types, with one trait family,
//! threshold reads, digest-driven synchronisation and compact encodings. Pure code: no I/O,
//! no clocks, no async.
//!
//! Every type is a join-semilattice ([`Lattice`]): replicas update their own copy with
//! operations, which return *deltas* (small states) to ship; any mix of deltas and full states,
//! delivered in any order, any number of times, converges by [`Lattice::merge`]. Two replicas can
//! also sync by exchanging a [`DeltaSync::digest`] and answering with [`DeltaSync::delta`].
//!
//! | family | types |
//! |---|---|
//! | counters | [`GCounter`], [`PnCounter`], [`BoundedCounter`], [`LexCounter`], [`MaxInt`] |
//! | sets | [`GSet`], [`TwoPSet`], [`OrSet`] (tombstones), [`AwSet`] (dots, no tombstones) |
//! | registers | [`LwwRegister`], [`MvRegister`], [`IVar`] |
//! | flags | [`EwFlag`], [`DwFlag`], [`Boolean`] |
//! | composition | [`Pair`], [`GMap`] (any values), [`AwMap`] (causal values), [`MvMap`] |
//!
//! Replica identity is any small type of the user's choice ([`ReplicaId`]), such as a `u64` node
//! id. The dot-based types ([`Causal`]) store their history as a [`CausalContext`] of per-replica
//! runs and encode replica ids once per state.
//!
//! ```
//! use troupe_crdt::{AwSet, AwSetOp, DeltaSync, Encode, Lattice, Mutate, Query, Threshold};
//!
//! // Two replicas, identified by u64 node ids.
//! let (n1, n2) = (1u64, 2u64);
//! let mut a: AwSet<String, u64> = AwSet::new();
//! let mut b = a.clone();
//!
//! // Operations return deltas; ship them (bytes) and merge them on the other side.
//! let delta = a.apply(AwSetOp::Add("x".to_string()), &n1)?;
//! let bytes = delta.to_bytes()?;
//! b.merge(&AwSet::from_bytes(&bytes)?);
//!
//! // Concurrent remove (at b) and re-add (at a): the add wins.
//! b.apply(AwSetOp::Remove("x".to_string()), &n2)?;
//! a.apply(AwSetOp::Add("x".to_string()), &n1)?;
//!
//! // Anti-entropy: b sends its digest, a answers with what b lacks.
//! let reply = a.delta(&b.digest());
//! b.merge(&reply);
//! assert!(b.contains(&"x".to_string()));
//!
//! // Threshold read: has b's state reached a's?
//! assert!(Threshold::Reached(a.clone()).is_met(&b));
//! assert_eq!(b.query().len(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod macros;

pub mod bench;
pub mod causal;
pub mod codec;
pub mod context;
pub mod counter;
pub mod error;
pub mod flag;
pub mod map;
pub mod max;
pub mod pair;
pub mod register;
pub mod set;
pub mod threshold;
pub mod traits;

pub use causal::{Causal, CausalKind, DotFun, DotMap, DotSet, DotStore};
pub use codec::Encode;
pub use context::{CausalContext, Dot};
pub use counter::{
    BoundedCounter, BoundedCounterOp, GCounter, GCounterOp, LexCounter, LexCounterOp, LexPair, MaxInt, MaxIntOp,
    PnCounter, PnCounterOp,
};
pub use error::{CodecError, UpdateError};
pub use flag::{Boolean, BooleanOp, DwFlag, EwFlag, FlagOp};
pub use map::{AwMap, AwMapOp, GMap, GMapOp, MvMap, MvMapOp};
pub use max::Max;
pub use pair::{Pair, PairOp};
pub use register::{IVar, IVarOp, LwwOp, LwwRegister, MvRegister, MvRegisterOp, Stamped};
pub use set::{AwSet, AwSetOp, GSet, GSetOp, OrSet, OrSetDigest, OrSetOp, TwoPSet, TwoPSetOp};
pub use threshold::{MonotoneQuery, Threshold};
pub use traits::{Crdt, DeltaSync, Element, Lattice, Mutate, Query, ReplicaId};
