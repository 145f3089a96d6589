//! Staged saves against the real server: debounce, optimistic locking,
//! merges, conflicts, comments, metrics, and the outbox across a reload.

use crm_sync::api::CrmSync;
use js_sys::{Array, Object, Promise, Reflect};
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::wasm_bindgen_test;

use super::support::{eventually, fetch_as, prop, server};

fn obj(pairs: &[(&str, JsValue)]) -> JsValue {
    let o = Object::new();
    for (k, v) in pairs {
        Reflect::set(&o, &(*k).into(), v).unwrap();
    }
    o.into()
}

async fn client(user: &str, extra: &[(&str, JsValue)]) -> CrmSync {
    let mut pairs = vec![
        ("baseUrl", JsValue::from(format!("{}/api", server()))),
        ("username", user.into()),
        ("password", "demo".into()),
    ];
    pairs.extend(extra.iter().cloned());
    CrmSync::login(obj(&pairs)).await.unwrap()
}

/// Differs from run to run, so values never equal what an earlier run of
/// the suite left on the same server.
fn run_tag() -> String {
    format!("{:x}", (js_sys::Math::random() * 1e12) as u64)
}

async fn wait(p: Promise) -> JsValue {
    JsFuture::from(p).await.unwrap()
}

/// The server's record, read with plain fetch (not through the module).
async fn server_record(token: &str, id: &str) -> JsValue {
    let resp = fetch_as(token, "GET", &format!("/api/customers/{id}"), &[], None).await;
    wait(resp.json().unwrap()).await
}

fn version(record: &JsValue) -> f64 {
    prop(record, "version").as_f64().unwrap()
}

fn status(result: &JsValue) -> String {
    prop(result, "status").as_string().unwrap()
}

/// Thirty users' clients, each with the customers loaded, and the id of
/// the n-th customer they will all change.
async fn thirty_clients_on_customer(n: u32) -> (Vec<CrmSync>, String) {
    let mut clients = Vec::new();
    for i in 1..=30 {
        clients.push(client(&format!("user{i:02}"), &[]).await);
    }
    let id = customer(&clients[0], n).await;
    for c in &clients[1..] {
        wait(c.load("customers".into(), None)).await;
    }
    (clients, id)
}

/// The id of the n-th demo customer, so each test works on its own record.
async fn customer(crm: &CrmSync, n: u32) -> String {
    let list: Array = wait(crm.load("customers".into(), None)).await.into();
    prop(&list.get(n), "id").as_string().unwrap()
}

#[wasm_bindgen_test]
async fn thirty_clients_change_thirty_fields_and_all_land() {
    let (clients, id) = thirty_clients_on_customer(10).await;
    let before = version(&clients[0].get("customers", &id).unwrap());
    let tag = run_tag();
    let saves = Array::new();
    for (i, c) in clients.iter().enumerate() {
        let fields = obj(&[(
            &format!("note{i:02}"),
            JsValue::from(format!("from client {i} {tag}")),
        )]);
        saves.push(&c.save("customers".into(), id.clone(), fields));
        let _ = c.flush();
    }
    let results: Array = wait(Promise::all(&saves)).await.into();
    for r in results.iter() {
        let s = status(&r);
        assert!(s == "committed" || s == "merged", "status {s}");
    }
    let after = server_record(&clients[0].token(), &id).await;
    assert_eq!(version(&after), before + 30.0);
    let fields = prop(&after, "fields");
    for i in 0..30 {
        assert_eq!(
            prop(&fields, &format!("note{i:02}")).as_string(),
            Some(format!("from client {i} {tag}"))
        );
    }
    let merged: f64 = clients
        .iter()
        .map(|c| prop(&c.metrics(), "merged").as_f64().unwrap())
        .sum();
    assert!(
        merged >= 1.0,
        "some saves must have been merged, got {merged}"
    );
    for c in clients {
        c.close();
    }
}

