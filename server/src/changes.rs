//! The changes feed (`GET /api/changes`) and its live form, Server-Sent Events
//! (`GET /api/events`). Both read the `changes` table up to the database's
//! settled head ([`Db::head`]): on SQLite sequence numbers follow commit
//! order (one writer); on PostgreSQL the head only moves past a number once
//! no open transaction can still commit one below it. So a reader that asks
//! for "everything after seq N" never misses a change.

use crate::wire::*;
use std::collections::{HashMap, VecDeque};
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
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::auth::{bearer_token, session_for_token, session_row, AuthUser};
use crate::db::unix_seconds;
use crate::db::{Db, Tx};
use crate::error::ApiError;
use crate::stream_tickets::redeem;
use crate::streams::StreamTicket;
use crate::{records, AppState};

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
    /// `410 cursor_expired` for garbage, another database's cursor, one from
    /// before `floor` (pruned), or one from the future.
    pub fn decode(epoch: &str, cursor: &str, floor: i64, head: i64) -> Result<i64, ApiError> {
        let (e, seq) = cursor
            .split_once('.')
            .ok_or_else(ApiError::cursor_expired)?;
        let seq: i64 = seq.parse().map_err(|_| ApiError::cursor_expired())?;
        if e != epoch || seq < floor.max(0) || seq > head {
            return Err(ApiError::cursor_expired());
        }
        Ok(seq)
    }
}

/// Sequence number of the last change visible in this transaction.
///
/// # Errors
/// Internal errors from the database.
pub fn head(conn: &Tx<'_>) -> Result<i64, ApiError> {
    conn.query_one("SELECT COALESCE(MAX(seq), 0) FROM changes", &[])?
        .get(0)
}

/// Up to `limit` changes after `since` and at most `upto` (the settled head,
/// [`Db::head`]), cut once their JSON passes
/// `max_bytes` (at least one is always returned): `(seq, entry)` pairs and
/// whether the cut left changes out. A `put` carries the record as it is now
/// (the table stores what changed, not copies of records); a change to a record
/// deleted since is reported as that deletion.
///
/// # Errors
/// Internal errors from the database.
pub fn changes_after(
    conn: &Tx<'_>,
    since: i64,
    upto: i64,
    limit: usize,
    max_bytes: usize,
) -> Result<(Vec<(i64, Value)>, bool), ApiError> {
    let fetch = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
    let rows = conn.query(
        "SELECT seq, collection, id, version, op FROM changes
         WHERE seq > ?1 AND seq <= ?2 ORDER BY seq LIMIT ?3",
        &[&since, &upto, &fetch],
    )?;
    let mut out = Vec::new();
    let mut bytes = 0usize;
    let mut current: HashMap<(String, String), Option<Value>> = HashMap::new();
    for r in rows {
        if out.len() >= limit || (bytes >= max_bytes && !out.is_empty()) {
            return Ok((out, true));
        }
        let seq: i64 = r.get(0)?;
        let collection: String = r.get(1)?;
        let id: String = r.get(2)?;
        let mut version: i64 = r.get(3)?;
        let mut op: String = r.get(4)?;
        let key = (collection.clone(), id.clone());
        let record = match current.get(&key) {
            Some(known) => known.clone(),
            None => {
                let now = records::load(conn, &collection, &id)?.map(|stored| {
                    if stored.deleted {
                        json!({ "deleted": stored.record.version })
                    } else {
                        stored.record.to_json()
                    }
                });
                current.insert(key, now.clone());
                now
            }
        };
        let mut entry = serde_json::Map::new();
        entry.insert("collection".into(), collection.into());
        entry.insert("id".into(), id.into());
        match record {
            Some(Value::Object(rec)) if op == "put" && !rec.contains_key("deleted") => {
                version = rec
                    .get("version")
                    .and_then(Value::as_i64)
                    .unwrap_or(version);
                entry.insert("version".into(), version.into());
                entry.insert("op".into(), op.into());
                entry.insert("record".into(), Value::Object(rec));
            }
            Some(Value::Object(rec)) if op == "put" => {
                version = rec
                    .get("deleted")
                    .and_then(Value::as_i64)
                    .unwrap_or(version);
                op = "delete".into();
                entry.insert("version".into(), version.into());
                entry.insert("op".into(), op.into());
            }
            _ => {
                entry.insert("version".into(), version.into());
                entry.insert("op".into(), op.into());
            }
        }
        let entry = Value::Object(entry);
        bytes = bytes.saturating_add(serde_json::to_vec(&entry).map_or(0, |v| v.len()));
        out.push((seq, entry));
    }
    Ok((out, false))
}

