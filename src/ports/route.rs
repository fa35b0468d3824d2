//! Where a request on the HTTP port goes: a pure decision on the parsed head and the config,
//! made before the connection task does anything (so it can be fuzzed with the head parser and
//! the WebSocket decoder, without sockets).
//!
//! Owns the routing rules: the origin check (`allowAllOrigins` / `origins`), engine.io at
//! `urlPath` (and `engineioEchoPath`), WebSocket upgrades at `urlPath` (and
//! `websocketEchoPath`) with their handshake, the health check, `/metrics`, and the status of
//! everything else. Called by `ports::http` for every request.

use crate::base::config::Config;
use crate::transport::http::Request;
use crate::transport::websocket;

/// Which endpoint of a path: deepstream's, or the echo endpoint kept for conformance testing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Deepstream,
    Echo,
}

/// What to do with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// The request's `Origin` is not in `origins`: 403.
    ForbiddenOrigin,
    /// An engine.io request (`EIO` in the query).
    EngineIo(Endpoint),
    /// A WebSocket upgrade: send `handshake` (the 101 response), then speak WebSocket.
    WebSocket {
        endpoint: Endpoint,
        handshake: String,
    },
    /// `GET`/`HEAD` of `healthCheckPath`.
    Health,
    /// `GET /metrics`.
    Metrics,
    /// A fixed answer. `close`: the connection closes after it (an upgrade that failed).
    Answer {
        status: u16,
        headers: &'static [(&'static str, &'static str)],
        body: &'static [u8],
        close: bool,
    },
}

/// `path` is `configured`, with or without a trailing slash.
pub fn path_matches(path: &str, configured: &str) -> bool {
    path == configured || path.strip_suffix('/') == Some(configured)
}

/// The endpoint at `path`: deepstream's `urlPath`, or the echo path when one is configured.
fn endpoint_at(path: &str, deepstream: &str, echo: Option<&str>) -> Option<Endpoint> {
    if path_matches(path, deepstream) {
        Some(Endpoint::Deepstream)
    } else if echo.is_some_and(|echo| path_matches(path, echo)) {
        Some(Endpoint::Echo)
    } else {
        None
    }
}

fn answer(status: u16, headers: &'static [(&'static str, &'static str)], close: bool) -> Route {
    Route::Answer {
        status,
        headers,
        body: b"",
        close,
    }
}

/// Decides where `request` goes.
pub fn route(config: &Config, request: &Request) -> Route {
    if !config.origins.allows(request.header("origin")) {
        return Route::ForbiddenOrigin;
    }
    if request.query_param("EIO").is_some() {
        let echo = config.engineio_echo_path.as_deref();
        if let Some(endpoint) = endpoint_at(&request.path, &config.url_path, echo) {
            return Route::EngineIo(endpoint);
        }
    }
    if request.is_websocket_upgrade() {
        return upgrade(config, request);
    }
    let get = request.method == "GET";
    if path_matches(&request.path, &config.health_check_path) {
        return match request.method.as_str() {
            "GET" | "HEAD" => Route::Health,
            _ => answer(405, &[("Allow", "GET")], false),
        };
    }
    if request.path == "/metrics" {
        return match get {
            true => Route::Metrics,
            false => answer(405, &[("Allow", "GET")], false),
        };
    }
    if path_matches(&request.path, &config.url_path) {
        // The deepstream path speaks WebSocket only.
        return answer(426, &[("Upgrade", "websocket")], false);
    }
    answer(404, &[], false)
}

/// A WebSocket upgrade: its endpoint and 101 handshake, or why it is refused.
fn upgrade(config: &Config, request: &Request) -> Route {
    let echo = config.websocket_echo_path.as_deref();
    let Some(endpoint) = endpoint_at(&request.path, &config.url_path, echo) else {
        // As deepstream 2.x does for an upgrade on another path.
        return Route::Answer {
            status: 400,
            headers: &[],
            body: b"URL not supported",
            close: true,
        };
    };
    if request.header("sec-websocket-version") != Some(b"13") {
        return answer(426, &[("Sec-WebSocket-Version", "13")], true);
    }
    let Some(key) = request.header("sec-websocket-key") else {
        return answer(400, &[], true);
    };
    let handshake = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\nSec-WebSocket-Version: 13\r\n\r\n",
        websocket::accept_key(key)
    );
    Route::WebSocket {
        endpoint,
        handshake,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::config::Origins;
    use crate::transport::http::{parse_request, Parse};

    fn parsed(head: &str) -> Request {
        match parse_request(head.as_bytes()) {
            Parse::Complete(request) => request,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn routes_by_path_query_and_upgrade() {
        let config = Config {
            websocket_echo_path: Some("/echo".into()),
            ..Config::default()
        };
        let upgrade = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
                       Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
        assert_eq!(
            route(
                &config,
                &parsed("GET /deepstream/?EIO=3&transport=polling HTTP/1.1\r\n\r\n")
            ),
            Route::EngineIo(Endpoint::Deepstream)
        );
        match route(
            &config,
            &parsed(&format!("GET /deepstream HTTP/1.1\r\n{upgrade}\r\n")),
        ) {
            Route::WebSocket {
                endpoint: Endpoint::Deepstream,
                handshake,
            } => assert!(
                handshake.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
                "{handshake}"
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            route(
                &config,
                &parsed(&format!("GET /echo HTTP/1.1\r\n{upgrade}\r\n"))
            ),
            Route::WebSocket {
                endpoint: Endpoint::Echo,
                ..
            }
        ));
        assert!(matches!(
            route(
                &config,
                &parsed(&format!("GET /other HTTP/1.1\r\n{upgrade}\r\n"))
            ),
            Route::Answer { status: 400, .. }
        ));
        assert_eq!(
            route(&config, &parsed("GET /health-check HTTP/1.1\r\n\r\n")),
            Route::Health
        );
        assert!(matches!(
            route(&config, &parsed("POST /metrics HTTP/1.1\r\n\r\n")),
            Route::Answer { status: 405, .. }
        ));
        assert!(matches!(
            route(&config, &parsed("GET /deepstream HTTP/1.1\r\n\r\n")),
            Route::Answer { status: 426, .. }
        ));
        assert!(matches!(
            route(&config, &parsed("GET /nothing HTTP/1.1\r\n\r\n")),
            Route::Answer { status: 404, .. }
        ));
    }

    #[test]
    fn an_origin_outside_the_list_is_refused_first() {
        let config = Config {
            origins: Origins::Only(vec!["https://good.example".into()]),
            ..Config::default()
        };
        assert_eq!(
            route(
                &config,
                &parsed("GET /health-check HTTP/1.1\r\nOrigin: https://evil.example\r\n\r\n")
            ),
            Route::ForbiddenOrigin
        );
        assert_eq!(
            route(
                &config,
                &parsed("GET /health-check HTTP/1.1\r\nOrigin: https://good.example\r\n\r\n")
            ),
            Route::Health
        );
    }
}
