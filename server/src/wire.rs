//! The wire types: the shapes of requests, answers and errors that the
//! OpenAPI document (`crate::openapi`) names, and the sets of error answers
//! the routes list. Most handlers build their JSON with `serde_json::json!`,
//! so these types exist for the document; `server/tests/openapi.rs` checks
//! real answers against them and the crate's own parsers check the examples
//! (`tests/openapi_examples.rs`). Route modules import this one; it imports
//! only the record model, never a route.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{IntoResponses, PartialSchema, ToSchema};

pub use crate::model::{ChangedFields, Comment, FieldValue, Fields, Record};

/// Every `error.code` the server answers with.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// `400`/`422`: the request could not be read, or a value is not allowed.
    Invalid,
    /// `401`: no, unknown or expired token; wrong credentials at login.
    Unauthorized,
    /// `403`: another user's sync job.
    Forbidden,
    /// `404`: no such record, collection or route.
    NotFound,
    /// `404`: no such sync job.
    SyncNotFound,
    /// `405`: the path exists, the method does not.
    MethodNotAllowed,
    /// `408`: the request took longer than the server allows.
    Timeout,
    /// `409`: the record changed since the version in `If-Match` (or the id exists).
    Conflict,
    /// `409`: a calendar event overlaps another of the same resource.
    Overlap,
    /// `409`: the sync job cannot be cancelled any more.
    AlreadyFinished,
    /// `410`: unknown or expired changes-feed cursor.
    CursorExpired,
    /// `413`: the request body is too large.
    TooLarge,
    /// `422`: an `Idempotency-Key` reused for a different request.
    IdempotencyMismatch,
    /// `428`: `If-Match` is required.
    PreconditionRequired,
    /// `429`: too many failed logins or password checks waiting.
    TooManyRequests,
    /// `429`: too many unfinished sync jobs.
    TooManyJobs,
    /// `500`.
    Internal,
}

/// What went wrong.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorInfo {
    /// Stable code for programs to switch on.
    pub code: ErrorCode,
    /// For people; never parse it.
    pub message: String,
    /// Structured details: `fields` (`422`), `current` (`409 conflict`),
    /// `conflicts` (`409 overlap`), `retryAfter` (`429`), ...; `{}` when none.
    #[schema(value_type = Object)]
    pub details: Value,
}

/// The one error body, whatever the status.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({ "error": { "code": "conflict", "message": "version 6 is out of date; the record is at version 7", "details": { "current": null } } }))]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorInfo,
}

/// `POST /api/login` body.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({ "username": "alice", "password": "demo" }))]
pub struct LoginRequest {
    /// The user's name.
    pub username: String,
    /// The password.
    pub password: String,
}

/// A new session.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({ "token": "9f2c4e0b7a1d3c5e9f2c4e0b7a1d3c5e9f2c4e0b7a1d3c5e9f2c4e0b7a1d3c5e", "user": "alice", "expiresAt": "2026-01-02T09:00:00Z" }))]
pub struct LoginAnswer {
    /// Bearer token for `Authorization`.
    pub token: String,
    /// Whom it belongs to.
    pub user: String,
    /// When it stops working (RFC 3339 UTC).
    pub expires_at: String,
}

/// Whom a token belongs to.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({ "user": "alice", "expiresAt": "2026-01-02T09:00:00Z" }))]
pub struct MeAnswer {
    /// The user.
    pub user: String,
    /// When the token stops working (RFC 3339 UTC).
    pub expires_at: String,
}

/// The `Idempotency-Key` header every mutating route takes.
#[derive(Debug, Clone, utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IdempotencyKey {
    /// 1 to 200 visible ASCII characters (a uuid); a key seen before returns the stored answer
    #[param(
        rename = "Idempotency-Key",
        nullable = false,
        pattern = r"^[!-~]{1,200}$"
    )]
    pub key: Option<String>,
}

/// The `If-Match` header of a change or deletion.
#[derive(Debug, Clone, utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IfMatch {
    /// The version the change is based on: `"7"` (also `7` or `W/"7"`)
    #[param(
        rename = "If-Match",
        pattern = r#"^(W/)?("0*[1-9][0-9]{0,17}"|0*[1-9][0-9]{0,17})$"#
    )]
    pub version: String,
}

