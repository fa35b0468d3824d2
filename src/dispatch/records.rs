//! Record messages on the owner core of their name: decided by the record feature on a single
//! node, or through the cluster seam (Redis holds the records) in a cluster.

use super::Core;
use crate::base::address::SessionRef;
use crate::features::record::RecordFeature;
use crate::features::record_guard::RecordRules;
use crate::features::Effects;
use crate::permission::cross::LoadedRecords;
use crate::permission::eval::Value;
use crate::protocol::actions::Dialect;
use bytes::Bytes;
use std::cell::RefMut;
use std::future::poll_fn;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

/// A record message (terminator included) for the owner core of `name`.
#[derive(Debug)]
pub struct RecordMessage {
    pub session: SessionRef,
    pub dialect: Dialect,
    pub name: Bytes,
    pub message: Bytes,
    /// The sender as permission rules see it (`None` when no rules are configured).
    pub user: Option<Arc<Value>>,
    /// The records the record rules cross-reference, loaded by the sender's session.
    pub cross: Option<Arc<LoadedRecords>>,
}

/// A permission rule's cross-reference: a core asks the owner core for a record's JSON.
#[derive(Debug)]
pub enum RecordLookup {
    Request {
        name: Bytes,
        reply_to: usize,
        request: u64,
    },
    Reply {
        request: u64,
        /// `None`: the record does not exist.
        data: Option<Box<[u8]>>,
    },
}

impl RecordLookup {
    pub fn weight(&self) -> usize {
        match self {
            RecordLookup::Request { name, .. } => name.len(),
            RecordLookup::Reply { data, .. } => data.as_ref().map_or(0, |data| data.len()),
        }
    }
}

/// How long a core waits for another core's record lookup.
const LOOKUP_WAIT: Duration = Duration::from_secs(1);

impl Core {
    pub(super) fn handle_record(self: &Rc<Self>, message: RecordMessage) {
        if let Some(cluster) = self.cluster.get() {
            cluster.record_message(self, message);
            return;
        }
        let mut effects = Effects::default();
        let rules = RecordRules::for_message(
            self.permissions(),
            message.user.as_ref(),
            message.cross.as_deref().map(Vec::as_slice),
        );
        self.features.records.borrow_mut().handle(
            message.session,
            message.dialect,
            &message.message,
            rules.as_ref().map(|rules| rules.guard(&self.rule_cache)),
            &mut effects,
        );
        self.execute(effects);
    }

    pub(super) fn handle_lookup(self: &Rc<Self>, message: RecordLookup) {
        match message {
            RecordLookup::Request {
                name,
                reply_to,
                request,
            } => {
                let data = self.stored_record(&name);
                self.route(reply_to, RecordLookup::Reply { request, data });
            }
            RecordLookup::Reply { request, data } => {
                if let Some(waiter) = self.waiters.lookups.borrow_mut().get_mut(&request) {
                    waiter.0 = Some(data);
                    if let Some(waker) = waiter.1.take() {
                        waker.wake();
                    }
                }
            }
        }
    }

    fn stored_record(&self, name: &[u8]) -> Option<Box<[u8]>> {
        let records = self.features.records.borrow();
        records.store.get(name).map(|record| record.data.clone())
    }

    /// The stored JSON of each named record (`None`: it does not exist), read on its owner
    /// core; an error when an owner core did not answer within a second.
    pub async fn load_records(
        self: &Rc<Self>,
        names: &[String],
    ) -> Result<Vec<Option<Box<[u8]>>>, String> {
        if let Some(cluster) = self.cluster.get() {
            // Redis holds a cluster's records; the cores' stores only cache followed ones.
            return cluster.load_records(names).await;
        }
        let mut pending = Vec::new();
        let mut found: Vec<Option<Option<Box<[u8]>>>> = Vec::new();
        for name in names {
            let owner = self.owner(name.as_bytes());
            if owner == self.id {
                found.push(Some(self.stored_record(name.as_bytes())));
                continue;
            }
            let request = self.waiters.next_request();
            self.waiters
                .lookups
                .borrow_mut()
                .insert(request, (None, None));
            let name = Bytes::copy_from_slice(name.as_bytes());
            let reply_to = self.id;
            let lookup = RecordLookup::Request {
                name,
                reply_to,
                request,
            };
            self.queue_for(owner, lookup.into());
            pending.push((found.len(), request));
            found.push(None);
        }
        let answered = poll_fn(|context| {
            let mut waiters = self.waiters.lookups.borrow_mut();
            for (_, request) in &pending {
                if let Some(waiter) = waiters.get_mut(request) {
                    if waiter.0.is_none() {
                        waiter.1 = Some(context.waker().clone());
                        return Poll::Pending;
                    }
                }
            }
            Poll::Ready(())
        });
        futures_lite::future::or(answered, glommio::timer::sleep(LOOKUP_WAIT)).await;
        for (index, request) in pending {
            let waiter = self.waiters.lookups.borrow_mut().remove(&request);
            found[index] = waiter.and_then(|waiter| waiter.0);
        }
        found
            .into_iter()
            .map(|data| data.ok_or_else(|| "a record's owner core did not answer".to_string()))
            .collect()
    }

    /// The record feature of this core (for the cluster's record path).
    pub fn records_mut(&self) -> RefMut<'_, RecordFeature> {
        self.features.records.borrow_mut()
    }
}
