//! The one seam between a core and the cluster: what the dispatcher asks of the node's cluster
//! layer when Redis is configured. `cluster::Cluster` implements it; with no Redis there is no
//! implementation and every call below is skipped (the embedded single node).
//!
//! The dispatcher calls it at the points where a name's state crosses the node boundary:
//! publishing an event, a record message (Redis is the records' source of truth), interest in a
//! name, RPC providers and requests, listening, presence, and what another node sent.

use super::node::NodeMessage;
use super::records::RecordMessage;
use super::rpc::RpcRequest;
use super::Core;
use crate::base::address::SessionRef;
use crate::features::listen::ListenResponse;
use crate::metrics::ClusterStats;
use crate::protocol::actions::Topic;
use bytes::Bytes;
use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

/// What `ClusterSeam::load_records` answers, when Redis has answered.
pub type LoadedFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<Option<Box<[u8]>>>, String>> + 'a>>;

pub trait ClusterSeam {
    /// The cluster layer as `Any`, for the cluster's own code to get back its type.
    fn into_any(self: Rc<Self>) -> Rc<dyn Any>;

    /// What `/metrics` shows of this core's cluster layer.
    fn stats(&self) -> ClusterStats;

    // ----- events ------------------------------------------------------------------------------

    /// An emit on the owner core of `name`: the other nodes' subscribers get it too.
    fn publish_event(&self, name: &[u8], message: &[u8]);

    /// The owner core's count of local subscribers of an event changed.
    fn event_interest(&self, name: &[u8], subscribers: usize);

    // ----- records -----------------------------------------------------------------------------

    /// A record message on the owner core of its name: decided against Redis.
    fn record_message(&self, core: &Rc<Core>, message: RecordMessage);

    /// The stored JSON of each named record (`None`: missing), read from Redis, for a
    /// permission rule's cross-references; an error when Redis could not be read.
    fn load_records<'a>(&'a self, names: &'a [String]) -> LoadedFuture<'a>;

    /// The owner core's count of local subscribers of a record changed.
    fn record_interest(&self, core: &Core, name: &Bytes, subscribers: usize);

    // ----- RPC ---------------------------------------------------------------------------------

    /// Whether this node now has a provider of `name` (owner core).
    fn local_providers_changed(&self, name: &Bytes, provided: bool);

    /// A request on the owner core of its name: `Some` to serve it here now, `None` when the
    /// cluster routes it (after learning which nodes provide the name).
    fn route_request(&self, core: &Rc<Core>, request: RpcRequest) -> Option<RpcRequest>;

    // ----- listening and stand-ins -------------------------------------------------------------

    /// Bytes a feature addressed to a stand-in for another node's session.
    fn send_to_stand_in(&self, to: SessionRef, bytes: Bytes);

    /// Core 0: a local listener was added or removed (reported to the listen leader).
    fn listener_changed(&self, topic: Topic, pattern: &str, session: SessionRef, added: bool);

    /// The first local subscriber of a name came, or the last one went (for the leader).
    fn listen_interest(&self, core: usize, topic: Topic, name: &[u8], interested: bool);

    /// A local listener's accept or reject, for the leader to judge.
    fn listen_response_to_leader(&self, response: ListenResponse);

    // ----- presence and other nodes ------------------------------------------------------------

    /// Core 0: a username's login count on this node changed (`joined`: a login).
    fn local_presence(&self, username: &Arc<str>, joined: bool);

    /// What another node said, on the core it was routed to.
    fn node_message(&self, core: &Rc<Core>, message: NodeMessage);
}
