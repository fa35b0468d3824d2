//! Carrying out what the features asked for (`Effects`): delivery to a local session, a mesh
//! message for another core, the cluster seam for stand-ins of other nodes' sessions and for
//! the listen leader, and this core's timers (listen responses, RPC deadlines).

use super::delivery::Delivery;
use super::rpc::Deadlines;
use super::Core;
use crate::base::address::SessionRef;
use crate::features::{Effect, Effects};
use crate::protocol::actions::Topic;
use ahash::AHashMap;
use bytes::Bytes;
use glommio::task::JoinHandle;
use std::cell::RefCell;
use std::rc::Rc;

/// This core's timers.
#[derive(Default)]
pub(super) struct Timers {
    /// The listen-response timer of each name waiting for a listener's answer.
    pub(super) listen: RefCell<AHashMap<(Topic, Bytes), JoinHandle<()>>>,
    pub(super) deadlines: RefCell<Deadlines>,
}

impl Core {
    /// Carries out effects produced outside a message handler (the cluster's asynchronous
    /// paths).
    pub fn execute_effects(self: &Rc<Self>, effects: Effects) {
        self.execute(effects);
    }

    /// Carries out what a feature asked for, in order.
    pub(super) fn execute(self: &Rc<Self>, effects: Effects) {
        for effect in effects.list {
            match effect {
                Effect::Send { to, bytes } => self.send(to, bytes),
                Effect::Fanout {
                    core,
                    targets,
                    exclude,
                    bytes,
                } => {
                    if core == self.id {
                        self.fanout_local(&targets, exclude, &bytes);
                    } else {
                        let fanout = Delivery::Fanout {
                            targets,
                            exclude,
                            bytes,
                        };
                        self.queue_for(core, fanout.into());
                    }
                }
                Effect::StartListenTimer { topic, name } => self.start_listen_timer(topic, name),
                Effect::CancelListenTimer { topic, name } => {
                    if let Some(timer) = self.timers.listen.borrow_mut().remove(&(topic, name)) {
                        timer.cancel();
                    }
                }
                Effect::ListenInterest {
                    topic,
                    name,
                    interested,
                } => {
                    if let Some(cluster) = self.cluster.get() {
                        cluster.listen_interest(self.id, topic, &name, interested);
                    }
                }
                Effect::ListenResponseToLeader(response) => self.response_to_leader(response),
                Effect::ArmRpcDeadlines {
                    name,
                    correlation,
                    generation,
                } => self.arm_rpc_deadlines(name, correlation, generation),
            }
        }
    }

    /// One message for one session: here, on another core, or on another node.
    fn send(&self, to: SessionRef, bytes: Bytes) {
        if to.is_stand_in() {
            if let Some(cluster) = self.cluster.get() {
                cluster.send_to_stand_in(to, bytes);
            }
        } else if usize::from(to.core) == self.id {
            self.deliver_local(to, &bytes);
        } else {
            self.queue_for(usize::from(to.core), Delivery::Send { to, bytes }.into());
        }
    }

    fn start_listen_timer(self: &Rc<Self>, topic: Topic, name: Bytes) {
        let core = Rc::clone(self);
        let delay = self.config().listen_response_timeout;
        let key = (topic, name.clone());
        let handle = glommio::spawn_local(async move {
            glommio::timer::sleep(delay).await;
            // This timer is done: forget its handle before acting (the action may start another).
            core.timers
                .listen
                .borrow_mut()
                .remove(&(topic, name.clone()));
            let mut effects = Effects::default();
            if let Some(mut registry) = core.registry(topic) {
                registry.listen_timeout(&name, &mut effects);
            }
            core.execute(effects);
        })
        .detach();
        if let Some(previous) = self.timers.listen.borrow_mut().insert(key, handle) {
            previous.cancel();
        }
    }
}
