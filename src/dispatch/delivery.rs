//! Session traffic: bytes for one session of this core, and one fan-out to this core's share of
//! a name's subscribers. Sent by any core whose feature produced them (`effects`).

use super::Core;
use crate::base::address::SessionRef;
use bytes::Bytes;
use std::sync::Arc;

#[derive(Debug)]
pub enum Delivery {
    /// One complete message for one session of this core.
    Send { to: SessionRef, bytes: Bytes },
    /// One message for every session in `targets` (all on this core) but `exclude`.
    Fanout {
        targets: Arc<Vec<SessionRef>>,
        exclude: Option<SessionRef>,
        bytes: Bytes,
    },
}

impl Delivery {
    pub(super) fn weight(&self) -> usize {
        match self {
            Delivery::Send { bytes, .. } => bytes.len(),
            Delivery::Fanout { bytes, targets, .. } => bytes.len() + 16 * targets.len(),
        }
    }
}

impl Core {
    pub(super) fn handle_delivery(&self, message: Delivery) {
        match message {
            Delivery::Send { to, bytes } => self.deliver_local(to, &bytes),
            Delivery::Fanout {
                targets,
                exclude,
                bytes,
            } => self.fanout_local(&targets, exclude, &bytes),
        }
    }

    /// Appends bytes to a session of this core, enforcing its outbound limit.
    pub(super) fn deliver_local(&self, to: SessionRef, bytes: &[u8]) {
        let port = self.sessions.borrow().get(to);
        if let Some(port) = port {
            self.push_to(&port, bytes);
        }
    }

    pub(super) fn fanout_local(
        &self,
        targets: &[SessionRef],
        exclude: Option<SessionRef>,
        bytes: &[u8],
    ) {
        let sessions = self.sessions.borrow();
        let mut delivered = 0;
        for target in targets {
            if Some(*target) == exclude {
                continue;
            }
            if let Some(port) = sessions.get(*target) {
                self.push_uncounted(&port, bytes);
                delivered += 1;
            }
        }
        self.counters.messages_sent(bytes, delivered);
    }
}
