//! Several nodes as one deepstream, through Redis (docs/DESIGN.md "Cluster (Redis)").
//!
//! One `Cluster` per core, created by `server::run_core` when the config names a Redis
//! (`plugins.message` / `plugins.cache` with `name: redis`). It owns the core's two Redis links
//! (`link`) and the cluster state of the names this core owns. The dispatcher calls it through
//! `dispatch::ClusterSeam` (implemented in `seam`) at the few points where a name's state
//! crosses the node boundary, and the pub/sub link calls back into the core with what other
//! nodes published. Node-to-node messages have one typed codec (`wire`).
//!
//! ## What travels through Redis (keys and channels all start with `cs:`)
//! - Events: the owner core of a name subscribes to `cs:e:<name>` while the node has
//!   subscribers for it, and publishes every emit there as `<origin>␞<message>`. Delivery on the
//!   emitting node is local and immediate; a node ignores what it published itself.
//! - Records (`records`): Redis is the source of truth: hash `cs:rec:<name>` {v, d}. Every write
//!   is one script (`RECORD_WRITE`) that compares the version and, when it matches, stores and
//!   publishes on `cs:r:<name>`; so two nodes can never both accept version N. A node's owner
//!   core caches a record only while it has subscribers for it (and is subscribed to its
//!   channel), and delivers every change, its own writes included, from that channel: one
//!   connection, Redis's order, so every node's subscribers see the same gapless sequence.
//! - Presence (core 0): the set `cs:users:<node>` holds a node's logged-in users; `cs:presence`
//!   carries `J`/`L` when a username's count on a node goes 0 → 1 / 1 → 0. Remote users count
//!   as one login in every core's presence replica, so PNJ/PNL fire on the first login / last
//!   logout anywhere.
//! - Listening (`listen`): one node, chosen through Redis, leads listening for the cluster; the
//!   others report their listeners and which names they have subscribers for, and pass on
//!   what the leader tells their listeners and subscribers (`SP`, `SR`, `SH`).
//! - Liveness (core 0): every `clusterKeepAliveInterval` a node stamps its id in the hash
//!   `cs:nodes` with Redis's clock; every `clusterActiveCheckInterval` it removes the nodes whose
//!   stamp is older than `clusterNodeInactiveTimeout`, with their users.
//!
//! Redis faults: the links reconnect with backoff (see `link`); while Redis is away every node
//! keeps serving its own clients (local events, cached reads); writes and uncached reads get an
//! error reply instead of waiting; after the reconnect the channels are subscribed again and the
//! caches reloaded. Nothing is acknowledged before Redis accepted it.

pub mod link;
pub mod listen;
pub mod records;
pub mod resp;
pub mod rpc;
mod seam;
pub mod wire;

use crate::base::address::SessionRef;
use crate::base::config::ClusterConfig;
use crate::dispatch::{Core, NodeMessage, PresenceMessage, RpcFromNode};
pub use crate::metrics::ClusterStats;
use ahash::{AHashMap, AHashSet};
use bytes::Bytes;
use link::{CommandLink, PubSubEvent, PubSubLink, RedisError};
use redis::Value;
use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::Duration;

pub const EVENT_CHANNEL: &[u8] = b"cs:e:";
pub const RECORD_CHANNEL: &[u8] = b"cs:r:";
pub const RECORD_KEY: &[u8] = b"cs:rec:";
const PRESENCE_CHANNEL: &[u8] = b"cs:presence";
pub(crate) const NODES_KEY: &[u8] = b"cs:nodes";
const USERS_KEY: &str = "cs:users:";
/// Separates the parts of a published payload (the protocol's record separator: it cannot
/// occur inside a message's fields or inside valid JSON).
pub const SEPARATOR: u8 = 0x1e;

/// Stamps this node in `cs:nodes` with Redis's clock (ms); 1 when the node was not there.
const HEARTBEAT: &str = "local t = redis.call('TIME')
return redis.call('HSET', KEYS[1], ARGV[1], t[1] * 1000 + math.floor(t[2] / 1000))";

/// Replaces the set KEYS[1] with ARGV, atomically.
const REPLACE_SET: &str = "redis.call('DEL', KEYS[1])
for i = 1, #ARGV do redis.call('SADD', KEYS[1], ARGV[i]) end
return #ARGV";

