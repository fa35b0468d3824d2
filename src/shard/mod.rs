//! The mesh: which core owns a name, the queues between cores and their back-pressure, and the
//! slab of one core's sessions. It knows no feature and no cluster: it carries any message type
//! that can say how many bytes it holds (`Weighed`). `dispatch::Core` owns one `Mesh` and one
//! `SessionSlab`; `server` starts the flusher tasks and feeds received batches to the dispatcher.
//!
//! ## Cross-core message discipline (the only way cores interact)
//! - Cores share nothing mutable. They exchange messages over glommio's channel mesh, batched:
//!   everything one core has for a peer during one turn travels as one `Vec` (a `Batch`).
//! - A message about a name goes to the name's owner core (`owner_of`, the same on every run and
//!   every node). Because each (sender core → owner core) channel is FIFO and a session lives on
//!   one core, the messages of one session about one name are handled in the order it sent them.
//! - Replies to one session travel back to the session's core; fan-out travels as one message
//!   per subscriber core carrying that core's subscriber list by reference.
//! - A message that reaches a session which has already closed is dropped (the slab generation
//!   does not match).
//! - Mesh receivers always drain (if they waited on each other, two busy cores could deadlock).
//!   Back-pressure is applied where input enters: a batch carries at most `BATCH_BYTES`, each
//!   channel holds `CHANNEL_BATCHES` batches, and while more than `PENDING_BYTES` wait on any core
//!   for any peer, that core raises its flag in the process-wide `Congestion` set and *every* core
//!   stops reading its sockets (`Mesh::wait_uncongested`) until the flags clear. Input can be
//!   amplified on another core (one emit, a thousand subscribers), so the pause must be global.
//!   The flags are the only atomics on the message path: one relaxed load per socket read, a
//!   store only when a core enters or leaves congestion.
//!
//! What travels, and which module handles each kind, is listed in `dispatch`.

mod outbox;
mod slab;

pub use outbox::{Outbox, Part, ShareAs};
pub use slab::{Heartbeat, HeartbeatTick, PortState, SessionPort, SessionSlab, SlowConsumer};

use glommio::channels::channel_mesh::Senders;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Duration;

/// A message the mesh can carry: it says roughly how many bytes it holds.
pub trait Weighed {
    fn weight(&self) -> usize;
}

/// Capacity of each mesh channel, in batches.
pub const CHANNEL_BATCHES: usize = 16;
/// Most bytes one batch carries.
const BATCH_BYTES: usize = 256 * 1024;
/// Past this many bytes waiting for one peer, connections stop reading until it drains.
const PENDING_BYTES: usize = 4 * 1024 * 1024;

/// One flag per core: "my queues to other cores are over their limit". Shared by every core.
pub struct Congestion {
    flags: Vec<AtomicBool>,
}

impl Congestion {
    pub fn new(cores: usize) -> Arc<Congestion> {
        Arc::new(Congestion {
            flags: (0..cores).map(|_| AtomicBool::new(false)).collect(),
        })
    }

    pub fn any(&self) -> bool {
        self.flags.iter().any(|flag| flag.load(Ordering::Relaxed))
    }

    fn set(&self, core: usize, congested: bool) {
        self.flags[core].store(congested, Ordering::Relaxed);
    }
}

/// Fixed seeds: the placement of names on cores is the same on every run and every node.
fn name_hasher() -> ahash::RandomState {
    ahash::RandomState::with_seeds(
        0x636f_7265_7374_7265,
        0x616d_2d6f_776e_6572,
        0x6279_2d6e_616d_6521,
        0x0123_4567_89ab_cdef,
    )
}

/// The owner core of a name.
pub fn owner_of(name: &[u8], cores: usize) -> usize {
    (name_hasher().hash_one(name) % cores as u64) as usize
}

/// The message was not queued: it names a core this process does not have (only a message
/// from another node can).
#[derive(Debug, PartialEq, Eq)]
pub struct NoSuchCore(pub usize);

/// One core's end of the mesh: its queues for every peer and its congestion flag.
pub struct Mesh<M> {
    id: usize,
    cores: usize,
    hasher: ahash::RandomState,
    outgoing: RefCell<Vec<VecDeque<(M, usize)>>>,
    outgoing_bytes: RefCell<Vec<usize>>,
    flusher_wakers: RefCell<Vec<Option<Waker>>>,
    congestion: Arc<Congestion>,
    /// Whether this core's flag in `congestion` is raised.
    congested: Cell<bool>,
}

impl<M: Weighed + Send> Mesh<M> {
    pub fn new(id: usize, cores: usize, congestion: Arc<Congestion>) -> Mesh<M> {
        Mesh {
            id,
            cores,
            hasher: name_hasher(),
            outgoing: RefCell::new((0..cores).map(|_| VecDeque::new()).collect()),
            outgoing_bytes: RefCell::new(vec![0; cores]),
            flusher_wakers: RefCell::new((0..cores).map(|_| None).collect()),
            congestion,
            congested: Cell::new(false),
        }
    }

