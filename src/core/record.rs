//! The record model of PROTOCOL.md ("Records"), shared by every core.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One field value: the protocol allows string, number, boolean and null.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FieldValue {
    /// `null`: in a patch, clears the field.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// Any JSON number.
    Number(f64),
    /// Any string.
    Text(String),
}

/// Field name to value. Ordered, so equal field sets compare and serialise
/// the same way whatever order they were built in.
pub type Fields = BTreeMap<String, FieldValue>;

/// A comment: an append-only log entry with a client-made id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Comment {
    /// UUID v4 made by the client, so a retry never posts it twice.
    pub id: String,
    /// The user who wrote it.
    pub author: String,
    /// The comment's text.
    pub text: String,
    /// RFC 3339 UTC, set by the server.
    pub created_at: String,
}

/// A comment this client wrote that the server has not acknowledged yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingComment {
    /// The client-made UUID it is posted with, so a retry never posts it twice.
    pub id: String,
    /// The comment's text.
    pub text: String,
}

/// A record as the server acknowledged it (`CrmRecord` in TypeScript, where
/// `Record` is a built-in type; see `api::types`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// The record's id within its collection.
    pub id: String,
    /// Starts at 1, grows by exactly 1 on every change of `fields`.
    pub version: u64,
    /// RFC 3339 UTC of the last change.
    #[serde(default)]
    pub updated_at: String,
    /// Who made the last change.
    #[serde(default)]
    pub updated_by: String,
    /// The record's fields.
    #[serde(default)]
    pub fields: Fields,
    /// The comment log, oldest first.
    #[serde(default)]
    pub comments: Vec<Comment>,
}

/// Where a record's key lives: collection and id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RecordKey {
    /// The collection, e.g. `customers`.
    pub collection: String,
    /// The record id within the collection.
    pub id: String,
}

impl RecordKey {
    /// A key from its parts.
    pub fn new(collection: impl Into<String>, id: impl Into<String>) -> Self {
        Self {
            collection: collection.into(),
            id: id.into(),
        }
    }
}
