//! A record write (`U`, `P`, `CU`), decided once for both modes above the storage seam.
//!
//! `write` checks the message (`WriteRequest`), validates a whole body or applies a patch to
//! the current record, asks a `RecordStorage` to store the result if the version still fits,
//! and builds the writer's reply (write ack, `VERSION_EXISTS`, `RECORD_UPDATE_ERROR`, ...).
//! Two storages implement the seam:
//! - `record::LocalRecords`, the embedded single node: the owner core's `RecordStore`; storing
//!   fans the change out to the local subscribers. It never waits, so `run_ready` drives the
//!   write to its end in one poll, inline on the core.
//! - `cluster::records::RedisRecords`: one Lua script checks the version in Redis, stores and
//!   publishes the change (every node's subscribers get it from the record's channel).
//!
//! Called by `record::RecordFeature::handle` (single node) and `cluster::records` (cluster).

use super::record_store::{parse_version, Change, Record, WriteError};
use crate::protocol::actions::{Action, Dialect};
use crate::protocol::message::{build_message, Message};
use bytes::Bytes;
use std::borrow::Cow;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

const CODE: &[u8] = b"R";

/// Attempts at a patch whose base went stale under it (another node wrote) before giving up.
const PATCH_ATTEMPTS: usize = 16;

fn message(fields: &[&[u8]]) -> Bytes {
    Bytes::from(build_message(fields))
}

/// One conditional write for a storage: store `data` as the next version of `request.name` if
/// the version fits (`request.requested`; `None`: any) and, for a patch, `base` is still the
/// current version.
pub struct StoreRequest<'a> {
    pub request: &'a WriteRequest<'a>,
    /// The version the patched `data` was computed from (`None`: a whole update).
    pub base: Option<i64>,
    pub data: &'a [u8],
    /// The message as it arrived (terminator included), forwarded when the version is the one
    /// the writer sent.
    pub arrived: &'a Bytes,
    pub parsed: &'a Message<'a>,
}

/// What a storage did with a `StoreRequest`.
pub enum Stored {
    /// Stored as this version (and the change published).
    Written(i64),
    /// Not stored: the writer gets the reply for this error.
    Refused(WriteError),
    /// A patch's base is no longer current: the record as it is now, to patch again.
    StaleBase(i64, Vec<u8>),
    /// The storage could not be asked (or did not answer).
    Failed(Failure),
}

/// A write the storage could not take, and whether it may have been applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    /// The storage may have applied it (the answer was lost).
    pub maybe_applied: bool,
    /// For the writer's ack, e.g. `Redis refused the write: it was not applied`.
    pub text: &'static str,
}

/// Where records live, as a write needs them. Implemented by the single node's store and by
/// Redis in a cluster.
#[allow(async_fn_in_trait)] // used generically on one core, never as a `Send` future
pub trait RecordStorage {
    /// `{version, data}` of the record now (`None`: it does not exist).
    async fn current(&mut self, name: &[u8]) -> Result<Option<(i64, Vec<u8>)>, Failure>;

