//! The command line of the real binary: `corestream hash` writes a users-file password that
//! `corestream start` then accepts (and the node suite shows the reference servers accept it
//! too), and bad invocations exit with status 2.

mod common;

use common::Server;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn corestream(arguments: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_corestream"))
        .args(arguments)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn corestream");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.as_bytes()).expect("write stdin");
    drop(input);
    child.wait_with_output().expect("corestream exits")
}

fn temp_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "corestream-cli-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn file_auth(users: &Path, hash: &str, iterations: u32, key_length: u32) -> String {
    format!(
        "auth:\n  type: file\n  options:\n    path: {}\n    hash: {hash}\n    iterations: \
         {iterations}\n    keyLength: {key_length}\n",
        users.display()
    )
}

#[test]
fn a_hash_from_the_hash_command_logs_in() {
    let dir = temp_dir();
    let users = dir.join("users.yml");
    let auth = file_auth(&users, "sha512", 1000, 64);
    std::fs::write(dir.join("config.yml"), &auth).expect("write config");
    let config = dir.join("config.yml");
    let config = config.to_str().expect("utf-8 path");
    let argument = corestream(&["hash", "--config", config, "pässword 1"], "");
    assert_eq!(argument.status.code(), Some(0), "{argument:?}");
    let from_argument = String::from_utf8(argument.stdout).expect("utf-8");
    let from_stdin = corestream(&["hash", "-c", config, "-"], "s3cret\n");
    assert_eq!(from_stdin.status.code(), Some(0), "{from_stdin:?}");
    let from_stdin = String::from_utf8(from_stdin.stdout).expect("utf-8");
    // base64 of 64 bytes (88 characters), then the base64 salt (24)
    assert_eq!(from_argument.trim_end().len(), 88 + 24, "{from_argument}");
    std::fs::write(
        &users,
        format!(
            "carol:\n  password: \"{}\"\n  clientData: {{id: 3}}\ndave:\n  password: \"{}\"\n",
            from_argument.trim_end(),
            from_stdin.trim_end()
        ),
    )
    .expect("write users");
    let server = Server::start(&auth, 1);
    let login = |username: &str, password: &str, answer: &str| {
        let mut client = server.connect();
        client.expect("C|CH+");
        client.send("C|CHR|localhost:6021+");
        client.expect("C|A+");
        let request = format!("A|REQ|{{\"username\":\"{username}\",\"password\":\"{password}\"}}+");
        client.send(&request);
        client.expect(answer);
    };
    login("carol", "pässword 1", "A|A|O{\"id\":3}+");
    login("dave", "s3cret", "A|A|L+");
    login("carol", "pässword 2", "A|E|INVALID_AUTH_DATA|U+");
    login("dave", "s3cre", "A|E|INVALID_AUTH_DATA|U+");
}

#[test]
fn hash_refuses_what_it_cannot_do_with_status_2() {
    let dir = temp_dir();
    let clear = dir.join("clear.yml");
    std::fs::write(
        &clear,
        "auth:\n  type: file\n  options:\n    path: ./users.yml\n",
    )
    .expect("write config");
    let open = dir.join("open.yml");
    std::fs::write(&open, "auth:\n  type: none\n").expect("write config");
    let cases: [(&[&str], &str, &str); 5] = [
        (
            &["hash", "--config", clear.to_str().unwrap(), "x"],
            "",
            "clear text",
        ),
        (
            &["hash", "--config", open.to_str().unwrap(), "x"],
            "",
            "not type file",
        ),
        (
            &["hash", "--config", "/nonexistent/config.yml", "x"],
            "",
            "config.yml",
        ),
        (
            &["hash", "--config", clear.to_str().unwrap()],
            "",
            "PASSWORD",
        ),
        (&["hash", "--bogus"], "", "--bogus"),
    ];
    for (arguments, stdin, says) in cases {
        let output = corestream(arguments, stdin);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{arguments:?}: {stderr}");
        assert!(stderr.contains(says), "{arguments:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{arguments:?}");
    }
    let hashed = dir.join("hashed.yml");
    std::fs::write(&hashed, file_auth(&dir.join("users.yml"), "md5", 100, 32)).expect("write");
    let empty = corestream(&["hash", "-c", hashed.to_str().unwrap(), "-"], "\n");
    assert_eq!(empty.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&empty.stderr).contains("empty"));
}

