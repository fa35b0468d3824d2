//! The typed codec of node messages: what one node sends another on its channel
//! `cs:node:<node>` (RPC calls for providers there, and listening across nodes). `rpc` and
//! `listen` build `NodeWire` values and `encode` them; `Cluster`'s pub/sub handler `decode`s
//! what arrives and hands each message to `rpc` or `listen`. Nothing else knows the bytes.
//!
//! A payload is `<kind>␞<sender node>␞<field>␞…` (␞ = 0x1E, which cannot occur inside a name, a
//! pattern or a node id); the last field takes the rest of the payload, so it may be a whole
//! protocol message with its own separators.
//!
//! | kind | fields | meaning |
//! |---|---|---|
//! | `Q` | message | an RPC request for a provider on the receiving node |
//! | `A` | message | a provider's answer to a request from the receiving node |
//! | `LX` | core | the sender's core restarts its listen reports: forget them |
//! | `LL` / `LU` | topic, core, slot, generation, pattern | a listener added / removed |
//! | `LI` | topic, core, 1 or 0, name | the sender's owner core of name has (no) subscribers |
//! | `LR` | topic, core, slot, generation, 1 or 0, pattern, name, raw | a listener's accept / reject |
//! | `LS` | core, slot, generation, message | from the leader, for one listener of the receiver |
//! | `LH` | message | from the leader, for the receiver's subscribers (`SH`) |

use super::SEPARATOR;
use crate::base::address::SessionRef;
use crate::features::listen::ListenResponse;
use crate::protocol::actions::Topic;
use bytes::Bytes;
use std::sync::Arc;

/// The channel prefix of a node's own channel.
pub const NODE_CHANNEL: &[u8] = b"cs:node:";

/// One node message (see the table in the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeWire {
    RpcRequest(Bytes),
    RpcAnswer(Bytes),
    ListenReset {
        core: u16,
    },
    Listener {
        topic: Topic,
        session: SessionRef,
        pattern: Arc<str>,
        added: bool,
    },
    Interest {
        topic: Topic,
        core: u16,
        interested: bool,
        name: Bytes,
    },
    Response(ListenResponse),
    ToListener {
        session: SessionRef,
        message: Bytes,
    },
    ToSubscribers {
        message: Bytes,
    },
}

/// `from`'s payload for `message`.
pub fn encode(from: &str, message: &NodeWire) -> Vec<u8> {
    let mut payload = Vec::with_capacity(64);
    let mut put = |field: &[u8]| {
        if !payload.is_empty() {
            payload.push(SEPARATOR);
        }
        payload.extend_from_slice(field);
    };
    put(kind(message));
    put(from.as_bytes());
    fields(message, &mut put);
    payload
}

fn kind(message: &NodeWire) -> &'static [u8] {
    match message {
        NodeWire::RpcRequest(_) => b"Q",
        NodeWire::RpcAnswer(_) => b"A",
        NodeWire::ListenReset { .. } => b"LX",
        NodeWire::Listener { added: true, .. } => b"LL",
        NodeWire::Listener { added: false, .. } => b"LU",
        NodeWire::Interest { .. } => b"LI",
        NodeWire::Response { .. } => b"LR",
        NodeWire::ToListener { .. } => b"LS",
        NodeWire::ToSubscribers { .. } => b"LH",
    }
}

fn session_fields(session: &SessionRef, put: &mut dyn FnMut(&[u8])) {
    put(session.core.to_string().as_bytes());
    put(session.slot.to_string().as_bytes());
    put(session.generation.to_string().as_bytes());
}

fn fields(message: &NodeWire, put: &mut dyn FnMut(&[u8])) {
    match message {
        NodeWire::RpcRequest(bytes) | NodeWire::RpcAnswer(bytes) => put(bytes),
        NodeWire::ListenReset { core } => put(core.to_string().as_bytes()),
        NodeWire::Listener {
            topic,
            session,
            pattern,
            ..
        } => {
            put(topic.code());
            session_fields(session, put);
            put(pattern.as_bytes());
        }
        NodeWire::Interest {
            topic,
            core,
            interested,
            name,
        } => {
            put(topic.code());
            put(core.to_string().as_bytes());
            put(flag(*interested));
            put(name);
        }
        NodeWire::Response(response) => {
            put(response.topic.code());
            session_fields(&response.session, put);
            put(flag(response.accept));
            put(response.pattern.as_bytes());
            put(&response.name);
            put(&response.raw);
        }
        NodeWire::ToListener { session, message } => {
            session_fields(session, put);
            put(message);
        }
        NodeWire::ToSubscribers { message } => put(message),
    }
}

fn flag(value: bool) -> &'static [u8] {
    if value {
        b"1"
    } else {
        b"0"
    }
}

/// The sender and the message of a payload; `None` for anything malformed (a node of another
/// version, or a hostile publisher on the same Redis: dropped, never trusted further).
pub fn decode(payload: &Bytes) -> Option<(Arc<str>, NodeWire)> {
    let mut head = payload.splitn(3, |byte| *byte == SEPARATOR);
    let (kind, from) = (head.next()?, head.next()?);
    let from: Arc<str> = Arc::from(std::str::from_utf8(from).ok()?);
    let offset = (kind.len() + from.len() + 2).min(payload.len());
    let body = payload.slice(offset..);
    let count = match kind {
        b"Q" | b"A" | b"LX" | b"LH" => 1,
        b"LI" | b"LS" => 4,
        b"LL" | b"LU" => 5,
        b"LR" => 8,
        _ => return None,
    };
    let fields: Vec<Bytes> = split(&body, count)?;
    let message = decode_fields(kind, &fields)?;
    Some((from, message))
}

