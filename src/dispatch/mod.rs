//! The per-core dispatcher: `Core` owns this core's features (events, records, RPC, presence),
//! its sessions' outbound ports (in the mesh's slab), its timers and counters, and turns every
//! message addressed to this core into feature calls. The sessions (`session`) and the ports
//! send it messages; `server` feeds it what other cores sent; the cluster (`cluster`) plugs in
//! behind the `ClusterSeam` trait (`seam`) and is called at the few points where a name's state
//! crosses the node boundary.
//!
//! One message type per area, each handled in its own module:
//!
//! | area | type | module | what it carries |
//! |---|---|---|---|
//! | session traffic | `Delivery` | `delivery` | bytes for one session, fan-out to a core's subscribers |
//! | subscriptions | `Subscription` | `subscriptions` | subscribe, emit, listen, a closing session's names |
//! | records | `RecordMessage` | `records` | a record message for the owner core of its name |
//! | RPC | `RpcMessage` | `rpc` | provide, request, a provider's answer; RPC deadlines |
//! | presence | `PresenceMessage` | `presence` | logins and logouts, `U|S`, `U|US`, `U|Q` and its barriers |
//! | node messages | `NodeMessage` | `node` | what another node said, through the cluster |
//! | HTTP relays | `RelayMessage` | `relay` | engine.io requests and connections for a session's core |
//! | stats | `StatsMessage` | `stats` | `/metrics` and `/health-check` asking every core |
//! | record lookups | `RecordLookup` | `records` | a permission rule's `_()`: a record's JSON from its owner core |
//!
//! Features answer with `Effects`; `effects` carries them out (local delivery, the mesh, the
//! cluster seam, timers). The cross-core discipline itself is written down in `shard`.

mod delivery;
mod effects;
mod node;
mod presence;
mod records;
mod relay;
mod rpc;
pub mod seam;
mod stats;
mod subscriptions;

pub use delivery::Delivery;
pub use node::{ListenFromNode, NodeMessage, RpcFromNode};
pub use presence::{PresenceAction, PresenceMessage};
pub use records::{RecordLookup, RecordMessage};
pub use relay::{AdoptHandler, RelayHandler, RelayMessage, RelayReply, RelayRequest};
pub use rpc::{RpcMessage, RpcRequest};
pub use seam::{ClusterSeam, LoadedFuture};
pub use stats::StatsMessage;
pub use subscriptions::Subscription;

