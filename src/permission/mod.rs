//! Valve permissions: deepstream's `permissions.yml`, validated and compiled once at start.
//!
//! The file has sections `record` (create, read, write, delete, listen), `event` (publish,
//! subscribe, listen), `rpc` (provide, request) and, in 2.x, `presence` (allow). Each section
//! maps paths (`user/$userId`, `feed/*`, and the required `*`) to rules: `true`, `false` or an
//! expression (`expr`, evaluated by `eval`). For a name, the longest matching path that defines
//! the rule type decides (deepstream: `path.length >= longest`, so of equal lengths the later
//! path wins); no such path denies.
//!
//! Validation follows deepstream's `config-validator.js`, with the same messages: sections
//! present (`presence` optional, so one file serves 1.x and 2.x) and no others, each with a
//! `*` path, valid paths, known rule types, rules that compile, no `data` / `oldData` where
//! the rule type has none. `compile` is called while the configuration is read (`base::config`
//! keeps the parsed file; the server compiles it and exits with status 2 on an error).

pub mod cache;
pub mod cross;
pub mod eval;
pub mod expr;
pub mod path;
pub mod value;

use cross::CrossRecords;
use eval::{evaluate, Scope, Value};
use expr::Expr;
use path::PathPattern;
use std::fmt;
use yaml_serde::Value as Yaml;

/// A section of the permissions file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Section {
    Record,
    Event,
    Rpc,
    Presence,
}

impl Section {
    pub const ALL: [Section; 4] = [
        Section::Record,
        Section::Event,
        Section::Rpc,
        Section::Presence,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Section::Record => "record",
            Section::Event => "event",
            Section::Rpc => "rpc",
            Section::Presence => "presence",
        }
    }

    /// The rule types of the section.
    pub fn rule_types(self) -> &'static [RuleType] {
        match self {
            Section::Record => &[
                RuleType::Create,
                RuleType::Read,
                RuleType::Write,
                RuleType::Delete,
                RuleType::Listen,
            ],
            Section::Event => &[RuleType::Publish, RuleType::Subscribe, RuleType::Listen],
            Section::Rpc => &[RuleType::Provide, RuleType::Request],
            Section::Presence => &[RuleType::Allow],
        }
    }
}

/// What a rule decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleType {
    Create,
    Read,
    Write,
    Delete,
    Listen,
    Publish,
    Subscribe,
    Provide,
    Request,
    Allow,
}

impl RuleType {
    pub fn name(self) -> &'static str {
        match self {
            RuleType::Create => "create",
            RuleType::Read => "read",
            RuleType::Write => "write",
            RuleType::Delete => "delete",
            RuleType::Listen => "listen",
            RuleType::Publish => "publish",
            RuleType::Subscribe => "subscribe",
            RuleType::Provide => "provide",
            RuleType::Request => "request",
            RuleType::Allow => "allow",
        }
    }

    /// Whether rules of this type may read `data` (deepstream's `rules-map.js`).
    pub fn has_data(self) -> bool {
        matches!(
            self,
            RuleType::Write | RuleType::Publish | RuleType::Subscribe | RuleType::Request
        )
    }

    /// Whether rules of this type may read `oldData`.
    pub fn has_old_data(self) -> bool {
        matches!(self, RuleType::Read | RuleType::Write | RuleType::Delete)
    }
}

/// A compiled rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    Constant(bool),
    Expression {
        expr: Expr,
        uses_data: bool,
        uses_old_data: bool,
        uses_cross_reference: bool,
        /// Reads only the name (its path variables) and the user: same name and user, same
        /// answer (`cache::RuleCache` keeps it).
        name_and_user_only: bool,
    },
}

impl Rule {
    /// Whether the rule is `true`: no evaluation, always allowed.
    pub fn always(&self) -> bool {
        *self == Rule::Constant(true)
    }

