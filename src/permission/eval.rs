//! Evaluating a compiled rule (`expr::Expr`) the way JavaScript evaluates deepstream's rules:
//! JavaScript values (`Value`), truthiness, `==` with its coercions, `===`, `+` that
//! concatenates when either side is a string, comparisons of strings by character and of
//! everything else as numbers, and the string and array methods deepstream allows. Reading a
//! property of `undefined` or `null`, or calling a method a value does not have, is a run-time
//! error (deepstream answers `MESSAGE_PERMISSION_ERROR`). Called by `permission::Permissions`.

use super::cross::CrossRecords;
use super::expr::{BinaryOp, Expr, UnaryOp};
use std::borrow::Cow;

pub use super::value::Value;

/// What a rule can read while it runs.
pub struct Scope<'a> {
    /// `{isAuthenticated, id, data}`.
    pub user: &'a Value,
    pub data: &'a Value,
    pub old_data: &'a Value,
    /// Milliseconds since the epoch.
    pub now: f64,
    /// deepstream's action name (`READ`, `UPDATE`, `EVENT`, ...).
    pub action: &'a str,
    /// The path's `$variables` and what they captured.
    pub variables: &'a [(String, Value)],
    /// The records `_()` reads.
    pub cross: &'a CrossRecords,
}

/// A rule failed while it ran (JavaScript would have thrown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError(pub String);

type Result<T> = std::result::Result<T, RuleError>;

fn type_error<T>(message: String) -> Result<T> {
    Err(RuleError(format!("TypeError: {message}")))
}

/// Evaluates `expr` in `scope`.
pub fn evaluate<'a>(expr: &'a Expr, scope: &Scope<'a>) -> Result<Cow<'a, Value>> {
    Ok(match expr {
        Expr::Undefined => Cow::Owned(Value::Undefined),
        Expr::Null => Cow::Owned(Value::Null),
        Expr::Bool(flag) => Cow::Owned(Value::Bool(*flag)),
        Expr::Number(number) => Cow::Owned(Value::Number(*number)),
        Expr::Str(text) => Cow::Borrowed(text),
        Expr::Name(name) => name_value(name, scope)?,
        Expr::Variable(name) => {
            let captured = scope
                .variables
                .iter()
                .find(|(variable, _)| variable == name);
            match captured {
                Some((_, value)) => Cow::Borrowed(value),
                None => return Err(RuleError(format!("ReferenceError: {name} is not defined"))),
            }
        }
        Expr::Member(object, key) => {
            let key = evaluate(key, scope)?;
            let object = evaluate(object, scope)?;
            match &*key {
                Value::Str(key) => member(object, key)?,
                other => member(object, &to_string(other))?,
            }
        }
        Expr::Method(object, method, arguments) => {
            let object = evaluate(object, scope)?;
            let arguments = arguments
                .iter()
                .map(|argument| evaluate(argument, scope).map(Cow::into_owned))
                .collect::<Result<Vec<_>>>()?;
            Cow::Owned(call(&object, method, &arguments)?)
        }
        Expr::CrossReference(argument) => cross_reference(&*evaluate(argument, scope)?, scope)?,
        Expr::Unary(op, operand) => Cow::Owned(unary(*op, &*evaluate(operand, scope)?)),
        Expr::Binary(op, left, right) => {
            let left = evaluate(left, scope)?;
            let right = evaluate(right, scope)?;
            Cow::Owned(binary(*op, &left, &right))
        }
        Expr::And(left, right) => {
            let left = evaluate(left, scope)?;
            if truthy(&left) {
                evaluate(right, scope)?
            } else {
                left
            }
        }
        Expr::Or(left, right) => {
            let left = evaluate(left, scope)?;
            if truthy(&left) {
                left
            } else {
                evaluate(right, scope)?
            }
        }
        Expr::Conditional(test, then, otherwise) => {
            if truthy(&*evaluate(test, scope)?) {
                evaluate(then, scope)?
            } else {
                evaluate(otherwise, scope)?
            }
        }
    })
}

