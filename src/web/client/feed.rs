//! Other people's changes: the leader follows the changes feed, rung by
//! `/api/events` when that stream works and polled when it does not, and
//! lays what changed under this tab's staged changes and into IndexedDB.

use super::*;

/// One entry of `GET /api/changes` (docs/backend/protocol.md, "Other people's changes").
#[derive(Deserialize)]
struct FeedChange {
    collection: String,
    id: String,
    #[serde(default)]
    version: u64,
    op: String,
    #[serde(default)]
    record: Option<Record>,
}

#[derive(Deserialize)]
struct FeedPage {
    changes: Vec<FeedChange>,
    cursor: String,
    #[serde(default)]
    more: bool,
}

/// How often the leader asks the changes feed for other people's changes
/// while `/api/events` is not connected.
const FEED_POLL_MS: u32 = 2_000;

/// While `/api/events` is connected, the feed is still read every this
/// many poll ticks (30 s): a safety net for an event lost on the way.
const POLLS_PER_SAFETY_READ: u32 = 15;

/// At most this many `/api/events` streams per page. Over HTTP/1.1 a
/// browser keeps six connections per server, for all its tabs together,
/// and a stream holds one for good: a page with clients of many users (each
/// leading for its user) would starve its own requests. Clients beyond the
/// first poll.
const STREAMS_PER_PAGE: u32 = 1;

thread_local! {
    static OPEN_STREAMS: Cell<u32> = const { Cell::new(0) };
}

/// The leader's `EventSource` on `/api/events`, used as a doorbell: each
/// `change` event starts a read of the changes feed, which stays the one
/// source of what changed (so nothing in an event needs trusting). Closed
/// when dropped.
///
/// A stream counts as connected only once something came through it since
/// it (re)opened: the reference server sends a `ready` event at once, other
/// backends their first `change`. A proxy that buffers the body answers
/// `200` and then holds every event back; counting `open` alone, the
/// leader would wait for the 30 s safety read to see any change.
pub(super) struct EventFeed {
    source: web_sys::EventSource,
    heard: Rc<Cell<bool>>,
    _listeners: [EventListener; 4],
}

impl EventFeed {
    /// Opens `url`, calling `ring(true)` at each `change` event and
    /// `ring(false)` when a stream that worked drops (a read of the feed
    /// then tells whether the session still holds, and catches up).
    fn open(url: &str, ring: impl Fn(bool) + 'static) -> Option<Self> {
        let ring = Rc::new(ring);
        let ring_on_drop = Rc::clone(&ring);
        let source = web_sys::EventSource::new(url).ok()?;
        let heard = Rc::new(Cell::new(false));
        // Each listener gets the `heard` flag.
        type OnEvent = Box<dyn Fn(&Cell<bool>)>;
        let on = |kind: &'static str, f: OnEvent| {
            let heard = Rc::clone(&heard);
            EventListener::new(&source, kind, move |_| f(&heard))
        };
        let failed = source.clone();
        let listeners = (|| {
            Ok::<_, Error>([
                on("open", Box::new(|heard| heard.set(false)))?,
                on("ready", Box::new(|heard| heard.set(true)))?,
                on(
                    "change",
                    Box::new(move |heard| {
                        heard.set(true);
                        ring(true);
                    }),
                )?,
                // A stream that fails before anything came through it (a
                // proxy that cuts it, a backend without the route) is
                // closed, so it is tried again in 30 s rather than
                // reconnected by the browser every few seconds; one that
                // worked is left to the browser's reconnect, which resumes
                // after the last event id.
                on(
                    "error",
                    Box::new(move |heard| {
                        if heard.get() {
                            ring_on_drop(false);
                        } else {
                            failed.close();
                        }
                    }),
                )?,
            ])
        })();
        let Ok(listeners) = listeners else {
            source.close();
            return None;
        };
        OPEN_STREAMS.with(|n| n.set(n.get().saturating_add(1)));
        Some(Self {
            source,
            heard,
            _listeners: listeners,
        })
    }

    fn is_connected(&self) -> bool {
        self.source.ready_state() == web_sys::EventSource::OPEN && self.heard.get()
    }

    fn is_closed(&self) -> bool {
        self.source.ready_state() == web_sys::EventSource::CLOSED
    }
}

