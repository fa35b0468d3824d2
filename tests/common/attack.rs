//! The frame every attack test runs in: while the attack runs, a healthy client pair keeps
//! exchanging events (their round trips are measured) and the server's resident memory is
//! sampled; afterwards the test asserts the pair stayed responsive, memory stayed under the
//! stated bound, and a new client can still log in and be served.

use super::{Client, Server};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The longest round trip the healthy pair may see while an attack runs. Normal is well under
/// a millisecond; an attack that stalls a core shows up as seconds.
pub const HEALTHY_ROUND_TRIP: Duration = Duration::from_millis(1500);

pub struct Watch {
    stop: Arc<AtomicBool>,
    pair: JoinHandle<Vec<Duration>>,
    memory: JoinHandle<u64>,
    baseline_kib: u64,
    started: Instant,
}

/// What a watch saw.
pub struct Observed {
    pub round_trips: Vec<Duration>,
    pub peak_kib: u64,
    pub baseline_kib: u64,
    pub lasted: Duration,
}

fn resident_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

impl Watch {
    /// Starts the healthy pair (over TCP) and the memory sampler.
    pub fn start(server: &Server) -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let mut subscriber = server.connect();
        subscriber.login("watch-sub");
        subscriber.send("E|S|watch+");
        subscriber.expect("E|A|S|watch+");
        let mut publisher = server.connect();
        publisher.login("watch-pub");
        let pair = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut round_trips = Vec::new();
                let mut round = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    round += 1;
                    let message = format!("E|EVT|watch|N{round}+");
                    let started = Instant::now();
                    publisher.send(&message);
                    match subscriber.next_message(Duration::from_secs(60)) {
                        Some(bytes) => assert_eq!(
                            super::readable(&bytes),
                            message,
                            "the healthy subscriber got something else"
                        ),
                        None => panic!("the healthy pair got no event within 60 s"),
                    }
                    round_trips.push(started.elapsed());
                    std::thread::sleep(Duration::from_millis(10));
                }
                round_trips
            })
        };
        let pid = server.pid();
        let baseline_kib = resident_kib(pid);
        let memory = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut peak = 0;
                while !stop.load(Ordering::Relaxed) {
                    peak = peak.max(resident_kib(pid));
                    std::thread::sleep(Duration::from_millis(20));
                }
                peak.max(resident_kib(pid))
            })
        };
        Watch {
            stop,
            pair,
            memory,
            baseline_kib,
            started: Instant::now(),
        }
    }

    pub fn finish(self) -> Observed {
        // Let the pair make a few more round trips after the attack, then stop.
        std::thread::sleep(Duration::from_millis(100));
        self.stop.store(true, Ordering::Relaxed);
        let round_trips = self.pair.join().expect("the healthy pair panicked");
        let peak_kib = self.memory.join().expect("the memory sampler panicked");
        Observed {
            round_trips,
            peak_kib,
            baseline_kib: self.baseline_kib,
            lasted: self.started.elapsed(),
        }
    }
}

impl Observed {
    /// The pair stayed responsive and memory grew by at most `growth_kib` over the baseline.
    pub fn assert_healthy(&self, what: &str, growth_kib: u64) {
        let slowest = self.round_trips.iter().max().copied().unwrap_or_default();
        let mut sorted = self.round_trips.clone();
        sorted.sort();
        let median = sorted.get(sorted.len() / 2).copied().unwrap_or_default();
        eprintln!(
            "{what}: {} healthy round trips in {:?}, median {median:?}, slowest {slowest:?}; \
             RSS {} KiB before, peak {} KiB",
            self.round_trips.len(),
            self.lasted,
            self.baseline_kib,
            self.peak_kib
        );
        assert!(
            !self.round_trips.is_empty(),
            "{what}: the healthy pair made no round trip"
        );
        assert!(
            slowest < HEALTHY_ROUND_TRIP,
            "{what}: the healthy pair waited {slowest:?} for an event"
        );
        assert!(
            self.peak_kib < self.baseline_kib + growth_kib,
            "{what}: RSS grew from {} KiB to {} KiB (bound +{growth_kib} KiB)",
            self.baseline_kib,
            self.peak_kib
        );
    }
}

/// A new client logs in and two clients exchange an event: the server still serves.
pub fn assert_serving(server: &Server) {
    let mut subscriber = server.connect();
    subscriber.login("after-sub");
    subscriber.send("E|S|after+");
    subscriber.expect("E|A|S|after+");
    let mut publisher = server.connect();
    publisher.login("after-pub");
    publisher.send("E|EVT|after|Sstill-serving+");
    subscriber.expect("E|EVT|after|Sstill-serving+");
}

/// Reads until the peer closes (or resets); the bytes received. Panics after `wait`.
pub fn read_until_closed(stream: &mut TcpStream, wait: Duration) -> Vec<u8> {
    use std::io::{ErrorKind, Read};
    let deadline = Instant::now() + wait;
    let mut received = Vec::new();
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        assert!(
            !remaining.is_zero(),
            "the server did not close the connection within {wait:?} ({} bytes received)",
            received.len()
        );
        stream
            .set_read_timeout(Some(remaining))
            .expect("read timeout");
        match stream.read(&mut chunk) {
            Ok(0) => return received,
            Ok(count) => received.extend_from_slice(&chunk[..count]),
            Err(error) if error.kind() == ErrorKind::ConnectionReset => return received,
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(error) => panic!("read failed: {error}"),
        }
    }
}

/// One HTTP request on a new connection (the request is sent as given); the whole response
/// as (status, head, body), read until the server closes.
pub fn http(port: u16, request: &[u8]) -> (u16, String, Vec<u8>) {
    use std::io::Write;
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.write_all(request).expect("send request");
    let reply = read_until_closed(&mut stream, Duration::from_secs(20));
    let split = reply
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(&reply)));
    let head = String::from_utf8_lossy(&reply[..split]).to_string();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status code");
    (status, head, reply[split + 4..].to_vec())
}

/// A logged-in TCP client.
pub fn logged_in(server: &Server, name: &str) -> Client {
    let mut client = server.connect();
    client.login(name);
    client
}
