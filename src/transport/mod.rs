//! Transports: how units of deepstream text arrive on a socket and leave it.
//! Only framing lives here; a transport never knows what a record or an event is.

pub mod engineio;
pub mod http;
pub mod proxy_protocol;
pub mod tcp;
pub mod websocket;
