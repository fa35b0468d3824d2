//! `corestream-bench`: the end-to-end load generator.
//!
//! In one invocation it starts, on free loopback ports, corestream (the release binary), the
//! real deepstream 1.1.1 server from npm (tests/node) and a minimal TCP echo server (this
//! binary re-executed as `echo-server`), then measures:
//! - event latency A→B over TCP with one message in flight (HdrHistogram p50/p99/p999), against
//!   all three (the echo server's round trip is the floor: one client→server→client hop);
//! - fan-out throughput: one publisher, 1 / 100 / 1000 subscribers, deliveries per second and
//!   the server's CPU use, against corestream and deepstream, and against the fan-out floor
//!   (`fan_out_floor`: a thread that only writes one prebuilt chunk to every subscriber socket,
//!   the most this machine's loopback delivers from one CPU).
//!
//! It prints corestream/deepstream and corestream/echo ratios.
//!
//! The generator is faster than the servers: subscribers are read by one epoll thread that only
//! counts message terminators (SIMD memchr), and the publisher writes batches, keeping a bounded
//! window in flight so that no subscriber's buffer can overflow.
//!
//! Usage: corestream-bench [--quick] [--cores N] [--spin MS] [--skip-deepstream]
//!        corestream-bench --permissions [--quick]   (the cost of permission rules)
//!        corestream-bench --latency-floors [--quick]   (one round trip on each runtime shape)
//!        corestream-bench --cluster [--quick]
//!        corestream-bench --fan-out [--seconds S] [--cores N] [--skip-deepstream]
//!                         [--subscribers N] [--transport tcp|websocket]
//!                                          (only the TCP and WebSocket fan-out tables)
//!        corestream-bench --connections [N] [--transport tcp|websocket|polling] [--skip-deepstream]
//!                                          (memory per idle logged-in connection)
//!        corestream-bench --profile [--subscribers N] [--events K] [--connections M]
//!                                          (callgrind per delivered event, massif per idle
//!                                          connection; see `profile`)
//!        corestream-bench echo-server PORT | glommio-echo-server PORT
//!
//! `CORESTREAM_BINARY=path` measures another corestream build (default: target/release).

mod connections;
mod fan_out_floor;
mod floors;
mod plot;
mod profile;

use hdrhistogram::Histogram;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use corestream::protocol::message::from_capture_notation as wire;
use corestream::transport::websocket;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("free port")
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The corestream binary under test: `$CORESTREAM_BINARY` (to compare two builds in turn), or
/// this checkout's release build.
fn corestream_binary() -> PathBuf {
    std::env::var_os("CORESTREAM_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/release/corestream"))
}

// ----- CPU placement -----------------------------------------------------------------------

/// The servers run on CPU 0; the load generator on the last CPU, so neither steals the
/// other's core (corestream pins its own executors starting from CPU 0 as well).
const SERVER_CPU: usize = 0;

fn pin_current_thread_to(cpu: usize) {
    // SAFETY: `set` is a zeroed cpu_set_t that CPU_SET fills in; sched_setaffinity reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn generator_cpu() -> usize {
    std::thread::available_parallelism()
        .map(|cores| cores.get().saturating_sub(1))
        .unwrap_or(0)
}

/// A command whose process (and every thread it starts) runs on the server CPU.
fn server_command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    command_on(program, SERVER_CPU)
}

/// A command whose process (and every thread it starts) runs on `cpu`.
fn command_on(program: impl AsRef<std::ffi::OsStr>, cpu: usize) -> Command {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new(program);
    // SAFETY: the closure only calls sched_setaffinity (async-signal-safe) in the child
    // between fork and exec.
    unsafe {
        command.pre_exec(move || {
            pin_current_thread_to(cpu);
            Ok(())
        });
    }
    command
}

// ----- peers -------------------------------------------------------------------------------

struct Peer {
    name: &'static str,
    child: Child,
    /// TCP port (1.x); for deepstream 2.4.1 the WebSocket port.
    port: u16,
    /// corestream's HTTP (WebSocket) port.
    http_port: u16,
    _dir: Option<PathBuf>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's PID.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Peer {
    /// Resident memory of the peer process, in MiB.
    fn rss_mib(&self) -> f64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find_map(|line| line.strip_prefix("VmRSS:"))
                    .and_then(|value| {
                        value
                            .trim()
                            .trim_end_matches("kB")
                            .trim()
                            .parse::<f64>()
                            .ok()
                    })
            })
            .map(|kib| kib / 1024.0)
            .unwrap_or(0.0)
    }

    /// CPU seconds (user + system) the peer process used so far.
    fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let ticks: f64 = fields
            .get(11..13)
            .map(|pair| pair.iter().filter_map(|v| v.parse::<f64>().ok()).sum())
            .unwrap_or(0.0);
        // SAFETY: sysconf has no memory-safety preconditions.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        ticks / per_second.max(1.0)
    }
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on port {port}");
}

fn write_config(dir: &Path, http_port: u16, tcp_port: u16, extra: &str) -> PathBuf {
    write_config_with(dir, http_port, tcp_port, extra, "{type: none}")
}

/// `write_config` with `permission` (a YAML mapping) in place of `{type: none}`.
fn write_config_with(
    dir: &Path,
    http_port: u16,
    tcp_port: u16,
    extra: &str,
    permission: &str,
) -> PathBuf {
    std::fs::create_dir_all(dir).expect("config dir");
    let path = dir.join("config.yml");
    std::fs::write(
        &path,
        format!(
            "serverName: UUID\nshowLogo: false\nlogLevel: ERROR\nhost: 127.0.0.1\nport: {http_port}\n\
             tcpHost: 127.0.0.1\ntcpPort: {tcp_port}\nauth: {{type: none}}\npermission: {permission}\n\
             {extra}"
        ),
    )
    .expect("write config");
    path
}

/// The value after `name` on the command line (`--cores 2`), if it is there and parses.
/// The value after `name`, if `name` was given with one (`check_arguments` already refused a
/// valued option without its value); a value that does not parse ends the run with the usage
/// (a typo must not silently run with the default).
fn option_value<T: std::str::FromStr>(arguments: &[String], name: &str) -> Option<T> {
    let at = arguments.iter().position(|argument| argument == name)?;
    let value = arguments
        .get(at + 1)
        .filter(|value| !value.starts_with("--"))?;
    match value.parse() {
        Ok(value) => Some(value),
        Err(_) => usage_error(&format!("{name}: cannot read {value:?}")),
    }
}

/// What `--help` prints: the modes and their options (the module doc says more).
const USAGE: &str = "\
corestream-bench: the end-to-end load generator (corestream against deepstream and the floors)

usage: corestream-bench [--quick] [--cores N] [--spin MS] [--skip-deepstream]   (the full run)
       corestream-bench --fan-out [--seconds S] [--cores N] [--skip-deepstream]
                        [--subscribers N] [--transport tcp|websocket]
       corestream-bench --connections [N] [--transport tcp|websocket|polling] [--skip-deepstream]
       corestream-bench --latency-floors [--quick]
       corestream-bench --permissions [--quick]
       corestream-bench --cluster [--quick]
       corestream-bench --profile [--subscribers N] [--events K] [--connections M]

environment: CORESTREAM_BINARY=path runs another corestream build (before/after runs)";

/// Options without a value, and options followed by one.
const FLAGS: &[&str] = &[
    "--quick",
    "--skip-deepstream",
    "--fan-out",
    "--latency-floors",
    "--permissions",
    "--cluster",
    "--profile",
];
const VALUED: &[&str] = &[
    "--cores",
    "--spin",
    "--seconds",
    "--subscribers",
    "--transport",
    "--events",
];

fn usage_error(problem: &str) -> ! {
    eprintln!("corestream-bench: {problem}\n\n{USAGE}");
    std::process::exit(2);
}

/// `--help` prints the usage; an unknown argument ends the run with it.
fn check_arguments(arguments: &[String]) {
    if arguments.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        std::process::exit(0);
    }
    let mut at = 0;
    while at < arguments.len() {
        let argument = arguments[at].as_str();
        let next_is_value = arguments
            .get(at + 1)
            .is_some_and(|next| !next.starts_with("--"));
        if VALUED.contains(&argument) {
            if !next_is_value {
                usage_error(&format!("{argument} needs a value"));
            }
            at += 1;
        } else if argument == "--connections" {
            at += usize::from(next_is_value);
        } else if !FLAGS.contains(&argument) {
            usage_error(&format!("unknown argument {argument:?}"));
        }
        at += 1;
    }
}

fn start_corestream(cores: usize, spin_millis: u64) -> Peer {
    start_corestream_with(cores, spin_millis, "{type: none}")
}

/// corestream with `permission` (a YAML mapping) in its config.
fn start_corestream_with(cores: usize, spin_millis: u64, permission: &str) -> Peer {
    let dir = std::env::temp_dir().join(format!("corestream-bench-{}", fastrand::u64(..)));
    let tcp_port = free_port();
    let http_port = free_port();
    let extra = format!(
        "spinBeforePark: {spin_millis}\nwebServerEnabled: true\nconnectionEndpoints:\n  websocket:\n    \
         options:\n      heartbeatInterval: 600000\n\
         maxEngineioSessionsPerAddress: 100000\n"
    );
    let config = write_config_with(&dir, http_port, tcp_port, &extra, permission);
    let binary = corestream_binary();
    let child = server_command(&binary)
        .args(["start", "--config"])
        .arg(&config)
        .args(["--cores", &cores.to_string()])
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|error| {
            panic!(
                "cannot start {}: {error} (cargo build --release)",
                binary.display()
            )
        });
    wait_for_port(tcp_port);
    Peer {
        name: "corestream",
        child,
        port: tcp_port,
        http_port,
        _dir: Some(dir),
    }
}

fn start_deepstream() -> Peer {
    start_deepstream_with("{type: none}")
}

/// deepstream 1.1.1 with `permission` (a YAML mapping) in its config.
fn start_deepstream_with(permission: &str) -> Peer {
    let dir = std::env::temp_dir().join(format!("deepstream-bench-{}", fastrand::u64(..)));
    let tcp_port = free_port();
    // The web server (engine.io) is on by default; the polling benchmark uses it.
    let http_port = free_port();
    let config = write_config_with(&dir, http_port, tcp_port, "", permission);
    let mut child = server_command("node")
        .arg(root().join("tests/node/start-deepstream-1.js"))
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot start node (is tests/node installed? npm install in tests/node)");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    loop {
        match lines.next() {
            Some(Ok(line)) if line.trim() == "ready" => break,
            Some(Ok(_)) => continue,
            _ => panic!("deepstream did not start"),
        }
    }
    std::thread::spawn(move || for _ in lines {});
    wait_for_port(tcp_port);
    Peer {
        name: "deepstream 1.1.1",
        child,
        port: tcp_port,
        http_port,
        _dir: Some(dir),
    }
}

