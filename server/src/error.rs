//! The one error shape of docs/backend/protocol.md: `{ "error": { "code", "message", "details" } }`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

/// An answer that is not a success: status, stable machine-readable code,
/// a message for people and structured details.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status of the answer.
    pub status: StatusCode,
    /// Stable code the client switches on (`conflict`, `invalid`, ...).
    pub code: &'static str,
    /// Human readable explanation.
    pub message: String,
    /// Structured details, `{}` when there are none.
    pub details: Value,
}

impl ApiError {
    /// An error with empty details.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: json!({}),
        }
    }

    /// Replaces the details.
    #[must_use]
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    /// `400 invalid`: the request itself could not be read (malformed JSON, bad header).
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid", message)
    }

    /// `422 invalid` with `details.fields` = `{ field: message }`.
    pub fn invalid_fields(fields: Map<String, Value>) -> Self {
        let names: Vec<&str> = fields.keys().map(String::as_str).collect();
        let message = format!("invalid value for {}", names.join(", "));
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
            .with_details(json!({ "fields": fields }))
    }

    /// `422 invalid` for a single field.
    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        let mut fields = Map::new();
        fields.insert(field.to_owned(), Value::String(message.into()));
        Self::invalid_fields(fields)
    }

    /// `401 unauthorized`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// `403 forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// `404 not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// `409 conflict` with `details.current` = the server's record (or `null`).
    pub fn conflict(message: impl Into<String>, current: Value) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
            .with_details(json!({ "current": current }))
    }

    /// `428 precondition_required`: a write that needs `If-Match` came without one.
    pub fn precondition_required() -> Self {
        Self::new(
            StatusCode::PRECONDITION_REQUIRED,
            "precondition_required",
            "this request needs an If-Match header with the record's version",
        )
    }

    /// `410 cursor_expired`: the client must reload everything.
    pub fn cursor_expired() -> Self {
        Self::new(
            StatusCode::GONE,
            "cursor_expired",
            "unknown or expired cursor; reload everything",
        )
    }

    /// `500 internal`: logged here, never shows internals to the client.
    pub fn internal(message: impl std::fmt::Display) -> Self {
        tracing::error!(error = %message, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal server error",
        )
    }

    /// The JSON body of this error.
    pub fn body(&self) -> Value {
        json!({ "error": { "code": self.code, "message": self.message, "details": self.details } })
    }
}

impl From<rusqlite::Error> for ApiError {
    fn from(e: rusqlite::Error) -> Self {
        Self::internal(format!("database: {e}"))
    }
}

impl From<postgres::Error> for ApiError {
    fn from(e: postgres::Error) -> Self {
        Self::internal(format!("database: {e}"))
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        Self::internal(format!("task: {e}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = AnsweredCode(self.code);
        let mut response = (self.status, axum::Json(self.body())).into_response();
        // For the server's figures (a 409 `conflict` is counted, an `overlap` is not).
        response.extensions_mut().insert(code);
        response
    }
}

/// The `error.code` of an answer, kept on the response for the layers
/// outside the handler (the request figures).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnsweredCode(pub &'static str);
