//! `crm.history(collection, id)` against the reference server: who changed
//! which field from what to what, newest first, and its typed errors.
//! Logs in as `user27` (no other suite uses it alone) and works on a `deals`
//! record of its own.

use js_sys::{Array, Object, Reflect};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::wasm_bindgen_test;

use super::support::{login, prop};

fn obj(pairs: &[(&str, JsValue)]) -> JsValue {
    let o = Object::new();
    for (k, v) in pairs {
        Reflect::set(&o, &(*k).into(), v).unwrap();
    }
    o.into()
}

fn change(entry: &JsValue, field: &str) -> (JsValue, JsValue) {
    let c = prop(&prop(entry, "changes"), field);
    (prop(&c, "from"), prop(&c, "to"))
}

async fn error_of(p: js_sys::Promise) -> JsValue {
    match JsFuture::from(p).await {
        Ok(v) => panic!("resolved with {v:?}"),
        Err(e) => e,
    }
}

#[wasm_bindgen_test]
async fn history_lists_each_committed_change_newest_first() {
    let crm = login("user27").await;
    let tag = format!("{:x}", (js_sys::Math::random() * 1e12) as u64);
    let fields = obj(&[
        ("title", format!("History {tag}").into()),
        ("amount", 100.into()),
    ]);
    let created = JsFuture::from(crm.create("deals".into(), fields))
        .await
        .unwrap();
    assert_eq!(
        prop(&created, "status").as_string().as_deref(),
        Some("committed")
    );
    let id = prop(&prop(&created, "record"), "id").as_string().unwrap();

    let saved = JsFuture::from(crm.save(
        "deals".into(),
        id.clone(),
        obj(&[("amount", 250.into()), ("stage", "won".into())]),
    ))
    .await
    .unwrap();
    assert_eq!(
        prop(&saved, "status").as_string().as_deref(),
        Some("committed")
    );

    let items: Array = JsFuture::from(crm.history("deals".into(), id.clone(), JsValue::UNDEFINED))
        .await
        .unwrap()
        .into();
    assert_eq!(items.length(), 2);
    let newest = items.get(0);
    assert_eq!(prop(&newest, "version").as_f64(), Some(2.0));
    assert_eq!(prop(&newest, "by").as_string().as_deref(), Some("user27"));
    assert_eq!(prop(&newest, "op").as_string().as_deref(), Some("update"));
    assert!(prop(&newest, "at").as_string().unwrap().contains('T'));
    assert_eq!(change(&newest, "amount"), (100.into(), 250.into()));
    assert_eq!(change(&newest, "stage"), (JsValue::NULL, "won".into()));
    assert!(prop(&prop(&newest, "changes"), "title").is_undefined());
    let first = items.get(1);
    assert_eq!(prop(&first, "op").as_string().as_deref(), Some("create"));
    assert_eq!(change(&first, "amount"), (JsValue::NULL, 100.into()));

    let one: Array =
        JsFuture::from(crm.history("deals".into(), id.clone(), obj(&[("limit", 1.into())])))
            .await
            .unwrap()
            .into();
    assert_eq!(one.length(), 1);
    assert_eq!(prop(&one.get(0), "version").as_f64(), Some(2.0));
    crm.close();
}

#[wasm_bindgen_test]
async fn history_errors_are_typed() {
    let crm = login("user27").await;
    let code = |e: &JsValue| prop(e, "code").as_string().unwrap_or_default();

    let e = error_of(crm.history(
        "deals".into(),
        "no-such-deal-ever".into(),
        JsValue::UNDEFINED,
    ))
    .await;
    assert_eq!(code(&e), "not_found");
    assert_eq!(prop(&e, "status").as_f64(), Some(404.0));
    assert!(e.is_instance_of::<js_sys::Error>());

    let e = error_of(crm.history("Not A Name".into(), "x".into(), JsValue::UNDEFINED)).await;
    assert_eq!(code(&e), "invalid");
    let e = error_of(crm.history("deals".into(), String::new(), JsValue::UNDEFINED)).await;
    assert_eq!(code(&e), "invalid");
    for limit in [0, 1001] {
        let e = error_of(crm.history(
            "customers".into(),
            "c-0001".into(),
            obj(&[("limit", limit.into())]),
        ))
        .await;
        assert_eq!(code(&e), "invalid", "limit {limit}");
    }
    let e = error_of(crm.history(
        "customers".into(),
        "c-0001".into(),
        obj(&[("limit", "ten".into())]),
    ))
    .await;
    assert_eq!(code(&e), "invalid");
    crm.close();
}
