//! One core's two connections to Redis: a pipelined command link and a pub/sub link.
//!
//! Owned by `cluster::Cluster` (one per core); nothing else touches a Redis socket. Each link is
//! driven by one task on its core that connects, authenticates (`AUTH`, `SELECT`), then writes
//! whatever was queued since its last write in one send and reads replies as they come. A lost
//! connection fails every waiting command at once (`RedisError::Lost`: sent, outcome unknown),
//! is logged, and is retried with exponential backoff (50 ms doubling to 2 s); the pub/sub link
//! subscribes again to every channel it wants and reports each `Subscribed` channel, so its
//! owner can reload what it caches.
//! While a link is down, calls fail immediately: a core never waits on Redis to serve locally.

use super::resp::{frame_length, parse, write_command, RespError};
use crate::base::config::RedisTarget;
use bytes::Bytes;
use futures_lite::future::or;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use redis::Value;
use std::cell::{Cell, RefCell};
use std::collections::{HashSet, VecDeque};
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

/// Why a Redis command did not produce a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisError {
    /// The link is not connected: the command was not sent.
    Down,
    /// The connection was lost while the command waited for its reply: Redis may or may not
    /// have run it (the outcome is unknown).
    Lost,
    /// Redis answered with an error reply.
    Server(String),
    /// Redis answered something this caller did not expect.
    Unexpected(String),
}

impl std::fmt::Display for RedisError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RedisError::Down => write!(formatter, "Redis is not connected"),
            RedisError::Lost => write!(
                formatter,
                "the connection to Redis was lost before it answered"
            ),
            RedisError::Server(text) => write!(formatter, "Redis error: {text}"),
            RedisError::Unexpected(text) => write!(formatter, "unexpected Redis reply: {text}"),
        }
    }
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Counters of one link, read by `/metrics`.
#[derive(Debug, Default)]
pub struct LinkCounters {
    pub connects: Cell<u64>,
    pub disconnects: Cell<u64>,
    pub commands: Cell<u64>,
}

/// A link is up: counted, logged.
fn connected(
    label: &str,
    target: &RedisTarget,
    up: &Cell<bool>,
    counters: &LinkCounters,
    detail: &str,
) {
    counters.connects.set(counters.connects.get() + 1);
    crate::info!(
        "{label}: connected to Redis at {}{detail}",
        target.address()
    );
    up.set(true);
}

/// A link is down: counted, logged (it reconnects with backoff).
fn lost(label: &str, up: &Cell<bool>, counters: &LinkCounters, reason: &str) {
    up.set(false);
    counters.disconnects.set(counters.disconnects.get() + 1);
    crate::warn!("{label}: lost the Redis connection ({reason}); reconnecting");
}

/// The reconnect delay of a link: 50 ms doubling to 2 s, reset by a connect.
struct Backoff {
    delay: Duration,
    failures: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            delay: FIRST_BACKOFF,
            failures: 0,
        }
    }
}

impl Backoff {
    fn failed(&mut self, label: &str, target: &RedisTarget, error: &str) {
        self.failures += 1;
        // Say it on the first failure and then every ~30 s, not on every retry.
        if self.failures == 1 || self.failures.is_multiple_of(15) {
            crate::warn!(
                "{label}: cannot connect to Redis at {}: {error} (retrying with backoff)",
                target.address()
            );
        }
    }

    async fn wait(&mut self) {
        glommio::timer::sleep(self.delay).await;
        self.delay = (self.delay * 2).min(MAX_BACKOFF);
    }
}

/// Output queued for a link's socket, with the waker of its driver.
#[derive(Default)]
struct Outbox {
    bytes: RefCell<Vec<u8>>,
    driver: RefCell<Option<Waker>>,
}

impl Outbox {
    fn push(&self, arguments: &[&[u8]]) {
        write_command(&mut self.bytes.borrow_mut(), arguments);
        if let Some(waker) = self.driver.borrow_mut().take() {
            waker.wake();
        }
    }

