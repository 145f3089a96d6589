//! Exactly-once writes: the answer to a mutating request is stored under
//! (user, `Idempotency-Key`) in the same transaction as the change, so a resent
//! request gets the stored answer and changes nothing.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{HeaderMap, Method, StatusCode};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::auth::AuthUser;
use crate::db::{unix_seconds, Db, Tx};
use crate::error::ApiError;
use crate::extract::{body_bytes, json_body, Answer};
use crate::records::{self, RecordRef};
use crate::AppState;

/// How long an answer is kept: docs/backend/protocol.md asks for at least 24 hours.
pub const KEEP_SECS: i64 = 24 * 3600;

/// The preamble every mutating route shares: the signed-in user (`401`
/// first, before anything else is read), the method, path and headers, and
/// the body as far as it could be read. The route checks its path first and
/// then reads [`Self::mutation`] (a bad `Idempotency-Key` is `400`) and
/// [`Self::json`] (a body that is no JSON is `400`, one too large `413`).
pub struct Mutating {
    /// Who sends it.
    pub user: String,
    /// The request's headers (`If-Match`, `Idempotency-Key`).
    pub headers: HeaderMap,
    method: Method,
    path: String,
    body: Result<Bytes, BytesRejection>,
}

impl FromRequest<AppState> for Mutating {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let AuthUser(user) = AuthUser::from_request_parts(&mut parts, state).await?;
        let path = parts.uri.path().to_owned();
        let req = Request::from_parts(parts, body);
        let method = req.method().clone();
        let headers = req.headers().clone();
        let body = Bytes::from_request(req, state).await;
        Ok(Self {
            user,
            headers,
            method,
            path,
            body,
        })
    }
}

impl Mutating {
    /// The request as idempotency sees it.
    ///
    /// # Errors
    /// `400 invalid` for a bad `Idempotency-Key`.
    pub fn mutation(&self) -> Result<Mutation, ApiError> {
        Mutation::new(
            &self.user,
            &self.headers,
            &self.method,
            &self.path,
            body_bytes(&self.body),
        )
    }

    /// The JSON body.
    ///
    /// # Errors
    /// `400 invalid` for no or malformed JSON, `413 too_large`.
    pub fn json(&mut self) -> Result<Value, ApiError> {
        json_body(std::mem::replace(&mut self.body, Ok(Bytes::new())))
    }
}

/// A mutating request, as far as idempotency cares.
#[derive(Debug, Clone)]
pub struct Mutation {
    /// Who sent it: keys are per user, so two users cannot collide.
    pub user: String,
    /// The `Idempotency-Key`, if the client sent one.
    pub key: Option<String>,
    /// HTTP method, stored so a key reused for another request is noticed.
    pub method: String,
    /// Request path (no query), for the same reason.
    pub path: String,
    /// SHA-256 of method, path and body (JSON in a canonical form, so key
    /// order and spacing do not matter): a key reused for another request
    /// is noticed, not answered with the first request's answer.
    pub request_hash: String,
}

impl Mutation {
    /// Reads the `Idempotency-Key` header (optional; 1..=200 visible ASCII characters).
    ///
    /// # Errors
    /// `400 invalid` for a key that is not visible ASCII or is too long.
    pub fn new(
        user: &str,
        headers: &HeaderMap,
        method: &Method,
        path: &str,
        body: &[u8],
    ) -> Result<Self, ApiError> {
        let key = match headers.get("idempotency-key") {
            None => None,
            Some(v) => {
                let s = v
                    .to_str()
                    .map_err(|_| ApiError::bad_request("Idempotency-Key must be visible ASCII"))?
                    .trim();
                if s.is_empty() || s.len() > 200 || !s.chars().all(|c| c.is_ascii_graphic()) {
                    return Err(ApiError::bad_request(
                        "Idempotency-Key must be 1 to 200 visible ASCII characters",
                    ));
                }
                Some(s.to_owned())
            }
        };
        Ok(Self {
            user: user.to_owned(),
            key,
            method: method.as_str().to_owned(),
            path: path.to_owned(),
            request_hash: request_hash(method.as_str(), path, body),
        })
    }

    /// The stored answer for this key, if the key was seen in the last 24 hours.
    ///
    /// # Errors
    /// `422 idempotency_mismatch` when the key was used for a different
    /// method, path or body.
    pub fn replay(&self, conn: &Tx<'_>) -> Result<Option<Answer>, ApiError> {
        let Some(key) = &self.key else {
            return Ok(None);
        };
        let row = conn.query_opt(
            "SELECT method, path, status, body, request_hash, record_ref FROM idempotency
             WHERE \"user\" = ?1 AND key = ?2 AND created_at > ?3",
            &[&self.user, key, &(unix_seconds() - KEEP_SECS)],
        )?;
        let Some(r) = row else {
            return Ok(None);
        };
        let (method, path, status, mut body, hash, record_ref): (
            String,
            String,
            u16,
            String,
            Option<String>,
            Option<String>,
        ) = (
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
        );
        // Answers stored before hashes were kept have none: method and path decide.
        let same_body = hash.is_none_or(|h| h == self.request_hash);
        if method != self.method || path != self.path || !same_body {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_mismatch",
                "this Idempotency-Key was already used for a different request; \
                 send a new request under a new key",
            )
            .with_details(serde_json::json!({ "method": method, "path": path })));
        }
        if let Some(text) = record_ref {
            body = rebuild_record_answer(conn, &text)?;
        }
        let status = StatusCode::from_u16(status).map_err(ApiError::internal)?;
        Ok(Some(Answer {
            status,
            body,
            replayed: true,
        }))
    }

    /// Stores `answer` under this key (no-op without a key). Only successful
    /// answers are stored: an error changed nothing, so re-evaluating a resent
    /// request is both safe and more useful than repeating a stale 409.
    ///
    /// # Errors
    /// Internal errors from the database.
    pub fn remember(&self, conn: &Tx<'_>, answer: &Answer) -> Result<(), ApiError> {
        self.store(conn, answer, &answer.body, None)
    }

    /// Stores the answer's status with `body`, or with `record_ref` (then
    /// `body` is empty) for a record answer kept as a reference; no-op
    /// without a key.
    fn store(
        &self,
        conn: &Tx<'_>,
        answer: &Answer,
        body: &str,
        record_ref: Option<&str>,
    ) -> Result<(), ApiError> {
        let Some(key) = &self.key else {
            return Ok(());
        };
        conn.execute(
            "INSERT INTO idempotency
             (\"user\", key, method, path, status, body, created_at, request_hash, record_ref)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (\"user\", key) DO UPDATE SET method = excluded.method,
               path = excluded.path, status = excluded.status, body = excluded.body,
               created_at = excluded.created_at, request_hash = excluded.request_hash,
               record_ref = excluded.record_ref",
            &[
                &self.user,
                key,
                &self.method,
                &self.path,
                &answer.status.as_u16(),
                &body,
                &unix_seconds(),
                &self.request_hash,
                &record_ref,
            ],
        )?;
        Ok(())
    }
}