/// `_(name)`: the record's data when loaded, `null` when it does not exist, `undefined` (and
/// noted for loading) when not loaded yet.
fn cross_reference<'a>(name: &Value, scope: &Scope<'a>) -> Result<Cow<'a, Value>> {
    match name {
        Value::Undefined => Ok(Cow::Owned(Value::Undefined)),
        Value::Str(name) if name.contains("undefined") => Ok(Cow::Owned(Value::Undefined)),
        Value::Str(name) => Ok(match scope.cross.get(name) {
            Some(Some(data)) => Cow::Borrowed(data),
            Some(None) => Cow::Owned(Value::Null),
            None => {
                scope.cross.want(name);
                Cow::Owned(Value::Undefined)
            }
        }),
        other => Err(RuleError(format!(
            "crossreference got unsupported type {}",
            match other {
                Value::Number(_) => "number",
                Value::Bool(_) => "boolean",
                _ => "object",
            }
        ))),
    }
}

fn name_value<'a>(name: &str, scope: &Scope<'a>) -> Result<Cow<'a, Value>> {
    Ok(match name {
        "user" => Cow::Borrowed(scope.user),
        "data" => Cow::Borrowed(scope.data),
        "oldData" => Cow::Borrowed(scope.old_data),
        "now" => Cow::Owned(Value::Number(scope.now)),
        "action" => Cow::Owned(Value::Str(scope.action.to_string())),
        other => return Err(RuleError(format!("ReferenceError: {other} is not defined"))),
    })
}

/// `object[key]`, borrowing from `object` when it is borrowed.
fn member<'a>(object: Cow<'a, Value>, key: &str) -> Result<Cow<'a, Value>> {
    match object {
        Cow::Borrowed(object) => Ok(match property(object, key)? {
            Property::Field(index) => Cow::Borrowed(field(object, index)),
            Property::Computed(value) => Cow::Owned(value),
        }),
        Cow::Owned(object) => Ok(Cow::Owned(match property(&object, key)? {
            Property::Field(index) => take_field(object, index),
            Property::Computed(value) => value,
        })),
    }
}

enum Property {
    /// The n-th element or field of the object.
    Field(usize),
    Computed(Value),
}

fn property(object: &Value, key: &str) -> Result<Property> {
    Ok(match object {
        Value::Undefined | Value::Null => {
            return type_error(format!(
                "Cannot read property '{key}' of {}",
                to_string(object)
            ))
        }
        Value::Str(text) if key == "length" => {
            Property::Computed(Value::Number(text.encode_utf16().count() as f64))
        }
        Value::Str(text) => match key.parse::<usize>().ok().and_then(|i| text.chars().nth(i)) {
            Some(c) => Property::Computed(Value::Str(c.to_string())),
            None => Property::Computed(Value::Undefined),
        },
        Value::Array(items) if key == "length" => {
            Property::Computed(Value::Number(items.len() as f64))
        }
        Value::Array(items) => match key.parse::<usize>() {
            Ok(index) if index < items.len() => Property::Field(index),
            _ => Property::Computed(Value::Undefined),
        },
        Value::Object(fields) => match fields.iter().position(|(name, _)| name == key) {
            Some(index) => Property::Field(index),
            None => Property::Computed(Value::Undefined),
        },
        Value::Bool(_) | Value::Number(_) => Property::Computed(Value::Undefined),
    })
}

fn field(object: &Value, index: usize) -> &Value {
    match object {
        Value::Array(items) => &items[index],
        Value::Object(fields) => &fields[index].1,
        _ => &Value::Undefined,
    }
}

fn take_field(object: Value, index: usize) -> Value {
    match object {
        Value::Array(mut items) => items.swap_remove(index),
        Value::Object(mut fields) => fields.swap_remove(index).1,
        _ => Value::Undefined,
    }
}

