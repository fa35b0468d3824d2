//! HTTP relays: an engine.io request (or a whole connection, for a WebSocket upgrade) that
//! reached a core other than the one owning its session is relayed there. The dispatcher does
//! not interpret them: the HTTP port registers handlers (`set_relay_handler`,
//! `set_adopt_handler`) and the waiting side gets the reply back. Also keeps the waiters of
//! this core's relayed requests and stats requests.

use super::stats::StatsWaiter;
use super::Core;
use ahash::AHashMap;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

#[derive(Debug)]
pub enum RelayMessage {
    Request(Box<RelayRequest>),
    Reply {
        request: u64,
        reply: Box<RelayReply>,
    },
    /// A connection handed over to the core that owns its session (an engine.io WebSocket
    /// upgrade that landed elsewhere): the receiving core owns `fd` from now on.
    Adopt {
        fd: std::os::fd::RawFd,
        received: Vec<u8>,
    },
}

/// An HTTP request relayed to the core that owns its session (engine.io polling).
#[derive(Debug)]
pub struct RelayRequest {
    pub reply_to: usize,
    pub request: u64,
    pub sid: String,
    /// `None` for a GET (a poll), the body for a POST.
    pub post: Option<Vec<u8>>,
    pub b64: bool,
    pub binary: bool,
    /// The user a trusted proxy named for the request (proxy-header auth).
    pub user: Option<String>,
}

/// The answer to a relayed request, written by the core that received the request.
#[derive(Debug)]
pub struct RelayReply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

/// The HTTP layer's handler for relayed requests.
pub type RelayHandler = Rc<dyn Fn(RelayRequest)>;
/// The HTTP layer's handler for connections handed over by another core: the socket (a file
/// descriptor this core now owns) and the bytes already read from it.
pub type AdoptHandler = Rc<dyn Fn(std::os::fd::RawFd, Vec<u8>)>;
/// A relayed request waiting for its reply.
type RelayWaiter = (Option<RelayReply>, Option<Waker>);
/// A record lookup waiting for the owner core's answer.
pub(super) type LookupWaiter = (Option<Option<Box<[u8]>>>, Option<Waker>);

impl RelayMessage {
    pub(super) fn weight(&self) -> usize {
        match self {
            RelayMessage::Request(request) => request.post.as_ref().map_or(0, Vec::len),
            RelayMessage::Reply { reply, .. } => reply.body.len(),
            RelayMessage::Adopt { received, .. } => received.len(),
        }
    }
}

/// What this core waits for from other cores, and the HTTP layer's handlers.
#[derive(Default)]
pub(super) struct Waiters {
    pub(super) stats: RefCell<AHashMap<u64, StatsWaiter>>,
    relays: RefCell<AHashMap<u64, RelayWaiter>>,
    /// Record lookups for permission rules' cross-references: the answer (`Some(data)`) and
    /// the waiting task.
    pub(super) lookups: RefCell<AHashMap<u64, LookupWaiter>>,
    next_request: Cell<u64>,
    relay_handler: RefCell<Option<RelayHandler>>,
    adopt_handler: RefCell<Option<AdoptHandler>>,
}

impl Waiters {
    pub(super) fn next_request(&self) -> u64 {
        let id = self.next_request.get() + 1;
        self.next_request.set(id);
        id
    }
}

impl Core {
    pub(super) fn handle_relay(self: &Rc<Self>, message: RelayMessage) {
        match message {
            RelayMessage::Request(request) => {
                let handler = self.waiters.relay_handler.borrow().clone();
                match handler {
                    Some(handler) => handler(*request),
                    None => self.reply_relay(
                        request.reply_to,
                        request.request,
                        RelayReply {
                            status: 400,
                            content_type: "text/plain",
                            body: b"no HTTP port on this core".to_vec(),
                        },
                    ),
                }
            }
            RelayMessage::Adopt { fd, received } => {
                let handler = self.waiters.adopt_handler.borrow().clone();
                match handler {
                    Some(handler) => handler(fd, received),
                    // SAFETY: `fd` was handed to this core, which owns it; nothing else uses it.
                    None => unsafe {
                        libc::close(fd);
                    },
                }
            }
            RelayMessage::Reply { request, reply } => {
                if let Some((slot, waker)) = self.waiters.relays.borrow_mut().get_mut(&request) {
                    *slot = Some(*reply);
                    if let Some(waker) = waker.take() {
                        waker.wake();
                    }
                }
            }
        }
    }

    /// Registers the handler for requests other cores relay here.
    pub fn set_relay_handler(&self, handler: RelayHandler) {
        *self.waiters.relay_handler.borrow_mut() = Some(handler);
    }

    /// Registers the handler for connections other cores hand over to this one.
    pub fn set_adopt_handler(&self, handler: AdoptHandler) {
        *self.waiters.adopt_handler.borrow_mut() = Some(handler);
    }

    /// Sends the answer to a relayed request back to the core that received it.
    pub fn reply_relay(self: &Rc<Self>, to: usize, request: u64, reply: RelayReply) {
        let reply = Box::new(reply);
        self.route(to, RelayMessage::Reply { request, reply });
    }

    /// Relays a request to `home` and waits for its answer (`None` after `wait`).
    pub async fn relay(
        self: &Rc<Self>,
        home: usize,
        mut request: RelayRequest,
        wait: Duration,
    ) -> Option<RelayReply> {
        let id = self.waiters.next_request();
        request.reply_to = self.id;
        request.request = id;
        self.waiters.relays.borrow_mut().insert(id, (None, None));
        self.route(home, RelayMessage::Request(Box::new(request)));
        let answered = futures_lite::future::poll_fn(|context| {
            let mut waiters = self.waiters.relays.borrow_mut();
            match waiters.get_mut(&id) {
                Some((Some(_), _)) | None => Poll::Ready(()),
                Some((None, waker)) => {
                    *waker = Some(context.waker().clone());
                    Poll::Pending
                }
            }
        });
        futures_lite::future::or(answered, glommio::timer::sleep(wait)).await;
        let waiter = self.waiters.relays.borrow_mut().remove(&id);
        waiter.and_then(|(reply, _)| reply)
    }
}
