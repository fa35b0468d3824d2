//! Per-core state and the cross-core mesh.
//!
//! One `Core` per executor. It owns the sessions its listeners accepted (their outbound ports,
//! in a slab addressed by `SessionRef`), the registries of the names it owns
//! (`owner = hash(name) % cores`), its copy of the listen patterns, and the listen timers.
//!
//! ## Cross-core message discipline (the only way cores interact)
//! - Cores share nothing mutable. They exchange `CoreMessage`s over glommio's channel mesh,
//!   batched: everything one core has for a peer during one turn travels as one `Vec`.
//! - A message about a name goes to the name's owner core. Because each (sender core → owner
//!   core) channel is FIFO and a session lives on one core, the messages of one session about
//!   one name are handled in the order the session sent them.
//! - Replies to one session (acks, errors, SP/SR) travel back as `Send`. Fan-out travels as one
//!   `Fanout` per subscriber core carrying that core's subscriber list by reference.
//! - Listen registrations are broadcast to every core (each keeps a full pattern registry).
//!   In a cluster, core 0 also reports them to the node that leads listening (`cluster::listen`),
//!   whose messages come back in through core 0 and go to the owner core of their name.
//! - A closing session sends `SessionClosed` to each owner of a name it subscribed to and
//!   broadcasts the removal of its listens; a message that reaches a session which has already
//!   closed is dropped (the slab generation does not match).
//! - Mesh receivers always drain (if they waited on each other, two busy cores could deadlock).
//!   Backpressure is applied where input enters: a batch carries at most `BATCH_BYTES`, each
//!   channel holds `CHANNEL_BATCHES` batches, and while more than `PENDING_BYTES` wait on any core
//!   for any peer, that core raises its flag in the process-wide `Congestion` set and *every* core
//!   stops reading its sockets (`Core::wait_uncongested`) until the flags clear. Input can be
//!   amplified on another core (one emit, a thousand subscribers), so the pause must be global.
//!   The flags are the only atomics on the message path: one relaxed load per socket read, a
//!   store only when a core enters or leaves congestion.

mod slab;

pub use slab::{PortState, SessionPort, SlowConsumer};

use crate::admission::Admission;
use crate::auth::Authenticator;
pub use crate::base::address::SessionRef;
use crate::base::config::Config;
use crate::cluster::{Cluster, ClusterStats};
use crate::features::event::{ListenRole, RegistrySize, TopicRegistry};
use crate::features::presence::PresenceReplica;
use crate::features::record::RecordFeature;
use crate::features::rpc::{DeadlineKind, ProviderAction, RpcFeature};
use crate::features::{Effect, Effects};
use crate::protocol::actions::{Dialect, Topic};
use ahash::AHashMap;
use bytes::Bytes;
use glommio::channels::channel_mesh::Senders;
use glommio::task::JoinHandle;
use slab::SessionSlab;
use std::cell::{Cell, RefCell, RefMut};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::collections::VecDeque;
use std::future::Future;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

/// Messages between cores (see the module doc for the discipline).
#[derive(Debug)]
pub enum CoreMessage {
    Subscribe {
        topic: Topic,
        name: Bytes,
        session: SessionRef,
    },
    Unsubscribe {
        topic: Topic,
        name: Bytes,
        session: SessionRef,
    },
    Emit {
        name: Bytes,
        message: Bytes,
        sender: SessionRef,
    },
    ListenResponse {
        topic: Topic,
        accept: bool,
        pattern: Arc<str>,
        name: Bytes,
        session: SessionRef,
        raw: Bytes,
    },
    ListenAdded {
        topic: Topic,
        pattern: Arc<str>,
        session: SessionRef,
    },
    ListenRemoved {
        topic: Topic,
        pattern: Arc<str>,
        session: SessionRef,
    },
    Send {
        to: SessionRef,
        bytes: Bytes,
    },
    Fanout {
        targets: Arc<Vec<SessionRef>>,
        exclude: Option<SessionRef>,
        bytes: Bytes,
    },
    SessionClosed {
        session: SessionRef,
        topic: Topic,
        names: Vec<Bytes>,
    },
    /// A record message (terminator included) for the owner of `name`.
    Record {
        session: SessionRef,
        dialect: Dialect,
        name: Bytes,
        message: Bytes,
    },
    RpcProvide {
        name: Bytes,
        session: SessionRef,
        provide: bool,
    },
    RpcRequest {
        name: Bytes,
        correlation: Bytes,
        session: SessionRef,
        dialect: Dialect,
        message: Bytes,
    },
    /// An RPC message from another node (`kind` b'Q': a request for a local provider; b'A':
    /// a reply from a provider there), for the owner core of its name.
    RpcFromNode {
        node: Arc<str>,
        kind: u8,
        message: Bytes,
    },
    /// Listening across nodes: `leader` leads from now on (this node when `leads`).
    ListenLeader {
        leader: Arc<str>,
        leads: bool,
    },
    /// Listening across nodes: what another node reported or sent (`cluster::listen`).
    ListenFromNode {
        node: Arc<str>,
        message: crate::cluster::listen::NodeMessage,
    },
    /// Another node is gone: forget its stand-ins (its RPC providers and requesters).
    NodeGone {
        node: Arc<str>,
    },
    /// This node was taken for dead (or Redis lost its state): register again what this core
    /// registered in Redis (its RPC providers).
    ClusterAnnounce,
    /// A counted login (`joined`) or logout, broadcast to every core's presence replica.
    Presence {
        username: Arc<str>,
        joined: bool,
        /// A session of this node (false: the rest of the cluster, see `cluster`).
        local: bool,
    },
    /// `U|S`, `U|US`, `U|Q` and a closing session's clean-up, handled by its own core.
    PresenceRequest {
        session: SessionRef,
        action: PresenceAction,
        username: Arc<str>,
    },
    RpcFromProvider {
        action: ProviderAction,
        name: Bytes,
        correlation: Bytes,
        session: SessionRef,
        dialect: Dialect,
        message: Bytes,
        data1: Bytes,
    },
    /// `/metrics`: a core asks every other core for its stats.
    StatsRequest {
        reply_to: usize,
        request: u64,
    },
    StatsReply {
        request: u64,
        stats: Box<CoreStats>,
    },
    Relay(Box<RelayRequest>),
    /// A connection handed over to the core that owns its session (an engine.io WebSocket
    /// upgrade that landed elsewhere): the receiving core owns `fd` from now on.
    Adopt {
        fd: std::os::fd::RawFd,
        received: Vec<u8>,
    },
    RelayReply {
        request: u64,
        reply: Box<RelayReply>,
    },
}

