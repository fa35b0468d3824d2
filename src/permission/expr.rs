//! The rule language: a permission rule's text compiled once, at start, into a tree.
//!
//! deepstream evaluates each rule as a JavaScript expression (`new Function`); corestream
//! accepts the subset deepstream's own validator lets through and rules use: literals
//! (numbers, strings, `true`, `false`, `null`, `undefined`), the names `user`, `data`,
//! `oldData`, `now`, `action`, `$variables` of the path, member access (`.name`, `[expr]`),
//! the methods deepstream allows (`startsWith`, `endsWith`, `includes`, `indexOf`, `match`,
//! `toUpperCase`, `toLowerCase`, `trim`), `!`, unary `-`/`+`, `* / %`, `+ -`, `< <= > >=`,
//! `== != === !==`, `&&`, `||`, and `? :`. What deepstream refuses (`new`, function
//! definitions, other functions) is a compile error, as are syntax errors; each error says what
//! and where. Called by `permission::compile`; evaluated by `permission::eval`.

use super::value::Value;
use std::fmt;

/// Functions a rule may call: deepstream's `SUPPORTED_FUNCTIONS` (`_` is the cross-reference).
pub const METHODS: &[&str] = &[
    "startsWith",
    "endsWith",
    "includes",
    "indexOf",
    "match",
    "toUpperCase",
    "toLowerCase",
    "trim",
];

/// A compiled rule expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Undefined,
    Null,
    Bool(bool),
    Number(f64),
    /// A string literal (a regular expression literal is kept as its source).
    Str(Value),
    /// `user`, `data`, `oldData`, `now`, `action` (or any other name: a run-time error, as
    /// in JavaScript).
    Name(String),
    /// `$name`: the value the path's variable captured.
    Variable(String),
    /// `object.name` or `object[expr]`.
    Member(Box<Expr>, Box<Expr>),
    /// `object.method(arguments)`.
    Method(Box<Expr>, String, Vec<Expr>),
    /// `_(recordName)`.
    CrossReference(Box<Expr>),
    Unary(UnaryOp, Box<Expr>),
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    /// `a && b`, `a || b` (they return an operand, as in JavaScript).
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Conditional(Box<Expr>, Box<Expr>, Box<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnaryOp {
    Not,
    Negate,
    Plus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Subtract,
    Multiply,
    Divide,
    Remainder,
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
    LooseEqual,
    LooseNotEqual,
    StrictEqual,
    StrictNotEqual,
}

/// Why a rule does not compile, and at which character.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    pub at: usize,
    pub message: String,
}

impl fmt::Display for CompileError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{} (at character {})", self.message, self.at + 1)
    }
}

fn fail<T>(at: usize, message: impl Into<String>) -> Result<T, CompileError> {
    Err(CompileError {
        at,
        message: message.into(),
    })
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Number(f64),
    Str(String),
    Name(String),
    Variable(String),
    Punct(&'static str),
}

/// Longest first, so `===` is not read as `==` and `=`.
const PUNCTUATION: &[&str] = &[
    "===", "!==", "==", "!=", "<=", ">=", "&&", "||", "=>", "<", ">", "!", "+", "-", "*", "/", "%",
    "?", ":", ".", ",", "(", ")", "[", "]",
];

/// Splits a rule into tokens, each with the index of its first character.
fn tokenize(text: &str) -> Result<Vec<(usize, Token)>, CompileError> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let byte = bytes[at];
        if byte.is_ascii_whitespace() {
            at += 1;
        } else if byte.is_ascii_digit()
            || (byte == b'.' && bytes.get(at + 1).is_some_and(u8::is_ascii_digit))
        {
            let (number, end) = read_number(text, at)?;
            tokens.push((at, Token::Number(number)));
            at = end;
        } else if byte == b'\'' || byte == b'"' {
            let (string, end) = read_string(text, at)?;
            tokens.push((at, Token::Str(string)));
            at = end;
        } else if byte == b'/' && starts_operand(tokens.last().map(|(_, token)| token)) {
            let (pattern, end) = read_regex(text, at)?;
            tokens.push((at, Token::Str(pattern)));
            at = end;
        } else if byte == b'`' {
            return fail(at, "template strings are not supported");
        } else if byte == b'$' || byte == b'_' || byte.is_ascii_alphabetic() {
            let end = at
                + 1
                + text[at + 1..]
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '$'))
                    .unwrap_or(text.len() - at - 1);
            let word = &text[at..end];
            let token = match word.strip_prefix('$') {
                Some(name) if !name.is_empty() => Token::Variable(word.to_string()),
                _ => Token::Name(word.to_string()),
            };
            tokens.push((at, token));
            at = end;
        } else {
            let Some(punct) = PUNCTUATION.iter().find(|p| text[at..].starts_with(**p)) else {
                let found = text[at..].chars().next().unwrap_or('?');
                return fail(at, format!("unexpected character '{found}'"));
            };
            tokens.push((at, Token::Punct(punct)));
            at += punct.len();
        }
    }
    Ok(tokens)
}