impl Drop for EventFeed {
    fn drop(&mut self) {
        self.source.close();
        OPEN_STREAMS.with(|n| n.set(n.get().saturating_sub(1)));
    }
}

impl Client {
    /// Follows other people's changes while this tab leads and is online,
    /// so they reach every tab without a reload: the changes feed is read
    /// whenever `/api/events` says something changed, and every 2 s while
    /// that stream is not connected (a backend or proxy without it, a
    /// reconnect), every 30 s while it is.
    pub(super) fn follow_feed(&self) {
        let weak = self.weak();
        let interval = gloo_timers::callback::Interval::new(FEED_POLL_MS, move || {
            let Some(client) = Client::from_weak(&weak) else {
                return;
            };
            let inner = &client.inner;
            let wanted = inner.leader.get()
                && client.can_talk()
                && !inner.state.borrow().engine.is_closed()
                && !inner.state.borrow().engine.is_expired()
                && inner.cursor.borrow().is_some();
            if !wanted {
                inner.events.borrow_mut().take();
                return;
            }
            let tick = inner.feed_ticks.get().wrapping_add(1);
            inner.feed_ticks.set(tick);
            client.listen_for_events(tick);
            let connected = inner
                .events
                .borrow()
                .as_ref()
                .is_some_and(EventFeed::is_connected);
            if !connected || tick % POLLS_PER_SAFETY_READ == 0 {
                client.ring_feed();
            }
        });
        *self.inner.feed_timer.borrow_mut() = Some(interval);
    }

    /// Opens `/api/events` from the stored cursor unless it is open (or
    /// reconnecting by itself). `EventSource` cannot send headers, so the
    /// token goes in the query, as docs/backend/protocol.md allows. Where it cannot be
    /// opened (no `EventSource`, a backend without the route: the browser
    /// closes it), polling goes on, and the stream is tried again every
    /// 30 s, not at every tick.
    fn listen_for_events(&self, tick: u32) {
        let mut events = self.inner.events.borrow_mut();
        if let Some(open) = events.as_ref() {
            let tried_lately =
                tick.wrapping_sub(self.inner.events_opened_at.get()) < POLLS_PER_SAFETY_READ;
            if !open.is_closed() || tried_lately {
                return;
            }
        }
        events.take();
        if OPEN_STREAMS.with(Cell::get) >= STREAMS_PER_PAGE {
            return;
        }
        let Some(cursor) = self.inner.cursor.borrow().clone() else {
            return;
        };
        let url = format!(
            "{}/events?since={}&token={}",
            self.inner.config.base_url,
            encode(&cursor),
            encode(&self.token())
        );
        let weak = self.weak();
        let ring = move |change: bool| {
            if let Some(client) = Client::from_weak(&weak) {
                if change {
                    client.inner.state.borrow_mut().engine.count_feed_event();
                    client.ring_feed();
                } else if client.can_talk() {
                    // Dropped: while the server cannot be reached, the probe
                    // (not every reconnect of the browser) says when to read.
                    client.ring_feed();
                }
            }
        };
        if let Some(feed) = EventFeed::open(&url, ring) {
            self.inner.events_opened_at.set(tick);
            *events = Some(feed);
        }
    }

    /// Reads the changes feed now, or once more after the read under way.
    fn ring_feed(&self) {
        if self.inner.feed_busy.replace(true) {
            self.inner.feed_again.set(true);
            return;
        }
        let client = self.clone();
        spawn_local(async move {
            loop {
                client.read_feed().await;
                let again = client.inner.feed_again.replace(false);
                if !again
                    || client.inner.state.borrow().engine.is_closed()
                    || client.inner.state.borrow().engine.is_expired()
                {
                    break;
                }
            }
            client.inner.feed_busy.set(false);
        });
    }

