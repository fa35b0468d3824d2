//! The sessions of one core: a slab of outbound ports addressed by `SessionRef`.
//!
//! A `SessionPort` is the only part of a session other code may reach: features (through the
//! core) append messages to its outbox (`outbox`), by copy or, for a broadcast, by sharing one
//! chunk among all subscribers; the connection task takes the outbox and writes it with one send
//! per turn. The buffer is bounded: a push past the limit marks the port for abort, frees
//! the buffer and wakes the connection task, which drops the socket.

use super::outbox::{Outbox, ShareAs};
use crate::base::address::SessionRef;
use bytes::Bytes;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortState {
    Open,
    /// Write what is buffered, then close (after an error that ends the session).
    CloseAfterFlush,
    /// Write what is buffered, then drop the connection without a WebSocket close frame.
    TerminateAfterFlush,
    /// Close now without writing (slow consumer).
    Abort,
}

/// A port's side of a transport heartbeat (2.x WebSocket): whether its peer was heard since
/// the core's last heartbeat tick. The tick itself (`ports::heartbeat`) walks the core's ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heartbeat {
    /// This port's transport has no heartbeat.
    Off,
    /// The peer sent something since the last tick.
    Heard,
    /// Nothing since the last tick: silent again at the next one and the port is aborted.
    Silent,
    /// The port was aborted for its silence.
    Missed,
}

/// What a heartbeat tick asks of a port's owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeartbeatTick {
    /// Nothing (no heartbeat, or already closing).
    Nothing,
    /// Send the transport's ping.
    Ping,
    /// The peer stayed silent for a whole interval: the port was just aborted.
    Missed,
}

/// The session did not read fast enough: its outbound buffer would pass the limit.
#[derive(Debug, PartialEq, Eq)]
pub struct SlowConsumer {
    pub buffered: usize,
}

pub struct SessionPort {
    pub id: SessionRef,
    buffer: RefCell<Outbox>,
    share_as: Cell<ShareAs>,
    waker: RefCell<Option<Waker>>,
    /// Woken when the port is aborted (a connection task racing a write against that).
    abort_waker: RefCell<Option<Waker>>,
    state: Cell<PortState>,
    heartbeat: Cell<Heartbeat>,
    limit: usize,
}

impl SessionPort {
    fn new(id: SessionRef, limit: usize) -> Self {
        SessionPort {
            id,
            buffer: RefCell::new(Outbox::default()),
            share_as: Cell::new(ShareAs::Copy),
            waker: RefCell::new(None),
            abort_waker: RefCell::new(None),
            state: Cell::new(PortState::Open),
            heartbeat: Cell::new(Heartbeat::Off),
            limit,
        }
    }

    pub fn state(&self) -> PortState {
        self.state.get()
    }

    /// How broadcasts reach this port (the connection task sets it once, before it serves).
    pub fn share_as(&self) -> ShareAs {
        self.share_as.get()
    }

    pub fn set_share_as(&self, share_as: ShareAs) {
        self.share_as.set(share_as);
    }

    /// Appends a complete message. Past the limit the port is aborted and the buffer freed.
    pub fn push(&self, bytes: &[u8]) -> Result<(), SlowConsumer> {
        self.append(bytes.len(), |outbox| outbox.push(bytes))
    }

    /// Appends a chunk shared with other ports, as it goes on the wire (see `ShareAs`).
    pub fn push_shared(&self, chunk: &Bytes) -> Result<(), SlowConsumer> {
        self.append(chunk.len(), |outbox| outbox.push_shared(chunk.clone()))
    }

    fn append(&self, len: usize, add: impl FnOnce(&mut Outbox)) -> Result<(), SlowConsumer> {
        if self.state.get() != PortState::Open {
            return Ok(());
        }
        let mut buffer = self.buffer.borrow_mut();
        if buffer.len() + len > self.limit {
            let buffered = buffer.len();
            drop(buffer);
            self.abort();
            return Err(SlowConsumer { buffered });
        }
        let was_empty = buffer.is_empty();
        add(&mut buffer);
        drop(buffer);
        if was_empty {
            self.wake();
        }
        Ok(())
    }

