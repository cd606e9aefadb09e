//! [`PeerMap`]: a node's peers by node id, with each thread's last lookup cached.
//!
//! Every message sent to a remote actor looks up its node's peer. Under the map's read lock that
//! costs three atomic read-modify-writes (lock, the `Arc`'s count, unlock) on lines other threads
//! write too: 5.5% of all samples of `bench remote --only tell64`, an eighth of the sender's time.
//! A thread that sends to the same node again (nearly every send: an actor talks to a few nodes,
//! a node's threads serve a few peers) finds the peer in its cache instead, checked against the
//! map's epoch with one plain load.
//!
//! The epoch changes with every write to the map, under its lock, so a cached peer is used only
//! while the map still holds it; one that the map dropped just after the check is used as a
//! lookup made just before the drop would have been (a send racing a peer's removal). A thread's
//! cache holds one peer: a peer the map dropped stays alive until that thread looks up another
//! (or ends), as if a send to it were still on its way.

use std::cell::Cell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use troupe_actor::NodeId;

use crate::idmap::{id_map, IdMap};
use crate::peer::Peer;

/// Numbers the maps of this process, so a thread's cached entry never answers for another map
/// (not even one allocated where a dropped one was).
static SERIALS: AtomicU64 = AtomicU64::new(1);

/// A thread's last lookup.
struct Cached {
    map: u64,
    epoch: u64,
    id: NodeId,
    peer: Arc<Peer>,
}

thread_local! {
    static LAST: Cell<Option<Cached>> = const { Cell::new(None) };
}

/// The epoch, on a cache line of its own: the lock next to it is written by every reader.
#[repr(align(128))]
struct Epoch(AtomicU64);

/// A node's peers by id.
pub(crate) struct PeerMap {
    map: RwLock<IdMap<NodeId, Arc<Peer>>>,
    epoch: Epoch,
    serial: u64,
}

impl Default for PeerMap {
    fn default() -> Self {
        PeerMap {
            map: RwLock::new(id_map()),
            epoch: Epoch(AtomicU64::new(0)),
            serial: SERIALS.fetch_add(1, Ordering::Relaxed),
        }
    }
}

impl PeerMap {
    /// The map, for reading.
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, IdMap<NodeId, Arc<Peer>>> {
        self.map.read()
    }

    /// The map, for changing: the epoch moves on when the guard goes (before the lock is let go).
    pub(crate) fn write(&self) -> PeerMapWrite<'_> {
        PeerMapWrite { guard: self.map.write(), epoch: &self.epoch.0 }
    }

    /// The peer for node `id`.
    pub(crate) fn get(&self, id: NodeId) -> Option<Arc<Peer>> {
        self.map.read().get(&id).cloned()
    }

    /// Runs `f` with the peer for node `id`, from this thread's cache when it holds the map's
    /// current entry for `id`. `f` may look up peers itself (it then finds the cache empty).
    pub(crate) fn with<R>(&self, id: NodeId, f: impl FnOnce(Option<&Arc<Peer>>) -> R) -> R {
        // `try_with`: a send from another thread-local's destructor finds no cache, not a panic.
        let cached = LAST.try_with(Cell::take).ok().flatten();
        let hit = cached
            .as_ref()
            .is_some_and(|c| c.map == self.serial && c.id == id && c.epoch == self.epoch.0.load(Ordering::Acquire));
        let cached = if hit {
            cached
        } else {
            let map = self.map.read();
            match map.get(&id) {
                Some(peer) => Some(Cached {
                    map: self.serial,
                    epoch: self.epoch.0.load(Ordering::Acquire),
                    id,
                    peer: peer.clone(),
                }),
                // Nothing to cache: the thread keeps what it had.
                None => {
                    drop(map);
                    keep(cached);
                    return f(None);
                }
            }
        };
        let result = f(cached.as_ref().map(|c| &c.peer));
        keep(cached);
        result
    }
}

