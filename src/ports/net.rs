//! Socket options and bounded socket I/O for the connection tasks (`server`, `ports::http`).
//!
//! Owns what every accepted socket gets (TCP_NODELAY, TCP keepalive, `TCP_USER_TIMEOUT`); the
//! reads of every connection task through one scratch buffer per core (`read_with`: an idle
//! connection owns no read buffer); and the two ways a connection task waits on a socket
//! without waiting forever: a read with a deadline, and a write that gives up when its session
//! is aborted (slow consumer) or its deadline passes. Called by the connection tasks only; it knows nothing of the protocol.

use crate::base::config::Limits;
use crate::dispatch::Core;
use crate::shard::SessionPort;
use futures_lite::future::{or, poll_fn};
use futures_lite::{AsyncRead, AsyncWriteExt};
use glommio::net::TcpStream;
use std::io::IoSlice;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::Instant;

/// Sets one integer socket option; failure only means the option is not set (logged).
fn set_option(stream: &TcpStream, level: libc::c_int, name: libc::c_int, value: libc::c_int) {
    let fd = stream.as_raw_fd();
    let size = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `fd` is the open socket owned by `stream`, which outlives this call; the option
    // value is a valid c_int whose size is passed alongside.
    let result =
        unsafe { libc::setsockopt(fd, level, name, (&value as *const libc::c_int).cast(), size) };
    if result != 0 {
        crate::debug!(
            "setsockopt({level}, {name}) failed: {}",
            std::io::Error::last_os_error()
        );
    }
}

fn millis(duration: std::time::Duration) -> libc::c_int {
    libc::c_int::try_from(duration.as_millis()).unwrap_or(libc::c_int::MAX)
}

fn seconds(duration: std::time::Duration) -> libc::c_int {
    libc::c_int::try_from(duration.as_secs().max(1)).unwrap_or(libc::c_int::MAX)
}

/// Every accepted socket: no Nagle delay; keepalive probes that find a dead peer after
/// idle + interval x count; and `TCP_USER_TIMEOUT`, so data the peer does not acknowledge (or a
/// zero window it never opens again) ends the connection instead of holding it forever.
pub fn tune(stream: &TcpStream, limits: &Limits) {
    let _ = stream.set_nodelay(true);
    set_option(stream, libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1);
    set_option(
        stream,
        libc::IPPROTO_TCP,
        libc::TCP_KEEPIDLE,
        seconds(limits.tcp_keep_alive_idle),
    );
    set_option(
        stream,
        libc::IPPROTO_TCP,
        libc::TCP_KEEPINTVL,
        seconds(limits.tcp_keep_alive_interval),
    );
    set_option(
        stream,
        libc::IPPROTO_TCP,
        libc::TCP_KEEPCNT,
        libc::c_int::try_from(limits.tcp_keep_alive_count).unwrap_or(libc::c_int::MAX),
    );
    set_option(
        stream,
        libc::IPPROTO_TCP,
        libc::TCP_USER_TIMEOUT,
        millis(limits.tcp_user_timeout),
    );
}

/// What a bounded read got.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    /// This many bytes were appended to the buffer.
    Data(usize),
    /// The peer closed, or the read failed.
    Closed,
    /// The deadline passed first.
    TimedOut,
}

/// Bytes one read may take from a socket: the size of each core's scratch buffer.
pub const READ_SIZE: usize = 16 * 1024;

thread_local! {
    /// This core's read buffer (one executor per thread, so one per core). Every connection
    /// task of the core reads through it, so an idle connection holds no read buffer of its
    /// own: what a read brings is handed on (to a framer, a decoder) before the next read.
    static SCRATCH: std::cell::RefCell<Box<[u8]>> =
        std::cell::RefCell::new(vec![0u8; READ_SIZE].into_boxed_slice());
}

/// Reads what the socket holds (up to `READ_SIZE` bytes) into this core's scratch buffer and
/// hands those bytes to `take`, which keeps what it needs by copying it: the buffer is lent
/// only for the duration of `take`. Ok(0): the peer closed. `take` must not read a socket.
pub async fn read_with(
    stream: &mut TcpStream,
    mut take: impl FnMut(&[u8]),
) -> std::io::Result<usize> {
    poll_fn(|context| poll_read_with(stream, context, &mut take)).await
}

/// `read_with` as a poll, for loops that wait on several things at once without a future per
/// thing (the connection loop's idle wait).
pub fn poll_read_with(
    stream: &mut TcpStream,
    context: &mut std::task::Context<'_>,
    take: impl FnOnce(&[u8]),
) -> std::task::Poll<std::io::Result<usize>> {
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        match std::pin::Pin::new(&mut *stream).poll_read(context, &mut scratch) {
            std::task::Poll::Ready(Ok(count)) => {
                take(&scratch[..count]);
                std::task::Poll::Ready(Ok(count))
            }
            other => other,
        }
    })
}