/// The methods deepstream allows, on strings (and `includes` / `indexOf` on arrays).
fn call(object: &Value, method: &str, arguments: &[Value]) -> Result<Value> {
    let argument = arguments.first().unwrap_or(&Value::Undefined);
    match (object, method) {
        (Value::Str(text), "startsWith") => Ok(Value::Bool(text.starts_with(&to_string(argument)))),
        (Value::Str(text), "endsWith") => Ok(Value::Bool(text.ends_with(&to_string(argument)))),
        (Value::Str(text), "includes") => Ok(Value::Bool(text.contains(&to_string(argument)))),
        (Value::Str(text), "indexOf") => {
            let found = text.find(&to_string(argument));
            Ok(Value::Number(found.map_or(-1.0, |byte| {
                text[..byte].encode_utf16().count() as f64
            })))
        }
        (Value::Str(text), "toUpperCase") => Ok(Value::Str(text.to_uppercase())),
        (Value::Str(text), "toLowerCase") => Ok(Value::Str(text.to_lowercase())),
        (Value::Str(text), "trim") => Ok(Value::Str(text.trim().to_string())),
        (Value::Str(text), "match") => string_match(text, argument),
        (Value::Array(items), "includes") => Ok(Value::Bool(
            items.iter().any(|item| same_value_zero(item, argument)),
        )),
        (Value::Array(items), "indexOf") => Ok(Value::Number(
            items
                .iter()
                .position(|item| strict_equal(item, argument))
                .map_or(-1.0, |index| index as f64),
        )),
        (object, method) => type_error(format!("{} has no method {method}", type_name(object))),
    }
}

/// `text.match(pattern)`: the match and its groups, or `null`.
fn string_match(text: &str, pattern: &Value) -> Result<Value> {
    let source = to_string(pattern);
    let regex = regex::Regex::new(&source)
        .map_err(|error| RuleError(format!("SyntaxError: invalid regular expression: {error}")))?;
    Ok(match regex.captures(text) {
        Some(captures) => Value::Array(
            captures
                .iter()
                .map(|group| match group {
                    Some(group) => Value::Str(group.as_str().to_string()),
                    None => Value::Undefined,
                })
                .collect(),
        ),
        None => Value::Null,
    })
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Undefined => "undefined",
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::Str(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn unary(op: UnaryOp, value: &Value) -> Value {
    match op {
        UnaryOp::Not => Value::Bool(!truthy(value)),
        UnaryOp::Negate => Value::Number(-to_number(value)),
        UnaryOp::Plus => Value::Number(to_number(value)),
    }
}

fn binary(op: BinaryOp, left: &Value, right: &Value) -> Value {
    match op {
        BinaryOp::Add => add(left, right),
        BinaryOp::Subtract => Value::Number(to_number(left) - to_number(right)),
        BinaryOp::Multiply => Value::Number(to_number(left) * to_number(right)),
        BinaryOp::Divide => Value::Number(to_number(left) / to_number(right)),
        BinaryOp::Remainder => Value::Number(to_number(left) % to_number(right)),
        BinaryOp::Less => Value::Bool(compare(left, right, |o| o.is_lt())),
        BinaryOp::LessOrEqual => Value::Bool(compare(left, right, |o| o.is_le())),
        BinaryOp::Greater => Value::Bool(compare(left, right, |o| o.is_gt())),
        BinaryOp::GreaterOrEqual => Value::Bool(compare(left, right, |o| o.is_ge())),
        BinaryOp::LooseEqual => Value::Bool(loose_equal(left, right)),
        BinaryOp::LooseNotEqual => Value::Bool(!loose_equal(left, right)),
        BinaryOp::StrictEqual => Value::Bool(strict_equal(left, right)),
        BinaryOp::StrictNotEqual => Value::Bool(!strict_equal(left, right)),
    }
}

/// JavaScript truthiness.
pub fn truthy(value: &Value) -> bool {
    match value {
        Value::Undefined | Value::Null => false,
        Value::Bool(flag) => *flag,
        Value::Number(number) => *number != 0.0 && !number.is_nan(),
        Value::Str(text) => !text.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

fn is_primitive_string(value: &Value) -> bool {
    matches!(value, Value::Str(_) | Value::Array(_) | Value::Object(_))
}

fn add(left: &Value, right: &Value) -> Value {
    if is_primitive_string(left) || is_primitive_string(right) {
        Value::Str(to_string(left) + &to_string(right))
    } else {
        Value::Number(to_number(left) + to_number(right))
    }
}

/// `<` and friends: strings by character, anything else as numbers (NaN compares false).
fn compare(left: &Value, right: &Value, test: fn(std::cmp::Ordering) -> bool) -> bool {
    if let (Value::Str(a), Value::Str(b)) = (left, right) {
        return test(a.encode_utf16().cmp(b.encode_utf16()));
    }
    to_number(left)
        .partial_cmp(&to_number(right))
        .is_some_and(test)
}

pub fn strict_equal(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::Undefined, Value::Undefined) | (Value::Null, Value::Null) => true,
        (Value::Bool(a), Value::Bool(b)) => a == b,
        (Value::Number(a), Value::Number(b)) => a == b,
        (Value::Str(a), Value::Str(b)) => a == b,
        // Objects are equal only to themselves: two values read from a message never are.
        _ => false,
    }
}

fn same_value_zero(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::Number(a), Value::Number(b)) if a.is_nan() && b.is_nan() => true,
        _ => strict_equal(left, right),
    }
}

