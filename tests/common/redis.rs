//! A real `redis-server` of a test's own on a free loopback port (append-only, fsync on every
//! write), and the cluster config keys that point corestream nodes at it. Used by the cluster
//! tests (`tests/cluster.rs`, `tests/cluster_permissions.rs`).

use super::free_port;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A redis-server of our own, stopped by PID when dropped.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
}

impl Redis {
    pub fn start() -> Redis {
        let dir = std::env::temp_dir().join(format!(
            "corestream-redis-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).expect("redis dir");
        let mut redis = Redis {
            child: None,
            port: free_port(),
            dir,
        };
        redis.launch();
        redis
    }

    /// Starts redis-server with an append-only file that is synced on every write, so an
    /// acknowledged write survives a kill.
    pub fn launch(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("redis-server on PATH (scripts/test.sh installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.command("PING").as_deref() == Some("+PONG") {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not answer PING on port {}", self.port);
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// One inline command; the first line of the reply.
    pub fn command(&self, command: &str) -> Option<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        stream.write_all(format!("{command}\r\n").as_bytes()).ok()?;
        let mut reply = Vec::new();
        let mut byte = [0u8; 1];
        while stream.read(&mut byte).ok()? == 1 {
            if byte[0] == b'\n' {
                break;
            }
            reply.push(byte[0]);
        }
        Some(String::from_utf8_lossy(&reply).trim_end().to_string())
    }

    pub fn config(&self) -> String {
        format!(
            "serverName: node\nplugins:\n  message:\n    name: redis\n    options:\n      host: 127.0.0.1\n      \
             port: {port}\n  cache:\n    name: redis\n    options:\n      host: 127.0.0.1\n      port: {port}\n\
             clusterKeepAliveInterval: 200\nclusterActiveCheckInterval: 200\nclusterNodeInactiveTimeout: 1500\n",
            port = self.port
        )
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Until `check` holds (polling every 20 ms), or panic with `what` after `limit`.
pub fn eventually(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out: {what}");
}

/// Subscribers of a channel, as Redis counts them.
pub fn channel_subscribers(redis: &Redis, channel: &str) -> i64 {
    let mut stream = TcpStream::connect(("127.0.0.1", redis.port)).expect("redis");
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    stream
        .write_all(format!("PUBSUB NUMSUB {channel}\r\n").as_bytes())
        .expect("write");
    let mut reply = String::new();
    let mut chunk = [0u8; 512];
    while !reply.ends_with("\r\n") || reply.matches("\r\n").count() < 4 {
        let read = stream.read(&mut chunk).expect("read");
        if read == 0 {
            break;
        }
        reply.push_str(&String::from_utf8_lossy(&chunk[..read]));
    }
    reply
        .lines()
        .last()
        .and_then(|line| line.trim_start_matches(':').parse().ok())
        .unwrap_or(-1)
}

/// Waits until every node follows a channel (its subscription reached Redis).
pub fn wait_for_channel(redis: &Redis, channel: &str, nodes: i64) {
    eventually(
        Duration::from_secs(5),
        &format!("{nodes} nodes on {channel}"),
        || channel_subscribers(redis, channel) == nodes,
    );
}