/// Reads and appends to `into`, giving up at `deadline`.
pub async fn read_until(stream: &mut TcpStream, into: &mut Vec<u8>, deadline: Instant) -> Read {
    let read = or(
        async { Some(read_with(stream, |bytes| into.extend_from_slice(bytes)).await) },
        async {
            glommio::timer::sleep(deadline.saturating_duration_since(Instant::now())).await;
            None
        },
    )
    .await;
    match read {
        None => Read::TimedOut,
        Some(Ok(0)) | Some(Err(_)) => Read::Closed,
        Some(Ok(count)) => Read::Data(count),
    }
}

/// Ready when the port must be aborted (slow consumer).
pub fn aborted(port: &SessionPort) -> impl std::future::Future<Output = ()> + '_ {
    poll_fn(move |context| port.poll_aborted(context))
}

/// Writes all of `bytes`. `false` when the write failed, the session's port was aborted while
/// waiting (it kept producing output the client did not read), or `deadline` passed (a client
/// that stopped reading altogether): the caller then drops the connection.
pub async fn write_all_racing(
    stream: &mut TcpStream,
    bytes: &[u8],
    port: Option<&SessionPort>,
    deadline: Option<Instant>,
) -> bool {
    let write = async { stream.write_all(bytes).await.is_ok() };
    let abort = async {
        match port {
            Some(port) => aborted(port).await,
            None => futures_lite::future::pending::<()>().await,
        }
        false
    };
    let expire = async {
        match deadline {
            Some(deadline) => {
                glommio::timer::sleep(deadline.saturating_duration_since(Instant::now())).await
            }
            None => futures_lite::future::pending::<()>().await,
        }
        false
    };
    or(write, or(abort, expire)).await
}

/// At most this many parts go into one `sendmsg` (Linux's `UIO_MAXIOV`).
const MAX_PARTS_PER_SEND: usize = 1024;

