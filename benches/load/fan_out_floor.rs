//! The fan-out floor: what this machine's loopback TCP can deliver to N subscribers from one
//! CPU when a "server" does nothing but write one prebuilt chunk of messages (a WebSocket frame,
//! or raw 1.x messages) to every subscriber socket in turn, with blocking writes. No protocol,
//! no parsing, no per-subscriber work: the kernel's send path and the bench's own reader are all
//! that is measured. The same reader counts its deliveries as for the real servers, so a
//! server's fan-out ÷ this floor says how much of the machine the server leaves unused, and
//! whether a target ratio against another server is reachable at all here.

use crate::{pin_current_thread_to, spawn_reader, wire, FanOut, Framing, SERVER_CPU};
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One chunk holds at most this many payload bytes (corestream coalesces up to 64 KiB).
const CHUNK_PAYLOAD: usize = 64 * 1024;

/// `subscribers` loopback connections; one thread on the server CPU writes the chunk to each in
/// turn for `duration`; the bench's reader counts messages on the generator CPU.
pub fn fan_out_floor(subscribers: usize, framing: Framing, duration: Duration) -> FanOut {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    let mut readers = Vec::with_capacity(subscribers);
    let mut writers = Vec::with_capacity(subscribers);
    for _ in 0..subscribers {
        readers.push(TcpStream::connect(address).expect("connect"));
        let (accepted, _) = listener.accept().expect("accept");
        accepted.set_nodelay(true).expect("nodelay");
        writers.push(accepted);
    }
    let (chunk, messages_per_chunk) = chunk(framing);
    let delivered = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = spawn_reader(readers, framing, Arc::clone(&delivered), Arc::clone(&stop));
    let started = Instant::now();
    let writer = std::thread::spawn(move || {
        pin_current_thread_to(SERVER_CPU);
        let cpu_before = thread_cpu_seconds();
        let mut written = 0u64;
        while started.elapsed() < duration {
            for socket in &mut writers {
                socket.write_all(&chunk).expect("write");
            }
            written += messages_per_chunk * writers.len() as u64;
        }
        (written, thread_cpu_seconds() - cpu_before)
    });
    let (expected, cpu) = writer.join().expect("writer");
    let drain_deadline = Instant::now() + Duration::from_secs(15);
    while delivered.load(Ordering::Relaxed) < expected && Instant::now() < drain_deadline {
        std::thread::sleep(Duration::from_micros(200));
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let _ = reader.join();
    let got = delivered.load(Ordering::Relaxed);
    assert_eq!(got, expected, "fan-out floor: lost deliveries");
    FanOut {
        deliveries_per_second: got as f64 / elapsed.as_secs_f64(),
        server_cpu_percent: 100.0 * cpu / elapsed.as_secs_f64(),
    }
}

/// The chunk every subscriber gets, and how many messages it holds: the bench's event message
/// repeated, as one unmasked WebSocket text frame or as raw 1.x bytes.
fn chunk(framing: Framing) -> (Vec<u8>, u64) {
    let one = wire("E|EVT|fan/floor|Sfan-out-payload-0123456789+");
    let count = CHUNK_PAYLOAD / one.len();
    let payload = one.repeat(count);
    let chunk = match framing {
        Framing::Raw => payload,
        Framing::WebSocket => {
            let mut frame = Vec::with_capacity(payload.len() + 10);
            corestream::transport::websocket::write_text(&mut frame, &payload);
            frame
        }
    };
    (chunk, count as u64)
}

/// CPU time (user + system) of the calling thread.
fn thread_cpu_seconds() -> f64 {
    // SAFETY: `usage` is a zeroed rusage that getrusage fills in.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_THREAD, &mut usage);
        usage
    };
    let seconds = |time: libc::timeval| time.tv_sec as f64 + time.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}