/// Puts `cached` back as the thread's last lookup.
fn keep(cached: Option<Cached>) {
    if let Some(cached) = cached {
        let _ = LAST.try_with(|last| last.set(Some(cached)));
    }
}

/// Write access to a [`PeerMap`]; moves its epoch on when dropped.
pub(crate) struct PeerMapWrite<'a> {
    guard: RwLockWriteGuard<'a, IdMap<NodeId, Arc<Peer>>>,
    epoch: &'a AtomicU64,
}

impl Drop for PeerMapWrite<'_> {
    fn drop(&mut self) {
        // Still under the lock (fields drop after this): a reader that takes the lock next
        // reads the new epoch along with the new map.
        self.epoch.fetch_add(1, Ordering::Release);
    }
}

impl Deref for PeerMapWrite<'_> {
    type Target = IdMap<NodeId, Arc<Peer>>;
    fn deref(&self) -> &Self::Target {
        &self.guard
    }
}

impl DerefMut for PeerMapWrite<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.guard
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acks::AckState;

    fn peer(id: u64) -> Arc<Peer> {
        let acks = Arc::new(AckState::new(1 << 20));
        Arc::new(Peer::new(NodeId(id), format!("p{id}"), Vec::new(), &[(1, false), (1, false)], 1 << 20, acks, 1 << 20))
    }

    /// The address of the peer `with` hands out for `id`, if any.
    fn looked_up(map: &PeerMap, id: u64) -> Option<*const Peer> {
        map.with(NodeId(id), |peer| peer.map(Arc::as_ptr))
    }

    #[test]
    fn a_cached_peer_is_used_only_while_the_map_holds_it() {
        let map = PeerMap::default();
        let first = peer(1);
        map.write().insert(NodeId(1), first.clone());
        assert_eq!(looked_up(&map, 1), Some(Arc::as_ptr(&first)));
        assert_eq!(looked_up(&map, 1), Some(Arc::as_ptr(&first)), "from the cache");
        assert_eq!(Arc::strong_count(&first), 3, "the map's, the test's and this thread's cache's");

        // Replaced: the cache must not answer with the old one.
        let second = peer(1);
        map.write().insert(NodeId(1), second.clone());
        assert_eq!(looked_up(&map, 1), Some(Arc::as_ptr(&second)));
        assert_eq!(Arc::strong_count(&first), 1, "the cache let the replaced peer go");

        // Removed: not found, though the thread's cache still holds it until its next hit.
        map.write().remove(&NodeId(1));
        assert_eq!(looked_up(&map, 1), None);

        // Another node, and the same node id in another map: each answers for itself.
        let other = peer(2);
        map.write().insert(NodeId(2), other.clone());
        assert_eq!(looked_up(&map, 2), Some(Arc::as_ptr(&other)));
        let elsewhere = PeerMap::default();
        assert_eq!(looked_up(&elsewhere, 2), None, "another map's entry is not this map's");
        let third = peer(2);
        elsewhere.write().insert(NodeId(2), third.clone());
        assert_eq!(looked_up(&elsewhere, 2), Some(Arc::as_ptr(&third)));
        assert_eq!(looked_up(&map, 2), Some(Arc::as_ptr(&other)));
    }

    #[test]
    fn a_lookup_inside_a_lookup_finds_the_peer_too() {
        let map = PeerMap::default();
        let (one, two) = (peer(1), peer(2));
        map.write().insert(NodeId(1), one.clone());
        map.write().insert(NodeId(2), two.clone());
        let (outer, inner) =
            map.with(NodeId(1), |outer| (outer.map(Arc::as_ptr), map.with(NodeId(2), |inner| inner.map(Arc::as_ptr))));
        assert_eq!(outer, Some(Arc::as_ptr(&one)));
        assert_eq!(inner, Some(Arc::as_ptr(&two)));
        assert_eq!(looked_up(&map, 1), Some(Arc::as_ptr(&one)));
    }
}
