//! Records in a cluster: Redis is the source of truth, the owner core of a name on each node
//! serialises that node's operations on it and caches it while the node has subscribers.
//!
//! Called through the dispatcher's seam (`ClusterSeam`) for every record message when a cluster
//! is configured, and by the pub/sub link (`on_subscribed`, `on_publish`, `on_disconnected`).
//!
//! - Each name has a FIFO of operations; one task per busy name runs them one after another,
//!   so one node's operations on a record reach Redis in the order its clients sent them
//!   (different names proceed in parallel, pipelined on the core's command link).
//! - A write is decided by `features::record_write` as on one node, with `RedisRecords` as its
//!   storage: one `RECORD_WRITE` script call checks the version (and, for a patch, that the
//!   base the patch was applied to is still current), stores `{v, d}` and publishes
//!   `<origin>␞U␞<version>␞<data>␞<message>` on `cs:r:<name>`. The writer's ack (`R|WA`) or
//!   error is sent when the script answered; subscribers on every node, this one included,
//!   receive the change from the channel, in Redis's order.
//! - The cache: `Loading` from the moment the channel is wanted until Redis confirmed the
//!   subscription *and* the record was read after that (publishes that arrive meanwhile are kept
//!   and applied on top when newer); `Valid` from then on. A lost pub/sub connection makes every
//!   cache `Loading` again (stale copies still answer reads while Redis is unreachable).

use super::{bulk, channel, integer, Cluster, RECORD_CHANNEL, RECORD_KEY, SEPARATOR};
use crate::base::address::SessionRef;
use crate::dispatch::{Core, RecordMessage};
use crate::features::record::read_answer;
use crate::features::record_guard::{permission_error, RecordRules};
use crate::features::record_store::{Record, RecordStore, WriteError};
use crate::features::record_write::{self, Failure, RecordStorage, StoreRequest, Stored};
use crate::features::Effects;
use crate::protocol::actions::{Action, Dialect};
use crate::protocol::message::{build_message, messages, Message, Parsed};
use ahash::AHashMap;
use bytes::Bytes;
use redis::Value;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::{Rc, Weak};
use std::time::Duration;

use super::link::RedisError;

/// Writes `{v, d}` when the version matches, and publishes the change.
/// KEYS: record hash. ARGV: channel, requested version ('n': the next), create ('1'/'0'),
/// base version ('-1': none; '-2': the record must not exist), data, origin, message prefix,
/// message suffix.
/// Returns {0, version} | {1, version, data} (version exists) | {2} (not found) |
/// {3, version, data} (the patch base is stale).
const RECORD_WRITE: &str = r"
local cur = redis.call('HMGET', KEYS[1], 'v', 'd')
local v = tonumber(cur[1])
local d = cur[2]
local base = tonumber(ARGV[4])
if base == -2 and v ~= nil then return {3, string.format('%d', v), d} end
if v == nil then
  if ARGV[3] ~= '1' then return {2} end
  v = 0
  d = '{}'
end
if base >= 0 and base ~= v then return {3, string.format('%d', v), d} end
if ARGV[2] ~= 'n' and tonumber(ARGV[2]) ~= v + 1 then return {1, string.format('%d', v), d} end
local nextv = string.format('%d', v + 1)
redis.call('HSET', KEYS[1], 'v', nextv, 'd', ARGV[5])
redis.call('PUBLISH', ARGV[1], ARGV[6] .. '\30U\30' .. nextv .. '\30' .. ARGV[5] .. '\30' .. ARGV[7] .. nextv .. ARGV[8])
return {0, nextv}
";

/// `CR`: the record, created as version 0 `{}` when missing (and the creation published, so
/// the nodes that cached it as missing know). ARGV: channel, origin. Returns {version, data}.
const RECORD_READ_OR_CREATE: &str = r"
local cur = redis.call('HMGET', KEYS[1], 'v', 'd')
if cur[1] then return {cur[1], cur[2]} end
redis.call('HSET', KEYS[1], 'v', '0', 'd', '{}')
redis.call('PUBLISH', ARGV[1], ARGV[2] .. '\30C\30' .. '0\30{}\30')
return {'0', '{}'}
";

/// Deletes the record and publishes the delete. ARGV: channel, origin, the version it must
/// have ('-1': any; '-2': missing). Returns -1 (and deletes nothing) when it has another.
const RECORD_DELETE: &str = r"
local expected = tonumber(ARGV[3])
if expected ~= -1 then
  local v = redis.call('HGET', KEYS[1], 'v')
  if (expected == -2 and v) or (expected >= 0 and tonumber(v) ~= expected) then return -1 end
end
local existed = redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[1], ARGV[2] .. '\30D\30' .. '0\30\30')
return existed
";

