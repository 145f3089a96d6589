//! Presence against the real server: the union of a user's tabs, one entry
//! per person, the leader hand-over, and leaving at once on `close`.

use crm_sync::api::CrmSync;
use js_sys::Array;
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::wasm_bindgen_test;

use super::support::{login, obj, prop, sleep, within};

fn leads(crm: &CrmSync) -> bool {
    prop(&crm.tabs(), "isLeader").as_bool() == Some(true)
}

fn call(target: &JsValue, method: &str, args: &[JsValue]) -> Result<JsValue, JsValue> {
    let f: js_sys::Function = prop(target, method).into();
    f.apply(target, &args.iter().collect::<Array>())
}

fn enter(crm: &CrmSync, id: &str, editing: Option<&str>) {
    let editing = editing.map_or(JsValue::NULL, JsValue::from);
    call(
        &crm.presence(),
        "enter",
        &["customers".into(), id.into(), obj(&[("editing", editing)])],
    )
    .unwrap();
}

fn leave(crm: &CrmSync, id: &str) {
    call(&crm.presence(), "leave", &["customers".into(), id.into()]).unwrap();
}

/// `crm.presence.of` as `(user, editing)` pairs.
fn of(crm: &CrmSync, id: &str) -> Vec<(String, Option<String>)> {
    let list: Array = call(&crm.presence(), "of", &["customers".into(), id.into()])
        .unwrap()
        .into();
    list.iter()
        .map(|p| {
            (
                prop(&p, "user").as_string().unwrap(),
                prop(&p, "editing").as_string(),
            )
        })
        .collect()
}

