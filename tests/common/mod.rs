//! Shared helpers for the black-box tests: start the real `corestream` binary on free loopback
//! ports (stopped by PID when dropped), and talk to it over real TCP sockets in the notation of
//! the captures (`|` = 0x1F, `+` = 0x1E).
#![allow(dead_code)]

pub mod attack;
pub mod redis;
pub mod replay;

/// File auth with the fixture users (md5, 100 iterations, 32-byte keys), as in the captures.
pub const FILE_AUTH: &str = "auth:\n  type: file\n  options:\n    path: ./users.yml\n    hash: md5\n    iterations: 100\n    keyLength: 32\n";

/// `capture!(test, "scenario")` or `capture!(test, "scenario", config = EXTRA)`: a test that
/// calls the test file's own `replay(scenario, extra_config)`.
#[macro_export]
macro_rules! capture {
    ($test:ident, $scenario:expr) => {
        #[test]
        fn $test() {
            replay($scenario, "");
        }
    };
    ($test:ident, $scenario:expr, config = $config:expr) => {
        #[test]
        fn $test() {
            replay($scenario, $config);
        }
    };
}

/// The capture tests both `captures_v1` and `captures_v2` have: the same scenario, recorded
/// against deepstream 1.1.1 and 2.4.1 (each file defines its `replay` for its dialect).
#[allow(unused_macros)]
macro_rules! both_dialects {
    () => {
        capture!(handshake_open_auth, "raw-handshake-open-auth");
        capture!(
            auth_before_challenge_response,
            "raw-auth-before-challenge-response"
        );
        capture!(auth_invalid_json, "raw-auth-invalid-json");
        capture!(message_before_auth, "raw-message-before-auth");
        capture!(
            file_auth_failures,
            "raw-file-auth-failures",
            config = FILE_AUTH
        );
        capture!(
            file_auth_success,
            "raw-file-auth-success",
            config = FILE_AUTH
        );
        capture!(event_typed_payloads, "raw-event-typed-payloads");
        capture!(event_emit_to_library, "raw-event-emit-to-library");
        capture!(event_missing_name, "raw-event-missing-name");
        capture!(
            multiple_and_not_subscribed,
            "raw-multiple-and-not-subscribed"
        );
        capture!(too_short_ignored, "raw-too-short-ignored");
        capture!(unknown_topic, "raw-unknown-topic");
        capture!(known_action_wrong_topic, "raw-known-action-wrong-topic");
        capture!(library_login_open, "lib-login-open");
        capture!(
            library_login_file_success,
            "lib-login-file-success",
            config = FILE_AUTH
        );
        capture!(
            library_login_file_failure,
            "lib-login-file-failure",
            config = FILE_AUTH
        );
        capture!(
            library_event_subscribe_emit_unsubscribe,
            "lib-event-subscribe-emit-unsubscribe"
        );
        capture!(library_event_listen_accept, "lib-event-listen-accept");
        capture!(
            library_event_listen_existing_subscription,
            "lib-event-listen-existing-subscription"
        );
    };
}

use corestream::transport::websocket;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use corestream::protocol::message::{
    from_capture_notation as wire, to_capture_notation as readable,
};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free loopback port")
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Runs the binary on `config` (a whole config file) and waits up to 10 s for it to exit:
/// (its exit status, what it wrote to stderr). A server that keeps running is killed and
/// reported as `None`.
pub fn run_to_exit(config: &str) -> (Option<i32>, String) {
    let dir = std::env::temp_dir().join(format!(
        "corestream-exit-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("config.yml"), config).expect("write config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_corestream"))
        .args(["start", "--config"])
        .arg(dir.join("config.yml"))
        .args(["--cores", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn corestream");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    let _ = std::fs::remove_dir_all(&dir);
    (status, stderr)
}

/// The TCP ports process `pid` listens on (from /proc: its socket inodes, and the listening
/// sockets of /proc/net/tcp and tcp6 with those inodes), sorted.
pub fn listening_ports(pid: u32) -> Vec<u16> {
    let inodes: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd dir")
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().to_string();
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_string(),
            )
        })
        .collect();
    let mut ports = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local_address is field 1 (addr:PORT in hex), st is field 3 (0A = LISTEN),
            // inode is field 9.
            if fields.len() > 9 && fields[3] == "0A" && inodes.contains(fields[9]) {
                if let Some(port) = fields[1]
                    .rsplit(':')
                    .next()
                    .and_then(|hex| u16::from_str_radix(hex, 16).ok())
                {
                    ports.push(port);
                }
            }
        }
    }
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// What one read before a deadline brought.
enum Arrival {
    /// Bytes were appended to the buffer.
    Bytes,
    /// The deadline passed with nothing new (or nothing yet: read again).
    Nothing,
    /// The connection closed (or failed).
    Closed,
}

