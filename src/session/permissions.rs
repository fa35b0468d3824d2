//! Permission checks a session makes itself, before a message leaves its core: events
//! (publish, subscribe, listen), RPC (provide, request), presence (allow) and record listening.
//! These rules read the name, the user and the message's own data, all here. Record reads,
//! creates, writes and deletes read the stored record (`oldData`, the patched data), so they
//! are checked on the record's owner core (`features::record_guard`); the session only hands
//! its rule user along.
//!
//! A rule with cross-references (`_()`) waits here while the records it reads are loaded from
//! their owner cores (`Core::load_records`); the session handles nothing else meanwhile, so
//! its messages keep their order. For record messages the session loads what the record
//! rules cross-reference and sends it along (`record_cross_references`).
//!
//! A denied message gets `<topic>|E|MESSAGE_DENIED|<name>|<action>|<the rest of its data>`, a
//! rule that fails while it runs `…|E|MESSAGE_PERMISSION_ERROR|…` with the same fields (as
//! deepstream's message processor sends them), and nothing else happens.

use super::Session;
use crate::dispatch::Core;
use crate::features::record_guard::rule_types_of;
use crate::features::record_store;
use crate::permission::cross::{CrossRecords, LoadedRecords};
use crate::permission::{
    eval::Value, json_value, judge, now_ms, rule_user, typed_value, Decision, Facts, Permissions,
    RuleType, Section, Verdict,
};
use crate::protocol::actions::{Action, Topic};
use crate::protocol::message::Message;
use std::rc::Rc;
use std::sync::Arc;

/// What deepstream checks for a message at this stage, and the action name rules see.
fn rule_of(topic: Topic, action: Action) -> Option<(Section, RuleType, &'static str)> {
    Some(match (topic, action) {
        (Topic::Event, Action::Event) => (Section::Event, RuleType::Publish, "EVENT"),
        (Topic::Event, Action::Subscribe) => (Section::Event, RuleType::Subscribe, "SUBSCRIBE"),
        (Topic::Event, Action::Listen) => (Section::Event, RuleType::Listen, "LISTEN"),
        (Topic::Record, Action::Listen) => (Section::Record, RuleType::Listen, "LISTEN"),
        (Topic::Rpc, Action::Subscribe) => (Section::Rpc, RuleType::Provide, "SUBSCRIBE"),
        (Topic::Rpc, Action::Request) => (Section::Rpc, RuleType::Request, "REQUEST"),
        (Topic::Presence, Action::Subscribe) => (Section::Presence, RuleType::Allow, "SUBSCRIBE"),
        (Topic::Presence, Action::Query) => (Section::Presence, RuleType::Allow, "QUERY"),
        _ => return None,
    })
}

/// The message's `data` for a rule: an event's payload, an RPC request's argument.
fn message_data(topic: Topic, message: &Message<'_>) -> Result<Value, String> {
    let field = match topic {
        Topic::Event => message.data_at(1).filter(|field| !field.is_empty()),
        Topic::Rpc => message.data_at(2),
        _ => None,
    };
    field.map_or(Ok(Value::Undefined), typed_value)
}

impl Session {
    /// The user rules read, built at login when rules are configured.
    pub(super) fn set_rule_user(
        &mut self,
        username: &str,
        server_data: Option<&serde_json::Value>,
    ) {
        if self.core.permissions().is_some() {
            self.rule_user = Some(Arc::new(rule_user(username, server_data)));
        }
    }

