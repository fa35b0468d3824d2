//! The HTTP port over real sockets: status codes and limits, keep-alive, the health check,
//! `/metrics` summed over cores, WebSocket handshake errors, and bad WebSocket frames.

mod common;

use common::{Server, Wire, WsClient};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Sends raw bytes and returns everything the server sends until it closes (or 2 s pass).
fn exchange(port: u16, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.write_all(request).expect("send");
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let mut reply = Vec::new();
    let mut chunk = [0u8; 65536];
    while let Ok(read) = stream.read(&mut chunk) {
        if read == 0 {
            break;
        }
        reply.extend_from_slice(&chunk[..read]);
    }
    String::from_utf8_lossy(&reply).to_string()
}

fn status(reply: &str) -> &str {
    reply.split(' ').nth(1).unwrap_or("")
}

#[test]
fn status_codes_and_limits() {
    let server = Server::start("", 2);
    let port = server.http_port;
    let close = "Connection: close\r\n";
    let health = exchange(
        port,
        format!("GET /health-check HTTP/1.1\r\n{close}\r\n").as_bytes(),
    );
    assert!(health.starts_with("HTTP/1.1 200 OK\r\n"), "{health}");
    assert!(health.contains("Content-Length: 0\r\n"));
    let post = exchange(
        port,
        format!("POST /health-check HTTP/1.1\r\n{close}\r\n").as_bytes(),
    );
    assert_eq!(status(&post), "405");
    assert_eq!(
        status(&exchange(
            port,
            format!("GET /nope HTTP/1.1\r\n{close}\r\n").as_bytes()
        )),
        "404"
    );
    // The deepstream path without an upgrade.
    assert_eq!(
        status(&exchange(
            port,
            format!("GET /deepstream HTTP/1.1\r\n{close}\r\n").as_bytes()
        )),
        "426"
    );
    // Upgrade with the wrong version, without a key, on another path.
    let upgrade = "Upgrade: websocket\r\nConnection: Upgrade\r\n";
    let reply = exchange(port, format!("GET /deepstream HTTP/1.1\r\n{upgrade}Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: x\r\n\r\n").as_bytes());
    assert_eq!(status(&reply), "426");
    assert!(reply.contains("Sec-WebSocket-Version: 13\r\n"));
    let reply = exchange(
        port,
        format!("GET /deepstream HTTP/1.1\r\n{upgrade}Sec-WebSocket-Version: 13\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(status(&reply), "400");
    let reply = exchange(port, format!("GET /other HTTP/1.1\r\n{upgrade}Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: x\r\n\r\n").as_bytes());
    assert_eq!(status(&reply), "400");
    // Malformed, oversized head, too many headers, body over maxMessageSize.
    assert_eq!(status(&exchange(port, b"\x01\x02 garbage\r\n\r\n")), "400");
    let mut huge = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
    huge.extend(vec![b'a'; 20_000]);
    assert_eq!(status(&exchange(port, &huge)), "413");
    let mut many = b"GET / HTTP/1.1\r\n".to_vec();
    for index in 0..100 {
        many.extend(format!("X-{index}: y\r\n").into_bytes());
    }
    many.extend(b"\r\n");
    assert_eq!(status(&exchange(port, &many)), "431");
    let reply = exchange(
        port,
        b"POST /x HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n",
    );
    assert_eq!(status(&reply), "413");
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let server = Server::start("", 2);
    let requests = "GET /health-check HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\nGET /health-check HTTP/1.1\r\nConnection: close\r\n\r\n";
    let reply = exchange(server.http_port, requests.as_bytes());
    assert_eq!(reply.matches("HTTP/1.1 ").count(), 3, "{reply}");
    assert!(reply.contains("HTTP/1.1 404 Not Found"));
}

#[test]
fn metrics_sum_every_core() {
    let server = Server::start("", 2);
    let mut clients = Vec::new();
    for index in 0..6 {
        let mut client = server.connect_ws();
        client.login(&format!("m{index}"));
        client.send(&format!("E|S|metrics/{index}+"));
        client.expect(&format!("E|A|S|metrics/{index}+"));
        clients.push(client);
    }
    let mut tcp = server.connect();
    tcp.login("tcp-user");
    let body = exchange(
        server.http_port,
        b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n",
    );
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    assert!(body.contains("corestream_cores 2\n"), "{body}");
    assert!(
        body.contains("corestream_connections{transport=\"websocket\"} 6\n"),
        "{body}"
    );
    assert!(
        body.contains("corestream_connections{transport=\"tcp\"} 1\n"),
        "{body}"
    );
    assert!(
        body.contains("corestream_subscriptions{topic=\"event\"} 6\n"),
        "{body}"
    );
    assert!(
        body.contains("corestream_messages_received_total{topic=\"E\"} 6\n"),
        "{body}"
    );
    assert!(
        body.contains("# TYPE corestream_sent_bytes_total counter\n"),
        "{body}"
    );
}

#[test]
fn bad_websocket_frames_close_that_connection_only() {
    let server = Server::start("", 2);
    let mut healthy = server.connect_ws();
    healthy.login("healthy");
    // An unmasked client frame is a protocol error: close 1002.
    let mut bad = server.connect_ws();
    bad.login("bad");
    bad.stream
        .write_all(&[0x81, 0x02, b'h', b'i'])
        .expect("send");
    bad.expect_closed();
    assert_eq!(bad.closed_with, Some(Some(1002)));
    // Invalid UTF-8 in a text frame: close 1007.
    let mut invalid = server.connect_ws();
    invalid.login("invalid");
    invalid.send_frame(0x81, &[0xff, 0xfe]);
    invalid.expect_closed();
    assert_eq!(invalid.closed_with, Some(Some(1007)));
    // Over maxMessageSize (1 MiB): close 1009.
    let mut big = server.connect_ws();
    big.login("big");
    // The server refuses at the frame header; the rest of the write may hit a closed socket.
    let mut frame = vec![0x81, 0x80 | 127];
    frame.extend_from_slice(&(2u64 * 1024 * 1024).to_be_bytes());
    frame.extend_from_slice(&[0, 0, 0, 0]);
    let _ = big.stream.write_all(&frame);
    big.expect_closed();
    assert_eq!(big.closed_with, Some(Some(1009)));
    // A ping is answered and the session goes on; fragmented messages are reassembled.
    healthy.send_frame(0x89, b"are you there");
    healthy.send_frame(0x01, &common::wire("E|S|frag"));
    healthy.send_frame(0x80, &common::wire("mented+"));
    healthy.expect("E|A|S|fragmented+");
    let mut closer = WsClient::connect(server.http_port, "/deepstream");
    closer.expect("C|CH+");
    closer.send_close();
    closer.expect_closed();
    assert_eq!(
        closer.closed_with,
        Some(None),
        "a close without a code is answered without one"
    );
}
