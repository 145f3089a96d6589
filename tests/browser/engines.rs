//! What differs between browser engines, run in each of them (Chromium,
//! Firefox and WebKit: scripts/test.sh): persistent storage as the browser
//! grants it (`status.durable`, `crm.persist()`), and what a browser too
//! old for one of the module's APIs gets at open: a fallback, or the
//! `unsupported` error. An older browser is played by hiding the API from
//! this page for the length of one open (docs/guide/browsers.md lists what
//! each engine needs).

use js_sys::Promise;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::wasm_bindgen_test;

use super::support::{login, login_options, prop, within};
use crm_sync::api::CrmSync;

#[wasm_bindgen(module = "/tests/browser/helpers.js")]
extern "C" {
    #[wasm_bindgen(js_name = browserPersisted)]
    fn browser_persisted() -> Promise;
    #[wasm_bindgen(js_name = storageManagerPresent)]
    fn storage_manager_present() -> bool;
    #[wasm_bindgen(js_name = engineName)]
    fn engine_name() -> String;
    #[wasm_bindgen(js_name = withoutApis)]
    fn without_apis(names: Vec<JsValue>) -> js_sys::Function;
}

async fn persisted_now() -> bool {
    JsFuture::from(browser_persisted())
        .await
        .unwrap()
        .as_bool()
        .unwrap()
}

fn durable(crm: &CrmSync) -> Option<bool> {
    prop(&crm.status(), "durable").as_bool()
}

/// Opens a client with the APIs `hidden` missing from the page, and puts
/// them back before it returns.
async fn login_without(hidden: &[&str], user: &str) -> Result<CrmSync, JsValue> {
    let names = hidden.iter().map(|n| JsValue::from_str(n)).collect();
    let restore = without_apis(names);
    let opened = CrmSync::login(login_options(user, "demo")).await;
    restore.call0(&JsValue::UNDEFINED).unwrap();
    opened
}

#[wasm_bindgen_test]
async fn durable_is_the_browsers_answer_and_persist_asks_for_it_in_every_tab() {
    let a = login("user24").await;
    let b = login("user24").await;
    let engine = engine_name();
    // Opening asks nothing (Firefox would show the person a prompt): the
    // answer is the browser's, and each engine starts from a fresh profile
    // without persistent storage.
    assert_eq!(durable(&a), Some(false), "{engine}: durable at open");
    assert!(!persisted_now().await, "{engine}: a fresh profile");

    let answer = JsFuture::from(a.persist()).await.unwrap();
    let now = persisted_now().await;
    assert_eq!(
        answer.as_bool(),
        Some(now),
        "{engine}: persist() answers the truth"
    );
    assert_eq!(durable(&a), Some(now), "{engine}: this tab's status");
    assert!(
        within(2_000, || durable(&b) == Some(now)).await.is_some(),
        "{engine}: the other tab's status follows"
    );
    // What each engine answers here, and so what the lines above covered.
    match engine.as_str() {
        // It asks the person; the suite's profile answers yes
        // (webdriver.json), so the other tab's status really changed.
        "firefox" => assert!(now, "firefox: granted from the prompt"),
        // It decides from how the site has been used, without asking; a
        // fresh profile's local page has not been used at all.
        "chromium" => assert!(!now, "chromium: refused to a site never used"),
        // WebKitGTK has no navigator.storage: the fallback, never durable.
        _ => assert!(
            !storage_manager_present() && !now,
            "webkit: no storage manager, so never durable"
        ),
    }
    a.close();
    b.close();
}

#[wasm_bindgen_test]
async fn without_navigator_storage_nothing_is_durable_and_persist_says_so() {
    let crm = login_without(&["navigator.storage"], "user25")
        .await
        .unwrap();
    // Hidden again for the question itself.
    let restore = without_apis(vec!["navigator.storage".into()]);
    let answer = JsFuture::from(crm.persist()).await;
    restore.call0(&JsValue::UNDEFINED).unwrap();
    assert_eq!(answer.unwrap().as_bool(), Some(false));
    assert_eq!(durable(&crm), Some(false));
    assert_eq!(
        prop(&crm.status(), "storage").as_string().as_deref(),
        Some("indexeddb"),
        "the rest works as ever"
    );
    crm.close();
}

#[wasm_bindgen_test]
async fn without_web_locks_tabs_agree_over_broadcast_channel() {
    let crm = login_without(&["navigator.locks"], "user28").await.unwrap();
    assert_eq!(
        prop(&crm.tabs(), "mode").as_string().as_deref(),
        Some("broadcast")
    );
    assert!(
        within(5_000, || prop(&crm.tabs(), "isLeader").as_bool()
            == Some(true))
        .await
        .is_some(),
        "a lone tab leads"
    );
    crm.close();
}

#[wasm_bindgen_test]
async fn a_browser_without_web_locks_or_broadcast_channel_gets_unsupported_at_open() {
    let err = match login_without(&["navigator.locks", "BroadcastChannel"], "user30").await {
        Ok(crm) => {
            crm.close();
            panic!("opened without any way to coordinate tabs");
        }
        Err(e) => e,
    };
    assert_eq!(
        prop(&err, "code").as_string().as_deref(),
        Some("unsupported")
    );
    let message = prop(&err, "message").as_string().unwrap();
    assert!(
        message.contains("Web Locks") && message.contains("BroadcastChannel"),
        "{message}"
    );
    assert!(message.contains("Safari 15.4"), "{message}");
}
