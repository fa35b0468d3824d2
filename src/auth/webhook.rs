//! deepstream's `http` auth: each login is POSTed to `endpointUrl` as
//! `{"authData": {...}, "connectionData": {"remoteAddress": "..."}}`; a status in
//! `permittedStatusCodes` accepts it. A JSON body may carry `username` and `clientData`
//! (`serverData` is kept for the permission rules, as `user.data`);
//! a plain-text body is the username, as deepstream reads it.
//!
//! Runs on a blocking thread (`Authenticator::is_expensive`), with a plain blocking client:
//! one connection per login, `Connection: close`, `requestTimeout` for connect, write and read
//! together. A failed or timed-out call refuses the login and says why in the log.

use super::{AuthOutcome, LoginContext};
use crate::base::config::HttpAuthConfig;
use serde_json::{json, Map, Value};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Instant;

/// Largest response read from the endpoint.
const MAX_RESPONSE: usize = 1024 * 1024;

pub fn authenticate(
    config: &HttpAuthConfig,
    auth_data: &Map<String, Value>,
    context: &LoginContext,
) -> AuthOutcome {
    let remote = context.peer.map(|peer| peer.ip().to_string());
    let body = json!({
        "authData": auth_data,
        "connectionData": {"remoteAddress": remote},
    })
    .to_string();
    match post(config, &body) {
        Ok((status, body)) if config.permitted_status_codes.contains(&status) => {
            accepted(&body, auth_data)
        }
        Ok((status, _)) => {
            crate::info!(
                "http auth: {} answered {status}: login refused",
                config.endpoint_url
            );
            AuthOutcome::Rejected { client_data: None }
        }
        Err(reason) => {
            crate::warn!(
                "http auth: {} failed: {reason}; login refused",
                config.endpoint_url
            );
            AuthOutcome::Rejected { client_data: None }
        }
    }
}

fn accepted(body: &[u8], auth_data: &Map<String, Value>) -> AuthOutcome {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(answer)) => {
            let username = match answer.get("username") {
                Some(Value::String(name)) => name.clone(),
                _ => auth_data
                    .get("username")
                    .and_then(Value::as_str)
                    .unwrap_or("OPEN")
                    .to_string(),
            };
            AuthOutcome::Accepted {
                username,
                client_data: answer.get("clientData").cloned(),
                server_data: answer.get("serverData").cloned(),
            }
        }
        _ => {
            let text = String::from_utf8_lossy(body).trim().to_string();
            AuthOutcome::Accepted {
                username: if text.is_empty() {
                    "OPEN".to_string()
                } else {
                    text
                },
                client_data: None,
                server_data: None,
            }
        }
    }
}

/// POSTs `body` as JSON; returns the status and the response body.
fn post(config: &HttpAuthConfig, body: &str) -> Result<(u16, Vec<u8>), String> {
    let rest = config
        .endpoint_url
        .strip_prefix("http://")
        .ok_or("not an http:// URL")?;
    let (authority, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, "/"),
    };
    let address = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let deadline = Instant::now() + config.request_timeout;
    let target = address
        .to_socket_addrs()
        .map_err(|error| format!("cannot resolve {address}: {error}"))?
        .next()
        .ok_or_else(|| format!("{address} resolves to nothing"))?;
    let mut stream = TcpStream::connect_timeout(&target, config.request_timeout)
        .map_err(|error| format!("connect: {error}"))?;
    let remaining = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(std::time::Duration::from_millis(1))
    };
    stream
        .set_write_timeout(Some(remaining()))
        .map_err(|error| error.to_string())?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|error| format!("write: {error}"))?;
    let mut response = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if Instant::now() >= deadline {
            return Err("timed out".into());
        }
        stream
            .set_read_timeout(Some(remaining()))
            .map_err(|error| error.to_string())?;
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(read) => {
                response.extend_from_slice(&chunk[..read]);
                if response.len() > MAX_RESPONSE {
                    return Err("response too large".into());
                }
                if let Some(parsed) = complete(&response)? {
                    return Ok(parsed);
                }
            }
            Err(error) => return Err(format!("read: {error}")),
        }
    }
    complete(&response)?.ok_or_else(|| "the response ended early".to_string())
}

