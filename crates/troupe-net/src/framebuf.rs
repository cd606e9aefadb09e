//! [`FrameBuf`]: bytes waiting to be written, as inline bytes and attached payloads in order.
//!
//! Small frames are encoded straight into one growing `Vec` (the *tail*), so a burst of small
//! messages is one contiguous buffer and one syscall. A large [`troupe_actor::Payload`] is
//! attached as it is: the tail written so far is cut off into a piece of its own, the payload
//! becomes the next piece, and writing goes on in a fresh tail. The writer hands all pieces to one
//! vectored write, so the payload's bytes go from its own memory to the socket.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;

/// How many pieces one vectored write takes at most.
const MAX_IOVECS: usize = 64;

/// Tail capacity an empty buffer keeps while its lane is quiet (the writer has caught up).
const IDLE_KEEP: usize = 1 << 20;

/// How long a lane must stay quiet before its writer gives back a large buffer.
pub(crate) const QUIET_SHRINK: std::time::Duration = std::time::Duration::from_millis(200);

/// Bytes a TCP writer writes before it lets other tasks of its thread run.
const YIELD_EVERY: usize = 256 * 1024;

/// Frames waiting to be written: `pieces` come first, then `tail`.
#[derive(Default, Clone)]
pub(crate) struct FrameBuf {
    pieces: VecDeque<Bytes>,
    /// Bytes in `pieces`.
    pieces_len: usize,
    tail: Vec<u8>,
    /// Bytes at the start of `tail` already written (by a write that stopped part way).
    tail_written: usize,
}