    /// Whether `message` may proceed; when not, the client got the error.
    pub(super) async fn permitted(&mut self, topic: Topic, message: &Message<'_>) -> bool {
        let Some(permissions) = self.core.permissions().map(Arc::clone) else {
            return true;
        };
        let Some((section, rule_type, action)) = rule_of(topic, message.action) else {
            return true;
        };
        if permissions.allows_everything_in(section) {
            return true;
        }
        let decision = self
            .decide(&permissions, topic, message, (section, rule_type, action))
            .await;
        let kind: &[u8] = match decision {
            Decision::Allow => return true,
            Decision::Deny => b"MESSAGE_DENIED",
            Decision::Error(reason) => {
                crate::warn!(
                    "permission rule {} for {} failed: {reason}",
                    rule_type.name(),
                    String::from_utf8_lossy(message.data_at(0).unwrap_or_default())
                );
                b"MESSAGE_PERMISSION_ERROR"
            }
        };
        let mut fields: Vec<&[u8]> = vec![message.topic, b"E", kind];
        let mut data = message.data_fields();
        fields.extend(data.next());
        fields.push(message.action_raw);
        fields.extend(data);
        self.reply(&fields);
        false
    }

    /// The decision for `message`: from this core's cache when the rule reads only the name
    /// and the user and this user asked before, else by running the rule (and kept when it
    /// reads only those).
    async fn decide(
        &self,
        permissions: &Permissions,
        topic: Topic,
        message: &Message<'_>,
        (section, rule_type, action): (Section, RuleType, &str),
    ) -> Decision {
        let name = String::from_utf8_lossy(message.data_at(0).unwrap_or_default());
        let user = self.rule_user.as_ref();
        if let Some(user) = user {
            if let Some(decision) = self
                .core
                .rule_cache()
                .borrow_mut()
                .get(section, rule_type, &name, user)
            {
                return decision;
            }
        }
        let (decision, cacheable) = self
            .run_rule(
                permissions,
                topic,
                message,
                &name,
                (section, rule_type, action),
            )
            .await;
        if let (true, Some(user)) = (cacheable, user) {
            let mut cache = self.core.rule_cache().borrow_mut();
            cache.put(section, rule_type, &name, user, &decision);
        }
        decision
    }

    /// Runs the rule for `message`; whether its answer depends only on the name and the user.
    async fn run_rule(
        &self,
        permissions: &Permissions,
        topic: Topic,
        message: &Message<'_>,
        name: &str,
        (section, rule_type, action): (Section, RuleType, &str),
    ) -> (Decision, bool) {
        let Some((rule, variables)) = permissions.rule_for(section, rule_type, name) else {
            return (Decision::Deny, true);
        };
        let data = match rule.uses_data() {
            true => match message_data(topic, message) {
                Ok(data) => data,
                Err(reason) => {
                    let reason = format!("error when converting message data {reason}");
                    return (Decision::Error(reason), false);
                }
            },
            false => Value::Undefined,
        };
        let anonymous = Value::Undefined;
        let mut cross = CrossRecords::default();
        for _ in 0..permissions.max_rule_iterations() {
            let facts = Facts {
                name,
                user: self.rule_user.as_deref().unwrap_or(&anonymous),
                data: &data,
                old_data: &Value::Null,
                action,
                now_ms: now_ms(),
                cross: &cross,
            };
            match judge(rule, &variables, &facts) {
                Verdict::Decided(decision) => return (decision, rule.is_cacheable()),
                Verdict::Needs(names) => {
                    if let Err(reason) = load(&self.core, &mut cross, names).await {
                        return (Decision::Error(reason), false);
                    }
                }
            }
        }
        (
            Decision::Error("Exceeded max iteration count".into()),
            false,
        )
    }

