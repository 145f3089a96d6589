//! `fetch` with a per-request timeout, and the contract's (docs/backend/protocol.md) error shape parsed
//! into [`Error`].

use gloo_timers::callback::Timeout;
use js_sys::{Promise, JSON};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortController, Headers, RequestInit, Response};

use crate::core::code::ErrorCode;
use crate::core::retry::parse_retry_after;
use crate::error::Error;
use crate::web::clock::now_ms;
use crate::web::js::{describe, get};

#[wasm_bindgen]
extern "C" {
    // The global `fetch`, in windows and workers alike.
    #[wasm_bindgen(js_name = fetch)]
    fn global_fetch(input: &str, init: &RequestInit) -> Promise;
}

/// HTTP methods the protocol uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Read.
    Get,
    /// Create, log in, start a job.
    Post,
    /// Change some fields.
    Patch,
    /// Remove, cancel.
    Delete,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
        }
    }
}

/// One request, built by the caller.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    /// The method.
    pub method: Method,
    /// Absolute or page-relative URL.
    pub url: String,
    /// JSON body, already a JS value.
    pub body: Option<JsValue>,
    /// `Authorization: Bearer` token.
    pub token: Option<String>,
    /// `If-Match` version.
    pub if_match: Option<u64>,
    /// `Idempotency-Key`.
    pub idempotency_key: Option<String>,
    /// Abort and fail with [`Error::Timeout`] after this many ms.
    pub timeout_ms: u32,
    /// Let the request outlive the page (`pagehide` flushes).
    pub keepalive: bool,
}

impl HttpRequest {
    /// A request with no body or headers and a 15 s timeout.
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        Self {
            method,
            url: url.into(),
            body: None,
            token: None,
            if_match: None,
            idempotency_key: None,
            timeout_ms: 15_000,
            keepalive: false,
        }
    }
}

/// A successful (2xx) answer.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// The status.
    pub status: u16,
    /// The parsed JSON body; `undefined` for an empty body (204).
    pub body: JsValue,
}

/// Sends `req` once.
///
/// # Errors
/// [`Error::Timeout`] when no full answer arrived in time, [`Error::Network`]
/// when fetch failed, [`Error::Http`] for a non-2xx status (code from the
/// protocol's error body when there is one, else from the status; an HTML
/// error page gives the status's code), [`Error::BadResponse`] for a 2xx whose
/// body is not JSON.
pub async fn send(req: &HttpRequest) -> Result<HttpResponse, Error> {
    let controller = AbortController::new().map_err(|e| Error::Network(describe(&e)))?;
    let init = RequestInit::new();
    init.set_method(req.method.as_str());
    init.set_signal(Some(&controller.signal()));
    if req.keepalive {
        // `keepalive` is not in web-sys's stable RequestInit.
        let _ = js_sys::Reflect::set(&init, &"keepalive".into(), &JsValue::TRUE);
    }
    let headers = Headers::new().map_err(|e| Error::Network(describe(&e)))?;
    let add = |name: &str, value: &str| {
        headers
            .append(name, value)
            .map_err(|e| Error::Invalid(describe(&e)))
    };
    add("Accept", "application/json")?;
    if let Some(token) = &req.token {
        add("Authorization", &format!("Bearer {token}"))?;
    }
    if let Some(version) = req.if_match {
        add("If-Match", &format!("\"{version}\""))?;
    }
    if let Some(key) = &req.idempotency_key {
        add("Idempotency-Key", key)?;
    }
    if let Some(body) = &req.body {
        add("Content-Type", "application/json")?;
        let text = JSON::stringify(body).map_err(|e| Error::Invalid(describe(&e)))?;
        init.set_body(&text);
    }
    init.set_headers(&headers);

    // The timer aborts the fetch, body included; dropping it clears it.
    let abort = controller.clone();
    let _timer = Timeout::new(req.timeout_ms, move || abort.abort());
    let timed_out =
        |thrown: &JsValue| get(thrown, "name").as_string().as_deref() == Some("AbortError");

    let response: Response = match JsFuture::from(global_fetch(&req.url, &init)).await {
        Ok(value) => value
            .dyn_into()
            .map_err(|_| Error::BadResponse("fetch did not give a Response".into()))?,
        Err(thrown) if timed_out(&thrown) => return Err(Error::Timeout(req.timeout_ms)),
        Err(thrown) => return Err(Error::Network(describe(&thrown))),
    };
    let status = response.status();
    let declared = response
        .headers()
        .get("Content-Length")
        .ok()
        .flatten()
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        controller.abort();
        return Err(too_large(status));
    }
    let text_promise = response.text().map_err(|e| Error::Network(describe(&e)))?;
    let text = match JsFuture::from(text_promise).await {
        Ok(text) => text,
        Err(thrown) if timed_out(&thrown) => return Err(Error::Timeout(req.timeout_ms)),
        Err(thrown) => return Err(Error::Network(describe(&thrown))),
    };
    let units = text.dyn_ref::<js_sys::JsString>().map_or(0, |t| t.length());
    if units as usize > MAX_BODY_BYTES {
        return Err(too_large(status));
    }
    // Parsed where it is: copying a page of records into Rust and back
    // would cost as much as the parse.
    let parsed = parse_json(&text);

    if (200..300).contains(&status) {
        let body = parsed.map_err(|_| {
            Error::BadResponse(format!("HTTP {status} with a body that is not JSON"))
        })?;
        return Ok(HttpResponse { status, body });
    }
    let retry_after_ms = match response.headers().get("Retry-After") {
        Ok(Some(value)) => parse_retry_after(&value, Some(now_ms()), MAX_RETRY_AFTER_MS),
        _ => None,
    };
    Err(error_from_body(status, parsed.ok(), retry_after_ms))
}