impl FrameBuf {
    /// Total bytes waiting.
    pub(crate) fn len(&self) -> usize {
        self.pieces_len + self.tail.len() - self.tail_written
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where inline bytes are appended.
    pub(crate) fn inline(&mut self) -> &mut Vec<u8> {
        &mut self.tail
    }

    /// Appends `piece` after everything written so far, without copying it.
    pub(crate) fn attach(&mut self, piece: Bytes) {
        if piece.is_empty() {
            return;
        }
        self.cut_tail();
        self.pieces_len += piece.len();
        self.pieces.push_back(piece);
    }

    /// Appends everything in `other` (sharing its pieces, copying its tail).
    pub(crate) fn append(&mut self, other: &FrameBuf) {
        for piece in &other.pieces {
            self.attach(piece.clone());
        }
        self.tail.extend_from_slice(&other.tail[other.tail_written..]);
    }

    /// The inline bytes as a piece of their own, so that what follows can be attached after them.
    fn cut_tail(&mut self) {
        if self.tail.len() > self.tail_written {
            let tail = Bytes::from(std::mem::take(&mut self.tail)).slice(self.tail_written..);
            self.tail_written = 0;
            self.pieces_len += tail.len();
            self.pieces.push_back(tail);
        }
        self.tail.clear();
        self.tail_written = 0;
    }

    /// Everything as one contiguous `Vec` (copies; for the rare paths that need one frame in one
    /// buffer, such as relaying).
    pub(crate) fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len());
        for piece in &self.pieces {
            out.extend_from_slice(piece);
        }
        out.extend_from_slice(&self.tail[self.tail_written..]);
        out
    }

    /// Empties the buffer, keeping the tail's allocation: a lane streaming small frames reuses
    /// the same two buffers (the queue's and its writer's) instead of faulting in fresh memory
    /// for every buffer's worth. [`shrink_when_quiet`](Self::shrink_when_quiet) gives a large one back.
    pub(crate) fn clear(&mut self) {
        self.pieces.clear();
        self.pieces_len = 0;
        self.tail.clear();
        self.tail_written = 0;
    }

    /// Takes over `spent`'s allocation (emptied) when this buffer is empty and has less room:
    /// a frame written inline gives its buffer back to the queue, so the next message is encoded
    /// into room that exists instead of a fresh, growing `Vec`.
    pub(crate) fn recycle(&mut self, mut spent: FrameBuf) {
        if self.is_empty() && spent.tail.capacity() > self.tail.capacity() && spent.tail.capacity() <= IDLE_KEEP {
            spent.clear();
            *self = spent;
        }
    }

    /// True when the buffer is empty but holds more memory than a quiet lane keeps.
    pub(crate) fn holds_spare(&self) -> bool {
        self.is_empty() && self.tail.capacity() > IDLE_KEEP
    }

    /// Gives back a large allocation once the buffer is empty. The writer calls it on its own
    /// buffer once its lane has stayed quiet for [`QUIET_SHRINK`] (not at every pause of a
    /// stream, which would fault fresh memory in again for every burst); the queue's buffer is
    /// the writer's previous one, so both shrink within two quiet periods.
    pub(crate) fn shrink_when_quiet(&mut self) {
        if self.holds_spare() {
            self.tail = Vec::new();
        }
    }

    /// Moves the contents into `out` (which must be empty), leaving `out`'s old allocation here.
    pub(crate) fn swap_into(&mut self, out: &mut FrameBuf) {
        std::mem::swap(self, out);
    }

    /// Fills `slices` with what is still to be written, in order; returns how many it filled.
    fn slices<'a>(&'a self, slices: &mut [IoSlice<'a>; MAX_IOVECS]) -> usize {
        self.slices_upto(slices, usize::MAX)
    }

    /// Like `slices`, covering about `limit` bytes at most (the last slice is cut short).
    fn slices_upto<'a>(&'a self, slices: &mut [IoSlice<'a>; MAX_IOVECS], limit: usize) -> usize {
        let mut count = 0;
        let mut left = limit;
        let tail = &self.tail[self.tail_written..];
        let parts = self.pieces.iter().map(|p| &p[..]).chain((!tail.is_empty()).then_some(tail));
        for part in parts.take(MAX_IOVECS) {
            if left == 0 {
                break;
            }
            let part = &part[..part.len().min(left)];
            left -= part.len();
            slices[count] = IoSlice::new(part);
            count += 1;
        }
        count
    }

    /// Drops the first `n` bytes (they were written).
    fn consume(&mut self, mut n: usize) {
        while n > 0 {
            match self.pieces.front_mut() {
                Some(front) => {
                    let step = n.min(front.len());
                    front.advance(step);
                    self.pieces_len -= step;
                    n -= step;
                    if front.is_empty() {
                        self.pieces.pop_front();
                    }
                }
                None => {
                    self.tail_written = (self.tail_written + n).min(self.tail.len());
                    n = 0;
                }
            }
        }
        if self.is_empty() {
            self.clear();
        }
    }

    /// Writes everything to `writer` (vectored, as few syscalls as the socket allows) and empties
    /// the buffer, adding to `moved` as the writer takes bytes. Returns the bytes written.
    pub(crate) async fn write_to<W: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        writer: &mut W,
        moved: &AtomicU64,
    ) -> std::io::Result<usize> {
        let total = self.len();
        while !self.is_empty() {
            let n = {
                let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
                let count = self.slices(&mut slices);
                writer.write_vectored(&slices[..count]).await?
            };
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            moved.fetch_add(n as u64, Ordering::Relaxed);
            self.consume(n);
        }
        Ok(total)
    }

    /// Writes as much as `socket` takes without waiting and returns the bytes written; what is
    /// left stays in the buffer (`WouldBlock` is not an error here).
    pub(crate) fn try_write_tcp(&mut self, socket: &OwnedWriteHalf) -> std::io::Result<usize> {
        self.try_write_tcp_upto(socket, usize::MAX)
    }

    /// Like `try_write_tcp`, stopping once about `limit` bytes are written.
    fn try_write_tcp_upto(&mut self, socket: &OwnedWriteHalf, limit: usize) -> std::io::Result<usize> {
        let mut written = 0;
        while !self.is_empty() && written < limit {
            let result = {
                let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
                let count = self.slices_upto(&mut slices, limit - written);
                socket.try_write_vectored(&slices[..count])
            };
            match result {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.consume(n);
                    written += n;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        Ok(written)
    }

    /// Writes everything to `socket`, waiting for it to take more when it is full, adding to
    /// `moved` as it takes bytes. Returns the bytes written.
    ///
    /// After every [`YIELD_EVERY`] bytes it lets the thread's other tasks run (and the I/O
    /// driver look for events), so a lane streaming large payloads into a socket with room for
    /// megabytes does not hold its net thread for milliseconds.
    pub(crate) async fn write_tcp(&mut self, socket: &OwnedWriteHalf, moved: &AtomicU64) -> std::io::Result<usize> {
        let mut written = 0;
        let mut since_yield = 0;
        loop {
            let n = self.try_write_tcp_upto(socket, YIELD_EVERY - since_yield)?;
            if n > 0 {
                moved.fetch_add(n as u64, Ordering::Relaxed);
            }
            written += n;
            since_yield += n;
            if self.is_empty() {
                return Ok(written);
            }
            if since_yield >= YIELD_EVERY {
                since_yield = 0;
                tokio::task::yield_now().await;
            } else {
                socket.writable().await?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_buffer_takes_over_a_spent_buffers_room_and_a_busy_one_does_not() {
        let spent = || {
            let mut spent = FrameBuf::default();
            spent.inline().extend_from_slice(&[1u8; 300]);
            spent
        };
        let mut queue = FrameBuf::default();
        queue.recycle(spent());
        assert!(queue.is_empty(), "what was in the spent buffer is not carried over");
        assert!(queue.tail.capacity() >= 300, "the spent buffer's room was not taken over");

        let mut busy = FrameBuf::default();
        busy.inline().push(7);
        busy.recycle(spent());
        assert_eq!(busy.to_vec(), vec![7], "a buffer with frames in it keeps them");

        // A buffer larger than a quiet lane keeps is let go.
        let mut huge = FrameBuf::default();
        huge.inline().resize(IDLE_KEEP + 1, 0);
        let mut queue = FrameBuf::default();
        queue.recycle(huge);
        assert_eq!(queue.tail.capacity(), 0);
    }

    fn sample() -> (FrameBuf, Vec<u8>) {
        let mut buf = FrameBuf::default();
        let mut expected = Vec::new();
        for i in 0..200u32 {
            let inline = i.to_le_bytes();
            buf.inline().extend_from_slice(&inline);
            expected.extend_from_slice(&inline);
            if i % 3 == 0 {
                let piece = Bytes::from(vec![i as u8; 1000 + i as usize]);
                expected.extend_from_slice(&piece);
                buf.attach(piece);
            }
        }
        (buf, expected)
    }

    #[test]
    fn a_cleared_buffer_keeps_a_large_tail_until_it_is_shrunk() {
        let mut buf = FrameBuf::default();
        buf.inline().extend_from_slice(&vec![1u8; 2 * IDLE_KEEP]);
        assert!(!buf.holds_spare(), "a buffer with bytes to write holds nothing spare");
        buf.shrink_when_quiet();
        assert_eq!(buf.len(), 2 * IDLE_KEEP, "shrinking never drops unwritten bytes");
        buf.clear();
        // The next burst reuses the allocation ...
        assert!(buf.holds_spare());
        assert!(buf.tail.capacity() >= 2 * IDLE_KEEP);
        // ... until the lane has been quiet long enough for the writer to give it back.
        buf.shrink_when_quiet();
        assert!(!buf.holds_spare());
        assert_eq!(buf.tail.capacity(), 0);
    }

    #[test]
    fn pieces_keep_their_order() {
        let (buf, expected) = sample();
        assert_eq!(buf.len(), expected.len());
        assert_eq!(buf.to_vec(), expected);
        let mut copy = FrameBuf::default();
        copy.inline().push(9);
        copy.append(&buf);
        assert_eq!(copy.to_vec()[1..], expected[..]);
    }

    /// A writer that takes at most a few bytes per call, so partial vectored writes are exercised.
    struct Trickle(Vec<u8>);

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let n = buf.len().min(7);
            self.0.extend_from_slice(&buf[..n]);
            std::task::Poll::Ready(Ok(n))
        }
        fn poll_write_vectored(
            mut self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let mut left = 1500usize;
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(left);
                self.0.extend_from_slice(&b[..take]);
                n += take;
                left -= take;
                if left == 0 {
                    break;
                }
            }
            std::task::Poll::Ready(Ok(n))
        }
        fn is_write_vectored(&self) -> bool {
            true
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn partial_vectored_writes_write_everything_once() {
        let (mut buf, expected) = sample();
        let mut out = Trickle(Vec::new());
        let n = buf.write_to(&mut out, &AtomicU64::new(0)).await.unwrap();
        assert_eq!(n, expected.len());
        assert_eq!(out.0, expected);
        assert!(buf.is_empty());
        // Inline only.
        buf.inline().extend_from_slice(b"abc");
        buf.write_to(&mut out, &AtomicU64::new(0)).await.unwrap();
        assert_eq!(&out.0[expected.len()..], b"abc");
    }
}
