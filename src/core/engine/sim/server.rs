//! An in-memory model of the reference server's record routes: versions,
//! 409 with the current record, `Idempotency-Key` replays, comments by id,
//! and a changes feed.

use crate::core::code::ErrorCode;
use crate::core::engine::{FeedChange, FeedPage, LoadPage, Refusal, Reply};
use crate::core::outbox::{MutationOp, OutboxEntry};
use crate::core::record::{Comment, Fields, Record};
use std::collections::BTreeMap;

/// The model server.
#[derive(Debug, Default)]
pub struct ModelServer {
    /// Current records by id (one collection).
    pub records: BTreeMap<String, Record>,
    /// The fields of every version of every record.
    pub history: BTreeMap<(String, u64), Fields>,
    /// The answer kept per `Idempotency-Key`.
    replies: BTreeMap<String, Reply>,
    /// How often each key's mutation was applied (must stay at 1).
    pub applied: Applied,
    /// Record ids in the order they changed (the changes feed).
    pub feed: Vec<String>,
    /// Entries before this one were pruned: a cursor older gets 410.
    pub feed_floor: usize,
    clock: u64,
}

impl ModelServer {
    /// A server holding `ids`, each at version 1.
    pub fn with_records(ids: &[String]) -> Self {
        let mut server = Self::default();
        for id in ids {
            let mut fields = Fields::new();
            fields.insert(
                "name".into(),
                crate::core::record::FieldValue::Text(format!("{id} Ltd")),
            );
            let record = Record {
                id: id.clone(),
                version: 1,
                updated_at: String::new(),
                updated_by: "seed".into(),
                fields: fields.clone(),
                comments: Vec::new(),
            };
            server.history.insert((id.clone(), 1), fields);
            server.records.insert(id.clone(), record);
        }
        server
    }

    /// Handles one request of `user`.
    pub fn handle(&mut self, user: &str, entry: &OutboxEntry) -> Reply {
        if let Some(reply) = self.replies.get(&entry.idempotency_key) {
            return reply.clone();
        }
        self.clock += 1;
        let id = entry.record_id.clone();
        let reply = match &entry.op {
            MutationOp::Patch {
                base_version,
                fields,
                ..
            } => match self.records.get_mut(&id) {
                None => refusal(404, ErrorCode::NotFound, None),
                Some(r) if r.version != *base_version => {
                    refusal(409, ErrorCode::Conflict, Some(r.clone()))
                }
                Some(r) => {
                    for (k, v) in fields {
                        r.fields.insert(k.clone(), v.clone());
                    }
                    r.version += 1;
                    r.updated_by = user.to_owned();
                    r.updated_at = format!("t{:08}", self.clock);
                    self.history
                        .insert((id.clone(), r.version), r.fields.clone());
                    self.feed.push(id.clone());
                    self.applied.count(&entry.idempotency_key);
                    Reply::Record(r.clone())
                }
            },
            MutationOp::Create { fields } => {
                if self.records.contains_key(&id) {
                    refusal(409, ErrorCode::Conflict, self.records.get(&id).cloned())
                } else {
                    let record = Record {
                        id: id.clone(),
                        version: 1,
                        updated_at: format!("t{:08}", self.clock),
                        updated_by: user.to_owned(),
                        fields: fields.clone(),
                        comments: Vec::new(),
                    };
                    self.history.insert((id.clone(), 1), fields.clone());
                    self.records.insert(id.clone(), record.clone());
                    self.feed.push(id);
                    self.applied.count(&entry.idempotency_key);
                    Reply::Record(record)
                }
            }
            MutationOp::Delete { .. } => refusal(405, ErrorCode::Invalid, None),
            MutationOp::Comment { comment_id, text } => match self.records.get_mut(&id) {
                None => refusal(404, ErrorCode::NotFound, None),
                Some(r) => {
                    let comment = match r.comments.iter().find(|c| &c.id == comment_id) {
                        Some(c) => c.clone(),
                        None => {
                            let c = Comment {
                                id: comment_id.clone(),
                                author: user.to_owned(),
                                text: text.clone(),
                                created_at: format!("t{:08}", self.clock),
                            };
                            r.comments.push(c.clone());
                            self.feed.push(id.clone());
                            self.applied.count(&entry.idempotency_key);
                            c
                        }
                    };
                    Reply::Comment(comment)
                }
            },
        };
        self.replies
            .insert(entry.idempotency_key.clone(), reply.clone());
        reply
    }
}