/// `{now_ms, node, stamp, node, stamp, ...}` of `cs:nodes`, by Redis's clock.
const NODES: &str = "local t = redis.call('TIME')
local out = {t[1] * 1000 + math.floor(t[2] / 1000)}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all do out[#out + 1] = all[i] end
return out";

/// Counters of the cluster layer of one core, for `/metrics`.
#[derive(Debug, Default)]
pub struct ClusterCounters {
    pub published: Cell<u64>,
    pub received: Cell<u64>,
    pub write_conflicts: Cell<u64>,
    pub redis_errors: Cell<u64>,
    /// Live nodes other than this one (core 0).
    pub remote_nodes: Cell<u64>,
}

/// The cluster layer of `core` (its own type, behind the dispatcher's seam).
pub fn of(core: &Core) -> Option<Rc<Cluster>> {
    let seam = Rc::clone(core.cluster_seam()?);
    seam.into_any().downcast::<Cluster>().ok()
}

/// Presence as core 0 of a node sees the cluster.
#[derive(Default)]
struct ClusterPresence {
    /// Logins per username on this node (sessions of every core).
    local: AHashMap<Arc<str>, u32>,
    /// The users of each other live node.
    remote: AHashMap<Arc<str>, AHashSet<Arc<str>>>,
    /// On how many other nodes each username is logged in.
    remote_count: AHashMap<Arc<str>, u32>,
    /// Remote nodes with users that are missing from `cs:nodes`, since when.
    missing_since: AHashMap<Arc<str>, std::time::Instant>,
    /// `Some` while the remote state loads: the `J`/`L` messages that arrived meanwhile.
    loading: Option<Vec<Bytes>>,
    /// Which load is current: a load started before the last disconnect or subscribe stops.
    load_generation: u64,
}

impl ClusterPresence {
    /// The pub/sub link went down or subscribed again: buffer from now on, and let only a load
    /// started after this apply what it finds.
    fn restart_loading(&mut self) -> u64 {
        self.loading = Some(Vec::new());
        self.load_generation += 1;
        self.load_generation
    }
}

pub struct Cluster {
    pub node: Arc<str>,
    pub config: ClusterConfig,
    pub commands: Rc<CommandLink>,
    pub pubsub: Rc<PubSubLink>,
    pub counters: ClusterCounters,
    pub(crate) records: records::ClusterRecords,
    presence: RefCell<ClusterPresence>,
    heartbeat_script: redis::Script,
    nodes_script: redis::Script,
    forget_node_script: redis::Script,
    pub(crate) listen_claim_script: redis::Script,
    /// Listening across nodes: the leader as this core knows it, and the other nodes'
    /// listeners when this node leads (`listen`).
    pub(crate) listen: RefCell<listen::ClusterListen>,
    /// RPC names this core's node provides (owner core), announced again after a reconnect.
    pub(crate) rpc_names: RefCell<AHashSet<Bytes>>,
    /// When the other nodes' providers of each name were last looked up (owner core).
    pub(crate) rpc_looked_up: RefCell<AHashMap<Bytes, std::time::Instant>>,
    /// Other nodes seen by this core's RPC path: a stand-in `SessionRef`'s slot indexes it.
    remote_nodes: RefCell<Vec<Arc<str>>>,
    remote_node_slots: RefCell<AHashMap<Arc<str>, u32>>,
}

impl Cluster {
    pub fn new(core_id: usize, config: &ClusterConfig) -> Rc<Cluster> {
        let commands = CommandLink::new(
            format!("redis commands (core {core_id})"),
            config.redis.clone(),
        );
        let pubsub = PubSubLink::new(
            format!("redis pub/sub (core {core_id})"),
            config.redis.clone(),
        );
        Rc::new(Cluster {
            node: Arc::from(config.node.as_str()),
            config: config.clone(),
            commands,
            pubsub,
            counters: ClusterCounters::default(),
            records: records::ClusterRecords::default(),
            presence: RefCell::new(ClusterPresence::default()),
            heartbeat_script: redis::Script::new(HEARTBEAT),
            nodes_script: redis::Script::new(NODES),
            forget_node_script: redis::Script::new(rpc::FORGET_NODE),
            listen_claim_script: redis::Script::new(listen::CLAIM),
            listen: RefCell::new(listen::ClusterListen::default()),
            rpc_names: RefCell::new(AHashSet::new()),
            rpc_looked_up: RefCell::new(AHashMap::new()),
            remote_nodes: RefCell::new(Vec::new()),
            remote_node_slots: RefCell::new(AHashMap::new()),
        })
    }

    /// Starts the links (and on core 0 the liveness tasks and presence channel) of `core`.
    pub fn start(core: &Rc<Core>, cluster: &Rc<Cluster>) {
        let weak = Rc::downgrade(core);
        let weak_for_commands = Rc::downgrade(core);
        let on_command_link = Rc::new(move |up: bool| {
            if up {
                if let Some(core) = weak_for_commands.upgrade() {
                    if let Some(cluster) = of(&core) {
                        // What this node registered may have been lost with the connection.
                        rpc::announce_again(&cluster);
                        // Reports to the listen leader may have been lost: report again
                        // (core 0 claims again, which makes every core report).
                        if core.id == 0 {
                            republish_own_users(&cluster);
                            cluster.listen.borrow_mut().claim_soon();
                        } else {
                            listen::command_link_back(&core, &cluster);
                        }
                    }
                }
            }
        });
        glommio::spawn_local(Rc::clone(&cluster.commands).run(on_command_link)).detach();
        let on_event: Rc<dyn Fn(PubSubEvent)> = Rc::new(move |event| {
            if let Some(core) = weak.upgrade() {
                on_pubsub(&core, event);
            }
        });
        if core.id == 0 {
            cluster.presence.borrow_mut().loading = Some(Vec::new());
            cluster
                .pubsub
                .subscribe(Bytes::from_static(PRESENCE_CHANNEL));
            cluster
                .pubsub
                .subscribe(Bytes::from_static(listen::LEADER_CHANNEL));
            cluster.pubsub.subscribe(Bytes::from(channel(
                wire::NODE_CHANNEL,
                cluster.node.as_bytes(),
            )));
            glommio::spawn_local(run_liveness(Rc::downgrade(core))).detach();
        }
        glommio::spawn_local(Rc::clone(&cluster.pubsub).run(on_event)).detach();
    }

    pub fn stats(&self) -> ClusterStats {
        ClusterStats {
            enabled: true,
            command_link_up: self.commands.is_up(),
            pubsub_link_up: self.pubsub.is_up(),
            reconnects: self.commands.counters.connects.get().saturating_sub(1)
                + self.pubsub.counters.connects.get().saturating_sub(1),
            channels: self.pubsub.channel_count() as u64,
            published: self.counters.published.get(),
            received: self.counters.received.get(),
            write_conflicts: self.counters.write_conflicts.get(),
            redis_errors: self.counters.redis_errors.get(),
            redis_commands: self.commands.counters.commands.get(),
            remote_nodes: self.counters.remote_nodes.get(),
            listen_leader: self.listen.borrow().leads(),
        }
    }

    /// `<node>/<core>.<slot>.<generation>`: who published, so the origin node can skip its
    /// own messages and the writer's own session.
    pub fn origin(&self, session: Option<SessionRef>) -> Vec<u8> {
        let mut origin = self.node.as_bytes().to_vec();
        if let Some(session) = session {
            origin.extend_from_slice(
                format!("/{}.{}.{}", session.core, session.slot, session.generation).as_bytes(),
            );
        }
        origin
    }

    /// Splits `<origin>` into (is it this node, the session it names on this node).
    pub fn parse_origin(&self, origin: &[u8]) -> (bool, Option<SessionRef>) {
        let (node, session) = match memchr::memchr(b'/', origin) {
            Some(slash) => (&origin[..slash], Some(&origin[slash + 1..])),
            None => (origin, None),
        };
        if node != self.node.as_bytes() {
            return (false, None);
        }
        let session = session.and_then(|text| {
            let text = std::str::from_utf8(text).ok()?;
            let mut parts = text.split('.');
            let core = parts.next()?.parse().ok()?;
            let slot = parts.next()?.parse().ok()?;
            let generation = parts.next()?.parse().ok()?;
            Some(SessionRef {
                core,
                slot,
                generation,
            })
        });
        (true, session)
    }

    /// The stand-in `SessionRef` of another node (see `rpc`).
    pub fn remote_ref(&self, node: &Arc<str>) -> SessionRef {
        let mut slots = self.remote_node_slots.borrow_mut();
        let slot = match slots.get(node) {
            Some(slot) => *slot,
            None => {
                let mut nodes = self.remote_nodes.borrow_mut();
                nodes.push(Arc::clone(node));
                let slot = (nodes.len() - 1) as u32;
                slots.insert(Arc::clone(node), slot);
                slot
            }
        };
        SessionRef::node(slot)
    }

    pub fn known_remote_ref(&self, node: &str) -> Option<SessionRef> {
        self.remote_node_slots
            .borrow()
            .get(node)
            .map(|slot| SessionRef::node(*slot))
    }

    pub fn remote_node(&self, slot: u32) -> Option<Arc<str>> {
        self.remote_nodes.borrow().get(slot as usize).cloned()
    }

    pub(crate) fn publish(&self, channel: &[u8], payload: &[u8]) {
        if self.commands.send(&[b"PUBLISH", channel, payload]) {
            self.counters
                .published
                .set(self.counters.published.get() + 1);
        } else {
            self.counters
                .redis_errors
                .set(self.counters.redis_errors.get() + 1);
        }
    }

    /// Runs a Lua script by its hash, loading it when Redis does not know it (after a restart).
    pub async fn script(
        &self,
        script: &redis::Script,
        code: &str,
        keys: &[&[u8]],
        arguments: &[&[u8]],
    ) -> Result<Value, RedisError> {
        let count = keys.len().to_string();
        let mut command: Vec<&[u8]> =
            vec![b"EVALSHA", script.get_hash().as_bytes(), count.as_bytes()];
        command.extend_from_slice(keys);
        command.extend_from_slice(arguments);
        match self.commands.call(&command).await {
            Err(RedisError::Server(text)) if text.contains("NOSCRIPT") => {
                command[0] = b"EVAL";
                command[1] = code.as_bytes();
                self.commands.call(&command).await
            }
            other => other,
        }
    }

    /// A clean stop (core 0): remove this node, its users and its RPC providers from Redis and
    /// tell the other nodes, so they do not wait for `clusterNodeInactiveTimeout`.
    pub async fn leave(&self) {
        if !self.commands.is_up() {
            return;
        }
        let users = format!("{USERS_KEY}{}", self.node);
        let names = rpc::names_key(&self.node);
        self.commands
            .send(&[b"HDEL", NODES_KEY, self.node.as_bytes()]);
        self.commands.send(&[b"DEL", users.as_bytes()]);
        let forgotten = self
            .script(
                &self.forget_node_script,
                rpc::FORGET_NODE,
                &[names.as_bytes()],
                &[self.node.as_bytes(), b"cs:rpc:"],
            )
            .await;
        if let Err(error) = forgotten {
            self.count_error("leaving the cluster", &error);
        }
        self.publish(PRESENCE_CHANNEL, &presence_payload(b"N", &self.node, ""));
        // The publish is queued behind the script's reply: wait for one more round trip.
        let _ = self.commands.call(&[b"PING"]).await;
        crate::info!("cluster: node {} left the cluster", self.node);
    }

    fn count_error(&self, what: &str, error: &RedisError) {
        self.counters
            .redis_errors
            .set(self.counters.redis_errors.get() + 1);
        if !matches!(error, RedisError::Down | RedisError::Lost) {
            crate::warn!("cluster: {what} failed: {error}");
        }
    }

    // ----- events ------------------------------------------------------------------------

    /// The owner core's subscriber count of an event name changed: follow its channel while
    /// the node has subscribers.
    pub fn event_interest(&self, name: &[u8], subscribers: usize) {
        let channel = channel(EVENT_CHANNEL, name);
        if subscribers > 0 {
            if !self.pubsub.is_wanted(&channel) {
                self.pubsub.subscribe(Bytes::from(channel));
            }
        } else {
            self.pubsub.unsubscribe(&channel);
        }
    }

    /// An event emitted on this node, for the other nodes.
    pub fn publish_event(&self, name: &[u8], message: &[u8]) {
        let mut payload = Vec::with_capacity(self.node.len() + 1 + message.len());
        payload.extend_from_slice(self.node.as_bytes());
        payload.push(SEPARATOR);
        payload.extend_from_slice(message);
        self.publish(&channel(EVENT_CHANNEL, name), &payload);
    }

    // ----- presence (core 0) ----------------------------------------------------------------

    /// A login (or logout) on this node counted for presence: tell the cluster when it is the
    /// username's first (or last) on this node.
    pub fn local_presence(&self, username: &Arc<str>, joined: bool) {
        let mut presence = self.presence.borrow_mut();
        let count = presence.local.entry(Arc::clone(username)).or_insert(0);
        let changed = if joined {
            *count += 1;
            *count == 1
        } else {
            *count = count.saturating_sub(1);
            *count == 0
        };
        if !joined && *count == 0 {
            presence.local.remove(username);
        }
        drop(presence);
        if changed {
            let users = format!("{USERS_KEY}{}", self.node);
            let command: &[u8] = if joined { b"SADD" } else { b"SREM" };
            self.commands
                .send(&[command, users.as_bytes(), username.as_bytes()]);
            let kind: &[u8] = if joined { b"J" } else { b"L" };
            self.publish(
                PRESENCE_CHANNEL,
                &presence_payload(kind, &self.node, username),
            );
        }
    }
}

fn presence_payload(kind: &[u8], node: &str, username: &str) -> Vec<u8> {
    let mut payload = kind.to_vec();
    payload.push(SEPARATOR);
    payload.extend_from_slice(node.as_bytes());
    payload.push(SEPARATOR);
    payload.extend_from_slice(username.as_bytes());
    payload
}

pub fn channel(prefix: &[u8], name: &[u8]) -> Vec<u8> {
    let mut channel = Vec::with_capacity(prefix.len() + name.len());
    channel.extend_from_slice(prefix);
    channel.extend_from_slice(name);
    channel
}

/// Core 0: a message on this node's channel, for `rpc` or `listen`.
fn on_node_message(core: &Rc<Core>, payload: &Bytes) {
    let Some((node, message)) = wire::decode(payload) else {
        return;
    };
    match message {
        wire::NodeWire::RpcRequest(message) => {
            rpc::on_node_message(core, node, RpcFromNode::Request, message)
        }
        wire::NodeWire::RpcAnswer(message) => {
            rpc::on_node_message(core, node, RpcFromNode::Answer, message)
        }
        listen => listen::on_node_message(core, node, listen),
    }
}

/// What the pub/sub link of `core` received.
fn on_pubsub(core: &Rc<Core>, event: PubSubEvent) {
    let Some(cluster) = of(core) else {
        return;
    };
    match event {
        PubSubEvent::Message { channel, payload } => {
            cluster
                .counters
                .received
                .set(cluster.counters.received.get() + 1);
            if let Some(name) = channel.strip_prefix(EVENT_CHANNEL) {
                let Some(split) = memchr::memchr(SEPARATOR, &payload) else {
                    return;
                };
                if &payload[..split] == cluster.node.as_bytes() {
                    return;
                }
                core.emit_from_cluster(name, payload.slice(split + 1..));
            } else if let Some(name) = channel.strip_prefix(RECORD_CHANNEL) {
                records::on_publish(core, &cluster, channel.slice_ref(name), payload);
            } else if &channel[..] == PRESENCE_CHANNEL {
                on_presence_message(core, &cluster, payload);
            } else if channel.starts_with(wire::NODE_CHANNEL) {
                on_node_message(core, &payload);
            } else if &channel[..] == listen::LEADER_CHANNEL {
                listen::on_announcement(core, &cluster, &payload);
            }
        }
        PubSubEvent::Subscribed(channel) => {
            if let Some(name) = channel.strip_prefix(RECORD_CHANNEL) {
                records::on_subscribed(core, &cluster, channel.slice_ref(name));
            } else if &channel[..] == PRESENCE_CHANNEL {
                let generation = cluster.presence.borrow_mut().restart_loading();
                let weak = Rc::downgrade(core);
                glommio::spawn_local(load_presence(weak, generation)).detach();
            } else if channel.starts_with(wire::NODE_CHANNEL) && core.id == 0 {
                // This node hears its channel again: what was sent to it meanwhile (a leader's
                // offers, a follower's reports) is lost. A forced claim makes every node report
                // again (to this node when it leads), now that the reports can arrive.
                cluster.listen.borrow_mut().claim_soon();
            }
        }
        PubSubEvent::Connected => {}
        PubSubEvent::Disconnected => {
            records::on_disconnected(core, &cluster);
            if core.id == 0 {
                cluster.presence.borrow_mut().restart_loading();
            }
        }
    }
}

fn on_presence_message(core: &Rc<Core>, cluster: &Rc<Cluster>, payload: Bytes) {
    {
        let mut presence = cluster.presence.borrow_mut();
        if let Some(buffered) = presence.loading.as_mut() {
            buffered.push(payload);
            return;
        }
    }
    apply_presence_message(core, cluster, &payload);
}

fn apply_presence_message(core: &Rc<Core>, cluster: &Rc<Cluster>, payload: &[u8]) {
    let mut parts = payload.split(|byte| *byte == SEPARATOR);
    let (Some(kind), Some(node), Some(username)) = (parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    if node == cluster.node.as_bytes() {
        return;
    }
    let (Ok(node), Ok(username)) = (std::str::from_utf8(node), std::str::from_utf8(username))
    else {
        return;
    };
    let node: Arc<str> = Arc::from(node);
    if kind == b"N" {
        // `N␞<node>␞`: another node found `node` dead and removed it.
        cluster.presence.borrow_mut().missing_since.remove(&node);
        set_remote_users(core, cluster, &node, None);
        node_gone(core, &node);
        return;
    }
    let username: Arc<str> = Arc::from(username);
    let changes = {
        let mut presence = cluster.presence.borrow_mut();
        let users = presence.remote.entry(Arc::clone(&node)).or_default();
        let changed = if kind == b"J" {
            users.insert(Arc::clone(&username))
        } else {
            users.remove(&username)
        };
        if changed {
            remote_count_changed(&mut presence, &username, kind == b"J")
        } else {
            None
        }
    };
    if let Some(joined) = changes {
        broadcast_remote_presence(core, username, joined);
    }
}

/// Adjusts how many nodes have `username`; `Some(joined)` when it crossed 0.
fn remote_count_changed(
    presence: &mut ClusterPresence,
    username: &Arc<str>,
    joined: bool,
) -> Option<bool> {
    let count = presence
        .remote_count
        .entry(Arc::clone(username))
        .or_insert(0);
    if joined {
        *count += 1;
        (*count == 1).then_some(true)
    } else {
        *count = count.saturating_sub(1);
        if *count == 0 {
            presence.remote_count.remove(username);
            Some(false)
        } else {
            None
        }
    }
}

/// A username logged in (or out) on the rest of the cluster: one login in every replica.
fn broadcast_remote_presence(core: &Rc<Core>, username: Arc<str>, joined: bool) {
    core.broadcast(|| PresenceMessage::Changed {
        username: Arc::clone(&username),
        joined,
        local: false,
    });
}

/// Replaces the remote users of `node` with `users` (or drops the node), notifying changes.
fn set_remote_users(
    core: &Rc<Core>,
    cluster: &Rc<Cluster>,
    node: &Arc<str>,
    users: Option<AHashSet<Arc<str>>>,
) {
    let mut notes = Vec::new();
    {
        let mut presence = cluster.presence.borrow_mut();
        let previous = match &users {
            Some(users) => presence
                .remote
                .insert(Arc::clone(node), users.clone())
                .unwrap_or_default(),
            None => presence.remote.remove(node).unwrap_or_default(),
        };
        let now = users.unwrap_or_default();
        for gone in previous.difference(&now) {
            if let Some(joined) = remote_count_changed(&mut presence, gone, false) {
                notes.push((Arc::clone(gone), joined));
            }
        }
        for new in now.difference(&previous) {
            if let Some(joined) = remote_count_changed(&mut presence, new, true) {
                notes.push((Arc::clone(new), joined));
            }
        }
    }
    for (username, joined) in notes {
        broadcast_remote_presence(core, username, joined);
    }
}

/// Every core forgets the node's RPC stand-ins (its calls in flight are rerouted or fail).
fn node_gone(core: &Rc<Core>, node: &Arc<str>) {
    core.broadcast(|| NodeMessage::Gone {
        node: Arc::clone(node),
    });
}

/// `[now, node, stamp, ...]` from the NODES script: (now, [(node, stamp)]).
fn parse_nodes(value: Value) -> Option<(i64, Vec<(String, i64)>)> {
    let Value::Array(items) = value else {
        return None;
    };
    let mut items = items.into_iter();
    let now = integer(items.next()?)?;
    let mut nodes = Vec::new();
    while let (Some(node), Some(stamp)) = (items.next(), items.next()) {
        let node = match node {
            Value::BulkString(bytes) => String::from_utf8(bytes).ok()?,
            _ => return None,
        };
        nodes.push((node, integer(stamp)?));
    }
    Some((now, nodes))
}

pub fn integer(value: Value) -> Option<i64> {
    match value {
        Value::Int(number) => Some(number),
        Value::BulkString(bytes) => std::str::from_utf8(&bytes).ok()?.parse().ok(),
        Value::SimpleString(text) => text.parse().ok(),
        _ => None,
    }
}

pub fn bulk(value: Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(text) => Some(text.into_bytes()),
        _ => None,
    }
}

/// Loads the users of every live node (core 0, after `cs:presence` is subscribed), then
/// applies the messages that arrived meanwhile. Until a load succeeds the view stays as it was
/// (a failed load is not "no users": that would tell every subscriber they all left), and it
/// is retried every 50 ms while this load is the current one (`generation`).
async fn load_presence(weak: Weak<Core>, generation: u64) {
    let mut republished = false;
    loop {
        let Some(core) = weak.upgrade() else {
            return;
        };
        let Some(cluster) = of(&core) else {
            return;
        };
        if cluster.presence.borrow().load_generation != generation {
            return;
        }
        if cluster.commands.is_up() {
            if !republished {
                // Our own users again (the set may be gone: Redis restarted, or we were
                // declared dead).
                republish_own_users(&cluster);
                republished = true;
            }
            if let Some(loaded) = remote_users(&cluster).await {
                if cluster.presence.borrow().load_generation == generation {
                    apply_loaded_presence(&core, &cluster, loaded);
                }
                return;
            }
        }
        drop(cluster);
        drop(core);
        glommio::timer::sleep(Duration::from_millis(50)).await;
    }
}

/// The users of every other node in `cs:nodes`; `None` when Redis did not answer them all.
async fn remote_users(cluster: &Cluster) -> Option<Vec<(Arc<str>, AHashSet<Arc<str>>)>> {
    let nodes = match cluster
        .script(&cluster.nodes_script, NODES, &[NODES_KEY], &[])
        .await
    {
        Ok(value) => parse_nodes(value)?.1,
        Err(error) => {
            cluster.count_error("loading the node list", &error);
            return None;
        }
    };
    let mut loaded = Vec::new();
    for (node, _) in nodes.iter().filter(|(node, _)| node != &*cluster.node) {
        let key = format!("{USERS_KEY}{node}");
        match cluster.commands.call(&[b"SMEMBERS", key.as_bytes()]).await {
            Ok(Value::Array(members)) | Ok(Value::Set(members)) => {
                let users = members
                    .into_iter()
                    .filter_map(bulk)
                    .filter_map(|bytes| String::from_utf8(bytes).ok())
                    .map(|user| Arc::from(user.as_str()))
                    .collect();
                loaded.push((Arc::from(node.as_str()), users));
            }
            Ok(other) => {
                let error = RedisError::Unexpected(format!("{other:?}"));
                cluster.count_error("loading a node's users", &error);
                return None;
            }
            Err(error) => {
                cluster.count_error("loading a node's users", &error);
                return None;
            }
        }
    }
    Some(loaded)
}

/// Replaces the remote view with what was loaded, then applies the buffered messages.
fn apply_loaded_presence(
    core: &Rc<Core>,
    cluster: &Rc<Cluster>,
    loaded: Vec<(Arc<str>, AHashSet<Arc<str>>)>,
) {
    let known: Vec<Arc<str>> = cluster.presence.borrow().remote.keys().cloned().collect();
    for node in known {
        if !loaded.iter().any(|(loaded_node, _)| *loaded_node == node) {
            set_remote_users(core, cluster, &node, None);
        }
    }
    for (node, users) in loaded {
        set_remote_users(core, cluster, &node, Some(users));
    }
    cluster
        .counters
        .remote_nodes
        .set(cluster.presence.borrow().remote.len() as u64);
    let buffered = cluster
        .presence
        .borrow_mut()
        .loading
        .take()
        .unwrap_or_default();
    for payload in buffered {
        apply_presence_message(core, cluster, &payload);
    }
}

/// Core 0: this node's users again, replacing its set in one step (another node loading the set
/// meanwhile must never see it empty: it would tell its subscribers they all left).
fn republish_own_users(cluster: &Cluster) {
    let users: Vec<Arc<str>> = cluster.presence.borrow().local.keys().cloned().collect();
    let key = format!("{USERS_KEY}{}", cluster.node);
    let mut command: Vec<&[u8]> = vec![b"EVAL", REPLACE_SET.as_bytes(), b"1", key.as_bytes()];
    command.extend(users.iter().map(|username| username.as_bytes()));
    cluster.commands.send(&command);
    for username in users {
        cluster.publish(
            PRESENCE_CHANNEL,
            &presence_payload(b"J", &cluster.node, &username),
        );
    }
}

/// Core 0: stamps this node alive and removes nodes that stopped stamping.
async fn run_liveness(weak: Weak<Core>) {
    let (keep_alive, check, timeout) = match weak.upgrade().and_then(|core| of(&core)) {
        Some(cluster) => (
            cluster.config.keep_alive_interval,
            cluster.config.active_check_interval,
            cluster.config.node_inactive_timeout,
        ),
        None => return,
    };
    let now = std::time::Instant::now;
    let mut next_stamp = now();
    let mut next_check = now();
    let mut next_claim = now();
    let mut checks = 0u64;
    // Since when the command link has been up (None: down).
    let mut up_since: Option<std::time::Instant> = None;
    loop {
        let Some(core) = weak.upgrade() else {
            return;
        };
        let Some(cluster) = of(&core) else {
            return;
        };
        if !cluster.commands.is_up() {
            up_since = None;
        } else if up_since.is_none() {
            // Just (re)connected: stamp at once, before anyone could take us for dead.
            up_since = Some(now());
            next_stamp = now();
        }
        if now() >= next_stamp && cluster.commands.is_up() {
            next_stamp = now() + keep_alive;
            match cluster
                .script(
                    &cluster.heartbeat_script,
                    HEARTBEAT,
                    &[NODES_KEY],
                    &[cluster.node.as_bytes()],
                )
                .await
            {
                // The node was missing from `cs:nodes` (first stamp, Redis lost it, or another
                // node declared us dead): announce our users and providers again.
                Ok(Value::Int(1)) => {
                    republish_own_users(&cluster);
                    core.broadcast(|| NodeMessage::Announce);
                    // The listen leader may have forgotten this node too: report again.
                    cluster.listen.borrow_mut().claim_soon();
                }
                Ok(_) => {}
                Err(error) => cluster.count_error("the node heartbeat", &error),
            }
        }
        if cluster.commands.is_up() && (now() >= next_claim || listen::claim_due(&cluster)) {
            next_claim = now() + check;
            listen::claim(&core, &cluster).await;
        }
        // Judge the others only after they had a whole inactive timeout to stamp since we (and
        // so, after a Redis outage, probably they) reconnected.
        let settled = up_since.is_some_and(|since| since.elapsed() >= timeout);
        if now() >= next_check
            && settled
            && cluster.commands.is_up()
            && cluster.presence.borrow().loading.is_none()
        {
            next_check = now() + check;
            checks += 1;
            remove_dead_nodes(&core, &cluster, checks % 10 == 1).await;
        }
        drop(cluster);
        drop(core);
        glommio::timer::sleep(Duration::from_millis(50).min(check).min(keep_alive)).await;
    }
}

/// Removes `node` (found dead) from Redis and from this node's view, and tells the others.
async fn remove_node(core: &Rc<Core>, cluster: &Rc<Cluster>, node: &str) {
    let users = format!("{USERS_KEY}{node}");
    cluster
        .commands
        .send(&[b"HDEL", NODES_KEY, node.as_bytes()]);
    cluster.commands.send(&[b"DEL", users.as_bytes()]);
    // Tell the other nodes at once (they would otherwise wait for the node list).
    cluster.publish(PRESENCE_CHANNEL, &presence_payload(b"N", node, ""));
    let node: Arc<str> = Arc::from(node);
    cluster.presence.borrow_mut().missing_since.remove(&node);
    set_remote_users(core, cluster, &node, None);
    node_gone(core, &node);
    let names = rpc::names_key(&node);
    let forgotten = cluster
        .script(
            &cluster.forget_node_script,
            rpc::FORGET_NODE,
            &[names.as_bytes()],
            &[node.as_bytes(), b"cs:rpc:"],
        )
        .await;
    if let Err(error) = forgotten {
        cluster.count_error("removing a dead node's RPC providers", &error);
    }
}

/// Nodes that left registrations in Redis (`cs:users:<node>`, `cs:rpcnames:<node>`): one page
/// of a SCAN each, enough to find nodes that died before their first heartbeat.
async fn nodes_with_registrations(cluster: &Cluster) -> Vec<String> {
    let mut nodes = Vec::new();
    for (pattern, prefix) in [("cs:users:*", USERS_KEY), ("cs:rpcnames:*", "cs:rpcnames:")] {
        let reply = cluster
            .commands
            .call(&[
                b"SCAN",
                b"0",
                b"MATCH",
                pattern.as_bytes(),
                b"COUNT",
                b"1000",
            ])
            .await;
        let Ok(Value::Array(parts)) = reply else {
            continue;
        };
        if let Some(Value::Array(keys)) = parts.into_iter().nth(1) {
            for key in keys.into_iter().filter_map(bulk) {
                if let Some(node) = String::from_utf8_lossy(&key).strip_prefix(prefix) {
                    if !nodes.iter().any(|known: &String| known == node) {
                        nodes.push(node.to_string());
                    }
                }
            }
        }
    }
    nodes
}

async fn remove_dead_nodes(core: &Rc<Core>, cluster: &Rc<Cluster>, sweep: bool) {
    let Ok(value) = cluster
        .script(&cluster.nodes_script, NODES, &[NODES_KEY], &[])
        .await
    else {
        return;
    };
    let Some((now, nodes)) = parse_nodes(value) else {
        return;
    };
    let timeout = cluster.config.node_inactive_timeout.as_millis() as i64;
    let mut alive: AHashSet<String> = AHashSet::new();
    for (node, stamp) in &nodes {
        if now - stamp > timeout && node != &*cluster.node {
            crate::warn!(
                "cluster: node {node} sent no heartbeat for {} ms: removing it, its users and providers",
                now - stamp
            );
            remove_node(core, cluster, node).await;
        } else {
            alive.insert(node.clone());
        }
    }
    // Nodes we know of that are not in `cs:nodes`: removed by another node's check, not stamped
    // yet (a first login can be published before the first heartbeat), or dead before their
    // first heartbeat. Give each the inactive timeout before removing what it left.
    let mut known: Vec<String> = cluster
        .presence
        .borrow()
        .remote
        .keys()
        .map(|node| node.to_string())
        .collect();
    if sweep {
        for node in nodes_with_registrations(cluster).await {
            if !known.contains(&node) {
                known.push(node);
            }
        }
    }
    let limit = cluster.config.node_inactive_timeout;
    for node in known {
        if node == *cluster.node {
            continue;
        }
        let key: Arc<str> = Arc::from(node.as_str());
        if alive.contains(&node) {
            cluster.presence.borrow_mut().missing_since.remove(&key);
            continue;
        }
        let since = *cluster
            .presence
            .borrow_mut()
            .missing_since
            .entry(Arc::clone(&key))
            .or_insert_with(std::time::Instant::now);
        if since.elapsed() > limit {
            crate::warn!(
                "cluster: node {node} is not in the node list: removing its users and providers"
            );
            remove_node(core, cluster, &node).await;
        }
    }
    let remote = alive.iter().filter(|node| **node != *cluster.node).count();
    cluster.counters.remote_nodes.set(remote as u64);
}
