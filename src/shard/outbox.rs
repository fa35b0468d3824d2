//! A session's unsent output: bytes appended by copy, and shared chunks (one broadcast's bytes,
//! built once for every subscriber on the core) appended by reference, in the order they came.
//! Owned by a `SessionPort`; the connection task takes it whole and writes its parts with one
//! vectored send (`parts`).

use bytes::Bytes;

/// What a port's broadcasts are appended as (set by the connection task that owns the port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ShareAs {
    /// Copied into the port's own bytes (engine.io, which frames at write time).
    #[default]
    Copy,
    /// Shared as the messages themselves (1.x TCP).
    Raw,
    /// Shared as one WebSocket text frame holding the messages (2.x WebSocket).
    WebSocketFrame,
}

/// Whether a part was appended by copy (and must be framed by the transport) or was shared
/// already as it goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part<'a> {
    Owned(&'a [u8]),
    Shared(&'a [u8]),
}

#[derive(Default)]
pub struct Outbox {
    owned: Vec<u8>,
    /// Each shared chunk with the length `owned` had when it was appended.
    shared: Vec<(usize, Bytes)>,
    len: usize,
}

/// An outbox buffer larger than this is freed once written, not kept for the next write.
const KEPT_CAPACITY: usize = 1024;

impl Outbox {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.owned.extend_from_slice(bytes);
        self.len += bytes.len();
    }

    pub fn push_shared(&mut self, chunk: Bytes) {
        self.len += chunk.len();
        self.shared.push((self.owned.len(), chunk));
    }

    /// The parts in order: runs of owned bytes between shared chunks.
    pub fn parts(&self) -> impl Iterator<Item = Part<'_>> {
        let mut start = 0;
        let mut shared = self.shared.iter();
        let mut pending_chunk: Option<&Bytes> = None;
        std::iter::from_fn(move || loop {
            if let Some(chunk) = pending_chunk.take() {
                return Some(Part::Shared(chunk));
            }
            match shared.next() {
                Some((at, chunk)) => {
                    pending_chunk = Some(chunk);
                    if *at > start {
                        let run = &self.owned[start..*at];
                        start = *at;
                        return Some(Part::Owned(run));
                    }
                }
                None if start < self.owned.len() => {
                    let run = &self.owned[start..];
                    start = self.owned.len();
                    return Some(Part::Owned(run));
                }
                None => return None,
            }
        })
    }

    /// Appends every part's bytes, in order, to `into` (for writers that need one buffer).
    pub fn copy_into(&self, into: &mut Vec<u8>) {
        into.reserve(self.len);
        for part in self.parts() {
            match part {
                Part::Owned(bytes) | Part::Shared(bytes) => into.extend_from_slice(bytes),
            }
        }
    }

    /// Moves everything, flattened, to the end of `into`, leaving the outbox empty and without
    /// an allocation when it held only owned bytes and `into` was empty (no copy then).
    pub fn drain_into(&mut self, into: &mut Vec<u8>) {
        if self.shared.is_empty() && into.is_empty() {
            std::mem::swap(&mut self.owned, into);
            self.len = 0;
            return;
        }
        self.copy_into(into);
        self.clear();
    }

    /// Empties the outbox; a large buffer (a burst) is freed, so an idle port holds none.
    pub fn clear(&mut self) {
        self.owned.clear();
        self.shared.clear();
        self.len = 0;
        if self.owned.capacity() > KEPT_CAPACITY {
            self.owned = Vec::new();
        }
        if self.shared.capacity() > KEPT_CAPACITY / 16 {
            self.shared = Vec::new();
        }
    }

    /// Frees everything (a slow consumer's output is dropped).
    pub fn free(&mut self) {
        *self = Outbox::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(outbox: &Outbox) -> Vec<Part<'_>> {
        outbox.parts().collect()
    }

    #[test]
    fn parts_come_out_in_the_order_they_were_appended() {
        let mut outbox = Outbox::default();
        outbox.push_shared(Bytes::from_static(b"s1"));
        outbox.push(b"a");
        outbox.push(b"b");
        outbox.push_shared(Bytes::from_static(b"s2"));
        outbox.push_shared(Bytes::from_static(b"s3"));
        outbox.push(b"c");
        assert_eq!(
            parts(&outbox),
            vec![
                Part::Shared(b"s1"),
                Part::Owned(b"ab"),
                Part::Shared(b"s2"),
                Part::Shared(b"s3"),
                Part::Owned(b"c"),
            ]
        );
        assert_eq!(outbox.len(), 9);
        let mut flat = Vec::new();
        outbox.copy_into(&mut flat);
        assert_eq!(flat, b"s1abs2s3c");
        let mut drained = b"0".to_vec();
        outbox.drain_into(&mut drained);
        assert_eq!(drained, b"0s1abs2s3c");
        assert!(outbox.is_empty());
        assert_eq!(parts(&outbox), vec![]);
    }

    #[test]
    fn owned_bytes_alone_are_one_part() {
        let mut outbox = Outbox::default();
        outbox.push(b"xy");
        assert_eq!(parts(&outbox), vec![Part::Owned(b"xy")]);
    }
}
