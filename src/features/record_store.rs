//! Record state on the owner core (PROTOCOL.md §3.4): `{version, data}` per name, where data is
//! the record's JSON kept as bytes.
//!
//! Keeping the JSON as bytes (not a parsed tree) is what lets a core hold a million small
//! records in a few hundred megabytes: a whole update (`U`) is validated with simd-json and stored
//! as it arrived; a patch (`P`) parses the stored JSON with simd-json, sets the value at the path
//! the way deepstream's `json-path.js` does, and serialises it again. Reads send the stored bytes.
//!
//! Untrusted input is bounded: JSON nesting is limited by simd-json (1024 levels), a path has
//! at most `MAX_PATH_TOKENS` parts, and a patch may not grow an array by more than
//! `MAX_ARRAY_GROWTH` elements at once (deepstream would build a sparse array of any size).
//! Versions are parsed like JavaScript's `parseInt`; one that does not fit in an i64 is invalid.
//!
//! Differences from deepstream, documented in the README: the stored JSON of a whole update is
//! kept byte for byte (deepstream re-serialises it; the clients send `JSON.stringify` output, so
//! the bytes are the same), and patched documents are serialised by simd-json (floats such as
//! `1e21` are written `1e21`, JavaScript writes `1e+21`).

use crate::protocol::actions::Dialect;
use ahash::AHashMap;
use simd_json::prelude::*;
use simd_json::OwnedValue;

/// Most parts a patch path may have.
pub const MAX_PATH_TOKENS: usize = 64;
/// Most array elements one patch may add (over every index of its path together).
pub const MAX_ARRAY_GROWTH: usize = 10_000;

/// 24 bytes plus the JSON: a million records must fit in a few hundred megabytes, and the hash
/// table's buckets (key + record) are most of the fixed cost, so both are boxed slices rather
/// than `Bytes` (32 bytes each).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub version: i64,
    pub data: Box<[u8]>,
}

/// Why a write was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteError {
    /// The record does not exist (`RECORD_UPDATE_ERROR`).
    NotFound,
    /// The version is not current + 1 (`VERSION_EXISTS` with the current state).
    VersionExists(Record),
    /// Bad body or path (`INVALID_MESSAGE_DATA` with this text).
    InvalidData(String),
    /// The record would be longer than `maxRecordSize`.
    TooLarge { size: usize, limit: usize },
    /// A new record, but the store holds `maxRecords` already (`RECORD_CREATE_ERROR`).
    StoreFull,
}

/// What a write changes.
#[derive(Debug, Clone, Copy)]
pub enum Change<'a> {
    /// `U`: the whole data.
    Whole(&'a [u8]),
    /// `P`: a typed value at a path.
    Patch { path: &'a [u8], value: &'a [u8] },
}

pub struct RecordStore {
    records: AHashMap<Box<[u8]>, Record>,
    scratch: Vec<u8>,
    /// Most bytes a record's JSON may take (`maxRecordSize`).
    max_record_size: usize,
    /// Most records this store holds (this core's share of `maxRecords`).
    max_records: usize,
}

impl Default for RecordStore {
    fn default() -> Self {
        RecordStore::new(usize::MAX, usize::MAX)
    }
}

static EMPTY_OBJECT: &[u8] = b"{}";

impl RecordStore {
    pub fn new(max_record_size: usize, max_records: usize) -> Self {
        RecordStore {
            records: AHashMap::new(),
            scratch: Vec::new(),
            max_record_size,
            max_records,
        }
    }

    /// A store holding only `record` as `name` (or nothing), with this store's limits: what a
    /// permission check sees of a record read from Redis (`cluster::records`).
    pub fn snapshot(&self, name: &[u8], record: Option<(i64, &[u8])>) -> RecordStore {
        let mut snapshot = RecordStore::new(self.max_record_size, 1);
        if let Some((version, data)) = record {
            snapshot.put(name, version, data);
        }
        snapshot
    }