fn start_echo(kind: &'static str) -> Peer {
    let port = free_port();
    let child = server_command(std::env::current_exe().expect("own path"))
        .args([kind, &port.to_string()])
        .spawn()
        .expect("start echo server");
    wait_for_port(port);
    Peer {
        name: kind,
        child,
        port,
        http_port: 0,
        _dir: None,
    }
}

/// The floor: a minimal blocking echo server, one thread per connection.
fn run_echo_server(port: u16) {
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind echo");
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || {
            let _ = stream.set_nodelay(true);
            let mut reader = stream;
            let mut writer = match reader.try_clone() {
                Ok(writer) => writer,
                Err(_) => return,
            };
            let mut buffer = vec![0u8; 65536];
            while let Ok(read) = reader.read(&mut buffer) {
                if read == 0 || writer.write_all(&buffer[..read]).is_err() {
                    return;
                }
            }
        });
    }
}

/// The floor for an A→B measurement: an echo across two connections, the shape of an event
/// from publisher A to subscriber B. A client names its side first (`A` or `B` and a 0x1E);
/// a `B` is paired with the `A` waiting, and from then on what one of the pair sends is written
/// to the other. Connections that never name a side (port probes) are ignored.
fn run_relay_server(port: u16) {
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind relay");
    let waiting_a: std::sync::Arc<std::sync::Mutex<Option<TcpStream>>> = Default::default();
    for stream in listener.incoming().flatten() {
        let waiting_a = std::sync::Arc::clone(&waiting_a);
        std::thread::spawn(move || {
            let _ = stream.set_nodelay(true);
            let mut side = [0u8; 2];
            let mut reader = &stream;
            if reader.read_exact(&mut side).is_err() {
                return;
            }
            let mut waiting = waiting_a
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if side[0] == b'A' {
                *waiting = Some(stream);
                return;
            }
            let Some(first) = waiting.take() else {
                return;
            };
            drop(waiting);
            for (from, to) in [(&first, &stream), (&stream, &first)] {
                let (Ok(mut reader), Ok(mut writer)) = (from.try_clone(), to.try_clone()) else {
                    continue;
                };
                std::thread::spawn(move || {
                    let mut buffer = vec![0u8; 65536];
                    while let Ok(read) = reader.read(&mut buffer) {
                        if read == 0 || writer.write_all(&buffer[..read]).is_err() {
                            return;
                        }
                    }
                });
            }
        });
    }
}

/// The runtime floor: the same echo on one glommio executor (io_uring), as corestream uses.
fn run_glommio_echo_server(port: u16, spin_before_park: Duration) {
    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    let mut builder = glommio::LocalExecutorBuilder::new(glommio::Placement::Fixed(SERVER_CPU))
        .io_memory(512 * 1024);
    if !spin_before_park.is_zero() {
        builder = builder.spin_before_park(spin_before_park);
    }
    let executor = builder.make().expect("glommio executor");
    executor.run(async move {
        let listener =
            glommio::net::TcpListener::bind(("127.0.0.1", port)).expect("bind glommio echo");
        while let Ok(mut stream) = listener.accept().await {
            glommio::spawn_local(async move {
                let _ = stream.set_nodelay(true);
                let mut buffer = vec![0u8; 65536];
                while let Ok(read) = stream.read(&mut buffer).await {
                    if read == 0 || stream.write_all(&buffer[..read]).await.is_err() {
                        return;
                    }
                }
            })
            .detach();
        }
    });
}

// ----- clients -----------------------------------------------------------------------------

struct RawClient {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl RawClient {
    fn connect(port: u16) -> RawClient {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        RawClient {
            stream,
            buffer: Vec::new(),
        }
    }

    /// Reads one message (up to and including 0x1E).
    fn read_message(&mut self) -> Vec<u8> {
        loop {
            if let Some(end) = memchr::memchr(0x1e, &self.buffer) {
                return self.buffer.drain(..=end).collect();
            }
            let mut chunk = [0u8; 65536];
            let read = self.stream.read(&mut chunk).expect("read");
            assert!(read > 0, "server closed the connection");
            self.buffer.extend_from_slice(&chunk[..read]);
        }
    }

    fn expect_prefix(&mut self, prefix: &str) {
        let message = self.read_message();
        let prefix = wire(prefix);
        assert!(
            message.starts_with(&prefix),
            "expected {:?}, got {:?}",
            String::from_utf8_lossy(&prefix),
            String::from_utf8_lossy(&message)
        );
    }

    fn login(port: u16, username: &str) -> RawClient {
        let mut client = RawClient::connect(port);
        client.expect_prefix("C|CH+");
        client.send(&wire("C|CHR|bench+"));
        client.expect_prefix("C|A+");
        client.send(&wire(&format!("A|REQ|{{\"username\":\"{username}\"}}+")));
        client.expect_prefix("A|A");
        client
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }
}

// ----- latency -----------------------------------------------------------------------------

/// One table row of latencies: `| name | p50 | p99 | p99.9 | max |`.
fn row(name: &str, latency: &Latency) {
    println!(
        "| {name} | {:.1} | {:.1} | {:.1} | {:.1} |",
        latency.p50, latency.p99, latency.p999, latency.max
    )
}

struct Latency {
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
    /// (nines, µs) along `plot::nines_grid`, for the latency picture.
    curve: Vec<(f64, f64)>,
}

fn summarize(histogram: &Histogram<u64>) -> Latency {
    let micros = |quantile: f64| histogram.value_at_quantile(quantile) as f64 / 1000.0;
    Latency {
        p50: micros(0.5),
        p99: micros(0.99),
        p999: micros(0.999),
        max: histogram.max() as f64 / 1000.0,
        curve: plot::nines_grid()
            .map(|nines| (nines, micros(plot::quantile_at(nines))))
            .collect(),
    }
}

/// Times `count` rounds with one message in flight (after `count / 10` warm-up rounds):
/// `prepare` builds a round's input untimed, `run` sends it and waits for the answer.
fn one_in_flight<T>(
    count: usize,
    mut prepare: impl FnMut(usize) -> T,
    mut run: impl FnMut(T),
) -> Latency {
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram");
    let warmup = count / 10;
    for round in 0..warmup + count {
        let input = prepare(round);
        let started = Instant::now();
        run(input);
        let elapsed = started.elapsed().as_nanos() as u64;
        if round >= warmup {
            histogram.record(elapsed.max(1)).expect("record");
        }
    }
    summarize(&histogram)
}

/// Event A→B, one message in flight.
fn event_latency(port: u16, count: usize) -> Latency {
    event_latency_between(port, port, count)
}

/// Event A→B with A and B on the given ports (two nodes of a cluster, or nginx and a node).
fn event_latency_between(publisher_port: u16, subscriber_port: u16, count: usize) -> Latency {
    let mut subscriber = RawClient::login(subscriber_port, "latency-b");
    subscriber.send(&wire("E|S|latency+"));
    subscriber.expect_prefix("E|A|S|latency+");
    // (in a cluster, the subscriber's node follows the channel once Redis confirmed it)
    std::thread::sleep(Duration::from_millis(100));
    let mut publisher = RawClient::login(publisher_port, "latency-a");
    let message = wire("E|EVT|latency|Sabcdefghijklmnopqrstuvwxyz0123456789+");
    one_in_flight(
        count,
        |_| (),
        |()| {
            publisher.send(&message);
            let received = subscriber.read_message();
            debug_assert_eq!(received, message);
        },
    )
}

/// The floor of an A→B measurement: the message through the relay server, from connection A
/// to connection B (both to `port`, opened in that order).
fn relay_latency(port: u16, count: usize) -> Latency {
    let mut publisher = RawClient::connect(port);
    publisher.send(b"A\x1e");
    // (the relay must hold A before B names itself)
    std::thread::sleep(Duration::from_millis(100));
    let mut subscriber = RawClient::connect(port);
    subscriber.send(b"B\x1e");
    std::thread::sleep(Duration::from_millis(100));
    let message = wire("E|EVT|latency|Sabcdefghijklmnopqrstuvwxyz0123456789+");
    one_in_flight(
        count,
        |_| (),
        |()| {
            publisher.send(&message);
            let _ = subscriber.read_message();
        },
    )
}

/// The floor: the same message to the echo server and back on the same connection.
fn echo_latency(port: u16, count: usize) -> Latency {
    let mut client = RawClient::connect(port);
    let message = wire("E|EVT|latency|Sabcdefghijklmnopqrstuvwxyz0123456789+");
    one_in_flight(
        count,
        |_| (),
        |()| {
            client.send(&message);
            let _ = client.read_message();
        },
    )
}

// ----- fan-out -----------------------------------------------------------------------------

struct FanOut {
    deliveries_per_second: f64,
    server_cpu_percent: f64,
}

/// How a reader counts the messages in what a subscriber socket delivered: raw TCP counts
/// terminators; WebSocket parses frames (a frame header may contain the byte 0x1E).
#[derive(Clone, Copy)]
enum Framing {
    Raw,
    WebSocket,
}

/// Counts delivered messages on every subscriber socket with one epoll thread.
fn spawn_reader(
    sockets: Vec<TcpStream>,
    framing: Framing,
    delivered: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        // SAFETY: epoll_create1 has no pointer arguments; the result is checked.
        let epoll = unsafe { libc::epoll_create1(0) };
        assert!(epoll >= 0, "epoll_create1 failed");
        for (index, socket) in sockets.iter().enumerate() {
            socket.set_nonblocking(true).expect("nonblocking");
            let mut event = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: index as u64,
            };
            // SAFETY: `epoll` and the socket fd are open; `event` is a valid epoll_event.
            let result = unsafe {
                libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, socket.as_raw_fd(), &mut event)
            };
            assert_eq!(result, 0, "epoll_ctl failed");
        }
        let mut counters = vec![FrameCounter::default(); sockets.len()];
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
        let mut buffer = vec![0u8; 1 << 20];
        let mut sockets = sockets;
        while !stop.load(Ordering::Relaxed) {
            // SAFETY: `events` has room for `events.len()` entries.
            let ready =
                unsafe { libc::epoll_wait(epoll, events.as_mut_ptr(), events.len() as i32, 50) };
            for event in events.iter().take(ready.max(0) as usize) {
                let index = event.u64 as usize;
                loop {
                    match sockets[index].read(&mut buffer) {
                        Ok(0) => break,
                        Ok(read) => {
                            let count = match framing {
                                Framing::Raw => memchr::memchr_iter(0x1e, &buffer[..read]).count(),
                                Framing::WebSocket => counters[index].count(&buffer[..read]),
                            };
                            delivered.fetch_add(count as u64, Ordering::Relaxed);
                        }
                        Err(_) => break,
                    }
                }
            }
        }
        // SAFETY: closing the epoll fd we created.
        unsafe { libc::close(epoll) };
    })
}