/// The data of several records at once (a permission rule's cross-references). KEYS: the
/// record hashes. Returns one entry per key: its data, or false when it does not exist.
const RECORDS_READ: &str = r"
local found = {}
for i, key in ipairs(KEYS) do
  found[i] = redis.call('HGET', key, 'd')
end
return found
";

/// Most publishes kept for a record while it loads.
const MAX_BUFFERED: usize = 10_000;

/// A script's version condition: none.
const ANY_VERSION: i64 = -1;
/// A script's version condition: the record must not exist.
const MISSING: i64 = -2;

/// Most times a record permission check is made again because the record changed in Redis
/// between the check and the change it allowed.
const CHECK_ATTEMPTS: usize = 16;

/// A record as read: `(version, data)`, `None` when it does not exist.
type Current = Option<(i64, Vec<u8>)>;

struct RecordOperation {
    session: SessionRef,
    dialect: Dialect,
    message: Bytes,
    /// The record rules that apply to its sender (`None`: none).
    rules: Option<RecordRules>,
}

enum CacheState {
    /// Waiting for the subscription and the read; the publishes that arrived meanwhile.
    Loading(Vec<Bytes>),
    Valid,
}

pub(crate) struct ClusterRecords {
    queues: RefCell<AHashMap<Bytes, VecDeque<RecordOperation>>>,
    cache: RefCell<AHashMap<Bytes, CacheState>>,
    /// Tasks waiting for a record's cache to become valid.
    waiters: RefCell<AHashMap<Bytes, Vec<std::task::Waker>>>,
    write_script: redis::Script,
    read_script: redis::Script,
    delete_script: redis::Script,
    read_many_script: redis::Script,
}

impl Default for ClusterRecords {
    fn default() -> Self {
        ClusterRecords {
            queues: RefCell::new(AHashMap::new()),
            cache: RefCell::new(AHashMap::new()),
            waiters: RefCell::new(AHashMap::new()),
            write_script: redis::Script::new(RECORD_WRITE),
            read_script: redis::Script::new(RECORD_READ_OR_CREATE),
            delete_script: redis::Script::new(RECORD_DELETE),
            read_many_script: redis::Script::new(RECORDS_READ),
        }
    }
}

fn message(fields: &[&[u8]]) -> Bytes {
    Bytes::from(build_message(fields))
}

fn key(name: &[u8]) -> Vec<u8> {
    channel(RECORD_KEY, name)
}

/// Queues a record message for its name (on its owner core).
pub fn handle(core: &Rc<Core>, record: RecordMessage) {
    let Some(cluster) = super::of(core) else {
        return;
    };
    let rules = RecordRules::for_message(
        core.permissions(),
        record.user.as_ref(),
        record.cross.as_deref().map(Vec::as_slice),
    );
    let name = record.name;
    let operation = RecordOperation {
        session: record.session,
        dialect: record.dialect,
        message: record.message,
        rules,
    };
    let mut queues = cluster.records.queues.borrow_mut();
    if let Some(queue) = queues.get_mut(&name) {
        queue.push_back(operation);
        return;
    }
    let name = Bytes::copy_from_slice(&name);
    queues.insert(name.clone(), VecDeque::from([operation]));
    drop(queues);
    glommio::spawn_local(drain(Rc::downgrade(core), name)).detach();
}

async fn drain(weak: Weak<Core>, name: Bytes) {
    loop {
        let Some(core) = weak.upgrade() else {
            return;
        };
        let Some(cluster) = super::of(&core) else {
            return;
        };
        let next = {
            let mut queues = cluster.records.queues.borrow_mut();
            match queues.get_mut(&name).and_then(VecDeque::pop_front) {
                Some(operation) => operation,
                None => {
                    queues.remove(&name);
                    return;
                }
            }
        };
        run(&core, &cluster, &name, next).await;
        // Operations served from the cache complete without waiting: let the core's other
        // tasks run between them.
        glommio::yield_if_needed().await;
    }
}

/// The subscriber count of a record on this node changed: follow its channel (and cache it)
/// while there are subscribers.
pub fn interest(cluster: &Cluster, core: &Core, name: &Bytes, subscribers: usize) {
    let channel = channel(RECORD_CHANNEL, name);
    if subscribers > 0 {
        let mut cache = cluster.records.cache.borrow_mut();
        if !cache.contains_key(name) {
            cache.insert(
                Bytes::copy_from_slice(name),
                CacheState::Loading(Vec::new()),
            );
            drop(cache);
            cluster.pubsub.subscribe(Bytes::from(channel));
        }
    } else if cluster.records.cache.borrow_mut().remove(name).is_some() {
        cluster.pubsub.unsubscribe(&channel);
        core.records_mut().store.delete(name);
        wake_waiters(cluster, name);
    }
}

