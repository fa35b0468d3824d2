//! Behind a proxy: the PROXY protocol on the TCP port, proxy-header auth on the HTTP port and
//! deepstream's http (webhook) auth, over real sockets against the real binary. The real nginx
//! in front is exercised by tests/node/nginx (scripts/nginx-tests.sh).

mod common;

use common::{Client, Server, Wire, WsClient};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

/// A webhook endpoint that records each login body and answers `status` with `body`.
fn webhook(status: u16, body: &'static str) -> (u16, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut request = Vec::new();
            let mut chunk = [0u8; 4096];
            while !String::from_utf8_lossy(&request).ends_with("}}") {
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(read) => request.extend_from_slice(&chunk[..read]),
                }
            }
            let text = String::from_utf8_lossy(&request).to_string();
            let login = text
                .split("\r\n\r\n")
                .nth(1)
                .unwrap_or_default()
                .to_string();
            let _ = sender.send(login);
            let reply = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(reply.as_bytes());
        }
    });
    (port, receiver)
}

#[test]
fn the_proxy_protocol_names_the_client_for_logs_and_auth() {
    let (hook, logins) = webhook(200, r#"{"username":"from-hook","clientData":{"tier":1}}"#);
    let server = Server::start(
        &format!(
            "tcpProxyProtocol: true\ntrustedProxies: [127.0.0.1]\nauth:\n  type: http\n  options:\n    \
             endpointUrl: http://127.0.0.1:{hook}/login\n    permittedStatusCodes: [200]\n"
        ),
        2,
    );
    // v1, then the challenge in the same packet
    let mut client = server.connect();
    client.send_bytes(b"PROXY TCP4 203.0.113.9 127.0.0.1 51000 6021\r\n");
    client.expect("C|CH+");
    client.send("C|CHR|localhost:6021+");
    client.expect("C|A+");
    client.send("A|REQ|{\"token\":\"abc\"}+");
    client.expect("A|A|O{\"tier\":1}+");
    let login = logins
        .recv_timeout(Duration::from_secs(5))
        .expect("the webhook was called");
    assert_eq!(
        login,
        r#"{"authData":{"token":"abc"},"connectionData":{"remoteAddress":"203.0.113.9"}}"#
    );

    // v2 (what nginx sends with proxy_protocol on and a binary header), IPv4 TCP
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.extend_from_slice(&[0x21, 0x11, 0, 12, 198, 51, 100, 4, 127, 0, 0, 1]);
    header.extend_from_slice(&40000u16.to_be_bytes());
    header.extend_from_slice(&6021u16.to_be_bytes());
    let mut v2 = server.connect();
    v2.send_bytes(&header);
    v2.expect("C|CH+");
    v2.send("C|CHR|localhost:6021+A|REQ|{}+");
    v2.expect("C|A+A|A|O{\"tier\":1}+");
    let login = logins
        .recv_timeout(Duration::from_secs(5))
        .expect("the webhook was called");
    assert!(
        login.ends_with(r#""connectionData":{"remoteAddress":"198.51.100.4"}}"#),
        "{login}"
    );

    // no header: closed before the challenge
    let mut bare = server.connect();
    bare.send("C|CHR|localhost:6021+");
    bare.expect_closed();
}

#[test]
fn the_proxy_protocol_is_only_taken_from_a_trusted_proxy() {
    let server = Server::start("tcpProxyProtocol: true\ntrustedProxies: [127.0.0.2]\n", 1);
    let mut client = server.connect();
    client.send_bytes(b"PROXY TCP4 203.0.113.9 127.0.0.1 51000 6021\r\n");
    client.expect_closed();
}

#[test]
fn an_http_webhook_that_refuses_refuses_the_login() {
    let (hook, logins) = webhook(401, "");
    let server = Server::start(
        &format!(
            "auth:\n  type: http\n  options:\n    endpointUrl: http://127.0.0.1:{hook}/login\n    \
             permittedStatusCodes: [200]\n    requestTimeout: 1000\n"
        ),
        1,
    );
    let mut client: Client = server.connect();
    client.expect("C|CH+");
    client.send("C|CHR|localhost:6021+A|REQ|{\"username\":\"mallory\"}+");
    client.expect("C|A+A|E|INVALID_AUTH_DATA|U+");
    assert!(logins.recv_timeout(Duration::from_secs(5)).is_ok());
}

#[test]
fn proxy_header_auth_believes_only_a_trusted_proxy() {
    let trusted = Server::start(
        "trustedProxies: [127.0.0.1]\nauth:\n  type: proxy-header\n",
        2,
    );
    let mut alice = WsClient::connect_with_headers(
        trusted.http_port,
        "/deepstream",
        "X-Forwarded-User: alice\r\nX-Forwarded-User-Data: {\"role\":\"admin\"}\r\n",
    );
    alice.expect("C|CH+");
    alice.send("C|CHR|ws://localhost/deepstream+");
    alice.expect("C|A+");
    // whatever the client claims is ignored
    alice.send("A|REQ|{\"username\":\"root\"}+");
    alice.expect("A|A|O{\"role\":\"admin\"}+");
    alice.send("U|Q|Q+");
    alice.expect("U|Q+");
    let mut bob = WsClient::connect_with_headers(
        trusted.http_port,
        "/deepstream",
        "X-Forwarded-User: bob\r\n",
    );
    bob.login_as_proxied();
    bob.send("U|Q|Q+");
    bob.expect("U|Q|alice+");
    // no header from the trusted proxy: refused
    let mut nobody = WsClient::connect(trusted.http_port, "/deepstream");
    nobody.login_as_proxied_refused();

    // the same header from an address that is not a trusted proxy: refused
    let untrusted = Server::start(
        "trustedProxies: [127.0.0.2]\nauth:\n  type: proxy-header\n",
        1,
    );
    let mut direct = WsClient::connect_with_headers(
        untrusted.http_port,
        "/deepstream",
        "X-Forwarded-User: alice\r\n",
    );
    direct.login_as_proxied_refused();
}

trait ProxiedLogin {
    fn login_as_proxied(&mut self);
    /// Claims to be alice without a header a trusted proxy set: refused.
    fn login_as_proxied_refused(&mut self);
}

impl ProxiedLogin for WsClient {
    fn login_as_proxied(&mut self) {
        self.expect("C|CH+");
        self.send("C|CHR|ws://localhost/deepstream+");
        self.expect("C|A+");
        self.send("A|REQ|{}+");
        self.expect("A|A+");
    }

    fn login_as_proxied_refused(&mut self) {
        self.expect("C|CH+");
        self.send("C|CHR|ws://localhost/deepstream+");
        self.expect("C|A+");
        self.send("A|REQ|{\"username\":\"alice\"}+");
        self.expect("A|E|INVALID_AUTH_DATA|U+");
    }
}

/// One HTTP request on a new connection, as nginx would forward it (we connect from
/// 127.0.0.1, the trusted proxy): (status, body).
fn forwarded(port: u16, method: &str, target: &str, headers: &str, body: &[u8]) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let head = format!(
        "{method} {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{headers}\
         Content-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("send");
    stream.write_all(body).expect("send body");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut reply = Vec::new();
    let _ = std::io::Read::read_to_end(&mut stream, &mut reply);
    let reply = String::from_utf8_lossy(&reply).to_string();
    let status = reply
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = reply
        .split_once("\r\n\r\n")
        .map(|(_, body)| body)
        .unwrap_or("");
    (status, body.to_string())
}

#[test]
fn an_engineio_session_serves_only_the_user_a_trusted_proxy_opened_it_for() {
    let server = Server::start(
        "trustedProxies: [127.0.0.1]\nauth:\n  type: proxy-header\n",
        2,
    );
    let port = server.http_port;
    let path = "/deepstream/?EIO=3&transport=polling&b64=1";
    let alice = "X-Forwarded-User: alice\r\n";
    let (status, open) = forwarded(port, "GET", path, alice, b"");
    assert_eq!(status, 200, "{open}");
    let sid = open
        .split("\"sid\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("an open packet")
        .to_string();
    let target = format!("{path}&sid={sid}");
    let packet = "4C\u{1f}CHR\u{1f}localhost:6020\u{1e}";
    let challenge = format!("{}:{packet}", packet.len());
    // Another user (or none) with alice's sid: answered as for an unknown sid, whichever core
    // the connection lands on (several tries: some reach the session's core, some are relayed).
    for headers in [
        "X-Forwarded-User: bob\r\n",
        "",
        "X-Forwarded-User: Alice\r\n",
    ] {
        for _ in 0..4 {
            let (status, body) = forwarded(port, "POST", &target, headers, challenge.as_bytes());
            assert_eq!(status, 400, "{headers:?}: {body}");
            assert!(body.contains("Session ID unknown"), "{headers:?}: {body}");
            let (status, body) = forwarded(port, "GET", &target, headers, b"");
            assert_eq!(
                (status, body.contains("Session ID unknown")),
                (400, true),
                "{body}"
            );
        }
    }
    let upgrade = format!(
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{}",
        "X-Forwarded-User: bob\r\n"
    );
    let ws_target = format!("/deepstream/?EIO=3&transport=websocket&sid={sid}");
    let (status, _) = forwarded(port, "GET", &ws_target, &upgrade, b"");
    assert_ne!(status, 101, "bob's upgrade of alice's session");
    // alice herself goes on: her post is taken, and her poll answers the challenge
    let (status, body) = forwarded(port, "POST", &target, alice, challenge.as_bytes());
    assert_eq!((status, body.as_str()), (200, "ok"));
    let (status, body) = forwarded(port, "GET", &target, alice, b"");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("C\u{1f}A"), "{body}");
}
