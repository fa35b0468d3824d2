//! deepstream's users file (`auth: {type: file}`), PROTOCOL.md §0.
//!
//! The file maps usernames to `{password, serverData, clientData}`. Without a `hash` option the
//! password is compared in clear text. With one, the stored value is
//! `base64(pbkdf2(password, salt, iterations, keyLength, hash))` followed by the salt, and the
//! salt is used as the *text* that follows the first `4*ceil(keyLength/3)` characters (exactly as
//! Node's `crypto.pbkdf2` receives it from deepstream).

use super::{AuthError, AuthOutcome};
use crate::base::config::{FileAuthConfig, PasswordHash};
use ahash::AHashMap;
use base64::Engine;
use serde_json::{Map, Value};

struct User {
    password: String,
    client_data: Option<Value>,
    server_data: Option<Value>,
}

/// A loaded users file.
pub struct UsersFile {
    users: AHashMap<String, User>,
    hash: Option<PasswordHash>,
    iterations: u32,
    key_length: usize,
}

impl UsersFile {
    pub fn load(config: &FileAuthConfig) -> Result<UsersFile, AuthError> {
        let path = config.path.display();
        let text = std::fs::read_to_string(&config.path)
            .map_err(|io| AuthError(format!("cannot read users file {path}: {io}")))?;
        let parsed: Value = yaml_serde::from_str(&text).map_err(|yaml| {
            AuthError(format!("users file {path} is not valid YAML/JSON: {yaml}"))
        })?;
        let Value::Object(entries) = parsed else {
            return Err(AuthError(format!(
                "users file {path} must map usernames to {{password, clientData, serverData}}"
            )));
        };
        let mut users = AHashMap::new();
        for (username, entry) in entries {
            let Some(password) = entry.get("password").and_then(Value::as_str) else {
                return Err(AuthError(format!(
                    "users file {path}: missing password for {username}"
                )));
            };
            users.insert(
                username,
                User {
                    password: password.to_string(),
                    client_data: entry.get("clientData").cloned(),
                    server_data: entry.get("serverData").cloned(),
                },
            );
        }
        Ok(UsersFile {
            users,
            hash: config.hash,
            iterations: config.iterations,
            key_length: config.key_length,
        })
    }

    /// More than a few thousand pbkdf2 rounds take long enough to stall other sessions.
    pub fn is_expensive(&self) -> bool {
        self.hash.is_some() && self.iterations > 2_000
    }

    pub fn authenticate(&self, auth_data: &Map<String, Value>) -> AuthOutcome {
        let Some(username) = auth_data.get("username").and_then(Value::as_str) else {
            return rejected_with("missing authentication parameter username");
        };
        let Some(password) = auth_data.get("password").and_then(Value::as_str) else {
            return rejected_with("missing authentication parameter password");
        };
        let Some(user) = self.users.get(username) else {
            // Derive anyway: an unknown user must take as long as a wrong password, or the
            // answer's timing tells which usernames exist.
            if let Some(hash) = self.hash {
                let _ = self.hash_matches(hash, password, &self.stand_in_password());
            }
            return AuthOutcome::Rejected { client_data: None };
        };
        let matches = match self.hash {
            None => constant_time_eq(password.as_bytes(), user.password.as_bytes()),
            Some(hash) => self.hash_matches(hash, password, &user.password),
        };
        if !matches {
            return AuthOutcome::Rejected { client_data: None };
        }
        // deepstream sends `clientData || null` (hashed) / null when undefined (clear text).
        let client_data = match &user.client_data {
            None => Value::Null,
            Some(data) if self.hash.is_some() && is_falsy(data) => Value::Null,
            Some(data) => data.clone(),
        };
        AuthOutcome::Accepted {
            username: username.to_string(),
            client_data: Some(client_data),
            server_data: user.server_data.clone(),
        }
    }

