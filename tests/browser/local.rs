//! Local first on a second visit, against the real server: a reopen
//! answers from IndexedDB and asks the server for no collection, changes
//! made by others while the person was away arrive with the catch-up, and
//! an expired cursor falls back to a full load that says so.
//!
//! Each test starts from an empty database of its own user (deleted
//! first), so its first load is a first load.

use crm_sync::api::CrmSync;
use js_sys::{Array, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::wasm_bindgen_test;

use super::support::{eventually, fetch_as, login, obj, prop, server, sleep, tag};

#[wasm_bindgen(module = "/tests/browser/helpers.js")]
extern "C" {
    #[wasm_bindgen(js_name = noteFetches)]
    fn note_fetches() -> Array;
    #[wasm_bindgen(js_name = stopNoting)]
    fn stop_noting(urls: &Array);
    #[wasm_bindgen(js_name = deleteDatabase)]
    fn delete_database(name: &str) -> Promise;
    #[wasm_bindgen(js_name = putRaw)]
    fn put_raw(name: &str, store: &str, key: &str, value: &JsValue) -> Promise;
    #[wasm_bindgen(js_name = noteGetAll)]
    fn note_get_all() -> Array;
    #[wasm_bindgen(js_name = stopNotingGetAll)]
    fn stop_noting_get_all(lowers: &Array);
    #[wasm_bindgen(js_name = holdStore)]
    fn hold_store(name: &str, store: &str) -> Promise;
    #[wasm_bindgen(js_name = releaseStore)]
    fn release_store(hold: &JsValue) -> Promise;
    #[wasm_bindgen(js_name = putCopies)]
    fn put_copies(name: &str, id: &str, prefix: &str, n: u32) -> Promise;
    #[wasm_bindgen(js_name = withoutApis)]
    fn without_apis(names: Vec<JsValue>) -> js_sys::Function;
}

async fn wait(p: Promise) -> JsValue {
    JsFuture::from(p).await.unwrap()
}

/// A client of `user` with an empty database.
async fn fresh(user: &str) -> CrmSync {
    wait(delete_database(&format!("crm-sync:{user}"))).await;
    login(user).await
}

/// Closes the client and deletes its user's database: the other suites'
/// loads of this user are first loads again.
async fn done(crm: CrmSync, user: &str) {
    crm.close();
    sleep(200).await;
    wait(delete_database(&format!("crm-sync:{user}"))).await;
}

/// The same user's next visit: a client on the token and database.
async fn reopen(token: &str) -> CrmSync {
    CrmSync::open(obj(&[
        ("baseUrl", format!("{}/api", server()).into()),
        ("token", token.into()),
    ]))
    .await
    .unwrap()
}

/// The URLs asked for a collection's pages (not the feed, not a record).
fn collection_reads(urls: &Array) -> Vec<String> {
    urls.iter()
        .filter_map(|u| u.as_string())
        .filter(|u| u.contains("/api/customers?") || u.ends_with("/api/customers"))
        .collect()
}

/// The reads of the customers back from IndexedDB (`getAll`s of their
/// key range) among what `note_get_all` noted.
fn stored_reads(lowers: &Array) -> usize {
    lowers
        .iter()
        .filter(|l| l.as_string().as_deref() == Some("customers/"))
        .count()
}

/// The reads of the changes feed among `urls`.
fn feed_reads(urls: &Array) -> Vec<String> {
    urls.iter()
        .filter_map(|u| u.as_string())
        .filter(|u| u.contains("/api/changes"))
        .collect()
}

fn ids_of(list: &Array) -> Vec<String> {
    list.iter()
        .filter_map(|r| prop(&r, "id").as_string())
        .collect()
}

/// The sync log's `load` lines and their reasons.
fn load_reasons(crm: &CrmSync) -> Vec<String> {
    Array::from(&crm.sync_log())
        .iter()
        .filter(|l| prop(l, "kind").as_string().as_deref() == Some("load"))
        .map(|l| prop(&l, "reason").as_string().unwrap_or_default())
        .collect()
}

fn is_stale(crm: &CrmSync, id: &str) -> bool {
    let record = crm.get("customers", id).unwrap();
    prop(&record, "stale").as_bool() == Some(true)
}

fn city(crm: &CrmSync, id: &str) -> Option<String> {
    let record = crm.get("customers", id).unwrap();
    if !record.is_object() {
        return None;
    }
    prop(&prop(&record, "fields"), "city").as_string()
}

/// Creates a customer as the holder of `token`; its id.
async fn create_as(token: &str, fields: &JsValue) -> String {
    let body = js_sys::JSON::stringify(&obj(&[("fields", fields.clone())]))
        .unwrap()
        .as_string()
        .unwrap();
    let key = crm_sync_key();
    let res = fetch_as(
        token,
        "POST",
        "/api/customers",
        &[
            ("content-type", "application/json"),
            ("idempotency-key", &key),
        ],
        Some(&body),
    )
    .await;
    assert_eq!(res.status(), 201, "create");
    let record = wait(res.json().unwrap()).await;
    prop(&record, "id").as_string().unwrap()
}

/// Changes a customer's city as the holder of `token` (the version read
/// first).
async fn patch_as(token: &str, id: &str, city: &str) {
    let path = format!("/api/customers/{id}");
    let current = wait(
        fetch_as(token, "GET", &path, &[], None)
            .await
            .json()
            .unwrap(),
    )
    .await;
    let version = prop(&current, "version").as_f64().unwrap();
    let body = format!("{{\"fields\":{{\"city\":\"{city}\"}}}}");
    let res = fetch_as(
        token,
        "PATCH",
        &path,
        &[
            ("content-type", "application/json"),
            ("if-match", &format!("\"{version}\"")),
            ("idempotency-key", &crm_sync_key()),
        ],
        Some(&body),
    )
    .await;
    assert_eq!(res.status(), 200, "patch {id}");
}

async fn delete_as(token: &str, id: &str) {
    let path = format!("/api/customers/{id}");
    let current = wait(
        fetch_as(token, "GET", &path, &[], None)
            .await
            .json()
            .unwrap(),
    )
    .await;
    let version = prop(&current, "version").as_f64().unwrap();
    let res = fetch_as(
        token,
        "DELETE",
        &path,
        &[
            ("if-match", &format!("\"{version}\"")),
            ("idempotency-key", &crm_sync_key()),
        ],
        None,
    )
    .await;
    assert_eq!(res.status(), 204, "delete {id}");
}

fn crm_sync_key() -> String {
    web_sys::window().unwrap().crypto().unwrap().random_uuid()
}

#[wasm_bindgen_test]
async fn a_reopen_with_nothing_changed_asks_for_no_collection() {
    let first = fresh("user18").await;
    let urls = note_fetches();
    let list: Array = wait(first.load("customers".into(), None)).await.into();
    stop_noting(&urls);
    assert!(
        !collection_reads(&urls).is_empty(),
        "a first load reads the pages"
    );
    assert!(eventually(5_000, || load_reasons(&first) == ["first-load"]).await);
    let count = list.length();
    let some = prop(&list.get(0), "id").as_string().unwrap();
    let token = first.token();
    sleep(300).await;
    first.close();

    let urls = note_fetches();
    let again = reopen(&token).await;
    let last_sync = prop(&again.status(), "lastSyncAt");
    let list: Array = wait(again.load("customers".into(), None)).await.into();
    assert_eq!(list.length(), count, "every record, from IndexedDB");
    assert!(
        eventually(10_000, || !is_stale(&again, &some)
            && prop(&again.status(), "lastSyncAt") != last_sync)
        .await,
        "the catch-up never ended"
    );
    stop_noting(&urls);
    assert_eq!(collection_reads(&urls), Vec::<String>::new());
    assert!(
        prop(&again.status(), "fullLoad").is_null(),
        "no full load under way"
    );
    assert_eq!(load_reasons(&again), ["first-load"], "no second load line");
    done(again, "user18").await;
}

#[wasm_bindgen_test]
async fn changes_creates_and_deletes_made_while_away_arrive_with_the_catch_up() {
    let alice = login("alice").await;
    let other = alice.token();
    alice.close();
    let run = tag();
    let mut ids = Vec::new();
    for i in 0..121 {
        let fields = obj(&[
            ("name", format!("Away {run} {i}").into()),
            ("city", "Before".into()),
        ]);
        ids.push(create_as(&other, &fields).await);
    }
    let first = fresh("user19").await;
    wait(first.load("customers".into(), None)).await;
    assert_eq!(city(&first, &ids[0]).as_deref(), Some("Before"));
    // A change of this person's, queued, on a record someone deletes
    // while they are away.
    let doomed = ids[120].clone();
    first.set_online(false);
    let queued = wait(first.save(
        "customers".into(),
        doomed.clone(),
        obj(&[("city", "Mine".into())]),
    ))
    .await;
    assert_eq!(
        prop(&queued, "status").as_string().as_deref(),
        Some("queued")
    );
    let mutation = prop(&queued, "mutationId").as_string().unwrap();
    sleep(300).await;
    let token = first.token();
    first.close();

    // Away: 100 changes, 10 deletes and 10 creates by another person.
    let after = format!("After {run}");
    for id in &ids[..100] {
        patch_as(&other, id, &after).await;
    }
    for id in &ids[100..110] {
        delete_as(&other, id).await;
    }
    delete_as(&other, &doomed).await;
    let mut created = Vec::new();
    for i in 0..10 {
        let fields = obj(&[
            ("name", format!("New {run} {i}").into()),
            ("city", "Created".into()),
        ]);
        created.push(create_as(&other, &fields).await);
    }

    let again = reopen(&token).await;
    wait(again.load("customers".into(), None)).await;
    let all_there = || {
        ids[..100]
            .iter()
            .all(|id| city(&again, id).as_deref() == Some(after.as_str()))
            && ids[100..110].iter().all(|id| city(&again, id).is_none())
            && created
                .iter()
                .all(|id| city(&again, id).as_deref() == Some("Created"))
            && !is_stale(&again, &ids[0])
    };
    assert!(
        eventually(30_000, all_there).await,
        "not every change made while away arrived"
    );
    // The queued change is not lost: refused for good, for the person.
    let kept = || {
        let in_failed = Array::from(&again.failed())
            .iter()
            .any(|f| prop(&f, "mutationId").as_string().as_deref() == Some(mutation.as_str()));
        let in_conflicts = Array::from(&again.conflicts())
            .iter()
            .any(|c| prop(&c, "recordId").as_string().as_deref() == Some(doomed.as_str()));
        in_failed || in_conflicts
    };
    assert!(
        eventually(15_000, kept).await,
        "the change queued on a deleted record vanished: pending {:?}",
        js_sys::JSON::stringify(&again.pending()).ok()
    );
    assert_eq!(load_reasons(&again), ["first-load"]);
    done(again, "user19").await;
}

#[wasm_bindgen_test]
async fn an_expired_cursor_falls_back_to_a_full_load_that_says_so() {
    let first = fresh("user21").await;
    wait(first.load("customers".into(), None)).await;
    let token = first.token();
    sleep(300).await;
    first.close();
    // A cursor the server no longer reaches (a feed pruned while away).
    wait(put_raw(
        "crm-sync:user21",
        "meta",
        "feed-cursor",
        &JsValue::from("0-expired"),
    ))
    .await;

    let urls = note_fetches();
    let again = reopen(&token).await;
    // What `status` says while the collection is read again.
    let said = std::rc::Rc::new(std::cell::RefCell::new(Vec::<String>::new()));
    let noted = said.clone();
    let listener = Closure::<dyn FnMut(JsValue)>::new(move |event: JsValue| {
        if prop(&event, "type").as_string().as_deref() == Some("status") {
            let full = prop(&prop(&event, "status"), "fullLoad");
            if full.is_object() {
                noted
                    .borrow_mut()
                    .push(prop(&full, "reason").as_string().unwrap_or_default());
            }
        }
    });
    let _unsubscribe = again.subscribe(
        listener
            .as_ref()
            .unchecked_ref::<js_sys::Function>()
            .clone(),
    );
    wait(again.load("customers".into(), None)).await;
    assert!(
        eventually(15_000, || load_reasons(&again)
            == ["cursor-expired", "first-load"])
        .await,
        "the sync log does not say why everything was read again: {:?}",
        load_reasons(&again)
    );
    stop_noting(&urls);
    assert!(
        !collection_reads(&urls).is_empty(),
        "the collection was read again"
    );
    assert!(
        said.borrow().iter().any(|r| r == "cursor-expired"),
        "status never said why: {:?}",
        said.borrow()
    );
    assert!(prop(&again.status(), "fullLoad").is_null());
    done(again, "user21").await;
    drop(listener);
}

#[wasm_bindgen_test]
async fn offline_a_reopen_shows_the_stored_records_stale_until_the_server_is_back() {
    let first = fresh("user45").await;
    let list: Array = wait(first.load("customers".into(), None)).await.into();
    let some = prop(&list.get(0), "id").as_string().unwrap();
    let token = first.token();
    sleep(300).await;
    first.close();

    let again = reopen(&token).await;
    again.set_online(false);
    let list: Array = wait(again.load("customers".into(), None)).await.into();
    assert_eq!(prop(&list.get(0), "stale").as_bool(), Some(true));
    assert!(is_stale(&again, &some));
    // Still stale while the server cannot be reached.
    sleep(2_500).await;
    assert!(
        is_stale(&again, &some),
        "checked with a server out of reach"
    );
    again.set_online(true);
    assert!(
        eventually(15_000, || !is_stale(&again, &some)
            && prop(&again.status(), "lastSyncAt").is_string())
        .await,
        "stale never went once the server was back"
    );
    done(again, "user45").await;
}

#[wasm_bindgen_test]
async fn a_reopen_reads_every_stored_record_back_across_pages_and_shapes() {
    let first = fresh("user45").await;
    let loaded: Array = wait(first.load("customers".into(), None)).await.into();
    let some = prop(&loaded.get(0), "id").as_string().unwrap();
    let token = first.token();
    sleep(300).await;
    first.close();
    sleep(200).await;

    // Pages of stored records (read back 2,000 at a time), a record with
    // every kind of field value, one with the separator of the read's
    // text in it (read from its object), and one entry that is no record
    // (skipped, as before).
    let db = "crm-sync:user45";
    wait(put_copies(db, &some, "zz-copy-", 4_500)).await;
    let shapes = js_sys::JSON::parse(
        r#"{"id":"zz-shapes","version":3,"updatedAt":"2026-01-02T03:04:05Z","updatedBy":"bob",
            "fields":{"name":"Ann","zero":-0,"big":1e300,"half":0.5,"yes":true,"no":false,"none":null},
            "comments":[{"id":"c1","author":"bob","text":"hi","createdAt":"2026-01-02T03:04:06Z"}]}"#,
    )
    .unwrap();
    js_sys::Reflect::set(&prop(&shapes, "fields"), &"nan".into(), &f64::NAN.into()).unwrap();
    wait(put_raw(db, "records", "customers/zz-shapes", &shapes)).await;
    let separated = js_sys::JSON::parse(
        r#"{"id":"zz-sep","version":2,"fields":{"name":"A\u0001B","n":7},
            "comments":[{"id":"c1","author":"bob","text":"hi\u0001","createdAt":"2026-01-02T03:04:06Z"}]}"#,
    )
    .unwrap();
    wait(put_raw(db, "records", "customers/zz-sep", &separated)).await;
    let bad =
        js_sys::JSON::parse(r#"{"id":"zz-bad","version":1,"fields":{"nested":{"a":1}}}"#).unwrap();
    wait(put_raw(db, "records", "customers/zz-bad", &bad)).await;

    let again = reopen(&token).await;
    again.set_online(false);
    let list: Array = wait(again.load("customers".into(), None)).await.into();
    assert_eq!(list.length(), loaded.length() + 4_500 + 2);
    let ids = ids_of(&list);
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "not in id order");
    assert!(ids.iter().any(|id| id == "zz-copy-4499"));
    assert!(!ids.iter().any(|id| id == "zz-bad"));
    // The engine's copy (view makes its object from it) holds each value.
    let view = again.view("customers", "zz-shapes").unwrap();
    let fields = prop(&view, "fields");
    assert_eq!(prop(&fields, "name").as_string().as_deref(), Some("Ann"));
    let zero = prop(&fields, "zero").as_f64().unwrap();
    assert!(zero == 0.0 && zero.is_sign_negative(), "-0 read as {zero}");
    assert_eq!(prop(&fields, "big").as_f64(), Some(1e300));
    assert_eq!(prop(&fields, "half").as_f64(), Some(0.5));
    assert!(prop(&fields, "nan").as_f64().unwrap().is_nan());
    assert_eq!(prop(&fields, "yes").as_bool(), Some(true));
    assert_eq!(prop(&fields, "no").as_bool(), Some(false));
    assert!(prop(&fields, "none").is_null());
    assert_eq!(prop(&view, "version").as_f64(), Some(3.0));
    assert_eq!(prop(&view, "updatedBy").as_string().as_deref(), Some("bob"));
    let comments = Array::from(&prop(&view, "comments"));
    assert_eq!(comments.length(), 1);
    assert_eq!(
        prop(&comments.get(0), "text").as_string().as_deref(),
        Some("hi")
    );
    let view = again.view("customers", "zz-sep").unwrap();
    let fields = prop(&view, "fields");
    assert_eq!(
        prop(&fields, "name").as_string().as_deref(),
        Some("A\u{1}B")
    );
    assert_eq!(prop(&fields, "n").as_f64(), Some(7.0));
    let comments = Array::from(&prop(&view, "comments"));
    assert_eq!(
        prop(&comments.get(0), "text").as_string().as_deref(),
        Some("hi\u{1}")
    );
    // The objects handed out are the ones `list` hands out next.
    let listed = Array::from(&again.list("customers").unwrap());
    assert_eq!(listed.length(), list.length());
    assert!((0..list.length()).all(|i| js_sys::Object::is(&list.get(i), &listed.get(i))));
    assert_eq!(prop(&list.get(0), "stale").as_bool(), Some(true));
    done(again, "user45").await;
}

