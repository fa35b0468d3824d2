//! Record rules and cross-references in a cluster (issue 10), against the real binary: two or
//! three corestream nodes on a real `redis-server`, clients over TCP asserting exact bytes.
//!
//! In a cluster Redis holds the records, so a record rule's `oldData` and a patch's result are
//! computed from what Redis holds, and `_()` reads Redis. The change a rule allowed is made only
//! if the record is still the version the rule saw (`a_rule_on_old_data_holds_...` hammers that
//! from two nodes at once). The single-node forms of the same denials are in
//! `tests/permissions.rs`; the scenarios against the reference servers in
//! `scripts/permission-tests.sh`.

mod common;

use common::redis::{wait_for_channel, Redis};
use common::{readable, Client, Server, Wire, WsClient};
use std::time::Duration;

const RULES: &str = r#"
record:
  "*": {create: true, read: true, write: true, delete: true, listen: true}
  "user/$id": {write: "user.id == $id", delete: "user.id == $id"}
  "price/$id": {write: "data.price > 0"}
  "locked/$id": {delete: "oldData.locked != true"}
  "half/$id": {create: true, read: "user.id == $id"}
  "counter/$id": {write: "!(oldData.n >= data.n)"}
  "doc/$id": {write: "_('settings/' + $id).open == true"}
  "secret/$id": {read: "_('settings/' + $id).open == true"}
  "task/$id": {write: "oldData.team == null || _('team/' + oldData.team).members.indexOf(user.id) >= 0"}
event:
  "*": {publish: true, subscribe: true, listen: true}
  "gated/$id": {publish: "_('settings/' + $id).open == true"}
  "unset/$id": {publish: "_('settings/' + $id) == null"}
rpc:
  "*": {provide: true, request: true}
"#;

/// A node of the cluster on `redis` (two cores) with `RULES` as its permissions file.
fn node(redis: &Redis) -> Server {
    let path = redis.dir.join("rules.yml");
    std::fs::write(&path, RULES).expect("rules");
    let permission = format!(
        "permission: {{type: config, options: {{path: {}}}}}\n",
        path.display()
    );
    Server::start(&format!("{}{permission}", redis.config()), 2)
}

fn client(server: &Server, username: &str) -> Client {
    let mut client = server.connect();
    client.login(username);
    client
}

/// A 2.x client (WebSocket), for `R|CU`.
fn ws_client(server: &Server, username: &str) -> WsClient {
    let mut client = server.connect_ws();
    client.login(username);
    client
}

/// `R|CR` of `name` as a new record.
fn create(client: &mut Client, name: &str) {
    client.send(&format!("R|CR|{name}+"));
    client.expect(&format!("R|A|S|{name}+R|R|{name}|0|{{}}+"));
}

#[test]
fn record_rules_decide_on_what_redis_holds_on_every_node() {
    let redis = Redis::start();
    let (a, b) = (node(&redis), node(&redis));
    let mut alice_a = client(&a, "alice");
    let mut alice_b = client(&b, "alice");
    let mut bob_b = client(&b, "bob");
    let mut bob_ws = ws_client(&b, "bob");

    // ownership: the record's owner writes from either node, nobody else from any
    create(&mut alice_a, "user/alice");
    wait_for_channel(&redis, "cs:r:user/alice", 1);
    bob_b.send("R|U|user/alice|1|{\"by\":\"bob\"}+");
    bob_b.expect("R|E|MESSAGE_DENIED|user/alice|U|1|{\"by\":\"bob\"}+");
    bob_b.send("R|D|user/alice+");
    bob_b.expect("R|E|MESSAGE_DENIED|user/alice|D+");
    alice_b.send("R|U|user/alice|1|{\"by\":\"alice\"}+");
    alice_a.expect("R|U|user/alice|1|{\"by\":\"alice\"}+");

    // data: the body of an upsert, and a patch applied to what Redis holds
    bob_ws.send("R|CU|price/x|-1|{\"price\":-1}|{}+");
    bob_ws.expect("R|E|MESSAGE_DENIED|price/x|U+");
    bob_ws.send("R|CU|price/x|-1|{\"price\":5}|{\"writeSuccess\":true}+");
    bob_ws.expect("R|WA|price/x|[-1]|L+");
    alice_a.send("R|P|price/x|2|price|N-3+");
    alice_a.expect("R|E|MESSAGE_DENIED|price/x|P|2|price|N-3+");
    alice_a.send("R|P|price/x|2|price|N7+");
    alice_a.send("R|SN|price/x+");
    alice_a.expect("R|R|price/x|2|{\"price\":7}+");

    // oldData: a locked record cannot be deleted until it is unlocked (on another node)
    create(&mut alice_a, "locked/1");
    alice_a.send("R|U|locked/1|1|{\"locked\":true}+");
    alice_a.send("R|SN|locked/1+");
    alice_a.expect("R|R|locked/1|1|{\"locked\":true}+");
    bob_b.send("R|D|locked/1+");
    bob_b.expect("R|E|MESSAGE_DENIED|locked/1|D+");
    bob_b.send("R|U|locked/1|2|{\"locked\":false}+");
    bob_b.send("R|D|locked/1+");
    bob_b.expect("R|A|D|locked/1+");
    alice_a.expect("R|U|locked/1|2|{\"locked\":false}+R|A|D|locked/1+");

    // R|CR: CREATE allowed, READ denied; the record is created all the same (as deepstream)
    bob_b.send("R|CR|half/alice+");
    bob_b.expect("R|E|MESSAGE_DENIED|half/alice|R+");
    alice_a.send("R|H|half/alice+");
    alice_a.expect("R|H|half/alice|T+");
    bob_b.send("R|SN|half/alice+");
    bob_b.expect("R|E|MESSAGE_DENIED|half/alice|SN+");
    alice_b.send("R|SN|half/alice+");
    alice_b.expect("R|R|half/alice|0|{}+");
}

