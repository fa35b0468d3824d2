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

/// The actions of the protocol, parsed once from the action field of every message
/// (PROTOCOL.md §3). The wire code of each is in `code()`; the server's table of what it
/// accepts (which differs between 1.x and 2.x) is `Action::parse`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// `A`: an acknowledgement (and 1.x's RPC ack).
    Ack,
    /// `E`: an error (and an RPC provider's error).
    Error,
    /// `S`: subscribe (events, presence) / provide (RPC).
    Subscribe,
    /// `US`: unsubscribe / unprovide.
    Unsubscribe,
    /// `EVT`: an event.
    Event,
    /// `L` / `UL`: listen / unlisten on a pattern.
    Listen,
    Unlisten,
    /// `LA` / `LR`: a listener accepts / rejects providing a name.
    ListenAccept,
    ListenReject,
    /// `SP` / `SR`: a subscription for a pattern was found / removed (server to listener).
    SubscriptionForPatternFound,
    SubscriptionForPatternRemoved,
    /// `SH`: whether a record has a provider.
    SubscriptionHasProvider,
    /// `CR`: create or read a record (and subscribe to it).
    CreateOrRead,
    /// `R`: a record's state (server to client).
    Read,
    /// `U`, `P`: a whole update, a patch.
    Update,
    Patch,
    /// `CU` (2.x): create and update (upsert).
    CreateAndUpdate,
    /// `D`: delete a record.
    Delete,
    /// `SN`, `H`, `HD` (2.x): snapshot, has, head.
    Snapshot,
    Has,
    Head,
    /// `WA` (2.x): a write acknowledgement.
    WriteAck,
    /// `REQ`: an RPC request, or a login (`A|REQ`).
    Request,
    /// `RES`, `REJ`: an RPC response, a provider's reject.
    Response,
    Reject,
    /// `CH`, `CHR`: the challenge and its response.
    Challenge,
    ChallengeResponse,
    /// `PI`, `PO` (2.x): the heartbeat.
    Ping,
    Pong,
    /// `Q`, `PNJ`, `PNL` (2.x presence): query, a user joined, a user left.
    Query,
    PresenceJoin,
    PresenceLeave,
    /// Another action of the server's table that it accepts but does not act on (`C`, `SF`,
    /// `LSN`, the webrtc actions of 1.x, ...): parsed, then answered `UNKNOWN_ACTION`.
    Other,
}

impl Action {
    /// The action of a message, if the server's table (for `dialect`) has it.
    pub fn parse(field: &[u8], dialect: Dialect) -> Option<Action> {
        if !is_known_action(field, dialect) {
            return None;
        }
        Some(match field {
            b"A" => Action::Ack,
            b"E" => Action::Error,
            b"S" => Action::Subscribe,
            b"US" => Action::Unsubscribe,
            b"EVT" => Action::Event,
            b"L" => Action::Listen,
            b"UL" => Action::Unlisten,
            b"LA" => Action::ListenAccept,
            b"LR" => Action::ListenReject,
            b"SP" => Action::SubscriptionForPatternFound,
            b"SR" => Action::SubscriptionForPatternRemoved,
            b"SH" => Action::SubscriptionHasProvider,
            b"CR" => Action::CreateOrRead,
            b"R" => Action::Read,
            b"U" => Action::Update,
            b"P" => Action::Patch,
            b"CU" => Action::CreateAndUpdate,
            b"D" => Action::Delete,
            b"SN" => Action::Snapshot,
            b"H" => Action::Has,
            b"HD" => Action::Head,
            b"WA" => Action::WriteAck,
            b"REQ" => Action::Request,
            b"RES" => Action::Response,
            b"REJ" => Action::Reject,
            b"CH" => Action::Challenge,
            b"CHR" => Action::ChallengeResponse,
            b"PI" => Action::Ping,
            b"PO" => Action::Pong,
            b"Q" => Action::Query,
            b"PNJ" => Action::PresenceJoin,
            b"PNL" => Action::PresenceLeave,
            _ => Action::Other,
        })
    }

    /// The wire code (`Other` has none of its own: the message keeps the bytes it came with).
    pub fn code(self) -> &'static [u8] {
        match self {
            Action::Ack => b"A",
            Action::Error => b"E",
            Action::Subscribe => b"S",
            Action::Unsubscribe => b"US",
            Action::Event => b"EVT",
            Action::Listen => b"L",
            Action::Unlisten => b"UL",
            Action::ListenAccept => b"LA",
            Action::ListenReject => b"LR",
            Action::SubscriptionForPatternFound => b"SP",
            Action::SubscriptionForPatternRemoved => b"SR",
            Action::SubscriptionHasProvider => b"SH",
            Action::CreateOrRead => b"CR",
            Action::Read => b"R",
            Action::Update => b"U",
            Action::Patch => b"P",
            Action::CreateAndUpdate => b"CU",
            Action::Delete => b"D",
            Action::Snapshot => b"SN",
            Action::Has => b"H",
            Action::Head => b"HD",
            Action::WriteAck => b"WA",
            Action::Request => b"REQ",
            Action::Response => b"RES",
            Action::Reject => b"REJ",
            Action::Challenge => b"CH",
            Action::ChallengeResponse => b"CHR",
            Action::Ping => b"PI",
            Action::Pong => b"PO",
            Action::Query => b"Q",
            Action::PresenceJoin => b"PNJ",
            Action::PresenceLeave => b"PNL",
            Action::Other => b"",
        }
    }
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
    fn actions_parse_once_and_encode_back() {
        for code in COMMON_ACTIONS.iter().chain(V2_ACTIONS) {
            let action = Action::parse(code, Dialect::V2).expect("in the 2.x table");
            if action != Action::Other {
                assert_eq!(action.code(), *code);
            }
        }
        assert_eq!(
            Action::parse(b"CHR", Dialect::V1),
            Some(Action::ChallengeResponse)
        );
        assert_eq!(Action::parse(b"WIA", Dialect::V1), Some(Action::Other));
        assert_eq!(Action::parse(b"HD", Dialect::V1), None);
        assert_eq!(Action::parse(b"ZZ", Dialect::V2), None);
    }

    #[test]
    fn presence_topic_only_in_v2() {
        assert_eq!(Topic::parse(b"U", Dialect::V1), None);
        assert_eq!(Topic::parse(b"U", Dialect::V2), Some(Topic::Presence));
        assert_eq!(Topic::parse(b"Z", Dialect::V1), None);
    }
}