use crate::admission::Admission;
use crate::auth::Authenticator;
use crate::base::address::SessionRef;
use crate::base::config::Config;
use crate::features::event::TopicRegistry;
use crate::features::presence::PresenceReplica;
use crate::features::record::RecordFeature;
use crate::features::rpc::RpcFeature;
use crate::features::Effects;
use crate::metrics::Counters;
use crate::permission::cache::RuleCache;
use crate::permission::Permissions;
use crate::protocol::actions::Topic;
use crate::shard::{Congestion, Mesh, SessionPort, Weighed};
use std::cell::{OnceCell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// Declares `CoreMessage` with one variant per area, and `From` each area's type, so a sender
/// writes `core.route(owner, Subscription::Emit { .. })`.
macro_rules! core_message {
    ($($area:ident($type:ty)),*) => {
        /// Everything one core may send another (see the table in the module doc).
        #[derive(Debug)]
        pub enum CoreMessage {
            $($area($type)),*
        }

        $(impl From<$type> for CoreMessage {
            fn from(message: $type) -> CoreMessage {
                CoreMessage::$area(message)
            }
        })*
    };
}

core_message!(
    Delivery(Delivery),
    Subscription(Subscription),
    Record(RecordMessage),
    Rpc(RpcMessage),
    Presence(PresenceMessage),
    Node(NodeMessage),
    Relay(RelayMessage),
    Stats(StatsMessage),
    Lookup(RecordLookup)
);

impl Weighed for CoreMessage {
    /// Approximate bytes this message holds, for the mesh's back-pressure accounting.
    fn weight(&self) -> usize {
        64 + match self {
            CoreMessage::Delivery(message) => message.weight(),
            CoreMessage::Subscription(message) => message.weight(),
            CoreMessage::Record(message) => message.name.len() + message.message.len(),
            CoreMessage::Rpc(message) => message.weight(),
            CoreMessage::Presence(message) => message.weight(),
            CoreMessage::Node(message) => message.weight(),
            CoreMessage::Relay(message) => message.weight(),
            CoreMessage::Stats(_) => 0,
            CoreMessage::Lookup(message) => message.weight(),
        }
    }
}

/// One batch: what one core had for a peer during one turn.
pub type Batch = Vec<CoreMessage>;

/// What every core shares, read-only.
pub struct Shared {
    pub config: Arc<Config>,
    pub auth: Arc<Authenticator>,
    /// The compiled permissions file; `None`: everything is allowed.
    pub permissions: Option<Arc<Permissions>>,
    /// Per-client-address limits.
    pub admission: Arc<Admission>,
}

/// The features of the names this core owns (and its presence replica).
struct Features {
    events: RefCell<TopicRegistry>,
    records: RefCell<RecordFeature>,
    rpc: RefCell<RpcFeature>,
    presence: RefCell<PresenceReplica>,
}

pub struct Core {
    pub id: usize,
    shared: Shared,
    mesh: Rc<Mesh<CoreMessage>>,
    /// The sessions' ports and the pending broadcast (`delivery`).
    outbound: delivery::Outbound,
    features: Features,
    timers: effects::Timers,
    waiters: relay::Waiters,
    /// This core's cluster layer, when Redis is configured (set once at start).
    cluster: OnceCell<Rc<dyn ClusterSeam>>,
    /// Results of rules that read only the name and the user.
    rule_cache: RefCell<RuleCache>,
    pub counters: Counters,
}

impl Core {
    pub fn new(id: usize, cores: usize, shared: Shared, congestion: Arc<Congestion>) -> Core {
        let config = &shared.config;
        // Names spread evenly over the cores; each core holds its share of maxRecords.
        let max_records_per_core = config.limits.max_records.div_ceil(cores);
        let features = Features {
            events: RefCell::new(TopicRegistry::new(Topic::Event, cores)),
            records: RefCell::new(RecordFeature::new(
                cores,
                config.max_record_size(),
                max_records_per_core,
            )),
            rpc: RefCell::new(RpcFeature::new(config.limits.max_rpc_calls_in_flight)),
            presence: RefCell::new(PresenceReplica::default()),
        };
        let rule_cache = RuleCache::new(
            config
                .permission
                .as_ref()
                .map_or(Duration::MAX, |file| file.cache_evacuation_interval),
        );
        Core {
            id,
            shared,
            mesh: Rc::new(Mesh::new(id, cores, congestion)),
            outbound: delivery::Outbound::default(),
            features,
            timers: effects::Timers::default(),
            waiters: relay::Waiters::default(),
            cluster: OnceCell::new(),
            rule_cache: RefCell::new(rule_cache),
            counters: Counters::default(),
        }
    }

    pub fn config(&self) -> &Arc<Config> {
        &self.shared.config
    }

    /// The permissions file, when rules are configured.
    pub fn permissions(&self) -> Option<&Arc<Permissions>> {
        self.shared.permissions.as_ref()
    }

    /// This core's cache of rule results (`permission::cache`).
    pub fn rule_cache(&self) -> &RefCell<RuleCache> {
        &self.rule_cache
    }

    pub fn auth(&self) -> &Arc<Authenticator> {
        &self.shared.auth
    }

    pub fn admission(&self) -> &Arc<Admission> {
        &self.shared.admission
    }

    pub fn cores(&self) -> usize {
        self.mesh.cores()
    }

    /// This core's end of the mesh (for `server` to start the flushers).
    pub fn mesh(&self) -> &Rc<Mesh<CoreMessage>> {
        &self.mesh
    }

    /// The owner core of a name.
    pub fn owner(&self, name: &[u8]) -> usize {
        self.mesh.owner(name)
    }

    /// Waits until no core in the process is congested (see `shard`). Free when none is.
    pub async fn wait_uncongested(&self) {
        self.mesh.wait_uncongested().await
    }

    /// Whether a peer core's queue is over its limit: connections stop reading until it clears.
    pub fn congested(&self) -> bool {
        self.mesh.congested()
    }

    /// Attaches the cluster layer (once, before the core serves).
    pub fn set_cluster(&self, cluster: Rc<dyn ClusterSeam>) {
        let _ = self.cluster.set(cluster);
        // Until a listen leader is known, this node runs no discovery of its own.
        let mut effects = Effects::default();
        self.set_listen_role(crate::features::event::ListenRole::Follower, &mut effects);
    }

    /// The cluster layer (for `cluster` itself, which knows its own type).
    pub fn cluster_seam(&self) -> Option<&Rc<dyn ClusterSeam>> {
        self.cluster.get()
    }

    // ----- sessions -------------------------------------------------------------------------

    /// Registers a new session and returns its outbound port.
    pub fn open_session(&self) -> Rc<SessionPort> {
        let limit = self.config().max_outbound_buffer_size;
        self.outbound
            .sessions
            .borrow_mut()
            .insert(self.id as u16, limit)
    }

    /// How many slots this core's session slab has: `port_in_slot` takes 0..session_slots().
    pub fn session_slots(&self) -> usize {
        self.outbound.sessions.borrow().slots()
    }

    /// The port in a slot of this core's session slab, if in use (walks over all ports).
    pub fn port_in_slot(&self, slot: usize) -> Option<Rc<SessionPort>> {
        self.outbound.sessions.borrow().port_in_slot(slot)
    }

    /// Forgets a session's port (after its clean-up messages went out).
    pub fn close_session(&self, session: SessionRef) {
        self.outbound.sessions.borrow_mut().remove(session);
    }

    /// Appends one message to a port; a session over its limit is closed as a slow consumer.
    pub fn push_to(&self, port: &SessionPort, bytes: &[u8]) {
        self.counters.messages_sent(bytes, 1);
        self.push_uncounted(port, bytes);
    }

    // ----- routing --------------------------------------------------------------------------

    /// Sends a message to the core that must handle it (directly when that is this core).
    pub fn route(self: &Rc<Self>, core: usize, message: impl Into<CoreMessage>) {
        let message = message.into();
        if core == self.id {
            self.handle(message);
        } else {
            self.queue_for(core, message);
        }
    }

    /// Sends one message per core, built by `make` (listen registrations, presence).
    pub fn broadcast<M: Into<CoreMessage>>(self: &Rc<Self>, make: impl Fn() -> M) {
        for core in 0..self.cores() {
            self.route(core, make());
        }
    }

    fn queue_for(&self, core: usize, message: CoreMessage) {
        if let Err(refused) = self.mesh.queue_for(core, message) {
            crate::warn!(
                "a message for core {} (this node has {}): dropped",
                refused.0,
                self.cores()
            );
        }
    }

    /// Handles one batch that arrived from another core.
    pub fn handle_batch(self: &Rc<Self>, batch: Batch) {
        for message in batch {
            self.handle(message);
        }
    }

    /// Handles one message addressed to this core: the area's module decides.
    pub fn handle(self: &Rc<Self>, message: CoreMessage) {
        match message {
            CoreMessage::Delivery(message) => self.handle_delivery(message),
            CoreMessage::Subscription(message) => self.handle_subscription(message),
            CoreMessage::Record(message) => self.handle_record(message),
            CoreMessage::Rpc(message) => self.handle_rpc(message),
            CoreMessage::Presence(message) => self.handle_presence(message),
            CoreMessage::Node(message) => self.handle_node(message),
            CoreMessage::Relay(message) => self.handle_relay(message),
            CoreMessage::Stats(message) => self.handle_stats(message),
            CoreMessage::Lookup(message) => self.handle_lookup(message),
        }
    }
}
