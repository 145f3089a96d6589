//! `crm.sync` and the tab coordination of the client, against the real
//! server: one tab drives the job, every tab of the user shows it.

use std::cell::RefCell;
use std::rc::Rc;

use crm_sync::api::CrmSync;
use js_sys::{Array, Function, Object, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::wasm_bindgen_test;

use super::support::{fetch_as, prop, server};

#[wasm_bindgen(module = "/tests/browser/helpers.js")]
extern "C" {
    #[wasm_bindgen(js_name = patchAs)]
    fn patch_as(base: &str, user: &str, collection: &str, id: &str, fields: &JsValue) -> Promise;
    #[wasm_bindgen(js_name = postRaw)]
    fn post_raw(channel_name: &str, messages: &Array);
}

/// A record notice as a tab posts it (format 2: `[v, tab, seq, kind,
/// collection, id, version, record]`), from a tab id of its own.
fn record_notice(id: &str, version: u64, record: &JsValue) -> JsValue {
    let items: [JsValue; 8] = [
        2.into(),
        "another-build".into(),
        0.into(),
        1.into(),
        "customers".into(),
        id.into(),
        (version as f64).into(),
        record.clone(),
    ];
    items.iter().collect::<Array>().into()
}

/// `{ id, version, fields: { city } }`, a record as a notice carries it.
fn carried(id: &str, version: u64, city: &str) -> JsValue {
    let fields = Object::new();
    Reflect::set(&fields, &"city".into(), &city.into()).unwrap();
    let record = Object::new();
    Reflect::set(&record, &"id".into(), &id.into()).unwrap();
    Reflect::set(&record, &"version".into(), &(version as f64).into()).unwrap();
    Reflect::set(&record, &"fields".into(), &fields).unwrap();
    record.into()
}

async fn client(user: &str) -> CrmSync {
    let o = Object::new();
    let api = format!("{}/api", server());
    Reflect::set(&o, &"baseUrl".into(), &api.into()).unwrap();
    Reflect::set(&o, &"username".into(), &user.into()).unwrap();
    Reflect::set(&o, &"password".into(), &"demo".into()).unwrap();
    let sync = Object::new();
    Reflect::set(&sync, &"pollMs".into(), &200.into()).unwrap();
    Reflect::set(&sync, &"cooldownMs".into(), &1500.into()).unwrap();
    Reflect::set(&o, &"sync".into(), &sync).unwrap();
    CrmSync::login(o.into()).await.unwrap()
}

fn call(target: &JsValue, method: &str, args: &[JsValue]) -> JsValue {
    let f: Function = Reflect::get(target, &method.into()).unwrap().into();
    let a = Array::new();
    for x in args {
        a.push(x);
    }
    f.apply(target, &a).unwrap()
}

async fn sleep(ms: u32) {
    gloo_timers::future::TimeoutFuture::new(ms).await;
}

/// Waits until `cond` holds, up to `ms`.
async fn eventually(ms: u32, mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..(ms / 50) {
        if cond() {
            return true;
        }
        sleep(50).await;
    }
    cond()
}

fn phase(crm: &CrmSync) -> String {
    prop(&prop(&crm.sync(), "state"), "phase")
        .as_string()
        .unwrap()
}

#[wasm_bindgen_test]
async fn a_sync_runs_to_complete_and_the_other_tab_sees_the_same_state() {
    let leader = client("user35").await;
    assert!(eventually(3000, || prop(&leader.tabs(), "isLeader") == JsValue::TRUE).await);
    let follower = client("user35").await;
    assert_eq!(prop(&follower.tabs(), "isLeader"), JsValue::FALSE);

    // Progress as the follower sees it, never going down.
    let seen: Rc<RefCell<Vec<f64>>> = Rc::default();
    let record = Rc::clone(&seen);
    let listener = Closure::<dyn FnMut(JsValue)>::new(move |state: JsValue| {
        record
            .borrow_mut()
            .push(prop(&state, "progress").as_f64().unwrap_or(-1.0));
    });
    let _unsubscribe = call(&follower.sync(), "subscribe", &[listener.as_ref().clone()]);

    // The follower presses Sync: the leader runs it.
    let started = JsFuture::from(Promise::from(call(
        &follower.sync(),
        "start",
        &["from-sheet".into()],
    )))
    .await
    .unwrap();
    let status = prop(&started, "status").as_string().unwrap();
    assert!(status == "queued" || status == "coalesced", "{status}");
    assert!(
        eventually(20_000, || phase(&leader) == "complete").await,
        "leader: {}",
        phase(&leader)
    );
    assert!(
        eventually(3_000, || phase(&follower) == "complete").await,
        "follower: {}",
        phase(&follower)
    );
    let state = prop(&follower.sync(), "state");
    assert_eq!(prop(&state, "progress").as_f64(), Some(100.0));
    assert!(prop(&prop(&state, "stats"), "rows").as_f64().unwrap() > 1000.0);
    let progress = seen.borrow().clone();
    assert!(progress.windows(2).all(|w| w[0] <= w[1]), "{progress:?}");
    // One poller: the follower made no sync requests, and counted no run.
    let follower_syncs = prop(&prop(&follower.metrics(), "syncs"), "started").as_f64();
    assert_eq!(follower_syncs, Some(0.0));
    let leader_syncs = prop(&leader.metrics(), "syncs");
    assert_eq!(prop(&leader_syncs, "completed").as_f64(), Some(1.0));
    let history: Array = JsFuture::from(Promise::from(call(&leader.sync(), "history", &[])))
        .await
        .unwrap()
        .into();
    assert!(history.length() >= 1);
    assert_eq!(
        prop(&history.get(0), "status").as_string().as_deref(),
        Some("complete")
    );
    assert!(leader.status().is_object());
    assert!(prop(&leader.status(), "lastSyncAt").is_string());

    call(&leader.sync(), "dismiss", &[]);
    assert!(eventually(3_000, || phase(&follower) == "idle").await);
    follower.close();
    leader.close();
}

#[wasm_bindgen_test]
async fn presses_behind_a_running_job_fold_into_one_follow_up() {
    let crm = client("user36").await;
    assert!(eventually(3000, || prop(&crm.tabs(), "isLeader") == JsValue::TRUE).await);
    let sync = crm.sync();
    let first = JsFuture::from(Promise::from(call(&sync, "start", &[])))
        .await
        .unwrap();
    assert_eq!(
        prop(&first, "status").as_string().as_deref(),
        Some("queued")
    );
    let second = JsFuture::from(Promise::from(call(&sync, "start", &[])))
        .await
        .unwrap();
    let third = JsFuture::from(Promise::from(call(&sync, "start", &[])))
        .await
        .unwrap();
    assert_eq!(
        prop(&second, "status").as_string().as_deref(),
        Some("coalesced")
    );
    assert_eq!(
        prop(&third, "status").as_string().as_deref(),
        Some("coalesced")
    );
    // The first run and exactly one follow-up.
    assert!(
        eventually(30_000, || prop(&prop(&crm.metrics(), "syncs"), "completed")
            .as_f64()
            == Some(2.0))
        .await,
        "{:?}",
        prop(&crm.metrics(), "syncs")
    );
    sleep(2_000).await;
    assert_eq!(
        prop(&prop(&crm.metrics(), "syncs"), "started").as_f64(),
        Some(2.0)
    );
    let bad = JsFuture::from(Promise::from(call(&sync, "start", &["sideways".into()]))).await;
    assert_eq!(
        prop(&bad.unwrap_err(), "code").as_string().as_deref(),
        Some("invalid")
    );
    crm.close();
}

#[wasm_bindgen_test]
async fn a_commit_in_one_tab_reaches_the_other_tab_as_a_record_event() {
    let a = client("user37").await;
    // A leads, so B hears of the commit from A (`origin: "tab"`); were B
    // the leader, its own read of the feed could bring it first
    // (`origin: "server"`), and no second event would follow.
    assert!(eventually(3000, || prop(&a.tabs(), "isLeader") == JsValue::TRUE).await);
    let b = client("user37").await;
    let list: Array = JsFuture::from(a.load("customers".into(), None))
        .await
        .unwrap()
        .into();
    JsFuture::from(b.load("customers".into(), None))
        .await
        .unwrap();
    let id = prop(&list.get(20), "id").as_string().unwrap();
    let events: Rc<RefCell<Vec<JsValue>>> = Rc::default();
    let sink = Rc::clone(&events);
    let listener = Closure::<dyn FnMut(JsValue)>::new(move |e: JsValue| sink.borrow_mut().push(e));
    let _unsubscribe = b.subscribe(listener.as_ref().clone().into());
    let city = format!("Tab city {}", (js_sys::Math::random() * 1e9) as u64);
    let fields = Object::new();
    Reflect::set(&fields, &"city".into(), &city.as_str().into()).unwrap();
    let saved = JsFuture::from(a.save("customers".into(), id.clone(), fields.into()))
        .await
        .unwrap();
    assert_eq!(
        prop(&saved, "status").as_string().as_deref(),
        Some("committed")
    );
    let arrived = eventually(3_000, || {
        events.borrow().iter().any(|e| {
            prop(e, "type").as_string().as_deref() == Some("record")
                && prop(e, "origin").as_string().as_deref() == Some("tab")
                && prop(e, "id").as_string().as_deref() == Some(id.as_str())
        })
    })
    .await;
    assert!(
        arrived,
        "no record event from the tab; B's storage: {:?}, events: {:?}",
        prop(&b.status(), "storage").as_string(),
        events
            .borrow()
            .iter()
            .map(|e| format!(
                "{:?}/{:?}",
                prop(e, "type").as_string(),
                prop(e, "origin").as_string()
            ))
            .collect::<Vec<_>>()
    );
    let in_b = b.get("customers", &id).unwrap();
    assert_eq!(
        prop(&prop(&in_b, "fields"), "city").as_string(),
        Some(city.clone())
    );

    // The record rode in the notice: one that is the version the notice
    // names is shown as it came (IndexedDB still holds the committed copy,
    // so only the notice can have brought this city)...
    let version = prop(&in_b, "version").as_f64().unwrap() as u64;
    let channel = "crm-sync:user37:events";
    let carried_city = format!("Carried {}", (js_sys::Math::random() * 1e9) as u64);
    let notice = record_notice(&id, version + 1, &carried(&id, version + 1, &carried_city));
    post_raw(channel, &[notice].iter().collect());
    let shown = eventually(3_000, || {
        let r = b.get("customers", &id).unwrap();
        prop(&prop(&r, "fields"), "city").as_string().as_deref() == Some(carried_city.as_str())
    })
    .await;
    assert!(shown, "the carried record was not shown");
    // ...and one that is not the version named is not taken: the notice
    // sends B to IndexedDB, whose copy is older than what B shows.
    let odd = record_notice(&id, version + 3, &carried(&id, version + 2, "Not this one"));
    post_raw(channel, &[odd].iter().collect());
    sleep(300).await;
    let r = b.get("customers", &id).unwrap();
    assert_eq!(
        prop(&prop(&r, "fields"), "city").as_string(),
        Some(carried_city)
    );
    assert_eq!(prop(&r, "version").as_f64(), Some((version + 1) as f64));
    a.close();
    b.close();
}

#[wasm_bindgen_test]
async fn another_users_change_arrives_by_itself_through_the_changes_feed() {
    let writer = client("user38").await;
    let reader = client("user39").await;
    assert!(eventually(3000, || prop(&reader.tabs(), "isLeader") == JsValue::TRUE).await);
    let list: Array = JsFuture::from(writer.load("customers".into(), None))
        .await
        .unwrap()
        .into();
    JsFuture::from(reader.load("customers".into(), None))
        .await
        .unwrap();
    let id = prop(&list.get(21), "id").as_string().unwrap();
    let events: Rc<RefCell<Vec<JsValue>>> = Rc::default();
    let sink = Rc::clone(&events);
    let listener = Closure::<dyn FnMut(JsValue)>::new(move |e: JsValue| sink.borrow_mut().push(e));
    let _unsubscribe = reader.subscribe(listener.as_ref().clone().into());
    let city = format!("Feed city {}", (js_sys::Math::random() * 1e9) as u64);
    let fields = Object::new();
    Reflect::set(&fields, &"city".into(), &city.as_str().into()).unwrap();
    JsFuture::from(writer.save("customers".into(), id.clone(), fields.into()))
        .await
        .unwrap();
    let text = format!("feed comment {}", (js_sys::Math::random() * 1e9) as u64);
    JsFuture::from(writer.comment("customers".into(), id.clone(), text.clone()))
        .await
        .unwrap();
    let arrived = eventually(10_000, || {
        let record = reader.get("customers", &id).unwrap();
        let comments: Array = prop(&record, "comments").into();
        prop(&prop(&record, "fields"), "city")
            .as_string()
            .as_deref()
            == Some(city.as_str())
            && comments
                .iter()
                .any(|c| prop(&c, "text").as_string().as_deref() == Some(text.as_str()))
    })
    .await;
    assert!(arrived, "the reader never saw the change");
    assert!(events.borrow().iter().any(|e| {
        prop(e, "origin").as_string().as_deref() == Some("server")
            && prop(e, "id").as_string().as_deref() == Some(id.as_str())
    }));
    writer.close();
    reader.close();
}

#[wasm_bindgen_test]
async fn another_users_change_rings_through_the_events_stream() {
    // The writer is plain HTTP: a page opens one stream, and it is the
    // reader's.
    let reader = client("user34").await;
    assert!(eventually(3000, || prop(&reader.tabs(), "isLeader") == JsValue::TRUE).await);
    let list: Array = JsFuture::from(reader.load("customers".into(), None))
        .await
        .unwrap()
        .into();
    assert_eq!(prop(&reader.metrics(), "feedEvents").as_f64(), Some(0.0));
    let id = prop(&list.get(22), "id").as_string().unwrap();
    let city = format!("Stream city {}", (js_sys::Math::random() * 1e9) as u64);
    let change = |city: &str| {
        let fields = Object::new();
        Reflect::set(&fields, &"city".into(), &city.into()).unwrap();
        patch_as(server(), "user33", "customers", &id, &fields.into())
    };
    JsFuture::from(change(&city)).await.unwrap();
    // The stream opens from the cursor of the load, so the change is
    // announced even if it was committed before the stream connected.
    let arrived = eventually(10_000, || {
        let record = reader.get("customers", &id).unwrap();
        prop(&prop(&record, "fields"), "city")
            .as_string()
            .as_deref()
            == Some(city.as_str())
    })
    .await;
    assert!(arrived, "the reader never saw the change");
    assert!(
        eventually(5_000, || prop(&reader.metrics(), "feedEvents")
            .as_f64()
            .is_some_and(|n| n >= 1.0))
        .await,
        "no change event came through /api/events"
    );
    // Closing stops the stream with the rest: no event is counted after.
    reader.close();
    let counted = prop(&reader.metrics(), "feedEvents").as_f64();
    JsFuture::from(change("After close")).await.unwrap();
    crm_sync::web::clock::sleep(1_000).await;
    assert_eq!(prop(&reader.metrics(), "feedEvents").as_f64(), counted);
}

fn sync_id(crm: &CrmSync) -> Option<String> {
    prop(&prop(&crm.sync(), "state"), "syncId").as_string()
}

async fn start_timed(crm: &CrmSync) -> (JsValue, f64) {
    let t0 = js_sys::Date::now();
    let answer = JsFuture::from(Promise::from(call(&crm.sync(), "start", &[])))
        .await
        .unwrap();
    (answer, js_sys::Date::now() - t0)
}

#[wasm_bindgen_test]
async fn ten_users_sync_at_once_in_about_the_time_of_one() {
    let solo = client("user21").await;
    assert!(eventually(3000, || prop(&solo.tabs(), "isLeader") == JsValue::TRUE).await);
    let t0 = js_sys::Date::now();
    start_timed(&solo).await;
    assert!(eventually(30_000, || phase(&solo) == "complete").await);
    let one = js_sys::Date::now() - t0;
    solo.close();

    let mut clients = Vec::new();
    for i in 11..=20 {
        clients.push(client(&format!("user{i}")).await);
    }
    for c in &clients {
        assert!(eventually(3000, || prop(&c.tabs(), "isLeader") == JsValue::TRUE).await);
    }
    let t0 = js_sys::Date::now();
    let starts = Array::new();
    for c in &clients {
        starts.push(&Promise::from(call(&c.sync(), "start", &[])));
    }
    let answers: Array = JsFuture::from(Promise::all(&starts)).await.unwrap().into();
    let started_in = js_sys::Date::now() - t0;
    for a in answers.iter() {
        assert_eq!(prop(&a, "status").as_string().as_deref(), Some("queued"));
    }
    assert!(started_in < 1000.0, "ten starts took {started_in} ms");
    assert!(eventually(60_000, || clients.iter().all(|c| phase(c) == "complete")).await);
    let ten = js_sys::Date::now() - t0;
    let ratio = ten / one;
    web_sys::console::log_1(
        &format!("one sync {one:.0} ms, ten users at once {ten:.0} ms, ratio {ratio:.2}").into(),
    );
    assert!(ratio < 4.0, "ten users took {ratio:.2}x one");
    for c in clients {
        c.close();
    }
}

#[wasm_bindgen_test]
async fn when_the_leader_closes_mid_sync_another_tab_follows_the_job_to_complete() {
    let leader = client("user22").await;
    assert!(eventually(3000, || prop(&leader.tabs(), "isLeader") == JsValue::TRUE).await);
    let other = client("user22").await;
    start_timed(&leader).await;
    assert!(
        eventually(5_000, || phase(&other) == "downloading").await,
        "{}",
        phase(&other)
    );
    let job = sync_id(&leader);
    assert!(job.is_some());
    leader.close();
    assert!(eventually(3_000, || prop(&other.tabs(), "isLeader") == JsValue::TRUE).await);
    assert!(
        eventually(30_000, || phase(&other) == "complete").await,
        "{}",
        phase(&other)
    );
    assert_eq!(sync_id(&other), job);
    other.close();
}

#[wasm_bindgen_test]
async fn cancel_leaves_the_job_cancelled_on_the_server() {
    let crm = client("user23").await;
    assert!(eventually(3000, || prop(&crm.tabs(), "isLeader") == JsValue::TRUE).await);
    start_timed(&crm).await;
    assert!(
        eventually(5_000, || phase(&crm) == "downloading").await,
        "{}",
        phase(&crm)
    );
    let job = sync_id(&crm).unwrap();
    JsFuture::from(Promise::from(call(&crm.sync(), "cancel", &[])))
        .await
        .unwrap();
    assert!(
        eventually(5_000, || phase(&crm) == "cancelled").await,
        "{}",
        phase(&crm)
    );
    // The server's own word.
    let resp = fetch_as(&crm.token(), "GET", &format!("/api/sync/{job}"), &[], None).await;
    let body = JsFuture::from(resp.json().unwrap()).await.unwrap();
    assert_eq!(
        prop(&body, "status").as_string().as_deref(),
        Some("cancelled")
    );
    // The state and the run's history line keep the job's final counts and
    // words, not those of the last poll before it stopped.
    let stats_of = |v: &JsValue| {
        let stats = prop(v, "stats");
        [
            "bytes",
            "rows",
            "inserted",
            "updated",
            "unchanged",
            "conflicts",
            "invalid",
        ]
        .map(|key| prop(&stats, key).as_f64())
    };
    let state = prop(&crm.sync(), "state");
    let said = prop(&body, "message").as_string().unwrap();
    assert!(said.starts_with("Cancelled"), "{said}");
    assert_eq!(prop(&state, "message").as_string(), Some(said.clone()));
    assert_eq!(stats_of(&state), stats_of(&body));
    let history: Array = JsFuture::from(Promise::from(call(&crm.sync(), "history", &[])))
        .await
        .unwrap()
        .into();
    let line = history
        .iter()
        .find(|l| prop(l, "syncId").as_string().as_deref() == Some(job.as_str()))
        .expect("the run is in the history");
    assert_eq!(prop(&line, "message").as_string(), Some(said));
    assert_eq!(stats_of(&line), stats_of(&body));
    crm.close();
}

#[wasm_bindgen_test]
async fn a_start_from_a_tab_that_does_not_lead_resolves_with_the_servers_sync_id() {
    let a = client("user40").await;
    let b = client("user40").await;
    let leads = |c: &CrmSync| prop(&c.tabs(), "isLeader") == JsValue::TRUE;
    assert!(eventually(3000, || leads(&a) || leads(&b)).await);
    let follower = if leads(&a) { &b } else { &a };
    let answer = JsFuture::from(Promise::from(call(&follower.sync(), "start", &[])))
        .await
        .unwrap();
    assert_eq!(
        prop(&answer, "status").as_string().as_deref(),
        Some("queued")
    );
    let id = prop(&answer, "syncId").as_string();
    assert!(id.is_some(), "syncId was {:?}", prop(&answer, "syncId"));
    // The server knows that job, as this user's.
    let resp = fetch_as(
        &follower.token(),
        "GET",
        &format!("/api/sync/{}", id.unwrap()),
        &[],
        None,
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert!(
        eventually(20_000, || phase(&a) == "complete"
            && phase(&b) == "complete")
        .await
    );
    a.close();
    b.close();
}

#[wasm_bindgen_test]
async fn cancel_settles_with_the_servers_answer() {
    let crm = client("user43").await;
    assert!(eventually(3000, || prop(&crm.tabs(), "isLeader") == JsValue::TRUE).await);
    // Nothing to cancel: said, typed.
    let idle = JsFuture::from(Promise::from(call(&crm.sync(), "cancel", &[])))
        .await
        .unwrap_err();
    assert_eq!(
        prop(&idle, "code").as_string().as_deref(),
        Some("already_finished")
    );
    start_timed(&crm).await;
    assert!(eventually(5_000, || phase(&crm) == "downloading").await);
    let job = sync_id(&crm).unwrap();
    JsFuture::from(Promise::from(call(&crm.sync(), "cancel", &[])))
        .await
        .unwrap();
    // Settled only once the server said so: its own word agrees at once.
    let resp = fetch_as(&crm.token(), "GET", &format!("/api/sync/{job}"), &[], None).await;
    let body = JsFuture::from(resp.json().unwrap()).await.unwrap();
    assert_eq!(
        prop(&body, "status").as_string().as_deref(),
        Some("cancelled")
    );
    crm.close();
}

/// The scheduled interval a tab knows, if any.
fn interval_of(crm: &CrmSync) -> Option<f64> {
    let planned = prop(&crm.sync(), "scheduled");
    if planned.is_object() {
        prop(&planned, "intervalMs").as_f64()
    } else {
        None
    }
}

/// This user's jobs on the server, newest first.
async fn server_jobs(token: &str) -> Array {
    let resp = fetch_as(token, "GET", "/api/sync", &[], None).await;
    let body = JsFuture::from(resp.json().unwrap()).await.unwrap();
    prop(&body, "items").into()
}

#[wasm_bindgen_test]
async fn a_schedule_survives_a_reload_and_a_leader_change_without_doubled_runs() {
    let a = client("user39").await;
    let b = client("user39").await;
    let leads = |c: &CrmSync| prop(&c.tabs(), "isLeader") == JsValue::TRUE;
    assert!(eventually(3000, || leads(&a) || leads(&b)).await);
    let (leader, follower) = if leads(&a) { (a, b) } else { (b, a) };
    let token = leader.token();
    let before = server_jobs(&token).await.length();
    // Set from the tab that does not lead: the leader carries it out.
    JsFuture::from(Promise::from(call(
        &follower.sync(),
        "schedule",
        &[2500.into()],
    )))
    .await
    .unwrap();
    assert_eq!(interval_of(&follower), Some(2500.0));
    assert!(eventually(3000, || interval_of(&leader) == Some(2500.0)).await);
    sleep(5_600).await;
    let runs = server_jobs(&token).await.length() - before;
    assert!(
        (1..=3).contains(&runs),
        "{runs} runs in 5.6 s at one per 2.5 s"
    );
    // The leader goes; the other tab goes on with the same schedule.
    leader.close();
    assert!(eventually(3000, || leads(&follower)).await);
    let mid = server_jobs(&token).await.length();
    sleep(5_600).await;
    let after = server_jobs(&token).await.length() - mid;
    assert!(
        (1..=3).contains(&after),
        "{after} runs after the leader change"
    );
    // A reload (a new client on the same database) knows it.
    let reloaded = client("user39").await;
    assert!(eventually(3000, || interval_of(&reloaded) == Some(2500.0)).await);
    JsFuture::from(Promise::from(call(
        &reloaded.sync(),
        "schedule",
        &[JsValue::NULL],
    )))
    .await
    .unwrap();
    assert!(prop(&reloaded.sync(), "scheduled").is_null());
    assert!(eventually(3000, || prop(&follower.sync(), "scheduled").is_null()).await);
    // Bad input is `invalid`.
    let bad = JsFuture::from(Promise::from(call(
        &reloaded.sync(),
        "schedule",
        &[5.into()],
    )))
    .await
    .unwrap_err();
    assert_eq!(prop(&bad, "code").as_string().as_deref(), Some("invalid"));
    follower.close();
    reloaded.close();
}

#[wasm_bindgen_test]
async fn a_fresh_browser_shows_past_runs_from_the_server() {
    let first = client("user38").await;
    assert!(eventually(3000, || prop(&first.tabs(), "isLeader") == JsValue::TRUE).await);
    let (answer, _) = start_timed(&first).await;
    let id = prop(&answer, "syncId").as_string().unwrap();
    assert!(eventually(20_000, || phase(&first) == "complete").await);
    // Logging out deletes this browser's copy of the history.
    let discard = Object::new();
    Reflect::set(&discard, &"discard".into(), &true.into()).unwrap();
    JsFuture::from(first.logout(Some(discard))).await.unwrap();
    let fresh = client("user38").await;
    let history: Array = JsFuture::from(Promise::from(call(&fresh.sync(), "history", &[])))
        .await
        .unwrap()
        .into();
    let line = history
        .iter()
        .find(|l| prop(l, "syncId").as_string().as_deref() == Some(id.as_str()))
        .expect("the run from the server's list");
    assert_eq!(
        prop(&line, "status").as_string().as_deref(),
        Some("complete")
    );
    assert!(prop(&line, "durationMs").as_f64().is_some());
    fresh.close();
}

#[wasm_bindgen_test]
async fn a_from_sheet_runs_conflicting_rows_are_in_its_history_line() {
    let crm = client("user26").await;
    assert!(eventually(3000, || prop(&crm.tabs(), "isLeader") == JsValue::TRUE).await);
    // user29 changes c-0196 in the CRM: the sheet's row for it no longer applies.
    let phone = format!("+1-555-{:x}", (js_sys::Math::random() * 1e9) as u64);
    let fields = Object::new();
    Reflect::set(&fields, &"phone".into(), &phone.clone().into()).unwrap();
    JsFuture::from(patch_as(server(), "user29", "customers", "c-0196", &fields))
        .await
        .unwrap();
    let (answer, _) = start_timed(&crm).await;
    let id = prop(&answer, "syncId").as_string().unwrap();
    assert!(eventually(20_000, || phase(&crm) == "complete").await);
    let history: Array = JsFuture::from(Promise::from(call(&crm.sync(), "history", &[])))
        .await
        .unwrap()
        .into();
    let line = history
        .iter()
        .find(|l| prop(l, "syncId").as_string().as_deref() == Some(id.as_str()))
        .expect("the run is in the history");
    let rows: Array = prop(&line, "conflictRows").into();
    let row = rows
        .iter()
        .find(|r| prop(r, "id").as_string().as_deref() == Some("c-0196"))
        .unwrap_or_else(|| panic!("c-0196 not among {} rows", rows.length()));
    assert_eq!(prop(&row, "reason").as_string().as_deref(), Some("changed"));
    assert_eq!(
        prop(&row, "updatedBy").as_string().as_deref(),
        Some("user29")
    );
    // Field by field: both values, who changed the CRM's and when.
    let conflicts =
        |id: JsValue| JsFuture::from(Promise::from(call(&crm.sync(), "conflicts", &[id])));
    let items: Array = conflicts(id.clone().into()).await.unwrap().into();
    let item = items
        .iter()
        .find(|i| {
            prop(i, "recordId").as_string().as_deref() == Some("c-0196")
                && prop(i, "field").as_string().as_deref() == Some("phone")
        })
        .expect("c-0196's phone is listed");
    assert_eq!(prop(&item, "crm").as_string(), Some(phone));
    assert!(prop(&item, "sheet").is_string());
    assert_eq!(
        prop(&item, "changedBy").as_string().as_deref(),
        Some("user29")
    );
    assert!(prop(&item, "row").as_f64().is_some_and(|r| r > 1.0));
    assert!(prop(&item, "changedAt").is_string());
    // Bad input and an unknown job: typed errors.
    let unknown = conflicts("no-such-job".into()).await.unwrap_err();
    assert_eq!(
        prop(&unknown, "code").as_string().as_deref(),
        Some("sync_not_found")
    );
    let bad = conflicts(JsValue::from(42)).await.unwrap_err();
    assert_eq!(prop(&bad, "code").as_string().as_deref(), Some("invalid"));
    crm.close();
}

/// A tab that opens after a run ended shows how it ended, as its leader does
/// (it asks the leader for the state; found by the sync simulation).
#[wasm_bindgen_test]
async fn a_tab_that_opens_after_a_run_shows_how_it_ended() {
    let leader = client("user17").await;
    assert!(eventually(3000, || prop(&leader.tabs(), "isLeader") == JsValue::TRUE).await);
    JsFuture::from(Promise::from(call(&leader.sync(), "start", &[])))
        .await
        .unwrap();
    assert!(
        eventually(20_000, || phase(&leader) == "complete").await,
        "leader: {}",
        phase(&leader)
    );
    let late = client("user17").await;
    assert_eq!(prop(&late.tabs(), "isLeader"), JsValue::FALSE);
    assert!(
        eventually(3_000, || phase(&late) == "complete").await,
        "the tab opened late shows {}",
        phase(&late)
    );
    let shown = prop(&late.sync(), "state");
    let led = prop(&leader.sync(), "state");
    assert_eq!(prop(&shown, "syncId"), prop(&led, "syncId"));
    assert_eq!(prop(&shown, "progress").as_f64(), Some(100.0));
    late.close();
    leader.close();
}

#[wasm_bindgen_test]
async fn a_start_whose_leader_closes_at_once_is_answered_and_started_once() {
    // Three tabs; "Sync" pressed in one that does not lead, and the leader
    // closes before the press reached it. The next leader carries it out
    // (the pressing tab, first in line for the lock, or the third), under
    // the key chosen where it was pressed: one job, and an answer.
    let leader = client("user04").await;
    assert!(eventually(3000, || prop(&leader.tabs(), "isLeader") == JsValue::TRUE).await);
    let pressing = client("user04").await;
    let third = client("user04").await;
    let before = server_jobs(&pressing.token()).await.length();
    let pressed = Promise::from(call(&pressing.sync(), "start", &["from-sheet".into()]));
    leader.close();
    let answer = JsFuture::from(pressed).await;
    let answer = answer.unwrap_or_else(|e| panic!("start() rejected: {e:?}"));
    let id = prop(&answer, "syncId").as_string();
    assert!(id.is_some(), "syncId was {:?}", prop(&answer, "syncId"));
    assert!(
        eventually(20_000, || phase(&pressing) == "complete"
            && phase(&third) == "complete")
        .await,
        "{} {}",
        phase(&pressing),
        phase(&third)
    );
    assert_eq!(sync_id(&pressing), id);
    let jobs = server_jobs(&pressing.token()).await;
    assert_eq!(jobs.length() - before, 1, "one press, one job");
    pressing.close();
    third.close();
}