    /// Stores a write when its version fits.
    async fn store(&mut self, write: StoreRequest<'_>) -> Stored;

    /// Checks a whole update's body (JSON, `maxRecordSize`, 2.x: object or array).
    fn validate(&mut self, json: &[u8], dialect: Dialect) -> Result<(), WriteError>;

    /// The stored JSON with `value` set at `path` (checked against `maxRecordSize`).
    fn patched(&mut self, data: &[u8], path: &[u8], value: &[u8]) -> Result<Vec<u8>, WriteError>;
}

/// Decides one write message: the reply for the writer, if any (a write ack, or an error).
pub async fn write<S: RecordStorage>(
    storage: &mut S,
    dialect: Dialect,
    arrived: &Bytes,
    parsed: &Message<'_>,
) -> Option<Bytes> {
    let request = match WriteRequest::parse(dialect, parsed) {
        Ok(request) => request,
        Err(reply) => return Some(reply),
    };
    if let Change::Whole(json) = request.change {
        if let Err(error) = storage.validate(json, dialect) {
            return Some(request.error_reply(dialect, parsed, error));
        }
    }
    let mut stale: Option<(i64, Vec<u8>)> = None;
    for _ in 0..PATCH_ATTEMPTS {
        let (base, data) = match request.change {
            Change::Whole(json) => (None, Cow::Borrowed(json)),
            Change::Patch { path, value } => {
                let (version, stored) = match stale.take() {
                    Some(current) => current,
                    None => match storage.current(request.name).await {
                        Ok(Some(current)) => current,
                        Ok(None) if request.upsert => (0, b"{}".to_vec()),
                        Ok(None) => {
                            return Some(request.error_reply(dialect, parsed, WriteError::NotFound))
                        }
                        Err(failure) => return Some(request.failure_reply(failure)),
                    },
                };
                match storage.patched(&stored, path, value) {
                    Ok(patched) => (Some(version), Cow::Owned(patched)),
                    Err(error) => return Some(request.error_reply(dialect, parsed, error)),
                }
            }
        };
        let store = StoreRequest {
            request: &request,
            base,
            data: &data,
            arrived,
            parsed,
        };
        match storage.store(store).await {
            Stored::Written(_) => return request.write_ack.then(|| request.write_ack_reply()),
            Stored::Refused(error) => return Some(request.error_reply(dialect, parsed, error)),
            Stored::StaleBase(version, data) => stale = Some((version, data)),
            Stored::Failed(failure) => return Some(request.failure_reply(failure)),
        }
    }
    crate::warn!(
        "a patch of record {:?} kept losing its base to other writers: refused",
        String::from_utf8_lossy(request.name)
    );
    Some(request.failure_reply(Failure {
        maybe_applied: false,
        text: "the record kept changing under the patch: it was not applied",
    }))
}

/// Runs a future that never waits (a write to the single node's store) to its end, inline.
/// `None` if it did wait, which a storage that never waits cannot do.
pub fn run_ready<F: Future>(future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    let mut context = Context::from_waker(Waker::noop());
    match future.as_mut().poll(&mut context) {
        Poll::Ready(output) => Some(output),
        Poll::Pending => None,
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
    /// suffix. (The forward keeps no write config: used for upserts.)
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

    /// What subscribers get, around the version that is written: the message as it arrived
    /// (2.x write config included) with the written version in place of the one sent; an
    /// upsert becomes a plain `U` or `P` (`forward_parts`).
    pub fn forward_around_version(&self, parsed: &Message<'_>) -> (Vec<u8>, Vec<u8>) {
        match (self.upsert, parsed.data_at(1)) {
            (false, Some(version)) => {
                let start =
                    (version.as_ptr() as usize).saturating_sub(parsed.raw.as_ptr() as usize);
                let end = (start + version.len()).min(parsed.raw.len());
                let mut suffix = parsed.raw[end..].to_vec();
                suffix.push(0x1e);
                (parsed.raw[..start.min(end)].to_vec(), suffix)
            }
            _ => self.forward_parts(),
        }
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
            WriteError::VersionExists(Record { version, data }) => {
                self.version_exists_reply(dialect, version, &data)
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

    /// What a writer gets when the storage could not take the write: `RECORD_UPDATE_ERROR`,
    /// and when it asked for a write ack, the ack with the failure's text (as deepstream 2.4.1
    /// reports a failed storage write), so its callback is called. The text tells a write that
    /// was not applied (safe to retry) from one whose outcome is unknown (retry it as a
    /// versioned write, which gets VERSION_EXISTS if it was applied, never as an upsert).
    pub fn failure_reply(&self, failure: Failure) -> Bytes {
        let version = self.version.to_string();
        let mut reply = build_message(&[CODE, b"E", b"RECORD_UPDATE_ERROR", version.as_bytes()]);
        if self.write_ack {
            let versions = format!("[{version}]");
            let text = format!("S{}", failure.text);
            reply.extend_from_slice(&build_message(&[
                CODE,
                b"WA",
                self.name,
                versions.as_bytes(),
                text.as_bytes(),
            ]));
        }
        Bytes::from(reply)
    }
}

/// Is a write config `{"writeSuccess": true}`?
fn wants_write_ack(config: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(config)
        .ok()
        .and_then(|value| value.get("writeSuccess").and_then(|flag| flag.as_bool()))
        == Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;

    #[test]
    fn run_ready_finishes_a_future_that_never_waits() {
        assert_eq!(run_ready(async { 7 }), Some(7));
    }

    #[test]
    fn run_ready_reports_a_future_that_waits() {
        let mut polled = false;
        let waits = poll_fn(move |_| {
            if polled {
                Poll::Ready(())
            } else {
                polled = true;
                Poll::Pending
            }
        });
        assert_eq!(run_ready(waits), None);
    }
}
