//! Presence (PROTOCOL.md §3.6, 2.x dialect only): who is logged in.
//!
//! Logins change rarely and every query must answer with the whole process's users, so every
//! core keeps a full replica of the per-username login counts: a login or logout is broadcast to
//! all cores, and each core notifies its own presence subscribers when a username's count goes
//! 0 → 1 (`U|PNJ|<user>`) or 1 → 0 (`U|PNL|<user>`). A query is answered from the local replica
//! with every logged-in username except the caller's own, once every other core has passed a
//! barrier (so it lists every login whose `A|A` went out before the query; `begin_query`).
//!
//! Only sessions whose username is not `OPEN` count (2.x open auth names anonymous users
//! `open`, which does count). deepstream 2.4.1 ignores the per-user subscriptions of the 2.3.4
//! client (`U|S|<cid>|[...]`) and subscribes globally; so do we.

use super::Effects;
use crate::base::address::SessionRef;
use crate::protocol::message::build_message;
use ahash::AHashMap;
use bytes::Bytes;
use std::sync::Arc;

const CODE: &[u8] = b"U";

fn message(fields: &[&[u8]]) -> Bytes {
    Bytes::from(build_message(fields))
}

/// Does a session with this username count for presence?
pub fn counts_for_presence(username: &str) -> bool {
    username != "OPEN"
}

#[derive(Default)]
pub struct PresenceReplica {
    /// Logged-in sessions per username, process-wide.
    logins: AHashMap<String, u32>,
    /// This core's sessions subscribed to presence.
    subscribers: Vec<SessionRef>,
    /// `U|Q` queries waiting for every other core's barrier (see `begin_query`).
    queries: AHashMap<u64, PendingQuery>,
    next_query: u64,
}

/// A query answered once every other core has passed its barrier.
struct PendingQuery {
    session: SessionRef,
    own: Arc<str>,
    cores_left: usize,
}

impl PresenceReplica {
    /// (usernames online, local subscribers)
    pub fn size(&self) -> (usize, usize) {
        (self.logins.len(), self.subscribers.len())
    }

    fn notify(&self, action: &[u8], username: &str, effects: &mut Effects) {
        if self.subscribers.is_empty() {
            return;
        }
        let bytes = message(&[CODE, action, username.as_bytes()]);
        for subscriber in &self.subscribers {
            effects.send(*subscriber, bytes.clone());
        }
    }

    pub fn login(&mut self, username: &str, effects: &mut Effects) {
        let count = self.logins.entry(username.to_string()).or_insert(0);
        *count += 1;
        if *count == 1 {
            self.notify(b"PNJ", username, effects);
        }
    }

    pub fn logout(&mut self, username: &str, effects: &mut Effects) {
        let Some(count) = self.logins.get_mut(username) else {
            return;
        };
        *count -= 1;
        if *count == 0 {
            self.logins.remove(username);
            self.notify(b"PNL", username, effects);
        }
    }

    /// `U|S`: the ack's name is always `U`.
    pub fn subscribe(&mut self, session: SessionRef, effects: &mut Effects) {
        if !self.subscribers.contains(&session) {
            self.subscribers.push(session);
        }
        effects.send(session, message(&[CODE, b"A", b"S", b"U"]));
    }

    pub fn unsubscribe(&mut self, session: SessionRef, silent: bool, effects: &mut Effects) {
        self.subscribers.retain(|subscriber| *subscriber != session);
        if !silent {
            effects.send(session, message(&[CODE, b"A", b"US", b"U"]));
        }
    }

    /// Starts a `U|Q` that must first hear from `other_cores` cores; returns its id.
    ///
    /// A login is broadcast to the replicas as its `A|A` goes out, so a client that saw another
    /// client log in may ask before this core's replica heard of it. Each other core passes a
    /// barrier back through the same FIFO channel that carries its login broadcasts: once all
    /// have, the replica holds every login that was acknowledged before the query was sent.
    pub fn begin_query(&mut self, session: SessionRef, own: Arc<str>, other_cores: usize) -> u64 {
        let id = self.next_query;
        self.next_query += 1;
        self.queries.insert(
            id,
            PendingQuery {
                session,
                own,
                cores_left: other_cores,
            },
        );
        id
    }

