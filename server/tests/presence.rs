//! Presence (docs/backend/protocol.md, "Presence"): sets replace, people are
//! one entry per user, sets expire, `presence` events on `/api/events`,
//! bounds and validation; and across two instances on PostgreSQL.

mod common;

use std::time::{Duration, Instant};

use common::{assert_error, next_frame, open_events, TestServer};
use reqwest::Method;
use serde_json::{json, Value};

/// Reads the stream until a `presence` event for `id` whose people satisfy
/// `want`; panics after `limit`.
async fn presence_event(
    stream: &mut reqwest::Response,
    buf: &mut String,
    id: &str,
    limit: Duration,
    want: impl Fn(&Value) -> bool,
) -> Value {
    let start = Instant::now();
    loop {
        assert!(
            start.elapsed() < limit,
            "no presence event for {id} in {limit:?}"
        );
        let frame = next_frame(stream, buf).await;
        if !frame
            .lines()
            .any(|l| l == "event: presence" || l == "event:presence")
        {
            continue;
        }
        let data: Value = frame
            .lines()
            .find_map(|l| l.strip_prefix("data:"))
            .map(|d| serde_json::from_str(d.trim()).unwrap())
            .unwrap();
        if data["id"] == id && want(&data["people"]) {
            return data;
        }
    }
}

fn users(people: &Value) -> Vec<String> {
    people
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["user"].as_str().unwrap().to_owned())
        .collect()
}

async fn people(s: &TestServer, t: &str, id: &str) -> Value {
    let r = s
        .get(&format!("/api/presence?collection=customers&id={id}"), t)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["people"].clone()
}

fn entry(id: &str, editing: Option<&str>) -> Value {
    json!({ "collection": "customers", "id": id, "editing": editing })
}

