//! IndexedDB: `LocalStore` as JavaScript sees it, and the `web::idb` layer
//! under it (`Db`, `UserDb`). Every test uses its own database name:
//! databases outlive a test within one browser session.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use crm_sync::api::LocalStore;
use crm_sync::error::Error;
use crm_sync::web::idb::{
    error_from_js, record_key, Batch, CloseReason, Db, Migration, OpenOptions, Schema, Store,
    Upgrade, UserDb,
};
use js_sys::{Array, Function, Promise};
use serde_json::json;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::wasm_bindgen_test;

use super::support::prop;

#[wasm_bindgen(module = "/tests/browser/helpers.js")]
extern "C" {
    #[wasm_bindgen(js_name = richValue)]
    fn rich_value() -> JsValue;
    #[wasm_bindgen(js_name = isRichValue)]
    fn is_rich_value(v: &JsValue, original: &JsValue) -> bool;
    #[wasm_bindgen(js_name = openRaw)]
    fn open_raw(name: &str, version: u32) -> Promise;
    #[wasm_bindgen(js_name = closeRaw)]
    fn close_raw(db: &JsValue);
    #[wasm_bindgen(js_name = closeRawLater)]
    fn close_raw_later(db: &JsValue, ms: u32);
    #[wasm_bindgen(js_name = deleteRaw)]
    fn delete_raw(name: &str);
    #[wasm_bindgen(js_name = currentVersion)]
    fn current_version(name: &str) -> Promise;
    #[wasm_bindgen(js_name = storeCount)]
    fn store_count(name: &str) -> Promise;
    fn settle(promises: &Array) -> Promise;
    #[wasm_bindgen(js_name = putRaw)]
    fn put_raw(name: &str, store: &str, key: &str, value: &JsValue) -> Promise;
    #[wasm_bindgen(js_name = domException)]
    fn dom_exception(name: &str, message: &str) -> JsValue;
}

fn unique(label: &str) -> String {
    format!(
        "test-{label}-{}-{}",
        js_sys::Date::now(),
        (js_sys::Math::random() * 1e9) as u64
    )
}

async fn settled(p: Promise) -> Result<JsValue, JsValue> {
    JsFuture::from(p).await
}

async fn open_store(name: &str) -> LocalStore {
    LocalStore::open(name.to_owned()).await.unwrap()
}

fn code(err: &JsValue) -> Option<String> {
    prop(err, "code").as_string()
}

fn js_fn(args: &str, body: &str) -> Function {
    Function::new_with_args(args, body)
}

#[wasm_bindgen_test]
async fn local_store_round_trips_nested_values_by_structured_clone() {
    let store = open_store(&unique("rich")).await;
    let original = rich_value();
    let version = settled(store.put("k".into(), original.clone(), JsValue::UNDEFINED))
        .await
        .unwrap();
    assert_eq!(version.as_f64(), Some(1.0));
    let got = settled(store.get("k".into())).await.unwrap();
    assert_eq!(prop(&got, "version").as_f64(), Some(1.0));
    assert!(is_rich_value(&prop(&got, "value"), &original));
    assert!(settled(store.get("absent".into()))
        .await
        .unwrap()
        .is_undefined());
}

#[wasm_bindgen_test]
async fn local_store_refuses_a_stale_put_and_writes_nothing() {
    let store = open_store(&unique("stale")).await;
    let v1 = settled(store.put("k".into(), "one".into(), JsValue::NULL)).await;
    assert_eq!(v1.unwrap().as_f64(), Some(1.0));
    let v2 = settled(store.put("k".into(), "two".into(), 1.into())).await;
    assert_eq!(v2.unwrap().as_f64(), Some(2.0));

    let err = settled(store.put("k".into(), "three".into(), 1.into()))
        .await
        .unwrap_err();
    assert_eq!(code(&err).as_deref(), Some("version_mismatch"));
    assert_eq!(prop(&prop(&err, "details"), "expected").as_f64(), Some(1.0));
    assert_eq!(prop(&prop(&err, "details"), "found").as_f64(), Some(2.0));
    // "Must not exist" on an existing key is stale too.
    let err = settled(store.put("k".into(), "four".into(), JsValue::UNDEFINED))
        .await
        .unwrap_err();
    assert_eq!(code(&err).as_deref(), Some("version_mismatch"));

    let got = settled(store.get("k".into())).await.unwrap();
    assert_eq!(prop(&got, "value").as_string().as_deref(), Some("two"));
    assert_eq!(prop(&got, "version").as_f64(), Some(2.0));
}

