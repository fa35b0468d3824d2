//! RPC across nodes: a request on node A reaches a provider on node B.
//!
//! Called through the dispatcher's seam (`ClusterSeam`) on the owner core of an RPC name. Redis
//! holds, per name, the set of nodes with providers (`cs:rpc:<name>`, kept by each node's owner
//! core as its first provider comes and its last goes; `cs:rpcnames:<node>` indexes them for
//! clean-up). A node with a
//! local provider serves a request locally; one without asks Redis which nodes provide the
//! name and adds one stand-in provider per node to the RPC feature (`SessionRef::node`),
//! so the feature's own routing, reject/reroute, deadlines and errors apply unchanged.
//!
//! What the feature sends to a stand-in travels on the target node's channel
//! `cs:node:<node>` (`wire::NodeWire::RpcRequest` / `RpcAnswer`), handled there by core 0 and
//! routed to the name's owner core, where the calling node is a stand-in requester. The node
//! serving a remote request uses only its own providers and answers `REJ` when none is left (both in `RpcFeature`), so the calling node reroutes to
//! another node. Acks between nodes are in the 1.x form; the calling node rewrites them for a
//! 2.x requester as it would a local provider's.

use super::wire::{self, NodeWire, NODE_CHANNEL};
use super::{bulk, channel, Cluster};
use crate::base::address::SessionRef;
use crate::dispatch::{Core, NodeMessage, RpcFromNode, RpcRequest};
use crate::features::rpc::provider_action;
use crate::features::Effects;
use crate::protocol::actions::{Action, Dialect};
use crate::protocol::message::{messages, Parsed};
use bytes::Bytes;
use redis::Value;
use std::rc::Rc;
use std::sync::Arc;

const PROVIDERS_KEY: &[u8] = b"cs:rpc:";
const NAMES_KEY: &str = "cs:rpcnames:";

/// Removes a dead node from the provider set of every name it provided.
/// KEYS: `cs:rpcnames:<node>`. ARGV: node, `cs:rpc:`.
pub const FORGET_NODE: &str = r"
local names = redis.call('SMEMBERS', KEYS[1])
for i = 1, #names do redis.call('SREM', ARGV[2] .. names[i], ARGV[1]) end
redis.call('DEL', KEYS[1])
return #names
";

pub fn names_key(node: &str) -> String {
    format!("{NAMES_KEY}{node}")
}

/// The first local provider of `name` came (`true`) or the last went.
pub fn local_providers_changed(cluster: &Cluster, name: &Bytes, provided: bool) {
    let providers = channel(PROVIDERS_KEY, name);
    let names = names_key(&cluster.node);
    let command: &[u8] = if provided { b"SADD" } else { b"SREM" };
    cluster
        .commands
        .send(&[command, &providers, cluster.node.as_bytes()]);
    cluster.commands.send(&[command, names.as_bytes(), name]);
    let mut local = cluster.rpc_names.borrow_mut();
    if provided {
        local.insert(Bytes::copy_from_slice(name));
    } else {
        local.remove(name);
    }
}

/// After a reconnect: this core's provided names again (Redis may have lost them).
pub fn announce_again(cluster: &Cluster) {
    let names: Vec<Bytes> = cluster.rpc_names.borrow().iter().cloned().collect();
    let key = names_key(&cluster.node);
    for name in names {
        let providers = channel(PROVIDERS_KEY, &name);
        cluster
            .commands
            .send(&[b"SADD", &providers, cluster.node.as_bytes()]);
        cluster.commands.send(&[b"SADD", key.as_bytes(), &name]);
    }
}

/// How long a looked-up list of the other nodes' providers of a name is used before a request
/// refreshes it (deepstream's `rpcProviderCacheTime` plays this part).
const REMOTE_PROVIDERS_FRESH: std::time::Duration = std::time::Duration::from_secs(1);

/// The other nodes that provide `name`, as stand-ins (empty when Redis cannot say).
async fn remote_providers(cluster: &Cluster, name: &[u8]) -> Vec<SessionRef> {
    let key = channel(PROVIDERS_KEY, name);
    let nodes: Vec<String> = match cluster.commands.call(&[b"SMEMBERS", &key]).await {
        Ok(Value::Array(members)) | Ok(Value::Set(members)) => members
            .into_iter()
            .filter_map(bulk)
            .filter_map(|node| String::from_utf8(node).ok())
            .filter(|node| *node != *cluster.node)
            .collect(),
        Ok(_) => Vec::new(),
        Err(error) => {
            cluster.count_error("looking up RPC providers", &error);
            Vec::new()
        }
    };
    cluster
        .rpc_looked_up
        .borrow_mut()
        .insert(Bytes::copy_from_slice(name), std::time::Instant::now());
    nodes
        .iter()
        .map(|node| cluster.remote_ref(&Arc::from(node.as_str())))
        .collect()
}