    pub fn id(&self) -> usize {
        self.id
    }

    pub fn cores(&self) -> usize {
        self.cores
    }

    /// The owner core of a name.
    pub fn owner(&self, name: &[u8]) -> usize {
        (self.hasher.hash_one(name) % self.cores as u64) as usize
    }

    /// Bytes waiting in this core's queues for other cores.
    pub fn queued_bytes(&self) -> usize {
        self.outgoing_bytes.borrow().iter().sum()
    }

    /// Queues a message for `core` (never this one: the dispatcher handles those directly).
    pub fn queue_for(&self, core: usize, message: M) -> Result<(), NoSuchCore> {
        if core >= self.cores {
            return Err(NoSuchCore(core));
        }
        let weight = message.weight();
        let was_empty = {
            let mut outgoing = self.outgoing.borrow_mut();
            let queue = &mut outgoing[core];
            queue.push_back((message, weight));
            queue.len() == 1
        };
        let pending = {
            let mut outgoing_bytes = self.outgoing_bytes.borrow_mut();
            outgoing_bytes[core] += weight;
            outgoing_bytes[core]
        };
        if pending > PENDING_BYTES && !self.congested.get() {
            self.congested.set(true);
            self.congestion.set(self.id, true);
        }
        if was_empty {
            if let Some(waker) = self.flusher_wakers.borrow_mut()[core].take() {
                waker.wake();
            }
        }
        Ok(())
    }

    /// Waits until no core in the process is congested (see the module doc). Free when none is.
    /// Whether any core's queue is over its limit (readers hold off until it clears).
    pub fn congested(&self) -> bool {
        self.congestion.any()
    }

    pub async fn wait_uncongested(&self) {
        while self.congested() {
            glommio::timer::sleep(Duration::from_micros(500)).await;
        }
    }

    /// Waits until there is something for `peer` and takes up to `BATCH_BYTES` of it.
    fn next_batch(&self, peer: usize) -> impl Future<Output = Vec<M>> + '_ {
        futures_lite::future::poll_fn(move |context| {
            let mut outgoing = self.outgoing.borrow_mut();
            let queue = &mut outgoing[peer];
            if queue.is_empty() {
                self.flusher_wakers.borrow_mut()[peer] = Some(context.waker().clone());
                return Poll::Pending;
            }
            let mut batch = Vec::new();
            let mut taken = 0;
            while let Some((message, weight)) = queue.pop_front() {
                taken += weight;
                batch.push(message);
                if taken >= BATCH_BYTES {
                    break;
                }
            }
            drop(outgoing);
            self.taken(peer, taken);
            Poll::Ready(batch)
        })
    }

    /// Accounts for `taken` bytes leaving the queue for `peer`; lowers the flag when every
    /// queue is back under its limit.
    fn taken(&self, peer: usize, taken: usize) {
        self.outgoing_bytes.borrow_mut()[peer] -= taken;
        if self.congested.get()
            && self
                .outgoing_bytes
                .borrow()
                .iter()
                .all(|bytes| *bytes <= PENDING_BYTES)
        {
            self.congested.set(false);
            self.congestion.set(self.id, false);
        }
    }

    /// The task that moves batches for `peer` into the glommio channel mesh.
    pub async fn run_flusher(self: Rc<Self>, peer: usize, senders: Rc<Senders<Vec<M>>>) {
        loop {
            let batch = self.next_batch(peer).await;
            if senders.send_to(peer, batch).await.is_err() {
                crate::error!("the mesh channel to core {peer} is closed; dropping its messages");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Sized(usize);

    impl Weighed for Sized {
        fn weight(&self) -> usize {
            self.0
        }
    }

    #[test]
    fn owner_is_stable_and_in_range() {
        for cores in 1..8 {
            let owner = owner_of(b"some/record", cores);
            assert!(owner < cores);
            assert_eq!(owner, owner_of(b"some/record", cores));
            let mesh: Mesh<Sized> = Mesh::new(0, cores, Congestion::new(cores));
            assert_eq!(mesh.owner(b"some/record"), owner);
        }
    }

    #[test]
    fn a_core_past_its_queue_limit_raises_its_flag_until_drained() {
        let congestion = Congestion::new(2);
        let mesh: Mesh<Sized> = Mesh::new(0, 2, Arc::clone(&congestion));
        assert_eq!(mesh.queue_for(5, Sized(1)), Err(NoSuchCore(5)));
        mesh.queue_for(1, Sized(PENDING_BYTES)).unwrap();
        assert!(!congestion.any());
        mesh.queue_for(1, Sized(1)).unwrap();
        assert!(congestion.any());
        assert_eq!(mesh.queued_bytes(), PENDING_BYTES + 1);
        let batch = futures_lite::future::block_on(mesh.next_batch(1));
        assert_eq!(batch.len(), 1, "a batch stops once it carries BATCH_BYTES");
        assert!(
            !congestion.any(),
            "back under the limit: the flag is lowered"
        );
        assert_eq!(mesh.queued_bytes(), 1);
    }
}
