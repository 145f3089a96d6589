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

#[derive(Deserialize)]
struct FeedPage {
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
}

/// The leader's `EventSource` on `/api/events`, used as a doorbell: what
/// it says goes to the engine as [`StreamSignal`]s, and each `change` makes
/// the engine read the changes feed, which stays the one source of what
/// changed (so nothing in an event needs trusting). Closed when dropped.
pub(super) struct EventFeed {
    source: web_sys::EventSource,
    _listeners: [EventListener; 4],
}

impl EventFeed {
    /// Opens `url`, telling `signal` what the stream says.
    fn open(url: &str, signal: impl Fn(StreamSignal) + 'static) -> Option<Self> {
        let signal = Rc::new(signal);
        let source = web_sys::EventSource::new(url).ok()?;
        let on = |kind: &'static str, what: StreamSignal| {
            let signal = Rc::clone(&signal);
            EventListener::new(&source, kind, move |_| signal(what))
        };
        let listeners = (|| {
            Ok::<_, Error>([
                on("open", StreamSignal::Opened)?,
                on("ready", StreamSignal::Ready)?,
                on("change", StreamSignal::Change)?,
                on("error", StreamSignal::Error)?,
            ])
        })();
        let Ok(listeners) = listeners else {
            source.close();
            return None;
        };
        OPEN_STREAMS.with(|n| n.set(n.get().saturating_add(1)));
        Some(Self {
            source,
            _listeners: listeners,
        })
    }
}

impl Drop for EventFeed {
    fn drop(&mut self) {
        self.source.close();
        OPEN_STREAMS.with(|n| n.set(n.get().saturating_sub(1)));
    }
}

impl Client {
    /// Opens `/api/events` from `since`. `EventSource` cannot send
    /// headers, so the token goes in the query, as docs/backend/protocol.md
    /// allows. Where it cannot be opened (no `EventSource`, this page's
    /// streams all taken), the engine hears an error and polls.
    pub(super) fn open_stream(&self, since: &str) {
        self.inner.events.borrow_mut().take();
        let url = format!(
            "{}/events?since={}&token={}",
            self.inner.config.base_url,
            encode(since),
            encode(&self.token())
        );
        let weak = self.weak();
        let signal = move |signal: StreamSignal| {
            if let Some(client) = Client::from_weak(&weak) {
                client.handle(Event::Stream(signal));
            }
        };
        let opened = if OPEN_STREAMS.with(Cell::get) < STREAMS_PER_PAGE {
            EventFeed::open(&url, signal)
        } else {
            None
        };
        match opened {
            Some(feed) => *self.inner.events.borrow_mut() = Some(feed),
            None => {
                let this = self.clone();
                spawn_local(async move { this.handle(Event::Stream(StreamSignal::Error)) });
            }
        }
    }

    /// Reads one page of the changes feed from `since` and hands it to the
    /// engine.
    pub(super) async fn read_feed_page(&self, since: &str) {
        let path = format!("/changes?since={}&limit=500", encode(since));
        let result = match self.request(Method::Get, &path) {
            Ok(req) => send(&req).await,
            Err(e) => Err(e),
        };
        if self.inner.state.borrow().engine.is_closed() {
            return;
        }
        let page = result.and_then(|resp| from_server::<FeedPage>(resp.body));
        let page = match page {
            Ok(page) => Ok(page.into_engine()),
            Err(err) => Err(effects::refusal_of(&err)),
        };
        self.handle(Event::FeedRead(page));
    }

    /// Loads again every collection the engine names (the feed's cursor
    /// expired).
    pub(super) async fn reload(&self, collections: Vec<String>) {
        for collection in collections {
            let _ = self.load(&collection, None).await;
        }
    }
}

impl FeedPage {
    /// The page as the engine takes it; entries of an unknown kind, or a
    /// put without its record, are skipped.
    fn into_engine(self) -> EnginePage {
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