fn fan_out(peer: &Peer, subscribers: usize, duration: Duration) -> FanOut {
    let name = format!("fan/{subscribers}/{}", fastrand::u32(..));
    let mut sockets = Vec::with_capacity(subscribers);
    for index in 0..subscribers {
        let mut client = RawClient::login(peer.port, &format!("sub-{index}"));
        client.send(&wire(&format!("E|S|{name}+")));
        client.expect_prefix(&format!("E|A|S|{name}+"));
        assert!(client.buffer.is_empty());
        sockets.push(client.stream);
    }
    let delivered = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = spawn_reader(
        sockets,
        Framing::Raw,
        Arc::clone(&delivered),
        Arc::clone(&stop),
    );
    let mut publisher = RawClient::login(peer.port, "publisher");
    let one = wire(&format!("E|EVT|{name}|Sfan-out-payload-0123456789+"));
    publish_and_measure(
        peer,
        &one,
        |batch| publisher.send(batch),
        subscribers,
        duration,
        Delivery {
            delivered,
            stop,
            reader,
        },
    )
}

/// The reader side of a fan-out run.
struct Delivery {
    delivered: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    reader: std::thread::JoinHandle<()>,
}

/// Publishes `one` (a whole message, framed as the transport needs) in batches for `duration`,
/// keeping a bounded window per subscriber in flight, waits for every delivery, and reports the
/// delivery rate and the server's CPU use.
fn publish_and_measure(
    peer: &Peer,
    one: &[u8],
    mut write: impl FnMut(&[u8]),
    subscribers: usize,
    duration: Duration,
    delivery: Delivery,
) -> FanOut {
    let Delivery {
        delivered,
        stop,
        reader,
    } = delivery;
    let batch_size = 64usize;
    let batch: Vec<u8> = one.repeat(batch_size);
    // At most this many messages per subscriber in flight: ~64 KiB each, far below any limit.
    let window = (65536 / one.len()).max(batch_size) as u64;
    let subscribers_u64 = subscribers as u64;
    let cpu_before = peer.cpu_seconds();
    let started = Instant::now();
    let mut sent: u64 = 0;
    while started.elapsed() < duration {
        if sent * subscribers_u64 > delivered.load(Ordering::Relaxed) + window * subscribers_u64 {
            std::thread::yield_now();
            continue;
        }
        write(&batch);
        sent += batch_size as u64;
    }
    let expected = sent * subscribers_u64;
    let drain_deadline = Instant::now() + Duration::from_secs(15);
    while delivered.load(Ordering::Relaxed) < expected && Instant::now() < drain_deadline {
        std::thread::sleep(Duration::from_micros(200));
    }
    let elapsed = started.elapsed();
    let cpu = peer.cpu_seconds() - cpu_before;
    stop.store(true, Ordering::Relaxed);
    let _ = reader.join();
    let got = delivered.load(Ordering::Relaxed);
    assert_eq!(got, expected, "{}: lost deliveries", peer.name);
    FanOut {
        deliveries_per_second: got as f64 / elapsed.as_secs_f64(),
        server_cpu_percent: 100.0 * cpu / elapsed.as_secs_f64(),
    }
}

// ----- records and RPC -----------------------------------------------------------------------

impl RawClient {
    /// Reads messages until one starts with `prefix`; returns it.
    fn read_until(&mut self, prefix: &[u8]) -> Vec<u8> {
        loop {
            let message = self.read_message();
            if message.starts_with(prefix) {
                return message;
            }
        }
    }
}

/// Record patch → subscriber, one in flight.
fn record_patch_latency(port: u16, count: usize) -> Latency {
    record_patch_latency_between(port, port, count)
}

fn record_patch_latency_between(writer_port: u16, subscriber_port: u16, count: usize) -> Latency {
    let name = format!("patch/{}", fastrand::u32(..));
    let mut subscriber = RawClient::login(subscriber_port, "patch-b");
    subscriber.send(&wire(&format!("R|CR|{name}+")));
    subscriber.read_until(&wire("R|R|"));
    std::thread::sleep(Duration::from_millis(100));
    let mut writer = RawClient::login(writer_port, "patch-a");
    writer.send(&wire(&format!("R|CR|{name}+")));
    writer.read_until(&wire("R|R|"));
    one_in_flight(
        count,
        |round| {
            wire(&format!(
                "R|P|{name}|{}|price.bid|N{}.25+",
                round + 1,
                round
            ))
        },
        |patch| {
            writer.send(&patch);
            let _ = subscriber.read_message();
        },
    )
}

/// One writer, consecutive versions to one record, pipelined; writes per second.
fn hot_record_writes(port: u16, count: usize) -> f64 {
    let name = format!("hot/{}", fastrand::u32(..));
    let mut writer = RawClient::login(port, "hot-writer");
    writer.send(&wire(&format!("R|CR|{name}+")));
    writer.read_until(&wire("R|R|"));
    let started = Instant::now();
    let mut batch = Vec::new();
    for version in 1..=count {
        batch.extend(wire(&format!(
            "R|U|{name}|{version}|{{\"bid\":{version},\"ask\":1.5}}+"
        )));
        if batch.len() > 32 * 1024 {
            writer.send(&batch);
            batch.clear();
        }
    }
    batch.extend(wire(&format!("R|SN|{name}+")));
    writer.send(&batch);
    let last = writer.read_until(&wire("R|R|"));
    let expected = wire(&format!("R|R|{name}|{count}|"));
    assert!(
        last.starts_with(&expected),
        "hot record: not every write was accepted"
    );
    count as f64 / started.elapsed().as_secs_f64()
}

/// Sends what `messages` yields from a new connection while a reader thread drains every reply
/// (so the server never sees a slow consumer), then sends `last` and waits for a reply that
/// starts with `last_reply`.
fn blast(
    port: u16,
    username: &str,
    messages: impl Iterator<Item = String>,
    last: &str,
    last_reply: &str,
) {
    let client = RawClient::login(port, username);
    let mut writer = client.stream.try_clone().expect("clone");
    let expected = wire(last_reply);
    let reader = std::thread::spawn(move || {
        let mut client = client;
        client.read_until(&expected);
    });
    let mut batch = Vec::new();
    for message in messages {
        batch.extend(wire(&message));
        if batch.len() > 32 * 1024 {
            writer.write_all(&batch).expect("write");
            batch.clear();
        }
    }
    batch.extend(wire(last));
    writer.write_all(&batch).expect("write");
    reader.join().expect("reader");
}