#[wasm_bindgen_test]
async fn local_store_put_with_a_version_on_a_missing_key_is_refused() {
    let store = open_store(&unique("missing")).await;
    let err = settled(store.put("k".into(), "x".into(), 3.into()))
        .await
        .unwrap_err();
    assert_eq!(code(&err).as_deref(), Some("version_mismatch"));
    assert_eq!(prop(&prop(&err, "details"), "found").as_f64(), Some(0.0));
    assert!(settled(store.get("k".into())).await.unwrap().is_undefined());

    for bad in [JsValue::from(-1), JsValue::from(1.5), JsValue::from("1")] {
        let err = settled(store.put("k".into(), "x".into(), bad))
            .await
            .unwrap_err();
        assert_eq!(code(&err).as_deref(), Some("invalid"));
    }
    // A value that cannot be cloned is the app's error, and writes nothing.
    let err = settled(store.put("k".into(), js_fn("", "").into(), JsValue::UNDEFINED))
        .await
        .unwrap_err();
    assert_eq!(code(&err).as_deref(), Some("invalid"));
    assert!(
        settled(store.keys())
            .await
            .unwrap()
            .unchecked_into::<Array>()
            .length()
            == 0
    );
}

#[wasm_bindgen_test]
async fn local_store_updates_from_four_connections_add_up_to_400() {
    let name = unique("counter");
    let mut stores = Vec::new();
    for _ in 0..4 {
        stores.push(open_store(&name).await);
    }
    let increment = js_fn("n", "return (n === undefined ? 0 : n) + 1;");
    let all = Array::new();
    for _round in 0..100 {
        for store in &stores {
            all.push(&store.update("k".into(), increment.clone()));
        }
    }
    let results = settled(Promise::all(&all)).await.unwrap();
    let versions: Vec<f64> = results
        .unchecked_into::<Array>()
        .iter()
        .map(|r| prop(&r, "version").as_f64().unwrap())
        .collect();
    assert_eq!(versions.len(), 400);
    let mut sorted = versions.clone();
    sorted.sort_by(f64::total_cmp);
    let expected: Vec<f64> = (1..=400).map(f64::from).collect();
    assert_eq!(sorted, expected, "every update saw its own version");

    let got = settled(stores[0].get("k".into())).await.unwrap();
    assert_eq!(prop(&got, "value").as_f64(), Some(400.0));
    assert_eq!(prop(&got, "version").as_f64(), Some(400.0));
}