/// How long `CR` waits for a record's cache before answering from Redis directly.
const FOLLOW_TIMEOUT: Duration = Duration::from_secs(2);

/// Follows `name` (subscribes to its channel) and waits until its cache is valid. False when
/// Redis is unreachable or the load takes longer than `FOLLOW_TIMEOUT`.
async fn follow_until_valid(core: &Rc<Core>, cluster: &Rc<Cluster>, name: &Bytes) -> bool {
    let deadline = std::time::Instant::now() + FOLLOW_TIMEOUT;
    loop {
        if !(cluster.pubsub.is_up() && cluster.commands.is_up()) {
            return false;
        }
        let state = match cluster.records.cache.borrow().get(name) {
            Some(CacheState::Valid) => Some(true),
            Some(CacheState::Loading(_)) => Some(false),
            None => None,
        };
        match state {
            Some(true) => return true,
            Some(false) => {}
            // Not followed (or dropped by a last unsubscribe meanwhile): follow it now; the
            // subscriber count is settled when this `CR` subscribes.
            None => interest(cluster, core, name, 1),
        }
        let waited = futures_lite::future::or(
            async {
                std::future::poll_fn(|context| {
                    let valid = matches!(
                        cluster.records.cache.borrow().get(name),
                        Some(CacheState::Valid)
                    );
                    if valid {
                        return std::task::Poll::Ready(true);
                    }
                    cluster
                        .records
                        .waiters
                        .borrow_mut()
                        .entry(name.clone())
                        .or_default()
                        .push(context.waker().clone());
                    std::task::Poll::Pending
                })
                .await
            },
            async {
                glommio::timer::sleep(Duration::from_millis(50)).await;
                false
            },
        )
        .await;
        if waited {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
    }
}

/// After this node's own change of `name` reached Redis: waits until the node's cache shows it
/// (its publish came back), so the next read this node answers from the cache is not older
/// than a write it acknowledged. At once when the cache is not valid (reads go to Redis then);
/// at most `FOLLOW_TIMEOUT`.
async fn settle(core: &Core, cluster: &Cluster, name: &[u8], shows: impl Fn(Option<i64>) -> bool) {
    let settled = std::future::poll_fn(|context| {
        let cached = core
            .records_mut()
            .store
            .get(name)
            .map(|record| record.version);
        if !is_valid(cluster, name) || shows(cached) {
            return std::task::Poll::Ready(());
        }
        cluster
            .records
            .waiters
            .borrow_mut()
            .entry(Bytes::copy_from_slice(name))
            .or_default()
            .push(context.waker().clone());
        std::task::Poll::Pending
    });
    let late = async {
        glommio::timer::sleep(FOLLOW_TIMEOUT).await;
        crate::warn!("cluster: this node's change of record {name:?} did not come back from Redis");
    };
    futures_lite::future::or(settled, late).await;
}

fn wake_waiters(cluster: &Cluster, name: &[u8]) {
    if let Some(waiters) = cluster.records.waiters.borrow_mut().remove(name) {
        for waker in waiters {
            waker.wake();
        }
    }
}

/// Redis confirmed the subscription to a record's channel: read it (then the cache is valid).
pub fn on_subscribed(core: &Rc<Core>, cluster: &Rc<Cluster>, name: Bytes) {
    {
        let mut cache = cluster.records.cache.borrow_mut();
        match cache.get_mut(&name) {
            Some(state @ CacheState::Valid) => *state = CacheState::Loading(Vec::new()),
            Some(CacheState::Loading(_)) => {}
            None => return,
        }
    }
    let name = Bytes::copy_from_slice(&name);
    glommio::spawn_local(load(Rc::downgrade(core), name)).detach();
}

async fn load(weak: Weak<Core>, name: Bytes) {
    // Until it loads or nobody here wants the record any more: the command link may be down
    // while the pub/sub link is up, and the publishes keep arriving (buffered, bounded).
    let mut delay = Duration::from_millis(100);
    for attempt in 0u64.. {
        let Some(core) = weak.upgrade() else {
            return;
        };
        let Some(cluster) = super::of(&core) else {
            return;
        };
        if !matches!(
            cluster.records.cache.borrow().get(&name),
            Some(CacheState::Loading(_))
        ) {
            return;
        }
        match read(&cluster, &name).await {
            Ok(current) => {
                let buffered = {
                    let mut cache = cluster.records.cache.borrow_mut();
                    match cache.get_mut(&name) {
                        Some(state) => match std::mem::replace(state, CacheState::Valid) {
                            CacheState::Loading(buffered) => buffered,
                            CacheState::Valid => Vec::new(),
                        },
                        None => return,
                    }
                };
                {
                    let mut records = core.records_mut();
                    match &current {
                        Some((version, data)) => records.store.put(&name, *version, data),
                        None => {
                            records.store.delete(&name);
                        }
                    }
                }
                for payload in buffered {
                    apply(&core, &cluster, &name, &payload);
                }
                wake_waiters(&cluster, &name);
                return;
            }
            Err(error) => {
                if attempt == 0 {
                    cluster.count_error("loading a record", &error);
                }
            }
        }
        drop(cluster);
        drop(core);
        glommio::timer::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(1));
    }
}

