//! What the browser suites share: the test server's address, logins.

use crm_sync::api::CrmSync;
use wasm_bindgen::JsValue;

/// The reference server started by scripts/test.sh (with `--cors --demo`).
pub fn server() -> &'static str {
    option_env!("CRM_TEST_SERVER").unwrap_or("http://127.0.0.1:18931")
}

/// `{ baseUrl, username, password }` for a demo user.
pub fn login_options(user: &str, password: &str) -> JsValue {
    let o = js_sys::Object::new();
    let api = format!("{}/api", server());
    js_sys::Reflect::set(&o, &"baseUrl".into(), &api.into()).unwrap();
    js_sys::Reflect::set(&o, &"username".into(), &user.into()).unwrap();
    js_sys::Reflect::set(&o, &"password".into(), &password.into()).unwrap();
    o.into()
}

/// A logged-in client for a demo user.
pub async fn login(user: &str) -> CrmSync {
    CrmSync::login(login_options(user, "demo"))
        .await
        .unwrap_or_else(|e| panic!("login {user}: {e:?}"))
}

/// A property of a JS value.
pub fn prop(v: &JsValue, key: &str) -> JsValue {
    js_sys::Reflect::get(v, &key.into()).unwrap()
}

/// A request to the test server with plain `fetch` (not through the
/// module), with the user's bearer token and any other headers.
pub async fn fetch_as(
    token: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> web_sys::Response {
    let init = web_sys::RequestInit::new();
    init.set_method(method);
    let h = web_sys::Headers::new().unwrap();
    h.set("Authorization", &format!("Bearer {token}")).unwrap();
    for (name, value) in headers {
        h.set(name, value).unwrap();
    }
    init.set_headers(&h);
    if let Some(body) = body {
        init.set_body(&JsValue::from_str(body));
    }
    let url = format!("{}{path}", server());
    let window = web_sys::window().unwrap();
    wasm_bindgen_futures::JsFuture::from(window.fetch_with_str_and_init(&url, &init))
        .await
        .unwrap()
        .into()
}

/// `{ k: v, ... }`.
pub fn obj(pairs: &[(&str, JsValue)]) -> JsValue {
    let o = js_sys::Object::new();
    for (k, v) in pairs {
        js_sys::Reflect::set(&o, &(*k).into(), v).unwrap();
    }
    o.into()
}

/// The value a promise resolves to; panics with the rejection.
pub async fn resolved(p: js_sys::Promise) -> JsValue {
    wasm_bindgen_futures::JsFuture::from(p)
        .await
        .unwrap_or_else(|e| panic!("rejected: {e:?}"))
}

/// The error a promise rejects with; panics if it resolves.
pub async fn rejected(p: js_sys::Promise) -> JsValue {
    match wasm_bindgen_futures::JsFuture::from(p).await {
        Ok(v) => panic!("resolved, but a rejection was expected: {v:?}"),
        Err(e) => e,
    }
}

/// Waits until `cond` holds, checking every 20 ms, for at most `ms`;
/// whether it came to hold. (A bound on waiting, not a timing assertion:
/// it is kept far above what any machine needs.)
pub async fn eventually(ms: u32, mut cond: impl FnMut() -> bool) -> bool {
    let start = js_sys::Date::now();
    while js_sys::Date::now() - start < f64::from(ms) {
        if cond() {
            return true;
        }
        gloo_timers::future::TimeoutFuture::new(20).await;
    }
    cond()
}

/// A random tag that keeps one run's data apart from another's.
pub fn tag() -> String {
    format!("{:x}", (js_sys::Math::random() * 1e12) as u64)
}
