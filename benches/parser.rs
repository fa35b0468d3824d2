//! Criterion micro-benchmark of the message splitter/parser on a realistic mix of units:
//! event emits with typed payloads, record updates and patches with JSON bodies, acks, RPC
//! requests, and a few large payloads. Reports bytes per second through `messages()` with every
//! field of every message visited (what a session does before routing).

use corestream::protocol::actions::Dialect;
use corestream::protocol::message::{messages, Parsed};
use corestream::transport::tcp::{Frame, TcpFramer};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

use corestream::protocol::message::from_capture_notation as wire;

fn realistic_mix() -> Vec<u8> {
    let mut unit = Vec::new();
    let big = format!(
        "O{{\"rows\":[{}]}}",
        vec!["{\"id\":1,\"px\":101.25,\"qty\":300}"; 40].join(",")
    );
    for index in 0..200 {
        unit.extend(wire(&format!(
            "E|EVT|prices/EURUSD|O{{\"bid\":1.0842{index},\"ask\":1.0844}}+"
        )));
        unit.extend(wire(&format!("R|P|orders/{index}|{index}|status|Sfilled+")));
        unit.extend(wire(&format!(
            "R|U|user/{index}|7|{{\"name\":\"alice\",\"tags\":[\"a\",\"b\"],\"n\":{index}}}+"
        )));
        unit.extend(wire("E|A|S|news/sport+"));
        unit.extend(wire(&format!(
            "P|REQ|add-two|mwuh6cu7-1lo38hzc{index}|O{{\"a\":1,\"b\":2}}+"
        )));
        if index % 20 == 0 {
            unit.extend(wire(&format!("E|EVT|bulk|{big}+")));
        }
    }
    unit
}

fn parse_all(unit: &[u8]) -> usize {
    let mut fields = 0;
    for parsed in messages(unit, Dialect::V1) {
        if let Parsed::Message(message) = parsed {
            fields += message.topic.len() + message.action_raw.len();
            for field in message.data_fields() {
                fields += field.len();
            }
        }
    }
    fields
}

fn splitter(criterion: &mut Criterion) {
    let unit = realistic_mix();
    let mut group = criterion.benchmark_group("parser");
    group.throughput(Throughput::Bytes(unit.len() as u64));
    group.bench_function("split and visit every field", |bencher| {
        bencher.iter(|| parse_all(black_box(&unit)))
    });
    group.bench_function("tcp framing in 1500-byte reads, then parse", |bencher| {
        bencher.iter(|| {
            let mut framer = TcpFramer::new(1 << 20);
            let mut total = 0;
            for chunk in unit.chunks(1500) {
                if let Some(Frame::Unit(frame)) = framer.push(black_box(chunk)) {
                    total += parse_all(&frame);
                }
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, splitter);
criterion_main!(benches);
