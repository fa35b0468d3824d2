//! Record messages on the owner core of their name: decided by the record feature on a single
//! node, or through the cluster seam (Redis holds the records) in a cluster.

use super::Core;
use crate::base::address::SessionRef;
use crate::features::record::RecordFeature;
use crate::features::record_guard::RecordGuard;
use crate::features::Effects;
use crate::permission::{eval::Value, Section};
use crate::protocol::actions::Dialect;
use bytes::Bytes;
use std::cell::RefMut;
use std::rc::Rc;
use std::sync::Arc;

/// A record message (terminator included) for the owner core of `name`.
#[derive(Debug)]
pub struct RecordMessage {
    pub session: SessionRef,
    pub dialect: Dialect,
    pub name: Bytes,
    pub message: Bytes,
    /// The sender as permission rules see it (`None` when no rules are configured).
    pub user: Option<Arc<Value>>,
}

impl Core {
    pub(super) fn handle_record(self: &Rc<Self>, message: RecordMessage) {
        if let Some(cluster) = self.cluster.get() {
            cluster.record_message(self, message);
            return;
        }
        let mut effects = Effects::default();
        let guard = match (self.permissions(), message.user.as_deref()) {
            (Some(permissions), Some(user))
                if !permissions.allows_everything_in(Section::Record) =>
            {
                Some(RecordGuard { permissions, user })
            }
            _ => None,
        };
        self.features.records.borrow_mut().handle(
            message.session,
            message.dialect,
            &message.message,
            guard,
            &mut effects,
        );
        self.execute(effects);
    }

    /// The record feature of this core (for the cluster's record path).
    pub fn records_mut(&self) -> RefMut<'_, RecordFeature> {
        self.features.records.borrow_mut()
    }
}