    /// Whether the rule reads `oldData` (it must run where the record is).
    pub fn uses_old_data(&self) -> bool {
        matches!(
            self,
            Rule::Expression {
                uses_old_data: true,
                ..
            }
        )
    }

    /// Whether the rule reads other records (`_()`): they are loaded before it is decided.
    pub fn uses_cross_reference(&self) -> bool {
        matches!(
            self,
            Rule::Expression {
                uses_cross_reference: true,
                ..
            }
        )
    }

    /// Whether the rule's answer depends only on the name and the user (`true`, `false`, and
    /// expressions that read neither `data`, `oldData`, `_()`, `now` nor `action`).
    pub fn is_cacheable(&self) -> bool {
        match self {
            Rule::Constant(_) => true,
            Rule::Expression {
                name_and_user_only, ..
            } => *name_and_user_only,
        }
    }

    /// Whether the rule reads `data`.
    pub fn uses_data(&self) -> bool {
        matches!(
            self,
            Rule::Expression {
                uses_data: true,
                ..
            }
        )
    }
}

/// The rules of one path.
#[derive(Debug, Clone)]
pub struct PathRules {
    pub pattern: PathPattern,
    pub rules: Vec<(RuleType, Rule)>,
}

/// A refused permissions file: where and why, in deepstream's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermissionError(pub String);

impl fmt::Display for PermissionError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

fn refuse<T>(message: impl Into<String>) -> Result<T, PermissionError> {
    Err(PermissionError(message.into()))
}

/// A compiled permissions file.
#[derive(Debug, Clone, Default)]
pub struct Permissions {
    sections: Vec<(Section, Vec<PathRules>)>,
    /// The sections whose every rule is `true` (or that are absent): nothing to check.
    open: Vec<Section>,
    /// `maxRuleIterations`: runs of a rule while it discovers records to load.
    max_rule_iterations: usize,
    /// Whether any rule reads other records (`_()`).
    cross_references: bool,
}

/// What a check decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny,
    /// The rule failed while it ran (`MESSAGE_PERMISSION_ERROR`); the text is for the log.
    Error(String),
}

/// Everything a rule may read about one message.
pub struct Facts<'a> {
    pub name: &'a str,
    /// `{isAuthenticated, id, data}`.
    pub user: &'a Value,
    pub data: &'a Value,
    pub old_data: &'a Value,
    /// deepstream's action name (`UPDATE`, `EVENT`, ...).
    pub action: &'a str,
    pub now_ms: f64,
    /// The records loaded for `_()`.
    pub cross: &'a CrossRecords,
}

/// What one run of a rule found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Decided(Decision),
    /// Records to load (by name) before the rule can be decided.
    Needs(Vec<String>),
}

impl Permissions {
    /// Validates and compiles a parsed permissions file.
    pub fn compile(file: &Yaml) -> Result<Permissions, PermissionError> {
        let Yaml::Mapping(file) = file else {
            return refuse("config should be an object literal");
        };
        for (key, _) in file {
            let known = key
                .as_str()
                .is_some_and(|key| Section::ALL.iter().any(|section| section.name() == key));
            if !known {
                return refuse(format!(
                    "unexpected configuration section \"{}\"",
                    key.as_str().unwrap_or("?")
                ));
            }
        }
        let mut sections = Vec::new();
        for section in Section::ALL {
            match file.get(section.name()) {
                Some(paths) => sections.push((section, compile_section(section, paths)?)),
                None if section == Section::Presence => {}
                None => {
                    return refuse(format!(
                        "missing configuration section \"{}\"",
                        section.name()
                    ))
                }
            }
        }
        let mut permissions = Permissions {
            sections,
            open: Vec::new(),
            max_rule_iterations: 3,
            cross_references: false,
        };
        permissions.cross_references = permissions
            .sections
            .iter()
            .flat_map(|(_, paths)| paths.iter())
            .flat_map(|path| path.rules.iter())
            .any(|(_, rule)| rule.uses_cross_reference());
        permissions.open = Section::ALL
            .into_iter()
            .filter(|section| permissions.every_rule_is_true(*section))
            .collect();
        Ok(permissions)
    }

