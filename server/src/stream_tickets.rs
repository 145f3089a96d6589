//! Tickets for `/api/events`. `EventSource` cannot send an `Authorization`
//! header, and a bearer token in a URL ends up in every proxy's and access
//! log. So a client asks for a ticket with its token
//! (`POST /api/events/ticket`) and opens the stream with `?ticket=`: the
//! ticket opens one stream, within [`Limits::stream_ticket_ttl`], and the
//! stream belongs to the session that asked for it.
//!
//! Tickets live in the database (hashed, like tokens), so a ticket asked of
//! one server instance opens a stream on any other sharing the database.
//!
//! [`Limits::stream_ticket_ttl`]: crate::limits::Limits::stream_ticket_ttl

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use chrono::{SecondsFormat, TimeZone, Utc};
use serde::Serialize;

use crate::auth::{bearer_token, session_for_token, session_row, token_hash, Session};
use crate::db::{random_hex, Tx};
use crate::error::ApiError;
use crate::wire::*;
use crate::AppState;

/// `POST /api/events/ticket` answers this.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({ "ticket": "9c1f0e7a5b3d2c4e6f8a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e", "expiresAt": "2026-01-01T09:00:30.000Z" }))]
pub struct StreamTicket {
    /// Opens one stream: `GET /api/events?ticket=...`.
    pub ticket: String,
    /// Until when (RFC 3339 UTC); the stream itself lasts as long as the session.
    pub expires_at: String,
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// `POST /api/events/ticket` -> `{ ticket, expiresAt }`: a single-use
/// ticket for `GET /api/events?ticket=...`. Each call makes a new ticket
/// (an `Idempotency-Key` is not honoured here: a replayed answer would hand
/// out a ticket already used).
///
/// # Errors
/// `401 unauthorized`.
#[utoipa::path(
    post,
    path = "/api/events/ticket",
    tag = "changes",
    operation_id = "streamTicket",
    responses(
        (status = 200, description = "A ticket for one `GET /api/events?ticket=...`, valid 30 s", body = StreamTicket),
        SignedInErrors,
    )
)]
pub async fn ticket_route(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<StreamTicket>, ApiError> {
    let session = session_for_token(&state, bearer_token(&headers)).await?;
    let ticket = random_hex(32)?;
    let hash = token_hash(&ticket);
    let ttl = i64::try_from(state.limits.stream_ticket_ttl.as_millis()).unwrap_or(i64::MAX);
    let expires = now_ms().saturating_add(ttl);
    state
        .db
        .write(move |tx| {
            tx.execute(
                "INSERT INTO stream_tickets (ticket_hash, \"user\", token_hash, expires_at) VALUES (?1, ?2, ?3, ?4)",
                &[&hash, &session.user, &session.token_hash, &expires],
            )?;
            Ok(())
        })
        .await?;
    let expires_at = Utc
        .timestamp_millis_opt(expires)
        .single()
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .ok_or_else(|| ApiError::internal("ticket expiry out of range"))?;
    Ok(Json(StreamTicket { ticket, expires_at }))
}

/// Takes `ticket` (it is gone afterwards, whatever the outcome): the session
/// that asked for it, if the ticket is known, unexpired, and its session
/// still holds.
///
/// # Errors
/// `401 unauthorized` for an unknown, used or expired ticket, or one whose
/// session ended.
pub async fn redeem(state: &AppState, ticket: &str) -> Result<Session, ApiError> {
    let refused = || ApiError::unauthorized("unknown, used or expired stream ticket");
    // Tickets are 64 hex characters; anything else cannot be one of ours.
    if ticket.len() != 64 || !ticket.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(refused());
    }
    let hash = token_hash(ticket);
    let now = now_ms();
    let session = state
        .db
        .write(move |tx| {
            let row: Option<(String, i64)> = tx
                .query_opt(
                    "DELETE FROM stream_tickets WHERE ticket_hash = ?1 RETURNING token_hash, expires_at",
                    &[&hash],
                )?
                .map(|r| Ok::<_, ApiError>((r.get(0)?, r.get(1)?)))
                .transpose()?;
            let Some((token_hash, _)) = row.filter(|(_, expires)| *expires > now) else {
                return Ok(None);
            };
            Ok(session_row(tx, &token_hash)?.map(|(user, expires_at)| Session {
                user,
                token_hash,
                expires_at,
            }))
        })
        .await?;
    session.ok_or_else(refused)
}

/// Forgets expired tickets (the janitor's round).
///
/// # Errors
/// Internal errors from the database.
pub fn purge(conn: &Tx<'_>) -> Result<usize, ApiError> {
    conn.execute(
        "DELETE FROM stream_tickets WHERE expires_at <= ?1",
        &[&now_ms()],
    )
}
