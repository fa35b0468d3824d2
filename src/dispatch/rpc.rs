//! RPC messages on the owner core of their name (provide, request, a provider's answer, a
//! closing session's provided names), and the task that fires RPC deadlines. Requests consult
//! the cluster seam first in a cluster (the provider may be on another node).

use super::Core;
use crate::base::address::SessionRef;
use crate::features::rpc::{DeadlineKind, ProviderAction, RpcFeature};
use crate::features::Effects;
use crate::protocol::actions::Dialect;
use ahash::AHashMap;
use bytes::Bytes;
use std::cell::RefMut;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Instant;

#[derive(Debug)]
pub enum RpcMessage {
    Provide {
        name: Bytes,
        session: SessionRef,
        provide: bool,
    },
    Request(RpcRequest),
    FromProvider {
        action: ProviderAction,
        name: Bytes,
        correlation: Bytes,
        session: SessionRef,
        dialect: Dialect,
        message: Bytes,
        data1: Bytes,
    },
    /// A closing session's provided names on this core.
    SessionClosed {
        session: SessionRef,
        names: Vec<Bytes>,
    },
}

/// A request for the owner core of `name`.
#[derive(Debug)]
pub struct RpcRequest {
    pub name: Bytes,
    pub correlation: Bytes,
    pub session: SessionRef,
    pub dialect: Dialect,
    pub message: Bytes,
}

impl RpcMessage {
    pub(super) fn weight(&self) -> usize {
        match self {
            RpcMessage::Provide { name, .. } => name.len(),
            RpcMessage::Request(request) => {
                request.name.len() + request.correlation.len() + request.message.len()
            }
            RpcMessage::FromProvider {
                name,
                correlation,
                message,
                data1,
                ..
            } => name.len() + correlation.len() + message.len() + data1.len(),
            RpcMessage::SessionClosed { names, .. } => names.iter().map(|n| n.len() + 16).sum(),
        }
    }
}

impl Core {
    pub(super) fn handle_rpc(self: &Rc<Self>, message: RpcMessage) {
        let mut effects = Effects::default();
        match message {
            RpcMessage::Provide {
                name,
                session,
                provide,
            } => self.provide(name, session, provide, &mut effects),
            RpcMessage::Request(request) => {
                let request = match self.cluster.get() {
                    Some(cluster) => match cluster.route_request(self, request) {
                        Some(request) => request,
                        None => return,
                    },
                    None => request,
                };
                self.rpc_mut().request(
                    request.name,
                    request.correlation,
                    request.session,
                    request.dialect,
                    request.message,
                    &mut effects,
                )
            }
            RpcMessage::FromProvider {
                action,
                name,
                correlation,
                session,
                dialect,
                message,
                data1,
            } => self.rpc_mut().from_provider(
                action,
                name,
                correlation,
                session,
                dialect,
                message,
                data1,
                &mut effects,
            ),
            RpcMessage::SessionClosed { session, names } => {
                self.rpc_mut().session_closed(session, &names, &mut effects)
            }
        }
        self.execute(effects);
    }

    fn provide(&self, name: Bytes, session: SessionRef, provide: bool, effects: &mut Effects) {
        let mut rpc = self.rpc_mut();
        let before = rpc.has_local_provider(&name);
        if provide {
            rpc.provide(name.clone(), session, effects);
        } else {
            rpc.unprovide(&name, session, false, effects);
        }
        let after = rpc.has_local_provider(&name);
        drop(rpc);
        if before != after {
            if let Some(cluster) = self.cluster.get() {
                cluster.local_providers_changed(&name, after);
            }
        }
    }

    /// The RPC feature of this core (for the cluster's RPC path).
    pub fn rpc_mut(&self) -> RefMut<'_, RpcFeature> {
        self.features.rpc.borrow_mut()
    }

    /// Arms the ack and response deadlines of a call's routing `generation`.
    pub(super) fn arm_rpc_deadlines(&self, name: Bytes, correlation: Bytes, generation: u64) {
        let now = Instant::now();
        let mut deadlines = self.timers.deadlines.borrow_mut();
        let ack = RpcDeadline {
            name: name.clone(),
            correlation: correlation.clone(),
            generation,
            kind: DeadlineKind::Ack,
        };
        deadlines.arm(now + self.config().rpc_ack_timeout, ack);
        let response = RpcDeadline {
            name,
            correlation,
            generation,
            kind: DeadlineKind::Response,
        };
        deadlines.arm(now + self.config().rpc_timeout, response);
    }

    /// The task that fires RPC deadlines: sleeps until the earliest one, or until an earlier one
    /// is armed.
    pub async fn run_deadlines(self: Rc<Self>) {
        loop {
            self.next_deadline().await;
            let expired = self.timers.deadlines.borrow_mut().expired(Instant::now());
            if expired.is_empty() {
                continue;
            }
            let mut effects = Effects::default();
            {
                let mut rpc = self.rpc_mut();
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

    /// Waits until the earliest deadline, or until an earlier one is armed.
    async fn next_deadline(&self) {
        let next = self.timers.deadlines.borrow().next();
        let earlier_armed = futures_lite::future::poll_fn(|context| {
            let mut deadlines = self.timers.deadlines.borrow_mut();
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
pub(super) struct Deadlines {
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    entries: AHashMap<u64, RpcDeadline>,
    sequence: u64,
    waker: Option<Waker>,
    earlier_armed: bool,
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
