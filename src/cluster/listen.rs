//! Listening across nodes: one active provider per name in the whole cluster.
//!
//! One node leads listening. Its registries (`features::event::TopicRegistry`, role `Leader`)
//! run discovery over every node's listeners and every node's interest in each name; the other
//! nodes (role `Follower`) run none and report to the leader. The other nodes' listeners and
//! subscribers appear in the leader's registries as stand-ins (`Address::NodeListener`,
//! `Address::NodeInterest`), and what the registries send to a stand-in travels to its
//! node. So `SP` in turn, the late-accept rule, `SR` when the last subscriber anywhere leaves
//! and `SH` on every node behave as on one node, with one provider per name.
//!
//! Called through the dispatcher's seam (`ClusterSeam`: effects, listen registrations on core 0,
//! the `NodeMessage::ListenLeader` and `Listen` messages) and by `cluster` (core 0's liveness
//! loop and node channel, decoded by `wire`).
//!
//! ## Choosing the leader
//! The hash `cs:listen-leader` holds {node, epoch}. Core 0 of every node runs `CLAIM` every
//! `clusterActiveCheckInterval`: the leader stays while it is in `cs:nodes` (alive); otherwise
//! the caller leads with a new epoch. A node that sees a newer epoch resets its listening
//! (revoking the providers it knew) and reports again: its listeners (from core 0) and each
//! core's subscribed names. After a reconnect of core 0's links a node does the same with the
//! epoch it finds, and a leader takes a new epoch (what it knew of the others may be stale), so
//! every follower reports again. A core other than 0 whose command link reconnects reports its
//! own part again (what it sent while the link was down is lost).
//!
//! A new leader first resets its own cores and only then announces `<node>␞<epoch>` on
//! `cs:listen` (the script does not publish): a follower that found the new epoch in Redis
//! before the announcement may have reported before the reset wiped its reports, so every
//! follower reports again on an announcement of the epoch it already has.
//!
//! ## On the wire (`cs:node:<node>`, encoded by `wire`; its module doc has the bytes)
//! Follower → leader, from its core `c`:
//! - `ListenReset` (`LX`): forget what core `c` reported (core 0: the listeners too); a full
//!   report follows.
//! - `Listener` (`LL` / `LU`): a listener added / removed (core 0 only).
//! - `Interest` (`LI`): the first local subscriber of a name came / the last went.
//! - `Response` (`LR`): a listener's `LA` / `LR`.
//!
//! Leader → follower: `ToListener` (`LS`: an `SP`, `SR` or error for a listener there),
//! `ToSubscribers` (`LH`: an `SH` for the node's subscribers of a name).
//!
//! ## Ordering
//! Each core publishes on its own connection, so what one core reports arrives in order: a
//! node's listeners all travel through its core 0, and a name's interest through its owner
//! core, each after that core's `LX`. Between cores there is no order, and none is needed:
//! a listener that arrives after the interest is offered the name, interest that arrives
//! after the listener starts discovery.
//!
//! Left as is: the leader keeps one entry per subscribed name and node of the whole cluster
//! (not only names some pattern matches), and a change of leader revokes every provider once
//! (`SR`, then `SP` again from the new leader). Two nodes can both believe they lead for at
//! most one check interval after the leader's death, while their views of `cs:nodes` differ.

use super::wire::{self, NodeWire, NODE_CHANNEL};
use super::{bulk, channel, integer, Cluster, SEPARATOR};
use crate::base::address::{Address, SessionRef};
use crate::dispatch::{Core, Delivery, ListenFromNode, NodeMessage};
use crate::features::event::ListenRole;
use crate::features::listen::ListenResponse;
use crate::features::Effects;
use crate::protocol::actions::{Action, Dialect, Topic};
use crate::protocol::message::{messages, Parsed};
use ahash::AHashMap;
use bytes::Bytes;
use redis::Value;
use std::rc::Rc;
use std::sync::Arc;

pub const LEADER_KEY: &[u8] = b"cs:listen-leader";
pub const LEADER_CHANNEL: &[u8] = b"cs:listen";

