//! Features that run on the core owning a name: events, listening, records and RPC.
//!
//! A feature never touches a socket or another core. It changes its registries and describes
//! what must happen next as `Effect`s; the dispatcher (`dispatch::Core`) carries them out:
//! writing to a local session's outbound buffer, or one mesh message per destination core.

pub mod event;
pub mod listen;
pub mod presence;
pub mod record;
pub mod record_guard;
pub mod record_store;
pub mod record_write;
pub mod rpc;
pub mod subscriptions;

use crate::base::address::SessionRef;
use crate::protocol::actions::Topic;
use bytes::Bytes;
use std::sync::Arc;

/// Something a feature asks its core to do.
#[derive(Debug)]
pub enum Effect {
    /// Send one complete message (terminator included) to one session.
    Send { to: SessionRef, bytes: Bytes },
    /// Send one message to every session in `targets` (all on one core) but `exclude`.
    Fanout {
        core: usize,
        targets: Arc<Vec<SessionRef>>,
        exclude: Option<SessionRef>,
        bytes: Bytes,
    },
    /// Start (or restart) the listen-response timer of a name.
    StartListenTimer { topic: Topic, name: Bytes },
    /// Cancel the listen-response timer of a name.
    CancelListenTimer { topic: Topic, name: Bytes },
    /// Listening in a cluster where another node leads (`cluster::listen`): the first local
    /// subscriber of a name came (`interested`), or the last one went.
    ListenInterest {
        topic: Topic,
        name: Bytes,
        interested: bool,
    },
    /// Listening in a cluster where another node leads: a local listener's `LA` / `LR`, for the
    /// leader to judge.
    ListenResponseToLeader(listen::ListenResponse),
    /// Arm the ack (`rpcAckTimeout`) and response (`rpcTimeout`) deadlines of an RPC call.
    ArmRpcDeadlines {
        name: Bytes,
        correlation: Bytes,
        generation: u64,
    },
}

/// Collects effects in the order they were produced.
#[derive(Debug, Default)]
pub struct Effects {
    pub list: Vec<Effect>,
}

impl Effects {
    pub fn send(&mut self, to: SessionRef, bytes: impl Into<Bytes>) {
        self.list.push(Effect::Send {
            to,
            bytes: bytes.into(),
        });
    }

    pub fn push(&mut self, effect: Effect) {
        self.list.push(effect);
    }
}

/// Helpers shared by the features' unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    use super::{Effect, Effects};
    use crate::base::address::SessionRef;
    use crate::protocol::message::to_capture_notation;

    /// A session on core 0.
    pub fn session(slot: u32) -> SessionRef {
        SessionRef {
            core: 0,
            slot,
            generation: 1,
        }
    }

    /// The `Send` effects as (slot, message in capture notation).
    pub fn sent(effects: &Effects) -> Vec<(u32, String)> {
        effects
            .list
            .iter()
            .filter_map(|effect| match effect {
                Effect::Send { to, bytes } => Some((to.slot, to_capture_notation(bytes))),
                _ => None,
            })
            .collect()
    }
}
