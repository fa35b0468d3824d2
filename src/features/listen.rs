//! Listening (PROTOCOL.md §3.3 "Listening, in detail"): providers that offer to serve names
//! matching a pattern.
//!
//! Two parts. `ListenPatterns` is the pattern registry: every core keeps a full copy (listens
//! change rarely and every owner core must match its names against every pattern). `ListenState`
//! is the discovery state of one name, kept by the name's owner core: the active provider, the
//! candidates still to ask, the one asked now, and the ones that timed out (a late accept from
//! them is still honoured). The owner core's `TopicRegistry` drives both.
//!
//! Where deepstream 1.1.1 misbehaves we do the sensible thing (see README, "Deliberate
//! differences"): a reject always moves on to the next candidate at once (1.1.1 can wait for a
//! stale timer), a late accept when nobody else provides makes the late listener the provider
//! (1.1.1 forgets it), and discovery stops when the last subscriber leaves (1.1.1 registers a
//! provider for a name nobody wants).

use crate::base::address::SessionRef;
use crate::protocol::actions::Topic;
use bytes::Bytes;
use regex::Regex;
use std::collections::VecDeque;
use std::sync::Arc;

/// A listener's `LA` / `LR` (`accept`) for a name it was offered: one shape for every hop it
/// makes (the listener's core to the name's owner core; in a cluster, the owner core of a
/// follower node to the cluster seam, the node wire and the leader's owner core).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenResponse {
    pub topic: Topic,
    pub accept: bool,
    pub pattern: Arc<str>,
    pub name: Bytes,
    /// The listener (on the leader: the follower node's listener, as that node names it).
    pub session: SessionRef,
    /// The listener's message as it sent it.
    pub raw: Bytes,
}

/// Upper bound on the compiled size of one listen pattern (a hostile pattern must not eat memory).
const PATTERN_SIZE_LIMIT: usize = 256 * 1024;

/// Compiles a listen pattern (JavaScript RegExp source; the common subset is the same in Rust's
/// `regex`). The error text mimics V8's.
pub fn compile_pattern(source: &str) -> Result<Regex, String> {
    regex::RegexBuilder::new(source)
        .size_limit(PATTERN_SIZE_LIMIT)
        .build()
        .map_err(|error| {
            let reason = error.to_string();
            let reason = reason.lines().last().unwrap_or("invalid pattern").trim();
            format!("SyntaxError: Invalid regular expression: /{source}/: {reason}")
        })
}

/// A listener: one session listening on one pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub pattern: Arc<str>,
    pub session: SessionRef,
}

struct PatternEntry {
    source: Arc<str>,
    regex: Regex,
    listeners: Vec<SessionRef>,
}

/// Every listen pattern of one topic, with its listeners in the order they listened.
#[derive(Default)]
pub struct ListenPatterns {
    entries: Vec<PatternEntry>,
}

impl ListenPatterns {
    /// Registers a listener. Returns the compiled pattern when the listener is new.
    pub fn add(&mut self, source: &Arc<str>, session: SessionRef) -> Option<Regex> {
        if let Some(entry) = self.entries.iter_mut().find(|e| *e.source == **source) {
            if entry.listeners.contains(&session) {
                return None;
            }
            entry.listeners.push(session);
            return Some(entry.regex.clone());
        }
        // The session core validated the pattern already; a failure here cannot happen for the
        // same source, but is handled as "not registered" rather than a panic.
        let regex = compile_pattern(source).ok()?;
        self.entries.push(PatternEntry {
            source: Arc::clone(source),
            regex: regex.clone(),
            listeners: vec![session],
        });
        Some(regex)
    }

    /// Removes a listener; `true` if it was registered.
    pub fn remove(&mut self, source: &str, session: SessionRef) -> bool {
        let Some(position) = self.entries.iter().position(|e| &*e.source == source) else {
            return false;
        };
        let entry = &mut self.entries[position];
        let before = entry.listeners.len();
        entry.listeners.retain(|listener| *listener != session);
        let removed = entry.listeners.len() != before;
        if entry.listeners.is_empty() {
            self.entries.remove(position);
        }
        removed
    }