/// Whether a `/` after `previous` begins a regular expression literal (not a division).
fn starts_operand(previous: Option<&Token>) -> bool {
    !matches!(
        previous,
        Some(Token::Number(_) | Token::Str(_) | Token::Name(_) | Token::Variable(_))
            | Some(Token::Punct(")" | "]"))
    )
}

/// `/source/flags`: the pattern as a string for `match` (flag `i` as `(?i)`; `g`, `m`, `s`,
/// `u`, `y` change nothing `match` is used for in a rule: whether and what matched first).
fn read_regex(text: &str, start: usize) -> Result<(String, usize), CompileError> {
    let bytes = text.as_bytes();
    let mut at = start + 1;
    let mut in_class = false;
    while at < bytes.len() {
        match bytes[at] {
            b'\\' => at += 1,
            b'[' => in_class = true,
            b']' => in_class = false,
            b'/' if !in_class => break,
            _ => {}
        }
        at += 1;
    }
    if at >= bytes.len() {
        return fail(start, "unterminated regular expression");
    }
    let source = &text[start + 1..at];
    let flags_end = at
        + 1
        + text[at + 1..]
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(text.len() - at - 1);
    let flags = &text[at + 1..flags_end];
    if let Some(bad) = flags.chars().find(|flag| !"gimsuy".contains(*flag)) {
        return fail(at + 1, format!("invalid regular expression flag '{bad}'"));
    }
    let pattern = if flags.contains('i') {
        format!("(?i){source}")
    } else {
        source.to_string()
    };
    Ok((pattern, flags_end))
}

fn read_number(text: &str, start: usize) -> Result<(f64, usize), CompileError> {
    let rest = &text[start..];
    let mut end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    // an exponent: 1e5, 2.5E-3
    if rest[end..].starts_with(['e', 'E']) {
        let after = &rest[end + 1..];
        let sign = usize::from(after.starts_with(['+', '-']));
        let digits = after[sign..]
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(after.len() - sign);
        if digits > 0 {
            end += 1 + sign + digits;
        }
    }
    match rest[..end].parse::<f64>() {
        Ok(number) => Ok((number, start + end)),
        Err(_) => fail(start, format!("invalid number '{}'", &rest[..end])),
    }
}

fn read_string(text: &str, start: usize) -> Result<(String, usize), CompileError> {
    let quote = text.as_bytes()[start] as char;
    let mut out = String::new();
    let mut chars = text[start + 1..].char_indices();
    while let Some((offset, c)) = chars.next() {
        match c {
            c if c == quote => return Ok((out, start + 1 + offset + 1)),
            '\\' => match chars.next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, 't')) => out.push('\t'),
                Some((_, 'r')) => out.push('\r'),
                Some((_, '0')) => out.push('\0'),
                Some((_, other)) => out.push(other),
                None => break,
            },
            c => out.push(c),
        }
    }
    fail(start, "unterminated string")
}

/// Compiles one rule's text.
pub fn parse(text: &str) -> Result<Expr, CompileError> {
    // deepstream's own checks, on the text, before its syntax (rule-parser.js).
    for (pattern, message) in [
        (r"(^|[^\w$])new[^\w$]", "rule can't contain the new keyword"),
        (
            r"(^|[^\w$])function[^\w$]|=>",
            "rule can't contain user functions",
        ),
    ] {
        let found = regex::Regex::new(pattern)
            .ok()
            .and_then(|regex| regex.find(text));
        if let Some(found) = found {
            let at = found.start() + usize::from(!found.as_str().starts_with(['n', 'f', '=']));
            return fail(at, message);
        }
    }
    let tokens = tokenize(text)?;
    let mut parser = Parser {
        tokens,
        next: 0,
        end: text.len(),
    };
    let expr = parser.conditional()?;
    match parser.peek() {
        None => Ok(expr),
        Some(_) => fail(parser.at(), "unexpected text after the expression"),
    }
}