#[test]
fn cross_references_read_redis_from_a_node_that_never_saw_the_record() {
    let redis = Redis::start();
    let (a, b) = (node(&redis), node(&redis));
    let mut admin = client(&a, "admin");
    let mut user = client(&b, "user");
    let mut listener = client(&a, "listener");
    // a record that does not exist reads as null
    listener.send("E|S|unset/none+");
    listener.expect("E|A|S|unset/none+");
    wait_for_channel(&redis, "cs:e:unset/none", 1);
    user.send("E|EVT|unset/none|Sx+");
    listener.expect("E|EVT|unset/none|Sx+");
    // several ids, so the names land on both cores of each node
    for id in ["a", "b", "c", "d"] {
        let settings = format!("settings/{id}");
        user.send(&format!("E|EVT|gated/{id}|Sx+"));
        user.expect(&format!("E|E|MESSAGE_PERMISSION_ERROR|gated/{id}|EVT|Sx+"));
        create(&mut admin, &settings);
        admin.send(&format!("R|U|{settings}|1|{{\"open\":false}}+"));
        admin.send(&format!("R|SN|{settings}+"));
        admin.expect(&format!("R|R|{settings}|1|{{\"open\":false}}+"));
        user.send(&format!("E|EVT|gated/{id}|Sx+"));
        user.expect(&format!("E|E|MESSAGE_DENIED|gated/{id}|EVT|Sx+"));
        create(&mut user, &format!("doc/{id}"));
        user.send(&format!("R|U|doc/{id}|1|{{\"v\":1}}+"));
        user.expect(&format!("R|E|MESSAGE_DENIED|doc/{id}|U|1|{{\"v\":1}}+"));
        user.send(&format!("R|SN|secret/{id}+"));
        user.expect(&format!("R|E|MESSAGE_DENIED|secret/{id}|SN+"));

        admin.send(&format!("R|U|{settings}|2|{{\"open\":true}}+"));
        admin.send(&format!("R|SN|{settings}+"));
        admin.expect(&format!("R|R|{settings}|2|{{\"open\":true}}+"));
        listener.send(&format!("E|S|gated/{id}+"));
        listener.expect(&format!("E|A|S|gated/{id}+"));
        wait_for_channel(&redis, &format!("cs:e:gated/{id}"), 1);
        user.send(&format!("E|EVT|gated/{id}|Sx+"));
        listener.expect(&format!("E|EVT|gated/{id}|Sx+"));
        user.send(&format!("R|U|doc/{id}|1|{{\"v\":1}}+"));
        user.send(&format!("R|SN|doc/{id}+"));
        user.expect(&format!("R|R|doc/{id}|1|{{\"v\":1}}+"));
        user.send(&format!("R|SN|secret/{id}+"));
        user.expect(&format!("R|E|SN|secret/{id}|RECORD_NOT_FOUND+"));
        user.send(&format!("E|EVT|unset/{id}|Sx+"));
        user.expect(&format!("E|E|MESSAGE_DENIED|unset/{id}|EVT|Sx+"));
    }
}