    /// Does `session` listen on `source`, and does that pattern match `name`?
    pub fn is_listener_for(&self, source: &str, session: SessionRef, name: &str) -> bool {
        self.entries.iter().any(|entry| {
            &*entry.source == source
                && entry.listeners.contains(&session)
                && entry.regex.is_match(name)
        })
    }

    /// Every listener whose pattern matches `name`, patterns in registration order.
    pub fn matching(&self, name: &str) -> VecDeque<Candidate> {
        let mut candidates = VecDeque::new();
        for entry in &self.entries {
            if entry.regex.is_match(name) {
                for session in &entry.listeners {
                    candidates.push_back(Candidate {
                        pattern: Arc::clone(&entry.source),
                        session: *session,
                    });
                }
            }
        }
        candidates
    }

    /// Every (pattern, listener) pair, patterns in registration order.
    pub fn listeners(&self) -> Vec<(Arc<str>, SessionRef)> {
        self.entries
            .iter()
            .flat_map(|entry| {
                entry
                    .listeners
                    .iter()
                    .map(|session| (Arc::clone(&entry.source), *session))
            })
            .collect()
    }

    /// Number of (pattern, listener) pairs.
    pub fn listener_count(&self) -> usize {
        self.entries.iter().map(|entry| entry.listeners.len()).sum()
    }
}

/// Discovery state of one name on its owner core.
#[derive(Debug, Default)]
pub struct ListenState {
    pub provider: Option<Candidate>,
    /// `Some` while discovery runs: the candidates still to ask.
    pub queue: Option<VecDeque<Candidate>>,
    /// The candidate asked now (its timer runs).
    pub current: Option<Candidate>,
    /// Candidates that did not answer in time; they may still accept late.
    pub timed_out: Vec<Candidate>,
}

impl ListenState {
    pub fn in_progress(&self) -> bool {
        self.queue.is_some()
    }

    pub fn is_idle(&self) -> bool {
        self.provider.is_none()
            && self.queue.is_none()
            && self.current.is_none()
            && self.timed_out.is_empty()
    }

    /// Forgets a listener everywhere in this state. Returns (was current, was provider).
    pub fn forget(&mut self, pattern: &str, session: SessionRef) -> (bool, bool) {
        let matches =
            |candidate: &Candidate| candidate.session == session && &*candidate.pattern == pattern;
        if let Some(queue) = self.queue.as_mut() {
            queue.retain(|candidate| !matches(candidate));
        }
        self.timed_out.retain(|candidate| !matches(candidate));
        let was_current = self.current.as_ref().is_some_and(matches);
        if was_current {
            self.current = None;
        }
        let was_provider = self.provider.as_ref().is_some_and(matches);
        if was_provider {
            self.provider = None;
        }
        (was_current, was_provider)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::test_support::session;

    #[test]
    fn patterns_match_in_registration_order() {
        let mut patterns = ListenPatterns::default();
        let news: Arc<str> = Arc::from("news/.*");
        let all: Arc<str> = Arc::from(".*");
        assert!(patterns.add(&news, session(1)).is_some());
        assert!(patterns.add(&news, session(1)).is_none(), "duplicate");
        assert!(patterns.add(&all, session(2)).is_some());
        assert!(patterns.add(&news, session(3)).is_some());
        let order: Vec<u32> = patterns
            .matching("news/sport")
            .iter()
            .map(|c| c.session.slot)
            .collect();
        assert_eq!(order, vec![1, 3, 2]);
        assert_eq!(patterns.matching("weather").len(), 1);
        assert!(patterns.remove("news/.*", session(1)));
        assert!(!patterns.remove("news/.*", session(1)));
        assert_eq!(patterns.listener_count(), 2);
    }

    #[test]
    fn invalid_patterns_are_reported_like_v8() {
        let error = compile_pattern("a(").expect_err("invalid");
        assert!(error.starts_with("SyntaxError: Invalid regular expression: /a(/: "));
    }
}