struct Parser {
    tokens: Vec<(usize, Token)>,
    next: usize,
    /// The rule's length (where "end of rule" errors point).
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.next).map(|(_, token)| token)
    }

    fn at(&self) -> usize {
        self.tokens.get(self.next).map_or(self.end, |(at, _)| *at)
    }

    fn eat(&mut self, punct: &str) -> bool {
        if matches!(self.peek(), Some(Token::Punct(p)) if *p == punct) {
            self.next += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, punct: &str) -> Result<(), CompileError> {
        if self.eat(punct) {
            Ok(())
        } else {
            fail(self.at(), format!("expected '{punct}'"))
        }
    }

    fn conditional(&mut self) -> Result<Expr, CompileError> {
        let test = self.or()?;
        if !self.eat("?") {
            return Ok(test);
        }
        let then = self.conditional()?;
        self.expect(":")?;
        let otherwise = self.conditional()?;
        Ok(Expr::Conditional(
            Box::new(test),
            Box::new(then),
            Box::new(otherwise),
        ))
    }

    fn or(&mut self) -> Result<Expr, CompileError> {
        let mut left = self.and()?;
        while self.eat("||") {
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, CompileError> {
        let mut left = self.binary(0)?;
        while self.eat("&&") {
            left = Expr::And(Box::new(left), Box::new(self.binary(0)?));
        }
        Ok(left)
    }

    /// Binary operators by level: equality, relational, additive, multiplicative.
    fn binary(&mut self, level: usize) -> Result<Expr, CompileError> {
        const LEVELS: &[&[(&str, BinaryOp)]] = &[
            &[
                ("===", BinaryOp::StrictEqual),
                ("!==", BinaryOp::StrictNotEqual),
                ("==", BinaryOp::LooseEqual),
                ("!=", BinaryOp::LooseNotEqual),
            ],
            &[
                ("<=", BinaryOp::LessOrEqual),
                (">=", BinaryOp::GreaterOrEqual),
                ("<", BinaryOp::Less),
                (">", BinaryOp::Greater),
            ],
            &[("+", BinaryOp::Add), ("-", BinaryOp::Subtract)],
            &[
                ("*", BinaryOp::Multiply),
                ("/", BinaryOp::Divide),
                ("%", BinaryOp::Remainder),
            ],
        ];
        let Some(operators) = LEVELS.get(level) else {
            return self.unary();
        };
        let mut left = self.binary(level + 1)?;
        'outer: loop {
            for (punct, op) in *operators {
                if self.eat(punct) {
                    let right = self.binary(level + 1)?;
                    left = Expr::Binary(*op, Box::new(left), Box::new(right));
                    continue 'outer;
                }
            }
            return Ok(left);
        }
    }

    fn unary(&mut self) -> Result<Expr, CompileError> {
        for (punct, op) in [
            ("!", UnaryOp::Not),
            ("-", UnaryOp::Negate),
            ("+", UnaryOp::Plus),
        ] {
            if self.eat(punct) {
                return Ok(Expr::Unary(op, Box::new(self.unary()?)));
            }
        }
        self.postfix()
    }

    fn postfix(&mut self) -> Result<Expr, CompileError> {
        let mut expr = self.primary()?;
        loop {
            if self.eat(".") {
                let at = self.at();
                let Some(Token::Name(name)) = self.peek().cloned() else {
                    return fail(at, "expected a property name after '.'");
                };
                self.next += 1;
                if self.eat("(") {
                    if !METHODS.contains(&name.as_str()) {
                        return fail(at, format!("function {name} is not supported"));
                    }
                    let arguments = self.arguments()?;
                    expr = Expr::Method(Box::new(expr), name, arguments);
                } else {
                    expr = Expr::Member(Box::new(expr), Box::new(Expr::Str(Value::Str(name))));
                }
            } else if self.eat("[") {
                let key = self.conditional()?;
                self.expect("]")?;
                expr = Expr::Member(Box::new(expr), Box::new(key));
            } else if matches!(self.peek(), Some(Token::Punct("("))) {
                return fail(self.at(), "only the supported methods can be called");
            } else {
                return Ok(expr);
            }
        }
    }

    /// After `(`: comma-separated arguments up to `)`.
    fn arguments(&mut self) -> Result<Vec<Expr>, CompileError> {
        let mut arguments = Vec::new();
        if self.eat(")") {
            return Ok(arguments);
        }
        loop {
            arguments.push(self.conditional()?);
            if self.eat(")") {
                return Ok(arguments);
            }
            self.expect(",")?;
        }
    }

    fn primary(&mut self) -> Result<Expr, CompileError> {
        let at = self.at();
        let Some(token) = self.peek().cloned() else {
            return fail(at, "unexpected end of rule");
        };
        self.next += 1;
        match token {
            Token::Number(number) => Ok(Expr::Number(number)),
            Token::Str(text) => Ok(Expr::Str(Value::Str(text))),
            Token::Variable(name) => Ok(Expr::Variable(name)),
            Token::Punct("(") => {
                let expr = self.conditional()?;
                self.expect(")")?;
                Ok(expr)
            }
            Token::Punct("=>") => fail(at, "rule can't contain user functions"),
            Token::Punct(punct) => fail(at, format!("unexpected '{punct}'")),
            Token::Name(name) => self.name(at, name),
        }
    }

    fn name(&mut self, at: usize, name: String) -> Result<Expr, CompileError> {
        match name.as_str() {
            "true" => Ok(Expr::Bool(true)),
            "false" => Ok(Expr::Bool(false)),
            "null" => Ok(Expr::Null),
            "undefined" => Ok(Expr::Undefined),
            "new" => fail(at, "rule can't contain the new keyword"),
            "function" => fail(at, "rule can't contain user functions"),
            "_" => {
                self.expect("(")?;
                let mut arguments = self.arguments()?;
                if arguments.len() != 1 {
                    return fail(at, "_() takes one record name");
                }
                Ok(Expr::CrossReference(Box::new(arguments.remove(0))))
            }
            _ if matches!(self.peek(), Some(Token::Punct("("))) => {
                fail(at, format!("function {name} is not supported"))
            }
            _ => Ok(Expr::Name(name)),
        }
    }
}

impl Expr {
    /// Whether the rule reads `name` (`data`, `oldData`) anywhere.
    pub fn uses_name(&self, wanted: &str) -> bool {
        self.any(&|expr| matches!(expr, Expr::Name(name) if name == wanted))
    }

    /// Whether the rule has a cross-reference `_()`.
    pub fn uses_cross_reference(&self) -> bool {
        self.any(&|expr| matches!(expr, Expr::CrossReference(_)))
    }

    fn any(&self, test: &dyn Fn(&Expr) -> bool) -> bool {
        if test(self) {
            return true;
        }
        match self {
            Expr::Member(a, b) | Expr::Binary(_, a, b) | Expr::And(a, b) | Expr::Or(a, b) => {
                a.any(test) || b.any(test)
            }
            Expr::Method(object, _, arguments) => {
                object.any(test) || arguments.iter().any(|argument| argument.any(test))
            }
            Expr::CrossReference(a) | Expr::Unary(_, a) => a.any(test),
            Expr::Conditional(a, b, c) => a.any(test) || b.any(test) || c.any(test),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> String {
        match parse(text) {
            Ok(expr) => panic!("{text} compiled to {expr:?}"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn precedence_follows_javascript() {
        assert_eq!(
            parse("1 + 2 * 3 == 7 && !false || x").ok(),
            Some(Expr::Or(
                Box::new(Expr::And(
                    Box::new(Expr::Binary(
                        BinaryOp::LooseEqual,
                        Box::new(Expr::Binary(
                            BinaryOp::Add,
                            Box::new(Expr::Number(1.0)),
                            Box::new(Expr::Binary(
                                BinaryOp::Multiply,
                                Box::new(Expr::Number(2.0)),
                                Box::new(Expr::Number(3.0))
                            ))
                        )),
                        Box::new(Expr::Number(7.0))
                    )),
                    Box::new(Expr::Unary(UnaryOp::Not, Box::new(Expr::Bool(false))))
                )),
                Box::new(Expr::Name("x".into()))
            ))
        );
    }

    #[test]
    fn members_methods_variables_and_cross_references() {
        let expr =
            parse("_('settings/' + $id).open === true && user.data['role'].startsWith(\"a\")")
                .expect("compiles");
        assert!(expr.uses_cross_reference());
        assert!(!expr.uses_name("data"));
        assert!(parse("data.price > 0").expect("compiles").uses_name("data"));
        assert!(parse("oldData.v < 1.5e3 ? true : false").is_ok());
        assert_eq!(
            parse("data.match(/^[a-z/]+$/i)").ok(),
            Some(Expr::Method(
                Box::new(Expr::Name("data".into())),
                "match".into(),
                vec![Expr::Str(Value::Str("(?i)^[a-z/]+$".into()))]
            ))
        );
        assert!(matches!(
            parse("6 / 2 / 3"),
            Ok(Expr::Binary(BinaryOp::Divide, _, _))
        ));
    }

    #[test]
    fn what_deepstream_forbids_is_refused_with_a_place() {
        assert_eq!(
            error("new Date() > 0"),
            "rule can't contain the new keyword (at character 1)"
        );
        assert!(error("(function () { return true })()").contains("user functions"));
        assert!(error("(() => true)()").contains("user functions"));
        assert_eq!(
            error("user.id.replace('a', 'b')"),
            "function replace is not supported (at character 9)"
        );
        assert!(error("eval('1')").contains("function eval is not supported"));
        assert!(error("user.id ==").contains("unexpected end of rule"));
        assert!(error("'open").contains("unterminated string"));
        assert!(error("user.id = 'x'").contains("unexpected character '='"));
        assert!(error("`x`").contains("template strings"));
        assert!(error("1 2").contains("unexpected text"));
    }
}
