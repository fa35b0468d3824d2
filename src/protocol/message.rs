//! Splitting, parsing and encoding of deepstream messages (PROTOCOL.md §1).
//!
//! A *unit* (one TCP reassembly, one engine.io message, one WebSocket text frame) holds zero or
//! more messages ended by 0x1E; fields are separated by 0x1F. Splitting is a SIMD byte scan
//! (memchr) over the unit, and every field is a slice borrowed from it: nothing is allocated per
//! message. Called by the session (incoming units) and by every feature (outgoing messages).

use super::actions::{Action, Dialect};
use memchr::{memchr, memchr_iter};

/// Ends a message (ASCII "record separator").
pub const MESSAGE_SEPARATOR: u8 = 0x1E;
/// Separates fields inside a message (ASCII "unit separator").
pub const FIELD_SEPARATOR: u8 = 0x1F;

/// One parsed message, borrowing from the unit it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    /// The whole message without its 0x1E terminator (what deepstream calls `message.raw`).
    pub raw: &'a [u8],
    pub topic: &'a [u8],
    /// The action, parsed once.
    pub action: Action,
    /// The action field as it arrived (quoted by `UNKNOWN_ACTION`).
    pub action_raw: &'a [u8],
    /// Everything after the action's separator, or `None` when the message has two fields only.
    data: Option<&'a [u8]>,
}

impl<'a> Message<'a> {
    /// Number of data fields (fields after topic and action).
    pub fn data_count(&self) -> usize {
        match self.data {
            None => 0,
            Some(data) => memchr_iter(FIELD_SEPARATOR, data).count() + 1,
        }
    }

    /// The data field at `index`, if present.
    pub fn data_at(&self, index: usize) -> Option<&'a [u8]> {
        self.data_fields().nth(index)
    }

    /// Iterates the data fields in order.
    pub fn data_fields(&self) -> DataFields<'a> {
        DataFields { rest: self.data }
    }

    /// The raw bytes of all data fields, separators included (`None` with no data field).
    pub fn data_raw(&self) -> Option<&'a [u8]> {
        self.data
    }
}

/// Iterator over the data fields of a message.
pub struct DataFields<'a> {
    rest: Option<&'a [u8]>,
}

impl<'a> Iterator for DataFields<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.rest?;
        match memchr(FIELD_SEPARATOR, rest) {
            Some(at) => {
                self.rest = Some(&rest[at + 1..]);
                Some(&rest[..at])
            }
            None => {
                self.rest = None;
                Some(rest)
            }
        }
    }
}

/// What one piece of a unit turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed<'a> {
    Message(Message<'a>),
    /// Fewer than two fields, or an action outside the server's table (PROTOCOL.md §1 step 3).
    ParseError {
        raw: &'a [u8],
    },
}

/// Iterates the messages of one unit, dropping pieces of two characters or fewer.
pub struct Messages<'a> {
    rest: &'a [u8],
    dialect: Dialect,
}

/// Splits a unit into messages. Nothing is allocated.
pub fn messages(unit: &[u8], dialect: Dialect) -> Messages<'_> {
    Messages {
        rest: unit,
        dialect,
    }
}

impl<'a> Iterator for Messages<'a> {
    type Item = Parsed<'a>;
    fn next(&mut self) -> Option<Parsed<'a>> {
        loop {
            if self.rest.is_empty() {
                return None;
            }
            let piece = match memchr(MESSAGE_SEPARATOR, self.rest) {
                Some(at) => {
                    let piece = &self.rest[..at];
                    self.rest = &self.rest[at + 1..];
                    piece
                }
                None => std::mem::take(&mut self.rest),
            };
            if is_too_short(piece) {
                continue;
            }
            return Some(parse_piece(piece, self.dialect));
        }
    }
}

/// deepstream drops pieces whose JavaScript string length (UTF-16 code units) is 2 or less.
fn is_too_short(piece: &[u8]) -> bool {
    if piece.len() <= 2 {
        return true;
    }
    // Two UTF-16 units take at most 8 bytes of UTF-8 (two astral characters).
    if piece.len() > 8 {
        return false;
    }
    let units: usize = String::from_utf8_lossy(piece)
        .chars()
        .map(char::len_utf16)
        .sum();
    units <= 2
}

fn parse_piece(piece: &[u8], dialect: Dialect) -> Parsed<'_> {
    let Some(first) = memchr(FIELD_SEPARATOR, piece) else {
        return Parsed::ParseError { raw: piece };
    };
    let topic = &piece[..first];
    let after_topic = &piece[first + 1..];
    let (action, data) = match memchr(FIELD_SEPARATOR, after_topic) {
        Some(second) => (&after_topic[..second], Some(&after_topic[second + 1..])),
        None => (after_topic, None),
    };
    let Some(parsed_action) = Action::parse(action, dialect) else {
        return Parsed::ParseError { raw: piece };
    };
    Parsed::Message(Message {
        raw: piece,
        topic,
        action: parsed_action,
        action_raw: action,
        data,
    })
}

