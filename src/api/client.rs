//! `CrmSync`: the client a React app holds (API.md, "The client").

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use serde::Deserialize;
use tsify::Tsify;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::core::record::Record;
use crate::error::Error;
use crate::web::http::{send, HttpRequest, Method};
use crate::web::js::{from_app, from_server, to_js};

/// Options shared by `login` and `open`; every one is optional (API.md,
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

/// `CrmSync.login` arguments.
#[derive(Debug, Clone, Deserialize, Tsify)]
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

/// `CrmSync.open` arguments: a token the app already has.
#[derive(Debug, Clone, Deserialize, Tsify)]
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
struct LoginAnswer {
    token: String,
    user: String,
}

#[derive(Deserialize)]
struct ListAnswer {
    items: Vec<Record>,
}

/// Everything a client knows; shared by the futures it starts.
struct ClientState {
    base_url: String,
    token: String,
    user: String,
    timeout_ms: u32,
    closed: bool,
    confirmed: BTreeMap<String, BTreeMap<String, Record>>,
}

/// The crm-sync client: records staged until the server says yes, offline
/// work, tabs in step, sync progress.
#[wasm_bindgen]
pub struct CrmSync {
    state: Rc<RefCell<ClientState>>,
}

impl CrmSync {
    fn request(&self, method: Method, path: &str) -> Result<HttpRequest, Error> {
        let state = self.state.borrow();
        if state.closed {
            return Err(Error::Closed);
        }
        let mut req = HttpRequest::new(method, format!("{}{}", state.base_url, path));
        req.token = Some(state.token.clone());
        req.timeout_ms = state.timeout_ms;
        Ok(req)
    }
}

fn trim_base(base_url: &str) -> String {
    base_url.trim_end_matches('/').to_owned()
}

fn check_collection(collection: &str) -> Result<(), Error> {
    let ok = !collection.is_empty()
        && collection.len() <= 40
        && collection
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "not a collection name: {collection:?}"
        )))
    }
}

#[wasm_bindgen]
impl CrmSync {
    /// Logs in with a user name and password and returns a client.
    ///
    /// # Errors
    /// Rejects with `CrmError` `unauthorized` on bad credentials, `network`,
    /// `timeout`, `server` or `bad_response` otherwise.
    pub async fn login(
        #[wasm_bindgen(unchecked_param_type = "LoginOptions")] options: JsValue,
    ) -> Result<CrmSync, JsValue> {
        let options: LoginOptions = from_app(options)?;
        let base_url = trim_base(&options.base_url);
        let timeout_ms = options.options.request_timeout_ms.unwrap_or(15_000);
        let mut req = HttpRequest::new(Method::Post, format!("{base_url}/login"));
        req.timeout_ms = timeout_ms;
        let body = js_sys::Object::new();
        let _ = js_sys::Reflect::set(&body, &"username".into(), &options.username.as_str().into());
        let _ = js_sys::Reflect::set(&body, &"password".into(), &options.password.as_str().into());
        req.body = Some(body.into());
        let answer: LoginAnswer = from_server(send(&req).await?.body)?;
        Ok(Self::with(base_url, answer.token, answer.user, timeout_ms))
    }

    /// Opens a client with a token the app already has. Makes no request.
    ///
    /// # Errors
    /// Throws `CrmError` `invalid` for an empty token.
    pub fn open(
        #[wasm_bindgen(unchecked_param_type = "OpenOptions")] options: JsValue,
    ) -> Result<CrmSync, JsValue> {
        let options: OpenOptions = from_app(options)?;
        if options.token.is_empty() {
            return Err(Error::Invalid("token is empty".into()).into());
        }
        Ok(Self::with(
            trim_base(&options.base_url),
            options.token,
            options.user.unwrap_or_default(),
            options.options.request_timeout_ms.unwrap_or(15_000),
        ))
    }

    fn with(base_url: String, token: String, user: String, timeout_ms: u32) -> CrmSync {
        CrmSync {
            state: Rc::new(RefCell::new(ClientState {
                base_url,
                token,
                user,
                timeout_ms,
                closed: false,
                confirmed: BTreeMap::new(),
            })),
        }
    }

    /// Who is logged in.
    #[wasm_bindgen(getter)]
    pub fn user(&self) -> String {
        self.state.borrow().user.clone()
    }

    /// The bearer token in use.
    #[wasm_bindgen(getter)]
    pub fn token(&self) -> String {
        self.state.borrow().token.clone()
    }

    /// Fetches a collection from the server into memory.
    #[wasm_bindgen(unchecked_return_type = "Promise<CrmRecord[]>")]
    pub fn load(&self, collection: String) -> js_sys::Promise {
        let prepared = check_collection(&collection)
            .and_then(|()| self.request(Method::Get, &format!("/{collection}")));
        let state = Rc::clone(&self.state);
        future_to_promise(async move {
            let answer: ListAnswer = from_server(send(&prepared?).await?.body)?;
            let records = answer.items;
            let out = to_js(&records)?;
            let mut state = state.borrow_mut();
            let by_id = state.confirmed.entry(collection).or_default();
            by_id.clear();
            for record in records {
                by_id.insert(record.id.clone(), record);
            }
            Ok(out)
        })
    }

    /// The confirmed record (what the server last acknowledged), or `undefined`.
    ///
    /// # Errors
    /// Throws `CrmError` `invalid` for a bad collection name.
    #[wasm_bindgen(unchecked_return_type = "CrmRecord | undefined")]
    pub fn get(&self, collection: &str, id: &str) -> Result<JsValue, JsValue> {
        check_collection(collection)?;
        let state = self.state.borrow();
        match state.confirmed.get(collection).and_then(|c| c.get(id)) {
            Some(record) => Ok(to_js(record)?),
            None => Ok(JsValue::UNDEFINED),
        }
    }

    /// All confirmed records of a collection.
    ///
    /// # Errors
    /// Throws `CrmError` `invalid` for a bad collection name.
    #[wasm_bindgen(unchecked_return_type = "CrmRecord[]")]
    pub fn list(&self, collection: &str) -> Result<JsValue, JsValue> {
        check_collection(collection)?;
        let state = self.state.borrow();
        let records: Vec<&Record> = state
            .confirmed
            .get(collection)
            .map(|c| c.values().collect())
            .unwrap_or_default();
        Ok(to_js(&records)?)
    }

    /// Revokes the token on the server and closes the client.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn logout(&self) -> js_sys::Promise {
        let prepared = self.request(Method::Post, "/logout");
        let state = Rc::clone(&self.state);
        future_to_promise(async move {
            send(&prepared?).await?;
            state.borrow_mut().closed = true;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Stops timers, channels and polling; later calls fail with `closed`.
    pub fn close(&self) {
        self.state.borrow_mut().closed = true;
    }
}