#[wasm_bindgen_test]
async fn a_second_load_in_the_same_tab_reads_nothing_again() {
    let first = fresh("user45").await;
    let loaded: Array = wait(first.load("customers".into(), None)).await.into();
    let reads = note_get_all();
    let urls = note_fetches();
    let again: Array = wait(first.load("customers".into(), None)).await.into();
    stop_noting(&urls);
    stop_noting_get_all(&reads);
    assert_eq!(ids_of(&again), ids_of(&loaded));
    assert_eq!(collection_reads(&urls), Vec::<String>::new());
    assert_eq!(stored_reads(&reads), 0, "the second load read IndexedDB");
    let token = first.token();
    sleep(300).await;
    first.close();

    // The next visit reads IndexedDB once, not at every load.
    let next = reopen(&token).await;
    let reads = note_get_all();
    let once: Array = wait(next.load("customers".into(), None)).await.into();
    let twice: Array = wait(next.load("customers".into(), None)).await.into();
    stop_noting_get_all(&reads);
    assert_eq!(ids_of(&twice), ids_of(&once));
    assert_eq!(stored_reads(&reads), 1);
    done(next, "user45").await;
}

#[wasm_bindgen_test]
async fn a_delete_told_while_a_follower_reads_indexeddb_stays_deleted() {
    let alice = login("alice").await;
    let other = alice.token();
    alice.close();
    let doomed = create_as(
        &other,
        &obj(&[
            ("name", format!("Doomed {}", tag()).into()),
            ("city", "Doomed".into()),
        ]),
    )
    .await;
    let leader = fresh("user18").await;
    wait(leader.load("customers".into(), None)).await;
    assert_eq!(city(&leader, &doomed).as_deref(), Some("Doomed"));
    sleep(300).await;
    // Stored records before it in the key order: the follower's read of
    // the collection takes several slices, and the delete is told between.
    wait(put_copies("crm-sync:user18", &doomed, "0-fill-", 20_000)).await;
    let follower = reopen(&leader.token()).await;
    assert_eq!(prop(&follower.status(), "leader").as_bool(), Some(false));

    // The follower's read of the collection asked for, and held back. As
    // in a browser without `scheduler.yield` (Safari): between two slices
    // of the read, whatever else waits runs (the tab channel's notices).
    let restore = without_apis(vec!["scheduler".into()]);
    let reads = note_get_all();
    let hold = wait(hold_store("crm-sync:user18", "records")).await;
    let loading = follower.load("customers".into(), None);
    assert!(
        eventually(10_000, || stored_reads(&reads) == 1).await,
        "the follower never read the collection"
    );
    stop_noting_get_all(&reads);
    // Someone deletes it; the leader hears of it from the feed, and its
    // write (after the follower's read) waits too.
    delete_as(&other, &doomed).await;
    assert!(
        eventually(15_000, || city(&leader, &doomed).is_none()).await,
        "the leader never heard of the delete"
    );
    wait(release_store(&hold)).await;

    // The answer may hold it (the delete may be told after the answer);
    // once the follower caught up, it is gone.
    wait(loading).await;
    restore.call0(&JsValue::NULL).unwrap();
    assert!(
        eventually(15_000, || !is_stale(&follower, "0-fill-0")).await,
        "the follower never caught up"
    );
    sleep(500).await;
    assert!(
        city(&follower, &doomed).is_none(),
        "the deleted record came back"
    );
    follower.close();
    done(leader, "user18").await;
}

