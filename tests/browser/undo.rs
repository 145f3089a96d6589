//! `crm.undo`, `crm.redo`, `crm.undoable()` against the reference server:
//! the list is the same in two tabs of the user, an undo puts back only the
//! fields the change changed and is a new version, an undo made offline is
//! queued and sent, and a field someone changed since is a conflict, never
//! overwritten. Logs in as `user46` (two tabs) and `user47` (someone
//! else); no other suite uses them.

use crm_sync::api::CrmSync;
use js_sys::Array;
use wasm_bindgen::JsValue;
use wasm_bindgen_test::wasm_bindgen_test;

use super::support::{eventually, fetch_as, login, obj, prop, rejected, resolved, tag};

// A collection of these tests alone: other tests count the customers.
const CUSTOMERS: &str = "undone";

fn text(v: &JsValue, key: &str) -> Option<String> {
    prop(v, key).as_string()
}

fn field(record: &JsValue, name: &str) -> Option<String> {
    prop(&prop(record, "fields"), name).as_string()
}

fn version(record: &JsValue) -> f64 {
    prop(record, "version").as_f64().unwrap()
}

/// The mutation ids `undoable()` lists, newest first.
fn listed(crm: &CrmSync) -> Vec<String> {
    Array::from(&crm.undoable())
        .iter()
        .filter_map(|c| text(&c, "mutationId"))
        .collect()
}

/// A customer of this run, made by `crm`: its id.
async fn customer(crm: &CrmSync, name: &str) -> String {
    let fields = obj(&[
        ("name", name.into()),
        ("city", "Paris".into()),
        ("phone", "+33 1 00 00 00 00".into()),
    ]);
    let made = resolved(crm.create(CUSTOMERS.into(), fields)).await;
    assert_eq!(text(&made, "status").as_deref(), Some("committed"));
    text(&prop(&made, "record"), "id").unwrap()
}

