//! Cross-references: the records a rule reads with `_(name)`, loaded before it is decided.
//!
//! A rule runs first with what is loaded; every `_()` of a record not loaded yet answers
//! `undefined` and is noted (`want`). The caller loads the noted records (from their owner
//! cores) and runs the rule again, at most `maxRuleIterations` times, as deepstream's
//! `rule-application.js` does; an error while records are still missing is not final.
//! A missing record reads as `null`; a name containing `undefined` reads as `undefined`
//! without a load (deepstream's rule). Used by `eval` and by the callers of `permission::judge`.

use super::value::Value;
use ahash::AHashMap;
use std::cell::RefCell;

/// Records loaded on one core, as sent to another: name → data (`None`: missing).
pub type LoadedRecords = Vec<(String, Option<Value>)>;

/// The records loaded for one decision, and the ones a run asked for.
#[derive(Debug, Default)]
pub struct CrossRecords {
    /// name → the record's data (`None`: it does not exist).
    loaded: AHashMap<String, Option<Value>>,
    wanted: RefCell<Vec<String>>,
}

impl CrossRecords {
    /// A loaded record (`None`: missing).
    pub fn insert(&mut self, name: String, data: Option<Value>) {
        self.loaded.insert(name, data);
    }

    /// `Some(data)` when loaded (`Some(None)`: the record does not exist).
    pub fn get(&self, name: &str) -> Option<Option<&Value>> {
        self.loaded.get(name).map(Option::as_ref)
    }

    /// A run asked for `name`, which is not loaded.
    pub fn want(&self, name: &str) {
        let mut wanted = self.wanted.borrow_mut();
        if !wanted.iter().any(|known| known == name) {
            wanted.push(name.to_string());
        }
    }

    /// What the last run asked for (and forgets it).
    pub fn take_wanted(&self) -> Vec<String> {
        std::mem::take(&mut *self.wanted.borrow_mut())
    }

    pub fn is_empty(&self) -> bool {
        self.loaded.is_empty()
    }

    /// What was loaded, to send to another core (a `CrossRecords` stays on its core).
    pub fn into_loaded(self) -> LoadedRecords {
        self.loaded.into_iter().collect()
    }

    /// Records loaded on another core.
    pub fn from_loaded(loaded: &[(String, Option<Value>)]) -> CrossRecords {
        CrossRecords {
            loaded: loaded.iter().cloned().collect(),
            wanted: RefCell::default(),
        }
    }
}
