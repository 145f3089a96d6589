//! docs/backend/protocol.md's "Limits": every bound and every refusal, over real HTTP
//! against a real SQLite file.

mod common;

use std::time::{Duration, Instant};

use common::{assert_error, ends_within, open_events, Reply, TestServer};
use crm_sync_server::limits::Limits;
use futures_util::future::join_all;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn login_as(s: &TestServer, user: &str, password: &str) -> Reply {
    s.send(
        Method::POST,
        "/api/login",
        None,
        Some(json!({ "username": user, "password": password })),
        &[],
    )
    .await
}

fn with_limits(change: impl FnOnce(&mut Limits)) -> impl FnOnce(&mut crm_sync_server::Config) {
    move |c| change(&mut c.limits)
}

// ---------- logins ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_flood_on_one_username_gets_429_with_retry_after() {
    let s = TestServer::start().await;
    let mut replies = Vec::new();
    for _ in 0..5 {
        let batch = join_all((0..8).map(|_| login_as(&s, "alice", "wrong"))).await;
        replies.extend(batch);
    }
    let unauthorized = replies.iter().filter(|r| r.status == 401).count();
    let throttled: Vec<&Reply> = replies.iter().filter(|r| r.status == 429).collect();
    // Attempts count before the password check, so a parallel burst cannot
    // get more than the limit through.
    assert_eq!(unauthorized, 5, "the first five failures are plain 401s");
    assert!(
        throttled.len() >= 20,
        "a flood is throttled: {unauthorized} × 401"
    );
    for r in &throttled {
        assert_error(r, 429, "too_many_requests");
        let wait: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&wait), "Retry-After {wait}");
    }
    // The username stays locked for the window, even with the right password.
    assert_error(
        &login_as(&s, "alice", "demo").await,
        429,
        "too_many_requests",
    );
    // Other users, from the same address, still sign in.
    for user in ["bob", "user01", "user02"] {
        s.login(user).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_per_address_are_throttled_but_successes_do_not_count() {
    let s = TestServer::start_with(with_limits(|l| l.login_failures_per_address = 6)).await;
    // Successful logins never count: many of them, then the failures.
    for i in 1..=20 {
        s.login(&format!("user{i:02}")).await;
    }
    for i in 0..6 {
        let r = login_as(&s, &format!("nobody{i}"), "x").await;
        assert_error(&r, 401, "unauthorized");
    }
    let r = login_as(&s, "nobody-else", "x").await;
    assert_error(&r, 429, "too_many_requests");
    assert!(r.headers.contains_key("retry-after"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_password_checks_at_once_get_429() {
    let s = TestServer::start_with(with_limits(|l| {
        l.password_checks = 1;
        l.password_queue = 1;
    }))
    .await;
    let names: Vec<String> = (1..=16).map(|i| format!("user{i:02}")).collect();
    let replies = join_all(names.iter().map(|n| login_as(&s, n, "wrong"))).await;
    let busy = replies.iter().filter(|r| r.status == 429).count();
    assert!(busy > 0, "some logins wait for no checker");
    for r in replies.iter().filter(|r| r.status == 429) {
        assert_error(r, 429, "too_many_requests");
        assert_eq!(r.headers["retry-after"], "1");
    }
    // Once the flood is over, logins work again.
    s.login("alice").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_username_costs_what_a_wrong_password_costs() {
    let s = TestServer::start().await;
    let mut unknown = Duration::ZERO;
    let mut wrong = Duration::ZERO;
    for i in 0..4 {
        let t = Instant::now();
        assert_eq!(login_as(&s, &format!("ghost{i}"), "x").await.status, 401);
        unknown += t.elapsed();
        let t = Instant::now();
        assert_eq!(
            login_as(&s, &format!("user{:02}", i + 10), "x")
                .await
                .status,
            401
        );
        wrong += t.elapsed();
    }
    assert!(
        unknown * 2 > wrong && wrong * 2 > unknown,
        "unknown {unknown:?} vs wrong password {wrong:?}"
    );
}

// ---------- sizes ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_1_mb_is_413_too_large() {
    let s = TestServer::start().await;
    let t = s.login("alice").await;
    let big = "x".repeat(1024 * 1024 + 10);
    let r = s
        .post("/api/notes", &t, json!({ "fields": { "text": big } }))
        .await;
    assert_error(&r, 413, "too_large");
    let r = s
        .patch("/api/customers/c-0001", &t, 1, json!({ "notes": big }))
        .await;
    assert_error(&r, 413, "too_large");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fields_over_256_kb_or_500_fields_are_422() {
    let s = TestServer::start().await;
    let t = s.login("alice").await;
    let r = s
        .post(
            "/api/notes",
            &t,
            json!({ "fields": { "text": "x".repeat(300 * 1024) } }),
        )
        .await;
    assert_error(&r, 422, "invalid");
    assert!(r.body["error"]["details"]["fields"]["fields"].is_string());
    // Under the body limit each time, but the record grows past 256 KB.
    let chunk = "y".repeat(200 * 1024);
    let r = s
        .patch("/api/customers/c-0002", &t, 1, json!({ "a": chunk }))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = s
        .patch("/api/customers/c-0002", &t, 2, json!({ "b": chunk }))
        .await;
    assert_error(&r, 422, "invalid");
    assert_eq!(s.get("/api/customers/c-0002", &t).await.body["version"], 2);
    let many: serde_json::Map<String, Value> =
        (0..501).map(|i| (format!("f{i}"), json!(i))).collect();
    let r = s.post("/api/notes", &t, json!({ "fields": many })).await;
    assert_error(&r, 422, "invalid");
    let enough: serde_json::Map<String, Value> =
        (0..500).map(|i| (format!("f{i}"), json!(i))).collect();
    let r = s.post("/api/notes", &t, json!({ "fields": enough })).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn comments_are_1_to_10000_characters_and_at_most_the_limit_per_record() {
    let s = TestServer::start_with(with_limits(|l| l.max_comments = 3)).await;
    let t = s.login("alice").await;
    let path = "/api/customers/c-0003/comments";
    for text in [String::new(), "  ".into(), "é".repeat(10_001)] {
        let r = s.post(path, &t, json!({ "id": "x", "text": text })).await;
        assert_error(&r, 422, "invalid");
    }
    // 10,000 characters of two bytes each: the limit is in characters.
    let r = s
        .post(path, &t, json!({ "id": "c0", "text": "é".repeat(10_000) }))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    for i in 1..3 {
        let r = s
            .post(path, &t, json!({ "id": format!("c{i}"), "text": "hi" }))
            .await;
        assert_eq!(r.status, 201);
    }
    let r = s.post(path, &t, json!({ "id": "c3", "text": "hi" })).await;
    assert_error(&r, 422, "invalid");
    // Re-posting a stored comment still answers with it.
    let r = s.post(path, &t, json!({ "id": "c1", "text": "hi" })).await;
    assert_eq!(r.status, 200);
}

// ---------- empty PATCH, idempotency ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_with_no_fields_is_422_and_changes_nothing() {
    let s = TestServer::start().await;
    let t = s.login("alice").await;
    let r = s.patch("/api/customers/c-0004", &t, 1, json!({})).await;
    assert_error(&r, 422, "invalid");
    assert_eq!(s.get("/api/customers/c-0004", &t).await.body["version"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_reused_with_another_body_is_422_idempotency_mismatch() {
    let s = TestServer::start().await;
    let t = s.login("alice").await;
    let send = |body: &'static str| {
        let req = s
            .client
            .patch(format!("{}/api/customers/c-0005", s.base))
            .bearer_auth(&t)
            .header("if-match", "1")
            .header("idempotency-key", "same-key")
            .header("content-type", "application/json")
            .body(body);
        async move { req.send().await.unwrap() }
    };
    let first = send(r#"{"fields":{"city":"Oslo","name":"A"}}"#).await;
    assert_eq!(first.status(), 200);
    // The same request, keys in another order and spaced differently: a replay.
    let again = send(r#"{ "fields": { "name": "A", "city": "Oslo" } }"#).await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let other = send(r#"{"fields":{"city":"Rome"}}"#).await;
    assert_eq!(other.status(), 422);
    let body: Value = other.json().await.unwrap();
    assert_eq!(body["error"]["code"], "idempotency_mismatch");
    let now = s.get("/api/customers/c-0005", &t).await.body;
    assert_eq!(
        (now["version"].clone(), now["fields"]["city"].clone()),
        (json!(2), json!("Oslo"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_rebuilds_the_first_answer_exactly_without_storing_record_copies() {
    let s = TestServer::start().await;
    let t = s.login("alice").await;
    let big = "q".repeat(100 * 1024);
    let keyed = |version: i64, key: String, fields: Value| {
        let etag = format!("\"{version}\"");
        let s = &s;
        let t = &t;
        async move {
            s.send(
                Method::PATCH,
                "/api/customers/c-0070",
                Some(t),
                Some(json!({ "fields": fields })),
                &[("if-match", &etag), ("idempotency-key", &key)],
            )
            .await
        }
    };
    let first = keyed(1, "k-first".into(), json!({ "notes": big, "city": "Oslo" })).await;
    assert_eq!(first.status, 200);
    s.post(
        "/api/customers/c-0070/comments",
        &t,
        json!({ "id": "later", "text": "after the first write" }),
    )
    .await;
    for i in 0..100i64 {
        let r = keyed(i + 2, format!("k-{i}"), json!({ "n": i, "city": null })).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    let replay = keyed(1, "k-first".into(), json!({ "notes": big, "city": "Oslo" })).await;
    assert_eq!(replay.status, 200);
    assert_eq!(replay.headers["idempotent-replayed"], "true");
    assert_eq!(replay.body, first.body, "the replay is the first answer");
    let middle = keyed(52, "k-50".into(), json!({ "n": 50, "city": null })).await;
    assert_eq!(middle.body["version"], 53);
    assert_eq!(middle.body["fields"]["n"], 50);
    assert_eq!(middle.body["comments"][0]["id"], "later");
    // Deleted since, and created again: the first answer is still the same.
    let r = s
        .send(
            Method::DELETE,
            "/api/customers/c-0070",
            Some(&t),
            None,
            &[("if-match", "102")],
        )
        .await;
    assert_eq!(r.status, 204);
    let r = s
        .post(
            "/api/customers",
            &t,
            json!({ "id": "c-0070", "fields": { "name": "New" } }),
        )
        .await;
    assert_eq!(r.status, 201);
    let replay = keyed(1, "k-first".into(), json!({ "notes": big, "city": "Oslo" })).await;
    assert_eq!(replay.body["fields"], first.body["fields"]);
    assert_eq!(replay.body["version"], 2);
    // 101 keyed answers of a 100 KB record, stored as references.
    let stored = s
        .sql("SELECT CAST(SUM(LENGTH(body) + LENGTH(COALESCE(record_ref, ''))) AS BIGINT) FROM idempotency")
        .unwrap();
    assert!(stored < 64 * 1024, "{stored} bytes of answers");
}

// ---------- changes feed ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_pages_are_cut_at_about_4_mb_with_more_true() {
    let s = TestServer::start().await;
    let t = s.login("alice").await;
    let cursor = s.get("/api/customers", &t).await.body["cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    let big = "z".repeat(200 * 1024);
    for i in 0..30 {
        let r = s
            .patch(
                &format!("/api/customers/c-{:04}", i + 100),
                &t,
                1,
                json!({ "notes": big }),
            )
            .await;
        assert_eq!(r.status, 200);
    }
    let limit = Limits::default().feed_page_bytes;
    let mut since = cursor;
    let mut seen = 0;
    let mut pages = 0;
    loop {
        let resp = s
            .client
            .get(format!("{}/api/changes?since={since}&limit=1000", s.base))
            .bearer_auth(&t)
            .send()
            .await
            .unwrap();
        let bytes = resp.bytes().await.unwrap();
        assert!(
            bytes.len() <= limit + 300 * 1024,
            "a page of {} bytes",
            bytes.len()
        );
        let page: Value = serde_json::from_slice(&bytes).unwrap();
        seen += page["changes"].as_array().unwrap().len();
        pages += 1;
        since = page["cursor"].as_str().unwrap().to_owned();
        if page["more"] == false {
            break;
        }
        assert!(pages < 10);
    }
    assert_eq!(seen, 30);
    assert!(pages >= 2, "6 MB of changes come in more than one page");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_store_what_changed_and_the_feed_serves_current_records() {
    let s = TestServer::start().await;
    let t = s.login("alice").await;
    let db = s.db.clone();
    let size = |db: &std::path::Path| {
        common::db_sql(
            db,
            "SELECT CAST(COALESCE(SUM(LENGTH(COALESCE(record, '')) + LENGTH(COALESCE(what, ''))), 0) AS BIGINT) FROM changes",
        )
        .unwrap()
    };
    let before = size(&db);
    let big = "b".repeat(100 * 1024);
    let r = s
        .patch("/api/customers/c-0006", &t, 1, json!({ "notes": big }))
        .await;
    assert_eq!(r.status, 200);
    let cursor = s.get("/api/customers", &t).await.body["cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    // Small changes to a big record store small changes.
    for i in 0..20 {
        let r = s
            .patch(
                "/api/customers/c-0006",
                &t,
                i + 2,
                json!({ "city": format!("c{i}") }),
            )
            .await;
        assert_eq!(r.status, 200);
        let r = s
            .post(
                "/api/customers/c-0006/comments",
                &t,
                json!({ "id": format!("k{i}"), "text": "short" }),
            )
            .await;
        assert_eq!(r.status, 201);
    }
    let grown = size(&db) - before;
    assert!(grown < 150 * 1024, "40 small changes stored {grown} bytes");
    let feed = s
        .get(&format!("/api/changes?since={cursor}"), &t)
        .await
        .body;
    let changes = feed["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 40);
    assert_eq!(changes[0]["record"]["fields"]["city"], "c19");
    assert_eq!(changes[0]["record"]["version"], changes[0]["version"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_to_a_record_deleted_since_is_reported_as_the_deletion() {
    let s = TestServer::start().await;
    let t = s.login("alice").await;
    let cursor = s.get("/api/customers", &t).await.body["cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = s
        .patch("/api/customers/c-0060", &t, 1, json!({ "city": "Oslo" }))
        .await;
    assert_eq!(r.status, 200);
    let r = s
        .send(
            Method::DELETE,
            "/api/customers/c-0060",
            Some(&t),
            None,
            &[("if-match", "2")],
        )
        .await;
    assert_eq!(r.status, 204);
    let feed = s
        .get(&format!("/api/changes?since={cursor}"), &t)
        .await
        .body;
    let entry = json!({ "collection": "customers", "id": "c-0060", "version": 3, "op": "delete" });
    assert_eq!(feed["changes"], json!([entry, entry]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_changes_are_pruned_and_their_cursors_are_410() {
    let s = TestServer::start_with(|c| {
        c.limits.changes_kept = 5;
        c.janitor_every = Duration::from_millis(50);
    })
    .await;
    let t = s.login("alice").await;
    let old = s.get("/api/customers", &t).await.body["cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    for i in 0..12 {
        let r = s
            .patch(
                &format!("/api/customers/c-{:04}", i + 50),
                &t,
                1,
                json!({ "city": "X" }),
            )
            .await;
        assert_eq!(r.status, 200);
    }
    let fresh = s.get("/api/customers", &t).await.body["cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_error(
        &s.get(&format!("/api/changes?since={old}"), &t).await,
        410,
        "cursor_expired",
    );
    let r = s.get(&format!("/api/changes?since={fresh}"), &t).await;
    assert_eq!(r.status, 200);
    let ticket = s.stream_ticket(&t).await;
    let r = s
        .client
        .get(format!("{}/api/events?ticket={ticket}&since={old}", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 410);
}

// ---------- event streams ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_ends_when_its_token_is_logged_out() {
    let s = TestServer::start().await;
    let t = s.login("alice").await;
    let other = s.login("alice").await;
    let mut stream = open_events(&s, &t).await;
    let mut kept = open_events(&s, &other).await;
    let r = s
        .send(Method::POST, "/api/logout", Some(&t), None, &[])
        .await;
    assert_eq!(r.status, 204);
    assert!(ends_within(&mut stream, Duration::from_secs(5)).await);
    // A change after the logout reaches the other token's stream only.
    s.patch(
        "/api/customers/c-0007",
        &other,
        1,
        json!({ "city": "Lima" }),
    )
    .await;
    assert!(!ends_within(&mut kept, Duration::from_millis(500)).await);
    let r = s
        .client
        .get(format!("{}/api/events", s.base))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_ends_when_its_token_expires() {
    let s = TestServer::start().await;
    let t = s.login("alice").await;
    // Bring the token's expiry close, as if it had been issued 12 hours ago.
    let soon = chrono::Utc::now().timestamp() + 2;
    s.sql(&format!("UPDATE tokens SET expires_at = {soon}"));
    let mut stream = open_events(&s, &t).await;
    assert!(!ends_within(&mut stream, Duration::from_millis(500)).await);
    assert!(ends_within(&mut stream, Duration::from_secs(5)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sixth_stream_closes_the_users_oldest() {
    let s = TestServer::start().await;
    let t = s.login("bob").await;
    let mut streams = Vec::new();
    for _ in 0..5 {
        streams.push(open_events(&s, &t).await);
    }
    let mut sixth = open_events(&s, &t).await;
    assert!(ends_within(&mut streams[0], Duration::from_secs(5)).await);
    for stream in &mut streams[1..] {
        assert!(!ends_within(stream, Duration::from_millis(200)).await);
    }
    assert!(!ends_within(&mut sixth, Duration::from_millis(200)).await);
    // Another user's streams are not counted with bob's.
    let a = s.login("alice").await;
    let mut alice = open_events(&s, &a).await;
    assert!(!ends_within(&mut streams[1], Duration::from_millis(200)).await);
    assert!(!ends_within(&mut alice, Duration::from_millis(200)).await);
}

// ---------- sync jobs ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_21st_unfinished_sync_job_is_429_too_many_jobs() {
    let s = TestServer::start_with(|c| c.sheet_latency = Duration::from_secs(30)).await;
    let t = s.login("alice").await;
    for _ in 0..20 {
        let r = s.post("/api/sync", &t, json!({ "kind": "to-sheet" })).await;
        assert_eq!(r.status, 202, "{:?}", r.body);
    }
    let r = s.post("/api/sync", &t, json!({ "kind": "to-sheet" })).await;
    assert_error(&r, 429, "too_many_jobs");
    // Other users are not affected.
    let b = s.login("bob").await;
    let r = s.post("/api/sync", &b, json!({ "kind": "to-sheet" })).await;
    assert_eq!(r.status, 202);
    // A cancelled job makes room.
    let list = s.get("/api/sync", &t).await.body;
    let last = list["items"][0]["syncId"].as_str().unwrap().to_owned();
    let r = s
        .send(
            Method::DELETE,
            &format!("/api/sync/{last}"),
            Some(&t),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 200);
    let r = s.post("/api/sync", &t, json!({ "kind": "to-sheet" })).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
}

// ---------- connections ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_headers_are_cut_off_and_the_server_keeps_accepting() {
    let s = TestServer::start_with(with_limits(|l| {
        l.header_timeout = Duration::from_millis(800);
    }))
    .await;
    let addr = s.base.trim_start_matches("http://").to_owned();
    let mut slow = Vec::new();
    for _ in 0..100 {
        let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
        c.write_all(b"GET /api/me HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        slow.push(c);
    }
    // Still answering while they hang.
    let t = s.login("alice").await;
    assert_eq!(s.get("/api/me", &t).await.status, 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for c in &mut slow {
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(2), c.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "a slow client was not cut off");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed() {
    let s = TestServer::start_with(with_limits(|l| {
        l.header_timeout = Duration::from_millis(800);
    }))
    .await;
    let addr = s.base.trim_start_matches("http://").to_owned();
    let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
    c.write_all(b"GET /api/me HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = c.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 401"));
    let start = Instant::now();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut rest))
        .await
        .expect("the idle connection is closed")
        .unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_takes_too_long_is_408_in_the_error_shape() {
    let s = TestServer::start_with(with_limits(|l| {
        l.request_timeout = Duration::from_millis(500);
    }))
    .await;
    let t = s.login("alice").await;
    let addr = s.base.trim_start_matches("http://").to_owned();
    let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /api/notes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {t}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"fields\":"
    );
    c.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
        .await
        .expect("an answer in time")
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"code\":\"timeout\""), "{text}");
}

// ---------- static files, refusals from below ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_dotfiles_are_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web");
    std::fs::create_dir_all(web.join(".git")).unwrap();
    std::fs::write(web.join("index.html"), "<p>app</p>").unwrap();
    std::fs::write(web.join(".env"), "SECRET=1").unwrap();
    std::fs::write(web.join(".git/config"), "SECRET=2").unwrap();
    let static_dir = web.clone();
    let s = TestServer::start_with(move |c| c.static_dir = static_dir).await;
    for path in [
        "/.env",
        "/.git/config",
        "/%2eenv",
        "/%2Egit/config",
        "/x/../.env",
    ] {
        let r = s
            .client
            .get(format!("{}{path}", s.base))
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body = r.text().await.unwrap();
        assert!(!body.contains("SECRET"), "{path}: {body}");
        assert!(status == 404 || status == 400, "{path}: {status}");
    }
    let r = s.client.get(format!("{}/", s.base)).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "<p>app</p>");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_are_refused() {
    let s = TestServer::start().await;
    let r = s
        .client
        .get(format!("{}/api/me", s.base))
        .header("x-big", "a".repeat(100 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 431);
    // A request line longer than the whole head may be: refused by hyper
    // before routing (no JSON body is possible there).
    let addr = s.base.trim_start_matches("http://").to_owned();
    let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let line = format!(
        "GET /api/{} HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let _ = c.write_all(line.as_bytes()).await;
    let mut buf = vec![0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
        .await
        .expect("an answer in time")
        .unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(
        head.starts_with("HTTP/1.1 414") || head.starts_with("HTTP/1.1 431"),
        "{head}"
    );
}

// ---------- the sheet ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sheet_cells_that_look_like_formulas_round_trip_exactly() {
    let s = TestServer::start().await;
    let t = s.login("alice").await;
    let values = [
        ("name", "=HYPERLINK(\"http://evil.example\",\"x\")"),
        ("phone", "+44 20 7946 0000"),
        ("city", "-Minus"),
        ("owner", "@alice"),
    ];
    let fields: serde_json::Map<String, Value> = values
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    let r = s
        .post(
            "/api/customers",
            &t,
            json!({ "id": "c-formula", "fields": fields }),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = s
        .post(
            "/api/customers",
            &t,
            json!({ "id": "c-quote", "fields": { "name": "'already quoted" } }),
        )
        .await;
    assert_eq!(r.status, 201);
    let job = s.post("/api/sync", &t, json!({ "kind": "to-sheet" })).await;
    let id = job.body["syncId"].as_str().unwrap().to_owned();
    let seen = s.wait_job(&t, &id, Duration::from_secs(30)).await;
    assert_eq!(seen.last().unwrap()["status"], "complete", "{seen:?}");
    let csv = std::fs::read_to_string(s.path("data/sheet.csv")).unwrap();
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    for row in reader.records() {
        for cell in row.unwrap().iter() {
            assert!(
                !cell.starts_with(['=', '+', '-', '@']),
                "a cell a spreadsheet would run: {cell}"
            );
        }
    }
    assert!(csv.contains("'=HYPERLINK"), "{csv}");
    // Change the sheet's version-less copy of the row so from-sheet applies it,
    // then check the values came back exactly.
    let job = s
        .post("/api/sync", &t, json!({ "kind": "from-sheet" }))
        .await;
    let id = job.body["syncId"].as_str().unwrap().to_owned();
    let seen = s.wait_job(&t, &id, Duration::from_secs(30)).await;
    let last = seen.last().unwrap();
    assert_eq!(last["status"], "complete", "{seen:?}");
    assert_eq!(last["stats"]["updated"], 0, "{last:?}");
    assert_eq!(last["stats"]["conflicts"], 0, "{last:?}");
    // An import into a fresh record: the escaped cells come back as they were.
    let edited = csv.replace("c-formula,", "c-formula-copy,");
    std::fs::write(
        s.path("data/sheet.csv"),
        edited.replace("\nc-formula-copy,1,", "\nc-formula-copy,,"),
    )
    .unwrap();
    let job = s
        .post("/api/sync", &t, json!({ "kind": "from-sheet" }))
        .await;
    let id = job.body["syncId"].as_str().unwrap().to_owned();
    let seen = s.wait_job(&t, &id, Duration::from_secs(30)).await;
    assert_eq!(seen.last().unwrap()["status"], "complete", "{seen:?}");
    let copy = s.get("/api/customers/c-formula-copy", &t).await.body;
    for (k, v) in values {
        assert_eq!(copy["fields"][k], v, "{copy:?}");
    }
    let quote = s.get("/api/customers/c-quote", &t).await.body;
    assert_eq!(quote["fields"]["name"], "'already quoted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_error_never_shows_the_sheet_path() {
    let s = TestServer::start().await;
    let t = s.login("alice").await;
    std::fs::remove_file(s.path("data/sheet.csv")).unwrap();
    let job = s
        .post("/api/sync", &t, json!({ "kind": "from-sheet" }))
        .await;
    let id = job.body["syncId"].as_str().unwrap().to_owned();
    let seen = s.wait_job(&t, &id, Duration::from_secs(30)).await;
    let last = seen.last().unwrap();
    assert_eq!(last["status"], "error", "{last:?}");
    let text = last.to_string();
    let dir = s.dir.path().to_string_lossy().into_owned();
    assert!(
        !text.contains(&dir) && !text.contains("sheet.csv"),
        "{text}"
    );
}
