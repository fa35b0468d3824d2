//! The subscribers of one name, kept on the name's owner core.
//!
//! Subscribers are grouped by the core their session lives on, each group an `Arc<Vec<_>>` so a
//! fan-out sends one mesh message per subscriber core that carries the whole group by reference
//! (copy-on-write when the group changes while a fan-out is still in flight). A map from session
//! to its index makes subscribe and unsubscribe O(1).

use super::{Effect, Effects};
use crate::base::address::SessionRef;
use ahash::AHashMap;
use bytes::Bytes;
use std::sync::Arc;

#[derive(Debug)]
pub struct Subscribers {
    by_core: Vec<Arc<Vec<SessionRef>>>,
    index: AHashMap<SessionRef, usize>,
}

impl Subscribers {
    pub fn new(cores: usize) -> Self {
        Subscribers {
            by_core: (0..cores).map(|_| Arc::new(Vec::new())).collect(),
            index: AHashMap::new(),
        }
    }

    pub fn count(&self) -> usize {
        self.index.len()
    }

    pub fn contains(&self, session: SessionRef) -> bool {
        self.index.contains_key(&session)
    }

    /// Adds a subscriber; `false` if it was already there.
    pub fn add(&mut self, session: SessionRef) -> bool {
        if self.index.contains_key(&session) {
            return false;
        }
        let group = Arc::make_mut(&mut self.by_core[usize::from(session.core)]);
        self.index.insert(session, group.len());
        group.push(session);
        true
    }

    /// Removes a subscriber; `false` if it was not there.
    pub fn remove(&mut self, session: SessionRef) -> bool {
        let Some(position) = self.index.remove(&session) else {
            return false;
        };
        let group = Arc::make_mut(&mut self.by_core[usize::from(session.core)]);
        group.swap_remove(position);
        if let Some(moved) = group.get(position) {
            self.index.insert(*moved, position);
        }
        true
    }

    /// Every subscriber.
    pub fn all(&self) -> Vec<SessionRef> {
        self.index.keys().copied().collect()
    }

    /// The only subscriber, when there is exactly one.
    pub fn only(&self) -> Option<SessionRef> {
        if self.index.len() == 1 {
            self.index.keys().next().copied()
        } else {
            None
        }
    }

    /// One fan-out effect per core that has subscribers (other than `exclude` alone).
    pub fn fanout(&self, exclude: Option<SessionRef>, bytes: &Bytes, effects: &mut Effects) {
        for (core, group) in self.by_core.iter().enumerate() {
            let empty_after_exclude = match exclude {
                Some(excluded) => group.len() == 1 && group[0] == excluded,
                None => false,
            };
            if group.is_empty() || empty_after_exclude {
                continue;
            }
            effects.push(Effect::Fanout {
                core,
                targets: Arc::clone(group),
                exclude,
                bytes: bytes.clone(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(core: u16, slot: u32) -> SessionRef {
        SessionRef {
            core,
            slot,
            generation: 1,
        }
    }

    #[test]
    fn add_remove_and_fanout_per_core() {
        let mut subscribers = Subscribers::new(2);
        assert!(subscribers.add(session(0, 1)));
        assert!(!subscribers.add(session(0, 1)));
        assert!(subscribers.add(session(0, 2)));
        assert!(subscribers.add(session(1, 1)));
        assert_eq!(subscribers.count(), 3);
        let mut effects = Effects::default();
        subscribers.fanout(Some(session(1, 1)), &Bytes::from_static(b"x"), &mut effects);
        assert_eq!(effects.list.len(), 1, "core 1 only has the sender");
        assert!(subscribers.remove(session(0, 1)));
        assert!(!subscribers.remove(session(0, 1)));
        assert!(subscribers.contains(session(0, 2)));
        assert!(subscribers.remove(session(0, 2)));
        assert_eq!(subscribers.only(), Some(session(1, 1)));
    }
}
