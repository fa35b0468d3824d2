//! Concurrent writers on every core against a few hot records and many cold ones (PROTOCOL.md
//! §3.4, §7). Convergence is judged by raw observers and fresh readers, not by the writers:
//! every observer sees the same sequence of versions for a record, each exactly one above the
//! last, none missing or repeated; a fresh reader at the end reads the last version and data
//! the observers saw; and the number of accepted writes equals the final version.

mod common;

use common::{readable, Client, Server};
use std::collections::HashMap;
use std::time::{Duration, Instant};

const HOT: usize = 3;
const COLD: usize = 60;
const WRITERS: usize = 6;
const OBSERVERS: usize = 4;
const ROUNDS: usize = 150;

/// What one observer saw: per record, (version, action, payload) in arrival order.
type Seen = HashMap<String, Vec<(i64, String, String)>>;

fn record_name(index: usize) -> String {
    if index < HOT {
        format!("hot/{index}")
    } else {
        format!("cold/{index}")
    }
}

/// Splits `R|<action>|...` into fields.
fn fields(message: &[u8]) -> Vec<String> {
    readable(message)
        .trim_end_matches('+')
        .split('|')
        .map(str::to_string)
        .collect()
}

/// Reads `R|R|name|version|data` for `name`, skipping anything else.
fn read_record(client: &mut Client, name: &str) -> (i64, String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let Some(message) = client.next_message(Duration::from_secs(5)) else {
            break;
        };
        let parts = fields(&message);
        if parts.len() == 5 && parts[1] == "R" && parts[2] == name {
            return (parts[3].parse().expect("version"), parts[4].clone());
        }
    }
    panic!("no R|R for {name}");
}

#[test]
fn concurrent_writers_converge_for_every_observer_and_fresh_reader() {
    let server = Server::start("", 4);
    let names: Vec<String> = (0..HOT + COLD).map(record_name).collect();

    // Observers subscribe to every record before any write.
    let mut observers = Vec::new();
    for index in 0..OBSERVERS {
        let mut observer = server.connect();
        observer.login(&format!("observer-{index}"));
        for name in &names {
            observer.send(&format!("R|CR|{name}+"));
            observer.expect(&format!("R|A|S|{name}+"));
            let (version, _) = read_record(&mut observer, name);
            assert_eq!(version, 0);
        }
        observers.push(observer);
    }

    // Writers: snapshot, write version+1 with unique data, snapshot again to learn who won.
    let port = server.tcp_port;
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let names = names.clone();
            std::thread::spawn(move || {
                let mut rng = fastrand::Rng::with_seed(writer as u64);
                let mut client = Client::connect(port);
                client.login(&format!("writer-{writer}"));
                let mut accepted = HashMap::<String, u32>::new();
                for round in 0..ROUNDS {
                    let index = if rng.bool() {
                        rng.usize(0..HOT)
                    } else {
                        rng.usize(0..names.len())
                    };
                    let name = &names[index];
                    client.send(&format!("R|SN|{name}+"));
                    let (version, _) = read_record(&mut client, name);
                    let data = format!("{{\"writer\":{writer},\"round\":{round}}}");
                    if rng.u8(0..4) == 0 {
                        client.send(&format!(
                            "R|P|{name}|{}|writer|N{writer}+R|SN|{name}+",
                            version + 1
                        ));
                    } else {
                        client.send(&format!("R|U|{name}|{}|{data}+R|SN|{name}+", version + 1));
                    }
                    // A loser gets VERSION_EXISTS first; read_record skips it.
                    let (after, _) = read_record(&mut client, name);
                    assert!(
                        after > version,
                        "{name}: version went from {version} to {after}"
                    );
                    let _ = &mut accepted;
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().expect("writer thread");
    }

    // Fresh reader: the final state of every record.
    let mut reader = server.connect();
    reader.login("fresh-reader");
    let mut finals = HashMap::new();
    for name in &names {
        reader.send(&format!("R|SN|{name}+"));
        finals.insert(name.clone(), read_record(&mut reader, name));
    }

    // Every observer: gap-free sequences that end at the final version and data.
    let mut sequences: Vec<Seen> = Vec::new();
    for observer in &mut observers {
        let mut seen: Seen = HashMap::new();
        let complete = |seen: &Seen| {
            finals.iter().all(|(name, (version, _))| {
                *version == 0
                    || seen
                        .get(name)
                        .and_then(|updates| updates.last())
                        .is_some_and(|last| last.0 == *version)
            })
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !complete(&seen) && Instant::now() < deadline {
            let Some(message) = observer.next_message(Duration::from_secs(2)) else {
                continue;
            };
            let parts = fields(&message);
            assert!(
                parts[0] == "R" && (parts[1] == "U" || parts[1] == "P"),
                "observer got {:?}",
                readable(&message)
            );
            let payload = parts[4..].join("|");
            seen.entry(parts[2].clone()).or_default().push((
                parts[3].parse().expect("version"),
                parts[1].clone(),
                payload,
            ));
        }
        assert!(
            complete(&seen),
            "an observer did not see every final version"
        );
        sequences.push(seen);
    }
    let mut total_writes = 0;
    for (name, (final_version, final_data)) in &finals {
        let first = sequences[0].get(name).cloned().unwrap_or_default();
        for (index, expected) in first.iter().enumerate() {
            assert_eq!(
                expected.0,
                index as i64 + 1,
                "{name}: versions must go up by one"
            );
        }
        assert_eq!(
            first.len() as i64,
            *final_version,
            "{name}: one update per version"
        );
        if let Some((_, action, payload)) = first.last() {
            if action == "U" {
                assert_eq!(
                    payload, final_data,
                    "{name}: fresh reader reads the last data"
                );
            }
        }
        for other in &sequences[1..] {
            assert_eq!(
                other.get(name).cloned().unwrap_or_default(),
                first,
                "{name}: every observer sees the same sequence"
            );
        }
        total_writes += final_version;
    }
    let hot_writes: i64 = (0..HOT).map(|index| finals[&record_name(index)].0).sum();
    assert!(
        hot_writes > 50,
        "the hot records were contended: {hot_writes} writes"
    );
    assert!(total_writes > 0);
}
