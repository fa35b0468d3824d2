//! Session traffic: bytes for one session of this core, and one fan-out to this core's share of
//! a name's subscribers. Sent by any core whose feature produced them (`effects`).
//!
//! This module owns the core's outbound side: the slab of session ports and the one pending
//! broadcast. Consecutive fan-outs to the same subscriber group (one name's subscribers on this
//! core, the same `Arc`) are coalesced into one pending broadcast, delivered to each subscriber
//! as one append: a publisher's burst of 300 events to 1000 subscribers costs 1000 appends,
//! not 300,000. The broadcast is delivered, in this order of whichever comes first:
//! - before any other append to any port of this core (`push_uncounted`), so every port still
//!   receives its messages in the order the core produced them;
//! - before a port is told to close (`flush_broadcasts`, called by the session);
//! - when it passes `MAX_COALESCED_BYTES`;
//! - by the core's broadcast task (`run_broadcasts`), woken when a broadcast starts pending. It
//!   runs once the task that produced the broadcast yields (the publisher's connection task
//!   finished what it read), so one message alone waits only for that task's turn to end.

use super::Core;
use crate::base::address::SessionRef;
use crate::shard::{SessionPort, SessionSlab, ShareAs, SlowConsumer};
use bytes::Bytes;
use futures_lite::future::poll_fn;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};

#[derive(Debug)]
pub enum Delivery {
    /// One complete message for one session of this core.
    Send { to: SessionRef, bytes: Bytes },
    /// One message for every session in `targets` (all on this core) but `exclude`.
    Fanout {
        targets: Arc<Vec<SessionRef>>,
        exclude: Option<SessionRef>,
        bytes: Bytes,
    },
}

impl Delivery {
    pub(super) fn weight(&self) -> usize {
        match self {
            Delivery::Send { bytes, .. } => bytes.len(),
            Delivery::Fanout { bytes, targets, .. } => bytes.len() + 16 * targets.len(),
        }
    }
}

/// A pending broadcast is delivered once it holds this many bytes.
const MAX_COALESCED_BYTES: usize = 64 * 1024;

/// Messages for one subscriber group, not yet appended to its ports.
struct Broadcast {
    targets: Arc<Vec<SessionRef>>,
    exclude: Option<SessionRef>,
    /// The messages, whole and in order.
    bytes: Vec<u8>,
    /// The first message (its topic labels the counters).
    first_topic: u8,
    messages: u64,
}

impl Broadcast {
    fn is_for(&self, targets: &Arc<Vec<SessionRef>>, exclude: Option<SessionRef>) -> bool {
        Arc::ptr_eq(&self.targets, targets) && self.exclude == exclude
    }
}

/// A broadcast's bytes in the forms ports take them, each built at most once.
struct SharedForms {
    messages: Bytes,
    websocket_frame: Option<Bytes>,
}

impl SharedForms {
    fn new(messages: Vec<u8>) -> Self {
        SharedForms {
            messages: Bytes::from(messages),
            websocket_frame: None,
        }
    }

    fn messages(&self) -> &Bytes {
        &self.messages
    }

    /// The messages as one WebSocket text frame (built on first use).
    fn websocket_frame(&mut self) -> &Bytes {
        let messages = &self.messages;
        self.websocket_frame.get_or_insert_with(|| {
            let mut frame = Vec::with_capacity(messages.len() + 10);
            crate::transport::websocket::write_text(&mut frame, messages);
            Bytes::from(frame)
        })
    }
}

/// This core's session ports and its pending broadcast.
#[derive(Default)]
pub(super) struct Outbound {
    pub(super) sessions: RefCell<SessionSlab>,
    pending: RefCell<Option<Broadcast>>,
    /// The broadcast task, waiting for a broadcast to deliver.
    task: RefCell<Option<Waker>>,
}

impl Core {
    pub(super) fn handle_delivery(&self, message: Delivery) {
        match message {
            Delivery::Send { to, bytes } => self.deliver_local(to, &bytes),
            Delivery::Fanout {
                targets,
                exclude,
                bytes,
            } => self.fanout_local(&targets, exclude, &bytes),
        }
    }

