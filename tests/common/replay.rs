//! Replays a capture of tests/fixtures/captures (copied byte for byte from the captures recorded
//! between the real deepstream servers and clients) against a running server: each client line is sent
//! as written, each server line must arrive byte for byte on that connection (reads block, so
//! causality across connections is kept), and a `server closed` that comes before the client's
//! close must be a close by the server. HTTP upgrade lines are skipped: the WebSocket client
//! does its own handshake, and 2.x heartbeat lines (`C|PI`, `C|PO`), which come at times of
//! their own (the heartbeat has tests of its own).

use super::Wire;
use std::collections::HashMap;
use std::path::Path;

enum Step {
    Connect(u32),
    Send(u32, String),
    /// The client starts the WebSocket close handshake.
    SendClose(u32),
    Expect(u32, String),
    ClientClosed(u32),
    ServerClosed(u32),
}

fn parse(version: &str, scenario: &str) -> Vec<Step> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/captures")
        .join(version)
        .join(format!("{scenario}.log"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    let mut steps = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix('[') else {
            continue;
        };
        let Some((header, body)) = rest.split_once("] ") else {
            continue;
        };
        let mut parts = header.split_whitespace();
        let _time = parts.next();
        let connection: u32 = parts
            .next()
            .and_then(|id| id.trim_start_matches('#').parse().ok())
            .expect("connection number");
        let direction = parts.next();
        let body = body
            .strip_prefix("WS text masked: ")
            .or_else(|| body.strip_prefix("WS text: "))
            .map(|text| (true, text))
            .unwrap_or((false, body));
        match (direction, body) {
            // Heartbeats come at times of their own; they are tested on their own.
            (Some("C>S" | "S>C"), (_, "C|PI+" | "C|PO+")) => {}
            (Some("C>S"), (true, text)) => steps.push(Step::Send(connection, text.to_string())),
            (Some("S>C"), (true, text)) => steps.push(Step::Expect(connection, text.to_string())),
            (Some("C>S"), (false, text)) if text.starts_with("WS close masked") => {
                steps.push(Step::SendClose(connection))
            }
            (Some("C>S" | "S>C"), (false, text))
                if text.starts_with("GET ")
                    || text.starts_with("HTTP/1.1")
                    || text.starts_with("WS close") => {}
            (Some("C>S"), (false, text)) => steps.push(Step::Send(connection, text.to_string())),
            (Some("S>C"), (false, text)) => steps.push(Step::Expect(connection, text.to_string())),
            (Some("---"), (_, text)) if text.starts_with("connect from") => {
                steps.push(Step::Connect(connection))
            }
            (Some("---"), (_, "client closed")) => steps.push(Step::ClientClosed(connection)),
            (Some("---"), (_, "server closed")) => steps.push(Step::ServerClosed(connection)),
            other => panic!("unexpected capture line {line:?} ({other:?})"),
        }
    }
    steps
}

/// Replays `tests/fixtures/captures/<version>/<scenario>.log`, opening connections with `connect`.
pub fn replay(version: &str, scenario: &str, mut connect: impl FnMut() -> Box<dyn Wire>) {
    let mut clients: HashMap<u32, Box<dyn Wire>> = HashMap::new();
    let mut closed_by_client: Vec<u32> = Vec::new();
    let mut last_sender: Option<u32> = None;
    for step in parse(version, scenario) {
        // Two sends in a row on different connections race each other (they may even land on
        // different cores); the capture shows one order, so let the first one arrive first.
        if let Step::Send(id, _) = &step {
            if last_sender.is_some_and(|last| last != *id) {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        last_sender = match &step {
            Step::Send(id, _) => Some(*id),
            _ => None,
        };
        match step {
            Step::Connect(id) => {
                clients.insert(id, connect());
            }
            Step::Send(id, text) => clients.get_mut(&id).expect("connected").send(&text),
            Step::SendClose(id) => clients.get_mut(&id).expect("connected").send_close(),
            Step::Expect(id, text) => clients.get_mut(&id).expect("connected").expect(&text),
            Step::ClientClosed(id) => {
                closed_by_client.push(id);
                if let Some(client) = clients.remove(&id) {
                    client.close();
                }
            }
            Step::ServerClosed(id) => {
                if !closed_by_client.contains(&id) {
                    if let Some(client) = clients.get_mut(&id) {
                        client.expect_closed();
                    }
                }
            }
        }
    }
}