/// Keeps a live leader or takes the lead. KEYS: `cs:listen-leader`, `cs:nodes`. ARGV: node,
/// `1` to take a new epoch when it leads already. Returns {leader, epoch, taken}: epoch -1 when
/// there is no live leader and the caller is not stamped alive yet; taken 1 when the caller
/// just took a new epoch (it announces it once its cores are reset).
pub const CLAIM: &str = r"
local leader = redis.call('HGET', KEYS[1], 'node')
local alive = leader and redis.call('HEXISTS', KEYS[2], leader) == 1
if alive and not (leader == ARGV[1] and ARGV[2] == '1') then
  return {leader, tonumber(redis.call('HGET', KEYS[1], 'epoch')) or 0, 0}
end
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then
  return {leader or '', -1, 0}
end
local epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
redis.call('HSET', KEYS[1], 'node', ARGV[1])
return {ARGV[1], epoch, 1}
";

/// When a (leader, epoch) seen replaces the one a node's core 0 took.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Take {
    /// Only a newer epoch (a routine claim, or this node's own announcement).
    Newer,
    /// The same epoch too: a leader's announcement, after which every follower reports again.
    AtLeastAsNew,
    /// Whatever Redis says (a forced claim after a reconnect).
    Always,
}

struct RemoteListener {
    node: Arc<str>,
    session: SessionRef,
}

/// The listening part of one core's cluster state.
#[derive(Default)]
pub struct ClusterListen {
    /// The leader as this core knows it, and whether it is this node.
    leader: Option<(Arc<str>, bool)>,
    /// Core 0: the (leader, epoch) last taken.
    taken: Option<(Arc<str>, i64)>,
    /// Core 0: report again at the next claim (a link of core 0 reconnected, or the leader left).
    claim_now: bool,
    /// Leader: the other nodes' listeners; an `Address::NodeListener` stand-in's index is its
    /// place here.
    remote: Vec<Option<RemoteListener>>,
    remote_index: AHashMap<(Arc<str>, SessionRef), u32>,
    free: Vec<u32>,
}

impl ClusterListen {
    fn stand_in(&mut self, node: &Arc<str>, session: SessionRef) -> SessionRef {
        let key = (Arc::clone(node), session);
        let slot = match self.remote_index.get(&key) {
            Some(slot) => *slot,
            None => {
                let entry = Some(RemoteListener {
                    node: Arc::clone(node),
                    session,
                });
                let slot = match self.free.pop() {
                    Some(slot) => {
                        self.remote[slot as usize] = entry;
                        slot
                    }
                    None => {
                        self.remote.push(entry);
                        (self.remote.len() - 1) as u32
                    }
                };
                self.remote_index.insert(key, slot);
                slot
            }
        };
        listener_ref(slot)
    }

    fn known_stand_in(&self, node: &Arc<str>, session: SessionRef) -> Option<SessionRef> {
        self.remote_index
            .get(&(Arc::clone(node), session))
            .map(|slot| listener_ref(*slot))
    }

    fn release(&mut self, stand_in: SessionRef) {
        let slot = stand_in.slot;
        if let Some(entry) = self.remote.get_mut(slot as usize).and_then(Option::take) {
            self.remote_index.remove(&(entry.node, entry.session));
            self.free.push(slot);
        }
    }

    fn stand_ins_of(&self, node: &str) -> Vec<SessionRef> {
        self.remote
            .iter()
            .enumerate()
            .filter(|(_, entry)| entry.as_ref().is_some_and(|entry| &*entry.node == node))
            .map(|(slot, _)| listener_ref(slot as u32))
            .collect()
    }

    fn clear_remote(&mut self) {
        self.remote.clear();
        self.remote_index.clear();
        self.free.clear();
    }

    /// The leader, when it is another node (this node follows).
    fn followed(&self) -> Option<Arc<str>> {
        match &self.leader {
            Some((leader, false)) => Some(Arc::clone(leader)),
            _ => None,
        }
    }

    pub fn leads(&self) -> bool {
        matches!(self.leader, Some((_, true)))
    }

    /// Core 0: a link reconnected or the leader left: claim and report again soon.
    pub fn claim_soon(&mut self) {
        self.claim_now = true;
    }
}

fn listener_ref(slot: u32) -> SessionRef {
    SessionRef::node_listener(slot)
}

