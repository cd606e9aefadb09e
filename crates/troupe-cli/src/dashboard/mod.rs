//! The live cluster dashboard: a web page with a force-directed graph of the overlay (active,
//! passive and broadcast-tree links, traffic per link), the member list and message rates.
//!
//! A node serves it with [`serve`] (the CLI's `--dashboard 127.0.0.1:PORT`), handing it a
//! [`PictureSource`] that takes a [`ClusterPicture`] on demand. The page is one self-contained
//! HTML document (no network access beyond its own origin) that polls `/api/picture`, computes
//! rates from successive pictures and lays the graph out in the browser.
//!
//! Every node circle and member-table row carries `data-node="<name>"`; edges carry
//! `data-from`, `data-to` (names) and `data-kind`, so tests and tools can read the page.
#![deny(missing_docs)]

mod cache;
pub mod model;
pub mod node_source;
mod page;
mod server;
pub mod source;

pub use model::{ClusterPicture, EdgeKind, EdgeView, NodeView};
pub use node_source::NodeSource;
pub use server::{serve, serve_with, Dashboard, DashboardConfig, DashboardError};
pub use source::{FnSource, PictureFuture, PictureSource};