impl CoreMessage {
    /// Approximate bytes this message holds, for the mesh backpressure accounting.
    fn weight(&self) -> usize {
        64 + match self {
            CoreMessage::Subscribe { name, .. } | CoreMessage::Unsubscribe { name, .. } => {
                name.len()
            }
            CoreMessage::Emit { name, message, .. } => name.len() + message.len(),
            CoreMessage::ListenResponse { name, raw, .. } => name.len() + raw.len(),
            CoreMessage::ListenAdded { pattern, .. }
            | CoreMessage::ListenRemoved { pattern, .. } => pattern.len(),
            CoreMessage::Send { bytes, .. } => bytes.len(),
            CoreMessage::Fanout { bytes, targets, .. } => bytes.len() + 16 * targets.len(),
            CoreMessage::SessionClosed { names, .. } => names.iter().map(|n| n.len() + 16).sum(),
            CoreMessage::Record { name, message, .. } => name.len() + message.len(),
            CoreMessage::StatsRequest { .. } | CoreMessage::StatsReply { .. } => 0,
            CoreMessage::Relay(request) => request.post.as_ref().map_or(0, Vec::len),
            CoreMessage::Adopt { received, .. } => received.len(),
            CoreMessage::RelayReply { reply, .. } => reply.body.len(),
            CoreMessage::Presence { username, .. }
            | CoreMessage::PresenceRequest { username, .. } => username.len(),
            CoreMessage::RpcProvide { name, .. } => name.len(),
            CoreMessage::RpcFromNode { message, .. } => message.len(),
            CoreMessage::NodeGone { node } | CoreMessage::ListenLeader { leader: node, .. } => {
                node.len()
            }
            // Rare control messages: the fixed part covers them.
            CoreMessage::ListenFromNode { .. } => 64,
            CoreMessage::ClusterAnnounce => 0,
            CoreMessage::RpcRequest {
                name,
                correlation,
                message,
                ..
            } => name.len() + correlation.len() + message.len(),
            CoreMessage::RpcFromProvider {
                name,
                correlation,
                message,
                data1,
                ..
            } => name.len() + correlation.len() + message.len() + data1.len(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceAction {
    Subscribe,
    Unsubscribe,
    Query,
    Closed,
}

/// An HTTP request relayed to the core that owns its session (engine.io polling). The core
/// does not interpret it: the HTTP layer's registered handler does.
#[derive(Debug)]
pub struct RelayRequest {
    pub reply_to: usize,
    pub request: u64,
    pub sid: String,
    /// `None` for a GET (a poll), the body for a POST.
    pub post: Option<Vec<u8>>,
    pub b64: bool,
    pub binary: bool,
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

/// One batch: what one core had for a peer during one turn (at most `BATCH_BYTES`).
pub type Batch = Vec<CoreMessage>;

/// Capacity of each mesh channel, in batches.
pub const CHANNEL_BATCHES: usize = 16;
/// Most bytes one batch carries.
const BATCH_BYTES: usize = 256 * 1024;
/// Past this many bytes waiting for one peer, connections stop reading until it drains.
const PENDING_BYTES: usize = 4 * 1024 * 1024;

/// The transports sessions arrive on (index into the per-transport counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp = 0,
    WebSocket = 1,
    EngineIo = 2,
}

pub const TRANSPORT_NAMES: [&str; 3] = ["tcp", "websocket", "engineio"];
/// Topics counted for incoming messages; the last slot counts every other topic.
pub const TOPIC_NAMES: [&str; 7] = ["C", "A", "E", "R", "P", "U", "other"];

fn topic_index(topic: &[u8]) -> usize {
    match topic {
        b"C" => 0,
        b"A" => 1,
        b"E" => 2,
        b"R" => 3,
        b"P" => 4,
        b"U" => 5,
        _ => 6,
    }
}

/// What a core holds and has counted, for tests, `/metrics` and the clean-up check.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CoreStats {
    pub sessions_by_transport: [u64; 3],
    pub sessions_total_by_transport: [u64; 3],
    pub bytes_in_by_transport: [u64; 3],
    pub bytes_out_by_transport: [u64; 3],
    pub messages_in_by_topic: [u64; 7],
    pub messages_out_by_topic: [u64; 7],
    pub messages_out: u64,
    pub auth_failures: u64,
    /// Bytes waiting in this core's queues for other cores.
    pub cross_core_queue_bytes: u64,
    pub core: usize,
    pub sessions: usize,
    pub events: RegistrySize,
    pub records: usize,
    pub record_subscriptions: RegistrySize,
    /// (names with providers, providers, calls in flight)
    pub rpc: (usize, usize, usize),
    /// (usernames online, local presence subscribers)
    pub presence: (usize, usize),
    pub listen_timers: usize,
    pub connections_accepted: u64,
    pub slow_consumer_disconnects: u64,
    pub messages_in: u64,
    pub cluster: ClusterStats,
}

/// Counters of one core (plain cells: only this core touches them).
#[derive(Default)]
pub struct Counters {
    pub connections_accepted: Cell<u64>,
    pub slow_consumer_disconnects: Cell<u64>,
    pub messages_in: Cell<u64>,
    pub sessions_by_transport: [Cell<u64>; 3],
    pub sessions_total_by_transport: [Cell<u64>; 3],
    pub bytes_in_by_transport: [Cell<u64>; 3],
    pub bytes_out_by_transport: [Cell<u64>; 3],
    pub messages_in_by_topic: [Cell<u64>; 7],
    pub messages_out_by_topic: [Cell<u64>; 7],
    pub messages_out: Cell<u64>,
    pub auth_failures: Cell<u64>,
}

fn bump(cell: &Cell<u64>, by: u64) {
    cell.set(cell.get().wrapping_add(by));
}

impl Counters {
    pub fn session_opened(&self, transport: Transport) {
        bump(&self.sessions_by_transport[transport as usize], 1);
        bump(&self.sessions_total_by_transport[transport as usize], 1);
    }

    pub fn session_closed(&self, transport: Transport) {
        let cell = &self.sessions_by_transport[transport as usize];
        cell.set(cell.get().saturating_sub(1));
    }

    pub fn bytes_in(&self, transport: Transport, bytes: usize) {
        bump(
            &self.bytes_in_by_transport[transport as usize],
            bytes as u64,
        );
    }

    /// Counts bytes written to a socket.
    pub fn bytes_out(&self, transport: Transport, written: usize) {
        bump(
            &self.bytes_out_by_transport[transport as usize],
            written as u64,
        );
    }

    /// Counts `copies` deliveries of one message (its topic is its first byte). Counted where a
    /// message is queued, once per fan-out, so the hot path pays O(1) per fan-out, not per
    /// delivery.
    pub fn messages_sent(&self, message: &[u8], copies: u64) {
        bump(&self.messages_out, copies);
        let topic = message.get(..1).unwrap_or_default();
        bump(&self.messages_out_by_topic[topic_index(topic)], copies);
    }

    pub fn message_in(&self, topic: &[u8]) {
        bump(&self.messages_in, 1);
        bump(&self.messages_in_by_topic[topic_index(topic)], 1);
    }

    pub fn auth_failure(&self) {
        bump(&self.auth_failures, 1);
    }
}

fn snapshot<const N: usize>(cells: &[Cell<u64>; N]) -> [u64; N] {
    std::array::from_fn(|index| cells[index].get())
}

/// One flag per core: "my queues to other cores are over their limit". Shared by every core.
pub struct Congestion {
    flags: Vec<AtomicBool>,
}

impl Congestion {
    pub fn new(cores: usize) -> Arc<Congestion> {
        Arc::new(Congestion {
            flags: (0..cores).map(|_| AtomicBool::new(false)).collect(),
        })
    }

    pub fn any(&self) -> bool {
        self.flags.iter().any(|flag| flag.load(Ordering::Relaxed))
    }

    fn set(&self, core: usize, congested: bool) {
        self.flags[core].store(congested, Ordering::Relaxed);
    }
}

/// Fixed seeds: the placement of names on cores is the same on every run and every node.
fn name_hasher() -> ahash::RandomState {
    ahash::RandomState::with_seeds(
        0x636f_7265_7374_7265,
        0x616d_2d6f_776e_6572,
        0x6279_2d6e_616d_6521,
        0x0123_4567_89ab_cdef,
    )
}

/// The owner core of a name.
pub fn owner_of(name: &[u8], cores: usize) -> usize {
    (name_hasher().hash_one(name) % cores as u64) as usize
}

pub struct Core {
    pub id: usize,
    pub cores: usize,
    pub config: Arc<Config>,
    pub auth: Arc<Authenticator>,
    /// Per-client-address limits, shared by every core.
    pub admission: Arc<Admission>,
    hasher: ahash::RandomState,
    sessions: RefCell<SessionSlab>,
    events: RefCell<TopicRegistry>,
    records: RefCell<RecordFeature>,
    rpc: RefCell<RpcFeature>,
    presence: RefCell<PresenceReplica>,
    deadlines: RefCell<Deadlines>,
    outgoing: RefCell<Vec<VecDeque<(CoreMessage, usize)>>>,
    outgoing_bytes: RefCell<Vec<usize>>,
    flusher_wakers: RefCell<Vec<Option<Waker>>>,
    congestion: Arc<Congestion>,
    /// Whether this core's flag in `congestion` is raised.
    congested: Cell<bool>,
    timers: RefCell<AHashMap<(Topic, Bytes), JoinHandle<()>>>,
    pub counters: Counters,
    /// `/metrics` requests waiting for other cores' stats.
    stats_waiters: RefCell<AHashMap<u64, StatsWaiter>>,
    next_stats_request: Cell<u64>,
    /// The HTTP layer's handler for requests relayed here by other cores.
    relay_handler: RefCell<Option<RelayHandler>>,
    adopt_handler: RefCell<Option<AdoptHandler>>,
    relay_waiters: RefCell<AHashMap<u64, RelayWaiter>>,
    /// This core's cluster layer, when Redis is configured (set once at start).
    cluster: std::cell::OnceCell<Rc<Cluster>>,
}

struct StatsWaiter {
    collected: Vec<CoreStats>,
    waker: Option<Waker>,
}

impl Core {
    pub fn new(
        id: usize,
        cores: usize,
        config: Arc<Config>,
        auth: Arc<Authenticator>,
        admission: Arc<Admission>,
        congestion: Arc<Congestion>,
    ) -> Core {
        let max_rpc_calls_in_flight = config.limits.max_rpc_calls_in_flight;
        let max_record_size = config.max_record_size();
        // Names spread evenly over the cores; each core holds its share of maxRecords.
        let max_records_per_core = config.limits.max_records.div_ceil(cores);
        Core {
            id,
            cores,
            config,
            auth,
            admission,
            hasher: name_hasher(),
            sessions: RefCell::new(SessionSlab::default()),
            events: RefCell::new(TopicRegistry::new(Topic::Event, cores)),
            records: RefCell::new(RecordFeature::new(
                cores,
                max_record_size,
                max_records_per_core,
            )),
            rpc: RefCell::new(RpcFeature::new(max_rpc_calls_in_flight)),
            presence: RefCell::new(PresenceReplica::default()),
            deadlines: RefCell::new(Deadlines::default()),
            outgoing: RefCell::new((0..cores).map(|_| VecDeque::new()).collect()),
            outgoing_bytes: RefCell::new(vec![0; cores]),
            flusher_wakers: RefCell::new((0..cores).map(|_| None).collect()),
            congestion,
            congested: Cell::new(false),
            stats_waiters: RefCell::new(AHashMap::new()),
            next_stats_request: Cell::new(0),
            relay_handler: RefCell::new(None),
            adopt_handler: RefCell::new(None),
            relay_waiters: RefCell::new(AHashMap::new()),
            cluster: std::cell::OnceCell::new(),
            timers: RefCell::new(AHashMap::new()),
            counters: Counters::default(),
        }
    }

    /// Attaches the cluster layer (once, before the core serves).
    pub fn set_cluster(&self, cluster: Rc<Cluster>) {
        let _ = self.cluster.set(cluster);
        // Until a listen leader is known, this node runs no discovery of its own.
        let mut effects = Effects::default();
        self.set_listen_role(ListenRole::Follower, &mut effects);
    }

    // ----- listening across nodes (called by `cluster::listen`) -----------------------------

    const LISTEN_TOPICS: [Topic; 2] = [Topic::Event, Topic::Record];

    pub(crate) fn set_listen_role(&self, role: ListenRole, effects: &mut Effects) {
        for topic in Self::LISTEN_TOPICS {
            if let Some(mut registry) = self.registry(topic) {
                registry.set_role(role, effects);
            }
        }
    }

    pub(crate) fn forget_remote_interest(
        &self,
        gone: impl Fn(SessionRef) -> bool,
        effects: &mut Effects,
    ) {
        for topic in Self::LISTEN_TOPICS {
            if let Some(mut registry) = self.registry(topic) {
                registry.forget_remote_interest(&gone, effects);
            }
        }
    }

    /// Removes every listen registration of a stand-in listener.
    pub(crate) fn forget_remote_listener(&self, stand_in: SessionRef, effects: &mut Effects) {
        for topic in Self::LISTEN_TOPICS {
            if let Some(mut registry) = self.registry(topic) {
                for pattern in registry.patterns_of(stand_in) {
                    registry.listen_removed(&pattern, stand_in, effects);
                }
            }
        }
    }

    pub(crate) fn has_listener(&self, session: SessionRef) -> bool {
        Self::LISTEN_TOPICS.iter().any(|topic| {
            self.registry(*topic)
                .is_some_and(|registry| !registry.patterns_of(session).is_empty())
        })
    }

    pub fn cluster(&self) -> Option<Rc<Cluster>> {
        self.cluster.get().cloned()
    }

    /// The record feature of this core (for the cluster's record path).
    pub(crate) fn records_mut(&self) -> RefMut<'_, RecordFeature> {
        self.records.borrow_mut()
    }

    /// The RPC feature of this core (for the cluster's RPC path).
    pub(crate) fn rpc_mut(&self) -> RefMut<'_, RpcFeature> {
        self.rpc.borrow_mut()
    }

    /// Carries out effects produced outside `handle` (the cluster's asynchronous paths).
    pub(crate) fn execute_effects(self: &Rc<Self>, effects: Effects) {
        self.execute(effects);
    }

    /// An event another node published: every local subscriber gets it.
    pub(crate) fn emit_from_cluster(self: &Rc<Self>, name: &[u8], message: Bytes) {
        let mut effects = Effects::default();
        self.events
            .borrow()
            .fanout_to_subscribers(name, None, &message, &mut effects);
        self.execute(effects);
    }

    /// After a change to the event subscriptions of `name` on its owner core.
    fn event_interest(&self, topic: Topic, name: &Bytes) {
        if let Some(cluster) = self.cluster.get() {
            match topic {
                Topic::Event => {
                    let count = self.events.borrow().subscriber_count(name);
                    cluster.event_interest(name, count);
                }
                Topic::Record => {
                    let count = self.records.borrow().subscriptions.subscriber_count(name);
                    crate::cluster::records::interest(cluster, self, name, count);
                }
                _ => {}
            }
        }
    }

    /// Core 0 of a node that follows the listen leader reports its listeners to it.
    fn local_listener_changed(
        &self,
        topic: Topic,
        pattern: &str,
        session: SessionRef,
        added: bool,
    ) {
        if self.id == 0 {
            if let Some(cluster) = self.cluster.get() {
                crate::cluster::listen::listener_changed(cluster, topic, pattern, session, added);
            }
        }
    }

    /// The owner core of a name.
    pub fn owner(&self, name: &[u8]) -> usize {
        (self.hasher.hash_one(name) % self.cores as u64) as usize
    }

    // ----- sessions -------------------------------------------------------------------------

    /// Registers a new session and returns its outbound port.
    pub fn open_session(&self) -> Rc<SessionPort> {
        let limit = self.config.max_outbound_buffer_size;
        self.sessions.borrow_mut().insert(self.id as u16, limit)
    }

    /// Forgets a session's port (after its clean-up messages went out).
    pub fn close_session(&self, session: SessionRef) {
        self.sessions.borrow_mut().remove(session);
    }

    /// Appends bytes to a session of this core, enforcing its outbound limit.
    fn deliver_local(&self, to: SessionRef, bytes: &[u8]) {
        let port = self.sessions.borrow().get(to);
        if let Some(port) = port {
            self.push_to(&port, bytes);
        }
    }

    /// Appends one message to a port; a session over its limit is closed as a slow consumer.
    pub fn push_to(&self, port: &SessionPort, bytes: &[u8]) {
        self.counters.messages_sent(bytes, 1);
        self.push_uncounted(port, bytes);
    }

    fn push_uncounted(&self, port: &SessionPort, bytes: &[u8]) {
        if let Err(SlowConsumer { buffered }) = port.push(bytes) {
            let count = self.counters.slow_consumer_disconnects.get() + 1;
            self.counters.slow_consumer_disconnects.set(count);
            crate::warn!(
                "session {}:{} is a slow consumer ({} bytes unsent, limit {}): disconnecting it \
                 (slow consumer disconnects on this core: {count})",
                port.id.core,
                port.id.slot,
                buffered,
                self.config.max_outbound_buffer_size
            );
        }
    }

    // ----- routing --------------------------------------------------------------------------

    /// Sends a message to the core that must handle it (directly when that is this core).
    pub fn route(self: &Rc<Self>, core: usize, message: CoreMessage) {
        if core == self.id {
            self.handle(message);
        } else {
            self.queue_for(core, message);
        }
    }

    /// Sends one message per core, built by `make` (listen registrations).
    pub fn broadcast(self: &Rc<Self>, make: impl Fn() -> CoreMessage) {
        for core in 0..self.cores {
            self.route(core, make());
        }
    }

    fn queue_for(&self, core: usize, message: CoreMessage) {
        if core >= self.cores {
            // Only a message from another node (through Redis) can name a core this process
            // does not have: drop it rather than index past the queues.
            crate::warn!(
                "a message for core {core} (this node has {}): dropped",
                self.cores
            );
            return;
        }
        let weight = message.weight();
        let was_empty = {
            let mut outgoing = self.outgoing.borrow_mut();
            let queue = &mut outgoing[core];
            queue.push_back((message, weight));
            queue.len() == 1
        };
        let pending = {
            let mut outgoing_bytes = self.outgoing_bytes.borrow_mut();
            outgoing_bytes[core] += weight;
            outgoing_bytes[core]
        };
        if pending > PENDING_BYTES && !self.congested.get() {
            self.congested.set(true);
            self.congestion.set(self.id, true);
        }
        if was_empty {
            if let Some(waker) = self.flusher_wakers.borrow_mut()[core].take() {
                waker.wake();
            }
        }
    }

    /// Waits until no core in the process is congested (see the module doc). Free when none is.
    pub async fn wait_uncongested(&self) {
        while self.congestion.any() {
            glommio::timer::sleep(Duration::from_micros(500)).await;
        }
    }

    /// Waits until there is something for `peer` and takes up to `BATCH_BYTES` of it.
    fn next_batch(&self, peer: usize) -> impl Future<Output = Batch> + '_ {
        futures_lite::future::poll_fn(move |context| {
            let mut outgoing = self.outgoing.borrow_mut();
            let queue = &mut outgoing[peer];
            if queue.is_empty() {
                self.flusher_wakers.borrow_mut()[peer] = Some(context.waker().clone());
                return Poll::Pending;
            }
            let mut batch = Vec::new();
            let mut taken = 0;
            while let Some((message, weight)) = queue.pop_front() {
                taken += weight;
                batch.push(message);
                if taken >= BATCH_BYTES {
                    break;
                }
            }
            drop(outgoing);
            self.outgoing_bytes.borrow_mut()[peer] -= taken;
            if self.congested.get()
                && self
                    .outgoing_bytes
                    .borrow()
                    .iter()
                    .all(|bytes| *bytes <= PENDING_BYTES)
            {
                self.congested.set(false);
                self.congestion.set(self.id, false);
            }
            Poll::Ready(batch)
        })
    }

