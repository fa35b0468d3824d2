//! Black-box cluster tests: a real `redis-server` on a free loopback port and several
//! corestream nodes (separate processes) configured with deepstream's own plugin keys.
//! Clients talk to the nodes over real sockets and assert exact bytes.
//!
//! Needs `redis-server` on PATH (scripts/test.sh installs it from apt when missing).

mod common;

use common::redis::{eventually, wait_for_channel, Redis};
use common::{readable, Client, Server, Wire, WsClient};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

fn node(redis: &Redis) -> Server {
    Server::start(&redis.config(), 2)
}

fn metrics(server: &Server) -> String {
    http_get(server.http_port, "/metrics").1
}

fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("http");
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .expect("write");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("read");
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (status, body)
}

fn metric(text: &str, line_start: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(line_start))
        .and_then(|value| value.trim().parse().ok())
}

#[test]
fn events_reach_every_node_and_a_node_follows_a_channel_only_while_it_has_subscribers() {
    let redis = Redis::start();
    let nodes: Vec<Server> = (0..3).map(|_| node(&redis)).collect();
    let mut emitter = nodes[0].connect();
    emitter.login("emitter");
    let mut near = nodes[0].connect();
    near.login("near");
    let mut far1 = nodes[1].connect();
    far1.login("far1");
    let mut far2 = nodes[2].connect();
    far2.login("far2");
    for client in [&mut near, &mut far1, &mut far2] {
        client.send("E|S|prices+");
        client.expect("E|A|S|prices+");
    }
    wait_for_channel(&redis, "cs:e:prices", 3);

    emitter.send("E|EVT|prices|O{\"bid\":1}+");
    for client in [&mut near, &mut far1, &mut far2] {
        client.expect("E|EVT|prices|O{\"bid\":1}+");
    }
    // never echoed to the sender, on its own node or through Redis
    emitter.expect_silence(Duration::from_millis(200));

    // an emit from another node reaches the emitter's node too (and not its own sender)
    far2.send("E|EVT|prices|Sfrom-far2+");
    near.expect("E|EVT|prices|Sfrom-far2+");
    far1.expect("E|EVT|prices|Sfrom-far2+");
    far2.expect_silence(Duration::from_millis(200));

    // the last subscriber of node 2 leaves: node 2 stops following the channel
    far2.send("E|US|prices+");
    far2.expect("E|A|US|prices+");
    wait_for_channel(&redis, "cs:e:prices", 2);
    emitter.send("E|EVT|prices|Sagain+");
    near.expect("E|EVT|prices|Sagain+");
    far1.expect("E|EVT|prices|Sagain+");
    far2.expect_silence(Duration::from_millis(200));

    // a closed connection counts as leaving
    far1.close();
    wait_for_channel(&redis, "cs:e:prices", 1);

    let text = metrics(&nodes[0]);
    assert_eq!(
        metric(&text, "corestream_redis_links_up{link=\"command\"}"),
        Some(2)
    );
    assert_eq!(
        metric(&text, "corestream_redis_links_up{link=\"pubsub\"}"),
        Some(2)
    );
    assert!(metric(&text, "corestream_cluster_published_total").unwrap_or(0) >= 2);

    // every client gone (records and RPC too): each node is back to its three own channels
    // (presence, its node channel and the listen leader's), nothing left over from the names it
    // followed
    let mut record_client = nodes[1].connect();
    record_client.login("records");
    record_client.send("R|CR|left-over+");
    record_client.expect("R|A|S|left-over+R|R|left-over|0|{}+");
    wait_for_channel(&redis, "cs:r:left-over", 1);
    for client in [emitter, near, far2, record_client] {
        client.close();
    }
    for server in &nodes {
        eventually(
            Duration::from_secs(5),
            "a node's channels back to its own three",
            || metric(&metrics(server), "corestream_cluster_channels") == Some(3),
        );
    }
    wait_for_channel(&redis, "cs:e:prices", 0);
    wait_for_channel(&redis, "cs:r:left-over", 0);
}

