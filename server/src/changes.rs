//! The changes feed (`GET /api/changes`) and its live form, Server-Sent Events
//! (`GET /api/events`). Both read the `changes` table, whose sequence numbers
//! follow commit order because SQLite has a single writer; so a reader that
//! asks for "everything after seq N" never misses a change.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream::{self, Stream};
use rusqlite::Connection;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::auth::{bearer_token, user_for_token, AuthUser};
use crate::db::Db;
use crate::error::ApiError;
use crate::AppState;

/// Most entries one feed page returns.
pub const MAX_LIMIT: usize = 1000;
const DEFAULT_LIMIT: usize = 500;

/// Opaque cursors: `<database epoch>.<sequence>`. The epoch makes a cursor
/// from another (or a wiped) database fail instead of silently skipping.
pub mod cursor {
    use crate::error::ApiError;

    /// The cursor that points after change `seq`.
    pub fn encode(epoch: &str, seq: i64) -> String {
        format!("{epoch}.{seq}")
    }

    /// The sequence number a cursor points after.
    ///
    /// # Errors
    /// `410 cursor_expired` for garbage, another database's cursor, or one from the future.
    pub fn decode(epoch: &str, cursor: &str, head: i64) -> Result<i64, ApiError> {
        let (e, seq) = cursor
            .split_once('.')
            .ok_or_else(ApiError::cursor_expired)?;
        let seq: i64 = seq.parse().map_err(|_| ApiError::cursor_expired())?;
        if e != epoch || seq < 0 || seq > head {
            return Err(ApiError::cursor_expired());
        }
        Ok(seq)
    }
}

/// Sequence number of the last change visible in this transaction.
///
/// # Errors
/// Internal errors from SQLite.
pub fn head(conn: &Connection) -> Result<i64, ApiError> {
    Ok(
        conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM changes", [], |r| {
            r.get(0)
        })?,
    )
}

/// Up to `limit` changes after `since`: `(seq, entry)` pairs.
///
/// # Errors
/// Internal errors from SQLite.
pub fn changes_after(
    conn: &Connection,
    since: i64,
    limit: usize,
) -> Result<Vec<(i64, Value)>, ApiError> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, collection, id, version, op, record FROM changes
         WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut rows = stmt.query(rusqlite::params![since, limit])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let seq: i64 = r.get(0)?;
        let collection: String = r.get(1)?;
        let id: String = r.get(2)?;
        let version: i64 = r.get(3)?;
        let op: String = r.get(4)?;
        let record: Option<String> = r.get(5)?;
        let mut entry = serde_json::Map::new();
        entry.insert("collection".into(), collection.into());
        entry.insert("id".into(), id.into());
        entry.insert("version".into(), version.into());
        entry.insert("op".into(), op.into());
        if let Some(text) = record {
            let record: Value = serde_json::from_str(&text).map_err(ApiError::internal)?;
            entry.insert("record".into(), record);
        }
        out.push((seq, Value::Object(entry)));
    }
    Ok(out)
}

/// Query of `GET /api/changes`.
#[derive(Debug, Deserialize)]
pub struct FeedQuery {
    since: Option<String>,
    limit: Option<String>,
}

/// `GET /api/changes?since=&limit=` -> `{ changes, cursor, more }`.
///
/// # Errors
/// `410 cursor_expired`, `400` for a bad limit.
pub async fn feed_route(
    State(state): State<AppState>,
    _user: AuthUser,
    query: Result<Query<FeedQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = match q.limit.as_deref() {
        None | Some("") => DEFAULT_LIMIT,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if n >= 1 => n.min(MAX_LIMIT),
            _ => {
                return Err(ApiError::bad_request(
                    "limit must be a whole number from 1 to 1000",
                ))
            }
        },
    };
    let epoch = state.db.epoch().to_owned();
    let body = state
        .db
        .read(move |tx| {
            let head = head(tx)?;
            let since = match q.since.as_deref() {
                None | Some("") => 0,
                Some(c) => cursor::decode(&epoch, c, head)?,
            };
            let mut rows = changes_after(tx, since, limit + 1)?;
            let more = rows.len() > limit;
            rows.truncate(limit);
            let last = rows.last().map_or(since, |(seq, _)| *seq);
            let changes: Vec<Value> = rows.into_iter().map(|(_, e)| e).collect();
            Ok(json!({ "changes": changes, "cursor": cursor::encode(&epoch, last), "more": more }))
        })
        .await?;
    Ok(Json(body))
}

/// Query of `GET /api/events`: `EventSource` cannot set headers, so the token
/// may come here instead of in `Authorization`.
#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    since: Option<String>,
    token: Option<String>,
}

struct Follower {
    db: Arc<Db>,
    seq: i64,
    head: watch::Receiver<i64>,
    shutdown: watch::Receiver<bool>,
    pending: VecDeque<Event>,
}

/// `GET /api/events`: one `change` event per committed change, `id` = the
/// cursor after it. Resumes after `Last-Event-ID` or `?since=`; without
/// either it starts at the present. Each connection begins with a `ready`
/// event (no `id`, data `{}`), beyond docs/backend/protocol.md: it tells a client that
/// events get through, where a buffering proxy would hold them back.
///
/// # Errors
/// `401`, `410 cursor_expired`.
pub async fn events_route(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let token = bearer_token(&headers).or(q.token);
    user_for_token(&state, token).await?;
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(q.since)
        .filter(|s| !s.is_empty());
    // Subscribe before reading the head, so a commit in between still wakes us.
    let head_rx = state.db.subscribe();
    let head = state.db.head();
    let seq = match resume {
        Some(c) => cursor::decode(state.db.epoch(), &c, head)?,
        None => head,
    };
    let follower = Follower {
        db: Arc::clone(&state.db),
        seq,
        head: head_rx,
        shutdown: state.shutdown.clone(),
        pending: VecDeque::from([Event::default().event("ready").data("{}")]),
    };
    Ok(Sse::new(follow(follower))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

fn follow(follower: Follower) -> impl Stream<Item = Result<Event, Infallible>> {
    stream::unfold(follower, |mut f| async move {
        loop {
            if let Some(event) = f.pending.pop_front() {
                return Some((Ok(event), f));
            }
            if *f.shutdown.borrow() {
                return None;
            }
            let head = *f.head.borrow_and_update();
            if head > f.seq {
                let since = f.seq;
                let rows =
                    f.db.read(move |tx| changes_after(tx, since, DEFAULT_LIMIT))
                        .await
                        .ok()?;
                // Rows can only be missing if the table was pruned; never spin.
                f.seq = rows.last().map_or(head, |(seq, _)| *seq);
                let epoch = f.db.epoch().to_owned();
                for (seq, entry) in rows {
                    let data = serde_json::to_string(&entry).unwrap_or_else(|_| "{}".into());
                    f.pending.push_back(
                        Event::default()
                            .event("change")
                            .id(cursor::encode(&epoch, seq))
                            .data(data),
                    );
                }
                continue;
            }
            tokio::select! {
                changed = f.head.changed() => changed.ok()?,
                _ = f.shutdown.changed() => return None,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::cursor;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = cursor::encode("abc", 7);
        assert_eq!(cursor::decode("abc", &c, 9).ok(), Some(7));
        assert!(cursor::decode("abd", &c, 9).is_err());
        assert!(cursor::decode("abc", &c, 6).is_err());
        assert!(cursor::decode("abc", "garbage", 9).is_err());
        assert!(cursor::decode("abc", "abc.-1", 9).is_err());
    }
}