/// Reads what `stream` has into `buffer`, waiting until `deadline` at most.
fn read_until(stream: &mut TcpStream, buffer: &mut Vec<u8>, deadline: Instant) -> Arrival {
    let remaining = deadline.saturating_duration_since(Instant::now());
    if remaining.is_zero() {
        return Arrival::Nothing;
    }
    stream.set_read_timeout(Some(remaining)).expect("timeout");
    let mut chunk = [0u8; 65536];
    match stream.read(&mut chunk) {
        Ok(0) => Arrival::Closed,
        Ok(read) => {
            buffer.extend_from_slice(&chunk[..read]);
            Arrival::Bytes
        }
        Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            Arrival::Nothing
        }
        Err(_) => Arrival::Closed,
    }
}

pub struct Server {
    child: Child,
    pub tcp_port: u16,
    pub http_port: u16,
    pub dir: PathBuf,
}

impl Server {
    /// Starts the binary with `extra` YAML appended to a config that sets loopback ports.
    pub fn start(extra: &str, cores: usize) -> Server {
        for _ in 0..5 {
            if let Some(server) = Server::try_start(extra, cores) {
                return server;
            }
        }
        panic!("corestream did not start after 5 attempts");
    }

    /// Starts the binary with `config` as the whole config file, `{http}` replaced by a free
    /// port (the server's `http_port`; it has no TCP port).
    pub fn start_raw(config: &str, cores: usize) -> Server {
        for _ in 0..5 {
            let http_port = free_port();
            let text = config.replace("{http}", &http_port.to_string());
            if let Some(mut server) = Server::launch(&text, cores) {
                server.http_port = http_port;
                server.tcp_port = 0;
                return server;
            }
        }
        panic!("corestream did not start after 5 attempts");
    }

    fn try_start(extra: &str, cores: usize) -> Option<Server> {
        let tcp_port = free_port();
        let http_port = free_port();
        let config = format!(
            "host: 127.0.0.1\nport: {http_port}\ntcpHost: 127.0.0.1\ntcpPort: {tcp_port}\nlogLevel: WARN\n\
             {extra}\n"
        );
        let mut server = Server::launch(&config, cores)?;
        server.tcp_port = tcp_port;
        server.http_port = http_port;
        Some(server)
    }