#[wasm_bindgen_test]
async fn local_store_concurrent_puts_on_one_version_have_one_winner() {
    let name = unique("race");
    let mut stores = Vec::new();
    for _ in 0..4 {
        stores.push(open_store(&name).await);
    }
    settled(stores[0].put("k".into(), "base".into(), JsValue::UNDEFINED))
        .await
        .unwrap();
    let all = Array::new();
    for i in 0..24 {
        let store = &stores[i % stores.len()];
        all.push(&store.put("k".into(), format!("writer {i}").into(), 1.into()));
    }
    let outcomes = settled(settle(&all)).await.unwrap();
    let mut winners = Vec::new();
    for (i, outcome) in outcomes.unchecked_into::<Array>().iter().enumerate() {
        match prop(&outcome, "status").as_string().as_deref() {
            Some("fulfilled") => {
                assert_eq!(prop(&outcome, "value").as_f64(), Some(2.0));
                winners.push(i);
            }
            _ => assert_eq!(
                code(&prop(&outcome, "reason")).as_deref(),
                Some("version_mismatch")
            ),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one put wins");
    let got = settled(stores[3].get("k".into())).await.unwrap();
    assert_eq!(prop(&got, "version").as_f64(), Some(2.0));
    assert_eq!(
        prop(&got, "value").as_string(),
        Some(format!("writer {}", winners[0]))
    );
}

#[wasm_bindgen_test]
async fn local_store_lists_keys_in_order() {
    let store = open_store(&unique("keys")).await;
    for key in ["b", "a", "c/1"] {
        settled(store.put(key.into(), 1.into(), JsValue::UNDEFINED))
            .await
            .unwrap();
    }
    let keys: Vec<String> = settled(store.keys())
        .await
        .unwrap()
        .unchecked_into::<Array>()
        .iter()
        .map(|k| k.as_string().unwrap())
        .collect();
    assert_eq!(keys, ["a", "b", "c/1"]);
}

#[wasm_bindgen_test]
async fn local_store_delete_checks_the_version() {
    let store = open_store(&unique("delete")).await;
    settled(store.put("k".into(), 1.into(), JsValue::UNDEFINED))
        .await
        .unwrap();
    settled(store.put("k".into(), 2.into(), 1.into()))
        .await
        .unwrap();

    let err = settled(store.delete("k".into(), 1.into()))
        .await
        .unwrap_err();
    assert_eq!(code(&err).as_deref(), Some("version_mismatch"));
    let err = settled(store.delete("k".into(), JsValue::UNDEFINED))
        .await
        .unwrap_err();
    assert_eq!(
        code(&err).as_deref(),
        Some("invalid"),
        "the version is required"
    );
    assert!(!settled(store.get("k".into())).await.unwrap().is_undefined());

    let deleted = settled(store.delete("k".into(), 2.into())).await.unwrap();
    assert_eq!(deleted, JsValue::TRUE);
    assert!(settled(store.get("k".into())).await.unwrap().is_undefined());
    let deleted = settled(store.delete("k".into(), 0.into())).await.unwrap();
    assert_eq!(
        deleted,
        JsValue::FALSE,
        "0: must not exist, and it does not"
    );
    // A new value starts at version 1 again.
    let v = settled(store.put("k".into(), 3.into(), 0.into()))
        .await
        .unwrap();
    assert_eq!(v.as_f64(), Some(1.0));
}

#[wasm_bindgen_test]
async fn local_store_update_that_throws_writes_nothing() {
    let store = open_store(&unique("throws")).await;
    settled(store.put("k".into(), 5.into(), JsValue::UNDEFINED))
        .await
        .unwrap();

    let thrower = js_fn("n", "throw new RangeError('no thanks: ' + n);");
    let err = settled(store.update("k".into(), thrower))
        .await
        .unwrap_err();
    assert!(
        err.is_instance_of::<js_sys::RangeError>(),
        "the app's own error"
    );
    assert_eq!(
        prop(&err, "message").as_string().as_deref(),
        Some("no thanks: 5")
    );

    let asynchronous = js_fn("n", "return Promise.resolve(n + 1);");
    let err = settled(store.update("k".into(), asynchronous))
        .await
        .unwrap_err();
    assert_eq!(code(&err).as_deref(), Some("invalid"));

    let uncloneable = js_fn("n", "return () => n;");
    let err = settled(store.update("k".into(), uncloneable))
        .await
        .unwrap_err();
    assert_eq!(code(&err).as_deref(), Some("invalid"));

    let got = settled(store.get("k".into())).await.unwrap();
    assert_eq!(prop(&got, "value").as_f64(), Some(5.0));
    assert_eq!(prop(&got, "version").as_f64(), Some(1.0));

    // And a fresh key: update from undefined.
    let made = settled(store.update("new".into(), js_fn("n", "return [n];")))
        .await
        .unwrap();
    assert_eq!(prop(&made, "version").as_f64(), Some(1.0));
    assert!(Array::from(&prop(&made, "value")).get(0).is_undefined());
}

#[wasm_bindgen_test]
async fn local_store_rejects_closed_after_close() {
    let store = open_store(&unique("close")).await;
    store.close();
    let err = settled(store.get("k".into())).await.unwrap_err();
    assert_eq!(code(&err).as_deref(), Some("closed"));
}

/// What a client holds while IndexedDB is full: each later batch appended,
/// an entry written twice kept once, in the order of the last write.
#[wasm_bindgen_test]
async fn user_db_store_appended_batches_keep_one_write_per_entry() {
    let db = UserDb::open(&unique("append")).await.unwrap();
    let mut held = Batch::new();
    held.put(Store::Meta, "a", &json!(1)).unwrap();
    held.put(Store::Meta, "b", &json!(1)).unwrap();
    held.put(Store::Outbox, "a", &json!("other store")).unwrap();
    let mut later = Batch::new();
    later.delete(Store::Meta, "a");
    later.put(Store::Meta, "b", &json!(2)).unwrap();
    later.put(Store::Meta, "c", &json!(3)).unwrap();
    held.append(later);
    assert_eq!(
        held.len(),
        4,
        "the first writes of meta/a and meta/b are dropped"
    );
    let mut last = Batch::new();
    last.put(Store::Meta, "a", &json!(4)).unwrap();
    held.append(last);
    assert_eq!(held.len(), 4);
    db.write_batch(&held).await.unwrap();
    assert_eq!(db.get::<u32>(Store::Meta, "a").await.unwrap(), Some(4));
    assert_eq!(db.get::<u32>(Store::Meta, "b").await.unwrap(), Some(2));
    assert_eq!(db.get::<u32>(Store::Meta, "c").await.unwrap(), Some(3));
    assert_eq!(
        db.get::<String>(Store::Outbox, "a")
            .await
            .unwrap()
            .as_deref(),
        Some("other store")
    );
    let mut into_empty = Batch::new();
    into_empty.append(held);
    assert_eq!(into_empty.len(), 4);
}

#[wasm_bindgen_test]
async fn user_db_store_batch_is_all_or_nothing() {
    let user = unique("batch");
    let db = UserDb::open(&user).await.unwrap();
    let key = record_key("customers", "c1");

    let mut batch = Batch::new();
    batch
        .put(
            Store::Records,
            &key,
            &json!({ "id": "c1", "staged": { "name": "Ada" } }),
        )
        .unwrap();
    batch.put(Store::Meta, "cursor", &json!(41)).unwrap();
    // A function cannot be cloned: the put throws after two were issued.
    batch.put_js(Store::Outbox, "m-1", js_fn("", "").into());
    let err = db.write_batch(&batch).await.unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err:?}");
    assert_eq!(
        db.get::<serde_json::Value>(Store::Records, &key)
            .await
            .unwrap(),
        None
    );
    assert_eq!(db.get::<u32>(Store::Meta, "cursor").await.unwrap(), None);
    assert!(db.keys(Store::Outbox).await.unwrap().is_empty());

    let mut batch = Batch::new();
    batch
        .put(Store::Records, &key, &json!({ "id": "c1" }))
        .unwrap();
    batch
        .put(
            Store::Records,
            record_key("deals", "d1"),
            &json!({ "id": "d1" }),
        )
        .unwrap();
    batch
        .put(Store::Outbox, "m-1", &json!({ "recordKey": key }))
        .unwrap();
    db.write_batch(&batch).await.unwrap();
    let customers: Vec<(String, serde_json::Value)> = db
        .all_with_prefix(Store::Records, &record_key("customers", ""))
        .await
        .unwrap();
    assert_eq!(customers, [(key.clone(), json!({ "id": "c1" }))]);
    assert_eq!(db.keys(Store::Records).await.unwrap().len(), 2);
    let outbox: Vec<(String, serde_json::Value)> = db.all(Store::Outbox).await.unwrap();
    assert_eq!(outbox, [("m-1".to_owned(), json!({ "recordKey": key }))]);

    // Deleting in a batch, and an entry that does not fit the type.
    let mut batch = Batch::new();
    batch.delete(Store::Outbox, "m-1");
    db.write_batch(&batch).await.unwrap();
    assert!(db.keys(Store::Outbox).await.unwrap().is_empty());
    let err = db.get::<u32>(Store::Records, &key).await.unwrap_err();
    assert!(matches!(err, Error::Storage(_)), "{err:?}");
}

#[wasm_bindgen_test]
async fn user_db_store_delete_closes_open_connections() {
    let user = unique("logout");
    let db = UserDb::open(&user).await.unwrap();
    db.put(Store::Meta, "cursor", &json!(7)).await.unwrap();
    let seen: Rc<Cell<Option<CloseReason>>> = Rc::default();
    let sink = Rc::clone(&seen);
    db.on_close(move |reason| sink.set(Some(reason)));

    UserDb::delete_user(&user, 2_000).await.unwrap();
    assert_eq!(
        seen.get(),
        Some(CloseReason::VersionChange { new_version: None })
    );
    assert!(db.db().is_closed());
    let err = db.get::<u32>(Store::Meta, "cursor").await.unwrap_err();
    assert!(matches!(err, Error::Closed), "{err:?}");

    let fresh = UserDb::open(&user).await.unwrap();
    assert_eq!(fresh.get::<u32>(Store::Meta, "cursor").await.unwrap(), None);
}

fn create_entries(upgrade: &Upgrade) -> Result<(), Error> {
    upgrade.create_store("entries")
}

fn create_more(upgrade: &Upgrade) -> Result<(), Error> {
    upgrade.create_store("more")
}

const V1: &[Migration] = &[create_entries];
const V2: &[Migration] = &[create_entries, create_more];

#[wasm_bindgen_test]
async fn db_store_closes_for_a_newer_version_and_calls_back() {
    let name = unique("versionchange");
    let v1 = Schema {
        version: 1,
        migrations: V1,
    };
    let old = Db::open(&name, v1, OpenOptions::default()).await.unwrap();
    let seen: Rc<RefCell<Vec<CloseReason>>> = Rc::default();
    let sink = Rc::clone(&seen);
    old.on_close(move |reason| sink.borrow_mut().push(reason));

    let v2 = Schema {
        version: 2,
        migrations: V2,
    };
    let new = Db::open(&name, v2, OpenOptions { timeout_ms: 2_000 })
        .await
        .expect("the older connection steps aside instead of blocking");
    assert_eq!(new.version(), 2);
    assert_eq!(
        *seen.borrow(),
        [CloseReason::VersionChange {
            new_version: Some(2)
        }]
    );
    assert!(old.is_closed());
    assert!(matches!(old.get("entries", "k").await, Err(Error::Closed)));
    assert_eq!(new.get("more", "k").await.unwrap(), None);

    // Registering after the fact still hears of it.
    let late = Rc::new(Cell::new(false));
    let flag = Rc::clone(&late);
    old.on_close(move |_| flag.set(true));
    assert!(late.get());

    // An older schema cannot open the newer database.
    let err = Db::open(&name, v1, OpenOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Storage(_)), "{err:?}");
}