/// Someone else changes a field on the server, on its current version.
async fn patch_on_server(token: &str, id: &str, name: &str, value: &str) {
    let path = format!("/api/{CUSTOMERS}/{id}");
    let current = fetch_as(token, "GET", &path, &[], None).await;
    let body = wasm_bindgen_futures::JsFuture::from(current.json().unwrap())
        .await
        .unwrap();
    let at = version(&body).to_string();
    let patch = format!(r#"{{"fields":{{"{name}":"{value}"}}}}"#);
    let resp = fetch_as(
        token,
        "PATCH",
        &path,
        &[("If-Match", &at), ("Content-Type", "application/json")],
        Some(&patch),
    )
    .await;
    assert_eq!(resp.status(), 200, "the other person's change");
}

async fn server_record(token: &str, id: &str) -> JsValue {
    let resp = fetch_as(token, "GET", &format!("/api/{CUSTOMERS}/{id}"), &[], None).await;
    wasm_bindgen_futures::JsFuture::from(resp.json().unwrap())
        .await
        .unwrap()
}

#[wasm_bindgen_test]
async fn an_undo_from_the_other_tab_puts_back_the_city_keeps_the_phone_and_a_redo_takes_it_back() {
    let tab = login("user46").await;
    let other_tab = login("user46").await;
    let someone = login("user47").await;
    let id = customer(&tab, &format!("Undo {}", tag())).await;
    let saved = resolved(tab.save(
        CUSTOMERS.into(),
        id.clone(),
        obj(&[("city", "Lyon".into())]),
    ))
    .await;
    assert_eq!(text(&saved, "status").as_deref(), Some("committed"));

    // One list per user: the other tab lists the change too.
    assert!(
        eventually(5_000, || listed(&other_tab).first() == listed(&tab).first()
            && !listed(&tab).is_empty())
        .await,
        "both tabs list the change: {:?} / {:?}",
        listed(&tab),
        listed(&other_tab)
    );
    let change = Array::from(&tab.undoable()).get(0);
    let mutation_id = text(&change, "mutationId").unwrap();
    assert_eq!(text(&change, "recordId").as_deref(), Some(id.as_str()));
    assert_eq!(
        Array::from(&prop(&change, "fields"))
            .iter()
            .filter_map(|f| f.as_string())
            .collect::<Vec<_>>(),
        vec!["city".to_string()]
    );
    assert_eq!(
        text(&prop(&change, "before"), "city").as_deref(),
        Some("Paris")
    );

    patch_on_server(&someone.token(), &id, "phone", "+33 9 99 99 99 99").await;
    let before = version(&server_record(&someone.token(), &id).await);

    // Whether or not this tab has seen the phone change (a 409 merged onto
    // the new version), the undo is one new version.
    let undone = resolved(other_tab.undo(mutation_id.clone().into())).await;
    let status = text(&undone, "status");
    assert!(
        matches!(status.as_deref(), Some("committed" | "merged")),
        "{undone:?}"
    );
    let now = server_record(&someone.token(), &id).await;
    assert_eq!(field(&now, "city").as_deref(), Some("Paris"));
    assert_eq!(field(&now, "phone").as_deref(), Some("+33 9 99 99 99 99"));
    assert_eq!(version(&now), before + 1.0);
    // Taken back: off the list in both tabs.
    assert!(
        eventually(5_000, || !listed(&tab).contains(&mutation_id)
            && !listed(&other_tab).contains(&mutation_id))
        .await
    );

    // A redo takes the undo back: Lyon again, and the change listed again.
    let redone = resolved(tab.redo(mutation_id.clone())).await;
    assert_eq!(
        text(&redone, "status").as_deref(),
        Some("committed"),
        "{redone:?}"
    );
    let now = server_record(&someone.token(), &id).await;
    assert_eq!(field(&now, "city").as_deref(), Some("Lyon"));
    assert_eq!(field(&now, "phone").as_deref(), Some("+33 9 99 99 99 99"));
    assert!(
        eventually(5_000, || listed(&other_tab).first() == Some(&mutation_id)).await,
        "{:?}",
        listed(&other_tab)
    );
    // Nothing more to redo.
    let err = rejected(tab.redo(mutation_id)).await;
    assert_eq!(text(&err, "code").as_deref(), Some("not_found"));
    tab.close();
    other_tab.close();
    someone.close();
}

#[wasm_bindgen_test]
async fn an_undo_made_offline_is_queued_and_sent_when_back_online() {
    let crm = login("user46").await;
    let someone = login("user47").await;
    let id = customer(&crm, &format!("Offline undo {}", tag())).await;
    resolved(crm.save(
        CUSTOMERS.into(),
        id.clone(),
        obj(&[("city", "Lille".into())]),
    ))
    .await;
    let mutation_id = listed(&crm).first().cloned().unwrap();

    crm.set_online(false);
    let queued = resolved(crm.undo(mutation_id.clone().into())).await;
    assert_eq!(
        text(&queued, "status").as_deref(),
        Some("queued"),
        "{queued:?}"
    );
    assert_eq!(Array::from(&crm.pending()).length(), 1);
    let view = crm.view(CUSTOMERS, &id).unwrap();
    assert_eq!(field(&view, "city").as_deref(), Some("Paris"));
    assert_eq!(prop(&view, "pending"), JsValue::TRUE);
    assert_eq!(
        field(&server_record(&someone.token(), &id).await, "city").as_deref(),
        Some("Lille")
    );

    crm.set_online(true);
    let mut city = None;
    for _ in 0..150 {
        city = field(&server_record(&someone.token(), &id).await, "city");
        if city.as_deref() == Some("Paris") {
            break;
        }
        super::support::sleep(100).await;
    }
    assert_eq!(city.as_deref(), Some("Paris"), "the queued undo was sent");
    assert!(eventually(5_000, || !listed(&crm).contains(&mutation_id)).await);
    crm.close();
    someone.close();
}

#[wasm_bindgen_test]
async fn a_city_someone_changed_since_is_a_conflict_and_nothing_is_overwritten() {
    let crm = login("user46").await;
    let someone = login("user47").await;
    let id = customer(&crm, &format!("Conflicting undo {}", tag())).await;
    resolved(crm.save(
        CUSTOMERS.into(),
        id.clone(),
        obj(&[
            ("city", "Lyon".into()),
            ("phone", "+33 2 22 22 22 22".into()),
        ]),
    ))
    .await;
    let mutation_id = listed(&crm).first().cloned().unwrap();
    patch_on_server(&someone.token(), &id, "city", "Nice").await;
    let before = server_record(&someone.token(), &id).await;

    // Whether this tab has seen the city change yet (then the phone goes
    // back at once) or learns it from the server's 409 (then the whole
    // undo waits in the conflict), the city is never overwritten.
    let result = resolved(crm.undo(mutation_id.into())).await;
    let now = server_record(&someone.token(), &id).await;
    assert_eq!(
        field(&now, "city").as_deref(),
        Some("Nice"),
        "never overwritten"
    );
    assert!(version(&now) >= version(&before));
    assert!(
        eventually(5_000, || Array::from(&crm.conflicts()).length() == 1).await,
        "the city waits for a person: {result:?}"
    );
    let conflict = Array::from(&crm.conflicts()).get(0);
    assert_eq!(
        Array::from(&prop(&conflict, "fields"))
            .iter()
            .filter_map(|f| f.as_string())
            .collect::<Vec<_>>(),
        vec!["city".to_string()]
    );
    assert_eq!(
        field(&prop(&conflict, "base"), "city").as_deref(),
        Some("Lyon")
    );
    assert_eq!(
        text(&prop(&conflict, "mine"), "city").as_deref(),
        Some("Paris")
    );
    let phone_back = field(&now, "phone").as_deref() == Some("+33 1 00 00 00 00");
    let phone_waits =
        text(&prop(&conflict, "mine"), "phone").as_deref() == Some("+33 1 00 00 00 00");
    assert!(
        phone_back || phone_waits,
        "the phone is undone or waits with the city"
    );
    assert_eq!(
        field(&prop(&conflict, "theirs"), "city").as_deref(),
        Some("Nice")
    );
    crm.close();
    someone.close();
}

#[wasm_bindgen_test]
async fn a_change_from_the_history_is_undone_by_its_version() {
    let crm = login("user46").await;
    let someone = login("user47").await;
    let id = customer(&crm, &format!("History undo {}", tag())).await;
    // Someone else's change, known only from the record's history.
    patch_on_server(&someone.token(), &id, "city", "Brest").await;
    let changed = version(&server_record(&someone.token(), &id).await);
    let undone = resolved(crm.undo(obj(&[
        ("collection", CUSTOMERS.into()),
        ("id", id.clone().into()),
        ("version", changed.into()),
    ])))
    .await;
    assert_eq!(
        text(&undone, "status").as_deref(),
        Some("committed"),
        "{undone:?}"
    );
    let now = server_record(&someone.token(), &id).await;
    assert_eq!(field(&now, "city").as_deref(), Some("Paris"));
    assert_eq!(version(&now), changed + 1.0);
    // A version that created the record is no change of fields.
    let err = rejected(crm.undo(obj(&[
        ("collection", CUSTOMERS.into()),
        ("id", id.into()),
        ("version", 1.into()),
    ])))
    .await;
    assert_eq!(text(&err, "code").as_deref(), Some("invalid"));
    crm.close();
    someone.close();
}
