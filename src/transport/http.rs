//! HTTP/1.1 for the HTTP port: request heads parsed with httparse under limits, query strings,
//! header tokens, and response building. Pure; the HTTP connection task (`server`) routes
//! requests (WebSocket upgrade, engine.io, health check, metrics) and owns the socket.

/// Most bytes a request head may take before the request is refused with 413.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Most header lines a request may have (431 past that).
pub const MAX_HEADERS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The path without its query string.
    pub path: String,
    /// The query string without the `?`.
    pub query: String,
    pub minor_version: u8,
    headers: Vec<(String, Vec<u8>)>,
    /// Bytes of the head, blank line included.
    pub head_length: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Parse {
    Complete(Request),
    /// More bytes are needed.
    Partial,
    /// Refuse the request with this status and close.
    Refuse(u16),
}

/// Parses a request head from the start of `bytes`.
pub fn parse_request(bytes: &[u8]) -> Parse {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(bytes) {
        Ok(httparse::Status::Complete(head_length)) => {
            let target = request.path.unwrap_or("/");
            let (path, query) = match target.split_once('?') {
                Some((path, query)) => (path, query),
                None => (target, ""),
            };
            Parse::Complete(Request {
                method: request.method.unwrap_or("").to_string(),
                path: path.to_string(),
                query: query.to_string(),
                minor_version: request.version.unwrap_or(1),
                headers: request
                    .headers
                    .iter()
                    .map(|header| (header.name.to_ascii_lowercase(), header.value.to_vec()))
                    .collect(),
                head_length,
            })
        }
        Ok(httparse::Status::Partial) if bytes.len() >= MAX_HEAD_BYTES => Parse::Refuse(413),
        Ok(httparse::Status::Partial) => Parse::Partial,
        Err(httparse::Error::TooManyHeaders) => Parse::Refuse(431),
        Err(_) => Parse::Refuse(400),
    }
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_slice())
    }

    /// Does a comma-separated header contain `token` (case-insensitive)?
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(key, _)| key.eq_ignore_ascii_case(name))
            .any(|(_, value)| {
                String::from_utf8_lossy(value)
                    .split(',')
                    .any(|part| part.trim().eq_ignore_ascii_case(token))
            })
    }

    /// A query parameter, percent-decoding not needed for the values this server reads.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key == name).then_some(value)
        })
    }

    /// `Content-Length` (0 when absent); `None` for a malformed value, or for several
    /// `Content-Length` headers (a request smuggling vector when they disagree).
    pub fn content_length(&self) -> Option<usize> {
        let mut values = self
            .headers
            .iter()
            .filter(|(key, _)| key == "content-length")
            .map(|(_, value)| value);
        let Some(value) = values.next() else {
            return Some(0);
        };
        if values.next().is_some() {
            return None;
        }
        let text = std::str::from_utf8(value).ok()?.trim();
        // Digits only: "+5" or "0x10" are not lengths.
        if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
            return None;
        }
        text.parse().ok()
    }

    /// HTTP/1.1 keeps the connection unless told otherwise; HTTP/1.0 closes unless told.
    pub fn keep_alive(&self) -> bool {
        if self.minor_version == 0 {
            self.has_token("connection", "keep-alive")
        } else {
            !self.has_token("connection", "close")
        }
    }

    pub fn is_websocket_upgrade(&self) -> bool {
        self.has_token("upgrade", "websocket") && self.has_token("connection", "upgrade")
    }
}

/// The reason phrase of the statuses this server sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// A complete response with `Content-Length`.
pub fn response(status: u16, headers: &[(&str, &str)], body: &[u8], keep_alive: bool) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} {}\r\n", reason(status)).into_bytes();
    for (name, value) in headers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_websocket_upgrade() {
        let head = b"GET /deepstream?x=1 HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: abc\r\n\r\nrest";
        let Parse::Complete(request) = parse_request(head) else {
            panic!("complete")
        };
        assert_eq!(request.path, "/deepstream");
        assert_eq!(request.query_param("x"), Some("1"));
        assert!(request.is_websocket_upgrade());
        assert_eq!(request.header("SEC-WEBSOCKET-KEY"), Some(&b"abc"[..]));
        assert_eq!(&head[request.head_length..], b"rest");
        assert!(request.keep_alive());
    }

    #[test]
    fn partial_oversized_and_malformed() {
        assert_eq!(parse_request(b"GET / HTTP/1.1\r\nHost:"), Parse::Partial);
        let mut huge = b"GET / HTTP/1.1\r\nX: ".to_vec();
        huge.extend(vec![b'a'; MAX_HEAD_BYTES]);
        assert_eq!(parse_request(&huge), Parse::Refuse(413));
        assert_eq!(
            parse_request(b"\x00\x01 nonsense\r\n\r\n"),
            Parse::Refuse(400)
        );
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for index in 0..100 {
            many.extend(format!("X-{index}: y\r\n").into_bytes());
        }
        many.extend(b"\r\n");
        assert_eq!(parse_request(&many), Parse::Refuse(431));
    }

    #[test]
    fn responses() {
        let out = response(200, &[("Content-Type", "text/plain")], b"ok", false);
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
        );
    }
}
