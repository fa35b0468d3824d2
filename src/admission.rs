//! Per-client-address limits shared by every core: engine.io sessions (in total and per
//! address) and failed logins per address (`maxAuthAttemptsPerAddress` in `authAttemptsWindow`).
//!
//! One `Admission` per process, behind an `Arc` in every `Core`. It is consulted when a session
//! starts and when a login fails: rare events next to messages, so a mutex is fine here (it is
//! never touched on the message path). Called by the engine.io port (`ports::engineio`) and the
//! session (`session`, at login).

use crate::base::config::Limits;
use ahash::AHashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// Most addresses remembered for failed logins; past it, expired entries are dropped first and
/// then the table is cleared (an attacker with that many addresses gains one fresh window).
const MAX_TRACKED_ADDRESSES: usize = 100_000;

#[derive(Default)]
struct EngineioCounts {
    total: usize,
    by_address: AHashMap<IpAddr, usize>,
}

/// Why an engine.io session was not opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `maxEngineioSessions` sessions are open on this node.
    NodeFull,
    /// `maxEngineioSessionsPerAddress` sessions are open from this address.
    AddressFull,
}

pub struct Admission {
    limits: Limits,
    engineio: Mutex<EngineioCounts>,
    /// address -> (start of its window, failed logins in it)
    auth_failures: Mutex<AHashMap<IpAddr, (Instant, u32)>>,
}

/// Locks a mutex; a panic elsewhere while holding it leaves plain counters behind, which
/// stay usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Admission {
    pub fn new(limits: &Limits) -> Arc<Admission> {
        Arc::new(Admission {
            limits: limits.clone(),
            engineio: Mutex::new(EngineioCounts::default()),
            auth_failures: Mutex::new(AHashMap::new()),
        })
    }

    /// Counts one more engine.io session from `address`, unless a limit is reached. The
    /// returned ticket gives the place back when dropped.
    pub fn open_engineio(
        self: &Arc<Self>,
        address: Option<IpAddr>,
    ) -> Result<EngineioTicket, Refusal> {
        let mut counts = lock(&self.engineio);
        if counts.total >= self.limits.max_engineio_sessions {
            return Err(Refusal::NodeFull);
        }
        if let Some(address) = address {
            let open = counts.by_address.entry(address).or_insert(0);
            if *open >= self.limits.max_engineio_sessions_per_address {
                return Err(Refusal::AddressFull);
            }
            *open += 1;
        }
        counts.total += 1;
        Ok(EngineioTicket {
            admission: Arc::clone(self),
            address,
        })
    }

    fn close_engineio(&self, address: Option<IpAddr>) {
        let mut counts = lock(&self.engineio);
        counts.total = counts.total.saturating_sub(1);
        if let Some(address) = address {
            if let Some(open) = counts.by_address.get_mut(&address) {
                *open -= 1;
                if *open == 0 {
                    counts.by_address.remove(&address);
                }
            }
        }
    }

    /// May `address` try to log in now? False while it is over `maxAuthAttemptsPerAddress`
    /// failed logins within the current `authAttemptsWindow`.
    pub fn login_allowed(&self, address: Option<IpAddr>) -> bool {
        let Some(address) = address else {
            return true;
        };
        let failures = lock(&self.auth_failures);
        match failures.get(&address) {
            Some((since, count)) => {
                since.elapsed() >= self.limits.auth_attempts_window
                    || *count < self.limits.max_auth_attempts_per_address
            }
            None => true,
        }
    }

    /// Counts a failed login from `address`.
    pub fn login_failed(&self, address: Option<IpAddr>) {
        let Some(address) = address else {
            return;
        };
        let window = self.limits.auth_attempts_window;
        let mut failures = lock(&self.auth_failures);
        if failures.len() >= MAX_TRACKED_ADDRESSES && !failures.contains_key(&address) {
            failures.retain(|_, (since, _)| since.elapsed() < window);
            if failures.len() >= MAX_TRACKED_ADDRESSES {
                failures.clear();
            }
        }
        let now = Instant::now();
        let entry = failures.entry(address).or_insert((now, 0));
        if now.duration_since(entry.0) >= window {
            *entry = (now, 0);
        }
        entry.1 += 1;
    }

    /// Engine.io sessions open on this node (for tests and metrics).
    pub fn engineio_sessions(&self) -> usize {
        lock(&self.engineio).total
    }
}

/// One engine.io session's place in the counts; given back on drop.
pub struct EngineioTicket {
    admission: Arc<Admission>,
    address: Option<IpAddr>,
}

impl Drop for EngineioTicket {
    fn drop(&mut self) {
        self.admission.close_engineio(self.address);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits() -> Limits {
        Limits {
            max_engineio_sessions: 3,
            max_engineio_sessions_per_address: 2,
            max_auth_attempts_per_address: 2,
            auth_attempts_window: Duration::from_millis(200),
            ..Limits::default()
        }
    }

    #[test]
    fn engineio_sessions_are_bounded_per_address_and_in_total() {
        let admission = Admission::new(&limits());
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.2".parse().expect("ip");
        let first = admission.open_engineio(Some(a)).expect("first");
        let _second = admission.open_engineio(Some(a)).expect("second");
        assert_eq!(
            admission.open_engineio(Some(a)).err(),
            Some(Refusal::AddressFull)
        );
        let _third = admission.open_engineio(Some(b)).expect("third");
        assert_eq!(
            admission.open_engineio(Some(b)).err(),
            Some(Refusal::NodeFull)
        );
        drop(first);
        assert_eq!(admission.engineio_sessions(), 2);
        assert!(admission.open_engineio(Some(a)).is_ok());
    }

    #[test]
    fn failed_logins_close_an_address_for_the_window() {
        let admission = Admission::new(&limits());
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        assert!(admission.login_allowed(Some(a)));
        admission.login_failed(Some(a));
        assert!(admission.login_allowed(Some(a)));
        admission.login_failed(Some(a));
        assert!(!admission.login_allowed(Some(a)));
        assert!(admission.login_allowed(Some("10.0.0.9".parse().expect("ip"))));
        std::thread::sleep(Duration::from_millis(250));
        assert!(admission.login_allowed(Some(a)), "a new window");
    }
}