/// A request for a name without a local provider: find the nodes that provide it, then let
/// the RPC feature route it (to one of them, or NO_RPC_PROVIDER).
pub fn request_elsewhere(core: &Rc<Core>, cluster: &Rc<Cluster>, request: RpcRequest) {
    let core = Rc::clone(core);
    let cluster = Rc::clone(cluster);
    glommio::spawn_local(async move {
        let stand_ins = remote_providers(&cluster, &request.name).await;
        let mut effects = Effects::default();
        {
            let mut rpc = core.rpc_mut();
            rpc.set_remote_providers(&request.name, stand_ins);
            rpc.request(
                request.name,
                request.correlation,
                request.session,
                request.dialect,
                request.message,
                &mut effects,
            );
        }
        core.execute_effects(effects);
    })
    .detach();
}

/// A request served by a local provider: refresh, in the background, which other nodes provide
/// the name, so a reject can fall back to them (once a second per name at most).
pub fn refresh_remote_providers(core: &Rc<Core>, cluster: &Rc<Cluster>, name: &Bytes) {
    let fresh = cluster
        .rpc_looked_up
        .borrow()
        .get(name)
        .is_some_and(|at| at.elapsed() < REMOTE_PROVIDERS_FRESH);
    if fresh {
        return;
    }
    // Counted as looked up from now: one refresh in flight per name.
    cluster
        .rpc_looked_up
        .borrow_mut()
        .insert(Bytes::copy_from_slice(name), std::time::Instant::now());
    let core = Rc::clone(core);
    let cluster = Rc::clone(cluster);
    let name = name.clone();
    glommio::spawn_local(async move {
        let stand_ins = remote_providers(&cluster, &name).await;
        core.rpc_mut().set_remote_providers(&name, stand_ins);
    })
    .detach();
}

/// Sends what the RPC feature addressed to a stand-in to its node.
pub fn forward(cluster: &Cluster, to: SessionRef, bytes: Bytes) {
    let Some(node) = cluster.remote_node(to.slot) else {
        return;
    };
    let Some(Parsed::Message(message)) = messages(&bytes, Dialect::V1).next() else {
        return;
    };
    // Only errors about a call (`P|E|<error>|<name>|<cid>`) cross; the feature's complaints
    // about unknown calls (three fields) stay home, so two nodes never bounce them.
    if message.action == Action::Error && message.data_count() < 3 {
        return;
    }
    let wire = match message.action {
        Action::Request => NodeWire::RpcRequest(bytes.clone()),
        _ => NodeWire::RpcAnswer(bytes.clone()),
    };
    let payload = wire::encode(&cluster.node, &wire);
    cluster.publish(&channel(NODE_CHANNEL, node.as_bytes()), &payload);
}

/// Core 0: an RPC message from `node`; route it to the owner core of its name.
pub fn on_node_message(core: &Rc<Core>, node: Arc<str>, kind: RpcFromNode, message: Bytes) {
    let Some(Parsed::Message(parsed)) = messages(&message, Dialect::V1).next() else {
        return;
    };
    let index = match kind {
        RpcFromNode::Request => 0,
        RpcFromNode::Answer => match provider_action(parsed.action, parsed.data_at(0), Dialect::V1)
        {
            Some((_, index)) => index,
            None => return,
        },
    };
    let Some(name) = parsed.data_at(index) else {
        return;
    };
    let owner = core.owner(name);
    let rpc = NodeMessage::Rpc {
        node,
        kind,
        message: message.clone(),
    };
    core.route(owner, rpc);
}

/// On the owner core: a request from another node, or a reply from a provider there.
pub fn from_node(
    core: &Rc<Core>,
    cluster: &Cluster,
    node: &Arc<str>,
    kind: RpcFromNode,
    message: Bytes,
) {
    let stand_in = cluster.remote_ref(node);
    let Some(Parsed::Message(parsed)) = messages(&message, Dialect::V1).next() else {
        return;
    };
    let mut effects = Effects::default();
    {
        let mut rpc = core.rpc_mut();
        match kind {
            RpcFromNode::Request => {
                let (Some(name), Some(correlation)) = (parsed.data_at(0), parsed.data_at(1)) else {
                    return;
                };
                let name = Bytes::copy_from_slice(name);
                // (served by this node's providers only: see `RpcFeature::pick`)
                rpc.request(
                    name,
                    Bytes::copy_from_slice(correlation),
                    stand_in,
                    Dialect::V1,
                    message.clone(),
                    &mut effects,
                );
            }
            RpcFromNode::Answer => {
                let Some((action, index)) =
                    provider_action(parsed.action, parsed.data_at(0), Dialect::V1)
                else {
                    return;
                };
                let (Some(name), Some(correlation)) =
                    (parsed.data_at(index), parsed.data_at(index + 1))
                else {
                    return;
                };
                let data1 = parsed.data_at(1).unwrap_or(b"undefined");
                rpc.from_provider(
                    action,
                    Bytes::copy_from_slice(name),
                    Bytes::copy_from_slice(correlation),
                    stand_in,
                    Dialect::V1,
                    message.clone(),
                    Bytes::copy_from_slice(data1),
                    &mut effects,
                );
            }
        }
    }
    core.execute_effects(effects);
}