    /// The task that moves batches for `peer` into the mesh.
    pub async fn run_flusher(self: Rc<Self>, peer: usize, senders: Rc<Senders<Batch>>) {
        loop {
            let batch = self.next_batch(peer).await;
            if senders.send_to(peer, batch).await.is_err() {
                crate::error!("the mesh channel to core {peer} is closed; dropping its messages");
                return;
            }
        }
    }

    /// Handles one batch that arrived from another core.
    pub fn handle_batch(self: &Rc<Self>, batch: Batch) {
        for message in batch {
            self.handle(message);
        }
    }

    /// The subscription and listen registry of a topic (events, or the records' one); also for
    /// `cluster::listen`.
    pub(crate) fn registry(&self, topic: Topic) -> Option<RefMut<'_, TopicRegistry>> {
        match topic {
            Topic::Event => Some(self.events.borrow_mut()),
            Topic::Record => Some(RefMut::map(self.records.borrow_mut(), |records| {
                &mut records.subscriptions
            })),
            _ => None,
        }
    }

    /// Handles one message addressed to this core.
    pub fn handle(self: &Rc<Self>, message: CoreMessage) {
        let mut effects = Effects::default();
        match message {
            CoreMessage::Send { to, bytes } => {
                self.deliver_local(to, &bytes);
                return;
            }
            CoreMessage::Fanout {
                targets,
                exclude,
                bytes,
            } => {
                self.fanout_local(&targets, exclude, &bytes);
                return;
            }
            CoreMessage::Subscribe {
                topic,
                name,
                session,
            } => {
                if let Some(mut registry) = self.registry(topic) {
                    registry.subscribe(name.clone(), session, &mut effects);
                }
                self.event_interest(topic, &name);
            }
            CoreMessage::Unsubscribe {
                topic,
                name,
                session,
            } => {
                if let Some(mut registry) = self.registry(topic) {
                    registry.unsubscribe(&name, session, false, &mut effects);
                }
                self.event_interest(topic, &name);
            }
            CoreMessage::Emit {
                name,
                message,
                sender,
            } => {
                self.events
                    .borrow()
                    .emit(&name, &message, sender, &mut effects);
                if let Some(cluster) = self.cluster.get() {
                    cluster.publish_event(&name, &message);
                }
            }
            CoreMessage::ListenResponse {
                topic,
                accept,
                pattern,
                name,
                session,
                raw,
            } => {
                if let Some(mut registry) = self.registry(topic) {
                    registry.listen_response(accept, &pattern, &name, session, &raw, &mut effects);
                }
            }
            CoreMessage::ListenAdded {
                topic,
                pattern,
                session,
            } => {
                if let Some(mut registry) = self.registry(topic) {
                    registry.listen_added(&pattern, session, &mut effects);
                }
                self.local_listener_changed(topic, &pattern, session, true);
            }
            CoreMessage::ListenRemoved {
                topic,
                pattern,
                session,
            } => {
                if let Some(mut registry) = self.registry(topic) {
                    registry.listen_removed(&pattern, session, &mut effects);
                }
                self.local_listener_changed(topic, &pattern, session, false);
            }
            CoreMessage::SessionClosed {
                session,
                topic: Topic::Rpc,
                names,
            } => self
                .rpc
                .borrow_mut()
                .session_closed(session, &names, &mut effects),
            CoreMessage::SessionClosed {
                session,
                topic,
                names,
            } => {
                if let Some(mut registry) = self.registry(topic) {
                    for name in &names {
                        registry.unsubscribe(name, session, true, &mut effects);
                    }
                }
                for name in &names {
                    self.event_interest(topic, name);
                }
            }
            CoreMessage::Record {
                session,
                dialect,
                name,
                message,
            } => {
                if self.cluster.get().is_some() {
                    crate::cluster::records::handle(self, session, dialect, name, message);
                    return;
                }
                self.records
                    .borrow_mut()
                    .handle(session, dialect, &message, &mut effects)
            }
            CoreMessage::StatsRequest { reply_to, request } => {
                let stats = Box::new(self.stats());
                self.route(reply_to, CoreMessage::StatsReply { request, stats });
                return;
            }
            CoreMessage::StatsReply { request, stats } => {
                if let Some(waiter) = self.stats_waiters.borrow_mut().get_mut(&request) {
                    waiter.collected.push(*stats);
                    if let Some(waker) = waiter.waker.take() {
                        waker.wake();
                    }
                }
                return;
            }
            CoreMessage::Relay(request) => {
                let handler = self.relay_handler.borrow().clone();
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
                return;
            }
            CoreMessage::Adopt { fd, received } => {
                let handler = self.adopt_handler.borrow().clone();
                match handler {
                    Some(handler) => handler(fd, received),
                    // SAFETY: `fd` was handed to this core, which owns it; nothing else uses it.
                    None => unsafe {
                        libc::close(fd);
                    },
                }
                return;
            }
            CoreMessage::RelayReply { request, reply } => {
                if let Some((slot, waker)) = self.relay_waiters.borrow_mut().get_mut(&request) {
                    *slot = Some(*reply);
                    if let Some(waker) = waker.take() {
                        waker.wake();
                    }
                }
                return;
            }
            CoreMessage::Presence {
                username,
                joined,
                local,
            } => {
                if local && self.id == 0 {
                    if let Some(cluster) = self.cluster.get() {
                        cluster.local_presence(&username, joined);
                    }
                }
                let mut presence = self.presence.borrow_mut();
                if joined {
                    presence.login(&username, &mut effects);
                } else {
                    presence.logout(&username, &mut effects);
                }
            }
            CoreMessage::PresenceRequest {
                session,
                action,
                username,
            } => {
                let mut presence = self.presence.borrow_mut();
                match action {
                    PresenceAction::Subscribe => presence.subscribe(session, &mut effects),
                    PresenceAction::Unsubscribe => {
                        presence.unsubscribe(session, false, &mut effects)
                    }
                    PresenceAction::Closed => presence.unsubscribe(session, true, &mut effects),
                    PresenceAction::Query => presence.query(session, &username, &mut effects),
                }
            }
            CoreMessage::RpcProvide {
                name,
                session,
                provide,
            } => {
                let mut rpc = self.rpc.borrow_mut();
                let before = rpc.has_local_provider(&name);
                if provide {
                    rpc.provide(name.clone(), session, &mut effects);
                } else {
                    rpc.unprovide(&name, session, false, &mut effects);
                }
                let after = rpc.has_local_provider(&name);
                drop(rpc);
                if before != after {
                    if let Some(cluster) = self.cluster.get() {
                        crate::cluster::rpc::local_providers_changed(cluster, &name, after);
                    }
                }
            }
            CoreMessage::RpcFromNode {
                node,
                kind,
                message,
            } => {
                if let Some(cluster) = self.cluster.get() {
                    crate::cluster::rpc::from_node(self, cluster, &node, kind, message);
                }
                return;
            }
            CoreMessage::ClusterAnnounce => {
                if let Some(cluster) = self.cluster.get() {
                    crate::cluster::rpc::announce_again(cluster);
                }
                return;
            }
            CoreMessage::ListenLeader { leader, leads } => {
                if let Some(cluster) = self.cluster.get() {
                    crate::cluster::listen::leader_changed(self, cluster, leader, leads);
                }
                return;
            }
            CoreMessage::ListenFromNode { node, message } => {
                if let Some(cluster) = self.cluster.get() {
                    crate::cluster::listen::handle(self, cluster, &node, message);
                }
                return;
            }
            CoreMessage::NodeGone { node } => {
                if let Some(cluster) = self.cluster.get() {
                    crate::cluster::listen::node_gone(self, cluster, &node, &mut effects);
                    if let Some(stand_in) = cluster.known_remote_ref(&node) {
                        let names = self.rpc.borrow().names();
                        self.rpc
                            .borrow_mut()
                            .session_closed(stand_in, &names, &mut effects);
                    }
                }
            }
            CoreMessage::RpcRequest {
                name,
                correlation,
                session,
                dialect,
                message,
            } => {
                if let Some(cluster) = self.cluster.get() {
                    let looked_up = cluster.rpc_looked_up.borrow().contains_key(&name);
                    if looked_up && self.rpc.borrow().has_local_provider(&name) {
                        // Served here; keep the other nodes' providers known for a reject.
                        crate::cluster::rpc::refresh_remote_providers(self, cluster, &name);
                    } else {
                        // No provider here, or the first request of the name here: ask Redis
                        // which nodes provide it (for a reject to fall back to), then route.
                        crate::cluster::rpc::request_elsewhere(
                            self,
                            cluster,
                            name,
                            correlation,
                            session,
                            dialect,
                            message,
                        );
                        return;
                    }
                }
                self.rpc.borrow_mut().request(
                    name,
                    correlation,
                    session,
                    dialect,
                    message,
                    &mut effects,
                )
            }
            CoreMessage::RpcFromProvider {
                action,
                name,
                correlation,
                session,
                dialect,
                message,
                data1,
            } => self.rpc.borrow_mut().from_provider(
                action,
                name,
                correlation,
                session,
                dialect,
                message,
                data1,
                &mut effects,
            ),
        }
        self.execute(effects);
    }

    fn fanout_local(&self, targets: &[SessionRef], exclude: Option<SessionRef>, bytes: &[u8]) {
        let sessions = self.sessions.borrow();
        let mut delivered = 0;
        for target in targets {
            if Some(*target) == exclude {
                continue;
            }
            if let Some(port) = sessions.get(*target) {
                self.push_uncounted(&port, bytes);
                delivered += 1;
            }
        }
        self.counters.messages_sent(bytes, delivered);
    }

    /// Carries out what a feature asked for.
    fn execute(self: &Rc<Self>, effects: Effects) {
        for effect in effects.list {
            match effect {
                Effect::Send { to, bytes } => {
                    if to.is_stand_in() {
                        if let Some(cluster) = self.cluster.get() {
                            if to.is_remote() {
                                crate::cluster::rpc::forward(cluster, to, bytes);
                            } else {
                                crate::cluster::listen::to_stand_in(cluster, to, &bytes);
                            }
                        }
                    } else if usize::from(to.core) == self.id {
                        self.deliver_local(to, &bytes);
                    } else {
                        self.queue_for(usize::from(to.core), CoreMessage::Send { to, bytes });
                    }
                }
                Effect::Fanout {
                    core,
                    targets,
                    exclude,
                    bytes,
                } => {
                    if core == self.id {
                        self.fanout_local(&targets, exclude, &bytes);
                    } else {
                        self.queue_for(
                            core,
                            CoreMessage::Fanout {
                                targets,
                                exclude,
                                bytes,
                            },
                        );
                    }
                }
                Effect::StartListenTimer { topic, name } => self.start_listen_timer(topic, name),
                Effect::ListenInterest {
                    topic,
                    name,
                    interested,
                } => {
                    if let Some(cluster) = self.cluster.get() {
                        crate::cluster::listen::interest(
                            cluster, self.id, topic, &name, interested,
                        );
                    }
                }
                Effect::ListenResponseToLeader {
                    topic,
                    accept,
                    pattern,
                    name,
                    session,
                    raw,
                } => {
                    if let Some(cluster) = self.cluster.get() {
                        crate::cluster::listen::response_to_leader(
                            cluster, topic, accept, &pattern, &name, session, &raw,
                        );
                    }
                }
                Effect::CancelListenTimer { topic, name } => {
                    if let Some(timer) = self.timers.borrow_mut().remove(&(topic, name)) {
                        timer.cancel();
                    }
                }
                Effect::ArmRpcDeadlines {
                    name,
                    correlation,
                    generation,
                } => {
                    let now = Instant::now();
                    let mut deadlines = self.deadlines.borrow_mut();
                    deadlines.arm(
                        now + self.config.rpc_ack_timeout,
                        RpcDeadline {
                            name: name.clone(),
                            correlation: correlation.clone(),
                            generation,
                            kind: DeadlineKind::Ack,
                        },
                    );
                    deadlines.arm(
                        now + self.config.rpc_timeout,
                        RpcDeadline {
                            name,
                            correlation,
                            generation,
                            kind: DeadlineKind::Response,
                        },
                    );
                }
            }
        }
    }

    fn start_listen_timer(self: &Rc<Self>, topic: Topic, name: Bytes) {
        let core = Rc::clone(self);
        let delay = self.config.listen_response_timeout;
        let key = (topic, name.clone());
        let handle = glommio::spawn_local(async move {
            glommio::timer::sleep(delay).await;
            // This timer is done: forget its handle before acting (the action may start another).
            core.timers.borrow_mut().remove(&(topic, name.clone()));
            let mut effects = Effects::default();
            if let Some(mut registry) = core.registry(topic) {
                registry.listen_timeout(&name, &mut effects);
            }
            core.execute(effects);
        })
        .detach();
        if let Some(previous) = self.timers.borrow_mut().insert(key, handle) {
            previous.cancel();
        }
    }

    pub fn stats(&self) -> CoreStats {
        CoreStats {
            core: self.id,
            sessions: self.sessions.borrow().len(),
            events: self.events.borrow().size(),
            records: self.records.borrow().size().0,
            record_subscriptions: self.records.borrow().size().1,
            rpc: self.rpc.borrow().size(),
            presence: self.presence.borrow().size(),
            listen_timers: self.timers.borrow().len(),
            connections_accepted: self.counters.connections_accepted.get(),
            sessions_by_transport: snapshot(&self.counters.sessions_by_transport),
            sessions_total_by_transport: snapshot(&self.counters.sessions_total_by_transport),
            bytes_in_by_transport: snapshot(&self.counters.bytes_in_by_transport),
            bytes_out_by_transport: snapshot(&self.counters.bytes_out_by_transport),
            messages_in_by_topic: snapshot(&self.counters.messages_in_by_topic),
            messages_out_by_topic: snapshot(&self.counters.messages_out_by_topic),
            messages_out: self.counters.messages_out.get(),
            auth_failures: self.counters.auth_failures.get(),
            cross_core_queue_bytes: self.outgoing_bytes.borrow().iter().sum::<usize>() as u64,
            slow_consumer_disconnects: self.counters.slow_consumer_disconnects.get(),
            messages_in: self.counters.messages_in.get(),
            cluster: self
                .cluster
                .get()
                .map(|cluster| cluster.stats())
                .unwrap_or_default(),
        }
    }

    /// The task that fires RPC deadlines: sleeps until the earliest one, or until an earlier one
    /// is armed.
    pub async fn run_deadlines(self: Rc<Self>) {
        loop {
            let next = self.deadlines.borrow().next();
            let earlier_armed = futures_lite::future::poll_fn(|context| {
                let mut deadlines = self.deadlines.borrow_mut();
                if deadlines.earlier_armed {
                    deadlines.earlier_armed = false;
                    Poll::Ready(())
                } else {
                    deadlines.waker = Some(context.waker().clone());
                    Poll::Pending
                }
            });
            match next {
                Some(deadline) => {
                    let wait = deadline.saturating_duration_since(Instant::now());
                    futures_lite::future::or(glommio::timer::sleep(wait), earlier_armed).await;
                }
                None => earlier_armed.await,
            }
            let expired = self.deadlines.borrow_mut().expired(Instant::now());
            if expired.is_empty() {
                continue;
            }
            let mut effects = Effects::default();
            {
                let mut rpc = self.rpc.borrow_mut();
                for deadline in expired {
                    rpc.deadline(
                        deadline.name,
                        deadline.correlation,
                        deadline.generation,
                        deadline.kind,
                        &mut effects,
                    );
                }
            }
            self.execute(effects);
        }
    }
}