/// A whole response in `bytes`: (status, body). Bodies framed by Content-Length, by chunks, or
/// by the end of the connection (the caller calls again at EOF).
fn complete(bytes: &[u8]) -> Result<Option<(u16, Vec<u8>)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let head = match response.parse(bytes) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(error) => return Err(format!("bad response: {error}")),
    };
    let status = response.code.unwrap_or(0);
    let header = |name: &str| {
        response
            .headers
            .iter()
            .find(|header| header.name.eq_ignore_ascii_case(name))
            .map(|header| {
                String::from_utf8_lossy(header.value)
                    .trim()
                    .to_ascii_lowercase()
            })
    };
    let body = &bytes[head..];
    if let Some(length) = header("content-length") {
        let length: usize = length.parse().map_err(|_| "bad Content-Length")?;
        return Ok((body.len() >= length).then(|| (status, body[..length].to_vec())));
    }
    if header("transfer-encoding").is_some_and(|coding| coding.contains("chunked")) {
        return dechunk(body).map(|decoded| decoded.map(|body| (status, body)));
    }
    Ok(None)
}

fn dechunk(mut body: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut out = Vec::new();
    loop {
        let Some(line_end) = body.windows(2).position(|pair| pair == b"\r\n") else {
            return Ok(None);
        };
        let size_text = String::from_utf8_lossy(&body[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| "bad chunk size")?;
        let start = line_end + 2;
        if size == 0 {
            return Ok(Some(out));
        }
        // A size near usize::MAX must not wrap around: it can never fit in MAX_RESPONSE.
        let end = start
            .checked_add(size)
            .and_then(|end| end.checked_add(2))
            .filter(|end| *end <= MAX_RESPONSE + start)
            .ok_or("chunk size too large")?;
        if body.len() < end {
            return Ok(None);
        }
        out.extend_from_slice(&body[start..start + size]);
        body = &body[start + size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_framed_by_length_or_chunks() {
        let whole = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nalice";
        assert_eq!(complete(whole), Ok(Some((200, b"alice".to_vec()))));
        assert_eq!(complete(&whole[..whole.len() - 1]), Ok(None));
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nali\r\n2\r\nce\r\n0\r\n\r\n";
        assert_eq!(complete(chunked), Ok(Some((200, b"alice".to_vec()))));
        assert!(complete(b"garbage\r\n\r\n").is_err());
        // a chunk size that would overflow the end offset is an error, not a panic
        let huge = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nab";
        assert!(complete(huge).is_err());
    }

    #[test]
    fn the_answer_names_the_user() {
        let data = Map::new();
        assert_eq!(
            accepted(br#"{"username":"bob","clientData":{"a":1}}"#, &data),
            AuthOutcome::Accepted {
                username: "bob".into(),
                client_data: Some(json!({"a": 1})),
                server_data: None
            }
        );
        assert_eq!(
            accepted(b"carol", &data),
            AuthOutcome::Accepted {
                username: "carol".into(),
                client_data: None,
                server_data: None
            }
        );
    }

    #[test]
    fn a_real_endpoint_is_called_with_the_login() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().expect("accept");
            let mut request = Vec::new();
            let mut chunk = [0u8; 4096];
            while !String::from_utf8_lossy(&request).contains("\"remoteAddress\"") {
                let read = stream.read(&mut chunk).expect("read");
                request.extend_from_slice(&chunk[..read]);
            }
            let body = br#"{"username":"from-hook"}"#;
            let head = format!(
                "HTTP/1.1 201 Created\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).expect("write");
            stream.write_all(body).expect("write");
            String::from_utf8_lossy(&request).to_string()
        });
        let config = HttpAuthConfig {
            endpoint_url: format!("http://127.0.0.1:{port}/check"),
            permitted_status_codes: vec![200, 201],
            request_timeout: std::time::Duration::from_secs(2),
        };
        let mut auth_data = Map::new();
        auth_data.insert("token".into(), json!("t0k3n"));
        let context = LoginContext {
            peer: Some("10.1.2.3:4567".parse().expect("addr")),
            proxy: None,
        };
        assert_eq!(
            authenticate(&config, &auth_data, &context),
            AuthOutcome::Accepted {
                username: "from-hook".into(),
                client_data: None,
                server_data: None
            }
        );
        let request = server.join().expect("server");
        assert!(request.starts_with("POST /check HTTP/1.1\r\n"), "{request}");
        assert!(
            request.ends_with(
                r#"{"authData":{"token":"t0k3n"},"connectionData":{"remoteAddress":"10.1.2.3"}}"#
            ),
            "{request}"
        );
        // nobody listening: refused, not a hang
        let closed = HttpAuthConfig {
            endpoint_url: format!("http://127.0.0.1:{}/", port),
            ..config
        };
        assert_eq!(
            authenticate(&closed, &auth_data, &context),
            AuthOutcome::Rejected { client_data: None }
        );
    }
}