#[wasm_bindgen_test]
async fn db_store_blocked_upgrade_reports_storage_in_time() {
    let name = unique("blocked");
    // A connection that ignores `versionchange`, like a tab running old code.
    let stubborn = settled(open_raw(&name, 1)).await.unwrap();

    let v2 = Schema {
        version: 2,
        migrations: V2,
    };
    let started = js_sys::Date::now();
    let err = Db::open(&name, v2, OpenOptions { timeout_ms: 300 })
        .await
        .unwrap_err();
    let took = js_sys::Date::now() - started;
    match &err {
        Error::Storage(why) => assert!(why.contains("blocked"), "{why}"),
        other => panic!("expected storage, got {other:?}"),
    }
    assert!(took < 1_500.0, "reported after {took} ms");

    // Once the stubborn connection goes, the abandoned upgrade is aborted
    // rather than left half done: the database is still at version 1.
    close_raw(&stubborn);
    let version = settled(current_version(&name)).await.unwrap();
    assert_eq!(version.as_f64(), Some(1.0));
    // And a proper open now upgrades.
    let db = Db::open(&name, v2, OpenOptions::default()).await.unwrap();
    assert_eq!(db.version(), 2);
    assert_eq!(db.get("more", "k").await.unwrap(), None);
}

#[wasm_bindgen_test]
async fn db_store_blocked_delete_reports_storage_in_time() {
    let name = unique("blocked-delete");
    let stubborn = settled(open_raw(&name, 1)).await.unwrap();
    let err = Db::delete_database(&name, 200).await.unwrap_err();
    assert!(matches!(err, Error::Storage(_)), "{err:?}");
    close_raw(&stubborn);
    // The delete goes on once nothing holds the database (requests are
    // served in order, so the probe below comes after it and recreates the
    // database empty).
    let stores = settled(store_count(&name)).await.unwrap();
    assert_eq!(stores.as_f64(), Some(0.0));
}

