//! `CrmSync`: the client a React app holds (docs/guide/getting-started.md).

use std::future::Future;
use std::pin::Pin;

use js_sys::{Function, Promise};
use serde::Deserialize;
use tsify::Tsify;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{spawn_local, JsFuture};

use crate::core::debounce::DebounceOptions;
use crate::core::history::HistoryOptions;
use crate::core::merge::{MergeRules, OnConflict};
use crate::core::record::Fields;
use crate::core::retry::RetryPolicy;
use crate::error::Error;
use std::rc::Rc;

use crate::api::tabs::{TabLocks, TabLocksMode};
use crate::core::election::TabId;
use crate::core::progress::{SyncConfig, SyncKind};
use crate::core::tab_message::TabMessage;
use crate::web::channel::EnvelopeChannel;
use crate::web::client::{check_collection, rejected, Client, Config, Session};
use crate::web::history::record_history;
use crate::web::http::{send, HttpRequest, Method};
use crate::web::idb::UserDb;
use crate::web::js::{from_app, from_server, read_from_app, to_js};
use crate::web::kept_metrics::MetricsKeeper;
use crate::web::sync::SyncRunner;

/// Options shared by `login` and `open`; every one is optional (docs/guide/getting-started.md,
/// "The client", gives the defaults).
#[derive(Debug, Clone, Default, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct CrmOptions {
    /// Save calls for one record within this many ms become one request (300).
    #[serde(default)]
    #[tsify(optional)]
    pub debounce_ms: Option<u32>,
    /// Upper bound of the debounce delay while calls keep coming (2000).
    #[serde(default)]
    #[tsify(optional)]
    pub max_wait_ms: Option<u32>,
    /// Retries of transient failures.
    #[serde(default)]
    #[tsify(optional, type = "RetryOptions")]
    pub retry: Option<RetryOptions>,
    /// Abort a request after this many ms (15000).
    #[serde(default)]
    #[tsify(optional)]
    pub request_timeout_ms: Option<u32>,
    /// How a 409 is handled ("merge").
    #[serde(default)]
    #[tsify(optional, type = "ConflictPolicy")]
    pub on_conflict: Option<String>,
    /// Sync job polling, total timeout and cooldown.
    #[serde(default)]
    #[tsify(optional, type = "SyncOptions")]
    pub sync: Option<SyncOptions>,
    /// How tabs coordinate: Web Locks where present (`"auto"`), or the
    /// BroadcastChannel protocol (`"broadcast"`, also for tests).
    #[serde(default)]
    #[tsify(optional, type = "TabLocksMode")]
    pub tabs: Option<String>,
}

/// `retry` option.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryOptions {
    /// Attempts in all, the first included (4).
    pub attempts: Option<u32>,
    /// First backoff delay (500).
    pub base_delay_ms: Option<u64>,
    /// Largest backoff delay (8000).
    pub max_delay_ms: Option<u64>,
}

/// `sync` option.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncOptions {
    /// Poll interval (1000).
    pub poll_ms: Option<u64>,
    /// Total time a run may take (120000).
    pub timeout_ms: Option<u64>,
    /// Presses within this time of a start are folded (3000).
    pub cooldown_ms: Option<u64>,
}

/// `CrmSync.login` arguments. The derive gives the TypeScript type; they
/// are read by `LoginOptions::read`, in two plain steps, because serde's
/// `flatten` buffers every value first (code size and time).
#[derive(Debug, Clone, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct LoginOptions {
    /// Where the API lives, e.g. `/api` or `http://127.0.0.1:8080/api`.
    pub base_url: String,
    /// The user name.
    pub username: String,
    /// The password.
    pub password: String,
    /// The other options.
    #[serde(flatten)]
    pub options: CrmOptions,
}