    /// Closes now without writing: frees the buffer and wakes both waiters.
    fn abort(&self) {
        self.buffer.borrow_mut().free();
        self.state.set(PortState::Abort);
        self.wake();
        if let Some(waker) = self.abort_waker.borrow_mut().take() {
            waker.wake();
        }
    }

    /// Takes part in the core's heartbeat from now on (counted as heard).
    pub fn heartbeat_on(&self) {
        self.heartbeat.set(Heartbeat::Heard);
    }

    pub fn heartbeat(&self) -> Heartbeat {
        self.heartbeat.get()
    }

    /// The peer sent something (any frame counts).
    pub fn heard(&self) {
        if self.heartbeat.get() == Heartbeat::Silent {
            self.heartbeat.set(Heartbeat::Heard);
        }
    }

    /// The core's heartbeat ticked: a port heard since the last tick is pinged and marked
    /// silent; a port still silent is aborted (without a close frame, as deepstream 2.x drops
    /// a silent socket).
    pub fn heartbeat_tick(&self) -> HeartbeatTick {
        if self.state.get() != PortState::Open {
            return HeartbeatTick::Nothing;
        }
        match self.heartbeat.get() {
            Heartbeat::Off | Heartbeat::Missed => HeartbeatTick::Nothing,
            Heartbeat::Heard => {
                self.heartbeat.set(Heartbeat::Silent);
                HeartbeatTick::Ping
            }
            Heartbeat::Silent => {
                self.heartbeat.set(Heartbeat::Missed);
                self.abort();
                HeartbeatTick::Missed
            }
        }
    }

    /// Asks the connection task to write what is buffered and then close.
    pub fn close_after_flush(&self) {
        if self.state.get() == PortState::Open {
            self.state.set(PortState::CloseAfterFlush);
            self.wake();
        }
    }

    /// Like `close_after_flush`, but a WebSocket gets no close frame (as 2.4.1 drops a socket).
    pub fn terminate_after_flush(&self) {
        if self.state.get() == PortState::Open {
            self.state.set(PortState::TerminateAfterFlush);
            self.wake();
        }
    }

    /// Takes everything buffered; the port starts again with an empty outbox (no allocation
    /// until the next append), so an idle port holds no output buffer.
    pub fn take_outbox(&self) -> Outbox {
        std::mem::take(&mut *self.buffer.borrow_mut())
    }

    /// Moves the buffered bytes, flattened, to the end of `into` (for writers that frame one
    /// buffer: engine.io).
    pub fn take_into(&self, into: &mut Vec<u8>) {
        self.buffer.borrow_mut().drain_into(into);
    }

    pub fn has_output(&self) -> bool {
        !self.buffer.borrow().is_empty()
    }

    /// Ready when there is something to write or the port is closing.
    pub fn poll_ready(&self, context: &mut Context<'_>) -> Poll<()> {
        if self.has_output() || self.state.get() != PortState::Open {
            return Poll::Ready(());
        }
        *self.waker.borrow_mut() = Some(context.waker().clone());
        Poll::Pending
    }

    /// Ready once the port is aborted (slow consumer). Unlike `poll_ready`, it keeps its
    /// waker registered while output accumulates.
    pub fn poll_aborted(&self, context: &mut Context<'_>) -> Poll<()> {
        if self.state.get() == PortState::Abort {
            return Poll::Ready(());
        }
        *self.abort_waker.borrow_mut() = Some(context.waker().clone());
        Poll::Pending
    }

    fn wake(&self) {
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
    }
}

struct Entry {
    generation: u32,
    port: Option<Rc<SessionPort>>,
}

#[derive(Default)]
pub struct SessionSlab {
    entries: Vec<Entry>,
    free: Vec<u32>,
    len: usize,
}

