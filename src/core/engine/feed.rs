//! Other people's changes: the leader follows the changes feed from the
//! stored cursor, rung by `/api/events` while that stream works and polled
//! while it does not, and lays what changed under this tab's staged
//! changes, in IndexedDB (with the cursor, in one write) and in the other
//! tabs.
//!
//! ```text
//!  FeedPollDue (every 2 s) ─► leading, reachable, a cursor?
//!      no stream, or one that failed 30 s ago ─► OpenStream
//!      stream not heard from, or 30 s since the last read ─► ReadFeed
//!  Stream(Change) ─► ReadFeed (or once more after the read under way)
//!  FeedRead(page) ─► records + cursor in one Write ─► more? ReadFeed
//!  FeedRead(410) ─► cursor forgotten ─► Reload every loaded collection
//! ```

use std::collections::BTreeSet;

use super::answer::reach_of;
use super::{ClientEngine, Effect, Origin, Refusal, StoreOp};
use crate::core::record::{Record, RecordKey};
use crate::core::staged::RemoteChange;

/// How often the leader asks the changes feed for other people's changes
/// while `/api/events` is not connected.
pub const FEED_POLL_MS: u64 = 2_000;

/// While `/api/events` is connected, the feed is still read this often: a
/// safety net for an event lost on the way. A stream that failed before it
/// worked is tried again after as long.
pub const SAFETY_READ_MS: u64 = 30_000;

/// Pages read one after another in one read of the feed; the rest waits
/// for the next ring.
pub const PAGES_PER_READ: u32 = 20;

/// One page of `GET /api/changes`, as the runner parsed it.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedPage {
    /// The changes, oldest first.
    pub changes: Vec<FeedChange>,
    /// Where the next read goes on from.
    pub cursor: String,
    /// More changes wait after this page.
    pub more: bool,
}

/// One entry of the changes feed.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedChange {
    /// A record was created or changed: the record as the server has it.
    Put {
        /// Its collection.
        collection: String,
        /// The record.
        record: Record,
    },
    /// A record was deleted at this version.
    Delete {
        /// Which record.
        key: RecordKey,
        /// The version of the delete.
        version: u64,
    },
}

/// What `/api/events` said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamSignal {
    /// The stream (re)opened: nothing heard through it yet.
    Opened,
    /// The server's `ready` event: the stream works.
    Ready,
    /// A `change` event: something changed, read the feed.
    Change,
    /// The stream failed or dropped (or could not be opened at all).
    Error,
}

/// What one read of the feed pulled (a `pull` line of the sync log).
#[derive(Debug, Clone, PartialEq)]
pub struct PullReport {
    /// When it began, ms.
    pub since: u64,
    /// How long it took, ms.
    pub duration_ms: u64,
    /// Changes applied.
    pub pulled: u64,
    /// What stopped it early, if anything.
    pub error: Option<String>,
}

/// The stream as the engine knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    /// Not open; when it was last tried.
    Closed { tried_at: Option<u64> },
    /// Open since `opened_at`; `heard` once something came through it
    /// since it (re)opened (a proxy that buffers answers 200 and holds
    /// every event back, so an open stream alone proves nothing).
    Open { opened_at: u64, heard: bool },
}

/// A read of the feed under way.
#[derive(Debug, Clone)]
struct Read {
    since: u64,
    pages: u32,
    pulled: u64,
}

/// The follower's state.
#[derive(Debug, Clone)]
pub(super) struct FeedFollower {
    /// Where the feed was read up to; `None` until a load gave one.
    cursor: Option<String>,
    /// Collections loaded here: read again whole when the cursor expired.
    loaded: BTreeSet<String>,
    /// Collections being loaded again after a 410, and when that was
    /// asked (a load that failed is asked again 30 s later).
    reloading: BTreeSet<String>,
    reload_asked_at: u64,
    reading: Option<Read>,
    /// Rung while a read was under way: read once more after it.
    again: bool,
    stream: Stream,
    /// When the feed was last read to its end.
    last_read_at: u64,
    /// When the poll timer fires next; `None` before the storage was read.
    next_poll: Option<u64>,
}