/// One writer: upserts with write acks until it got `successes` versions accepted; returns the
/// versions it was acknowledged for and how many times it was refused.
fn write_until(mut writer: WsClient, name: &str, who: &str, successes: usize) -> (Vec<i64>, usize) {
    let mut next = 1i64;
    let mut accepted = Vec::new();
    let mut refused = 0;
    while accepted.len() < successes {
        writer.send(&format!(
            "R|CU|{name}|{next}|{{\"by\":\"{who}\",\"n\":{next}}}|{{\"writeSuccess\":true}}+"
        ));
        let reply = writer
            .next_message(Duration::from_secs(5))
            .expect("a reply to every write");
        let text = readable(&reply);
        let fields: Vec<&str> = text.trim_end_matches('+').split('|').collect();
        match fields.as_slice() {
            ["R", "WA", _, versions, "L"] => {
                assert_eq!(*versions, format!("[{next}]"));
                accepted.push(next);
                next += 1;
            }
            ["R", "E", "VERSION_EXISTS", _, current, _data, "{\"writeSuccess\":true}"] => {
                refused += 1;
                next = current.parse::<i64>().expect("a version") + 1;
            }
            other => panic!("{who}: unexpected reply {other:?}"),
        }
    }
    (accepted, refused)
}

#[test]
fn concurrent_writers_on_different_nodes_never_share_a_version_and_every_node_sees_one_sequence() {
    let redis = Redis::start();
    let nodes: Vec<Server> = (0..3).map(|_| node(&redis)).collect();
    let name = "hot/record";
    let mut observers: Vec<Client> = nodes
        .iter()
        .map(|server| {
            let mut observer = server.connect();
            observer.login("observer");
            observer.send(&format!("R|CR|{name}+"));
            observer.expect(&format!("R|A|S|{name}+R|R|{name}|0|{{}}+"));
            observer
        })
        .collect();
    wait_for_channel(&redis, &format!("cs:r:{name}"), 3);

    const EACH: usize = 60;
    let writers: Vec<std::thread::JoinHandle<(Vec<i64>, usize)>> =
        [(0usize, "w0"), (1, "w1"), (2, "w2")]
            .into_iter()
            .map(|(index, who)| {
                let mut writer = nodes[index].connect_ws();
                writer.login(who);
                std::thread::spawn(move || write_until(writer, name, who, EACH))
            })
            .collect();
    let results: Vec<(Vec<i64>, usize)> = writers
        .into_iter()
        .map(|writer| writer.join().expect("writer thread"))
        .collect();
    let total = EACH * results.len();
    let mut owners: BTreeMap<i64, usize> = BTreeMap::new();
    for (writer, (accepted, _)) in results.iter().enumerate() {
        for version in accepted {
            assert!(
                owners.insert(*version, writer).is_none(),
                "version {version} was accepted twice"
            );
        }
    }
    assert_eq!(
        owners.keys().copied().collect::<Vec<_>>(),
        (1..=total as i64).collect::<Vec<_>>(),
        "the accepted versions are not exactly 1..{total}"
    );
    let conflicts: usize = results.iter().map(|(_, refused)| refused).sum();
    assert!(
        conflicts > 0,
        "three concurrent writers never collided: not a concurrency test"
    );

    // every observer, on every node, saw versions 1..total in order, each with its writer's data
    let mut sequences = Vec::new();
    for observer in &mut observers {
        let mut seen = Vec::new();
        while seen.len() < total {
            let message = observer
                .next_message(Duration::from_secs(5))
                .unwrap_or_else(|| {
                    panic!("an observer stopped at {} of {total} updates", seen.len())
                });
            seen.push(readable(&message));
        }
        observer.expect_silence(Duration::from_millis(100));
        sequences.push(seen);
    }
    for (index, message) in sequences[0].iter().enumerate() {
        let version = index as i64 + 1;
        let who = format!("w{}", owners[&version]);
        assert_eq!(
            message,
            &format!("R|U|{name}|{version}|{{\"by\":\"{who}\",\"n\":{version}}}+")
        );
    }
    assert_eq!(sequences[1], sequences[0]);
    assert_eq!(sequences[2], sequences[0]);

    // fresh readers on every node agree on the last version and data
    let last = total as i64;
    let expected = format!(
        "R|R|{name}|{last}|{{\"by\":\"w{}\",\"n\":{last}}}+",
        owners[&last]
    );
    for server in &nodes {
        let mut reader = server.connect();
        reader.login("reader");
        reader.send(&format!("R|SN|{name}+"));
        reader.expect(&expected);
        reader.send(&format!("R|H|{name}+"));
        reader.expect(&format!("R|H|{name}|T+"));
    }
}

