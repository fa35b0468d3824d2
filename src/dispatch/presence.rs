//! Presence (2.x `U` topic): every core keeps a replica of who is logged in; logins and logouts
//! are broadcast to every core, and `U|S`, `U|US`, `U|Q` are answered by the session's own core.

use super::Core;
use crate::base::address::SessionRef;
use crate::features::Effects;
use std::rc::Rc;
use std::sync::Arc;

#[derive(Debug)]
pub enum PresenceMessage {
    /// A counted login (`joined`) or logout, broadcast to every core's replica.
    Changed {
        username: Arc<str>,
        joined: bool,
        /// A session of this node (false: the rest of the cluster).
        local: bool,
    },
    /// `U|S`, `U|US`, `U|Q` and a closing session's clean-up, handled by its own core.
    Request {
        session: SessionRef,
        action: PresenceAction,
        username: Arc<str>,
    },
    /// Sent by a `U|Q`'s core to every other core, which answers `BarrierPassed` through the
    /// channel that carries its login broadcasts (see `PresenceReplica::begin_query`).
    Barrier {
        query: u64,
        origin: usize,
    },
    BarrierPassed {
        query: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceAction {
    Subscribe,
    Unsubscribe,
    Query,
    Closed,
}

impl PresenceMessage {
    pub(super) fn weight(&self) -> usize {
        match self {
            PresenceMessage::Changed { username, .. }
            | PresenceMessage::Request { username, .. } => username.len(),
            PresenceMessage::Barrier { .. } | PresenceMessage::BarrierPassed { .. } => 16,
        }
    }
}

impl Core {
    pub(super) fn handle_presence(self: &Rc<Self>, message: PresenceMessage) {
        let mut effects = Effects::default();
        let mut presence = self.features.presence.borrow_mut();
        match message {
            PresenceMessage::Changed {
                username,
                joined,
                local,
            } => {
                if local && self.id == 0 {
                    if let Some(cluster) = self.cluster.get() {
                        cluster.local_presence(&username, joined);
                    }
                }
                if joined {
                    presence.login(&username, &mut effects);
                } else {
                    presence.logout(&username, &mut effects);
                }
            }
            PresenceMessage::Request {
                session,
                action,
                username,
            } => match action {
                PresenceAction::Subscribe => presence.subscribe(session, &mut effects),
                PresenceAction::Unsubscribe => presence.unsubscribe(session, false, &mut effects),
                PresenceAction::Closed => {
                    presence.forget_queries(session);
                    presence.unsubscribe(session, true, &mut effects)
                }
                PresenceAction::Query if self.cores() == 1 => {
                    presence.query(session, &username, &mut effects)
                }
                PresenceAction::Query => {
                    let query = presence.begin_query(session, username, self.cores() - 1);
                    drop(presence);
                    return self.send_barriers(query);
                }
            },
            PresenceMessage::Barrier { query, origin } => {
                drop(presence);
                return self.route(origin, PresenceMessage::BarrierPassed { query });
            }
            PresenceMessage::BarrierPassed { query } => {
                presence.barrier_passed(query, &mut effects)
            }
        }
        drop(presence);
        self.execute(effects);
    }

    fn send_barriers(self: &Rc<Self>, query: u64) {
        let origin = self.id;
        for core in (0..self.cores()).filter(|core| *core != origin) {
            self.route(core, PresenceMessage::Barrier { query, origin });
        }
    }
}
