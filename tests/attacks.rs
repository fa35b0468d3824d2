//! Hostile clients against the real binary (issue "hostile clients and faults"). Each attack
//! runs while a healthy client pair exchanges events (`common::attack::Watch`); each test
//! asserts the pair stayed responsive, the server's memory stayed under a stated bound, the
//! attacker got the documented answer or was closed, and the server still serves afterwards.

mod common;

use common::attack::{assert_serving, http, logged_in, read_until_closed, Watch};
use common::{readable, wire, Server, WsClient};
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

const MIB: u64 = 1024;

/// Writes everything it can; a server that closes early makes the rest fail, which is fine.
fn send_all(stream: &mut TcpStream, bytes: &[u8]) {
    let _ = stream.write_all(bytes);
}

/// 1 MiB of short unparseable pieces: `abc` + 0x1E, over and over.
fn garbage_unit(bytes: usize) -> Vec<u8> {
    b"abc\x1e".repeat(bytes / 4)
}

// ----- 1. error-reply amplification -----------------------------------------------------------

#[test]
fn unparseable_pieces_before_login_over_tcp_get_bounded_replies_then_a_close() {
    let server = Server::start("", 1);
    let watch = Watch::start(&server);
    let mut attacker = TcpStream::connect(("127.0.0.1", server.tcp_port)).expect("connect");
    let unit = garbage_unit(1024 * 1024);
    let writer = {
        let mut stream = attacker.try_clone().expect("clone");
        std::thread::spawn(move || send_all(&mut stream, &unit))
    };
    let received = read_until_closed(&mut attacker, Duration::from_secs(10));
    let _ = writer.join();
    // C|CH, then at most maxParseErrors (10) replies quoting "abc" each, then the close.
    assert!(
        received.len() < 4096,
        "{} bytes of replies to one unit",
        received.len()
    );
    let text = readable(&received);
    assert!(
        text.starts_with("C|CH+C|E|MESSAGE_PARSE_ERROR|abc+"),
        "{}",
        &text[..text.len().min(200)]
    );
    watch
        .finish()
        .assert_healthy("1 MiB of garbage over TCP", 64 * MIB);
    assert_serving(&server);
}

