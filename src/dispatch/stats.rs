//! Stats: `/metrics` and `/health-check` ask every core for its `CoreStats` and wait (bounded)
//! for the answers.

use super::Core;
use crate::metrics::CoreStats;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

#[derive(Debug)]
pub enum StatsMessage {
    /// A core asks every other core for its stats.
    Request {
        reply_to: usize,
        request: u64,
    },
    Reply {
        request: u64,
        stats: Box<CoreStats>,
    },
}

/// A `/metrics` request waiting for other cores' stats.
pub(super) struct StatsWaiter {
    collected: Vec<CoreStats>,
    waker: Option<std::task::Waker>,
}

impl Core {
    pub(super) fn handle_stats(self: &Rc<Self>, message: StatsMessage) {
        match message {
            StatsMessage::Request { reply_to, request } => {
                let stats = Box::new(self.stats());
                self.route(reply_to, StatsMessage::Reply { request, stats });
            }
            StatsMessage::Reply { request, stats } => {
                if let Some(waiter) = self.waiters.stats.borrow_mut().get_mut(&request) {
                    waiter.collected.push(*stats);
                    if let Some(waker) = waiter.waker.take() {
                        waker.wake();
                    }
                }
            }
        }
    }

    /// What this core holds and has counted.
    pub fn stats(&self) -> CoreStats {
        let features = &self.features;
        let mut stats = CoreStats {
            core: self.id,
            sessions: self.outbound.sessions.borrow().len(),
            events: features.events.borrow().size(),
            records: features.records.borrow().size().0,
            record_subscriptions: features.records.borrow().size().1,
            rpc: features.rpc.borrow().size(),
            presence: features.presence.borrow().size(),
            listen_timers: self.timers.listen.borrow().len(),
            cross_core_queue_bytes: self.mesh.queued_bytes() as u64,
            cluster: self
                .cluster
                .get()
                .map(|cluster| cluster.stats())
                .unwrap_or_default(),
            ..CoreStats::default()
        };
        self.counters.fill(&mut stats);
        stats
    }

    /// Every core's stats (this one's included), for `/metrics`; cores that do not answer
    /// within a second are left out.
    pub async fn gather_stats(self: &Rc<Self>) -> Vec<CoreStats> {
        self.gather_stats_within(Duration::from_secs(1)).await
    }

    /// Every core's stats that arrive within `wait` (a missing core did not answer in time).
    pub async fn gather_stats_within(self: &Rc<Self>, wait: Duration) -> Vec<CoreStats> {
        let request = self.waiters.next_request();
        let waiter = StatsWaiter {
            collected: vec![self.stats()],
            waker: None,
        };
        self.waiters.stats.borrow_mut().insert(request, waiter);
        for core in (0..self.cores()).filter(|core| *core != self.id) {
            let reply_to = self.id;
            self.queue_for(core, StatsMessage::Request { reply_to, request }.into());
        }
        let all_answered = futures_lite::future::poll_fn(|context| {
            let mut waiters = self.waiters.stats.borrow_mut();
            match waiters.get_mut(&request) {
                Some(waiter) if waiter.collected.len() < self.cores() => {
                    waiter.waker = Some(context.waker().clone());
                    Poll::Pending
                }
                _ => Poll::Ready(()),
            }
        });
        futures_lite::future::or(all_answered, glommio::timer::sleep(wait)).await;
        let waiter = self.waiters.stats.borrow_mut().remove(&request);
        waiter.map(|waiter| waiter.collected).unwrap_or_default()
    }
}