#[wasm_bindgen_test]
async fn thirty_clients_change_one_field_committed_ones_raise_the_version() {
    let (clients, id) = thirty_clients_on_customer(11).await;
    let before = version(&clients[0].get("customers", &id).unwrap());
    // The users' totals over sessions: count from here.
    let conflicts_of = |clients: &[CrmSync]| -> f64 {
        clients
            .iter()
            .map(|c| prop(&c.metrics(), "conflicts").as_f64().unwrap())
            .sum()
    };
    let conflicts_before = conflicts_of(&clients);
    let tag = run_tag();
    let saves = Array::new();
    for (i, c) in clients.iter().enumerate() {
        let fields = obj(&[("city", JsValue::from(format!("City {i} {tag}")))]);
        saves.push(&c.save("customers".into(), id.clone(), fields));
        let _ = c.flush();
    }
    let results: Array = wait(Promise::all(&saves)).await.into();
    let committed = results.iter().filter(|r| status(r) == "committed").count();
    let conflicts = results.iter().filter(|r| status(r) == "conflict").count();
    assert_eq!(committed + conflicts, 30);
    assert!(committed >= 1);
    let after = server_record(&clients[0].token(), &id).await;
    assert_eq!(version(&after), before + committed as f64);
    // Each conflict is kept for a person, with base, mine and theirs.
    let with_conflict = clients
        .iter()
        .find(|c| Array::from(&c.conflicts()).length() == 1)
        .expect("a client with a conflict");
    let conflict = Array::from(&with_conflict.conflicts()).get(0);
    assert_eq!(prop(&conflict, "recordId").as_string(), Some(id.clone()));
    let fields: Array = prop(&conflict, "fields").into();
    assert_eq!(fields.get(0).as_string().as_deref(), Some("city"));
    assert!(
        prop(&prop(&conflict, "theirs"), "version")
            .as_f64()
            .unwrap()
            > before
    );
    assert_eq!(
        prop(&prop(&conflict, "base"), "version").as_f64(),
        Some(before)
    );
    let total_conflicts = conflicts_of(&clients) - conflicts_before;
    assert_eq!(total_conflicts as usize, conflicts);
    // Resolving sends the person's choice on the server's version.
    let resolved = wait(with_conflict.resolve(
        prop(&conflict, "id").as_string().unwrap(),
        obj(&[("city", JsValue::from(format!("Resolved {tag}")))]),
    ))
    .await;
    assert_eq!(status(&resolved), "committed");
    let after = server_record(&clients[0].token(), &id).await;
    assert_eq!(
        prop(&prop(&after, "fields"), "city").as_string().as_deref(),
        Some(format!("Resolved {tag}").as_str())
    );
    assert_eq!(Array::from(&with_conflict.conflicts()).length(), 0);
    for c in clients {
        c.close();
    }
}

#[wasm_bindgen_test]
async fn thirty_comments_land_once_each() {
    let mut clients = Vec::new();
    for i in 1..=30 {
        clients.push(client(&format!("user{i:02}"), &[]).await);
    }
    let id = customer(&clients[0], 12).await;
    let tag = run_tag();
    let posts = Array::new();
    for (i, c) in clients.iter().enumerate() {
        posts.push(&c.comment("customers".into(), id.clone(), format!("comment {i} {tag}")));
    }
    wait(Promise::all(&posts)).await;
    let after = server_record(&clients[0].token(), &id).await;
    let comments: Array = prop(&after, "comments").into();
    for i in 0..30 {
        let text = format!("comment {i} {tag}");
        let n = comments
            .iter()
            .filter(|c| prop(c, "text").as_string().as_deref() == Some(text.as_str()))
            .count();
        assert_eq!(n, 1, "{text}");
    }
    for c in clients {
        c.close();
    }
}