impl SessionSlab {
    pub fn insert(&mut self, core: u16, limit: usize) -> Rc<SessionPort> {
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.entries.push(Entry {
                    generation: 0,
                    port: None,
                });
                (self.entries.len() - 1) as u32
            }
        };
        let entry = &mut self.entries[slot as usize];
        entry.generation = entry.generation.wrapping_add(1);
        let port = Rc::new(SessionPort::new(
            SessionRef {
                core,
                slot,
                generation: entry.generation,
            },
            limit,
        ));
        entry.port = Some(Rc::clone(&port));
        self.len += 1;
        port
    }

    /// How many slots the slab has (used or free): `port_in_slot` takes 0..slots().
    pub fn slots(&self) -> usize {
        self.entries.len()
    }

    /// The port in a slot, if the slot is in use (for walks over all ports: the heartbeat).
    pub fn port_in_slot(&self, slot: usize) -> Option<Rc<SessionPort>> {
        self.entries.get(slot)?.port.clone()
    }

    pub fn get(&self, id: SessionRef) -> Option<Rc<SessionPort>> {
        let entry = self.entries.get(id.slot as usize)?;
        if entry.generation != id.generation {
            return None;
        }
        entry.port.clone()
    }

    pub fn remove(&mut self, id: SessionRef) {
        if let Some(entry) = self.entries.get_mut(id.slot as usize) {
            if entry.generation == id.generation && entry.port.take().is_some() {
                self.free.push(id.slot);
                self.len -= 1;
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reused_slots_do_not_receive_old_messages() {
        let mut slab = SessionSlab::default();
        let first = slab.insert(0, 100).id;
        slab.remove(first);
        let second = slab.insert(0, 100).id;
        assert_eq!(first.slot, second.slot);
        assert!(slab.get(first).is_none());
        assert!(slab.get(second).is_some());
        assert_eq!(slab.len(), 1);
    }

    #[test]
    fn an_abort_wakes_a_waiter_registered_while_output_was_pending() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        struct Flag(AtomicBool);
        impl std::task::Wake for Flag {
            fn wake(self: Arc<Self>) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let mut slab = SessionSlab::default();
        let port = slab.insert(0, 10);
        port.push(b"12345").expect("fits");
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = Waker::from(Arc::clone(&flag));
        let mut context = Context::from_waker(&waker);
        assert_eq!(port.poll_aborted(&mut context), Poll::Pending);
        assert!(port.push(b"123456").is_err());
        assert!(flag.0.load(Ordering::SeqCst), "the abort woke the waiter");
        assert_eq!(port.poll_aborted(&mut context), Poll::Ready(()));
    }

    #[test]
    fn a_heartbeat_pings_a_heard_port_and_aborts_one_silent_for_a_whole_interval() {
        let mut slab = SessionSlab::default();
        let port = slab.insert(0, 100);
        assert_eq!(
            port.heartbeat_tick(),
            HeartbeatTick::Nothing,
            "off by default"
        );
        port.heartbeat_on();
        assert_eq!(port.heartbeat_tick(), HeartbeatTick::Ping);
        port.heard();
        assert_eq!(
            port.heartbeat_tick(),
            HeartbeatTick::Ping,
            "heard since: pinged again"
        );
        assert_eq!(port.heartbeat(), Heartbeat::Silent);
        assert_eq!(port.heartbeat_tick(), HeartbeatTick::Missed);
        assert_eq!(port.state(), PortState::Abort);
        assert_eq!(port.heartbeat(), Heartbeat::Missed);
        port.heard();
        assert_eq!(port.heartbeat(), Heartbeat::Missed, "too late to be heard");
        assert_eq!(port.heartbeat_tick(), HeartbeatTick::Nothing);
        assert_eq!(slab.slots(), 1);
        assert!(slab.port_in_slot(0).is_some());
        assert!(slab.port_in_slot(1).is_none());
    }

    #[test]
    fn pushing_past_the_limit_aborts_and_frees() {
        let mut slab = SessionSlab::default();
        let port = slab.insert(0, 10);
        assert_eq!(port.push(b"12345"), Ok(()));
        assert_eq!(port.push(b"123456"), Err(SlowConsumer { buffered: 5 }));
        assert_eq!(port.state(), PortState::Abort);
        assert!(!port.has_output());
        assert_eq!(port.push(b"1"), Ok(()), "ignored once aborted");
        assert!(!port.has_output());
    }
}
