//! `CrmSync`: the client a React app holds (docs/guide/getting-started.md).

use std::future::Future;
use std::pin::Pin;

use js_sys::{Function, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use crate::core::history::HistoryOptions;
use crate::core::record::Fields;
use crate::error::Error;
use std::rc::Rc;

use crate::web::channel::EnvelopeChannel;
use crate::web::client::{check_collection, rejected, Client};
use crate::web::history::record_history;
use crate::web::idb::UserDb;
use crate::web::js::{from_app, read_from_app, to_js};
use crate::web::kept_metrics::MetricsKeeper;
use crate::web::sync::SyncRunner;

mod options;
mod start;
mod sync_jobs;

pub use options::{CrmOptions, LoginOptions, OpenOptions, RetryOptions, SyncOptions};
pub use sync_jobs::CrmSyncJobs;

use options::read_query;
use start::shut_down;

/// The crm-sync client: records staged until the server says yes, offline
/// work, tabs in step, sync progress.
///
/// ```no_run
/// # async fn demo() -> Result<(), wasm_bindgen::JsValue> {
/// // JavaScript: const crm = await CrmSync.login({ baseUrl: "/api", username, password });
/// # Ok(()) }
/// ```
#[wasm_bindgen]
pub struct CrmSync {
    pub(super) client: Client,
    sync: Rc<SyncRunner>,
    presence: Rc<crate::web::presence::PresenceRunner>,
    presence_js: JsValue,
    metrics: Rc<MetricsKeeper>,
    sync_js: JsValue,
    tabs_js: JsValue,
    _bus: Option<Rc<EnvelopeChannel>>,
    _on_leader: Closure<dyn FnMut(bool)>,
}

/// Runs `f` as a JS promise; its error becomes a `CrmError`. The future is
/// boxed here so that the adapter below exists once, not once per method.
fn promise<F>(f: F) -> Promise
where
    F: Future<Output = Result<JsValue, Error>> + 'static,
{
    settle(Box::pin(f))
}

/// `CrmSync.login` and `CrmSync.open` for Rust callers (the browser tests):
/// the exports return a promise, these a future.
impl CrmSync {
    /// As `CrmSync.login` in JavaScript.
    ///
    /// # Errors
    /// As `CrmSync.login`.
    pub async fn login(options: JsValue) -> Result<CrmSync, JsValue> {
        Self::log_in(options).await
    }

    /// As `CrmSync.open` in JavaScript.
    ///
    /// # Errors
    /// As `CrmSync.open`.
    pub async fn open(options: JsValue) -> Result<CrmSync, JsValue> {
        Self::open_with(options).await
    }
}

/// The one copy of the error adapter behind `promise`.
#[inline(never)]
fn settle(f: Pin<Box<dyn Future<Output = Result<JsValue, Error>>>>) -> Promise {
    super::spawn_promise(async move { f.await.map_err(JsValue::from) })
}

#[wasm_bindgen]
impl CrmSync {
    /// Logs in with a user name and password and returns a client.
    ///
    /// # Errors
    /// Rejects with `CrmError` `unauthorized` on bad credentials, `network`,
    /// `timeout`, `server` or `bad_response` otherwise; `unsupported` (before
    /// anything is sent) in a browser too old for the module.
    #[wasm_bindgen(js_name = login, unchecked_return_type = "Promise<CrmSync>")]
    pub fn login_promise(
        #[wasm_bindgen(unchecked_param_type = "LoginOptions")] options: JsValue,
    ) -> Promise {
        super::spawn_promise(async move { Ok(Self::log_in(options).await?.into()) })
    }

    /// Opens a client with a token the app already has. It first asks the
    /// server whose token it is (`GET /api/me`) before it touches any
    /// local data: the user's IndexedDB database and tab channel are named
    /// by that answer. Offline, a `user` the app names opens that user's
    /// data, and nothing is read from or sent to the server until it
    /// confirms the token is that user's.
    ///
    /// # Errors
    /// Rejects with `CrmError` `invalid` for an empty token or bad options;
    /// `unauthorized` for a token the server does not know, or one of
    /// another user than `user`; `network`, `timeout` or `server` when the
    /// server cannot be asked and no `user` was given; `unsupported` (before
    /// anything is sent or stored) in a browser too old for the module.
    #[wasm_bindgen(js_name = open, unchecked_return_type = "Promise<CrmSync>")]
    pub fn open_promise(
        #[wasm_bindgen(unchecked_param_type = "OpenOptions")] options: JsValue,
    ) -> Promise {
        super::spawn_promise(async move { Ok(Self::open_with(options).await?.into()) })
    }

    /// The spreadsheet sync (`start`, `state`, `subscribe`, `cancel`,
    /// `dismiss`, `history`, `schedule`); the same object on every read.
    #[wasm_bindgen(getter, unchecked_return_type = "CrmSyncJobs")]
    pub fn sync(&self) -> JsValue {
        self.sync_js.clone()
    }

    /// Who else has a record open (`enter`, `leave`, `of`); the same
    /// object on every read.
    #[wasm_bindgen(getter, unchecked_return_type = "CrmPresence")]
    pub fn presence(&self) -> JsValue {
        self.presence_js.clone()
    }

    /// This user's tabs: `withLock`, `acquire`, `isLeader`, `tabId`,
    /// `onLeaderChange`; the same object on every read.
    #[wasm_bindgen(getter, unchecked_return_type = "TabLocks")]
    pub fn tabs(&self) -> JsValue {
        self.tabs_js.clone()
    }

    /// Who is logged in.
    #[wasm_bindgen(getter)]
    pub fn user(&self) -> String {
        self.client.user()
    }

    /// The bearer token in use.
    #[wasm_bindgen(getter)]
    pub fn token(&self) -> String {
        self.client.token()
    }

    /// Local first: where IndexedDB holds the collection, answers from it at
    /// once (records marked `stale: true` until the catch-up from the changes
    /// feed is done); otherwise fetches it page by page into memory and
    /// IndexedDB. Offline it answers from IndexedDB alone.
    #[wasm_bindgen(unchecked_return_type = "Promise<CrmRecord[]>")]
    pub fn load(
        &self,
        collection: String,
        #[wasm_bindgen(unchecked_optional_param_type = "LoadOptions")] options: Option<
            js_sys::Object,
        >,
    ) -> Promise {
        let client = self.client.clone();
        let page_size = options.map(|o| crate::web::js::get(&o, "pageSize"));
        promise(async move {
            let page_size = match page_size.filter(|v| !v.is_undefined()) {
                None => None,
                Some(v) => match v.as_f64() {
                    Some(n) if n.fract() == 0.0 && (1.0..=10_000.0).contains(&n) => Some(n as u32),
                    _ => {
                        return Err(Error::Invalid(
                            "pageSize must be a whole number from 1 to 10000".into(),
                        ))
                    }
                },
            };
            client.load(&collection, page_size).await
        })
    }

    /// The confirmed record (what the server last acknowledged), or
    /// `undefined`. The same object is returned until it changes.
    ///
    /// # Errors
    /// Throws `CrmError` `invalid` for a bad collection name.
    #[wasm_bindgen(unchecked_return_type = "CrmRecord | undefined")]
    pub fn get(&self, collection: &str, id: &str) -> Result<JsValue, JsValue> {
        check_collection(collection)?;
        Ok(self.client.get(collection, id))
    }

    /// All confirmed records of a collection (a stable snapshot).
    ///
    /// # Errors
    /// Throws `CrmError` `invalid` for a bad collection name.
    #[wasm_bindgen(unchecked_return_type = "CrmRecord[]")]
    pub fn list(&self, collection: &str) -> Result<JsValue, JsValue> {
        check_collection(collection)?;
        Ok(self.client.list(collection))
    }

    /// The records of a collection as `view` shows them, filtered
    /// (`where: { status: "lead", owner: ["alice", "bob"] }`), searched
    /// (`search`: text in any field, any case), sorted (`orderBy: ["name",
    /// "asc"]`) and paged (`limit`, `offset`): `{ items, total }`. The same
    /// object until something changed, for `useSyncExternalStore`.
    ///
    /// # Errors
    /// Throws `CrmError` `invalid` for a bad collection name or query.
    #[wasm_bindgen(unchecked_return_type = "QueryResult")]
    pub fn query(
        &self,
        collection: &str,
        #[wasm_bindgen(unchecked_param_type = "QueryOptions")] options: JsValue,
    ) -> Result<JsValue, JsValue> {
        check_collection(collection)?;
        let query = read_query(&options)?;
        let key = if options.is_undefined() {
            String::new()
        } else {
            js_sys::JSON::stringify(&options)
                .map(String::from)
                .unwrap_or_default()
        };
        Ok(self.client.query(collection, &query, &key))
    }

    /// The confirmed record with this tab's staged changes laid over it,
    /// `pending: true` where there are any.
    ///
    /// # Errors
    /// Throws `CrmError` `invalid` for a bad collection name.
    #[wasm_bindgen(unchecked_return_type = "CrmRecord | undefined")]
    pub fn view(&self, collection: &str, id: &str) -> Result<JsValue, JsValue> {
        check_collection(collection)?;
        Ok(self.client.view(collection, id))
    }

    /// A debounced, staged change of some fields: settles with
    /// `committed`, `merged`, `conflict` or `queued`.
    #[wasm_bindgen(unchecked_return_type = "Promise<SaveResult>")]
    pub fn save(
        &self,
        collection: String,
        id: String,
        #[wasm_bindgen(unchecked_param_type = "Fields")] fields: JsValue,
    ) -> Promise {
        let client = self.client.clone();
        // Staged before this returns, so `view` shows it at once.
        let staged = read_from_app::<Fields>(&fields).and_then(|f| {
            client
                .stage_save(&collection, &id, f.clone())
                .map(|p| (p, f))
        });
        promise(async move {
            match staged? {
                (Some(p), _) => JsFuture::from(p).await.map_err(rejected),
                (None, fields) => client.save(&collection, &id, fields).await,
            }
        })
    }

    /// Creates a record (the id is made here, so a retry never creates two).
    #[wasm_bindgen(unchecked_return_type = "Promise<SaveResult>")]
    pub fn create(
        &self,
        collection: String,
        #[wasm_bindgen(unchecked_param_type = "Fields")] fields: JsValue,
    ) -> Promise {
        let client = self.client.clone();
        let fields = read_from_app::<Fields>(&fields);
        promise(async move { client.create(&collection, fields?).await })
    }

    /// Deletes a record, `If-Match` its confirmed version.
    #[wasm_bindgen(unchecked_return_type = "Promise<SaveResult>")]
    pub fn remove(&self, collection: String, id: String) -> Promise {
        let client = self.client.clone();
        promise(async move { client.remove(&collection, &id).await })
    }

    /// Who changed which field of a record from what to what, and when:
    /// the server's history of it, newest first (`limit`, 50 by default, at
    /// most 1000). Comments are in the record itself.
    ///
    /// # Errors
    /// Rejects with `CrmError` `invalid`, `offline`, `not_found`,
    /// `bad_response`, `network`, `timeout`, `server`, `unauthorized`.
    #[wasm_bindgen(unchecked_return_type = "Promise<RecordHistoryEntry[]>")]
    pub fn history(
        &self,
        collection: String,
        id: String,
        #[wasm_bindgen(unchecked_param_type = "HistoryOptions | undefined")] options: JsValue,
    ) -> Promise {
        let client = self.client.clone();
        let options = if options.is_undefined() || options.is_null() {
            Ok(HistoryOptions::default())
        } else {
            from_app::<HistoryOptions>(options)
        };
        promise(async move { record_history(&client, &collection, &id, &options?).await })
    }

    /// Appends a comment; never conflicts, never posted twice.
    #[wasm_bindgen(unchecked_return_type = "Promise<SaveResult>")]
    pub fn comment(&self, collection: String, id: String, text: String) -> Promise {
        let staged = self.client.stage_comment(&collection, &id, text);
        promise(async move { JsFuture::from(staged?).await.map_err(rejected) })
    }

    /// Sends every debounced change now and waits for the answers.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn flush(&self) -> Promise {
        // Sent before this returns; the promise waits for the answers.
        let waiting = self.client.flush_all(false);
        promise(async move {
            for p in waiting {
                let _ = JsFuture::from(p).await;
            }
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Staged and queued mutations of this user, oldest first.
    #[wasm_bindgen(unchecked_return_type = "PendingMutation[]")]
    pub fn pending(&self) -> JsValue {
        self.client.pending()
    }

    /// Mutations the server refused for good: every refusal that is not a
    /// version conflict (`422 invalid`, `403`, `404`, `409 overlap`, ...),
    /// oldest first, with the server's `code`, `message` and `details` and
    /// the time `at`; kept until a person retries, edits (saves the
    /// record again) or discards them.
    #[wasm_bindgen(unchecked_return_type = "FailedMutation[]")]
    pub fn failed(&self) -> JsValue {
        self.client.failed()
    }

    /// Sends a failed mutation again.
    #[wasm_bindgen(unchecked_return_type = "Promise<SaveResult>")]
    pub fn retry(&self, mutation_id: String) -> Promise {
        let client = self.client.clone();
        promise(async move { client.retry(&mutation_id).await })
    }

    /// Drops a failed (or queued) mutation and its staged change.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn discard(&self, mutation_id: String) -> Promise {
        let client = self.client.clone();
        promise(async move {
            client.discard(&mutation_id).await?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// The user's record-sync log, newest first, kept in IndexedDB and
    /// shared by the user's tabs: one line per exchange with the server (a
    /// drained outbox, a feed catch-up, a load), the newest 500.
    #[wasm_bindgen(js_name = syncLog, unchecked_return_type = "SyncLogEntry[]")]
    pub fn sync_log(&self) -> JsValue {
        self.client.sync_log()
    }

    /// Conflicts waiting for a person.
    #[wasm_bindgen(unchecked_return_type = "Conflict[]")]
    pub fn conflicts(&self) -> JsValue {
        self.client.conflicts()
    }

    /// Resolves a conflict with the fields a person chose.
    #[wasm_bindgen(unchecked_return_type = "Promise<SaveResult>")]
    pub fn resolve(
        &self,
        conflict_id: String,
        #[wasm_bindgen(unchecked_param_type = "Fields")] fields: JsValue,
    ) -> Promise {
        let client = self.client.clone();
        let fields = read_from_app::<Fields>(&fields);
        promise(async move { client.resolve(&conflict_id, fields?).await })
    }

    /// Calls `listener` with every event; returns the function that stops it.
    #[wasm_bindgen(unchecked_return_type = "() => void")]
    pub fn subscribe(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(event: CrmEvent) => void")] listener: Function,
    ) -> Function {
        self.client.subscribe(&listener)
    }

    /// `{ online, leader, pending, failed, storage, durable, lastSyncAt, fullLoad }`.
    #[wasm_bindgen(getter, unchecked_return_type = "CrmStatus")]
    pub fn status(&self) -> JsValue {
        self.client.status()
    }

    /// Asks the browser for persistent storage, so that it does not clear
    /// this user's queued changes under storage pressure (or, in Safari,
    /// after seven days without a visit). Resolves to the new
    /// `status.durable`; every tab's `status` follows. Firefox shows the
    /// person a prompt: call it from a click. A browser without
    /// `navigator.storage` (an old one, or a page not served over HTTPS)
    /// resolves to `false`.
    #[wasm_bindgen(unchecked_return_type = "Promise<boolean>")]
    pub fn persist(&self) -> Promise {
        let client = self.client.clone();
        promise(async move { Ok(JsValue::from_bool(client.ask_durable().await)) })
    }

    /// The user's counters: kept in IndexedDB and added up over reloads
    /// and the user's tabs (a tab's newest counts are written within a
    /// second, and other tabs' show here after this tab's next write).
    #[wasm_bindgen(unchecked_return_type = "CrmMetrics")]
    pub fn metrics(&self) -> JsValue {
        to_js(&self.metrics.view()).unwrap_or(JsValue::UNDEFINED)
    }

    /// Logs out: first sends what is still queued; if anything is left
    /// off the server, rejects with `pending_changes` (its `details` list
    /// it) and changes nothing, unless `discard: true`. Then revokes the
    /// token, tells every tab, releases this tab's leadership and locks, and
    /// deletes this user's IndexedDB data (unless another tab queued work
    /// meanwhile: that is kept for the user's next login). A revoke that cannot reach the
    /// server rejects (`network`, `timeout`, `server`) and also changes
    /// nothing: the user is either logged out everywhere with their data
    /// deleted, or still logged in with everything kept.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn logout(
        &self,
        #[wasm_bindgen(unchecked_param_type = "{ discard?: boolean }")] options: Option<
            js_sys::Object,
        >,
    ) -> Promise {
        let discard =
            options.is_some_and(|o| crate::web::js::get(&o, "discard").as_bool() == Some(true));
        let client = self.client.clone();
        let sync = Rc::clone(&self.sync);
        let tabs = self.tabs_js.clone();
        let presence = Rc::clone(&self.presence);
        promise(async move {
            let done = client.logout(discard)?;
            JsFuture::from(done).await.map_err(rejected)?;
            // The server dropped this browser's presence with the token;
            // the other tabs hear it here.
            presence.close();
            let user = client.user();
            shut_down(&client, &sync, &tabs);
            // Another tab may have queued work while the token was being
            // revoked: then the user's data stays for their next login.
            if discard || !UserDb::holds_work(&user).await {
                let _ = UserDb::delete_user(&user, 5_000).await;
            }
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Stops timers, channels and polling, and gives up this tab's
    /// leadership and locks at once; later calls fail with `closed`.
    pub fn close(&self) {
        self.metrics.stop();
        self.presence.close();
        shut_down(&self.client, &self.sync, &self.tabs_js);
    }

    /// Test and demo hook: behave as if the browser went offline (`false`)
    /// or online (`true`), as the `offline`/`online` events do.
    #[wasm_bindgen(js_name = setOnline)]
    pub fn set_online(&self, online: bool) {
        self.client.set_online(online);
    }
}
