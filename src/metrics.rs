//! What a core counts and what `/metrics` shows: the per-core `Counters` (plain cells, touched
//! only by their core), the `CoreStats` snapshot a core sends when asked, the cluster layer's
//! `ClusterStats`, and the Prometheus text summed over cores. `dispatch::Core` owns the
//! counters; the ports bump them; `ports::http` renders `prometheus` for `/metrics`.
//!
//! Every metric is one row of `METRICS` / `CLUSTER_METRICS`: a name, a type, a help line and
//! how its samples are read from the cores' stats.

use crate::features::event::RegistrySize;
use std::cell::Cell;
use std::fmt::Write;

/// The transports sessions arrive on (index into the per-transport counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp = 0,
    WebSocket = 1,
    EngineIo = 2,
}

pub const TRANSPORT_NAMES: [&str; 3] = ["tcp", "websocket", "engineio"];
/// Topics counted for incoming messages; the last slot counts every other topic.
pub const TOPIC_NAMES: [&str; 7] = ["C", "A", "E", "R", "P", "U", "other"];

fn topic_index(topic: &[u8]) -> usize {
    match topic {
        b"C" => 0,
        b"A" => 1,
        b"E" => 2,
        b"R" => 3,
        b"P" => 4,
        b"U" => 5,
        _ => 6,
    }
}

/// What `/metrics` and `/health-check` show of one core's cluster layer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ClusterStats {
    pub enabled: bool,
    pub command_link_up: bool,
    pub pubsub_link_up: bool,
    pub reconnects: u64,
    pub channels: u64,
    pub published: u64,
    pub received: u64,
    pub write_conflicts: u64,
    pub redis_errors: u64,
    pub redis_commands: u64,
    pub remote_nodes: u64,
    /// This node leads listening for the cluster.
    pub listen_leader: bool,
}

/// What a core holds and has counted, for tests, `/metrics` and the clean-up check.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CoreStats {
    pub sessions_by_transport: [u64; 3],
    pub sessions_total_by_transport: [u64; 3],
    pub bytes_in_by_transport: [u64; 3],
    pub bytes_out_by_transport: [u64; 3],
    pub messages_in_by_topic: [u64; 7],
    pub messages_out_by_topic: [u64; 7],
    pub messages_out: u64,
    pub auth_failures: u64,
    /// Bytes waiting in this core's queues for other cores.
    pub cross_core_queue_bytes: u64,
    pub core: usize,
    pub sessions: usize,
    pub events: RegistrySize,
    pub records: usize,
    pub record_subscriptions: RegistrySize,
    /// (names with providers, providers, calls in flight)
    pub rpc: (usize, usize, usize),
    /// (usernames online, local presence subscribers)
    pub presence: (usize, usize),
    pub listen_timers: usize,
    pub connections_accepted: u64,
    pub slow_consumer_disconnects: u64,
    pub messages_in: u64,
    pub cluster: ClusterStats,
}

/// Counters of one core (plain cells: only this core touches them).
#[derive(Default)]
pub struct Counters {
    pub connections_accepted: Cell<u64>,
    pub slow_consumer_disconnects: Cell<u64>,
    pub messages_in: Cell<u64>,
    pub sessions_by_transport: [Cell<u64>; 3],
    pub sessions_total_by_transport: [Cell<u64>; 3],
    pub bytes_in_by_transport: [Cell<u64>; 3],
    pub bytes_out_by_transport: [Cell<u64>; 3],
    pub messages_in_by_topic: [Cell<u64>; 7],
    pub messages_out_by_topic: [Cell<u64>; 7],
    pub messages_out: Cell<u64>,
    pub auth_failures: Cell<u64>,
}

fn bump(cell: &Cell<u64>, by: u64) {
    cell.set(cell.get().wrapping_add(by));
}

fn snapshot<const N: usize>(cells: &[Cell<u64>; N]) -> [u64; N] {
    std::array::from_fn(|index| cells[index].get())
}

impl Counters {
    pub fn session_opened(&self, transport: Transport) {
        bump(&self.sessions_by_transport[transport as usize], 1);
        bump(&self.sessions_total_by_transport[transport as usize], 1);
    }

    pub fn session_closed(&self, transport: Transport) {
        let cell = &self.sessions_by_transport[transport as usize];
        cell.set(cell.get().saturating_sub(1));
    }

    pub fn bytes_in(&self, transport: Transport, bytes: usize) {
        bump(
            &self.bytes_in_by_transport[transport as usize],
            bytes as u64,
        );
    }

    /// Counts bytes written to a socket.
    pub fn bytes_out(&self, transport: Transport, written: usize) {
        bump(
            &self.bytes_out_by_transport[transport as usize],
            written as u64,
        );
    }

    /// Counts `copies` deliveries of one message (its topic is its first byte). Counted where a
    /// message is queued, once per fan-out, so the hot path pays O(1) per fan-out, not per
    /// delivery.
    pub fn messages_sent(&self, message: &[u8], copies: u64) {
        bump(&self.messages_out, copies);
        let topic = message.get(..1).unwrap_or_default();
        bump(&self.messages_out_by_topic[topic_index(topic)], copies);
    }

