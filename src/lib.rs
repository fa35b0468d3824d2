//! corestream: a thread-per-core realtime server speaking the deepstream text protocol.
//!
//! The layers, bottom up, in the order a reader should meet them (a module imports only the
//! layers below its own; `scripts/check-structure.py` checks it in the test command, and
//! docs/ARCHITECTURE.md draws the data path):
//!
//! 1. `base`: what everyone may use and that uses nothing of ours: addresses (`SessionRef`)
//!    and the config types. `logging` sits on it.
//! 2. `protocol`: bytes → messages (the text protocol, typed actions), parsed once.
//! 3. `transport` (pure framing per transport: 1.x TCP, RFC 6455, engine.io, HTTP heads,
//!    the PROXY protocol) and `random`.
//! 4. `auth` (who a client is), `permission` (what a client may do: deepstream's Valve rules,
//!    compiled once) and `admission` (per-address limits).
//! 5. `features`: events, listening, records, RPC and presence on the core that owns a name.
//!    They never touch a socket or another core: they answer with `Effects`.
//! 6. `shard`: the mesh: which core owns a name, the queues between cores and their
//!    back-pressure, the slab of a core's sessions. It knows no feature.
//! 7. `metrics`: what a core counts and the Prometheus text.
//! 8. `dispatch`: the per-core dispatcher (`Core`): owns the features and turns each message
//!    into feature calls, one message type per area; the cluster plugs in behind its seam.
//! 9. `cluster`: several nodes as one through Redis, behind `dispatch::ClusterSeam`.
//! 10. `session`: one connection's deepstream state machine.
//! 11. `ports`: the tasks that own sockets (TCP, HTTP, WebSocket, engine.io).
//! 12. `server`: executors, the mesh, listeners; started by `main`. Beside it, `tools`: the
//!     deployment tools of the command line (`corestream nginx`), which use nothing of ours.

#[macro_use]
pub mod logging;
pub mod admission;
pub mod auth;
pub mod base;
pub mod cluster;
pub mod dispatch;
pub mod features;
pub mod metrics;
pub mod permission;
pub mod ports;
pub mod protocol;
pub mod random;
pub mod server;
pub mod session;
pub mod shard;
pub mod tools;
pub mod transport;