#[test]
fn patches_deletes_and_reads_go_through_redis() {
    let redis = Redis::start();
    let a = node(&redis);
    let b = node(&redis);
    let mut alice = a.connect();
    alice.login("alice");
    let mut bob = b.connect();
    bob.login("bob");
    alice.send("R|CR|doc+");
    alice.expect("R|A|S|doc+R|R|doc|0|{}+");
    bob.send("R|CR|doc+");
    bob.expect("R|A|S|doc+R|R|doc|0|{}+");
    wait_for_channel(&redis, "cs:r:doc", 2);
    alice.send("R|U|doc|1|{\"a\":{\"b\":1}}+");
    bob.expect("R|U|doc|1|{\"a\":{\"b\":1}}+");
    // a 2.x write with a write config reaches the other node's subscribers as it was sent
    let mut dora = b.connect_ws();
    dora.login("dora");
    dora.send("R|U|doc|2|{\"a\":{\"b\":1}}|{\"writeSuccess\":true}+");
    dora.expect("R|WA|doc|[2]|L+");
    alice.expect("R|U|doc|2|{\"a\":{\"b\":1}}|{\"writeSuccess\":true}+");
    bob.expect("R|U|doc|2|{\"a\":{\"b\":1}}|{\"writeSuccess\":true}+");
    bob.send("R|P|doc|3|a.c|N2+");
    alice.expect("R|P|doc|3|a.c|N2+");
    // a stale write from alice: VERSION_EXISTS with what Redis holds (bob's patch applied)
    alice.send("R|U|doc|3|{\"stale\":true}+");
    alice.expect("R|E|VERSION_EXISTS|doc|3|{\"a\":{\"b\":1,\"c\":2}}+");
    // a reader on a node without subscribers reads from Redis
    let c = node(&redis);
    let mut carol = c.connect();
    carol.login("carol");
    carol.send("R|SN|doc+");
    carol.expect("R|R|doc|3|{\"a\":{\"b\":1,\"c\":2}}+");
    carol.send("R|H|doc+");
    carol.expect("R|H|doc|T+");
    carol.send("R|SN|nothing+");
    carol.expect("R|E|SN|nothing|RECORD_NOT_FOUND+");
    carol.send("R|U|nothing|1|{}+");
    carol.expect("R|E|RECORD_UPDATE_ERROR|1+");
    // a delete on node c reaches the subscribers of a and b, who are unsubscribed
    carol.send("R|D|doc+");
    carol.expect("R|A|D|doc+");
    alice.expect("R|A|D|doc+");
    bob.expect("R|A|D|doc+");
    wait_for_channel(&redis, "cs:r:doc", 0);
    carol.send("R|H|doc+");
    carol.expect("R|H|doc|F+");
    alice.send("R|U|doc|4|{}+");
    alice.expect("R|E|RECORD_UPDATE_ERROR|4+");
}