/// A publish on a record's channel.
pub fn on_publish(core: &Rc<Core>, cluster: &Rc<Cluster>, name: Bytes, payload: Bytes) {
    {
        let mut cache = cluster.records.cache.borrow_mut();
        match cache.get_mut(&name) {
            None => return,
            Some(CacheState::Loading(buffered)) => {
                if buffered.len() >= MAX_BUFFERED {
                    // Redis cannot be read for a long while: the load will read a state newer
                    // than all of these; this node's subscribers miss the versions in between.
                    crate::warn!(
                        "cluster: {MAX_BUFFERED} changes of record {name:?} arrived while it \
                         could not be loaded: dropped"
                    );
                    buffered.clear();
                }
                buffered.push(payload);
                return;
            }
            Some(CacheState::Valid) => {}
        }
    }
    apply(core, cluster, &name, &payload);
}

/// The pub/sub link is gone: no cache can be trusted until it is back and reloaded.
pub fn on_disconnected(_core: &Rc<Core>, cluster: &Rc<Cluster>) {
    for state in cluster.records.cache.borrow_mut().values_mut() {
        *state = CacheState::Loading(Vec::new());
    }
}

/// The parts of a record publish: (origin, kind, version, data, message).
fn split_publish(payload: &Bytes) -> Option<(Bytes, u8, i64, Bytes, Bytes)> {
    let mut rest = payload.clone();
    let mut parts = Vec::with_capacity(4);
    for _ in 0..4 {
        let at = memchr::memchr(SEPARATOR, &rest)?;
        parts.push(rest.slice(..at));
        rest = rest.slice(at + 1..);
    }
    let kind = *parts[1].first()?;
    let version = std::str::from_utf8(&parts[2]).ok()?.parse().ok()?;
    Some((parts[0].clone(), kind, version, parts[3].clone(), rest))
}

fn apply(core: &Rc<Core>, cluster: &Rc<Cluster>, name: &Bytes, payload: &Bytes) {
    let Some((origin, kind, version, data, forward)) = split_publish(payload) else {
        crate::warn!("cluster: a malformed record publish on {name:?} ignored");
        return;
    };
    let (own_node, origin_session) = cluster.parse_origin(&origin);
    let exclude = if own_node { origin_session } else { None };
    let mut effects = Effects::default();
    match kind {
        b'U' => {
            let mut records = core.records_mut();
            let cached = records.store.get(name).map(|record| record.version);
            if cached.is_some_and(|cached| version <= cached) {
                return; // already applied (the read after the subscription included it)
            }
            if cached.is_some_and(|cached| version > cached + 1) {
                crate::debug!("cluster: record {name:?} jumped to version {version}");
            }
            records.store.put(name, version, &data);
            records
                .subscriptions
                .fanout_to_subscribers(name, exclude, &forward, &mut effects);
            drop(records);
            wake_waiters(cluster, name);
        }
        b'C' => {
            // created elsewhere: only matters to a cache that holds it as missing
            let mut records = core.records_mut();
            if records.store.get(name).is_none() {
                records.store.put(name, version, &data);
            }
            return;
        }
        b'D' => {
            let subscribers_left = {
                let mut records = core.records_mut();
                records.store.delete(name);
                let ack = message(&[b"R", b"A", b"D", name]);
                records
                    .subscriptions
                    .fanout_to_subscribers(name, exclude, &ack, &mut effects);
                records
                    .subscriptions
                    .remove_all_subscribers(name, &mut effects);
                records.subscriptions.subscriber_count(name)
            };
            interest(cluster, core, name, subscribers_left);
            wake_waiters(cluster, name);
        }
        _ => return,
    }
    core.execute_effects(effects);
}

