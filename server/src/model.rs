//! The record model: what a record is on the wire and in the store, with
//! the schemas of its field values. A leaf: it imports no other module of
//! the server, so every module may use it.

use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

/// One field value: a string, number, boolean or `null` (never an object or array).
pub struct FieldValue;

impl PartialSchema for FieldValue {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::Array(vec![
                Type::String,
                Type::Number,
                Type::Boolean,
                Type::Null,
            ]))
            .description(Some("a string, number, boolean or null"))
            .into()
    }
}

impl ToSchema for FieldValue {}

/// A record's fields: names of 1 to 100 characters to scalar values.
pub struct Fields;

/// A map of field names (1 to 100 characters) to [`FieldValue`]s.
fn field_map() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property_names(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(100)),
        ))
        .additional_properties(Some(AdditionalProperties::RefOr(RefOr::Ref(
            utoipa::openapi::Ref::from_schema_name("FieldValue"),
        ))))
}

impl PartialSchema for Fields {
    fn schema() -> RefOr<Schema> {
        field_map()
            .description(Some(
                "Field names (1 to 100 characters) to scalar values. The server checks the \
                 fields it knows (customers: `email`, `status`; calendar events: `start`, \
                 `end`, `resource`) and stores the others as given.",
            ))
            .into()
    }
}

/// The fields a change names: at least one.
pub struct ChangedFields;

impl PartialSchema for ChangedFields {
    fn schema() -> RefOr<Schema> {
        field_map()
            .min_properties(Some(1))
            .description(Some(
                "The changed fields only, at least one (names of 1 to 100 characters); \
                 `null` clears a field.",
            ))
            .into()
    }
}

impl ToSchema for ChangedFields {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push(("FieldValue".into(), FieldValue::schema()));
    }
}

impl ToSchema for Fields {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push(("FieldValue".into(), FieldValue::schema()));
    }
}

/// A record as docs/backend/protocol.md shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({ "id": "c-123", "version": 7, "updatedAt": "2026-01-01T09:00:00Z", "updatedBy": "alice", "fields": { "name": "Acme", "status": "lead", "employees": 42, "vip": false }, "comments": [{ "id": "5b0e7c1e-2f43-4d0c-9a57-3f1d2c4b5a69", "author": "bob", "text": "Called them", "createdAt": "2026-01-01T08:30:00Z" }] }))]
pub struct Record {
    /// Id, unique within its collection.
    pub id: String,
    /// Starts at 1, grows by exactly 1 on every change of `fields`.
    pub version: i64,
    /// Time of the last change (RFC 3339 UTC).
    pub updated_at: String,
    /// User who made the last change.
    pub updated_by: String,
    /// Free-form scalar fields.
    #[schema(value_type = Fields)]
    pub fields: Map<String, Value>,
    /// Append-only comment log, oldest first.
    pub comments: Vec<Comment>,
}

/// One comment on a record.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(example = json!({ "id": "5b0e7c1e-2f43-4d0c-9a57-3f1d2c4b5a69", "author": "bob", "text": "Called them", "createdAt": "2026-01-01T08:30:00Z" }))]
#[serde(rename_all = "camelCase")]
pub struct Comment {
    /// Client-chosen id (a uuid); the same id is never stored twice.
    pub id: String,
    /// User who wrote it.
    pub author: String,
    /// The text.
    pub text: String,
    /// When the server stored it.
    pub created_at: String,
}

impl Record {
    /// This record as a JSON value.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}