    /// The rule that decides `rule_type` for `name` in `section`, and what its path captured;
    /// `None` when no path defines it (denied). A file without the section allows everything.
    pub fn rule_for(
        &self,
        section: Section,
        rule_type: RuleType,
        name: &str,
    ) -> Option<(&Rule, Vec<(String, Value)>)> {
        let Some((_, paths)) = self.sections.iter().find(|(s, _)| *s == section) else {
            return Some((&Rule::Constant(true), Vec::new()));
        };
        let mut best: Option<(&PathRules, &Rule, Vec<String>)> = None;
        for path in paths {
            let Some((_, rule)) = path.rules.iter().find(|(kind, _)| *kind == rule_type) else {
                continue;
            };
            let longest = best.as_ref().map_or(0, |(b, _, _)| b.pattern.text.len());
            if path.pattern.text.len() < longest {
                continue;
            }
            if let Some(captures) = path.pattern.matches(name) {
                best = Some((path, rule, captures));
            }
        }
        best.map(|(path, rule, captures)| {
            let variables = path
                .pattern
                .variables()
                .map(str::to_string)
                .zip(captures.into_iter().map(Value::Str))
                .collect();
            (rule, variables)
        })
    }

    /// Decides `rule_type` for a message about `facts.name`.
    pub fn check(&self, section: Section, rule_type: RuleType, facts: &Facts<'_>) -> Decision {
        let Some((rule, variables)) = self.rule_for(section, rule_type, facts.name) else {
            return Decision::Deny;
        };
        decide(rule, &variables, facts)
    }

    /// With `maxRuleIterations` (at least 1).
    pub fn with_max_rule_iterations(mut self, iterations: u64) -> Permissions {
        self.max_rule_iterations = usize::try_from(iterations.max(1)).unwrap_or(usize::MAX);
        self
    }

    /// How many runs a rule may take while it discovers records to load.
    pub fn max_rule_iterations(&self) -> usize {
        self.max_rule_iterations
    }

    /// Whether any rule reads other records (`_()`).
    pub fn has_cross_references(&self) -> bool {
        self.cross_references
    }

    /// Whether every rule of `section` is `true` (or the section is absent).
    pub fn allows_everything_in(&self, section: Section) -> bool {
        self.open.contains(&section)
    }

    /// Whether every name is allowed every rule type of `section`: `*` says `true` for each
    /// type, and no other path says anything else (a type no path defines is denied).
    fn every_rule_is_true(&self, section: Section) -> bool {
        let Some((_, paths)) = self.sections.iter().find(|(s, _)| *s == section) else {
            return true;
        };
        section.rule_types().iter().all(|rule_type| {
            let root_allows = paths
                .iter()
                .filter(|path| path.pattern.text == "*")
                .any(|path| path.rules.contains(&(*rule_type, Rule::Constant(true))));
            root_allows
                && paths.iter().all(|path| {
                    path.rules
                        .iter()
                        .filter(|(t, _)| t == rule_type)
                        .all(|(_, rule)| rule.always())
                })
        })
    }
}

/// Runs one rule with what `facts.cross` holds: decided, or the records it still needs.
pub fn judge(rule: &Rule, variables: &[(String, Value)], facts: &Facts<'_>) -> Verdict {
    let expr = match rule {
        Rule::Constant(true) => return Verdict::Decided(Decision::Allow),
        Rule::Constant(false) => return Verdict::Decided(Decision::Deny),
        Rule::Expression { expr, .. } => expr,
    };
    let scope = Scope {
        user: facts.user,
        data: facts.data,
        old_data: facts.old_data,
        now: facts.now_ms,
        action: facts.action,
        variables,
        cross: facts.cross,
    };
    let result = evaluate(expr, &scope);
    // (An error while records are missing is not final: the next run has them.)
    let wanted = facts.cross.take_wanted();
    if !wanted.is_empty() {
        return Verdict::Needs(wanted);
    }
    Verdict::Decided(match result {
        // deepstream allows only `true` itself (`result !== true` denies).
        Ok(value) if *value == Value::Bool(true) => Decision::Allow,
        Ok(_) => Decision::Deny,
        Err(error) => Decision::Error(error.0),
    })
}