/// Who the server says is on a record, as `(user, editing)`, asked with
/// plain fetch as `token`'s user.
async fn on_server(token: &str, id: &str) -> Vec<(String, Option<String>)> {
    let resp = super::support::fetch_as(
        token,
        "GET",
        &format!("/api/presence?collection=customers&id={id}"),
        &[],
        None,
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body = JsFuture::from(resp.json().unwrap()).await.unwrap();
    Array::from(&prop(&body, "people"))
        .iter()
        .map(|p| {
            (
                prop(&p, "user").as_string().unwrap(),
                prop(&p, "editing").as_string(),
            )
        })
        .collect()
}

/// Asks the server until `want` holds, for at most `ms`.
async fn server_shows(
    token: &str,
    id: &str,
    ms: u32,
    want: impl Fn(&[(String, Option<String>)]) -> bool,
) -> bool {
    let start = js_sys::Date::now();
    loop {
        if want(&on_server(token, id).await) {
            return true;
        }
        if js_sys::Date::now() - start > f64::from(ms) {
            return false;
        }
        sleep(50).await;
    }
}

/// Another tab of `crm`'s browser: the same session (token), as tabs that
/// keep the token where every tab reads it (the demo keeps it in
/// `localStorage`).
async fn second_tab(crm: &CrmSync) -> CrmSync {
    let options = obj(&[
        (
            "baseUrl",
            format!("{}/api", super::support::server()).into(),
        ),
        ("token", crm.token().into()),
    ]);
    CrmSync::open(options).await.unwrap()
}

fn id(n: &str) -> String {
    format!("presence-{n}-{}", super::support::tag())
}

/// A token of `user` from a plain login (no client: a page follows
/// `/api/events` for one user only, and this one watches from outside).
async fn token_of(user: &str) -> String {
    let body = format!(r#"{{"username":"{user}","password":"demo"}}"#);
    let init = web_sys::RequestInit::new();
    init.set_method("POST");
    let h = web_sys::Headers::new().unwrap();
    h.set("content-type", "application/json").unwrap();
    init.set_headers(&h);
    init.set_body(&JsValue::from_str(&body));
    let url = format!("{}/api/login", super::support::server());
    let resp: web_sys::Response = JsFuture::from(
        web_sys::window()
            .unwrap()
            .fetch_with_str_and_init(&url, &init),
    )
    .await
    .unwrap()
    .into();
    let json = JsFuture::from(resp.json().unwrap()).await.unwrap();
    prop(&json, "token").as_string().unwrap()
}

/// `POST /api/presence` as `token`'s user, with plain fetch.
async fn post_set(token: &str, ids: &[&str]) {
    let entries: Vec<String> = ids
        .iter()
        .map(|id| format!(r#"{{"collection":"customers","id":"{id}","editing":null}}"#))
        .collect();
    let body = format!(r#"{{"entries":[{}]}}"#, entries.join(","));
    let resp = super::support::fetch_as(
        token,
        "POST",
        "/api/presence",
        &[("content-type", "application/json")],
        Some(&body),
    )
    .await;
    assert_eq!(resp.status(), 204);
}

#[wasm_bindgen_test]
async fn the_leader_sends_the_union_of_the_tabs_one_entry_per_person() {
    let a = login("user21").await;
    let b = second_tab(&a).await;
    let token = token_of("user22").await;
    // The leader follows `/api/events` (where presence events come) once
    // something is loaded, as in any app.
    for crm in [&a, &b] {
        JsFuture::from(crm.load("customers".into(), None))
            .await
            .unwrap();
    }
    assert!(within(3_000, || leads(&a) || leads(&b)).await.is_some());
    let (a, b) = if leads(&a) { (a, b) } else { (b, a) };
    let (x, y) = (id("x"), id("y"));

    // Each tab has its own record open; the server hears both from one
    // sender, the leader `a`.
    enter(&a, &x, Some("city"));
    enter(&b, &y, None);
    assert!(
        server_shows(&token, &x, 5_000, |p| p
            == [("user21".into(), Some("city".into()))])
        .await,
        "{:?}",
        on_server(&token, &x).await
    );
    assert!(server_shows(&token, &y, 5_000, |p| p == [("user21".into(), None)]).await);

    // Both tabs on one record: still one person, with the field in focus.
    enter(&b, &x, None);
    post_set(&token, &[&x]).await;
    assert_eq!(
        on_server(&token, &x).await,
        [
            ("user21".to_owned(), Some("city".to_owned())),
            ("user22".to_owned(), None)
        ]
    );
    // Never the caller itself: both of user21's tabs see user22 only (the
    // leader hears it on its stream and tells the other tab).
    for tab in [&a, &b] {
        assert!(
            within(5_000, || of(tab, &x) == [("user22".into(), None)])
                .await
                .is_some(),
            "{:?}",
            of(tab, &x)
        );
    }

    // The tab that does not lead leaves y: the server drops it.
    leave(&b, &y);
    assert!(server_shows(&token, &y, 5_000, <[_]>::is_empty).await);
    // user22 goes: a `presence` event, and nobody else is there.
    post_set(&token, &[]).await;
    for tab in [&a, &b] {
        assert!(within(5_000, || of(tab, &x).is_empty()).await.is_some());
    }
    leave(&a, &x);
    leave(&b, &x);
    assert!(server_shows(&token, &x, 5_000, <[_]>::is_empty).await);
    a.close();
    b.close();
}

#[wasm_bindgen_test]
async fn presence_survives_the_leaders_tab_closing_and_ends_with_the_last() {
    let a = login("user23").await;
    let b = second_tab(&a).await;
    let token = token_of("user24").await;
    assert!(within(3_000, || leads(&a) || leads(&b)).await.is_some());
    let (leader, other) = if leads(&a) { (a, b) } else { (b, a) };
    let (x, z) = (id("x"), id("z"));
    enter(&other, &x, Some("phone"));
    enter(&leader, &z, None);
    assert!(server_shows(&token, &x, 5_000, |p| p.len() == 1).await);
    assert!(server_shows(&token, &z, 5_000, |p| p.len() == 1).await);

    // The leader's tab closes: its own record goes at once, the other
    // tab's stays, and the new leader keeps it there.
    leader.close();
    assert!(
        within(3_000, || leads(&other)).await.is_some(),
        "no new leader"
    );
    assert!(server_shows(&token, &z, 5_000, <[_]>::is_empty).await);
    assert_eq!(
        on_server(&token, &x).await,
        [("user23".to_owned(), Some("phone".to_owned()))]
    );
    // The new leader sends what its tabs have open from now on.
    enter(&other, &z, Some("city"));
    assert!(
        server_shows(&token, &z, 5_000, |p| p
            == [("user23".into(), Some("city".into()))])
        .await
    );
    assert_eq!(on_server(&token, &x).await.len(), 1);

    // The last tab closes: the person is gone at once.
    other.close();
    assert!(server_shows(&token, &x, 5_000, <[_]>::is_empty).await);
    assert!(server_shows(&token, &z, 5_000, <[_]>::is_empty).await);
}

#[wasm_bindgen_test]
async fn bad_names_are_refused_with_invalid_and_change_nothing() {
    let crm = login("user25").await;
    let presence = crm.presence();
    for args in [
        vec![JsValue::from("Customers!"), "c-1".into()],
        vec!["customers".into(), JsValue::from(7)],
        vec!["customers".into(), "".into()],
    ] {
        let err = call(&presence, "enter", &args).unwrap_err();
        assert_eq!(prop(&err, "code").as_string().as_deref(), Some("invalid"));
    }
    let err = call(
        &presence,
        "enter",
        &[
            "customers".into(),
            "c-1".into(),
            obj(&[("editing", 3.into())]),
        ],
    )
    .unwrap_err();
    assert_eq!(prop(&err, "code").as_string().as_deref(), Some("invalid"));
    crm.close();
}