    /// Runs the binary on `config` until it says it listens.
    fn launch(config: &str, cores: usize) -> Option<Server> {
        let dir = std::env::temp_dir().join(format!(
            "corestream-test-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        for file in ["users.yml", "permissions.yml"] {
            std::fs::copy(fixtures().join(file), dir.join(file)).expect("copy fixture");
        }
        std::fs::write(dir.join("config.yml"), config).expect("write config");
        let mut child = Command::new(env!("CARGO_BIN_EXE_corestream"))
            .args(["start", "--config"])
            .arg(dir.join("config.yml"))
            .args(["--cores", &cores.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn corestream");
        let mut stdout = child.stdout.take().expect("stdout");
        let mut seen = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            match stdout.read(&mut byte) {
                Ok(1) => {
                    seen.push(byte[0]);
                    if byte[0] == b'\n' && String::from_utf8_lossy(&seen).contains("listening") {
                        break;
                    }
                }
                _ => {
                    let _ = child.wait();
                    return None;
                }
            }
        }
        Some(Server {
            child,
            tcp_port: 0,
            http_port: 0,
            dir,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the server process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// Is the server process still running?
    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn connect(&self) -> Client {
        Client::connect(self.tcp_port)
    }

    /// A WebSocket client on the deepstream path.
    pub fn connect_ws(&self) -> WsClient {
        WsClient::connect(self.http_port, "/deepstream")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: plain kill(2) on our own child's PID; the worst case is ESRCH.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                let _ = std::fs::remove_dir_all(&self.dir);
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What a capture replay needs from a client, whatever its transport.
pub trait Wire {
    fn send(&mut self, text: &str);
    /// Starts a WebSocket close handshake (not used by TCP clients).
    fn send_close(&mut self) {}
    fn expect(&mut self, expected: &str);
    fn expect_closed(&mut self);
    fn close(self: Box<Self>);
}

pub struct Client {
    pub stream: TcpStream,
    pending: Vec<u8>,
}

impl Wire for Client {
    fn send(&mut self, text: &str) {
        Client::send(self, text)
    }
    fn expect(&mut self, expected: &str) {
        Client::expect(self, expected)
    }
    fn expect_closed(&mut self) {
        Client::expect_closed(self)
    }
    fn close(self: Box<Self>) {
        Client::close(*self)
    }
}

/// A WebSocket client: masked text frames out, server frames in; text payloads are
/// concatenated, so expectations do not depend on how the server groups messages in frames.
pub struct WsClient {
    pub stream: TcpStream,
    raw: Vec<u8>,
    text: Vec<u8>,
    pub closed_with: Option<Option<u16>>,
}

impl WsClient {
    /// Opens `path` on the HTTP port and completes the upgrade.
    pub fn connect(port: u16, path: &str) -> WsClient {
        WsClient::connect_with_headers(port, path, "")
    }

    /// Like `connect`, with extra request header lines (each ending in CRLF).
    pub fn connect_with_headers(port: u16, path: &str, headers: &str) -> WsClient {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{headers}\r\n"
        );
        stream.write_all(request.as_bytes()).expect("handshake");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => panic!("handshake failed: {:?}", String::from_utf8_lossy(&head)),
            }
        }
        let head = String::from_utf8_lossy(&head).to_string();
        assert!(
            head.starts_with("HTTP/1.1 101"),
            "handshake refused: {head}"
        );
        assert!(
            head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            "{head}"
        );
        WsClient {
            stream,
            raw: Vec::new(),
            text: Vec::new(),
            closed_with: None,
        }
    }

    pub fn send_frame(&mut self, first: u8, payload: &[u8]) {
        let mut frame = Vec::new();
        websocket::write_client_frame(&mut frame, first, payload, [0x12, 0x34, 0x56, 0x78]);
        self.stream.write_all(&frame).expect("send frame");
    }

    /// Reads one server frame into the text buffer (or records a close). `false` on EOF.
    fn read_frame(&mut self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        loop {
            if self.raw.len() >= 2 {
                let (header, length) = match self.raw[1] & 0x7f {
                    126 if self.raw.len() >= 4 => (
                        4,
                        usize::from(u16::from_be_bytes([self.raw[2], self.raw[3]])),
                    ),
                    127 if self.raw.len() >= 10 => {
                        let mut bytes = [0u8; 8];
                        bytes.copy_from_slice(&self.raw[2..10]);
                        (10, u64::from_be_bytes(bytes) as usize)
                    }
                    126 | 127 => (usize::MAX, 0),
                    short => (2, usize::from(short)),
                };
                if header != usize::MAX && self.raw.len() >= header + length {
                    assert_eq!(self.raw[1] & 0x80, 0, "server frames are never masked");
                    let frame: Vec<u8> = self.raw.drain(..header + length).collect();
                    match frame[0] & 0x0f {
                        0x1 | 0x0 => self.text.extend_from_slice(&frame[header..]),
                        0x8 => {
                            let payload = &frame[header..];
                            self.closed_with = Some(
                                (payload.len() >= 2)
                                    .then(|| u16::from_be_bytes([payload[0], payload[1]])),
                            );
                        }
                        _ => {}
                    }
                    return true;
                }
            }
            if Instant::now() >= deadline {
                return true;
            }
            if let Arrival::Closed = read_until(&mut self.stream, &mut self.raw, deadline) {
                return false;
            }
        }
    }

    /// The next whole deepstream message from the text frames, or `None` after `wait`.
    pub fn next_message(&mut self, wait: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(end) = self.text.iter().position(|byte| *byte == 0x1e) {
                return Some(self.text.drain(..=end).collect());
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() || !self.read_frame(remaining) {
                return None;
            }
        }
    }

    pub fn login(&mut self, username: &str) {
        Wire::expect(self, "C|CH+");
        Wire::send(self, "C|CHR|ws://localhost/deepstream+");
        Wire::expect(self, "C|A+");
        Wire::send(self, &format!("A|REQ|{{\"username\":\"{username}\"}}+"));
        Wire::expect(self, "A|A+");
    }
}

impl Wire for WsClient {
    fn send(&mut self, text: &str) {
        self.send_frame(0x81, &wire(text));
    }

    fn send_close(&mut self) {
        self.send_frame(0x88, &[]);
    }

    fn expect(&mut self, expected: &str) {
        let expected = wire(expected);
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.text.len() < expected.len() {
            let remaining = deadline.saturating_duration_since(Instant::now());
            assert!(
                !remaining.is_zero(),
                "timed out waiting for {:?}; got {:?}",
                readable(&expected),
                readable(&self.text)
            );
            assert!(
                self.read_frame(remaining),
                "connection closed while waiting for {:?}; got {:?}",
                readable(&expected),
                readable(&self.text)
            );
        }
        let got: Vec<u8> = self.text.drain(..expected.len()).collect();
        assert_eq!(
            readable(&got),
            readable(&expected),
            "unexpected bytes from the server"
        );
    }

    fn expect_closed(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if !self.read_frame(Duration::from_millis(200)) {
                assert!(
                    self.text.is_empty(),
                    "unread text: {:?}",
                    readable(&self.text)
                );
                return;
            }
        }
        panic!("the server did not close the connection");
    }

    fn close(self: Box<Self>) {
        let mut this = *self;
        this.send_frame(0x88, &[]);
        let _ = this.stream.shutdown(Shutdown::Write);
    }
}

impl Client {
    pub fn connect(port: u16) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Client {
            stream,
            pending: Vec::new(),
        }
    }

    pub fn send(&mut self, text: &str) {
        self.stream.write_all(&wire(text)).expect("send");
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// Reads until `expected` (capture notation) has arrived and asserts the exact bytes.
    pub fn expect(&mut self, expected: &str) {
        let expected = wire(expected);
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.pending.len() < expected.len() {
            let remaining = deadline.saturating_duration_since(Instant::now());
            assert!(
                !remaining.is_zero(),
                "timed out waiting for {:?}; got {:?}",
                readable(&expected),
                readable(&self.pending)
            );
            if let Arrival::Closed = read_until(&mut self.stream, &mut self.pending, deadline) {
                panic!(
                    "connection closed while waiting for {:?}; got {:?}",
                    readable(&expected),
                    readable(&self.pending)
                );
            }
        }
        let got: Vec<u8> = self.pending.drain(..expected.len()).collect();
        assert_eq!(
            readable(&got),
            readable(&expected),
            "unexpected bytes from the server"
        );
    }

    /// The next whole message (terminator included), or `None` after `wait` without one.
    pub fn next_message(&mut self, wait: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(end) = self.pending.iter().position(|byte| *byte == 0x1e) {
                return Some(self.pending.drain(..=end).collect());
            }
            if Instant::now() >= deadline {
                return None;
            }
            if let Arrival::Closed = read_until(&mut self.stream, &mut self.pending, deadline) {
                return None;
            }
        }
    }

    /// Asserts nothing arrives within `wait`.
    pub fn expect_silence(&mut self, wait: Duration) {
        self.stream.set_read_timeout(Some(wait)).expect("timeout");
        let mut chunk = [0u8; 4096];
        match self.stream.read(&mut chunk) {
            Ok(0) => panic!("connection closed; expected it open and silent"),
            Ok(read) => {
                self.pending.extend_from_slice(&chunk[..read]);
                panic!("expected silence, got {:?}", readable(&self.pending));
            }
            Err(_) => assert!(
                self.pending.is_empty(),
                "expected silence, got {:?}",
                readable(&self.pending)
            ),
        }
    }

    /// Asserts the server closes the connection (after any bytes already expected).
    pub fn expect_closed(&mut self) {
        assert!(
            self.pending.is_empty(),
            "unread bytes: {:?}",
            readable(&self.pending)
        );
        self.stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut chunk = [0u8; 4096];
        match self.stream.read(&mut chunk) {
            Ok(0) => {}
            Err(error) if error.kind() == ErrorKind::ConnectionReset => {}
            Ok(read) => panic!("expected close, got {:?}", readable(&chunk[..read])),
            Err(error) => panic!("expected close, got error {error}"),
        }
    }

    /// Handshake and open-auth login as `username`.
    pub fn login(&mut self, username: &str) {
        self.expect("C|CH+");
        self.send("C|CHR|localhost:6021+");
        self.expect("C|A+");
        self.send(&format!("A|REQ|{{\"username\":\"{username}\"}}+"));
        self.expect("A|A+");
    }

    pub fn close(self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}