    /// Reads the changes feed from the stored cursor to its end and shows
    /// what changed.
    async fn read_feed(&self) {
        let since = now_ms();
        let (pulled, error) = self.read_feed_pages().await;
        if pulled > 0 || error.is_some() {
            self.log_exchange(SyncLogEntry {
                at: now_ms() as f64,
                direction: "pull".into(),
                kind: "feed".into(),
                pushed: 0,
                pulled,
                merged: 0,
                conflicts: 0,
                failed: 0,
                duration_ms: now_ms().saturating_sub(since) as f64,
                error,
            });
        }
    }

    /// The pages of [`Client::read_feed`]: how many changes were applied,
    /// and what stopped it early.
    async fn read_feed_pages(&self) -> (u64, Option<String>) {
        let mut pulled = 0u64;
        for _ in 0..20 {
            let Some(cursor) = self.inner.cursor.borrow().clone() else {
                return (pulled, None);
            };
            let path = format!("/changes?since={}&limit=500", encode(&cursor));
            let page: Result<FeedPage, Error> = match self.read(&path).await {
                Ok(body) => from_server(body),
                Err(e) => Err(e),
            };
            let page = match page {
                Ok(p) => p,
                Err(e) if e.status() == Some(410) => {
                    // The server forgot our place: read everything again.
                    *self.inner.cursor.borrow_mut() = None;
                    let mut forget = DbBatch::new();
                    forget.delete(Store::Meta.name(), CURSOR_KEY);
                    self.persist(forget).await;
                    let loaded: Vec<String> = self.inner.loaded.borrow().iter().cloned().collect();
                    for collection in loaded {
                        let _ = self.load(&collection, None).await;
                    }
                    return (pulled, None);
                }
                Err(e) => return (pulled, Some(e.to_string())),
            };
            let mut batch = DbBatch::new();
            let mut changed = Vec::new();
            {
                let mut state = self.inner.state.borrow_mut();
                for change in page.changes {
                    let key = RecordKey::new(&change.collection, &change.id);
                    let applied = match (change.op.as_str(), change.record) {
                        ("delete", _) => {
                            batch.delete(
                                Store::Records.name(),
                                record_key(&key.collection, &key.id),
                            );
                            state.engine.records_mut().apply_remote(
                                &key.collection,
                                RemoteChange::Delete {
                                    id: key.id.clone(),
                                    version: change.version,
                                },
                            )
                        }
                        (_, Some(record)) => {
                            let _ = batch.put_record(
                                Store::Records.name(),
                                record_key(&key.collection, &key.id),
                                &record,
                            );
                            state
                                .engine
                                .records_mut()
                                .apply_remote(&key.collection, RemoteChange::Put(record))
                        }
                        _ => false,
                    };
                    if applied {
                        changed.push((key, change.version));
                    }
                }
            }
            // In the same transaction as the records it covers: a reload
            // goes on from here, never past a change it did not store.
            let _ = batch.put(Store::Meta.name(), CURSOR_KEY, &page.cursor);
            *self.inner.cursor.borrow_mut() = Some(page.cursor);
            self.persist(batch).await;
            pulled += changed.len() as u64;
            if !changed.is_empty() {
                self.changed();
                for (key, version) in changed {
                    self.emit_record(&key, "server");
                    self.tell_tabs_record(&key, version);
                }
            }
            if !page.more {
                return (pulled, None);
            }
        }
        (pulled, None)
    }

    pub(super) fn ring_feed_if_leading(&self) {
        let inner = &self.inner;
        if inner.leader.get() && inner.cursor.borrow().is_some() && self.can_talk() {
            self.ring_feed();
        }
    }
}
