//! Authentication: decides whether an `A|REQ` login is accepted (PROTOCOL.md §3.2).
//!
//! Owns the auth handlers: open (anyone; the username comes from authData), file
//! (deepstream's users file, clear-text or pbkdf2-hashed passwords), http (deepstream's
//! webhook, `webhook`) and proxy-header (the user a trusted proxy authenticated, `proxy`).
//! Called by the session (on its own core, or on a blocking thread for the expensive ones)
//! with the parsed authData and where the connection came from; only the webhook touches a
//! socket, its own short-lived HTTP client connection.

pub mod file;
pub mod proxy;
mod webhook;

pub use file::UsersFile;
pub use proxy::ProxyIdentity;

use crate::base::config::{AuthConfig, HttpAuthConfig};
use crate::protocol::actions::Dialect;
use serde_json::{Map, Value};
use std::fmt;
use std::net::SocketAddr;

/// The result of one login attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum AuthOutcome {
    Accepted {
        username: String,
        /// `None`: reply `A|A`; `Some`: reply `A|A|<typed clientData>`.
        client_data: Option<Value>,
        /// `serverData`: what permission rules read as `user.data`.
        server_data: Option<Value>,
    },
    Rejected {
        /// Sent typed in `A|E|INVALID_AUTH_DATA|...`; `None` is sent as `U`.
        client_data: Option<Value>,
    },
}

/// A problem loading an auth handler at start-up.
#[derive(Debug)]
pub struct AuthError(pub String);

impl fmt::Display for AuthError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl std::error::Error for AuthError {}

/// The configured auth handler, shared read-only by every core.
pub enum Authenticator {
    Open,
    File(UsersFile),
    ProxyHeader,
    Http(HttpAuthConfig),
}

/// Where a login comes from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoginContext {
    /// The client's address (after the PROXY protocol, when configured).
    pub peer: Option<SocketAddr>,
    /// The user a trusted proxy authenticated (see `proxy`).
    pub proxy: Option<ProxyIdentity>,
}

impl Authenticator {
    pub fn from_config(config: &AuthConfig) -> Result<Authenticator, AuthError> {
        match config {
            AuthConfig::Open => Ok(Authenticator::Open),
            AuthConfig::File(file) => Ok(Authenticator::File(UsersFile::load(file)?)),
            AuthConfig::ProxyHeader(_) => Ok(Authenticator::ProxyHeader),
            AuthConfig::Http(http) => Ok(Authenticator::Http(http.clone())),
        }
    }

    /// Is checking a password expensive enough to move off the core's event loop?
    pub fn is_expensive(&self) -> bool {
        match self {
            Authenticator::Open => false,
            Authenticator::File(users) => users.is_expensive(),
            Authenticator::ProxyHeader => false,
            Authenticator::Http(_) => true,
        }
    }

    /// Checks one login. `auth_data` is the JSON object of `A|REQ`.
    pub fn authenticate(
        &self,
        auth_data: &Map<String, Value>,
        dialect: Dialect,
        context: &LoginContext,
    ) -> AuthOutcome {
        match self {
            Authenticator::Open => AuthOutcome::Accepted {
                username: open_username(auth_data, dialect),
                client_data: None,
                server_data: None,
            },
            Authenticator::File(users) => users.authenticate(auth_data),
            // Whatever the client sent is ignored: only the proxy's word counts.
            Authenticator::ProxyHeader => match &context.proxy {
                Some(identity) => AuthOutcome::Accepted {
                    username: identity.username.clone(),
                    client_data: identity.client_data.clone(),
                    server_data: identity.client_data.clone(),
                },
                None => AuthOutcome::Rejected { client_data: None },
            },
            Authenticator::Http(config) => webhook::authenticate(config, auth_data, context),
        }
    }
}

/// deepstream's open auth: `authData.username || 'OPEN'` (1.x) / `'open'` (2.x).
fn open_username(auth_data: &Map<String, Value>, dialect: Dialect) -> String {
    let fallback = match dialect {
        Dialect::V1 => "OPEN",
        Dialect::V2 => "open",
    };
    match auth_data.get("username") {
        Some(Value::String(name)) if !name.is_empty() => name.clone(),
        // JavaScript truthiness: a non-empty, non-zero, non-false value is used as it is.
        Some(Value::Number(number)) if number.as_f64() != Some(0.0) => number.to_string(),
        Some(Value::Bool(true)) => "true".to_string(),
        Some(value @ (Value::Array(_) | Value::Object(_))) => value.to_string(),
        _ => fallback.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => panic!("object expected"),
        }
    }

    #[test]
    fn open_auth_takes_the_username_or_the_dialect_default() {
        let auth = Authenticator::Open;
        assert_eq!(
            auth.authenticate(
                &object(json!({"username": "alice"})),
                Dialect::V1,
                &LoginContext::default()
            ),
            AuthOutcome::Accepted {
                username: "alice".into(),
                client_data: None,
                server_data: None
            }
        );
        assert_eq!(
            auth.authenticate(&object(json!({})), Dialect::V1, &LoginContext::default()),
            AuthOutcome::Accepted {
                username: "OPEN".into(),
                client_data: None,
                server_data: None
            }
        );
        assert_eq!(
            auth.authenticate(
                &object(json!({"username": ""})),
                Dialect::V2,
                &LoginContext::default()
            ),
            AuthOutcome::Accepted {
                username: "open".into(),
                client_data: None,
                server_data: None
            }
        );
    }
}