/// The engine.io polling handshake: the sid.
fn eio_handshake(port: u16, extra_headers: &str) -> String {
    let (status, _, body) = http(
        port,
        format!(
            "GET /deepstream/?EIO=3&transport=polling&b64=1 HTTP/1.1\r\nHost: x\r\n{extra_headers}Connection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let body = String::from_utf8(body).expect("text");
    body.split("\"sid\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a sid")
        .to_string()
}

fn eio_post(port: u16, sid: &str, payload: &[u8]) -> (u16, Vec<u8>) {
    let mut request = format!(
        "POST /deepstream/?EIO=3&transport=polling&b64=1&sid={sid} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        payload.len()
    )
    .into_bytes();
    request.extend_from_slice(payload);
    let (status, _, body) = http(port, &request);
    (status, body)
}

fn eio_poll(port: u16, sid: &str) -> (u16, Vec<u8>) {
    let (status, _, body) = http(
        port,
        format!(
            "GET /deepstream/?EIO=3&transport=polling&b64=1&sid={sid} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    (status, body)
}

/// One engine.io message packet (`4` + data) as a text payload.
fn eio_message(data: &[u8]) -> Vec<u8> {
    let mut payload = format!("{}:4", data.len() + 1).into_bytes();
    payload.extend_from_slice(data);
    payload
}

#[test]
fn unparseable_pieces_in_one_engineio_post_do_not_stall_the_core() {
    let server = Server::start("", 1);
    let _ = eio_poll(server.http_port, &eio_handshake(server.http_port, "")); // warm up
    let sid = eio_handshake(server.http_port, "");
    let first = eio_poll(server.http_port, &sid).1;
    assert!(readable(&first).contains("C|CH"), "{}", readable(&first));
    let watch = Watch::start(&server);
    let started = Instant::now();
    // Within maxMessageSize (1 MiB) with the packet framing.
    let (status, _) = eio_post(
        server.http_port,
        &sid,
        &eio_message(&garbage_unit(1024 * 1024 - 64)),
    );
    assert_eq!(status, 200);
    let (health, _, _) = http(
        server.http_port,
        b"GET /health-check HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(health, 200);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the post and a health check took {:?}",
        started.elapsed()
    );
    // The session answered a bounded number of errors and was closed.
    let (_, replies) = eio_poll(server.http_port, &sid);
    assert!(replies.len() < 4096, "{} bytes of replies", replies.len());
    eventually(Duration::from_secs(5), "the session to close", || {
        let (status, after) = eio_poll(server.http_port, &sid);
        status == 400 || readable(&after).ends_with(":1")
    });
    watch
        .finish()
        .assert_healthy("1 MiB of garbage in an engine.io post", 64 * MIB);
    assert_serving(&server);
}

// ----- 2. reply amplification across cores ----------------------------------------------------

/// A record name owned by `core` of `cores`.
fn name_on_core(prefix: &str, core: usize, cores: usize) -> String {
    (0..)
        .map(|index| format!("{prefix}-{index}"))
        .find(|name| corestream::shard::owner_of(name.as_bytes(), cores) == core)
        .expect("a name")
}

#[test]
fn repeated_reads_of_a_large_record_share_one_reply_and_stop_at_the_outbound_limit() {
    let server = Server::start("", 2);
    let mut owner = logged_in(&server, "owner");
    let big = "x".repeat(512 * 1024);
    let names: Vec<String> = (0..2).map(|core| name_on_core("big", core, 2)).collect();
    for name in &names {
        owner.send(&format!("R|CR|{name}+"));
        owner.expect(&format!("R|A|S|{name}+R|R|{name}|0|{{}}+"));
        owner.send(&format!("R|U|{name}|1|{{\"x\":\"{big}\"}}+"));
    }
    owner.send("R|SN|nothing+");
    owner.expect("R|E|SN|nothing|RECORD_NOT_FOUND+");
    let watch = Watch::start(&server);
    let mut attacker = logged_in(&server, "reader");
    // 100000 reads of 512 KiB records (50 GB of replies if each were built) in one unit.
    let mut unit = Vec::new();
    for _ in 0..50_000 {
        for name in &names {
            unit.extend_from_slice(&wire(&format!("R|SN|{name}+")));
        }
    }
    send_all(&mut attacker.stream, &unit);
    // It never reads: the server cuts it off as a slow consumer.
    std::thread::sleep(Duration::from_secs(2));
    let drained = read_until_closed(&mut attacker.stream, Duration::from_secs(20));
    assert!(
        drained.len() < 64 * 1024 * 1024,
        "{} bytes reached the reader",
        drained.len()
    );
    watch
        .finish()
        .assert_healthy("100000 reads of 512 KiB records", 256 * MIB);
    assert_serving(&server);
}

// ----- 3. record growth ----------------------------------------------------------------------

#[test]
fn nested_array_indexes_share_one_growth_budget() {
    let server = Server::start("", 1);
    let watch = Watch::start(&server);
    let mut client = logged_in(&server, "grower");
    client.send("R|CR|grow+");
    client.expect("R|A|S|grow+R|R|grow|0|{}+");
    let path = "[9999]".repeat(60);
    client.send(&format!("R|P|grow|1|a{path}|N1+"));
    let reply = readable(
        &client
            .next_message(Duration::from_secs(5))
            .expect("a reply"),
    );
    assert!(
        reply.starts_with("R|E|INVALID_MESSAGE_DATA|array index 9999: a patch may add at most"),
        "{reply}"
    );
    client.send("R|SN|grow+");
    client.expect("R|R|grow|0|{}+");
    // One level of 9999 is fine.
    client.send("R|P|grow|1|a[9999]|N1+");
    client.send("R|SN|grow+");
    let reply = readable(
        &client
            .next_message(Duration::from_secs(5))
            .expect("a reply"),
    );
    assert!(
        reply.starts_with("R|R|grow|1|{\"a\":[null,"),
        "{}",
        &reply[..60]
    );
    watch.finish().assert_healthy("nested indexes", 64 * MIB);
    assert_serving(&server);
}

#[test]
fn a_record_cannot_grow_past_max_record_size() {
    let server = Server::start("maxRecordSize: 65536\n", 2);
    let watch = Watch::start(&server);
    let mut client = logged_in(&server, "grower");
    client.send("R|CR|fat+");
    client.expect("R|A|S|fat+R|R|fat|0|{}+");
    let chunk = "y".repeat(10_000);
    let mut version = 0;
    for key in 0..10 {
        client.send(&format!("R|P|fat|{}|k{key}|S{chunk}+", version + 1));
        client.send("R|SN|fat+");
        let reply = readable(
            &client
                .next_message(Duration::from_secs(5))
                .expect("a reply"),
        );
        if reply.starts_with(&format!("R|R|fat|{}|", version + 1)) {
            version += 1;
            continue;
        }
        assert!(
            reply.starts_with("R|E|INVALID_MESSAGE_DATA|record fat would be")
                && reply.contains("more than maxRecordSize (65536)"),
            "{reply}"
        );
        let read = readable(&client.next_message(Duration::from_secs(5)).expect("a read"));
        assert!(
            read.starts_with(&format!("R|R|fat|{version}|")),
            "{}",
            &read[..40]
        );
    }
    assert_eq!(
        version, 6,
        "six 10 kB patches fit in 64 KiB, the seventh does not"
    );
    // A whole update over the limit is refused too.
    client.send(&format!(
        "R|U|fat|7|{{\"big\":\"{}\"}}+",
        "z".repeat(70_000)
    ));
    let reply = readable(
        &client
            .next_message(Duration::from_secs(5))
            .expect("a reply"),
    );
    assert!(
        reply.contains("more than maxRecordSize"),
        "{}",
        &reply[..80]
    );
    watch.finish().assert_healthy("record growth", 64 * MIB);
    assert_serving(&server);
}

// ----- 4. cross-origin use of the HTTP port ---------------------------------------------------

fn upgrade_request(path: &str, origin: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Origin: {origin}\r\n\r\n"
    )
    .into_bytes()
}

fn status_of(port: u16, request: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.write_all(request).expect("send");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match std::io::Read::read(&mut stream, &mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, head)
}

#[test]
fn with_an_origins_list_other_origins_are_refused_everywhere() {
    let server = Server::start(
        "allowAllOrigins: false\norigins: ['https://good.example']\n",
        2,
    );
    let port = server.http_port;
    let handshake = |origin: &str| {
        status_of(
            port,
            format!(
                "GET /deepstream/?EIO=3&transport=polling HTTP/1.1\r\nHost: x\r\nOrigin: {origin}\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
    };
    let (status, head) = handshake("https://evil.example");
    assert_eq!(status, 403, "{head}");
    assert!(!head.contains("evil.example"), "{head}");
    let (status, head) = handshake("https://good.example");
    assert_eq!(status, 200, "{head}");
    assert!(
        head.contains("Access-Control-Allow-Origin: https://good.example"),
        "{head}"
    );
    // a post and a poll of a real session, from the wrong origin
    let sid = eio_handshake(port, "Origin: https://good.example\r\n");
    let post = format!(
        "POST /deepstream/?EIO=3&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\nOrigin: https://evil.example\r\nContent-Length: 3\r\nConnection: close\r\n\r\n1:6"
    );
    assert_eq!(status_of(port, post.as_bytes()).0, 403);
    // both upgrades: the 2.x WebSocket and engine.io's
    assert_eq!(
        status_of(
            port,
            &upgrade_request("/deepstream", "https://evil.example")
        )
        .0,
        403
    );
    assert_eq!(
        status_of(
            port,
            &upgrade_request(
                &format!("/deepstream/?EIO=3&transport=websocket&sid={sid}"),
                "https://evil.example"
            )
        )
        .0,
        403
    );
    assert_eq!(
        status_of(
            port,
            &upgrade_request("/deepstream", "https://good.example")
        )
        .0,
        101
    );
    // requests without an Origin (not from a browser page) are served
    let mut client = WsClient::connect(port, "/deepstream");
    client.login("no-origin");
}

#[test]
fn without_an_origins_list_any_origin_is_reflected_as_deepstream_does() {
    let server = Server::start("", 1);
    let (status, head) = status_of(
        server.http_port,
        b"GET /deepstream/?EIO=3&transport=polling HTTP/1.1\r\nHost: x\r\nOrigin: https://any.example\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200);
    assert!(
        head.contains("Access-Control-Allow-Origin: https://any.example"),
        "{head}"
    );
}

// ----- 5. clients that stop reading, or never finish -------------------------------------------

fn metric(server: &Server, name: &str) -> u64 {
    let (_, _, body) = http(
        server.http_port,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let text = String::from_utf8_lossy(&body).to_string();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in the metrics"))
}

fn eventually(wait: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what} did not happen within {wait:?}");
}

const WEBSOCKETS: &str = "corestream_connections{transport=\"websocket\"}";

#[test]
fn a_websocket_client_that_stops_reading_is_dropped_without_reading_it() {
    let server = Server::start("maxOutboundBufferSize: 1048576\n", 2);
    let watch = Watch::start(&server);
    let mut sleeper = WsClient::connect(server.http_port, "/deepstream");
    sleeper.login("sleeper");
    common::Wire::send(&mut sleeper, "E|S|flood+");
    common::Wire::expect(&mut sleeper, "E|A|S|flood+");
    assert_eq!(metric(&server, WEBSOCKETS), 1);
    let mut publisher = logged_in(&server, "flooder");
    let event = wire(&format!("E|EVT|flood|S{}+", "x".repeat(16 * 1024)));
    for _ in 0..2048 {
        publisher.send_bytes(&event);
    }
    // The sleeper never reads: the server must let it go on its own.
    eventually(
        Duration::from_secs(10),
        "the server to drop the slow WebSocket",
        || metric(&server, WEBSOCKETS) == 0,
    );
    watch
        .finish()
        .assert_healthy("a WebSocket that stops reading", 128 * MIB);
    assert_serving(&server);
}

#[test]
fn a_websocket_client_stuck_mid_write_is_dropped_after_a_heartbeat() {
    // The output fits the outbound limit, so no slow-consumer abort: only the write deadline
    // (one heartbeat interval) can end this connection.
    let server = Server::start(
        "maxOutboundBufferSize: 268435456\nheartbeatInterval: 1000\n",
        1,
    );
    let mut sleeper = WsClient::connect(server.http_port, "/deepstream");
    sleeper.login("sleeper");
    common::Wire::send(&mut sleeper, "E|S|flood+");
    common::Wire::expect(&mut sleeper, "E|A|S|flood+");
    let mut publisher = logged_in(&server, "flooder");
    let event = wire(&format!("E|EVT|flood|S{}+", "x".repeat(64 * 1024)));
    for _ in 0..256 {
        publisher.send_bytes(&event);
    }
    eventually(
        Duration::from_secs(10),
        "the server to drop the WebSocket stuck in a write",
        || metric(&server, WEBSOCKETS) == 0,
    );
}

#[test]
fn slow_http_heads_bodies_and_idle_connections_are_closed() {
    let server = Server::start(
        "httpHeaderTimeout: 1000\nhttpBodyTimeout: 1000\nhttpKeepAliveTimeout: 1000\n",
        1,
    );
    let watch = Watch::start(&server);
    let port = server.http_port;
    // a head that never ends
    let mut slow = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    slow.write_all(b"GET /health-check HTTP/1.1\r\nHost: x\r\n")
        .expect("send");
    let started = Instant::now();
    let reply = read_until_closed(&mut slow, Duration::from_secs(5));
    assert!(
        String::from_utf8_lossy(&reply).starts_with("HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    assert!(started.elapsed() >= Duration::from_millis(900));
    // a body that never comes
    let mut slow = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    slow.write_all(b"POST /health-check HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
        .expect("send");
    let reply = read_until_closed(&mut slow, Duration::from_secs(5));
    assert!(String::from_utf8_lossy(&reply).starts_with("HTTP/1.1 408"));
    // an idle keep-alive connection, after one request
    let mut idle = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    idle.write_all(b"GET /health-check HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    let reply = read_until_closed(&mut idle, Duration::from_secs(5));
    assert!(String::from_utf8_lossy(&reply).starts_with("HTTP/1.1 200"));
    // a silent connection that never sends a byte
    let mut silent = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    assert!(read_until_closed(&mut silent, Duration::from_secs(5)).is_empty());
    watch.finish().assert_healthy("slow HTTP clients", 64 * MIB);
}

#[test]
fn a_tcp_client_stuck_behind_a_zero_window_is_dropped_by_the_user_timeout() {
    let server = Server::start(
        "maxOutboundBufferSize: 268435456\ntcpUserTimeout: 2000\n",
        1,
    );
    let mut sleeper = logged_in(&server, "sleeper");
    sleeper.send("E|S|flood+");
    sleeper.expect("E|A|S|flood+");
    let mut publisher = logged_in(&server, "flooder");
    let event = wire(&format!("E|EVT|flood|S{}+", "x".repeat(64 * 1024)));
    for _ in 0..256 {
        publisher.send_bytes(&event);
    }
    publisher.send("E|S|probe+");
    publisher.expect("E|A|S|probe+");
    eventually(
        Duration::from_secs(15),
        "the server to drop the TCP client behind a zero window",
        || metric(&server, "corestream_connections{transport=\"tcp\"}") == 1,
    );
}

// ----- 6. WebSocket control frames ------------------------------------------------------------

#[test]
fn a_control_frame_announcing_more_than_125_bytes_is_refused_at_its_header() {
    let server = Server::start("", 1);
    let mut client = WsClient::connect(server.http_port, "/deepstream");
    common::Wire::expect(&mut client, "C|CH+");
    // A ping announcing 2^40 bytes, and nothing after its header.
    let mut header = vec![0x89, 0x80 | 127];
    header.extend_from_slice(&(1u64 << 40).to_be_bytes());
    client.stream.write_all(&header).expect("send");
    common::Wire::expect_closed(&mut client);
    assert_eq!(client.closed_with, Some(Some(1002)));
}

// ----- 7. engine.io session ids and bounds -----------------------------------------------------

#[test]
fn engineio_sids_carry_128_random_bits_and_sessions_are_bounded() {
    let server = Server::start(
        "maxEngineioSessionsPerAddress: 5\nmaxEngineioQueuedPackets: 100\n",
        2,
    );
    let port = server.http_port;
    let mut sids = Vec::new();
    for _ in 0..5 {
        sids.push(eio_handshake(port, ""));
    }
    for sid in &sids {
        let (core, random) = sid.split_once('-').expect("core-random");
        assert!(
            core.len() <= 2 && u8::from_str_radix(core, 16).is_ok(),
            "{sid}"
        );
        assert_eq!(random.len(), 32, "128 bits in hex: {sid}");
        assert!(random.bytes().all(|byte| byte.is_ascii_hexdigit()), "{sid}");
    }
    let mut unique = sids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 5);
    // the sixth from this address is refused
    let (status, head) = status_of(
        port,
        b"GET /deepstream/?EIO=3&transport=polling&b64=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 503, "{head}");
    // a post of more packets than maxEngineioQueuedPackets closes the session
    let mut payload = Vec::new();
    for _ in 0..150 {
        payload.extend_from_slice(b"1:2");
    }
    let (status, _) = eio_post(port, &sids[0], &payload);
    assert_eq!(status, 200);
    eventually(
        Duration::from_secs(5),
        "the flooding session to close",
        || {
            let (status, body) = eio_poll(port, &sids[0]);
            status == 400 || readable(&body).ends_with(":1")
        },
    );
    // its place is given back: a new session opens
    eventually(Duration::from_secs(5), "a new session", || {
        status_of(
            port,
            b"GET /deepstream/?EIO=3&transport=polling&b64=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .0 == 200
    });
}

// ----- 8. usernames with control characters ---------------------------------------------------

#[test]
fn a_username_with_control_characters_is_refused_at_login() {
    let server = Server::start("", 1);
    let mut watcher = WsClient::connect(server.http_port, "/deepstream");
    watcher.login("watcher");
    common::Wire::send(&mut watcher, "U|S|S+");
    common::Wire::expect(&mut watcher, "U|A|S|U+");
    let mut client = server.connect();
    client.expect("C|CH+");
    client.send("C|CHR|x+");
    client.expect("C|A+");
    client.send_bytes(b"A\x1fREQ\x1f{\"username\":\"evil\\u001fPNJ\\u001eE\"}\x1e");
    client.expect("A|E|INVALID_AUTH_DATA|Susername contains control characters+");
    // the watcher heard of no login
    assert!(watcher.next_message(Duration::from_millis(300)).is_none());
}

// ----- 9. per-connection state ----------------------------------------------------------------

#[test]
fn per_connection_state_has_limits_with_clear_errors() {
    let server = Server::start(
        "maxSubscriptionsPerConnection: 3\nmaxListenPatternsPerConnection: 2\n\
         maxRpcNamesPerConnection: 2\nmaxRpcCallsInFlightPerConnection: 2\n",
        1,
    );
    let mut client = logged_in(&server, "greedy");
    client.send("E|S|a+E|S|b+R|CR|c+");
    client.expect("E|A|S|a+E|A|S|b+R|A|S|c+R|R|c|0|{}+");
    client.send("E|S|d+");
    client.expect("E|E|TOO_MANY_SUBSCRIPTIONS|d+");
    client.send("R|CR|e+");
    client.expect("R|E|TOO_MANY_SUBSCRIPTIONS|e+");
    client.send("E|US|a+E|S|d+");
    client.expect("E|A|US|a+E|A|S|d+");
    client.send("E|L|x.*+E|L|y.*+E|L|z.*+");
    client.expect("E|A|L|x.*+E|A|L|y.*+E|E|TOO_MANY_LISTEN_PATTERNS|z.*+");
    // RPC: a provider that never answers, and a requester with two calls in flight at most
    let mut provider = logged_in(&server, "provider");
    provider.send("P|S|slow+");
    provider.expect("P|A|S|slow+");
    client.send("P|REQ|slow|1|Sx+P|REQ|slow|2|Sx+P|REQ|slow|3|Sx+");
    client.expect("P|E|TOO_MANY_RPC_CALLS|slow|3+");
    client.send("P|REQ|other|4|Sx+P|REQ|third|5|Sx+");
    // (two calls to "slow" are in flight on this core: a call to "other" is refused too)
    client.expect("P|E|TOO_MANY_RPC_CALLS|other|4+P|E|TOO_MANY_RPC_NAMES|third|5+");
    // an answered call frees its place
    let request = readable(
        &provider
            .next_message(Duration::from_secs(5))
            .expect("a request"),
    );
    assert_eq!(request, "P|REQ|slow|1|Sx+");
    provider.send("P|A|slow|1+P|RES|slow|1|Sdone+");
    client.expect("P|A|slow|1+P|RES|slow|1|Sdone+");
    client.send("P|REQ|slow|6|Sx+");
    client.expect_silence(Duration::from_millis(200));
}

// ----- 10. the small ones ---------------------------------------------------------------------

#[test]
fn chunked_requests_and_conflicting_lengths_are_refused() {
    let server = Server::start("", 1);
    let (status, _, _) = http(
        server.http_port,
        b"POST /health-check HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    );
    assert_eq!(status, 501);
    let (status, _, _) = http(
        server.http_port,
        b"POST /health-check HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 30\r\n\r\nabc",
    );
    assert_eq!(status, 400);
    assert_serving(&server);
}

#[test]
fn failed_logins_are_limited_per_address_across_connections() {
    let server = Server::start(
        &format!(
            "{}maxAuthAttemptsPerAddress: 3\nauthAttemptsWindow: 60000\n",
            common::FILE_AUTH
        ),
        2,
    );
    for attempt in 0..3 {
        let mut client = server.connect();
        client.expect("C|CH+");
        client.send("C|CHR|x+");
        client.expect("C|A+");
        client.send(&format!(
            "A|REQ|{{\"username\":\"userA\",\"password\":\"wrong{attempt}\"}}+"
        ));
        client.expect("A|E|INVALID_AUTH_DATA|U+");
    }
    // even the right password is refused from this address now
    let mut client = server.connect();
    client.expect("C|CH+");
    client.send("C|CHR|x+");
    client.expect("C|A+");
    client.send("A|REQ|{\"username\":\"userA\",\"password\":\"password\"}+");
    client.expect("A|E|TOO_MANY_AUTH_ATTEMPTS|Stoo many authentication attempts+");
    client.expect_closed();
}

// ----- 11. ports nobody asked for, and ports shared by accident ---------------------------------

#[test]
fn a_deepstream_2_config_opens_no_tcp_port() {
    let server = Server::start_raw(
        "connectionEndpoints:\n  websocket:\n    options:\n      port: {http}\n      host: 127.0.0.1\nlogLevel: WARN\n",
        1,
    );
    let mut client = WsClient::connect(server.http_port, "/deepstream");
    client.login("v2");
    let listening = common::listening_ports(server.pid());
    assert_eq!(
        listening,
        vec![server.http_port],
        "only the WebSocket endpoint listens"
    );
}

#[test]
fn a_second_server_on_the_same_port_refuses_to_start() {
    let server = Server::start("", 1);
    let config = format!(
        "host: 127.0.0.1\nport: {}\ntcpHost: 127.0.0.1\ntcpPort: {}\n",
        common::free_port(),
        server.tcp_port
    );
    let (status, stderr) = common::run_to_exit(&config);
    assert_eq!(status, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("127.0.0.1:{}", server.tcp_port)) && stderr.contains("already"),
        "{stderr}"
    );
    assert_serving(&server);
}
