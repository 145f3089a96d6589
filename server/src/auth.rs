//! Users and bearer tokens: argon2 password hashes, random 256-bit tokens
//! stored as SHA-256 hashes (a leaked database file holds no usable token),
//! expiring after [`TOKEN_TTL_SECS`], revoked by logout.

use crate::wire::*;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::Argon2;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::Extensions;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;

use crate::db::{random_hex, unix_seconds, Tx};
use crate::error::ApiError;
use crate::extract::json_body;
use crate::AppState;

/// How long a token lives.
pub const TOKEN_TTL_SECS: i64 = 12 * 3600;

/// The signed-in user of a request, taken from `Authorization: Bearer <token>`.
#[derive(Debug, Clone)]
pub struct AuthUser(pub String);

/// Hashes a password with argon2id and a random salt (PHC string).
///
/// # Errors
/// Internal error if hashing fails (it does not for sane inputs).
pub fn hash_password(password: &str) -> Result<String, ApiError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ApiError::internal(format!("argon2: {e}")))
}

/// SHA-256 of a token (or a stream ticket), hex: how it is stored.
pub(crate) fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The bearer token of a request, if any.
pub fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
        .filter(|t| !t.is_empty())
}

/// A live token: whose it is, its hash (how it is stored) and when it expires.
#[derive(Debug, Clone)]
pub struct Session {
    /// The user.
    pub user: String,
    /// SHA-256 of the token, hex.
    pub token_hash: String,
    /// Expiry, seconds since the Unix epoch.
    pub expires_at: i64,
}

/// Looks a token up: the user it belongs to, or `401 unauthorized`.
///
/// # Errors
/// `401 unauthorized` for a missing, unknown or expired token.
pub async fn user_for_token(state: &AppState, token: Option<String>) -> Result<String, ApiError> {
    session_for_token(state, token).await.map(|s| s.user)
}

/// Looks a token up: its session, or `401 unauthorized`.
///
/// # Errors
/// `401 unauthorized` for a missing, unknown or expired token.
pub async fn session_for_token(
    state: &AppState,
    token: Option<String>,
) -> Result<Session, ApiError> {
    let token = token
        .ok_or_else(|| ApiError::unauthorized("sign in first: Authorization: Bearer <token>"))?;
    // Tokens are 64 hex characters; anything else cannot be one of ours.
    if token.len() != 64 || !token.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(ApiError::unauthorized("unknown or expired token"));
    }
    let hash = token_hash(&token);
    let lookup = hash.clone();
    let row: Option<(String, i64)> = state.db.read(move |tx| session_row(tx, &lookup)).await?;
    let (user, expires_at) =
        row.ok_or_else(|| ApiError::unauthorized("unknown or expired token"))?;
    Ok(Session {
        user,
        token_hash: hash,
        expires_at,
    })
}

/// The user and expiry of a live (unexpired, not revoked) token hash.
///
/// # Errors
/// Internal errors from the database.
pub fn session_row(conn: &Tx<'_>, token_hash: &str) -> Result<Option<(String, i64)>, ApiError> {
    conn.query_opt(
        "SELECT \"user\", expires_at FROM tokens WHERE token_hash = ?1 AND expires_at > ?2",
        &[&token_hash, &unix_seconds()],
    )?
    .map(|r| Ok((r.get(0)?, r.get(1)?)))
    .transpose()
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        user_for_token(state, bearer_token(&parts.headers))
            .await
            .map(AuthUser)
    }
}

/// Creates a user unless one of that name exists. Returns whether it was created.
///
/// # Errors
/// Internal errors from the database.
pub fn ensure_user(conn: &Tx<'_>, name: &str, password_hash: &str) -> Result<bool, ApiError> {
    Ok(conn.execute(
        "INSERT INTO users (name, password_hash) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
        &[&name, &password_hash],
    )? == 1)
}

