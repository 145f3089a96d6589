//! Presence: who has which record open, and which field they are editing.
//!
//! A client (the leader tab of one browser) sends the complete set of records
//! its user has open, at each change and every 10 s (`POST /api/presence`).
//! A set lives [`crate::limits::Limits::presence_ttl`] (30 s) unless sent
//! again. Whenever the people on a record change, including when a set
//! expires, every event stream of this instance gets a `presence` event.
//!
//! Nothing here touches the disk: sets live in memory. A set belongs to a
//! session (one token, so one browser), not to a user: two browsers of one
//! person each send their own set, and a record's people are the union of the
//! sessions, one entry per user.
//!
//! **Past one machine** (PostgreSQL, several instances): each instance keeps
//! every set in its own memory, and an instance that accepts a set tells the
//! others with `NOTIFY crm_sync_presence` (no table is written; the payload
//! carries the set, in chunks of at most [`CHUNK_BYTES`], all in one
//! transaction so they arrive together and in order). Each instance expires
//! sets by its own clock from when it heard them, so they expire everywhere
//! within the notification's delay (milliseconds) of each other. Limits: an
//! instance that starts (or whose listening connection dropped) knows the
//! sets only as they are sent again, so for at most one heartbeat (10 s) its
//! streams and `GET /api/presence` miss people already there; a lost
//! notification is repaired by the next heartbeat the same way.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tokio::sync::broadcast;

use crate::auth::{bearer_token, session_for_token};
use crate::db::{random_hex, timestamp_rfc3339};
use crate::error::ApiError;
use crate::validate::is_valid_record_id;
use crate::wire::*;
use crate::AppState;

/// The PostgreSQL channel presence sets travel on between instances.
const PG_CHANNEL: &str = "crm_sync_presence";

/// Largest payload of one notification (PostgreSQL allows 8000 bytes).
pub const CHUNK_BYTES: usize = 7000;

/// How often expired sets are looked for.
const SWEEP_EVERY: Duration = Duration::from_millis(500);

/// How long the instance's presence connection waits for notifications
/// before it sends what this instance accepted meanwhile.
const PG_WAIT: Duration = Duration::from_millis(20);

/// One record a person has open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenRecord {
    /// The collection.
    pub collection: String,
    /// The record's id.
    pub id: String,
    /// The field in focus, if any.
    pub editing: Option<String>,
    /// When this session opened the record (RFC 3339 UTC).
    pub since: String,
}

/// One person on a record, as clients see them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({ "user": "bob", "editing": "city", "since": "2026-01-02T09:00:00.000Z" }))]
pub struct Person {
    /// The person's user name.
    pub user: String,
    /// The field they are editing, or `null`.
    pub editing: Option<String>,
    /// Since when they have the record open (the earliest of their browsers).
    pub since: String,
}

/// The data of a `presence` event on `/api/events`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(example = json!({ "collection": "customers", "id": "c-0001", "people": [{ "user": "bob", "editing": "city", "since": "2026-01-02T09:00:00.000Z" }] }))]
pub struct PresenceEvent {
    /// The record's collection.
    pub collection: String,
    /// The record's id.
    pub id: String,
    /// Everyone on it now (the receiver included, if there), by user name.
    pub people: Vec<Person>,
}

/// `GET /api/presence` answer.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(example = json!({ "people": [{ "user": "bob", "editing": null, "since": "2026-01-02T09:00:00.000Z" }] }))]
pub struct PeopleAnswer {
    /// Everyone on the record now, by user name.
    pub people: Vec<Person>,
}

/// One entry of `POST /api/presence`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PresenceEntry {
    /// The collection.
    #[schema(value_type = CollectionName)]
    pub collection: String,
    /// The record's id.
    #[schema(value_type = RecordId)]
    pub id: String,
    /// The field in focus (1 to 100 characters), or `null`.
    pub editing: Option<String>,
}

/// `POST /api/presence` body.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(example = json!({ "entries": [{ "collection": "customers", "id": "c-0001", "editing": "city" }] }))]
pub struct PresenceSet {
    /// Every record this browser has open now (empty: none), at most 200.
    pub entries: Vec<PresenceEntry>,
}

type RecordKey = (String, String);

struct Held {
    user: String,
    records: Vec<OpenRecord>,
    expires: Instant,
}

#[derive(Default)]
struct Sets {
    /// Per session key.
    held: HashMap<String, Held>,
    /// Which sessions have each record open.
    on_record: HashMap<RecordKey, HashSet<String>>,
}