#[test]
fn presence_spans_the_cluster_and_a_dead_nodes_users_leave() {
    let redis = Redis::start();
    let a = node(&redis);
    let b = node(&redis);
    let mut watcher = b.connect_ws();
    watcher.login("watcher");
    watcher.send("U|S|S+");
    watcher.expect("U|A|S|U+");

    let mut alice = a.connect_ws();
    alice.login("alice");
    watcher.expect("U|PNJ|alice+");
    watcher.send("U|Q|Q+");
    watcher.expect("U|Q|alice+");
    // a second login of the same user elsewhere is not a new join
    let c = node(&redis);
    let mut alice_again = c.connect_ws();
    alice_again.login("alice");
    let mut bob = c.connect_ws();
    bob.login("bob");
    watcher.expect("U|PNJ|bob+");
    // alice's socket on c closes: she is still on a
    drop(alice_again);
    watcher.send("U|Q|Q+");
    let reply = readable(
        &watcher
            .next_message(Duration::from_secs(5))
            .expect("query reply"),
    );
    let users: BTreeSet<&str> = reply.trim_end_matches('+').split('|').skip(2).collect();
    assert_eq!(users, BTreeSet::from(["alice", "bob"]));

    // node a dies without a word: after clusterNodeInactiveTimeout alice leaves
    let started = Instant::now();
    // SAFETY: kill(2) on our own child's PID.
    unsafe {
        libc::kill(a.pid() as libc::pid_t, libc::SIGKILL);
    }
    watcher.expect("U|PNL|alice+");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1000),
        "alice left after {took:?}, before the node could be inactive"
    );
    watcher.send("U|Q|Q+");
    watcher.expect("U|Q|bob+");
    drop(alice);

    // node c stops cleanly (SIGTERM): it leaves at once, without waiting for the timeout
    let started = Instant::now();
    drop(c);
    watcher.expect("U|PNL|bob+");
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(1000),
        "a clean stop took {took:?} to reach the other nodes"
    );
    eventually(
        Duration::from_secs(2),
        "node c gone from the node list",
        || redis.command("HLEN cs:nodes").as_deref() == Some(":1"),
    );
}

#[test]
fn a_redis_restart_keeps_local_service_and_loses_no_acknowledged_write() {
    let mut redis = Redis::start();
    let a = node(&redis);
    let b = node(&redis);
    let mut writer = a.connect_ws();
    writer.login("writer");
    let mut local = a.connect();
    local.login("local");
    local.send("E|S|news+");
    local.expect("E|A|S|news+");
    let mut remote = b.connect();
    remote.login("remote");
    remote.send("E|S|news+");
    remote.expect("E|A|S|news+");
    wait_for_channel(&redis, "cs:e:news", 2);

    writer.send("R|CU|kept|-1|{\"n\":1}|{\"writeSuccess\":true}+");
    writer.expect("R|WA|kept|[-1]|L+");
    writer.send("R|CU|kept|2|{\"n\":2}|{\"writeSuccess\":true}+");
    writer.expect("R|WA|kept|[2]|L+");

    redis.kill();
    eventually(
        Duration::from_secs(5),
        "node a to notice Redis is gone",
        || metric(&metrics(&a), "corestream_redis_links_up{link=\"command\"}") == Some(0),
    );
    let (status, body) = http_get(a.http_port, "/health-check");
    assert_eq!(status, 200, "the node still serves its clients");
    assert!(body.contains("degraded"), "health-check body: {body}");
    // local clients are still served
    writer.send("E|EVT|news|Swhile-down+");
    local.expect("E|EVT|news|Swhile-down+");
    // a write that cannot reach Redis is refused, not acknowledged
    writer.send("R|CU|kept|3|{\"n\":3}|{\"writeSuccess\":true}+");
    writer.expect(
        "R|E|RECORD_UPDATE_ERROR|3+R|WA|kept|[3]|SRedis refused the write: it was not applied+",
    );

    redis.launch();
    eventually(Duration::from_secs(10), "both nodes to reconnect", || {
        [&a, &b].iter().all(|server| {
            let text = metrics(server);
            metric(&text, "corestream_redis_links_up{link=\"command\"}") == Some(2)
                && metric(&text, "corestream_redis_links_up{link=\"pubsub\"}") == Some(2)
        })
    });
    assert!(metric(&metrics(&a), "corestream_redis_reconnects_total").unwrap_or(0) >= 2);
    wait_for_channel(&redis, "cs:e:news", 2);
    // the channel subscriptions are back: cross-node events flow again
    writer.send("E|EVT|news|Sback+");
    local.expect("E|EVT|news|Sback+");
    remote.expect("E|EVT|news|Sback+");
    // the acknowledged writes survived the restart
    let mut reader = b.connect();
    reader.login("reader");
    reader.send("R|SN|kept+");
    reader.expect("R|R|kept|2|{\"n\":2}+");
    writer.send("R|CU|kept|3|{\"n\":3}|{\"writeSuccess\":true}+");
    writer.expect("R|WA|kept|[3]|L+");
}

