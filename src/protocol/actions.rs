//! Topics and actions of the deepstream text protocol (PROTOCOL.md §3).
//!
//! Owns the global action table the server's parser accepts (field 1 of every message) and
//! the per-topic action sets used to answer `UNKNOWN_ACTION`. Called by `protocol::message`
//! (parse-time check) and by the session and feature modules (dispatch).

/// The dialect of a session: decided by the transport it arrived on.
/// TCP and engine.io speak 1.x; the plain WebSocket endpoint speaks 2.x.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    V1,
    V2,
}

/// Actions present in the server's action table in both 1.x and 2.x.
const COMMON_ACTIONS: &[&[u8]] = &[
    b"A", b"R", b"C", b"U", b"P", b"D", b"S", b"US", b"H", b"SN", b"LSN", b"L", b"UL", b"LA",
    b"LR", b"SH", b"SF", b"SP", b"SR", b"CR", b"EVT", b"E", b"REQ", b"RES", b"REJ", b"ST", b"RM",
    b"LV", b"LRQ", b"LRP", b"LRL", b"CH", b"CHR",
];
/// 1.x only: the webrtc actions.
const V1_ACTIONS: &[&[u8]] = &[
    b"RC", b"URC", b"OF", b"AN", b"IC", b"CD", b"CE", b"LC", b"ULC", b"WAC", b"WCA", b"WCR", b"WIA",
];
/// 2.x only.
const V2_ACTIONS: &[&[u8]] = &[b"PI", b"PO", b"HD", b"CU", b"WA", b"PNJ", b"PNL", b"Q"];

/// Is `action` in the server's global action table for this dialect? (PROTOCOL.md §3)
/// `RED` is in neither table: the server never accepts it.
pub fn is_known_action(action: &[u8], dialect: Dialect) -> bool {
    // Every action is 1-3 ASCII bytes; reject anything longer without scanning the tables.
    if action.is_empty() || action.len() > 3 {
        return false;
    }
    COMMON_ACTIONS.contains(&action)
        || match dialect {
            Dialect::V1 => V1_ACTIONS.contains(&action),
            Dialect::V2 => V2_ACTIONS.contains(&action),
        }
}

/// The topics this server handles after login.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    Connection,
    Auth,
    Event,
    Record,
    Rpc,
    Presence,
}

impl Topic {
    /// Maps the topic field to a topic this dialect handles; `None` means `UNKNOWN_TOPIC`.
    pub fn parse(field: &[u8], dialect: Dialect) -> Option<Topic> {
        match field {
            b"C" => Some(Topic::Connection),
            b"A" => Some(Topic::Auth),
            b"E" => Some(Topic::Event),
            b"R" => Some(Topic::Record),
            b"P" => Some(Topic::Rpc),
            b"U" if dialect == Dialect::V2 => Some(Topic::Presence),
            _ => None,
        }
    }

    /// The wire code of this topic.
    pub fn code(self) -> &'static [u8] {
        match self {
            Topic::Connection => b"C",
            Topic::Auth => b"A",
            Topic::Event => b"E",
            Topic::Record => b"R",
            Topic::Rpc => b"P",
            Topic::Presence => b"U",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_table_matches_protocol() {
        assert!(is_known_action(b"EVT", Dialect::V1));
        assert!(is_known_action(b"CHR", Dialect::V2));
        assert!(is_known_action(b"WIA", Dialect::V1));
        assert!(!is_known_action(b"WIA", Dialect::V2));
        assert!(is_known_action(b"HD", Dialect::V2));
        assert!(!is_known_action(b"HD", Dialect::V1));
        assert!(!is_known_action(b"RED", Dialect::V1));
        assert!(!is_known_action(b"RED", Dialect::V2));
        assert!(!is_known_action(b"ZZ", Dialect::V1));
        assert!(!is_known_action(b"", Dialect::V1));
        assert!(!is_known_action(b"EVTX", Dialect::V1));
    }

    #[test]
    fn presence_topic_only_in_v2() {
        assert_eq!(Topic::parse(b"U", Dialect::V1), None);
        assert_eq!(Topic::parse(b"U", Dialect::V2), Some(Topic::Presence));
        assert_eq!(Topic::parse(b"Z", Dialect::V1), None);
    }
}
