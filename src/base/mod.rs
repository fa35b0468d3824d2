//! The bottom layer: what every other module may import, and which imports nothing of ours.
//!
//! - `address`: `SessionRef`, the address of a session anywhere in the process, and the
//!   typed stand-ins for what lives on another node of the cluster;
//! - `config`: the server's configuration (deepstream 1.x and 2.x files read unchanged), with
//!   its limits and the cluster settings.

pub mod address;
pub mod config;