/// The body of a record answer stored as a [`RecordRef`]: the record as that
/// request left it. If the changes needed to rebuild it were pruned, the
/// record as it is now (or, deleted, its id and version) stands in.
fn rebuild_record_answer(conn: &Tx<'_>, text: &str) -> Result<String, ApiError> {
    let r: RecordRef = serde_json::from_str(text).map_err(ApiError::internal)?;
    let record = match records::record_at(conn, &r)? {
        Some(record) => record.to_json(),
        None => match records::load_live(conn, &r.collection, &r.id)? {
            Some(now) => now.to_json(),
            None => serde_json::json!({ "id": r.id, "version": r.version }),
        },
    };
    serde_json::to_string(&record).map_err(ApiError::internal)
}

/// SHA-256 (hex) of method, path and body. A JSON body is hashed in a
/// canonical form (object keys sorted, no spaces); anything else as bytes.
pub fn request_hash(method: &str, path: &str, body: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(method.as_bytes());
    hasher.update(b"\n");
    hasher.update(path.as_bytes());
    hasher.update(b"\n");
    match serde_json::from_slice::<Value>(body) {
        Ok(value) => canonical(&value, &mut hasher),
        Err(_) => hasher.update(body),
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn canonical(value: &Value, out: &mut Sha256) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.update(b"{");
            for k in keys {
                out.update(Value::String(k.clone()).to_string().as_bytes());
                out.update(b":");
                if let Some(v) = map.get(k) {
                    canonical(v, out);
                }
                out.update(b",");
            }
            out.update(b"}");
        }
        Value::Array(items) => {
            out.update(b"[");
            for v in items {
                canonical(v, out);
                out.update(b",");
            }
            out.update(b"]");
        }
        other => out.update(other.to_string().as_bytes()),
    }
}

impl Mutation {
    /// Stores a record answer as a reference to the version it wrote
    /// (no-op without a key): a copy of the record per keyed write would
    /// grow the database by the record's size on every change.
    ///
    /// # Errors
    /// Internal errors from the database.
    pub fn remember_record(
        &self,
        conn: &Tx<'_>,
        answer: &Answer,
        written: &RecordRef,
    ) -> Result<(), ApiError> {
        if self.key.is_none() {
            return Ok(());
        }
        let reference = serde_json::to_string(written).map_err(ApiError::internal)?;
        self.store(conn, answer, "", Some(&reference))
    }
}

/// What a write produced: its answer, and the record version it wrote when
/// the answer is a record (kept as a reference to that version, see
/// [`Mutation::remember_record`]).
#[derive(Debug)]
pub struct Written {
    /// The answer to send and keep.
    pub answer: Answer,
    /// The record version the answer shows, if it shows one.
    pub record: Option<RecordRef>,
}

impl From<Answer> for Written {
    fn from(answer: Answer) -> Self {
        Self {
            answer,
            record: None,
        }
    }
}

/// Runs one mutating request exactly once: in one write transaction, a key
/// seen before gets its stored answer and `apply` does not run; otherwise
/// `apply` makes the change and its answer is stored under the key in the
/// same transaction, so a resent request can never apply twice. An error
/// from `apply` rolls everything back and is not stored.
///
/// # Errors
/// `422 idempotency_mismatch`, whatever `apply` refuses with, and internal
/// errors from the database.
pub async fn write_once<F>(db: &Arc<Db>, mutation: Mutation, apply: F) -> Result<Answer, ApiError>
where
    F: FnOnce(&Tx<'_>) -> Result<Written, ApiError> + Send + 'static,
{
    db.write(move |tx| {
        // The key is held first: the same key sent to two instances at once
        // waits here, then finds the first one's answer.
        if let Some(key) = &mutation.key {
            tx.lock(&format!("idempotency\n{}\n{key}", mutation.user))?;
        }
        if let Some(answer) = mutation.replay(tx)? {
            return Ok(answer);
        }
        let written = apply(tx)?;
        match &written.record {
            Some(record) => mutation.remember_record(tx, &written.answer, record)?,
            None => mutation.remember(tx, &written.answer)?,
        }
        Ok(written.answer)
    })
    .await
}

/// Deletes answers older than [`KEEP_SECS`].
///
/// # Errors
/// Internal errors from the database.
pub fn purge(conn: &Tx<'_>) -> Result<usize, ApiError> {
    conn.execute(
        "DELETE FROM idempotency WHERE created_at <= ?1",
        &[&(unix_seconds() - KEEP_SECS)],
    )
}
