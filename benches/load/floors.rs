//! `corestream-bench --latency-floors`: where one message's round trip goes (issue 13, goal 2).
//! The same echo on a blocking thread per connection, on one thread's epoll loop (as Node's),
//! on one thread's raw io_uring loop, and on glommio (corestream's runtime), with and without
//! spin-before-park; then corestream's event A→B and the relay floor of that shape. Each with
//! the client on the server's CPU and on the other CPU, and every figure also as a ratio to the
//! blocking echo in the same placement and the same run.
//!
//! The epoll and io_uring echo servers are here (`run_epoll_echo_server`,
//! `run_uring_echo_server`) and started like the other floors, as `corestream-bench
//! epoll-echo-server PORT` on the server CPU.

use super::*;
use std::collections::HashMap;
use std::os::fd::{FromRawFd, RawFd};

/// One server of the comparison, and how its round trip is measured.
struct Floor {
    label: &'static str,
    peer: Peer,
    /// An event A→B (two connections) rather than an echo on one.
    a_to_b: bool,
    /// The relay: what connection A sends, connection B receives.
    relay: bool,
}

pub fn run(arguments: &[String]) {
    let quick = arguments.iter().any(|a| a == "--quick");
    let count = if quick { 2_000 } else { 20_000 };
    let spin_millis = 1;
    let floors = [
        floor("echo, blocking thread per connection", "echo-server"),
        floor("echo, one thread's epoll loop", "epoll-echo-server"),
        floor("echo, one thread's raw io_uring loop", "uring-echo-server"),
        floor("echo on glommio", "glommio-echo-server"),
        floor(
            "echo on glommio, spin before park 1 ms",
            "glommio-spin-echo-server",
        ),
        Floor {
            label: "relay (A→B floor), blocking threads",
            peer: start_echo("relay-server"),
            a_to_b: false,
            relay: true,
        },
        Floor {
            label: "corestream event A→B",
            peer: start_corestream(1, 0),
            a_to_b: true,
            relay: false,
        },
        Floor {
            label: "corestream event A→B, spinBeforePark 1 ms",
            peer: start_corestream(1, spin_millis),
            a_to_b: true,
            relay: false,
        },
    ];
    println!(
        "corestream-bench --latency-floors: servers on CPU {SERVER_CPU}; {count} round trips \
         each, one in flight; the ratio is to the blocking echo in the same placement"
    );
    for (placement, cpu) in [("same CPU", SERVER_CPU), ("other CPU", generator_cpu())] {
        pin_current_thread_to(cpu);
        println!("\n## Client on the {placement} (CPU {cpu}) (µs)");
        println!("| server | p50 | p99 | p99.9 | max | p50 ÷ echo | p99 ÷ echo |");
        println!("|---|---|---|---|---|---|---|");
        let mut echo: Option<(f64, f64)> = None;
        for floor in &floors {
            let latency = measure(floor, count);
            let (p50, p99) = *echo.get_or_insert((latency.p50, latency.p99));
            println!(
                "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2}× | {:.2}× |",
                floor.label,
                latency.p50,
                latency.p99,
                latency.p999,
                latency.max,
                latency.p50 / p50,
                latency.p99 / p99
            );
        }
    }
}

fn floor(label: &'static str, kind: &'static str) -> Floor {
    Floor {
        label,
        peer: start_echo(kind),
        a_to_b: false,
        relay: false,
    }
}

fn measure(floor: &Floor, count: usize) -> Latency {
    match (floor.a_to_b, floor.relay) {
        (true, _) => event_latency(floor.peer.port, count),
        (_, true) => relay_latency(floor.peer.port, count),
        _ => echo_latency(floor.peer.port, count),
    }
}

// ----- the epoll echo ------------------------------------------------------------------------

/// One thread, non-blocking sockets, level-triggered epoll: the shape of Node's event loop.
pub fn run_epoll_echo_server(port: u16) {
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind epoll echo");
    serve_epoll_echo(listener);
}

fn serve_epoll_echo(listener: TcpListener) {
    listener.set_nonblocking(true).expect("nonblocking");
    // SAFETY: epoll_create1 takes no pointers; the result is checked.
    let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(epoll >= 0, "epoll_create1");
    let listener_fd = listener.as_raw_fd();
    watch(epoll, listener_fd);
    let mut connections: HashMap<RawFd, TcpStream> = HashMap::new();
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 64];
    let mut buffer = vec![0u8; 65536];
    loop {
        // SAFETY: `events` is a valid array of `events.len()` epoll_event for the kernel to
        // fill; the count returned says how many it wrote.
        let ready =
            unsafe { libc::epoll_wait(epoll, events.as_mut_ptr(), events.len() as i32, -1) };
        for event in events.iter().take(ready.max(0) as usize) {
            let fd = event.u64 as RawFd;
            if fd == listener_fd {
                while let Ok((stream, _)) = listener.accept() {
                    let _ = stream.set_nodelay(true);
                    let _ = stream.set_nonblocking(true);
                    watch(epoll, stream.as_raw_fd());
                    connections.insert(stream.as_raw_fd(), stream);
                }
            } else if !echo_ready(connections.get_mut(&fd), &mut buffer) {
                // (dropping the stream closes it, which also removes it from the epoll set)
                connections.remove(&fd);
            }
        }
    }
}

fn watch(epoll: RawFd, fd: RawFd) {
    let mut event = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: fd as u64,
    };
    // SAFETY: `event` is a valid epoll_event that lives for the call.
    let added = unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, fd, &mut event) };
    assert_eq!(added, 0, "epoll_ctl");
}