/// No answer of the protocol is larger: a collection is read in pages and a
/// changes-feed page is cut at about 4 MB. A body past this (a proxy's
/// padding, a misrouted download) is refused without parsing it, so it
/// costs neither the memory of a copy in Rust nor a frozen page.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

fn too_large(status: u16) -> Error {
    Error::BadResponse(format!(
        "HTTP {status} with a body over {} MB: not an answer of the protocol",
        MAX_BODY_BYTES / (1024 * 1024)
    ))
}

#[wasm_bindgen(inline_js = r#"
export function parseJson(text) {
  // An empty body is no value; anything else must be JSON.
  return typeof text === "string" && text.trim() !== "" ? JSON.parse(text) : undefined;
}
// The records of values[from..to) as one string, for the engine to read a
// run of them at once (one crossing into wasm instead of a dozen a record):
// tokens joined by U+0001, each record "r", id, version, updatedAt,
// updatedBy, the field count, each field's name and value (0 null, 1 false,
// 2 true, 3 a number, the next of `numbers`, 4 and a text), the comment count, each comment's
// id, author, text and createdAt. A record of any other shape (or with
// U+0001 in a text) is "x": the engine reads that one from its object, and
// says what is wrong with it (web::de).
const SEP = "\u0001";
const plain = (s) => typeof s === "string" && s.indexOf(SEP) < 0;
const isMap = (o) => o !== null && typeof o === "object" && !Array.isArray(o);
function writeRecord(v, out, numbers) {
  if (!isMap(v)) return false;
  const { id, version, updatedAt, updatedBy, fields, comments } = v;
  if (!plain(id) || !Number.isSafeInteger(version) || version < 0) return false;
  if ((updatedAt !== undefined && !plain(updatedAt)) || (updatedBy !== undefined && !plain(updatedBy))) return false;
  out.push("r", id, String(version), updatedAt === undefined ? "" : updatedAt, updatedBy === undefined ? "" : updatedBy);
  if (fields === undefined) {
    out.push("0");
  } else {
    if (!isMap(fields)) return false;
    const names = Object.keys(fields);
    out.push(String(names.length));
    for (const name of names) {
      const f = fields[name];
      if (!plain(name)) return false;
      out.push(name);
      if (typeof f === "string") {
        if (f.indexOf(SEP) >= 0) return false;
        out.push("4" + f);
      } else if (typeof f === "number") {
        // Beside the text (no parser of numbers in the module).
        out.push("3");
        numbers.push(f);
      } else if (f === true) out.push("2");
      else if (f === false) out.push("1");
      else if (f === null || f === undefined) out.push("0");
      else return false;
    }
  }
  if (comments === undefined) {
    out.push("0");
  } else {
    if (!Array.isArray(comments)) return false;
    out.push(String(comments.length));
    for (const c of comments) {
      if (!isMap(c) || !plain(c.id) || !plain(c.author) || !plain(c.text) || !plain(c.createdAt)) return false;
      out.push(c.id, c.author, c.text, c.createdAt);
    }
  }
  return true;
}
export function recordsText(values, from, to, numbers) {
  const out = [];
  for (let i = from; i < to; i++) {
    const at = out.length;
    const counted = numbers.length;
    if (!writeRecord(values[i], out, numbers)) {
      out.length = at;
      numbers.length = counted;
      out.push("x");
    }
  }
  return out.join(SEP);
}
// Whether `o`, a record object handed out before, shows this version,
// comment count and staleness (the server's own objects may lack `comments`).
function fits(o, version, comments, stale) {
  return o !== undefined && o !== null && o.version === version &&
    (o.comments ? o.comments.length : 0) === comments && (o.stale === true) === stale;
}
export class RecordObjects {
  constructor() {
    this.kept = new Map();
    // An object the app no longer holds takes its entry with it (held
    // strongly where the browser has no WeakRef).
    this.gone = typeof FinalizationRegistry === "function"
      ? new FinalizationRegistry((key) => {
          const ref = this.kept.get(key);
          if (ref !== undefined && ref.deref() === undefined) this.kept.delete(key);
        })
      : undefined;
    // Objects kept strongly for now, each made weak later (see `hold`).
    this.held = new Map();
    this.holding = false;
  }
  known(key) {
    const held = this.held.get(key);
    if (held !== undefined) return held;
    const ref = this.kept.get(key);
    return ref === undefined ? undefined : ref.deref();
  }
  take(key, version, comments, stale, candidate, later) {
    const known = this.known(key);
    if (fits(known, version, comments, stale)) return known;
    if (fits(candidate, version, comments, stale)) {
      if (later) this.hold(key, candidate);
      else this.keep(key, candidate);
      return candidate;
    }
    return undefined;
  }
  // The stored objects of values[from..from + same.length) that `same`
  // marks (1: the engine holds the record at the version and comments it
  // shows), just laid in, marked stale or not: with `answer`, each as
  // `take` hands it out pushed onto it (in order), else set in `fresh` by id.
  layRun(collection, values, from, same, stale, fresh, answer) {
    for (let i = 0; i < same.length; i++) {
      if (same[i] !== 1) continue;
      const v = values[from + i];
      v.stale = stale;
      if (answer !== undefined) {
        const comments = v.comments ? v.comments.length : 0;
        answer.push(this.take(collection + "\u0000" + v.id, v.version, comments, stale, v, true));
      } else {
        fresh.set(v.id, v);
      }
    }
  }
  // Kept as `keep` keeps it, but strongly until the page has had its
  // turn: a WeakRef and a registry entry cost some microseconds each (half
  // a second for 100,000 records read back), so they are made a few
  // milliseconds at a time once the work at hand is done (a timer: after
  // the load's own turns).
  hold(key, value) {
    this.held.set(key, value);
    if (this.holding) return;
    this.holding = true;
    const release = () => {
      const end = performance.now() + 4;
      let n = 0;
      for (const [key, value] of this.held) {
        this.keep(key, value);
        if ((++n & 63) === 0 && performance.now() > end) break;
      }
      if (this.held.size > 0) setTimeout(release, 0);
      else this.holding = false;
    };
    setTimeout(release, 0);
  }
  keep(key, value) {
    this.held.delete(key);
    if (this.gone === undefined || typeof WeakRef !== "function") {
      this.kept.set(key, { deref: () => value });
      return;
    }
    this.kept.set(key, new WeakRef(value));
    this.gone.register(value, key);
  }
}
"#)]
extern "C" {
    #[wasm_bindgen(js_name = parseJson, catch)]
    fn parse_json(text: &JsValue) -> Result<JsValue, JsValue>;

    // The record objects' class (`web::client::reads`) shares this module,
    // whose objects it mostly keeps: each `inline_js` is one more module
    // the page fetches before the wasm, and a fourth one left the browser
    // suite's page waiting for ever for the wasm from the test runner's
    // server (docs/performance.md, "Memory").

    /// The record objects handed out, held weakly: while the app holds one
    /// (a list it renders, a record in its state), the same record version
    /// gets the same object, so a change of one record makes one new
    /// object; objects nobody holds are collected with their entries, so
    /// the JS heap holds the records the app holds, not every record.
    pub(crate) type RecordObjects;
    #[wasm_bindgen(constructor)]
    pub(crate) fn new() -> RecordObjects;
    /// The kept object of `key` if it still fits, else `candidate` (an
    /// object of the record made elsewhere, e.g. the server's) if it fits
    /// (kept from now on), else `undefined`.
    #[wasm_bindgen(method)]
    pub(crate) fn take(
        this: &RecordObjects,
        key: &str,
        version: f64,
        comments: u32,
        stale: bool,
        candidate: &JsValue,
    ) -> JsValue;
    #[wasm_bindgen(method)]
    pub(crate) fn keep(this: &RecordObjects, key: &str, value: &JsValue);
    /// The stored objects of a run of records just laid in
    /// (`web::client::load`): those `same` marks with 1 marked `stale` or
    /// not; with `answer` (else `undefined`), each as
    /// [`RecordObjects::take`] hands it out pushed onto it (kept strongly
    /// until the page has had its turn, then weakly), else set in `fresh`
    /// by id.
    #[wasm_bindgen(method, js_name = layRun)]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn lay_run(
        this: &RecordObjects,
        collection: &str,
        values: &js_sys::Array,
        from: u32,
        same: &[u8],
        stale: bool,
        fresh: &js_sys::Map,
        answer: &JsValue,
    );
    /// The records of `values[from..to)` written as one text for
    /// [`crate::web::de::read_records`], their numbers pushed onto
    /// `numbers`.
    #[wasm_bindgen(js_name = recordsText)]
    pub(crate) fn records_text(
        values: &js_sys::Array,
        from: u32,
        to: u32,
        numbers: &js_sys::Array,
    ) -> String;
}

/// A server may ask for a pause; longer than this is not waited for.
const MAX_RETRY_AFTER_MS: u64 = 60_000;

/// The error for a non-2xx status and its (maybe absent or foreign) body.
fn error_from_body(status: u16, body: Option<JsValue>, retry_after_ms: Option<u64>) -> Error {
    let error = body
        .as_ref()
        .map(|b| get(b, "error"))
        .unwrap_or(JsValue::UNDEFINED);
    let wire = get(&error, "code").as_string();
    let code = ErrorCode::from_http(status, wire.as_deref());
    let message = get(&error, "message")
        .as_string()
        .unwrap_or_else(|| format!("HTTP {status}"));
    Error::Http {
        code,
        status,
        message,
        details: get(&error, "details"),
        retry_after_ms,
    }
}
