//! The record model of docs/backend/protocol.md ("Records"), shared by every core.

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

/// One field value: the protocol allows string, number, boolean and null.
///
/// `Deserialize` is written by hand rather than derived with
/// `#[serde(untagged)]`: an untagged enum buffers every value into serde's
/// `Content` and retries each variant, which costs code size (a copy of the
/// buffering machinery in the wasm) and time on every field of every record
/// loaded. Reading the value's own type once does the same job.
#[derive(Debug, Clone, PartialEq, Serialize)]
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

impl<'de> Deserialize<'de> for FieldValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(FieldValueVisitor)
    }
}

struct FieldValueVisitor;

impl<'de> Visitor<'de> for FieldValueVisitor {
    type Value = FieldValue;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a string, number, boolean or null")
    }

    fn visit_unit<E: de::Error>(self) -> Result<FieldValue, E> {
        Ok(FieldValue::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<FieldValue, E> {
        Ok(FieldValue::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<FieldValue, D::Error> {
        FieldValue::deserialize(deserializer)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<FieldValue, E> {
        Ok(FieldValue::Bool(v))
    }

    #[allow(clippy::cast_precision_loss)] // as `untagged` did: a JSON number is an f64
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<FieldValue, E> {
        Ok(FieldValue::Number(v as f64))
    }

    #[allow(clippy::cast_precision_loss)]
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<FieldValue, E> {
        Ok(FieldValue::Number(v as f64))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<FieldValue, E> {
        Ok(FieldValue::Number(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<FieldValue, E> {
        Ok(FieldValue::Text(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<FieldValue, E> {
        Ok(FieldValue::Text(v))
    }
}

/// Field name to value. Ordered, so equal field sets compare and serialise
/// the same way whatever order they were built in.
pub type Fields = crate::core::vecmap::VecMap<String, FieldValue>;

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
///
/// Its `Deserialize` is handed the record the web reader read by hand (see
/// [`crate::core::handed`]); other deserializers read its derived form.
#[derive(Debug, Clone, PartialEq, Serialize)]
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

/// The newtype name a [`Record`] is asked for under (see
/// [`crate::core::handed`]): a static, so it has one address.
pub static HANDED: &str = "crm_sync::Record";

/// A record in its derived form, for deserializers other than the web
/// reader (JSON in tests); a module of its own, so that serde's words name
/// it `Record`.
mod stored {
    use serde::Deserialize;

    use super::{Comment, Fields};

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub(super) struct Record {
        id: String,
        version: u64,
        #[serde(default)]
        updated_at: String,
        #[serde(default)]
        updated_by: String,
        #[serde(default)]
        fields: Fields,
        #[serde(default)]
        comments: Vec<Comment>,
    }

    impl From<Record> for super::Record {
        fn from(stored: Record) -> Self {
            let Record {
                id,
                version,
                updated_at,
                updated_by,
                fields,
                comments,
            } = stored;
            Self {
                id,
                version,
                updated_at,
                updated_by,
                fields,
                comments,
            }
        }
    }
}

impl<'de> Deserialize<'de> for Record {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        crate::core::handed::deserialize::<D, Record, stored::Record>(deserializer, HANDED)
    }
}

impl Record {
    /// A record with only its id: version 0, no fields, no comments (what a
    /// create shows before the server answered, or a delete whose record
    /// was never loaded).
    pub fn empty(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            version: 0,
            updated_at: String::new(),
            updated_by: String::new(),
            fields: Fields::new(),
            comments: Vec::new(),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_values_read_as_the_untagged_form_did() {
        let fields: Fields =
            serde_json::from_str(r#"{"a":null,"b":true,"c":7,"d":-2,"e":1.5,"f":"x"}"#).unwrap();
        assert_eq!(fields.get("a"), Some(&FieldValue::Null));
        assert_eq!(fields.get("b"), Some(&FieldValue::Bool(true)));
        assert_eq!(fields.get("c"), Some(&FieldValue::Number(7.0)));
        assert_eq!(fields.get("d"), Some(&FieldValue::Number(-2.0)));
        assert_eq!(fields.get("e"), Some(&FieldValue::Number(1.5)));
        assert_eq!(fields.get("f"), Some(&FieldValue::Text("x".into())));
        assert_eq!(
            serde_json::to_string(&fields).unwrap(),
            r#"{"a":null,"b":true,"c":7.0,"d":-2.0,"e":1.5,"f":"x"}"#
        );
        assert!(serde_json::from_str::<FieldValue>("[1]").is_err());
        assert!(serde_json::from_str::<FieldValue>(r#"{"x":1}"#).is_err());
    }
}
