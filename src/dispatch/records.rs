//! Record messages on the owner core of their name: decided by the record feature on a single
//! node, or through the cluster seam (Redis holds the records) in a cluster.

use super::Core;
use crate::base::address::SessionRef;
use crate::features::record::RecordFeature;
use crate::features::Effects;
use crate::protocol::actions::Dialect;
use bytes::Bytes;
use std::cell::RefMut;
use std::rc::Rc;

/// A record message (terminator included) for the owner core of `name`.
#[derive(Debug)]
pub struct RecordMessage {
    pub session: SessionRef,
    pub dialect: Dialect,
    pub name: Bytes,
    pub message: Bytes,
}

impl Core {
    pub(super) fn handle_record(self: &Rc<Self>, message: RecordMessage) {
        if let Some(cluster) = self.cluster.get() {
            cluster.record_message(self, message);
            return;
        }
        let mut effects = Effects::default();
        self.features.records.borrow_mut().handle(
            message.session,
            message.dialect,
            &message.message,
            &mut effects,
        );
        self.execute(effects);
    }

    /// The record feature of this core (for the cluster's record path).
    pub fn records_mut(&self) -> RefMut<'_, RecordFeature> {
        self.features.records.borrow_mut()
    }
}
