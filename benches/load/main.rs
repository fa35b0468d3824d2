//! `corestream-bench`: the end-to-end load generator.
//!
//! In one invocation it starts, on free loopback ports, corestream (the release binary), the
//! real deepstream 1.1.1 server from npm (tests/node) and a minimal TCP echo server (this
//! binary re-executed as `echo-server`), then measures:
//! - event latency A→B over TCP with one message in flight (HdrHistogram p50/p99/p999), against
//!   all three (the echo server's round trip is the floor: one client→server→client hop);
//! - fan-out throughput: one publisher, 1 / 100 / 1000 subscribers, deliveries per second and
//!   the server's CPU use, against corestream and deepstream.
//!
//! It prints corestream/deepstream and corestream/echo ratios.
//!
//! The generator is faster than the servers: subscribers are read by one epoll thread that only
//! counts message terminators (SIMD memchr), and the publisher writes batches, keeping a bounded
//! window in flight so that no subscriber's buffer can overflow.
//!
//! Usage: corestream-bench [--quick] [--cores N] [--spin MS] [--skip-deepstream]
//!        corestream-bench echo-server PORT | glommio-echo-server PORT

use hdrhistogram::Histogram;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use corestream::protocol::message::from_capture_notation as wire;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("free port")
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
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
    use std::os::unix::process::CommandExt;
    let mut command = Command::new(program);
    // SAFETY: the closure only calls sched_setaffinity (async-signal-safe) in the child
    // between fork and exec.
    unsafe {
        command.pre_exec(|| {
            pin_current_thread_to(SERVER_CPU);
            Ok(())
        });
    }
    command
}

// ----- peers -------------------------------------------------------------------------------

struct Peer {
    name: &'static str,
    child: Child,
    port: u16,
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
    std::fs::create_dir_all(dir).expect("config dir");
    let path = dir.join("config.yml");
    std::fs::write(
        &path,
        format!(
            "serverName: UUID\nshowLogo: false\nlogLevel: ERROR\nhost: 127.0.0.1\nport: {http_port}\n\
             tcpHost: 127.0.0.1\ntcpPort: {tcp_port}\nauth: {{type: none}}\npermission: {{type: none}}\n\
             webServerEnabled: false\n{extra}"
        ),
    )
    .expect("write config");
    path
}

fn start_corestream(cores: usize, spin_millis: u64) -> Peer {
    let dir = std::env::temp_dir().join(format!("corestream-bench-{}", fastrand::u64(..)));
    let tcp_port = free_port();
    let extra = format!("spinBeforePark: {spin_millis}\n");
    let config = write_config(&dir, free_port(), tcp_port, &extra);
    let binary = root().join("target/release/corestream");
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
        _dir: Some(dir),
    }
}