#[wasm_bindgen_test]
async fn fifty_saves_in_the_window_send_one_patch_and_share_its_result() {
    let crm = client("alice", &[("debounceMs", 200.into())]).await;
    let id = customer(&crm, 13).await;
    let before = version(&crm.get("customers", &id).unwrap());
    // `metrics()` are the user's totals over sessions (alice is in many
    // tests): compare with the figures before.
    let count = |crm: &CrmSync, name: &str| prop(&crm.metrics(), name).as_f64().unwrap();
    let requests_before = count(&crm, "requests");
    let (operations_before, commits_before) = (count(&crm, "operations"), count(&crm, "commits"));
    let saves = Array::new();
    let tag = run_tag();
    for i in 0..50 {
        let fields = obj(&[("phone", JsValue::from(format!("+1 555 {i:04} {tag}")))]);
        saves.push(&crm.save("customers".into(), id.clone(), fields));
    }
    // Staged: `view` shows the latest value, `get` the confirmed one.
    let view = crm.view("customers", &id).unwrap();
    assert_eq!(
        prop(&prop(&view, "fields"), "phone").as_string().as_deref(),
        Some(format!("+1 555 0049 {tag}").as_str())
    );
    assert_eq!(prop(&view, "pending"), JsValue::TRUE);
    let confirmed = crm.get("customers", &id).unwrap();
    assert_ne!(
        prop(&prop(&confirmed, "fields"), "phone")
            .as_string()
            .as_deref(),
        Some(format!("+1 555 0049 {tag}").as_str())
    );
    assert_eq!(Array::from(&crm.pending()).length(), 1);

    let results: Array = wait(Promise::all(&saves)).await.into();
    let metrics = crm.metrics();
    // One PATCH: the server's version moved by one and one commit was
    // counted (below). `requests` also counts the feed reads that the
    // commit's own change event starts in the leader tab, whose number
    // depends on when the event comes, so it is only bounded here.
    let requests = prop(&metrics, "requests").as_f64().unwrap() - requests_before;
    assert!((1.0..=4.0).contains(&requests), "{requests} requests");
    assert_eq!(
        prop(&metrics, "operations").as_f64(),
        Some(operations_before + 50.0)
    );
    assert_eq!(
        prop(&metrics, "commits").as_f64(),
        Some(commits_before + 1.0)
    );
    for r in results.iter() {
        assert_eq!(status(&r), "committed");
        assert_eq!(version(&prop(&r, "record")), before + 1.0);
    }
    let now = crm.get("customers", &id).unwrap();
    assert_eq!(version(&now), before + 1.0);
    assert_eq!(
        prop(&prop(&now, "fields"), "phone").as_string().as_deref(),
        Some(format!("+1 555 0049 {tag}").as_str())
    );
    assert!(prop(&crm.view("customers", &id).unwrap(), "pending").is_undefined());
    // Snapshots are stable between changes (useSyncExternalStore needs it).
    assert!(Object::is(
        &crm.list("customers").unwrap(),
        &crm.list("customers").unwrap()
    ));
    crm.close();
}

/// While the app holds a list, a change of one record makes one new
/// object: every other record is the same object as before (the record
/// objects are held weakly, so this is what keeps React's memoised rows).
#[wasm_bindgen_test]
async fn a_change_of_one_record_makes_one_new_object_in_a_held_list() {
    let crm = client("alice", &[("debounceMs", 50.into())]).await;
    let id = customer(&crm, 15).await;
    // Once the catch-up after a local-first load is done (it would change
    // records, and their `stale` mark, between the two lists).
    let fresh = || {
        Array::from(&crm.list("customers").unwrap())
            .iter()
            .all(|r| prop(&r, "stale") != JsValue::TRUE)
    };
    assert!(eventually(30_000, fresh).await);
    let held: Array = crm.list("customers").unwrap().into();
    let phone = format!("+1 555 0150 {}", run_tag());
    let saved = wait(crm.save(
        "customers".into(),
        id.clone(),
        obj(&[("phone", phone.into())]),
    ))
    .await;
    // Merged when another test changed this customer since alice last saw it.
    assert!(matches!(status(&saved).as_str(), "committed" | "merged"));
    let now: Array = crm.list("customers").unwrap().into();
    assert!(!Object::is(&held, &now));
    assert_eq!(now.length(), held.length());
    let mut changed = Vec::new();
    for (old, new) in held.iter().zip(now.iter()) {
        assert_eq!(prop(&old, "id").as_string(), prop(&new, "id").as_string());
        if !Object::is(&old, &new) {
            changed.push(prop(&new, "id").as_string().unwrap());
        }
    }
    assert_eq!(changed, vec![id.clone()]);
    // `get` hands out the object the list holds.
    let other = now
        .iter()
        .find(|r| prop(r, "id").as_string() != Some(id.clone()))
        .unwrap();
    let other_id = prop(&other, "id").as_string().unwrap();
    assert!(Object::is(
        &crm.get("customers", &other_id).unwrap(),
        &other
    ));
    crm.close();
}

#[wasm_bindgen_test]
async fn while_a_patch_is_in_flight_get_is_old_and_view_is_new() {
    let crm = client("bob", &[]).await;
    let id = customer(&crm, 14).await;
    let old = prop(
        &prop(&crm.get("customers", &id).unwrap(), "fields"),
        "status",
    );
    let next = if old.as_string().as_deref() == Some("churned") {
        "lead"
    } else {
        "churned"
    };
    let saving = crm.save(
        "customers".into(),
        id.clone(),
        obj(&[("status", next.into())]),
    );
    let _flushing = crm.flush();
    let states: Array = crm.pending().into();
    assert!(matches!(
        prop(&states.get(0), "state").as_string().as_deref(),
        Some("queued") | Some("sending")
    ));
    assert_eq!(
        prop(
            &prop(&crm.get("customers", &id).unwrap(), "fields"),
            "status"
        ),
        old
    );
    assert_eq!(
        prop(
            &prop(&crm.view("customers", &id).unwrap(), "fields"),
            "status"
        )
        .as_string()
        .as_deref(),
        Some(next)
    );
    let result = wait(saving).await;
    assert_eq!(status(&result), "committed");
    assert_eq!(
        prop(
            &prop(&crm.get("customers", &id).unwrap(), "fields"),
            "status"
        )
        .as_string()
        .as_deref(),
        Some(next)
    );
    crm.close();
}

