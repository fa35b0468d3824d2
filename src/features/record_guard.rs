//! Record permissions on the owner core of the name, where the stored record is at hand:
//! `read` (R|SN, R|H, R|HD, and R|CR: of a missing record after it was created), `create`
//! (R|CR of a missing record, R|CU), `write` (R|U, R|P, R|CU) and `delete` (R|D). `oldData` is the stored record; a write
//! rule's `data` is the whole new body (U) or the stored record with the patch applied (P).
//!
//! The replies are deepstream 2.4.1's: a message its message processor checks (U, P, D, SN, H,
//! HD) is refused as `R|E|MESSAGE_DENIED|<name>|<action>|<the rest of its data>`; a check the
//! record handler makes itself (CR: `C` or `R`; CU: `C` then `U`) as
//! `R|E|MESSAGE_DENIED|<name>|<C or R or U>`, and a rule failing there as
//! `R|E|MESSAGE_PERMISSION_ERROR|MESSAGE_PERMISSION_ERROR`. Called by `record::RecordFeature`.

use super::record_store::RecordStore;
use crate::permission::cache::RuleCache;
use crate::permission::cross::CrossRecords;
use crate::permission::eval::Value;
use crate::permission::Section;
use crate::permission::{json_value, now_ms, typed_value, Decision, Facts, Permissions, RuleType};
use crate::protocol::actions::Action;
use crate::protocol::message::{build_message, Message};
use bytes::Bytes;
use std::cell::RefCell;
use std::sync::Arc;

/// Who asks, against which rules.
pub struct RecordGuard<'a> {
    pub permissions: &'a Permissions,
    pub user: &'a Arc<Value>,
    /// The owner core's cache of results of rules that read only the name and the user.
    pub cache: &'a RefCell<RuleCache>,
    /// The records the rules cross-reference, loaded by the sender's session.
    pub cross: &'a CrossRecords,
}

/// What a `RecordGuard` borrows, owned: kept by the cluster's record path while it waits for
/// Redis. `None` from `for_message` when no record rule applies (no rules, or all `true`).
pub struct RecordRules {
    permissions: Arc<Permissions>,
    user: Arc<Value>,
    cross: CrossRecords,
}

impl RecordRules {
    /// The rules for one record message: the file, its sender as rules see it, and the
    /// records its rules cross-reference as the sender's session loaded them.
    pub fn for_message(
        permissions: Option<&Arc<Permissions>>,
        user: Option<&Arc<Value>>,
        cross: Option<&[(String, Option<Value>)]>,
    ) -> Option<RecordRules> {
        let (permissions, user) = (permissions?, user?);
        if permissions.allows_everything_in(Section::Record) {
            return None;
        }
        Some(RecordRules {
            permissions: Arc::clone(permissions),
            user: Arc::clone(user),
            cross: CrossRecords::from_loaded(cross.unwrap_or_default()),
        })
    }

    /// The guard, with the deciding core's rule cache.
    pub fn guard<'a>(&'a self, cache: &'a RefCell<RuleCache>) -> RecordGuard<'a> {
        RecordGuard {
            permissions: &self.permissions,
            user: &self.user,
            cache,
            cross: &self.cross,
        }
    }
}

/// One check: the rule type and the action name rules see (and the denial's action field).
struct Check {
    rule_type: RuleType,
    action: &'static str,
    /// The action field of a denial from the record handler (`None`: the message's own).
    code: Option<&'static [u8]>,
}

impl RecordGuard<'_> {
    /// The reply refusing `message`, or `None` when it may proceed.
    pub fn refusal(&self, store: &mut RecordStore, message: &Message<'_>) -> Option<Bytes> {
        let name = message.data_at(0)?;
        let exists = store.get(name).is_some();
        for check in checks(message.action, exists) {
            if message.action == Action::CreateOrRead && check.rule_type == RuleType::Read {
                // (a record created by the CREATE check that passed; a full store refuses the
                // creation later, as without rules)
                store.get_or_create(name);
            }
            let decision = self.decide(store, message, &check);
            let reply = match (decision, check.code) {
                (Decision::Allow, _) => continue,
                (Decision::Deny, Some(code)) => {
                    build_message(&[b"R", b"E", b"MESSAGE_DENIED", name, code])
                }
                (Decision::Error(reason), Some(_)) => {
                    log_failure(name, &check, &reason);
                    build_message(&[
                        b"R",
                        b"E",
                        b"MESSAGE_PERMISSION_ERROR",
                        b"MESSAGE_PERMISSION_ERROR",
                    ])
                }
                (Decision::Deny, None) => with_message_fields(b"MESSAGE_DENIED", message),
                (Decision::Error(reason), None) => {
                    log_failure(name, &check, &reason);
                    with_message_fields(b"MESSAGE_PERMISSION_ERROR", message)
                }
            };
            return Some(Bytes::from(reply));
        }
        None
    }

    /// The decision of one check: from the cache when its rule reads only the name and the
    /// user and this user was checked before, else by running the rule.
    fn decide(&self, store: &mut RecordStore, message: &Message<'_>, check: &Check) -> Decision {
        let name = String::from_utf8_lossy(message.data_at(0).unwrap_or_default());
        let rule_type = check.rule_type;
        let cached = self
            .cache
            .borrow_mut()
            .get(Section::Record, rule_type, &name, self.user);
        if let Some(decision) = cached {
            return decision;
        }
        let (decision, cacheable) = self.run_rule(store, message, check, &name);
        if cacheable {
            let mut cache = self.cache.borrow_mut();
            cache.put(Section::Record, rule_type, &name, self.user, &decision);
        }
        decision
    }

    /// Runs the rule of one check; whether its answer depends only on the name and the user.
    fn run_rule(
        &self,
        store: &mut RecordStore,
        message: &Message<'_>,
        check: &Check,
        name: &str,
    ) -> (Decision, bool) {
        let raw_name = message.data_at(0).unwrap_or_default();
        let Some((rule, variables)) =
            self.permissions
                .rule_for(Section::Record, check.rule_type, name)
        else {
            return (Decision::Deny, true);
        };
        let old_data = match (rule.uses_old_data(), store.get(raw_name)) {
            (true, Some(record)) => match json_value(&record.data) {
                Ok(old) => old,
                Err(reason) => return (Decision::Error(reason), false),
            },
            _ => Value::Null,
        };
        let data = match rule.uses_data() {
            true => match write_data(store, message) {
                Ok(data) => data,
                Err(reason) => {
                    let reason = format!("error when converting message data {reason}");
                    return (Decision::Error(reason), false);
                }
            },
            false => Value::Undefined,
        };
        let facts = Facts {
            name,
            user: self.user,
            data: &data,
            old_data: &old_data,
            action: check.action,
            now_ms: now_ms(),
            cross: self.cross,
        };
        let decision = crate::permission::decide(rule, &variables, &facts);
        (decision, rule.is_cacheable())
    }
}