/// `==`: `null == undefined`, and numbers, strings and booleans compared as numbers.
fn loose_equal(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::Undefined | Value::Null, Value::Undefined | Value::Null) => true,
        (Value::Undefined | Value::Null, _) | (_, Value::Undefined | Value::Null) => false,
        (Value::Array(_) | Value::Object(_), Value::Array(_) | Value::Object(_)) => false,
        (Value::Array(_) | Value::Object(_), other)
        | (other, Value::Array(_) | Value::Object(_))
            if matches!(other, Value::Str(_)) =>
        {
            let (object, text) = if matches!(left, Value::Str(_)) {
                (right, left)
            } else {
                (left, right)
            };
            to_string(object) == to_string(text)
        }
        (Value::Str(a), Value::Str(b)) => a == b,
        _ => {
            let (a, b) = (to_number(left), to_number(right));
            a == b
        }
    }
}

/// JavaScript `Number(value)`.
pub fn to_number(value: &Value) -> f64 {
    match value {
        Value::Undefined => f64::NAN,
        Value::Null => 0.0,
        Value::Bool(flag) => f64::from(u8::from(*flag)),
        Value::Number(number) => *number,
        Value::Str(text) => {
            let text = text.trim();
            if text.is_empty() {
                0.0
            } else {
                text.parse::<f64>()
                    .ok()
                    .filter(|_| !text.contains(['i', 'I', 'n', 'N']) || text.contains("Infinity"))
                    .unwrap_or(f64::NAN)
            }
        }
        Value::Array(items) if items.is_empty() => 0.0,
        Value::Array(items) if items.len() == 1 => to_number(&Value::Str(to_string(&items[0]))),
        Value::Array(_) | Value::Object(_) => f64::NAN,
    }
}

/// JavaScript `String(value)`.
pub fn to_string(value: &Value) -> String {
    match value {
        Value::Undefined => "undefined".into(),
        Value::Null => "null".into(),
        Value::Bool(flag) => flag.to_string(),
        Value::Number(number) => number_to_string(*number),
        Value::Str(text) => text.clone(),
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::Undefined | Value::Null => String::new(),
                other => to_string(other),
            })
            .collect::<Vec<_>>()
            .join(","),
        Value::Object(_) => "[object Object]".into(),
    }
}