/// `CrmSync.open` arguments: a token the app already has. Read by
/// `OpenOptions::read`.
#[derive(Debug, Clone, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct OpenOptions {
    /// Where the API lives.
    pub base_url: String,
    /// A bearer token from an earlier `login`.
    pub token: String,
    /// The user the token belongs to, if the app knows it.
    #[serde(default)]
    #[tsify(optional)]
    pub user: Option<String>,
    /// The other options.
    #[serde(flatten)]
    pub options: CrmOptions,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LoginFields {
    base_url: String,
    username: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OpenFields {
    base_url: String,
    token: String,
    #[serde(default)]
    user: Option<String>,
}

/// Reads an app's argument as its own fields `F` and the shared options,
/// both from the same object.
fn with_options<F: serde::de::DeserializeOwned>(value: JsValue) -> Result<(F, CrmOptions), Error> {
    Ok((from_app(value.clone())?, from_app(value)?))
}

impl LoginOptions {
    fn read(value: JsValue) -> Result<Self, Error> {
        let (own, options) = with_options::<LoginFields>(value)?;
        Ok(Self {
            base_url: own.base_url,
            username: own.username,
            password: own.password,
            options,
        })
    }
}

impl OpenOptions {
    fn read(value: JsValue) -> Result<Self, Error> {
        let (own, options) = with_options::<OpenFields>(value)?;
        Ok(Self {
            base_url: own.base_url,
            token: own.token,
            user: own.user,
            options,
        })
    }
}

#[derive(Deserialize)]
struct MeAnswer {
    user: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LoginAnswer {
    token: String,
    user: String,
}

impl CrmOptions {
    fn config(&self, base_url: &str) -> Result<Config, Error> {
        let mut retry = RetryPolicy::default();
        if let Some(r) = &self.retry {
            if let Some(a) = r.attempts {
                // docs/guide/errors.md ("Retries") counts attempts in all; the policy counts retries.
                retry.attempts = a.saturating_sub(1);
            }
            if let Some(b) = r.base_delay_ms {
                retry.base_delay_ms = b;
            }
            if let Some(m) = r.max_delay_ms {
                retry.max_delay_ms = m;
            }
        }
        let on_conflict = match self.on_conflict.as_deref() {
            None | Some("merge") => OnConflict::Merge,
            Some("manual") => OnConflict::Manual,
            Some("theirs") => OnConflict::Theirs,
            Some("mine") => OnConflict::Mine,
            Some("latest") => OnConflict::Latest,
            Some(other) => {
                return Err(Error::Invalid(format!(
                    "onConflict must be merge, manual, theirs, mine or latest, not {other:?}"
                )))
            }
        };
        let defaults = DebounceOptions::default();
        Ok(Config {
            base_url: base_url.trim_end_matches('/').to_owned(),
            timeout_ms: self.request_timeout_ms.unwrap_or(15_000),
            retry,
            rules: MergeRules {
                on_conflict,
                // Thirty people saving one record at once: each round one of
                // them wins, so a loser may need many rounds of
                // one-sided merges before its turn.
                max_rounds: 64,
            },
            debounce: DebounceOptions {
                wait_ms: self.debounce_ms.map_or(defaults.wait_ms, u64::from),
                max_wait_ms: self.max_wait_ms.map(u64::from).or(defaults.max_wait_ms),
                leading: false,
            },
        })
    }
}

impl CrmOptions {
    fn sync_config(&self) -> SyncConfig {
        let mut c = SyncConfig::default();
        if let Some(s) = &self.sync {
            if let Some(v) = s.poll_ms {
                c.poll_ms = v;
            }
            if let Some(v) = s.timeout_ms {
                c.timeout_ms = v;
            }
            if let Some(v) = s.cooldown_ms {
                c.cooldown_ms = v;
            }
        }
        c
    }

    fn tabs_mode(&self) -> Result<TabLocksMode, Error> {
        match self.tabs.as_deref() {
            None | Some("auto") => Ok(TabLocksMode::Auto),
            Some("web-locks") => Ok(TabLocksMode::WebLocks),
            Some("broadcast") => Ok(TabLocksMode::Broadcast),
            Some(other) => Err(Error::Invalid(format!(
                "tabs must be auto, web-locks or broadcast, not {other:?}"
            ))),
        }
    }
}

/// Starts the engine, the sync follower and the tab coordination.
async fn start_client(
    options: &CrmOptions,
    config: Config,
    session: Session,
    verified: bool,
) -> Result<CrmSync, Error> {
    let mode = options.tabs_mode()?;
    let channel = format!("crm-sync:{}", session.user);
    let client = Client::start(config, session, verified).await;
    let sync = SyncRunner::new(client.clone(), options.sync_config());
    let presence = crate::web::presence::PresenceRunner::start(&client);
    let tabs = TabLocks::open(&channel, mode)?;

    let weak_client = client.downgrade();
    let weak_sync = Rc::downgrade(&sync);
    let weak_presence = Rc::downgrade(&presence);
    let bus = EnvelopeChannel::open(
        &format!("{channel}:events"),
        TabId(tabs.tab_id()),
        move |envelope| {
            let (Some(client), Some(sync)) = (weak_client.upgrade(), weak_sync.upgrade()) else {
                return;
            };
            match &envelope.message {
                TabMessage::RecordChanged(change) => {
                    let change = change.clone();
                    spawn_local(async move { client.record_from_tab(change).await });
                }
                TabMessage::Session(notice) => client.session_from_tab(notice.state),
                TabMessage::WorkChanged(_) => {
                    spawn_local(async move { client.reread_work().await });
                }
                TabMessage::CollectionReloaded(collection) => {
                    let collection = collection.clone();
                    spawn_local(async move { client.reread_collection(&collection).await });
                }
                TabMessage::DurableChanged => {
                    spawn_local(async move { client.read_durable().await });
                }
                TabMessage::CatchUpAsked | TabMessage::CaughtUp => {
                    client.catch_up_from_tab(&envelope.message)
                }
                TabMessage::PresenceSet(_)
                | TabMessage::PresencePeople { .. }
                | TabMessage::PresenceHello => {
                    if let Some(p) = weak_presence.upgrade() {
                        p.on_tab_message(&envelope.tab.0, &envelope.message);
                    }
                }
                other => sync.on_tab_message(other),
            }
        },
    )
    .ok()
    .map(Rc::new);
    client.set_bus(bus.clone());
    sync.set_bus(bus.clone());
    presence.set_bus(bus.clone());

    let weak_client = client.downgrade();
    let weak_sync = Rc::downgrade(&sync);
    let weak_presence = Rc::downgrade(&presence);
    let on_leader = Closure::<dyn FnMut(bool)>::new(move |leader: bool| {
        if let Some(client) = weak_client.upgrade() {
            client.set_leader(leader);
        }
        if let Some(p) = weak_presence.upgrade() {
            p.handle(crate::core::presence::Input::Leading(leader));
        }
        if leader {
            if let Some(sync) = weak_sync.upgrade() {
                spawn_local(async move { sync.on_leadership().await });
            }
        }
    });
    let _unsubscribe =
        tabs.on_leader_change(on_leader.as_ref().unchecked_ref::<Function>().clone());
    if tabs.is_leader() {
        client.set_leader(true);
        presence.handle(crate::core::presence::Input::Leading(true));
        let s = Rc::clone(&sync);
        spawn_local(async move { s.on_leadership().await });
    } else {
        let s = Rc::clone(&sync);
        spawn_local(async move { s.restore_schedule().await });
    }
    let sync_js: JsValue = CrmSyncJobs {
        runner: Rc::clone(&sync),
    }
    .into();
    let metrics = MetricsKeeper::start(client.clone(), &sync).await;
    let presence_js = super::presence::CrmPresence::new(Rc::clone(&presence)).into();
    Ok(CrmSync {
        client,
        sync,
        presence,
        presence_js,
        metrics,
        sync_js,
        tabs_js: tabs.into(),
        _bus: bus,
        _on_leader: on_leader,
    })
}

/// Reads `crm.query`'s options; anything else than documented is `invalid`.
fn read_query(options: &JsValue) -> Result<crate::core::query::Query, Error> {
    use crate::core::query::Query;
    use crate::core::record::FieldValue;
    use crate::web::js::get;
    let mut query = Query::default();
    if options.is_undefined() || options.is_null() {
        return Ok(query);
    }
    if !options.is_object() {
        return Err(Error::Invalid("query options must be an object".into()));
    }
    let value = |v: JsValue, field: &str| -> Result<FieldValue, Error> {
        read_from_app::<FieldValue>(&v).map_err(|_| {
            Error::Invalid(format!(
                "where.{field}: a value (text, number, true/false, null) or a list of them"
            ))
        })
    };
    let filters = get(options, "where");
    if !filters.is_undefined() {
        let obj: &js_sys::Object = filters
            .dyn_ref()
            .filter(|_| !js_sys::Array::is_array(&filters))
            .ok_or_else(|| Error::Invalid("where must be an object".into()))?;
        for entry in js_sys::Object::entries(obj).iter() {
            let pair = js_sys::Array::from(&entry);
            let field = pair.get(0).as_string().unwrap_or_default();
            let wanted = pair.get(1);
            let allowed = if js_sys::Array::is_array(&wanted) {
                js_sys::Array::from(&wanted)
                    .iter()
                    .map(|v| value(v, &field))
                    .collect::<Result<Vec<_>, _>>()?
            } else {
                vec![value(wanted, &field)?]
            };
            query.filters.push((field, allowed));
        }
    }
    let search = get(options, "search");
    if !search.is_undefined() {
        let text = search
            .as_string()
            .ok_or_else(|| Error::Invalid("search must be a text".into()))?;
        query.search = Some(text.to_lowercase());
    }
    let order = get(options, "orderBy");
    if !order.is_undefined() {
        let bad = || Error::Invalid("orderBy must be [field, \"asc\" | \"desc\"]".into());
        let pair = order.dyn_ref::<js_sys::Array>().ok_or_else(bad)?;
        let field = pair.get(0).as_string().ok_or_else(bad)?;
        let descending = match pair.get(1).as_string().as_deref() {
            None if pair.length() == 1 => false,
            Some("asc") if pair.length() == 2 => false,
            Some("desc") if pair.length() == 2 => true,
            _ => return Err(bad()),
        };
        query.order_by = Some((field, descending));
    }
    let count = |name: &str| -> Result<Option<usize>, Error> {
        let v = get(options, name);
        if v.is_undefined() {
            return Ok(None);
        }
        match v.as_f64() {
            Some(n) if n.fract() == 0.0 && (0.0..=9_007_199_254_740_991.0).contains(&n) => {
                Ok(Some(n as usize))
            }
            _ => Err(Error::Invalid(format!(
                "{name} must be a whole number, 0 or more"
            ))),
        }
    };
    query.limit = count("limit")?;
    query.offset = count("offset")?.unwrap_or(0);
    Ok(query)
}

/// Closes the engine, the sync follower and the tab coordination (which
/// hands leadership to another tab at once).
fn shut_down(client: &Client, sync: &SyncRunner, tabs_js: &JsValue) {
    client.close();
    sync.close();
    client.set_bus(None);
    sync.set_bus(None);
    if let Ok(close) = js_sys::Reflect::get(tabs_js, &"close".into()) {
        if let Ok(close) = close.dyn_into::<Function>() {
            let _ = close.call0(tabs_js);
        }
    }
}

/// `crm.sync`: the spreadsheet sync as every tab of the user sees it.
#[wasm_bindgen]
pub struct CrmSyncJobs {
    runner: Rc<SyncRunner>,
}

#[wasm_bindgen]
impl CrmSyncJobs {
    /// Starts a sync job (`"from-sheet"` by default); resolves with
    /// `{ syncId, status }` as soon as the server queued it, or with
    /// `status: "coalesced"` when the press was folded into a follow-up run.
    #[wasm_bindgen(
        unchecked_return_type = "Promise<{ syncId: string | null; status: \"queued\" | \"coalesced\" }>"
    )]
    pub fn start(
        &self,
        #[wasm_bindgen(unchecked_param_type = "\"from-sheet\" | \"to-sheet\" | undefined")]
        kind: JsValue,
    ) -> Promise {
        let kind = match kind.as_string().as_deref() {
            None | Some("from-sheet") => SyncKind::FromSheet,
            Some("to-sheet") => SyncKind::ToSheet,
            Some(other) => {
                let err = Error::Invalid(format!(
                    "kind must be from-sheet or to-sheet, not {other:?}"
                ));
                return Promise::reject(&err.into());
            }
        };
        self.runner.start(kind)
    }

    /// `{ phase, progress, message, syncId, stats, error, startedAt, updatedAt }`,
    /// the same object until it changes.
    #[wasm_bindgen(getter, unchecked_return_type = "SyncState")]
    pub fn state(&self) -> JsValue {
        self.runner.state_js()
    }

    /// Calls `listener(state)` on every change; returns the unsubscribe function.
    #[wasm_bindgen(unchecked_return_type = "() => void")]
    pub fn subscribe(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(state: SyncState) => void")] listener: Function,
    ) -> Function {
        self.runner.subscribe(&listener)
    }

    /// Cancels the running or queued job.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn cancel(&self) -> Promise {
        self.runner.cancel()
    }

    /// Back to `idle` after `complete`, `error` or `cancelled`.
    pub fn dismiss(&self) {
        self.runner.dismiss();
    }

    /// Finished runs from IndexedDB, newest first.
    #[wasm_bindgen(unchecked_return_type = "Promise<SyncHistoryEntry[]>")]
    pub fn history(&self) -> Promise {
        let runner = Rc::clone(&self.runner);
        promise(async move { runner.history().await })
    }

    /// Field by field, the sheet rows a from-sheet job did not apply because
    /// the record changed in the CRM since the last sync: `[{ row, recordId,
    /// field, sheet, crm, changedBy, changedAt }]`. Rejects with
    /// `sync_not_found` (unknown, expired or lost in a server restart),
    /// `forbidden` (another user's job), `network`, ...
    #[wasm_bindgen(unchecked_return_type = "Promise<SyncSheetConflict[]>")]
    pub fn conflicts(
        &self,
        #[wasm_bindgen(js_name = syncId, unchecked_param_type = "string")] sync_id: JsValue,
    ) -> Promise {
        let Some(sync_id) = sync_id.as_string().filter(|id| !id.is_empty()) else {
            let err = Error::Invalid("syncId must be the id of a sync job".into());
            return Promise::reject(&err.into());
        };
        let runner = Rc::clone(&self.runner);
        promise(async move { runner.conflicts(&sync_id).await })
    }

    /// Starts a sync every `intervalMs` (two hours when not given) from now
    /// on, of `kind` (`"from-sheet"` by default); `null` stops it. Kept in
    /// IndexedDB: it survives reloads, and whichever tab leads carries it
    /// out, without doubling a run or losing one when the leader changes.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn schedule(
        &self,
        #[wasm_bindgen(unchecked_param_type = "number | null | undefined")] interval_ms: JsValue,
        #[wasm_bindgen(unchecked_param_type = "\"from-sheet\" | \"to-sheet\" | undefined")]
        kind: JsValue,
    ) -> Promise {
        let interval = if interval_ms.is_null() {
            Ok(None)
        } else if interval_ms.is_undefined() {
            Ok(Some(crate::web::sync::DEFAULT_SCHEDULE_MS))
        } else {
            match interval_ms.as_f64() {
                Some(ms)
                    if ms.fract() == 0.0
                        && ms >= crate::web::sync::MIN_SCHEDULE_MS as f64
                        && ms <= 9_007_199_254_740_991.0 =>
                {
                    Ok(Some(ms as u64))
                }
                _ => Err(Error::Invalid(
                    "intervalMs must be a whole number of ms, 1000 or more, or null".into(),
                )),
            }
        };
        let kind = match kind.as_string().as_deref() {
            None | Some("from-sheet") => Ok(SyncKind::FromSheet),
            Some("to-sheet") => Ok(SyncKind::ToSheet),
            Some(other) => Err(Error::Invalid(format!(
                "kind must be from-sheet or to-sheet, not {other:?}"
            ))),
        };
        let runner = Rc::clone(&self.runner);
        promise(async move {
            runner.schedule(interval?, kind?).await?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// The schedule: `{ intervalMs, kind, nextAt }`, or `null`.
    #[wasm_bindgen(getter, unchecked_return_type = "SyncSchedule | null")]
    pub fn scheduled(&self) -> JsValue {
        self.runner.scheduled_js()
    }
}

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

    /// `login` as a future (an async export would bring its own copy of
    /// the promise plumbing).
    async fn log_in(options: JsValue) -> Result<CrmSync, JsValue> {
        crate::web::support::check()?;
        let options = LoginOptions::read(options)?;
        let config = options.options.config(&options.base_url)?;
        let mut req = HttpRequest::new(Method::Post, format!("{}/login", config.base_url));
        req.timeout_ms = config.timeout_ms;
        let body = js_sys::Object::new();
        let _ = js_sys::Reflect::set(&body, &"username".into(), &options.username.as_str().into());
        let _ = js_sys::Reflect::set(&body, &"password".into(), &options.password.as_str().into());
        req.body = Some(body.into());
        let answer: LoginAnswer = from_server(send(&req).await?.body)?;
        let session = Session {
            token: answer.token,
            user: answer.user,
        };
        Ok(start_client(&options.options, config, session, true).await?)
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

    /// `open` as a future.
    async fn open_with(options: JsValue) -> Result<CrmSync, JsValue> {
        crate::web::support::check()?;
        let options = OpenOptions::read(options)?;
        if options.token.is_empty() {
            return Err(Error::Invalid("token is empty".into()).into());
        }
        let config = options.options.config(&options.base_url)?;
        let mut req = HttpRequest::new(Method::Get, format!("{}/me", config.base_url));
        req.timeout_ms = config.timeout_ms;
        req.token = Some(options.token.clone());
        let named = options.user.filter(|u| !u.is_empty());
        let answer = match send(&req).await {
            Ok(resp) => from_server::<MeAnswer>(resp.body).map(Some),
            Err(e) if e.is_transient() && named.is_some() => Ok(None),
            Err(e) => Err(e),
        }?;
        let (user, verified) = match (answer, named) {
            (Some(me), Some(named)) if me.user != named => {
                return Err(Error::Http {
                    code: crate::error::ErrorCode::Unauthorized,
                    status: 401,
                    message: format!("this token is {}'s, not {named}'s", me.user),
                    details: JsValue::UNDEFINED,
                    retry_after_ms: None,
                }
                .into())
            }
            (Some(me), _) => (me.user, true),
            (None, Some(named)) => (named, false),
            (None, None) => return Err(Error::Offline.into()),
        };
        let session = Session {
            token: options.token,
            user,
        };
        Ok(start_client(&options.options, config, session, verified).await?)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_attempts_count_tries_in_all_with_one_default() {
        let default = CrmOptions::default().config("/api").unwrap().retry;
        let explicit = CrmOptions {
            retry: Some(RetryOptions {
                attempts: Some(4),
                ..RetryOptions::default()
            }),
            ..CrmOptions::default()
        }
        .config("/api")
        .unwrap()
        .retry;
        assert_eq!(default, explicit);
        // Four tries in all: the first and three retries.
        assert_eq!(default.attempts, 3);
    }
}
