//! A record's change history as the server reports it
//! (`GET /api/{collection}/{id}/history`): who changed which field from what
//! to what, and when, newest first. Plain data; the web layer fetches it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::core::record::FieldValue;
use crate::error::Error;

/// Entries asked for when the app names no `limit`.
pub const DEFAULT_LIMIT: u32 = 50;

/// The most entries one call may ask for (the reference server's bound).
pub const MAX_LIMIT: u32 = 1000;

/// What a change did to its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HistoryOp {
    /// Created (or brought back after a deletion).
    Create,
    /// Some fields changed.
    Update,
    /// Deleted.
    Delete,
}

/// One field's value before and after a change; `None` is `null`: not set
/// before, or cleared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    /// The value before.
    #[serde(default)]
    pub from: Option<FieldValue>,
    /// The value after.
    #[serde(default)]
    pub to: Option<FieldValue>,
}

/// One committed change of a record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// The version the change made.
    pub version: u64,
    /// When the server committed it (RFC 3339).
    pub at: String,
    /// Who made it; for a sheet sync, the user who ran it.
    pub by: String,
    /// Create, update or delete (a backend may leave it out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<HistoryOp>,
    /// The sheet sync run that applied it, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_id: Option<String>,
    /// Each changed field, by name.
    #[serde(default)]
    pub changes: BTreeMap<String, FieldChange>,
}

/// The history route's answer.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct HistoryPage {
    /// Newest first.
    pub items: Vec<HistoryEntry>,
}

/// Options of `crm.history`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HistoryOptions {
    /// How many entries, newest first (50; at most 1000).
    #[serde(default)]
    pub limit: Option<u32>,
}

impl HistoryOptions {
    /// The limit to ask for.
    ///
    /// # Errors
    /// [`Error::Invalid`] for 0 or more than [`MAX_LIMIT`].
    pub fn limit(&self) -> Result<u32, Error> {
        match self.limit {
            None => Ok(DEFAULT_LIMIT),
            Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            Some(n) => Err(Error::Invalid(format!(
                "history limit must be 1 to {MAX_LIMIT}, not {n}"
            ))),
        }
    }
}

/// Keeps the entries in the order the contract promises, newest first,
/// whatever order a backend sent them in.
pub fn newest_first(mut items: Vec<HistoryEntry>) -> Vec<HistoryEntry> {
    crate::core::sort::sort_by(&mut items, |a, b| b.version.cmp(&a.version));
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_outside_one_to_a_thousand_are_invalid() {
        let with = |limit| HistoryOptions { limit };
        assert_eq!(with(None).limit().unwrap(), DEFAULT_LIMIT);
        assert_eq!(with(Some(1)).limit().unwrap(), 1);
        assert_eq!(with(Some(1000)).limit().unwrap(), 1000);
        for bad in [0, 1001] {
            let err = with(Some(bad)).limit().unwrap_err();
            assert_eq!(err.code(), crate::core::code::ErrorCode::Invalid);
        }
    }

    #[test]
    fn entries_are_put_newest_first() {
        let entry = |version| HistoryEntry {
            version,
            at: String::new(),
            by: "alice".into(),
            op: None,
            sync_id: None,
            changes: BTreeMap::new(),
        };
        let sorted = newest_first(vec![entry(1), entry(3), entry(2)]);
        let versions: Vec<u64> = sorted.iter().map(|e| e.version).collect();
        assert_eq!(versions, [3, 2, 1]);
    }
}
