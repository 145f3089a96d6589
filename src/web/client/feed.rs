//! Other people's changes, as the engine asks for them: one page of the
//! changes feed at a time, and `/api/events` as a doorbell. When to read,
//! when to open or close the stream and what a page changes are the
//! engine's (`core/engine/feed.rs`).

use super::*;
use crate::core::engine::{FeedChange as EngineChange, FeedPage as EnginePage, StreamSignal};
use crate::web::http::send;

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

/// A page of `GET /api/changes`.
#[derive(Deserialize)]
pub(super) struct FeedPage {
    changes: Vec<FeedChange>,
    cursor: String,
    #[serde(default)]
    more: bool,
}

/// At most this many `/api/events` streams per page. Over HTTP/1.1 a
/// browser keeps six connections per server, for all its tabs together,
/// and a stream holds one for good: a page with clients of many users (each
/// leading for its user) would starve its own requests. Clients beyond the
/// first poll.
const STREAMS_PER_PAGE: u32 = 1;

thread_local! {
    static OPEN_STREAMS: Cell<u32> = const { Cell::new(0) };
    /// Numbers each connection, so a ticket that arrives for a connection
    /// the engine has closed (or replaced) since opens nothing.
    static NEXT_CONNECTION: Cell<u64> = const { Cell::new(0) };
}

/// A stream ticket as `POST /api/events/ticket` answers it.
#[derive(Deserialize)]
struct StreamTicket {
    ticket: String,
}

/// The leader's `/api/events`, used as a doorbell: what it says goes to the
/// engine as [`StreamSignal`]s, and each `change` makes the engine read the
/// changes feed, which stays the one source of what changed (so nothing in
/// an event needs trusting). From the engine's `OpenStream` until its
/// `CloseStream` (or drop) it is one stream, however many connections it
/// takes: each connection opens with a fresh single-use ticket, since an
/// `EventSource` cannot send the token in a header and a token in a URL
/// would be kept by every proxy and access log on the way.
pub(super) struct EventFeed {
    connection: u64,
    source: Option<Connection>,
}

/// One `EventSource` and its listeners; closed when dropped.
struct Connection {
    source: web_sys::EventSource,
    _listeners: [EventListener; 6],
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.source.close();
    }
}

impl EventFeed {
    fn new() -> Self {
        OPEN_STREAMS.with(|n| n.set(n.get().saturating_add(1)));
        Self {
            connection: NEXT_CONNECTION.with(|n| {
                n.set(n.get().wrapping_add(1));
                n.get()
            }),
            source: None,
        }
    }
}

impl Drop for EventFeed {
    fn drop(&mut self) {
        OPEN_STREAMS.with(|n| n.set(n.get().saturating_sub(1)));
    }
}

impl Client {
    /// Opens `/api/events` from `since`, with a ticket asked for first.
    /// Where it cannot be opened (no `EventSource`, this page's streams all
    /// taken, no ticket), the engine hears an error and polls.
    pub(super) fn open_stream(&self, since: &str) {
        self.inner.events.borrow_mut().take();
        if OPEN_STREAMS.with(Cell::get) >= STREAMS_PER_PAGE {
            let this = self.clone();
            spawn_local(async move { this.handle(Event::Stream(StreamSignal::Error)) });
            return;
        }
        let feed = EventFeed::new();
        let connection = feed.connection;
        *self.inner.events.borrow_mut() = Some(feed);
        let this = self.clone();
        let since = since.to_owned();
        spawn_local(async move { this.connect_stream(connection, since).await });
    }

    /// Whether `connection` is still the stream the engine wants.
    fn stream_wanted(&self, connection: u64) -> bool {
        self.inner
            .events
            .borrow()
            .as_ref()
            .is_some_and(|feed| feed.connection == connection)
    }

    /// Asks for a ticket and opens connection `connection` of the stream
    /// from `since`, unless the engine closed the stream meanwhile.
    async fn connect_stream(&self, connection: u64, since: String) {
        let ticket = match self.request(Method::Post, "/events/ticket") {
            Ok(req) => send(&req)
                .await
                .and_then(|resp| from_server::<StreamTicket>(resp.body)),
            Err(e) => Err(e),
        };
        if !self.stream_wanted(connection) {
            return;
        }
        let source = ticket.and_then(|ticket| {
            let url = format!(
                "{}/events?since={}&ticket={}",
                self.inner.config.base_url,
                encode(&since),
                encode(&ticket.ticket)
            );
            self.listen(connection, &url, since)
        });
        match source {
            Ok(source) => {
                if let Some(feed) = self.inner.events.borrow_mut().as_mut() {
                    feed.source = Some(source);
                }
            }
            Err(_) => self.handle(Event::Stream(StreamSignal::Error)),
        }
    }