impl Default for FeedFollower {
    fn default() -> Self {
        Self {
            cursor: None,
            loaded: BTreeSet::new(),
            reloading: BTreeSet::new(),
            reload_asked_at: 0,
            reading: None,
            again: false,
            stream: Stream::Closed { tried_at: None },
            last_read_at: 0,
            next_poll: None,
        }
    }
}

impl FeedFollower {
    /// The cursor the feed is read from.
    pub(super) fn cursor(&self) -> Option<&str> {
        self.cursor.as_deref()
    }

    /// When the poll timer should fire.
    pub(super) fn next_poll(&self) -> Option<u64> {
        self.next_poll
    }

    /// Whether this tab holds `collection` whole (a load of it ended) and
    /// it waits for no reading again after a 410.
    pub(super) fn is_loaded(&self, collection: &str) -> bool {
        self.loaded.contains(collection) && !self.reloading.contains(collection)
    }

    /// Whether a read is under way.
    pub(super) fn is_reading(&self) -> bool {
        self.reading.is_some()
    }

    /// Whether the stream is open and heard from.
    pub(super) fn is_connected(&self) -> bool {
        matches!(self.stream, Stream::Open { heard: true, .. })
    }
}

impl ClientEngine {
    /// The storage was read: the kept cursor (a reload catches up from it
    /// rather than reading every collection again). The poll starts.
    pub(super) fn storage_opened(&mut self, cursor: Option<String>, now: u64) {
        if self.feed.cursor.is_none() {
            self.feed.cursor = cursor;
        }
        self.feed.next_poll = Some(now + FEED_POLL_MS);
    }

    /// A collection was loaded: it is read again whole if the cursor
    /// expires, and the feed goes on from the load's cursor unless one is
    /// kept already (which is older, so nothing between them is missed).
    pub(super) fn collection_loaded(
        &mut self,
        collection: String,
        cursor: Option<String>,
        now: u64,
        ops: &mut Vec<StoreOp>,
        out: &mut Vec<Effect>,
    ) {
        let mut tell = self.feed.reloading.remove(&collection);
        self.feed.loaded.insert(collection.clone());
        if self.feed.cursor.is_none() {
            if let Some(cursor) = cursor.filter(|c| !c.is_empty()) {
                self.feed.cursor = Some(cursor.clone());
                // In the caller's write, before what follows in `out`.
                ops.push(StoreOp::PutCursor(cursor));
                // The feed goes on from the load's cursor: what changed
                // before it reaches the other tabs only through the load
                // (found by the simulation: a tab opened after a 410 whose
                // load failed, led on from its own load, and the old
                // leader and its other tabs kept older records for good).
                tell = true;
            }
        }
        if tell {
            // The other tabs read what this load stored.
            out.push(Effect::TellReloaded { collection });
        }
        if self.feed.next_poll.is_none() {
            self.feed.next_poll = Some(now + FEED_POLL_MS);
        }
    }

    /// Whether this tab should follow the feed now.
    pub(super) fn follows_feed(&self) -> bool {
        self.leader && self.can_talk() && !self.expired && self.feed.cursor.is_some()
    }

    /// The poll timer fired.
    pub(super) fn feed_poll_due(&mut self, now: u64, out: &mut Vec<Effect>) {
        self.feed.next_poll = Some(now + FEED_POLL_MS);
        let reload_again = self.leader
            && self.can_talk()
            && !self.expired
            && self.feed.cursor.is_none()
            && !self.feed.reloading.is_empty()
            && now.saturating_sub(self.feed.reload_asked_at) >= SAFETY_READ_MS;
        if reload_again {
            self.feed.reload_asked_at = now;
            out.push(Effect::Reload {
                collections: self.feed.reloading.iter().cloned().collect(),
            });
        }
        if !self.follows_feed() {
            if matches!(self.feed.stream, Stream::Open { .. }) {
                self.feed.stream = Stream::Closed { tried_at: None };
                out.push(Effect::CloseStream);
            }
            return;
        }
        let retry_stream = match self.feed.stream {
            Stream::Closed { tried_at: None } => true,
            Stream::Closed {
                tried_at: Some(at), ..
            } => now.saturating_sub(at) >= SAFETY_READ_MS,
            Stream::Open { .. } => false,
        };
        if retry_stream {
            if let Some(since) = self.feed.cursor.clone() {
                self.feed.stream = Stream::Open {
                    opened_at: now,
                    heard: false,
                };
                out.push(Effect::OpenStream { since });
            }
        }
        if !self.feed.is_connected() || now.saturating_sub(self.feed.last_read_at) >= SAFETY_READ_MS
        {
            self.ring_feed(now, out);
        }
    }