fn number_to_string(number: f64) -> String {
    if number.is_nan() {
        "NaN".into()
    } else if number.is_infinite() {
        if number > 0.0 {
            "Infinity"
        } else {
            "-Infinity"
        }
        .into()
    } else if number.fract() == 0.0 && number.abs() < 1e21 {
        format!("{number:.0}")
    } else {
        number.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::super::expr::parse;
    use super::*;

    fn run(rule: &str, data: &str, old: &str) -> Result<Value> {
        let user: Value = serde_json::from_str::<serde_json::Value>(
            r#"{"isAuthenticated":true,"id":"alice","data":{"role":"feed","tags":["a","b"]}}"#,
        )
        .map(Value::from)
        .expect("user");
        let data = serde_json::from_str::<serde_json::Value>(data)
            .map(Value::from)
            .expect("data");
        let old = serde_json::from_str::<serde_json::Value>(old)
            .map(Value::from)
            .expect("old");
        let expr = parse(rule).expect("compiles");
        let variables = [("$id".to_string(), Value::Str("alice".to_string()))];
        let mut cross = CrossRecords::default();
        cross.insert(
            "settings/alice".into(),
            Some(Value::Object(vec![("open".into(), Value::Bool(true))])),
        );
        cross.insert("settings/gone".into(), None);
        let scope = Scope {
            user: &user,
            data: &data,
            old_data: &old,
            now: 1000.0,
            action: "UPDATE",
            variables: &variables,
            cross: &cross,
        };
        evaluate(&expr, &scope).map(Cow::into_owned)
    }

    fn yes(rule: &str) -> bool {
        truthy(
            &run(
                rule,
                r#"{"price":5,"name":" Ab ","n":null}"#,
                r#"{"price":3}"#,
            )
            .expect(rule),
        )
    }

    #[test]
    fn rules_answer_as_javascript_does() {
        for rule in [
            "user.id == $id",
            "user.isAuthenticated === true",
            "user.data.role == 'feed'",
            "data.price > 0 && data.price > oldData.price",
            "data.price == '5'",
            "data.price !== '5'",
            "data.n == undefined",
            "data.n === null",
            "data.missing === undefined",
            "'1' + 1 === '11'",
            "'3' * '4' === 12",
            "'b' > 'a'",
            "'10' < 9 === false",
            "now > 999 && action == 'UPDATE'",
            "data.name.trim().toLowerCase() === 'ab'",
            "data.name.toUpperCase().includes('AB')",
            "data.name.indexOf('b') === 2",
            "$id.startsWith('al') && $id.endsWith('ce')",
            "user.id.match('^a(l)')[1] === 'l'",
            "user.id.match('^z') === null",
            "user.data.tags.includes('b') && user.data.tags.indexOf('a') === 0",
            "user.data.tags.length === 2 && user.id.length === 5",
            "user.data['role'] === 'feed'",
            "data.price > 1 ? true : false",
            "(1 || 0) === 1 && (0 && 1) === 0",
            "!data.missing",
            "-data.price === -5 && 7 % 4 === 3",
            "'' + user.data.tags === 'a,b'",
            "_('settings/' + $id).open === true",
            "_('settings/gone') === null",
            "_('settings/' + data.missing) === undefined",
            "_('not/loaded') === undefined",
        ] {
            assert!(yes(rule), "{rule} should be true");
        }
        for rule in [
            "data.price < 0",
            "'a' == 'b'",
            "null == 0",
            "undefined == 0",
        ] {
            assert!(!yes(rule), "{rule} should be false");
        }
    }

    #[test]
    fn reading_below_undefined_or_calling_what_is_not_there_is_an_error() {
        let data = r#"{"a":1}"#;
        assert!(run("data.b.c == 1", data, "{}").is_err());
        assert!(run("data.a.startsWith('x')", data, "{}").is_err());
        assert!(run("unknownName == 1", data, "{}").is_err());
        assert!(run("user.id.match('(')", data, "{}").is_err());
        assert!(run("_(5) == 1", data, "{}").is_err());
        assert!(run("_('settings/gone').open", data, "{}").is_err());
    }
}