/// Publishes `message` on `node`'s channel.
fn send(cluster: &Cluster, node: &str, message: &NodeWire) {
    let payload = wire::encode(&cluster.node, message);
    cluster.publish(&channel(NODE_CHANNEL, node.as_bytes()), &payload);
}

// ----- core 0: the leader ------------------------------------------------------------------

/// Core 0, from the liveness loop: is it time to claim (or confirm) the lead?
pub fn claim_due(cluster: &Cluster) -> bool {
    cluster.listen.borrow().claim_now
}

/// Core 0: keeps or takes the lead in Redis, and takes what it finds.
pub async fn claim(core: &Rc<Core>, cluster: &Rc<Cluster>) {
    let force = std::mem::take(&mut cluster.listen.borrow_mut().claim_now);
    let renew: &[u8] = if force { b"1" } else { b"0" };
    let reply = cluster
        .script(
            &cluster.listen_claim_script,
            CLAIM,
            &[LEADER_KEY, super::NODES_KEY],
            &[cluster.node.as_bytes(), renew],
        )
        .await;
    let parsed = match reply {
        Ok(value) => parse_claim(value),
        Err(error) => {
            cluster.count_error("choosing the listen leader", &error);
            None
        }
    };
    match parsed {
        Some((leader, epoch, taken)) if epoch >= 0 => {
            let when = if force { Take::Always } else { Take::Newer };
            let leader: Arc<str> = Arc::from(leader.as_str());
            take_leader(core, cluster, Arc::clone(&leader), epoch, when);
            if taken {
                // Our cores are reset (core 0 at once, the others before anything queued
                // after this): now the followers' reports can no longer be wiped.
                let announcement = format!("{leader}{}{epoch}", char::from(SEPARATOR));
                cluster.publish(LEADER_CHANNEL, announcement.as_bytes());
            }
        }
        // Not stamped yet, or Redis did not answer: try again at the next check.
        _ => {
            if force {
                cluster.listen.borrow_mut().claim_now = true;
            }
        }
    }
}

/// `{leader, epoch, taken}` of `CLAIM`.
fn parse_claim(value: Value) -> Option<(String, i64, bool)> {
    let Value::Array(parts) = value else {
        return None;
    };
    let mut parts = parts.into_iter();
    let leader = String::from_utf8(parts.next().and_then(bulk)?).ok()?;
    let epoch = parts.next().and_then(integer)?;
    let taken = parts.next().and_then(integer) == Some(1);
    Some((leader, epoch, taken))
}

/// Core 0: `cs:listen` said who leads now.
pub fn on_announcement(core: &Rc<Core>, cluster: &Rc<Cluster>, payload: &[u8]) {
    let Some(split) = memchr::memchr(SEPARATOR, payload) else {
        return;
    };
    let (Ok(leader), Some(epoch)) = (
        std::str::from_utf8(&payload[..split]),
        std::str::from_utf8(&payload[split + 1..])
            .ok()
            .and_then(|text| text.parse::<i64>().ok()),
    ) else {
        return;
    };
    let when = if leader == &*cluster.node {
        Take::Newer
    } else {
        Take::AtLeastAsNew
    };
    take_leader(core, cluster, Arc::from(leader), epoch, when);
}

/// Core 0: a (leader, epoch) seen; when `when` allows, every core's listening is reset under
/// that leader.
fn take_leader(core: &Rc<Core>, cluster: &Rc<Cluster>, leader: Arc<str>, epoch: i64, when: Take) {
    {
        let mut listen = cluster.listen.borrow_mut();
        let replaces = match (&listen.taken, when) {
            (None, _) | (_, Take::Always) => true,
            (Some((_, taken)), Take::Newer) => epoch > *taken,
            (Some((_, taken)), Take::AtLeastAsNew) => epoch >= *taken,
        };
        if !replaces {
            return;
        }
        listen.taken = Some((Arc::clone(&leader), epoch));
    }
    let leads = *leader == *cluster.node;
    crate::info!(
        "cluster: listening is led by {} (epoch {epoch}){}",
        leader,
        if leads { ": this node" } else { "" }
    );
    core.broadcast(|| NodeMessage::ListenLeader {
        leader: Arc::clone(&leader),
        leads,
    });
}