    /// Writes whatever is queued, one send per batch, until the socket fails. (The reads run
    /// beside this on the other half of the socket: a read is never cancelled mid-flight.)
    async fn write_forever(&self, writer: &mut (impl futures_lite::AsyncWrite + Unpin)) -> String {
        let mut writing = Vec::new();
        loop {
            self.ready().await;
            std::mem::swap(&mut writing, &mut *self.bytes.borrow_mut());
            if let Err(error) = writer.write_all(&writing).await {
                return error.to_string();
            }
            writing.clear();
        }
    }

    async fn ready(&self) {
        poll_fn(|context| {
            if self.bytes.borrow().is_empty() {
                *self.driver.borrow_mut() = Some(context.waker().clone());
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await
    }
}

struct ReplySlot {
    value: RefCell<Option<Result<Value, RedisError>>>,
    waker: RefCell<Option<Waker>>,
}

enum Waiting {
    /// A fire-and-forget command (PUBLISH): its reply is read and dropped.
    Ignore,
    Reply(Rc<ReplySlot>),
}

/// The pipelined command connection of one core.
pub struct CommandLink {
    label: String,
    target: RedisTarget,
    outbox: Outbox,
    waiting: RefCell<VecDeque<Waiting>>,
    up: Cell<bool>,
    pub counters: LinkCounters,
}

impl CommandLink {
    pub fn new(label: String, target: RedisTarget) -> Rc<CommandLink> {
        Rc::new(CommandLink {
            label,
            target,
            outbox: Outbox::default(),
            waiting: RefCell::new(VecDeque::new()),
            up: Cell::new(false),
            counters: LinkCounters::default(),
        })
    }

    pub fn is_up(&self) -> bool {
        self.up.get()
    }

    /// Sends a command and waits for its reply (an error reply is `RedisError::Server`).
    pub async fn call(&self, arguments: &[&[u8]]) -> Result<Value, RedisError> {
        if !self.up.get() {
            return Err(RedisError::Down);
        }
        let slot = Rc::new(ReplySlot {
            value: RefCell::new(None),
            waker: RefCell::new(None),
        });
        self.outbox.push(arguments);
        self.counters.commands.set(self.counters.commands.get() + 1);
        self.waiting
            .borrow_mut()
            .push_back(Waiting::Reply(Rc::clone(&slot)));
        poll_fn(|context| match slot.value.borrow_mut().take() {
            Some(result) => Poll::Ready(result),
            None => {
                *slot.waker.borrow_mut() = Some(context.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// Queues a command whose reply nobody needs. Returns false (and sends nothing) while down.
    pub fn send(&self, arguments: &[&[u8]]) -> bool {
        if !self.up.get() {
            return false;
        }
        self.outbox.push(arguments);
        self.counters.commands.set(self.counters.commands.get() + 1);
        self.waiting.borrow_mut().push_back(Waiting::Ignore);
        true
    }

    /// Drives the connection forever: connect, serve, and on loss fail the waiters and retry.
    /// `on_change(true|false)` is called when the link comes up or goes down.
    pub async fn run(self: Rc<Self>, on_change: Rc<dyn Fn(bool)>) {
        let mut backoff = Backoff::default();
        loop {
            match connect(&self.target).await {
                Ok(stream) => {
                    backoff = Backoff::default();
                    connected(&self.label, &self.target, &self.up, &self.counters, "");
                    on_change(true);
                    let reason = self.serve(stream).await;
                    lost(&self.label, &self.up, &self.counters, &reason);
                    self.fail_waiting();
                    on_change(false);
                }
                Err(error) => backoff.failed(&self.label, &self.target, &error),
            }
            backoff.wait().await;
        }
    }

    fn fail_waiting(&self) {
        self.outbox.bytes.borrow_mut().clear();
        let waiting: Vec<Waiting> = self.waiting.borrow_mut().drain(..).collect();
        for waiter in waiting {
            if let Waiting::Reply(slot) = waiter {
                resolve(&slot, Err(RedisError::Lost));
            }
        }
    }

    async fn serve(&self, stream: TcpStream) -> String {
        let (mut reader, mut writer) = futures_lite::io::split(stream);
        let reading = read_replies(&mut reader, |value| self.take_reply(value));
        or(reading, self.outbox.write_forever(&mut writer)).await
    }

    /// Hands one reply to the command that waits for it (replies come in command order).
    fn take_reply(&self, value: Value) -> Result<(), RespError> {
        let waiter = self.waiting.borrow_mut().pop_front();
        match waiter {
            Some(Waiting::Reply(slot)) => {
                let result = match value {
                    Value::ServerError(error) => Err(RedisError::Server(server_error(&error))),
                    other => Ok(other),
                };
                resolve(&slot, result);
            }
            Some(Waiting::Ignore) => {
                if let Value::ServerError(error) = value {
                    crate::warn!(
                        "{}: Redis refused a command: {}",
                        self.label,
                        server_error(&error)
                    );
                }
            }
            None => return Err(RespError::Parse("a reply nobody asked for".into())),
        }
        Ok(())
    }
}

/// Reads whole replies from a link's socket and hands each to `on_reply`, until the socket
/// fails, Redis closes it, a reply cannot be framed, or `on_reply` refuses one; returns why.
async fn read_replies(
    reader: &mut (impl futures_lite::AsyncRead + Unpin),
    mut on_reply: impl FnMut(Value) -> Result<(), RespError>,
) -> String {
    let mut input = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let count = match reader.read(&mut chunk).await {
            Ok(0) => return "closed by Redis".to_string(),
            Err(error) => return error.to_string(),
            Ok(count) => count,
        };
        input.extend_from_slice(&chunk[..count]);
        let mut consumed = 0;
        loop {
            let length = match frame_length(&input[consumed..]) {
                Ok(Some(length)) => length,
                Ok(None) => break,
                Err(error) => return error.to_string(),
            };
            let value = match parse(&input[consumed..consumed + length]) {
                Ok(value) => value,
                Err(error) => return error.to_string(),
            };
            consumed += length;
            if let Err(error) = on_reply(value) {
                return error.to_string();
            }
        }
        input.drain(..consumed);
    }
}

/// `CODE details`, as Redis wrote it (`NOSCRIPT No matching script...`).
fn server_error(error: &redis::ServerError) -> String {
    match error.details() {
        Some(details) => format!("{} {details}", error.code()),
        None => error.code().to_string(),
    }
}

fn resolve(slot: &ReplySlot, result: Result<Value, RedisError>) {
    *slot.value.borrow_mut() = Some(result);
    if let Some(waker) = slot.waker.borrow_mut().take() {
        waker.wake();
    }
}

/// What the pub/sub link reports to its owner.
pub enum PubSubEvent {
    /// (Re)connected, with every wanted channel subscribed again: caches must be reloaded.
    Connected,
    Disconnected,
    /// Redis confirmed a subscription: from now on every publish on it arrives here.
    Subscribed(Bytes),
    Message {
        channel: Bytes,
        payload: Bytes,
    },
}

/// The pub/sub connection of one core: subscribes to what its owner wants, delivers messages.
pub struct PubSubLink {
    label: String,
    target: RedisTarget,
    outbox: Outbox,
    wanted: RefCell<HashSet<Bytes, ahash::RandomState>>,
    up: Cell<bool>,
    pub counters: LinkCounters,
}

impl PubSubLink {
    pub fn new(label: String, target: RedisTarget) -> Rc<PubSubLink> {
        Rc::new(PubSubLink {
            label,
            target,
            outbox: Outbox::default(),
            wanted: RefCell::new(HashSet::default()),
            up: Cell::new(false),
            counters: LinkCounters::default(),
        })
    }

    pub fn is_up(&self) -> bool {
        self.up.get()
    }

    pub fn channel_count(&self) -> usize {
        self.wanted.borrow().len()
    }

    /// Wants `channel`; subscribes now when connected, else on the next connect.
    pub fn subscribe(&self, channel: Bytes) {
        if self.wanted.borrow_mut().insert(channel.clone()) && self.up.get() {
            self.outbox.push(&[b"SUBSCRIBE", &channel]);
        }
    }

    pub fn unsubscribe(&self, channel: &[u8]) {
        if self.wanted.borrow_mut().remove(channel) && self.up.get() {
            self.outbox.push(&[b"UNSUBSCRIBE", channel]);
        }
    }

    pub fn is_wanted(&self, channel: &[u8]) -> bool {
        self.wanted.borrow().contains(channel)
    }

    pub async fn run(self: Rc<Self>, on_event: Rc<dyn Fn(PubSubEvent)>) {
        let mut backoff = Backoff::default();
        loop {
            match connect(&self.target).await {
                Ok(stream) => {
                    backoff = Backoff::default();
                    self.outbox.bytes.borrow_mut().clear();
                    // Every wanted channel again, in commands of at most 1000 channels.
                    let wanted: Vec<Bytes> = self.wanted.borrow().iter().cloned().collect();
                    for group in wanted.chunks(1000) {
                        let mut arguments: Vec<&[u8]> = vec![b"SUBSCRIBE"];
                        arguments.extend(group.iter().map(|channel| &channel[..]));
                        self.outbox.push(&arguments);
                    }
                    let detail = format!(" ({} channels)", wanted.len());
                    connected(&self.label, &self.target, &self.up, &self.counters, &detail);
                    on_event(PubSubEvent::Connected);
                    let reason = self.serve(stream, &on_event).await;
                    lost(&self.label, &self.up, &self.counters, &reason);
                    on_event(PubSubEvent::Disconnected);
                }
                Err(error) => backoff.failed(&self.label, &self.target, &error),
            }
            backoff.wait().await;
        }
    }

    async fn serve(&self, stream: TcpStream, on_event: &Rc<dyn Fn(PubSubEvent)>) -> String {
        let (mut reader, mut writer) = futures_lite::io::split(stream);
        let reading = read_replies(&mut reader, |value| {
            if let Some(event) = pubsub_event(value) {
                on_event(event);
            }
            Ok(())
        });
        or(reading, self.outbox.write_forever(&mut writer)).await
    }
}

/// `["message", channel, payload]` and `["subscribe", channel, count]`; the rest is ignored.
fn pubsub_event(value: Value) -> Option<PubSubEvent> {
    let Value::Array(parts) = value else {
        return None;
    };
    let mut parts = parts.into_iter();
    let kind = match parts.next()? {
        Value::BulkString(kind) => kind,
        _ => return None,
    };
    let channel = match parts.next()? {
        Value::BulkString(channel) => Bytes::from(channel),
        _ => return None,
    };
    match &kind[..] {
        b"message" => match parts.next()? {
            Value::BulkString(payload) => Some(PubSubEvent::Message {
                channel,
                payload: Bytes::from(payload),
            }),
            _ => None,
        },
        b"subscribe" => Some(PubSubEvent::Subscribed(channel)),
        _ => None,
    }
}

/// Connects and logs in (AUTH, SELECT), within `CONNECT_TIMEOUT`.
async fn connect(target: &RedisTarget) -> Result<TcpStream, String> {
    let attempt = async {
        let mut stream = TcpStream::connect(target.address())
            .await
            .map_err(|error| error.to_string())?;
        let _ = stream.set_nodelay(true);
        let mut hello = Vec::new();
        let mut expected = 0;
        if let Some(password) = &target.password {
            write_command(&mut hello, &[b"AUTH", password.as_bytes()]);
            expected += 1;
        }
        if target.db != 0 {
            write_command(&mut hello, &[b"SELECT", target.db.to_string().as_bytes()]);
            expected += 1;
        }
        if expected > 0 {
            stream
                .write_all(&hello)
                .await
                .map_err(|error| error.to_string())?;
            let mut input = Vec::new();
            let mut chunk = [0u8; 512];
            while expected > 0 {
                let count = stream
                    .read(&mut chunk)
                    .await
                    .map_err(|error| error.to_string())?;
                if count == 0 {
                    return Err("closed during login".to_string());
                }
                input.extend_from_slice(&chunk[..count]);
                while let Some(length) = frame_length(&input).map_err(|e| e.to_string())? {
                    let value = parse(&input[..length]).map_err(|e| e.to_string())?;
                    input.drain(..length);
                    if let Value::ServerError(error) = value {
                        return Err(format!("login refused: {}", server_error(&error)));
                    }
                    expected -= 1;
                }
            }
        }
        Ok(stream)
    };
    or(attempt, async {
        glommio::timer::sleep(CONNECT_TIMEOUT).await;
        Err("timed out".to_string())
    })
    .await
}