    /// What `/api/events` said.
    pub(super) fn stream_signal(
        &mut self,
        signal: crate::core::engine::StreamSignal,
        now: u64,
        out: &mut Vec<Effect>,
    ) {
        use crate::core::engine::StreamSignal;
        let Stream::Open { opened_at, heard } = self.feed.stream else {
            // A signal of a stream already closed here.
            return;
        };
        match signal {
            StreamSignal::Opened => {
                self.feed.stream = Stream::Open {
                    opened_at,
                    heard: false,
                }
            }
            StreamSignal::Ready => {
                self.feed.stream = Stream::Open {
                    opened_at,
                    heard: true,
                }
            }
            StreamSignal::Change => {
                self.feed.stream = Stream::Open {
                    opened_at,
                    heard: true,
                };
                self.counters.feed_events += 1;
                if self.follows_feed() {
                    self.ring_feed(now, out);
                }
            }
            StreamSignal::Error if heard => {
                // A stream that worked is left to the browser's reconnect
                // (which resumes after the last event id); a read now tells
                // whether the session still holds, and catches up. While
                // the server cannot be reached, the probe says when.
                self.feed.stream = Stream::Open {
                    opened_at,
                    heard: false,
                };
                if self.follows_feed() {
                    self.ring_feed(now, out);
                }
            }
            StreamSignal::Error => {
                // Failed before anything came through it (a proxy that cuts
                // it, a backend without the route): closed, and tried again
                // in 30 s rather than at every reconnect of the browser.
                self.feed.stream = Stream::Closed {
                    tried_at: Some(opened_at),
                };
                out.push(Effect::CloseStream);
            }
        }
    }

    /// Reads the feed now, or once more after the read under way.
    pub(super) fn ring_feed(&mut self, now: u64, out: &mut Vec<Effect>) {
        if self.local.holds_feed() {
            return;
        }
        if self.feed.reading.is_some() {
            self.feed.again = true;
            return;
        }
        let Some(since) = self.feed.cursor.clone() else {
            return;
        };
        self.feed.reading = Some(Read {
            since: now,
            pages: 0,
            pulled: 0,
        });
        self.counters.requests += 1;
        out.push(Effect::ReadFeed { since });
    }

    /// Reads the feed if this tab follows it (reachable again, leading).
    pub(super) fn ring_feed_if_following(&mut self, now: u64, out: &mut Vec<Effect>) {
        if self.follows_feed() {
            self.ring_feed(now, out);
        }
    }

