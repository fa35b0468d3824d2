//! Records on the owner core of each name (PROTOCOL.md §3.4): create-or-read, snapshot, has,
//! head, update, patch, upsert, delete, discard, with their acks and errors, and record
//! listening with `R|SH` has-provider updates.
//!
//! The session core checked the action and routed the whole message here; this module re-splits
//! it (a SIMD scan, no allocation), applies it to the `RecordStore` and the record subscriptions
//! (`TopicRegistry` for topic R), and answers with `Effect`s. Writes to one record are applied
//! strictly in the order the owner core receives them, and an update is forwarded to the other
//! subscribers as the bytes that arrived (shared, reference-counted), not re-serialised.

use super::event::{RegistrySize, TopicRegistry};
use super::record_guard::RecordGuard;
use super::record_store::{RecordStore, WriteError};
use super::record_write::{run_ready, write, Failure, RecordStorage, StoreRequest, Stored};
use super::Effects;
use crate::base::address::SessionRef;
use crate::protocol::actions::{Action, Dialect, Topic};
use crate::protocol::message::{build_message, messages, Message, Parsed};
use ahash::AHashMap;
use bytes::Bytes;

const CODE: &[u8] = b"R";

fn message(fields: &[&[u8]]) -> Bytes {
    Bytes::from(build_message(fields))
}

pub struct RecordFeature {
    pub store: RecordStore,
    pub subscriptions: TopicRegistry,
    /// The last `R|R` reply built for a large record, shared by every read of that version:
    /// a burst of reads of a big record costs one copy, not one per read.
    read_replies: AHashMap<Bytes, (i64, Bytes)>,
}

/// Records at least this large have their read replies shared.
const SHARED_REPLY_BYTES: usize = 4096;
/// Most shared read replies kept (the table is emptied when it is full).
const SHARED_REPLIES: usize = 64;

impl RecordFeature {
    /// `max_record_size` and `max_records` bound the store (`maxRecordSize`, this core's share
    /// of `maxRecords`).
    pub fn new(cores: usize, max_record_size: usize, max_records: usize) -> Self {
        RecordFeature {
            store: RecordStore::new(max_record_size, max_records),
            subscriptions: TopicRegistry::new(Topic::Record, cores),
            read_replies: AHashMap::new(),
        }
    }

    /// `R|R|<name>|<version>|<data>` for a stored record, shared when it is large.
    pub fn read_reply(&mut self, name: &[u8]) -> Option<Bytes> {
        let record = self.store.get(name)?;
        if record.data.len() < SHARED_REPLY_BYTES {
            let version = record.version.to_string();
            return Some(message(&[
                CODE,
                b"R",
                name,
                version.as_bytes(),
                &record.data,
            ]));
        }
        if let Some((version, reply)) = self.read_replies.get(name) {
            if *version == record.version {
                return Some(reply.clone());
            }
        }
        let reply = message(&[
            CODE,
            b"R",
            name,
            record.version.to_string().as_bytes(),
            &record.data,
        ]);
        if self.read_replies.len() >= SHARED_REPLIES {
            self.read_replies.clear();
        }
        self.read_replies.insert(
            Bytes::copy_from_slice(name),
            (record.version, reply.clone()),
        );
        Some(reply)
    }

    /// A record changed or went: its shared reply is stale.
    fn forget_reply(&mut self, name: &[u8]) {
        if !self.read_replies.is_empty() {
            self.read_replies.remove(name);
        }
    }

    pub fn size(&self) -> (usize, RegistrySize) {
        (self.store.len(), self.subscriptions.size())
    }

    /// Handles one record message (terminator included) from `session`.
    pub fn handle(
        &mut self,
        session: SessionRef,
        dialect: Dialect,
        bytes: &Bytes,
        guard: Option<RecordGuard<'_>>,
        effects: &mut Effects,
    ) {
        let Some(Parsed::Message(parsed)) = messages(bytes, dialect).next() else {
            return;
        };
        if let Some(refusal) = guard.and_then(|guard| guard.refusal(&mut self.store, &parsed)) {
            effects.send(session, refusal);
            return;
        }
        let Some(name) = parsed.data_at(0) else {
            return;
        };
        let name_bytes = bytes.slice_ref(name);
        match parsed.action {
            Action::CreateOrRead => {
                if self.store.get_or_create(name).is_none() {
                    // maxRecords: the store is full and this record is new.
                    effects.send(
                        session,
                        message(&[CODE, b"E", b"RECORD_CREATE_ERROR", name]),
                    );
                    return;
                }
                self.subscriptions.subscribe(name_bytes, session, effects);
                if let Some(reply) = self.read_reply(name) {
                    effects.send(session, reply);
                }
            }
            Action::Snapshot => match self.read_reply(name) {
                Some(reply) => effects.send(session, reply),
                None => effects.send(session, read_answer(Action::Snapshot, name, None)),
            },
            Action::Has | Action::Head => {
                let record = self.store.get(name);
                let record = record.map(|record| (record.version, &record.data[..]));
                effects.send(session, read_answer(parsed.action, name, record));
            }
            Action::Unsubscribe => {
                self.subscriptions
                    .unsubscribe(&name_bytes, session, false, effects)
            }
            Action::Delete => {
                self.store.delete(name);
                self.forget_reply(name);
                let ack = message(&[CODE, b"A", b"D", name]);
                effects.send(session, ack.clone());
                // The same ack goes to every other subscriber, who are then unsubscribed.
                self.subscriptions
                    .fanout_to_subscribers(&name_bytes, Some(session), &ack, effects);
                self.subscriptions
                    .remove_all_subscribers(&name_bytes, effects);
            }
            Action::Update | Action::Patch | Action::CreateAndUpdate => {
                self.write(session, dialect, bytes, &parsed, effects)
            }
            _ => {}
        }
    }

