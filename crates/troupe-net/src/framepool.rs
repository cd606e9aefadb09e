//! [`FramePool`]: the buffers of recently read large frames, kept for reuse by every connection
//! of a node.
//!
//! A large frame is read into a buffer of its own, and the payloads it carries reach actors as
//! slices of that buffer. Allocating a fresh buffer for every large frame costs page faults on
//! every message (and memory the allocator hands back to the OS and takes again), so a node keeps
//! the buffers of its recent large frames and reads the next large frame into one the actors are
//! done with.
//!
//! The pool is node-wide, not per connection: what it keeps is bounded by [`MAX_BYTES`] however
//! many peers and lanes stream to this node, and a buffer freed by one lane serves another.
//! Buffers nobody reused for [`MAX_AGE`] are given back to the allocator.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

/// The most a node keeps for reuse, in bytes (frames still held by actors included).
pub(crate) const MAX_BYTES: usize = 64 << 20;

/// The most buffers a node keeps, whatever their size (bounds the search for a free one).
const MAX_FRAMES: usize = 256;

/// How long a buffer stays in the pool without being reused.
pub(crate) const MAX_AGE: Duration = Duration::from_secs(5);

/// Buffers the pool gave up: freed when this is dropped.
#[derive(Default)]
pub(crate) struct Evicted(Vec<Bytes>);

/// A buffer is reused for a frame only if it is at most this many times the frame's size: a
/// small frame in a huge buffer would keep all of it alive for as long as an actor keeps a slice
/// of that frame.
const REUSE_RATIO: usize = 2;

/// Buffers of large frames, oldest first, each with its allocated size and when it was last put
/// in.
#[derive(Default)]
pub(crate) struct FramePool {
    frames: VecDeque<(Bytes, usize, Instant)>,
    /// Allocated bytes of `frames`.
    bytes: usize,
}

impl FramePool {
    /// An empty buffer with room for at least `len` bytes: a released one if the pool has one,
    /// else a fresh allocation.
    pub(crate) fn take(&mut self, len: usize) -> BytesMut {
        let fits = |capacity: usize| capacity >= len && capacity <= len.saturating_mul(REUSE_RATIO);
        while let Some(i) = self.frames.iter().position(|(f, capacity, _)| fits(*capacity) && f.is_unique()) {
            let Some((frame, capacity, _)) = self.frames.remove(i) else { break };
            self.bytes -= capacity;
            // `is_unique` was true a moment ago and nobody else can clone a buffer only the pool
            // holds, so this conversion does not copy; the capacity check guards the rest.
            if let Ok(mut buffer) = frame.try_into_mut() {
                buffer.clear();
                if buffer.capacity() >= len {
                    return buffer;
                }
            }
        }
        BytesMut::with_capacity(len)
    }

    /// Keeps `frame`, whose buffer has `capacity` bytes allocated, to be reused once nobody else
    /// holds it, making room by giving up the oldest buffers (and any older than [`MAX_AGE`]). A
    /// buffer larger than the whole pool is not kept.
    /// Returns the buffers given up, for the caller to drop once it has let go of the pool's
    /// lock: freeing megabytes (an `munmap`, and its TLB shootdown) would hold every other
    /// connection's reader waiting on that lock.
    #[must_use = "drop the evicted buffers after releasing the pool's lock"]
    pub(crate) fn keep(&mut self, frame: &Bytes, capacity: usize, now: Instant) -> Evicted {
        let mut evicted = self.trim(now);
        let capacity = capacity.max(frame.len());
        if capacity > MAX_BYTES {
            return evicted;
        }
        while self.bytes + capacity > MAX_BYTES || self.frames.len() >= MAX_FRAMES {
            let Some((old, old_capacity, _)) = self.frames.pop_front() else { break };
            self.bytes -= old_capacity;
            evicted.0.push(old);
        }
        self.bytes += capacity;
        self.frames.push_back((frame.clone(), capacity, now));
        evicted
    }

