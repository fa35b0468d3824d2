//! Typed values (PROTOCOL.md §1.1): the one-letter prefixes S O N T F L U.
//!
//! The server mostly forwards typed fields untouched; it builds them for auth clientData and
//! error payloads. Called by `auth` and the features.

use serde_json::Value;

/// Encodes a JSON value the way deepstream's `messageBuilder.typed` does.
pub fn typed_from_json(value: &Value) -> Vec<u8> {
    match value {
        Value::String(text) => {
            let mut out = Vec::with_capacity(text.len() + 1);
            out.push(b'S');
            out.extend_from_slice(text.as_bytes());
            out
        }
        Value::Null => b"L".to_vec(),
        Value::Bool(true) => b"T".to_vec(),
        Value::Bool(false) => b"F".to_vec(),
        Value::Number(number) => {
            let mut out = b"N".to_vec();
            out.extend_from_slice(js_number(number).as_bytes());
            out
        }
        Value::Array(_) | Value::Object(_) => {
            let mut out = b"O".to_vec();
            // Serialising a serde_json::Value into a Vec cannot fail.
            out.extend_from_slice(value.to_string().as_bytes());
            out
        }
    }
}

/// A string as a typed value (`S` + text).
pub fn typed_string(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 1);
    out.push(b'S');
    out.extend_from_slice(text.as_bytes());
    out
}

/// Formats a number as JavaScript's `String(n)` does for the common cases.
fn js_number(number: &serde_json::Number) -> String {
    if let Some(integer) = number.as_i64() {
        return integer.to_string();
    }
    if let Some(integer) = number.as_u64() {
        return integer.to_string();
    }
    match number.as_f64() {
        Some(float) if float.fract() == 0.0 && float.abs() < 1e21 => format!("{float:.0}"),
        Some(float) => format!("{float}"),
        None => number.to_string(),
    }
}

/// Is `field` a well-formed typed value? (The type letter is known.)
pub fn has_known_type(field: &[u8]) -> bool {
    matches!(
        field.first(),
        Some(b'S' | b'O' | b'N' | b'T' | b'F' | b'L' | b'U')
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn encodes_like_deepstream() {
        assert_eq!(typed_from_json(&json!("hi")), b"Shi");
        assert_eq!(typed_from_json(&json!(null)), b"L");
        assert_eq!(typed_from_json(&json!(true)), b"T");
        assert_eq!(typed_from_json(&json!(false)), b"F");
        assert_eq!(typed_from_json(&json!(42)), b"N42");
        assert_eq!(typed_from_json(&json!(-7.5)), b"N-7.5");
        assert_eq!(typed_from_json(&json!(3.0)), b"N3");
        assert_eq!(
            typed_from_json(&json!({"favouriteColor": "red"})),
            br#"O{"favouriteColor":"red"}"#
        );
        assert_eq!(typed_from_json(&json!([1, "x"])), br#"O[1,"x"]"#);
        assert!(has_known_type(b"U"));
        assert!(!has_known_type(b"Q1"));
        assert!(!has_known_type(b""));
    }
}
