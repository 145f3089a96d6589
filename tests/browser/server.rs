//! The module against the reference server over real HTTP.

use crm_sync::api::CrmSync;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::wasm_bindgen_test;

use super::support::{login, login_options, prop};

#[wasm_bindgen_test]
async fn login_and_load_customers_from_the_server() {
    let crm = login("alice").await;
    assert_eq!(crm.user(), "alice");
    assert!(crm.token().len() >= 32, "token: {}", crm.token());

    let loaded = JsFuture::from(crm.load("customers".into(), None))
        .await
        .unwrap();
    let loaded: js_sys::Array = loaded.into();
    // The demo's 200 customers, and those other tests of the suite made on
    // the same server before this one (their order changes with the build).
    assert!(loaded.length() >= 200, "{} customers", loaded.length());
    let first = loaded.get(0);
    let id = prop(&first, "id").as_string().unwrap();
    assert!(prop(&first, "version").as_f64().unwrap() >= 1.0);

    let got = crm.get("customers", &id).unwrap();
    assert_eq!(prop(&got, "id").as_string(), Some(id));
    assert!(prop(&prop(&got, "fields"), "name").is_string());
    let listed: js_sys::Array = crm.list("customers").unwrap().into();
    assert_eq!(listed.length(), loaded.length());
    assert!(crm.get("customers", "no-such-id").unwrap().is_undefined());
    crm.close();
}

#[wasm_bindgen_test]
async fn bad_password_is_unauthorized_with_status() {
    let err = match CrmSync::login(login_options("alice", "wrong")).await {
        Ok(_) => panic!("logged in with a wrong password"),
        Err(e) => e,
    };
    assert_eq!(
        prop(&err, "code").as_string().as_deref(),
        Some("unauthorized")
    );
    assert_eq!(prop(&err, "status").as_f64(), Some(401.0));
    assert!(err.is_instance_of::<js_sys::Error>());
}

#[wasm_bindgen_test]
async fn logout_revokes_the_token() {
    let crm = login("bob").await;
    let token = crm.token();
    JsFuture::from(crm.logout(None)).await.unwrap();
    let o = js_sys::Object::new();
    let api = format!("{}/api", super::support::server());
    js_sys::Reflect::set(&o, &"baseUrl".into(), &api.into()).unwrap();
    js_sys::Reflect::set(&o, &"token".into(), &token.into()).unwrap();
    // Opening asks the server whose token it is: a revoked one is refused.
    let err = CrmSync::open(o.into()).await.err().unwrap();
    assert_eq!(
        prop(&err, "code").as_string().as_deref(),
        Some("unauthorized")
    );
}

#[wasm_bindgen_test]
async fn unreachable_server_is_a_network_error() {
    let o = js_sys::Object::new();
    js_sys::Reflect::set(&o, &"baseUrl".into(), &"http://127.0.0.1:9/api".into()).unwrap();
    js_sys::Reflect::set(&o, &"username".into(), &"a".into()).unwrap();
    js_sys::Reflect::set(&o, &"password".into(), &"b".into()).unwrap();
    let err = CrmSync::login(o.into()).await.err().unwrap();
    assert_eq!(prop(&err, "code").as_string().as_deref(), Some("network"));
}

#[wasm_bindgen_test]
async fn bad_collection_name_is_invalid_not_a_panic() {
    let crm = login("alice").await;
    let err = crm.get("../etc", "x").unwrap_err();
    assert_eq!(prop(&err, "code").as_string().as_deref(), Some("invalid"));
    let err = CrmSync::open(JsValue::from(42)).await.err().unwrap();
    assert_eq!(prop(&err, "code").as_string().as_deref(), Some("invalid"));
}