fn node_with(redis: &Redis, extra: &str) -> Server {
    Server::start(&format!("{}{extra}", redis.config()), 2)
}

#[test]
fn rpc_requests_reach_providers_on_other_nodes_with_reject_reroute_and_timeouts() {
    let redis = Redis::start();
    // the ack timeout leaves the test time to find which node got a request
    let timeouts = "rpcAckTimeout: 1000\nrpcTimeout: 2000\n";
    let a = node_with(&redis, timeouts);
    let b = node_with(&redis, timeouts);
    let c = node_with(&redis, timeouts);
    let mut requester = a.connect();
    requester.login("requester");
    let mut provider_b = b.connect();
    provider_b.login("provider-b");
    provider_b.send("P|S|add+");
    provider_b.expect("P|A|S|add+");
    eventually(
        Duration::from_secs(5),
        "node b registered as a provider",
        || redis.command("SCARD cs:rpc:add").as_deref() == Some(":1"),
    );

    // a 1.x requester on node a, the provider on node b
    requester.send("P|REQ|add|c1|O{\"a\":1,\"b\":2}+");
    provider_b.expect("P|REQ|add|c1|O{\"a\":1,\"b\":2}+");
    provider_b.send("P|A|add|c1+");
    requester.expect("P|A|add|c1+");
    provider_b.send("P|RES|add|c1|N3+");
    requester.expect("P|RES|add|c1|N3+");

    // a 2.x requester gets the 2.x ack; a provider error crosses as it was sent
    let mut requester_v2 = a.connect_ws();
    requester_v2.login("requester-v2");
    requester_v2.send("P|REQ|add|c2|O{}+");
    provider_b.expect("P|REQ|add|c2|O{}+");
    provider_b.send("P|A|add|c2+");
    requester_v2.expect("P|A|REQ|add|c2+");
    provider_b.send("P|E|bad numbers|add|c2+");
    requester_v2.expect("P|E|bad numbers|add|c2+");

    // a second provider on node c: a reject on one node reroutes to the other
    let mut provider_c = c.connect();
    provider_c.login("provider-c");
    provider_c.send("P|S|add+");
    provider_c.expect("P|A|S|add+");
    eventually(
        Duration::from_secs(5),
        "node c registered as a provider",
        || redis.command("SCARD cs:rpc:add").as_deref() == Some(":2"),
    );
    requester.send("P|REQ|add|c3|N1+");
    let (first, second) = match provider_b.next_message(Duration::from_millis(300)) {
        Some(message) => {
            assert_eq!(readable(&message), "P|REQ|add|c3|N1+");
            (&mut provider_b, &mut provider_c)
        }
        None => {
            provider_c.expect("P|REQ|add|c3|N1+");
            (&mut provider_c, &mut provider_b)
        }
    };
    first.send("P|REJ|add|c3+");
    second.expect("P|REQ|add|c3|N1+");
    second.send("P|REJ|add|c3+");
    requester.expect("P|E|NO_RPC_PROVIDER|add|c3+");

    // a provider that never acks: ACK_TIMEOUT for the requester on the other node
    provider_c.send("P|US|add+");
    provider_c.expect("P|A|US|add+");
    eventually(Duration::from_secs(5), "node c unregistered", || {
        redis.command("SCARD cs:rpc:add").as_deref() == Some(":1")
    });
    requester.send("P|REQ|add|c4|N1+");
    provider_b.expect("P|REQ|add|c4|N1+");
    requester.expect("P|E|ACK_TIMEOUT|add|c4+");

    // no provider anywhere
    requester.send("P|REQ|nobody|c5|N1+");
    requester.expect("P|E|NO_RPC_PROVIDER|nobody|c5+");

    // the provider's node dies with a call in flight: once the node is declared dead the call
    // fails at once rather than waiting for the response timeout... or the timeout comes first
    requester.send("P|REQ|add|c6|N1+");
    provider_b.expect("P|REQ|add|c6|N1+");
    provider_b.send("P|A|add|c6+");
    requester.expect("P|A|add|c6+");
    // SAFETY: kill(2) on our own child's PID.
    unsafe {
        libc::kill(b.pid() as libc::pid_t, libc::SIGKILL);
    }
    let reply = readable(
        &requester
            .next_message(Duration::from_secs(3))
            .expect("an error"),
    );
    assert!(
        reply == "P|E|NO_RPC_PROVIDER|add|c6+" || reply == "P|E|RESPONSE_TIMEOUT|add|c6+",
        "{reply}"
    );
    eventually(
        Duration::from_secs(5),
        "the dead node's providers removed from Redis",
        || redis.command("SCARD cs:rpc:add").as_deref() == Some(":0"),
    );
    requester.send("P|REQ|add|c7|N1+");
    requester.expect("P|E|NO_RPC_PROVIDER|add|c7+");
}