/// Appends one message built from `fields` (topic, action, data...) to `out`.
pub fn write_message(out: &mut Vec<u8>, fields: &[&[u8]]) {
    let len: usize = fields.iter().map(|field| field.len() + 1).sum();
    out.reserve(len);
    for (index, field) in fields.iter().enumerate() {
        if index > 0 {
            out.push(FIELD_SEPARATOR);
        }
        out.extend_from_slice(field);
    }
    out.push(MESSAGE_SEPARATOR);
}

/// Builds one message from `fields` into a new buffer.
pub fn build_message(fields: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    write_message(&mut out, fields);
    out
}

/// Error replies are `<topic>|E|<event>|<data>`.
pub fn write_error(out: &mut Vec<u8>, topic: &[u8], event: &[u8], data: &[u8]) {
    write_message(out, &[topic, b"E", event, data]);
}

/// The notation of PROTOCOL.md and the captures (`|` = 0x1F, `+` = 0x1E) to wire bytes. For
/// tests, benchmarks and logs; `|` and `+` cannot appear literally in such text.
pub fn from_capture_notation(text: &str) -> Vec<u8> {
    text.bytes()
        .map(|byte| match byte {
            b'|' => FIELD_SEPARATOR,
            b'+' => MESSAGE_SEPARATOR,
            other => other,
        })
        .collect()
}

/// Wire bytes to the capture notation (lossy for invalid UTF-8).
pub fn to_capture_notation(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .replace('\u{1f}', "|")
        .replace('\u{1e}', "+")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::actions::Action;

    fn wire(text: &str) -> Vec<u8> {
        from_capture_notation(text)
    }

    #[test]
    fn splits_several_messages_and_borrows_fields() {
        let unit = wire("E|EVT|news|Shello+E|S|sport+");
        let parsed: Vec<_> = messages(&unit, Dialect::V1).collect();
        assert_eq!(parsed.len(), 2);
        let Parsed::Message(first) = parsed[0] else {
            panic!("expected a message")
        };
        assert_eq!(first.topic, b"E");
        assert_eq!(first.action, Action::Event);
        assert_eq!(first.action_raw, b"EVT");
        assert_eq!(first.data_count(), 2);
        assert_eq!(first.data_at(0), Some(&b"news"[..]));
        assert_eq!(first.data_at(1), Some(&b"Shello"[..]));
        assert_eq!(first.data_at(2), None);
        assert_eq!(first.raw, &wire("E|EVT|news|Shello")[..]);
    }

    #[test]
    fn drops_pieces_of_two_characters_or_fewer() {
        let unit = wire("E+EE+E|S|ok+");
        let parsed: Vec<_> = messages(&unit, Dialect::V1).collect();
        assert_eq!(parsed.len(), 1);
        // "éé" is 4 bytes but two JavaScript characters: dropped too.
        let unit = "éé\u{1e}".as_bytes();
        assert_eq!(messages(unit, Dialect::V1).count(), 0);
    }

    #[test]
    fn parse_errors() {
        let unit = wire("hello world+E|ZZ|foo+Z|S|foo+");
        let parsed: Vec<_> = messages(&unit, Dialect::V1).collect();
        assert_eq!(
            parsed[0],
            Parsed::ParseError {
                raw: b"hello world"
            }
        );
        assert!(matches!(parsed[1], Parsed::ParseError { .. }));
        // An unknown topic is not a parse error: it is caught later.
        assert!(matches!(parsed[2], Parsed::Message(m) if m.topic == b"Z"));
    }

    #[test]
    fn message_without_data_and_with_empty_data() {
        let unit = wire("E|S+E|S|+");
        let parsed: Vec<_> = messages(&unit, Dialect::V1).collect();
        let Parsed::Message(no_data) = parsed[0] else {
            panic!()
        };
        assert_eq!(no_data.data_count(), 0);
        let Parsed::Message(empty) = parsed[1] else {
            panic!()
        };
        assert_eq!(empty.data_count(), 1);
        assert_eq!(empty.data_at(0), Some(&b""[..]));
    }

    #[test]
    fn encodes() {
        assert_eq!(build_message(&[b"E", b"A", b"S", b"x"]), wire("E|A|S|x+"));
        let mut out = Vec::new();
        write_error(&mut out, b"X", b"UNKNOWN_TOPIC", b"Z");
        assert_eq!(out, wire("X|E|UNKNOWN_TOPIC|Z+"));
    }
}