/// `{v, d}` of a record from Redis (`None`: it does not exist).
async fn read(cluster: &Cluster, name: &[u8]) -> Result<Option<(i64, Vec<u8>)>, RedisError> {
    let key = key(name);
    let value = cluster.commands.call(&[b"HMGET", &key, b"v", b"d"]).await?;
    let Value::Array(parts) = value else {
        return Err(RedisError::Unexpected(
            "HMGET did not answer an array".into(),
        ));
    };
    let mut parts = parts.into_iter();
    let (Some(version), Some(data)) = (parts.next(), parts.next()) else {
        return Err(RedisError::Unexpected(
            "HMGET answered too few values".into(),
        ));
    };
    match (integer(version), bulk(data)) {
        (Some(version), Some(data)) => Ok(Some((version, data))),
        _ => Ok(None),
    }
}

/// Is this node's cache of `name` valid (followed and loaded)?
fn is_valid(cluster: &Cluster, name: &[u8]) -> bool {
    matches!(
        cluster.records.cache.borrow().get(name),
        Some(CacheState::Valid)
    )
}

/// This core's copy of a record, `(version, data)`.
fn cached(core: &Core, name: &[u8]) -> Option<(i64, Vec<u8>)> {
    core.records_mut()
        .store
        .get(name)
        .map(|record| (record.version, record.data.to_vec()))
}

/// The record as this node should answer a read: the valid cache, or Redis, or (while Redis is
/// unreachable) a stale cached copy.
async fn current(
    core: &Rc<Core>,
    cluster: &Cluster,
    name: &[u8],
) -> Result<Option<(i64, Vec<u8>)>, RedisError> {
    if matches!(
        cluster.records.cache.borrow().get(name),
        Some(CacheState::Valid)
    ) {
        return Ok(cached(core, name));
    }
    match read(cluster, name).await {
        Err(error @ (RedisError::Down | RedisError::Lost)) => {
            cached(core, name).map(Some).ok_or(error)
        }
        other => other,
    }
}

async fn run(core: &Rc<Core>, cluster: &Rc<Cluster>, name: &Bytes, operation: RecordOperation) {
    let RecordOperation {
        session,
        dialect,
        message: bytes,
        rules,
    } = operation;
    let Some(Parsed::Message(parsed)) = messages(&bytes, dialect).next() else {
        return;
    };
    let mut effects = Effects::default();
    let operation = Operation {
        core,
        cluster,
        name,
        session,
        dialect,
        bytes: &bytes,
        parsed: &parsed,
    };
    match (&rules, parsed.action) {
        (_, Action::Unsubscribe) => operation.unsubscribe(&mut effects),
        (Some(rules), _) => operation.run_checked(rules, &mut effects).await,
        (None, _) => operation.run_unchecked(&mut effects).await,
    }
    core.execute_effects(effects);
}

/// One record message on its owner core, with what every step of it needs.
struct Operation<'a> {
    core: &'a Rc<Core>,
    cluster: &'a Rc<Cluster>,
    name: &'a Bytes,
    session: SessionRef,
    dialect: Dialect,
    bytes: &'a Bytes,
    parsed: &'a Message<'a>,
}

