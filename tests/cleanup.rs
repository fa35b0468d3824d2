//! Disconnect clean-up: thousands of connect / subscribe / listen / accept / disconnect cycles
//! from many client threads against a server with four cores (so names, listeners and sessions
//! spread over several owner cores), many of them cut off mid-flight. Afterwards every core's
//! registries must be empty: no session, event or record subscription, listener, provider,
//! discovery, listen timer, RPC provider or RPC call. (Records themselves stay: they are data.)

mod common;

use common::{free_port, wire, Client};
use corestream::base::config::{Config, LogLevel};
use corestream::server;
use std::io::Write;
use std::time::{Duration, Instant};

#[test]
fn closed_connections_leave_nothing_behind_on_any_core() {
    corestream::logging::set_level(LogLevel::Warn);
    let port = free_port();
    let config = Config {
        tcp_address: format!("127.0.0.1:{port}").parse().expect("address"),
        http_enabled: false,
        cores: Some(4),
        listen_response_timeout: Duration::from_millis(200),
        ..Config::default()
    };
    let handle = server::start(config).expect("server starts");
    let threads: Vec<_> = (0..8)
        .map(|thread| {
            std::thread::spawn(move || {
                let mut rng = fastrand::Rng::with_seed(thread);
                for cycle in 0..250u32 {
                    let mut client = Client::connect(port);
                    client.login(&format!("user-{thread}-{cycle}"));
                    let mut unit = String::new();
                    for _ in 0..rng.usize(1..6) {
                        unit.push_str(&format!("E|S|cleanup/{}+", rng.u32(0..40)));
                    }
                    if rng.bool() {
                        unit.push_str(&format!("E|L|cleanup/{}.*+", rng.u32(0..4)));
                    }
                    if rng.u8(0..4) == 0 {
                        unit.push_str(&format!("E|LA|cleanup/.*|cleanup/{}+", rng.u32(0..40)));
                    }
                    unit.push_str(&format!("E|EVT|cleanup/{}|Sx+", rng.u32(0..40)));
                    // Records: subscriptions, record listeners, writes.
                    unit.push_str(&format!("R|CR|rec/{}+", rng.u32(0..40)));
                    if rng.u8(0..3) == 0 {
                        unit.push_str(&format!("R|L|rec/{}.*+", rng.u32(0..4)));
                    }
                    unit.push_str(&format!("R|P|rec/{}|1|a|N1+", rng.u32(0..40)));
                    // RPC: providers, and calls in flight when the connection drops.
                    if rng.bool() {
                        unit.push_str(&format!("P|S|rpc/{}+", rng.u32(0..10)));
                    }
                    unit.push_str(&format!("P|REQ|rpc/{}|{thread}-{cycle}|U+", rng.u32(0..10)));
                    client.send(&unit);
                    match cycle % 3 {
                        // Wait for the first ack, then leave.
                        0 => {
                            let mut buffer = [0u8; 64];
                            let _ = client
                                .stream
                                .set_read_timeout(Some(Duration::from_millis(200)));
                            let _ = std::io::Read::read(&mut client.stream, &mut buffer);
                        }
                        // Leave at once, with requests in flight.
                        1 => {}
                        // Half a message, then leave.
                        _ => {
                            let _ = client.stream.write_all(&wire("E|S|cleanup/half"));
                        }
                    }
                    client.close();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("client thread");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stats = handle.stats();
    while Instant::now() < deadline {
        stats = handle.stats();
        let busy = stats.iter().any(|core| {
            core.sessions > 0
                || core.record_subscriptions != Default::default()
                || core.rpc != (0, 0, 0)
                || core.events.names > 0
                || core.events.subscriptions > 0
                || core.events.listeners > 0
                || core.events.providers > 0
                || core.events.discoveries > 0
                || core.listen_timers > 0
        });
        if !busy {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(stats.len(), 4, "every core answered");
    let accepted: u64 = stats.iter().map(|core| core.connections_accepted).sum();
    assert_eq!(accepted, 2000);
    assert!(
        stats.iter().filter(|core| core.messages_in > 0).count() >= 2,
        "connections landed on several cores: {stats:?}"
    );
    for core in &stats {
        assert_eq!(core.sessions, 0, "{core:?}");
        assert_eq!(core.events, Default::default(), "{core:?}");
        assert_eq!(core.listen_timers, 0, "{core:?}");
        assert_eq!(core.record_subscriptions, Default::default(), "{core:?}");
        assert_eq!(core.rpc, (0, 0, 0), "no provider or call left: {core:?}");
    }
    handle.shutdown();
}