/// One RPC deadline. A deadline whose call was answered or rerouted since is ignored when it
/// fires (its generation no longer matches), so nothing is cancelled eagerly.
struct RpcDeadline {
    name: Bytes,
    correlation: Bytes,
    generation: u64,
    kind: DeadlineKind,
}

/// This core's pending RPC deadlines, earliest first.
#[derive(Default)]
struct Deadlines {
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    entries: AHashMap<u64, RpcDeadline>,
    sequence: u64,
    waker: Option<Waker>,
    earlier_armed: bool,
}

impl Core {
    /// Registers the handler for requests other cores relay here.
    pub fn set_relay_handler(&self, handler: RelayHandler) {
        *self.relay_handler.borrow_mut() = Some(handler);
    }

    /// Registers the handler for connections other cores hand over to this one.
    pub fn set_adopt_handler(&self, handler: AdoptHandler) {
        *self.adopt_handler.borrow_mut() = Some(handler);
    }

    /// Sends the answer to a relayed request back to the core that received it.
    pub fn reply_relay(self: &Rc<Self>, to: usize, request: u64, reply: RelayReply) {
        self.route(
            to,
            CoreMessage::RelayReply {
                request,
                reply: Box::new(reply),
            },
        );
    }

    /// Relays a request to `home` and waits for its answer (`None` after `wait`).
    pub async fn relay(
        self: &Rc<Self>,
        home: usize,
        mut request: RelayRequest,
        wait: Duration,
    ) -> Option<RelayReply> {
        let id = self.next_stats_request.get() + 1;
        self.next_stats_request.set(id);
        request.reply_to = self.id;
        request.request = id;
        self.relay_waiters.borrow_mut().insert(id, (None, None));
        self.route(home, CoreMessage::Relay(Box::new(request)));
        let answered = futures_lite::future::poll_fn(|context| {
            let mut waiters = self.relay_waiters.borrow_mut();
            match waiters.get_mut(&id) {
                Some((Some(_), _)) | None => Poll::Ready(()),
                Some((None, waker)) => {
                    *waker = Some(context.waker().clone());
                    Poll::Pending
                }
            }
        });
        futures_lite::future::or(answered, glommio::timer::sleep(wait)).await;
        self.relay_waiters
            .borrow_mut()
            .remove(&id)
            .and_then(|(reply, _)| reply)
    }

