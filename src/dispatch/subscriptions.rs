//! Subscriptions and listening, for events and records alike (one `TopicRegistry` per topic on
//! the owner core of each name): subscribe, unsubscribe, emit, listen registrations (broadcast
//! to every core) and listen responses. Sent by the sessions (`session`) and, for what other
//! nodes say about listening, by the cluster through `NodeMessage`.

use super::Core;
use crate::base::address::SessionRef;
use crate::features::event::{ListenRole, TopicRegistry};
use crate::features::listen::ListenResponse;
use crate::features::Effects;
use crate::protocol::actions::Topic;
use bytes::Bytes;
use std::cell::RefMut;
use std::rc::Rc;
use std::sync::Arc;

#[derive(Debug)]
pub enum Subscription {
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
    ListenResponse(ListenResponse),
    /// A listen registration, broadcast to every core (each keeps the full pattern registry).
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
    /// A closing session's subscriptions of `topic` on this core.
    SessionClosed {
        session: SessionRef,
        topic: Topic,
        names: Vec<Bytes>,
    },
}

impl Subscription {
    pub(super) fn weight(&self) -> usize {
        match self {
            Subscription::Subscribe { name, .. } | Subscription::Unsubscribe { name, .. } => {
                name.len()
            }
            Subscription::Emit { name, message, .. } => name.len() + message.len(),
            Subscription::ListenResponse(response) => response.name.len() + response.raw.len(),
            Subscription::ListenAdded { pattern, .. }
            | Subscription::ListenRemoved { pattern, .. } => pattern.len(),
            Subscription::SessionClosed { names, .. } => names.iter().map(|n| n.len() + 16).sum(),
        }
    }
}

/// The topics with listening.
const LISTEN_TOPICS: [Topic; 2] = [Topic::Event, Topic::Record];

impl Core {
    pub(super) fn handle_subscription(self: &Rc<Self>, message: Subscription) {
        let mut effects = Effects::default();
        match message {
            Subscription::Subscribe {
                topic,
                name,
                session,
            } => {
                if let Some(mut registry) = self.registry(topic) {
                    registry.subscribe(name.clone(), session, &mut effects);
                }
                self.interest_changed(topic, &name);
            }
            Subscription::Unsubscribe {
                topic,
                name,
                session,
            } => {
                if let Some(mut registry) = self.registry(topic) {
                    registry.unsubscribe(&name, session, false, &mut effects);
                }
                self.interest_changed(topic, &name);
            }
            Subscription::Emit {
                name,
                message,
                sender,
            } => {
                let events = self.features.events.borrow();
                events.emit(&name, &message, sender, &mut effects);
                if let Some(cluster) = self.cluster.get() {
                    cluster.publish_event(&name, &message);
                }
            }
            Subscription::SessionClosed {
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
                    self.interest_changed(topic, name);
                }
            }
            listen => self.handle_listen(listen, &mut effects),
        }
        self.execute(effects);
    }

    fn handle_listen(&self, message: Subscription, effects: &mut Effects) {
        match message {
            Subscription::ListenResponse(response) => {
                if let Some(mut registry) = self.registry(response.topic) {
                    registry.answer_listen(&response, response.session, effects);
                }
            }
            Subscription::ListenAdded {
                topic,
                pattern,
                session,
            } => {
                if let Some(mut registry) = self.registry(topic) {
                    registry.listen_added(&pattern, session, effects);
                }
                self.local_listener_changed(topic, &pattern, session, true);
            }
            Subscription::ListenRemoved {
                topic,
                pattern,
                session,
            } => {
                if let Some(mut registry) = self.registry(topic) {
                    registry.listen_removed(&pattern, session, effects);
                }
                self.local_listener_changed(topic, &pattern, session, false);
            }
            _ => {}
        }
    }

    /// The subscription and listen registry of a topic (events, or the records' one); also for
    /// the cluster's listening.
    pub fn registry(&self, topic: Topic) -> Option<RefMut<'_, TopicRegistry>> {
        match topic {
            Topic::Event => Some(self.features.events.borrow_mut()),
            Topic::Record => Some(RefMut::map(self.features.records.borrow_mut(), |records| {
                &mut records.subscriptions
            })),
            _ => None,
        }
    }

    /// After a change to the subscriptions of `name` on its owner core: the cluster learns how
    /// many local subscribers it has.
    fn interest_changed(&self, topic: Topic, name: &Bytes) {
        let Some(cluster) = self.cluster.get() else {
            return;
        };
        match topic {
            Topic::Event => {
                let count = self.features.events.borrow().subscriber_count(name);
                cluster.event_interest(name, count);
            }
            Topic::Record => {
                let records = self.features.records.borrow();
                let count = records.subscriptions.subscriber_count(name);
                drop(records);
                cluster.record_interest(self, name, count);
            }
            _ => {}
        }
    }

    /// Core 0 of a node in a cluster reports its listeners to the listen leader.
    fn local_listener_changed(
        &self,
        topic: Topic,
        pattern: &str,
        session: SessionRef,
        added: bool,
    ) {
        if self.id == 0 {
            if let Some(cluster) = self.cluster.get() {
                cluster.listener_changed(topic, pattern, session, added);
            }
        }
    }

    // ----- listening across nodes (for the cluster) ------------------------------------------

    pub fn set_listen_role(&self, role: ListenRole, effects: &mut Effects) {
        for topic in LISTEN_TOPICS {
            if let Some(mut registry) = self.registry(topic) {
                registry.set_role(role, effects);
            }
        }
    }

    pub fn forget_remote_interest(&self, gone: impl Fn(SessionRef) -> bool, effects: &mut Effects) {
        for topic in LISTEN_TOPICS {
            if let Some(mut registry) = self.registry(topic) {
                registry.forget_remote_interest(&gone, effects);
            }
        }
    }

    /// Removes every listen registration of a stand-in listener.
    pub fn forget_remote_listener(&self, stand_in: SessionRef, effects: &mut Effects) {
        for topic in LISTEN_TOPICS {
            if let Some(mut registry) = self.registry(topic) {
                for pattern in registry.patterns_of(stand_in) {
                    registry.listen_removed(&pattern, stand_in, effects);
                }
            }
        }
    }

    pub fn has_listener(&self, session: SessionRef) -> bool {
        LISTEN_TOPICS.iter().any(|topic| {
            self.registry(*topic)
                .is_some_and(|registry| !registry.patterns_of(session).is_empty())
        })
    }

    /// An event another node published: every local subscriber gets it.
    pub fn emit_from_cluster(self: &Rc<Self>, name: &[u8], message: Bytes) {
        let mut effects = Effects::default();
        let events = self.features.events.borrow();
        events.fanout_to_subscribers(name, None, &message, &mut effects);
        drop(events);
        self.execute(effects);
    }

    /// A listener's response for the leader (`ClusterSeam::listen_response_to_leader`).
    pub(super) fn response_to_leader(&self, response: ListenResponse) {
        if let Some(cluster) = self.cluster.get() {
            cluster.listen_response_to_leader(response);
        }
    }
}
