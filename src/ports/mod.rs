//! The ports: the tasks that own sockets. Each accepts connections on its core, frames what it
//! reads (`transport`), hands whole units to the connection's `Session`, and writes the
//! session's outbound port with one send per turn. Started by `server` on every core.
//!
//! - `tcp`: the 1.x TCP port (with the PROXY protocol from trusted proxies).
//! - `http`: the HTTP port: one connection task routes each request (`route`) to the health
//!   check, `/metrics`, a WebSocket upgrade (`websocket`) or engine.io (`engineio`).
//! - `connection`: the read → session → write loop that TCP and WebSocket sessions share.
//! - `heartbeat`: the core's 2.x WebSocket heartbeat, one timer for all its sessions.
//! - `net`: socket options and bounded socket I/O shared by all of them.

pub mod engineio;
pub mod heartbeat;
pub mod http;
pub mod net;
pub mod route;
pub mod tcp;
pub mod websocket;

mod connection;