#[wasm_bindgen_test]
fn db_store_errors_map_to_crm_errors() {
    assert!(matches!(
        error_from_js(&dom_exception("QuotaExceededError", "full")),
        Error::Quota
    ));
    assert!(matches!(
        error_from_js(&dom_exception("DataCloneError", "no functions")),
        Error::Invalid(_)
    ));
    match error_from_js(&dom_exception("UnknownError", "disk on fire")) {
        Error::Storage(why) => assert_eq!(why, "UnknownError: disk on fire"),
        other => panic!("{other:?}"),
    }
    let js: JsValue = Error::Quota.into();
    assert_eq!(code(&js).as_deref(), Some("quota"));
}

#[wasm_bindgen_test]
async fn db_store_rejects_a_schema_without_its_migrations() {
    let bad = Schema {
        version: 3,
        migrations: V2,
    };
    let err = Db::open(&unique("bad-schema"), bad, OpenOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err:?}");
}

/// An open that never answers (as after a Safari launch), made in Chromium
/// by queueing it behind a delete that a stubborn connection blocks.
async fn hang_opens_of(name: &str) -> JsValue {
    let stubborn = settled(open_raw(name, 1)).await.unwrap();
    delete_raw(name);
    stubborn
}

#[wasm_bindgen_test]
async fn db_store_unanswered_open_is_retried_once_then_reported() {
    let name = unique("hang");
    let stubborn = hang_opens_of(&name).await;
    let v1 = Schema {
        version: 1,
        migrations: V1,
    };
    let started = js_sys::Date::now();
    let err = Db::open(&name, v1, OpenOptions { timeout_ms: 200 })
        .await
        .unwrap_err();
    let took = js_sys::Date::now() - started;
    match &err {
        Error::Storage(why) => assert!(why.contains("twice"), "{why}"),
        other => panic!("expected storage, got {other:?}"),
    }
    assert!(
        (380.0..1_500.0).contains(&took),
        "two attempts took {took} ms"
    );

    // The abandoned opens clean up after themselves when they are answered
    // at last: nothing is created by them, nothing stays open (else this
    // upgrade would be blocked).
    close_raw(&stubborn);
    let stores = settled(store_count(&name)).await.unwrap();
    assert_eq!(stores.as_f64(), Some(0.0));
    let v2 = Schema {
        version: 2,
        migrations: V2,
    };
    let db = Db::open(&name, v2, OpenOptions { timeout_ms: 1_000 })
        .await
        .unwrap();
    assert_eq!(db.version(), 2);
}