    /// Appends bytes to a session of this core, enforcing its outbound limit.
    pub(super) fn deliver_local(&self, to: SessionRef, bytes: &[u8]) {
        let port = self.outbound.sessions.borrow().get(to);
        if let Some(port) = port {
            self.push_to(&port, bytes);
        }
    }

    /// One message for this core's sessions in `targets` but `exclude`: coalesced with the
    /// pending broadcast when that is for the same group, otherwise pending on its own.
    pub(super) fn fanout_local(
        &self,
        targets: &Arc<Vec<SessionRef>>,
        exclude: Option<SessionRef>,
        bytes: &[u8],
    ) {
        {
            let mut pending = self.outbound.pending.borrow_mut();
            if let Some(broadcast) = pending.as_mut() {
                if broadcast.is_for(targets, exclude)
                    && broadcast.bytes.len() + bytes.len() <= MAX_COALESCED_BYTES
                {
                    broadcast.bytes.extend_from_slice(bytes);
                    broadcast.messages += 1;
                    return;
                }
            }
        }
        self.flush_broadcasts();
        *self.outbound.pending.borrow_mut() = Some(Broadcast {
            targets: Arc::clone(targets),
            exclude,
            bytes: bytes.to_vec(),
            first_topic: bytes.first().copied().unwrap_or_default(),
            messages: 1,
        });
        if let Some(task) = self.outbound.task.borrow_mut().take() {
            task.wake();
        }
    }

    /// Delivers the pending broadcast, if any, to its subscribers.
    pub fn flush_broadcasts(&self) {
        let Some(broadcast) = self.outbound.pending.borrow_mut().take() else {
            return;
        };
        let sessions = self.outbound.sessions.borrow();
        let mut shared = SharedForms::new(broadcast.bytes);
        let mut delivered = 0;
        for target in broadcast.targets.iter() {
            if Some(*target) == broadcast.exclude {
                continue;
            }
            if let Some(port) = sessions.get(*target) {
                let pushed = match port.share_as() {
                    ShareAs::Copy => port.push(shared.messages()),
                    ShareAs::Raw => port.push_shared(shared.messages()),
                    ShareAs::WebSocketFrame => port.push_shared(shared.websocket_frame()),
                };
                self.check_pushed(&port, pushed);
                delivered += 1;
            }
        }
        self.counters
            .messages_sent(&[broadcast.first_topic], delivered * broadcast.messages);
    }

    /// The core's broadcast task: delivers each broadcast once the task that started it
    /// yields. Runs for the life of the core (`server` spawns it).
    pub async fn run_broadcasts(self: Rc<Self>) {
        loop {
            poll_fn(|context| {
                if self.outbound.pending.borrow().is_some() {
                    return Poll::Ready(());
                }
                *self.outbound.task.borrow_mut() = Some(context.waker().clone());
                Poll::Pending
            })
            .await;
            self.flush_broadcasts();
        }
    }

    /// Appends one message to a port after any pending broadcast (so a port sees its messages in
    /// order); a session over its limit is closed as a slow consumer.
    pub(super) fn push_uncounted(&self, port: &SessionPort, bytes: &[u8]) {
        self.flush_broadcasts();
        self.push_now(port, bytes);
    }

    fn push_now(&self, port: &SessionPort, bytes: &[u8]) {
        self.check_pushed(port, port.push(bytes));
    }

    /// Logs and counts a port that a push made a slow consumer.
    fn check_pushed(&self, port: &SessionPort, pushed: Result<(), SlowConsumer>) {
        if let Err(SlowConsumer { buffered }) = pushed {
            let count = self.counters.slow_consumer();
            crate::warn!(
                "session {}:{} is a slow consumer ({} bytes unsent, limit {}): disconnecting it \
                 (slow consumer disconnects on this core: {count})",
                port.id.core,
                port.id.slot,
                buffered,
                self.config().max_outbound_buffer_size
            );
        }
    }
}
