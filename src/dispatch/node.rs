//! Node messages: what another node said (through the cluster's Redis channels), decoded by
//! `cluster` on core 0 and routed to the core that must act. The dispatcher hands each one back
//! to the cluster layer (`ClusterSeam::node_message`) on that core.

use super::Core;
use crate::base::address::SessionRef;
use crate::features::listen::ListenResponse;
use crate::protocol::actions::Topic;
use bytes::Bytes;
use std::rc::Rc;
use std::sync::Arc;

#[derive(Debug)]
pub enum NodeMessage {
    /// An RPC message from `node` for the owner core of its name.
    Rpc {
        node: Arc<str>,
        kind: RpcFromNode,
        message: Bytes,
    },
    /// Listening across nodes: `leader` leads from now on (this node when `leads`).
    ListenLeader { leader: Arc<str>, leads: bool },
    /// Listening across nodes: what another node reported or sent.
    Listen {
        node: Arc<str>,
        message: ListenFromNode,
    },
    /// Another node is gone: forget its stand-ins (its RPC providers and requesters).
    Gone { node: Arc<str> },
    /// This node was taken for dead (or Redis lost its state): register again what this core
    /// registered in Redis (its RPC providers).
    Announce,
}

/// What an RPC message from another node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RpcFromNode {
    /// A request for a provider on this node.
    Request,
    /// A provider's answer (ack, response, error, rejection) to a request from this node.
    Answer,
}

/// What another node said about listening (see `cluster::listen`).
#[derive(Debug, Clone)]
pub enum ListenFromNode {
    /// The node restarted its registrations of core `core`: forget them.
    Reset { core: u16 },
    /// A listener of that node was added or removed.
    Listener {
        topic: Topic,
        pattern: Arc<str>,
        session: SessionRef,
        added: bool,
    },
    /// The node's owner core `core` of `name` has subscribers (`interested`) or no longer has.
    Interest {
        topic: Topic,
        core: u16,
        name: Bytes,
        interested: bool,
    },
    /// A listener of that node accepted or rejected `name`.
    Response(ListenResponse),
    /// An `SR` for a local listener (the owner core of the name forgets its accept first).
    Revoke {
        topic: Topic,
        pattern: Arc<str>,
        name: Bytes,
        session: SessionRef,
        bytes: Bytes,
    },
    /// Whether some listener in the cluster provides `name` (`SH`), for local subscribers.
    ProviderState {
        topic: Topic,
        name: Bytes,
        provided: bool,
    },
}

impl NodeMessage {
    pub(super) fn weight(&self) -> usize {
        match self {
            NodeMessage::Rpc { message, .. } => message.len(),
            NodeMessage::Gone { node } | NodeMessage::ListenLeader { leader: node, .. } => {
                node.len()
            }
            // Rare control messages: the fixed part covers them.
            NodeMessage::Listen { .. } | NodeMessage::Announce => 0,
        }
    }
}

impl Core {
    pub(super) fn handle_node(self: &Rc<Self>, message: NodeMessage) {
        if let Some(cluster) = self.cluster.get() {
            cluster.node_message(self, message);
        }
    }
}
