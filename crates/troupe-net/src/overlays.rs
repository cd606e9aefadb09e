//! Builds the configured overlay protocol and the broadcast layer and starts their driver.

use std::sync::Arc;
use std::time::Duration;

use troupe_overlay::{
    ClientServer, ClientServerConfig, FullMesh, FullMeshConfig, HyParView, Member, Plumtree, PlumtreeConfig,
    StaticConfig, StaticOverlay,
};

use crate::config::{ConfigError, NodeConfig, OverlayKind};
use crate::core::NodeShared;
use crate::membership::{self, DriverHandle, DriverSettings};
use crate::NodeError;

/// Name of the optional channel for broadcast traffic; without it broadcasts share the control
/// channel (no extra connections, but a large broadcast delays membership traffic behind it).
pub const BROADCAST_CHANNEL: &str = "broadcast";

/// Starts the driver for `config.overlay` (not `None`), with `me` as this node.
pub(crate) fn start(shared: &Arc<NodeShared>, config: &NodeConfig, me: Member) -> Result<DriverHandle, NodeError> {
    let broadcast_channel =
        config.channel_table().iter().position(|(name, _)| name == BROADCAST_CHANNEL).unwrap_or(0) as u16;
    let settings = DriverSettings { release_idle: Duration::from_millis(config.release_idle_ms), broadcast_channel };
    let seed = rand::random::<u64>();
    let plumtree = Plumtree::new(me.id, PlumtreeConfig::default(), seed);
    let mesh = FullMeshConfig { seed, ..FullMeshConfig::default() };
    Ok(match config.overlay {
        OverlayKind::None => {
            return Err(NodeError::Config(ConfigError::Invalid {
                key: "overlay".into(),
                message: "no overlay to start".into(),
            }))
        }
        OverlayKind::Static => {
            let protocol = StaticOverlay::new(me, StaticConfig { seed, ..StaticConfig::default() });
            membership::start(shared, protocol, plumtree, settings)
        }
        OverlayKind::Full => membership::start(shared, FullMesh::new(me, mesh), plumtree, settings),
        OverlayKind::ClientServer => {
            let cs = ClientServerConfig { role: config.role, mesh, ..ClientServerConfig::default() };
            membership::start(shared, ClientServer::new(me, cs), plumtree, settings)
        }
        OverlayKind::Hyparview => {
            let protocol = HyParView::new(me, config.hyparview.protocol_config(seed)).map_err(|e| {
                NodeError::Config(ConfigError::Invalid { key: "overlay".into(), message: e.to_string() })
            })?;
            membership::start(shared, protocol, plumtree, settings)
        }
    })
}
