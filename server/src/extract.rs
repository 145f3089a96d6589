//! Request extraction that never panics and always answers in the error
//! shape: JSON bodies, path parameters, `If-Match`; and [`Answer`], the
//! finished answer of a mutating request that the idempotency store keeps.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;

use crate::error::ApiError;

/// A finished answer to a mutating request: what is stored for idempotent replays.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: StatusCode,
    /// JSON body text, empty for `204`.
    pub body: String,
    /// Whether this came from the idempotency store.
    pub replayed: bool,
}

impl Answer {
    /// An answer with a JSON body.
    ///
    /// # Errors
    /// Internal error if `value` cannot be serialised.
    pub fn json(status: StatusCode, value: &impl Serialize) -> Result<Self, ApiError> {
        Ok(Self {
            status,
            body: serde_json::to_string(value).map_err(ApiError::internal)?,
            replayed: false,
        })
    }

    /// An answer without a body.
    pub fn empty(status: StatusCode) -> Self {
        Self {
            status,
            body: String::new(),
            replayed: false,
        }
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let mut response = if self.body.is_empty() {
            self.status.into_response()
        } else {
            (
                self.status,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                self.body,
            )
                .into_response()
        };
        if self.replayed {
            response
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
        }
        response
    }
}

/// Parses a JSON request body. Syntax errors, bad UTF-8 and empty bodies are
/// `400`; bodies over the body limit (`DefaultBodyLimit`) are `413`.
///
/// # Errors
/// `400 invalid`, `413 too_large`.
pub fn json_body(body: Result<Bytes, BytesRejection>) -> Result<Value, ApiError> {
    let bytes = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large()
        } else {
            ApiError::bad_request(format!("cannot read the request body: {}", e.body_text()))
        }
    })?;
    if bytes.is_empty() {
        return Err(ApiError::bad_request("the request needs a JSON body"));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")))
}

/// The bytes of a body that could be read, or none.
pub fn body_bytes(body: &Result<Bytes, BytesRejection>) -> &[u8] {
    body.as_ref().map_or(&[], |b| &b[..])
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        "the request body is larger than this server accepts",
    )
}

/// Unwraps path parameters, turning a bad path (e.g. bad percent-encoding) into `400`.
///
/// # Errors
/// `400 invalid`.
pub fn path_params<T>(path: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    path.map(|Path(p)| p)
        .map_err(|e| ApiError::bad_request(format!("bad path: {}", e.body_text())))
}

/// Reads `If-Match`: accepts `"7"`, `7` and `W/"7"`; `None` when absent.
///
/// # Errors
/// `400 invalid` for anything else.
pub fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let mut values = headers.get_all(header::IF_MATCH).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let bad = || ApiError::bad_request("If-Match must be a record version such as \"7\"");
    if values.next().is_some() {
        return Err(bad());
    }
    let text = value.to_str().map_err(|_| bad())?.trim();
    let text = text.strip_prefix("W/").unwrap_or(text);
    let text = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    match text.parse::<i64>() {
        Ok(v) if v >= 1 && !text.starts_with('+') => Ok(Some(v)),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::IF_MATCH, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn if_match_forms() {
        assert_eq!(if_match(&HeaderMap::new()).unwrap(), None);
        assert_eq!(if_match(&with("\"7\"")).unwrap(), Some(7));
        assert_eq!(if_match(&with("7")).unwrap(), Some(7));
        assert_eq!(if_match(&with("W/\"7\"")).unwrap(), Some(7));
        assert!(if_match(&with("*")).is_err());
        assert!(if_match(&with("\"x\"")).is_err());
        assert!(if_match(&with("0")).is_err());
        assert!(if_match(&with("+7")).is_err());
    }
}