    /// Every core's stats (this one's included), for `/metrics`; cores that do not answer
    /// within a second are left out.
    pub async fn gather_stats(self: &Rc<Self>) -> Vec<CoreStats> {
        self.gather_stats_within(Duration::from_secs(1)).await
    }

    /// Every core's stats that arrive within `wait` (a missing core did not answer in time).
    pub async fn gather_stats_within(self: &Rc<Self>, wait: Duration) -> Vec<CoreStats> {
        let request = self.next_stats_request.get() + 1;
        self.next_stats_request.set(request);
        self.stats_waiters.borrow_mut().insert(
            request,
            StatsWaiter {
                collected: vec![self.stats()],
                waker: None,
            },
        );
        for core in (0..self.cores).filter(|core| *core != self.id) {
            self.queue_for(
                core,
                CoreMessage::StatsRequest {
                    reply_to: self.id,
                    request,
                },
            );
        }
        let all_answered = futures_lite::future::poll_fn(|context| {
            let mut waiters = self.stats_waiters.borrow_mut();
            match waiters.get_mut(&request) {
                Some(waiter) if waiter.collected.len() < self.cores => {
                    waiter.waker = Some(context.waker().clone());
                    Poll::Pending
                }
                _ => Poll::Ready(()),
            }
        });
        futures_lite::future::or(all_answered, glommio::timer::sleep(wait)).await;
        self.stats_waiters
            .borrow_mut()
            .remove(&request)
            .map(|waiter| waiter.collected)
            .unwrap_or_default()
    }
}

impl Deadlines {
    fn arm(&mut self, at: Instant, deadline: RpcDeadline) {
        let is_earliest = self.next().is_none_or(|next| at < next);
        self.sequence += 1;
        self.heap.push(Reverse((at, self.sequence)));
        self.entries.insert(self.sequence, deadline);
        if is_earliest {
            self.earlier_armed = true;
            if let Some(waker) = self.waker.take() {
                waker.wake();
            }
        }
    }

    fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    fn expired(&mut self, now: Instant) -> Vec<RpcDeadline> {
        let mut expired = Vec::new();
        while let Some(Reverse((at, sequence))) = self.heap.peek().copied() {
            if at > now {
                break;
            }
            self.heap.pop();
            if let Some(deadline) = self.entries.remove(&sequence) {
                expired.push(deadline);
            }
        }
        expired
    }
}
