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
//! Routes are hints, kept honest in four ways:
//! - **Shortest first.** Each route keeps the hops left (TTL) of the frame it was learned from;
//!   a fresh route is replaced only by one learned from a frame with at least as many hops left
//!   (a path no longer), so a walk that went round in a circle cannot turn routes into a loop.
//! - **Short-lived.** A route not confirmed by traffic from its node within [`ROUTE_TTL`] is not
//!   used, so a path that broke further along is abandoned for a walk again within seconds.
//! - **Dead ends come back.** A hop with nowhere to pass a frame on returns it to the neighbour
//!   it came from, and a node whose route for the frame's target points at that neighbour drops
//!   the route (see the driver's `relay`).
//! - **Bounded.** At most [`MAX_ROUTES`] origins; when full, expired routes are swept at most
//!   once per [`SWEEP_EVERY`], and a new origin is not learned while none has expired, so a flood
//!   of made-up origins costs constant work per frame and cannot evict routes in use.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use troupe_actor::NodeId;

/// How long a route stays usable without traffic from its node that confirms it.
pub(crate) const ROUTE_TTL: Duration = Duration::from_secs(10);

/// How many origins a node keeps routes for.
pub(crate) const MAX_ROUTES: usize = 4096;

/// How often a full cache looks for expired routes to make room.
pub(crate) const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The neighbour to pass frames for a node to, per node, as learned from relayed frames.
#[derive(Default)]
pub(crate) struct RouteCache {
    routes: HashMap<NodeId, Route>,
    last_sweep: Option<Instant>,
}

#[derive(Clone, Copy)]
struct Route {
    via: NodeId,
    /// Hops the frame it was learned from had left when it arrived.
    ttl: u8,
    seen: Instant,
}

impl Route {
    fn fresh(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.seen) < ROUTE_TTL
    }
}

impl RouteCache {
    /// A frame from `origin` arrived through the neighbour `via` at `now`, with `ttl` hops left.
    pub(crate) fn learn(&mut self, origin: NodeId, via: NodeId, ttl: u8, now: Instant) {
        if let Some(route) = self.routes.get_mut(&origin) {
            if route.via == via {
                route.seen = now;
                route.ttl = ttl;
            } else if !route.fresh(now) || ttl >= route.ttl {
                *route = Route { via, ttl, seen: now };
            }
            return;
        }
        if self.routes.len() >= MAX_ROUTES {
            let due = self.last_sweep.is_none_or(|at| now.saturating_duration_since(at) >= SWEEP_EVERY);
            if due {
                self.last_sweep = Some(now);
                self.routes.retain(|_, route| route.fresh(now));
            }
            if self.routes.len() >= MAX_ROUTES {
                return;
            }
        }
        self.routes.insert(origin, Route { via, ttl, seen: now });
    }

    /// The neighbour frames from `to` came through, if confirmed within [`ROUTE_TTL`] of `now`.
    pub(crate) fn via(&self, to: NodeId, now: Instant) -> Option<NodeId> {
        self.routes.get(&to).filter(|route| route.fresh(now)).map(|route| route.via)
    }

    /// A frame for `to` came back from `neighbour`: if that is where this node's route for `to`
    /// points, the route leads nowhere (a dead end or a loop) and is dropped.
    pub(crate) fn returned(&mut self, to: NodeId, neighbour: NodeId) {
        if self.routes.get(&to).is_some_and(|route| route.via == neighbour) {
            self.routes.remove(&to);
        }
    }

    /// Forgets every route through `neighbour` (its connection is gone or released).
    pub(crate) fn forget_via(&mut self, neighbour: NodeId) {
        self.routes.retain(|_, route| route.via != neighbour);
    }

    /// Routes held (for tests).
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
        routes.learn(origin, a, 3, t0);
        assert_eq!(routes.via(origin, t0 + Duration::from_secs(1)), Some(a));
        routes.learn(origin, a, 3, t0 + Duration::from_secs(8));
        assert_eq!(routes.via(origin, t0 + Duration::from_secs(17)), Some(a), "refreshed at 8 s");
        assert_eq!(routes.via(origin, t0 + Duration::from_secs(19)), None, "expired");
        routes.learn(origin, b, 1, t0 + Duration::from_secs(19));
        assert_eq!(routes.via(origin, t0 + Duration::from_secs(19)), Some(b), "an expired route gives way");
        routes.forget_via(b);
        assert_eq!(routes.via(origin, t0 + Duration::from_secs(19)), None);
    }

    #[test]
    fn a_longer_path_does_not_replace_a_fresh_shorter_one() {
        let mut routes = RouteCache::default();
        let t0 = Instant::now();
        let (origin, near, far) = (NodeId(1), NodeId(2), NodeId(3));
        routes.learn(origin, near, 4, t0);
        // The same walk came round again through another neighbour, with fewer hops left.
        routes.learn(origin, far, 1, t0 + Duration::from_millis(1));
        assert_eq!(routes.via(origin, t0 + Duration::from_millis(2)), Some(near));
        // A path as short (or shorter) does.
        routes.learn(origin, far, 4, t0 + Duration::from_millis(3));
        assert_eq!(routes.via(origin, t0 + Duration::from_millis(4)), Some(far));
    }

    #[test]
    fn a_returned_frame_drops_the_route_it_followed() {
        let mut routes = RouteCache::default();
        let t0 = Instant::now();
        let (to, a, b) = (NodeId(1), NodeId(2), NodeId(3));
        routes.learn(to, a, 3, t0);
        routes.returned(to, b);
        assert_eq!(routes.via(to, t0), Some(a), "came back from elsewhere: the route stands");
        routes.returned(to, a);
        assert_eq!(routes.via(to, t0), None);
    }

    #[test]
    fn a_full_cache_keeps_its_routes_and_makes_room_from_expired_ones() {
        let mut routes = RouteCache::default();
        let t0 = Instant::now();
        let via = NodeId(1_000_000);
        for i in 0..MAX_ROUTES as u64 {
            routes.learn(NodeId(i), via, 3, t0);
        }
        // A flood of new origins while every route is fresh: none is learned, none evicted.
        for i in 0..100u64 {
            routes.learn(NodeId(2_000_000 + i), via, 3, t0 + Duration::from_secs(1));
        }
        assert_eq!(routes.len(), MAX_ROUTES);
        assert_eq!(routes.via(NodeId(0), t0 + Duration::from_secs(1)), Some(via));
        assert_eq!(routes.via(NodeId(2_000_000), t0 + Duration::from_secs(1)), None);
        // Once they expire, a new origin sweeps them out.
        let later = t0 + ROUTE_TTL + Duration::from_secs(1);
        routes.learn(NodeId(3_000_000), via, 3, later);
        assert_eq!(routes.len(), 1);
        assert_eq!(routes.via(NodeId(3_000_000), later), Some(via));
    }
}