/// How often the mutation of each `Idempotency-Key` was applied.
#[derive(Debug, Default)]
pub struct Applied {
    counts: BTreeMap<String, u32>,
    /// The first key applied more than once, and how often (so that the
    /// check after every event need not look through every key).
    pub again: Option<(String, u32)>,
}

impl Applied {
    /// The mutation sent under `key` was applied once more.
    fn count(&mut self, key: &str) {
        let n = self.counts.entry(key.to_owned()).or_default();
        *n += 1;
        if *n > 1 && self.again.is_none() {
            self.again = Some((key.to_owned(), *n));
        }
    }
}

impl ModelServer {
    /// Whether an answer is kept for this `Idempotency-Key` (a refusal
    /// for good is drawn only for a request not seen before).
    pub fn knows(&self, key: &str) -> bool {
        self.replies.contains_key(key)
    }

    /// A refusal for good, kept under no key (a person's retry is judged
    /// again): `422 invalid`, `403 forbidden` or `409 overlap`, by `which`.
    pub fn refuse(&self, which: usize) -> Reply {
        match which {
            0 => refusal(422, ErrorCode::Invalid, None),
            1 => refusal(403, ErrorCode::Forbidden, None),
            _ => refusal(409, ErrorCode::Overlap, None),
        }
    }
}

/// Feed entries per page: small, so reads take several pages.
const FEED_PAGE: usize = 3;

impl ModelServer {
    /// `GET /api/changes?since=`: the records changed after the cursor, as
    /// they are now; `410` for a cursor older than what is kept.
    #[allow(clippy::result_large_err)] // the engine's event type, as is
    pub fn changes(&self, since: &str, collection: &str) -> Result<FeedPage, Refusal> {
        let from: usize = since
            .parse()
            .map_err(|_| refused(400, ErrorCode::Invalid, None))?;
        if from < self.feed_floor || from > self.feed.len() {
            return Err(refused(410, ErrorCode::Server, None));
        }
        let end = (from + FEED_PAGE).min(self.feed.len());
        let changes = self.feed[from..end]
            .iter()
            .filter_map(|id| self.records.get(id))
            .map(|record| FeedChange::Put {
                collection: collection.to_owned(),
                record: record.clone(),
            })
            .collect();
        Ok(FeedPage {
            changes,
            cursor: end.to_string(),
            more: end < self.feed.len(),
        })
    }

    /// A page of a load: `size` records by id after `after`, with the
    /// feed's cursor as it is now (taken before the records are read).
    pub fn page(&self, after: Option<&str>, size: usize) -> LoadPage {
        let mut records: Vec<Record> = self
            .records
            .values()
            .filter(|r| after.is_none_or(|a| r.id.as_str() > a))
            .take(size + 1)
            .cloned()
            .collect();
        let more = records.len() > size;
        records.truncate(size);
        LoadPage {
            next: if more {
                records.last().map(|r| r.id.clone())
            } else {
                None
            },
            cursor: Some(self.feed.len().to_string()),
            records,
        }
    }
}

fn refusal(status: u16, code: ErrorCode, current: Option<Record>) -> Reply {
    Reply::Refused(refused(status, code, current))
}

fn refused(status: u16, code: ErrorCode, current: Option<Record>) -> Refusal {
    Refusal {
        status: Some(status),
        code,
        transient: false,
        retry_after_ms: None,
        message: format!("{status}"),
        current: current.map(Ok),
        details: None,
    }
}