/// Core 0: a node left or was removed; if it led, claim at once.
fn node_left(cluster: &Cluster, node: &str) {
    let mut listen = cluster.listen.borrow_mut();
    if listen
        .leader
        .as_ref()
        .is_some_and(|(leader, _)| &**leader == node)
    {
        listen.claim_now = true;
    }
}

// ----- every core: the leader changed --------------------------------------------------------

/// Every core: `leader` leads from now on (this node when `leads`). Resets the registries to
/// the new role, then a follower reports what it has.
pub fn leader_changed(core: &Rc<Core>, cluster: &Cluster, leader: Arc<str>, leads: bool) {
    let role = if leads {
        ListenRole::Leader
    } else {
        ListenRole::Follower
    };
    let mut effects = Effects::default();
    core.set_listen_role(role, &mut effects);
    {
        let mut listen = cluster.listen.borrow_mut();
        listen.clear_remote();
        listen.leader = Some((Arc::clone(&leader), leads));
    }
    core.execute_effects(effects);
    if !leads {
        report(core, cluster, &leader);
    }
}

/// Every core of a follower: this core's whole part for `leader` (after an `LX` that makes the
/// leader forget what it had from this core): core 0's listeners, the names subscribed here.
fn report(core: &Core, cluster: &Cluster, leader: &str) {
    let own_core = u16::try_from(core.id).unwrap_or(u16::MAX);
    send(cluster, leader, &NodeWire::ListenReset { core: own_core });
    for topic in [Topic::Event, Topic::Record] {
        let (listeners, names) = match core.registry(topic) {
            Some(registry) => (
                registry.local_listeners(),
                registry.locally_subscribed_names(),
            ),
            None => continue,
        };
        if core.id == 0 {
            for (pattern, session) in listeners {
                let listener = NodeWire::Listener {
                    topic,
                    session,
                    pattern,
                    added: true,
                };
                send(cluster, leader, &listener);
            }
        }
        for name in names {
            let interest = NodeWire::Interest {
                topic,
                core: own_core,
                interested: true,
                name,
            };
            send(cluster, leader, &interest);
        }
    }
}

/// A core other than 0 whose command link came back: what it reported while the link was down
/// was lost, so it reports its part again (core 0 claims again instead, and every core reports).
pub fn command_link_back(core: &Core, cluster: &Cluster) {
    let leader = cluster.listen.borrow().followed();
    if let Some(leader) = leader {
        report(core, cluster, &leader);
    }
}

// ----- a follower reports ---------------------------------------------------------------------

/// Core 0 of a follower: a local listener was added or removed.
pub fn listener_changed(
    cluster: &Cluster,
    topic: Topic,
    pattern: &str,
    session: SessionRef,
    added: bool,
) {
    let Some(leader) = cluster.listen.borrow().followed() else {
        return;
    };
    let listener = NodeWire::Listener {
        topic,
        session,
        pattern: Arc::from(pattern),
        added,
    };
    send(cluster, &leader, &listener);
}

/// The owner core of `name` on a follower: its first local subscriber came or its last went.
pub fn interest(cluster: &Cluster, core: usize, topic: Topic, name: &[u8], interested: bool) {
    let Some(leader) = cluster.listen.borrow().followed() else {
        return;
    };
    let interest = NodeWire::Interest {
        topic,
        core: u16::try_from(core).unwrap_or(u16::MAX),
        interested,
        name: Bytes::copy_from_slice(name),
    };
    send(cluster, &leader, &interest);
}

/// The owner core of `name` on a follower: a local listener's `LA` / `LR`.
pub fn response_to_leader(cluster: &Cluster, response: ListenResponse) {
    let Some(leader) = cluster.listen.borrow().followed() else {
        return;
    };
    send(cluster, &leader, &NodeWire::Response(response));
}

// ----- the leader sends to stand-ins ---------------------------------------------------------

