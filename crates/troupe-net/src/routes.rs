//! Routes learned from relayed traffic (reverse-path learning).
//!
//! A node that reaches another only through the overlay sends its frames on a walk: each hop
//! passes a frame to the overlay's next hop for the target when the overlay knows one (a
//! client-server overlay does), else to a random neighbour. Walks get lost in overlays with
//! partial views (HyParView), and a reply took a walk of its own. So every node remembers, for
//! each origin of a relayed frame it sees, the neighbour the frame came from: a frame for that
//! origin later goes back the same way. Once a request has found its target, the reply follows
//! the request's path back, and after the first reply, later requests follow the reply's.
//!
//! Routes are hints: one whose neighbour is no longer connected is skipped, and one not
//! refreshed by traffic for [`ROUTE_TTL`] is forgotten, so a path that broke further along is
//! abandoned for a walk again.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use troupe_actor::NodeId;

/// How long a route stays usable without traffic that confirms it.
pub(crate) const ROUTE_TTL: Duration = Duration::from_secs(60);

/// How many origins a node keeps routes for; past this, expired routes are dropped, then the
/// oldest.
pub(crate) const MAX_ROUTES: usize = 4096;

/// The neighbour to pass frames for a node to, per node, as learned from relayed frames.
#[derive(Default)]
pub(crate) struct RouteCache {
    routes: HashMap<NodeId, Route>,
}

#[derive(Clone, Copy)]
struct Route {
    via: NodeId,
    seen: Instant,
}

impl RouteCache {
    /// A frame from `origin` arrived through the neighbour `via` at `now`.
    pub(crate) fn learn(&mut self, origin: NodeId, via: NodeId, now: Instant) {
        if self.routes.len() >= MAX_ROUTES && !self.routes.contains_key(&origin) {
            self.routes.retain(|_, route| now.saturating_duration_since(route.seen) < ROUTE_TTL);
            if self.routes.len() >= MAX_ROUTES {
                let oldest = self.routes.iter().min_by_key(|(_, route)| route.seen).map(|(node, _)| *node);
                if let Some(oldest) = oldest {
                    self.routes.remove(&oldest);
                }
            }
        }
        self.routes.insert(origin, Route { via, seen: now });
    }

    /// The neighbour frames for `to` came from last, if that was within [`ROUTE_TTL`] of `now`.
    pub(crate) fn via(&self, to: NodeId, now: Instant) -> Option<NodeId> {
        self.routes
            .get(&to)
            .filter(|route| now.saturating_duration_since(route.seen) < ROUTE_TTL)
            .map(|route| route.via)
    }

    /// Forgets every route through `neighbour` (its connection is gone).
    pub(crate) fn forget_via(&mut self, neighbour: NodeId) {
        self.routes.retain(|_, route| route.via != neighbour);
    }

    /// Routes held (for tests and stats).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.routes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_refreshes_and_expires() {
        let mut routes = RouteCache::default();
        let t0 = Instant::now();
        let (origin, a, b) = (NodeId(1), NodeId(2), NodeId(3));
        assert_eq!(routes.via(origin, t0), None);
        routes.learn(origin, a, t0);
        assert_eq!(routes.via(origin, t0 + Duration::from_secs(1)), Some(a));
        // The latest way in wins.
        routes.learn(origin, b, t0 + Duration::from_secs(30));
        assert_eq!(routes.via(origin, t0 + Duration::from_secs(80)), Some(b), "refreshed at 30 s");
        assert_eq!(routes.via(origin, t0 + Duration::from_secs(91)), None, "expired");
        routes.forget_via(b);
        assert_eq!(routes.via(origin, t0 + Duration::from_secs(31)), None);
    }

    #[test]
    fn stays_bounded() {
        let mut routes = RouteCache::default();
        let t0 = Instant::now();
        for i in 0..(MAX_ROUTES as u64 + 10) {
            routes.learn(NodeId(i), NodeId(1_000_000), t0 + Duration::from_millis(i));
        }
        assert_eq!(routes.len(), MAX_ROUTES);
        assert_eq!(routes.via(NodeId(0), t0), None, "the oldest went first");
        assert!(routes.via(NodeId(MAX_ROUTES as u64 + 9), t0 + Duration::from_secs(1)).is_some());
    }
}