#[wasm_bindgen_test]
async fn db_store_open_answered_on_the_retry_succeeds() {
    let name = unique("slow");
    let stubborn = hang_opens_of(&name).await;
    // Answers come between the first attempt's timeout and the second's.
    close_raw_later(&stubborn, 300);
    let v1 = Schema {
        version: 1,
        migrations: V1,
    };
    let db = Db::open(&name, v1, OpenOptions { timeout_ms: 200 })
        .await
        .unwrap();
    assert_eq!(db.version(), 1);
    assert_eq!(db.get("entries", "k").await.unwrap(), None);
}

fn entries(json: &str) -> JsValue {
    js_fn("", &format!("return {json};"))
        .call0(&JsValue::UNDEFINED)
        .unwrap()
}

#[wasm_bindgen_test]
async fn local_store_put_many_writes_every_entry_in_one_transaction() {
    let store = open_store(&unique("many")).await;
    settled(store.put("b".into(), "old b".into(), JsValue::UNDEFINED))
        .await
        .unwrap();
    let versions = settled(store.put_many(entries(
        r#"[{ key: "a", value: { n: 1 } }, { key: "b", value: "new b", expectedVersion: 1 },
            { key: "c", value: [1, 2], expectedVersion: null }]"#,
    )))
    .await
    .unwrap();
    let versions: Vec<f64> = versions
        .unchecked_into::<Array>()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(versions, vec![1.0, 2.0, 1.0]);
    let b = settled(store.get("b".into())).await.unwrap();
    assert_eq!(prop(&b, "value").as_string().as_deref(), Some("new b"));
    assert_eq!(prop(&b, "version").as_f64(), Some(2.0));
    let a = settled(store.get("a".into())).await.unwrap();
    assert_eq!(prop(&prop(&a, "value"), "n").as_f64(), Some(1.0));
    let keys = settled(store.keys()).await.unwrap();
    assert_eq!(keys.unchecked_into::<Array>().length(), 3);
    // An empty batch is a valid no-op.
    let none = settled(store.put_many(entries("[]"))).await.unwrap();
    assert_eq!(none.unchecked_into::<Array>().length(), 0);
}