    /// A page of the feed came, or the read failed.
    pub(super) fn feed_read(
        &mut self,
        result: Result<FeedPage, Refusal>,
        now: u64,
        out: &mut Vec<Effect>,
    ) {
        if self.feed.reading.is_none() {
            return;
        }
        let page = match result {
            Ok(page) => page,
            Err(refusal) => {
                if let Some(answer) = reach_of(&refusal) {
                    self.request_ended(answer, now, out);
                }
                if refusal.status == Some(401) {
                    self.session_ended(out);
                    self.end_read(now, Some(refusal.message), out);
                } else if refusal.status == Some(410) {
                    // The server forgot our place: read everything again.
                    self.feed.cursor = None;
                    out.push(Effect::Write {
                        id: 0,
                        ops: vec![StoreOp::DeleteCursor],
                        persisted: None,
                    });
                    let collections: Vec<String> = self.feed.loaded.iter().cloned().collect();
                    if !collections.is_empty() {
                        self.feed.reloading = self.feed.loaded.clone();
                        self.feed.reload_asked_at = now;
                        out.push(Effect::Reload { collections });
                    }
                    self.end_read(now, None, out);
                } else {
                    self.end_read(now, Some(refusal.message), out);
                }
                return;
            }
        };
        self.request_ended(crate::core::reachability::Answer::Answered, now, out);
        let mut ops = Vec::new();
        let mut applied = 0u64;
        // Every record of the page is told to the other tabs, not only
        // those new here: this tab may have learned one another way (a
        // 409's current record) that its other tabs never heard of (found
        // by the simulation: a tab kept an old version for good).
        let mut told: Vec<(RecordKey, u64)> = Vec::new();
        for change in page.changes {
            let (key, version, changed) = match change {
                FeedChange::Put { collection, record } => {
                    let key = RecordKey::new(&collection, &record.id);
                    let version = record.version;
                    let changed = self
                        .records
                        .apply_remote(&collection, RemoteChange::Put(record.clone()));
                    ops.push(StoreOp::PutRecord { collection, record });
                    (key, version, changed)
                }
                FeedChange::Delete { key, version } => {
                    let changed = self.records.apply_remote(
                        &key.collection,
                        RemoteChange::Delete {
                            id: key.id.clone(),
                            version,
                        },
                    );
                    ops.push(StoreOp::DeleteRecord(key.clone()));
                    (key, version, changed)
                }
            };
            if changed {
                applied += 1;
                out.push(Effect::RecordChanged {
                    key: key.clone(),
                    origin: Origin::Server,
                });
            }
            match told.iter_mut().find(|(k, _)| *k == key) {
                Some(kept) => kept.1 = kept.1.max(version),
                None => told.push((key, version)),
            }
        }
        if applied > 0 {
            out.push(Effect::Changed);
        }
        // In the same transaction as the records it covers: a reload goes
        // on from here, never past a change it did not store.
        if !ops.is_empty() || self.feed.cursor.as_deref() != Some(page.cursor.as_str()) {
            ops.push(StoreOp::PutCursor(page.cursor.clone()));
            out.push(Effect::Write {
                id: 0,
                ops,
                persisted: None,
            });
        }
        self.feed.cursor = Some(page.cursor.clone());
        for (key, version) in told {
            out.push(Effect::TellCommitted { key, version });
        }
        let Some(read) = self.feed.reading.as_mut() else {
            return;
        };
        read.pages += 1;
        read.pulled += applied;
        let pages = read.pages;
        if page.more && pages < PAGES_PER_READ && !self.expired {
            self.counters.requests += 1;
            out.push(Effect::ReadFeed { since: page.cursor });
        } else {
            self.feed.last_read_at = now;
            if !page.more {
                self.feed_read_to_end(out);
            }
            self.end_read(now, None, out);
        }
    }

    /// A read ended: one line of the sync log if it pulled anything or
    /// failed, and another read if one was asked for meanwhile.
    fn end_read(&mut self, now: u64, error: Option<String>, out: &mut Vec<Effect>) {
        let Some(read) = self.feed.reading.take() else {
            return;
        };
        if read.pulled > 0 || error.is_some() {
            out.push(Effect::Pulled(PullReport {
                since: read.since,
                duration_ms: now.saturating_sub(read.since),
                pulled: read.pulled,
                error,
            }));
        }
        if std::mem::take(&mut self.feed.again) && self.follows_feed() {
            self.ring_feed(now, out);
        }
    }

    /// The session or the tab's leadership ended: the stream goes.
    pub(super) fn stop_following(&mut self, out: &mut Vec<Effect>) {
        if matches!(self.feed.stream, Stream::Open { .. }) {
            self.feed.stream = Stream::Closed { tried_at: None };
            out.push(Effect::CloseStream);
        }
    }
}
