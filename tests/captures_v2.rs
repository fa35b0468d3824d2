//! Replays the 2.x captures in tests/fixtures/captures/v2 (recorded between the real deepstream
//! 2.4.1 server and its clients over WebSocket) against corestream's WebSocket endpoint on two
//! cores, byte for byte (text payloads concatenated: corestream may put several messages in one
//! frame where 2.4.1 sent one frame each, which the clients accept alike).

#[macro_use]
mod common;

use common::{replay, Server, Wire, FILE_AUTH};
use std::time::Duration;

/// The captures were made with rpcTimeout 3000 and no heartbeat within a scenario's length.
pub const BASE: &str = "rpcAckTimeout: 1000\nrpcTimeout: 3000\nconnectionEndpoints:\n  websocket:\n    options:\n      heartbeatInterval: 60000\n";

fn replay(scenario: &str, extra: &str) {
    let server = Server::start(&format!("{BASE}{extra}"), 2);
    replay::replay("v2", scenario, || Box::new(server.connect_ws()));
}

// The scenarios captured with both servers (`common::both_dialects`), then this dialect's own.
both_dialects!();

capture!(listen_wire, "raw-listen-wire");
capture!(record_wire, "raw-record-wire");
capture!(record_write_ack, "raw-record-write-ack-v2");
capture!(record_update_bad_version, "raw-record-update-bad-version");
capture!(record_update_invalid_json, "raw-record-update-invalid-json");
capture!(rpc_wire, "raw-rpc-wire");
capture!(rpc_unsolicited_response, "raw-rpc-unsolicited-response");
capture!(presence_wire, "raw-presence-wire");
capture!(library_record_create_set_get, "lib-record-create-set-get");
capture!(library_record_has_snapshot, "lib-record-has-snapshot");
capture!(
    library_record_listen_has_provider,
    "lib-record-listen-has-provider"
);
capture!(library_record_write_ack, "lib-record-write-ack-v2");
capture!(library_list, "lib-list");
capture!(library_presence, "lib-presence");
capture!(library_rpc_provide_make, "lib-rpc-provide-make");
capture!(library_rpc_error, "lib-rpc-error");
capture!(library_rpc_no_provider, "lib-rpc-no-provider");
capture!(library_rpc_ack_timeout, "lib-rpc-ack-timeout");
capture!(library_rpc_response_timeout, "lib-rpc-response-timeout");

capture!(heartbeat_ping_pong, "raw-heartbeat-ping-pong");

/// lib-record-discard-delete without 2.4.1's quirk (PROTOCOL.md §3.4): a subscriber that joins
/// while an update is in flight gets `R|R` at version 1 and then the same version again as
/// `R|U`. corestream applies the update before the read, so the reader gets version 1 once.
#[test]
fn record_discard_delete_without_the_duplicate_update() {
    let server = Server::start(BASE, 2);
    let mut alice = server.connect_ws();
    alice.login("alice");
    let mut bob = server.connect_ws();
    bob.login("bob");
    alice.send("R|CR|rec/del+");
    alice.expect("R|A|S|rec/del+R|R|rec/del|0|{}+");
    alice.send(r#"R|U|rec/del|1|{"v":1}+"#);
    std::thread::sleep(Duration::from_millis(20));
    bob.send("R|CR|rec/del+");
    bob.expect(r#"R|A|S|rec/del+R|R|rec/del|1|{"v":1}+"#);
    bob.send("R|CR|rec/disc+");
    bob.expect("R|A|S|rec/disc+R|R|rec/disc|0|{}+");
    bob.send("R|US|rec/disc+");
    bob.expect("R|A|US|rec/disc+");
    alice.send("R|D|rec/del+");
    bob.expect("R|A|D|rec/del+");
    alice.expect("R|A|D|rec/del+");
    alice.send("R|H|rec/del+");
    alice.expect("R|H|rec/del|F+");
    assert_eq!(
        bob.next_message(Duration::from_millis(100)),
        None,
        "no duplicate update"
    );
}

/// deepstream 2.4.1 crashes on this input (PROTOCOL.md §3.7, captures/v2/raw-unknown-action-
/// CRASH.log); corestream answers like 1.x and keeps the connection.
#[test]
fn unknown_action_after_login_does_not_crash() {
    let server = Server::start(BASE, 2);
    let mut client = server.connect_ws();
    client.login("raw");
    client.send("E|ZZ|foo+");
    client.expect("X|E|MESSAGE_PARSE_ERROR|E|ZZ|foo++");
    client.send("E|S|still-here+");
    client.expect("E|A|S|still-here+");
}

/// A socket silent for a whole heartbeat interval is dropped at the next tick with no close
/// frame (PROTOCOL.md §2.3, §9.4); one that answers `C|PO` stays.
#[test]
fn heartbeat_drops_silent_sockets_only() {
    let server = Server::start(
        "connectionEndpoints:\n  websocket:\n    options:\n      heartbeatInterval: 300\n",
        2,
    );
    let mut silent = server.connect_ws();
    silent.login("silent");
    let mut answering = server.connect_ws();
    answering.login("answering");
    let started = std::time::Instant::now();
    let mut pings = 0;
    while started.elapsed() < Duration::from_millis(1500) {
        if let Some(message) = answering.next_message(Duration::from_millis(50)) {
            assert_eq!(message, common::wire("C|PI+"));
            pings += 1;
            answering.send("C|PO+");
        }
    }
    assert!(pings >= 3, "the answering socket got {pings} pings");
    assert_eq!(
        silent.next_message(Duration::from_millis(100)),
        Some(common::wire("C|PI+"))
    );
    silent.expect_closed();
    assert_eq!(silent.closed_with, None, "dropped without a close frame");
    answering.send("E|S|alive+");
    answering.expect("E|A|S|alive+");
}

/// `U|Q` on one core right after another client's `A|A` on the other core lists that client:
/// the query waits for every core's barrier (a login broadcast could otherwise still be on its
/// way to the asking core; CI saw the 2.3.4 client's getAll miss a user that way).
#[test]
fn presence_query_lists_every_login_already_acknowledged() {
    let server = Server::start(BASE, 2);
    let mut asker = server.connect_ws();
    asker.login("asker");
    let mut others = Vec::new();
    let mut names = Vec::new();
    for round in 0..40 {
        let name = format!("user{round:02}");
        let mut other = server.connect_ws();
        other.login(&name);
        others.push(other);
        names.push(name);
        Wire::send(&mut asker, "U|Q|Q+");
        let reply = asker
            .next_message(Duration::from_secs(5))
            .expect("a U|Q reply");
        let expected = format!("U\x1fQ\x1f{}\x1e", names.join("\x1f"));
        assert_eq!(String::from_utf8_lossy(&reply), expected, "round {round}");
    }
}