    /// `U`, `P`, `CU`: decided by `record_write::write` against this core's store.
    fn write(
        &mut self,
        session: SessionRef,
        dialect: Dialect,
        bytes: &Bytes,
        parsed: &Message<'_>,
        effects: &mut Effects,
    ) {
        let mut storage = LocalRecords {
            feature: self,
            session,
            effects,
        };
        match run_ready(write(&mut storage, dialect, bytes, parsed)) {
            Some(Some(reply)) => storage.effects.send(session, reply),
            Some(None) => {}
            None => crate::warn!("a record write on the local store waited: dropped"),
        }
    }
}

/// The answer to `SN`, `H` or `HD` for a record as read (`None`: it does not exist), on one
/// node and in a cluster: `R|R|<name>|<version>|<data>`, `R|H|<name>|T` or `F`,
/// `R|HD|<name>|<version>`, or `R|E|<SN or HD>|<name>|RECORD_NOT_FOUND`.
pub fn read_answer(action: Action, name: &[u8], record: Option<(i64, &[u8])>) -> Bytes {
    match (action, record) {
        (Action::Has, record) => {
            let found: &[u8] = if record.is_some() { b"T" } else { b"F" };
            message(&[CODE, b"H", name, found])
        }
        (Action::Snapshot, Some((version, data))) => {
            message(&[CODE, b"R", name, version.to_string().as_bytes(), data])
        }
        (_, Some((version, _))) => message(&[CODE, b"HD", name, version.to_string().as_bytes()]),
        (action, None) => message(&[CODE, b"E", action.code(), name, b"RECORD_NOT_FOUND"]),
    }
}

/// The single node's storage: this core's `RecordStore`; a stored write is fanned out to the
/// record's other subscribers here. Never waits.
struct LocalRecords<'a> {
    feature: &'a mut RecordFeature,
    /// The writer (not sent its own change).
    session: SessionRef,
    effects: &'a mut Effects,
}

impl RecordStorage for LocalRecords<'_> {
    async fn current(&mut self, name: &[u8]) -> Result<Option<(i64, Vec<u8>)>, Failure> {
        let record = self.feature.store.get(name);
        Ok(record.map(|record| (record.version, record.data.to_vec())))
    }

    async fn store(&mut self, write: StoreRequest<'_>) -> Stored {
        let request = write.request;
        let name = request.name;
        if let (Some(base), Some(record)) = (write.base, self.feature.store.get(name)) {
            // (One core, no waiting between the read and this: the base is always current.)
            if record.version != base {
                return Stored::StaleBase(record.version, record.data.to_vec());
            }
        }
        let feature = &mut *self.feature;
        let new_version =
            match feature
                .store
                .store(name, request.requested, write.data, request.upsert)
            {
                Ok(version) => version,
                Err(error) => return Stored::Refused(error),
            };
        feature.forget_reply(name);
        // Forward the bytes that arrived (2.4.1 too keeps the write config in them); an upsert
        // becomes a plain U or P with the version that was written.
        let forward = if request.upsert {
            let (mut forward, suffix) = request.forward_parts();
            forward.extend_from_slice(new_version.to_string().as_bytes());
            forward.extend_from_slice(&suffix);
            Bytes::from(forward)
        } else {
            write.arrived.clone()
        };
        let name_bytes = write.arrived.slice_ref(name);
        feature.subscriptions.fanout_to_subscribers(
            &name_bytes,
            Some(self.session),
            &forward,
            self.effects,
        );
        Stored::Written(new_version)
    }

    fn validate(&mut self, json: &[u8], dialect: Dialect) -> Result<(), WriteError> {
        self.feature.store.validate_json(json, dialect)
    }

    fn patched(&mut self, data: &[u8], path: &[u8], value: &[u8]) -> Result<Vec<u8>, WriteError> {
        self.feature.store.patched(data, path, value)
    }
}