/// Declares a set of error answers a route can name in its `responses(..)`:
/// either `(status, description)` pairs, each in the error shape
/// ([`ErrorBody`]), or the union of other sets (`A + B`). A route adds its
/// own answers (a 409, a 422 with its details) beside the sets it names.
macro_rules! error_answers {
    ($(#[$doc:meta])* $set:ident = [$(($status:literal, $description:literal)),+ $(,)?]) => {
        $(#[$doc])*
        pub struct $set;

        impl IntoResponses for $set {
            fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
                BTreeMap::from([$(($status.to_string(), error_answer($description))),+])
            }
        }
    };
    ($(#[$doc:meta])* $set:ident = $first:ident $(+ $more:ident)*) => {
        $(#[$doc])*
        pub struct $set;

        impl IntoResponses for $set {
            fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
                let mut all = <$first as IntoResponses>::responses();
                $(all.extend(<$more as IntoResponses>::responses());)*
                all
            }
        }
    };
}

/// One answer in the error shape, as `(status = .., description = ..,
/// body = ErrorBody)` on a route lists it.
fn error_answer(description: &str) -> RefOr<utoipa::openapi::Response> {
    let body = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name(ErrorBody::name())))
        .build();
    ResponseBuilder::new()
        .description(description)
        .content("application/json", body)
        .build()
        .into()
}

error_answers!(
    /// `400` for a request that cannot be read.
    Unreadable = [(400, "`invalid`: the request cannot be read (malformed JSON, bad header or path)")]
);
error_answers!(
    /// `401` for a route that takes a token.
    Unauthorized = [(401, "`unauthorized`: no, unknown or expired token")]
);
error_answers!(
    /// `408` and `500`: what any route that does work may answer.
    ServerErrors = [
        (408, "`timeout`: the request took longer than the server allows"),
        (500, "`internal`"),
    ]
);
error_answers!(
    /// What a route that takes a token may answer besides its own.
    SignedInErrors = Unauthorized + ServerErrors
);
error_answers!(
    /// [`SignedInErrors`] and [`Unreadable`]: a route with path parameters,
    /// headers or a body.
    RequestErrors = Unreadable + SignedInErrors
);
error_answers!(
    /// What a route without a token may answer besides its own.
    OpenRouteErrors = [(408, "`timeout`"), (500, "`internal`")]
);
error_answers!(
    /// `404` for a record that does not exist (or a collection that cannot).
    RecordNotFound = [(404, "`not_found`: no such record, or a name that cannot be a collection")]
);
error_answers!(
    /// `404` for a name that cannot be a collection.
    CollectionNotFound = [(404, "`not_found`: a name that cannot be a collection")]
);
error_answers!(
    /// `413` for a body over the limit.
    BodyTooLarge = [(413, "`too_large`: the body is larger than the server accepts (1 MiB)")]
);
error_answers!(
    /// `428` for a change or deletion without `If-Match`.
    IfMatchRequired = [(428, "`precondition_required`: no `If-Match`")]
);
error_answers!(
    /// `403` and `404` for a sync job of another user, or one unknown or
    /// finished long ago.
    SyncJobNotFound = [
        (403, "`forbidden`: another user's sync job"),
        (404, "`sync_not_found`: unknown, or finished more than 10 minutes ago"),
    ]
);

/// The job a sync-job route is about: its `syncId` in the path.
#[derive(Debug, Clone, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SyncIdPath {
    /// The job's `syncId`
    pub sync_id: String,
}

/// `POST /api/{collection}` body.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({ "id": "c-123", "fields": { "name": "Acme", "status": "lead" } }))]
pub struct CreateRecord {
    /// The new record's id (1 to 128 letters, digits or `-_.:@`); the server
    /// makes one when it is absent or null.
    #[schema(nullable, pattern = r"^[A-Za-z0-9._:@-]{1,128}$")]
    pub id: Option<String>,
    /// The fields; nulls are dropped.
    #[schema(value_type = Fields)]
    pub fields: Value,
}

/// `PATCH /api/{collection}/{id}` body.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({ "fields": { "status": "customer", "phone": null } }))]
pub struct PatchRecord {
    /// The changed fields only (at least one); `null` clears a field.
    #[schema(value_type = ChangedFields)]
    pub fields: Value,
}

/// `POST /api/{collection}/{id}/comments` body.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({ "id": "5b0e7c1e-2f43-4d0c-9a57-3f1d2c4b5a69", "text": "Called them" }))]
pub struct NewComment {
    /// Client-chosen id; the same id again returns the stored comment.
    /// The server makes one when it is absent or null.
    #[schema(nullable, pattern = r"^[A-Za-z0-9._:@-]{1,128}$")]
    pub id: Option<String>,
    /// 1 to 10,000 characters, not only white space (the limit is a flag).
    #[schema(min_length = 1, pattern = r"\S")]
    pub text: String,
}