/// `body` in exactly `count` fields (the last one takes the rest), as slices of it.
fn split(body: &Bytes, count: usize) -> Option<Vec<Bytes>> {
    let mut fields = Vec::with_capacity(count);
    let mut start = 0;
    for _ in 1..count {
        let end = start + memchr::memchr(SEPARATOR, body.get(start..)?)?;
        fields.push(body.slice(start..end));
        start = end + 1;
    }
    fields.push(body.slice(start.min(body.len())..));
    Some(fields)
}

fn decode_fields(kind: &[u8], fields: &[Bytes]) -> Option<NodeWire> {
    let message = match kind {
        b"Q" => NodeWire::RpcRequest(fields[0].clone()),
        b"A" => NodeWire::RpcAnswer(fields[0].clone()),
        b"LX" => NodeWire::ListenReset {
            core: number(&fields[0])?,
        },
        b"LL" | b"LU" => NodeWire::Listener {
            topic: topic(&fields[0])?,
            session: session(&fields[1..4])?,
            pattern: text(&fields[4])?,
            added: kind == b"LL",
        },
        b"LI" => NodeWire::Interest {
            topic: topic(&fields[0])?,
            core: number(&fields[1])?,
            interested: &fields[2][..] == b"1",
            name: fields[3].clone(),
        },
        b"LR" => NodeWire::Response(ListenResponse {
            topic: topic(&fields[0])?,
            session: session(&fields[1..4])?,
            accept: &fields[4][..] == b"1",
            pattern: text(&fields[5])?,
            name: fields[6].clone(),
            raw: fields[7].clone(),
        }),
        b"LS" => NodeWire::ToListener {
            session: session(&fields[0..3])?,
            message: fields[3].clone(),
        },
        _ => NodeWire::ToSubscribers {
            message: fields[0].clone(),
        },
    };
    Some(message)
}

fn topic(code: &[u8]) -> Option<Topic> {
    match code {
        b"E" => Some(Topic::Event),
        b"R" => Some(Topic::Record),
        _ => None,
    }
}

fn number<T: std::str::FromStr>(bytes: &[u8]) -> Option<T> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

fn text(bytes: &[u8]) -> Option<Arc<str>> {
    std::str::from_utf8(bytes).ok().map(Arc::from)
}

fn session(fields: &[Bytes]) -> Option<SessionRef> {
    Some(SessionRef {
        core: number(&fields[0])?,
        slot: number(&fields[1])?,
        generation: number(&fields[2])?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> SessionRef {
        SessionRef {
            core: 1,
            slot: 7,
            generation: 3,
        }
    }

    fn every_kind() -> Vec<NodeWire> {
        vec![
            NodeWire::RpcRequest(Bytes::from_static(b"P\x1fREQ\x1fadd\x1f1\x1fO{}\x1e")),
            NodeWire::RpcAnswer(Bytes::from_static(b"P\x1fRES\x1fadd\x1f1\x1fN3\x1e")),
            NodeWire::ListenReset { core: 2 },
            NodeWire::Listener {
                topic: Topic::Event,
                session: session(),
                pattern: Arc::from("news/.*"),
                added: true,
            },
            NodeWire::Listener {
                topic: Topic::Record,
                session: session(),
                pattern: Arc::from("a"),
                added: false,
            },
            NodeWire::Interest {
                topic: Topic::Record,
                core: 0,
                interested: true,
                name: Bytes::from_static(b"news/today"),
            },
            NodeWire::Response(ListenResponse {
                topic: Topic::Event,
                session: session(),
                accept: false,
                pattern: Arc::from("news/.*"),
                name: Bytes::from_static(b"news/x"),
                raw: Bytes::from_static(b"E\x1fLR\x1fnews/.*\x1fnews/x"),
            }),
            NodeWire::ToListener {
                session: session(),
                message: Bytes::from_static(b"E\x1fSP\x1fnews/.*\x1fnews/x\x1e"),
            },
            NodeWire::ToSubscribers {
                message: Bytes::from_static(b"E\x1fSH\x1fnews/x\x1fT\x1e"),
            },
        ]
    }

    #[test]
    fn every_kind_round_trips() {
        for message in every_kind() {
            let payload = Bytes::from(encode("node-a", &message));
            let (from, decoded) = decode(&payload).expect("decodes");
            assert_eq!(&*from, "node-a");
            assert_eq!(decoded, message);
        }
    }

    #[test]
    fn the_bytes_are_the_documented_ones() {
        let message = NodeWire::Interest {
            topic: Topic::Event,
            core: 3,
            interested: true,
            name: Bytes::from_static(b"n"),
        };
        assert_eq!(encode("b", &message), b"LI\x1eb\x1eE\x1e3\x1e1\x1en");
    }

    #[test]
    fn malformed_payloads_are_refused() {
        for payload in [
            &b""[..],
            b"LI",
            b"ZZ\x1enode\x1ex",
            b"LI\x1enode\x1eE\x1e3",
            b"LL\x1enode\x1eX\x1e1\x1e2\x1e3\x1ep",
            b"LL\x1enode\x1eE\x1e1\x1ebig\x1e3\x1ep",
            b"LX\x1enode\x1e99999999",
            b"LS\x1e\xff\x1e1\x1e2\x1e3\x1em",
        ] {
            assert_eq!(
                decode(&Bytes::copy_from_slice(payload)),
                None,
                "{payload:?}"
            );
        }
    }
}