impl Operation<'_> {
    fn unsubscribe(&self, effects: &mut Effects) {
        let subscribers = {
            let mut records = self.core.records_mut();
            records
                .subscriptions
                .unsubscribe(self.name, self.session, false, effects);
            records.subscriptions.subscriber_count(self.name)
        };
        interest(self.cluster, self.core, self.name, subscribers);
    }

    /// No record rule applies: reads answer from the cache when it is valid.
    async fn run_unchecked(&self, effects: &mut Effects) {
        let (core, cluster, name, session) = (self.core, self.cluster, self.name, self.session);
        match self.parsed.action {
            Action::CreateOrRead => subscribe(core, cluster, name, session, effects).await,
            Action::Snapshot if is_valid(cluster, name) => {
                // Served from the cache: the reply of a large record is shared, not copied.
                let reply = core.records_mut().read_reply(name);
                let reply = reply.unwrap_or_else(|| read_answer(Action::Snapshot, name, None));
                effects.send(session, reply);
            }
            Action::Snapshot | Action::Has | Action::Head => {
                let reply = match current(core, cluster, name).await {
                    Ok(record) => read_answer(self.parsed.action, name, as_read(&record)),
                    Err(error) => load_error(cluster, name, &error),
                };
                effects.send(session, reply);
            }
            Action::Delete => {
                let reply = delete(core, cluster, name, session, ANY_VERSION).await;
                effects.send(session, reply.unwrap_or_else(|| delete_error(name)));
            }
            Action::Update | Action::Patch | Action::CreateAndUpdate => {
                self.write(None, effects).await;
            }
            _ => {}
        }
    }

    /// Record rules apply: each check reads the record (the valid cache, or Redis), decides on
    /// it, and the change it allows is made only if the record is still that version in
    /// Redis; when it is not, the check is made again on the record as it is now.
    async fn run_checked(&self, rules: &RecordRules, effects: &mut Effects) {
        let (core, cluster, name, session) = (self.core, self.cluster, self.name, self.session);
        for _ in 0..CHECK_ATTEMPTS {
            let record = match current(core, cluster, name).await {
                Ok(record) => record,
                Err(error) => {
                    effects.send(session, load_error(cluster, name, &error));
                    return;
                }
            };
            let stored = as_read(&record);
            let mut snapshot = core.records_mut().store.snapshot(name, stored);
            if let Some(refusal) = rules
                .guard(core.rule_cache())
                .refusal(&mut snapshot, self.parsed)
            {
                self.create_before_refusal(record.is_none(), &snapshot)
                    .await;
                effects.send(session, refusal);
                return;
            }
            let pin = record.as_ref().map_or(MISSING, |(version, _)| *version);
            // Whether the record changed in Redis since the check (then check again).
            let changed = match self.parsed.action {
                // (a record created or changed between the check and the subscription is
                // answered as it is then: a read rule was decided on the record it replaced)
                Action::CreateOrRead => {
                    subscribe(core, cluster, name, session, effects).await;
                    false
                }
                Action::Snapshot | Action::Has | Action::Head => {
                    effects.send(
                        session,
                        read_answer(self.parsed.action, name, as_read(&record)),
                    );
                    false
                }
                Action::Delete => match delete(core, cluster, name, session, pin).await {
                    Some(reply) => {
                        effects.send(session, reply);
                        false
                    }
                    None => true,
                },
                Action::Update | Action::Patch | Action::CreateAndUpdate => {
                    self.write(Some(&record), effects).await == Written::Changed
                }
                _ => false,
            };
            if !changed {
                return;
            }
        }
        crate::warn!(
            "cluster: record {name:?} kept changing under a permission check: the message was \
             refused"
        );
        effects.send(session, permission_error(self.parsed));
    }

    /// deepstream creates a missing record when `CR`'s CREATE check passes, before its READ
    /// check: a READ refusal still leaves the record created.
    async fn create_before_refusal(&self, was_missing: bool, snapshot: &RecordStore) {
        let created = snapshot.get(self.name).is_some();
        if self.parsed.action == Action::CreateOrRead && was_missing && created {
            if let Err(error) = read_or_create(self.cluster, self.name, self.session).await {
                self.cluster.count_error("creating a record", &error);
            }
        }
    }

    /// `U`, `P`, `CU` through `record_write` with Redis as the storage; `pinned`: the record
    /// a permission check decided on, which the write must still find.
    async fn write(&self, pinned: Option<&Current>, effects: &mut Effects) -> Written {
        let mut storage = RedisRecords {
            core: self.core,
            cluster: self.cluster,
            session: self.session,
            pinned,
            changed: false,
        };
        let reply = record_write::write(&mut storage, self.dialect, self.bytes, self.parsed).await;
        if storage.changed {
            return Written::Changed;
        }
        if let Some(reply) = reply {
            effects.send(self.session, reply);
        }
        Written::Decided
    }
}

/// What became of a write pinned to the record a permission check saw.
#[derive(Debug, PartialEq, Eq)]
enum Written {
    /// Stored or refused; the writer has its answer.
    Decided,
    /// The record changed in Redis after the check: nothing stored, check again.
    Changed,
}

/// A record as read, borrowed for `read_answer`.
fn as_read(record: &Current) -> Option<(i64, &[u8])> {
    record.as_ref().map(|(version, data)| (*version, &data[..]))
}

/// `R|E|RECORD_LOAD_ERROR|<name>`, counted and logged.
fn load_error(cluster: &Cluster, name: &[u8], error: &RedisError) -> Bytes {
    cluster.count_error("reading a record", error);
    message(&[b"R", b"E", b"RECORD_LOAD_ERROR", name])
}

fn delete_error(name: &[u8]) -> Bytes {
    message(&[b"R", b"E", b"RECORD_DELETE_ERROR", name])
}

/// A permission rule's cross-references in a cluster: each record's JSON from Redis (`None`:
/// missing), all of one rule run's records in one round trip.
pub async fn load_for_rules(
    cluster: &Cluster,
    names: &[String],
) -> Result<Vec<Option<Box<[u8]>>>, String> {
    let keys: Vec<Vec<u8>> = names.iter().map(|name| key(name.as_bytes())).collect();
    let keys: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    let script = &cluster.records.read_many_script;
    let answer = match cluster.script(script, RECORDS_READ, &keys, &[]).await {
        Ok(answer) => answer,
        Err(error) => {
            cluster.count_error("reading records for a permission rule", &error);
            return Err(format!("records could not be read from Redis: {error}"));
        }
    };
    match answer {
        Value::Array(found) if found.len() == names.len() => Ok(found
            .into_iter()
            .map(|data| bulk(data).map(Vec::into_boxed_slice))
            .collect()),
        other => Err(format!("Redis answered a records read with {other:?}")),
    }
}