impl Sets {
    fn people(&self, key: &RecordKey) -> Vec<Person> {
        let mut by_user: BTreeMap<&str, Person> = BTreeMap::new();
        for session in self.on_record.get(key).into_iter().flatten() {
            let Some(held) = self.held.get(session) else {
                continue;
            };
            let Some(r) = held
                .records
                .iter()
                .find(|r| r.collection == key.0 && r.id == key.1)
            else {
                continue;
            };
            let person = by_user.entry(&held.user).or_insert_with(|| Person {
                user: held.user.clone(),
                editing: None,
                since: r.since.clone(),
            });
            if person.editing.is_none() {
                person.editing.clone_from(&r.editing);
            }
            if r.since < person.since {
                person.since.clone_from(&r.since);
            }
        }
        by_user.into_values().collect()
    }

    /// Replaces one session's set (an empty one removes it) and returns the
    /// records whose people changed, with their people now.
    fn replace(
        &mut self,
        session: &str,
        user: &str,
        records: Vec<OpenRecord>,
        expires: Instant,
    ) -> Vec<PresenceEvent> {
        let old: Vec<RecordKey> = self
            .held
            .get(session)
            .map(|h| {
                h.records
                    .iter()
                    .map(|r| (r.collection.clone(), r.id.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let new: Vec<RecordKey> = records
            .iter()
            .map(|r| (r.collection.clone(), r.id.clone()))
            .collect();
        let mut touched: Vec<RecordKey> = old.iter().chain(&new).cloned().collect();
        touched.sort();
        touched.dedup();
        let before: Vec<Vec<Person>> = touched.iter().map(|k| self.people(k)).collect();
        for k in &old {
            if let Some(s) = self.on_record.get_mut(k) {
                s.remove(session);
                if s.is_empty() {
                    self.on_record.remove(k);
                }
            }
        }
        if records.is_empty() {
            self.held.remove(session);
        } else {
            for k in &new {
                self.on_record
                    .entry(k.clone())
                    .or_default()
                    .insert(session.to_owned());
            }
            self.held.insert(
                session.to_owned(),
                Held {
                    user: user.to_owned(),
                    records,
                    expires,
                },
            );
        }
        touched
            .into_iter()
            .zip(before)
            .filter_map(|(k, before)| {
                let people = self.people(&k);
                (people != before).then_some(PresenceEvent {
                    collection: k.0,
                    id: k.1,
                    people,
                })
            })
            .collect()
    }
}

/// A set as it travels between instances.
#[derive(Debug, Serialize, Deserialize)]
struct Notice {
    /// The instance that accepted it (which ignores its own notices).
    from: String,
    session: String,
    user: String,
    /// Whether this chunk starts the set (and replaces the one held).
    first: bool,
    records: Vec<OpenRecord>,
}

/// Every presence set this instance knows, and the `presence` events.
pub struct Presence {
    sets: Mutex<Sets>,
    events: broadcast::Sender<Arc<PresenceEvent>>,
    ttl: Duration,
    max_entries: usize,
    instance: String,
    /// Sets to tell the other instances (PostgreSQL only): chunks of one set.
    outgoing: Option<Mutex<mpsc::Sender<Vec<String>>>>,
}

impl Presence {
    /// Forgets a session's set at once (logout).
    pub fn forget(&self, token_hash: &str) {
        let key = session_key(token_hash);
        let user = self.lock().held.get(&key).map(|h| h.user.clone());
        if let Some(user) = user {
            self.set(&key, &user, Vec::new());
        }
    }

    /// Presence for one instance. With a PostgreSQL URL it starts a thread
    /// with one connection that sends and hears the other instances' sets;
    /// the thread ends when the returned value is dropped.
    ///
    /// # Errors
    /// When the URL cannot be read or no random id can be made.
    pub fn start(
        postgres: Option<&str>,
        ttl: Duration,
        max_entries: usize,
    ) -> Result<Arc<Self>, ApiError> {
        let config: Option<postgres::Config> = postgres
            .map(str::parse)
            .transpose()
            .map_err(ApiError::internal)?;
        let (events, _) = broadcast::channel(1024);
        let (tx, rx) = mpsc::channel();
        let presence = Arc::new(Self {
            sets: Mutex::new(Sets::default()),
            events,
            ttl,
            max_entries,
            instance: random_hex(8)?,
            outgoing: config.as_ref().map(|_| Mutex::new(tx)),
        });
        if let Some(config) = config {
            let weak = Arc::downgrade(&presence);
            std::thread::Builder::new()
                .name("pg-presence".into())
                .spawn(move || share_between_instances(&config, &weak, &rx))
                .map_err(ApiError::internal)?;
        }
        let weak = Arc::downgrade(&presence);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_EVERY);
            loop {
                tick.tick().await;
                let Some(p) = weak.upgrade() else { return };
                p.sweep(Instant::now());
            }
        });
        Ok(presence)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sets> {
        self.sets.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A receiver of every `presence` event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<PresenceEvent>> {
        self.events.subscribe()
    }

    fn emit(&self, events: Vec<PresenceEvent>) {
        for e in events {
            // No receiver (no stream open) is no error.
            let _ = self.events.send(Arc::new(e));
        }
    }

    /// A `presence` event for every record someone has open now: what a
    /// stream sends after `ready`, so a client that just connected knows
    /// who is already there.
    pub fn snapshot(&self) -> Vec<PresenceEvent> {
        let sets = self.lock();
        let mut keys: Vec<&RecordKey> = sets.on_record.keys().collect();
        keys.sort();
        keys.into_iter()
            .map(|k| PresenceEvent {
                collection: k.0.clone(),
                id: k.1.clone(),
                people: sets.people(k),
            })
            .collect()
    }

    /// Everyone on one record now.
    pub fn people(&self, collection: &str, id: &str) -> Vec<Person> {
        self.lock().people(&(collection.to_owned(), id.to_owned()))
    }

    /// Replaces the set of `session` (a key of the token, never the token)
    /// with `entries`, keeping `since` of records it already had open, and
    /// tells the other instances.
    pub fn set(&self, session: &str, user: &str, entries: Vec<PresenceEntry>) {
        let now = timestamp_rfc3339();
        let mut sets = self.lock();
        let records: Vec<OpenRecord> = {
            let old = sets
                .held
                .get(session)
                .map(|h| &h.records[..])
                .unwrap_or(&[]);
            entries
                .into_iter()
                .map(|e| {
                    let since = old
                        .iter()
                        .find(|r| r.collection == e.collection && r.id == e.id)
                        .map_or_else(|| now.clone(), |r| r.since.clone());
                    OpenRecord {
                        collection: e.collection,
                        id: e.id,
                        editing: e.editing,
                        since,
                    }
                })
                .collect()
        };
        let notices = self.notices(session, user, &records);
        let events = sets.replace(session, user, records, Instant::now() + self.ttl);
        drop(sets);
        if let (Some(out), Some(notices)) = (&self.outgoing, notices) {
            let sent = out
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .send(notices);
            if sent.is_err() {
                tracing::warn!("presence cannot reach the other instances");
            }
        }
        self.emit(events);
    }

    /// The set as notices of at most [`CHUNK_BYTES`] each (PostgreSQL only).
    fn notices(&self, session: &str, user: &str, records: &[OpenRecord]) -> Option<Vec<String>> {
        self.outgoing.as_ref()?;
        let notice = |first: bool, records: Vec<OpenRecord>| {
            serde_json::to_string(&Notice {
                from: self.instance.clone(),
                session: session.to_owned(),
                user: user.to_owned(),
                first,
                records,
            })
            .unwrap_or_default()
        };
        let mut out = Vec::new();
        let mut chunk: Vec<OpenRecord> = Vec::new();
        let mut size = 0;
        for r in records {
            // Each record is at most ~400 bytes of JSON (validated lengths).
            let len = r.collection.len()
                + r.id.len()
                + r.since.len()
                + 80
                + r.editing.as_ref().map_or(0, String::len);
            if size + len > CHUNK_BYTES - 400 && !chunk.is_empty() {
                out.push(notice(out.is_empty(), std::mem::take(&mut chunk)));
                size = 0;
            }
            size += len;
            chunk.push(r.clone());
        }
        if !chunk.is_empty() || out.is_empty() {
            out.push(notice(out.is_empty(), chunk));
        }
        Some(out)
    }

    /// Applies a notice of another instance.
    fn heard(&self, notice: Notice) {
        if notice.from == self.instance {
            return;
        }
        let mut sets = self.lock();
        let mut records = notice.records;
        if !notice.first {
            let mut held = sets
                .held
                .get(&notice.session)
                .map(|h| h.records.clone())
                .unwrap_or_default();
            held.append(&mut records);
            records = held;
        }
        let events = sets.replace(
            &notice.session,
            &notice.user,
            records,
            Instant::now() + self.ttl,
        );
        drop(sets);
        self.emit(events);
    }

    /// Forgets the sets whose time ran out.
    pub fn sweep(&self, now: Instant) {
        let mut sets = self.lock();
        let expired: Vec<(String, String)> = sets
            .held
            .iter()
            .filter(|(_, h)| h.expires <= now)
            .map(|(s, h)| (s.clone(), h.user.clone()))
            .collect();
        let mut events = Vec::new();
        for (session, user) in expired {
            events.extend(sets.replace(&session, &user, Vec::new(), now));
        }
        drop(sets);
        self.emit(events);
    }

    /// Validates a `POST /api/presence` body.
    ///
    /// # Errors
    /// `422 invalid` naming each bad entry (`entries[3].id`), or the count
    /// when there are more than the limit.
    pub fn read_body(&self, body: &Value) -> Result<Vec<PresenceEntry>, ApiError> {
        let Some(list) = body.get("entries") else {
            return Err(ApiError::invalid_field(
                "entries",
                "required: the list of records open now (empty for none)",
            ));
        };
        let Value::Array(list) = list else {
            return Err(ApiError::invalid_field("entries", "must be a list"));
        };
        if list.len() > self.max_entries {
            return Err(ApiError::invalid_field(
                "entries",
                format!(
                    "at most {} records open at once; {} sent",
                    self.max_entries,
                    list.len()
                ),
            )
            .with_details(json!({
                "fields": { "entries": format!("at most {} records open at once", self.max_entries) },
                "limit": self.max_entries,
            })));
        }
        let mut errors = Map::new();
        let mut out: Vec<PresenceEntry> = Vec::with_capacity(list.len());
        for (i, item) in list.iter().enumerate() {
            let at = format!("entries[{i}]");
            let Value::Object(item) = item else {
                errors.insert(at, "must be an object { collection, id, editing }".into());
                continue;
            };
            let collection = item.get("collection").and_then(Value::as_str);
            let id = item.get("id").and_then(Value::as_str);
            let editing = item.get("editing").unwrap_or(&Value::Null);
            let mut ok = true;
            match collection {
                Some(c)
                    if crate::validate::check_collection(c).is_ok()
                        && !crate::wire::RESERVED_NAMES.contains(&c) => {}
                _ => {
                    errors.insert(
                        format!("{at}.collection"),
                        "a collection name: [a-z][a-z0-9_]{0,39}, not a route's".into(),
                    );
                    ok = false;
                }
            }
            match id {
                Some(id) if is_valid_record_id(id) => {}
                _ => {
                    errors.insert(
                        format!("{at}.id"),
                        "a record id: 1 to 128 letters, digits or -_.:@".into(),
                    );
                    ok = false;
                }
            }
            let editing = match editing {
                Value::Null => None,
                Value::String(s) if !s.is_empty() && s.len() <= 100 => Some(s.clone()),
                _ => {
                    errors.insert(
                        format!("{at}.editing"),
                        "a field name (1 to 100 characters) or null".into(),
                    );
                    ok = false;
                    None
                }
            };
            if !ok {
                continue;
            }
            let (collection, id) = (
                collection.unwrap_or_default().to_owned(),
                id.unwrap_or_default().to_owned(),
            );
            // The same record twice (two tabs of one browser): one entry,
            // editing wherever a field is in focus.
            match out
                .iter_mut()
                .find(|e| e.collection == collection && e.id == id)
            {
                Some(e) => {
                    if e.editing.is_none() {
                        e.editing = editing;
                    }
                }
                None => out.push(PresenceEntry {
                    collection,
                    id,
                    editing,
                }),
            }
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(ApiError::invalid_fields(errors))
        }
    }
}

/// The session key of a token hash: enough of it to tell sessions apart,
/// too little to look a token up (it travels in notifications).
fn session_key(token_hash: &str) -> String {
    token_hash.chars().take(24).collect()
}

/// `POST /api/presence` -> `204`: the complete set of records this browser
/// has open now (an empty list: none). It lives 30 s unless sent again.
///
/// # Errors
/// `401`, `400` for a body that is no JSON, `422 invalid` for bad entries
/// or more than 200 of them.
#[utoipa::path(
    post,
    path = "/api/presence",
    tag = "presence",
    operation_id = "setPresence",
    request_body = PresenceSet,
    responses(
        (status = 204, description = "The set is replaced; every event stream hears of the records whose people changed"),
        (status = 422, description = "`invalid`: a bad entry (`details.fields` names it, e.g. `entries[2].id`), or more than 200 entries (`details.limit`)", body = ErrorBody),
        RequestErrors, BodyTooLarge,
    )
)]
pub async fn set_route(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let session = session_for_token(&state, bearer_token(&headers)).await?;
    let body = crate::extract::json_body(body)?;
    let entries = state.presence.read_body(&body)?;
    state
        .presence
        .set(&session_key(&session.token_hash), &session.user, entries);
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/presence` query.
#[derive(Debug, Deserialize)]
pub struct PeopleQuery {
    collection: Option<String>,
    id: Option<String>,
}

/// `GET /api/presence?collection=&id=` -> `{ people }`: everyone on the
/// record now (the caller too, if there), one entry per person.
///
/// # Errors
/// `401`, `400` for a missing or bad `collection` or `id`.
#[utoipa::path(
    get,
    path = "/api/presence",
    tag = "presence",
    operation_id = "getPresence",
    params(
        ("collection" = String, Query, description = "The record's collection"),
        ("id" = String, Query, description = "The record's id"),
    ),
    responses(
        (status = 200, description = "Everyone on the record now, by user name", body = PeopleAnswer),
        RequestErrors,
    )
)]
pub async fn people_route(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<PeopleQuery>, QueryRejection>,
) -> Result<Json<PeopleAnswer>, ApiError> {
    session_for_token(&state, bearer_token(&headers)).await?;
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let collection = q
        .collection
        .filter(|c| crate::validate::check_collection(c).is_ok())
        .ok_or_else(|| ApiError::bad_request("collection: a collection name is required"))?;
    let id =
        q.id.filter(|id| is_valid_record_id(id))
            .ok_or_else(|| ApiError::bad_request("id: a record id is required"))?;
    Ok(Json(PeopleAnswer {
        people: state.presence.people(&collection, &id),
    }))
}

/// The thread that shares sets between instances over PostgreSQL: one
/// connection that `LISTEN`s, and sends this instance's sets between waits.
/// It reconnects after a dropped connection (sets sent meanwhile are lost;
/// the next heartbeat repeats them) and ends when presence is dropped.
fn share_between_instances(
    config: &postgres::Config,
    presence: &Weak<Presence>,
    outgoing: &mpsc::Receiver<Vec<String>>,
) {
    use postgres::fallible_iterator::FallibleIterator;
    let mut conn: Option<postgres::Client> = None;
    loop {
        if presence.strong_count() == 0 {
            break;
        }
        let client = match conn.as_mut() {
            Some(c) => c,
            None => match config
                .connect(postgres::NoTls)
                .and_then(|mut c| c.batch_execute(&format!("LISTEN {PG_CHANNEL}")).map(|()| c))
            {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    tracing::warn!(error = %e, "presence cannot reach PostgreSQL; retrying");
                    std::thread::sleep(Duration::from_millis(500));
                    // Sets accepted meanwhile cannot be sent; the next heartbeats repeat them.
                    while outgoing.try_recv().is_ok() {}
                    continue;
                }
            },
        };
        let mut lost = false;
        while let Ok(chunks) = outgoing.try_recv() {
            let sent = client.transaction().and_then(|mut tx| {
                for c in &chunks {
                    tx.execute("SELECT pg_notify($1, $2)", &[&PG_CHANNEL, c])?;
                }
                tx.commit()
            });
            if let Err(e) = sent {
                tracing::warn!(error = %e, "presence could not tell the other instances");
                lost = true;
                break;
            }
        }
        if !lost {
            let mut heard = Vec::new();
            let mut notifications = client.notifications();
            let first = notifications.timeout_iter(PG_WAIT).next();
            match first {
                Ok(Some(n)) => {
                    heard.push(n.payload().to_owned());
                    // Take what else came, without waiting again.
                    while let Ok(Some(n)) = notifications.iter().next() {
                        heard.push(n.payload().to_owned());
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "presence lost its PostgreSQL connection");
                    lost = true;
                }
            }
            drop(notifications);
            if let Some(p) = presence.upgrade() {
                for payload in heard {
                    match serde_json::from_str::<Notice>(&payload) {
                        Ok(n) => p.heard(n),
                        Err(e) => tracing::warn!(error = %e, "unreadable presence notice"),
                    }
                }
            }
        }
        if lost {
            conn = None;
        }
    }
    if let Some(c) = conn {
        let _ = c.close();
    }
}