    /// A stored password of the configured shape that no password matches (for unknown users).
    fn stand_in_password(&self) -> String {
        let mut stored = "A".repeat(4 * self.key_length.div_ceil(3));
        stored.push_str("not-a-user-salt");
        stored
    }

    fn hash_matches(&self, hash: PasswordHash, password: &str, stored: &str) -> bool {
        let encoded_length = 4 * self.key_length.div_ceil(3);
        if stored.len() < encoded_length || !stored.is_char_boundary(encoded_length) {
            return false;
        }
        let (expected, salt) = stored.split_at(encoded_length);
        let derived = derive(
            hash,
            password.as_bytes(),
            salt.as_bytes(),
            self.iterations,
            self.key_length,
        );
        let actual = base64::engine::general_purpose::STANDARD.encode(derived);
        constant_time_eq(actual.as_bytes(), expected.as_bytes())
    }
}

/// A users-file password as deepstream's `hash` command writes it: a fresh 16-byte salt,
/// base64-encoded (24 characters), appended to `base64(pbkdf2(password, salt text, ...))`.
/// Called by `corestream hash`.
pub fn hash_password(
    hash: PasswordHash,
    password: &str,
    iterations: u32,
    key_length: usize,
) -> String {
    let engine = base64::engine::general_purpose::STANDARD;
    let salt = engine.encode(crate::random::bytes::<16>());
    let derived = derive(
        hash,
        password.as_bytes(),
        salt.as_bytes(),
        iterations,
        key_length,
    );
    let mut stored = engine.encode(derived);
    stored.push_str(&salt);
    stored
}

/// pbkdf2 with the digest deepstream names.
pub fn derive(
    hash: PasswordHash,
    password: &[u8],
    salt: &[u8],
    iterations: u32,
    key_length: usize,
) -> Vec<u8> {
    let mut out = vec![0u8; key_length];
    match hash {
        PasswordHash::Md5 => pbkdf2::pbkdf2_hmac::<md5::Md5>(password, salt, iterations, &mut out),
        PasswordHash::Sha1 => {
            pbkdf2::pbkdf2_hmac::<sha1::Sha1>(password, salt, iterations, &mut out)
        }
        PasswordHash::Sha256 => {
            pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password, salt, iterations, &mut out)
        }
        PasswordHash::Sha512 => {
            pbkdf2::pbkdf2_hmac::<sha2::Sha512>(password, salt, iterations, &mut out)
        }
    }
    out
}

fn rejected_with(text: &str) -> AuthOutcome {
    AuthOutcome::Rejected {
        client_data: Some(Value::String(text.to_string())),
    }
}

fn is_falsy(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(flag) => !flag,
        Value::Number(number) => number.as_f64() == Some(0.0),
        Value::String(text) => text.is_empty(),
        _ => false,
    }
}