    /// Refuses JSON longer than `maxRecordSize`.
    fn check_size(&self, data: &[u8]) -> Result<(), WriteError> {
        if data.len() > self.max_record_size {
            return Err(WriteError::TooLarge {
                size: data.len(),
                limit: self.max_record_size,
            });
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn get(&self, name: &[u8]) -> Option<&Record> {
        self.records.get(name)
    }

    /// `CR`: the record, created as `{_v: 0, _d: {}}` when missing; `None` when it is missing
    /// and the store is full (`maxRecords`).
    pub fn get_or_create(&mut self, name: &[u8]) -> Option<&Record> {
        if !self.records.contains_key(name) {
            if self.records.len() >= self.max_records {
                return None;
            }
            self.records.insert(
                Box::from(name),
                Record {
                    version: 0,
                    data: Box::from(EMPTY_OBJECT),
                },
            );
        }
        self.records.get(name)
    }

    /// Stores `{version, data}` as they are (the cluster's cached copy of a Redis record).
    pub fn put(&mut self, name: &[u8], version: i64, data: &[u8]) {
        match self.records.get_mut(name) {
            Some(record) => {
                record.version = version;
                record.data = Box::from(data);
            }
            None => {
                self.records.insert(
                    Box::from(name),
                    Record {
                        version,
                        data: Box::from(data),
                    },
                );
            }
        }
    }

    /// `data` with `value` set at `path`, checked against `maxRecordSize`.
    pub fn patched(
        &mut self,
        data: &[u8],
        path: &[u8],
        value: &[u8],
    ) -> Result<Vec<u8>, WriteError> {
        let patched = patch(data, path, value, &mut self.scratch)?;
        self.check_size(&patched)?;
        Ok(patched)
    }

    pub fn delete(&mut self, name: &[u8]) -> bool {
        self.records.remove(name).is_some()
    }

    /// Stores `data` (a validated body, or a patched record) as the next version of `name`
    /// when `version` is that one (`None`: whichever is next, CU with -1). `create` makes a
    /// missing record first (CU). Returns the new version.
    pub fn store(
        &mut self,
        name: &[u8],
        version: Option<i64>,
        data: &[u8],
        create: bool,
    ) -> Result<i64, WriteError> {
        self.check_size(data)?;
        if create && self.get_or_create(name).is_none() {
            return Err(WriteError::StoreFull);
        }
        let Some(record) = self.records.get_mut(name) else {
            return Err(WriteError::NotFound);
        };
        let next = record
            .version
            .checked_add(1)
            .ok_or_else(|| WriteError::VersionExists(record.clone()))?;
        if version.is_some_and(|version| version != next) {
            return Err(WriteError::VersionExists(record.clone()));
        }
        record.version = next;
        record.data = Box::from(data);
        Ok(next)
    }

    /// Checks the body of a whole update (both storages refuse the same bodies).
    pub fn validate_json(&mut self, json: &[u8], dialect: Dialect) -> Result<(), WriteError> {
        self.check_size(json)?;
        self.scratch.clear();
        self.scratch.extend_from_slice(json);
        let tape = simd_json::to_tape(&mut self.scratch)
            .map_err(|error| WriteError::InvalidData(format!("SyntaxError: {error}")))?;
        if dialect == Dialect::V2 {
            // 2.x accepts only an object or an array as a record body.
            let root = tape.0.first().map(|node| node.value_type());
            if !matches!(root, Some(ValueType::Object | ValueType::Array)) {
                return Err(WriteError::InvalidData(String::new()));
            }
        }
        Ok(())
    }
}

/// Is `bytes` JSON? (simd-json rewrites the buffer while it parses.)
pub fn validate(bytes: &mut [u8]) -> Result<(), simd_json::Error> {
    simd_json::to_tape(bytes).map(drop)
}

/// JavaScript `parseInt(text, 10)`: leading whitespace, a sign, then digits up to the first
/// non-digit. `None` for NaN, and for values outside i64.
pub fn parse_version(text: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(text).ok()?.trim_start();
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let end = digits
        .bytes()
        .position(|byte| !byte.is_ascii_digit())
        .unwrap_or(digits.len());
    if end == 0 {
        return None;
    }
    let magnitude: i64 = digits[..end].parse().ok()?;
    Some(if negative { -magnitude } else { magnitude })
}

/// A typed field (`S`, `O`, `N`, `T`, `F`, `L`, `U`) as a JSON value; `None` is `undefined`.
fn typed_to_value(field: &[u8], scratch: &mut Vec<u8>) -> Result<Option<OwnedValue>, WriteError> {
    let rest = &field[field.len().min(1)..];
    match field.first() {
        Some(b'S') => Ok(Some(OwnedValue::from(
            String::from_utf8_lossy(rest).into_owned(),
        ))),
        Some(b'O') => {
            scratch.clear();
            scratch.extend_from_slice(rest);
            simd_json::to_owned_value(scratch)
                .map(Some)
                .map_err(|error| {
                    WriteError::InvalidData(format!(
                        "SyntaxError: {error}:{}",
                        String::from_utf8_lossy(field)
                    ))
                })
        }
        Some(b'N') => Ok(Some(js_parse_float(rest))),
        Some(b'T') => Ok(Some(OwnedValue::from(true))),
        Some(b'F') => Ok(Some(OwnedValue::from(false))),
        Some(b'L') => Ok(Some(OwnedValue::null())),
        Some(b'U') => Ok(None),
        _ => Err(WriteError::InvalidData(format!(
            "Error: Unknown type:{}",
            String::from_utf8_lossy(field)
        ))),
    }
}

/// JavaScript `parseFloat` of a typed number: the longest numeric prefix; NaN becomes null
/// (what `JSON.stringify` writes for it). Integral values stay integers.
fn js_parse_float(text: &[u8]) -> OwnedValue {
    let text = String::from_utf8_lossy(text);
    let text = text.trim_start().as_bytes();
    // The longest prefix of the form [sign] digits [. digits] [e [sign] digits].
    let mut end = usize::from(matches!(text.first(), Some(b'+' | b'-')));
    let digits = |from: usize| {
        from + text[from..]
            .iter()
            .take_while(|byte| byte.is_ascii_digit())
            .count()
    };
    let integral_end = digits(end);
    let mut mantissa_end = integral_end;
    if text.get(integral_end) == Some(&b'.') {
        mantissa_end = digits(integral_end + 1);
    }
    let has_digits = mantissa_end > end + usize::from(mantissa_end > integral_end);
    end = mantissa_end;
    if has_digits && matches!(text.get(end), Some(b'e' | b'E')) {
        let sign = usize::from(matches!(text.get(end + 1), Some(b'+' | b'-')));
        let exponent_end = digits(end + 1 + sign);
        if exponent_end > end + 1 + sign {
            end = exponent_end;
        }
    }
    let number = if has_digits {
        std::str::from_utf8(&text[..end])
            .ok()
            .and_then(|prefix| prefix.parse::<f64>().ok())
    } else {
        None
    };
    match number {
        Some(number) if number.fract() == 0.0 && number.abs() < 9.0e15 => {
            OwnedValue::from(number as i64)
        }
        Some(number) if number.is_finite() => OwnedValue::from(number),
        _ => OwnedValue::null(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Key(String),
    Index(usize),
}

/// deepstream's json-path tokens: split on `.`, `[` and `]`, trimmed, empty parts skipped, parts
/// made of digits are array indexes.
fn tokenize(path: &[u8]) -> Result<Vec<Token>, WriteError> {
    let path = String::from_utf8_lossy(path);
    let mut tokens = Vec::new();
    for part in path.split(['.', '[', ']']) {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        if tokens.len() == MAX_PATH_TOKENS {
            return Err(WriteError::InvalidData(format!(
                "path has more than {MAX_PATH_TOKENS} parts"
            )));
        }
        let token = if part.len() <= 9 && part.bytes().all(|byte| byte.is_ascii_digit()) {
            // At most 9 digits: always fits a usize.
            Token::Index(part.parse().unwrap_or(usize::MAX))
        } else {
            Token::Key(part.to_string())
        };
        tokens.push(token);
    }
    if tokens.is_empty() {
        return Err(WriteError::InvalidData("empty path".to_string()));
    }
    Ok(tokens)
}

fn container_for(next: &Token) -> OwnedValue {
    match next {
        Token::Index(_) => OwnedValue::array(),
        Token::Key(_) => OwnedValue::object(),
    }
}

/// The child of `node` at `token`, created (as the container `next` needs) when missing or not
/// a container.
fn child<'v>(
    node: &'v mut OwnedValue,
    token: &Token,
    next: &Token,
    budget: &mut usize,
) -> Result<&'v mut OwnedValue, WriteError> {
    match (node, token) {
        (OwnedValue::Object(map), Token::Key(key)) => {
            let entry = map
                .entry(key.clone())
                .or_insert_with(|| container_for(next));
            if !is_container(entry) {
                *entry = container_for(next);
            }
            Ok(entry)
        }
        (OwnedValue::Object(map), Token::Index(index)) => {
            let entry = map
                .entry(index.to_string())
                .or_insert_with(|| container_for(next));
            if !is_container(entry) {
                *entry = container_for(next);
            }
            Ok(entry)
        }
        (OwnedValue::Array(items), Token::Index(index)) => {
            grow(items, *index, budget)?;
            let entry = &mut items[*index];
            if !is_container(entry) {
                *entry = container_for(next);
            }
            Ok(entry)
        }
        (node, _) => {
            // A key on an array, or any part below a scalar: replace it with what the path needs.
            *node = container_for(token);
            child(node, token, next, budget)
        }
    }
}

fn is_container(value: &OwnedValue) -> bool {
    matches!(value, OwnedValue::Object(_) | OwnedValue::Array(_))
}

/// Makes `items[index]` exist, taking the elements added from `budget` (what is left of the
/// patch's `MAX_ARRAY_GROWTH`: nested indexes share one budget, so `a[9999][9999]...` cannot
/// multiply it).
fn grow(items: &mut Vec<OwnedValue>, index: usize, budget: &mut usize) -> Result<(), WriteError> {
    if index >= items.len() {
        let added = index - items.len() + 1;
        if added > *budget {
            return Err(WriteError::InvalidData(format!(
                "array index {index}: a patch may add at most {MAX_ARRAY_GROWTH} array elements"
            )));
        }
        *budget -= added;
        items.resize(index + 1, OwnedValue::null());
    }
    Ok(())
}

fn set_last(
    node: &mut OwnedValue,
    token: &Token,
    value: Option<OwnedValue>,
    budget: &mut usize,
) -> Result<(), WriteError> {
    match (node, token) {
        (OwnedValue::Object(map), token) => {
            let key = match token {
                Token::Key(key) => key.clone(),
                Token::Index(index) => index.to_string(),
            };
            match value {
                Some(value) => {
                    map.insert(key, value);
                }
                // `undefined` is not serialised: the key disappears.
                None => {
                    map.remove(&key);
                }
            }
            Ok(())
        }
        (OwnedValue::Array(items), Token::Index(index)) => {
            grow(items, *index, budget)?;
            items[*index] = value.unwrap_or_else(OwnedValue::null);
            Ok(())
        }
        (node, token) => {
            *node = container_for(token);
            set_last(node, token, value, budget)
        }
    }
}

/// Applies a patch to stored JSON and returns the new JSON.
pub fn patch(
    stored: &[u8],
    path: &[u8],
    value: &[u8],
    scratch: &mut Vec<u8>,
) -> Result<Vec<u8>, WriteError> {
    let value = typed_to_value(value, scratch)?;
    let tokens = tokenize(path)?;
    scratch.clear();
    scratch.extend_from_slice(stored);
    let mut document = simd_json::to_owned_value(scratch)
        .map_err(|error| WriteError::InvalidData(format!("stored record is not JSON: {error}")))?;
    let mut budget = MAX_ARRAY_GROWTH;
    let mut node = &mut document;
    for pair in tokens.windows(2) {
        node = child(node, &pair[0], &pair[1], &mut budget)?;
    }
    if let Some(last) = tokens.last() {
        set_last(node, last, value, &mut budget)?;
    }
    Ok(document.encode().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patched(stored: &str, path: &str, value: &str) -> String {
        let mut scratch = Vec::new();
        String::from_utf8(
            patch(
                stored.as_bytes(),
                path.as_bytes(),
                value.as_bytes(),
                &mut scratch,
            )
            .expect("patch"),
        )
        .expect("utf8")
    }

    #[test]
    fn patches_like_deepstream_json_path() {
        assert_eq!(patched(r#"{"a":1}"#, "b.c", "N5"), r#"{"a":1,"b":{"c":5}}"#);
        assert_eq!(patched(r#"{"a":1}"#, "a", "Sx"), r#"{"a":"x"}"#);
        assert_eq!(patched("{}", "list[1]", "T"), r#"{"list":[null,true]}"#);
        assert_eq!(patched("{}", "a[0].b", "L"), r#"{"a":[{"b":null}]}"#);
        assert_eq!(patched(r#"{"a":1,"b":2}"#, "a", "U"), r#"{"b":2}"#);
        assert_eq!(patched(r#"["y","z"]"#, "[0]", "Sx"), r#"["x","z"]"#);
        assert_eq!(patched(r#"{"a":5}"#, "a.b", "N1.5"), r#"{"a":{"b":1.5}}"#);
        assert_eq!(
            patched("{}", "o", r#"O{"k":[1,2]}"#),
            r#"{"o":{"k":[1,2]}}"#
        );
        assert_eq!(patched("{}", "n", "N-7"), r#"{"n":-7}"#);
        assert_eq!(patched("{}", "n", "N42.5abc"), r#"{"n":42.5}"#);
        assert_eq!(patched("{}", "n", "N2e3"), r#"{"n":2000}"#);
        assert_eq!(patched("{}", "n", "Nabc"), r#"{"n":null}"#);
    }

    #[test]
    fn hostile_patches_are_refused() {
        let mut scratch = Vec::new();
        assert!(matches!(
            patch(b"{}", b"a[99999999]", b"T", &mut scratch),
            Err(WriteError::InvalidData(_))
        ));
        let deep = "a.".repeat(100) + "b";
        assert!(patch(b"{}", deep.as_bytes(), b"T", &mut scratch).is_err());
        assert!(matches!(
            patch(b"{}", b"a", b"Q1", &mut scratch),
            Err(WriteError::InvalidData(text)) if text == "Error: Unknown type:Q1"
        ));
        assert!(patch(b"{}", b"a", b"O{bad", &mut scratch).is_err());
        assert!(patch(b"{}", b"", b"T", &mut scratch).is_err());
    }

    #[test]
    fn versions_parse_like_parse_int() {
        assert_eq!(parse_version(b"12"), Some(12));
        assert_eq!(parse_version(b" 3abc"), Some(3));
        assert_eq!(parse_version(b"-1"), Some(-1));
        assert_eq!(parse_version(b"abc"), None);
        assert_eq!(parse_version(b""), None);
        assert_eq!(parse_version(b"99999999999999999999"), None);
        assert_eq!(parse_version(b"9223372036854775807"), Some(i64::MAX));
    }

    #[test]
    fn stores_check_versions_and_sizes() {
        let mut store = RecordStore::new(16, 2);
        assert_eq!(
            store.store(b"r", Some(1), b"{}", false),
            Err(WriteError::NotFound)
        );
        store.get_or_create(b"r");
        assert_eq!(store.store(b"r", Some(1), br#"{"a":1}"#, false), Ok(1));
        assert!(matches!(
            store.store(b"r", Some(1), b"{}", false),
            Err(WriteError::VersionExists(Record { version: 1, .. }))
        ));
        assert_eq!(store.store(b"r", None, b"5", false), Ok(2));
        assert_eq!(
            store.get(b"r").map(|r| r.data.to_vec()),
            Some(b"5".to_vec())
        );
        assert!(matches!(
            store.store(b"r", Some(3), br#"{"a":"0123456789"}"#, false),
            Err(WriteError::TooLarge { limit: 16, .. })
        ));
        assert_eq!(store.store(b"u", None, br#"{"z":1}"#, true), Ok(1));
        assert_eq!(
            store.store(b"full", None, b"{}", true),
            Err(WriteError::StoreFull)
        );
        // Versions near the limit never overflow.
        if let Some(record) = store.records.get_mut(&b"u"[..]) {
            record.version = i64::MAX;
        }
        assert!(matches!(
            store.store(b"u", None, b"{}", false),
            Err(WriteError::VersionExists(_))
        ));
    }

    #[test]
    fn bodies_and_patches_are_checked() {
        let mut store = RecordStore::default();
        assert!(matches!(
            store.validate_json(b"{bad", Dialect::V1),
            Err(WriteError::InvalidData(_))
        ));
        assert_eq!(store.validate_json(b"5", Dialect::V1), Ok(()));
        assert!(store.validate_json(b"5", Dialect::V2).is_err());
        assert_eq!(
            store.patched(b"{}", b"b.c", b"N5"),
            Ok(br#"{"b":{"c":5}}"#.to_vec())
        );
    }
}