    /// An `EventSource` on `url`, telling the engine what it says. Its
    /// ticket opens one connection: where the browser would reconnect by
    /// itself after a drop (with the used ticket, so in vain), the
    /// connection is replaced by a new one with a new ticket, resuming
    /// after the last event heard, as the browser's reconnect would.
    fn listen(&self, connection: u64, url: &str, since: String) -> Result<Connection, Error> {
        let source = web_sys::EventSource::new(url)
            .map_err(|e| Error::Invalid(crate::web::js::describe(&e)))?;
        let resume = Rc::new(RefCell::new(since));
        let weak = self.weak();
        let on = |kind: &'static str, what: StreamSignal| {
            let weak = weak.clone();
            let resume = Rc::clone(&resume);
            let target = source.clone();
            EventListener::new(&source, kind, move |event| {
                let Some(client) = Client::from_weak(&weak) else {
                    return;
                };
                if !client.stream_wanted(connection) {
                    return;
                }
                if let Some(id) = event
                    .dyn_ref::<web_sys::MessageEvent>()
                    .map(web_sys::MessageEvent::last_event_id)
                    .filter(|id| !id.is_empty())
                {
                    *resume.borrow_mut() = id;
                }
                client.handle(Event::Stream(what));
                let reconnecting = what == StreamSignal::Error
                    && target.ready_state() == web_sys::EventSource::CONNECTING;
                if reconnecting && client.stream_wanted(connection) {
                    target.close();
                    let since = resume.borrow().clone();
                    let this = client.clone();
                    spawn_local(async move { this.connect_stream(connection, since).await });
                }
            })
        };
        let listeners = [
            on("open", StreamSignal::Opened)?,
            on("ready", StreamSignal::Ready)?,
            on("change", StreamSignal::Change)?,
            on("error", StreamSignal::Error)?,
            self.presence_events(&source, connection, "presence")?,
            self.presence_events(&source, connection, "ready")?,
        ];
        Ok(Connection {
            source,
            _listeners: listeners,
        })
    }

    /// Passes the stream's `presence` events (their data) and its `ready`
    /// (`undefined`: connected, ask again) on to presence; they carry no
    /// cursor and are none of the engine's business.
    fn presence_events(
        &self,
        source: &web_sys::EventSource,
        connection: u64,
        kind: &'static str,
    ) -> Result<EventListener, Error> {
        let weak = self.weak();
        EventListener::new(source, kind, move |event| {
            let Some(client) = Client::from_weak(&weak) else {
                return;
            };
            if !client.stream_wanted(connection) {
                return;
            }
            let data = match kind {
                "ready" => Some(JsValue::UNDEFINED),
                _ => event
                    .dyn_ref::<web_sys::MessageEvent>()
                    .map(web_sys::MessageEvent::data),
            };
            let listener = client.inner.presence_listener.borrow().clone();
            if let (Some(listener), Some(data)) = (listener, data) {
                listener(data);
            }
        })
    }

    /// Loads again every collection the engine names (the feed's cursor
    /// expired).
    pub(super) async fn reload(&self, collections: Vec<String>) {
        // No collection stored before the cursor expired can be caught up
        // any more, loaded in this tab or not.
        self.forget_marks().await;
        for collection in collections {
            let _ = self.load_again(&collection).await;
        }
    }
}

impl FeedPage {
    /// The page as the engine takes it; entries of an unknown kind, or a
    /// put without its record, are skipped.
    pub(super) fn into_engine(self) -> EnginePage {
        let changes = self
            .changes
            .into_iter()
            .filter_map(|change| match (change.op.as_str(), change.record) {
                ("delete", _) => Some(EngineChange::Delete {
                    key: RecordKey::new(&change.collection, &change.id),
                    version: change.version,
                }),
                (_, Some(record)) => Some(EngineChange::Put {
                    collection: change.collection,
                    record,
                }),
                _ => None,
            })
            .collect();
        EnginePage {
            changes,
            cursor: self.cursor,
            more: self.more,
        }
    }
}
