//! Hostile record input (PROTOCOL.md §3.4): deep nesting, huge arrays, bad paths, non-numeric
//! versions and versions near the integer limits get the documented error, never a panic and
//! never unbounded memory; the record keeps its last good state and the server keeps serving.

mod common;

use common::Server;

#[test]
fn hostile_record_input_gets_errors_and_the_record_survives() {
    let mut server = Server::start("", 2);
    let mut client = server.connect();
    client.login("hostile");
    client.send("R|CR|h/x+");
    client.expect("R|A|S|h/x+R|R|h/x|0|{}+");
    client.send(r#"R|U|h/x|1|{"ok":true}+"#);

    // Deeper than simd-json's 1024 levels.
    let deep = format!("{}{}", "[".repeat(2000), "]".repeat(2000));
    client.send(&format!("R|U|h/x|2|{deep}+"));
    client.expect(&format!("R|E|INVALID_MESSAGE_DATA|R|U|h/x|2|{deep}+"));

    // An array index far past the end would allocate without bound in deepstream.
    client.send("R|P|h/x|2|list[99999999]|T+");
    client.expect("R|E|INVALID_MESSAGE_DATA|array index 99999999: a patch may add at most 10000 array elements+");

    // Paths that are empty or too long.
    client.send("R|P|h/x|2|[].]|T+");
    client.expect("R|E|INVALID_MESSAGE_DATA|empty path+");
    let long_path = vec!["a"; 100].join(".");
    client.send(&format!("R|P|h/x|2|{long_path}|T+"));
    client.expect("R|E|INVALID_MESSAGE_DATA|path has more than 64 parts+");

    // Unknown type letters and bad typed JSON.
    client.send("R|P|h/x|2|a|Qx+");
    client.expect("R|E|INVALID_MESSAGE_DATA|Error: Unknown type:Qx+");

    // Versions: not a number, beyond i64, at the i64 limit, negative.
    client.send("R|U|h/x|abc|{}+");
    client.expect("R|E|INVALID_VERSION|h/x|NaN+");
    client.send("R|U|h/x|99999999999999999999|{}+");
    client.expect("R|E|INVALID_VERSION|h/x|NaN+");
    client.send("R|U|h/x|9223372036854775807|{}+");
    client.expect(r#"R|E|VERSION_EXISTS|h/x|1|{"ok":true}+"#);
    client.send("R|U|h/x|-5|{}+");
    client.expect(r#"R|E|VERSION_EXISTS|h/x|1|{"ok":true}+"#);

    // Too few fields, and an update for a record that was never created.
    client.send("R|U|h/x|2+");
    client.expect("R|E|INVALID_MESSAGE_DATA|h/x+");
    client.send("R|U|h/never|1|{}+");
    client.expect("R|E|RECORD_UPDATE_ERROR|1+");

    // A large but legal array is accepted (bounded by maxMessageSize).
    let big: Vec<String> = (0..50_000).map(|n| n.to_string()).collect();
    let big = format!("[{}]", big.join(","));
    client.send(&format!("R|U|h/x|2|{big}+"));
    client.send("R|P|h/x|3|[50000]|Sappended+");
    client.send("R|H|h/x+");
    client.expect("R|H|h/x|T+");
    client.send("R|SN|h/x+");
    client.expect(&format!(
        "R|R|h/x|3|{}+",
        big.replace(']', ",\"appended\"]")
    ));
    assert!(server.is_alive());
}