    /// One core passed query `id`'s barrier: answers it when it was the last one.
    pub fn barrier_passed(&mut self, id: u64, effects: &mut Effects) {
        let Some(pending) = self.queries.get_mut(&id) else {
            return;
        };
        pending.cores_left = pending.cores_left.saturating_sub(1);
        if pending.cores_left == 0 {
            if let Some(done) = self.queries.remove(&id) {
                self.query(done.session, &done.own, effects);
            }
        }
    }

    /// A closing session's queries will never be answered.
    pub fn forget_queries(&mut self, session: SessionRef) {
        self.queries.retain(|_, pending| pending.session != session);
    }

    /// `U|Q`: everyone logged in but the caller's own username.
    pub fn query(&self, session: SessionRef, own: &str, effects: &mut Effects) {
        let mut users: Vec<&str> = self
            .logins
            .keys()
            .map(String::as_str)
            .filter(|user| *user != own)
            .collect();
        users.sort_unstable();
        let mut fields: Vec<&[u8]> = vec![CODE, b"Q"];
        fields.extend(users.iter().map(|user| user.as_bytes()));
        effects.send(session, message(&fields));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::test_support::{sent, session};

    #[test]
    fn first_login_and_last_logout_are_announced_once() {
        let mut presence = PresenceReplica::default();
        let mut effects = Effects::default();
        presence.subscribe(session(1), &mut effects);
        assert_eq!(sent(&effects), vec![(1, "U|A|S|U+".to_string())]);
        let mut effects = Effects::default();
        presence.login("alice", &mut effects);
        presence.login("alice", &mut effects);
        presence.login("bob", &mut effects);
        assert_eq!(
            sent(&effects),
            vec![
                (1, "U|PNJ|alice+".to_string()),
                (1, "U|PNJ|bob+".to_string())
            ]
        );
        let mut effects = Effects::default();
        presence.query(session(1), "bob", &mut effects);
        assert_eq!(sent(&effects), vec![(1, "U|Q|alice+".to_string())]);
        let mut effects = Effects::default();
        presence.logout("alice", &mut effects);
        assert!(sent(&effects).is_empty(), "alice still has a session");
        presence.logout("alice", &mut effects);
        assert_eq!(sent(&effects), vec![(1, "U|PNL|alice+".to_string())]);
        let mut effects = Effects::default();
        presence.query(session(1), "bob", &mut effects);
        assert_eq!(sent(&effects), vec![(1, "U|Q+".to_string())]);
        assert!(!counts_for_presence("OPEN"));
        assert!(counts_for_presence("open"));
    }

    #[test]
    fn a_query_is_answered_once_every_other_core_passed_its_barrier() {
        let mut presence = PresenceReplica::default();
        let mut effects = Effects::default();
        let first = presence.begin_query(session(1), Arc::from("alice"), 2);
        let second = presence.begin_query(session(1), Arc::from("alice"), 2);
        presence.barrier_passed(first, &mut effects);
        presence.login("bob", &mut effects);
        presence.barrier_passed(second, &mut effects);
        assert!(
            sent(&effects).is_empty(),
            "one core has not passed either barrier"
        );
        presence.barrier_passed(first, &mut effects);
        assert_eq!(sent(&effects), vec![(1, "U|Q|bob+".to_string())]);
        presence.forget_queries(session(1));
        let mut effects = Effects::default();
        presence.barrier_passed(second, &mut effects);
        assert!(
            sent(&effects).is_empty(),
            "a closed session's query is dropped"
        );
        assert!(presence.queries.is_empty());
    }
}