/// Writes `parts` in order, with as few vectored sends as the socket takes without waiting;
/// what it does not take at once is copied into one buffer and written by `write_all_racing`
/// (same `false` cases). The parts of a fan-out are shared by every subscriber, so this writes
/// them where they are instead of copying them into each connection's buffer.
pub async fn write_parts_racing(
    stream: &mut TcpStream,
    parts: &[IoSlice<'_>],
    port: Option<&SessionPort>,
    deadline: Option<Instant>,
) -> bool {
    let mut index = 0;
    let mut offset = 0;
    while index < parts.len() {
        let batch = &parts[index..parts.len().min(index + MAX_PARTS_PER_SEND)];
        let sent = match send_parts(stream.as_raw_fd(), batch) {
            Ok(sent) => sent,
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => 0,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        };
        let (whole, into_next) = advance(batch, sent);
        index += whole;
        offset = into_next;
        if whole < batch.len() {
            break;
        }
    }
    if index == parts.len() {
        return true;
    }
    let mut rest = parts[index][offset..].to_vec();
    for part in &parts[index + 1..] {
        rest.extend_from_slice(part);
    }
    write_all_racing(stream, &rest, port, deadline).await
}

/// How many whole parts `sent` bytes cover, and how far into the next part they reach.
fn advance(parts: &[IoSlice<'_>], mut sent: usize) -> (usize, usize) {
    let mut whole = 0;
    while whole < parts.len() && sent >= parts[whole].len() {
        sent -= parts[whole].len();
        whole += 1;
    }
    (whole, sent)
}

/// One non-blocking `sendmsg` of `parts`.
fn send_parts(fd: std::os::fd::RawFd, parts: &[IoSlice<'_>]) -> std::io::Result<usize> {
    // SAFETY: an all-zero msghdr is valid (no name, no control data); `IoSlice` is ABI-compatible
    // with `iovec` on Unix (documented by std), and `parts` outlives the call, which only reads
    // it. The length is at most MAX_PARTS_PER_SEND. Tested by `parts_are_written_in_order_*`.
    let sent = unsafe {
        let mut header: libc::msghdr = std::mem::zeroed();
        header.msg_iov = parts.as_ptr() as *mut libc::iovec;
        header.msg_iovlen = parts.len();
        libc::sendmsg(fd, &header, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
    };
    if sent < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(sent as usize)
}

/// The inodes of this process's sockets (from `/proc/self/fd`).
fn own_socket_inodes() -> std::collections::HashSet<u64> {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return Default::default();
    };
    entries
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_str()?;
            target
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

/// An address of `/proc/net/tcp` (`0100007F:1785`) or `/proc/net/tcp6` (32 hex digits, then
/// the port): each 32-bit word is printed in the machine's byte order.
pub fn parse_proc_address(text: &str) -> Option<SocketAddr> {
    let (address, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let mut bytes = Vec::with_capacity(16);
    for word in 0..address.len() / 8 {
        let value = u32::from_str_radix(address.get(word * 8..word * 8 + 8)?, 16).ok()?;
        bytes.extend_from_slice(&value.to_ne_bytes());
    }
    let ip = match bytes.len() {
        4 => IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?),
        16 => IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Does a socket of another process listen on `address`'s port, on the same address or a
/// wildcard that covers it? (Only possible when both use SO_REUSEPORT: the kernel would then
/// split the connections between the two processes.)
pub fn shared_with_another_process(address: SocketAddr) -> bool {
    let ours = own_socket_inodes();
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|table| {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        text.lines().skip(1).any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local address (1), state (3: 0A is LISTEN), inode (9)
            let (Some(local), Some(state), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                return false;
            };
            let Some(local) = parse_proc_address(local) else {
                return false;
            };
            let inode: u64 = inode.parse().unwrap_or(0);
            *state == "0A"
                && local.port() == address.port()
                && !ours.contains(&inode)
                && (local.ip() == address.ip()
                    || local.ip().is_unspecified()
                    || address.ip().is_unspecified())
        })
    })
}

/// Writes a response or a frame: `false` when the write failed or did not finish within
/// `tcpUserTimeout` (a client that stopped reading); the caller then drops the connection.
pub async fn put(core: &Core, stream: &mut TcpStream, bytes: &[u8]) -> bool {
    let deadline = Instant::now() + core.config().limits.tcp_user_timeout;
    write_all_racing(stream, bytes, None, Some(deadline)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_tcp_addresses() {
        #[cfg(target_endian = "little")]
        {
            assert_eq!(
                parse_proc_address("0100007F:1785"),
                Some("127.0.0.1:6021".parse().expect("address"))
            );
            assert_eq!(
                parse_proc_address("00000000000000000000000001000000:1784"),
                Some("[::1]:6020".parse().expect("address"))
            );
        }
        assert_eq!(parse_proc_address("zz:1"), None);
    }

    /// Writes `parts` from a glommio task to a peer that reads on a thread; returns what the
    /// peer read.
    fn write_parts_to_peer(parts: Vec<Vec<u8>>, send_buffer: libc::c_int) -> Vec<u8> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        let reader = std::thread::spawn(move || {
            let (mut socket, _) = listener.accept().expect("accept");
            std::thread::sleep(std::time::Duration::from_millis(50));
            let mut read = Vec::new();
            std::io::Read::read_to_end(&mut socket, &mut read).expect("read");
            read
        });
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(64 << 10)
            .spawn(move || async move {
                let mut stream = TcpStream::connect(address).await.expect("connect");
                set_option(&stream, libc::SOL_SOCKET, libc::SO_SNDBUF, send_buffer);
                let slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
                assert!(write_parts_racing(&mut stream, &slices, None, None).await);
            })
            .expect("executor")
            .join()
            .expect("join");
        reader.join().expect("reader")
    }

    #[test]
    fn parts_are_written_in_order_when_the_socket_takes_them_at_once() {
        let parts: Vec<Vec<u8>> = (0..3000u32)
            .map(|i| format!("part {i};").into_bytes())
            .collect();
        let expected = parts.concat();
        assert_eq!(write_parts_to_peer(parts, 1 << 20), expected);
    }

    #[test]
    fn parts_are_written_in_order_when_the_socket_takes_only_some() {
        // 4 MB through a 4 KiB send buffer, read only after 50 ms: the vectored send stops
        // part-way through a part and the rest goes through the waiting write.
        let parts: Vec<Vec<u8>> = (0..2000u32)
            .map(|i| vec![(i % 251) as u8; 1000 + (i as usize % 3000)])
            .collect();
        let expected = parts.concat();
        assert_eq!(write_parts_to_peer(parts, 4096), expected);
    }

    #[test]
    fn advance_counts_whole_parts_and_the_offset_into_the_next() {
        let (a, b, c) = ([1u8; 3], [2u8; 0], [3u8; 4]);
        let parts = [IoSlice::new(&a), IoSlice::new(&b), IoSlice::new(&c)];
        assert_eq!(advance(&parts, 0), (0, 0));
        assert_eq!(advance(&parts, 3), (2, 0));
        assert_eq!(advance(&parts, 5), (2, 2));
        assert_eq!(advance(&parts, 7), (3, 0));
    }

    #[test]
    fn a_listener_of_this_process_is_not_another_process() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        assert!(!shared_with_another_process(address));
    }
}
