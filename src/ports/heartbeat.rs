//! The 2.x WebSocket heartbeat of one core: one task per core ticks every `heartbeatInterval`
//! and walks the core's session ports. A port whose peer was heard since the last tick gets
//! the deepstream ping `C|PI`; a port silent for a whole interval is aborted, and its
//! connection task drops the socket without a close frame (as deepstream 2.x's uws does: one
//! timer for all sockets, at a phase of its own). Connections take part by
//! `SessionPort::heartbeat_on` and report what they hear with `SessionPort::heard`; they hold
//! no timer of their own, which is most of what an idle WebSocket connection used to cost
//! beyond its task. Started by `server` on every core that serves HTTP.

use crate::dispatch::Core;
use crate::shard::HeartbeatTick;
use std::rc::Rc;
use std::time::Instant;

/// The 2.x server ping (the client answers `C|PO`).
pub const PING: &[u8] = b"C\x1fPI\x1e";

/// Ports visited between two chances for the core's other tasks to run.
const PORTS_PER_TURN: usize = 1024;

/// Ticks forever on a fixed schedule (a slow walk does not shift the next tick).
pub async fn run(core: Rc<Core>) {
    let interval = core.config().heartbeat_interval;
    let mut next = Instant::now() + interval;
    loop {
        glommio::timer::sleep(next.saturating_duration_since(Instant::now())).await;
        next += interval;
        let now = Instant::now();
        if next <= now {
            // a walk longer than an interval (or a stalled core): skip the missed ticks
            next = now + interval;
        }
        tick(&core).await;
    }
}

/// One tick over every port of the core, yielding to the core's other tasks as it goes.
async fn tick(core: &Rc<Core>) {
    let mut slot = 0;
    while slot < core.session_slots() {
        if let Some(port) = core.port_in_slot(slot) {
            if port.heartbeat_tick() == HeartbeatTick::Ping {
                core.push_to(&port, PING);
            }
        }
        slot += 1;
        if slot % PORTS_PER_TURN == 0 {
            glommio::yield_if_needed().await;
        }
    }
}