/// Runs one rule whose cross-referenced records are all in `facts.cross`.
pub fn decide(rule: &Rule, variables: &[(String, Value)], facts: &Facts<'_>) -> Decision {
    match judge(rule, variables, facts) {
        Verdict::Decided(decision) => decision,
        Verdict::Needs(names) => Decision::Error(format!(
            "the rule reads records that were not loaded: {}",
            names.join(", ")
        )),
    }
}

/// `user` as rules see it: `{isAuthenticated, id, data}` (deepstream: authenticated unless
/// the username is `open`; `data` is the auth's `serverData`).
pub fn rule_user(username: &str, server_data: Option<&serde_json::Value>) -> Value {
    Value::Object(vec![
        ("isAuthenticated".into(), Value::Bool(username != "open")),
        ("id".into(), Value::Str(username.to_string())),
        (
            "data".into(),
            server_data.cloned().map_or(Value::Undefined, Value::from),
        ),
    ])
}

/// A typed protocol value (`S…`, `N…`, `T`, `F`, `L`, `U`, `O…`) as a rule's `data`; an
/// unknown type or bad JSON is an error (deepstream's `convertTyped` returns an Error).
pub fn typed_value(field: &[u8]) -> Result<Value, String> {
    let Some((&kind, rest)) = field.split_first() else {
        return Err("empty typed value".into());
    };
    let text = || String::from_utf8_lossy(rest).into_owned();
    match kind {
        b'S' => Ok(Value::Str(text())),
        b'N' => Ok(Value::Number(eval::to_number(&Value::Str(text())))),
        b'T' => Ok(Value::Bool(true)),
        b'F' => Ok(Value::Bool(false)),
        b'L' => Ok(Value::Null),
        b'U' => Ok(Value::Undefined),
        b'O' => json_value(rest),
        _ => Err(format!("unknown type {}", char::from(kind))),
    }
}

/// JSON as a rule's `data` / `oldData`.
pub fn json_value(json: &[u8]) -> Result<Value, String> {
    serde_json::from_slice::<serde_json::Value>(json)
        .map(Value::from)
        .map_err(|error| format!("SyntaxError: {error}"))
}

/// Milliseconds since the epoch, for `now`.
pub fn now_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |elapsed| elapsed.as_millis() as f64)
}

fn compile_section(section: Section, paths: &Yaml) -> Result<Vec<PathRules>, PermissionError> {
    let Yaml::Mapping(paths) = paths else {
        return refuse(format!(
            "section \"{}\" must map paths to rules",
            section.name()
        ));
    };
    if paths.is_empty() {
        return refuse(format!("empty section \"{}\"", section.name()));
    }
    let mut compiled = Vec::new();
    for (path, rules) in paths {
        let Some(path) = path.as_str() else {
            return refuse(format!(
                "path must be a string in section {}",
                section.name()
            ));
        };
        let pattern = PathPattern::compile(path).or_else(|reason| {
            refuse(format!(
                "{reason} for path {path} in section {}",
                section.name()
            ))
        })?;
        compiled.push(PathRules {
            pattern,
            rules: compile_rules(section, path, rules)?,
        });
    }
    if !compiled.iter().any(|path| path.pattern.text == "*") {
        return refuse(format!(
            "missing root entry \"*\" for section {}",
            section.name()
        ));
    }
    Ok(compiled)
}