/// `R|CR`: follow the record (its channel, then its cache) before answering: the answer and
/// every change after it then reach this subscriber in order, none missed.
async fn subscribe(
    core: &Rc<Core>,
    cluster: &Rc<Cluster>,
    name: &Bytes,
    session: SessionRef,
    effects: &mut Effects,
) {
    // Follow the record (its channel, then its cache) before answering: the answer and
    // every change after it then reach this subscriber in order, none missed.
    // `None`: answer from the cache (its reply is shared); `Some`: from Redis.
    let answer = match follow_until_valid(core, cluster, name).await {
        true if core.records_mut().store.get(name).is_some() => Ok(None),
        // Absent: create it (the script announces the creation to every node).
        true => read_or_create(cluster, name, session).await.map(|created| {
            // a change that arrived meanwhile is newer than the creation
            let mut records = core.records_mut();
            if records.store.get(name).is_none() {
                records.store.put(name, created.0, &created.1);
            }
            None
        }),
        // Redis is unreachable (or too slow): answer from Redis or not at all.
        false => read_or_create(cluster, name, session).await.map(Some),
    };
    match answer {
        Ok(from_redis) => {
            let (subscribers, cached_reply) = {
                let mut records = core.records_mut();
                records
                    .subscriptions
                    .subscribe(name.clone(), session, effects);
                let reply = records.read_reply(name);
                (records.subscriptions.subscriber_count(name), reply)
            };
            interest(cluster, core, name, subscribers);
            let reply = match (from_redis, cached_reply) {
                (Some((version, data)), _) => {
                    let version = version.to_string();
                    message(&[b"R", b"R", name, version.as_bytes(), &data])
                }
                (None, Some(reply)) => reply,
                (None, None) => message(&[b"R", b"E", b"RECORD_LOAD_ERROR", name]),
            };
            effects.send(session, reply);
        }
        Err(error) => {
            cluster.count_error("reading a record", &error);
            let subscribers = core.records_mut().subscriptions.subscriber_count(name);
            interest(cluster, core, name, subscribers);
            effects.send(session, message(&[b"R", b"E", b"RECORD_LOAD_ERROR", name]));
        }
    }
}

/// `R|D`: deletes the record in Redis (which announces it to every node) if its version is
/// `expected` (`ANY_VERSION`, `MISSING`, or a version); the answer, `None` when the version
/// was another (nothing deleted).
async fn delete(
    core: &Core,
    cluster: &Cluster,
    name: &[u8],
    session: SessionRef,
    expected: i64,
) -> Option<Bytes> {
    let channel = channel(RECORD_CHANNEL, name);
    let origin = cluster.origin(Some(session));
    let expected = expected.to_string();
    match cluster
        .script(
            &cluster.records.delete_script,
            RECORD_DELETE,
            &[&key(name)],
            &[&channel, &origin, expected.as_bytes()],
        )
        .await
    {
        Ok(answer) => match integer(answer) {
            Some(-1) => None,
            _ => {
                settle(core, cluster, name, |cached| cached.is_none()).await;
                Some(message(&[b"R", b"A", b"D", name]))
            }
        },
        Err(error) => {
            cluster.count_error("deleting a record", &error);
            Some(delete_error(name))
        }
    }
}

async fn read_or_create(
    cluster: &Cluster,
    name: &[u8],
    session: SessionRef,
) -> Result<(i64, Vec<u8>), RedisError> {
    let record_channel = channel(RECORD_CHANNEL, name);
    let origin = cluster.origin(Some(session));
    let value = cluster
        .script(
            &cluster.records.read_script,
            RECORD_READ_OR_CREATE,
            &[&key(name)],
            &[&record_channel, &origin],
        )
        .await?;
    let Value::Array(parts) = value else {
        return Err(RedisError::Unexpected(
            "the read script did not answer an array".into(),
        ));
    };
    let mut parts = parts.into_iter();
    match (parts.next().and_then(integer), parts.next().and_then(bulk)) {
        (Some(version), Some(data)) => Ok((version, data)),
        _ => Err(RedisError::Unexpected(
            "the read script answered a malformed record".into(),
        )),
    }
}

