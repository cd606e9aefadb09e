//! A deterministic discrete-event simulator driving the real protocol code for thousands of
//! nodes: a [`Membership`](crate::Membership) protocol per node with [`Plumtree`](crate::plumtree)
//! on top, fed exactly as the network driver feeds them.
//!
//! The driver contract of [`crate::membership`] is implemented faithfully:
//! - connections are explicit: `Command::Connect` is answered after one round trip by
//!   `Input::Connected` on both ends, or by `Input::ConnectFailed` (after a round trip if the
//!   target process is dead: refused; after `connect_timeout` if it is behind a partition);
//! - messages only flow over open connections, FIFO per direction (per-link base delay drawn once
//!   plus per-message jitter, never overtaking);
//! - `Command::Disconnect` closes gracefully: messages already sent still arrive, then the other
//!   end gets `Input::Disconnected`; nothing is reported to the end that closed;
//! - a crashed node's peers get `Input::Disconnected` after the detection delay;
//! - loss breaks the connection (see [`SimConfig`]), partitions break the connections across them;
//! - `Command::NeedContacts` is answered with a fresh `Input::Join` naming random live nodes;
//! - membership `NeighborUp`/`NeighborDown` events feed Plumtree, as the network driver does.
//!
//! Everything random comes from the seed: the same seed gives the same run, event for event.

mod config;
mod engine;
mod metrics;
mod scenario;

pub use config::SimConfig;
pub use engine::{MakeMembership, NodeIdx, Sim};
pub use metrics::{BatchStats, Connectivity, SideStats, SimStats};
pub use scenario::{run_scenario, PeriodSample, Scenario, ScenarioParams, ScenarioResult, TimelineSample};