/// (soft, hard) "Max open files" of a process, from /proc.
fn open_file_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .expect("a Max open files line");
    let fields: Vec<&str> = line.split_whitespace().collect();
    (fields[3].to_string(), fields[4].to_string())
}

#[test]
fn start_raises_the_open_files_soft_limit_to_the_hard_limit() {
    // The test process's own soft limit may already be the hard one: start the server with a
    // soft limit of 1024 so the raise is visible.
    let dir = temp_dir();
    let config = dir.join("config.yml");
    let port = common::free_port();
    let http = common::free_port();
    std::fs::write(
        &config,
        format!("host: 127.0.0.1\nport: {http}\ntcpHost: 127.0.0.1\ntcpPort: {port}\n"),
    )
    .expect("write config");
    let script = format!(
        "ulimit -S -n 1024 && exec {} start --config {} --cores 1",
        env!("CARGO_BIN_EXE_corestream"),
        config.display()
    );
    let mut child = Command::new("sh")
        .args(["-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let (soft, hard) = open_file_limits(child.id());
    let _ = child.kill();
    let output = child.wait_with_output().expect("exit");
    assert_eq!(soft, hard, "soft limit {soft}, hard {hard}");
    if hard != "1024" {
        let log = String::from_utf8_lossy(&output.stderr);
        assert!(
            log.contains(&format!("raised from 1024 to the hard limit {hard}")),
            "{log}"
        );
    }
}

#[test]
fn nginx_prints_the_shipped_config_for_the_nodes_and_refuses_bad_values() {
    let output = corestream(
        &[
            "nginx",
            "--nodes",
            "10.9.0.1:6020,10.9.0.2:6020",
            "--listen",
            "8080",
        ],
        "",
    );
    assert_eq!(output.status.code(), Some(0));
    let config = String::from_utf8(output.stdout).expect("utf-8");
    assert!(config.contains("    server 10.9.0.1:6020 max_fails=1 fail_timeout=5s;\n"));
    assert!(config.contains("    server 10.9.0.2:6020 max_fails=1 fail_timeout=5s;\n"));
    // TLS is on by default, with the certificate paths the shipped file names
    assert!(config.contains("    listen 8080 ssl;\n"));
    assert!(config.contains("    ssl_certificate     /etc/ssl/certs/corestream.pem;"));
    assert!(config.contains("upstream corestream_http"));
    let plain = corestream(&["nginx", "--nodes", "10.9.0.1:6020", "--no-tls"], "");
    let plain = String::from_utf8(plain.stdout).expect("utf-8");
    assert!(plain.contains("    listen 80;\n"));
    assert!(plain.contains("    # ssl_certificate     /etc/ssl/certs/corestream.pem;"));
    let kerberos = corestream(
        &["nginx", "--nodes", "10.9.0.1:6020", "--auth", "kerberos"],
        "",
    );
    let kerberos = String::from_utf8(kerberos.stdout).expect("utf-8");
    assert!(kerberos.contains("    listen 443 ssl;\n"));
    assert!(kerberos.contains("        auth_request     /_corestream_auth;"));
    assert!(kerberos.contains("proxy_pass http://127.0.0.1:8089/;"));
    let stream = corestream(&["nginx", "--stream", "--nodes", "10.9.0.1:6021"], "");
    let stream = String::from_utf8(stream.stdout).expect("utf-8");
    assert!(stream.contains("    listen 6021 so_keepalive=60s:10s:3;\n"));
    assert!(stream.contains("    proxy_protocol on; #@proxy-protocol\n"));
    let refused: [(&[&str], &str); 5] = [
        (
            &["nginx", "--nodes", "10.9.0.1:6020;include"],
            "must be one word",
        ),
        (
            &[
                "nginx",
                "--nodes",
                "a:1",
                "--auth",
                "kerberos",
                "--htpasswd",
                "f",
            ],
            "--htpasswd",
        ),
        (
            &["nginx", "--nodes", "a:1", "--auth", "basic"],
            "--htpasswd",
        ),
        (
            &["nginx", "--nodes", "a:1", "--auth-url", "http://x/"],
            "--auth-url",
        ),
        (&["nginx"], "--nodes"),
    ];
    for (arguments, says) in refused {
        let output = corestream(arguments, "");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{arguments:?}: {stderr}");
        assert!(stderr.contains(says), "{arguments:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{arguments:?}");
    }
}
