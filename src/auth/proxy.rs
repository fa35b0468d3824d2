//! proxy-header auth: the user that a trusted proxy (nginx with basic auth, `auth_request` or
//! Kerberos) authenticated, passed in a request header.
//!
//! Called by the HTTP port when a WebSocket upgrade or an engine.io handshake opens a session.
//! The header is believed only when the TCP peer is one of `trustedProxies`; from any other
//! address it is ignored (the login is then refused), so a client that connects directly cannot
//! claim a user by sending the header itself.

use crate::base::config::{AuthConfig, Config};
use serde_json::Value;
use std::net::SocketAddr;

/// The user a trusted proxy vouched for.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyIdentity {
    pub username: String,
    /// From the data header: a JSON object, sent back typed in `A|A|<clientData>`.
    pub client_data: Option<Value>,
}

/// Who sent a request that opens a session.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Caller {
    /// The client's address: the socket's peer, or behind a trusted proxy the address it
    /// forwarded (the last entry of `X-Forwarded-For`, which nginx sets to `$remote_addr`).
    pub address: Option<SocketAddr>,
    /// The user a trusted proxy authenticated (proxy-header auth).
    pub identity: Option<ProxyIdentity>,
}

impl Caller {
    /// The username a trusted proxy named for this request.
    pub fn user(&self) -> Option<&str> {
        self.identity
            .as_ref()
            .map(|identity| identity.username.as_str())
    }
}

/// The caller of a request from `peer` with these headers.
pub fn caller<'a>(
    config: &Config,
    peer: Option<SocketAddr>,
    header: impl Fn(&str) -> Option<&'a [u8]> + Copy,
) -> Caller {
    Caller {
        address: forwarded_address(config, peer, header).or(peer),
        identity: identity(config, peer, header),
    }
}

/// The client address a trusted proxy forwarded (port 0: the proxy does not say).
fn forwarded_address<'a>(
    config: &Config,
    peer: Option<SocketAddr>,
    header: impl Fn(&str) -> Option<&'a [u8]>,
) -> Option<SocketAddr> {
    let peer = peer?;
    if !config.trusted_proxies.contains(&peer.ip()) {
        return None;
    }
    let forwarded = std::str::from_utf8(header("x-forwarded-for")?).ok()?;
    let last = forwarded.rsplit(',').next()?.trim();
    let address: std::net::IpAddr = last.parse().ok()?;
    Some(SocketAddr::new(address, 0))
}

/// The proxy's word for a request from `peer`, or `None` (not proxy-header auth, an untrusted
/// peer, no or an empty username header). A data header that is not a JSON object is ignored
/// with a warning rather than failing the login.
pub fn identity<'a>(
    config: &Config,
    peer: Option<SocketAddr>,
    header: impl Fn(&str) -> Option<&'a [u8]>,
) -> Option<ProxyIdentity> {
    let AuthConfig::ProxyHeader(options) = &config.auth else {
        return None;
    };
    let peer = peer?;
    if !config.trusted_proxies.contains(&peer.ip()) {
        return None;
    }
    let username = std::str::from_utf8(header(&options.header)?).ok()?.trim();
    if username.is_empty() {
        return None;
    }
    let client_data = header(&options.data_header).and_then(|bytes| {
        match serde_json::from_slice::<Value>(bytes) {
            Ok(value @ Value::Object(_)) => Some(value),
            _ => {
                crate::warn!(
                    "proxy-header auth: the {} header from {peer} is not a JSON object: ignored",
                    options.data_header
                );
                None
            }
        }
    });
    Some(ProxyIdentity {
        username: username.to_string(),
        client_data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::config::ProxyHeaderAuthConfig;

    fn config() -> Config {
        Config {
            auth: AuthConfig::ProxyHeader(ProxyHeaderAuthConfig {
                header: "x-forwarded-user".into(),
                data_header: "x-forwarded-user-data".into(),
            }),
            trusted_proxies: vec!["127.0.0.2".parse().expect("ip")],
            ..Config::default()
        }
    }

    fn headers(name: &str) -> Option<&'static [u8]> {
        match name {
            "x-forwarded-user" => Some(b"alice"),
            "x-forwarded-user-data" => Some(b"{\"role\":\"admin\"}"),
            _ => None,
        }
    }

    #[test]
    fn only_a_trusted_proxy_is_believed() {
        let trusted: SocketAddr = "127.0.0.2:5000".parse().expect("addr");
        let direct: SocketAddr = "127.0.0.1:5000".parse().expect("addr");
        assert_eq!(
            identity(&config(), Some(trusted), headers),
            Some(ProxyIdentity {
                username: "alice".into(),
                client_data: Some(serde_json::json!({"role": "admin"})),
            })
        );
        assert_eq!(identity(&config(), Some(direct), headers), None);
        assert_eq!(identity(&config(), None, headers), None);
        assert_eq!(identity(&config(), Some(trusted), |_| None), None);
        assert_eq!(identity(&Config::default(), Some(trusted), headers), None);
    }
}