    /// Gives up the buffers kept longer than [`MAX_AGE`] ago: a node that stopped receiving large
    /// frames gives their memory back (once the caller drops what this returns, see `keep`).
    #[must_use = "drop the evicted buffers after releasing the pool's lock"]
    pub(crate) fn trim(&mut self, now: Instant) -> Evicted {
        let mut evicted = Evicted::default();
        while self.frames.front().is_some_and(|(_, _, at)| now.saturating_duration_since(*at) > MAX_AGE) {
            if let Some((old, capacity, _)) = self.frames.pop_front() {
                self.bytes -= capacity;
                evicted.0.push(old);
            }
        }
        evicted
    }

    /// Bytes the pool holds (buffers still used by actors included).
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(len: usize) -> Bytes {
        Bytes::from(vec![7u8; len])
    }

    #[test]
    fn a_released_buffer_is_reused() {
        let mut pool = FramePool::default();
        let now = Instant::now();
        let first = frame(100_000);
        let address = first.as_ptr();
        let _ = pool.keep(&first, first.len(), now);
        // Still held by an actor: not handed out.
        let other = pool.take(100_000);
        assert_ne!(other.as_ptr(), address);
        drop(first);
        let again = pool.take(90_000);
        assert_eq!(again.as_ptr(), address, "the released buffer comes back");
        assert!(again.is_empty() && again.capacity() >= 100_000);
        assert_eq!(pool.bytes(), 0);
    }

    #[test]
    fn a_buffer_too_small_is_not_handed_out() {
        let mut pool = FramePool::default();
        let _ = pool.keep(&frame(70_000), 70_000, Instant::now());
        assert!(pool.take(200_000).capacity() >= 200_000);
        assert_eq!(pool.bytes(), 70_000, "the small buffer stays for a smaller frame");
    }

    #[test]
    fn a_buffer_much_larger_than_the_frame_is_not_handed_out_and_counts_whole() {
        let mut pool = FramePool::default();
        let now = Instant::now();
        // A small frame read into a big buffer counts as the big buffer.
        let mut buffer = BytesMut::with_capacity(1 << 20);
        buffer.extend_from_slice(&[1u8; 70_000]);
        let capacity = buffer.capacity();
        let small_in_big = buffer.freeze();
        let _ = pool.keep(&small_in_big, capacity, now);
        assert_eq!(pool.bytes(), capacity);
        drop(small_in_big);
        // Free, but more than twice what a 100 kB frame needs: not handed out for it.
        assert!(pool.take(100_000).capacity() < 1 << 20);
        assert_eq!(pool.bytes(), capacity);
        assert!(pool.take(600_000).capacity() >= 1 << 20, "fine for a frame of half its size or more");
        assert_eq!(pool.bytes(), 0);
    }

    #[test]
    fn the_pool_never_holds_more_than_its_bounds() {
        let mut pool = FramePool::default();
        let now = Instant::now();
        let big = MAX_BYTES / 8;
        for i in 0..100 {
            let evicted = pool.keep(&frame(big), big, now);
            assert!(pool.bytes() <= MAX_BYTES);
            assert_eq!(evicted.0.len(), usize::from(i >= 8), "each frame past the eighth evicts one");
        }
        assert_eq!(pool.bytes(), MAX_BYTES);
        let _ = pool.keep(&frame(MAX_BYTES + 1), MAX_BYTES + 1, now);
        assert_eq!(pool.bytes(), MAX_BYTES, "a frame larger than the pool is not kept");
        let mut pool = FramePool::default();
        for _ in 0..(MAX_FRAMES + 50) {
            let _ = pool.keep(&frame(64 * 1024), 64 * 1024, now);
        }
        assert_eq!(pool.frames.len(), MAX_FRAMES);
        assert_eq!(pool.bytes(), MAX_FRAMES * 64 * 1024);
    }

    #[test]
    fn buffers_nobody_reused_are_given_back() {
        let mut pool = FramePool::default();
        let start = Instant::now();
        let _ = pool.keep(&frame(100_000), 100_000, start);
        let _ = pool.keep(&frame(100_000), 100_000, start + MAX_AGE / 2);
        let aged = pool.trim(start + MAX_AGE + Duration::from_millis(1));
        assert_eq!(pool.bytes(), 100_000, "only the older buffer has aged out");
        assert_eq!(aged.0.iter().map(Bytes::len).sum::<usize>(), 100_000, "and is handed back to be freed");
        let _ = pool.trim(start + 2 * MAX_AGE);
        assert_eq!(pool.bytes(), 0);
    }
}