/// Leader: what a registry sent to a stand-in (another node's listener, or another node's
/// subscribers of a name) travels to that node.
pub fn to_stand_in(cluster: &Cluster, to: SessionRef, bytes: &[u8]) {
    if let Address::NodeListener { .. } = to.address() {
        let target = {
            let listen = cluster.listen.borrow();
            listen
                .remote
                .get(to.slot as usize)
                .and_then(Option::as_ref)
                .map(|entry| (Arc::clone(&entry.node), entry.session))
        };
        if let Some((node, session)) = target {
            let message = Bytes::copy_from_slice(bytes);
            send(cluster, &node, &NodeWire::ToListener { session, message });
        }
    } else if let Some(node) = cluster.remote_node(to.slot) {
        let message = Bytes::copy_from_slice(bytes);
        send(cluster, &node, &NodeWire::ToSubscribers { message });
    }
}

// ----- core 0: what another node sent --------------------------------------------------------

/// Core 0: what another node sent about listening, for the cores that must act on it.
pub fn on_node_message(core: &Rc<Core>, node: Arc<str>, message: NodeWire) {
    let broadcast = |message: ListenFromNode| {
        core.broadcast(|| NodeMessage::Listen {
            node: Arc::clone(&node),
            message: message.clone(),
        })
    };
    let to_owner = |name: &[u8], message: ListenFromNode| {
        let node = Arc::clone(&node);
        core.route(core.owner(name), NodeMessage::Listen { node, message })
    };
    match message {
        NodeWire::ListenReset { core } => broadcast(ListenFromNode::Reset { core }),
        NodeWire::Listener {
            topic,
            session,
            pattern,
            added,
        } => broadcast(ListenFromNode::Listener {
            topic,
            pattern,
            session,
            added,
        }),
        NodeWire::Interest {
            topic,
            core: owner_core,
            interested,
            name,
        } => to_owner(
            &name.clone(),
            ListenFromNode::Interest {
                topic,
                core: owner_core,
                name,
                interested,
            },
        ),
        NodeWire::Response(response) => {
            to_owner(&response.name.clone(), ListenFromNode::Response(response))
        }
        NodeWire::ToListener { session, message } => to_listener(core, &node, session, message),
        NodeWire::ToSubscribers { message } => {
            if let Some((name, state)) = provider_state(&message) {
                to_owner(&name, state);
            }
        }
        NodeWire::RpcRequest(_) | NodeWire::RpcAnswer(_) => {}
    }
}

/// The leader's message for one of this node's listeners: an `SR` goes to the owner core of
/// the name first (it forgets the accept), anything else straight to the listener's core.
fn to_listener(core: &Rc<Core>, node: &Arc<str>, session: SessionRef, bytes: Bytes) {
    if usize::from(session.core) >= core.cores() {
        return;
    }
    match revoked(&bytes) {
        Some((topic, pattern, name)) => {
            let owner = core.owner(&name);
            let message = ListenFromNode::Revoke {
                topic,
                pattern,
                name,
                session,
                bytes,
            };
            let node = Arc::clone(node);
            core.route(owner, NodeMessage::Listen { node, message });
        }
        None => core.route(
            usize::from(session.core),
            Delivery::Send { to: session, bytes },
        ),
    }
}

/// (topic, pattern, name) of an `SR` message.
fn revoked(bytes: &[u8]) -> Option<(Topic, Arc<str>, Bytes)> {
    let Some(Parsed::Message(parsed)) = messages(bytes, Dialect::V1).next() else {
        return None;
    };
    if parsed.action != Action::SubscriptionForPatternRemoved {
        return None;
    }
    let pattern = std::str::from_utf8(parsed.data_at(0)?).ok()?;
    let name = Bytes::copy_from_slice(parsed.data_at(1)?);
    Some((topic_of(parsed.topic)?, Arc::from(pattern), name))
}

/// The name of an `SH` message and what to tell its owner core.
fn provider_state(bytes: &[u8]) -> Option<(Bytes, ListenFromNode)> {
    let Some(Parsed::Message(parsed)) = messages(bytes, Dialect::V1).next() else {
        return None;
    };
    if parsed.action != Action::SubscriptionHasProvider {
        return None;
    }
    let name = Bytes::copy_from_slice(parsed.data_at(0)?);
    let state = ListenFromNode::ProviderState {
        topic: topic_of(parsed.topic)?,
        name: name.clone(),
        provided: parsed.data_at(1)? == b"T",
    };
    Some((name, state))
}

