//! engine.io protocol 3 at the byte level, as in tests/fixtures/captures/v1/lib-engineio-login-and-
//! event.log: the polling handshake, the deepstream handshake and login over polls and posts,
//! with every request on a new connection against two cores (so requests land on both cores
//! and are relayed to the session's home core), unknown sessions, and the heartbeat timeout.

mod common;

use common::{wire, Server};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// One request on a new connection; returns (status, headers, body).
fn request(port: u16, method: &str, target: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let head = format!(
        "{method} {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("send");
    stream.write_all(body).expect("send body");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).expect("read");
    let split = reply
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .expect("a response head");
    let headers = String::from_utf8_lossy(&reply[..split]).to_string();
    let status = headers
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("status");
    (status, headers, reply[split + 4..].to_vec())
}

fn handshake(port: u16) -> String {
    let (status, headers, body) = request(
        port,
        "GET",
        "/deepstream/?EIO=3&transport=polling&b64=1",
        b"",
    );
    assert_eq!(status, 200);
    let body = String::from_utf8(body).expect("text");
    let (length, packet) = body.split_once(':').expect("length prefix");
    assert_eq!(length.parse::<usize>().expect("number"), packet.len());
    let sid = packet
        .strip_prefix("0{\"sid\":\"")
        .and_then(|rest| rest.split_once('"'))
        .map(|(sid, _)| sid.to_string())
        .expect("open packet");
    assert_eq!(
        packet,
        format!("0{{\"sid\":\"{sid}\",\"upgrades\":[\"websocket\"],\"pingInterval\":25000,\"pingTimeout\":60000}}")
    );
    assert!(
        headers.contains(&format!("Set-Cookie: io={sid}")),
        "{headers}"
    );
    assert!(
        headers.contains("Access-Control-Allow-Origin: *"),
        "{headers}"
    );
    sid
}

fn poll(port: u16, sid: &str) -> Vec<u8> {
    let (status, _, body) = request(
        port,
        "GET",
        &format!("/deepstream/?EIO=3&transport=polling&b64=1&sid={sid}"),
        b"",
    );
    assert_eq!(status, 200, "poll: {}", String::from_utf8_lossy(&body));
    body
}

fn post(port: u16, sid: &str, payload: &[u8]) {
    let (status, _, body) = request(
        port,
        "POST",
        &format!("/deepstream/?EIO=3&transport=polling&b64=1&sid={sid}"),
        payload,
    );
    assert_eq!((status, body.as_slice()), (200, &b"ok"[..]));
}

/// A text payload of one message packet, in the capture's notation.
fn message(text: &str) -> Vec<u8> {
    let packet = [b"4".to_vec(), wire(text)].concat();
    [packet.len().to_string().into_bytes(), b":".to_vec(), packet].concat()
}

#[test]
fn deepstream_login_and_events_over_polling_across_cores() {
    let server = Server::start("", 2);
    let port = server.http_port;
    let sid = handshake(port);
    assert_eq!(poll(port, &sid), message("C|CH+"));
    post(port, &sid, &message("C|CHR|localhost:16020+"));
    assert_eq!(poll(port, &sid), message("C|A+"));
    post(port, &sid, &message("A|REQ|{\"username\":\"eioA\"}+"));
    assert_eq!(poll(port, &sid), message("A|A+"));
    // A TCP client emits; the engine.io session (on whichever core) receives it by polling.
    post(port, &sid, &message("E|S|eio/news+"));
    assert_eq!(poll(port, &sid), message("E|A|S|eio/news+"));
    let mut tcp = server.connect();
    tcp.login("tcp");
    for round in 0..20 {
        tcp.send(&format!("E|EVT|eio/news|N{round}+"));
        assert_eq!(
            poll(port, &sid),
            message(&format!("E|EVT|eio/news|N{round}+"))
        );
    }
    // A ping is answered with a pong (the client drives the heartbeat in protocol 3).
    post(port, &sid, b"1:2");
    assert_eq!(poll(port, &sid), b"1:3");
    // A close packet ends the session; its sid is then unknown.
    post(port, &sid, b"1:1");
    std::thread::sleep(Duration::from_millis(100));
    let (status, _, body) = request(
        port,
        "GET",
        &format!("/deepstream/?EIO=3&transport=polling&sid={sid}"),
        b"",
    );
    assert_eq!(status, 400);
    assert!(
        String::from_utf8_lossy(&body).contains("\"code\":"),
        "{body:?}"
    );
}

#[test]
fn unknown_sessions_versions_and_transports_are_refused() {
    let server = Server::start("", 2);
    let port = server.http_port;
    let (status, _, body) = request(
        port,
        "GET",
        "/deepstream/?EIO=3&transport=polling&sid=0-nope",
        b"",
    );
    assert_eq!(
        (status, String::from_utf8_lossy(&body).as_ref()),
        (400, "{\"code\":1,\"message\":\"Session ID unknown\"}")
    );
    let (status, _, _) = request(port, "GET", "/deepstream/?EIO=4&transport=polling", b"");
    assert_eq!(status, 400);
    let (status, _, body) = request(
        port,
        "GET",
        "/deepstream/?EIO=3&transport=carrier-pigeon",
        b"",
    );
    assert_eq!(
        (status, String::from_utf8_lossy(&body).as_ref()),
        (400, "{\"code\":0,\"message\":\"Transport unknown\"}")
    );
    let sid = handshake(port);
    let (status, _, _) = request(
        port,
        "POST",
        &format!("/deepstream/?EIO=3&transport=polling&sid={sid}"),
        b"abc",
    );
    assert_eq!(status, 400, "a malformed payload ends the session");
}

#[test]
fn a_silent_session_times_out_after_ping_interval_plus_timeout() {
    let server = Server::start("engineioPingInterval: 150\nengineioPingTimeout: 100\n", 2);
    let port = server.http_port;
    let (_, _, body) = request(
        port,
        "GET",
        "/deepstream/?EIO=3&transport=polling&b64=1",
        b"",
    );
    let body = String::from_utf8(body).expect("text");
    assert!(
        body.contains("\"pingInterval\":150,\"pingTimeout\":100"),
        "{body}"
    );
    let sid = body.split('"').nth(3).expect("sid").to_string();
    std::thread::sleep(Duration::from_millis(600));
    let (status, _, _) = request(
        port,
        "GET",
        &format!("/deepstream/?EIO=3&transport=polling&sid={sid}"),
        b"",
    );
    assert_eq!(status, 400, "the session is gone");
}