#[wasm_bindgen_test]
async fn a_refused_value_goes_to_failed_and_does_not_block_the_next() {
    let crm = client("user31", &[]).await;
    let id = customer(&crm, 15).await;
    let bad = JsFuture::from(crm.save(
        "customers".into(),
        id.clone(),
        obj(&[("email", "not an email".into())]),
    ))
    .await;
    let err = bad.unwrap_err();
    assert_eq!(prop(&err, "code").as_string().as_deref(), Some("invalid"));
    assert_eq!(prop(&err, "status").as_f64(), Some(422.0));
    let failed: Array = crm.failed().into();
    assert_eq!(failed.length(), 1);
    let ok = wait(crm.save(
        "customers".into(),
        id.clone(),
        obj(&[("city", JsValue::from(run_tag()))]),
    ))
    .await;
    assert_eq!(status(&ok), "committed");
    let mutation_id = prop(&failed.get(0), "mutationId").as_string().unwrap();
    wait(crm.discard(mutation_id)).await;
    assert_eq!(Array::from(&crm.failed()).length(), 0);
    crm.close();
}

#[wasm_bindgen_test]
async fn an_offline_outbox_survives_a_reload_and_lands_once() {
    let first = client("user32", &[]).await;
    let id = customer(&first, 16).await;
    let token = first.token();
    let before = version(&server_record(&token, &id).await);
    let owner = format!("user32 {}", run_tag());
    let text = format!("written offline {}", run_tag());
    first.set_online(false);
    let queued = wait(first.save(
        "customers".into(),
        id.clone(),
        obj(&[("owner", JsValue::from(owner.as_str()))]),
    ))
    .await;
    assert_eq!(status(&queued), "queued");
    let comment = wait(first.comment("customers".into(), id.clone(), text.clone())).await;
    assert_eq!(status(&comment), "queued");
    // Give IndexedDB a moment to commit the entries, then "close the tab".
    gloo_timers::future::TimeoutFuture::new(200).await;
    first.close();
    assert_eq!(version(&server_record(&token, &id).await), before);

    // A new instance on the same database (a reload) drains the outbox.
    let second = client("user32", &[]).await;
    // The patch and the comment are two requests, sent in order: wait for
    // both (a lost one times out and fails below).
    let has_comment = |record: &JsValue| {
        Array::from(&prop(record, "comments"))
            .iter()
            .any(|c| prop(&c, "text").as_string().as_deref() == Some(text.as_str()))
    };
    let mut landed = JsValue::UNDEFINED;
    for _ in 0..50 {
        landed = server_record(&token, &id).await;
        if version(&landed) > before && has_comment(&landed) {
            break;
        }
        gloo_timers::future::TimeoutFuture::new(100).await;
    }
    assert_eq!(version(&landed), before + 1.0);
    assert_eq!(
        prop(&prop(&landed, "fields"), "owner")
            .as_string()
            .as_deref(),
        Some(owner.as_str())
    );
    let comments: Array = prop(&landed, "comments").into();
    let offline = comments
        .iter()
        .filter(|c| prop(c, "text").as_string().as_deref() == Some(text.as_str()))
        .count();
    assert_eq!(offline, 1);
    assert!(prop(&second.metrics(), "outboxReplayed").as_f64().unwrap() >= 2.0);
    second.close();
}