    pub fn message_in(&self, topic: &[u8]) {
        bump(&self.messages_in, 1);
        bump(&self.messages_in_by_topic[topic_index(topic)], 1);
    }

    pub fn auth_failure(&self) {
        bump(&self.auth_failures, 1);
    }

    pub fn slow_consumer(&self) -> u64 {
        bump(&self.slow_consumer_disconnects, 1);
        self.slow_consumer_disconnects.get()
    }

    /// Copies the counters into `stats` (the other fields are the dispatcher's).
    pub fn fill(&self, stats: &mut CoreStats) {
        stats.connections_accepted = self.connections_accepted.get();
        stats.sessions_by_transport = snapshot(&self.sessions_by_transport);
        stats.sessions_total_by_transport = snapshot(&self.sessions_total_by_transport);
        stats.bytes_in_by_transport = snapshot(&self.bytes_in_by_transport);
        stats.bytes_out_by_transport = snapshot(&self.bytes_out_by_transport);
        stats.messages_in_by_topic = snapshot(&self.messages_in_by_topic);
        stats.messages_out_by_topic = snapshot(&self.messages_out_by_topic);
        stats.messages_out = self.messages_out.get();
        stats.auth_failures = self.auth_failures.get();
        stats.slow_consumer_disconnects = self.slow_consumer_disconnects.get();
        stats.messages_in = self.messages_in.get();
    }
}

// ----- the Prometheus text -------------------------------------------------------------------

type Value = fn(&CoreStats) -> u64;
type Indexed = fn(&CoreStats, usize) -> u64;

/// How a metric's samples come from the cores' stats.
enum Samples {
    /// The number of cores that answered.
    Cores,
    /// One sample, summed over cores.
    Sum(Value),
    /// One sample, the largest core's (node-wide figures every core holds a copy of).
    Max(Value),
    /// One sample per transport, summed over cores.
    ByTransport(Indexed),
    /// One sample per topic, summed over cores.
    ByTopic(Indexed),
    /// One sample per label, summed over cores.
    Labelled(&'static [(&'static str, Value)]),
}

struct Metric {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    samples: Samples,
}

const fn metric(
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    samples: Samples,
) -> Metric {
    Metric {
        name,
        kind,
        help,
        samples,
    }
}

const METRICS: &[Metric] = &[
    metric("cores", "gauge", "Cores serving.", Samples::Cores),
    metric(
        "connections",
        "gauge",
        "Open connections by transport.",
        Samples::ByTransport(|core, index| core.sessions_by_transport[index]),
    ),
    metric(
        "connections_total",
        "counter",
        "Connections accepted by transport.",
        Samples::ByTransport(|core, index| core.sessions_total_by_transport[index]),
    ),
    metric(
        "received_bytes_total",
        "counter",
        "Bytes received by transport.",
        Samples::ByTransport(|core, index| core.bytes_in_by_transport[index]),
    ),
    metric(
        "sent_bytes_total",
        "counter",
        "Bytes sent by transport.",
        Samples::ByTransport(|core, index| core.bytes_out_by_transport[index]),
    ),
    metric(
        "messages_received_total",
        "counter",
        "Messages received by topic.",
        Samples::ByTopic(|core, index| core.messages_in_by_topic[index]),
    ),
    metric(
        "messages_sent_total",
        "counter",
        "Messages sent by topic.",
        Samples::ByTopic(|core, index| core.messages_out_by_topic[index]),
    ),
    metric(
        "slow_consumer_disconnects_total",
        "counter",
        "Sessions closed because they did not read their messages.",
        Samples::Sum(|core| core.slow_consumer_disconnects),
    ),
    metric(
        "auth_failures_total",
        "counter",
        "Rejected logins.",
        Samples::Sum(|core| core.auth_failures),
    ),
    metric(
        "subscriptions",
        "gauge",
        "Subscriptions by topic.",
        Samples::Labelled(&[
            ("{topic=\"event\"}", |core| core.events.subscriptions as u64),
            ("{topic=\"record\"}", |core| {
                core.record_subscriptions.subscriptions as u64
            }),
        ]),
    ),
    metric(
        "records",
        "gauge",
        "Records held.",
        Samples::Sum(|core| core.records as u64),
    ),
    metric(
        "rpc_providers",
        "gauge",
        "RPC providers.",
        Samples::Sum(|core| core.rpc.1 as u64),
    ),
    metric(
        "rpc_calls_in_flight",
        "gauge",
        "RPC calls waiting for a response.",
        Samples::Sum(|core| core.rpc.2 as u64),
    ),
    metric(
        "presence_users",
        "gauge",
        "Usernames logged in (2.x presence).",
        Samples::Max(|core| core.presence.0 as u64),
    ),
    metric(
        "cross_core_queue_bytes",
        "gauge",
        "Bytes queued for other cores.",
        Samples::Sum(|core| core.cross_core_queue_bytes),
    ),
];