/// `GET /api/{collection}`: every live record, or one page of them.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({ "items": [{ "id": "c-123", "version": 7, "updatedAt": "2026-01-01T09:00:00Z", "updatedBy": "alice", "fields": { "name": "Acme", "status": "lead" }, "comments": [] }], "next": null, "cursor": "7f3a9c1e5b2d4f60.1042" }))]
pub struct RecordList {
    /// Records in id order.
    pub items: Vec<Record>,
    /// Only with `limit`: the `after` of the next page, `null` after the last.
    #[schema(nullable)]
    pub next: Option<String>,
    /// The changes-feed position when the (first) page was read.
    pub cursor: String,
}

/// Whether a change wrote or deleted its record.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChangeOp {
    /// Created or changed; `record` is the record as it is now.
    Put,
    /// Deleted.
    Delete,
}

/// One entry of the changes feed (and the `data` of an SSE `change` event).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({ "collection": "customers", "id": "c-123", "version": 8, "op": "put", "record": { "id": "c-123", "version": 8, "updatedAt": "2026-01-01T09:05:00Z", "updatedBy": "bob", "fields": { "name": "Acme", "status": "customer" }, "comments": [] } }))]
pub struct Change {
    /// The record's collection.
    pub collection: String,
    /// The record's id.
    pub id: String,
    /// Its version after the change.
    pub version: i64,
    /// What happened.
    pub op: ChangeOp,
    /// With `put`: the record as it is now.
    pub record: Option<Record>,
}

/// A page of the changes feed.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({ "changes": [{ "collection": "customers", "id": "c-9", "version": 3, "op": "delete" }], "cursor": "7f3a9c1e5b2d4f60.1043", "more": false }))]
pub struct Feed {
    /// Changes after `since`, oldest first.
    pub changes: Vec<Change>,
    /// Where to continue from.
    pub cursor: String,
    /// Whether more changes wait (the page was cut by `limit` or size).
    pub more: bool,
}

/// The name of a Server-Sent Event of `GET /api/events`.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EventName {
    /// First on every connection, data `{}`: events get through.
    Ready,
    /// One committed change; data is a `Change`, id the cursor after it.
    Change,
    /// The people on a record changed; data is a `PresenceEvent`, no id.
    Presence,
}

/// One event of the `text/event-stream` of `GET /api/events`, as its fields.
/// Comment lines (keep-alives every 15 s) are not events.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({ "event": "change", "id": "7f3a9c1e5b2d4f60.1043", "data": "{\"collection\":\"customers\",\"id\":\"c-9\",\"version\":3,\"op\":\"delete\"}" }))]
pub struct ServerEvent {
    /// `ready`, `change` or `presence`.
    pub event: EventName,
    /// JSON text: `{}` for `ready`, a `Change` for `change`, a
    /// `PresenceEvent` for `presence`.
    pub data: String,
    /// With `change`: the cursor after it (send it back as `Last-Event-ID` or `since`).
    pub id: Option<String>,
}

/// A collection's name: `[a-z][a-z0-9_]{0,39}`, except the names of the
/// other routes under `/api/` (which those routes answer instead).
pub struct CollectionName;

/// Names under `/api/` that are routes, never collections.
pub const RESERVED_NAMES: [&str; 8] = [
    "changes", "events", "login", "logout", "me", "metrics", "presence", "sync",
];

impl PartialSchema for CollectionName {
    fn schema() -> RefOr<Schema> {
        // utoipa has no builder for `not`; an extension entry is serialised
        // flat into the schema, which gives the same JSON.
        let not_reserved = utoipa::openapi::extensions::Extensions::from_iter([(
            "not",
            serde_json::json!({ "enum": RESERVED_NAMES }),
        )]);
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^[a-z][a-z0-9_]{0,39}$"))
            .description(Some(
                "A collection (`customers`, `deals`, `calendar_events`, ...). Other names \
                 answer 404; the names of other routes under /api/ are those routes.",
            ))
            .examples([serde_json::json!("customers")])
            .extensions(Some(not_reserved))
            .into()
    }
}

impl ToSchema for CollectionName {}

/// A record's (or comment's) id: 1 to 128 letters, digits or `-_.:@`.
pub struct RecordId;

impl PartialSchema for RecordId {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(r"^[A-Za-z0-9._:@-]{1,128}$"))
            .description(Some("1 to 128 letters, digits or `-_.:@`"))
            .examples([serde_json::json!("c-123")])
            .into()
    }
}

impl ToSchema for RecordId {}
