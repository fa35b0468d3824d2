//! Shared helpers for the black-box tests: start the real `corestream` binary on free loopback
//! ports (stopped by PID when dropped), and talk to it over real TCP sockets in the notation of
//! the captures (`|` = 0x1F, `+` = 0x1E).
#![allow(dead_code)]

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

pub struct Server {
    child: Child,
    pub tcp_port: u16,
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

    fn try_start(extra: &str, cores: usize) -> Option<Server> {
        let dir = std::env::temp_dir().join(format!(
            "corestream-test-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        for file in ["users.yml", "permissions.yml"] {
            std::fs::copy(fixtures().join(file), dir.join(file)).expect("copy fixture");
        }
        let tcp_port = free_port();
        let http_port = free_port();
        let config = format!(
            "host: 127.0.0.1\nport: {http_port}\ntcpHost: 127.0.0.1\ntcpPort: {tcp_port}\nlogLevel: WARN\n\
             webServerEnabled: false\n{extra}\n"
        );
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
            tcp_port,
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

pub struct Client {
    pub stream: TcpStream,
    pending: Vec<u8>,
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
            self.stream
                .set_read_timeout(Some(remaining))
                .expect("timeout");
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!(
                    "connection closed while waiting for {:?}; got {:?}",
                    readable(&expected),
                    readable(&self.pending)
                ),
                Ok(read) => self.pending.extend_from_slice(&chunk[..read]),
                Err(error)
                    if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(error) => panic!("read failed: {error}"),
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
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return None;
            }
            self.stream
                .set_read_timeout(Some(remaining))
                .expect("timeout");
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(read) => self.pending.extend_from_slice(&chunk[..read]),
                Err(error)
                    if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return None,
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