/// Echoes what a readable connection has; false when it is closed.
fn echo_ready(stream: Option<&mut TcpStream>, buffer: &mut [u8]) -> bool {
    let Some(stream) = stream else {
        return true;
    };
    loop {
        match stream.read(buffer) {
            Ok(0) => return false,
            Ok(read) => {
                if write_all_nonblocking(stream, &buffer[..read]).is_err() {
                    return false;
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
    }
}

fn write_all_nonblocking(stream: &mut TcpStream, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        match stream.write(bytes) {
            Ok(written) => bytes = &bytes[written..],
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::yield_now()
            }
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

// ----- the raw io_uring echo -----------------------------------------------------------------

/// A connection of the io_uring echo: one operation in flight at a time (a receive, or the
/// send of what it received), so its buffer is never shared with the kernel twice.
struct UringConnection {
    stream: TcpStream,
    buffer: Box<[u8]>,
    received: usize,
    sent: usize,
}

const ACCEPT: u64 = u64::MAX;
const SEND_BIT: u64 = 1 << 62;

/// One thread: accept, receive and send as io_uring operations, waiting in
/// `io_uring_enter` for one completion at a time; no runtime, no timers, no wakers.
pub fn run_uring_echo_server(port: u16) {
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind io_uring echo");
    serve_uring_echo(listener);
}

fn serve_uring_echo(listener: TcpListener) {
    use io_uring::{opcode, types, IoUring};
    let mut ring = IoUring::new(256).expect("io_uring");
    let mut connections: Vec<Option<UringConnection>> = Vec::new();
    let accept = opcode::Accept::new(
        types::Fd(listener.as_raw_fd()),
        std::ptr::null_mut(),
        std::ptr::null_mut(),
    )
    .build()
    .user_data(ACCEPT);
    push(&mut ring, &accept);
    loop {
        ring.submit_and_wait(1).expect("io_uring_enter");
        let completions: Vec<(u64, i32)> = ring
            .completion()
            .map(|entry| (entry.user_data(), entry.result()))
            .collect();
        for (user_data, result) in completions {
            if user_data == ACCEPT {
                push(&mut ring, &accept);
                if result >= 0 {
                    // SAFETY: the accept completion's result is a new socket this loop owns.
                    let stream = unsafe { TcpStream::from_raw_fd(result) };
                    let _ = stream.set_nodelay(true);
                    connections.push(Some(UringConnection {
                        stream,
                        buffer: vec![0u8; 65536].into_boxed_slice(),
                        received: 0,
                        sent: 0,
                    }));
                    let index = connections.len() - 1;
                    next_operation(&mut ring, &mut connections, index);
                }
                continue;
            }
            let index = (user_data & !SEND_BIT) as usize;
            let advanced = match connections.get_mut(index).and_then(Option::as_mut) {
                Some(connection) if result > 0 => {
                    match user_data & SEND_BIT {
                        0 => (connection.received, connection.sent) = (result as usize, 0),
                        _ => connection.sent += result as usize,
                    }
                    true
                }
                _ => false,
            };
            match advanced {
                true => next_operation(&mut ring, &mut connections, index),
                false => connections[index] = None, // closed or failed: dropping closes it
            }
        }
    }
}

/// Queues a connection's next operation: the rest of what it received, or a new receive.
fn next_operation(
    ring: &mut io_uring::IoUring,
    connections: &mut [Option<UringConnection>],
    index: usize,
) {
    use io_uring::{opcode, types};
    let Some(connection) = connections[index].as_mut() else {
        return;
    };
    let fd = types::Fd(connection.stream.as_raw_fd());
    let entry = if connection.sent < connection.received {
        let rest = &connection.buffer[connection.sent..connection.received];
        opcode::Send::new(fd, rest.as_ptr(), rest.len() as u32)
            .build()
            .user_data(index as u64 | SEND_BIT)
    } else {
        let buffer = &mut connection.buffer;
        opcode::Recv::new(fd, buffer.as_mut_ptr(), buffer.len() as u32)
            .build()
            .user_data(index as u64)
    };
    push(ring, &entry);
}

fn push(ring: &mut io_uring::IoUring, entry: &io_uring::squeue::Entry) {
    // SAFETY: every buffer an entry points at is a connection's boxed buffer, which stays in
    // `connections` (not moved: boxed) until the operation's completion arrives, and each
    // connection has one operation in flight at a time; accept passes no buffers.
    let pushed = unsafe { ring.submission().push(entry) };
    if pushed.is_err() {
        ring.submit().expect("io_uring_enter");
        // SAFETY: as above; the queue was just drained into the kernel.
        unsafe { ring.submission().push(entry) }.expect("room in the submission queue");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Starts `serve` on a free port in a thread and echoes a few messages through it, some
    /// larger than one read.
    fn echoes(serve: fn(TcpListener)) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        std::thread::spawn(move || serve(listener));
        for size in [1usize, 100, 200_000] {
            let mut client = TcpStream::connect(("127.0.0.1", port)).expect("connect");
            let message: Vec<u8> = (0..size).map(|index| (index % 251) as u8).collect();
            let writer = {
                let mut client = client.try_clone().expect("clone");
                let message = message.clone();
                std::thread::spawn(move || client.write_all(&message).expect("write"))
            };
            let mut echoed = vec![0u8; size];
            client.read_exact(&mut echoed).expect("echo");
            writer.join().expect("writer");
            assert_eq!(echoed, message);
        }
    }

    #[test]
    fn the_epoll_echo_echoes() {
        echoes(serve_epoll_echo);
    }

    #[test]
    fn the_io_uring_echo_echoes() {
        echoes(serve_uring_echo);
    }
}
