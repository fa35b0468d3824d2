//! `Cluster` behind the dispatcher's seam (`dispatch::ClusterSeam`): each call goes to the part
//! of the cluster that owns it (events in `mod.rs`, `records`, `rpc`, `listen`).

use super::{listen, records, rpc, Cluster, ClusterStats};
use crate::base::address::SessionRef;
use crate::dispatch::{ClusterSeam, Core, LoadedFuture, NodeMessage, RecordMessage, RpcRequest};
use crate::features::listen::ListenResponse;
use crate::features::Effects;
use crate::protocol::actions::Topic;
use bytes::Bytes;
use std::any::Any;
use std::rc::Rc;
use std::sync::Arc;

impl ClusterSeam for Cluster {
    fn into_any(self: Rc<Self>) -> Rc<dyn Any> {
        self
    }

    fn stats(&self) -> ClusterStats {
        Cluster::stats(self)
    }

    fn publish_event(&self, name: &[u8], message: &[u8]) {
        Cluster::publish_event(self, name, message);
    }

    fn event_interest(&self, name: &[u8], subscribers: usize) {
        Cluster::event_interest(self, name, subscribers);
    }

    fn record_message(&self, core: &Rc<Core>, message: RecordMessage) {
        records::handle(core, message);
    }

    fn load_records<'a>(&'a self, names: &'a [String]) -> LoadedFuture<'a> {
        Box::pin(records::load_for_rules(self, names))
    }

    fn record_interest(&self, core: &Core, name: &Bytes, subscribers: usize) {
        records::interest(self, core, name, subscribers);
    }

    fn local_providers_changed(&self, name: &Bytes, provided: bool) {
        rpc::local_providers_changed(self, name, provided);
    }

    fn route_request(&self, core: &Rc<Core>, request: RpcRequest) -> Option<RpcRequest> {
        let cluster = super::of(core)?;
        let looked_up = self.rpc_looked_up.borrow().contains_key(&request.name);
        if looked_up && core.rpc_mut().has_local_provider(&request.name) {
            // Served here; keep the other nodes' providers known for a reject.
            rpc::refresh_remote_providers(core, &cluster, &request.name);
            return Some(request);
        }
        // No provider here, or the first request of the name here: ask Redis which nodes
        // provide it (for a reject to fall back to), then route.
        rpc::request_elsewhere(core, &cluster, request);
        None
    }

    fn send_to_stand_in(&self, to: SessionRef, bytes: Bytes) {
        if to.is_remote() {
            rpc::forward(self, to, bytes);
        } else {
            listen::to_stand_in(self, to, &bytes);
        }
    }

    fn listener_changed(&self, topic: Topic, pattern: &str, session: SessionRef, added: bool) {
        listen::listener_changed(self, topic, pattern, session, added);
    }

    fn listen_interest(&self, core: usize, topic: Topic, name: &[u8], interested: bool) {
        listen::interest(self, core, topic, name, interested);
    }

    fn listen_response_to_leader(&self, response: ListenResponse) {
        listen::response_to_leader(self, response);
    }

    fn local_presence(&self, username: &Arc<str>, joined: bool) {
        Cluster::local_presence(self, username, joined);
    }

    fn node_message(&self, core: &Rc<Core>, message: NodeMessage) {
        match message {
            NodeMessage::Rpc {
                node,
                kind,
                message,
            } => rpc::from_node(core, self, &node, kind, message),
            NodeMessage::Announce => rpc::announce_again(self),
            NodeMessage::ListenLeader { leader, leads } => {
                listen::leader_changed(core, self, leader, leads)
            }
            NodeMessage::Listen { node, message } => listen::handle(core, self, &node, message),
            NodeMessage::Gone { node } => self.node_gone(core, &node),
        }
    }
}

impl Cluster {
    /// Every core: `node` is gone; forget its listeners, its interest and its RPC stand-ins.
    fn node_gone(&self, core: &Rc<Core>, node: &Arc<str>) {
        let mut effects = Effects::default();
        listen::node_gone(core, self, node, &mut effects);
        if let Some(stand_in) = self.known_remote_ref(node) {
            let mut rpc = core.rpc_mut();
            let names = rpc.names();
            rpc.session_closed(stand_in, &names, &mut effects);
        }
        core.execute_effects(effects);
    }
}
