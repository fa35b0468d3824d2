//! `corestream-bench --profile`: where the instructions of a delivered event and the bytes of an
//! idle connection go, as files a reader can open.
//!
//! - Instructions: corestream (one core) runs under `valgrind --tool=callgrind` with
//!   instrumentation off; the bench logs in N TCP subscribers and a publisher, warms up, switches instrumentation
//!   on (`callgrind_control -i on`), publishes K events and waits for every delivery, switches
//!   it off and has the profile dumped. Instruction counts do not depend on the machine's noise.
//!   Written: `callgrind-fan-out.out` (open with kcachegrind or callgrind_annotate) and
//!   `callgrind-fan-out.txt` (callgrind_annotate's list of functions by their own cost).
//! - Bytes: massif sees only `malloc`, and corestream allocates through mimalloc, so this part
//!   needs a build with the system allocator (`--features system-allocator`, built into
//!   `target/system-allocator/`; the command is printed when it is missing). That build runs
//!   under `valgrind --tool=massif` while the bench holds M idle logged-in connections of one
//!   transport, then 2M; the difference of the two heap peaks ÷ M is one connection's heap, and
//!   `ms_print` of the larger run is written to `massif-<transport>.txt`: every allocation site
//!   with its bytes.
//!
//! Everything is written to `target/corestream-bench/`. Valgrind runs the server 20-50× slower,
//! so the counts are small (defaults: 100 subscribers, 2000 events, 2000 connections).

use crate::connections::{open, Held};
use crate::{
    corestream_binary, free_port, option_value, plot, root, wire, write_config, Peer, RawClient,
};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub fn run(arguments: &[String]) {
    let subscribers: usize = option_value(arguments, "--subscribers").unwrap_or(100);
    let events: usize = option_value(arguments, "--events").unwrap_or(2000);
    let connections: usize = option_value(arguments, "--connections").unwrap_or(1000);
    let dir = plot::output_dir();
    std::fs::create_dir_all(&dir).expect("output directory");
    count_fan_out_instructions(&dir, subscribers, events);
    let binary = root().join("target/system-allocator/release/corestream");
    if !binary.exists() {
        println!(
            "\n(memory breakdown skipped: it needs corestream built with the system allocator:\n  \
             CARGO_TARGET_DIR=target/system-allocator cargo build --release --features \
             system-allocator --bin corestream)"
        );
        return;
    }
    for transport in ["tcp", "websocket"] {
        memory_breakdown(&dir, &binary, transport, connections);
    }
}

/// corestream under valgrind (`tool` and its options), one core, on free ports.
fn start_under_valgrind(binary: &Path, valgrind: &[String]) -> Peer {
    let dir = std::env::temp_dir().join(format!("corestream-profile-{}", fastrand::u64(..)));
    let (tcp_port, http_port) = (free_port(), free_port());
    let extra = "webServerEnabled: true\nconnectionEndpoints:\n  websocket:\n    options:\n      \
                 heartbeatInterval: 600000\n";
    let config = write_config(&dir, http_port, tcp_port, extra);
    let (child, stdout) = Command::new("valgrind")
        .args(valgrind)
        .arg(binary)
        .args(["start", "--config"])
        .arg(&config)
        .args(["--cores", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map(|mut child| {
            let stdout = child.stdout.take();
            (child, stdout)
        })
        .unwrap_or_else(|error| {
            panic!("cannot start valgrind: {error} (apt-get install valgrind)")
        });
    wait_until_started(stdout);
    Peer {
        name: "corestream under valgrind",
        child,
        port: tcp_port,
        http_port,
        _dir: Some(dir),
    }
}

/// Waits for the line corestream prints once it has started: its start-up checks (which read
/// `/proc/net/tcp`) are over, so they are not in the profile. Valgrind starts slowly: a minute
/// or more under massif on this 2-vCPU VM (the executor's setup), so the bench waits 5.
fn wait_until_started(stdout: Option<std::process::ChildStdout>) {
    let (started, wait) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let lines = std::io::BufReader::new(stdout.expect("piped stdout")).lines();
        for line in lines.map_while(Result::ok) {
            if line.contains("listening for deepstream connections") {
                let _ = started.send(());
            }
        }
    });
    wait.recv_timeout(Duration::from_secs(300))
        .expect("corestream under valgrind did not start within 5 minutes");
}