/// Redis as a write's storage (`record_write::RecordStorage`): the version is checked, the
/// record stored and the change published by `RECORD_WRITE`, in one step.
struct RedisRecords<'a> {
    core: &'a Rc<Core>,
    cluster: &'a Cluster,
    /// The writer (the publish names it, so its own node does not echo the change to it).
    session: SessionRef,
    /// The record a permission check decided on: the write is computed from it and stored
    /// only while Redis still holds that version (`None`: no check, any current record).
    pinned: Option<&'a Current>,
    /// Redis held another version than `pinned`: nothing was stored.
    changed: bool,
}

/// A pinned write found the record changed (the caller checks again; never sent).
const CHANGED: Failure = Failure {
    maybe_applied: false,
    text: "the record changed after its permission check",
};

/// A write Redis did not take; `maybe_applied` when the connection was lost before it answered.
fn failure(error: &RedisError) -> Failure {
    match error {
        RedisError::Lost => Failure {
            maybe_applied: true,
            text: "Redis connection lost before it answered: the write may have been applied",
        },
        _ => Failure {
            maybe_applied: false,
            text: "Redis refused the write: it was not applied",
        },
    }
}

impl RecordStorage for RedisRecords<'_> {
    async fn current(&mut self, name: &[u8]) -> Result<Option<(i64, Vec<u8>)>, Failure> {
        if let Some(pinned) = self.pinned {
            return Ok(pinned.clone());
        }
        current(self.core, self.cluster, name)
            .await
            .map_err(|error| {
                self.cluster
                    .count_error("reading a record to patch", &error);
                failure(&error)
            })
    }

    async fn store(&mut self, write: StoreRequest<'_>) -> Stored {
        let request = write.request;
        let (prefix, suffix) = request.forward_around_version(write.parsed);
        let requested = match request.requested {
            Some(version) => version.to_string(),
            None => "n".to_string(),
        };
        let create: &[u8] = if request.upsert { b"1" } else { b"0" };
        let base = match self.pinned {
            Some(record) => record.as_ref().map_or(MISSING, |(version, _)| *version),
            None => write.base.unwrap_or(ANY_VERSION),
        };
        let base = base.to_string();
        let record_channel = channel(RECORD_CHANNEL, request.name);
        let origin = self.cluster.origin(Some(self.session));
        let result = self
            .cluster
            .script(
                &self.cluster.records.write_script,
                RECORD_WRITE,
                &[&key(request.name)],
                &[
                    &record_channel,
                    requested.as_bytes(),
                    create,
                    base.as_bytes(),
                    write.data,
                    &origin,
                    &prefix,
                    &suffix,
                ],
            )
            .await;
        match result {
            Ok(value) => match self.stored(value) {
                Stored::Written(version) => {
                    let shows =
                        |cached: Option<i64>| cached.is_some_and(|cached| cached >= version);
                    settle(self.core, self.cluster, request.name, shows).await;
                    Stored::Written(version)
                }
                other => other,
            },
            Err(error) => {
                self.cluster.count_error("writing a record", &error);
                Stored::Failed(failure(&error))
            }
        }
    }

    fn validate(&mut self, json: &[u8], dialect: Dialect) -> Result<(), WriteError> {
        self.core.records_mut().store.validate_json(json, dialect)
    }

    fn patched(&mut self, data: &[u8], path: &[u8], value: &[u8]) -> Result<Vec<u8>, WriteError> {
        self.core.records_mut().store.patched(data, path, value)
    }
}

impl RedisRecords<'_> {
    /// `RECORD_WRITE`'s answer: {0, version} | {1, version, data} | {2} | {3, version, data}.
    fn stored(&mut self, value: Value) -> Stored {
        let Value::Array(parts) = value else {
            crate::warn!("cluster: the write script answered {value:?}");
            return Stored::Failed(UNEXPECTED);
        };
        let mut parts = parts.into_iter();
        let status = parts.next().and_then(integer);
        let version = parts.next().and_then(integer);
        let data = parts.next().and_then(bulk);
        match (status, version, data) {
            (Some(0), Some(version), _) => Stored::Written(version),
            (Some(1), Some(version), Some(data)) => {
                let conflicts = &self.cluster.counters.write_conflicts;
                conflicts.set(conflicts.get() + 1);
                Stored::Refused(WriteError::VersionExists(Record {
                    version,
                    data: data.into_boxed_slice(),
                }))
            }
            (Some(2), _, _) => Stored::Refused(WriteError::NotFound),
            (Some(3), _, _) if self.pinned.is_some() => {
                self.changed = true;
                Stored::Failed(CHANGED)
            }
            (Some(3), Some(version), Some(data)) => Stored::StaleBase(version, data),
            _ => Stored::Failed(UNEXPECTED),
        }
    }
}

/// Redis answered a write with something the script never returns.
const UNEXPECTED: Failure = Failure {
    maybe_applied: true,
    text: "Redis answered the write unexpectedly: it may have been applied",
};
