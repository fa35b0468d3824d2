//! Authentication: decides whether an `A|REQ` login is accepted (PROTOCOL.md §3.2).
//!
//! Owns the auth handlers: open (anyone; the username comes from authData) and file
//! (deepstream's users file, clear-text or pbkdf2-hashed passwords). Called by the session
//! (on its own core) with the parsed authData; never touches a socket.

mod file;

pub use file::UsersFile;

use crate::config::AuthConfig;
use crate::protocol::actions::Dialect;
use serde_json::{Map, Value};
use std::fmt;

/// The result of one login attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum AuthOutcome {
    Accepted {
        username: String,
        /// `None`: reply `A|A`; `Some`: reply `A|A|<typed clientData>`.
        client_data: Option<Value>,
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
}

impl Authenticator {
    pub fn from_config(config: &AuthConfig) -> Result<Authenticator, AuthError> {
        match config {
            AuthConfig::Open => Ok(Authenticator::Open),
            AuthConfig::File(file) => Ok(Authenticator::File(UsersFile::load(file)?)),
        }
    }

    /// Is checking a password expensive enough to move off the core's event loop?
    pub fn is_expensive(&self) -> bool {
        match self {
            Authenticator::Open => false,
            Authenticator::File(users) => users.is_expensive(),
        }
    }

    /// Checks one login. `auth_data` is the JSON object of `A|REQ`.
    pub fn authenticate(&self, auth_data: &Map<String, Value>, dialect: Dialect) -> AuthOutcome {
        match self {
            Authenticator::Open => AuthOutcome::Accepted {
                username: open_username(auth_data, dialect),
                client_data: None,
            },
            Authenticator::File(users) => users.authenticate(auth_data),
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
            auth.authenticate(&object(json!({"username": "alice"})), Dialect::V1),
            AuthOutcome::Accepted {
                username: "alice".into(),
                client_data: None
            }
        );
        assert_eq!(
            auth.authenticate(&object(json!({})), Dialect::V1),
            AuthOutcome::Accepted {
                username: "OPEN".into(),
                client_data: None
            }
        );
        assert_eq!(
            auth.authenticate(&object(json!({"username": ""})), Dialect::V2),
            AuthOutcome::Accepted {
                username: "open".into(),
                client_data: None
            }
        );
    }
}