#[test]
fn a_cross_reference_named_by_the_stored_record_reads_redis() {
    let redis = Redis::start();
    let (a, b) = (node(&redis), node(&redis));
    let mut alice = client(&a, "alice");
    let mut bob = client(&b, "bob");
    create(&mut alice, "team/red");
    alice.send("R|U|team/red|1|{\"members\":[\"alice\"]}+");
    create(&mut alice, "task/1");
    alice.send("R|U|task/1|1|{\"team\":\"red\"}+");
    alice.send("R|SN|task/1+");
    alice.expect("R|R|task/1|1|{\"team\":\"red\"}+");
    bob.send("R|U|task/1|2|{\"team\":\"red\",\"by\":\"bob\"}+");
    bob.expect("R|E|MESSAGE_DENIED|task/1|U|2|{\"team\":\"red\",\"by\":\"bob\"}+");
    bob.send("R|P|task/1|2|by|Sbob+");
    bob.expect("R|E|MESSAGE_DENIED|task/1|P|2|by|Sbob+");
    alice.send("R|U|team/red|2|{\"members\":[\"alice\",\"bob\"]}+");
    alice.send("R|SN|team/red+");
    alice.expect("R|R|team/red|2|{\"members\":[\"alice\",\"bob\"]}+");
    bob.send("R|P|task/1|2|by|Sbob+");
    alice.expect("R|P|task/1|2|by|Sbob+");
}

/// One writer: sends `values` as upserts of `name`, pipelined, and reads one answer for each;
/// the values whose write was acknowledged.
fn write_all(mut writer: WsClient, name: &str, values: Vec<u64>) -> Vec<u64> {
    for value in &values {
        writer.send(&format!(
            "R|CU|{name}|-1|{{\"n\":{value}}}|{{\"writeSuccess\":true}}+"
        ));
    }
    let (ack, denied) = (
        format!("R|WA|{name}|[-1]|L"),
        format!("R|E|MESSAGE_DENIED|{name}|U"),
    );
    let mut written = Vec::new();
    for value in values {
        let answer = writer
            .next_message(Duration::from_secs(10))
            .expect("an answer to every write");
        let answer = readable(&answer);
        let answer = answer.trim_end_matches('+');
        if answer == ack {
            written.push(value);
        } else {
            assert_eq!(answer, denied, "the answer to n = {value}");
        }
    }
    written
}

#[test]
fn a_rule_on_old_data_holds_under_concurrent_writers_on_two_nodes() {
    // counter/$id: write only a larger n than the stored one. Two nodes write at once, one the
    // even numbers and one the odd ones, each rising: every stored value must still be larger
    // than the one before it, though each check and its write are two Redis round trips apart.
    let redis = Redis::start();
    let (a, b, c) = (node(&redis), node(&redis), node(&redis));
    let name = "counter/race";
    let mut watcher = client(&c, "watcher");
    create(&mut watcher, name);
    let (even, odd) = (ws_client(&a, "even"), ws_client(&b, "odd"));
    // both writers' nodes follow the record, so their checks read their own (lagging) caches
    let (mut follow_a, mut follow_b) = (client(&a, "fa"), client(&b, "fb"));
    for follower in [&mut follow_a, &mut follow_b] {
        follower.send(&format!("R|CR|{name}+"));
        follower.expect(&format!("R|A|S|{name}+R|R|{name}|0|{{}}+"));
    }
    wait_for_channel(&redis, &format!("cs:r:{name}"), 3);
    let rounds = 300;
    let even_writer = {
        let values = (1..=rounds).map(|i| 2 * i).collect();
        std::thread::spawn(move || write_all(even, name, values))
    };
    let odd_writer = {
        let values = (1..=rounds).map(|i| 2 * i + 1).collect();
        std::thread::spawn(move || write_all(odd, name, values))
    };
    let written = even_writer.join().expect("even writer").len()
        + odd_writer.join().expect("odd writer").len();
    assert!(written > 0, "some writes succeed");
    // what every node's subscribers saw: versions 1, 2, ... with n rising
    let mut last = 0;
    for version in 1..=written {
        let update = watcher
            .next_message(Duration::from_secs(5))
            .unwrap_or_else(|| panic!("update {version} of {written}"));
        let update = readable(&update);
        let prefix = format!("R|U|{name}|{version}|{{\"n\":");
        let n: u64 = update
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix("}+"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{update:?} is not version {version} of {name}"));
        assert!(
            n > last,
            "version {version} stored n = {n} after n = {last}"
        );
        last = n;
    }
    watcher.expect_silence(Duration::from_millis(300));
    watcher.send(&format!("R|SN|{name}+"));
    watcher.expect(&format!("R|R|{name}|{written}|{{\"n\":{last}}}+"));
}