    /// For a record message checked on the owner core: the records its rules cross-reference,
    /// loaded here (the owner core decides without waiting). A rule that reads `oldData` (or a
    /// patch's result) to name what it loads sees the record as its owner core holds it now
    /// (read here first); if the record changes before the owner core decides, and the rule
    /// then names a record not loaded, the owner core answers `MESSAGE_PERMISSION_ERROR`.
    pub(super) async fn record_cross_references(
        &self,
        message: &Message<'_>,
    ) -> Option<Arc<LoadedRecords>> {
        let permissions = self.core.permissions().map(Arc::clone)?;
        if permissions.allows_everything_in(Section::Record) || !permissions.has_cross_references()
        {
            return None;
        }
        let name = String::from_utf8_lossy(message.data_at(0).unwrap_or_default());
        let user = self.rule_user.as_deref().unwrap_or(&Value::Undefined);
        let mut target = TargetRecord::default();
        let mut cross = CrossRecords::default();
        for rule_type in rule_types_of(message.action) {
            let Some((rule, variables)) = permissions.rule_for(Section::Record, rule_type, &name)
            else {
                continue;
            };
            if !rule.uses_cross_reference() {
                continue;
            }
            if rule.uses_old_data() || (rule.uses_data() && is_patch(message)) {
                target.load(&self.core, &name).await;
            }
            let (old_data, data) = (target.old_data(), target.new_data(message));
            for _ in 0..permissions.max_rule_iterations() {
                let facts = Facts {
                    name: &name,
                    user,
                    data: &data,
                    old_data: &old_data,
                    action: "",
                    now_ms: now_ms(),
                    cross: &cross,
                };
                let Verdict::Needs(names) = judge(rule, &variables, &facts) else {
                    break;
                };
                if let Err(reason) = load(&self.core, &mut cross, names).await {
                    crate::warn!("loading records for a permission rule on {name}: {reason}");
                    break;
                }
            }
        }
        (!cross.is_empty()).then(|| Arc::new(cross.into_loaded()))
    }
}

/// `P`, or the patch form of `CU`: its `data` is the stored record with the patch applied.
fn is_patch(message: &Message<'_>) -> bool {
    match message.action {
        Action::Patch => true,
        Action::CreateAndUpdate => message.data_count() == 5,
        _ => false,
    }
}

/// The record a record message is about, as its owner core holds it, read once when a rule
/// that cross-references other records also reads `oldData` or `data`.
#[derive(Default)]
struct TargetRecord {
    /// `None`: not read (or it could not be read); `Some(None)`: it does not exist.
    stored: Option<Option<Box<[u8]>>>,
}

impl TargetRecord {
    async fn load(&mut self, core: &Rc<Core>, name: &str) {
        if self.stored.is_some() {
            return;
        }
        match core.load_records(&[name.to_string()]).await {
            Ok(mut records) => self.stored = records.pop(),
            Err(reason) => crate::warn!("reading record {name} for a permission rule: {reason}"),
        }
    }

    /// `oldData` as the owner core will see it (`undefined` when not read).
    fn old_data(&self) -> Value {
        match &self.stored {
            Some(Some(json)) => json_value(json).unwrap_or(Value::Undefined),
            Some(None) => Value::Null,
            None => Value::Undefined,
        }
    }

    /// A write's `data`: the body of `U` / `CU`, or the patch applied to the stored record
    /// (to `{}` for a `CU` of a missing one); `undefined` when it cannot be known here.
    fn new_data(&self, message: &Message<'_>) -> Value {
        let field = |index| message.data_at(index);
        let patch = match (message.action, message.data_count()) {
            (Action::Update, _) | (Action::CreateAndUpdate, 4) => {
                return field(2)
                    .and_then(|body| json_value(body).ok())
                    .unwrap_or(Value::Undefined)
            }
            (Action::Patch, 4 | 5) | (Action::CreateAndUpdate, 5) => (field(2), field(3)),
            _ => return Value::Undefined,
        };
        let stored: &[u8] = match &self.stored {
            Some(Some(json)) => json,
            Some(None) if message.action == Action::CreateAndUpdate => b"{}",
            _ => return Value::Undefined,
        };
        let (Some(path), Some(value)) = patch else {
            return Value::Undefined;
        };
        record_store::patch(stored, path, value, &mut Vec::new())
            .ok()
            .and_then(|patched| json_value(&patched).ok())
            .unwrap_or(Value::Undefined)
    }
}

/// Loads `names` from their owner cores into `cross` (JSON parsed; a missing record is `None`).
async fn load(core: &Rc<Core>, cross: &mut CrossRecords, names: Vec<String>) -> Result<(), String> {
    let loaded = core.load_records(&names).await?;
    for (name, data) in names.into_iter().zip(loaded) {
        let value = match data {
            Some(json) => Some(json_value(&json)?),
            None => None,
        };
        cross.insert(name, value);
    }
    Ok(())
}