/// Shown when the node is part of a cluster.
const CLUSTER_METRICS: &[Metric] = &[
    metric(
        "redis_links_up",
        "gauge",
        "Redis connections up (each core has a command and a pub/sub link).",
        Samples::Labelled(&[
            ("{link=\"command\"}", |core| {
                u64::from(core.cluster.command_link_up)
            }),
            ("{link=\"pubsub\"}", |core| {
                u64::from(core.cluster.pubsub_link_up)
            }),
        ]),
    ),
    metric(
        "redis_reconnects_total",
        "counter",
        "Redis reconnections after a lost connection.",
        Samples::Sum(|core| core.cluster.reconnects),
    ),
    metric(
        "redis_commands_total",
        "counter",
        "Commands sent to Redis.",
        Samples::Sum(|core| core.cluster.redis_commands),
    ),
    metric(
        "redis_errors_total",
        "counter",
        "Redis commands that failed or could not be sent (Redis unreachable).",
        Samples::Sum(|core| core.cluster.redis_errors),
    ),
    metric(
        "cluster_channels",
        "gauge",
        "Redis channels subscribed (names with local subscribers).",
        Samples::Sum(|core| core.cluster.channels),
    ),
    metric(
        "cluster_published_total",
        "counter",
        "Messages published to the other nodes.",
        Samples::Sum(|core| core.cluster.published),
    ),
    metric(
        "cluster_received_total",
        "counter",
        "Messages received from Redis channels.",
        Samples::Sum(|core| core.cluster.received),
    ),
    metric(
        "cluster_write_conflicts_total",
        "counter",
        "Record writes refused by the compare-and-set in Redis (VERSION_EXISTS).",
        Samples::Sum(|core| core.cluster.write_conflicts),
    ),
    metric(
        "cluster_remote_nodes",
        "gauge",
        "Other live nodes seen through Redis.",
        Samples::Max(|core| core.cluster.remote_nodes),
    ),
    metric(
        "cluster_listen_leader",
        "gauge",
        "1 when this node leads listening for the cluster (runs discovery for every node).",
        Samples::Max(|core| u64::from(core.cluster.listen_leader)),
    ),
];

/// The samples of one metric: (labels, value).
fn samples(samples: &Samples, stats: &[CoreStats]) -> Vec<(String, u64)> {
    let sum = |value: &dyn Fn(&CoreStats) -> u64| stats.iter().map(value).sum::<u64>();
    let indexed = |names: &[&str], label: &str, value: Indexed| {
        names
            .iter()
            .enumerate()
            .map(|(index, name)| {
                let labels = format!("{{{label}=\"{name}\"}}");
                (labels, sum(&|core| value(core, index)))
            })
            .collect()
    };
    match samples {
        Samples::Cores => vec![(String::new(), stats.len() as u64)],
        Samples::Sum(value) => vec![(String::new(), sum(value))],
        Samples::Max(value) => vec![(String::new(), stats.iter().map(value).max().unwrap_or(0))],
        Samples::ByTransport(value) => indexed(&TRANSPORT_NAMES, "transport", *value),
        Samples::ByTopic(value) => indexed(&TOPIC_NAMES, "topic", *value),
        Samples::Labelled(labels) => labels
            .iter()
            .map(|(labels, value)| (labels.to_string(), sum(value)))
            .collect(),
    }
}

/// The Prometheus text format (0.0.4) of every core's stats, summed over cores.
pub fn prometheus(stats: &[CoreStats]) -> String {
    let mut out = String::new();
    let cluster = stats.iter().any(|core| core.cluster.enabled);
    let shown = METRICS
        .iter()
        .chain(CLUSTER_METRICS.iter().filter(|_| cluster));
    for metric in shown {
        let _ = writeln!(out, "# HELP corestream_{} {}", metric.name, metric.help);
        let _ = writeln!(out, "# TYPE corestream_{} {}", metric.name, metric.kind);
        for (labels, value) in samples(&metric.samples, stats) {
            let _ = writeln!(out, "corestream_{}{labels} {value}", metric.name);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_sums_cores_and_shows_the_cluster_only_when_enabled() {
        let mut one = CoreStats {
            sessions_by_transport: [2, 1, 0],
            messages_in_by_topic: [0, 0, 5, 0, 0, 0, 0],
            presence: (3, 0),
            ..CoreStats::default()
        };
        let mut two = one;
        two.presence.0 = 4;
        let text = prometheus(&[one, two]);
        assert!(text.contains("corestream_cores 2\n"));
        assert!(text.contains("corestream_connections{transport=\"tcp\"} 4\n"));
        assert!(text.contains("corestream_messages_received_total{topic=\"E\"} 10\n"));
        assert!(text.contains("corestream_presence_users 4\n"));
        assert!(text.contains("# TYPE corestream_connections gauge\n"));
        assert!(!text.contains("redis_links_up"));
        one.cluster.enabled = true;
        one.cluster.command_link_up = true;
        let text = prometheus(&[one, two]);
        assert!(text.contains("corestream_redis_links_up{link=\"command\"} 1\n"));
        assert!(text.contains("corestream_redis_links_up{link=\"pubsub\"} 0\n"));
    }
}