/// `POST /api/login` `{ username, password }` -> `{ token, user, expiresAt }`.
///
/// Failed logins are counted per username and per client address; past the
/// limits, or when too many password checks wait already, the answer is
/// `429 too_many_requests` with `Retry-After`. An unknown username is checked
/// against a dummy hash, so it takes as long as a wrong password.
///
/// # Errors
/// `401 unauthorized` for bad credentials, `429`, `400`/`422` for a bad body.
#[utoipa::path(
    post,
    path = "/api/login",
    tag = "auth",
    operation_id = "login",
    security(()),
    request_body(content = LoginRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Signed in", body = LoginAnswer),
        Unreadable, ServerErrors, BodyTooLarge,
        (status = 401, description = "`unauthorized`: wrong username or password", body = ErrorBody),
        (status = 422, description = "`invalid`: username and password must be strings", body = ErrorBody),
        (status = 429, description = "`too_many_requests`: too many failed logins (per username or address) or password checks waiting; `details.retryAfter`", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
pub async fn login_route(
    State(state): State<AppState>,
    extensions: Extensions,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, Response> {
    let body = json_body(body).map_err(IntoResponse::into_response)?;
    let (Some(username), Some(password)) = (
        body.get("username").and_then(Value::as_str),
        body.get("password").and_then(Value::as_str),
    ) else {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "username and password are required strings",
        )
        .into_response());
    };
    let address = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| a.ip());
    let attempt = state
        .logins
        .begin(username, address)
        .await
        .map_err(IntoResponse::into_response)?
        .map_err(IntoResponse::into_response)?;
    let (username, password) = (username.to_owned(), password.to_owned());
    let lookup = username.clone();
    let phc: Result<Option<String>, ApiError> = state
        .db
        .read(move |tx| {
            tx.query_opt(
                "SELECT password_hash FROM users WHERE name = ?1",
                &[&lookup],
            )?
            .map(|r| r.get(0))
            .transpose()
        })
        .await;
    let phc = match phc {
        Ok(phc) => phc,
        Err(e) => {
            state.logins.succeeded(attempt).await;
            return Err(e.into_response());
        }
    };
    let checked = match state.logins.verify(password, phc).await {
        Ok(Ok(ok)) => Ok(ok),
        Ok(Err(e)) => Err(e.into_response()),
        Err(busy) => Err(busy.into_response()),
    };
    if !matches!(checked, Ok(false)) {
        // Only a wrong password counts: not a success, not a refusal for load.
        state.logins.succeeded(attempt).await;
    }
    if !checked? {
        return Err(ApiError::unauthorized("wrong username or password").into_response());
    }
    issue_token(&state, username)
        .await
        .map_err(IntoResponse::into_response)
}

async fn issue_token(state: &AppState, username: String) -> Result<Json<Value>, ApiError> {
    let token = random_hex(32)?;
    let expires = unix_seconds() + TOKEN_TTL_SECS;
    let hash = token_hash(&token);
    let user = username.clone();
    state
        .db
        .write(move |tx| {
            tx.execute(
                "INSERT INTO tokens (token_hash, \"user\", expires_at) VALUES (?1, ?2, ?3)",
                &[&hash, &user, &expires],
            )?;
            Ok(())
        })
        .await?;
    let expires_at = rfc3339(expires);
    tracing::info!(user = %username, "signed in");
    Ok(Json(
        json!({ "token": token, "user": username, "expiresAt": expires_at }),
    ))
}

/// `POST /api/logout` -> `204`; the token stops working at once.
///
/// # Errors
/// `401 unauthorized` without a valid token.
#[utoipa::path(
    post,
    path = "/api/logout",
    tag = "auth",
    operation_id = "logout",
    responses(
        (status = 204, description = "The token is revoked; its event streams end"),
        SignedInErrors,
    )
)]
pub async fn logout_route(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let session = session_for_token(&state, bearer_token(&headers)).await?;
    let hash = session.token_hash.clone();
    state
        .db
        .write(move |tx| {
            tx.execute("DELETE FROM tokens WHERE token_hash = ?1", &[&hash])?;
            // Streams on other instances end at their next sweep.
            crate::streams::revoke_rows(tx, &hash)?;
            Ok(())
        })
        .await?;
    // Event streams opened with this token end now, not at their next change.
    state.streams.revoke(&session.token_hash);
    state.presence.forget(&session.token_hash);
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/me` -> `{ user, expiresAt }`: who a token belongs to. A client
/// opened with a token alone asks this before it touches any local data, so
/// one user's database is never read with another user's token.
///
/// # Errors
/// `401 unauthorized` without a valid token.
#[utoipa::path(
    get,
    path = "/api/me",
    tag = "auth",
    operation_id = "me",
    responses(
        (status = 200, description = "Whom the token belongs to", body = MeAnswer),
        SignedInErrors,
    )
)]
pub async fn me_route(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let token = bearer_token(&headers)
        .ok_or_else(|| ApiError::unauthorized("sign in first: Authorization: Bearer <token>"))?;
    let user = user_for_token(&state, Some(token.clone())).await?;
    let hash = token_hash(&token);
    let expires: Option<i64> = state
        .db
        .read(move |tx| {
            tx.query_opt(
                "SELECT expires_at FROM tokens WHERE token_hash = ?1",
                &[&hash],
            )?
            .map(|r| r.get(0))
            .transpose()
        })
        .await?;
    Ok(Json(
        json!({ "user": user, "expiresAt": expires.map(rfc3339).unwrap_or_default() }),
    ))
}

fn rfc3339(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// Deletes expired tokens.
///
/// # Errors
/// Internal errors from the database.
pub fn purge_expired(conn: &Tx<'_>) -> Result<usize, ApiError> {
    conn.execute(
        "DELETE FROM tokens WHERE expires_at <= ?1",
        &[&unix_seconds()],
    )
}
