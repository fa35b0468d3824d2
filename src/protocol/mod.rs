//! The deepstream text protocol: framing of messages into fields, the action table and typed
//! values. Pure functions over bytes; no sockets, no state. See PROTOCOL.md §1 and §3.

pub mod actions;
pub mod message;
pub mod value;