#[wasm_bindgen_test]
async fn local_store_put_many_writes_nothing_when_one_version_differs() {
    let store = open_store(&unique("many-stale")).await;
    settled(store.put("b".into(), "b1".into(), JsValue::UNDEFINED))
        .await
        .unwrap();
    let err = settled(store.put_many(entries(
        r#"[{ key: "a", value: "a1" }, { key: "b", value: "b2", expectedVersion: 7 }, { key: "c", value: "c1" }]"#,
    )))
    .await
    .unwrap_err();
    assert_eq!(code(&err).as_deref(), Some("version_mismatch"));
    let details = prop(&err, "details");
    assert_eq!(prop(&details, "key").as_string().as_deref(), Some("b"));
    assert_eq!(prop(&details, "expected").as_f64(), Some(7.0));
    assert_eq!(prop(&details, "found").as_f64(), Some(1.0));
    // All or nothing: neither "a" nor "c" was written, "b" is untouched.
    assert!(settled(store.get("a".into())).await.unwrap().is_undefined());
    assert!(settled(store.get("c".into())).await.unwrap().is_undefined());
    let b = settled(store.get("b".into())).await.unwrap();
    assert_eq!(prop(&b, "value").as_string().as_deref(), Some("b1"));
    assert_eq!(prop(&b, "version").as_f64(), Some(1.0));
}

#[wasm_bindgen_test]
async fn local_store_put_many_refuses_bad_input_with_invalid() {
    let store = open_store(&unique("many-bad")).await;
    for bad in [
        "{ key: 'a', value: 1 }",
        "[{ value: 1 }]",
        "[{ key: 'a', value: 1 }, { key: 'a', value: 2 }]",
        "[{ key: 'a', value: 1, expectedVersion: -1 }]",
        "[{ key: 'a', value: () => 1 }]",
    ] {
        let err = settled(store.put_many(entries(bad))).await.unwrap_err();
        assert_eq!(code(&err).as_deref(), Some("invalid"), "for {bad}");
    }
    let keys = settled(store.keys()).await.unwrap();
    assert_eq!(keys.unchecked_into::<Array>().length(), 0);
}

