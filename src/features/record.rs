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
use super::record_store::{parse_version, Change, RecordStore, WriteError};
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
        effects: &mut Effects,
    ) {
        let Some(Parsed::Message(parsed)) = messages(bytes, dialect).next() else {
            return;
        };
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
                None => effects.send(
                    session,
                    message(&[CODE, b"E", b"SN", name, b"RECORD_NOT_FOUND"]),
                ),
            },
            Action::Has => {
                let found: &[u8] = if self.store.get(name).is_some() {
                    b"T"
                } else {
                    b"F"
                };
                effects.send(session, message(&[CODE, b"H", name, found]));
            }
            Action::Head => match self.store.get(name) {
                Some(record) => {
                    let version = record.version.to_string();
                    effects.send(session, message(&[CODE, b"HD", name, version.as_bytes()]));
                }
                None => effects.send(
                    session,
                    message(&[CODE, b"E", b"HD", name, b"RECORD_NOT_FOUND"]),
                ),
            },
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

    fn write(
        &mut self,
        session: SessionRef,
        dialect: Dialect,
        bytes: &Bytes,
        parsed: &Message<'_>,
        effects: &mut Effects,
    ) {
        let request = match WriteRequest::parse(dialect, parsed) {
            Ok(request) => request,
            Err(reply) => {
                effects.send(session, reply);
                return;
            }
        };
        let name = request.name;
        match self.store.write(
            name,
            request.requested,
            request.change,
            dialect,
            request.upsert,
        ) {
            Ok(new_version) => {
                self.forget_reply(name);
                let name_bytes = bytes.slice_ref(name);
                // Forward the bytes that arrived (2.4.1 too keeps the write config in them); an
                // upsert becomes a plain U or P with the version that was written.
                let forward = if !request.upsert {
                    bytes.clone()
                } else {
                    let (prefix, suffix) = request.forward_parts();
                    let mut forward = prefix;
                    forward.extend_from_slice(new_version.to_string().as_bytes());
                    forward.extend_from_slice(&suffix);
                    Bytes::from(forward)
                };
                self.subscriptions.fanout_to_subscribers(
                    &name_bytes,
                    Some(session),
                    &forward,
                    effects,
                );
                if request.write_ack {
                    effects.send(session, request.write_ack_reply());
                }
            }
            Err(error) => effects.send(session, request.error_reply(dialect, parsed, error)),
        }
    }
}

/// A record write (`U`, `P` or `CU`) whose shape and version were checked.
#[derive(Debug, Clone, Copy)]
pub struct WriteRequest<'a> {
    pub name: &'a [u8],
    /// The version as sent.
    pub version: i64,
    /// The version to write; `None`: the next one (CU with -1).
    pub requested: Option<i64>,
    pub upsert: bool,
    pub change: Change<'a>,
    pub config: Option<&'a [u8]>,
    pub write_ack: bool,
}