#[tokio::test]
async fn a_set_replaces_the_last_and_streams_hear_each_change() {
    let s = TestServer::start().await;
    let (alice, bob) = (s.login("alice").await, s.login("bob").await);
    let mut stream = open_events(&s, &alice).await;
    let mut buf = String::new();

    let r = s
        .post(
            "/api/presence",
            &bob,
            json!({ "entries": [entry("c-0001", Some("city"))] }),
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let e = presence_event(
        &mut stream,
        &mut buf,
        "c-0001",
        Duration::from_secs(10),
        |p| users(p) == ["bob"],
    )
    .await;
    assert_eq!(e["collection"], "customers");
    assert_eq!(e["people"][0]["editing"], "city");
    let since = e["people"][0]["since"].as_str().unwrap().to_owned();
    assert!(
        chrono::DateTime::parse_from_rfc3339(&since).is_ok(),
        "{since}"
    );

    // Focus moves: the same record, another field, the same `since`.
    s.post(
        "/api/presence",
        &bob,
        json!({ "entries": [entry("c-0001", Some("phone"))] }),
    )
    .await;
    let e = presence_event(
        &mut stream,
        &mut buf,
        "c-0001",
        Duration::from_secs(10),
        |p| p[0]["editing"] == "phone",
    )
    .await;
    assert_eq!(e["people"][0]["since"], since.as_str());
    assert_eq!(people(&s, &alice, "c-0001").await, e["people"]);

    // Another record instead: bob leaves c-0001 at once and is on c-0002.
    s.post(
        "/api/presence",
        &bob,
        json!({ "entries": [entry("c-0002", None)] }),
    )
    .await;
    presence_event(
        &mut stream,
        &mut buf,
        "c-0001",
        Duration::from_secs(10),
        |p| p.as_array().unwrap().is_empty(),
    )
    .await;
    assert_eq!(users(&people(&s, &alice, "c-0002").await), ["bob"]);
    assert_eq!(people(&s, &alice, "c-0001").await, json!([]));

    // An empty set: gone everywhere.
    s.post("/api/presence", &bob, json!({ "entries": [] }))
        .await;
    presence_event(
        &mut stream,
        &mut buf,
        "c-0002",
        Duration::from_secs(10),
        |p| p.as_array().unwrap().is_empty(),
    )
    .await;
}

#[tokio::test]
async fn a_new_stream_hears_who_is_already_there() {
    let s = TestServer::start().await;
    let (alice, bob) = (s.login("alice").await, s.login("bob").await);
    s.post(
        "/api/presence",
        &bob,
        json!({ "entries": [entry("c-0009", Some("phone"))] }),
    )
    .await;
    let mut stream = open_events(&s, &alice).await;
    let mut buf = String::new();
    let e = presence_event(
        &mut stream,
        &mut buf,
        "c-0009",
        Duration::from_secs(10),
        |p| users(p) == ["bob"],
    )
    .await;
    assert_eq!(e["people"][0]["editing"], "phone");
}

#[tokio::test]
async fn two_browsers_of_one_person_are_one_entry_until_both_left() {
    let s = TestServer::start().await;
    let (bob1, bob2, alice) = (
        s.login("bob").await,
        s.login("bob").await,
        s.login("alice").await,
    );
    s.post(
        "/api/presence",
        &bob1,
        json!({ "entries": [entry("c-0003", None)] }),
    )
    .await;
    s.post(
        "/api/presence",
        &bob2,
        json!({ "entries": [entry("c-0003", Some("city"))] }),
    )
    .await;
    s.post(
        "/api/presence",
        &alice,
        json!({ "entries": [entry("c-0003", None)] }),
    )
    .await;
    let p = people(&s, &alice, "c-0003").await;
    assert_eq!(users(&p), ["alice", "bob"]);
    assert_eq!(p[1]["editing"], "city", "{p}");

    s.post("/api/presence", &bob2, json!({ "entries": [] }))
        .await;
    assert_eq!(users(&people(&s, &alice, "c-0003").await), ["alice", "bob"]);
    s.post("/api/presence", &bob1, json!({ "entries": [] }))
        .await;
    assert_eq!(users(&people(&s, &alice, "c-0003").await), ["alice"]);
}

#[tokio::test]
async fn a_set_not_sent_again_expires_and_streams_hear_it() {
    let s = TestServer::start_with(|c| c.limits.presence_ttl = Duration::from_millis(1500)).await;
    let (alice, bob, user01) = (
        s.login("alice").await,
        s.login("bob").await,
        s.login("user01").await,
    );
    let mut stream = open_events(&s, &alice).await;
    let mut buf = String::new();
    s.post(
        "/api/presence",
        &bob,
        json!({ "entries": [entry("c-0004", Some("city"))] }),
    )
    .await;
    s.post(
        "/api/presence",
        &user01,
        json!({ "entries": [entry("c-0004", None)] }),
    )
    .await;
    // Carol keeps sending (a heartbeat well inside the time), bob stops.
    let beat = {
        let base = s.base.clone();
        let user01 = user01.clone();
        tokio::spawn(async move {
            let client = common::client();
            loop {
                tokio::time::sleep(Duration::from_millis(300)).await;
                common::send(
                    &client,
                    &base,
                    Method::POST,
                    "/api/presence",
                    Some(&user01),
                    Some(json!({ "entries": [entry("c-0004", None)] })),
                    &[],
                )
                .await;
            }
        })
    };
    let e = presence_event(
        &mut stream,
        &mut buf,
        "c-0004",
        Duration::from_secs(20),
        |p| users(p) == ["user01"],
    )
    .await;
    assert_eq!(e["people"][0]["editing"], Value::Null);
    assert_eq!(users(&people(&s, &alice, "c-0004").await), ["user01"]);
    beat.abort();
}

#[tokio::test]
async fn logout_removes_a_browsers_set_at_once() {
    let s = TestServer::start().await;
    let (alice, bob) = (s.login("alice").await, s.login("bob").await);
    s.post(
        "/api/presence",
        &bob,
        json!({ "entries": [entry("c-0005", None)] }),
    )
    .await;
    assert_eq!(users(&people(&s, &alice, "c-0005").await), ["bob"]);
    let r = s
        .send(Method::POST, "/api/logout", Some(&bob), None, &[])
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(people(&s, &alice, "c-0005").await, json!([]));
}

#[tokio::test]
async fn at_most_200_records_per_browser() {
    let s = TestServer::start().await;
    let bob = s.login("bob").await;
    let many = |n: usize| -> Value {
        json!({ "entries": (0..n).map(|i| entry(&format!("r-{i}"), None)).collect::<Vec<_>>() })
    };
    let r = s.post("/api/presence", &bob, many(200)).await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let r = s.post("/api/presence", &bob, many(201)).await;
    assert_error(&r, 422, "invalid");
    assert_eq!(r.body["error"]["details"]["limit"], 200);
    assert!(r.body["error"]["details"]["fields"]["entries"].is_string());
    // The refused set changed nothing: the 200 are still there.
    assert_eq!(users(&people(&s, &bob, "r-199").await), ["bob"]);
}

#[tokio::test]
async fn bad_sets_and_queries_are_refused_with_what_is_wrong() {
    let s = TestServer::start().await;
    let bob = s.login("bob").await;
    let r = s
        .send(
            Method::POST,
            "/api/presence",
            None,
            Some(json!({ "entries": [] })),
            &[],
        )
        .await;
    assert_error(&r, 401, "unauthorized");
    let r = s
        .send(Method::POST, "/api/presence", Some(&bob), None, &[])
        .await;
    assert_error(&r, 400, "invalid");
    for (body, field) in [
        (json!({}), "entries"),
        (json!({ "entries": {} }), "entries"),
        (json!({ "entries": [1] }), "entries[0]"),
        (
            json!({ "entries": [{ "collection": "Bad!", "id": "c-1" }] }),
            "entries[0].collection",
        ),
        // A route's name is never a collection (the OpenAPI schema says
        // so; the fuzz suite found it taken).
        (
            json!({ "entries": [{ "collection": "changes", "id": "c-1" }] }),
            "entries[0].collection",
        ),
        (
            json!({ "entries": [entry("c-1", None), { "collection": "customers", "id": "" }] }),
            "entries[1].id",
        ),
        (
            json!({ "entries": [{ "collection": "customers", "id": "c-1", "editing": 7 }] }),
            "entries[0].editing",
        ),
        (
            json!({ "entries": [{ "collection": "customers", "id": "c-1", "editing": "x".repeat(101) }] }),
            "entries[0].editing",
        ),
    ] {
        let r = s.post("/api/presence", &bob, body.clone()).await;
        assert_error(&r, 422, "invalid");
        assert!(
            r.body["error"]["details"]["fields"][field].is_string(),
            "{body}: {:?}",
            r.body
        );
    }
    for q in [
        "",
        "?collection=customers",
        "?id=c-1",
        "?collection=Bad&id=c-1",
        "?collection=customers&id=a%20b",
    ] {
        let r = s.get(&format!("/api/presence{q}"), &bob).await;
        assert_error(&r, 400, "invalid");
    }
    let r = s
        .send(
            Method::GET,
            "/api/presence?collection=customers&id=c-1",
            None,
            None,
            &[],
        )
        .await;
    assert_error(&r, 401, "unauthorized");
    // One record twice (two tabs): one entry, with the field in focus.
    let r = s
        .post(
            "/api/presence",
            &bob,
            json!({ "entries": [entry("c-0006", None), entry("c-0006", Some("city"))] }),
        )
        .await;
    assert_eq!(r.status, 204);
    let p = people(&s, &bob, "c-0006").await;
    assert_eq!(p.as_array().unwrap().len(), 1);
    assert_eq!(p[0]["editing"], "city");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: CRM_TEST_POSTGRES"]
async fn presence_holds_across_two_instances_on_postgres() {
    assert!(
        common::postgres_url().is_some(),
        "set CRM_TEST_POSTGRES=postgres://user@host:port/db to run these"
    );
    let a = TestServer::start_with(|c| c.limits.presence_ttl = Duration::from_secs(2)).await;
    let db = a.db.clone();
    let b = TestServer::start_with(move |c| {
        c.db = db;
        c.limits.presence_ttl = Duration::from_secs(2);
    })
    .await;
    let (alice, bob) = (a.login("alice").await, b.login("bob").await);
    let mut stream = open_events(&a, &alice).await;
    let mut buf = String::new();

    // Set through b: a's stream hears it, a's GET shows it.
    let r = b
        .post(
            "/api/presence",
            &bob,
            json!({ "entries": [entry("c-0007", Some("city"))] }),
        )
        .await;
    assert_eq!(r.status, 204);
    presence_event(
        &mut stream,
        &mut buf,
        "c-0007",
        Duration::from_secs(10),
        |p| users(p) == ["bob"] && p[0]["editing"] == "city",
    )
    .await;
    assert_eq!(users(&people(&a, &alice, "c-0007").await), ["bob"]);

    // A big set (several notices) arrives whole.
    let big: Vec<Value> = (0..200)
        .map(|i| {
            entry(
                &format!("record-with-a-long-id-{i:03}-{}", "x".repeat(80)),
                Some("a-field-name"),
            )
        })
        .collect();
    let last = big[199]["id"].as_str().unwrap().to_owned();
    b.post("/api/presence", &bob, json!({ "entries": big }))
        .await;
    presence_event(&mut stream, &mut buf, &last, Duration::from_secs(10), |p| {
        users(p) == ["bob"]
    })
    .await;
    assert_eq!(people(&a, &alice, "c-0007").await, json!([]));

    // The next heartbeat goes through a: still one bob, one set.
    a.post(
        "/api/presence",
        &bob,
        json!({ "entries": [entry("c-0007", None)] }),
    )
    .await;
    presence_event(
        &mut stream,
        &mut buf,
        "c-0007",
        Duration::from_secs(10),
        |p| users(p) == ["bob"],
    )
    .await;
    settles(|| people(&b, &bob, &last), json!([])).await;

    // No heartbeat: gone on both, and a's stream hears it.
    presence_event(
        &mut stream,
        &mut buf,
        "c-0007",
        Duration::from_secs(15),
        |p| p.as_array().unwrap().is_empty(),
    )
    .await;
    settles(|| people(&b, &bob, "c-0007"), json!([])).await;
}

/// Asks until the answer is `want` (another instance hears a set a moment
/// after the one that took it); panics after 10 s.
async fn settles<F, Fut>(ask: F, want: Value)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Value>,
{
    let start = Instant::now();
    loop {
        let got = ask().await;
        if got == want {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{got} is not {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
