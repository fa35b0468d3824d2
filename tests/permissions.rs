//! Permission rules against the real binary: what it refuses at start (exit status 2 and a
//! message naming the file, section and path), the exact bytes of a denial over TCP for rules
//! checked on the session's core and on the record's owner core (two cores, so names land on
//! both), and cross-references to records owned by either core. The scenarios against the reference servers are the node suite
//! (scripts/permission-tests.sh).

mod common;

use common::Server;
use std::process::Command;

fn temp_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "corestream-permissions-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Runs `corestream start` on a config using `rules` (and `extra` config lines); the exit
/// status and stderr when it exits within a few seconds (a server that keeps running fails).
fn refused(rules: &str, extra: &str) -> (Option<i32>, String) {
    let dir = temp_dir();
    std::fs::write(dir.join("rules.yml"), rules).expect("rules");
    std::fs::write(
        dir.join("config.yml"),
        format!(
            "host: 127.0.0.1\nport: 0\ntcpHost: 127.0.0.1\ntcpPort: 0\nlogLevel: WARN\n\
             permission: {{type: config, options: {{path: rules.yml}}}}\n{extra}"
        ),
    )
    .expect("config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_corestream"))
        .args(["start", "--config"])
        .arg(dir.join("config.yml"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("corestream started with rules it should refuse:\n{rules}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("output");
    let _ = std::fs::remove_dir_all(&dir);
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// corestream on two cores with `rules` as its permissions file (in the returned folder).
fn server_with_rules(rules: &str) -> (Server, std::path::PathBuf) {
    server_on_cores(rules, 2)
}

/// corestream on `cores` cores with `rules` as its permissions file (in the returned folder).
fn server_on_cores(rules: &str, cores: usize) -> (Server, std::path::PathBuf) {
    let dir = temp_dir();
    let path = dir.join("rules.yml");
    std::fs::write(&path, rules).expect("rules");
    let permission = format!(
        "permission: {{type: config, options: {{path: {}}}}}",
        path.display()
    );
    (Server::start(&permission, cores), dir)
}

const BASE: &str =
    "record: {'*': {create: true, read: true, write: true, delete: true, listen: true}}\n\
                    event: {'*': {publish: true, subscribe: true, listen: true}}\n\
                    rpc: {'*': {provide: true, request: true}}\n";

#[test]
fn rules_files_it_cannot_honour_are_refused_at_start_with_the_place() {
    for (rules, extra, expected) in [
        (
            BASE.replace("publish: true", "publish: 'new Date() > 0'"),
            "",
            "rule can't contain the new keyword",
        ),
        (
            BASE.replace("rpc: {'*'", "rpc: {'a'"),
            "",
            "missing root entry \"*\" for section rpc",
        ),
    ] {
        let (status, stderr) = refused(&rules, extra);
        assert_eq!(status, Some(2), "{rules}\n{stderr}");
        assert!(stderr.contains("rules.yml: "), "names the file: {stderr}");
        assert!(
            stderr.contains(expected),
            "expected {expected:?} in:\n{stderr}"
        );
    }
}

#[test]
fn denials_carry_the_message_fields_from_the_session_core_and_the_owner_core() {
    let rules =
        "record:\n  '*': {create: true, read: true, write: true, delete: true, listen: true}\n  \
                 'user/$id': {write: 'user.id == $id', delete: 'user.id == $id'}\n  \
                 'mine/$id/*': {create: 'user.id == $id'}\n\
                 event:\n  '*': {publish: true, subscribe: true, listen: true}\n  \
                 'price/*': {publish: 'data.price > 0'}\n\
                 rpc: {'*': {provide: true, request: true}}\n";
    let (server, dir) = server_with_rules(rules);
    let mut alice = server.connect();
    alice.login("alice");
    let mut bob = server.connect();
    bob.login("bob");
    // event data rule, on the session's core
    bob.send("E|EVT|price/x|O{\"price\":-1}+");
    bob.expect("E|E|MESSAGE_DENIED|price/x|EVT|O{\"price\":-1}+");
    // ownership, on the owner core (names on both cores)
    for name in ["user/alice", "user/alice-2", "user/alice-3"] {
        let owner = name.trim_start_matches("user/");
        let mut owner_client = server.connect();
        owner_client.login(owner);
        owner_client.send(&format!("R|CR|{name}+"));
        owner_client.expect(&format!("R|A|S|{name}+"));
        owner_client.expect(&format!("R|R|{name}|0|{{}}+"));
        bob.send(&format!("R|U|{name}|1|{{\"by\":\"bob\"}}+"));
        bob.expect(&format!(
            "R|E|MESSAGE_DENIED|{name}|U|1|{{\"by\":\"bob\"}}+"
        ));
        bob.send(&format!("R|D|{name}+"));
        bob.expect(&format!("R|E|MESSAGE_DENIED|{name}|D+"));
        owner_client.send(&format!("R|U|{name}|1|{{\"by\":\"{owner}\"}}+"));
        owner_client.send(&format!("R|SN|{name}+"));
        owner_client.expect(&format!("R|R|{name}|1|{{\"by\":\"{owner}\"}}+"));
    }
    // create check after R|CR of a missing record (the record handler's own check)
    bob.send("R|CR|mine/alice/a+");
    bob.expect("R|E|MESSAGE_DENIED|mine/alice/a|C+");
    alice.send("R|CR|mine/alice/a+");
    alice.expect("R|A|S|mine/alice/a+");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cross_references_read_records_owned_by_any_core() {
    let rules =
        "record:\n  '*': {create: true, read: true, write: true, delete: true, listen: true}\n  \
                 'doc/$id': {write: \"_('settings/' + $id).open == true\"}\n\
                 event:\n  '*': {publish: true, subscribe: true, listen: true}\n  \
                 'gated/$id': {publish: \"_('settings/' + $id).open == true\"}\n\
                 rpc: {'*': {provide: true, request: true}}\n";
    let (server, dir) = server_with_rules(rules);
    let mut admin = server.connect();
    admin.login("admin");
    let mut user = server.connect();
    user.login("user");
    // several ids, so the settings records and the gated names land on both cores
    for id in ["a", "b", "c", "d"] {
        user.send(&format!("E|EVT|gated/{id}|Sx+"));
        user.expect(&format!("E|E|MESSAGE_PERMISSION_ERROR|gated/{id}|EVT|Sx+"));
        admin.send(&format!("R|CR|settings/{id}+"));
        admin.expect(&format!("R|A|S|settings/{id}+"));
        admin.expect(&format!("R|R|settings/{id}|0|{{}}+"));
        admin.send(&format!("R|U|settings/{id}|1|{{\"open\":false}}+"));
        // (applied on its owner core once the snapshot behind it is answered)
        admin.send(&format!("R|SN|settings/{id}+"));
        admin.expect(&format!("R|R|settings/{id}|1|{{\"open\":false}}+"));
        user.send(&format!("E|EVT|gated/{id}|Sx+"));
        user.expect(&format!("E|E|MESSAGE_DENIED|gated/{id}|EVT|Sx+"));
        user.send(&format!("R|CR|doc/{id}+"));
        user.expect(&format!("R|A|S|doc/{id}+"));
        user.expect(&format!("R|R|doc/{id}|0|{{}}+"));
        user.send(&format!("R|U|doc/{id}|1|{{\"v\":1}}+"));
        user.expect(&format!("R|E|MESSAGE_DENIED|doc/{id}|U|1|{{\"v\":1}}+"));
        admin.send(&format!("R|U|settings/{id}|2|{{\"open\":true}}+"));
        admin.send(&format!("R|SN|settings/{id}+"));
        admin.expect(&format!("R|R|settings/{id}|2|{{\"open\":true}}+"));
        admin.send(&format!("E|S|gated/{id}+"));
        admin.expect(&format!("E|A|S|gated/{id}+"));
        user.send(&format!("E|EVT|gated/{id}|Sx+"));
        admin.expect(&format!("E|EVT|gated/{id}|Sx+"));
        user.send(&format!("R|U|doc/{id}|1|{{\"v\":1}}+"));
        user.send(&format!("R|SN|doc/{id}+"));
        user.expect(&format!("R|R|doc/{id}|1|{{\"v\":1}}+"));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_cached_rule_result_belongs_to_one_login() {
    // `user.id == $owner` reads only the name and the user: each core caches its result per
    // login, so alice's allowed subscription must never answer bob's, in either order (one
    // core, so both sessions share its cache).
    let rules =
        "record: {'*': {create: true, read: true, write: true, delete: true, listen: true}}\n\
                 event:\n  '*': {publish: true, subscribe: true, listen: true}\n  \
                 'private/$owner/*': {subscribe: 'user.id == $owner'}\n\
                 rpc: {'*': {provide: true, request: true}}\n";
    let (server, dir) = server_on_cores(rules, 1);
    let mut alice = server.connect();
    alice.login("alice");
    let mut bob = server.connect();
    bob.login("bob");
    for round in 0..3 {
        for name in ["private/alice/a", "private/alice/b", "private/alice/c"] {
            let (first, second) = if round % 2 == 0 {
                (&mut alice, &mut bob)
            } else {
                (&mut bob, &mut alice)
            };
            for client in [first, second] {
                client.send(&format!("E|S|{name}+"));
            }
            alice.expect(&format!("E|A|S|{name}+"));
            bob.expect(&format!("E|E|MESSAGE_DENIED|{name}|S+"));
            alice.send(&format!("E|US|{name}+"));
            alice.expect(&format!("E|A|US|{name}+"));
        }
    }
    // a second login of alice is a user of its own, allowed on its own merits
    let mut alice_again = server.connect();
    alice_again.login("alice");
    alice_again.send("E|S|private/alice/a+");
    alice_again.expect("E|A|S|private/alice/a+");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_cache_evacuation_interval_below_one_millisecond_is_refused() {
    let dir = temp_dir();
    std::fs::write(dir.join("rules.yml"), BASE).expect("rules");
    let config = format!(
        "host: 127.0.0.1\nport: 0\ntcpHost: 127.0.0.1\ntcpPort: 0\nlogLevel: WARN\n\
         permission: {{type: config, options: {{path: {}, cacheEvacuationInterval: 0}}}}\n",
        dir.join("rules.yml").display()
    );
    let (status, stderr) = common::run_to_exit(&config);
    assert_eq!(status, Some(2), "{stderr}");
    assert!(
        stderr.contains("permission.options.cacheEvacuationInterval"),
        "names the key: {stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
