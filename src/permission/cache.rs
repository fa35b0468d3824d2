//! The per-core cache of rule results that depend only on the name and the user (issue 10):
//! a rule that reads neither `data`, `oldData`, `_()`, `now` nor `action` gives the same answer
//! for the same name and user every time, so the path match and the evaluation are done once.
//!
//! One `RuleCache` per core (`dispatch::Core` owns it; the session's checks and the record
//! guard on the owner core use it). A user is the `Arc` its session built at login: an entry
//! keeps that `Arc`, so its address cannot be reused by another user's while the entry lives.
//! Bounded: emptied every `cacheEvacuationInterval` (deepstream's key, default 60 s) and when
//! it holds `MAX_ENTRIES`. Only `Allow` and `Deny` are kept (a rule error is logged each time).

use super::value::Value;
use super::{Decision, RuleType, Section};
use ahash::{AHashMap, RandomState};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most results one core keeps.
pub const MAX_ENTRIES: usize = 65_536;

struct Entry {
    section: Section,
    rule_type: RuleType,
    name: Box<str>,
    user: Arc<Value>,
    allowed: bool,
}

impl Entry {
    fn is(&self, section: Section, rule_type: RuleType, name: &str, user: &Arc<Value>) -> bool {
        self.section == section
            && self.rule_type == rule_type
            && Arc::ptr_eq(&self.user, user)
            && &*self.name == name
    }
}

/// One core's cached rule results.
pub struct RuleCache {
    /// By a hash of (section, rule type, name, user): the entries with that hash.
    entries: AHashMap<u64, Vec<Entry>>,
    len: usize,
    hasher: RandomState,
    emptied: Instant,
    evacuation: Duration,
}

impl RuleCache {
    pub fn new(evacuation: Duration) -> RuleCache {
        RuleCache {
            entries: AHashMap::new(),
            len: 0,
            hasher: RandomState::new(),
            emptied: Instant::now(),
            evacuation,
        }
    }

    fn key(&self, section: Section, rule_type: RuleType, name: &str, user: &Arc<Value>) -> u64 {
        self.hasher
            .hash_one((section, rule_type, name, Arc::as_ptr(user) as usize))
    }

    /// The cached result, if any.
    pub fn get(
        &mut self,
        section: Section,
        rule_type: RuleType,
        name: &str,
        user: &Arc<Value>,
    ) -> Option<Decision> {
        if self.len == 0 {
            return None;
        }
        if self.emptied.elapsed() >= self.evacuation {
            self.clear();
            return None;
        }
        let key = self.key(section, rule_type, name, user);
        let entry = self
            .entries
            .get(&key)?
            .iter()
            .find(|entry| entry.is(section, rule_type, name, user))?;
        Some(if entry.allowed {
            Decision::Allow
        } else {
            Decision::Deny
        })
    }

    /// Keeps `decision` (an error is not kept).
    pub fn put(
        &mut self,
        section: Section,
        rule_type: RuleType,
        name: &str,
        user: &Arc<Value>,
        decision: &Decision,
    ) {
        let allowed = match decision {
            Decision::Allow => true,
            Decision::Deny => false,
            Decision::Error(_) => return,
        };
        if self.len >= MAX_ENTRIES || self.emptied.elapsed() >= self.evacuation {
            self.clear();
        }
        let key = self.key(section, rule_type, name, user);
        let slot = self.entries.entry(key).or_default();
        if slot
            .iter()
            .any(|entry| entry.is(section, rule_type, name, user))
        {
            return;
        }
        slot.push(Entry {
            section,
            rule_type,
            name: name.into(),
            user: Arc::clone(user),
            allowed,
        });
        self.len += 1;
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn clear(&mut self) {
        self.entries = AHashMap::new();
        self.len = 0;
        self.emptied = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// deepstream's default `cacheEvacuationInterval`.
    const DEFAULT_EVACUATION: Duration = Duration::from_millis(60_000);

    fn user(id: &str) -> Arc<Value> {
        Arc::new(super::super::rule_user(id, None))
    }

    #[test]
    fn a_result_is_kept_per_name_rule_type_and_user() {
        let mut cache = RuleCache::new(DEFAULT_EVACUATION);
        let (alice, bob) = (user("alice"), user("bob"));
        let (event, subscribe) = (Section::Event, RuleType::Subscribe);
        cache.put(event, subscribe, "private/alice", &alice, &Decision::Allow);
        cache.put(event, subscribe, "private/alice", &bob, &Decision::Deny);
        assert_eq!(
            cache.get(event, subscribe, "private/alice", &alice),
            Some(Decision::Allow)
        );
        assert_eq!(
            cache.get(event, subscribe, "private/alice", &bob),
            Some(Decision::Deny)
        );
        assert_eq!(
            cache.get(event, RuleType::Publish, "private/alice", &alice),
            None
        );
        assert_eq!(
            cache.get(Section::Rpc, subscribe, "private/alice", &alice),
            None
        );
        assert_eq!(cache.get(event, subscribe, "private/bob", &alice), None);
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn a_user_is_its_session_not_its_name() {
        // two logins of "alice" with different server data build two users
        let mut cache = RuleCache::new(DEFAULT_EVACUATION);
        let (first, second) = (user("alice"), user("alice"));
        cache.put(
            Section::Event,
            RuleType::Publish,
            "feed",
            &first,
            &Decision::Allow,
        );
        assert_eq!(
            cache.get(Section::Event, RuleType::Publish, "feed", &second),
            None
        );
    }

    #[test]
    fn errors_are_not_kept_and_the_cache_is_bounded_and_evacuated() {
        let mut cache = RuleCache::new(DEFAULT_EVACUATION);
        let alice = user("alice");
        let error = Decision::Error("x".into());
        cache.put(Section::Event, RuleType::Publish, "a", &alice, &error);
        assert!(cache.is_empty());
        for index in 0..MAX_ENTRIES + 10 {
            let name = format!("n{index}");
            cache.put(
                Section::Event,
                RuleType::Publish,
                &name,
                &alice,
                &Decision::Allow,
            );
        }
        assert!(cache.len() <= MAX_ENTRIES);
        let mut quick = RuleCache::new(Duration::ZERO);
        quick.put(
            Section::Event,
            RuleType::Publish,
            "a",
            &alice,
            &Decision::Allow,
        );
        assert_eq!(
            quick.get(Section::Event, RuleType::Publish, "a", &alice),
            None
        );
    }
}