/// Deletes all but the newest `keep` changes and remembers where it cut.
///
/// # Errors
/// Internal errors from the database.
pub fn prune(conn: &Tx<'_>, keep: i64) -> Result<usize, ApiError> {
    let cut = head(conn)? - keep.max(1);
    if cut <= records::floor(conn)? {
        return Ok(0);
    }
    let n = conn.execute("DELETE FROM changes WHERE seq <= ?1", &[&cut])?;
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('pruned_through', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        &[&cut.to_string()],
    )?;
    Ok(n)
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
#[utoipa::path(
    get,
    path = "/api/changes",
    tag = "changes",
    operation_id = "changes",
    params(
        ("since" = Option<String>, Query, nullable = false, description = "A cursor from a list, a feed page or an event; absent or empty = from the start (only while nothing was pruned)"),
        ("limit" = Option<i64>, Query, nullable = false, description = "Most changes on the page (default 500; more than 1000 is read as 1000)", minimum = 1),
    ),
    responses(
        (status = 200, description = "Changes after `since`", body = Feed),
        SignedInErrors,
        (status = 400, description = "`invalid`: a bad `limit`", body = ErrorBody),
        (status = 410, description = "`cursor_expired`: unknown or expired cursor; reload everything", body = ErrorBody),
    )
)]
pub async fn feed_route(
    State(state): State<AppState>,
    _user: AuthUser,
    query: Result<Query<FeedQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = match q.limit.as_deref() {
        // An empty `limit=` is not a number: refused like any other
        // (Schemathesis found it read as "absent").
        None => DEFAULT_LIMIT,
        // Read as the document's int64: a number past it is refused, not
        // clamped (Schemathesis sent 2^63 and got a page).
        Some(s) => match s.parse::<i64>() {
            Ok(n) if n >= 1 => usize::try_from(n).map_or(MAX_LIMIT, |n| n.min(MAX_LIMIT)),
            _ => {
                return Err(ApiError::bad_request(
                    "limit must be a whole number from 1 to 1000",
                ))
            }
        },
    };
    let epoch = state.db.epoch().to_owned();
    let max_bytes = state.limits.feed_page_bytes;
    let upto = state.db.feed_upto();
    let body = state
        .db
        .read(move |tx| {
            let head = head(tx)?;
            let floor = records::floor(tx)?;
            let since = match q.since.as_deref() {
                None | Some("") if floor > 0 => return Err(ApiError::cursor_expired()),
                None | Some("") => 0,
                Some(c) => cursor::decode(&epoch, c, floor, head)?,
            };
            let (rows, more) = changes_after(tx, since, upto, limit, max_bytes)?;
            let last = rows.last().map_or(since, |(seq, _)| *seq);
            let changes: Vec<Value> = rows.into_iter().map(|(_, e)| e).collect();
            Ok(json!({ "changes": changes, "cursor": cursor::encode(&epoch, last), "more": more }))
        })
        .await?;
    Ok(Json(body))
}

/// Query of `GET /api/events`: `EventSource` cannot set headers, so a
/// stream ticket ([`crate::stream_tickets`]) may come here instead of the
/// token in `Authorization`. `token` is read only to refuse it.
#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    since: Option<String>,
    ticket: Option<String>,
    token: Option<String>,
}

struct Follower {
    db: Arc<Db>,
    seq: i64,
    head: watch::Receiver<i64>,
    shutdown: watch::Receiver<bool>,
    pending: VecDeque<Event>,
    token_hash: String,
    expires: tokio::time::Instant,
    max_bytes: usize,
    ticket: StreamTicket,
    presence: tokio::sync::broadcast::Receiver<Arc<crate::presence::PresenceEvent>>,
}