/// SIGTERM, then waits (valgrind writes its files on exit).
fn stop(mut peer: Peer) {
    // SAFETY: kill(2) on our own child's PID.
    unsafe { libc::kill(peer.child.id() as libc::pid_t, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = peer.child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("(valgrind did not exit in 120 s: killed; its files may be incomplete)");
}

fn callgrind_control(options: &[&str], pid: u32) {
    let status = Command::new("callgrind_control")
        .args(options)
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .status()
        .expect("callgrind_control (apt-get install valgrind)");
    assert!(status.success(), "callgrind_control {options:?} failed");
}

/// Publishes `count` events and reads until every subscriber got all of them.
fn publish_and_drain(publisher: &mut RawClient, subscribers: &mut [RawClient], count: usize) {
    let one = wire("E|EVT|profile/fan-out|Sfan-out-payload-0123456789+");
    for sent in (0..count).step_by(50) {
        publisher.send(&one.repeat(50.min(count - sent)));
    }
    for subscriber in subscribers.iter_mut() {
        for _ in 0..count {
            subscriber.read_message();
        }
    }
}

fn count_fan_out_instructions(dir: &Path, subscribers: usize, events: usize) {
    let out = dir.join("callgrind-fan-out.out");
    let valgrind = vec![
        "--tool=callgrind".to_string(),
        "--instr-atstart=no".to_string(),
        format!("--callgrind-out-file={}", out.display()),
    ];
    let peer = start_under_valgrind(&corestream_binary(), &valgrind);
    let mut clients: Vec<RawClient> = (0..subscribers)
        .map(|index| {
            let mut client = RawClient::login(peer.port, &format!("sub-{index}"));
            client.send(&wire("E|S|profile/fan-out+"));
            client.expect_prefix("E|A|S|profile/fan-out+");
            client
        })
        .collect();
    let mut publisher = RawClient::login(peer.port, "publisher");
    publish_and_drain(&mut publisher, &mut clients, 200);
    let pid = peer.child.id();
    callgrind_control(&["-i", "on"], pid);
    let started = Instant::now();
    publish_and_drain(&mut publisher, &mut clients, events);
    let elapsed = started.elapsed();
    callgrind_control(&["-i", "off"], pid);
    callgrind_control(&["-d"], pid);
    drop(clients);
    stop(peer);
    // the dump requested while running is the file's first part (`.1`)
    let dumped = PathBuf::from(format!("{}.1", out.display()));
    let _ = std::fs::rename(&dumped, &out);
    let annotated = annotate(&out);
    std::fs::write(dir.join("callgrind-fan-out.txt"), &annotated).expect("write annotation");
    let total = program_total(&annotated);
    let deliveries = (events * subscribers) as f64;
    println!("## Instructions per delivered event (callgrind, corestream on 1 core)");
    println!(
        "{events} events to {subscribers} TCP subscribers ({deliveries:.0} deliveries, {:.1} s \
         under valgrind): {total} instructions in all; {:.0} per published event, {:.1} per \
         delivery",
        elapsed.as_secs_f64(),
        total as f64 / events as f64,
        total as f64 / deliveries
    );
    println!(
        "(files: {}, {})",
        out.display(),
        dir.join("callgrind-fan-out.txt").display()
    );
}

/// callgrind_annotate's text for `profile` (functions by their own cost).
fn annotate(profile: &Path) -> String {
    let output = Command::new("callgrind_annotate")
        .arg(profile)
        .output()
        .expect("callgrind_annotate (apt-get install valgrind)");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The "PROGRAM TOTALS" instruction count of an annotation.
fn program_total(annotated: &str) -> u64 {
    annotated
        .lines()
        .find(|line| line.contains("PROGRAM TOTALS"))
        .and_then(|line| line.split_whitespace().next())
        .and_then(|count| count.replace(',', "").parse().ok())
        .unwrap_or(0)
}

/// Two massif runs, with `connections` and twice as many: the difference of their heap peaks
/// ÷ `connections` is what one idle connection holds; the larger run's sites are written out.
fn memory_breakdown(dir: &Path, binary: &Path, transport: &str, connections: usize) {
    let (smaller, smaller_path) = massif_run(dir, binary, transport, connections);
    // the second run overwrites the file: keep the first run's text
    let smaller_text = std::fs::read_to_string(&smaller_path).unwrap_or_default();
    let (larger, path) = massif_run(dir, binary, transport, 2 * connections);
    let larger_text = std::fs::read_to_string(&path).unwrap_or_default();
    let table = site_table(
        &sites(&smaller_text),
        &sites(&larger_text),
        connections,
        transport,
    );
    let sites_path = dir.join(format!("massif-{transport}-sites.txt"));
    std::fs::write(&sites_path, &table).expect("write sites");
    println!("{table}");
    println!(
        "\n## Heap per idle {transport} connection (massif, system allocator)\n\
         peak heap with {connections} connections {smaller} B, with {} {larger} B: {:.0} B per \
         connection; the allocation sites are in {} and, per connection, {}",
        2 * connections,
        (larger as f64 - smaller as f64) / connections as f64,
        path.display(),
        sites_path.display()
    );
}

/// corestream under massif while `connections` idle ones are held: the heap's peak and the
/// ms_print file.
fn massif_run(dir: &Path, binary: &Path, transport: &str, connections: usize) -> (u64, PathBuf) {
    let out: PathBuf = dir.join(format!("massif-{transport}.out"));
    let valgrind = vec![
        "--tool=massif".to_string(),
        "--depth=40".to_string(),
        "--threshold=0.2".to_string(),
        format!("--massif-out-file={}", out.display()),
    ];
    let peer = start_under_valgrind(binary, &valgrind);
    let held: Vec<Held> = (0..connections)
        .map(|index| open(transport, &peer, index))
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    stop(peer);
    drop(held);
    let printed = Command::new("ms_print")
        .arg(&out)
        .output()
        .expect("ms_print (apt-get install valgrind)");
    let text = String::from_utf8_lossy(&printed.stdout).into_owned();
    let path = dir.join(format!("massif-{transport}.txt"));
    std::fs::write(&path, &text).expect("write ms_print");
    (peak_heap_bytes(&text), path)
}

/// The largest "total(B)" of ms_print's snapshot table.
fn peak_heap_bytes(printed: &str) -> u64 {
    printed
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // "  n  time(i)  total(B)  useful-heap(B)  extra-heap(B)  stacks(B)"
            (fields.len() == 6 && fields[0].parse::<u64>().is_ok())
                .then(|| fields[2].replace(',', "").parse::<u64>().ok())
                .flatten()
        })
        .max()
        .unwrap_or(0)
}

/// Heap bytes by allocation site in the last detailed snapshot of an ms_print text. A site is
/// named by the first frame, walking down from the allocation function, that belongs to
/// corestream or glommio (what the allocation is for, not how it was allocated).
fn sites(printed: &str) -> std::collections::BTreeMap<String, u64> {
    let mut sites = std::collections::BTreeMap::new();
    let Some(start) = printed.rfind("(heap allocation functions)") else {
        return sites;
    };
    // (depth, named) of the entries above the current line
    let mut stack: Vec<(usize, bool)> = Vec::new();
    for line in printed[start..].lines().skip(1) {
        let Some(arrow) = line.find("->") else {
            if line.trim().is_empty() {
                break;
            }
            continue;
        };
        let entry = &line[arrow + 2..];
        while stack.last().is_some_and(|(depth, _)| *depth >= arrow) {
            stack.pop();
        }
        let named_above = stack.iter().any(|(_, named)| *named);
        let frame = entry.split_once(": ").map(|(_, frame)| frame).unwrap_or("");
        let ours = frame.contains("corestream::") || frame.contains("glommio::");
        if ours && !named_above {
            let bytes = entry
                .split_once('(')
                .and_then(|(_, rest)| rest.split_once("B)"))
                .and_then(|(bytes, _)| bytes.replace(',', "").parse::<u64>().ok())
                .unwrap_or(0);
            *sites.entry(frame.chars().take(150).collect()).or_insert(0) += bytes;
        }
        stack.push((arrow, ours || named_above));
    }
    sites
}

/// The sites whose bytes grew from the smaller run to the larger, per added connection.
fn site_table(
    smaller: &std::collections::BTreeMap<String, u64>,
    larger: &std::collections::BTreeMap<String, u64>,
    connections: usize,
    transport: &str,
) -> String {
    let mut rows: Vec<(f64, &String)> = larger
        .iter()
        .map(|(site, bytes)| {
            let before = smaller.get(site).copied().unwrap_or(0);
            ((*bytes as f64 - before as f64) / connections as f64, site)
        })
        .filter(|(per_connection, _)| *per_connection >= 1.0)
        .collect();
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut table = format!(
        "# heap per idle {transport} connection by allocation site (massif, system allocator; \
         bytes asked for, without malloc's own overhead)\n| bytes | site |\n|---|---|\n"
    );
    for (per_connection, site) in &rows {
        table.push_str(&format!("| {per_connection:.0} | {site} |\n"));
    }
    let total: f64 = rows.iter().map(|(bytes, _)| bytes).sum();
    table.push_str(&format!("| {total:.0} | (sum of the sites above) |\n"));
    table
}
