//! Addresses of sessions: `SessionRef` names one session of this process (its core, its slab
//! slot and the slot's generation), or a stand-in for something on another node of the
//! cluster. The stand-ins are packed into the same twelve bytes (the core numbers no core can
//! have mark them), but nobody outside this module sees those numbers: they are built with
//! `SessionRef::node`, `node_interest` and `node_listener` and read back with `address()`.
//!
//! Imported by every layer that passes sessions around: features (subscribers, providers,
//! listeners), the mesh, the dispatcher, the cluster, the ports.

/// One session anywhere in the process, or a stand-in for something on another node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionRef {
    pub core: u16,
    pub slot: u32,
    pub generation: u32,
}

/// What a `SessionRef` stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Address {
    /// A session of this process: its core, slab slot and the slot's generation (a reused
    /// slot never receives a message meant for its previous session).
    Session {
        core: u16,
        slot: u32,
        generation: u32,
    },
    /// Another node, as an RPC provider or requester (`node` indexes the core's node table).
    Node { node: u32 },
    /// Another node's subscribers of one name, in the listen leader's registries: `core` is
    /// the core of that node which owns the name.
    NodeInterest { node: u32, core: u32 },
    /// A listener on another node, in the listen leader's registries (`listener` indexes the
    /// leader's table of remote listeners).
    NodeListener { listener: u32 },
}

/// The core numbers that mark stand-ins (no process has that many cores).
const NODE: u16 = u16::MAX;
const NODE_INTEREST: u16 = u16::MAX - 1;
const NODE_LISTENER: u16 = u16::MAX - 2;

impl SessionRef {
    /// A session of this process.
    pub const fn session(core: u16, slot: u32, generation: u32) -> SessionRef {
        SessionRef {
            core,
            slot,
            generation,
        }
    }

    /// The stand-in for another node (an RPC provider or requester there).
    pub const fn node(node: u32) -> SessionRef {
        SessionRef {
            core: NODE,
            slot: node,
            generation: 0,
        }
    }

    /// The stand-in for another node's subscribers of a name owned by `core` there.
    pub const fn node_interest(node: u32, core: u32) -> SessionRef {
        SessionRef {
            core: NODE_INTEREST,
            slot: node,
            generation: core,
        }
    }

    /// The stand-in for a listener on another node.
    pub const fn node_listener(listener: u32) -> SessionRef {
        SessionRef {
            core: NODE_LISTENER,
            slot: listener,
            generation: 0,
        }
    }

    /// What this address stands for.
    pub fn address(&self) -> Address {
        match self.core {
            NODE => Address::Node { node: self.slot },
            NODE_INTEREST => Address::NodeInterest {
                node: self.slot,
                core: self.generation,
            },
            NODE_LISTENER => Address::NodeListener {
                listener: self.slot,
            },
            core => Address::Session {
                core,
                slot: self.slot,
                generation: self.generation,
            },
        }
    }

    /// A stand-in for another node (an RPC provider or requester there).
    pub fn is_remote(&self) -> bool {
        self.core == NODE
    }

    /// Any stand-in for something on another node (no session of this process).
    pub fn is_stand_in(&self) -> bool {
        self.core >= NODE_LISTENER
    }

    /// The core of a session of this process (`None` for a stand-in).
    pub fn local_core(&self) -> Option<usize> {
        (!self.is_stand_in()).then_some(usize::from(self.core))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stand_ins_are_told_apart_from_sessions() {
        assert_eq!(
            SessionRef::session(3, 7, 9).address(),
            Address::Session {
                core: 3,
                slot: 7,
                generation: 9
            }
        );
        assert_eq!(SessionRef::node(4).address(), Address::Node { node: 4 });
        assert_eq!(
            SessionRef::node_interest(2, 1).address(),
            Address::NodeInterest { node: 2, core: 1 }
        );
        assert_eq!(
            SessionRef::node_listener(5).address(),
            Address::NodeListener { listener: 5 }
        );
        assert!(SessionRef::node(0).is_remote() && SessionRef::node(0).is_stand_in());
        assert!(SessionRef::node_listener(0).is_stand_in());
        assert!(!SessionRef::node_listener(0).is_remote());
        assert_eq!(SessionRef::session(1, 0, 1).local_core(), Some(1));
        assert_eq!(SessionRef::node_interest(0, 0).local_core(), None);
    }
}