/// Creates `count` records from `writers` connections, then writes each once; returns
/// (creations per second, writes per second).
fn many_records(port: u16, count: usize, writers: usize, prefix: &str) -> (f64, f64) {
    let per_writer = count / writers;
    let run = |phase: &'static str| {
        let started = Instant::now();
        let threads: Vec<_> = (0..writers)
            .map(|writer| {
                let prefix = prefix.to_string();
                std::thread::spawn(move || {
                    let name = move |index: usize| format!("{prefix}/{writer}/{index}");
                    let last = name(per_writer - 1);
                    let messages = (0..per_writer).map(move |index| {
                        let name = name(index);
                        match phase {
                            "create" => format!("R|CR|{name}+R|US|{name}+"),
                            _ => format!(
                                "R|U|{name}|1|{{\"id\":{index},\"owner\":\"writer-{writer}\",\"tags\":[\"a\",\"b\"],\"price\":101.25,\"qty\":300}}+"
                            ),
                        }
                    });
                    // The owner core of the last name answers after everything this
                    // connection sent it; other owner cores may finish a little later.
                    blast(
                        port,
                        &format!("bulk-{writer}"),
                        messages,
                        &format!("R|H|{last}+"),
                        &format!("R|H|{last}|T"),
                    );
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("writer");
        }
        (per_writer * writers) as f64 / started.elapsed().as_secs_f64()
    };
    let creations = run("create");
    let writes = run("write");
    (creations, writes)
}

/// A provider answering every request (ack + response), on its own thread.
fn spawn_rpc_provider(port: u16, name: &str) -> std::thread::JoinHandle<()> {
    let mut provider = RawClient::login(port, "rpc-provider");
    provider.send(&wire(&format!("P|S|{name}+")));
    provider.read_until(&wire("P|A|S|"));
    std::thread::spawn(move || {
        let mut reply = Vec::new();
        let mut chunk = vec![0u8; 65536];
        loop {
            let read = match provider.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(read) => read,
            };
            provider.buffer.extend_from_slice(&chunk[..read]);
            let mut consumed = 0;
            while let Some(end) = memchr::memchr(0x1e, &provider.buffer[consumed..]) {
                let message = &provider.buffer[consumed..consumed + end];
                consumed += end + 1;
                // P|REQ|name|cid|data
                let fields: Vec<&[u8]> = message.split(|byte| *byte == 0x1f).collect();
                if fields.len() >= 4 && fields[1] == b"REQ" {
                    for part in [&b"P"[..], b"A", fields[2], fields[3]] {
                        reply.extend_from_slice(part);
                        reply.push(0x1f);
                    }
                    reply.pop();
                    reply.push(0x1e);
                    for part in [&b"P"[..], b"RES", fields[2], fields[3], b"N42"] {
                        reply.extend_from_slice(part);
                        reply.push(0x1f);
                    }
                    reply.pop();
                    reply.push(0x1e);
                }
            }
            provider.buffer.drain(..consumed);
            if !reply.is_empty() {
                if provider.stream.write_all(&reply).is_err() {
                    return;
                }
                reply.clear();
            }
        }
    })
}

/// RPC round trip with one call in flight, then throughput with `window` calls in flight.
fn rpc_round_trips(port: u16, count: usize, window: usize) -> (Latency, f64) {
    let name = format!("rpc/{}", fastrand::u32(..));
    let provider = spawn_rpc_provider(port, &name);
    let mut requester = RawClient::login(port, "rpc-requester");
    let latency = one_in_flight(
        count,
        |round| wire(&format!("P|REQ|{name}|c{round}|O{{\"a\":1}}+")),
        |request| {
            requester.send(&request);
            requester.read_until(&wire("P|RES|"));
        },
    );
    let started = Instant::now();
    let mut sent = 0usize;
    let mut answered = 0usize;
    let total = count * 5;
    while answered < total {
        let mut batch = Vec::new();
        while sent < total && sent - answered < window {
            batch.extend(wire(&format!("P|REQ|{name}|t{sent}|U+")));
            sent += 1;
        }
        if !batch.is_empty() {
            requester.send(&batch);
        }
        let message = requester.read_message();
        if message.starts_with(&wire("P|RES|")) {
            answered += 1;
        } else {
            assert!(
                message.starts_with(&wire("P|A|")),
                "rpc: {:?}",
                String::from_utf8_lossy(&message)
            );
        }
    }
    let throughput = total as f64 / started.elapsed().as_secs_f64();
    drop(requester);
    drop(provider);
    (latency, throughput)
}

/// Creates `count` records of ~100 bytes (created, written, then discarded so only the records
/// remain) and returns the server's RSS growth in MiB.
fn record_memory(peer: &Peer, count: usize) -> (f64, f64) {
    let before = peer.rss_mib();
    let writers = 2;
    let per_writer = count / writers;
    let threads: Vec<_> = (0..writers)
        .map(|writer| {
            let port = peer.port;
            std::thread::spawn(move || {
                let name = move |index: usize| format!("mem/{writer}/{index:07}");
                let last = name(per_writer - 1);
                let messages = (0..per_writer).map(move |index| {
                    let name = name(index);
                    format!(
                        "R|CR|{name}+R|U|{name}|1|{{\"id\":{index},\"user\":\"writer-{writer}\",\"tags\":[\"alpha\",\"beta\"],\"price\":101.25,\"qty\":300,\"ok\":true}}+R|US|{name}+"
                    )
                });
                blast(
                    port,
                    &format!("mem-{writer}"),
                    messages,
                    &format!("R|SN|{last}+"),
                    &format!("R|R|{last}|1|"),
                );
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("writer");
    }
    std::thread::sleep(Duration::from_millis(500));
    (before, peer.rss_mib())
}

// ----- WebSocket (2.x clients) ---------------------------------------------------------------

/// Counts the deepstream messages (0x1E) in the payloads of a stream of server frames as it
/// arrives, without buffering payloads: a frame header may be split across reads (and may
/// itself contain 0x1E), a payload is counted where it lies in the read buffer.
#[derive(Default, Clone)]
struct FrameCounter {
    header: [u8; 10],
    header_len: usize,
    /// Payload bytes of the current frame not yet seen.
    remaining: usize,
}

impl FrameCounter {
    fn count(&mut self, mut bytes: &[u8]) -> usize {
        let mut count = 0;
        while !bytes.is_empty() {
            if self.remaining > 0 {
                let take = self.remaining.min(bytes.len());
                count += memchr::memchr_iter(0x1e, &bytes[..take]).count();
                self.remaining -= take;
                bytes = &bytes[take..];
                continue;
            }
            self.header[self.header_len] = bytes[0];
            self.header_len += 1;
            bytes = &bytes[1..];
            if let Some(length) = self.header_complete() {
                self.header_len = 0;
                self.remaining = length;
            }
        }
        count
    }

    /// The payload length once the header is whole (server frames are not masked).
    fn header_complete(&self) -> Option<usize> {
        let header = &self.header[..self.header_len];
        match (header.len(), header.get(1).map(|byte| byte & 0x7f)) {
            (2, Some(short)) if short < 126 => Some(usize::from(short)),
            (4, Some(126)) => Some(usize::from(u16::from_be_bytes([header[2], header[3]]))),
            (10, Some(127)) => {
                let mut length = [0u8; 8];
                length.copy_from_slice(&header[2..10]);
                Some(u64::from_be_bytes(length) as usize)
            }
            _ => None,
        }
    }
}

struct WsClient {
    stream: TcpStream,
    raw: Vec<u8>,
    text: Vec<u8>,
}

impl WsClient {
    fn connect(port: u16) -> WsClient {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let request = format!(
            "GET /deepstream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).expect("handshake");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            let read = stream.read(&mut byte).expect("handshake reply");
            assert_eq!(read, 1, "closed during the handshake");
            head.push(byte[0]);
        }
        assert!(head.starts_with(b"HTTP/1.1 101"), "upgrade refused");
        WsClient {
            stream,
            raw: Vec::new(),
            text: Vec::new(),
        }
    }

    /// One masked text frame.
    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut frame = Vec::new();
        websocket::write_client_frame(&mut frame, 0x81, payload, [0x11, 0x22, 0x33, 0x44]);
        frame
    }

    fn send(&mut self, payload: &[u8]) {
        self.stream.write_all(&Self::frame(payload)).expect("write");
    }

    fn read_message(&mut self) -> Vec<u8> {
        loop {
            if let Some(end) = memchr::memchr(0x1e, &self.text) {
                return self.text.drain(..=end).collect();
            }
            // Move complete frames' payloads into `text`.
            loop {
                let raw = &self.raw;
                if raw.len() < 2 {
                    break;
                }
                let (header, length) = match raw[1] & 0x7f {
                    126 if raw.len() >= 4 => (4, usize::from(u16::from_be_bytes([raw[2], raw[3]]))),
                    127 if raw.len() >= 10 => {
                        let mut bytes = [0u8; 8];
                        bytes.copy_from_slice(&raw[2..10]);
                        (10, u64::from_be_bytes(bytes) as usize)
                    }
                    126 | 127 => break,
                    short => (2, usize::from(short)),
                };
                if raw.len() < header + length {
                    break;
                }
                let payload: Vec<u8> = self.raw[header..header + length].to_vec();
                self.raw.drain(..header + length);
                self.text.extend(payload);
            }
            if memchr::memchr(0x1e, &self.text).is_some() {
                continue;
            }
            let mut chunk = [0u8; 65536];
            let read = self.stream.read(&mut chunk).expect("read");
            assert!(read > 0, "server closed the connection");
            self.raw.extend_from_slice(&chunk[..read]);
        }
    }

    fn login(port: u16, username: &str) -> WsClient {
        let mut client = WsClient::connect(port);
        assert!(client.read_message().starts_with(&wire("C|CH+")));
        client.send(&wire("C|CHR|ws://127.0.0.1/deepstream+"));
        assert!(client.read_message().starts_with(&wire("C|A+")));
        client.send(&wire(&format!("A|REQ|{{\"username\":\"{username}\"}}+")));
        assert!(client.read_message().starts_with(&wire("A|A")));
        client
    }
}

/// deepstream 2.4.1 (Node 8 from npm), WebSocket only; heartbeats far apart.
fn start_deepstream_2() -> Peer {
    let dir = std::env::temp_dir().join(format!("deepstream2-bench-{}", fastrand::u64(..)));
    std::fs::create_dir_all(&dir).expect("dir");
    let port = free_port();
    std::fs::copy(
        root().join("tests/fixtures/v2-permissions.yml"),
        dir.join("permissions.yml"),
    )
    .expect("permissions");
    let config = dir.join("config.yml");
    std::fs::write(
        &config,
        format!(
            "serverName: UUID\nshowLogo: false\nlogLevel: ERROR\nconnectionEndpoints:\n  websocket:\n    \
             name: uws\n    options:\n      port: {port}\n      host: 127.0.0.1\n      urlPath: /deepstream\n      \
             heartbeatInterval: 600000\nauth: {{type: none}}\npermission:\n  type: config\n  options:\n    \
             path: ./permissions.yml\n"
        ),
    )
    .expect("config");
    let node8 = root().join("tests/node/node_modules/node-8/bin/node");
    let mut child = server_command(&node8)
        .arg(root().join("tests/node/start-deepstream-2.js"))
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start deepstream 2.4.1 (npm install in tests/node)");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    loop {
        match lines.next() {
            Some(Ok(line)) if line.trim() == "ready" => break,
            Some(Ok(_)) => continue,
            _ => panic!("deepstream 2.4.1 did not start"),
        }
    }
    std::thread::spawn(move || for _ in lines {});
    wait_for_port(port);
    Peer {
        name: "deepstream 2.4.1",
        child,
        port,
        http_port: port,
        _dir: Some(dir),
    }
}

/// Event A→B over WebSocket, one in flight.
fn ws_event_latency(port: u16, count: usize) -> Latency {
    let mut subscriber = WsClient::login(port, "ws-latency-b");
    subscriber.send(&wire("E|S|ws-latency+"));
    assert!(subscriber.read_message().starts_with(&wire("E|A|S|")));
    let mut publisher = WsClient::login(port, "ws-latency-a");
    let frame = WsClient::frame(&wire(
        "E|EVT|ws-latency|Sabcdefghijklmnopqrstuvwxyz0123456789+",
    ));
    one_in_flight(
        count,
        |_| (),
        |()| {
            publisher.stream.write_all(&frame).expect("write");
            let _ = subscriber.read_message();
        },
    )
}

/// One publisher, N WebSocket subscribers, deliveries per second (frame-aware counting).
/// `port` is the peer's WebSocket port (corestream: its HTTP port).
fn ws_fan_out(peer: &Peer, port: u16, subscribers: usize, duration: Duration) -> FanOut {
    let name = format!("wsfan/{subscribers}/{}", fastrand::u32(..));
    let mut sockets = Vec::with_capacity(subscribers);
    for index in 0..subscribers {
        let mut client = WsClient::login(port, &format!("ws-sub-{index}"));
        client.send(&wire(&format!("E|S|{name}+")));
        assert!(client.read_message().starts_with(&wire("E|A|S|")));
        assert!(client.raw.is_empty() && client.text.is_empty());
        sockets.push(client.stream);
    }
    let delivered = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = spawn_reader(
        sockets,
        Framing::WebSocket,
        Arc::clone(&delivered),
        Arc::clone(&stop),
    );
    let mut publisher = WsClient::login(port, "ws-publisher");
    let one = WsClient::frame(&wire(&format!("E|EVT|{name}|Sfan-out-payload-0123456789+")));
    publish_and_measure(
        peer,
        &one,
        |batch| publisher.stream.write_all(batch).expect("write"),
        subscribers,
        duration,
        Delivery {
            delivered,
            stop,
            reader,
        },
    )
}

// ----- engine.io polling (1.x browser clients) -------------------------------------------------

/// An engine.io 3 session over long-polling on one keep-alive HTTP connection.
struct Poller {
    stream: TcpStream,
    sid: String,
    buffer: Vec<u8>,
}

impl Poller {
    fn request(
        stream: &mut TcpStream,
        buffer: &mut Vec<u8>,
        method: &str,
        target: &str,
        body: &[u8],
    ) -> Vec<u8> {
        let head = format!(
            "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let mut request = head.into_bytes();
        request.extend_from_slice(body);
        stream.write_all(&request).expect("request");
        loop {
            if let Some(end) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|line| line.strip_prefix("content-length:"))
                    .and_then(|value| value.trim().parse().ok())
                    .unwrap_or(0);
                if buffer.len() >= end + 4 + length {
                    let body = buffer[end + 4..end + 4 + length].to_vec();
                    buffer.drain(..end + 4 + length);
                    assert!(
                        head.starts_with("http/1.1 200"),
                        "engine.io request failed: {head}"
                    );
                    return body;
                }
            }
            let mut chunk = [0u8; 65536];
            let read = stream.read(&mut chunk).expect("response");
            assert!(read > 0, "server closed the polling connection");
            buffer.extend_from_slice(&chunk[..read]);
        }
    }

    fn poll(&mut self) -> Vec<u8> {
        let target = format!(
            "/deepstream/?EIO=3&transport=polling&b64=1&sid={}",
            self.sid
        );
        Self::request(&mut self.stream, &mut self.buffer, "GET", &target, b"")
    }

    fn post(&mut self, text: &str) {
        let packet = [b"4".to_vec(), wire(text)].concat();
        let body = [packet.len().to_string().into_bytes(), b":".to_vec(), packet].concat();
        let target = format!(
            "/deepstream/?EIO=3&transport=polling&b64=1&sid={}",
            self.sid
        );
        let reply = Self::request(&mut self.stream, &mut self.buffer, "POST", &target, &body);
        assert_eq!(reply, b"ok");
    }

    /// Handshake, deepstream login and a subscription to `name`.
    fn subscribe(port: u16, username: &str, name: &str) -> Poller {
        let mut poller = Self::login(port, username);
        poller.post(&format!("E|S|{name}+"));
        poller.wait_for(&format!("E|A|S|{name}+"));
        poller
    }

    /// Polls until the messages received contain `needle` (capture notation).
    fn wait_for(&mut self, needle: &str) {
        let needle = wire(needle);
        let mut seen = Vec::new();
        while !seen
            .windows(needle.len())
            .any(|window| window == needle.as_slice())
        {
            seen.extend(self.poll());
        }
    }

    /// Handshake and deepstream login over long-polling.
    fn login(port: u16, username: &str) -> Poller {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let mut buffer = Vec::new();
        let open = Self::request(
            &mut stream,
            &mut buffer,
            "GET",
            "/deepstream/?EIO=3&transport=polling&b64=1",
            b"",
        );
        let open = String::from_utf8_lossy(&open).to_string();
        let sid = open
            .split('"')
            .nth(3)
            .expect("sid in the open packet")
            .to_string();
        let mut poller = Poller {
            stream,
            sid,
            buffer,
        };
        poller.wait_for("C|CH+");
        poller.post("C|CHR|bench+");
        poller.wait_for("C|A+");
        poller.post(&format!("A|REQ|{{\"username\":\"{username}\"}}+"));
        poller.wait_for("A|A");
        poller
    }
}

/// One TCP publisher, `sessions` engine.io sessions long-polling; events delivered per second.
fn polling_throughput(http_port: u16, tcp_port: u16, sessions: usize, duration: Duration) -> f64 {
    let name = format!("poll/{}", fastrand::u32(..));
    let pollers: Vec<Poller> = (0..sessions)
        .map(|index| Poller::subscribe(http_port, &format!("poller-{index}"), &name))
        .collect();
    let delivered = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = pollers
        .into_iter()
        .map(|mut poller| {
            let delivered = Arc::clone(&delivered);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let body = poller.poll();
                    let count = memchr::memchr_iter(0x1e, &body).count();
                    delivered.fetch_add(count as u64, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let mut publisher = RawClient::login(tcp_port, "poll-publisher");
    let one = wire(&format!("E|EVT|{name}|Spolling-payload-0123456789+"));
    let batch: Vec<u8> = one.repeat(32);
    let window = 2_000u64;
    let started = Instant::now();
    let mut sent = 0u64;
    while started.elapsed() < duration {
        if sent * sessions as u64 > delivered.load(Ordering::Relaxed) + window * sessions as u64 {
            std::thread::sleep(Duration::from_micros(100));
            continue;
        }
        publisher.send(&batch);
        sent += 32;
    }
    let expected = sent * sessions as u64;
    let deadline = Instant::now() + Duration::from_secs(10);
    while delivered.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let elapsed = started.elapsed();
    let got = delivered.load(Ordering::Relaxed);
    // Wake the pollers with one more event each, then stop them.
    stop.store(true, Ordering::Relaxed);
    publisher.send(&one);
    for thread in threads {
        let _ = thread.join();
    }
    assert!(
        got >= expected,
        "engine.io polling lost events: {got} of {expected}"
    );
    got as f64 / elapsed.as_secs_f64()
}

// ----- main --------------------------------------------------------------------------------

fn main() {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    if !arguments
        .first()
        .is_some_and(|first| first.ends_with("-server"))
    {
        check_arguments(&arguments);
    }
    if arguments.iter().any(|a| a == "--permissions") {
        run_permissions(arguments.iter().any(|a| a == "--quick"));
        return;
    }
    if arguments.iter().any(|a| a == "--connections") {
        connections::run(&arguments);
        return;
    }
    if arguments.iter().any(|a| a == "--latency-floors") {
        floors::run(&arguments);
        return;
    }
    if arguments.iter().any(|a| a == "--profile") {
        profile::run(&arguments);
        return;
    }
    if arguments.iter().any(|a| a == "--fan-out") {
        run_fan_out(&arguments);
        return;
    }
    if arguments.iter().any(|a| a == "--cluster") {
        cluster::run(arguments.iter().any(|a| a == "--quick"));
        return;
    }
    if let Some(
        kind @ ("echo-server"
        | "glommio-echo-server"
        | "glommio-spin-echo-server"
        | "epoll-echo-server"
        | "uring-echo-server"
        | "relay-server"),
    ) = arguments.first().map(String::as_str)
    {
        let port = arguments
            .get(1)
            .and_then(|port| port.parse().ok())
            .expect("echo-server PORT");
        match kind {
            "echo-server" => run_echo_server(port),
            "relay-server" => run_relay_server(port),
            "epoll-echo-server" => floors::run_epoll_echo_server(port),
            "uring-echo-server" => floors::run_uring_echo_server(port),
            "glommio-spin-echo-server" => run_glommio_echo_server(port, Duration::from_millis(1)),
            _ => run_glommio_echo_server(port, Duration::ZERO),
        }
        return;
    }
    let fan_out_cpu = generator_cpu();
    // One message in flight: client and server strictly alternate, so sharing the server's CPU
    // costs nothing and keeps this VM's cross-CPU wake-up latency out of every sample.
    pin_current_thread_to(SERVER_CPU);
    let quick = arguments.iter().any(|a| a == "--quick");
    let skip_deepstream = arguments.iter().any(|a| a == "--skip-deepstream");
    let cores: usize = option_value(&arguments, "--cores").unwrap_or(1);
    let spin_millis: u64 = option_value(&arguments, "--spin").unwrap_or(0);
    let latency_count = if quick { 2_000 } else { 20_000 };
    let fan_duration = Duration::from_secs(if quick { 1 } else { 3 });

    println!(
        "corestream-bench: loopback TCP, 1.x protocol; servers on CPU {SERVER_CPU} (corestream: \
         {cores} core(s)); latency client on CPU {SERVER_CPU}, fan-out load generator on CPU \
         {fan_out_cpu}"
    );
    println!(
        "(latency: {latency_count} events, one in flight; fan-out: {} s per run)\n",
        fan_duration.as_secs()
    );

    let echo = start_echo("echo-server");
    let echo_result = echo_latency(echo.port, latency_count);
    drop(echo);
    let glommio_echo = start_echo("glommio-echo-server");
    let glommio_echo_result = echo_latency(glommio_echo.port, latency_count);
    drop(glommio_echo);
    let corestream = start_corestream(cores, spin_millis);
    let core_latency = event_latency(corestream.port, latency_count);
    let deepstream = (!skip_deepstream).then(start_deepstream);
    let deep_latency = deepstream
        .as_ref()
        .map(|peer| event_latency(peer.port, latency_count));

    println!("## Event latency A→B (µs)");
    println!("| server | p50 | p99 | p99.9 | max |");
    println!("|---|---|---|---|---|");
    row("echo, blocking threads (floor, round trip)", &echo_result);
    row(
        "echo on glommio (runtime floor, round trip)",
        &glommio_echo_result,
    );
    row("corestream", &core_latency);
    if let Some(latency) = &deep_latency {
        row("deepstream 1.1.1", latency);
    }
    println!(
        "\ncorestream/echo p50: {:.2}×, p99: {:.2}×",
        core_latency.p50 / echo_result.p50,
        core_latency.p99 / echo_result.p99
    );
    println!(
        "corestream/glommio echo p50: {:.2}×, p99: {:.2}×",
        core_latency.p50 / glommio_echo_result.p50,
        core_latency.p99 / glommio_echo_result.p99
    );
    if let Some(latency) = &deep_latency {
        println!(
            "corestream/deepstream p50: {:.3}× ({:.1}× faster), p99: {:.3}×",
            core_latency.p50 / latency.p50,
            latency.p50 / core_latency.p50,
            core_latency.p99 / latency.p99
        );
    }

    // Records and RPC, one in flight (same CPU as the server, as for events).
    let patch_count = latency_count / 2;
    let core_patch = record_patch_latency(corestream.port, patch_count);
    let deep_patch = deepstream
        .as_ref()
        .map(|peer| record_patch_latency(peer.port, patch_count));
    let rpc_count = latency_count / 4;
    let (core_rpc, core_rpc_rate) = rpc_round_trips(corestream.port, rpc_count, 100);
    let deep_rpc = deepstream
        .as_ref()
        .map(|peer| rpc_round_trips(peer.port, rpc_count, 100));
    println!("\n## Record patch → subscriber and RPC round trip (µs), one in flight");
    println!("| measurement | p50 | p99 | p99.9 | max |");
    println!("|---|---|---|---|---|");
    row("corestream record patch", &core_patch);
    if let Some(latency) = &deep_patch {
        row("deepstream 1.1.1 record patch", latency);
    }
    row("corestream RPC round trip", &core_rpc);
    if let Some((latency, _)) = &deep_rpc {
        row("deepstream 1.1.1 RPC round trip", latency);
    }

    // Throughput of records and RPC: the generator on its own CPU.
    pin_current_thread_to(fan_out_cpu);
    let hot_count = if quick { 20_000 } else { 200_000 };
    let many_count = if quick { 10_000 } else { 100_000 };
    let core_hot = hot_record_writes(corestream.port, hot_count);
    let core_many = many_records(corestream.port, many_count, 4, "many-c");
    let deep_hot = deepstream
        .as_ref()
        .map(|peer| hot_record_writes(peer.port, hot_count / 4));
    let deep_many = deepstream
        .as_ref()
        .map(|peer| many_records(peer.port, many_count / 4, 4, "many-d"));
    println!("\n## Record and RPC throughput (per second)");
    println!("| measurement | corestream | deepstream 1.1.1 | corestream/deepstream |");
    println!("|---|---|---|---|");
    let ratio_row = |what: &str, ours: f64, theirs: Option<f64>| match theirs {
        Some(theirs) => println!(
            "| {what} | {ours:.0} | {theirs:.0} | {:.1}× |",
            ours / theirs
        ),
        None => println!("| {what} | {ours:.0} | - | - |"),
    };
    ratio_row(
        "writes to one hot record (one writer, pipelined)",
        core_hot,
        deep_hot,
    );
    ratio_row(
        &format!("records created ({many_count}, 4 connections)"),
        core_many.0,
        deep_many.map(|many| many.0),
    );
    ratio_row(
        &format!("writes to {many_count} records (4 connections)"),
        core_many.1,
        deep_many.map(|many| many.1),
    );
    ratio_row(
        "RPC calls (100 in flight)",
        core_rpc_rate,
        deep_rpc.as_ref().map(|(_, rate)| *rate),
    );

    // Memory: a fresh server of each kind, one million records of ~100 bytes.
    let memory_count = if quick { 100_000 } else { 1_000_000 };
    drop(corestream);
    let fresh = start_corestream(cores, spin_millis);
    let (core_before, core_after) = record_memory(&fresh, memory_count);
    drop(fresh);
    let deep_memory = deepstream
        .as_ref()
        .map(|peer| record_memory(peer, memory_count));
    println!("\n## Memory after creating {memory_count} records of ~100 bytes (RSS, MiB)");
    println!("| server | before | after | growth |");
    println!("|---|---|---|---|");
    println!(
        "| corestream | {core_before:.0} | {core_after:.0} | {:.0} |",
        core_after - core_before
    );
    if let Some((before, after)) = deep_memory {
        println!(
            "| deepstream 1.1.1 (after the runs above) | {before:.0} | {after:.0} | {:.0} |",
            after - before
        );
    }
    let corestream = start_corestream(cores, spin_millis);

    // Fan-out: the generator (and its reader thread, which inherits this) on its own CPU.
    pin_current_thread_to(fan_out_cpu);
    let tcp_groups = fan_out_table(
        Framing::Raw,
        &corestream,
        deepstream.as_ref(),
        fan_duration,
        &FAN_OUT_COUNTS,
    );

    // WebSocket (2.x clients): corestream's HTTP port against deepstream 2.4.1 (Node 8).
    pin_current_thread_to(SERVER_CPU);
    let ws_core = ws_event_latency(corestream.http_port, latency_count);
    let deepstream2 = (!skip_deepstream).then(start_deepstream_2);
    let ws_deep = deepstream2
        .as_ref()
        .map(|peer| ws_event_latency(peer.http_port, latency_count / 4));
    println!("\n## WebSocket event latency A→B (µs), one in flight");
    println!("| server | p50 | p99 | p99.9 | max |");
    println!("|---|---|---|---|---|");
    row("corestream (WebSocket)", &ws_core);
    if let Some(latency) = &ws_deep {
        row("deepstream 2.4.1 (default broadcastTimeout 0)", latency);
        println!(
            "\ncorestream/deepstream 2.4.1 WebSocket p50: {:.3}×, p99: {:.3}×",
            ws_core.p50 / latency.p50,
            ws_core.p99 / latency.p99
        );
    }
    pin_current_thread_to(fan_out_cpu);
    let ws_groups = fan_out_table(
        Framing::WebSocket,
        &corestream,
        deepstream2.as_ref(),
        fan_duration,
        &FAN_OUT_COUNTS,
    );
    fan_out_picture(&tcp_groups, &ws_groups);
    let mut curves = vec![
        ("echo, blocking threads (floor)", &echo_result),
        ("echo on glommio", &glommio_echo_result),
        ("corestream, TCP", &core_latency),
        ("corestream, WebSocket", &ws_core),
    ];
    curves.extend(deep_latency.as_ref().map(|l| ("deepstream 1.1.1, TCP", l)));
    curves.extend(ws_deep.as_ref().map(|l| ("deepstream 2.4.1, WebSocket", l)));
    latency_picture(&curves);

    // engine.io long-polling (1.x browser clients): corestream against deepstream 1.1.1.
    println!("\n## engine.io long-polling: one TCP publisher, N polling sessions (events delivered per second)");
    println!("| sessions | corestream | deepstream 1.1.1 | corestream/deepstream |");
    println!("|---|---|---|---|");
    for sessions in [1usize, 10] {
        let ours = polling_throughput(
            corestream.http_port,
            corestream.port,
            sessions,
            fan_duration,
        );
        let theirs = deepstream
            .as_ref()
            .map(|peer| polling_throughput(peer.http_port, peer.port, sessions, fan_duration));
        match theirs {
            Some(theirs) => println!(
                "| {sessions} | {ours:.0} | {theirs:.0} | {:.1}× |",
                ours / theirs
            ),
            None => println!("| {sessions} | {ours:.0} | - | - |"),
        }
    }
}

/// The subscriber counts of the fan-out tables.
const FAN_OUT_COUNTS: [usize; 3] = [1, 100, 1000];

/// One row of a fan-out table: corestream, the reference server if it ran, the floor, and the
/// ratios.
fn fan_out_row(subscribers: usize, ours: &FanOut, theirs: Option<&FanOut>, floor: &FanOut) {
    let (theirs_rate, theirs_cpu, ratio, theirs_of_floor) = match theirs {
        Some(theirs) => (
            format!("{:.0}", theirs.deliveries_per_second),
            format!("{:.0}%", theirs.server_cpu_percent),
            format!(
                "{:.1}×",
                ours.deliveries_per_second / theirs.deliveries_per_second
            ),
            format!(
                "{:.2}",
                theirs.deliveries_per_second / floor.deliveries_per_second
            ),
        ),
        None => ("-".into(), "-".into(), "-".into(), "-".into()),
    };
    println!(
        "| {subscribers} | {:.0} | {:.0}% | {theirs_rate} | {theirs_cpu} | {:.0} | {:.0}% | {ratio} | {:.2} | {theirs_of_floor} |",
        ours.deliveries_per_second,
        ours.server_cpu_percent,
        floor.deliveries_per_second,
        floor.server_cpu_percent,
        ours.deliveries_per_second / floor.deliveries_per_second,
    );
}

/// The header of a fan-out table against `reference`.
fn fan_out_header(title: &str, reference: &str) {
    println!("\n## {title}: one publisher, N subscribers (deliveries per second)");
    println!(
        "| subscribers | corestream | server CPU | {reference} | server CPU | floor (write-only) | \
         writer CPU | corestream/{reference} | corestream/floor | {reference}/floor |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
}

/// One fan-out table (1.x TCP against deepstream 1.1.1, or 2.x WebSocket against 2.4.1): each
/// subscriber count on corestream, on the reference server if it runs, and on the floor.
fn fan_out_table(
    framing: Framing,
    corestream: &Peer,
    reference: Option<&Peer>,
    duration: Duration,
    counts: &[usize],
) -> Vec<plot::BarGroup> {
    let measure = |peer: &Peer, subscribers| match framing {
        Framing::Raw => fan_out(peer, subscribers, duration),
        Framing::WebSocket => ws_fan_out(peer, peer.http_port, subscribers, duration),
    };
    match framing {
        Framing::Raw => fan_out_header("Fan-out", "deepstream 1.1.1"),
        Framing::WebSocket => fan_out_header("WebSocket fan-out", "deepstream 2.4.1"),
    }
    let mut groups = Vec::new();
    for &subscribers in counts {
        let ours = measure(corestream, subscribers);
        let theirs = reference.map(|peer| measure(peer, subscribers));
        let floor = fan_out_floor::fan_out_floor(subscribers, framing, duration);
        fan_out_row(subscribers, &ours, theirs.as_ref(), &floor);
        groups.push(bar_group(subscribers, &ours, theirs.as_ref(), &floor));
    }
    groups
}

fn bar_group(
    subscribers: usize,
    ours: &FanOut,
    theirs: Option<&FanOut>,
    floor: &FanOut,
) -> plot::BarGroup {
    plot::BarGroup {
        subscribers,
        rates: vec![
            Some(ours.deliveries_per_second),
            theirs.map(|theirs| theirs.deliveries_per_second),
            Some(floor.deliveries_per_second),
        ],
    }
}

/// Writes `latency.svg`: the event A→B percentile curves of this run.
fn latency_picture(latencies: &[(&str, &Latency)]) {
    let curves: Vec<plot::Curve<'_>> = latencies
        .iter()
        .map(|(name, latency)| plot::Curve {
            name,
            points: &latency.curve,
        })
        .collect();
    plot::write("latency.svg", |path| {
        plot::latency_svg(path, "event A→B, one in flight (µs by percentile)", &curves)
    });
}

/// Writes `fan-out.svg`: a panel per transport that ran.
fn fan_out_picture(tcp: &[plot::BarGroup], websocket: &[plot::BarGroup]) {
    let mut panels = Vec::new();
    if !tcp.is_empty() {
        panels.push(plot::Panel {
            title: "1.x TCP fan-out",
            series: &["corestream", "deepstream 1.1.1", "floor (write-only)"],
            groups: tcp,
        });
    }
    if !websocket.is_empty() {
        panels.push(plot::Panel {
            title: "2.x WebSocket fan-out",
            series: &["corestream", "deepstream 2.4.1", "floor (write-only)"],
            groups: websocket,
        });
    }
    plot::write("fan-out.svg", |path| plot::fan_out_svg(path, &panels));
}

/// `--fan-out`: only the fan-out tables (TCP and WebSocket), for work on the broadcast path.
fn run_fan_out(arguments: &[String]) {
    let skip_deepstream = arguments.iter().any(|a| a == "--skip-deepstream");
    let cores: usize = option_value(arguments, "--cores").unwrap_or(1);
    let seconds: u64 = option_value(arguments, "--seconds").unwrap_or(3);
    let duration = Duration::from_secs(seconds);
    let counts: Vec<usize> = match option_value::<usize>(arguments, "--subscribers") {
        Some(count) => vec![count],
        None => FAN_OUT_COUNTS.to_vec(),
    };
    let transport = option_value::<String>(arguments, "--transport");
    let tcp = transport.as_deref() != Some("websocket");
    let ws = transport.as_deref() != Some("tcp");
    let corestream = start_corestream(cores, 0);
    let deepstream = (tcp && !skip_deepstream).then(start_deepstream);
    let deepstream2 = (ws && !skip_deepstream).then(start_deepstream_2);
    pin_current_thread_to(generator_cpu());
    println!("corestream-bench --fan-out: {seconds} s per run, corestream on {cores} core(s)");
    let tcp_groups = match tcp {
        true => fan_out_table(
            Framing::Raw,
            &corestream,
            deepstream.as_ref(),
            duration,
            &counts,
        ),
        false => Vec::new(),
    };
    let ws_groups = match ws {
        true => fan_out_table(
            Framing::WebSocket,
            &corestream,
            deepstream2.as_ref(),
            duration,
            &counts,
        ),
        false => Vec::new(),
    };
    fan_out_picture(&tcp_groups, &ws_groups);
}

// ----- cluster and nginx -------------------------------------------------------------------

/// A realistic rules file for the permission benchmark: a path variable, a `data` check and a
/// `user.data` check on every publish (open auth: `user.data` is empty, so the check reads it
/// and passes).
const BENCH_RULES: &str = r#"record:
  "*": {create: true, read: true, write: true, delete: true, listen: true}
event:
  "*": {publish: true, subscribe: true, listen: true}
  "$topic": {publish: "$topic.length > 2 && data.length > 0 && user.id != 'blocked' && (user.data == null || user.data.role != 'muted')"}
  "fan/$count/*": {publish: "$count.length > 0 && data.length > 0 && user.id != 'blocked' && (user.data == null || user.data.role != 'muted')"}
rpc:
  "*": {provide: true, request: true}
"#;

/// The cross-reference rule of `--permissions`: every publish on `latency` reads the record
/// `gate/latency` first.
const BENCH_CROSS_RULES: &str = r#"record:
  "*": {create: true, read: true, write: true, delete: true, listen: true}
event:
  "*": {publish: true, subscribe: true, listen: true}
  "$topic": {publish: "_('gate/' + $topic).open == true"}
rpc:
  "*": {provide: true, request: true}
"#;

/// The mean of two runs' figures (an estimate: percentiles of two runs are not merged).
fn mean_latency(a: &Latency, b: &Latency) -> Latency {
    Latency {
        p50: (a.p50 + b.p50) / 2.0,
        p99: (a.p99 + b.p99) / 2.0,
        p999: (a.p999 + b.p999) / 2.0,
        max: a.max.max(b.max),
        curve: a
            .curve
            .iter()
            .zip(&b.curve)
            .map(|(a, b)| (a.0, (a.1 + b.1) / 2.0))
            .collect(),
    }
}

/// Event latency on server A and on server B in the order A, B, B, A, each run half of
/// `count` events; each figure the mean of its two runs (on this VM the first run of a pair
/// is often faster, and drift cancels).
fn abba_latency(a_port: u16, b_port: u16, count: usize) -> (Latency, Latency) {
    let half = count / 2;
    let a_first = event_latency(a_port, half);
    let b_first = event_latency(b_port, half);
    let b_second = event_latency(b_port, half);
    let a_second = event_latency(a_port, half);
    (
        mean_latency(&a_first, &a_second),
        mean_latency(&b_first, &b_second),
    )
}

/// `--permissions`: event latency and fan-out with `BENCH_RULES` against allow-everything
/// (corestream, same run) and deepstream 1.1.1 with the same file.
fn run_permissions(quick: bool) {
    let dir = std::env::temp_dir().join(format!("corestream-bench-rules-{}", fastrand::u64(..)));
    std::fs::create_dir_all(&dir).expect("rules dir");
    let rules = dir.join("permissions.yml");
    std::fs::write(&rules, BENCH_RULES).expect("write rules");
    let permission = format!("{{type: config, options: {{path: {}}}}}", rules.display());
    let latency_count = if quick { 2_000 } else { 20_000 };
    let fan_duration = Duration::from_secs(if quick { 1 } else { 3 });
    println!("corestream-bench --permissions: rules (a path variable, a data and a user.data check per publish):\n```\n{BENCH_RULES}```");
    pin_current_thread_to(SERVER_CPU);
    let open = start_corestream(1, 0);
    let ruled = start_corestream_with(1, 0, &permission);
    let deepstream = start_deepstream_with(&permission);
    let (open_latency, ruled_latency) = abba_latency(open.port, ruled.port, latency_count);
    let deep_latency = event_latency(deepstream.port, latency_count / 4);
    println!("\n## Event latency A→B (µs), one in flight");
    println!("(corestream: runs in the order no rules, rules, rules, no rules; each figure the mean of its two runs)");
    println!("| server | p50 | p99 | p99.9 | max |");
    println!("|---|---|---|---|---|");
    row("corestream, no rules", &open_latency);
    row("corestream, rules", &ruled_latency);
    row("deepstream 1.1.1, rules", &deep_latency);
    println!(
        "\nrules/no rules, corestream: p50 {:.3}×, p99 {:.3}×",
        ruled_latency.p50 / open_latency.p50,
        ruled_latency.p99 / open_latency.p99
    );
    pin_current_thread_to(generator_cpu());
    println!("\n## Fan-out to 1000 subscribers (deliveries per second)");
    println!("(corestream runs in the order no rules, rules, rules, no rules: each figure is the mean of its two runs, so drift and the first-run advantage cancel)");
    println!("| server | deliveries/s | server CPU |");
    println!("|---|---|---|");
    let mut sums = [(0.0, 0.0); 2];
    for which in [0usize, 1, 1, 0] {
        let peer = if which == 0 { &open } else { &ruled };
        let result = fan_out(peer, 1000, fan_duration);
        sums[which].0 += result.deliveries_per_second / 2.0;
        sums[which].1 += result.server_cpu_percent / 2.0;
    }
    for (label, (rate, cpu)) in ["corestream, no rules", "corestream, rules"]
        .iter()
        .zip(sums)
    {
        println!("| {label} | {rate:.0} | {cpu:.0}% |");
    }
    // deepstream 1.1.1 with rules has lost deliveries under this load: reported, not compared
    // (fan_out asserts that every delivery arrived).
    let run = std::panic::AssertUnwindSafe(|| fan_out(&deepstream, 1000, fan_duration));
    match std::panic::catch_unwind(run) {
        Ok(result) => println!(
            "| deepstream 1.1.1, rules | {:.0} | {:.0}% |",
            result.deliveries_per_second, result.server_cpu_percent
        ),
        Err(_) => println!("| deepstream 1.1.1, rules | lost deliveries (see above) | - |"),
    }
    println!(
        "\nrules/no rules, corestream fan-out: {:.3}×",
        sums[1].0 / sums[0].0
    );
    pin_current_thread_to(SERVER_CPU);
    cross_reference_latency(&dir, latency_count / 2);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Event latency under `BENCH_CROSS_RULES` against no rules, on one core (the record is read
/// on the event's own core) and on two (`gate/latency` and `latency` may be owned by different
/// cores: then each publish waits for one request and reply between them).
fn cross_reference_latency(dir: &Path, count: usize) {
    let rules = dir.join("cross.yml");
    std::fs::write(&rules, BENCH_CROSS_RULES).expect("write rules");
    let permission = format!("{{type: config, options: {{path: {}}}}}", rules.display());
    println!("\n## Event latency with a cross-reference rule (µs), one in flight");
    println!("(publish rule `_('gate/' + $topic).open == true`; runs in the order no rules, rule, rule, no rules; each figure the mean of its two runs)");
    println!("| server | p50 | p99 | p99.9 | max |");
    println!("|---|---|---|---|---|");
    for cores in [1, 2] {
        let open = start_corestream(cores, 0);
        let crossed = start_corestream_with(cores, 0, &permission);
        open_gate(crossed.port);
        let (open_latency, crossed_latency) = abba_latency(open.port, crossed.port, count);
        row(
            &format!("corestream, {cores} core(s), no rules"),
            &open_latency,
        );
        row(
            &format!("corestream, {cores} core(s), _() rule"),
            &crossed_latency,
        );
        println!(
            "| _() rule/no rules, {cores} core(s) | p50 {:.3}× | p99 {:.3}× | | |",
            crossed_latency.p50 / open_latency.p50,
            crossed_latency.p99 / open_latency.p99
        );
    }
}

/// Creates `gate/latency` as `{"open": true}` (what `BENCH_CROSS_RULES` reads).
fn open_gate(port: u16) {
    let mut admin = RawClient::login(port, "gate-admin");
    admin.send(&wire("R|CR|gate/latency+"));
    admin.read_until(&wire("R|R|gate/latency|"));
    admin.send(&wire("R|U|gate/latency|1|{\"open\":true}+"));
    admin.send(&wire("R|SN|gate/latency+"));
    admin.read_until(&wire("R|R|gate/latency|1|"));
}

mod cluster {
    //! `corestream-bench --cluster`: what Redis and nginx add. Two corestream nodes (one core
    //! each) through a real redis-server against one embedded node; and a real nginx (the
    //! shipped configs, via scripts/nginx.sh) in front of corestream and in front of the
    //! minimal echo server, so nginx's own cost is measured next to corestream's.

    use super::*;

    struct Redis {
        child: Child,
        port: u16,
        dir: PathBuf,
    }

    impl Drop for Redis {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn start_redis() -> Redis {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("corestream-bench-redis-{}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir).expect("redis dir");
        let child = server_command("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (apt install redis-server)");
        wait_for_port(port);
        Redis { child, port, dir }
    }

    /// A field of Redis's INFO (e.g. `total_commands_processed`).
    fn redis_info(port: u16, field: &str) -> u64 {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("redis");
        stream.write_all(b"INFO stats\r\n").expect("write");
        let mut text = String::new();
        let mut chunk = [0u8; 16384];
        while !text.contains("\r\n\r\n") && !text.ends_with("\r\n") || text.len() < 64 {
            let read = stream.read(&mut chunk).expect("read");
            if read == 0 {
                break;
            }
            text.push_str(&String::from_utf8_lossy(&chunk[..read]));
            if text.contains(field) && text[text.find(field).unwrap_or(0)..].contains("\r\n") {
                break;
            }
        }
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("{field}:")))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0)
    }

    fn start_node(extra: &str) -> Peer {
        let dir = std::env::temp_dir().join(format!("corestream-bench-{}", fastrand::u64(..)));
        let tcp_port = free_port();
        let http_port = free_port();
        let config = write_config(
            &dir,
            http_port,
            tcp_port,
            &format!(
                "webServerEnabled: true\nconnectionEndpoints:\n  websocket:\n    options:\n      \
                 heartbeatInterval: 600000\n{extra}"
            ),
        );
        let binary = corestream_binary();
        let child = server_command(&binary)
            .args(["start", "--config"])
            .arg(&config)
            .args(["--cores", "1"])
            .stdout(Stdio::null())
            .spawn()
            .expect("target/release/corestream (cargo build --release)");
        wait_for_port(tcp_port);
        wait_for_port(http_port);
        Peer {
            name: "corestream",
            child,
            port: tcp_port,
            http_port,
            _dir: Some(dir),
        }
    }

    fn cluster_config(redis: &Redis) -> String {
        format!(
            "plugins:\n  message:\n    name: redis\n    options: {{host: 127.0.0.1, port: {}}}\n",
            redis.port
        )
    }

    /// `count` events pipelined from a publisher on one port to a subscriber on another;
    /// events per second until the last arrived.
    fn pipelined_events(publisher_port: u16, subscriber_port: u16, count: usize) -> f64 {
        let mut subscriber = RawClient::login(subscriber_port, "throughput-b");
        subscriber.send(&wire("E|S|throughput+"));
        subscriber.expect_prefix("E|A|S|throughput+");
        std::thread::sleep(Duration::from_millis(100));
        let reader = std::thread::spawn(move || {
            let mut received = 0;
            let mut chunk = vec![0u8; 256 * 1024];
            while received < count {
                let read = subscriber.stream.read(&mut chunk).expect("read");
                assert!(read > 0, "closed");
                received += chunk[..read].iter().filter(|byte| **byte == 0x1e).count();
            }
            Instant::now()
        });
        let mut publisher = RawClient::login(publisher_port, "throughput-a");
        let message = wire("E|EVT|throughput|Sabcdefghijklmnopqrstuvwxyz0123456789+");
        let started = Instant::now();
        let mut batch = Vec::with_capacity(64 * 1024);
        for _ in 0..count {
            batch.extend_from_slice(&message);
            if batch.len() >= 32 * 1024 {
                publisher.send(&batch);
                batch.clear();
            }
        }
        publisher.send(&batch);
        let done = reader.join().expect("reader");
        count as f64 / (done - started).as_secs_f64()
    }

    /// `count` record writes, each waiting for its write ack (2.x CU over WebSocket would need
    /// a WS client; a 1.x write has no ack, so: pipelined writes, then a snapshot).
    fn record_writes(port: u16, count: usize) -> f64 {
        super::hot_record_writes(port, count)
    }

    fn print_latency(name: &str, latency: &Latency) {
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} | {:.1} |",
            latency.p50, latency.p99, latency.p999, latency.max
        );
    }

    struct Nginx {
        dir: PathBuf,
    }

    impl Drop for Nginx {
        fn drop(&mut self) {
            let _ = Command::new("bash")
                .arg(root().join("scripts/nginx.sh"))
                .arg("--dir")
                .arg(&self.dir)
                .arg("--stop")
                .stdout(Stdio::null())
                .status();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// nginx from the shipped configs: http in front of `http_upstream`, stream in front of
    /// `tcp_upstream`, its processes on `cpu`; returns (nginx, http port, tcp port).
    fn start_nginx(
        http_upstream: u16,
        tcp_upstream: u16,
        proxy_protocol: bool,
        cpu: usize,
    ) -> (Nginx, u16, u16) {
        let dir =
            std::env::temp_dir().join(format!("corestream-bench-nginx-{}", fastrand::u64(..)));
        let http_port = free_port();
        let tcp_port = free_port();
        let status = command_on("bash", cpu)
            .arg(root().join("scripts/nginx.sh"))
            .arg("--dir")
            .arg(&dir)
            .args(["--http-port", &http_port.to_string()])
            .args(["--http-upstream", &format!("127.0.0.1:{http_upstream}")])
            .args(["--tcp-port", &tcp_port.to_string()])
            .args(["--tcp-upstream", &format!("127.0.0.1:{tcp_upstream}")])
            .args([
                "--proxy-protocol",
                if proxy_protocol { "on" } else { "off" },
            ])
            .stdout(Stdio::null())
            .status()
            .expect("scripts/nginx.sh");
        assert!(status.success(), "nginx did not start");
        wait_for_port(http_port);
        wait_for_port(tcp_port);
        (Nginx { dir }, http_port, tcp_port)
    }

    pub fn run(quick: bool) {
        // (asked before pinning: a pinned thread sees one CPU)
        let other_cpu = generator_cpu();
        pin_current_thread_to(SERVER_CPU);
        let count = if quick { 2_000 } else { 20_000 };
        let throughput_count = if quick { 50_000 } else { 100_000 };
        let write_count = if quick { 2_000 } else { 20_000 };
        println!(
            "corestream-bench --cluster: servers, Redis and nginx on CPU {SERVER_CPU}, one core per \
             corestream node; latency: {count} messages, one in flight\n"
        );

        // ---- through Redis ----
        let embedded = start_node("");
        let redis = start_redis();
        let node_a = start_node(&cluster_config(&redis));
        let node_b = start_node(&cluster_config(&redis));
        std::thread::sleep(Duration::from_millis(500));

        let redis_floor = {
            // PING round trips: what one hop to Redis and back costs on this machine
            let mut stream = TcpStream::connect(("127.0.0.1", redis.port)).expect("redis");
            stream.set_nodelay(true).expect("nodelay");
            let mut histogram =
                Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram");
            let mut reply = [0u8; 64];
            for round in 0..count + count / 10 {
                let started = Instant::now();
                stream.write_all(b"PING\r\n").expect("write");
                let _ = stream.read(&mut reply).expect("read");
                if round >= count / 10 {
                    histogram
                        .record((started.elapsed().as_nanos() as u64).max(1))
                        .expect("record");
                }
            }
            summarize(&histogram)
        };
        let single = event_latency(embedded.port, count);
        let same_node = event_latency_between(node_a.port, node_a.port, count);
        let cross = event_latency_between(node_a.port, node_b.port, count);
        let single_patch = record_patch_latency(embedded.port, count / 2);
        let same_node_patch = record_patch_latency_between(node_a.port, node_a.port, count / 2);
        let cross_patch = record_patch_latency_between(node_a.port, node_b.port, count / 2);
        println!("## Event and record latency through Redis (µs)");
        println!("| measurement | p50 | p99 | p99.9 | max |");
        println!("|---|---|---|---|---|");
        print_latency(
            "Redis PING round trip (floor of one Redis hop)",
            &redis_floor,
        );
        print_latency("event, embedded single node", &single);
        print_latency("event, cluster, both clients on node A", &same_node);
        print_latency("event, cluster, node A → node B", &cross);
        print_latency("record patch, embedded single node", &single_patch);
        print_latency("record patch, cluster, both on node A", &same_node_patch);
        print_latency("record patch, cluster, node A → node B", &cross_patch);
        println!(
            "\ncross-node event p50 = {:.2}× a Redis PING round trip; record patch p50 = {:.2}×",
            cross.p50 / redis_floor.p50,
            cross_patch.p50 / redis_floor.p50
        );

        let single_rate = pipelined_events(embedded.port, embedded.port, throughput_count);
        let cross_rate = pipelined_events(node_a.port, node_b.port, throughput_count);
        let before = redis_info(redis.port, "total_commands_processed");
        let write_rate = record_writes(node_a.port, write_count);
        let after = redis_info(redis.port, "total_commands_processed");
        let embedded_write_rate = record_writes(embedded.port, write_count);
        println!("\n## Throughput (per second)");
        println!("| measurement | rate |");
        println!("|---|---|");
        println!("| events, embedded single node (pipelined, 1 subscriber) | {single_rate:.0} |");
        println!(
            "| events, node A → node B through Redis (pipelined, 1 subscriber) | {cross_rate:.0} |"
        );
        println!("| writes to one hot record, embedded single node | {embedded_write_rate:.0} |");
        println!("| writes to one hot record, cluster (each a compare-and-set in Redis) | {write_rate:.0} |");
        println!(
            "\nper whole-record write: 1 round trip to Redis (one EVALSHA, pipelined); Redis counts {:.2} \
             commands (INFO total_commands_processed: the EVALSHA and the HMGET, HSET and PUBLISH \
             inside it, plus heartbeats)",
            (after - before) as f64 / write_count as f64
        );
        drop(node_a);
        drop(node_b);
        drop(redis);

        // ---- behind nginx ----
        // (a node expecting the PROXY protocol takes no direct TCP clients: a second one for those)
        let node = start_node("tcpProxyProtocol: true\ntrustedProxies: [127.0.0.1]\n");
        let direct_node = start_node("");
        let echo = start_echo("echo-server");
        let relay = start_echo("relay-server");
        let direct_tcp = event_latency(direct_node.port, count);
        let direct_ws = ws_event_latency(node.http_port, count);
        let echo_direct = echo_latency(echo.port, count);
        let relay_direct = relay_latency(relay.port, count);
        // nginx on the servers' CPU (everything shares one CPU), then on the other CPU (as it
        // would run beside the servers in production)
        for (where_, cpu) in [
            ("on the servers' CPU", SERVER_CPU),
            ("on its own CPU", other_cpu),
        ] {
            let (nginx, nginx_http, nginx_tcp) = start_nginx(node.http_port, node.port, true, cpu);
            let (echo_nginx, _, echo_nginx_tcp) =
                start_nginx(node.http_port, echo.port, false, cpu);
            let echo_proxied = echo_latency(echo_nginx_tcp, count);
            drop(echo_nginx);
            let (relay_nginx, _, relay_nginx_tcp) =
                start_nginx(node.http_port, relay.port, false, cpu);
            let relay_proxied = relay_latency(relay_nginx_tcp, count);
            let proxied_tcp = event_latency(nginx_tcp, count);
            let proxied_ws = ws_event_latency(nginx_http, count);
            println!("\n## The nginx hop (µs), one message in flight; nginx {where_} (CPU {cpu})");
            println!("| measurement | p50 | p99 | p99.9 | max |");
            println!("|---|---|---|---|---|");
            print_latency("echo server, direct (round trip)", &echo_direct);
            print_latency(
                "echo server behind nginx stream (round trip)",
                &echo_proxied,
            );
            print_latency("relay server A→B, direct", &relay_direct);
            print_latency(
                "relay server A→B, both through nginx stream",
                &relay_proxied,
            );
            print_latency("corestream TCP event A→B, direct", &direct_tcp);
            print_latency(
                "corestream TCP event A→B, both through nginx stream",
                &proxied_tcp,
            );
            print_latency("corestream WebSocket event A→B, direct", &direct_ws);
            print_latency(
                "corestream WebSocket event A→B, both through nginx http",
                &proxied_ws,
            );
            let echo_added = echo_proxied.p50 - echo_direct.p50;
            let relay_added = relay_proxied.p50 - relay_direct.p50;
            let tcp_added = proxied_tcp.p50 - direct_tcp.p50;
            let ws_added = proxied_ws.p50 - direct_ws.p50;
            println!(
                "\nadded by nginx at p50: echo (one connection) {echo_added:.1} µs; relay (A→B, \
                 two connections) {relay_added:.1} µs; corestream TCP {tcp_added:.1} µs ({:.2}× the \
                 echo's, {:.2}× the relay's); corestream WebSocket {ws_added:.1} µs ({:.2}× the \
                 echo's, {:.2}× the relay's)",
                tcp_added / echo_added,
                tcp_added / relay_added,
                ws_added / echo_added,
                ws_added / relay_added
            );
            drop(nginx);
            drop(relay_nginx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_counter_counts_messages_across_any_split() {
        let mut stream = Vec::new();
        websocket::write_text(&mut stream, b"E\x1fEVT\x1fa\x1fSx\x1e");
        // A 126-length header (0x7E 0x00 0x96 = 150 bytes) and a payload with five messages.
        websocket::write_text(
            &mut stream,
            &b"E\x1fEVT\x1fb\x1fS123456789012345678901\x1e".repeat(5),
        );
        let mut long = vec![b'x'; 70_000];
        long.push(0x1e);
        websocket::write_text(&mut stream, &long);
        for split in 0..stream.len() {
            let mut counter = FrameCounter::default();
            let count = counter.count(&stream[..split]) + counter.count(&stream[split..]);
            assert_eq!(count, 7, "split at {split}");
        }
        let mut counter = FrameCounter::default();
        let one_by_one: usize = stream.chunks(1).map(|byte| counter.count(byte)).sum();
        assert_eq!(one_by_one, 7);
    }
}