fn compile_rules(
    section: Section,
    path: &str,
    rules: &Yaml,
) -> Result<Vec<(RuleType, Rule)>, PermissionError> {
    let Yaml::Mapping(rules) = rules else {
        return refuse(format!(
            "path {path} in section {} must map rule types to rules",
            section.name()
        ));
    };
    let mut compiled = Vec::new();
    for (rule_type, rule) in rules {
        let name = rule_type.as_str().unwrap_or("?");
        let Some(rule_type) = section.rule_types().iter().find(|t| t.name() == name) else {
            return refuse(format!(
                "unknown rule type {name} in section {} (path {path})",
                section.name()
            ));
        };
        let rule = compile_rule(*rule_type, rule).or_else(|reason| {
            refuse(format!(
                "{reason} (section {}, path {path}, rule {name})",
                section.name()
            ))
        })?;
        compiled.push((*rule_type, rule));
    }
    Ok(compiled)
}

fn compile_rule(rule_type: RuleType, rule: &Yaml) -> Result<Rule, String> {
    let text = match rule {
        Yaml::Bool(flag) => return Ok(Rule::Constant(*flag)),
        Yaml::String(text) => text,
        _ => return Err("rule must be a string".into()),
    };
    if text.trim().is_empty() {
        return Err("rule can't be empty".into());
    }
    let expr = expr::parse(text).map_err(|error| error.to_string())?;
    let uses_data = expr.uses_name("data");
    let uses_old_data = expr.uses_name("oldData");
    if uses_old_data && !rule_type.has_old_data() {
        return Err(format!(
            "rule {} does not support oldData",
            rule_type.name()
        ));
    }
    if uses_data && !rule_type.has_data() {
        return Err(format!("rule {} does not support data", rule_type.name()));
    }
    let uses_cross_reference = expr.uses_cross_reference();
    let name_and_user_only = !(uses_data
        || uses_old_data
        || uses_cross_reference
        || expr.uses_name("now")
        || expr.uses_name("action"));
    Ok(Rule::Expression {
        expr,
        uses_data,
        uses_old_data,
        uses_cross_reference,
        name_and_user_only,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(text: &str) -> Result<Permissions, String> {
        let yaml: Yaml = yaml_serde::from_str(text).map_err(|e| e.to_string())?;
        Permissions::compile(&yaml).map_err(|error| error.0)
    }

    const FILE: &str = r#"
record:
  "*": {create: true, read: true, write: true, delete: true, listen: true}
  "user/$userId": {write: "user.id == $userId"}
  "user/$userId/private": {read: "user.id == $userId"}
event:
  "*": {publish: true, subscribe: true, listen: false}
  "feed/*": {publish: "user.data.role == 'feed'"}
  "price/*": {publish: "data.price > 0"}
rpc:
  "*": {provide: "user.data.role == 'admin'", request: true}
"#;

    fn facts<'a>(name: &'a str, user: &'a Value, data: &'a Value) -> Facts<'a> {
        Facts {
            name,
            user,
            data,
            old_data: &Value::Null,
            action: "EVENT",
            now_ms: 0.0,
            // (a test helper: one small leak per check)
            cross: Box::leak(Box::default()),
        }
    }

    fn user(id: &str, role: &str) -> Value {
        Value::from(serde_json::json!({"isAuthenticated": true, "id": id, "data": {"role": role}}))
    }

    #[test]
    fn the_most_specific_path_that_defines_the_rule_decides() {
        let permissions = compile(FILE).expect("compiles");
        let alice = user("alice", "feed");
        let bob = user("bob", "none");
        let none = Value::Undefined;
        let check = |section, rule_type, name, user, data| {
            permissions.check(section, rule_type, &facts(name, user, data))
        };
        use Decision::{Allow, Deny};
        assert_eq!(
            check(
                Section::Record,
                RuleType::Write,
                "user/alice",
                &alice,
                &none
            ),
            Allow
        );
        assert_eq!(
            check(Section::Record, RuleType::Write, "user/alice", &bob, &none),
            Deny
        );
        // user/$userId/private defines only read: write falls back to user/$userId? No: that
        // path does not match (a variable stops at '/'), so "*" decides.
        assert_eq!(
            check(
                Section::Record,
                RuleType::Write,
                "user/alice/private",
                &bob,
                &none
            ),
            Allow
        );
        assert_eq!(
            check(
                Section::Record,
                RuleType::Read,
                "user/alice/private",
                &bob,
                &none
            ),
            Deny
        );
        assert_eq!(
            check(Section::Event, RuleType::Publish, "feed/x", &alice, &none),
            Allow
        );
        assert_eq!(
            check(Section::Event, RuleType::Publish, "feed/x", &bob, &none),
            Deny
        );
        assert_eq!(
            check(Section::Event, RuleType::Listen, "feed/x", &alice, &none),
            Deny
        );
        let cheap = Value::from(serde_json::json!({"price": -1}));
        let fine = Value::from(serde_json::json!({"price": 3}));
        assert_eq!(
            check(Section::Event, RuleType::Publish, "price/a", &bob, &cheap),
            Deny
        );
        assert_eq!(
            check(Section::Event, RuleType::Publish, "price/a", &bob, &fine),
            Allow
        );
        // presence has no section: allowed
        assert_eq!(
            check(Section::Presence, RuleType::Allow, "U", &bob, &none),
            Allow
        );
        // data.price of a string payload: undefined > 0 is false
        let text = Value::Str("x".into());
        assert_eq!(
            check(Section::Event, RuleType::Publish, "price/a", &bob, &text),
            Deny
        );
        // reading below undefined is an error
        assert!(matches!(
            check(
                Section::Rpc,
                RuleType::Provide,
                "add",
                &Value::Undefined,
                &none
            ),
            Decision::Error(_)
        ));
    }

    #[test]
    fn hostile_files_are_refused_with_the_place() {
        let refused = |text: &str| compile(text).expect_err(text);
        let minimal = "record: {'*': {read: true}}\nevent: {'*': {publish: true}}\nrpc: {'*': {request: true}}\n";
        assert!(compile(minimal).is_ok());
        assert_eq!(
            refused("event: {'*': {publish: true}}\nrpc: {'*': {request: true}}"),
            "missing configuration section \"record\""
        );
        assert_eq!(
            refused(&format!("{minimal}extra: {{}}")),
            "unexpected configuration section \"extra\""
        );
        assert_eq!(
            refused("record: {'a': {read: true}}\nevent: {'*': {publish: true}}\nrpc: {'*': {request: true}}"),
            "missing root entry \"*\" for section record"
        );
        assert_eq!(
            refused(&minimal.replace("publish", "shout")),
            "unknown rule type shout in section event (path *)"
        );
        assert!(
            refused(&minimal.replace("publish: true", "publish: 'new Date() > 0'"))
                .contains("new keyword (at character 1) (section event, path *, rule publish)")
        );
        assert!(
            refused(&minimal.replace("request: true", "request: 'user.id.replace(1)'"))
                .contains("function replace is not supported")
        );
        assert!(
            refused(&minimal.replace("read: true", "read: 'data.x == 1'"))
                .contains("rule read does not support data")
        );
        assert!(
            refused(&minimal.replace("publish: true", "publish: 'oldData.x == 1'"))
                .contains("rule publish does not support oldData")
        );
        assert!(refused(
            &minimal.replace("'*': {request", "'a/$': {request: true}, '*': {request")
        )
        .contains("invalid variable name $ for path a/$ in section rpc"));
        assert!(refused(&minimal.replace("read: true", "read: ''")).contains("can't be empty"));
        assert!(refused(&minimal.replace("read: true", "read: 5")).contains("must be a string"));
    }
}