/// Every rule type a record action may be checked against (the session loads what their
/// cross-references read before the message goes to the owner core).
pub fn rule_types_of(action: Action) -> Vec<RuleType> {
    let mut types: Vec<RuleType> = Vec::new();
    for check in checks(action, true)
        .into_iter()
        .chain(checks(action, false))
    {
        if !types.contains(&check.rule_type) {
            types.push(check.rule_type);
        }
    }
    types
}

/// The checks deepstream makes for a record action (none for the others).
fn checks(action: Action, exists: bool) -> Vec<Check> {
    let check = |rule_type, action, code| Check {
        rule_type,
        action,
        code,
    };
    match action {
        Action::CreateOrRead if exists => vec![check(RuleType::Read, "READ", Some(b"R"))],
        // deepstream creates the record after the CREATE check, then checks READ.
        Action::CreateOrRead => vec![
            check(RuleType::Create, "CREATE", Some(b"C")),
            check(RuleType::Read, "READ", Some(b"R")),
        ],
        Action::CreateAndUpdate => vec![
            check(RuleType::Create, "CREATE", Some(b"C")),
            check(RuleType::Write, "UPDATE", Some(b"U")),
        ],
        Action::Snapshot => vec![check(RuleType::Read, "SNAPSHOT", None)],
        Action::Has => vec![check(RuleType::Read, "HAS", None)],
        Action::Head => vec![check(RuleType::Read, "HEAD", None)],
        Action::Update => vec![check(RuleType::Write, "UPDATE", None)],
        Action::Patch => vec![check(RuleType::Write, "PATCH", None)],
        Action::Delete => vec![check(RuleType::Delete, "DELETE", None)],
        _ => Vec::new(),
    }
}

/// A write rule's `data`: the new body (U, CU), or the stored record with the patch applied
/// (P with or without a 2.x write config, the patch form of CU, applied to `{}` when the record
/// is missing). deepstream 2.4.1 cannot check CU's data (it parses a body that is not there)
/// nor a patch with a write config (it accepts only four fields), and answers every such write
/// with `MESSAGE_PERMISSION_ERROR`: corestream checks the data the write would store.
fn write_data(store: &mut RecordStore, message: &Message<'_>) -> Result<Value, String> {
    let invalid = || "Error: Invalid message data".to_string();
    let field = |index| message.data_at(index).ok_or_else(invalid);
    match (message.action, message.data_count()) {
        (Action::Update, _) | (Action::CreateAndUpdate, 4) => json_value(field(2)?),
        (Action::Patch, 4 | 5) | (Action::CreateAndUpdate, 5) => {
            let (name, path, value) = (field(0)?, field(2)?, field(3)?);
            typed_value(value)?;
            let current = match store.get(name) {
                Some(record) => record.data.to_vec(),
                None if message.action == Action::CreateAndUpdate => b"{}".to_vec(),
                None => {
                    return Err(format!(
                        "Tried to apply patch to non-existant record {}",
                        String::from_utf8_lossy(name)
                    ))
                }
            };
            let patched = store
                .patched(&current, path, value)
                .map_err(|error| format!("{error:?}"))?;
            json_value(&patched)
        }
        (Action::Patch | Action::CreateAndUpdate, _) => Err(invalid()),
        _ => Ok(Value::Undefined),
    }
}

/// `R|E|MESSAGE_PERMISSION_ERROR|<name>|<action>|<the rest>`: a check that could not be
/// decided (the cluster's record kept changing under it).
pub fn permission_error(message: &Message<'_>) -> Bytes {
    Bytes::from(with_message_fields(b"MESSAGE_PERMISSION_ERROR", message))
}

/// `R|E|<kind>|<name>|<action>|<the rest of the message's data>`.
fn with_message_fields(kind: &[u8], message: &Message<'_>) -> Vec<u8> {
    let mut fields: Vec<&[u8]> = vec![b"R", b"E", kind];
    let mut data = message.data_fields();
    fields.extend(data.next());
    fields.push(message.action_raw);
    fields.extend(data);
    build_message(&fields)
}

fn log_failure(name: &[u8], check: &Check, reason: &str) {
    crate::warn!(
        "permission rule {} for record {} failed: {reason}",
        check.rule_type.name(),
        String::from_utf8_lossy(name)
    );
}
