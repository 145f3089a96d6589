//! One truth per user, against the real server: who a token belongs to,
//! a logout that keeps queued work, conflicts and dead letters that every
//! tab of the user shares, leadership given up at once, and a reload that
//! catches up from the stored feed cursor. Two `CrmSync` objects of one user
//! in this page are two tabs: they share the user's IndexedDB database and
//! BroadcastChannel, as tabs do.

use std::cell::RefCell;
use std::rc::Rc;

use crm_sync::api::CrmSync;
use js_sys::{Array, Object, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::wasm_bindgen_test;

use super::support::{fetch_as, prop, server, sleep, within};

#[wasm_bindgen(module = "/tests/browser/helpers.js")]
extern "C" {
    #[wasm_bindgen(js_name = patchAs)]
    fn patch_as(base: &str, user: &str, collection: &str, id: &str, fields: &JsValue) -> Promise;
    #[wasm_bindgen(js_name = putRaw)]
    fn put_raw(name: &str, store: &str, key: &str, value: &JsValue) -> Promise;
    #[wasm_bindgen(js_name = getRaw)]
    fn get_raw(name: &str, store: &str, key: &str) -> Promise;
    #[wasm_bindgen(js_name = deleteDatabase)]
    fn delete_database(name: &str) -> Promise;
}

fn obj(pairs: &[(&str, JsValue)]) -> JsValue {
    let o = Object::new();
    for (k, v) in pairs {
        Reflect::set(&o, &(*k).into(), v).unwrap();
    }
    o.into()
}

fn api() -> JsValue {
    format!("{}/api", server()).into()
}

async fn client(user: &str, extra: &[(&str, JsValue)]) -> CrmSync {
    let mut pairs = vec![
        ("baseUrl", api()),
        ("username", user.into()),
        ("password", "demo".into()),
    ];
    pairs.extend(extra.iter().cloned());
    CrmSync::login(obj(&pairs)).await.unwrap()
}

async fn wait(p: Promise) -> JsValue {
    JsFuture::from(p).await.unwrap()
}

fn leads(crm: &CrmSync) -> bool {
    prop(&crm.tabs(), "isLeader").as_bool() == Some(true)
}

fn len(v: JsValue) -> u32 {
    Array::from(&v).length()
}

fn code(err: &JsValue) -> Option<String> {
    prop(err, "code").as_string()
}

fn tag() -> String {
    format!("{:x}", (js_sys::Math::random() * 1e12) as u64)
}

/// The id of the n-th customer, loaded into `crm`.
async fn customer(crm: &CrmSync, n: u32) -> String {
    let list: Array = wait(crm.load("customers".into(), None)).await.into();
    prop(&list.get(n), "id").as_string().unwrap()
}

async fn server_city(token: &str, id: &str) -> Option<String> {
    let resp = fetch_as(token, "GET", &format!("/api/customers/{id}"), &[], None).await;
    let body = wait(resp.json().unwrap()).await;
    prop(&prop(&body, "fields"), "city").as_string()
}

#[wasm_bindgen_test]
async fn open_with_a_token_alone_learns_its_user_from_the_server() {
    let alice = client("user40", &[]).await;
    let token = alice.token();
    let opened = CrmSync::open(obj(&[("baseUrl", api()), ("token", token.clone().into())]))
        .await
        .unwrap();
    assert_eq!(opened.user(), "user40");
    opened.close();
    // A token named as another user's is refused before any storage opens.
    let err = CrmSync::open(obj(&[
        ("baseUrl", api()),
        ("token", token.into()),
        ("user", "user43".into()),
    ]))
    .await
    .err()
    .expect("another user's token is refused");
    assert_eq!(code(&err).as_deref(), Some("unauthorized"));
    alice.close();
}

#[wasm_bindgen_test]
async fn logout_sends_queued_work_first_and_refuses_while_some_is_left() {
    let crm = client("user43", &[]).await;
    let id = customer(&crm, 43).await;
    let city = format!("Logout {}", tag());
    crm.set_online(false);
    let result = wait(crm.save(
        "customers".into(),
        id.clone(),
        obj(&[("city", city.clone().into())]),
    ))
    .await;
    assert_eq!(
        prop(&result, "status").as_string().as_deref(),
        Some("queued")
    );

    // Offline: nothing can be sent, so the logout is refused and changes
    // nothing.
    let err = JsFuture::from(crm.logout(None)).await.unwrap_err();
    assert_eq!(code(&err).as_deref(), Some("pending_changes"));
    assert_eq!(len(prop(&prop(&err, "details"), "pending")), 1);
    assert_eq!(len(crm.pending()), 1);
    assert_eq!(prop(&crm.status(), "pending").as_f64(), Some(1.0));

    // Online again, the logout sends it and then logs out.
    crm.set_online(true);
    wait(crm.logout(None)).await;
    let check = client("user43", &[]).await;
    assert_eq!(server_city(&check.token(), &id).await, Some(city));
    check.close();
}

#[wasm_bindgen_test]
async fn logout_with_discard_drops_queued_work_on_purpose() {
    let crm = client("user43", &[]).await;
    let id = customer(&crm, 44).await;
    let before = server_city(&crm.token(), &id).await;
    crm.set_online(false);
    let _ = crm.save(
        "customers".into(),
        id.clone(),
        obj(&[("city", format!("Dropped {}", tag()).into())]),
    );
    let _ = crm.flush();
    wait(crm.logout(Some(obj(&[("discard", true.into())]).into()))).await;
    let check = client("user43", &[]).await;
    assert_eq!(len(check.pending()), 0, "the outbox went with the data");
    assert_eq!(server_city(&check.token(), &id).await, before);
    check.close();
}

#[wasm_bindgen_test]
async fn a_conflict_found_in_one_tab_is_resolved_in_another_and_gone_from_both() {
    let manual = [("onConflict", JsValue::from("manual"))];
    let a = client("user50", &manual).await;
    let b = client("user50", &manual).await;
    let id = customer(&a, 50).await;
    wait(b.load("customers".into(), None)).await;
    wait(patch_as(
        server(),
        "alice",
        "customers",
        &id,
        &obj(&[("city", format!("Theirs {}", tag()).into())]),
    ))
    .await;
    let result = wait(a.save(
        "customers".into(),
        id.clone(),
        obj(&[("city", format!("Mine {}", tag()).into())]),
    ))
    .await;
    assert_eq!(
        prop(&result, "status").as_string().as_deref(),
        Some("conflict")
    );
    let conflict_id = prop(&prop(&result, "conflict"), "id").as_string().unwrap();

    // Tab B sees it and resolves it.
    assert!(within(3_000, || len(b.conflicts()) == 1).await.is_some());
    let chosen = format!("Chosen {}", tag());
    let resolved =
        wait(b.resolve(conflict_id.clone(), obj(&[("city", chosen.clone().into())]))).await;
    assert_eq!(
        prop(&resolved, "status").as_string().as_deref(),
        Some("committed")
    );
    let took = within(3_000, || len(a.conflicts()) == 0).await;
    assert!(took.is_some(), "tab A still shows the resolved conflict");
    web_sys::console::log_1(
        &format!(
            "conflict gone from tab A {:.0} ms after the resolve in B",
            took.unwrap()
        )
        .into(),
    );
    // Resolving it again in A is refused, typed; nothing is sent twice.
    let err = JsFuture::from(a.resolve(conflict_id, obj(&[("city", "Again".into())])))
        .await
        .unwrap_err();
    assert_eq!(code(&err).as_deref(), Some("not_found"));
    assert_eq!(server_city(&a.token(), &id).await, Some(chosen));
    a.close();
    b.close();
}

#[wasm_bindgen_test]
async fn dead_letters_are_the_same_in_every_tab_and_a_discard_in_one_clears_all() {
    let a = client("user12", &[]).await;
    let b = client("user12", &[]).await;
    let id = customer(&a, 12).await;
    wait(b.load("customers".into(), None)).await;
    let err = JsFuture::from(a.save(
        "customers".into(),
        id,
        obj(&[("email", "not an email".into())]),
    ))
    .await
    .unwrap_err();
    assert_eq!(code(&err).as_deref(), Some("invalid"));
    assert_eq!(len(a.failed()), 1);
    assert!(within(3_000, || len(b.failed()) == 1).await.is_some());
    let mutation_id = prop(&Array::from(&b.failed()).get(0), "mutationId")
        .as_string()
        .unwrap();
    wait(b.discard(mutation_id)).await;
    assert!(within(3_000, || len(a.failed()) == 0).await.is_some());
    assert_eq!(prop(&a.status(), "failed").as_f64(), Some(0.0));
    a.close();
    b.close();
}

#[wasm_bindgen_test]
async fn logout_gives_up_leadership_and_close_hands_it_on_within_a_second() {
    let a = client("user13", &[]).await;
    let b = client("user13", &[]).await;
    assert!(within(3_000, || leads(&a) || leads(&b)).await.is_some());
    let (leader, other) = if leads(&a) { (a, b) } else { (b, a) };
    leader.close();
    assert!(
        within(1_000, || leads(&other)).await.is_some(),
        "no new leader within 1 s of a close"
    );
    wait(other.logout(Some(obj(&[("discard", true.into())]).into()))).await;
    assert!(!leads(&other), "a logged-out tab still leads");
}

#[wasm_bindgen_test]
async fn a_reload_catches_up_from_the_stored_feed_cursor() {
    let first = client("user14", &[]).await;
    let id = customer(&first, 14).await;
    let token = first.token();
    first.close();
    let city = format!("While away {}", tag());
    wait(patch_as(
        server(),
        "alice",
        "customers",
        &id,
        &obj(&[("city", city.clone().into())]),
    ))
    .await;
    // The reload: a client on the same token and database, which loads
    // nothing; the stored cursor brings the change.
    let again = CrmSync::open(obj(&[("baseUrl", api()), ("token", token.into())]))
        .await
        .unwrap();
    // Nothing of the collection is read at open: the record comes with
    // the catch-up.
    let seen = within(8_000, || {
        let record = again.get("customers", &id).unwrap();
        record.is_object()
            && prop(&prop(&record, "fields"), "city").as_string() == Some(city.clone())
    })
    .await;
    assert!(seen.is_some(), "the change made while away never arrived");
    again.close();
}

#[wasm_bindgen_test]
async fn the_record_cache_never_goes_back_to_an_older_version() {
    let crm = client("user15", &[]).await;
    let id = customer(&crm, 45).await;
    let key = format!("customers/{id}");
    // Another tab stored a newer copy meanwhile.
    let newer = obj(&[
        ("id", id.clone().into()),
        ("version", 100_000.into()),
        ("updatedAt", "2026-12-04T00:00:00Z".into()),
        ("updatedBy", "user15".into()),
        ("fields", obj(&[("city", "Newer".into())])),
        ("comments", Array::new().into()),
    ]);
    wait(put_raw("crm-sync:user15", "records", &key, &newer)).await;
    // This tab's load writes the server's older version over it...
    wait(crm.load("customers".into(), None)).await;
    let stored = wait(get_raw("crm-sync:user15", "records", &key)).await;
    // ...which leaves the newer one in place.
    assert_eq!(prop(&stored, "version").as_f64(), Some(100_000.0));
    // Put the real one back for later runs.
    let real = crm.get("customers", &id).unwrap();
    wait(put_raw("crm-sync:user15", "records", &key, &real)).await;
    crm.close();
}

#[wasm_bindgen_test]
async fn a_paged_load_reports_progress_and_a_write_made_meanwhile_shows_up_after() {
    // A first load: a database that holds the customers already would
    // answer from there (local first) and read no page.
    wait(delete_database("crm-sync:user18")).await;
    let crm = client("user18", &[]).await;
    let events = Rc::new(RefCell::new(Vec::<f64>::new()));
    let seen = Rc::clone(&events);
    let target: Rc<RefCell<Option<String>>> = Rc::new(RefCell::new(None));
    let city = format!("Mid-load {}", tag());
    let (write_target, write_city) = (Rc::clone(&target), city.clone());
    let listener = Closure::<dyn FnMut(JsValue)>::new(move |event: JsValue| {
        if prop(&event, "type").as_string().as_deref() != Some("load") {
            return;
        }
        seen.borrow_mut()
            .push(prop(&event, "loaded").as_f64().unwrap_or(-1.0));
        // After the first page is in, another user changes a record of it.
        if seen.borrow().len() == 1 {
            let first = "c-0003".to_owned();
            *write_target.borrow_mut() = Some(first.clone());
            let _ = patch_as(
                server(),
                "alice",
                "customers",
                &first,
                &obj(&[("city", write_city.clone().into())]),
            );
        }
    });
    let _unsubscribe = crm.subscribe(
        listener
            .as_ref()
            .unchecked_ref::<js_sys::Function>()
            .clone(),
    );
    let list: Array = wait(crm.load(
        "customers".into(),
        Some(obj(&[("pageSize", 20.into())]).into()),
    ))
    .await
    .into();
    assert!(list.length() >= 200, "{} records", list.length());
    let loaded = events.borrow().clone();
    assert!(
        loaded.len() >= 10,
        "one progress event per page: {loaded:?}"
    );
    assert!(loaded.windows(2).all(|w| w[0] < w[1]), "{loaded:?}");
    assert_eq!(loaded.last().copied(), Some(f64::from(list.length())));
    let id = target.borrow().clone().unwrap();
    let arrived = within(8_000, || {
        prop(&prop(&crm.get("customers", &id).unwrap(), "fields"), "city").as_string()
            == Some(city.clone())
    })
    .await;
    assert!(
        arrived.is_some(),
        "the write made during the load never arrived"
    );
    drop(listener);
    crm.close();
}

#[wasm_bindgen_test]
async fn query_filters_searches_sorts_and_pages_and_keeps_its_snapshot() {
    let crm = client("user19", &[]).await;
    let id = customer(&crm, 19).await;
    let leads = obj(&[
        (
            "where",
            obj(&[(
                "status",
                Array::of2(&"lead".into(), &"prospect".into()).into(),
            )]),
        ),
        ("orderBy", Array::of2(&"name".into(), &"desc".into()).into()),
        ("limit", 5.into()),
        ("offset", 1.into()),
    ]);
    let first = crm.query("customers", leads.clone()).unwrap();
    let items = Array::from(&prop(&first, "items"));
    let total = prop(&first, "total").as_f64().unwrap();
    assert!(items.length() <= 5 && total >= f64::from(items.length()));
    let names: Vec<String> = items
        .iter()
        .map(|r| {
            prop(&prop(&r, "fields"), "name")
                .as_string()
                .unwrap_or_default()
                .to_lowercase()
        })
        .collect();
    assert!(
        names.windows(2).all(|w| w[0] >= w[1]),
        "descending: {names:?}"
    );
    for r in items.iter() {
        let status = prop(&prop(&r, "fields"), "status").as_string();
        assert!(
            matches!(status.as_deref(), Some("lead" | "prospect")),
            "{status:?}"
        );
    }
    // The same object until a record the query covers changed.
    let again = crm.query("customers", leads.clone()).unwrap();
    assert!(js_sys::Object::is(&first, &again));
    let all: Array = crm.list("customers").unwrap().into();
    let status_of = |r: &JsValue| prop(&prop(r, "fields"), "status").as_string();
    let outside = all
        .iter()
        .find(|r| !matches!(status_of(r).as_deref(), Some("lead" | "prospect")))
        .map(|r| prop(&r, "id").as_string().unwrap())
        .expect("a customer neither lead nor prospect");
    // A staged change outside it keeps it; a search finds the staged value
    // (the query runs over `view`).
    let needle = format!("Zq{}", tag());
    let _saving = crm.save(
        "customers".into(),
        outside.clone(),
        obj(&[("city", needle.clone().into())]),
    );
    assert!(js_sys::Object::is(
        &first,
        &crm.query("customers", leads.clone()).unwrap()
    ));
    let found = crm
        .query(
            "customers",
            obj(&[("search", needle.to_lowercase().into())]),
        )
        .unwrap();
    assert_eq!(prop(&found, "total").as_f64(), Some(1.0));
    assert_eq!(
        prop(&Array::from(&prop(&found, "items")).get(0), "id").as_string(),
        Some(outside.clone())
    );
    // Text beyond ASCII is searched without regard to case too, the
    // needle's case as the record's (both folded by the browser in wasm).
    let _street = crm.save(
        "customers".into(),
        outside.clone(),
        obj(&[("street", format!("ÄRGERSTRASSE {needle}").into())]),
    );
    for asked in [
        format!("ärgerstrasse {}", needle.to_lowercase()),
        format!("ÄrGeRsTrAsSe {needle}"),
    ] {
        let found = crm
            .query("customers", obj(&[("search", asked.clone().into())]))
            .unwrap();
        assert_eq!(prop(&found, "total").as_f64(), Some(1.0), "{asked}");
    }
    // A change inside it gives a new object, with the record moved to
    // where its new value sorts and the count unchanged.
    let inside = prop(&items.get(0), "id").as_string().unwrap();
    let top = obj(&[
        (
            "where",
            obj(&[(
                "status",
                Array::of2(&"lead".into(), &"prospect".into()).into(),
            )]),
        ),
        ("orderBy", Array::of2(&"name".into(), &"desc".into()).into()),
        ("limit", 3.into()),
    ]);
    let before = crm.query("customers", top.clone()).unwrap();
    let _renaming = crm.save(
        "customers".into(),
        inside.clone(),
        obj(&[("name", "\u{10ffff} first of all".into())]),
    );
    let after = crm.query("customers", top).unwrap();
    assert!(!js_sys::Object::is(&before, &after));
    assert_eq!(
        prop(&Array::from(&prop(&after, "items")).get(0), "id").as_string(),
        Some(inside.clone())
    );
    assert_eq!(
        prop(&after, "total").as_f64(),
        prop(&before, "total").as_f64()
    );
    assert!(!js_sys::Object::is(
        &first,
        &crm.query("customers", leads.clone()).unwrap()
    ));
    // Its name back (the two saves go out as one, changing nothing).
    let _restoring = crm.save(
        "customers".into(),
        inside.clone(),
        obj(&[("name", prop(&prop(&items.get(0), "fields"), "name"))]),
    );
    // A save of no field is refused at once, and nothing is queued.
    let pending_before = len(crm.pending());
    let err = JsFuture::from(crm.save("customers".into(), id.clone(), obj(&[])))
        .await
        .unwrap_err();
    assert_eq!(code(&err).as_deref(), Some("invalid"));
    assert_eq!(len(crm.pending()), pending_before);
    // Bad input is `invalid`, typed.
    for bad in [
        obj(&[("where", obj(&[("size", obj(&[("$gt", 3.into())]))]))]),
        obj(&[("limit", "ten".into())]),
        obj(&[("orderBy", "name".into())]),
        obj(&[(
            "orderBy",
            Array::of2(&"name".into(), &"sideways".into()).into(),
        )]),
    ] {
        let err = crm.query("customers", bad).unwrap_err();
        assert_eq!(code(&err).as_deref(), Some("invalid"));
    }
    crm.close();
}

#[wasm_bindgen_test]
async fn the_sync_log_keeps_each_exchange_and_every_tab_reads_the_same() {
    let a = client("user47", &[]).await;
    let b = client("user47", &[]).await;
    let id = customer(&a, 47).await;
    // The load is a line.
    assert!(within(3_000, || {
        Array::from(&a.sync_log())
            .iter()
            .any(|l| prop(&l, "kind").as_string().as_deref() == Some("load"))
    })
    .await
    .is_some());
    // An offline session: two edits queued, then sent when back online.
    a.set_online(false);
    for city in ["First", "Second"] {
        let r = wait(a.save(
            "customers".into(),
            id.clone(),
            obj(&[("city", format!("{city} {}", tag()).into())]),
        ))
        .await;
        assert_eq!(prop(&r, "status").as_string().as_deref(), Some("queued"));
    }
    a.set_online(true);
    let push = |crm: &CrmSync| {
        Array::from(&crm.sync_log()).iter().find(|l| {
            prop(l, "direction").as_string().as_deref() == Some("push")
                && prop(l, "pushed").as_f64().unwrap_or(0.0) >= 1.0
        })
    };
    assert!(
        within(8_000, || push(&a).is_some()).await.is_some(),
        "no push line"
    );
    let line = push(&a).unwrap();
    assert_eq!(prop(&line, "failed").as_f64(), Some(0.0));
    assert!(prop(&line, "durationMs").as_f64().is_some());
    // The other tab reads the same log.
    assert!(
        within(3_000, || push(&b).is_some()).await.is_some(),
        "tab B has no push line"
    );
    a.close();
    b.close();
}

/// `crm.metrics()` is kept per user in IndexedDB: a client opened after
/// another closed (a reload) starts from its totals, not from zero, and
/// goes on counting from there.
#[wasm_bindgen_test]
async fn metrics_survive_a_reload() {
    let commits = |crm: &CrmSync| prop(&crm.metrics(), "commits").as_f64().unwrap_or(0.0);
    let a = client("user26", &[]).await;
    let id = customer(&a, 26).await;
    for city in ["Graz", "Linz"] {
        let r = wait(a.save(
            "customers".into(),
            id.clone(),
            obj(&[("city", format!("{city} {}", tag()).into())]),
        ))
        .await;
        assert_eq!(prop(&r, "status").as_string().as_deref(), Some("committed"));
    }
    let before = commits(&a);
    assert!(before >= 2.0, "{before}");
    let operations = prop(&a.metrics(), "operations").as_f64().unwrap();
    // Written within a second.
    sleep(1_500).await;
    a.close();

    let b = client("user26", &[]).await;
    // At once: the totals are read before the client is handed out.
    assert!(
        commits(&b) >= before,
        "after the reload: {} commits, {before} before",
        commits(&b)
    );
    assert!(prop(&b.metrics(), "operations").as_f64().unwrap() >= operations);
    let r = wait(b.save(
        "customers".into(),
        id.clone(),
        obj(&[("city", format!("Wels {}", tag()).into())]),
    ))
    .await;
    assert_eq!(prop(&r, "status").as_string().as_deref(), Some("committed"));
    assert!(commits(&b) >= before + 1.0);
    b.close();
}
