//! Every row of the contract's (docs/backend/protocol.md) records, auth, exactly-once and changes-feed
//! sections, over real HTTP against a real SQLite file.

mod common;

use common::{assert_error, next_frame, open_events, read_events, TestServer};
use futures_util::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

// ---------- authentication ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_gives_token_user_and_expiry() {
    let s = TestServer::start().await;
    let r = s
        .send(
            Method::POST,
            "/api/login",
            None,
            Some(json!({"username":"bob","password":"demo"})),
            &[],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["user"], "bob");
    assert_eq!(r.body["token"].as_str().unwrap().len(), 64);
    assert!(chrono_like(&r.body["expiresAt"]));
    for user in ["alice", "user01", "user50"] {
        s.login(user).await;
    }
}

fn chrono_like(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.len() >= 20 && s.ends_with('Z') && s.contains('T'))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_are_401() {
    let s = TestServer::start().await;
    for body in [
        json!({"username":"alice","password":"wrong"}),
        json!({"username":"nobody","password":"demo"}),
    ] {
        let r = s
            .send(Method::POST, "/api/login", None, Some(body), &[])
            .await;
        assert_error(&r, 401, "unauthorized");
    }
    let r = s
        .send(
            Method::POST,
            "/api/login",
            None,
            Some(json!({"username": 1})),
            &[],
        )
        .await;
    assert_error(&r, 422, "invalid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_unknown_or_garbage_token_is_401() {
    let s = TestServer::start().await;
    let r = s.send(Method::GET, "/api/customers", None, None, &[]).await;
    assert_error(&r, 401, "unauthorized");
    let unknown = "ab".repeat(32);
    for token in [unknown.as_str(), "garbage", "ü"] {
        let r = s
            .send(Method::GET, "/api/customers", Some(token), None, &[])
            .await;
        assert_error(&r, 401, "unauthorized");
    }
    let r = s
        .send(
            Method::GET,
            "/api/customers",
            None,
            None,
            &[("authorization", "Basic Zm9vOmJhcg==")],
        )
        .await;
    assert_error(&r, 401, "unauthorized");
    // Routes that change things check the token before anything else.
    let r = s
        .send(
            Method::POST,
            "/api/sync",
            None,
            Some(json!({"kind":"to-sheet"})),
            &[],
        )
        .await;
    assert_error(&r, 401, "unauthorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_revokes_the_token() {
    let s = TestServer::start().await;
    let t = s.login("alice").await;
    let other = s.login("alice").await;
    assert_eq!(s.get("/api/customers", &t).await.status, 200);
    let r = s
        .send(Method::POST, "/api/logout", Some(&t), None, &[])
        .await;
    assert_eq!(r.status, 204);
    assert_error(&s.get("/api/customers", &t).await, 401, "unauthorized");
    let r = s
        .send(Method::POST, "/api/logout", Some(&t), None, &[])
        .await;
    assert_error(&r, 401, "unauthorized");
    // Another session of the same user is untouched.
    assert_eq!(s.get("/api/customers", &other).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn me_names_the_tokens_user() {
    let s = TestServer::start().await;
    let t = s.login("bob").await;
    let r = s.get("/api/me", &t).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["user"], "bob");
    assert!(chrono_like(&r.body["expiresAt"]));
    assert_error(&s.get("/api/me", "0000").await, 401, "unauthorized");
    s.send(Method::POST, "/api/logout", Some(&t), None, &[])
        .await;
    assert_error(&s.get("/api/me", &t).await, 401, "unauthorized");
}

// ---------- records ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_returns_items_and_cursor() {
    let s = TestServer::start().await;
    let t = s.login("alice").await;
    let r = s.get("/api/customers", &t).await;
    assert_eq!(r.status, 200);
    let items = r.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 200);
    assert!(r.body["cursor"].is_string());
    let first = &items[0];
    for key in [
        "id",
        "version",
        "updatedAt",
        "updatedBy",
        "fields",
        "comments",
    ] {
        assert!(first.get(key).is_some(), "missing {key}: {first}");
    }
    for key in ["name", "email", "phone", "status", "owner", "city"] {
        assert!(first["fields"][key].is_string(), "missing field {key}");
    }
    // Any well-formed name is a collection, empty until written.
    let r = s.get("/api/deals", &t).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["items"], json!([]));
    let events = s.get("/api/calendar_events", &t).await;
    assert!(!events.body["items"].as_array().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_one_record_sets_etag_or_404() {
    let s = TestServer::start().await;
    let t = s.login("alice").await;
    let r = s.get("/api/customers/c-0007", &t).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["id"], "c-0007");
    assert_eq!(r.body["version"], 1);
    assert_eq!(r.headers["etag"], "\"1\"");
    assert_error(&s.get("/api/customers/nope", &t).await, 404, "not_found");
    for bad in [
        "/api/Customers/c-1",
        "/api/1x/c-1",
        "/api/a-b",
        "/api/%C3%A9t%C3%A9",
    ] {
        assert_error(&s.get(bad, &t).await, 404, "not_found");
    }
    let long = format!("/api/{}", "a".repeat(41));
    assert_error(&s.get(&long, &t).await, 404, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_starts_at_version_1() {
    let s = TestServer::start().await;
    let t = s.login("alice").await;
    let r = s
        .post(
            "/api/leads",
            &t,
            json!({"id":"l-1","fields":{"name":"Acme","score":3,"hot":true,"note":null}}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["version"], 1);
    assert_eq!(r.body["updatedBy"], "alice");
    assert_eq!(
        r.body["fields"],
        json!({"name":"Acme","score":3,"hot":true})
    );
    assert_eq!(r.body["comments"], json!([]));
    // Without an id the server picks one.
    let r = s
        .post("/api/leads", &t, json!({"fields":{"name":"Globex"}}))
        .await;
    assert_eq!(r.status, 201);
    let id = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        s.get(&format!("/api/leads/{id}"), &t).await.body["fields"]["name"],
        "Globex"
    );
    // An id that exists is a conflict carrying the current record.
    let r = s
        .post("/api/leads", &t, json!({"id":"l-1","fields":{}}))
        .await;
    assert_error(&r, 409, "conflict");
    assert_eq!(
        r.body["error"]["details"]["current"]["fields"]["name"],
        "Acme"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_changes_named_fields_and_bumps_version() {
    let s = TestServer::start().await;
    let t = s.login("bob").await;
    let before = s.get("/api/customers/c-0003", &t).await.body;
    let r = s
        .patch(
            "/api/customers/c-0003",
            &t,
            1,
            json!({"phone":"+1-555-1234","city":null,"vip":true}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["version"], 2);
    assert_eq!(r.body["updatedBy"], "bob");
    let f = &r.body["fields"];
    assert_eq!(f["phone"], "+1-555-1234");
    assert_eq!(f["vip"], true);
    assert!(f.get("city").is_none(), "null clears a field");
    assert_eq!(
        f["name"], before["fields"]["name"],
        "other fields unchanged"
    );
    let r = s
        .patch("/api/customers/c-0003", &t, 2, json!({"status":"churned"}))
        .await;
    assert_eq!(r.body["version"], 3);
    assert_eq!(
        s.get("/api/customers/c-0003", &t).await.headers["etag"],
        "\"3\""
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_match_accepts_quoted_bare_and_weak_forms() {
    let s = TestServer::start().await;
    let t = s.login("alice").await;
    for (i, form) in ["\"1\"", "2", "W/\"3\""].iter().enumerate() {
        let r = s
            .send(
                Method::PATCH,
                "/api/customers/c-0004",
                Some(&t),
                Some(json!({"fields":{"n": i}})),
                &[("if-match", form)],
            )
            .await;
        assert_eq!(r.status, 200, "{form}: {:?}", r.body);
    }
    for garbage in [
        "abc",
        "\"\"",
        "*",
        "-1",
        "1, 2",
        "\"9999999999999999999999\"",
    ] {
        let r = s
            .send(
                Method::PATCH,
                "/api/customers/c-0004",
                Some(&t),
                Some(json!({"fields":{"n": 0}})),
                &[("if-match", garbage)],
            )
            .await;
        assert_error(&r, 400, "invalid");
    }
    assert_eq!(s.get("/api/customers/c-0004", &t).await.body["version"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_without_if_match_are_428() {
    let s = TestServer::start().await;
    let t = s.login("alice").await;
    let r = s
        .send(
            Method::PATCH,
            "/api/customers/c-0001",
            Some(&t),
            Some(json!({"fields":{}})),
            &[],
        )
        .await;
    assert_error(&r, 428, "precondition_required");
    let r = s
        .send(Method::DELETE, "/api/customers/c-0001", Some(&t), None, &[])
        .await;
    assert_error(&r, 428, "precondition_required");
    assert_eq!(s.get("/api/customers/c-0001", &t).await.body["version"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_writes_are_409_with_the_current_record() {
    let s = TestServer::start().await;
    let t = s.login("alice").await;
    assert_eq!(
        s.patch("/api/customers/c-0005", &t, 1, json!({"a":1}))
            .await
            .status,
        200
    );
    let r = s
        .patch("/api/customers/c-0005", &t, 1, json!({"a":2}))
        .await;
    assert_error(&r, 409, "conflict");
    let current = &r.body["error"]["details"]["current"];
    assert_eq!(current["version"], 2);
    assert_eq!(current["fields"]["a"], 1);
    let r = s
        .send(
            Method::DELETE,
            "/api/customers/c-0005",
            Some(&t),
            None,
            &[("if-match", "\"1\"")],
        )
        .await;
    assert_error(&r, 409, "conflict");
    assert_eq!(r.body["error"]["details"]["current"]["version"], 2);
    assert_error(
        &s.patch("/api/customers/missing", &t, 1, json!({"a":1}))
            .await,
        404,
        "not_found",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_field_values_are_422_with_per_field_messages() {
    let s = TestServer::start().await;
    let t = s.login("alice").await;
    let r = s
        .patch(
            "/api/customers/c-0001",
            &t,
            1,
            json!({"email":"nope","status":"vip"}),
        )
        .await;
    assert_error(&r, 422, "invalid");
    let fields = &r.body["error"]["details"]["fields"];
    assert!(
        fields["email"].is_string() && fields["status"].is_string(),
        "{fields}"
    );
    let r = s
        .patch("/api/customers/c-0001", &t, 1, json!({"email": 42}))
        .await;
    assert_error(&r, 422, "invalid");
    let r = s
        .patch(
            "/api/leads/x",
            &t,
            1,
            json!({"tags":["a"],"address":{"city":"Oslo"}}),
        )
        .await;
    assert_error(&r, 422, "invalid");
    assert!(r.body["error"]["details"]["fields"]["tags"].is_string());
    assert!(r.body["error"]["details"]["fields"]["address"].is_string());
    let r = s
        .post("/api/customers", &t, json!({"fields":{"email":"a@b"}}))
        .await;
    assert_error(&r, 422, "invalid");
    let r = s.post("/api/customers", &t, json!({"fields":[1]})).await;
    assert_error(&r, 422, "invalid");
    let r = s
        .post("/api/customers", &t, json!({"id":"has space","fields":{}}))
        .await;
    assert_error(&r, 422, "invalid");
    let r = s
        .post("/api/customers", &t, json!({"id": 7,"fields":{}}))
        .await;
    assert_error(&r, 422, "invalid");
    let r = s.post("/api/customers", &t, json!([1, 2])).await;
    assert_error(&r, 422, "invalid");
    // Good values pass, and nothing above changed the record.
    let r = s
        .patch(
            "/api/customers/c-0001",
            &t,
            1,
            json!({"email":"new@acme.example","status":"lead"}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["version"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_leaves_a_tombstone_in_the_feed() {
    let s = TestServer::start().await;
    let t = s.login("alice").await;
    let cursor = s.get("/api/customers", &t).await.body["cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = s
        .send(
            Method::DELETE,
            "/api/customers/c-0009",
            Some(&t),
            None,
            &[("if-match", "\"1\"")],
        )
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(r.body, Value::Null);
    assert_error(&s.get("/api/customers/c-0009", &t).await, 404, "not_found");
    let list = s.get("/api/customers", &t).await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 199);
    let feed = s.get(&format!("/api/changes?since={cursor}"), &t).await;
    assert_eq!(
        feed.body["changes"],
        json!([{"collection":"customers","id":"c-0009","version":2,"op":"delete"}])
    );
    let r = s
        .send(
            Method::DELETE,
            "/api/customers/c-0009",
            Some(&t),
            None,
            &[("if-match", "\"2\"")],
        )
        .await;
    assert_error(&r, 404, "not_found");
    // Creating the id again continues its version line.
    let r = s
        .post(
            "/api/customers",
            &t,
            json!({"id":"c-0009","fields":{"name":"Back"}}),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.body["version"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_concurrent_patches_on_one_version_give_one_200() {
    let s = TestServer::start().await;
    let t = s.login("alice").await;
    let calls = (0..30).map(|i| {
        s.patch(
            "/api/customers/c-0010",
            &t,
            1,
            json!({"phone": format!("p{i}")}),
        )
    });
    let replies = join_all(calls).await;
    let ok = replies.iter().filter(|r| r.status == 200).count();
    let conflicts: Vec<_> = replies.iter().filter(|r| r.status == 409).collect();
    assert_eq!(ok, 1);
    assert_eq!(conflicts.len(), 29);
    for c in conflicts {
        assert_error(c, 409, "conflict");
        assert_eq!(c.body["error"]["details"]["current"]["version"], 2);
    }
    assert_eq!(s.get("/api/customers/c-0010", &t).await.body["version"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_concurrent_comments_are_all_stored_once() {
    let s = TestServer::start().await;
    let tokens = [s.login("alice").await, s.login("bob").await];
    let s = &s;
    // Each comment is sent twice at once (a retry racing the original).
    let calls = (0..60).map(|i| {
        let t = &tokens[i % 2];
        let id = format!("cm-{}", i % 30);
        async move {
            s.post(
                "/api/customers/c-0011/comments",
                t,
                json!({"id": id, "text": format!("note {}", i % 30)}),
            )
            .await
        }
    });
    let replies = join_all(calls).await;
    assert!(
        replies.iter().all(|r| r.status == 201 || r.status == 200),
        "{replies:?}"
    );
    assert_eq!(replies.iter().filter(|r| r.status == 201).count(), 30);
    let record = s.get("/api/customers/c-0011", &tokens[0]).await.body;
    let comments = record["comments"].as_array().unwrap();
    assert_eq!(comments.len(), 30);
    let mut ids: Vec<&str> = comments.iter().map(|c| c["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 30);
    assert_eq!(record["version"], 1, "comments do not bump the version");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_comment_id_returns_the_stored_comment() {
    let s = TestServer::start().await;
    let t = s.login("alice").await;
    let r = s
        .post(
            "/api/customers/c-0012/comments",
            &t,
            json!({"id":"u-1","text":"first"}),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.body["author"], "alice");
    assert_eq!(r.body["text"], "first");
    assert!(chrono_like(&r.body["createdAt"]));
    let bob = s.login("bob").await;
    let again = s
        .post(
            "/api/customers/c-0012/comments",
            &bob,
            json!({"id":"u-1","text":"changed"}),
        )
        .await;
    assert!(again.status.is_success());
    assert_eq!(again.body, r.body);
    // A comment never conflicts with a field change.
    assert_eq!(
        s.patch("/api/customers/c-0012", &t, 1, json!({"x":1}))
            .await
            .status,
        200
    );
    let r = s
        .post(
            "/api/customers/c-0012/comments",
            &t,
            json!({"id":"u-2","text":"second"}),
        )
        .await;
    assert_eq!(r.status, 201);
    let rec = s.get("/api/customers/c-0012", &t).await.body;
    assert_eq!(rec["version"], 2);
    assert_eq!(rec["comments"].as_array().unwrap().len(), 2);
    assert_eq!(rec["comments"][0]["id"], "u-1");
    let r = s
        .post(
            "/api/customers/nope/comments",
            &t,
            json!({"id":"u-3","text":"x"}),
        )
        .await;
    assert_error(&r, 404, "not_found");
    let r = s
        .post(
            "/api/customers/c-0012/comments",
            &t,
            json!({"id":"u-4","text":""}),
        )
        .await;
    assert_error(&r, 422, "invalid");
}

// ---------- exactly once ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_replay_returns_the_stored_answer_and_changes_nothing() {
    let s = TestServer::start().await;
    let t = s.login("alice").await;
    let cursor = s.get("/api/customers", &t).await.body["cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = [("if-match", "\"1\""), ("idempotency-key", "7f1c0c9e-patch")];
    let first = s
        .send(
            Method::PATCH,
            "/api/customers/c-0020",
            Some(&t),
            Some(json!({"fields":{"phone":"1"}})),
            &key,
        )
        .await;
    assert_eq!(first.status, 200);
    // The answer was "lost"; the client resends the same request with the same key.
    for _ in 0..3 {
        let again = s
            .send(
                Method::PATCH,
                "/api/customers/c-0020",
                Some(&t),
                Some(json!({"fields":{"phone":"1"}})),
                &key,
            )
            .await;
        assert_eq!(again.status, 200);
        assert_eq!(again.body, first.body);
        assert_eq!(again.headers["idempotent-replayed"], "true");
    }
    let create_key = [("idempotency-key", "7f1c0c9e-create")];
    let body = json!({"fields":{"name":"Once"}});
    let a = s
        .send(
            Method::POST,
            "/api/leads",
            Some(&t),
            Some(body.clone()),
            &create_key,
        )
        .await;
    let b = s
        .send(
            Method::POST,
            "/api/leads",
            Some(&t),
            Some(body),
            &create_key,
        )
        .await;
    assert_eq!(
        (a.status, b.status),
        (StatusCode::CREATED, StatusCode::CREATED)
    );
    assert_eq!(a.body, b.body);
    assert_eq!(
        s.get("/api/leads", &t).await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let del_key = [
        ("if-match", "\"2\""),
        ("idempotency-key", "7f1c0c9e-delete"),
    ];
    for _ in 0..2 {
        let r = s
            .send(
                Method::DELETE,
                "/api/customers/c-0020",
                Some(&t),
                None,
                &del_key,
            )
            .await;
        assert_eq!(r.status, 204);
    }
    assert_eq!(s.get("/api/customers/c-0020", &t).await.status, 404);
    let feed = s
        .get(&format!("/api/changes?since={cursor}"), &t)
        .await
        .body;
    let versions: Vec<(Value, Value)> = feed["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["id"].clone(), c["version"].clone()))
        .collect();
    assert_eq!(
        versions.len(),
        3,
        "one change per request, not per attempt: {versions:?}"
    );
    // Keys are per user: bob's identical key is a different request.
    let bob = s.login("bob").await;
    let r = s
        .send(
            Method::POST,
            "/api/leads",
            Some(&bob),
            Some(json!({"fields":{"name":"Bob's"}})),
            &create_key,
        )
        .await;
    assert_eq!(r.status, 201);
    assert_ne!(r.body["id"], a.body["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_reused_for_another_request_is_422() {
    let s = TestServer::start().await;
    let t = s.login("alice").await;
    let key = [("idempotency-key", "k-1")];
    let r = s
        .send(
            Method::POST,
            "/api/leads",
            Some(&t),
            Some(json!({"fields":{}})),
            &key,
        )
        .await;
    assert_eq!(r.status, 201);
    let r = s
        .send(
            Method::POST,
            "/api/deals",
            Some(&t),
            Some(json!({"fields":{}})),
            &key,
        )
        .await;
    assert_error(&r, 422, "idempotency_mismatch");
    assert_eq!(s.get("/api/deals", &t).await.body["items"], json!([]));
    let r = s
        .send(
            Method::POST,
            "/api/deals",
            Some(&t),
            Some(json!({"fields":{}})),
            &[("idempotency-key", "has space")],
        )
        .await;
    assert_error(&r, 400, "invalid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_is_not_remembered_under_its_key() {
    let s = TestServer::start().await;
    let t = s.login("alice").await;
    let stale = [("if-match", "\"5\""), ("idempotency-key", "retry-me")];
    let r = s
        .send(
            Method::PATCH,
            "/api/customers/c-0021",
            Some(&t),
            Some(json!({"fields":{"a":1}})),
            &stale,
        )
        .await;
    assert_error(&r, 409, "conflict");
    let fresh = [("if-match", "\"1\""), ("idempotency-key", "retry-me")];
    let r = s
        .send(
            Method::PATCH,
            "/api/customers/c-0021",
            Some(&t),
            Some(json!({"fields":{"a":1}})),
            &fresh,
        )
        .await;
    assert_eq!(r.status, 200);
}

// ---------- calendar ----------

fn event(resource: &str, start: &str, end: &str) -> Value {
    json!({"fields": {"title": "x", "resource": resource, "start": start, "end": end}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_booking_is_409_overlap_over_half_open_intervals() {
    let s = TestServer::start().await;
    let t = s.login("alice").await;
    let path = "/api/calendar_events";
    let a = s
        .post(
            path,
            &t,
            event("r1", "2030-01-01T10:00:00Z", "2030-01-01T11:00:00Z"),
        )
        .await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    // Touching intervals do not overlap; other resources do not matter.
    assert_eq!(
        s.post(
            path,
            &t,
            event("r1", "2030-01-01T11:00:00Z", "2030-01-01T12:00:00Z")
        )
        .await
        .status,
        201
    );
    assert_eq!(
        s.post(
            path,
            &t,
            event("r1", "2030-01-01T09:00:00Z", "2030-01-01T10:00:00Z")
        )
        .await
        .status,
        201
    );
    assert_eq!(
        s.post(
            path,
            &t,
            event("r2", "2030-01-01T10:00:00Z", "2030-01-01T11:00:00Z")
        )
        .await
        .status,
        201
    );
    let r = s
        .post(
            path,
            &t,
            event("r1", "2030-01-01T10:30:00+01:00", "2030-01-01T11:30:00Z"),
        )
        .await;
    assert_error(&r, 409, "overlap");
    let conflicts = r.body["error"]["details"]["conflicts"].as_array().unwrap();
    // 09:30Z-11:30Z touches all three r1 bookings.
    assert_eq!(conflicts.len(), 3, "{conflicts:?}");
    // A cancelled event frees its slot.
    let id = a.body["id"].as_str().unwrap();
    let r = s
        .patch(
            &format!("{path}/{id}"),
            &t,
            1,
            json!({"status":"cancelled"}),
        )
        .await;
    assert_eq!(r.status, 200);
    let r = s
        .post(
            path,
            &t,
            event("r1", "2030-01-01T10:15:00Z", "2030-01-01T10:45:00Z"),
        )
        .await;
    assert_eq!(r.status, 201);
    // Un-cancelling now collides with the new booking.
    let r = s
        .patch(
            &format!("{path}/{id}"),
            &t,
            2,
            json!({"status":"confirmed"}),
        )
        .await;
    assert_error(&r, 409, "overlap");
    // Moving an event onto another is checked too; moving within its own slot is not a clash with itself.
    let new_id = r.body["error"]["details"]["conflicts"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = s
        .patch(
            &format!("{path}/{new_id}"),
            &t,
            1,
            json!({"end":"2030-01-01T10:50:00Z"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_bookings_of_one_slot_give_one_201() {
    let s = TestServer::start().await;
    let t = s.login("alice").await;
    let calls = (0..10).map(|_| {
        s.post(
            "/api/calendar_events",
            &t,
            event("room-z", "2030-02-01T10:00:00Z", "2030-02-01T11:00:00Z"),
        )
    });
    let replies = join_all(calls).await;
    assert_eq!(replies.iter().filter(|r| r.status == 201).count(), 1);
    assert_eq!(replies.iter().filter(|r| r.code() == "overlap").count(), 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_calendar_events_are_422() {
    let s = TestServer::start().await;
    let t = s.login("alice").await;
    for body in [
        event("r1", "not a time", "2030-01-01T11:00:00Z"),
        event("r1", "2030-01-01T11:00:00Z", "2030-01-01T11:00:00Z"),
        event("r1", "2030-01-01T12:00:00Z", "2030-01-01T11:00:00Z"),
        json!({"fields":{"start":"2030-01-01T10:00:00Z","end":"2030-01-01T11:00:00Z"}}),
        json!({"fields":{"resource": 5, "start":"2030-01-01T10:00:00Z","end":"2030-01-01T11:00:00Z"}}),
    ] {
        let r = s.post("/api/calendar_events", &t, body.clone()).await;
        assert_error(&r, 422, "invalid");
        assert!(r.body["error"]["details"]["fields"].is_object(), "{body}");
    }
}

// ---------- changes feed ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_feed_pages_with_cursors() {
    let s = TestServer::start().await;
    let t = s.login("alice").await;
    let all = s.get("/api/changes", &t).await.body;
    assert_eq!(
        all["changes"].as_array().unwrap().len(),
        206,
        "seeded customers + events"
    );
    assert_eq!(all["more"], false);
    let page = s.get("/api/changes?limit=150", &t).await.body;
    assert_eq!(page["changes"].as_array().unwrap().len(), 150);
    assert_eq!(page["more"], true);
    let rest = s
        .get(
            &format!(
                "/api/changes?since={}&limit=5000",
                page["cursor"].as_str().unwrap()
            ),
            &t,
        )
        .await
        .body;
    assert_eq!(rest["changes"].as_array().unwrap().len(), 56);
    assert_eq!(rest["more"], false);
    let entry = &rest["changes"][0];
    assert_eq!(entry["op"], "put");
    assert!(entry["record"]["fields"].is_object());
    // Nothing new: same cursor back, empty page.
    let tail = rest["cursor"].as_str().unwrap();
    let empty = s.get(&format!("/api/changes?since={tail}"), &t).await.body;
    assert_eq!(empty["changes"], json!([]));
    assert_eq!(empty["cursor"], tail);
    // A PATCH and a comment show up, in commit order.
    s.patch("/api/customers/c-0030", &t, 1, json!({"phone":"9"}))
        .await;
    s.post(
        "/api/customers/c-0030/comments",
        &t,
        json!({"id":"cm","text":"hi"}),
    )
    .await;
    let next = s.get(&format!("/api/changes?since={tail}"), &t).await.body;
    let changes = next["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[0]["version"], 2);
    assert_eq!(changes[1]["record"]["comments"][0]["text"], "hi");
    assert_error(&s.get("/api/changes?limit=0", &t).await, 400, "invalid");
    assert_error(&s.get("/api/changes?limit=abc", &t).await, 400, "invalid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_cursors_are_410() {
    let s = TestServer::start().await;
    let t = s.login("alice").await;
    for bad in ["garbage", "0", "abc.1", "..", "%FF"] {
        let r = s.get(&format!("/api/changes?since={bad}"), &t).await;
        assert_error(&r, 410, "cursor_expired");
    }
    // A cursor from the future or from another (e.g. wiped) database.
    let cursor = s.get("/api/customers", &t).await.body["cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    let (epoch, seq) = cursor.split_once('.').unwrap();
    let future = format!("{epoch}.{}", seq.parse::<i64>().unwrap() + 1);
    assert_error(
        &s.get(&format!("/api/changes?since={future}"), &t).await,
        410,
        "cursor_expired",
    );
    let other = TestServer::start().await;
    let t2 = other.login("alice").await;
    let r = other
        .get(&format!("/api/changes?since={cursor}"), &t2)
        .await;
    assert_error(&r, 410, "cursor_expired");
    let ticket = other.stream_ticket(&t2).await;
    let r = other
        .send(
            Method::GET,
            &format!("/api/events?since={cursor}&ticket={ticket}"),
            None,
            None,
            &[],
        )
        .await;
    assert_error(&r, 410, "cursor_expired");
}

/// Opens `/api/events` with a ticket in the query, as an `EventSource`
/// must.
/// A client tells a live stream from one a buffering proxy holds back by
/// whether anything arrives: the server says `ready` at once, before any
/// change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sent_events_begin_with_ready() {
    let s = TestServer::start().await;
    let t = s.login("alice").await;
    let mut live = open_events(&s, &t).await;
    let frame = next_frame(&mut live, &mut String::new()).await;
    let lines: Vec<&str> = frame.lines().map(str::trim).collect();
    assert!(lines.contains(&"event: ready"), "first frame: {frame:?}");
    assert!(
        !lines.iter().any(|l| l.starts_with("id:")),
        "ready moves no cursor"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sent_events_follow_commits_and_resume() {
    let s = TestServer::start().await;
    let t = s.login("alice").await;
    // EventSource cannot set headers: a ticket comes in the query.
    let mut live = open_events(&s, &t).await;
    assert!(live.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    s.patch("/api/customers/c-0040", &t, 1, json!({"city":"Rome"}))
        .await;
    s.post(
        "/api/customers/c-0040/comments",
        &t,
        json!({"id":"e1","text":"hello"}),
    )
    .await;
    s.send(
        Method::DELETE,
        "/api/customers/c-0041",
        Some(&t),
        None,
        &[("if-match", "1")],
    )
    .await;
    let events = read_events(&mut live, 3).await;
    assert_eq!(events[0].1["id"], "c-0040");
    assert_eq!(events[0].1["version"], 2);
    assert_eq!(events[0].1["record"]["fields"]["city"], "Rome");
    assert_eq!(events[1].1["record"]["comments"][0]["id"], "e1");
    assert_eq!(events[2].1["op"], "delete");
    // The event id is a feed cursor.
    let feed = s
        .get(&format!("/api/changes?since={}", events[0].0), &t)
        .await
        .body;
    assert_eq!(feed["changes"].as_array().unwrap().len(), 2);
    // Resume after the first event with Last-Event-ID and a bearer header.
    let mut resumed = s
        .client
        .get(format!("{}/api/events", s.base))
        .bearer_auth(&t)
        .header("last-event-id", &events[0].0)
        .send()
        .await
        .unwrap();
    let again = read_events(&mut resumed, 2).await;
    assert_eq!(again[0].0, events[1].0);
    assert_eq!(again[1].0, events[2].0);
    let r = s.send(Method::GET, "/api/events", None, None, &[]).await;
    assert_error(&r, 401, "unauthorized");
    drop(live);
    drop(resumed);
    s.stop().await;
}

// ---------- bad input ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_4xx_in_the_error_shape() {
    let s = TestServer::start().await;
    let t = s.login("alice").await;
    let raw = |method: Method, path: &str, body: Vec<u8>, headers: &[(&str, &[u8])]| {
        let mut req = s
            .client
            .request(method, format!("{}{path}", s.base))
            .bearer_auth(&t)
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, reqwest::header::HeaderValue::from_bytes(v).unwrap());
        }
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let body: Value =
                serde_json::from_slice(&resp.bytes().await.unwrap()).expect("JSON error body");
            (status, body)
        }
    };
    let check = |(status, body): (u16, Value), want: u16| {
        assert_eq!(status, want, "{body}");
        assert!(
            body["error"]["code"].is_string() && body["error"]["message"].is_string(),
            "{body}"
        );
        assert!(body["error"]["details"].is_object(), "{body}");
    };
    let json_ct: &[(&str, &[u8])] = &[("content-type", b"application/json")];
    check(
        raw(
            Method::POST,
            "/api/customers",
            b"{\"fields\":".to_vec(),
            json_ct,
        )
        .await,
        400,
    );
    check(
        raw(Method::POST, "/api/customers", b"".to_vec(), json_ct).await,
        400,
    );
    check(
        raw(
            Method::POST,
            "/api/customers",
            vec![b'"', 0xff, 0xfe, b'"'],
            json_ct,
        )
        .await,
        400,
    );
    check(
        raw(
            Method::POST,
            "/api/customers",
            b"{\"fields\": {\"a\": [1]}}".to_vec(),
            json_ct,
        )
        .await,
        422,
    );
    check(
        raw(
            Method::POST,
            "/api/customers",
            b"{\"fields\": \"x\"}".to_vec(),
            json_ct,
        )
        .await,
        422,
    );
    check(
        raw(Method::POST, "/api/customers", b"null".to_vec(), json_ct).await,
        422,
    );
    check(
        raw(Method::POST, "/api/login", b"not json".to_vec(), json_ct).await,
        400,
    );
    // Over 1 MiB.
    let big = format!(
        "{{\"fields\":{{\"notes\":\"{}\"}}}}",
        "x".repeat(1024 * 1024 + 10)
    );
    check(
        raw(Method::POST, "/api/customers", big.into_bytes(), json_ct).await,
        413,
    );
    // Garbage headers.
    let bad_if_match: &[(&str, &[u8])] = &[("if-match", &[0xff, b'1'])];
    check(
        raw(
            Method::PATCH,
            "/api/customers/c-0001",
            b"{\"fields\":{}}".to_vec(),
            bad_if_match,
        )
        .await,
        400,
    );
    let bad_key: &[(&str, &[u8])] = &[("idempotency-key", &[0xc3, 0xa9])];
    check(
        raw(
            Method::POST,
            "/api/leads",
            b"{\"fields\":{}}".to_vec(),
            bad_key,
        )
        .await,
        400,
    );
    let bad_auth: &[(&str, &[u8])] = &[("authorization", &[b'B', 0xff])];
    let r = s
        .client
        .get(format!("{}/api/customers", s.base))
        .header(
            "authorization",
            reqwest::header::HeaderValue::from_bytes(bad_auth[0].1).unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Wrong method, unknown routes, bad paths.
    check(
        raw(
            Method::PUT,
            "/api/customers/c-0001",
            b"{}".to_vec(),
            json_ct,
        )
        .await,
        405,
    );
    check(
        raw(
            Method::GET,
            "/api/customers/c-0001/comments/x/y",
            vec![],
            &[],
        )
        .await,
        404,
    );
    check(
        raw(Method::GET, "/api/customers/%FF%FE", vec![], &[]).await,
        400,
    );
    check(
        raw(
            Method::POST,
            "/api/sync",
            b"{\"kind\":\"sideways\"}".to_vec(),
            json_ct,
        )
        .await,
        422,
    );
    // Nothing above changed anything.
    assert_eq!(
        s.get("/api/customers", &t).await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        200
    );
    assert_eq!(s.get("/api/customers/c-0001", &t).await.body["version"], 1);
}

// ---------- server options ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_files_with_spa_fallback_and_cors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "<html>app</html>").unwrap();
    std::fs::write(dir.path().join("app.js"), "console.log(1)").unwrap();
    let static_dir = dir.path().to_owned();
    let s = TestServer::start_with(|c| {
        c.static_dir = static_dir;
        c.cors = true;
    })
    .await;
    let get = |p: &str| {
        s.client
            .get(format!("{}{p}", s.base))
            .header("origin", "http://localhost:5173")
            .send()
    };
    let r = get("/").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert_eq!(r.text().await.unwrap(), "<html>app</html>");
    assert_eq!(
        get("/app.js").await.unwrap().text().await.unwrap(),
        "console.log(1)"
    );
    // Client-side routes get index.html.
    assert_eq!(
        get("/customers/c-1").await.unwrap().text().await.unwrap(),
        "<html>app</html>"
    );
    let api = get("/api/nothing/here/at/all").await.unwrap();
    assert_eq!(api.status(), 404);
    assert!(api.text().await.unwrap().contains("not_found"));
    let preflight = s
        .client
        .request(Method::OPTIONS, format!("{}/api/customers", s.base))
        .header("origin", "http://localhost:5173")
        .header("access-control-request-method", "PATCH")
        .header(
            "access-control-request-headers",
            "authorization,if-match,idempotency-key",
        )
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success());
    assert_eq!(preflight.headers()["access-control-allow-origin"], "*");
}

// ---------- expiry (the clock is moved by editing the database file) ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_tokens_are_401() {
    let s = TestServer::start().await;
    let t = s.login("alice").await;
    let keep = s.login("bob").await;
    // Move every token past its expiry; a new login works again.
    s.sql("UPDATE tokens SET expires_at = 0");
    assert_error(&s.get("/api/customers", &t).await, 401, "unauthorized");
    assert_error(&s.get("/api/customers", &keep).await, 401, "unauthorized");
    let fresh = s.login("bob").await;
    assert_eq!(s.get("/api/customers", &fresh).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_answers_expire_after_24_hours() {
    let s = TestServer::start().await;
    let t = s.login("alice").await;
    let key = [("idempotency-key", "old-key")];
    let body = json!({"id": "l-old", "fields": {}});
    let r = s
        .send(
            Method::POST,
            "/api/leads",
            Some(&t),
            Some(body.clone()),
            &key,
        )
        .await;
    assert_eq!(r.status, 201);
    // 23 hours later the answer is still there.
    s.sql("UPDATE idempotency SET created_at = created_at - 23 * 3600");
    let r = s
        .send(
            Method::POST,
            "/api/leads",
            Some(&t),
            Some(body.clone()),
            &key,
        )
        .await;
    assert_eq!(r.status, 201);
    // 25 hours later the key is forgotten: the request runs again (and conflicts).
    s.sql("UPDATE idempotency SET created_at = created_at - 2 * 3600");
    let r = s
        .send(Method::POST, "/api/leads", Some(&t), Some(body), &key)
        .await;
    assert_error(&r, 409, "conflict");
}