fn start_deepstream() -> Peer {
    let dir = std::env::temp_dir().join(format!("deepstream-bench-{}", fastrand::u64(..)));
    let tcp_port = free_port();
    let mut config = write_config(&dir, free_port(), tcp_port, "");
    // deepstream 1.1.1 needs the web server on for its 'started' event; keep it on a free port.
    let text = std::fs::read_to_string(&config)
        .expect("config")
        .replace("webServerEnabled: false", "webServerEnabled: true");
    config = dir.join("deepstream.yml");
    std::fs::write(&config, text).expect("config");
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

/// The runtime floor: the same echo on one glommio executor (io_uring), as corestream uses.
fn run_glommio_echo_server(port: u16) {
    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    let executor = glommio::LocalExecutorBuilder::new(glommio::Placement::Fixed(SERVER_CPU))
        .io_memory(512 * 1024)
        .make()
        .expect("glommio executor");
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

struct Latency {
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
}

fn summarize(histogram: &Histogram<u64>) -> Latency {
    let micros = |quantile: f64| histogram.value_at_quantile(quantile) as f64 / 1000.0;
    Latency {
        p50: micros(0.5),
        p99: micros(0.99),
        p999: micros(0.999),
        max: histogram.max() as f64 / 1000.0,
    }
}

/// Event A→B, one message in flight.
fn event_latency(port: u16, count: usize) -> Latency {
    let mut subscriber = RawClient::login(port, "latency-b");
    subscriber.send(&wire("E|S|latency+"));
    subscriber.expect_prefix("E|A|S|latency+");
    let mut publisher = RawClient::login(port, "latency-a");
    let message = wire("E|EVT|latency|Sabcdefghijklmnopqrstuvwxyz0123456789+");
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram");
    let warmup = count / 10;
    for round in 0..warmup + count {
        let started = Instant::now();
        publisher.send(&message);
        let received = subscriber.read_message();
        let elapsed = started.elapsed().as_nanos() as u64;
        debug_assert_eq!(received, message);
        if round >= warmup {
            histogram.record(elapsed.max(1)).expect("record");
        }
    }
    summarize(&histogram)
}

/// The floor: the same message to the echo server and back on the same connection.
fn echo_latency(port: u16, count: usize) -> Latency {
    let mut client = RawClient::connect(port);
    let message = wire("E|EVT|latency|Sabcdefghijklmnopqrstuvwxyz0123456789+");
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram");
    let warmup = count / 10;
    for round in 0..warmup + count {
        let started = Instant::now();
        client.send(&message);
        let _ = client.read_message();
        let elapsed = started.elapsed().as_nanos() as u64;
        if round >= warmup {
            histogram.record(elapsed.max(1)).expect("record");
        }
    }
    summarize(&histogram)
}

// ----- fan-out -----------------------------------------------------------------------------

struct FanOut {
    deliveries_per_second: f64,
    server_cpu_percent: f64,
    delivered: u64,
}

/// Counts message terminators on every subscriber socket with one epoll thread.
fn spawn_reader(
    sockets: Vec<TcpStream>,
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
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
        let mut buffer = vec![0u8; 1 << 20];
        let mut sockets = sockets;
        while !stop.load(Ordering::Relaxed) {
            // SAFETY: `events` has room for `events.len()` entries.
            let ready =
                unsafe { libc::epoll_wait(epoll, events.as_mut_ptr(), events.len() as i32, 50) };
            for event in events.iter().take(ready.max(0) as usize) {
                let socket = &mut sockets[event.u64 as usize];
                loop {
                    match socket.read(&mut buffer) {
                        Ok(0) => break,
                        Ok(read) => {
                            let count = memchr::memchr_iter(0x1e, &buffer[..read]).count();
                            delivered.fetch_add(count as u64, Ordering::Relaxed);
                        }
                        Err(error) if error.kind() == ErrorKind::WouldBlock => break,
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
    let reader = spawn_reader(sockets, Arc::clone(&delivered), Arc::clone(&stop));
    let mut publisher = RawClient::login(peer.port, "publisher");
    let one = wire(&format!("E|EVT|{name}|Sfan-out-payload-0123456789+"));
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
            std::hint::spin_loop();
            std::thread::yield_now();
            continue;
        }
        publisher.send(&batch);
        sent += batch_size as u64;
    }
    let expected = sent * subscribers_u64;
    let drain_deadline = Instant::now() + Duration::from_secs(10);
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
        delivered: got,
    }
}

// ----- main --------------------------------------------------------------------------------

fn main() {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    if let Some(kind @ ("echo-server" | "glommio-echo-server")) =
        arguments.first().map(String::as_str)
    {
        let port = arguments
            .get(1)
            .and_then(|port| port.parse().ok())
            .expect("echo-server PORT");
        if kind == "echo-server" {
            run_echo_server(port);
        } else {
            run_glommio_echo_server(port);
        }
        return;
    }
    let fan_out_cpu = generator_cpu();
    // One message in flight: client and server strictly alternate, so sharing the server's CPU
    // costs nothing and keeps this VM's cross-CPU wake-up latency out of every sample.
    pin_current_thread_to(SERVER_CPU);
    let quick = arguments.iter().any(|a| a == "--quick");
    let skip_deepstream = arguments.iter().any(|a| a == "--skip-deepstream");
    let cores: usize = arguments
        .iter()
        .position(|a| a == "--cores")
        .and_then(|at| arguments.get(at + 1))
        .and_then(|cores| cores.parse().ok())
        .unwrap_or(1);
    let spin_millis: u64 = arguments
        .iter()
        .position(|a| a == "--spin")
        .and_then(|at| arguments.get(at + 1))
        .and_then(|spin| spin.parse().ok())
        .unwrap_or(0);
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
    let row = |name: &str, latency: &Latency| {
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} | {:.1} |",
            latency.p50, latency.p99, latency.p999, latency.max
        )
    };
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

    // Fan-out: the generator (and its reader thread, which inherits this) on its own CPU.
    pin_current_thread_to(fan_out_cpu);
    println!("\n## Fan-out: one publisher, N subscribers (deliveries per second)");
    println!("| subscribers | corestream | server CPU | deepstream 1.1.1 | server CPU | corestream/deepstream |");
    println!("|---|---|---|---|---|---|");
    for subscribers in [1usize, 100, 1000] {
        let ours = fan_out(&corestream, subscribers, fan_duration);
        let theirs = deepstream
            .as_ref()
            .map(|peer| fan_out(peer, subscribers, fan_duration));
        match theirs {
            Some(theirs) => println!(
                "| {subscribers} | {:.0} | {:.0}% | {:.0} | {:.0}% | {:.1}× |",
                ours.deliveries_per_second,
                ours.server_cpu_percent,
                theirs.deliveries_per_second,
                theirs.server_cpu_percent,
                ours.deliveries_per_second / theirs.deliveries_per_second
            ),
            None => println!(
                "| {subscribers} | {:.0} | {:.0}% | - | - | - |",
                ours.deliveries_per_second, ours.server_cpu_percent
            ),
        }
        let _ = ours.delivered;
    }
}