/// `[{ key, value, expectedVersion }]` from `(key, expected)` pairs.
fn batch_of(items: &[(String, u32)]) -> JsValue {
    let out = Array::new();
    for (key, expected) in items {
        let o = js_sys::Object::new();
        js_sys::Reflect::set(&o, &"key".into(), &key.into()).unwrap();
        js_sys::Reflect::set(&o, &"value".into(), &format!("value of {key}").into()).unwrap();
        js_sys::Reflect::set(&o, &"expectedVersion".into(), &(*expected).into()).unwrap();
        out.push(&o);
    }
    out.into()
}

#[wasm_bindgen_test]
async fn local_store_put_many_checks_large_batches_by_range_and_key_by_key() {
    let store = open_store(&unique("many-large")).await;
    // Keys outside the basic plane sort differently in UTF-16 (IndexedDB's
    // order) than in UTF-8: "a😀" comes before "a～" there.
    settled(store.put("a\u{1F600}".into(), 1.into(), JsValue::UNDEFINED))
        .await
        .unwrap();
    let mut items: Vec<(String, u32)> = (0..20).map(|i| (format!("a{i:02}"), 0)).collect();
    items.push(("a\u{FF5E}".into(), 0));
    items.push(("a\u{1F600}".into(), 1));
    settled(store.put_many(batch_of(&items))).await.unwrap();
    let got = settled(store.get("a\u{1F600}".into())).await.unwrap();
    assert_eq!(prop(&got, "version").as_f64(), Some(2.0));

    // Every version right but "a～", claimed new though it exists: found
    // only if the range read orders keys as IndexedDB does.
    let mut again: Vec<(String, u32)> = items.iter().map(|(k, _)| (k.clone(), 1)).collect();
    again[20].1 = 0;
    again[21].1 = 2;
    let err = settled(store.put_many(batch_of(&again))).await.unwrap_err();
    assert_eq!(code(&err).as_deref(), Some("version_mismatch"));
    assert_eq!(
        prop(&prop(&err, "details"), "key").as_string().as_deref(),
        Some("a\u{FF5E}")
    );
    again[20].1 = 1;
    settled(store.put_many(batch_of(&again))).await.unwrap();

    // A range holding far more than the batch is read key by key, with
    // the same answers.
    let filler: Vec<(String, u32)> = (0..100).map(|i| (format!("m{i:03}"), 0)).collect();
    settled(store.put_many(batch_of(&filler))).await.unwrap();
    let mut sparse: Vec<(String, u32)> = (0..16).map(|i| (format!("m{:03}", i * 6), 1)).collect();
    sparse[7].1 = 3;
    let err = settled(store.put_many(batch_of(&sparse)))
        .await
        .unwrap_err();
    assert_eq!(code(&err).as_deref(), Some("version_mismatch"));
    assert_eq!(
        prop(&prop(&err, "details"), "key").as_string().as_deref(),
        Some("m042")
    );
    sparse[7].1 = 1;
    settled(store.put_many(batch_of(&sparse))).await.unwrap();
    let got = settled(store.get("m042".into())).await.unwrap();
    assert_eq!(prop(&got, "version").as_f64(), Some(2.0));
    let untouched = settled(store.get("m043".into())).await.unwrap();
    assert_eq!(prop(&untouched, "version").as_f64(), Some(1.0));
}

#[wasm_bindgen_test]
async fn local_store_reports_entries_it_did_not_write_as_storage_and_keeps_them() {
    let name = unique("foreign");
    let store = open_store(&name).await;
    let foreign = entries("{ written: 'by another library' }");
    settled(put_raw(&name, "entries", "k", &foreign))
        .await
        .unwrap();
    for attempt in [
        store.put("k".into(), "mine".into(), 1.into()),
        store.put("k".into(), "mine".into(), JsValue::UNDEFINED),
        store.get("k".into()),
    ] {
        let err = settled(attempt).await.unwrap_err();
        assert_eq!(code(&err).as_deref(), Some("storage"));
    }
    // Nothing was overwritten.
    let err = settled(store.delete("k".into(), 1.into()))
        .await
        .unwrap_err();
    assert_eq!(code(&err).as_deref(), Some("storage"));
    let keys = settled(store.keys()).await.unwrap();
    assert_eq!(keys.unchecked_into::<Array>().length(), 1);
}
