//! Reassembly of the 1.x raw TCP protocol (PROTOCOL.md §2.1).
//!
//! The TCP stream carries messages ended by 0x1E with no length prefix. A *unit* is everything
//! received up to the last 0x1E seen so far; bytes after it wait for more data. A buffer that
//! reaches `maxMessageSize` with no 0x1E is dropped with `X|E|MAXIMUM_MESSAGE_SIZE_EXCEEDED`, and
//! the rest of that oversized message is skipped up to its terminator (deepstream 1.x would parse
//! the tail as a new message and answer a parse error: we do not). Pure state machine: the
//! connection task (`server`) feeds it bytes; it never touches a socket.

use crate::protocol::message::MESSAGE_SEPARATOR;
use bytes::Bytes;
use memchr::{memchr, memrchr};

/// The reply deepstream 1.x sends when a buffer overflows.
pub const MAXIMUM_MESSAGE_SIZE_EXCEEDED: &[u8] =
    b"X\x1fE\x1fMAXIMUM_MESSAGE_SIZE_EXCEEDED\x1fReceived message longer than maxMessageSize\x1e";

/// What the framer produced from the bytes received so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A complete unit: one or more messages, the last one ended by 0x1E.
    Unit(Bytes),
    /// The buffer reached `maxMessageSize` without a terminator and was dropped.
    Oversized,
}

/// Reassembles units from a TCP byte stream.
pub struct TcpFramer {
    buffer: Vec<u8>,
    max_message_size: u32,
    /// Discarding the remainder of an oversized message until its 0x1E.
    skipping: bool,
}

impl TcpFramer {
    pub fn new(max_message_size: usize) -> Self {
        TcpFramer {
            buffer: Vec::new(),
            max_message_size: max_message_size.clamp(1, u32::MAX as usize) as u32,
            skipping: false,
        }
    }

    /// Adds received bytes and returns what they complete, if anything.
    ///
    /// A unit gets its own exact-size allocation: units are handed to other cores and may be
    /// queued there, and a slice of the read buffer would pin the whole buffer meanwhile. When
    /// nothing is buffered (the common case) this is the only copy of the received bytes.
    pub fn push(&mut self, mut received: &[u8]) -> Option<Frame> {
        if self.skipping {
            match memchr(MESSAGE_SEPARATOR, received) {
                Some(at) => {
                    self.skipping = false;
                    received = &received[at + 1..];
                }
                None => return None,
            }
        }
        // The cheap check: is there a terminator in what just arrived?
        match memrchr(MESSAGE_SEPARATOR, received) {
            Some(at) if self.buffer.is_empty() => {
                self.buffer.extend_from_slice(&received[at + 1..]);
                Some(Frame::Unit(Bytes::copy_from_slice(&received[..=at])))
            }
            Some(at) => {
                let unit_end = self.buffer.len() + at + 1;
                self.buffer.extend_from_slice(received);
                let unit = Bytes::copy_from_slice(&self.buffer[..unit_end]);
                if unit_end == self.buffer.len() {
                    // Nothing pending: an idle connection keeps no buffer.
                    self.buffer = Vec::new();
                } else {
                    self.buffer.drain(..unit_end);
                }
                Some(Frame::Unit(unit))
            }
            None => {
                self.buffer.extend_from_slice(received);
                if self.buffer.len() >= self.max_message_size as usize {
                    self.buffer = Vec::new();
                    self.skipping = true;
                    Some(Frame::Oversized)
                } else {
                    None
                }
            }
        }
    }

    /// Bytes buffered waiting for a terminator.
    pub fn pending(&self) -> usize {
        self.buffer.len()
    }

    /// Bytes allocated for the pending buffer (0 when nothing is pending).
    pub fn allocated(&self) -> usize {
        self.buffer.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unit_ends_at_the_last_terminator() {
        let mut framer = TcpFramer::new(1024);
        assert_eq!(framer.push(b"E\x1fS\x1fa"), None);
        assert_eq!(
            framer.push(b"\x1eE\x1fS\x1fb\x1eE\x1f"),
            Some(Frame::Unit(Bytes::from_static(
                b"E\x1fS\x1fa\x1eE\x1fS\x1fb\x1e"
            )))
        );
        assert_eq!(framer.pending(), 2);
        assert_eq!(
            framer.push(b"S\x1fc\x1e"),
            Some(Frame::Unit(Bytes::from_static(b"E\x1fS\x1fc\x1e")))
        );
        assert_eq!(framer.pending(), 0);
        assert_eq!(framer.allocated(), 0, "nothing pending, nothing held");
    }

    #[test]
    fn hello_world_then_terminator_is_one_unit() {
        let mut framer = TcpFramer::new(1024);
        assert_eq!(framer.push(b"hello world"), None);
        assert_eq!(
            framer.push(b"\x1e"),
            Some(Frame::Unit(Bytes::from_static(b"hello world\x1e")))
        );
    }

    #[test]
    fn oversized_buffer_is_dropped_and_its_tail_skipped() {
        let mut framer = TcpFramer::new(8);
        assert_eq!(framer.push(b"abcd"), None);
        assert_eq!(framer.push(b"efgh"), Some(Frame::Oversized));
        assert_eq!(framer.pending(), 0);
        assert_eq!(framer.push(b"ijkl"), None);
        assert_eq!(
            framer.push(b"mn\x1eE\x1fS\x1fx\x1e"),
            Some(Frame::Unit(Bytes::from_static(b"E\x1fS\x1fx\x1e")))
        );
    }
}