#[wasm_bindgen_test]
async fn a_replay_after_a_lost_answer_applies_the_change_once() {
    use crm_sync::core::outbox::{MutationOp, OutboxEntry};
    use crm_sync::web::idb::{Store, UserDb};

    let first = client("user46", &[]).await;
    let id = customer(&first, 18).await;
    let token = first.token();
    let before = version(&server_record(&token, &id).await);
    first.set_online(false);
    let city = format!("Lost answer {}", run_tag());
    let queued = wait(first.save(
        "customers".into(),
        id.clone(),
        obj(&[("city", JsValue::from(city.as_str()))]),
    ))
    .await;
    assert_eq!(status(&queued), "queued");
    gloo_timers::future::TimeoutFuture::new(200).await;
    first.close();

    // Fault injection: the request reached the server and was applied, but
    // its answer was lost (the tab died before reading it). Send the stored
    // entry exactly as the module would, and drop the answer.
    let db = UserDb::open("user46").await.unwrap();
    let entries: Vec<(String, OutboxEntry)> = db.all(Store::Outbox).await.unwrap();
    assert_eq!(entries.len(), 1);
    let entry = &entries[0].1;
    let MutationOp::Patch { base_version, .. } = &entry.op else {
        panic!("expected a patch, got {:?}", entry.op);
    };
    db.close();
    let if_match = format!("\"{base_version}\"");
    let lost = fetch_as(
        &token,
        "PATCH",
        &format!("/api/customers/{id}"),
        &[
            ("Content-Type", "application/json"),
            ("If-Match", &if_match),
            ("Idempotency-Key", &entry.idempotency_key),
        ],
        Some(&format!(r#"{{"fields":{{"city":"{city}"}}}}"#)),
    )
    .await;
    assert_eq!(lost.status(), 200);
    assert_eq!(version(&server_record(&token, &id).await), before + 1.0);

    // The reload replays the entry with its key: the server answers from
    // its record of the first attempt and changes nothing.
    let second = client("user46", &[]).await;
    let mut drained = false;
    for _ in 0..60 {
        if Array::from(&second.pending()).length() == 0 {
            drained = true;
            break;
        }
        gloo_timers::future::TimeoutFuture::new(100).await;
    }
    assert!(drained, "the outbox was not drained");
    let after = server_record(&token, &id).await;
    assert_eq!(version(&after), before + 1.0, "applied once");
    assert_eq!(
        prop(&prop(&after, "fields"), "city").as_string(),
        Some(city)
    );
    assert_eq!(Array::from(&second.failed()).length(), 0);
    second.close();
}

#[wasm_bindgen::prelude::wasm_bindgen(module = "/tests/browser/helpers.js")]
extern "C" {
    #[wasm_bindgen(js_name = makeNewerDatabase)]
    fn make_newer_database(name: &str) -> Promise;
}

#[wasm_bindgen_test]
async fn without_usable_indexeddb_the_client_works_in_memory_and_says_so() {
    wait(make_newer_database("crm-sync:user48")).await;
    let crm = client("user48", &[]).await;
    assert_eq!(
        prop(&crm.status(), "storage").as_string().as_deref(),
        Some("memory")
    );
    let id = customer(&crm, 19).await;
    let saved = wait(crm.save(
        "customers".into(),
        id,
        obj(&[("city", JsValue::from(run_tag()))]),
    ))
    .await;
    assert_eq!(status(&saved), "committed");
    crm.close();
}

#[wasm_bindgen_test]
async fn a_change_still_in_the_debounce_window_can_be_discarded() {
    let crm = client("user49", &[("debounceMs", 5_000.into())]).await;
    let id = customer(&crm, 22).await;
    // The load's requests (one per page), and then none: no PATCH.
    let after_load = prop(&crm.metrics(), "requests").as_f64();
    let before = prop(&prop(&crm.get("customers", &id).unwrap(), "fields"), "city");
    let saving = crm.save(
        "customers".into(),
        id.clone(),
        obj(&[("city", JsValue::from(run_tag()))]),
    );
    let pending: Array = crm.pending().into();
    assert_eq!(pending.length(), 1);
    let row = pending.get(0);
    assert_eq!(prop(&row, "state").as_string().as_deref(), Some("staged"));
    let mutation_id = prop(&row, "mutationId").as_string().unwrap();
    assert!(!mutation_id.is_empty());
    wait(crm.discard(mutation_id)).await;
    let err = JsFuture::from(saving).await.unwrap_err();
    assert_eq!(prop(&err, "code").as_string().as_deref(), Some("cancelled"));
    assert_eq!(Array::from(&crm.pending()).length(), 0);
    let view = crm.view("customers", &id).unwrap();
    assert_eq!(prop(&prop(&view, "fields"), "city"), before);
    assert!(prop(&view, "pending").is_undefined());
    assert_eq!(
        prop(&crm.metrics(), "requests").as_f64(),
        after_load,
        "the load, and no PATCH"
    );
    crm.close();
}