/// `redis-cli` against the test's Redis with raw byte arguments; its stdout.
fn redis_cli(redis: &Redis, arguments: &[&[u8]]) -> String {
    use std::os::unix::ffi::OsStrExt;
    let output = Command::new("redis-cli")
        .args(["-p", &redis.port.to_string()])
        .args(
            arguments
                .iter()
                .map(|argument| std::ffi::OsStr::from_bytes(argument)),
        )
        .output()
        .expect("redis-cli (installed with redis-server)");
    String::from_utf8_lossy(&output.stdout).to_string()
}

#[test]
fn hostile_node_messages_from_redis_are_ignored() {
    let redis = Redis::start();
    let mut a = node(&redis);
    let mut b = node(&redis);
    let mut listener = a.connect();
    listener.login("listener");
    listener.send("E|L|name.*+");
    listener.expect("E|A|L|name.*+");
    eventually(Duration::from_secs(5), "both nodes in cs:nodes", || {
        redis_cli(&redis, &[b"HLEN", b"cs:nodes"]).trim() == "2"
    });
    let nodes: Vec<String> = redis_cli(&redis, &[b"HKEYS", b"cs:nodes"])
        .lines()
        .map(str::to_string)
        .collect();
    // Sessions on cores this process does not have, stand-in markers, huge numbers, fields
    // missing, garbage: none of it may reach an index or a panic.
    let hostile: Vec<&[u8]> = vec![
        b"LS\x1eevil\x1e99\x1e0\x1e1\x1eE\x1fSR\x1fname.*\x1fname1\x1e",
        b"LS\x1eevil\x1e65535\x1e4294967295\x1e1\x1eE\x1fSP\x1fname.*\x1fname1\x1e",
        b"LS\x1eevil\x1e0\x1e4294967295\x1e7\x1eE\x1fSP\x1fname.*\x1fname1\x1e",
        b"LI\x1eevil\x1eE\x1e65534\x1e1\x1ename1",
        b"LI\x1eevil\x1eE\x1e99\x1e1\x1ename2",
        b"LX\x1eevil\x1e70000",
        b"LL\x1eevil\x1eE\x1e65533\x1e0\x1e0\x1ename.*",
        b"LR\x1eevil\x1eE\x1e99\x1e0\x1e0\x1e1\x1ename.*\x1ename1\x1eraw",
        b"LH\x1eevil\x1eR\x1fSH\x1fname1\x1fT\x1e",
        b"LS\x1eevil",
        b"Q\x1eevil\x1eP\x1fREQ\x1fadd\x1fc1\x1fN1\x1e",
        b"A\x1eevil\x1eP\x1fRES\x1fadd\x1fc1\x1fN2\x1e",
        b"\x1e\x1e\x1e",
        b"",
    ];
    for node_name in &nodes {
        let channel = format!("cs:node:{node_name}");
        for payload in &hostile {
            redis_cli(&redis, &[b"PUBLISH", channel.as_bytes(), payload]);
        }
    }
    for (channel, payload) in [
        (&b"cs:listen"[..], &b"\x1e99\x1e"[..]),
        (b"cs:presence", b"J\x1e\x1e"),
        (b"cs:e:name1", b"nosplit"),
        (b"cs:r:name1", b"evil\x1eU\x1enot-a-number\x1e{}\x1e"),
    ] {
        redis_cli(&redis, &[b"PUBLISH", channel, payload]);
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(a.is_alive() && b.is_alive(), "a node died");
    let mut subscriber = b.connect();
    subscriber.login("sub");
    subscriber.send("E|S|after+");
    subscriber.expect("E|A|S|after+");
    wait_for_channel(&redis, "cs:e:after", 1);
    let mut publisher = a.connect();
    publisher.login("pub");
    publisher.send("E|EVT|after|Sok+");
    subscriber.expect("E|EVT|after|Sok+");
}

#[test]
fn a_write_whose_reply_is_lost_is_reported_as_unknown_not_refused() {
    let mut redis = Redis::start();
    let a = node(&redis);
    let mut writer = WsClient::connect(a.http_port, "/deepstream");
    writer.login("writer");
    writer.send("R|CU|pending|-1|{\"n\":1}|{\"writeSuccess\":true}+");
    writer.expect("R|WA|pending|[-1]|L+");
    // Redis holds every write command: the next write is sent and then waits for its reply...
    redis.command("CLIENT PAUSE 5000 WRITE").expect("paused");
    writer.send("R|CU|pending|2|{\"n\":2}|{\"writeSuccess\":true}+");
    std::thread::sleep(Duration::from_millis(300));
    // ...which never comes: Redis dies with the write in flight.
    redis.kill();
    writer.expect(
        "R|E|RECORD_UPDATE_ERROR|2+R|WA|pending|[2]|SRedis connection lost before it answered: \
         the write may have been applied+",
    );
    // Writes while Redis is gone are refused outright.
    writer.send("R|CU|pending|2|{\"n\":2}|{\"writeSuccess\":true}+");
    writer.expect(
        "R|E|RECORD_UPDATE_ERROR|2+R|WA|pending|[2]|SRedis refused the write: it was not applied+",
    );
}

#[test]
fn records_nobody_follows_are_not_kept_in_a_nodes_memory() {
    let redis = Redis::start();
    let a = node(&redis);
    let mut client = a.connect();
    client.login("creator");
    for index in 0..500 {
        client.send(&format!("R|CR|kept-{index}+"));
        client.expect(&format!("R|A|S|kept-{index}+R|R|kept-{index}|0|{{}}+"));
    }
    assert_eq!(
        metric(&metrics(&a), "corestream_records"),
        Some(500),
        "cached while subscribed"
    );
    for index in 0..500 {
        client.send(&format!("R|US|kept-{index}+"));
    }
    // (the acks come from each name's owner core, in no particular order between cores)
    let mut acks = BTreeSet::new();
    while acks.len() < 500 {
        let ack = readable(&client.next_message(Duration::from_secs(5)).expect("an ack"));
        assert!(ack.starts_with("R|A|US|kept-"), "{ack}");
        acks.insert(ack);
    }
    eventually(Duration::from_secs(5), "the cache to be emptied", || {
        metric(&metrics(&a), "corestream_records") == Some(0)
    });
    // Redis still holds them
    let mut reader = a.connect();
    reader.login("reader");
    reader.send("R|SN|kept-42+");
    reader.expect("R|R|kept-42|0|{}+");
}