/// `GET /api/events`: one `change` event per committed change, `id` = the
/// cursor after it. Resumes after `Last-Event-ID` or `?since=`; without
/// either it starts at the present. Each connection begins with a `ready`
/// event (no `id`, data `{}`), beyond docs/backend/protocol.md: it tells a client that
/// events get through, where a buffering proxy would hold them back.
///
/// A browser opens it with `?ticket=` (single use, see
/// [`crate::stream_tickets`]); other clients may send the bearer token in
/// `Authorization`. A `token` in the query is refused.
///
/// The stream belongs to its token (the one that asked for the ticket): it
/// ends when the token is revoked (logout), when it expires, and when the
/// user opens more streams than allowed (the oldest ends). Each batch is
/// read with the token checked again.
///
/// # Errors
/// `400` for a token in the query, `401`, `403` for another user's ticket,
/// `410 cursor_expired`.
#[utoipa::path(
    get,
    path = "/api/events",
    tag = "changes",
    operation_id = "events",
    params(
        ("since" = Option<String>, Query, nullable = false, description = "Resume after this cursor (`Last-Event-ID` wins); absent = from now"),
        ("ticket" = Option<String>, Query, nullable = false, description = "A single-use ticket from `POST /api/events/ticket`, for `EventSource`, which cannot send headers"),
        ("Last-Event-ID" = Option<String>, Header, nullable = false, description = "Resume after this cursor"),
    ),
    responses(
        (status = 200, description = "A Server-Sent Events stream: first a `ready` event (data `{}`), then one `change` event per committed change, `data` a `Change` and `id` the cursor after it, and a `presence` event (no `id`, `data` a `PresenceEvent`) whenever the people on a record change (after `ready`, one for each record someone has open then). It has no deadline; it ends at logout, token expiry, or when the user opens too many streams.", content_type = "text/event-stream", body = ServerEvent),
        (status = 401, description = "`unauthorized`: no token and no ticket, an unknown or expired token, or a ticket unknown, used, expired or of a session that ended", body = ErrorBody),
        (status = 403, description = "`forbidden`: the ticket belongs to another user than the bearer token sent with it", body = ErrorBody),
        (status = 400, description = "`invalid`: a query that cannot be read, or a `token` in it (a bearer token never goes in a URL; not a parameter of this route)", body = ErrorBody),
        (status = 410, description = "`cursor_expired`", body = ErrorBody),
        (status = 500, description = "`internal`", body = ErrorBody),
    )
)]
pub async fn events_route(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    if q.token.is_some() {
        // Refused even when it is good: a URL is kept by every proxy and
        // access log on the way.
        return Err(ApiError::bad_request(
            "a token never goes in a URL: ask POST /api/events/ticket for a ticket and open the stream with ?ticket=",
        ));
    }
    let bearer = bearer_token(&headers);
    let session = match q.ticket {
        Some(ticket) => {
            let session = redeem(&state, &ticket).await?;
            if bearer.is_some() && session_for_token(&state, bearer).await?.user != session.user {
                return Err(ApiError::forbidden(
                    "this stream ticket belongs to another user",
                ));
            }
            session
        }
        None => session_for_token(&state, bearer).await?,
    };
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
        Some(c) => {
            // Checked against every commit in the database: another instance
            // may have given out a cursor this one has not settled yet.
            let (floor, newest) = state
                .db
                .read(|tx| Ok((records::floor(tx)?, self::head(tx)?)))
                .await?;
            cursor::decode(state.db.epoch(), &c, floor, head.max(newest))?
        }
        None => head,
    };
    let left = u64::try_from(session.expires_at - unix_seconds()).unwrap_or(0);
    let ticket = state
        .streams
        .open(&session.user, &session.token_hash)
        .await?;
    // Subscribed before the snapshot is taken: a change in between is sent
    // twice at worst, never lost.
    let presence = state.presence.subscribe();
    let mut pending = VecDeque::from([Event::default().event("ready").data("{}")]);
    for e in state.presence.snapshot() {
        let data = serde_json::to_string(&e).unwrap_or_else(|_| "{}".into());
        pending.push_back(Event::default().event("presence").data(data));
    }
    let follower = Follower {
        db: Arc::clone(&state.db),
        seq,
        head: head_rx,
        shutdown: state.shutdown.clone(),
        pending,
        token_hash: session.token_hash,
        expires: tokio::time::Instant::now() + Duration::from_secs(left),
        max_bytes: state.limits.feed_page_bytes,
        ticket,
        presence,
    };
    Ok(Sse::new(follow(follower))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

fn follow(follower: Follower) -> impl Stream<Item = Result<Event, Infallible>> {
    stream::unfold(follower, |mut f| async move {
        loop {
            if *f.shutdown.borrow() || *f.ticket.closed.borrow() {
                return None;
            }
            if let Some(event) = f.pending.pop_front() {
                return Some((Ok(event), f));
            }
            let head = *f.head.borrow_and_update();
            if head > f.seq {
                let (since, max_bytes, token_hash) = (f.seq, f.max_bytes, f.token_hash.clone());
                let upto = f.db.feed_upto();
                let batch =
                    f.db.read(move |tx| {
                        if session_row(tx, &token_hash)?.is_none() {
                            return Ok(None);
                        }
                        changes_after(tx, since, upto, DEFAULT_LIMIT, max_bytes).map(Some)
                    })
                    .await
                    .ok()??;
                let (rows, _more) = batch;
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
                heard = f.presence.recv() => {
                    use tokio::sync::broadcast::error::RecvError;
                    match heard {
                        Ok(e) => {
                            let data = serde_json::to_string(&*e).unwrap_or_else(|_| "{}".into());
                            f.pending.push_back(Event::default().event("presence").data(data));
                        }
                        // A stream more than 1,024 events behind misses some:
                        // presence is a hint, and the next change of those
                        // records' people is sent again.
                        Err(RecvError::Lagged(_)) => {}
                        Err(RecvError::Closed) => return None,
                    }
                }
                _ = f.shutdown.changed() => return None,
                _ = f.ticket.closed.changed() => return None,
                () = tokio::time::sleep_until(f.expires) => return None,
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
        assert_eq!(cursor::decode("abc", &c, 0, 9).ok(), Some(7));
        assert_eq!(cursor::decode("abc", &c, 7, 9).ok(), Some(7));
        assert!(cursor::decode("abc", &c, 8, 9).is_err());
        assert!(cursor::decode("abd", &c, 0, 9).is_err());
        assert!(cursor::decode("abc", &c, 0, 6).is_err());
        assert!(cursor::decode("abc", "garbage", 0, 9).is_err());
        assert!(cursor::decode("abc", "abc.-1", 0, 9).is_err());
    }
}
