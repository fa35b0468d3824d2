//! `corestream-bench --connections [N]`: user-space memory per idle logged-in connection.
//!
//! For each server and transport, in one run: start the server (one core for corestream, on
//! the server CPU), open and log in 1000 connections (warm-up: pools and one-time allocations),
//! read the server's VmRSS, open and log in N more (default 10000) in two halves, letting it
//! settle for a second after each and reading VmRSS: (after − before) / N is the cost of one
//! idle logged-in connection in the server's user space (kernel socket buffers are not in
//! VmRSS); the second half's slope alone is printed beside it, as a check on noise. corestream
//! runs with `MIMALLOC_PURGE_DELAY=-1` here (freed pages are kept, so RSS does not drop when
//! the allocator happens to return start-up pages), and every server without transparent huge
//! pages (RSS in 4 KiB pages, not 2 MiB steps). Transports:
//! - 1.x TCP: corestream and deepstream 1.1.1;
//! - 2.x WebSocket: corestream and deepstream 2.4.1;
//! - engine.io long-polling (an idle session: its long poll is pending): corestream and
//!   deepstream 1.1.1.
//!
//! The bench process holds the client side of every connection; the open-files limit (20,000
//! hard on our machines) bounds N: the bench raises its soft limit to the hard one and says so
//! when N does not fit.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::{
    option_value, start_corestream, start_deepstream, start_deepstream_2, Peer, Poller, RawClient,
    WsClient,
};

const WARM_UP: usize = 1000;

/// Starts one server under test.
type StartPeer = fn() -> Peer;

/// A connection the bench keeps open while it measures.
pub(crate) enum Held {
    Tcp(RawClient),
    Ws(WsClient),
    Polling(TcpStream),
}

/// Raises the soft open-files limit to the hard one: the number of files this process may open.
fn raise_file_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into `limit`, a live local of the right type.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 1024;
    }
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: setrlimit only reads `limit`, a live local of the right type.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    limit.rlim_max
}

/// Turns transparent huge pages off for this process and the servers it starts (the setting
/// is inherited across fork and exec). With them on, a server's RSS grows in 2 MiB steps and
/// its first huge pages, resident from the start, absorb thousands of connections unseen: the
/// per-connection figure would mostly measure where the allocator's arenas happen to lie.
fn disable_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE takes plain integer arguments and touches no memory of ours.
    let result = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if result != 0 {
        println!(
            "# transparent huge pages stay on ({}): the figures below are coarse",
            std::io::Error::last_os_error()
        );
    }
}

/// One engine.io session logged in over polling, its next long poll sent and left pending.
fn idle_polling_session(port: u16, username: &str) -> TcpStream {
    let mut poller = Poller::login(port, username);
    let target = format!(
        "/deepstream/?EIO=3&transport=polling&b64=1&sid={}",
        poller.sid
    );
    let request = format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    poller
        .stream
        .write_all(request.as_bytes())
        .expect("long poll");
    poller.stream
}

pub(crate) fn open(transport: &str, peer: &Peer, index: usize) -> Held {
    let username = format!("idle-{index}");
    match transport {
        "tcp" => Held::Tcp(RawClient::login(peer.port, &username)),
        "websocket" => Held::Ws(WsClient::login(peer.http_port, &username)),
        _ => Held::Polling(idle_polling_session(peer.http_port, &username)),
    }
}

/// What one row measured.
struct Measured {
    /// KiB per connection over all `count`: (RSS after − RSS before) / count.
    per_connection: f64,
    /// KiB per connection over the second half only: the slope, free of what the first
    /// connections left behind (allocator pages, start-up garbage reclaimed meanwhile).
    slope: f64,
    /// The server's RSS with every connection open, MiB.
    rss: f64,
}

fn measure(peer: &Peer, transport: &str, count: usize) -> Measured {
    let mut held: Vec<Held> = (0..WARM_UP).map(|i| open(transport, peer, i)).collect();
    std::thread::sleep(Duration::from_millis(500));
    let before = peer.rss_mib();
    let half = count / 2;
    held.extend((WARM_UP..WARM_UP + half).map(|i| open(transport, peer, i)));
    std::thread::sleep(Duration::from_secs(1));
    let middle = peer.rss_mib();
    held.extend((WARM_UP + half..WARM_UP + count).map(|i| open(transport, peer, i)));
    std::thread::sleep(Duration::from_secs(1));
    let after = peer.rss_mib();
    // still there: a connection the server dropped would make the figure a lie
    for connection in held.iter_mut() {
        let stream = match connection {
            Held::Tcp(RawClient { stream, .. }) | Held::Ws(WsClient { stream, .. }) => stream,
            Held::Polling(stream) => stream,
        };
        stream.set_nonblocking(true).expect("nonblocking");
        let mut byte = [0u8; 1];
        let closed = matches!(stream.read(&mut byte), Ok(0));
        assert!(
            !closed,
            "{}: the server closed an idle connection",
            peer.name
        );
    }
    drop(held);
    Measured {
        per_connection: (after - before) * 1024.0 / count as f64,
        slope: (after - middle) * 1024.0 / (count - half) as f64,
        rss: after,
    }
}

pub fn run(arguments: &[String]) {
    let files = raise_file_limit();
    // corestream's allocator (mimalloc) returns freed pages to the system some time after they
    // are freed, and only when the thread allocates again: left on, the figures would say
    // when that happened rather than what a connection holds. Off, RSS only grows, and the
    // delta is what the connections hold plus any fragmentation they cause.
    disable_huge_pages();
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        std::env::set_var("MIMALLOC_PURGE_DELAY", "-1");
    }
    let requested: usize = option_value(arguments, "--connections").unwrap_or(10_000);
    // the bench's own files: the client side of each connection, plus some slack
    let fits = (files as usize).saturating_sub(WARM_UP + 100);
    let count = requested.min(fits);
    if count < requested {
        println!(
            "# {requested} connections do not fit the open-files limit of {files}: measuring {count}"
        );
    }
    println!(
        "corestream-bench --connections: {count} idle logged-in connections per row (after {WARM_UP} \
         warm-up ones); server VmRSS delta / connections\n"
    );
    println!(
        "| transport | server | KiB per idle connection | second half only (KiB) | RSS with all open (MiB) |"
    );
    println!("|---|---|---|---|---|");
    let rows: [(&str, bool, StartPeer); 6] = [
        ("tcp", false, || start_corestream(1, 0)),
        ("tcp", true, start_deepstream),
        ("websocket", false, || start_corestream(1, 0)),
        ("websocket", true, start_deepstream_2),
        ("polling", false, || start_corestream(1, 0)),
        ("polling", true, start_deepstream),
    ];
    // `--transport tcp|websocket|polling`: one transport only; `--skip-deepstream`: corestream only
    let only: Option<String> = option_value(arguments, "--transport");
    let skip_reference = arguments.iter().any(|a| a == "--skip-deepstream");
    for (transport, reference, start) in rows {
        if only.as_ref().is_some_and(|only| only != transport) || (reference && skip_reference) {
            continue;
        }
        let peer = start();
        let measured = measure(&peer, transport, count);
        println!(
            "| {transport} | {} | {:.2} | {:.2} | {:.1} |",
            peer.name, measured.per_connection, measured.slope, measured.rss
        );
    }
}