#[wasm_bindgen_test]
async fn one_catch_up_for_the_users_tabs_and_a_tab_opened_later_asks_nothing() {
    let first = fresh("user19").await;
    let list: Array = wait(first.load("customers".into(), None)).await.into();
    let some = prop(&list.get(0), "id").as_string().unwrap();
    let token = first.token();
    sleep(300).await;
    first.close();

    // The next visit, in two tabs at once: the leader reads the feed once
    // for both.
    let urls = note_fetches();
    let leader = reopen(&token).await;
    let follower = reopen(&token).await;
    let (a, b) = (
        leader.load("customers".into(), None),
        follower.load("customers".into(), None),
    );
    wait(a).await;
    wait(b).await;
    assert!(
        eventually(10_000, || !is_stale(&leader, &some)
            && !is_stale(&follower, &some))
        .await,
        "the tabs never caught up"
    );
    stop_noting(&urls);
    assert_eq!(prop(&follower.status(), "leader").as_bool(), Some(false));
    assert_eq!(collection_reads(&urls), Vec::<String>::new());
    assert_eq!(feed_reads(&urls).len(), 1, "{:?}", feed_reads(&urls));
    // The leader's event stream is heard from (the feed is then read when
    // it rings, not every 2 s).
    sleep(2_500).await;

    // A tab opened later reads IndexedDB and asks the server nothing.
    let urls = note_fetches();
    let reads = note_get_all();
    let later = reopen(&token).await;
    let list: Array = wait(later.load("customers".into(), None)).await.into();
    assert!(list.length() > 0);
    assert!(
        eventually(10_000, || !is_stale(&later, &some)).await,
        "the tab opened later never caught up"
    );
    stop_noting(&urls);
    stop_noting_get_all(&reads);
    assert_eq!(stored_reads(&reads), 1);
    assert_eq!(collection_reads(&urls), Vec::<String>::new());
    assert_eq!(feed_reads(&urls), Vec::<String>::new());
    later.close();
    follower.close();
    done(leader, "user19").await;
}