impl<'a> WriteRequest<'a> {
    /// Checks the fields of a write; on failure, the error reply for the writer.
    pub fn parse(dialect: Dialect, parsed: &Message<'a>) -> Result<WriteRequest<'a>, Bytes> {
        let fields: Vec<&'a [u8]> = parsed.data_fields().collect();
        let name = fields.first().copied().unwrap_or_default();
        if fields.len() < 3 {
            return Err(message(&[CODE, b"E", b"INVALID_MESSAGE_DATA", name]));
        }
        let upsert = parsed.action == Action::CreateAndUpdate;
        let Some(version) = parse_version(fields[1]) else {
            return Err(message(&[CODE, b"E", b"INVALID_VERSION", name, b"NaN"]));
        };
        // Which fields hold the change and the optional write config.
        let (is_patch, config) = match (parsed.action, dialect, fields.len()) {
            (Action::Update, Dialect::V1, 3) => (false, None),
            (Action::Patch, Dialect::V1, 4) => (true, None),
            (Action::Update, Dialect::V2, 3) => (false, None),
            (Action::Update, Dialect::V2, 4) => (false, Some(fields[3])),
            (Action::Patch, Dialect::V2, 4) => (true, None),
            (Action::Patch, Dialect::V2, 5) => (true, Some(fields[4])),
            (Action::CreateAndUpdate, _, 4) => (false, Some(fields[3])),
            (Action::CreateAndUpdate, _, 5) => (true, Some(fields[4])),
            _ => return Err(message(&[CODE, b"E", b"INVALID_MESSAGE_DATA", parsed.raw])),
        };
        let change = if is_patch {
            Change::Patch {
                path: fields[2],
                value: fields[3],
            }
        } else {
            Change::Whole(fields[2])
        };
        Ok(WriteRequest {
            name,
            version,
            requested: (!(upsert && version == -1)).then_some(version),
            upsert,
            change,
            config,
            write_ack: config.is_some_and(wants_write_ack),
        })
    }

    /// The forwarded message around its version: `R|U|<name>|` and `|<data>` + terminator (or
    /// `R|P|<name>|` and `|<path>|<value>`), so the message for any version is prefix, version,
    /// suffix. (The forward keeps no write config: used for upserts and cluster publishes.)
    pub fn forward_parts(&self) -> (Vec<u8>, Vec<u8>) {
        let (action, rest): (&[u8], Vec<&[u8]>) = match self.change {
            Change::Whole(data) => (b"U", vec![data]),
            Change::Patch { path, value } => (b"P", vec![path, value]),
        };
        let mut prefix = build_message(&[CODE, action, self.name, b""]);
        prefix.pop(); // the terminator
        let mut fields: Vec<&[u8]> = vec![b""];
        fields.extend(rest);
        (prefix, build_message(&fields))
    }

    /// `R|WA|<name>|[<version>]|L`.
    pub fn write_ack_reply(&self) -> Bytes {
        let versions = format!("[{}]", self.version);
        message(&[CODE, b"WA", self.name, versions.as_bytes(), b"L"])
    }

    /// `R|E|VERSION_EXISTS|<name>|<current version>|<current data>` (+ the 2.x write config).
    pub fn version_exists_reply(&self, dialect: Dialect, version: i64, data: &[u8]) -> Bytes {
        let version = version.to_string();
        let mut reply: Vec<&[u8]> = vec![
            CODE,
            b"E",
            b"VERSION_EXISTS",
            self.name,
            version.as_bytes(),
            data,
        ];
        if let (Dialect::V2, Some(config)) = (dialect, self.config) {
            reply.push(config);
        }
        message(&reply)
    }

    /// The reply to a refused write.
    pub fn error_reply(&self, dialect: Dialect, parsed: &Message<'_>, error: WriteError) -> Bytes {
        match error {
            WriteError::NotFound => {
                let version = self.version.to_string();
                message(&[CODE, b"E", b"RECORD_UPDATE_ERROR", version.as_bytes()])
            }
            WriteError::VersionExists(current) => {
                self.version_exists_reply(dialect, current.version, &current.data)
            }
            WriteError::TooLarge { size, limit } => {
                let text = format!(
                    "record {} would be {size} bytes, more than maxRecordSize ({limit})",
                    String::from_utf8_lossy(self.name)
                );
                message(&[CODE, b"E", b"INVALID_MESSAGE_DATA", text.as_bytes()])
            }
            WriteError::StoreFull => message(&[CODE, b"E", b"RECORD_CREATE_ERROR", self.name]),
            WriteError::InvalidData(text) => {
                let is_patch = matches!(self.change, Change::Patch { .. });
                let payload = if is_patch && !text.is_empty() {
                    text.into_bytes()
                } else {
                    parsed.raw.to_vec()
                };
                message(&[CODE, b"E", b"INVALID_MESSAGE_DATA", &payload])
            }
        }
    }
}

/// Is a write config `{"writeSuccess": true}`?
fn wants_write_ack(config: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(config)
        .ok()
        .and_then(|value| value.get("writeSuccess").and_then(|flag| flag.as_bool()))
        == Some(true)
}
