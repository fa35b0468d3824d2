//! Bad input against the real binary: random bytes, oversized units, half messages, thousands
//! of connections dropped mid-handshake, and a client that never reads. The server must answer
//! as PROTOCOL.md says or close that one connection, never die, and keep serving a healthy
//! pair of clients checked before and after each attack.

mod common;

use common::{wire, Client, Server};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A subscriber and a publisher that must keep working: one round trip proves it.
struct Healthy {
    subscriber: Client,
    publisher: Client,
    round: u32,
}

impl Healthy {
    fn new(server: &Server) -> Healthy {
        let mut subscriber = server.connect();
        subscriber.login("healthy-sub");
        subscriber.send("E|S|health+");
        subscriber.expect("E|A|S|health+");
        let mut publisher = server.connect();
        publisher.login("healthy-pub");
        Healthy {
            subscriber,
            publisher,
            round: 0,
        }
    }

    fn check(&mut self) {
        self.round += 1;
        let message = format!("E|EVT|health|N{}+", self.round);
        self.publisher.send(&message);
        self.subscriber.expect(&message);
    }
}

#[test]
fn random_bytes_never_kill_the_server() {
    let mut server = Server::start("", 2);
    let mut healthy = Healthy::new(&server);
    healthy.check();
    let mut rng = fastrand::Rng::with_seed(7);
    for round in 0..200 {
        let mut stream = TcpStream::connect(("127.0.0.1", server.tcp_port)).expect("connect");
        let logged_in = round % 2 == 0;
        if logged_in {
            stream
                .write_all(&wire("C|CHR|x+A|REQ|{\"username\":\"fuzz\"}+"))
                .expect("login");
        }
        for _ in 0..rng.usize(1..20) {
            let length = rng.usize(0..600);
            let bytes: Vec<u8> = (0..length)
                .map(|_| match rng.u8(0..10) {
                    0 => 0x1e,
                    1 => 0x1f,
                    2 => b"ESRPCAUXL"[rng.usize(0..9)],
                    _ => rng.u8(..),
                })
                .collect();
            if stream.write_all(&bytes).is_err() {
                break;
            }
        }
        drop(stream);
    }
    assert!(server.is_alive(), "the server died");
    healthy.check();
}

#[test]
fn oversized_units_are_refused_and_the_connection_keeps_working() {
    let server = Server::start("maxMessageSize: 65536\n", 2);
    let mut healthy = Healthy::new(&server);
    let mut client = server.connect();
    client.login("big");
    let big = vec![b'a'; 100_000];
    client.send_bytes(&big);
    client.expect("X|E|MAXIMUM_MESSAGE_SIZE_EXCEEDED|Received message longer than maxMessageSize+");
    // The tail of the oversized message is skipped up to its terminator...
    client.send_bytes(b"tail of the big message\x1e");
    // ...and the connection goes on.
    client.send("E|S|after-big+");
    client.expect("E|A|S|after-big+");
    healthy.check();
}

#[test]
fn half_messages_are_held_until_complete() {
    let server = Server::start("", 2);
    let mut client = server.connect();
    client.login("slow-typist");
    for byte in wire("E|S|byte/by/byte+") {
        client.send_bytes(&[byte]);
        std::thread::sleep(Duration::from_millis(2));
    }
    client.expect("E|A|S|byte/by/byte+");
    client.send("E|S|a+E|S");
    client.expect("E|A|S|a+");
    client.expect_silence(Duration::from_millis(100));
    client.send("|b+");
    client.expect("E|A|S|b+");
}

#[test]
fn thousands_of_connections_dropped_mid_handshake() {
    let mut server = Server::start("", 2);
    let mut healthy = Healthy::new(&server);
    for round in 0..3000 {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", server.tcp_port)) else {
            continue;
        };
        match round % 4 {
            0 => {}
            1 => {
                let _ = stream.write_all(&wire("C|CH"));
            }
            2 => {
                let _ = stream.write_all(&wire("C|CHR|x+A|REQ|{\"user"));
            }
            _ => {
                let _ = stream.write_all(&wire("C|CHR|x+"));
                let mut buffer = [0u8; 16];
                let _ = stream.set_read_timeout(Some(Duration::from_millis(1)));
                let _ = stream.read(&mut buffer);
            }
        }
        if round % 500 == 0 {
            healthy.check();
        }
    }
    assert!(server.is_alive(), "the server died");
    healthy.check();
}

#[test]
fn a_client_that_never_reads_is_disconnected_and_memory_stays_flat() {
    let mut server = Server::start("maxOutboundBufferSize: 1048576\n", 2);
    let mut healthy = Healthy::new(&server);
    let mut sleeper = server.connect();
    sleeper.login("never-reads");
    sleeper.send("E|S|flood+");
    sleeper.expect("E|A|S|flood+");
    let mut publisher = server.connect();
    publisher.login("flooder");
    let rss_before = server.rss_kib();
    // 64 MiB of events, far beyond the sleeper's 1 MiB budget plus the kernel's socket buffers.
    let payload = "x".repeat(16 * 1024);
    let event = wire(&format!("E|EVT|flood|S{payload}+"));
    let started = Instant::now();
    for _ in 0..4096 {
        publisher.send_bytes(&event);
    }
    healthy.check();
    let rss_after = server.rss_kib();
    eprintln!("server RSS before the flood {rss_before} KiB, after {rss_after} KiB");
    assert!(
        rss_after < rss_before + 64 * 1024,
        "server memory grew from {rss_before} KiB to {rss_after} KiB"
    );
    // The sleeper was cut off: draining its socket ends in a close, well before 64 MiB.
    let mut drained = 0usize;
    let mut chunk = vec![0u8; 1 << 16];
    sleeper
        .stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    loop {
        match sleeper.stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(read) => drained += read,
            Err(error) => panic!("expected the server to close the slow consumer: {error}"),
        }
    }
    assert!(
        drained < 32 * 1024 * 1024,
        "the slow consumer received {drained} bytes before being cut off"
    );
    assert!(server.is_alive());
    assert!(started.elapsed() < Duration::from_secs(60));
    healthy.check();
}