fn constant_time_eq(left: &[u8], right: &[u8]) -> bool {
    if left.len() != right.len() {
        return false;
    }
    left.iter()
        .zip(right)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::PathBuf;

    const SAMPLE: &str = "rCOSZxJrgze2AZdVQh12c6ErDMOG0M+Rx5Yu7S5d91c=GS4SbTQYmoaGwjm2shEobg==";

    #[test]
    fn a_hashed_password_is_accepted_and_salted_afresh() {
        for hash in [
            PasswordHash::Md5,
            PasswordHash::Sha1,
            PasswordHash::Sha256,
            PasswordHash::Sha512,
        ] {
            let stored = hash_password(hash, "s3cret", 100, 32);
            assert_eq!(stored.len(), 44 + 24, "{stored}");
            assert_ne!(
                stored,
                hash_password(hash, "s3cret", 100, 32),
                "same salt twice"
            );
            let body = format!("alice:\n  password: \"{stored}\"\n");
            let file = users_with(Some(hash), 100, &body);
            let login = |password: &str| {
                let auth = json!({"username": "alice", "password": password});
                file.authenticate(auth.as_object().expect("object"))
            };
            assert!(
                matches!(login("s3cret"), AuthOutcome::Accepted { .. }),
                "{hash:?}"
            );
            assert!(
                matches!(login("s3cret!"), AuthOutcome::Rejected { .. }),
                "{hash:?}"
            );
        }
    }

    fn users(hash: Option<PasswordHash>, body: &str) -> UsersFile {
        users_with(hash, 100, body)
    }

    fn users_with(hash: Option<PasswordHash>, iterations: u32, body: &str) -> UsersFile {
        let dir = std::env::temp_dir().join(format!("corestream-users-{}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("users.yml");
        std::fs::write(&path, body).expect("write users");
        let loaded = UsersFile::load(&FileAuthConfig {
            path: PathBuf::from(&path),
            hash,
            iterations,
            key_length: 32,
        })
        .expect("loads");
        let _ = std::fs::remove_dir_all(dir);
        loaded
    }

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => panic!("object expected"),
        }
    }

    #[test]
    fn the_deepstream_sample_hash_is_password() {
        let file = users(
            Some(PasswordHash::Md5),
            &format!("userA:\n  password: \"{SAMPLE}\"\n  clientData: {{favouriteColor: red}}\nuserC:\n  password: \"{SAMPLE}\"\n"),
        );
        assert_eq!(
            file.authenticate(&object(
                json!({"username": "userA", "password": "password"})
            )),
            AuthOutcome::Accepted {
                username: "userA".into(),
                client_data: Some(json!({"favouriteColor": "red"})),
                server_data: None
            }
        );
        assert_eq!(
            file.authenticate(&object(
                json!({"username": "userC", "password": "password"})
            )),
            AuthOutcome::Accepted {
                username: "userC".into(),
                client_data: Some(Value::Null),
                server_data: None
            }
        );
        assert_eq!(
            file.authenticate(&object(json!({"username": "userA", "password": "wrong"}))),
            AuthOutcome::Rejected { client_data: None }
        );
        assert_eq!(
            file.authenticate(&object(json!({"username": "userA"}))),
            AuthOutcome::Rejected {
                client_data: Some(json!("missing authentication parameter password"))
            }
        );
        assert_eq!(
            file.authenticate(&object(json!({"password": "x"}))),
            AuthOutcome::Rejected {
                client_data: Some(json!("missing authentication parameter username"))
            }
        );
        assert_eq!(
            file.authenticate(&object(json!({"username": "nobody", "password": "x"}))),
            AuthOutcome::Rejected { client_data: None }
        );
    }

    #[test]
    fn clear_text_passwords() {
        let file = users(None, "bob:\n  password: secret\n");
        assert!(matches!(
            file.authenticate(&object(json!({"username": "bob", "password": "secret"}))),
            AuthOutcome::Accepted { .. }
        ));
        assert_eq!(
            file.authenticate(&object(json!({"username": "bob", "password": "secreT"}))),
            AuthOutcome::Rejected { client_data: None }
        );
    }

    #[test]
    fn an_unknown_user_costs_a_derive_like_a_wrong_password() {
        // 20000 rounds of sha512 take milliseconds; without the stand-in derive an unknown
        // user is answered in microseconds. Compared within one run, with a wide margin.
        let file = users_with(
            Some(PasswordHash::Sha512),
            20_000,
            &format!("userA:\n  password: \"{SAMPLE}\"\n"),
        );
        let time = |name: &str| {
            let login = object(json!({"username": name, "password": "wrong"}));
            let started = std::time::Instant::now();
            for _ in 0..5 {
                assert_eq!(
                    file.authenticate(&login),
                    AuthOutcome::Rejected { client_data: None }
                );
            }
            started.elapsed()
        };
        let known = time("userA");
        let unknown = time("nobody");
        assert!(
            unknown * 3 > known,
            "unknown user {unknown:?} against wrong password {known:?}"
        );
    }
}
