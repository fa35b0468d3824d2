//! corestream: a thread-per-core realtime server speaking the deepstream text protocol.
//!
//! Layout (see docs/DESIGN.md): `protocol` (bytes → messages), `transport` (framing per
//! transport), `session` (one connection's state machine), `shard` (per-core state and the
//! cross-core mesh), `features` (events and listening on their owner core), `auth`, `config`,
//! `server` (executors, listeners, connection tasks), `logging`.

#[macro_use]
pub mod logging;
pub mod admission;
pub mod auth;
pub mod base;
pub mod cluster;
pub mod engineio_port;
pub mod features;
pub mod http_port;
pub mod http_route;
pub mod net;
pub mod protocol;
pub mod random;
pub mod server;
pub mod session;
pub mod shard;
pub mod transport;