fn topic_of(code: &[u8]) -> Option<Topic> {
    match code {
        b"E" => Some(Topic::Event),
        b"R" => Some(Topic::Record),
        _ => None,
    }
}

// ----- every core: handling what another node sent -------------------------------------------

/// On the core `on_node_message` picked: apply what `node` said.
pub fn handle(core: &Rc<Core>, cluster: &Cluster, node: &Arc<str>, message: ListenFromNode) {
    let mut effects = Effects::default();
    let leads = cluster.listen.borrow().leads();
    match message {
        ListenFromNode::Reset { core: reset_core } if leads => {
            let node_slot = cluster.remote_ref(node).slot;
            core.forget_remote_interest(
                |stand_in| {
                    stand_in.address()
                        == Address::NodeInterest {
                            node: node_slot,
                            core: u32::from(reset_core),
                        }
                },
                &mut effects,
            );
            if reset_core == 0 {
                forget_listeners_of(core, cluster, node, &mut effects);
            }
        }
        ListenFromNode::Listener {
            topic,
            pattern,
            session,
            added,
        } if leads => {
            if added {
                let stand_in = cluster.listen.borrow_mut().stand_in(node, session);
                if let Some(mut registry) = core.registry(topic) {
                    registry.listen_added(&pattern, stand_in, &mut effects);
                }
            } else {
                let known = cluster.listen.borrow().known_stand_in(node, session);
                if let Some(stand_in) = known {
                    if let Some(mut registry) = core.registry(topic) {
                        registry.listen_removed(&pattern, stand_in, &mut effects);
                    }
                    if !core.has_listener(stand_in) {
                        cluster.listen.borrow_mut().release(stand_in);
                    }
                }
            }
        }
        ListenFromNode::Interest {
            topic,
            core: owner_core,
            name,
            interested,
        } if leads => {
            let stand_in =
                SessionRef::node_interest(cluster.remote_ref(node).slot, u32::from(owner_core));
            if let Some(mut registry) = core.registry(topic) {
                registry.remote_interest(&name, stand_in, interested, &mut effects);
            }
        }
        ListenFromNode::Response(response) if leads => {
            let known = cluster
                .listen
                .borrow()
                .known_stand_in(node, response.session);
            if let Some(stand_in) = known {
                if let Some(mut registry) = core.registry(response.topic) {
                    registry.answer_listen(&response, stand_in, &mut effects);
                }
            }
        }
        ListenFromNode::Revoke {
            topic,
            pattern,
            name,
            session,
            bytes,
        } => {
            if let Some(mut registry) = core.registry(topic) {
                registry.provider_revoked(&pattern, &name, session);
            }
            effects.send(session, bytes);
        }
        ListenFromNode::ProviderState {
            topic,
            name,
            provided,
        } => {
            if let Some(mut registry) = core.registry(topic) {
                registry.provided_elsewhere(&name, provided, &mut effects);
            }
        }
        // Reports that reach a node which no longer leads: the new leader gets them again.
        _ => {}
    }
    core.execute_effects(effects);
}

/// Leader, every core: forgets every listener of `node` (it reports again, or it is gone).
fn forget_listeners_of(core: &Rc<Core>, cluster: &Cluster, node: &str, effects: &mut Effects) {
    let stand_ins = cluster.listen.borrow().stand_ins_of(node);
    for stand_in in stand_ins {
        core.forget_remote_listener(stand_in, effects);
        cluster.listen.borrow_mut().release(stand_in);
    }
}

/// Every core: `node` is gone; the leader forgets its listeners and interest.
pub fn node_gone(core: &Rc<Core>, cluster: &Cluster, node: &Arc<str>, effects: &mut Effects) {
    if core.id == 0 {
        node_left(cluster, node);
    }
    if !cluster.listen.borrow().leads() {
        return;
    }
    if let Some(node_ref) = cluster.known_remote_ref(node) {
        core.forget_remote_interest(
            |stand_in| {
                matches!(stand_in.address(), Address::NodeInterest { node, .. } if node == node_ref.slot)
            },
            effects,
        );
    }
    forget_listeners_of(core, cluster, node, effects);
}
